//! The backup repository: content-defined chunks, deduplicated by keyed ID, compressed,
//! encrypted, packed, indexed; snapshots as the commit point. The format is specified in
//! docs/repository-format.md; this module is its reference implementation.
//!
//! Writing follows one order — pack files, then the index that lists them, then the snapshot
//! that refers to them — so a crash at any point leaves only unreferenced data, never a
//! snapshot that points at something missing.

pub(crate) mod chunk;
pub mod crypto;
pub mod forget;
mod index;
pub use index::read_index;
mod keys;
pub mod lock;
pub mod maintenance;
mod read;
pub mod snapshot;
pub mod tree;
mod writer;

pub use chunk::{PageRules, chunk_slice, chunks};
pub use read::{READ_WINDOW, reader_threads};
pub use writer::yield_to_feeder;
use writer::{NewBlob, SealJob, Sealers, WriteState, Writer, seal_blob};

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, Kind};
use crypto::{CryptoError, KdfParams, KeyFile, MasterKey};

pub const FORMAT_VERSION: u32 = 1;
/// Pack files are flushed at this size.
pub const PACK_TARGET: usize = 16 << 20;

/// Blob plaintext is stored compressed with zstd unless that does not help: the first byte of
/// a blob's plaintext says which (docs/repository-format.md).
const FLAG_RAW: u8 = 0;
const FLAG_ZSTD: u8 = 1;

/// A blob's identity: the keyed BLAKE3 of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<BlobId> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(BlobId(b))
    }
}

impl std::fmt::Debug for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.hex()[..16])
    }
}

impl Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BlobId, D::Error> {
        let s = String::deserialize(d)?;
        BlobId::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid blob id"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    Data,
    Tree,
}

/// Where a blob lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub pack: [u8; 32],
    pub offset: u64,
    pub length: u32,
    /// Plaintext length.
    pub raw: u32,
    pub kind: BlobType,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("repository at {0} does not exist (create it with `lifeboat repo init`)")]
    Missing(String),
    #[error("repository at {0} already exists")]
    AlreadyExists(String),
    #[error("cannot open repository at {location}: {source}")]
    Key { location: String, source: CryptoError },
    #[error("repository at {location} is damaged: {what}")]
    Corrupt { location: String, what: String },
    #[error("repository at {location} is {what}")]
    Locked { location: String, what: String },
    /// The named snapshot (or key) is not there.
    #[error("repository at {location}: {what}")]
    NotFound { location: String, what: String },
    /// A prefix names more than one.
    #[error("repository at {location}: {what}")]
    Ambiguous { location: String, what: String },
    #[error("repository at {location}: {what}")]
    Other { location: String, what: String },
    /// Stopped on request (SIGINT, SIGTERM) between two steps; nothing half-written is named.
    #[error("interrupted")]
    Interrupted,
}

impl RepoError {
    pub fn is_wrong_password(&self) -> bool {
        matches!(self, RepoError::Key { source: CryptoError::WrongPassword | CryptoError::NoKeyTried(_), .. })
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// The repository's `config` object (sealed with the master key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepoConfig {
    pub version: u32,
    pub id: String,
    pub chunker: ChunkerParams,
}

/// FastCDC sizes. Chosen by measurement (docs/benchmarks.md): databases rewrite pages in
/// place, so a small average keeps an update from dragging much unchanged data along.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min: 4 << 10, avg: 16 << 10, max: 64 << 10 }
    }
}

/// A pack's table of contents, sealed at its end.
#[derive(Debug, Serialize, Deserialize)]
struct PackHeader {
    blobs: Vec<PackEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PackEntry {
    id: BlobId,
    kind: BlobType,
    offset: u64,
    length: u32,
    raw: u32,
}

/// An index file: which blobs each pack holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IndexFile {
    packs: Vec<IndexPack>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct IndexPack {
    id: String,
    blobs: Vec<PackEntry>,
}

/// An open repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    pub config: RepoConfig,
    /// Every blob in a pack listed by an index file (and, after a flush, those this process wrote).
    index: HashMap<BlobId, Location>,
    /// New blobs on their way into packs; shared with the sealing threads.
    writer: Arc<Writer>,
    /// The packs read most recently (newest last): restores alternate between a directory's
    /// tree, stored after its files, and the files' data, so one slot would thrash.
    pack_cache: Mutex<Vec<([u8; 32], Vec<u8>)>>,
    /// Packs the backend was asked to read ahead.
    read_ahead: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// The key file this repository was opened with.
    key_name: Option<String>,
    /// Compression and encryption of new data blobs run on these threads (started on first use).
    sealers: OnceLock<Sealers>,
    /// How long taking a lock waits for a conflicting one to go (default: not at all).
    lock_wait: std::time::Duration,
    /// How often this process refreshes the locks it holds.
    lock_refresh: std::time::Duration,
    /// The locks this process holds; writes stop once one is lost.
    held_locks: Arc<lock::HeldLocks>,
    /// The index files `index` was read from.
    loaded_indexes: std::collections::HashSet<String>,
}

