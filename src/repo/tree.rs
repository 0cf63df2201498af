//! Directory trees in the repository: each directory is a tree blob listing its entries
//! (metadata, the chunk IDs of a file's content, the tree ID of a subdirectory).
//!
//! Archiving reuses a file's chunk list from the parent snapshot when size, mtime, ctime and
//! inode are unchanged, so an incremental snapshot reads only what changed. Restoring verifies
//! every chunk (authenticated, and its keyed ID recomputed) before writing it.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::Stat;

use crate::fsutil::scope::{fd_path, list_dir, open_dir_beneath, stat_beneath};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BlobId, BlobType, Location, RepoError, Repository, Result};

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

pub fn load_tree(repo: &Repository, id: &BlobId) -> Result<Tree> {
    let bytes = repo.load_blob(id)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RepoError::Corrupt { location: repo.location(), what: format!("tree {}: {e}", id.hex()) })
}

pub struct Archiver<'r> {
    repo: &'r Repository,
    pub stats: ArchiveStats,
    buf: Vec<u8>,
    /// While a directory is archived, files to read go to these threads (see `FileJob`).
    files: Option<std::sync::mpsc::SyncSender<FileJob>>,
    /// Told the running totals after every file (progress displays).
    pub on_progress: Option<ProgressFn>,
    /// Files changed (by ctime) before this time, in nanoseconds, are probably unchanged since
    /// the parent snapshot: read-ahead skips them. None: read ahead every file.
    pub read_ahead_since: Option<i64>,
    read_ahead: Option<ReadAhead>,
    /// Regular files met so far in the current `archive_dir` walk (read-ahead follows it).
    files_met: u64,
    depth: usize,
}

/// A thread that walks a directory tree a little ahead of the archiver, in the same order,
/// and asks the kernel to start reading the files the archiver is about to read (their
/// metadata comes into the cache on the way): a cold snapshot then waits on the disk far
/// less, as many reads are in flight at once.
struct ReadAhead {
    shared: std::sync::Arc<ReadAheadShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct ReadAheadShared {
    /// Regular files the archiver has reached.
    reached: std::sync::atomic::AtomicU64,
    stop: std::sync::atomic::AtomicBool,
    lock: std::sync::Mutex<()>,
    wake: std::sync::Condvar,
}

/// A file whose content a reader thread is to read, cut, and store. Reading files on several
/// threads keeps the disk busy with several reads at once and spreads the chunking and
/// hashing over the cores, while the archiver walks on; it collects each directory's
/// results in order when the directory is done.
struct FileJob {
    /// The file: a name in a directory held open (never a path followed from the top).
    dir: Arc<OwnedFd>,
    name: OsString,
    /// Its path, for messages.
    path: PathBuf,
    reply: std::sync::mpsc::SyncSender<Result<Option<FileContent>>>,
}

/// A file's stored content: its chunk IDs, and how many of their bytes were new.
struct FileContent {
    ids: Vec<BlobId>,
    new_bytes: u64,
}

/// A file's content, read now or coming from a reader thread.
enum Content {
    Ready(Option<FileContent>),
    Coming(std::sync::mpsc::Receiver<Result<Option<FileContent>>>),
}

/// Threads reading files for a directory walk: one per core and one more, so that one
/// waiting on the disk leaves the cores busy; and at most this many files queued for them.
fn file_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4) + 1
}
const FILES_QUEUED: usize = 64;

/// Opens regular file `name` in `dir` for reading without updating its access time, as
/// backup tools do: a read that updates it dirties the inode, so a first backup of freshly
/// copied data would write (and journal) every file's inode while reading it (needs the file's
/// owner or CAP_FOWNER; otherwise the file is opened as usual). The name is never followed if
/// it is a symlink, and what is there is opened only if it is (still) a regular file: a live
/// tree can swap in a device node or a FIFO after it was listed.
fn open_noatime(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<Option<File>> {
    use rustix::fs::{FileType, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, rustix::fs::Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, rustix::fs::Mode::empty()),
        other => other,
    };
    let fd = match fd {
        Ok(fd) => fd,
        // Gone, or replaced by a symlink: not this file any more.
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    // Reads block as usual from here (a regular file ignores the flag, but say so).
    rustix::fs::fcntl_setfl(&fd, rustix::fs::fcntl_getfl(&fd)? - OFlags::NONBLOCK)?;
    Ok(Some(File::from(fd)))
}

/// Reads, cuts and stores the content of file `name` in `dir`; None if it vanished (a
/// running service may delete a file between the directory listing and the read) or is no
/// longer a regular file.
fn file_content(
    repo: &Repository,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    buf: &mut Vec<u8>,
) -> Result<Option<FileContent>> {
    let mut file = match open_noatime(dir, name) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(read_err(repo, path, e)),
    };
    let params = repo.config.chunker;
    let mut content = FileContent { ids: Vec::new(), new_bytes: 0 };
    let mut save = |chunk: &[u8]| {
        let (id, new) = repo.save_blob(BlobType::Data, chunk)?;
        if new {
            content.new_bytes += chunk.len() as u64;
        }
        content.ids.push(id);
        Ok::<_, RepoError>(())
    };
    let size = file.metadata().map_err(|e| read_err(repo, path, e))?.len();
    if size <= SMALL_FILE {
        // Most files: read whole into one reused buffer and cut there (no per-file chunker
        // buffer to allocate and clear, one copy less).
        if buf.capacity() > SMALL_FILE_KEPT && size as usize <= SMALL_FILE_KEPT {
            *buf = Vec::new(); // one large file does not keep its memory for the rest
        }
        buf.clear();
        buf.reserve_exact(size as usize + 1);
        std::io::Read::read_to_end(&mut file, buf).map_err(|e| read_err(repo, path, e))?;
        super::chunk_slice(buf, params).try_for_each(save)?;
    } else {
        // Whole files are read front to back: let the kernel read further ahead.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
        for chunk in super::chunks(file, params) {
            save(&chunk.map_err(|e| read_err(repo, path, e))?)?;
        }
    }
    Ok(Some(content))
}

