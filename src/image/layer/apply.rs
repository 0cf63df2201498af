//! Applying a layer (a tar stream) to a directory without ever leaving it.
//!
//! Every filesystem call is made relative to a directory descriptor that was reached from the
//! target root one component at a time with `O_NOFOLLOW`, so no symlink, absolute path or `..`
//! in the archive can make us create, change or remove anything outside the target. Entries
//! that try are refused with an error naming them; the caller throws the half-made target away.
//!
//! Whiteouts are either kept in overlayfs form (a 0/0 character device, the `trusted.overlay.
//! opaque` xattr), for layer directories that overlayfs stacks, or applied (deleted), for a
//! flattened root filesystem.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::time::Timespec;

use super::{LayerError, OPAQUE_WHITEOUT, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

/// What to do with OCI whiteout entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Keep them as overlayfs whiteouts, so the directory can be an overlay lower layer.
    Overlay,
    /// Delete what they name, producing a flattened tree.
    Apply,
    /// None: `.wh.` names are ordinary files (files copied in by `cp`, which are no layer).
    Literal,
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    /// Refuse a single file that claims more bytes than this (default: what the disk has free).
    pub max_file_size: Option<u64>,
    /// Give every entry this owner (user, group) instead of the archive's.
    pub owner: Option<(u32, u32)>,
    /// Refuse to replace a directory by a non-directory or the other way round (`cp`).
    pub keep_kinds: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { whiteouts: WhiteoutMode::Overlay, max_file_size: None, owner: None, keep_kinds: false }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: u64,
    /// Sum of regular file sizes (the apparent size of the unpacked layer).
    pub bytes: u64,
}

const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4095;
/// Below this size a file's claim is not checked against the free space (one statvfs per file
/// would cost more than it saves).
const SPACE_CHECK_MIN: u64 = 64 << 20;

/// Unpacks the tar stream `reader` into `target` (an existing directory).
pub fn apply_layer<R: Read>(reader: R, target: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    let root = rustix::fs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::Unpack { entry: String::new(), target: target.to_path_buf(), source: e.into() })?;
    let mut applier = Applier {
        root,
        target,
        opts,
        is_root: rustix::process::geteuid().is_root(),
        cached_parent: None,
        unpacked: HashSet::new(),
        dir_times: Vec::new(),
        stats: ApplyStats::default(),
        buf: vec![0; 256 * 1024],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| LayerError::Malformed { at: None, source: e })?;
    let mut last = None::<String>;
    for entry in entries {
        let entry = entry.map_err(|e| LayerError::Malformed { at: last.clone(), source: e })?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        applier.entry(entry, &name)?;
        last = Some(name);
    }
    applier.finish()?;
    Ok(applier.stats)
}

struct Applier<'a> {
    root: OwnedFd,
    target: &'a Path,
    opts: &'a ApplyOptions,
    is_root: bool,
    /// The directory of the previous entry: archives list a directory's files together.
    cached_parent: Option<(Vec<u8>, OwnedFd)>,
    /// Paths this layer created (an opaque whiteout in Apply mode spares them).
    unpacked: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    stats: ApplyStats,
    buf: Vec<u8>,
}

