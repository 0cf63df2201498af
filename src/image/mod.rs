//! Images: references, the OCI documents, layers, the local store, and the operations that
//! bring images in and out of it (import, save, load).

pub mod archive;
pub mod changes;
pub mod commit;
pub mod digest;
pub mod import;
pub mod layer;
pub mod reference;
pub mod spec;
pub mod store;

use std::path::PathBuf;

pub use digest::Digest;
pub use reference::Reference;
pub use store::{Image, Store, StoreError};

/// An image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Change(#[from] changes::ChangeError),
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error("cannot read {}: {source}", path.display())]
    Source { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Output { path: PathBuf, source: std::io::Error },
    #[error("invalid archive {}: {reason}", path.display())]
    Archive { path: PathBuf, reason: String },
}

/// A UTC timestamp as image configs carry it (RFC 3339, nanoseconds, `Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