/// Files up to this size are read whole into a reused buffer and cut there.
const SMALL_FILE: u64 = 4 << 20;
/// A reader thread keeps a buffer of up to this size between files.
const SMALL_FILE_KEPT: usize = 1 << 20;

/// How many files read-ahead may run ahead of the archiver, and how much of each it asks for.
const READ_AHEAD_FILES: u64 = 256;
const READ_AHEAD_BYTES: u64 = 4 << 20;

impl ReadAhead {
    fn start(dir: &Path, since: Option<i64>) -> Option<ReadAhead> {
        let shared = std::sync::Arc::new(ReadAheadShared::default());
        let top = open_dir(dir).ok()?;
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || {
                let mut met = 0;
                Self::walk(top.as_fd(), since, &theirs, &mut met);
            })
            .ok()?;
        Some(ReadAhead { shared, thread: Some(thread) })
    }

    /// Walks `dir` in the archiver's order (by descriptor, never following a symlink);
    /// false once told to stop.
    fn walk(dir: BorrowedFd<'_>, since: Option<i64>, shared: &ReadAheadShared, met: &mut u64) -> bool {
        use rustix::fs::FileType;
        use std::sync::atomic::Ordering::Relaxed;
        let Ok(names) = list_dir(dir) else { return true };
        for name in names {
            let Ok(st) = stat_beneath(dir, &name) else { continue };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let Ok(sub) = open_dir_beneath(dir, &name) else { continue };
                    if !Self::walk(sub.as_fd(), since, shared, met) {
                        return false;
                    }
                }
                FileType::RegularFile => {
                    *met += 1;
                    let mut guard = shared.lock.lock().expect("read-ahead");
                    while *met > shared.reached.load(Relaxed) + READ_AHEAD_FILES && !shared.stop.load(Relaxed) {
                        guard = shared.wake.wait_timeout(guard, Duration::from_millis(50)).expect("read-ahead").0;
                    }
                    drop(guard);
                    if shared.stop.load(Relaxed) {
                        return false;
                    }
                    let changed = since.is_none_or(|t| st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64 >= t);
                    if changed
                        && st.st_size > 0
                        && let Ok(Some(f)) = open_noatime(dir, &name)
                    {
                        let len = std::num::NonZeroU64::new((st.st_size as u64).min(READ_AHEAD_BYTES));
                        let _ = rustix::fs::fadvise(&f, 0, len, rustix::fs::Advice::WillNeed);
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// The archiver reached its `n`th regular file.
    fn reached(&self, n: u64) {
        self.shared.reached.store(n, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(32) {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.shared.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A progress callback: running totals so far.
pub type ProgressFn = std::sync::Arc<dyn Fn(&ArchiveStats) + Send + Sync>;
/// A restore's progress callback: running totals so far.
pub type RestoreProgressFn = std::sync::Arc<dyn Fn(&RestoreStats) + Send + Sync>;

/// The directory at `path` (a path the caller trusts: a container's layer, a volume).
fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    use rustix::fs::OFlags;
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())?)
}

fn read_err(repo: &Repository, path: &Path, e: std::io::Error) -> RepoError {
    RepoError::Other { location: repo.location(), what: format!("cannot read {}: {e}", path.display()) }
}

impl<'r> Archiver<'r> {
    pub fn new(repo: &'r Repository) -> Archiver<'r> {
        Archiver {
            repo,
            stats: ArchiveStats::default(),
            buf: Vec::new(),
            files: None,
            on_progress: None,
            read_ahead_since: None,
            read_ahead: None,
            files_met: 0,
            depth: 0,
        }
    }

    /// Archives the directory `dir`; `parent` is the same directory's tree in the previous
    /// snapshot, if any.
    ///
    /// The tree is walked one directory descriptor at a time and no symlink is followed: a
    /// running service that swaps a directory for a link to a host path while it is read gets
    /// its link stored, never the host's files.
    pub fn archive_dir(&mut self, dir: &Path, parent: Option<&BlobId>) -> Result<BlobId> {
        self.files_met = 0;
        self.read_ahead = ReadAhead::start(dir, self.read_ahead_since);
        let (tx, rx) = std::sync::mpsc::sync_channel::<FileJob>(FILES_QUEUED);
        let (jobs, abandon) = (std::sync::Mutex::new(rx), std::sync::atomic::AtomicBool::new(false));
        let repo = self.repo;
        let result = std::thread::scope(|s| {
            let mut started = 0;
            for i in 0..file_threads() {
                let (jobs, abandon) = (&jobs, &abandon);
                let spawned = std::thread::Builder::new().name(format!("read-{i}")).spawn_scoped(s, move || {
                    super::yield_to_feeder();
                    let mut buf = Vec::new();
                    loop {
                        let Ok(job) = jobs.lock().expect("file queue").recv() else { return };
                        if abandon.load(std::sync::atomic::Ordering::Relaxed) {
                            continue;
                        }
                        let _ = job.reply.send(file_content(repo, job.dir.as_fd(), &job.name, &job.path, &mut buf));
                    }
                });
                if spawned.is_err() {
                    break;
                }
                started += 1;
            }
            // Without reader threads, the archiver reads the files itself.
            self.files = (started > 0).then_some(tx);
            self.depth += 1;
            let result = open_dir(dir)
                .map_err(|e| read_err(repo, dir, e))
                .and_then(|fd| self.archive_dir_inner(Arc::new(fd), dir, parent));
            self.depth -= 1;
            // The readers finish once the queue is empty: nothing is left in it on success.
            self.files = None;
            abandon.store(result.is_err(), std::sync::atomic::Ordering::Relaxed);
            result
        });
        self.read_ahead = None;
        result
    }

    fn archive_dir_inner(&mut self, dir: Arc<OwnedFd>, dir_path: &Path, parent: Option<&BlobId>) -> Result<BlobId> {
        let parent_tree = match parent {
            Some(id) => Some(load_tree(self.repo, id)?),
            None => None,
        };
        let by_name: HashMap<&str, &Node> =
            parent_tree.iter().flat_map(|t| t.nodes.iter()).map(|n| (n.name.as_str(), n)).collect();
        let names = list_dir(dir.as_fd()).map_err(|e| read_err(self.repo, dir_path, e))?;
        let mut nodes = Vec::with_capacity(names.len());
        for name in names {
            let path = dir_path.join(&name);
            let meta = match stat_beneath(dir.as_fd(), &name) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_err(self.repo, &path, e)),
            };
            let hex_name = hex::encode(name.as_bytes());
            let previous = by_name.get(hex_name.as_str()).copied();
            if let Some(node) = self.node(&dir, name, &path, hex_name, &meta, previous)? {
                nodes.push(node);
            }
        }
        // The files' contents, in order, as the reader threads finish them.
        let mut tree = Tree { nodes: Vec::with_capacity(nodes.len()) };
        for (node, content) in nodes {
            tree.nodes.extend(self.complete(node, content)?);
        }
        self.stats.dirs += 1;
        let json = serde_json::to_vec(&tree).expect("trees serialise");
        let (id, new) = self.repo.save_blob(BlobType::Tree, &json)?;
        if new {
            self.stats.new_bytes += json.len() as u64;
        }
        Ok(id)
    }

    /// The node for entry `file_name` of directory `dir` (`path` names it in messages).
    fn node(
        &mut self,
        dir: &Arc<OwnedFd>,
        file_name: OsString,
        path: &Path,
        name: String,
        meta: &Stat,
        previous: Option<&Node>,
    ) -> Result<Option<(Node, Option<Content>)>> {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(meta.st_mode) {
            FileType::RegularFile => NodeKind::File,
            FileType::Directory => NodeKind::Dir,
            FileType::Symlink => NodeKind::Symlink,
            FileType::CharacterDevice => NodeKind::Char,
            FileType::BlockDevice => NodeKind::Block,
            FileType::Fifo => NodeKind::Fifo,
            _ => return Ok(None), // sockets are not content
        };
        let mut node = Node {
            name,
            kind,
            mode: meta.st_mode & 0o7777,
            uid: meta.st_uid,
            gid: meta.st_gid,
            mtime_ns: meta.st_mtime * 1_000_000_000 + meta.st_mtime_nsec as i64,
            ctime_ns: meta.st_ctime * 1_000_000_000 + meta.st_ctime_nsec as i64,
            inode: meta.st_ino,
            links: meta.st_nlink,
            size: if kind == NodeKind::File { meta.st_size.max(0) as u64 } else { 0 },
            content: Vec::new(),
            subtree: None,
            target: None,
            rdev: if matches!(kind, NodeKind::Char | NodeKind::Block) { meta.st_rdev } else { 0 },
            // By a name through the directory's descriptor, not following the entry.
            xattrs: xattrs(&fd_path(dir.as_ref()).join(&file_name)),
        };
        let mut content = None;
        match kind {
            NodeKind::File => {
                self.files_met += 1;
                if let Some(r) = &self.read_ahead {
                    r.reached(self.files_met);
                }
                self.stats.files += 1;
                self.stats.bytes += node.size;
                let unchanged = previous.filter(|p| {
                    p.kind == NodeKind::File
                        && p.size == node.size
                        && p.mtime_ns == node.mtime_ns
                        && p.ctime_ns == node.ctime_ns
                        && p.inode == node.inode
                });
                match unchanged {
                    Some(p) if p.content.iter().all(|c| self.repo.has_blob(c)) => {
                        node.content = p.content.clone();
                        if let Some(f) = &self.on_progress {
                            f(&self.stats);
                        }
                    }
                    _ => content = Some(self.read_content(dir, file_name, path)?),
                }
            }
            NodeKind::Dir => {
                let parent_sub = previous.filter(|p| p.kind == NodeKind::Dir).and_then(|p| p.subtree);
                let sub = match open_dir_beneath(dir.as_fd(), &file_name) {
                    Ok(sub) => sub,
                    // Removed, or replaced by something else, since it was listed.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(read_err(self.repo, path, e)),
                };
                self.depth += 1;
                let subtree = self.archive_dir_inner(Arc::new(sub), path, parent_sub.as_ref());
                self.depth -= 1;
                node.subtree = Some(subtree?);
            }
            NodeKind::Symlink => {
                let t = match rustix::fs::readlinkat(dir.as_fd(), &file_name, Vec::new()) {
                    Ok(t) => t,
                    Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => return Ok(None),
                    Err(e) => return Err(read_err(self.repo, path, e.into())),
                };
                node.target = Some(hex::encode(t.as_bytes()));
            }
            _ => {}
        }
        Ok(Some((node, content)))
    }

    /// The content of file `name` in `dir`: handed to the reader threads if they run.
    fn read_content(&mut self, dir: &Arc<OwnedFd>, name: OsString, path: &Path) -> Result<Content> {
        if let Some(files) = &self.files {
            let (reply, rx) = std::sync::mpsc::sync_channel(1);
            let job = FileJob { dir: dir.clone(), name: name.clone(), path: path.to_path_buf(), reply };
            if files.send(job).is_ok() {
                return Ok(Content::Coming(rx));
            }
        }
        Ok(Content::Ready(file_content(self.repo, dir.as_fd(), &name, path, &mut self.buf)?))
    }

    /// Completes a node with its file's content (waiting for a reader thread if need be)
    /// and counts it; None if the file vanished before it could be read.
    fn complete(&mut self, mut node: Node, content: Option<Content>) -> Result<Option<Node>> {
        let content = match content {
            None => return Ok(Some(node)),
            Some(Content::Ready(c)) => c,
            Some(Content::Coming(rx)) => rx.recv().map_err(|_| RepoError::Other {
                location: self.repo.location(),
                what: "a file reader thread stopped".into(),
            })??,
        };
        let Some(content) = content else {
            self.stats.files -= 1;
            self.stats.bytes -= node.size;
            return Ok(None);
        };
        node.content = content.ids;
        self.stats.files_read += 1;
        self.stats.new_bytes += content.new_bytes;
        if let Some(f) = &self.on_progress {
            f(&self.stats);
        }
        Ok(Some(node))
    }

    /// Archives named files (not a directory) as one tree: used for image blobs.
    pub fn archive_files(&mut self, files: &[(String, PathBuf)], parent: Option<&BlobId>) -> Result<BlobId> {
        let parent_tree = match parent {
            Some(id) => Some(load_tree(self.repo, id)?),
            None => None,
        };
        let mut tree = Tree::default();
        let mut sorted = files.to_vec();
        sorted.sort();
        for (name, path) in sorted {
            let (Some(parent_dir), Some(file_name)) = (path.parent(), path.file_name()) else {
                return Err(read_err(self.repo, &path, std::io::ErrorKind::InvalidInput.into()));
            };
            let dir = Arc::new(open_dir(parent_dir).map_err(|e| read_err(self.repo, parent_dir, e))?);
            let meta = stat_beneath(dir.as_fd(), file_name).map_err(|e| read_err(self.repo, &path, e))?;
            let hex_name = hex::encode(name.as_bytes());
            let previous = parent_tree.as_ref().and_then(|t| t.nodes.iter().find(|n| n.name == hex_name));
            // Image blobs are content-addressed: same name and size means same bytes.
            let reuse = previous
                .filter(|p| p.size == meta.st_size as u64 && p.content.iter().all(|c| self.repo.has_blob(c)))
                .cloned();
            let node = match reuse {
                Some(n) => {
                    self.stats.files += 1;
                    self.stats.bytes += n.size;
                    n
                }
                None => {
                    let gone = || read_err(self.repo, &path, std::io::ErrorKind::NotFound.into());
                    let (node, content) =
                        self.node(&dir, file_name.to_os_string(), &path, hex_name, &meta, None)?.ok_or_else(gone)?;
                    let gone = || read_err(self.repo, &path, std::io::ErrorKind::NotFound.into());
                    self.complete(node, content)?.ok_or_else(gone)?
                }
            };
            tree.nodes.push(node);
        }
        let json = serde_json::to_vec(&tree).expect("trees serialise");
        Ok(self.repo.save_blob(BlobType::Tree, &json)?.0)
    }
}

fn xattrs(path: &Path) -> Vec<(String, String)> {
    // Most files have none: ask for the size of the name list first.
    let Ok(len) = rustix::fs::llistxattr(path, &mut [0u8; 0][..]) else { return Vec::new() };
    if len == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut buf[..]) else { return Vec::new() };
    let names: Vec<String> = buf[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| std::str::from_utf8(s).ok())
        .map(str::to_string)
        .collect();
    let mut out = Vec::new();
    for name in names {
        if let Ok(n) = rustix::fs::lgetxattr(path, name.as_str(), &mut buf[..]) {
            out.push((name, hex::encode(&buf[..n])));
        }
    }
    out.sort();
    out
}

/// Why restoring one entry failed.
pub enum RestoreFailure {
    Repo(RepoError),
    Text(String),
}

impl From<RepoError> for RestoreFailure {
    fn from(e: RepoError) -> Self {
        RestoreFailure::Repo(e)
    }
}
impl From<std::io::Error> for RestoreFailure {
    fn from(e: std::io::Error) -> Self {
        RestoreFailure::Text(e.to_string())
    }
}
impl From<String> for RestoreFailure {
    fn from(e: String) -> Self {
        RestoreFailure::Text(e)
    }
}
impl From<rustix::io::Errno> for RestoreFailure {
    fn from(e: rustix::io::Errno) -> Self {
        RestoreFailure::Text(e.to_string())
    }
}
impl From<hex::FromHexError> for RestoreFailure {
    fn from(e: hex::FromHexError) -> Self {
        RestoreFailure::Text(e.to_string())
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RestoreStats {
    pub files: u64,
    pub bytes: u64,
}

/// What one thread of the tree pass found: regular files (restored in the data pass) and
/// directories (their metadata is set last).
#[derive(Default)]
struct Found {
    files: Vec<(PathBuf, Node)>,
    dirs: Vec<(PathBuf, Node)>,
}

/// Why writing a pack's blobs stopped: the pack could not be read, or one blob could not be
/// restored (its error names its file).
enum PackStop {
    Read(RepoError),
    Blob(RepoError),
}

impl From<RepoError> for PackStop {
    fn from(e: RepoError) -> Self {
        PackStop::Read(e)
    }
}

/// A regular file to restore. The data worker that first has a blob for it creates it; the
/// one that writes its last blob sets its metadata through the open descriptor.
struct PendingFile {
    path: PathBuf,
    node: Node,
    /// Whether the file exists yet (set, under the lock, by the thread that creates it).
    created: std::sync::Mutex<bool>,
    /// Blobs still to be written.
    remaining: std::sync::atomic::AtomicUsize,
}

/// Writes a tree into `target` (created if missing, expected empty).
pub struct Restorer<'r> {
    repo: &'r Repository,
    /// Names the snapshot in error messages.
    label: String,
    /// The first name of each hard-linked inode: an index into `files`.
    links: HashMap<u64, usize>,
    /// Later names of hard-linked files, linked once the first name is complete.
    hard_links: Vec<(PathBuf, usize)>,
    /// Directories in the order they were created; their metadata is set last, deepest first.
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<PendingFile>,
    creator: Creator,
    pub stats: RestoreStats,
    /// Told the running totals as data is written (progress displays).
    pub on_progress: Option<RestoreProgressFn>,
}

impl<'r> Restorer<'r> {
    pub fn new(repo: &'r Repository, label: &str) -> Restorer<'r> {
        Restorer {
            repo,
            label: label.to_string(),
            links: HashMap::new(),
            hard_links: Vec::new(),
            dirs: Vec::new(),
            files: Vec::new(),
            creator: Creator { uid: u32::MAX, gid: u32::MAX, umask: 0o777, setgid_target: true },
            stats: RestoreStats::default(),
            on_progress: None,
        }
    }

    fn err(&self, path: &Path, what: impl Into<RestoreFailure>) -> RepoError {
        let location = self.repo.location();
        match what.into() {
            // Damaged data stays a "damaged" error, now naming the snapshot and the file.
            RestoreFailure::Repo(RepoError::Corrupt { what, .. }) => {
                RepoError::Corrupt { location, what: format!("{}: {}: {what}", self.label, path.display()) }
            }
            RestoreFailure::Repo(e) => {
                RepoError::Other { location, what: format!("{}: cannot restore {}: {e}", self.label, path.display()) }
            }
            RestoreFailure::Text(t) => {
                RepoError::Other { location, what: format!("{}: cannot restore {}: {t}", self.label, path.display()) }
            }
        }
    }

    /// Restores in three passes: the tree (directories, symbolic links, devices), the data
    /// (pack by pack, several packs at once, each read once; a file is created when its first
    /// blob comes and gets its owner, mode and times when its last one is written), then empty
    /// files, hard links and the directories' metadata (last, so read-only directories can
    /// still be filled and their times stay as recorded).
    pub fn restore(&mut self, tree: &BlobId, target: &Path) -> Result<()> {
        let started = std::time::Instant::now();
        fs::create_dir_all(target).map_err(|e| self.err(target, e))?;
        self.creator = Creator::of(target);
        self.restore_tree(tree, target)?;
        self.repo.drop_pack_cache(); // the trees are read; the data goes pack by pack
        tracing::debug!(files = self.files.len(), elapsed = ?started.elapsed(), "restore: tree pass done");
        self.fill_files()?;
        tracing::debug!(elapsed = ?started.elapsed(), "restore: data pass done");
        for f in &self.files {
            if f.node.content.is_empty() {
                let file = self.open_file(f).map_err(|e| self.err(&f.path, e))?;
                self.apply_file_metadata(&file, &f.node).map_err(|e| self.err(&f.path, e))?;
            }
        }
        for (path, fi) in &self.hard_links {
            fs::hard_link(&self.files[*fi].path, path).map_err(|e| self.err(path, e))?;
        }
        // Deepest first: sorted paths put a directory before everything in it.
        for (path, node) in std::mem::take(&mut self.dirs).into_iter().rev() {
            self.apply_metadata(&path, &node)?;
            set_times(&path, node.mtime_ns);
        }
        self.stats.files = self.files.len() as u64;
        tracing::debug!(elapsed = ?started.elapsed(), "restore: metadata pass done");
        Ok(())
    }

    /// Opens a file of the restore for writing, creating it (never following or replacing an
    /// existing entry, with [`created_mode`]) if no other thread has.
    fn open_file(&self, f: &PendingFile) -> std::io::Result<File> {
        let mut created = f.created.lock().expect("file state");
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(!*created)
            .mode(created_mode(&f.node))
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&f.path)?;
        *created = true;
        Ok(file)
    }

    /// Owner, mode, extended attributes and times of a complete regular file, through its
    /// descriptor (owner before mode, so set-id bits survive). The calls that would change
    /// nothing for a file this process created are skipped.
    fn apply_file_metadata(&self, file: &File, node: &Node) -> std::io::Result<()> {
        if !(self.creator.owns_as(node.uid, node.gid)) {
            let _ = std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid));
        }
        if node.mode & 0o7777 != created_mode(node) & !self.creator.umask {
            file.set_permissions(fs::Permissions::from_mode(node.mode))?;
        }
        for (k, v) in &node.xattrs {
            if let Ok(v) = hex::decode(v) {
                let _ = rustix::fs::fsetxattr(file, k.as_str(), &v, rustix::fs::XattrFlags::empty());
            }
        }
        let _ = rustix::fs::futimens(file, &timestamps(node.mtime_ns));
        Ok(())
    }

    /// Writes one blob of file `fi` at `offset`; after the file's last blob, sets its metadata.
    fn write_blob(&self, fi: usize, offset: u64, data: &[u8], open: &mut HashMap<usize, File>) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let f = &self.files[fi];
        let file = match open.entry(fi) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(self.open_file(f).map_err(|err| self.err(&f.path, err))?)
            }
        };
        file.write_all_at(data, offset).map_err(|e| self.err(&f.path, e))?;
        if f.remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            let file = open.remove(&fi).expect("opened above");
            self.apply_file_metadata(&file, &f.node).map_err(|e| self.err(&f.path, e))?;
        }
        Ok(())
    }

    /// Writes every file's content, reading each pack once, on one thread per core.
    fn fill_files(&mut self) -> Result<()> {
        // Where each blob goes: (file, offset). Blobs not in a written pack (rare: still pending)
        // are read one by one, here, and kept until written.
        type Target = (usize, u64);
        type PackBlobs = Vec<(BlobId, Location, Target)>;
        let mut by_pack: HashMap<[u8; 32], PackBlobs> = HashMap::new();
        let mut unpacked: Vec<(Vec<u8>, Target)> = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let mut offset = 0u64;
            for id in &f.node.content {
                match self.repo.locate(id) {
                    Some(loc) => {
                        by_pack.entry(loc.pack).or_default().push((*id, loc, (i, offset)));
                        offset += loc.raw as u64;
                    }
                    None => {
                        let data = self.repo.load_blob(id).map_err(|e| self.err(&f.path, e))?;
                        let len = data.len() as u64;
                        unpacked.push((data, (i, offset)));
                        offset += len;
                    }
                }
            }
            if offset != f.node.size {
                return Err(
                    self.err(&f.path, format!("content is {offset} bytes, the snapshot recorded {}", f.node.size))
                );
            }
        }
        let mut open = HashMap::new();
        for (data, (fi, offset)) in &unpacked {
            self.write_blob(*fi, *offset, data, &mut open)?;
        }
        drop(open);
        let mut packs: Vec<([u8; 32], PackBlobs)> = by_pack.into_iter().collect();
        for (_, blobs) in &mut packs {
            blobs.sort_by_key(|(_, loc, _)| loc.offset);
        }
        // Packs in the order their first file comes, so the tree fills roughly in order.
        packs.sort_by_key(|(_, blobs)| blobs.iter().map(|(_, _, (fi, _))| *fi).min().unwrap_or(0));
        let progress = std::sync::Mutex::new(self.stats);
        let total_files = self.files.len() as u64;
        let this = &*self;
        // Per thread: the pack buffer (reused: memory stays at a window per thread) and the
        // files the current pack writes to.
        type ThreadState = (Vec<u8>, HashMap<usize, File>);
        this.repo.on_pack_threads(
            &packs,
            |(pack, _)| pack,
            |(pack, blobs), (data, open): &mut ThreadState| {
                let mut written = 0;
                let result = this.repo.read_pack_blobs(
                    pack,
                    blobs,
                    |(id, loc, _)| (id, loc),
                    data,
                    |(_, _, (fi, offset)), plain| {
                        let plain = plain.map_err(|e| PackStop::Blob(this.err(&this.files[*fi].path, e)))?;
                        this.write_blob(*fi, *offset, &plain, open).map_err(PackStop::Blob)?;
                        written += plain.len() as u64;
                        Ok(())
                    },
                );
                open.clear();
                result.map_err(|stop| match stop {
                    // A blob's failure names its file already; a failed read names the pack's first.
                    PackStop::Blob(e) => e,
                    PackStop::Read(e) => this.err(&this.files[blobs[0].2.0].path, e),
                })?;
                let mut st = progress.lock().expect("progress");
                st.bytes += written;
                st.files = total_files;
                if let Some(f) = &this.on_progress {
                    f(&st);
                }
                Ok(())
            },
        )?;
        self.stats = progress.into_inner().expect("progress");
        self.stats.files = total_files;
        Ok(())
    }

    /// The tree pass: reads the trees on one thread per core (each thread takes a directory,
    /// creates its subdirectories, links and devices, and queues the subdirectories' trees),
    /// then lists the regular files in path order for the data pass.
    fn restore_tree(&mut self, root: &BlobId, target: &Path) -> Result<()> {
        struct Walk {
            jobs: Vec<(BlobId, PathBuf)>,
            busy: usize,
            failed: Option<RepoError>,
        }
        let walk = std::sync::Mutex::new(Walk { jobs: vec![(*root, target.to_path_buf())], busy: 0, failed: None });
        let wake = std::sync::Condvar::new();
        let threads = super::reader_threads();
        let this = &*self;
        let found: Vec<Found> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut found = Found::default();
                        let mut queued = Vec::new();
                        loop {
                            let (tree, dir) = {
                                let mut w = walk.lock().expect("walk");
                                loop {
                                    if w.failed.is_some() {
                                        return found;
                                    }
                                    if let Some(job) = w.jobs.pop() {
                                        w.busy += 1;
                                        break job;
                                    }
                                    if w.busy == 0 {
                                        return found;
                                    }
                                    w = wake.wait(w).expect("walk");
                                }
                            };
                            let result = this.restore_dir(&tree, &dir, &mut found, &mut queued);
                            let mut w = walk.lock().expect("walk");
                            w.busy -= 1;
                            match result {
                                Ok(()) => w.jobs.append(&mut queued),
                                Err(e) => {
                                    w.failed.get_or_insert(e);
                                }
                            }
                            wake.notify_all();
                        }
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().expect("tree walker panicked")).collect()
        });
        if let Some(e) = walk.into_inner().expect("walk").failed {
            return Err(e);
        }
        let mut files = Vec::new();
        for f in found {
            files.extend(f.files);
            self.dirs.extend(f.dirs);
        }
        // Path order: the data pass fills the tree roughly in order, the first name of a
        // hard-linked file is always the same one, and directories (sorted too) get their
        // metadata deepest first.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        self.dirs.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, node) in files {
            if node.links > 1 {
                if let Some(&first) = self.links.get(&node.inode) {
                    self.hard_links.push((path, first));
                    continue;
                }
                self.links.insert(node.inode, self.files.len());
            }
            let remaining = std::sync::atomic::AtomicUsize::new(node.content.len());
            self.files.push(PendingFile { path, node, created: Default::default(), remaining });
        }
        Ok(())
    }

    /// Restores one directory's entries but for its regular files' content: subdirectories
    /// are created (their trees queued in `queued`), links and devices made.
    fn restore_dir(
        &self,
        tree_id: &BlobId,
        dir: &Path,
        found: &mut Found,
        queued: &mut Vec<(BlobId, PathBuf)>,
    ) -> Result<()> {
        let tree = load_tree(self.repo, tree_id).map_err(|e| self.err(dir, e))?;
        // Two entries with one name (say a symlink and a directory) could steer writes out of
        // the target: Lifeboat never writes such a tree, so it is damage.
        let mut seen = std::collections::HashSet::new();
        for node in &tree.nodes {
            if !seen.insert(node.name.as_str()) {
                return Err(RepoError::Corrupt {
                    location: self.repo.location(),
                    what: format!("{}: {}: the same name twice in one directory", self.label, dir.display()),
                });
            }
        }
        for node in tree.nodes {
            let name = node.name_bytes();
            if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                return Err(
                    self.err(dir, format!("invalid entry name {:?}", String::from_utf8_lossy(&name)).to_string())
                );
            }
            let path = dir.join(OsStr::from_bytes(&name));
            match node.kind {
                NodeKind::File => found.files.push((path, node)),
                NodeKind::Dir => {
                    match fs::create_dir(&path) {
                        Err(e) if !(e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir()) => {
                            return Err(self.err(&path, e));
                        }
                        _ => {}
                    }
                    if let Some(sub) = &node.subtree {
                        queued.push((*sub, path.clone()));
                    }
                    found.dirs.push((path, node));
                }
                NodeKind::Symlink => {
                    let target =
                        hex::decode(node.target.as_deref().unwrap_or_default()).map_err(|e| self.err(&path, e))?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(|e| self.err(&path, e))?;
                    self.apply_metadata(&path, &node)?;
                    set_times(&path, node.mtime_ns);
                }
                NodeKind::Char | NodeKind::Block | NodeKind::Fifo => {
                    let ft = match node.kind {
                        NodeKind::Char => rustix::fs::FileType::CharacterDevice,
                        NodeKind::Block => rustix::fs::FileType::BlockDevice,
                        _ => rustix::fs::FileType::Fifo,
                    };
                    rustix::fs::mknodat(rustix::fs::CWD, &path, ft, rustix::fs::Mode::from_raw_mode(0o600), node.rdev)
                        .map_err(|e| self.err(&path, e))?;
                    self.apply_metadata(&path, &node)?;
                    set_times(&path, node.mtime_ns);
                }
            }
        }
        Ok(())
    }

    /// Owner, mode and extended attributes of an entry restored by name (not its times).
    fn apply_metadata(&self, path: &Path, node: &Node) -> Result<()> {
        let _ = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid));
        if node.kind != NodeKind::Symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).map_err(|e| self.err(path, e))?;
            for (k, v) in &node.xattrs {
                if let Ok(v) = hex::decode(v) {
                    let _ = rustix::fs::lsetxattr(path, k.as_str(), &v, rustix::fs::XattrFlags::empty());
                }
            }
        }
        Ok(())
    }
}

