//! `lifeboat mount`: a repository's snapshots as a read-only filesystem (FUSE):
//!
//! ```text
//! MOUNTPOINT/services/NAME/TIME/…     each service's snapshots by time (and `latest`)
//! MOUNTPOINT/snapshots/ID/…           each snapshot by its short ID (and `latest`)
//! ```
//!
//! Below a snapshot's directory is its view ([`View`]): paths as the service saw them. Directory
//! listings read tree blobs; file data is fetched when read, chunk by chunk, through a cache of
//! bounded size. Memory does not grow with the snapshot: trees and chunks are cached up to fixed
//! budgets, and an entry is kept only while the kernel holds it (until it is forgotten).
//!
//! The filesystem is served on the calling thread until it is unmounted (`umount`, or an
//! interrupt, which detaches it: reads in flight then fail instead of hanging).

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request};

use super::view::{Entry, TreeCache, View};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::NodeKind;
use crate::repo::{BlobId, Repository};

/// How long the kernel may keep what it was told (nothing here ever changes).
const TTL: Duration = Duration::from_secs(3600);

const ROOT: u64 = 1;
const SERVICES: u64 = 2;
const SNAPSHOTS: u64 = 3;

/// What an inode is.
#[derive(Clone)]
enum What {
    /// A directory made of names: the root, `services`, `snapshots`, a service's.
    Listing(Vec<(OsString, Child)>),
    /// A symbolic link (`latest`).
    Link(OsString),
    /// An entry of snapshot `usize`'s view (its root is the snapshot's directory).
    Entry(usize, Box<Entry>),
}

/// An entry of a listing: another listing, or a snapshot's root.
#[derive(Clone)]
enum Child {
    Listing(Vec<(OsString, Child)>),
    Link(OsString),
    Snapshot(usize),
}

struct Inode {
    what: What,
    /// Where it was found (its key in `names`), and how many lookups the kernel holds.
    key: Option<(u64, OsString)>,
    lookups: u64,
}

/// An open file: its chunks with their offsets.
struct Open {
    chunks: Vec<(BlobId, u64, u64)>,
}

/// Decoded chunks, kept up to a budget of bytes (the oldest read go first).
struct ChunkCache {
    budget: usize,
    used: usize,
    order: VecDeque<BlobId>,
    chunks: HashMap<BlobId, Arc<Vec<u8>>>,
}

