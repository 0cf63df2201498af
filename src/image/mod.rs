//! Images: references, the OCI documents, layers, the local store, and the operations that
//! bring images in and out of it (import, save, load).

pub mod archive;
pub mod changes;
pub mod commit;
pub mod import;
pub mod layer;
pub mod reference;
pub mod spec;
pub mod store;

use std::path::PathBuf;

/// Digests are shared with the repository (snapshots name image manifests by them).
pub use crate::digest::{self, Digest};
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
