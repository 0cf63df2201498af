//! The seccomp filter of every container process: default allow, with the calls that reach past
//! a container's confinement refused (docs/decisions/0002 says which and why).
//!
//! libseccomp compiles the rules into a BPF program once per boot; the program is cached under
//! the run root, keyed by the rules and the libseccomp version, so a container start only reads
//! it. The container's init, and every process `exec` starts in it, installs the program as its
//! last step before executing the command ([`Confined`]), after libcontainer set
//! `no_new_privs` and dropped the capabilities.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// Syscalls a container never needs and that reach past its confinement: module loading,
/// mounting, rebooting, clock and kernel keyring changes, kernel memory and tracing
/// interfaces, namespace creation. Everything else is allowed (the capability set and the
/// devices cgroup confine the rest). See docs/decisions/0002.
const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The system call ABIs a process on this host can use: the filter covers each of them (a
/// 32-bit call is another table of numbers) and no other, since every architecture listed is
/// compiled into the program the kernel runs on each call.
#[cfg(target_arch = "x86_64")]
const ARCHES: &[ScmpArch] = &[ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32];
#[cfg(target_arch = "aarch64")]
const ARCHES: &[ScmpArch] = &[ScmpArch::Aarch64, ScmpArch::Arm];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHES: &[ScmpArch] = &[ScmpArch::Native];

/// The kernel's limit on a program's length (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

/// A compiled filter: the instructions the kernel runs on every system call.
#[derive(Clone, Debug)]
pub struct Filter(Arc<[libc::sock_filter]>);

impl Filter {
    /// The filter, from the cache under `run_root` or compiled (and cached) now.
    pub fn load(run_root: &Path) -> io::Result<Filter> {
        let dir = run_root.join("seccomp");
        let path = dir.join(format!("{}.bpf", cache_key()));
        if let Ok(bytes) = fs::read(&path)
            && let Some(filter) = Filter::from_bytes(&bytes)
        {
            return Ok(filter);
        }
        let bytes = compile().map_err(|e| io::Error::other(format!("cannot compile the seccomp filter: {e}")))?;
        let filter = Filter::from_bytes(&bytes)
            .ok_or_else(|| io::Error::other(format!("libseccomp made an unusable program ({} bytes)", bytes.len())))?;
        fs::create_dir_all(&dir)?;
        // Cleared at boot with the run root; a lost write only means compiling again.
        crate::fsutil::write_atomic_volatile(&path, &bytes)?;
        Ok(filter)
    }

    /// A program in the kernel's binary form (struct sock_filter, native byte order); None if
    /// it cannot be one.
    fn from_bytes(bytes: &[u8]) -> Option<Filter> {
        const SIZE: usize = std::mem::size_of::<libc::sock_filter>();
        if bytes.is_empty() || !bytes.len().is_multiple_of(SIZE) || bytes.len() / SIZE > MAX_INSTRUCTIONS {
            return None;
        }
        let program: Vec<libc::sock_filter> = bytes
            .chunks_exact(SIZE)
            .map(|b| libc::sock_filter {
                code: u16::from_ne_bytes([b[0], b[1]]),
                jt: b[2],
                jf: b[3],
                k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            })
            .collect();
        Some(Filter(program.into()))
    }

    /// Installs the filter on the calling thread (a single-threaded process about to execute
    /// its command). Needs `no_new_privs` or CAP_SYS_ADMIN, as the kernel says.
    pub fn install(&self) -> io::Result<()> {
        let program = libc::sock_fprog {
            len: self.0.len() as u16, // at most MAX_INSTRUCTIONS (from_bytes)
            filter: self.0.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `program` points at `len` valid instructions that outlive the call; the
        // kernel copies them.
        let rc =
            unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0 as libc::c_uint, &program) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Names the cached program: the rules, the architectures and the libseccomp that compiled it.
fn cache_key() -> String {
    let version = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro));
    let mut h = blake3::Hasher::new();
    h.update(b"lifeboat seccomp v1\0");
    h.update(version.unwrap_or_default().as_bytes());
    for name in DENIED_SYSCALLS {
        h.update(name.as_bytes());
        h.update(b"\0");
    }
    h.update(format!("{ARCHES:?} {CLONE_NEWUSER}").as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

/// The rules, compiled by libseccomp into the kernel's binary form.
fn compile() -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let e = io::Error::other;
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow).map_err(e)?;
    // The container's process definition sets no_new_privs; loading is not libseccomp's job.
    ctx.set_ctl_nnp(false).map_err(e)?;
    for arch in ARCHES {
        ctx.add_arch(*arch).map_err(e)?;
    }
    let eperm = ScmpAction::Errno(libc::EPERM);
    for name in DENIED_SYSCALLS {
        // A name libseccomp does not know on any architecture cannot be called here either.
        if let Ok(call) = ScmpSyscall::from_name(name) {
            ctx.add_rule(eperm, call).map_err(e)?;
        }
    }
    // New user namespaces would hand the container a full capability set in them.
    let newuser = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(CLONE_NEWUSER), CLONE_NEWUSER);
    ctx.add_rule_conditional(eperm, ScmpSyscall::from_name("clone").map_err(e)?, &[newuser]).map_err(e)?;
    // clone3's flags are behind a pointer seccomp cannot read: libc falls back to clone.
    ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), ScmpSyscall::from_name("clone3").map_err(e)?).map_err(e)?;
    let mut out = fs::File::from(rustix::fs::memfd_create("seccomp", rustix::fs::MemfdFlags::CLOEXEC)?);
    ctx.export_bpf(&out).map_err(e)?;
    out.rewind()?;
    let mut bytes = Vec::new();
    out.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// libcontainer's way of executing the command, preceded by installing the filter.
