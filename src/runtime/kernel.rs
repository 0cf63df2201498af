//! The seam between the runtime and the kernel: cgroup and `/proc` files, the freezer,
//! process liveness, and the mounts the runtime makes itself (overlay root filesystems). The
//! runtime goes through [`Kernel`], so cgroup discovery, freezing, usage, OOM detection and
//! mount plans are plain code that a unit test can hand a [`Fake`] (a v1, v2 or hybrid host,
//! a freezer that takes a while, a kernel that refuses a mount option) and check what was
//! done, in order.
//!
//! The container's own mounts inside its namespace stay with libcontainer.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The kernel's files, as the runtime uses them.
pub trait Kernel: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// A file as bytes (the mount table: mount points may have any name).
    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// The symlinks directly in `dir`: (name, target).
    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>>;
    /// Mounts a filesystem of type `fstype` from `source` at `target` with `data`.
    fn mount(&self, source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()>;
    /// Detaches the mount at `target`.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Makes the mount at `target` read-only, keeping its other flags (nosuid, noexec…).
    fn remount_read_only(&self, target: &Path) -> io::Result<()>;
    /// Whether `path` is the root of a mount.
    fn is_mount_root(&self, path: &Path) -> bool;
    /// Whether process `pid` exists on this host (and is not a zombie).
    fn alive(&self, pid: i32) -> bool;
    /// Whether the kernel changes a whole mount tree's attributes at once (`mount_setattr`,
    /// Linux 5.12+), which makes read-only binds read-only all the way down.
    fn has_mount_setattr(&self) -> bool;
}

impl<K: Kernel + ?Sized> Kernel for std::sync::Arc<K> {
    fn read(&self, path: &Path) -> io::Result<String> {
        (**self).read(path)
    }
    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        (**self).read_bytes(path)
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        (**self).write(path, value)
    }
    fn exists(&self, path: &Path) -> bool {
        (**self).exists(path)
    }
    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>> {
        (**self).links(dir)
    }
    fn mount(&self, source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
        (**self).mount(source, target, fstype, data)
    }
    fn unmount(&self, target: &Path) -> io::Result<()> {
        (**self).unmount(target)
    }
    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        (**self).remount_read_only(target)
    }
    fn is_mount_root(&self, path: &Path) -> bool {
        (**self).is_mount_root(path)
    }
    fn alive(&self, pid: i32) -> bool {
        (**self).alive(pid)
    }
    fn has_mount_setattr(&self) -> bool {
        (**self).has_mount_setattr()
    }
}

/// The real kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct Linux;

impl Kernel for Linux {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)?.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                out.push((e.file_name().to_string_lossy().into_owned(), target.to_string_lossy().into_owned()));
            }
        }
        out.sort();
        Ok(out)
    }

    fn mount(&self, source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
        nix::mount::mount(Some(source), target, Some(fstype), nix::mount::MsFlags::empty(), Some(data))
            .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        use nix::mount::MsFlags;
        use nix::sys::statvfs::FsFlags;
        // A bind remount replaces the mount's flags: the ones it has are given again.
        let have = nix::sys::statvfs::statvfs(target)?.flags();
        let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
            (FsFlags::ST_MANDLOCK, MsFlags::MS_MANDLOCK),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if have.contains(fs) {
                flags |= ms;
            }
        }
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(io::Error::from)
    }

    fn is_mount_root(&self, path: &Path) -> bool {
        // The kernel says whether a path is the root of a mount (Linux 5.8+): no need to read
        // the whole mount table, which is long on a host with many containers.
        use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, statx};
        if let Ok(st) = statx(rustix::fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
            && st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
        {
            return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
        }
        let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
        let path = path.to_string_lossy();
        mounts.lines().any(|l| l.split(' ').nth(4) == Some(path.as_ref()))
    }

    fn alive(&self, pid: i32) -> bool {
        crate::sys::alive(pid)
    }

    fn has_mount_setattr(&self) -> bool {
        static KNOWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *KNOWN.get_or_init(|| {
            // For a kernel whose call misbehaves (and to exercise the other way on any kernel).
            if std::env::var_os("LIFEBOAT_NO_MOUNT_SETATTR").is_some_and(|v| v == "1") {
                return false;
            }
            // An invalid call: a kernel that has the call refuses the arguments (EBADF,
            // EINVAL), one that does not answers ENOSYS. Nothing is changed either way.
            // SAFETY: a null path and attribute pointer with size 0 are never dereferenced.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    -1,
                    std::ptr::null::<libc::c_char>(),
                    0,
                    std::ptr::null::<u8>(),
                    0,
                )
            };
            !(rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
        })
    }
}

/// One mount a [`Fake`] kernel was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeMount {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
    pub data: String,
}

