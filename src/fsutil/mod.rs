//! Small filesystem helpers shared by the stores: atomic writes, advisory locks, random names,
//! and [`scope`]: paths resolved inside a directory (a container's root, a layer, a context).
//!
//! Everything that gives a file its final name goes through `write_atomic` or `persist`:
//! write to a temporary name in the same directory, fsync, rename, fsync the directory.
//! Nothing half-written ever has a final name.

pub mod scope;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Writes a new file at `path` atomically and durably, its content written by `fill`.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    write_atomic_with_mode(path, 0o644, fill)
}

/// The directory a path names its file in: `.` for a bare file name.
pub fn parent_dir(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(io::Error::other(format!("{} has no parent directory", path.display()))),
    }
}

/// [`write_atomic_with`], the file created with `mode` (before the umask).
pub fn write_atomic_with_mode(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent_dir(path)?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name(path), random_hex(8)));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        persist(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically but without forcing it to disk: readers never see a
/// partial file, but a power cut may lose the update. For live state that is rewritten often
/// and worthless after a reboot (container state, generated runtime files).
pub fn write_atomic_volatile(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path)?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name(path), random_hex(8)));
    let result = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and its parents) and makes it readable by its owner only (0700), so that
/// other local users reach nothing under it: images hold setuid files and device nodes,
/// volumes and layers hold service data.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    dir_with_mode(dir, 0o700)
}

/// Creates `dir` and gives it `mode` (when it has another).
pub fn dir_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fs::create_dir_all(dir)?;
    if fs::metadata(dir)?.mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Renames a fully written and synced temporary file to its final name and syncs the directory.
pub fn persist(tmp: &Path, path: &Path) -> io::Result<()> {
    fs::rename(tmp, path)?;
    sync_dir(parent_dir(path)?)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// What a tree holds: its regular files, their bytes (apparent sizes), and the disk space it
/// takes (`du`'s count: allocated blocks, each hard-linked file once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeSize {
    pub files: u64,
    pub bytes: u64,
    pub disk: u64,
}

/// Counts a tree, walked by directory descriptor, links not followed. A missing tree holds
/// nothing; what vanishes during the walk is skipped.
pub fn tree_size(path: &Path) -> io::Result<TreeSize> {
    use std::os::fd::AsFd;
    fn walk(
        dir: std::os::fd::BorrowedFd<'_>,
        seen: &mut std::collections::HashSet<(u64, u64)>,
        depth: usize,
        out: &mut TreeSize,
    ) -> io::Result<()> {
        if depth > 4096 {
            return Err(io::Error::other("directory tree nested too deep"));
        }
        for name in scope::list_dir(dir)? {
            let Ok(st) = scope::stat_beneath(dir, &name) else { continue };
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            if kind == rustix::fs::FileType::RegularFile {
                out.files += 1;
                out.bytes += st.st_size as u64;
            }
            if st.st_nlink > 1 && !seen.insert((st.st_dev, st.st_ino)) {
                continue;
            }
            out.disk += st.st_blocks as u64 * 512;
            if kind == rustix::fs::FileType::Directory
                && let Ok(sub) = scope::open_dir_beneath(dir, &name)
            {
                walk(sub.as_fd(), seen, depth + 1, out)?;
            }
        }
        Ok(())
    }
    let top = match rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(TreeSize::default()),
        Err(e) => return Err(e.into()),
    };
    let mut out = TreeSize::default();
    walk(top.as_fd(), &mut std::collections::HashSet::new(), 0, &mut out)?;
    Ok(out)
}

/// The disk space a tree takes (see [`tree_size`]).
pub fn disk_usage(path: &Path) -> io::Result<u64> {
    Ok(tree_size(path)?.disk)
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the kernel's random source is unavailable");
    hex::encode(buf)
}

/// A random number (sampling, jitter; not for keys).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the kernel's random source is unavailable");
    u64::from_le_bytes(b)
}

/// An advisory lock (flock) held until dropped. Shared locks coexist; an exclusive one waits
/// for all others. The kernel releases it if the process dies, so a crash never leaves a
/// stale lock behind.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn shared(path: &Path) -> io::Result<FileLock> {
        Self::take(path, rustix::fs::FlockOperation::LockShared)
    }
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        Self::take(path, rustix::fs::FlockOperation::LockExclusive)
    }
    fn take(path: &Path, op: rustix::fs::FlockOperation) -> io::Result<FileLock> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A temporary path (file or directory) that is removed when dropped unless `keep` was called.
#[derive(Debug)]
pub struct TempPath {
    path: Option<PathBuf>,
}

impl TempPath {
    pub fn new(path: PathBuf) -> TempPath {
        TempPath { path: Some(path) }
    }
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("temporary path used after keep()")
    }
    /// Stops the cleanup; the caller has moved or adopted the path.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().expect("temporary path kept twice")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let result = match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
                Ok(_) => fs::remove_file(&p),
                Err(_) => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove temporary path");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn disk_usage_counts_blocks_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(super::disk_usage(&dir.path().join("missing")).unwrap(), 0);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/big"), vec![7u8; 1 << 20]).unwrap();
        let one = super::disk_usage(dir.path()).unwrap();
        assert!(one >= 1 << 20, "{one}");
        std::fs::hard_link(dir.path().join("sub/big"), dir.path().join("again")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
        let linked = super::disk_usage(dir.path()).unwrap();
        assert!(linked < one + (64 << 10), "a hard link counted twice, or a symlink followed: {one} → {linked}");
    }

    use super::*;

    /// `save -o website.tar`: a bare file name is written in the current directory (its
    /// directory, "", was once synced as a path and failed with ENOENT after the write).
    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("website.tar")).unwrap(), Path::new("."));
        assert_eq!(parent_dir(Path::new("out/website.tar")).unwrap(), Path::new("out"));
        assert_eq!(parent_dir(Path::new("/website.tar")).unwrap(), Path::new("/"));
        assert!(parent_dir(Path::new("/")).is_err());
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_path_cleans_up_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::create_dir_all(a.join("sub")).unwrap();
        drop(TempPath::new(a.clone()));
        assert!(!a.exists());
        let b = dir.path().join("b");
        fs::write(&b, b"x").unwrap();
        let kept = TempPath::new(b.clone()).keep();
        assert!(kept.exists());
    }
}