impl Repository {
    /// How long [`lock::Lock::acquire`] waits for a conflicting lock to be released (the
    /// agent gives its jobs a window, so a snapshot that meets a prune waits for it).
    pub fn set_lock_wait(&mut self, wait: std::time::Duration) {
        self.lock_wait = wait;
    }

    pub fn lock_wait(&self) -> std::time::Duration {
        self.lock_wait
    }

    /// How often held locks are refreshed (others may call a lock stale six intervals after
    /// its last refresh). Five minutes unless set; a shorter interval is for tests and for
    /// stores whose clocks drift.
    pub fn set_lock_refresh(&mut self, every: std::time::Duration) {
        self.lock_refresh = every.clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(3600));
    }

    pub fn lock_refresh(&self) -> std::time::Duration {
        self.lock_refresh
    }

    /// An error if a lock this process holds on the repository was lost: whatever deletes or
    /// writes directly (prune, forget) asks before each step.
    pub fn check_locks(&self) -> Result<()> {
        self.held_locks.check()
    }

    pub(crate) fn held_locks(&self) -> &lock::HeldLocks {
        &self.held_locks
    }

    pub(crate) fn backend_arc(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    pub fn init(backend: Box<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let location = backend.location();
        if backend.stat(Kind::Config, "config")?.is_some() {
            return Err(RepoError::AlreadyExists(location));
        }
        let key = MasterKey::generate();
        let config = RepoConfig {
            version: FORMAT_VERSION,
            id: crate::fsutil::random_hex(16),
            chunker: ChunkerParams::default(),
        };
        let kf = KeyFile::new(&key, password, KdfParams::default_or_env())
            .map_err(|e| RepoError::Key { location: location.clone(), source: e })?;
        let kf_bytes = serde_json::to_vec_pretty(&kf).expect("serialises");
        let key_name = hex::encode(&blake3::hash(&kf_bytes).as_bytes()[..16]);
        backend.write(Kind::Key, &key_name, &kf_bytes)?;
        backend.write(Kind::Config, "config", &key.seal(&serde_json::to_vec(&config).expect("serialises")))?;
        let mut repo = Repository::with(backend, key, config);
        repo.key_name = Some(key_name);
        Ok(repo)
    }

    fn with(backend: Box<dyn Backend>, key: MasterKey, config: RepoConfig) -> Repository {
        let backend: Arc<dyn Backend> = Arc::from(backend);
        let held_locks = Arc::new(lock::HeldLocks::default());
        let writer = Writer {
            backend: backend.clone(),
            key: key.clone(),
            held_locks: held_locks.clone(),
            state: Mutex::new(WriteState::default()),
            settled: Condvar::new(),
        };
        Repository {
            backend,
            key,
            config,
            index: HashMap::new(),
            writer: Arc::new(writer),
            read_ahead: Default::default(),
            pack_cache: Mutex::new(Vec::new()),
            key_name: None,
            sealers: OnceLock::new(),
            lock_wait: std::time::Duration::ZERO,
            lock_refresh: lock::REFRESH_EVERY,
            held_locks,
            loaded_indexes: Default::default(),
        }
    }

    /// Opens with a password and loads the index.
    pub fn open(backend: Box<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let location = backend.location();
        let sealed = match backend.read(Kind::Config, "config") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(RepoError::Missing(location)),
            Err(e) => return Err(e.into()),
        };
        let mut key = None;
        std::thread::scope(|s| -> Result<()> {
            // While the password is checked (a deliberately slow derivation), a local disk
            // reads the index and snapshot files every command needs next.
            s.spawn(|| {
                if !backend.cheap_ranges() {
                    return; // remote: nothing to read ahead, and listing costs requests
                }
                for kind in [Kind::Index, Kind::Snapshot] {
                    for name in backend.list(kind).unwrap_or_default() {
                        backend.will_read(kind, &name);
                    }
                }
            });
            key = Some(keys::unlock(backend.as_ref(), password));
            Ok(())
        })?;
        let (key, key_name) = match key.expect("the key search ran") {
            Ok(found) => found,
            Err(skipped) => {
                let source =
                    if skipped.is_empty() { CryptoError::WrongPassword } else { CryptoError::NoKeyTried(skipped) };
                return Err(RepoError::Key { location, source });
            }
        };
        tracing::debug!(location, "repository: key unwrapped");
        Repository::opened(backend, key, Some(key_name), &sealed, None)
    }

    /// Opens with the repository's key itself (handed over by a process that opened it with
    /// a password: an instant restore's hydrator) and its index: `handed` (with the index
    /// files it was read from), or else read from the repository.
    pub fn open_with_key(
        backend: Box<dyn Backend>,
        key: MasterKey,
        handed: Option<(HashMap<BlobId, Location>, Vec<String>)>,
    ) -> Result<Repository> {
        let sealed = match backend.read(Kind::Config, "config") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Err(RepoError::Missing(backend.location())),
            Err(e) => return Err(e.into()),
        };
        Repository::opened(backend, key, None, &sealed, handed)
    }

    fn opened(
        backend: Box<dyn Backend>,
        key: MasterKey,
        key_name: Option<String>,
        sealed: &[u8],
        handed: Option<(HashMap<BlobId, Location>, Vec<String>)>,
    ) -> Result<Repository> {
        let location = backend.location();
        let config: RepoConfig = serde_json::from_slice(&key.open(sealed).map_err(|_| RepoError::Corrupt {
            location: location.clone(),
            what: "config does not authenticate".into(),
        })?)
        .map_err(|e| RepoError::Corrupt { location: location.clone(), what: format!("config: {e}") })?;
        if config.version != FORMAT_VERSION {
            return Err(RepoError::Other {
                location,
                what: format!("format version {} is not supported (this build reads {FORMAT_VERSION})", config.version),
            });
        }
        let mut repo = Repository::with(backend, key, config);
        repo.key_name = key_name;
        match handed {
            Some((index, files)) => {
                repo.index = index;
                repo.loaded_indexes = files.into_iter().collect();
            }
            None => repo.load_index()?,
        }
        tracing::debug!(location, blobs = repo.index.len(), "repository: index loaded");
        Ok(repo)
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    fn corrupt(&self, what: String) -> RepoError {
        RepoError::Corrupt { location: self.location(), what }
    }

    pub fn id_of(&self, plaintext: &[u8]) -> BlobId {
        BlobId(self.key.id_of(plaintext))
    }

    /// Bytes this process added to the repository (sealed packs and index files).
    pub fn added_bytes(&self) -> u64 {
        self.writer.lock().added_bytes
    }

    /// Stores a blob unless the repository already has it; returns its ID and whether it was
    /// new. Any thread may call it. Data blobs are compressed and sealed on worker threads;
    /// `flush_pack`/`flush` wait for them and report their failures (as does the next save).
    pub fn save_blob(&self, kind: BlobType, plaintext: &[u8]) -> Result<(BlobId, bool)> {
        if crate::sys::interrupted() {
            return Err(RepoError::Interrupted);
        }
        let id = self.id_of(plaintext);
        if self.index.contains_key(&id) {
            return Ok((id, false));
        }
        {
            let mut st = self.writer.lock();
            self.writer.check(&mut st)?;
            if st.written.contains_key(&id) || !st.in_flight.insert(id) {
                return Ok((id, false));
            }
            if kind == BlobType::Data {
                st.busy += 1;
            }
        }
        if kind == BlobType::Data {
            let sealers = self.sealers.get_or_init(|| Sealers::start(&self.writer));
            let job = SealJob { id, kind, plaintext: plaintext.to_vec() };
            if sealers.jobs.as_ref().expect("sealers are running").send(job).is_err() {
                self.writer.abandon(self.corrupt("the sealing threads stopped".into()));
                return Err(self.corrupt("the sealing threads stopped".into()));
            }
            return Ok((id, true));
        }
        let sealed = seal_blob(&self.key, plaintext).map_err(|e| self.corrupt(e))?;
        self.writer.append(id, kind, plaintext.len() as u32, &sealed, false);
        Ok((id, true))
    }

    /// Writes the pending pack files (if any), after every blob in flight is packed, and
    /// records their blobs in the index.
    pub fn flush_pack(&mut self) -> Result<()> {
        for kind in [BlobType::Data, BlobType::Tree] {
            let pack = Writer::take(&mut *self.writer.settle()?, kind);
            if let Some(pack) = pack {
                self.writer.write_pack(pack);
            }
        }
        let written = std::mem::take(&mut self.writer.settle()?.written);
        if self.index.is_empty() {
            self.index = written; // a new repository: no second copy of the whole index
        } else {
            self.index.extend(written);
        }
        Ok(())
    }

    /// Flushes the pending packs and writes an index file for every pack written so far.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_pack()?;
        let packs = {
            let mut st = self.writer.settle()?;
            if st.unindexed.is_empty() {
                return Ok(());
            }
            st.busy += 1;
            std::mem::take(&mut st.unindexed)
        };
        self.writer.write_index(packs);
        self.writer.settle().map(drop)
    }

    /// Forgets the packs written but not yet listed in an index file (prune lists every
    /// pack in one index of its own).
    pub fn discard_unindexed(&mut self) {
        self.writer.lock().unindexed.clear();
    }

    /// Writes a sealed JSON object of `kind` under a random name; returns the name. Nothing
    /// is written once a lock this process holds was lost.
    pub fn save_object<T: Serialize>(&self, kind: Kind, value: &T) -> Result<String> {
        self.held_locks.check()?;
        self.save_unchecked(kind, value)
    }

    /// Writes a lock object (locks are written whatever the state of other locks).
    fn save_lock(&self, info: &lock::LockInfo) -> Result<String> {
        self.save_unchecked(Kind::Lock, info)
    }

    fn save_unchecked<T: Serialize>(&self, kind: Kind, value: &T) -> Result<String> {
        let sealed = self.key.seal(&serde_json::to_vec(value).expect("serialises"));
        let name = crate::fsutil::random_hex(32);
        self.backend.write(kind, &name, &sealed)?;
        Ok(name)
    }

    pub fn load_object<T: for<'de> Deserialize<'de>>(&self, kind: Kind, name: &str) -> Result<T> {
        let sealed = self.backend.read(kind, name)?;
        let plain =
            self.key.open(&sealed).map_err(|_| self.corrupt(format!("{kind:?} {name} does not authenticate")))?;
        serde_json::from_slice(&plain).map_err(|e| self.corrupt(format!("{kind:?} {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::Local;
    use std::collections::HashSet;

    pub(crate) fn fast_kdf() {
        // SAFETY: tests set this before any repository is created; the value is process-wide.
        unsafe { std::env::set_var("LIFEBOAT_KDF", "64,1,1") };
    }

    /// Incompressible bytes, different for each seed.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn blobs_saved_from_several_threads_are_stored_once_and_readable_throughout() {
        fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repository::init(Box::new(Local::new(dir.path())), b"pw").unwrap();
        // 300 blobs of ~60 KiB: more than one pack, so packs are written while threads save.
        let blobs: Vec<Vec<u8>> = (0..300).map(|i| noise(i, 60_000 + i as usize)).collect();
        let new = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (repo, blobs, new) = (&repo, &blobs, &new);
                s.spawn(move || {
                    // Each thread meets the blobs in its own order.
                    for k in 0..blobs.len() {
                        let b = &blobs[(k * (2 * t + 1) + t * 37) % blobs.len()];
                        let (id, fresh) = repo.save_blob(BlobType::Data, b).unwrap();
                        new.fetch_add(fresh as usize, std::sync::atomic::Ordering::Relaxed);
                        assert!(repo.has_blob(&id));
                        if k % 25 == 0 {
                            // Queued, pending, or in a pack being written: readable all the same.
                            assert_eq!(&repo.load_blob(&id).unwrap(), b);
                        }
                    }
                });
            }
        });
        assert_eq!(new.into_inner(), blobs.len(), "every blob is new exactly once");
        repo.flush().unwrap();
        let packs = repo.backend().list(Kind::Pack).unwrap().len();
        assert!(packs >= 2, "{packs} packs");
        let reopened = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        assert_eq!(reopened.blob_count(), blobs.len());
        for b in &blobs {
            assert_eq!(&reopened.load_blob(&reopened.id_of(b)).unwrap(), b);
        }
        assert!(repo.added_bytes() >= blobs.iter().map(|b| b.len() as u64).sum::<u64>());
    }

    /// A local backend whose pack writes fail (a full disk, say).
    #[derive(Debug)]
    struct PacksFail(Local);

    impl Backend for PacksFail {
        fn location(&self) -> String {
            self.0.location()
        }
        fn list(&self, kind: Kind) -> crate::backend::Result<Vec<String>> {
            self.0.list(kind)
        }
        fn read(&self, kind: Kind, name: &str) -> crate::backend::Result<Vec<u8>> {
            self.0.read(kind, name)
        }
        fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> crate::backend::Result<Vec<u8>> {
            self.0.read_range(kind, name, offset, length)
        }
        fn write(&self, kind: Kind, name: &str, data: &[u8]) -> crate::backend::Result<()> {
            if kind == Kind::Pack {
                let source = std::io::Error::from_raw_os_error(28); // ENOSPC
                return Err(BackendError::Io { location: self.location(), op: "write", what: name.into(), source });
            }
            self.0.write(kind, name, data)
        }
        fn delete(&self, kind: Kind, name: &str) -> crate::backend::Result<()> {
            self.0.delete(kind, name)
        }
        fn stat(&self, kind: Kind, name: &str) -> crate::backend::Result<Option<u64>> {
            self.0.stat(kind, name)
        }
    }

    #[test]
    fn a_failed_pack_write_is_reported_and_nothing_is_indexed() {
        fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        drop(Repository::init(Box::new(Local::new(dir.path())), b"pw").unwrap());
        let mut repo = Repository::open(Box::new(PacksFail(Local::new(dir.path()))), b"pw").unwrap();
        // Enough to fill a pack: a sealing thread writes it, and fails.
        let mut failed = None;
        for i in 0..400 {
            if let Err(e) = repo.save_blob(BlobType::Data, &noise(i, 60_000)) {
                failed = Some(e);
                break;
            }
        }
        let e = match failed {
            Some(e) => e,
            None => repo.flush().expect_err("the pack write fails"),
        };
        assert!(e.to_string().contains("No space left on device"), "{e}");
        assert!(repo.save_blob(BlobType::Data, b"more").is_err(), "a broken handle saves nothing more");
        assert!(repo.flush().is_err());
        assert!(repo.backend().list(Kind::Index).unwrap().is_empty(), "no index lists a pack that is not there");
    }

    /// The index handed to another process is the index: blobs read through it are the
    /// blobs; a handover cut short or holding garbage is refused, never half taken.
    #[test]
    fn a_handed_index_opens_the_repository_as_reading_it_would() {
        fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repository::init(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let blobs: Vec<Vec<u8>> = (0..50).map(|i| noise(i, 9_000 + i as usize)).collect();
        let ids: Vec<BlobId> = blobs.iter().map(|b| repo.save_blob(BlobType::Data, b).unwrap().0).collect();
        let (tree, _) = repo.save_blob(BlobType::Tree, b"a tree").unwrap();
        repo.flush().unwrap();
        let repo = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let mut wire = Vec::new();
        repo.write_index(&mut wire).unwrap();
        let index = read_index(&mut &wire[..]).unwrap();
        assert_eq!(index, repo.index);
        let handed = Repository::open_with_key(
            Box::new(Local::new(dir.path())),
            repo.key().clone(),
            Some((index, repo.index_files())),
        )
        .unwrap();
        for (id, b) in ids.iter().zip(&blobs) {
            assert_eq!(&handed.load_blob(id).unwrap(), b);
        }
        assert_eq!(handed.locate(&tree).map(|l| l.kind), Some(BlobType::Tree));
        // What others wrote after the handover is found once the index is brought up to date
        // (as taking a lock does).
        let mut other = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let (later, _) = other.save_blob(BlobType::Data, b"written after the handover").unwrap();
        other.flush().unwrap();
        let mut handed = handed;
        assert!(handed.locate(&later).is_none());
        handed.refresh_index().unwrap();
        assert_eq!(handed.load_blob(&later).unwrap(), b"written after the handover");
        assert!(read_index(&mut &wire[..wire.len() - 1]).is_err(), "a cut handover was taken");
        let mut bad = wire.clone();
        bad[8 + 80] = 7;
        assert!(read_index(&mut &bad[..]).is_err(), "an unknown blob kind was taken");
        assert!(read_index(&mut &u64::MAX.to_le_bytes()[..]).is_err());
    }

    #[test]
    fn blobs_round_trip_deduplicate_and_survive_reopen() {
        fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repository::init(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let (a, new) = repo.save_blob(BlobType::Data, b"some data some data some data").unwrap();
        assert!(new);
        let (a2, new) = repo.save_blob(BlobType::Data, b"some data some data some data").unwrap();
        assert!(!new && a == a2);
        let (b, _) = repo.save_blob(BlobType::Data, &[7u8; 100_000]).unwrap();
        repo.flush().unwrap();
        let repo = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        assert_eq!(repo.load_blob(&a).unwrap(), b"some data some data some data");
        assert_eq!(repo.load_blob(&b).unwrap(), vec![7u8; 100_000]);
        let err = Repository::open(Box::new(Local::new(dir.path())), b"wrong").err().unwrap();
        assert!(err.is_wrong_password(), "{err}");
        assert!(matches!(Repository::init(Box::new(Local::new(dir.path())), b"pw"), Err(RepoError::AlreadyExists(_))));
    }

    #[test]
    fn trees_and_data_go_to_separate_packs_and_windowed_reads_return_every_blob() {
        fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repository::init(Box::new(Local::new(dir.path())), b"pw").unwrap();
        // 300 incompressible 64 KiB blobs (19 MiB: two packs, many read windows) and two trees.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut wanted = Vec::new();
        for _ in 0..300 {
            let blob: Vec<u8> = (0..64 << 10)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let (id, _) = repo.save_blob(BlobType::Data, &blob).unwrap();
            wanted.push((id, blob));
        }
        repo.save_blob(BlobType::Tree, br#"{"nodes":[]}"#).unwrap();
        repo.save_blob(BlobType::Tree, br#"{"nodes":[{}]}"#).unwrap();
        repo.flush().unwrap();
        let repo = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let packs = repo.packs();
        assert_eq!(packs.len(), 3, "two data packs and one tree pack");
        for blobs in packs.values() {
            let kinds: HashSet<BlobType> = blobs.iter().map(|(_, l)| l.kind).collect();
            assert_eq!(kinds.len(), 1, "a pack holds one kind of blob: {kinds:?}");
        }
        // Every blob, then every seventh (gaps between wanted blobs), read back by pack.
        for step in [1, 7] {
            let mut got = HashMap::new();
            let mut buf = Vec::new();
            for (pack, blobs) in &packs {
                let mut blobs: Vec<_> = blobs.iter().step_by(step).cloned().collect();
                blobs.sort_by_key(|(_, l)| l.offset);
                repo.read_pack_blobs(
                    pack,
                    &blobs,
                    |(id, loc)| (id, loc),
                    &mut buf,
                    |(id, _), plain| {
                        got.insert(*id, plain?);
                        Ok::<_, RepoError>(())
                    },
                )
                .unwrap();
                assert!(buf.capacity() as u64 <= READ_WINDOW + (64 << 10) + 1024, "reads stay in windows");
            }
            for (id, blob) in &wanted {
                if let Some(plain) = got.get(id) {
                    assert_eq!(plain, blob);
                }
            }
            let expected = packs.values().map(|b| b.iter().step_by(step).count()).sum::<usize>();
            assert_eq!(got.len(), expected);
        }
    }

    #[test]
    fn chunks_of_a_slice_equal_chunks_of_a_stream() {
        let p = ChunkerParams::default();
        let mut state = 7u64;
        for size in [0usize, 1, 4095, 4096, 4097, 20_000, 65_536, 70_000, 300_001, 2 << 20] {
            let data: Vec<u8> = (0..size)
                .map(|i| {
                    // Random runs mixed with repeated runs, as files have.
                    if (i / 5000) % 3 == 0 {
                        b'a'
                    } else {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    }
                })
                .collect();
            let streamed: Vec<Vec<u8>> = chunks(&data[..], p).collect::<Result<_, _>>().unwrap();
            let sliced: Vec<Vec<u8>> = chunk_slice(&data, p).map(<[u8]>::to_vec).collect();
            assert_eq!(streamed, sliced, "size {size}");
        }
    }

    #[test]
    fn chunker_splits_and_reassembles() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let parts: Vec<Vec<u8>> = chunks(&data[..], ChunkerParams::default()).collect::<Result<_, _>>().unwrap();
        assert!(parts.len() > 10);
        assert!(parts.iter().all(|p| p.len() <= 64 << 10));
        assert_eq!(parts.concat(), data);
    }
}