/// Splits an entry path into clean components, refusing absolute paths and `..`.
pub(crate) fn clean_path(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    if raw.len() > PATH_MAX {
        return Err(format!("path is {} bytes long, more than the {PATH_MAX} allowed", raw.len()));
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains '..'".into()),
            c if c.len() > NAME_MAX => {
                return Err(format!("a name in the path is {} bytes long, more than the {NAME_MAX} allowed", c.len()));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl Applier<'_> {
    fn unsafe_entry(name: &str, reason: impl Into<String>) -> LayerError {
        LayerError::Unsafe { entry: name.to_string(), reason: reason.into() }
    }

    fn io_err(&self, name: &str, source: impl Into<io::Error>) -> LayerError {
        let source = source.into();
        if source.raw_os_error() == Some(Errno::NOSPC.raw_os_error()) {
            return LayerError::Unpack {
                entry: name.to_string(),
                target: self.target.to_path_buf(),
                source: io::Error::new(io::ErrorKind::StorageFull, "no space left on device"),
            };
        }
        LayerError::Unpack { entry: name.to_string(), target: self.target.to_path_buf(), source }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>, name: &str) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.stats.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let comps = clean_path(&raw).map_err(|r| Self::unsafe_entry(name, r))?;
        let Some((&base, parents)) = comps.split_last() else {
            // "./": the target itself; only a directory may describe it.
            if kind.is_dir() {
                let meta =
                    Meta::read(&mut entry).map_err(|e| LayerError::Malformed { at: Some(name.into()), source: e })?;
                let root = self.root.try_clone().map_err(|e| self.io_err(name, e))?;
                self.set_meta(name, root.as_fd(), &meta)?;
                self.dir_times.push((Vec::new(), meta.times()));
                return Ok(());
            }
            return Err(Self::unsafe_entry(name, "entry replaces the target directory itself"));
        };

        // Whiteouts.
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes())
            && self.opts.whiteouts != WhiteoutMode::Literal
        {
            let parent = self.parent(name, parents, true)?;
            if base == OPAQUE_WHITEOUT.as_bytes() {
                return self.opaque(name, parents, parent.as_fd());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(Self::unsafe_entry(name, "whiteout of an invalid name"));
            }
            self.remove_all(name, parent.as_fd(), hidden)?;
            if self.opts.whiteouts == WhiteoutMode::Overlay {
                rustix::fs::mknodat(parent.as_fd(), hidden, FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| self.io_err(name, e))?;
                let joined = join(parents, hidden);
                self.unpacked.insert(joined);
            }
            return Ok(());
        }

        let meta = Meta::read(&mut entry).map_err(|e| LayerError::Malformed { at: Some(name.into()), source: e })?;
        let parent = self.parent(name, parents, true)?;
        let path = join(parents, base);
        let existing = rustix::fs::statat(parent.as_fd(), base, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir =
            existing.as_ref().is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() && !(kind.is_dir() && existing_is_dir) {
            // A copy (`cp`) never replaces a directory by something else or the other way
            // round, as Docker's refuses: what is at the target is the user's.
            if self.opts.keep_kinds && (existing_is_dir || kind.is_dir()) {
                let what =
                    if existing_is_dir { "a directory by a non-directory" } else { "a non-directory by a directory" };
                return Err(Self::unsafe_entry(name, format!("would replace {what}")));
            }
            self.remove_all(name, parent.as_fd(), base)?;
        }

        use tar::EntryType as T;
        match kind {
            T::Directory => {
                if !existing_is_dir {
                    rustix::fs::mkdirat(parent.as_fd(), base, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.io_err(name, e))?;
                }
                let dir = rustix::fs::openat(
                    parent.as_fd(),
                    base,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io_err(name, e))?;
                self.set_meta(name, dir.as_fd(), &meta)?;
                self.dir_times.push((path.clone(), meta.times()));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size();
                self.check_space(name, parent.as_fd(), size)?;
                let fd = rustix::fs::openat(
                    parent.as_fd(),
                    base,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.io_err(name, e))?;
                let mut file = File::from(fd);
                let written = copy_sparse(&mut entry, &mut file, &mut self.buf).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidData {
                        LayerError::Malformed { at: Some(name.into()), source: e }
                    } else {
                        self.io_err(name, e)
                    }
                })?;
                if written != size {
                    return Err(LayerError::Malformed {
                        at: Some(name.into()),
                        source: io::Error::new(io::ErrorKind::UnexpectedEof, "archive ends inside this file"),
                    });
                }
                self.stats.bytes += size;
                self.set_meta(name, file.as_fd(), &meta)?;
                rustix::fs::futimens(&file, &meta.times()).map_err(|e| self.io_err(name, e))?;
            }
            T::Symlink => {
                let target =
                    entry.link_name_bytes().ok_or_else(|| Self::unsafe_entry(name, "symlink without a target"))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), parent.as_fd(), base)
                    .map_err(|e| self.io_err(name, e))?;
                self.set_link_meta(name, parent.as_fd(), base, &meta)?;
            }
            T::Link => {
                let target =
                    entry.link_name_bytes().ok_or_else(|| Self::unsafe_entry(name, "hard link without a target"))?;
                let tcomps =
                    clean_path(&target).map_err(|r| Self::unsafe_entry(name, format!("hard link target: {r}")))?;
                let Some((&tbase, tparents)) = tcomps.split_last() else {
                    return Err(Self::unsafe_entry(name, "hard link to the target directory"));
                };
                let tparent = self.parent(name, tparents, false)?;
                rustix::fs::linkat(tparent.as_fd(), tbase, parent.as_fd(), base, AtFlags::empty()).map_err(|e| {
                    if e == Errno::NOENT {
                        Self::unsafe_entry(
                            name,
                            format!("hard link target {:?} is not in this layer", String::from_utf8_lossy(&target)),
                        )
                    } else {
                        self.io_err(name, e)
                    }
                })?;
            }
            T::Char | T::Block | T::Fifo => {
                let ft = match kind {
                    T::Char => FileType::CharacterDevice,
                    T::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if ft != FileType::Fifo && !self.is_root {
                    return Err(Self::unsafe_entry(name, "device nodes can only be created by root"));
                }
                let dev = rustix::fs::makedev(meta.dev_major, meta.dev_minor);
                rustix::fs::mknodat(parent.as_fd(), base, ft, Mode::from_raw_mode(0o600), dev).map_err(|e| {
                    if e == Errno::PERM {
                        Self::unsafe_entry(name, "not allowed to create device nodes here")
                    } else {
                        self.io_err(name, e)
                    }
                })?;
                self.set_link_meta(name, parent.as_fd(), base, &meta)?;
                chmod_at(parent.as_fd(), base, meta.mode).map_err(|e| self.io_err(name, e))?;
            }
            other => {
                return Err(Self::unsafe_entry(name, format!("unsupported entry type {other:?}")));
            }
        }
        self.unpacked.insert(path);
        Ok(())
    }

    /// The directory holding an entry, created (0755, like Docker) if missing when `create`.
    fn parent(&mut self, name: &str, comps: &[&[u8]], create: bool) -> Result<OwnedFd, LayerError> {
        let key = comps.join(&b'/');
        if let Some((k, fd)) = &self.cached_parent
            && *k == key
        {
            return fd.try_clone().map_err(|e| self.io_err(name, e));
        }
        let mut cur = self.root.try_clone().map_err(|e| self.io_err(name, e))?;
        for (i, &c) in comps.iter().enumerate() {
            let open = |dir: BorrowedFd<'_>| {
                rustix::fs::openat(
                    dir,
                    c,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            };
            let next = match open(cur.as_fd()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    rustix::fs::mkdirat(cur.as_fd(), c, Mode::from_raw_mode(0o755))
                        .map_err(|e| self.io_err(name, e))?;
                    open(cur.as_fd()).map_err(|e| self.io_err(name, e))?
                }
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let through = String::from_utf8_lossy(&comps[..=i].join(&b'/')).into_owned();
                    return Err(Self::unsafe_entry(
                        name,
                        format!("path goes through {through:?}, which is not a directory (a symlink?)"),
                    ));
                }
                Err(e) => return Err(self.io_err(name, e)),
            };
            cur = next;
        }
        let clone = cur.try_clone().map_err(|e| self.io_err(name, e))?;
        self.cached_parent = Some((key, clone));
        Ok(cur)
    }

    fn opaque(&mut self, name: &str, parents: &[&[u8]], dir: BorrowedFd<'_>) -> Result<(), LayerError> {
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => rustix::fs::fsetxattr(dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| self.io_err(name, e)),
            WhiteoutMode::Literal => Ok(()),
            WhiteoutMode::Apply => {
                // Hide everything below that did not come from this layer.
                let mut victims = Vec::new();
                let listing =
                    rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| self.io_err(name, e))?;
                for child in rustix::fs::Dir::new(listing).map_err(|e| self.io_err(name, e))? {
                    let child = child.map_err(|e| self.io_err(name, e))?;
                    let n = child.file_name().to_bytes();
                    if n == b"." || n == b".." {
                        continue;
                    }
                    if !self.unpacked.contains(&join(parents, n)) {
                        victims.push(n.to_vec());
                    }
                }
                for v in victims {
                    self.remove_all(name, dir, &v)?;
                }
                Ok(())
            }
        }
    }

    /// Removes `base` in `dir` (recursively, never following symlinks) if it exists.
    fn remove_all(&mut self, name: &str, dir: BorrowedFd<'_>, base: &[u8]) -> Result<(), LayerError> {
        self.cached_parent = None;
        remove_all_at(dir, base).map_err(|e| self.io_err(name, e))
    }

    fn check_space(&self, name: &str, dir: BorrowedFd<'_>, size: u64) -> Result<(), LayerError> {
        if let Some(max) = self.opts.max_file_size
            && size > max
        {
            return Err(Self::unsafe_entry(name, format!("file claims {size} bytes, more than the {max} allowed")));
        }
        if size >= SPACE_CHECK_MIN {
            let vfs = rustix::fs::fstatvfs(dir).map_err(|e| self.io_err(name, e))?;
            let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
            if size > free {
                return Err(Self::unsafe_entry(
                    name,
                    format!("file claims {size} bytes, more than the {free} free on the target"),
                ));
            }
        }
        Ok(())
    }

    fn owner(&self, meta: &Meta) -> (rustix::fs::Uid, rustix::fs::Gid) {
        match self.opts.owner {
            Some((u, g)) => (uid(u.into()), gid(g.into())),
            None => (uid(meta.uid), gid(meta.gid)),
        }
    }

    fn set_meta(&self, name: &str, fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), LayerError> {
        if self.is_root {
            let (u, g) = self.owner(meta);
            rustix::fs::fchown(fd, Some(u), Some(g)).map_err(|e| self.io_err(name, e))?;
        }
        // After chown, which clears set-id bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| self.io_err(name, e))?;
        for (k, v) in &meta.xattrs {
            if let Err(e) = rustix::fs::fsetxattr(fd, k.as_str(), v, XattrFlags::empty()) {
                // Filesystems without xattr support, or names a non-root user may not set.
                tracing::debug!(entry = name, xattr = k.as_str(), error = %e, "xattr not set");
            }
        }
        Ok(())
    }

    fn set_link_meta(&self, name: &str, dir: BorrowedFd<'_>, base: &[u8], meta: &Meta) -> Result<(), LayerError> {
        if self.is_root {
            let (u, g) = self.owner(meta);
            rustix::fs::chownat(dir, base, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.io_err(name, e))?;
        }
        rustix::fs::utimensat(dir, base, &meta.times(), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| self.io_err(name, e))
    }

    /// Directory times last, since creating entries inside a directory changes its mtime.
    fn finish(&mut self) -> Result<(), LayerError> {
        let times = std::mem::take(&mut self.dir_times);
        for (path, t) in times.iter().rev() {
            let name = String::from_utf8_lossy(path).into_owned();
            let fd = if path.is_empty() {
                self.root.try_clone().map_err(|e| self.io_err(&name, e))?
            } else {
                match rustix::fs::openat2(
                    self.root.as_fd(),
                    OsStr::from_bytes(path),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    rustix::fs::ResolveFlags::BENEATH | rustix::fs::ResolveFlags::NO_SYMLINKS,
                ) {
                    Ok(fd) => fd,
                    // Removed or replaced by a later entry of the same layer.
                    Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                    Err(e) => return Err(self.io_err(&name, e)),
                }
            };
            rustix::fs::futimens(&fd, t).map_err(|e| self.io_err(&name, e))?;
        }
        Ok(())
    }
}