/// The permission bits a file is created with: its own, and always readable and writable by
/// its owner until the restore is done with it.
fn created_mode(node: &Node) -> u32 {
    node.mode & 0o777 | 0o600
}

/// Who new files belong to when this process creates them in the restore's directories.
#[derive(Clone, Copy)]
struct Creator {
    uid: u32,
    gid: u32,
    umask: u32,
    /// The target directory is set-group-ID, so new files take its group instead (the
    /// directories the restore creates get their set-group-ID bits only at the end).
    setgid_target: bool,
}

impl Creator {
    fn of(target: &Path) -> Creator {
        // The umask is read from /proc: setting it to read it would race with other threads.
        let umask = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o777); // unknown: never assume the mode came out right
        Creator {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            umask,
            setgid_target: fs::metadata(target).map_or(true, |m| m.mode() & 0o2000 != 0),
        }
    }

    fn owns_as(&self, uid: u32, gid: u32) -> bool {
        !self.setgid_target && uid == self.uid && gid == self.gid
    }
}

use std::os::unix::fs::OpenOptionsExt;

fn timestamps(mtime_ns: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
    };
    rustix::fs::Timestamps { last_access: t, last_modification: t }
}

fn set_times(path: &Path, mtime_ns: i64) {
    let _ = rustix::fs::utimensat(rustix::fs::CWD, path, &timestamps(mtime_ns), rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::Local;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn a_file_that_vanishes_before_it_is_read_is_left_out_and_a_small_and_a_large_file_are_stored() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(Box::new(Local::new(&dir.path().join("repo"))), b"pw").unwrap();
        let mut buf = Vec::new();
        let top = open_dir(dir.path()).unwrap();
        let read = |name: &str, buf: &mut Vec<u8>| {
            file_content(&repo, top.as_fd(), OsStr::new(name), &dir.path().join(name), buf).unwrap()
        };
        // Deleted between the directory listing and the read (a running service's temp file).
        assert!(read("gone", &mut buf).is_none());
        // Swapped for a FIFO, a device node or a symlink after it was listed: never opened for
        // reading (a FIFO would block, a device would be read as root).
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(read("fifo", &mut buf).is_none());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("zero"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, 5),
        )
        .unwrap();
        assert!(read("zero", &mut buf).is_none());
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        assert!(read("link", &mut buf).is_none());
        let mut arch = Archiver::new(&repo);
        let mut node = Node {
            name: hex::encode("gone"),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            links: 1,
            size: 5,
            content: Vec::new(),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        };
        arch.stats.files = 1;
        arch.stats.bytes = 5;
        assert!(arch.complete(node.clone(), Some(Content::Ready(None))).unwrap().is_none());
        assert_eq!((arch.stats.files, arch.stats.bytes, arch.stats.files_read), (0, 0, 0));
        // A small file (read whole, sealed by the sealing threads) and a large one (streamed).
        for (name, len) in [("small", 100_000usize), ("large", (SMALL_FILE as usize) + 300_000)] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let path = dir.path().join(name);
            fs::write(&path, &data).unwrap();
            let content = read(name, &mut buf).unwrap();
            assert!(content.new_bytes > 0);
            node.content = content.ids;
            let mut back = Vec::new();
            for id in &node.content {
                back.extend(repo.load_blob(id).unwrap());
            }
            assert_eq!(back, data, "{name}");
        }
    }

    #[test]
    fn archive_restore_round_trip_and_incremental_reuse() {
        super::super::tests::fast_kdf();
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

    #[test]
    fn restore_keeps_modes_owners_times_and_links_of_awkward_entries() {
        super::super::tests::fast_kdf();
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
        let ts = timestamps(1_500_000_000_123_456_789);
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