/// A kernel made of strings, for tests: files set up front, every write recorded in order,
/// and the freezers behaving as the kernel's do (a v1 `freezer.state` written `FROZEN` reads
/// back `FREEZING` for a while first, if asked; a v2 `cgroup.freeze` updates `cgroup.events`).
#[derive(Debug, Default)]
pub struct Fake {
    files: Mutex<BTreeMap<PathBuf, String>>,
    links: Mutex<BTreeMap<PathBuf, Vec<(String, String)>>>,
    writes: Mutex<Vec<(PathBuf, String)>>,
    /// How many reads of a freezer still say it is on its way.
    freezing_reads: Mutex<u32>,
    /// Mounts in place, in the order they were made.
    mounts: Mutex<Vec<FakeMount>>,
    /// Mount data options this kernel does not know (EINVAL, as an old kernel answers).
    unknown_options: Mutex<Vec<String>>,
    /// Processes that live.
    live: Mutex<Vec<i32>>,
    /// A kernel older than 5.12.
    no_mount_setattr: bool,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// Sets a file's content.
    pub fn file(self, path: impl Into<PathBuf>, content: &str) -> Fake {
        self.files.lock().expect("fake kernel").insert(path.into(), content.to_string());
        self
    }

    /// Adds a symlink `name -> target` in `dir`.
    pub fn link(self, dir: impl Into<PathBuf>, name: &str, target: &str) -> Fake {
        self.links.lock().expect("fake kernel").entry(dir.into()).or_default().push((name.into(), target.into()));
        self
    }

    /// A v1 freezer that reads back `FREEZING` this many times after a write.
    pub fn slow_freezer(self, reads: u32) -> Fake {
        *self.freezing_reads.lock().expect("fake kernel") = reads;
        self
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<(PathBuf, String)> {
        self.writes.lock().expect("fake kernel").clone()
    }

    /// A kernel that answers EINVAL to mount data carrying `option` (say `volatile`, which
    /// kernels before 5.10 do not know).
    pub fn without_mount_option(self, option: &str) -> Fake {
        self.unknown_options.lock().expect("fake kernel").push(option.to_string());
        self
    }

    /// A kernel before 5.12, without `mount_setattr`.
    pub fn without_mount_setattr(mut self) -> Fake {
        self.no_mount_setattr = true;
        self
    }

    /// A process that lives.
    pub fn process(self, pid: i32) -> Fake {
        self.live.lock().expect("fake kernel").push(pid);
        self
    }

    /// The process ends.
    pub fn end_process(&self, pid: i32) {
        self.live.lock().expect("fake kernel").retain(|p| *p != pid);
    }

    /// The mounts in place, in the order they were made.
    pub fn mounts(&self) -> Vec<FakeMount> {
        self.mounts.lock().expect("fake kernel").clone()
    }
}

impl Kernel for Fake {
    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        let content = self.files.lock().expect("fake kernel").get(path).cloned();
        content
            .map(String::into_bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        let content = self.files.lock().expect("fake kernel").get(path).cloned();
        let content = content.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))?;
        let mut freezing = self.freezing_reads.lock().expect("fake kernel");
        if path.ends_with("freezer.state") && content.trim() == "FROZEN" && *freezing > 0 {
            *freezing -= 1;
            return Ok("FREEZING\n".into());
        }
        Ok(content)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut files = self.files.lock().expect("fake kernel");
        if !files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, path.display().to_string()));
        }
        self.writes.lock().expect("fake kernel").push((path.to_path_buf(), value.to_string()));
        files.insert(path.to_path_buf(), value.to_string());
        if path.ends_with("cgroup.freeze")
            && let Some(dir) = path.parent()
        {
            files.insert(dir.join("cgroup.events"), format!("populated 1\nfrozen {}\n", value.trim()));
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let files = self.files.lock().expect("fake kernel");
        files.contains_key(path) || files.keys().any(|p| p.starts_with(path))
    }

    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>> {
        Ok(self.links.lock().expect("fake kernel").get(dir).cloned().unwrap_or_default())
    }

    fn mount(&self, source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
        let unknown = self.unknown_options.lock().expect("fake kernel");
        if data.split(',').any(|o| unknown.iter().any(|u| u == o)) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut mounts = self.mounts.lock().expect("fake kernel");
        if mounts.iter().any(|m| m.target == target) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        mounts.push(FakeMount {
            source: source.into(),
            target: target.into(),
            fstype: fstype.into(),
            data: data.into(),
        });
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        let mut mounts = self.mounts.lock().expect("fake kernel");
        let before = mounts.len();
        mounts.retain(|m| m.target != target);
        if mounts.len() == before {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        let mut mounts = self.mounts.lock().expect("fake kernel");
        let m =
            mounts.iter_mut().rev().find(|m| m.target == target).ok_or(io::Error::from_raw_os_error(libc::EINVAL))?;
        m.data.push_str(",ro");
        Ok(())
    }

    fn is_mount_root(&self, path: &Path) -> bool {
        self.mounts.lock().expect("fake kernel").iter().any(|m| m.target == path)
    }

    fn alive(&self, pid: i32) -> bool {
        self.live.lock().expect("fake kernel").contains(&pid)
    }

    fn has_mount_setattr(&self) -> bool {
        !self.no_mount_setattr
    }
}