fn uid(n: u64) -> rustix::fs::Uid {
    // Ids above u32::MAX cannot exist on Linux; such an entry gets "nobody".
    rustix::fs::Uid::from_raw(u32::try_from(n).unwrap_or(65534))
}
fn gid(n: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(u32::try_from(n).unwrap_or(65534))
}

fn join(parents: &[&[u8]], base: &[u8]) -> Vec<u8> {
    let mut v = parents.join(&b'/');
    if !v.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(base);
    v
}

fn chmod_at(dir: BorrowedFd<'_>, base: &[u8], mode: u32) -> rustix::io::Result<()> {
    // Device nodes and fifos are never opened for I/O (a fifo would block), and a name can be
    // swapped for a symlink by whoever else writes in this directory (a running container,
    // when its files are restored in place): the node is taken by an `O_PATH` descriptor that
    // does not follow, checked, and changed through it.
    let fd = rustix::fs::openat(dir, base, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    let ft = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
    if !matches!(ft, FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice) {
        return Err(Errno::LOOP);
    }
    rustix::fs::chmod(crate::fsutil::scope::fd_path(&fd), Mode::from_raw_mode(mode))
}

/// Removes `base` inside `dir` if present; directories recursively, never following symlinks
/// and never going into another filesystem (a mount point moved under a tree being removed —
/// by a running container, say — is left, with an error).
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, base: &[u8]) -> rustix::io::Result<()> {
    let st = match rustix::fs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let name = std::ffi::OsStr::from_bytes(base);
        if st.st_dev != rustix::fs::fstat(dir)?.st_dev || crate::fsutil::scope::is_mount_root(dir, name) {
            return Err(Errno::XDEV);
        }
        let sub = rustix::fs::openat(
            dir,
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Still the directory that was checked (not one swapped in meanwhile).
        let opened = rustix::fs::fstat(&sub)?;
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
            return Err(Errno::XDEV);
        }
        let mut names = Vec::new();
        for child in rustix::fs::Dir::read_from(&sub)? {
            let child = child?;
            let n = child.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            remove_all_at(sub.as_fd(), &n)?;
        }
        rustix::fs::unlinkat(dir, base, AtFlags::REMOVEDIR)
    } else {
        rustix::fs::unlinkat(dir, base, AtFlags::empty())
    }
}

