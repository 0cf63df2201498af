//! Making a layer: a deterministic tar stream of a directory tree.
//!
//! Entries are sorted by name within each directory, numeric owners only, whole-second mtimes,
//! no access times: the same tree always gives the same bytes, hence the same digest. In
//! `OverlayUpper` mode the tree is an overlayfs upper directory and its whiteouts (0/0 character
//! devices) and opaque directories become OCI `.wh.` entries.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags, Stat};

use crate::fsutil::scope::{fd_path, list_dir, open_dir_beneath, open_regular, stat_beneath};

use super::{LayerError, OPAQUE_WHITEOUT, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeMode {
    /// Every file as it is.
    Plain,
    /// An overlayfs upper directory: whiteouts and opaque directories become OCI markers.
    OverlayUpper,
    /// Files copied out of a running container (`cp`): as they are, but the kernel's own
    /// filesystems mounted in it (`/proc`, `/sys`, cgroups, …) are left out, as Docker's
    /// copies leave them.
    Copy,
}

/// Whether the directory open at `dir` is a kernel filesystem whose files are not data:
/// proc, sysfs, cgroup (v1 and v2), devpts, mqueue, debugfs, tracefs, securityfs, bpf,
/// pstore, configfs, fusectl.
fn kernel_filesystem(dir: BorrowedFd<'_>) -> bool {
    const KINDS: [i64; 13] = [
        0x9fa0,
        0x6265_6572,
        0x0027_e0eb,
        0x6367_7270,
        0x1cd1,
        0x1980_0202,
        0x6462_6720,
        0x7472_6163,
        0x7363_6673,
        0xcafe_4a11,
        0x6165_676c,
        0x6265_6570,
        0x6573_5543,
    ];
    // f_type's width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(dir).is_ok_and(|st| KINDS.contains(&(st.f_type as i64)))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Writes `dir` as a tar stream into `out` and returns `out` after the end-of-archive marker.
///
/// The tree is walked one directory descriptor at a time, never following a symlink: a tree
/// that changes while it is read (a running container's) cannot lead the walk out of it.
pub fn write_tree<W: Write>(dir: &Path, out: W, mode: TreeMode) -> Result<(W, WriteStats), LayerError> {
    let top = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
        .map_err(|e| LayerError::Read { path: dir.to_path_buf(), source: e.into() })?;
    let mut w = TreeWriter {
        builder: tar::Builder::new(out),
        mode,
        links: HashMap::new(),
        stats: WriteStats::default(),
        xattr_buf: vec![0; 64 * 1024],
    };
    w.walk(top.as_fd(), dir, &mut Vec::new())?;
    let out = w.builder.into_inner().map_err(LayerError::Write)?;
    Ok((out, w.stats))
}

/// Writes the entry `name` of directory `dir` into `out` under the archive name `as_name`
/// (a file, a symlink as itself, or a directory with its whole tree below it), and returns
/// `out` after the end-of-archive marker: one thing copied out as `cp` copies it.
pub fn write_entry<W: Write>(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    as_name: &[u8],
    out: W,
) -> Result<(W, WriteStats), LayerError> {
    let path = fd_path(&dir).join(name);
    let meta = stat_beneath(dir, name).map_err(|e| LayerError::Read { path: path.clone(), source: e })?;
    let mut w = TreeWriter {
        builder: tar::Builder::new(out),
        mode: TreeMode::Copy,
        links: HashMap::new(),
        stats: WriteStats::default(),
        xattr_buf: vec![0; 64 * 1024],
    };
    let mut rel = as_name.to_vec();
    w.entry(dir, name, &path, &rel, &meta)?;
    if FileType::from_raw_mode(meta.st_mode) == FileType::Directory {
        let sub = open_dir_beneath(dir, name).map_err(|e| LayerError::Read { path: path.clone(), source: e })?;
        w.walk(sub.as_fd(), &path, &mut rel)?;
    }
    let out = w.builder.into_inner().map_err(LayerError::Write)?;
    Ok((out, w.stats))
}

struct TreeWriter<W: Write> {
    builder: tar::Builder<W>,
    mode: TreeMode,
    /// First path seen for each (device, inode) with more than one link.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: WriteStats,
    xattr_buf: Vec<u8>,
}

impl<W: Write> TreeWriter<W> {
    fn walk(&mut self, dir: BorrowedFd<'_>, dir_path: &Path, rel: &mut Vec<u8>) -> Result<(), LayerError> {
        let read_err = |path: &Path, e: io::Error| LayerError::Read { path: path.to_path_buf(), source: e };
        let names = list_dir(dir).map_err(|e| read_err(dir_path, e))?;
        for name in names {
            let path = dir_path.join(&name);
            let meta = match stat_beneath(dir, &name) {
                Ok(m) => m,
                // Deleted between listing and reading: a live tree changes under us.
                Err(e) if changed_since_listed(&e) => continue,
                Err(e) => return Err(read_err(&path, e)),
            };
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.entry(dir, &name, &path, rel, &meta)?;
            if FileType::from_raw_mode(meta.st_mode) == FileType::Directory {
                match open_dir_beneath(dir, &name) {
                    Ok(sub) if self.mode == TreeMode::Copy && kernel_filesystem(sub.as_fd()) => {}
                    Ok(sub) => self.walk(sub.as_fd(), &path, rel)?,
                    // Removed, or replaced by something else, since it was listed.
                    Err(e) if changed_since_listed(&e) => {
                        tracing::debug!(path = %path.display(), "directory changed while being read; its content is left out");
                    }
                    Err(e) => return Err(read_err(&path, e)),
                }
            }
            rel.truncate(len);
        }
        Ok(())
    }

    /// Writes one entry. An entry that vanished or changed kind since it was listed (a live
    /// tree changes under us) is left out whole: everything that can fail that way is read
    /// before the first header byte is written, so no half entry reaches the archive.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        file_name: &OsStr,
        path: &Path,
        rel: &[u8],
        meta: &Stat,
    ) -> Result<(), LayerError> {
        let ft = FileType::from_raw_mode(meta.st_mode);
        if self.mode == TreeMode::OverlayUpper && ft == FileType::CharacterDevice && meta.st_rdev == 0 {
            return self.marker(&whiteout_name(rel));
        }
        if ft == FileType::Socket {
            tracing::debug!(path = %path.display(), "sockets cannot be stored in a layer; skipped");
            return Ok(());
        }
        let read_err = |e: io::Error| LayerError::Read { path: path.to_path_buf(), source: e };
        let changed = |e: io::Error| -> Result<(), LayerError> {
            if changed_since_listed(&e) {
                tracing::debug!(path = %path.display(), error = %e, "entry changed while being read; left out");
                Ok(())
            } else {
                Err(read_err(e))
            }
        };
        // A regular file is opened first and described by what was opened: one replaced since
        // it was listed (written aside and renamed over, as editors and package managers do)
        // is archived as the new file, its size, owner, mode and xattrs all its own.
        let (opened, fresh) = if ft == FileType::RegularFile {
            match open_regular(dir, file_name) {
                Ok(fd) => {
                    let file = File::from(fd);
                    let st = rustix::fs::fstat(&file).map_err(|e| read_err(e.into()))?;
                    (Some(file), Some(st))
                }
                Err(e) => return changed(e),
            }
        } else {
            (None, None)
        };
        let meta = fresh.as_ref().unwrap_or(meta);
        // The entry's xattrs: the opened file's, or by a name that goes through the
        // directory's descriptor.
        let xattrs = match &opened {
            Some(file) => self.xattrs(&fd_path(file), true),
            None => self.xattrs(&fd_path(&dir).join(file_name), false),
        };
        let xattrs = match xattrs {
            Ok(x) => x,
            Err(e) => return changed(e),
        };
        let target = if ft == FileType::Symlink {
            match rustix::fs::readlinkat(dir, file_name, Vec::new()) {
                Ok(t) => Some(PathBuf::from(OsStr::from_bytes(t.as_bytes()))),
                Err(e) => return changed(e.into()),
            }
        } else {
            None
        };
        let first_link = (ft == FileType::RegularFile && meta.st_nlink > 1)
            .then(|| self.links.get(&(meta.st_dev, meta.st_ino)).cloned())
            .flatten();
        let file = opened.filter(|_| first_link.is_none());
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.st_mode & 0o7777);
        h.set_uid(meta.st_uid as u64);
        h.set_gid(meta.st_gid as u64);
        h.set_mtime(meta.st_mtime.max(0) as u64);
        h.set_size(0);
        if !xattrs.iter().all(|(k, _)| k == OVERLAY_OPAQUE_XATTR) {
            let pax: Vec<(String, &[u8])> = xattrs
                .iter()
                .filter(|(k, _)| k != OVERLAY_OPAQUE_XATTR)
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            self.builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v))).map_err(LayerError::Write)?;
        }
        let name = OsStr::from_bytes(rel);
        self.stats.entries += 1;
        if ft == FileType::Directory {
            h.set_entry_type(tar::EntryType::Directory);
            let mut dir_name = rel.to_vec();
            dir_name.push(b'/');
            self.builder.append_data(&mut h, OsStr::from_bytes(&dir_name), io::empty()).map_err(LayerError::Write)?;
            let opaque = xattrs.iter().any(|(k, v)| k == OVERLAY_OPAQUE_XATTR && v == b"y");
            if self.mode == TreeMode::OverlayUpper && opaque {
                let mut marker = rel.to_vec();
                marker.push(b'/');
                marker.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
                self.marker(&marker)?;
            }
        } else if let Some(target) = target {
            h.set_entry_type(tar::EntryType::Symlink);
            self.builder.append_link(&mut h, name, &target).map_err(LayerError::Write)?;
        } else if let Some(first) = first_link {
            h.set_entry_type(tar::EntryType::Link);
            let first = PathBuf::from(OsStr::from_bytes(&first));
            self.builder.append_link(&mut h, name, first).map_err(LayerError::Write)?;
        } else if let Some(file) = file {
            if meta.st_nlink > 1 {
                self.links.insert((meta.st_dev, meta.st_ino), rel.to_vec());
            }
            let len = meta.st_size.max(0) as u64;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(len);
            let reader = ExactLen { inner: file.take(len), remaining: len, path };
            self.builder.append_data(&mut h, name, reader).map_err(|e| match e.kind() {
                io::ErrorKind::Other if e.get_ref().is_some_and(|i| i.is::<ReadFailed>()) => {
                    LayerError::Read { path: path.to_path_buf(), source: io::Error::other(e.to_string()) }
                }
                _ => LayerError::Write(e),
            })?;
            self.stats.bytes += len;
        } else if matches!(ft, FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) {
            h.set_entry_type(match ft {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            if ft != FileType::Fifo {
                let rdev = meta.st_rdev;
                h.set_device_major(rustix::fs::major(rdev)).map_err(LayerError::Write)?;
                h.set_device_minor(rustix::fs::minor(rdev)).map_err(LayerError::Write)?;
            }
            self.builder.append_data(&mut h, name, io::empty()).map_err(LayerError::Write)?;
        }
        Ok(())
    }

    /// A whiteout or opaque marker: an empty regular file with fixed metadata.
    fn marker(&mut self, name: &[u8]) -> Result<(), LayerError> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(0);
        self.stats.entries += 1;
        self.builder.append_data(&mut h, OsStr::from_bytes(name), io::empty()).map_err(LayerError::Write)
    }

    /// The xattrs of the entry at `at`; `follow`: of what the link `at` leads to (an open
    /// file's `/proc/self/fd` entry).
    fn xattrs(&mut self, at: &Path, follow: bool) -> io::Result<Vec<(String, Vec<u8>)>> {
        let listed = if follow {
            rustix::fs::listxattr(at, &mut self.xattr_buf[..])
        } else {
            rustix::fs::llistxattr(at, &mut self.xattr_buf[..])
        };
        let list = match listed {
            Ok(n) => self.xattr_buf[..n].to_vec(),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            // Overlay bookkeeping other than opacity is not part of the content.
            if super::is_overlay_xattr(name) && name != OVERLAY_OPAQUE_XATTR {
                continue;
            }
            let got = if follow {
                rustix::fs::getxattr(at, name, &mut self.xattr_buf[..])
            } else {
                rustix::fs::lgetxattr(at, name, &mut self.xattr_buf[..])
            };
            match got {
                Ok(n) => out.push((name.to_string(), self.xattr_buf[..n].to_vec())),
                Err(rustix::io::Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Whether `e` says an entry was removed or replaced by another kind since it was listed.
fn changed_since_listed(e: &io::Error) -> bool {
    // InvalidInput: readlink of what is no longer a symlink (EINVAL), or `open_regular` of
    // what is no longer a regular file.
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput)
        || matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR | libc::ENXIO))
}

fn whiteout_name(rel: &[u8]) -> Vec<u8> {
    let (dir, base) = match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..=i], &rel[i + 1..]),
        None => (&rel[..0], rel),
    };
    let mut v = dir.to_vec();
    v.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    v.extend_from_slice(base);
    v
}