impl ChunkCache {
    fn get(&mut self, repo: &Repository, id: &BlobId, watch: Option<&Watch>) -> crate::repo::Result<Arc<Vec<u8>>> {
        if let Some(c) = self.chunks.get(id) {
            return Ok(c.clone());
        }
        let data = match watch.map(|w| w.take_prefetched(id)) {
            Some(Some(d)) => d,
            // Serving a service that waits (an instant restore): its bytes alone, at once.
            Some(None) => Arc::new(repo.load_blob_alone(id)?),
            None => Arc::new(repo.load_blob(id)?),
        };
        if let Some(w) = watch {
            w.fetched.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        while self.used + data.len() > self.budget {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(d) = self.chunks.remove(&old) {
                self.used -= d.len();
            }
        }
        self.used += data.len();
        self.order.push_back(*id);
        self.chunks.insert(*id, data.clone());
        Ok(data)
    }
}

/// What an instant restore learns from, and gives to, the filesystem serving a volume.
#[derive(Default)]
pub struct Watch {
    /// Bytes of file data read from the repository so far.
    pub fetched: std::sync::atomic::AtomicU64,
    /// Threads of the hydrator itself (its reads are not the service's).
    pub own_threads: std::sync::Mutex<std::collections::HashSet<i32>>,
    /// Files the service opened (paths in the volume), for the hydrator to copy up next.
    pub wanted: std::sync::Mutex<Vec<PathBuf>>,
    /// Chunks read ahead for the hydrator, taken once.
    prefetched: std::sync::Mutex<HashMap<BlobId, Arc<Vec<u8>>>>,
    /// Their bytes.
    prefetched_bytes: std::sync::atomic::AtomicU64,
}

impl Watch {
    fn take_prefetched(&self, id: &BlobId) -> Option<Arc<Vec<u8>>> {
        let taken = self.prefetched.lock().unwrap_or_else(|e| e.into_inner()).remove(id)?;
        self.prefetched_bytes.fetch_sub(taken.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Some(taken)
    }

    /// Hands a chunk read ahead to the filesystem (it counts as fetched when used).
    pub fn prefetched(&self, id: BlobId, data: Vec<u8>) {
        let len = data.len() as u64;
        if self.prefetched.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::new(data)).is_none() {
            self.prefetched_bytes.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Bytes read ahead and not yet used.
    pub fn prefetched_bytes(&self) -> u64 {
        self.prefetched_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops what was read ahead of `ids` and not used.
    pub fn forget_prefetched(&self, ids: &[BlobId]) {
        let mut map = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(d) = map.remove(id) {
                self.prefetched_bytes.fetch_sub(d.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Drops what was read ahead (the hydrator moved on, or the chunks were never asked for).
    pub fn drop_prefetched(&self) {
        self.prefetched.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.prefetched_bytes.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Files the service opened that a hydrator is told of at most between two of its looks.
const WANTED_MAX: usize = 4096;

/// The filesystem.
pub struct SnapshotFs<'r> {
    repo: &'r Repository,
    /// Serving one volume of the one snapshot (an instant restore's lower layer), not the
    /// `services`/`snapshots` tree.
    volume: Option<usize>,
    watch: Option<Arc<Watch>>,
    snapshots: Vec<(String, Snapshot)>,
    trees: TreeCache,
    inodes: HashMap<u64, Inode>,
    names: HashMap<(u64, OsString), u64>,
    next_ino: u64,
    open: HashMap<u64, Open>,
    next_fh: u64,
    chunks: ChunkCache,
    /// The time shown for the directories the mount makes (when it was mounted).
    mounted_at: SystemTime,
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// A snapshot's time as a directory name: `2026-12-07T02:30:00Z`.
fn time_name(s: &Snapshot) -> String {
    chrono::DateTime::parse_from_rfc3339(&s.time)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| s.time.clone())
}

impl<'r> SnapshotFs<'r> {
    /// The filesystem of `snapshots` (oldest first) of `repo`, keeping up to `cache_bytes` of
    /// file data.
    pub fn new(repo: &'r Repository, snapshots: Vec<(String, Snapshot)>, cache_bytes: usize) -> SnapshotFs<'r> {
        let mut services: Vec<(OsString, Child)> = Vec::new();
        let mut by_service: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, (_, s)) in snapshots.iter().enumerate() {
            // A name that cannot be a directory's (a hand-made snapshot) is left out.
            if s.service.is_empty() || s.service == "." || s.service == ".." || s.service.contains(['/', '\0']) {
                continue;
            }
            by_service.entry(&s.service).or_default().push(i);
        }
        for (name, idx) in &by_service {
            let mut dirs: Vec<(OsString, Child)> = Vec::new();
            for &i in idx {
                // Two snapshots in one second get -2, -3…
                let base = time_name(&snapshots[i].1).replace(['/', '\0'], "_");
                let mut n = 1;
                let mut dir = base.clone();
                while dirs.iter().any(|(d, _)| d == OsStr::new(&dir)) {
                    n += 1;
                    dir = format!("{base}-{n}");
                }
                dirs.push((dir.into(), Child::Snapshot(i)));
            }
            if let Some((newest, _)) = dirs.last() {
                dirs.push(("latest".into(), Child::Link(newest.clone())));
            }
            dirs.sort_by(|a, b| a.0.cmp(&b.0));
            services.push((OsString::from(*name), Child::Listing(dirs)));
        }
        let mut ids: Vec<(OsString, Child)> = snapshots
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (OsString::from(&id[..12.min(id.len())]), Child::Snapshot(i)))
            .collect();
        if let Some((id, _)) = snapshots.last() {
            ids.push(("latest".into(), Child::Link(OsString::from(&id[..12.min(id.len())]))));
        }
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        let mut inodes = HashMap::new();
        let fixed = |what| Inode { what, key: None, lookups: 0 };
        inodes.insert(
            ROOT,
            fixed(What::Listing(vec![
                ("services".into(), Child::Listing(services.clone())),
                ("snapshots".into(), Child::Listing(ids.clone())),
            ])),
        );
        inodes.insert(SERVICES, fixed(What::Listing(services)));
        inodes.insert(SNAPSHOTS, fixed(What::Listing(ids)));
        let mut names = HashMap::new();
        names.insert((ROOT, OsString::from("services")), SERVICES);
        names.insert((ROOT, OsString::from("snapshots")), SNAPSHOTS);
        SnapshotFs {
            repo,
            volume: None,
            watch: None,
            snapshots,
            trees: TreeCache::default(),
            inodes,
            names,
            next_ino: 4,
            open: HashMap::new(),
            next_fh: 1,
            chunks: ChunkCache {
                budget: cache_bytes.max(1 << 20),
                used: 0,
                order: VecDeque::new(),
                chunks: HashMap::new(),
            },
            mounted_at: SystemTime::now(),
        }
    }

    /// The filesystem of volume `volume` of `snapshot` alone: its root is the volume's
    /// directory. The service's opens are told to `watch`, and chunks are taken from it.
    pub fn volume(
        repo: &'r Repository,
        snapshot: (String, Snapshot),
        volume: usize,
        cache_bytes: usize,
        watch: Arc<Watch>,
    ) -> Option<SnapshotFs<'r>> {
        let root = View::volume(repo, &snapshot.1, volume, TreeCache::default())?.root();
        let mut fs = SnapshotFs::new(repo, vec![snapshot], cache_bytes);
        fs.inodes.clear();
        fs.names.clear();
        fs.inodes.insert(ROOT, Inode { what: What::Entry(0, Box::new(root)), key: None, lookups: 0 });
        fs.volume = Some(volume);
        fs.watch = Some(watch);
        Some(fs)
    }

    fn view(&self, snap: usize) -> View<'r> {
        match self.volume {
            Some(v) => View::volume(self.repo, &self.snapshots[snap].1, v, self.trees.clone())
                .expect("the volume was found when the filesystem was made"),
            None => View::sharing(self.repo, &self.snapshots[snap].1, self.trees.clone()),
        }
    }

    fn what_of(&self, child: &Child) -> What {
        match child {
            Child::Listing(l) => What::Listing(l.clone()),
            Child::Link(t) => What::Link(t.clone()),
            Child::Snapshot(i) => What::Entry(*i, Box::new(self.view(*i).root())),
        }
    }

    fn attr(&self, ino: u64, what: &What) -> FileAttr {
        let base = FileAttr {
            ino,
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match what {
            What::Listing(_) => base,
            What::Link(t) => FileAttr { kind: FileType::Symlink, perm: 0o777, nlink: 1, size: t.len() as u64, ..base },
            What::Entry(_, e) => {
                let n = &e.node;
                let kind = match n.kind {
                    NodeKind::File => FileType::RegularFile,
                    NodeKind::Dir => FileType::Directory,
                    NodeKind::Symlink => FileType::Symlink,
                    NodeKind::Char => FileType::CharDevice,
                    NodeKind::Block => FileType::BlockDevice,
                    NodeKind::Fifo => FileType::NamedPipe,
                };
                let size = match n.kind {
                    NodeKind::Symlink => n.target.as_deref().map_or(0, |t| t.len() as u64 / 2),
                    _ => n.size,
                };
                FileAttr {
                    size,
                    blocks: size.div_ceil(512),
                    atime: time_of(n.mtime_ns),
                    mtime: time_of(n.mtime_ns),
                    ctime: time_of(n.ctime_ns),
                    crtime: time_of(n.mtime_ns),
                    kind,
                    perm: (n.mode & 0o7777) as u16,
                    nlink: if n.kind == NodeKind::Dir { 2 } else { n.links.clamp(1, u32::MAX as u64) as u32 },
                    uid: n.uid,
                    gid: n.gid,
                    rdev: n.rdev as u32,
                    ..base
                }
            }
        }
    }

    /// The entries of directory inode `ino`: (name, what it is), without `.` and `..`.
    fn children(&self, ino: u64) -> Result<Vec<(OsString, What)>, i32> {
        match &self.inodes.get(&ino).ok_or(libc::ENOENT)?.what {
            What::Listing(l) => Ok(l.iter().map(|(n, c)| (n.clone(), self.what_of(c))).collect()),
            What::Link(_) => Err(libc::ENOTDIR),
            What::Entry(snap, e) if e.is_dir() => {
                let view = self.view(*snap);
                let children = view.children(e).map_err(|err| {
                    tracing::error!(path = %e.path.display(), error = %err, "cannot read a directory of the snapshot");
                    libc::EIO
                })?;
                Ok(children
                    .into_iter()
                    .map(|c| (OsStr::from_bytes(&c.node.name_bytes()).to_os_string(), What::Entry(*snap, Box::new(c))))
                    .collect())
            }
            What::Entry(..) => Err(libc::ENOTDIR),
        }
    }

    /// The entry `name` of directory inode `ino`, if it has one.
    fn child(&self, ino: u64, name: &OsStr) -> Result<Option<What>, i32> {
        match &self.inodes.get(&ino).ok_or(libc::ENOENT)?.what {
            What::Entry(snap, e) if e.is_dir() => {
                let found = self.view(*snap).child(e, name.as_bytes()).map_err(|err| {
                    tracing::error!(path = %e.path.display(), error = %err, "cannot read a directory of the snapshot");
                    libc::EIO
                })?;
                Ok(found.map(|c| What::Entry(*snap, Box::new(c))))
            }
            _ => Ok(self.children(ino)?.into_iter().find(|(n, _)| n == name).map(|(_, w)| w)),
        }
    }

    /// The inode for `name` in `parent`, counted as one more lookup.
    fn remember(&mut self, parent: u64, name: &OsStr, what: What) -> u64 {
        let key = (parent, name.to_os_string());
        if let Some(&ino) = self.names.get(&key)
            && let Some(i) = self.inodes.get_mut(&ino)
        {
            i.lookups += 1;
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.names.insert(key.clone(), ino);
        self.inodes.insert(ino, Inode { what, key: Some(key), lookups: 1 });
        ino
    }

    fn open_file(&mut self, ino: u64) -> Result<u64, i32> {
        let Some(Inode { what: What::Entry(_, e), .. }) = self.inodes.get(&ino) else { return Err(libc::EISDIR) };
        if e.node.kind != NodeKind::File {
            return Err(libc::EINVAL);
        }
        let mut chunks = Vec::with_capacity(e.node.content.len());
        let mut offset = 0u64;
        for id in &e.node.content {
            let Some(loc) = self.repo.locate(id) else {
                tracing::error!(path = %e.path.display(), chunk = id.hex(), "a chunk of the file is not in the repository's index");
                return Err(libc::EIO);
            };
            chunks.push((*id, offset, loc.raw as u64));
            offset += loc.raw as u64;
        }
        if offset != e.node.size {
            tracing::error!(path = %e.path.display(), "the file's chunks do not add up to its size");
            return Err(libc::EIO);
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.open.insert(fh, Open { chunks });
        Ok(fh)
    }

    fn read_at(&mut self, fh: u64, offset: u64, size: usize) -> Result<Piece, i32> {
        let open = self.open.get(&fh).ok_or(libc::EBADF)?;
        let first = open.chunks.partition_point(|(_, start, len)| start + len <= offset);
        let wanted: Vec<(BlobId, u64, u64)> =
            open.chunks[first..].iter().take_while(|(_, start, _)| *start < offset + size as u64).copied().collect();
        let mut out = Vec::new();
        for (id, start, len) in &wanted {
            let data = self.chunks.get(self.repo, id, self.watch.as_deref()).map_err(|e| {
                tracing::error!(chunk = id.hex(), error = %e, "cannot read a chunk of the file");
                libc::EIO
            })?;
            if data.len() as u64 != *len {
                tracing::error!(chunk = id.hex(), "a chunk is not the length the index says");
                return Err(libc::EIO);
            }
            let from = (offset.saturating_sub(*start) as usize).min(data.len());
            if wanted.len() == 1 {
                // All within one chunk (most reads): handed over without a copy.
                let to = (from + size).min(data.len());
                return Ok(Piece::One(data, from, to));
            }
            let room = size - out.len();
            let part = &data[from..];
            out.extend_from_slice(&part[..part.len().min(room)]);
            if out.len() == size {
                break;
            }
        }
        Ok(Piece::Many(out))
    }
}

/// What a read returns: part of one chunk, or bytes gathered from several.
enum Piece {
    One(Arc<Vec<u8>>, usize, usize),
    Many(Vec<u8>),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::One(d, from, to) => &d[*from..*to],
            Piece::Many(v) => v,
        }
    }
}

/// A name's inode number in a listing that was not looked up (`ls` without `-l`): stable for
/// the name, and never one handed out by lookups.
fn listing_ino(parent: u64, name: &OsStr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ parent;
    for b in name.as_bytes() {
        h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1 << 63
}

impl Filesystem for SnapshotFs<'_> {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let what = match self.child(parent, name) {
            Ok(Some(w)) => w,
            Ok(None) => return reply.error(libc::ENOENT),
            Err(e) => return reply.error(e),
        };
        let ino = self.remember(parent, name, what);
        let what = self.inodes[&ino].what.clone();
        reply.entry(&TTL, &self.attr(ino, &what), 0);
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        if ino <= SNAPSHOTS {
            return;
        }
        let gone = match self.inodes.get_mut(&ino) {
            Some(i) => {
                i.lookups = i.lookups.saturating_sub(nlookup);
                i.lookups == 0
            }
            None => false,
        };
        if gone && let Some(Inode { key: Some(key), .. }) = self.inodes.remove(&ino) {
            self.names.remove(&key);
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.inodes.get(&ino) {
            Some(i) => reply.attr(&TTL, &self.attr(ino, &i.what)),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.inodes.get(&ino).map(|i| &i.what) {
            Some(What::Link(t)) => reply.data(t.as_bytes()),
            Some(What::Entry(_, e)) if e.node.kind == NodeKind::Symlink => {
                reply.data(&e.node.target.as_deref().and_then(|t| hex::decode(t).ok()).unwrap_or_default())
            }
            Some(_) => reply.error(libc::EINVAL),
            None => reply.error(libc::ENOENT),
        }
    }

    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: fuser::ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        if let Some(w) = &self.watch
            && let Some(Inode { what: What::Entry(_, e), .. }) = self.inodes.get(&ino)
            && !w.own_threads.lock().unwrap_or_else(|e| e.into_inner()).contains(&(req.pid() as i32))
        {
            // Bounded: a busy service while the copy is held up must not grow it for ever.
            let mut wanted = w.wanted.lock().unwrap_or_else(|e| e.into_inner());
            if wanted.len() < WANTED_MAX && wanted.last() != Some(&e.path) {
                wanted.push(e.path.clone());
            }
        }
        match self.open_file(ino) {
            // The content never changes: the kernel may keep what it read.
            Ok(fh) => reply.opened(fh, fuser::consts::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        match self.read_at(fh, offset.max(0) as u64, size as usize) {
            Ok(piece) => reply.data(piece.bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        self.open.remove(&fh);
        reply.ok();
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let children = match self.children(ino) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![(ino, FileType::Directory, ".".into())];
        all.push((ino, FileType::Directory, "..".into()));
        for (name, what) in children {
            let kind = self.attr(0, &what).kind;
            let child_ino = self.names.get(&(ino, name.clone())).copied().unwrap_or_else(|| listing_ino(ino, &name));
            all.push((child_ino, kind, name));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(child, (i + 1) as i64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&mut self, _req: &Request<'_>, ino: u64, name: &OsStr, size: u32, reply: fuser::ReplyXattr) {
        let Some(What::Entry(_, e)) = self.inodes.get(&ino).map(|i| &i.what) else { return reply.error(libc::ENODATA) };
        let Some(value) = super::view::file_xattrs(&e.node).find(|(k, _)| OsStr::new(k) == name).map(|(_, v)| v) else {
            return reply.error(libc::ENODATA);
        };
        match size {
            0 => reply.size(value.len() as u32),
            n if (n as usize) < value.len() => reply.error(libc::ERANGE),
            _ => reply.data(&value),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: fuser::ReplyXattr) {
        let mut list = Vec::new();
        if let Some(What::Entry(_, e)) = self.inodes.get(&ino).map(|i| &i.what) {
            for (k, _) in super::view::file_xattrs(&e.node) {
                list.extend_from_slice(k.as_bytes());
                list.push(0);
            }
        }
        match size {
            0 => reply.size(list.len() as u32),
            n if (n as usize) < list.len() => reply.error(libc::ERANGE),
            _ => reply.data(&list),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: fuser::ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }
}

/// Serves `fs` at `mountpoint` until it is unmounted, or until the process is asked to stop
/// (then it is detached: the mount point is free again at once, and reads still in flight
/// fail rather than hang).
/// Only root (who mounts it) can read it, unless `allow_other`: then every user can, as the
/// files' owners and modes allow (the container's user IDs taken as the host's).
pub fn serve(
    fs: SnapshotFs<'_>,
    mountpoint: &Path,
    allow_other: bool,
    on_mounted: &mut dyn FnMut(),
) -> anyhow::Result<()> {
    let mut options = vec![
        MountOption::RO,
        MountOption::FSName("lifeboat".into()),
        MountOption::Subtype("lifeboat".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if allow_other {
        options.push(MountOption::AllowOther);
    }
    run_session(fs, mountpoint, &options, on_mounted, true)
}

/// Serves a volume's filesystem ([`SnapshotFs::volume`]) as an overlay's lower layer at
/// `mountpoint` until it is unmounted. The overlay reaches it with the credentials of whoever
/// mounted the overlay, for the container's processes, whatever their user: so every user may
/// pass (the mount point itself sits in a directory only root can enter), and set-ID bits and
/// devices work as they did in the volume.
pub fn serve_lower(fs: SnapshotFs<'_>, mountpoint: &Path, on_mounted: &mut dyn FnMut()) -> anyhow::Result<()> {
    let options = [
        MountOption::RO,
        MountOption::FSName("lifeboat".into()),
        MountOption::Subtype("lifeboat".into()),
        MountOption::DefaultPermissions,
        MountOption::AllowOther,
    ];
    run_session(fs, mountpoint, &options, on_mounted, false)
}

fn run_session(
    fs: SnapshotFs<'_>,
    mountpoint: &Path,
    options: &[MountOption],
    on_mounted: &mut dyn FnMut(),
    detach_on_interrupt: bool,
) -> anyhow::Result<()> {
    let mut session = fuser::Session::new(fs, mountpoint, options)
        .map_err(|e| anyhow::anyhow!("cannot mount at {}: {e}", mountpoint.display()))?;
    on_mounted();
    let target: PathBuf = mountpoint.to_path_buf();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = detach_on_interrupt.then(|| {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if crate::sys::interrupted() {
                    if let Err(e) = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH) {
                        tracing::warn!(error = %e, "cannot unmount the snapshots");
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    let result = session.run();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    drop(session);
    result.map_err(|e| anyhow::anyhow!("serving the snapshots at {}: {e}", mountpoint.display()))
}
