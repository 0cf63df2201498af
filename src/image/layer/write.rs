//! Making a layer: a deterministic tar stream of a directory tree.
//!
//! Entries are sorted by name within each directory, numeric owners only, whole-second mtimes,
//! no access times: the same tree always gives the same bytes, hence the same digest. In
//! `OverlayUpper` mode the tree is an overlayfs upper directory and its whiteouts (0/0 character
//! devices) and opaque directories become OCI `.wh.` entries.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{LayerError, OPAQUE_WHITEOUT, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeMode {
    /// Every file as it is.
    Plain,
    /// An overlayfs upper directory: whiteouts and opaque directories become OCI markers.
    OverlayUpper,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Writes `dir` as a tar stream into `out` and returns `out` after the end-of-archive marker.
pub fn write_tree<W: Write>(dir: &Path, out: W, mode: TreeMode) -> Result<(W, WriteStats), LayerError> {
    let mut w = TreeWriter {
        builder: tar::Builder::new(out),
        mode,
        links: HashMap::new(),
        stats: WriteStats::default(),
        xattr_buf: vec![0; 64 * 1024],
    };
    w.walk(dir, &mut Vec::new())?;
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
    fn walk(&mut self, dir: &Path, rel: &mut Vec<u8>) -> Result<(), LayerError> {
        let read_err = |path: &Path, e| LayerError::Read { path: path.to_path_buf(), source: e };
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| read_err(dir, e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                // Deleted between listing and reading: a live tree changes under us.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_err(&path, e)),
            };
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            self.entry(&path, rel, &meta)?;
            if meta.is_dir() {
                self.walk(&path, rel)?;
            }
            rel.truncate(len);
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &[u8], meta: &Metadata) -> Result<(), LayerError> {
        let ft = meta.file_type();
        if self.mode == TreeMode::OverlayUpper && ft.is_char_device() && meta.rdev() == 0 {
            return self.marker(&whiteout_name(rel));
        }
        if ft.is_socket() {
            tracing::debug!(path = %path.display(), "sockets cannot be stored in a layer; skipped");
            return Ok(());
        }
        let xattrs = self.xattrs(path)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
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
        if ft.is_dir() {
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
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| LayerError::Read { path: path.to_path_buf(), source: e })?;
            h.set_entry_type(tar::EntryType::Symlink);
            self.builder.append_link(&mut h, name, &target).map_err(LayerError::Write)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    let first = PathBuf::from(OsStr::from_bytes(first));
                    return self.builder.append_link(&mut h, name, first).map_err(LayerError::Write);
                }
                self.links.insert(key, rel.to_vec());
            }
            let len = meta.len();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(len);
            let file = File::open(path).map_err(|e| LayerError::Read { path: path.to_path_buf(), source: e })?;
            let reader = ExactLen { inner: file.take(len), remaining: len, path };
            self.builder.append_data(&mut h, name, reader).map_err(|e| match e.kind() {
                io::ErrorKind::Other if e.get_ref().is_some_and(|i| i.is::<ReadFailed>()) => {
                    LayerError::Read { path: path.to_path_buf(), source: io::Error::other(e.to_string()) }
                }
                _ => LayerError::Write(e),
            })?;
            self.stats.bytes += len;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            if !ft.is_fifo() {
                let rdev = meta.rdev();
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

    fn xattrs(&mut self, path: &Path) -> Result<Vec<(String, Vec<u8>)>, LayerError> {
        let list = match rustix::fs::llistxattr(path, &mut self.xattr_buf[..]) {
            Ok(n) => self.xattr_buf[..n].to_vec(),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => {
                return Err(LayerError::Read { path: path.to_path_buf(), source: e.into() });
            }
        };
        let mut out = Vec::new();
        for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            // Overlay bookkeeping other than opacity is not part of the content.
            if (name.starts_with("trusted.overlay.") || name.starts_with("user.overlay."))
                && name != OVERLAY_OPAQUE_XATTR
            {
                continue;
            }
            match rustix::fs::lgetxattr(path, name, &mut self.xattr_buf[..]) {
                Ok(n) => out.push((name.to_string(), self.xattr_buf[..n].to_vec())),
                Err(rustix::io::Errno::NODATA) => {}
                Err(e) => {
                    return Err(LayerError::Read { path: path.to_path_buf(), source: e.into() });
                }
            }
        }
        out.sort();
        Ok(out)
    }
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
}