/// Copies `src` into `file`, leaving holes where whole blocks are zero, so a sparse or
/// zero-filled file costs no disk space. Returns the number of bytes of content.
fn copy_sparse(src: &mut impl Read, file: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    const BLOCK: usize = 4096;
    let mut total = 0u64;
    let mut pending_hole = false;
    loop {
        let n = read_full(src, buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut start = 0;
        while start < n {
            let end = (start + BLOCK).min(n);
            let block = &chunk[start..end];
            if end - start == BLOCK && is_zero(block) {
                file.seek(SeekFrom::Current(BLOCK as i64))?;
                pending_hole = true;
            } else {
                // Write the run of non-zero blocks in one call.
                let mut run_end = end;
                while run_end < n {
                    let next_end = (run_end + BLOCK).min(n);
                    if next_end - run_end == BLOCK && is_zero(&chunk[run_end..next_end]) {
                        break;
                    }
                    run_end = next_end;
                }
                file.write_all(&chunk[start..run_end])?;
                pending_hole = false;
                start = run_end;
                continue;
            }
            start = end;
        }
        total += n as u64;
    }
    if pending_hole {
        file.set_len(total)?;
    }
    Ok(total)
}

fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn is_zero(b: &[u8]) -> bool {
    // No early exit: the OR-fold vectorises, which beats branching on every byte.
    b.iter().fold(0u8, |acc, &x| acc | x) == 0
}

/// The metadata of one entry, read from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: Timespec,
    dev_major: u32,
    dev_minor: u32,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let is_dev = matches!(h.entry_type(), tar::EntryType::Char | tar::EntryType::Block);
        let mut meta = Meta {
            mode: h.mode()? & 0o7777,
            // Some archivers leave these fields blank; like Go's archive/tar, read that as 0.
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: Timespec { tv_sec: h.mtime().unwrap_or(0) as i64, tv_nsec: 0 },
            dev_major: if is_dev { h.device_major()?.unwrap_or(0) } else { 0 },
            dev_minor: if is_dev { h.device_minor()?.unwrap_or(0) } else { 0 },
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    // Overlay's own attributes describe layer structure; only whiteout entries
                    // may set them, never an archive directly.
                    if super::is_overlay_xattr(name) {
                        continue;
                    }
                    meta.xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                } else if key == "mtime"
                    && let Some(t) = ext.value().ok().and_then(parse_pax_time)
                {
                    meta.mtime = t;
                }
            }
        }
        Ok(meta)
    }

    fn times(&self) -> Timestamps {
        Timestamps { last_access: self.mtime, last_modification: self.mtime }
    }
}

