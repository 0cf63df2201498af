//! Restoring: trees become a directory again, files created by the threads that write their
//! data and given their metadata as their last blob lands, every chunk verified first.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::repo::{Location, RepoError};

/// A restore's progress callback: running totals so far.
pub type RestoreProgressFn = std::sync::Arc<dyn Fn(&RestoreStats) + Send + Sync>;

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
    /// What the whole restore will write, when known (progress displays); 0: unknown.
    #[serde(skip)]
    pub expected_bytes: u64,
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
        let threads = crate::repo::reader_threads();
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
            if !valid_name(&name) {
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

pub(super) fn timestamps(mtime_ns: i64) -> rustix::fs::Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
    };
    rustix::fs::Timestamps { last_access: t, last_modification: t }
}

fn set_times(path: &Path, mtime_ns: i64) {
    let _ = rustix::fs::utimensat(rustix::fs::CWD, path, &timestamps(mtime_ns), rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
}
