//! Archiving: a directory becomes tree blobs (walked by descriptor, files read and chunked on
//! reader threads ahead of the walk, unchanged files' chunk lists taken from the parent
//! snapshot).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::Stat;

use super::*;
use crate::fsutil::scope::{fd_path, list_dir, open_dir_beneath, stat_beneath};
use crate::repo::{BlobType, RepoError};

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
    /// A previous node whose ctime is at or after this time (nanoseconds) is not trusted as
    /// unchanged even if nothing in its metadata moved: it was recorded while the file could
    /// still be written within the same clock tick (a capture's pass while the service ran).
    pub distrust_since: Option<i64>,
    read_ahead: Option<ReadAhead>,
    /// Regular files met so far in the current `archive_dir` walk (read-ahead follows it).
    files_met: u64,
    depth: usize,
    /// Which files are a database's pages (cut at page boundaries).
    pub pages: crate::repo::PageRules,
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
    /// Bytes read: the file's size as stored (a file written while it is read may differ
    /// from the size its listing said).
    len: u64,
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
    pages: &crate::repo::PageRules,
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
    let mut content = FileContent { ids: Vec::new(), new_bytes: 0, len: 0 };
    let mut save = |chunk: &[u8]| {
        let (id, new) = repo.save_blob(BlobType::Data, chunk)?;
        if new {
            content.new_bytes += chunk.len() as u64;
        }
        content.len += chunk.len() as u64;
        content.ids.push(id);
        Ok::<_, RepoError>(())
    };
    let size = file.metadata().map_err(|e| read_err(repo, path, e))?.len();
    use crate::repo::chunk::{PAGE_HEAD, fixed_chunks, page_chunk};
    if size <= SMALL_FILE {
        // Most files: read whole into one reused buffer and cut there (no per-file chunker
        // buffer to allocate and clear, one copy less).
        if buf.capacity() > SMALL_FILE_KEPT && size as usize <= SMALL_FILE_KEPT {
            *buf = Vec::new(); // one large file does not keep its memory for the rest
        }
        buf.clear();
        buf.reserve_exact(size as usize + 1);
        std::io::Read::read_to_end(&mut file, buf).map_err(|e| read_err(repo, path, e))?;
        // A database's pages (known from what was read): fixed chunks at page boundaries.
        let page = buf.get(..PAGE_HEAD).and_then(|head| pages.page_size(name.as_bytes(), head, buf.len() as u64));
        match page {
            Some(page) => buf.chunks(page_chunk(page)).try_for_each(save)?,
            None => crate::repo::chunk_slice(buf, params).try_for_each(save)?,
        }
        return Ok(Some(content));
    }
    // Whole files are read front to back: let the kernel read further ahead.
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
    let mut head = [0u8; PAGE_HEAD];
    let page = std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0)
        .ok()
        .and_then(|()| pages.page_size(name.as_bytes(), &head, size));
    match page {
        Some(page) => {
            for chunk in fixed_chunks(file, page_chunk(page)) {
                save(&chunk.map_err(|e| read_err(repo, path, e))?)?;
            }
        }
        None => {
            for chunk in crate::repo::chunks(file, params) {
                save(&chunk.map_err(|e| read_err(repo, path, e))?)?;
            }
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
            distrust_since: None,
            read_ahead: None,
            files_met: 0,
            depth: 0,
            pages: Default::default(),
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
        let pages = self.pages.clone();
        let pages = &pages;
        let result = std::thread::scope(|s| {
            let mut started = 0;
            for i in 0..file_threads() {
                let (jobs, abandon) = (&jobs, &abandon);
                let spawned = std::thread::Builder::new().name(format!("read-{i}")).spawn_scoped(s, move || {
                    crate::repo::yield_to_feeder();
                    let mut buf = Vec::new();
                    loop {
                        let Ok(job) = jobs.lock().expect("file queue").recv() else { return };
                        if abandon.load(std::sync::atomic::Ordering::Relaxed) {
                            continue;
                        }
                        let _ =
                            job.reply.send(file_content(repo, pages, job.dir.as_fd(), &job.name, &job.path, &mut buf));
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
        if crate::sys::interrupted() {
            return Err(super::RepoError::Interrupted);
        }
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
                        && self.distrust_since.is_none_or(|t| p.ctime_ns < t)
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
        Ok(Content::Ready(file_content(self.repo, &self.pages, dir.as_fd(), &name, path, &mut self.buf)?))
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
        if content.len != node.size {
            // Written while it was read (a writer outside the freeze): what was read is what
            // is stored, and the size says so, or the snapshot could never be restored.
            tracing::warn!(
                file = %String::from_utf8_lossy(&node.name_bytes()),
                listed = node.size,
                read = content.len,
                "a file changed size while it was read; stored as read"
            );
            self.stats.bytes = self.stats.bytes - node.size + content.len;
            node.size = content.len;
        }
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
    // Most files have none: ask for the size of the name list first (an empty buffer is
    // not that question: it reads an empty list).
    let Ok(len) = rustix::fs::llistxattr_query(path) else { return Vec::new() };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::Local;
    use std::fs;

    /// A regular file's node as a listing gives it, before its content is read.
    fn file_node(name: &str, size: u64) -> Node {
        Node {
            name: hex::encode(name),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 1,
            links: 1,
            size,
            content: Vec::new(),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        }
    }

    /// A file written while it is read (a writer outside the freeze) is stored as read, with
    /// the size of what was read: a snapshot whose size and content disagree could never be
    /// restored.
    #[test]
    fn a_file_that_grows_while_read_is_stored_with_the_size_read() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(Box::new(Local::new(&dir.path().join("repo"))), b"pw").unwrap();
        fs::write(dir.path().join("log"), vec![7u8; 10_000]).unwrap();
        let top = open_dir(dir.path()).unwrap();
        let content = file_content(
            &repo,
            &Default::default(),
            top.as_fd(),
            OsStr::new("log"),
            &dir.path().join("log"),
            &mut Vec::new(),
        )
        .unwrap();
        let mut arch = Archiver::new(&repo);
        // What the listing said, before the file grew.
        let node = file_node("log", 4_000);
        arch.stats.files = 1;
        arch.stats.bytes = 4_000;
        let node = arch.complete(node, Some(Content::Ready(content))).unwrap().unwrap();
        assert_eq!(node.size, 10_000);
        assert_eq!(arch.stats.bytes, 10_000);
    }

    /// A database rewrites pages in place: with page-aligned chunks one rewritten page adds
    /// one page to the repository, where content-defined chunks around it added several times
    /// that; the file restores byte for byte.
    #[test]
    fn a_rewritten_database_page_adds_about_one_page() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        // An SQLite database of 8 KiB pages (its header says so), and the same bytes under a
        // name and header nothing knows, for comparison.
        let page = 8192usize;
        let mut db: Vec<u8> = Vec::with_capacity(page * 600);
        let mut x: u64 = 42;
        while db.len() < page * 600 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            db.extend_from_slice(&x.to_le_bytes());
        }
        db[..16].copy_from_slice(b"SQLite format 3\0");
        db[16..18].copy_from_slice(&8192u16.to_be_bytes());
        let mut other = db.clone();
        other[..16].copy_from_slice(b"not a database!\0");
        std::fs::write(src.join("catalogue.db"), &db).unwrap();
        std::fs::write(src.join("blob.bin"), &other).unwrap();
        let mut repo = Repository::init(Box::new(Local::new(&dir.path().join("repo"))), b"pw").unwrap();
        let first = Archiver::new(&repo).archive_dir(&src, None).unwrap();
        // Rewrite page 300 of both.
        let new_page = vec![0x5a; page];
        db[300 * page..301 * page].copy_from_slice(&new_page);
        other[300 * page..301 * page].copy_from_slice(&new_page);
        std::fs::write(src.join("catalogue.db"), &db).unwrap();
        let mut arch = Archiver::new(&repo);
        let tree = arch.archive_dir(&src, Some(&first)).unwrap();
        // New: the page, and the directory's tree (which lists the chunks).
        let tree_bytes = repo.load_blob(&tree).unwrap().len() as u64;
        assert_eq!(arch.stats.new_bytes - tree_bytes, page as u64, "the page file added more than its page");
        std::fs::write(src.join("catalogue.db"), &db).unwrap();
        std::fs::write(src.join("blob.bin"), &other).unwrap();
        let mut arch = Archiver::new(&repo);
        let second = arch.archive_dir(&src, Some(&first)).unwrap();
        let tree_bytes = repo.load_blob(&second).unwrap().len() as u64;
        let cdc = arch.stats.new_bytes - tree_bytes;
        assert!(cdc > 2 * page as u64, "content-defined chunks around one page: {cdc} bytes");
        repo.flush().unwrap();
        let out = dir.path().join("out");
        crate::repo::tree::Restorer::new(&repo, "test").restore(&second, &out).unwrap();
        assert!(std::fs::read(out.join("catalogue.db")).unwrap() == db);
        assert!(std::fs::read(out.join("blob.bin")).unwrap() == other);
        let tree = crate::repo::tree::load_tree(&repo, &second).unwrap();
        let node = tree.nodes.iter().find(|n| n.name_bytes() == b"catalogue.db").unwrap();
        assert_eq!(node.content.len(), 600, "one chunk per page");
        // A small database (read whole, not streamed) is cut the same way.
        std::fs::write(src.join("small.db"), &db[..page * 100]).unwrap();
        let small = Archiver::new(&repo).archive_dir(&src, Some(&second)).unwrap();
        let tree = crate::repo::tree::load_tree(&repo, &small).unwrap();
        let node = tree.nodes.iter().find(|n| n.name_bytes() == b"small.db").unwrap();
        assert_eq!(node.content.len(), 100, "one chunk per page");
    }

    #[test]
    fn a_file_that_vanishes_before_it_is_read_is_left_out_and_a_small_and_a_large_file_are_stored() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(Box::new(Local::new(&dir.path().join("repo"))), b"pw").unwrap();
        let mut buf = Vec::new();
        let top = open_dir(dir.path()).unwrap();
        let read = |name: &str, buf: &mut Vec<u8>| {
            file_content(&repo, &Default::default(), top.as_fd(), OsStr::new(name), &dir.path().join(name), buf)
                .unwrap()
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
        let mut node = file_node("gone", 5);
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
}
