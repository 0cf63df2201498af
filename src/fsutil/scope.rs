//! Paths resolved inside a directory as if it were `/`: a container's root filesystem, an image
//! layer, a build context, a volume.
//!
//! Every lookup starts from a descriptor of the scope's directory and is resolved by the kernel
//! with `openat2(RESOLVE_IN_ROOT)`: an absolute symlink, a `..` or an absolute path in the
//! request lands inside the scope, never on the host. Kernels without `openat2` (before 5.6)
//! get the same rules from a walk that opens one component at a time with `O_NOFOLLOW` and
//! expands symlinks itself. Nothing here joins strings onto a host path and then follows it.
//!
//! Descriptors returned by a scope stay valid when the tree changes under them; to hand one to
//! code that takes paths, [`fd_path`] names it through `/proc/self/fd` (a name that always
//! means that descriptor's directory, wherever it has moved).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// How many symlinks one lookup may expand (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// A directory whose paths are resolved inside it.
#[derive(Debug)]
pub struct Scope {
    fd: OwnedFd,
    path: PathBuf,
}

/// `/proc/self/fd/N`: a path for an open descriptor, for code that takes paths. The kernel
/// resolves it to the descriptor's own file, so a rename or a swapped symlink above it changes
/// nothing.
pub fn fd_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// Opens `name` in `dir` without following it if it is a symlink.
pub fn open_beneath(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, name, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens regular file `name` in `dir` for reading. Anything else there (a symlink, a device
/// node, a FIFO a live tree swapped in after it was listed) is refused without being opened
/// for I/O: opening a device can have effects, and a FIFO would block.
pub fn open_regular(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let fd = open_beneath(dir, name, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::PATH)?;
    regular(fd)
}

/// Reopens an `O_PATH` descriptor for reading if it is a regular file.
fn regular(fd: OwnedFd) -> io::Result<OwnedFd> {
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    Ok(rustix::fs::open(fd_path(&fd), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Opens directory `name` in `dir` for reading, refusing a symlink.
pub fn open_dir_beneath(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    open_beneath(dir, name, OFlags::RDONLY | OFlags::DIRECTORY)
}

/// The metadata of `name` in `dir`, not following a symlink.
pub fn stat_beneath(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The names in an open directory, sorted bytewise, without `.` and `..`.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // A fresh descriptor: reading a directory moves its position.
    let fd = rustix::fs::openat(dir, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::new(fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// An entry [`merge_into`] left where it was, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Left {
    pub path: PathBuf,
    pub why: String,
}

/// What [`merge_into`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Merged {
    /// Entries moved into place (a directory that was missing counts once, with its content).
    pub placed: u64,
    /// Entries that replaced what was there (with `overwrite`).
    pub replaced: u64,
    /// Entries left as they were: something is there already (without `overwrite`), it is a
    /// mount point, or one side is a directory and the other not.
    pub kept: u64,
    /// The first hundred of them.
    pub kept_paths: Vec<Left>,
    /// Entries that could not be moved into place (say, onto another filesystem), with why;
    /// the others were.
    pub failed: Vec<Left>,
}

/// How many kept entries a merge lists by path.
const KEPT_LISTED: usize = 100;

impl Merged {
    fn keep(&mut self, path: PathBuf, why: &str) {
        self.kept += 1;
        if self.kept_paths.len() < KEPT_LISTED {
            self.kept_paths.push(Left { path, why: why.into() });
        }
    }

    /// Adds what another merge did, its paths taken as below `under`.
    pub fn absorb(&mut self, other: Merged, under: &Path) {
        self.placed += other.placed;
        self.replaced += other.replaced;
        self.kept += other.kept;
        let room = KEPT_LISTED.saturating_sub(self.kept_paths.len());
        let moved = |l: Left| Left { path: under.join(l.path), why: l.why };
        self.kept_paths.extend(other.kept_paths.into_iter().take(room).map(moved));
        self.failed.extend(other.failed.into_iter().map(moved));
    }
}

/// Moves everything in directory `from` into directory `to`, by renames only (both must be on
/// one filesystem): what `to` lacks is moved in; directories on both sides are merged; any
/// other entry already in `to` is kept, or with `overwrite` exchanged with the new one (the old
/// one lands in `from`, to be removed with it) — unless one of the two is a directory and the
/// other not (a whole directory is never swapped away for a file) or it is a mount point: those
/// are kept. Names are taken one at a time, never following a symlink, so nothing in `to` can
/// lead the merge elsewhere. An entry that cannot be moved is listed in `failed` and the merge
/// goes on with the next one.
pub fn merge_into(from: BorrowedFd<'_>, to: BorrowedFd<'_>, overwrite: bool) -> io::Result<Merged> {
    let mut out = Merged::default();
    merge_level(from, to, overwrite, Path::new(""), &mut out)?;
    Ok(out)
}

/// Whether `name` in `dir` is the root of a mount (a bind-mounted file or directory, a tmpfs).
pub(crate) fn is_mount_root(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    use rustix::fs::{StatxAttributes, StatxFlags};
    match rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
        Ok(st) => {
            st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(_) => false,
    }
}

fn merge_level(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    overwrite: bool,
    at: &Path,
    out: &mut Merged,
) -> io::Result<()> {
    use rustix::fs::{FileType, RenameFlags, renameat_with};
    for name in list_dir(from)? {
        let path = at.join(&name);
        let fail =
            |out: &mut Merged, e: rustix::io::Errno| out.failed.push(Left { path: path.clone(), why: e.to_string() });
        let new = match rustix::fs::statat(from, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                fail(out, e);
                continue;
            }
        };
        let old = match rustix::fs::statat(to, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => {
                match renameat_with(from, &name, to, &name, RenameFlags::NOREPLACE) {
                    Ok(()) => out.placed += 1,
                    Err(e) => fail(out, e),
                }
                continue;
            }
            Err(e) => {
                fail(out, e);
                continue;
            }
            Ok(st) => st,
        };
        if is_mount_root(to, &name) {
            out.keep(path, "a mount point in the container");
            continue;
        }
        let is_dir = |st: &Stat| FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        match (is_dir(&new), is_dir(&old)) {
            (true, true) => {
                let (sub_from, sub_to) = match (open_dir_beneath(from, &name), open_dir_beneath(to, &name)) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => {
                        out.failed.push(Left { path: path.clone(), why: e.to_string() });
                        continue;
                    }
                };
                merge_level(sub_from.as_fd(), sub_to.as_fd(), overwrite, &path, out)?;
                if overwrite {
                    // The directory as the snapshot had it: owner, then mode, then times.
                    let _ = rustix::fs::fchown(
                        &sub_to,
                        Some(rustix::fs::Uid::from_raw(new.st_uid)),
                        Some(rustix::fs::Gid::from_raw(new.st_gid)),
                    );
                    let _ = rustix::fs::fchmod(&sub_to, Mode::from_raw_mode(new.st_mode & 0o7777));
                    let t = rustix::fs::Timespec { tv_sec: new.st_mtime, tv_nsec: new.st_mtime_nsec as _ };
                    let _ =
                        rustix::fs::futimens(&sub_to, &rustix::fs::Timestamps { last_access: t, last_modification: t });
                }
            }
            (false, false) if overwrite => match renameat_with(from, &name, to, &name, RenameFlags::EXCHANGE) {
                Ok(()) => out.replaced += 1,
                Err(e) => fail(out, e),
            },
            (false, false) => out.keep(path, "exists"),
            (true, false) => out.keep(path, "not a directory here"),
            (false, true) => out.keep(path, "a directory here"),
        }
    }
    Ok(())
}

/// The clean components of a path inside a scope: `.` dropped, `/` meaning the scope's root.
/// `..` is kept: resolution clamps it at the root.
fn components(rel: &Path) -> Vec<&OsStr> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect()
}

impl Scope {
    /// The directory at `path` (a host path the caller trusts, e.g. a store's own directory).
    pub fn open(path: &Path) -> io::Result<Scope> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", path.display())))?;
        Ok(Scope { fd, path: path.to_path_buf() })
    }

    /// The host path the scope was opened at (for messages; never for lookups).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `rel` (symlinks followed, inside the scope) with `flags`.
    pub fn open_at(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        self.resolve(rel, flags, true)
    }

    /// Opens `rel`; if its last component is a symlink, that symlink itself is not followed
    /// (the open fails with ELOOP unless `flags` has `O_PATH`).
    pub fn open_nofollow(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        self.resolve(rel, flags, false)
    }

    /// The regular file at `rel`, opened for reading (symlinks followed inside the scope).
    /// Anything else (a device node, a FIFO) is refused without being opened for I/O.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        Ok(File::from(regular(self.open_at(rel, OFlags::PATH)?)?))
    }

    /// The whole content of regular file `rel`, refused beyond `limit` bytes (these are small
    /// configuration files of images and contexts: `/etc/passwd`, `.dockerignore`).
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        const LIMIT: u64 = 16 << 20;
        let mut out = Vec::new();
        self.open_file(rel)?.take(LIMIT + 1).read_to_end(&mut out)?;
        if out.len() as u64 > LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: larger than {} MiB", rel.display(), LIMIT >> 20),
            ));
        }
        Ok(out)
    }

    /// The content of `rel` as text.
    pub fn read_to_string(&self, rel: &Path) -> io::Result<String> {
        String::from_utf8(self.read(rel)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The directory at `rel`, opened for reading and walking (symlinks followed inside).
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// The metadata of `rel`; `follow` says whether a symlink at its end is followed.
    pub fn stat(&self, rel: &Path, follow: bool) -> io::Result<Stat> {
        let fd = self.resolve(rel, OFlags::PATH, follow)?;
        Ok(rustix::fs::fstat(&fd)?)
    }

    /// The target of symlink `rel` (its own, not what it points to).
    pub fn read_link(&self, rel: &Path) -> io::Result<PathBuf> {
        let (dir, name) = self.parent(rel, None)?;
        let target = rustix::fs::readlinkat(&dir, name.as_os_str(), Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// Whether `rel` exists (not following a symlink at its end).
    pub fn exists(&self, rel: &Path) -> bool {
        self.stat(rel, false).is_ok()
    }

    /// The directory containing `rel` (resolved inside the scope, created with `mode` if
    /// `create`) and the last component's name. `rel` must name something below the root.
    pub fn parent(&self, rel: &Path, create: Option<u32>) -> io::Result<(OwnedFd, OsString)> {
        let parts = components(rel);
        let Some((name, dirs)) = parts.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the root of a scope has no parent"));
        };
        if *name == ".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: ends in '..'", rel.display())));
        }
        let dir: PathBuf = dirs.iter().collect();
        let fd = match create {
            Some(mode) => self.mkdir_all(&dir, mode)?,
            None => self.open_dir(&dir)?,
        };
        Ok((fd, name.to_os_string()))
    }

    /// Creates `rel` and its missing parents (each with `mode`), inside the scope, and opens
    /// it. An existing symlink on the way is followed inside the scope, and what it points to
    /// is created if missing, as a shell's `mkdir -p` in a chroot would.
    pub fn mkdir_all(&self, rel: &Path, mode: u32) -> io::Result<OwnedFd> {
        self.walk(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, true, Some(mode))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", rel.display())))
    }

    /// Resolves `rel` from the scope's root.
    fn resolve(&self, rel: &Path, flags: OFlags, follow: bool) -> io::Result<OwnedFd> {
        let flags = flags | OFlags::CLOEXEC | if follow { OFlags::empty() } else { OFlags::NOFOLLOW };
        let clean: PathBuf = components(rel).into_iter().collect();
        let target = if clean.as_os_str().is_empty() { Path::new(".") } else { clean.as_path() };
        if !self.has_openat2() {
            return self.walk(rel, flags, follow, None);
        }
        for _ in 0..8 {
            match rustix::fs::openat2(
                &self.fd,
                target,
                flags,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                // The kernel saw a rename race and asks to try again.
                Err(Errno::AGAIN) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
        self.walk(rel, flags, follow, None)
    }

    /// Whether this process may call `openat2`: kernels before 5.6 lack it (ENOSYS), and a
    /// seccomp profile that does not know it may refuse it (EPERM). Asked once per process.
    fn has_openat2(&self) -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            let probe = rustix::fs::openat2(
                &self.fd,
                ".",
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            );
            !matches!(probe, Err(Errno::NOSYS | Errno::PERM))
        })
    }

    /// The same resolution as `openat2(RESOLVE_IN_ROOT)`, one component at a time; with
    /// `create`, every missing directory on the way (a link's target included) is made with
    /// that mode.
    fn walk(&self, rel: &Path, flags: OFlags, follow: bool, create: Option<u32>) -> io::Result<OwnedFd> {
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // The directories from the scope's root down to the current one: `..` pops.
        let mut stack: Vec<OwnedFd> = vec![rustix::fs::openat(&self.fd, c".", dir_flags, Mode::empty())?];
        let mut pending: Vec<OsString> = components(rel).into_iter().rev().map(OsStr::to_os_string).collect();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            let last = pending.is_empty();
            if part == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack.last().expect("the root is never popped").as_fd();
            let st = match (rustix::fs::statat(dir, &part, AtFlags::SYMLINK_NOFOLLOW), create) {
                (Err(Errno::NOENT), Some(mode)) => {
                    match rustix::fs::mkdirat(dir, &part, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::statat(dir, &part, AtFlags::SYMLINK_NOFOLLOW)?
                }
                (st, _) => st?,
            };
            let is_link = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink;
            if is_link && (!last || follow) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(dir, &part, Vec::new())?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    stack.truncate(1);
                }
                pending.extend(components(&target).into_iter().rev().map(OsStr::to_os_string));
                continue;
            }
            if last {
                return Ok(rustix::fs::openat(dir, &part, flags | OFlags::NOFOLLOW, Mode::empty())?);
            }
            stack.push(rustix::fs::openat(dir, &part, dir_flags | OFlags::NOFOLLOW, Mode::empty())?);
        }
        // The path named a directory on the stack (or the root itself).
        let dir = stack.last().expect("the root is never popped");
        Ok(rustix::fs::openat(dir, c".", flags & !OFlags::NOFOLLOW, Mode::empty())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_merge_places_what_is_missing_keeps_what_exists_and_never_swaps_a_directory_away() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        for d in [&from, &to] {
            fs::create_dir_all(d.join("www/sub")).unwrap();
        }
        fs::write(from.join("www/page.html"), "restored").unwrap();
        fs::write(from.join("www/index.html"), "snapshot").unwrap();
        fs::write(to.join("www/index.html"), "written since").unwrap();
        fs::write(from.join("www/sub/new.txt"), "new").unwrap();
        fs::create_dir_all(from.join("www/newdir/deep")).unwrap();
        // The snapshot has a file where the live tree now has a directory of work, and a
        // directory where it has a file.
        fs::write(from.join("www/uploads"), "was a file").unwrap();
        fs::create_dir_all(to.join("www/uploads")).unwrap();
        fs::write(to.join("www/uploads/today.jpg"), "precious").unwrap();
        fs::create_dir_all(from.join("www/cache")).unwrap();
        fs::write(to.join("www/cache"), "a file now").unwrap();
        // A symlink in the live tree is never followed.
        symlink("/etc", to.join("www/etc")).unwrap();
        fs::create_dir_all(from.join("www/etc")).unwrap();
        fs::write(from.join("www/etc/passwd"), "x").unwrap();
        let open = |p: &Path| rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let m = merge_into(open(&from).as_fd(), open(&to).as_fd(), false).unwrap();
        assert_eq!(fs::read_to_string(to.join("www/page.html")).unwrap(), "restored");
        assert_eq!(fs::read_to_string(to.join("www/index.html")).unwrap(), "written since");
        assert_eq!(fs::read_to_string(to.join("www/sub/new.txt")).unwrap(), "new");
        assert!(to.join("www/newdir/deep").is_dir());
        assert_eq!((m.placed, m.replaced, m.kept), (3, 0, 4), "{m:?}");
        assert!(m.kept_paths.iter().any(|l| l.path == Path::new("www/index.html") && l.why == "exists"));
        assert!(m.failed.is_empty());
        // With overwrite: files are exchanged, a directory is never swapped for a file or the
        // other way round, and a symlink is not followed.
        let m = merge_into(open(&from).as_fd(), open(&to).as_fd(), true).unwrap();
        assert_eq!(fs::read_to_string(to.join("www/index.html")).unwrap(), "snapshot");
        assert_eq!(fs::read_to_string(to.join("www/uploads/today.jpg")).unwrap(), "precious");
        assert_eq!(fs::read_to_string(to.join("www/cache")).unwrap(), "a file now");
        assert!(fs::symlink_metadata(to.join("www/etc")).unwrap().file_type().is_symlink());
        assert_eq!(
            fs::read_to_string(from.join("www/index.html")).unwrap(),
            "written since",
            "the old one went to the stage"
        );
        assert_eq!((m.replaced, m.kept), (1, 3), "{m:?}");
    }

    /// A scope with hostile links, and a "host" file outside it.
    fn hostile() -> (tempfile::TempDir, PathBuf, Scope) {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        fs::create_dir_all(host.join("etc")).unwrap();
        fs::write(host.join("etc/shadow"), "host secret").unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "inside").unwrap();
        symlink(host.join("etc"), root.join("abs")).unwrap();
        symlink("../../host/etc", root.join("rel")).unwrap();
        symlink("/etc/passwd", root.join("passwd-link")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let scope = Scope::open(&root).unwrap();
        (dir, host, scope)
    }

    fn check_resolution(scope: &Scope) {
        // Absolute and relative links out of the root land inside it.
        assert_eq!(scope.read_to_string(Path::new("passwd-link")).unwrap(), "inside");
        assert_eq!(scope.read_to_string(Path::new("/etc/passwd")).unwrap(), "inside");
        assert_eq!(scope.read_to_string(Path::new("../../etc/passwd")).unwrap(), "inside");
        for p in ["abs/shadow", "rel/shadow", "/../host/etc/shadow"] {
            let e = scope.read(Path::new(p)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{p}: {e}");
        }
        assert_eq!(scope.read(Path::new("loop1")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        // Not following the last link: its own metadata.
        let st = scope.stat(Path::new("abs"), false).unwrap();
        assert_eq!(rustix::fs::FileType::from_raw_mode(st.st_mode), rustix::fs::FileType::Symlink);
        assert!(scope.stat(Path::new("abs"), true).is_err());
    }

    #[test]
    fn links_and_dot_dots_never_leave_the_scope() {
        let (_dir, host, scope) = hostile();
        check_resolution(&scope);
        // Directories made through a link out of the root are made inside it: the link's
        // target is created there, as in a chroot.
        scope.mkdir_all(Path::new("abs/made"), 0o755).unwrap();
        assert!(!host.join("etc/made").exists());
        let inside = scope.path().join(host.strip_prefix("/").unwrap()).join("etc/made");
        assert!(inside.is_dir(), "{} was not made", inside.display());
        symlink("/etc", scope.path().join("etc-link")).unwrap();
        scope.mkdir_all(Path::new("etc-link/sub/deeper"), 0o755).unwrap();
        assert!(scope.path().join("etc/sub/deeper").is_dir());
        assert_eq!(fs::read_to_string(host.join("etc/shadow")).unwrap(), "host secret");
    }

    #[test]
    fn the_component_walk_resolves_as_the_kernel_does() {
        let (_dir, _host, scope) = hostile();
        let read = |p: &str| -> io::Result<String> {
            let fd = scope.walk(Path::new(p), OFlags::RDONLY | OFlags::CLOEXEC, true, None)?;
            let mut s = String::new();
            File::from(fd).read_to_string(&mut s)?;
            Ok(s)
        };
        assert_eq!(read("passwd-link").unwrap(), "inside");
        assert_eq!(read("/../../etc/passwd").unwrap(), "inside");
        assert_eq!(read("abs/shadow").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(read("rel/shadow").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(read("loop1").unwrap_err().raw_os_error(), Some(libc::ELOOP));
        let link = scope.walk(Path::new("abs"), OFlags::PATH | OFlags::CLOEXEC, false, None).unwrap();
        let st = rustix::fs::fstat(&link).unwrap();
        assert_eq!(rustix::fs::FileType::from_raw_mode(st.st_mode), rustix::fs::FileType::Symlink);
    }

    #[test]
    fn only_regular_files_are_opened_for_reading() {
        let (_dir, _host, scope) = hostile();
        let root = scope.path().to_path_buf();
        let node = |name: &str, kind, dev| {
            rustix::fs::mknodat(rustix::fs::CWD, root.join(name), kind, Mode::from_raw_mode(0o600), dev).unwrap()
        };
        node("fifo", rustix::fs::FileType::Fifo, 0);
        node("zero", rustix::fs::FileType::CharacterDevice, rustix::fs::makedev(1, 5));
        // A FIFO would block a reader, a device would be read as root: neither is opened.
        for name in ["fifo", "zero", "passwd-link-missing"] {
            assert!(scope.read(Path::new(name)).is_err(), "{name} was read");
        }
        let dir = scope.open_dir(Path::new("")).unwrap();
        for name in ["fifo", "zero", "passwd-link", "etc"] {
            assert!(open_regular(dir.as_fd(), OsStr::new(name)).is_err(), "{name} was opened");
        }
        assert!(open_regular(scope.open_dir(Path::new("etc")).unwrap().as_fd(), OsStr::new("passwd")).is_ok());
    }

    #[test]
    fn parents_are_resolved_inside_and_names_listed_sorted() {
        let (_dir, _host, scope) = hostile();
        // Without creating, a link whose target is missing inside the scope leads nowhere.
        assert!(scope.parent(Path::new("/abs/new-file"), None).is_err());
        symlink("/etc", scope.path().join("etc-link")).unwrap();
        let (dir, name) = scope.parent(Path::new("/etc-link/new-file"), Some(0o700)).unwrap();
        assert_eq!(name, "new-file");
        let listed = list_dir(dir.as_fd()).unwrap();
        assert_eq!(listed, ["passwd"]);
        let names = list_dir(scope.open_dir(Path::new("/")).unwrap().as_fd()).unwrap();
        assert_eq!(names.iter().map(|n| n.to_str().unwrap()).collect::<Vec<_>>()[..3], ["abs", "etc", "etc-link"]);
        assert!(scope.parent(Path::new("/"), None).is_err());
    }
}