#[derive(Clone)]
pub struct Confined {
    filter: Filter,
}

impl Confined {
    /// With the filter from the cache under `run_root` (compiled now if it is not there).
    pub fn load(run_root: &Path) -> io::Result<Confined> {
        Ok(Confined { filter: Filter::load(run_root)? })
    }
}

impl Executor for Confined {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        self.filter.install().map_err(|e| ExecutorError::Other(format!("cannot install the seccomp filter: {e}")))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_compiled_once_and_then_read_from_the_cache() {
        let run_root = tempfile::tempdir().unwrap();
        let first = Filter::load(run_root.path()).unwrap();
        let cached: Vec<_> =
            fs::read_dir(run_root.path().join("seccomp")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(cached.len(), 1);
        let bytes = fs::read(&cached[0]).unwrap();
        assert_eq!(bytes.len(), first.0.len() * 8);
        assert!(first.0.len() > DENIED_SYSCALLS.len(), "{} instructions", first.0.len());
        // Read back, it is the same program.
        let again = Filter::load(run_root.path()).unwrap();
        assert!(
            first.0.iter().zip(again.0.iter()).all(|(a, b)| (a.code, a.jt, a.jf, a.k) == (b.code, b.jt, b.jf, b.k))
        );
        // A damaged cache entry is compiled again, not installed.
        fs::write(&cached[0], &bytes[..7]).unwrap();
        let mended = Filter::load(run_root.path()).unwrap();
        assert_eq!(mended.0.len(), first.0.len());
        assert_eq!(fs::read(&cached[0]).unwrap(), bytes);
    }

    #[test]
    fn an_installed_filter_refuses_what_it_lists_and_allows_the_rest() {
        let run_root = tempfile::tempdir().unwrap();
        let filter = Filter::load(run_root.path()).unwrap();
        // In a child process: only system calls between fork and exit.
        // SAFETY: the child makes raw system calls only, then exits without unwinding.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    if filter.install().is_err() {
                        libc::_exit(10);
                    }
                    let refused = |rc: libc::c_long, errno: i32| rc == -1 && *libc::__errno_location() == errno;
                    if !refused(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER), libc::EPERM) {
                        11
                    } else if !refused(libc::syscall(libc::SYS_umount2, c"/nonexistent".as_ptr(), 0), libc::EPERM) {
                        12
                    } else if !refused(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0), libc::ENOSYS) {
                        13
                    } else if libc::syscall(libc::SYS_getpid) <= 0 {
                        14
                    } else {
                        0
                    }
                };
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
