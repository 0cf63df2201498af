//! Where repository bytes live. A backend stores immutable files by kind and name and knows
//! nothing of their meaning (they are encrypted before they get here).
//!
//! The trait is small on purpose: list, read, read a range, write atomically, delete, stat.
//! Retry, caching and other behaviour wrap a backend rather than living in it.

pub mod local;
pub mod s3;

use std::fmt;

/// The kinds of files a repository holds, each in its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Config,
    Key,
    Pack,
    Index,
    Snapshot,
    Lock,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Config => "",
            Kind::Key => "keys",
            Kind::Pack => "data",
            Kind::Index => "index",
            Kind::Snapshot => "snapshots",
            Kind::Lock => "locks",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{location}: {kind:?} {name} does not exist")]
    NotFound { location: String, kind: Kind, name: String },
    #[error("{location}: {kind:?} {name} already exists")]
    Exists { location: String, kind: Kind, name: String },
    #[error("{location}: {op} {what}: {source}")]
    Io { location: String, op: &'static str, what: String, source: std::io::Error },
}

impl BackendError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

pub trait Backend: Send + Sync + fmt::Debug {
    /// Where this is, for messages (`/srv/backup`, `s3://bucket/prefix`).
    fn location(&self) -> String;
    /// The location to open this backend again with [`open`], options included (another
    /// process of ours reading the same repository). No secrets are in it.
    fn reopen_location(&self) -> String {
        self.location()
    }
    /// Names of every file of a kind.
    fn list(&self, kind: Kind) -> Result<Vec<String>>;
    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>>;
    /// Whether reading a few bytes of a file is cheap (a local disk), so single blobs should
    /// be read on their own rather than by fetching and keeping their whole pack.
    fn cheap_ranges(&self) -> bool {
        false
    }
    /// A hint that the whole file will be read soon (a local disk starts reading it ahead);
    /// errors are ignored, as a hint changes nothing but speed.
    fn will_read(&self, _kind: Kind, _name: &str) {}
    /// Reads a whole file into `buf` (replacing its contents, reusing its memory).
    fn read_into(&self, kind: Kind, name: &str, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.read(kind, name)?;
        Ok(())
    }
    fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>>;
    /// Reads part of a file into `buf` (replacing its contents, reusing its memory).
    fn read_range_into(&self, kind: Kind, name: &str, offset: u64, length: u64, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.read_range(kind, name, offset, length)?;
        Ok(())
    }
    /// Writes a new file atomically; an existing file of that name is an error (files are
    /// immutable).
    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()>;
    /// Writes a new file as `write` does, and hands `data` back through `release` as soon
    /// as the backend no longer needs it (a local disk: once the bytes are in the page cache,
    /// before they are forced to disk), so the caller can reuse the buffer meanwhile.
    fn write_releasing(&self, kind: Kind, name: &str, data: Vec<u8>, release: &mut dyn FnMut(Vec<u8>)) -> Result<()> {
        let written = self.write(kind, name, &data);
        release(data);
        written
    }
    fn delete(&self, kind: Kind, name: &str) -> Result<()>;
    /// The size of a file, or None if it does not exist.
    fn stat(&self, kind: Kind, name: &str) -> Result<Option<u64>>;
}

/// Opens the backend a location names: a path, or `s3://bucket/prefix[?options]`.
pub fn open(location: &str) -> Result<Box<dyn Backend>> {
    if location.starts_with("s3://") {
        return Ok(Box::new(s3::S3::open(location)?));
    }
    Ok(Box::new(local::Local::new(std::path::Path::new(location.strip_prefix("local:").unwrap_or(location)))))
}
