//! Snapshot objects: the commit point of a backup. A snapshot names a service's image (as a
//! tree of its OCI blobs), its container layer and its volumes (as trees), and how it ran.

use serde::{Deserialize, Serialize};

use super::{BlobId, Repository, Result};
use crate::backend::Kind;
use crate::digest::Digest;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: String,
    pub hostname: String,
    /// The container (service) name.
    pub service: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub parent: Option<String>,
    /// The container's run configuration (`RunConfig`), as recorded.
    pub run_config: serde_json::Value,
    pub image: ImageRef,
    /// The container's own layer (overlay upper directory).
    pub container_layer: BlobId,
    pub volumes: Vec<VolumeRef>,
    pub stats: SnapshotStats,
    /// Taken together with other services at one instant (a stack snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackRef>,
    /// Files the service read while starting in its last drill before this snapshot: an
    /// instant restore fetches them first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hot: Vec<HotFile>,
    /// The engine that ran the service when it was taken (`docker`, `podman`); none for this
    /// host's own runtime. A restore runs it under Lifeboat's runtime all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// A file of a volume, by the volume's name and its path in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotFile {
    pub volume: String,
    pub path: String,
}

/// The stack a snapshot belongs to: every service frozen at the same instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRef {
    /// Shared by the snapshots of one stack snapshot.
    pub id: String,
    /// Its services, in the order they were named.
    pub services: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRef {
    pub reference: String,
    pub manifest: Digest,
    /// A tree whose files are the image's blobs, named by digest hex.
    pub tree: BlobId,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeRef {
    pub name: String,
    pub target: String,
    pub tree: BlobId,
    /// The volume's own directory: its owner, group and mode (a database refuses a data
    /// directory that is not its user's, or open to others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootMeta>,
}

/// Owner, group and permission bits of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMeta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub files: u64,
    pub bytes: u64,
    pub files_read: u64,
    /// Bytes the repository grew by.
    pub added_bytes: u64,
    pub frozen_ms: u64,
    pub duration_ms: u64,
}

/// Snapshots with their IDs, and what could not be read of them.
pub type Readable = (Vec<(String, Snapshot)>, Vec<String>);

/// Every snapshot that can be read, oldest first, and what could not be (for `check`, which
/// reports damage and goes on).
pub fn list_readable(repo: &Repository) -> Result<Readable> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for name in repo.backend().list(Kind::Snapshot)? {
        if !is_snapshot_name(&name) {
            damaged.push(format!("snapshots/{name:?} is not a snapshot's name (an object put there by hand?)"));
            continue;
        }
        match repo.load_object::<Snapshot>(Kind::Snapshot, &name) {
            Ok(s) => out.push((name, s)),
            Err(e @ (super::RepoError::Corrupt { .. } | super::RepoError::Other { .. })) => {
                damaged.push(format!("snapshot {name}: {e}"))
            }
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time));
    Ok((out, damaged))
}

/// Every snapshot with its ID, oldest first.
pub fn list(repo: &Repository) -> Result<Vec<(String, Snapshot)>> {
    let mut out = Vec::new();
    for name in repo.backend().list(Kind::Snapshot)? {
        if !is_snapshot_name(&name) {
            return Err(super::RepoError::Corrupt {
                location: repo.location(),
                what: format!(
                    "snapshots/{name:?} is not a snapshot's name (an object put there by hand?); remove it to go on"
                ),
            });
        }
        out.push((name.clone(), repo.load_object::<Snapshot>(Kind::Snapshot, &name)?));
    }
    out.sort_by(|a, b| a.1.time.cmp(&b.1.time));
    Ok(out)
}

/// Whether an object name can be a snapshot's: Lifeboat names objects with 64 hex digits, so
/// anything else was put there by someone else, and is damage (reported, never read as a
/// snapshot).
fn is_snapshot_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Finds a snapshot: `latest` (of `service`), an ID or unique ID prefix.
pub fn find(repo: &Repository, service: Option<&str>, which: &str) -> Result<(String, Snapshot)> {
    find_in(repo, list(repo)?, service, which)
}

/// [`find`] among snapshots already listed (`all`, oldest first).
pub fn find_in(
    repo: &Repository,
    all: Vec<(String, Snapshot)>,
    service: Option<&str>,
    which: &str,
) -> Result<(String, Snapshot)> {
    let candidates: Vec<(String, Snapshot)> =
        all.into_iter().filter(|(_, s)| service.is_none_or(|n| s.service == n)).collect();
    let not_found = |what: String| super::RepoError::NotFound { location: repo.location(), what };
    if which == "latest" {
        return candidates
            .into_iter()
            .last()
            .ok_or_else(|| not_found(format!("no snapshot of {}", service.unwrap_or("any service"))));
    }
    let hits: Vec<_> = candidates.into_iter().filter(|(id, _)| id.starts_with(which)).collect();
    match hits.len() {
        1 => Ok(hits.into_iter().next().expect("one hit")),
        0 => Err(not_found(format!("no snapshot {which}{}", service.map(|s| format!(" of {s}")).unwrap_or_default()))),
        n => Err(super::RepoError::Ambiguous {
            location: repo.location(),
            what: format!("snapshot ID prefix {which:?} names {n} snapshots; give more of the ID"),
        }),
    }
}
