//! A repository in a local directory. Pack files go to `data/<first two hex>/<name>` so no
//! directory grows too large.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Backend, BackendError, Kind, Result};

/// Every file of a local repository is its owner's alone, as its directories are.
const FILE_MODE: u32 = 0o600;

#[derive(Debug)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    pub fn new(root: &Path) -> Local {
        Local { root: root.to_path_buf() }
    }

    fn path(&self, kind: Kind, name: &str) -> PathBuf {
        match kind {
            Kind::Config => self.root.join("config"),
            Kind::Pack => self.root.join(kind.dir()).join(&name[..2.min(name.len())]).join(name),
            _ => self.root.join(kind.dir()).join(name),
        }
    }

    fn err(&self, op: &'static str, what: &Path, source: io::Error) -> BackendError {
        BackendError::Io { location: self.location(), op, what: what.display().to_string(), source }
    }

    /// The path of a file about to be written: not there yet (files are immutable), its
    /// directory created.
    fn new_file(&self, kind: Kind, name: &str) -> Result<PathBuf> {
        let p = self.path(kind, name);
        if p.exists() {
            return Err(BackendError::Exists { location: self.location(), kind, name: name.to_string() });
        }
        // The repository is encrypted, but its sizes and names are nobody else's business:
        // its directories are private (0700), from the first file written.
        if let Some(dir) = p.parent()
            && !dir.is_dir()
        {
            // A new repository's own directory too (a pack's directory may be its first).
            if !self.root.is_dir() {
                crate::fsutil::private_dir(&self.root).map_err(|e| self.err("create", &self.root, e))?;
            }
            crate::fsutil::private_dir(dir).map_err(|e| self.err("create", dir, e))?;
        }
        Ok(p)
    }

    fn not_found(&self, kind: Kind, name: &str) -> BackendError {
        BackendError::NotFound { location: self.location(), kind, name: name.to_string() }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Backend for Local {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, kind: Kind) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if kind == Kind::Config {
            if self.path(kind, "config").exists() {
                out.push("config".to_string());
            }
            return Ok(out);
        }
        let dir = self.root.join(kind.dir());
        let mut dirs = vec![dir.clone()];
        if kind == Kind::Pack {
            dirs = match fs::read_dir(&dir) {
                Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.err("list", &dir, e)),
            };
        }
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", &d, e)),
            };
            for e in rd {
                let e = e.map_err(|e| self.err("list", &d, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                // Temporary files of interrupted writes start with a dot.
                if valid_name(&name) {
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        let p = self.path(kind, name);
        fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound { self.not_found(kind, name) } else { self.err("read", &p, e) }
        })
    }

    fn cheap_ranges(&self) -> bool {
        true
    }

    fn will_read(&self, kind: Kind, name: &str) {
        if let Ok(f) = fs::File::open(self.path(kind, name)) {
            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
        }
    }

    fn read_into(&self, kind: Kind, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        let p = self.path(kind, name);
        let mut f = fs::File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound { self.not_found(kind, name) } else { self.err("open", &p, e) }
        })?;
        buf.clear();
        // Exactly the file's size: read_to_end alone would double the buffer past it.
        let len = f.metadata().map_err(|e| self.err("stat", &p, e))?.len() as usize;
        buf.reserve_exact(len);
        io::Read::read_to_end(&mut f, buf).map_err(|e| self.err("read", &p, e))?;
        Ok(())
    }

    fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(kind, name, offset, length, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(&self, kind: Kind, name: &str, offset: u64, length: u64, buf: &mut Vec<u8>) -> Result<()> {
        let p = self.path(kind, name);
        let mut f = fs::File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound { self.not_found(kind, name) } else { self.err("open", &p, e) }
        })?;
        buf.clear();
        buf.reserve_exact(length as usize); // not doubled: memory stays at the largest window
        // Read into the buffer's spare room, not zeroed first.
        f.seek(SeekFrom::Start(offset)).map_err(|e| self.err("seek", &p, e))?;
        f.take(length).read_to_end(buf).map_err(|e| self.err("read", &p, e))?;
        if buf.len() as u64 != length {
            let short = io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} of {length} bytes", buf.len()));
            return Err(self.err("read", &p, short));
        }
        Ok(())
    }

    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let p = self.new_file(kind, name)?;
        crate::fsutil::write_atomic_with_mode(&p, FILE_MODE, |f| f.write_all(data))
            .map_err(|e| self.err("write", &p, e))
    }

    fn write_releasing(&self, kind: Kind, name: &str, data: Vec<u8>, release: &mut dyn FnMut(Vec<u8>)) -> Result<()> {
        let p = match self.new_file(kind, name) {
            Ok(p) => p,
            Err(e) => {
                release(data);
                return Err(e);
            }
        };
        let mut data = Some(data);
        crate::fsutil::write_atomic_with_mode(&p, FILE_MODE, |f| {
            let written = f.write_all(data.as_deref().unwrap_or_default());
            release(data.take().expect("released once"));
            written
        })
        .map_err(|e| self.err("write", &p, e))
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let p = self.path(kind, name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", &p, e)),
        }
    }

    fn stat(&self, kind: Kind, name: &str) -> Result<Option<u64>> {
        let p = self.path(kind, name);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", &p, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The full behaviour suite runs in tests/integration/backends.rs for every backend.
    #[test]
    fn packs_are_fanned_out_and_temporary_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let b = Local::new(dir.path());
        b.write(Kind::Pack, "abcdef", b"x").unwrap();
        assert!(dir.path().join("data/ab/abcdef").is_file());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("data/ab/abcdef")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        b.write_releasing(Kind::Index, "i1", b"y".to_vec(), &mut drop).unwrap();
        let mode = fs::metadata(dir.path().join("index/i1")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::write(dir.path().join("data/ab/.abcd.tmp-1"), b"partial").unwrap();
        assert_eq!(b.list(Kind::Pack).unwrap(), vec!["abcdef"]);
    }
}
