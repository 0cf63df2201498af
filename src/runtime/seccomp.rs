//! The seccomp filter of every container process: an allow-list of the system calls a service
//! needs, the calls that reach past a container's confinement refused with EPERM, and every
//! other call (one a newer kernel added, which nobody here has reviewed) refused with ENOSYS,
//! so that libc falls back to an older call as it does on an older kernel. Decision 0005 says
//! which calls are refused and how that compares with Docker's profile.
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

/// The system calls a container may make: Linux's table up to 6.17 (x86-64, i386, the generic
/// table arm64 uses, and 32-bit ARM's own calls), less [`DENIED_SYSCALLS`], the ones the kernel
/// does not implement, and `clone`, `personality` and `socket`, which are allowed with
/// conditions. A name this host's
/// libseccomp does not know is left out of the program (so refused with ENOSYS).
const ALLOWED_SYSCALLS: &[&str] = &[
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "bdflush",
    "bind",
    "breakpoint",
    "brk",
    "cacheflush",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "chroot",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "file_getattr",
    "file_setattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "lsm_set_self_attr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "nice",
    "oldfstat",
    "oldlstat",
    "oldstat",
    "olduname",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_madvise",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readdir",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "set_tls",
    "setdomainname",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "sethostname",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "sgetmask",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaction",
    "sigaltstack",
    "signal",
    "signalfd",
    "signalfd4",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "socketcall",
    "socketpair",
    "splice",
    "ssetmask",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "sync_file_range2",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Calls a container never needs and that reach past its confinement: module loading,
/// mounting and the new mount API, rebooting, swap, clock setting, kernel keyrings, kernel
/// memory and tracing interfaces (bpf, perf, ptrace and its relatives), NUMA placement,
/// io_uring (a second system-call interface the filter cannot see into), namespace creation
/// and joining. Refused with EPERM, as Docker refuses them to a container without extra
/// capabilities. See docs/decisions/0005.
const DENIED_SYSCALLS: &[&str] = &[
    "_sysctl",
    "acct",
    "add_key",
    "bpf",
    "clock_settime",
    "clock_settime64",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "migrate_pages",
    "modify_ldt",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "open_tree_attr",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "set_mempolicy_home_node",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
];

/// The execution domains `personality` may select (the query, Linux, and its 32-bit address
/// and uname variants), as in Docker's profile; any other value is refused.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const CLONE_NEWUSER: u64 = 0x1000_0000;
const AF_VSOCK: u64 = 40;

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
        if let Some(run_root) = dir.parent() {
            crate::fsutil::private_dir(run_root)?;
        }
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
    h.update(b"lifeboat seccomp v2 kill-process\0");
    h.update(version.unwrap_or_default().as_bytes());
    for name in ALLOWED_SYSCALLS.iter().chain([&"-"]).chain(DENIED_SYSCALLS) {
        h.update(name.as_bytes());
        h.update(b"\0");
    }
    h.update(format!("{ARCHES:?} {CLONE_NEWUSER} {PERSONALITIES:?} socket!={AF_VSOCK}").as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

/// The rules, compiled by libseccomp into the kernel's binary form.
fn compile() -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let e = io::Error::other;
    // What nobody listed: ENOSYS, what a kernel without the call would say.
    let mut ctx = ScmpFilterContext::new(ScmpAction::Errno(libc::ENOSYS)).map_err(e)?;
    // The container's process definition sets no_new_privs; loading is not libseccomp's job.
    ctx.set_ctl_nnp(false).map_err(e)?;
    // A process using an ABI the filter does not cover is ended whole, not one thread of it.
    ctx.set_act_badarch(ScmpAction::KillProcess).map_err(e)?;
    // A binary search over the call numbers rather than one comparison per listed call: the
    // program runs on every system call the container makes. libseccomp before 2.5 cannot,
    // and then compiles the linear form.
    let _ = ctx.set_filter_attr(libseccomp::ScmpFilterAttr::CtlOptimize, 2);
    for arch in ARCHES {
        ctx.add_arch(*arch).map_err(e)?;
    }
    // A name libseccomp does not know on any architecture cannot be listed: it stays refused.
    let known = |name: &str| ScmpSyscall::from_name(name).ok();
    for call in ALLOWED_SYSCALLS.iter().filter_map(|n| known(n)) {
        ctx.add_rule(ScmpAction::Allow, call).map_err(e)?;
    }
    let eperm = ScmpAction::Errno(libc::EPERM);
    for call in DENIED_SYSCALLS.iter().filter_map(|n| known(n)) {
        ctx.add_rule(eperm, call).map_err(e)?;
    }
    // New user namespaces would hand the container a full capability set in them.
    let clone = ScmpSyscall::from_name("clone").map_err(e)?;
    let newuser = |set: u64| ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(CLONE_NEWUSER), set);
    ctx.add_rule_conditional(ScmpAction::Allow, clone, &[newuser(0)]).map_err(e)?;
    ctx.add_rule_conditional(eperm, clone, &[newuser(CLONE_NEWUSER)]).map_err(e)?;
    // clone3 is not listed (ENOSYS): its flags are behind a pointer seccomp cannot read, and
    // libc falls back to clone.
    // vsock is not namespaced: it would reach the hypervisor's services around the
    // container's network. Every other address family is allowed, as in Docker's profile.
    let socket = ScmpSyscall::from_name("socket").map_err(e)?;
    let family = |op| ScmpArgCompare::new(0, op, AF_VSOCK);
    ctx.add_rule_conditional(ScmpAction::Allow, socket, &[family(ScmpCompareOp::NotEqual)]).map_err(e)?;
    ctx.add_rule_conditional(eperm, socket, &[family(ScmpCompareOp::Equal)]).map_err(e)?;
    let personality = ScmpSyscall::from_name("personality").map_err(e)?;
    for value in PERSONALITIES {
        let exactly = ScmpArgCompare::new(0, ScmpCompareOp::Equal, *value);
        ctx.add_rule_conditional(ScmpAction::Allow, personality, &[exactly]).map_err(e)?;
    }
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
                    } else if !refused(libc::syscall(libc::SYS_io_uring_setup, 8, std::ptr::null::<u8>()), libc::EPERM)
                    {
                        15
                    } else if libc::syscall(libc::SYS_personality, 0xffff_ffffu64) == -1 {
                        16
                    } else if !refused(libc::syscall(libc::SYS_personality, 0x0040_0000u64), libc::ENOSYS) {
                        17
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

    /// Runs a classic BPF program (the subset libseccomp emits) on one system call.
    fn evaluate(program: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let word = |k: u32| u32::from_ne_bytes(data[k as usize..k as usize + 4].try_into().unwrap());
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        loop {
            let ins = program[pc];
            pc += 1;
            let (code, k) = (ins.code, ins.k);
            let src = if code & 0x08 != 0 { x } else { k };
            match code & 0x07 {
                0x00 => match code & 0xe0 {
                    0x00 => a = k,
                    0x20 => a = word(k),
                    0x60 => a = mem[k as usize],
                    m => panic!("ld mode {m:#x}"),
                },
                0x01 => match code & 0xe0 {
                    0x00 => x = k,
                    0x60 => x = mem[k as usize],
                    m => panic!("ldx mode {m:#x}"),
                },
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x04 => match code & 0xf0 {
                    0x00 => a = a.wrapping_add(src),
                    0x10 => a = a.wrapping_sub(src),
                    0x40 => a |= src,
                    0x50 => a &= src,
                    0x60 => a <<= src,
                    0x70 => a >>= src,
                    0xa0 => a ^= src,
                    op => panic!("alu op {op:#x}"),
                },
                0x05 => {
                    let taken = match code & 0xf0 {
                        0x00 => {
                            pc += k as usize;
                            continue;
                        }
                        0x10 => a == src,
                        0x20 => a > src,
                        0x30 => a >= src,
                        0x40 => a & src != 0,
                        op => panic!("jmp op {op:#x}"),
                    };
                    pc += if taken { ins.jt } else { ins.jf } as usize;
                }
                0x06 => return if code & 0x10 != 0 { a } else { k },
                0x07 => {
                    if code & 0xf8 == 0 {
                        x = a
                    } else {
                        a = x
                    }
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn the_program_allows_what_it_lists_and_refuses_the_rest_on_every_abi() {
        const ALLOW: u32 = 0x7fff_0000;
        const ERRNO: u32 = 0x0005_0000;
        let run_root = tempfile::tempdir().unwrap();
        let filter = Filter::load(run_root.path()).unwrap();
        let p = &filter.0;
        let (x86_64, i386) = (0xc000_003e, 0x4000_0003);
        let call = |arch, nr: i64, a0: u64| evaluate(p, arch, nr as u32, [a0, 0, 0, 0, 0, 0]);
        // Listed calls pass, on the 64-bit and the 32-bit table.
        assert_eq!(call(x86_64, libc::SYS_read, 0), ALLOW);
        assert_eq!(call(x86_64, libc::SYS_openat, 0), ALLOW);
        assert_eq!(call(i386, 102, 0), ALLOW, "socketcall");
        // Refused ones say EPERM, as Docker's do.
        for nr in [libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_mount, libc::SYS_ptrace, libc::SYS_bpf]
        {
            assert_eq!(call(x86_64, nr, 0), ERRNO | libc::EPERM as u32, "{nr}");
        }
        assert_eq!(call(i386, 425, 0), ERRNO | libc::EPERM as u32, "io_uring_setup on i386");
        // A call nobody listed (a newer kernel's) says ENOSYS, whatever its number.
        for nr in [470, 471, 500, 1000, 0x3fff_ffff] {
            assert_eq!(call(x86_64, nr, 0), ERRNO | libc::ENOSYS as u32, "{nr}");
            assert_eq!(call(i386, nr, 0), ERRNO | libc::ENOSYS as u32, "{nr}");
        }
        assert_eq!(call(x86_64, libc::SYS_clone3, 0), ERRNO | libc::ENOSYS as u32);
        // clone: allowed unless it makes a user namespace.
        assert_eq!(call(x86_64, libc::SYS_clone, 0x11), ALLOW);
        assert_eq!(call(x86_64, libc::SYS_clone, CLONE_NEWUSER | 0x11), ERRNO | libc::EPERM as u32);
        // socket: any family but vsock.
        assert_eq!(call(x86_64, libc::SYS_socket, libc::AF_INET as u64), ALLOW);
        assert_eq!(call(x86_64, libc::SYS_socket, libc::AF_UNIX as u64), ALLOW);
        assert_eq!(call(x86_64, libc::SYS_socket, AF_VSOCK), ERRNO | libc::EPERM as u32);
        // Reading the clock's adjustment is allowed (setting it needs CAP_SYS_TIME).
        assert_eq!(call(x86_64, libc::SYS_clock_adjtime, 0), ALLOW);
        // personality: the query and the Linux domains only.
        assert_eq!(call(x86_64, libc::SYS_personality, 0xffff_ffff), ALLOW);
        assert_eq!(call(x86_64, libc::SYS_personality, 0x0040_0000), ERRNO | libc::ENOSYS as u32);
        // Another architecture's calls are not this program's business: killed.
        assert_eq!(call(0xdead_beef, libc::SYS_read, 0) & 0xffff_0000, 0x8000_0000, "unknown arch");
    }
}