#[derive(Debug)]
struct ReadFailed;
impl std::fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("read failed")
    }
}
impl std::error::Error for ReadFailed {}

/// Reads exactly `remaining` bytes: a file that shrank while being read is padded with zeros
/// (and one that grew is cut), so the archive stays well-formed for a live tree.
struct ExactLen<'a, R> {
    inner: R,
    remaining: u64,
    path: &'a Path,
}

impl<R: Read> Read for ExactLen<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining as usize);
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "read failed while making a layer");
                return Err(io::Error::other(ReadFailed));
            }
        };
        let n = if n == 0 {
            tracing::warn!(path = %self.path.display(), "file shrank while being read; padding with zeros");
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_name(b"a/b/c"), b"a/b/.wh.c");
        assert_eq!(whiteout_name(b"c"), b".wh.c");
    }

    /// Writes the entry `name` of `dir` with metadata taken before `change` ran, as a walk of
    /// a live tree does when the entry changes between listing and reading, and returns the
    /// names in the archive.
    fn entry_after(dir: &Path, name: &str, change: impl FnOnce(&Path)) -> Vec<String> {
        entries_after(dir, name, change).into_iter().map(|(n, _)| n).collect()
    }

    /// As [`entry_after`], with each entry's bytes.
    fn entries_after(dir: &Path, name: &str, change: impl FnOnce(&Path)) -> Vec<(String, Vec<u8>)> {
        let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
        let meta = stat_beneath(fd.as_fd(), OsStr::new(name)).unwrap();
        change(&dir.join(name));
        let mut w = TreeWriter {
            builder: tar::Builder::new(Vec::new()),
            mode: TreeMode::OverlayUpper,
            links: HashMap::new(),
            stats: WriteStats::default(),
            xattr_buf: vec![0; 64 * 1024],
        };
        w.entry(fd.as_fd(), OsStr::new(name), &dir.join(name), name.as_bytes(), &meta).unwrap();
        let bytes = w.builder.into_inner().unwrap();
        tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    /// A file written aside and renamed over the listed one is archived as the new file,
    /// its length its own (never the old length, padded or cut).
    #[test]
    fn a_file_replaced_while_read_is_archived_as_the_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("conf"), "short").unwrap();
        let got = entries_after(d, "conf", |p| {
            std::fs::write(p.with_extension("new"), "a longer replacement").unwrap();
            std::fs::rename(p.with_extension("new"), p).unwrap();
        });
        assert_eq!(got, [("conf".to_string(), b"a longer replacement".to_vec())]);
    }

    #[test]
    fn an_entry_that_vanishes_or_changes_kind_while_read_is_left_out_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("file"), "x").unwrap();
        assert_eq!(entry_after(d, "file", |_| {}), ["file"]);
        assert!(entry_after(d, "file", |p| std::fs::remove_file(p).unwrap()).is_empty());
        // A file with an xattr (a pax header first) replaced by a directory: no stray header.
        std::fs::write(d.join("tagged"), "x").unwrap();
        let tagged = d.join("tagged");
        if rustix::fs::setxattr(&tagged, "user.tag", b"1", rustix::fs::XattrFlags::empty()).is_ok() {
            let names = entry_after(d, "tagged", |p| {
                std::fs::remove_file(p).unwrap();
                std::fs::create_dir(p).unwrap();
            });
            assert!(names.is_empty(), "{names:?}");
        }
        std::os::unix::fs::symlink("/etc", d.join("link")).unwrap();
        let names = entry_after(d, "link", |p| {
            std::fs::remove_file(p).unwrap();
            std::fs::write(p, "now a file").unwrap();
        });
        assert!(names.is_empty(), "{names:?}");
        std::fs::create_dir(d.join("dir")).unwrap();
        assert!(entry_after(d, "dir", |p| std::fs::remove_dir(p).unwrap()).is_empty());
    }
}
