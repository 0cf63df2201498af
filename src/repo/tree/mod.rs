//! Directory trees in the repository: each directory is a tree blob listing its entries
//! (metadata, the chunk IDs of a file's content, the tree ID of a subdirectory).
//!
//! Archiving reuses a file's chunk list from the parent snapshot when size, mtime, ctime and
//! inode are unchanged, so an incremental snapshot reads only what changed. Restoring verifies
//! every chunk (authenticated, and its keyed ID recomputed) before writing it.

//!
//! [`archive`] turns directories into trees (the snapshot side), [`restore`] trees back into
//! directories.

mod archive;
mod restore;

use serde::{Deserialize, Serialize};

use super::{BlobId, RepoError, Repository, Result};

pub use archive::{Archiver, ProgressFn};
pub use restore::{RestoreFailure, RestoreProgressFn, RestoreStats, Restorer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The name, hex-encoded bytes (names need not be UTF-8).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub links: u64,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
    /// Symlink target, hex-encoded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rdev: u64,
    /// (name, hex value)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(String, String)>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Node {
    pub fn name_bytes(&self) -> Vec<u8> {
        hex::decode(&self.name).unwrap_or_default()
    }
}

/// Whether `name` can be one entry of a directory: not empty, `.` or `..`, and without `/` or
/// NUL (a tree holding one is damage: it could steer a write out of its directory).
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchiveStats {
    pub files: u64,
    pub dirs: u64,
    /// Bytes of file content in the tree.
    pub bytes: u64,
    /// Files whose content was read (the rest were unchanged since the parent).
    pub files_read: u64,
    /// Plaintext bytes of blobs the repository did not have.
    pub new_bytes: u64,
}

impl std::ops::Add for ArchiveStats {
    type Output = ArchiveStats;
    fn add(self, o: ArchiveStats) -> ArchiveStats {
        ArchiveStats {
            files: self.files + o.files,
            dirs: self.dirs + o.dirs,
            bytes: self.bytes + o.bytes,
            files_read: self.files_read + o.files_read,
            new_bytes: self.new_bytes + o.new_bytes,
        }
    }
}