/// A pax time, `[-]SECONDS[.FRACTION]` (the fraction has the sign too: `-0.5` is half a
/// second before the epoch), as a timespec whose nanoseconds are never negative.
fn parse_pax_time(s: &str) -> Option<Timespec> {
    let (negative, abs) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = abs.split_once('.').unwrap_or((abs, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i128 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let total = (secs * 1_000_000_000 + digits.parse::<i128>().ok()?) * if negative { -1 } else { 1 };
    Some(Timespec {
        tv_sec: i64::try_from(total.div_euclid(1_000_000_000)).ok()?,
        tv_nsec: total.rem_euclid(1_000_000_000) as _,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_escapes_and_strips_dots() {
        assert_eq!(clean_path(b"./a/./b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert!(clean_path(b"/etc/passwd").is_err());
        assert!(clean_path(b"a/../../x").is_err());
        assert!(clean_path(b"..").is_err());
        assert!(clean_path(&[b'a'; 256]).is_err());
        assert!(clean_path(b"./").unwrap().is_empty());
    }

    /// A name swapped for a symlink between making a node and setting its mode (someone else
    /// writes in the directory: a running container) is refused, never followed.
    #[test]
    fn the_mode_of_a_node_is_never_set_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host-file"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("host-file"), dir.path().join("node")).unwrap();
        let fd = rustix::fs::open(dir.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(chmod_at(fd.as_fd(), b"node", 0o6777).is_err());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("host-file")).unwrap().permissions().mode() & 0o7777, 0o644);
        rustix::fs::mknodat(&fd, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        chmod_at(fd.as_fd(), b"fifo", 0o640).unwrap();
        assert_eq!(std::fs::symlink_metadata(dir.path().join("fifo")).unwrap().permissions().mode() & 0o7777, 0o640);
    }

    #[test]
    fn pax_time_parses_fractions() {
        let t = parse_pax_time("-0.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-1, 500_000_000), "half a second before the epoch");
        let t = parse_pax_time("-2").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 0));
        assert!(parse_pax_time("1.-5").is_none() && parse_pax_time("").is_none());
        let t = parse_pax_time("1717200000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1717200000, 500_000_000));
        assert!(parse_pax_time("x").is_none());
    }

    #[test]
    fn copy_sparse_keeps_content_and_leaves_holes() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 1 << 20];
        data[5] = 1;
        data[(1 << 20) - 1] = 2;
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        let n = copy_sparse(&mut &data[..], &mut f, &mut vec![0; 64 * 1024]).unwrap();
        drop(f);
        assert_eq!(n, data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&path).unwrap().blocks() * 512 < data.len() as u64 / 2);

        // Trailing zeros still give the right length.
        let zeros = vec![0u8; 100_000];
        let mut f = File::create(&path).unwrap();
        copy_sparse(&mut &zeros[..], &mut f, &mut vec![0; 8192]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100_000);
    }
}