pub fn load_tree(repo: &Repository, id: &BlobId) -> Result<Tree> {
    let bytes = repo.load_blob(id)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RepoError::Corrupt { location: repo.location(), what: format!("tree {}: {e}", id.hex()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::Local;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::Path;

    #[test]
    fn archive_restore_round_trip_and_incremental_reuse() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.txt"), "alpha").unwrap();
        fs::write(src.join("sub/big"), vec![3u8; 300_000]).unwrap();
        fs::hard_link(src.join("a.txt"), src.join("sub/a-link")).unwrap();
        std::os::unix::fs::symlink("../a.txt", src.join("sub/ln")).unwrap();
        let mut repo = Repository::init(Box::new(Local::new(&dir.path().join("repo"))), b"pw").unwrap();
        let mut arch = Archiver::new(&repo);
        let t1 = arch.archive_dir(&src, None).unwrap();
        assert_eq!(arch.stats.files_read, 3);
        let mut arch = Archiver::new(&repo);
        fs::write(src.join("a2.txt"), "new").unwrap();
        let t2 = arch.archive_dir(&src, Some(&t1)).unwrap();
        assert_eq!(arch.stats.files_read, 1, "only the new file is read");
        repo.flush().unwrap();
        let out = dir.path().join("out");
        Restorer::new(&repo, "test").restore(&t2, &out).unwrap();
        assert_eq!(fs::read(out.join("sub/big")).unwrap(), vec![3u8; 300_000]);
        assert_eq!(fs::read_link(out.join("sub/ln")).unwrap(), Path::new("../a.txt"));
        assert_eq!(fs::metadata(out.join("a.txt")).unwrap().ino(), fs::metadata(out.join("sub/a-link")).unwrap().ino());
        assert_eq!(fs::read_to_string(out.join("a2.txt")).unwrap(), "new");
    }

    /// Extended attributes (file capabilities, ACLs, user attributes) are part of a file: a
    /// snapshot once recorded none at all.
    #[test]
    fn extended_attributes_are_archived_and_restored() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("tagged"), "x").unwrap();
        if rustix::fs::setxattr(src.join("tagged"), "user.origin", b"catalogue", rustix::fs::XattrFlags::empty())
            .is_err()
        {
            eprintln!("this filesystem takes no user xattrs; skipped");
            return;
        }
        let mut repo = Repository::init(Box::new(Local::new(&dir.path().join("repo"))), b"pw").unwrap();
        let tree = Archiver::new(&repo).archive_dir(&src, None).unwrap();
        repo.flush().unwrap();
        let node = load_tree(&repo, &tree).unwrap().nodes.remove(0);
        assert_eq!(node.xattrs, [("user.origin".to_string(), hex::encode("catalogue"))]);
        let out = dir.path().join("out");
        Restorer::new(&repo, "test").restore(&tree, &out).unwrap();
        let mut v = [0u8; 64];
        let n = rustix::fs::getxattr(out.join("tagged"), "user.origin", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"catalogue");
    }

    #[test]
    fn restore_keeps_modes_owners_times_and_links_of_awkward_entries() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        // A read-only directory with content, a set-user-ID program, a private file, an empty
        // file with a second name, a file owned by someone else, a FIFO.
        fs::create_dir_all(src.join("ro/deep")).unwrap();
        fs::write(src.join("ro/deep/data"), vec![5u8; 200_000]).unwrap();
        fs::write(src.join("suid"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(src.join("secret"), b"s").unwrap();
        fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o400)).unwrap();
        fs::write(src.join("empty"), b"").unwrap();
        fs::hard_link(src.join("empty"), src.join("empty-too")).unwrap();
        fs::write(src.join("theirs"), b"t").unwrap();
        let root = rustix::process::geteuid().is_root();
        if root {
            std::os::unix::fs::chown(src.join("theirs"), Some(1234), Some(5678)).unwrap();
        }
        rustix::fs::mknodat(rustix::fs::CWD, src.join("fifo"), rustix::fs::FileType::Fifo, 0o640.into(), 0).unwrap();
        fs::set_permissions(src.join("ro/deep"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(src.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        let ts = restore::timestamps(1_500_000_000_123_456_789);
        for p in ["ro/deep/data", "ro/deep", "ro", "suid"] {
            rustix::fs::utimensat(rustix::fs::CWD, src.join(p), &ts, rustix::fs::AtFlags::empty()).unwrap();
        }
        let mut repo = Repository::init(Box::new(Local::new(&dir.path().join("repo"))), b"pw").unwrap();
        let tree = Archiver::new(&repo).archive_dir(&src, None).unwrap();
        repo.flush().unwrap();
        let out = dir.path().join("out");
        let mut r = Restorer::new(&repo, "test");
        r.restore(&tree, &out).unwrap();
        assert_eq!(r.stats.bytes, 200_000 + 10 + 1 + 1);
        let mode = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("ro"), 0o500);
        assert_eq!(mode("ro/deep"), 0o555);
        assert_eq!(mode("suid"), 0o4755, "set-user-ID survives");
        assert_eq!(mode("secret"), 0o400);
        assert_eq!(mode("fifo"), 0o640);
        assert!(fs::symlink_metadata(out.join("fifo")).unwrap().file_type().is_fifo());
        assert_eq!(fs::read(out.join("ro/deep/data")).unwrap(), vec![5u8; 200_000]);
        let m = |p: &str| fs::symlink_metadata(out.join(p)).unwrap();
        assert_eq!(m("empty").ino(), m("empty-too").ino());
        assert_eq!(m("empty").nlink(), 2);
        for p in ["ro/deep/data", "ro/deep", "ro", "suid"] {
            assert_eq!((m(p).mtime(), m(p).mtime_nsec()), (1_500_000_000, 123_456_789), "{p}");
        }
        if root {
            assert_eq!((m("theirs").uid(), m("theirs").gid()), (1234, 5678));
            assert_eq!((m("suid").uid(), m("suid").gid()), (0, 0));
        }
        // A restore into a non-empty target never replaces what is there.
        fs::set_permissions(out.join("ro"), fs::Permissions::from_mode(0o700)).unwrap();
        let err = Restorer::new(&repo, "test").restore(&tree, &out).unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
    }
}
