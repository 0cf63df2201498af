//! The backup repository: content-defined chunks, deduplicated by keyed ID, compressed,
//! encrypted, packed, indexed; snapshots as the commit point. The format is specified in
//! docs/repository-format.md; this module is its reference implementation.
//!
//! Writing follows one order — pack files, then the index that lists them, then the snapshot
//! that refers to them — so a crash at any point leaves only unreferenced data, never a
//! snapshot that points at something missing.

pub mod crypto;
pub mod forget;
pub mod lock;
pub mod maintenance;
pub mod snapshot;
pub mod tree;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, Kind};
use crypto::{CryptoError, KdfParams, KeyFile, MasterKey};

pub const FORMAT_VERSION: u32 = 1;
/// Pack files are flushed at this size.
pub const PACK_TARGET: usize = 16 << 20;
/// A data pack's buffer: the target and room for the blobs that arrive while it is written.
const PACK_BUFFER: usize = PACK_TARGET + (1 << 20);
/// The buffer a pack starts in while the previous one is still being written.
const PACK_START: usize = 2 << 20;
/// An index file is written after this many packs (and at the end): index files stay small,
/// and so does the memory that writing one takes.
const INDEX_PACKS: usize = 8;
/// The most bytes of a local pack read at once when reading many of its blobs.
pub const READ_WINDOW: u64 = 4 << 20;
/// Unwanted bytes between two wanted blobs that are still read rather than skipped.
const READ_GAP: u64 = 256 << 10;
/// Whole packs kept in memory while reading: the one holding the trees and the one holding
/// the data being restored.
const PACK_CACHE_SLOTS: usize = 2;

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
    #[error("repository at {location}: {what}")]
    Other { location: String, what: String },
}

impl RepoError {
    pub fn is_wrong_password(&self) -> bool {
        matches!(self, RepoError::Key { source: CryptoError::WrongPassword, .. })
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

#[derive(Debug, Serialize, Deserialize)]
struct IndexPack {
    id: String,
    blobs: Vec<PackEntry>,
}

#[derive(Default)]
struct PendingPack {
    data: Vec<u8>,
    entries: Vec<PackEntry>,
    /// Position of each blob in `entries`, for reading a blob back before its pack is written.
    by_id: HashMap<BlobId, usize>,
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
}

/// The write side of a repository. Any thread may save blobs (`Repository::save_blob` takes
/// `&self`): the sealing threads append what they seal to the pending pack of its type, and
/// whichever thread fills a pack writes it, so packing and writing never wait on one thread.
struct Writer {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    state: Mutex<WriteState>,
    /// Signalled whenever `busy` drops or a failure is recorded.
    settled: Condvar,
}

#[derive(Default)]
struct WriteState {
    /// The packs being filled, one per blob type (trees apart from data, so listing a
    /// snapshot's directories reads a few small packs, not every data pack).
    pending: [PendingPack; 2],
    /// Blobs saved by this process and not yet in a written pack: queued for sealing, pending,
    /// or in a pack being written. A blob is saved once even if two threads meet it at once.
    in_flight: HashSet<BlobId>,
    /// Where the blobs this process wrote are; moved into the index by `flush_pack`.
    written: HashMap<BlobId, Location>,
    /// Packs written by this process whose index is not yet written.
    unindexed: Vec<IndexPack>,
    /// Bytes added to the repository by this process (sealed pack and index bytes).
    added_bytes: u64,
    /// Blobs handed to the sealing threads and not yet packed, plus packs and index files
    /// being written: a flush waits for this to reach zero.
    busy: usize,
    /// The first failure of a sealing thread or a write; the next save or flush reports it.
    failure: Option<RepoError>,
    /// Set once a failure is recorded: blobs may be lost, so nothing more is saved or
    /// flushed through this handle (a later snapshot must not refer to them).
    broken: bool,
    /// Whether a pack of each type is being written.
    writing: [bool; 2],
    /// Whether the backend still holds the buffer of the data pack being written.
    buffer_out: bool,
    /// Threads waiting in `settle` or for a blob being written (they need waking).
    waiting: usize,
    /// The buffer of the last data pack written, kept for the next one: allocating and
    /// freeing 16 MiB per pack makes the allocator's footprint creep.
    spare: Option<Vec<u8>>,
}

impl WriteState {
    /// Records a failure: the first is kept for the caller, and the handle is broken.
    fn record(&mut self, e: RepoError) {
        if !self.broken {
            self.failure = Some(e);
            self.broken = true;
        }
    }
}

/// Where a blob saved by this process is, for reading it back.
enum NewBlob {
    Written(Location),
    /// Still in the pack being filled: its sealed bytes and plaintext length.
    Pending(Vec<u8>, u32),
}

/// A full pack taken out of the pending slot, to be written.
struct FullPack {
    kind: BlobType,
    data: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.state.lock().expect("write state")
    }

    fn corrupt(&self, what: String) -> RepoError {
        RepoError::Corrupt { location: self.backend.location(), what }
    }

    /// Appends a sealed blob to the pending pack of its type and writes the pack if that
    /// filled it. `queued`: the blob came through the sealing queue (and counted as busy).
    /// A failed write is recorded for `settle` to report.
    fn append(&self, id: BlobId, kind: BlobType, raw: u32, sealed: &[u8], queued: bool) {
        let mut guard = self.lock();
        while kind == BlobType::Data && !Self::room(&mut guard, sealed.len()) {
            guard = self.wait(guard);
        }
        let st = &mut *guard;
        let p = &mut st.pending[kind as usize];
        let offset = p.data.len() as u64;
        p.data.extend_from_slice(sealed);
        p.by_id.insert(id, p.entries.len());
        p.entries.push(PackEntry { id, kind, offset, length: sealed.len() as u32, raw });
        // Busy until now, not just until the lock was first taken: a flush that found nothing
        // busy while this blob waited for room would write the packs without it.
        if queued {
            st.busy -= 1;
        }
        self.wake(st);
        // One pack of each type is written at a time (each costs a pack-sized buffer): while
        // one is, the next waits full, which holds back the sealing threads too.
        let mut full = None;
        while guard.pending[kind as usize].data.len() >= PACK_TARGET {
            if !guard.writing[kind as usize] {
                full = Self::take(&mut guard, kind);
                break;
            }
            guard = self.wait(guard);
        }
        drop(guard);
        if let Some(pack) = full {
            self.write_pack(pack);
        }
    }

    /// Readies the pending data pack for a blob of `len` bytes; false if it must wait first.
    /// Data packs share one pack-sized buffer: while the backend holds it, the next pack
    /// starts in a small one, moves into it when it is released (writing a pack takes a
    /// fraction of the time filling one does), and waits for that rather than grow. Tree
    /// packs are few and small: they simply grow.
    fn room(st: &mut WriteState, len: usize) -> bool {
        let p = &mut st.pending[BlobType::Data as usize];
        if p.data.capacity() == 0 {
            p.data = match st.spare.take() {
                Some(buf) => buf,
                None if st.buffer_out => Vec::with_capacity(PACK_START),
                None => Vec::with_capacity(PACK_BUFFER),
            };
        }
        p.data.len() + len <= p.data.capacity() || !st.buffer_out
    }

    /// Wakes the threads waiting for the state to change, if any.
    fn wake(&self, st: &WriteState) {
        if st.waiting > 0 {
            self.settled.notify_all();
        }
    }

    /// Waits (the lock released meanwhile) until another thread changes the state.
    fn wait<'a>(&self, mut st: std::sync::MutexGuard<'a, WriteState>) -> std::sync::MutexGuard<'a, WriteState> {
        st.waiting += 1;
        st = self.settled.wait(st).expect("write state");
        st.waiting -= 1;
        st
    }

    /// A queued blob will not be packed: it is no longer busy, and the handle is broken
    /// (the failure, the first one kept, is for `settle` to report).
    fn abandon(&self, e: RepoError) {
        let mut st = self.lock();
        st.busy -= 1;
        st.record(e);
        self.wake(&st);
    }

    /// Takes the pending pack of `kind` out for writing (counted busy until written).
    fn take(st: &mut WriteState, kind: BlobType) -> Option<FullPack> {
        let p = &mut st.pending[kind as usize];
        if p.entries.is_empty() {
            return None;
        }
        // Readers of a blob in a pack being written wait for it to land.
        p.by_id.clear();
        let pack = FullPack { kind, data: std::mem::take(&mut p.data), entries: std::mem::take(&mut p.entries) };
        st.busy += 1;
        st.writing[kind as usize] = true;
        st.buffer_out |= kind == BlobType::Data;
        Some(pack)
    }

    /// Seals the pack's header onto it, writes it, and records where its blobs are; a
    /// failure is recorded for `settle` to report.
    fn write_pack(&self, mut pack: FullPack) {
        let header =
            self.key.seal(&serde_json::to_vec(&PackHeader { blobs: pack.entries.clone() }).expect("serialises"));
        pack.data.extend_from_slice(&header);
        pack.data.extend_from_slice(&(header.len() as u32).to_le_bytes());
        let pack_id = *blake3::hash(&pack.data).as_bytes();
        let name = hex::encode(pack_id);
        let (kind, size) = (pack.kind, pack.data.len() as u64);
        let written = self.backend.write_releasing(Kind::Pack, &name, pack.data, &mut |buf| self.release(kind, buf));
        let mut guard = self.lock();
        let st = &mut *guard;
        st.busy -= 1;
        st.writing[kind as usize] = false;
        st.buffer_out = false; // released, or dropped by a backend that failed early
        if let Err(e) = written {
            st.record(e.into());
            self.wake(st);
            return;
        }
        st.added_bytes += size;
        for e in &pack.entries {
            st.in_flight.remove(&e.id);
            st.written
                .insert(e.id, Location { pack: pack_id, offset: e.offset, length: e.length, raw: e.raw, kind: e.kind });
        }
        st.unindexed.push(IndexPack { id: name, blobs: pack.entries });
        let index = (st.unindexed.len() >= INDEX_PACKS).then(|| {
            st.busy += 1;
            std::mem::take(&mut st.unindexed)
        });
        self.wake(st);
        drop(guard);
        if let Some(packs) = index {
            self.write_index(packs);
        }
    }

    /// Takes back the buffer of a data pack the backend no longer needs: the next pack moves
    /// into it from the small buffer it started in, or it waits for the next pack.
    fn release(&self, kind: BlobType, mut buf: Vec<u8>) {
        if kind != BlobType::Data {
            return;
        }
        buf.clear();
        let mut st = self.lock();
        st.buffer_out = false;
        let next = &mut st.pending[BlobType::Data as usize].data;
        if next.capacity() == 0 {
            st.spare = Some(buf);
        } else if next.capacity() < PACK_TARGET && next.len() <= buf.capacity() {
            buf.extend_from_slice(next);
            *next = buf;
        }
        self.wake(&st);
    }

    /// Writes an index file listing `packs` (already written); a failure is recorded.
    fn write_index(&self, packs: Vec<IndexPack>) {
        let sealed = self.key.seal(&serde_json::to_vec(&IndexFile { packs }).expect("serialises"));
        let name = hex::encode(blake3::hash(&sealed).as_bytes());
        let written = self.backend.write(Kind::Index, &name, &sealed);
        let mut st = self.lock();
        st.busy -= 1;
        match written {
            Ok(()) => st.added_bytes += sealed.len() as u64,
            Err(e) => {
                st.record(e.into());
            }
        }
        self.wake(&st);
    }

    /// The failure recorded, the first time it is asked for; then that there was one.
    fn check(&self, st: &mut WriteState) -> Result<()> {
        if let Some(e) = st.failure.take() {
            return Err(e);
        }
        if st.broken {
            return Err(RepoError::Other {
                location: self.backend.location(),
                what: "an earlier write failed, so nothing more is written in this run".into(),
            });
        }
        Ok(())
    }

    /// Waits until nothing is queued or being written; reports a failure recorded meanwhile.
    fn settle(&self) -> Result<std::sync::MutexGuard<'_, WriteState>> {
        let mut st = self.lock();
        while st.busy > 0 && !st.broken {
            st = self.wait(st);
        }
        self.check(&mut st)?;
        Ok(st)
    }
}

/// A blob to compress and seal.
struct SealJob {
    id: BlobId,
    kind: BlobType,
    plaintext: Vec<u8>,
}

/// Worker threads that compress and seal blobs while their callers read and chunk the next
/// ones; blobs are packed in whatever order they finish (the index records where each is).
struct Sealers {
    jobs: Option<std::sync::mpsc::SyncSender<SealJob>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sealers {
    fn start(writer: &Arc<Writer>) -> Sealers {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<SealJob>(n * 4);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let threads = (0..n)
            .map(|i| {
                let (job_rx, writer) = (job_rx.clone(), writer.clone());
                std::thread::Builder::new()
                    .name(format!("seal-{i}"))
                    .spawn(move || {
                        yield_to_feeder();
                        loop {
                            let job = match job_rx.lock().expect("job queue").recv() {
                                Ok(j) => j,
                                Err(_) => return,
                            };
                            let raw = job.plaintext.len() as u32;
                            match seal_blob(&writer.key, &job.plaintext) {
                                Ok(sealed) => writer.append(job.id, job.kind, raw, &sealed, true),
                                Err(e) => writer.abandon(writer.corrupt(e)),
                            }
                        }
                    })
                    .expect("cannot start a sealing thread")
            })
            .collect();
        Sealers { jobs: Some(job_tx), threads }
    }
}

impl Drop for Sealers {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Lowers the calling thread's scheduling priority a little: for threads that do the bulk
/// of the work, so that the thread feeding them (walking the tree, reading trees) gets a
/// core the moment it has something to hand out and they never run dry.
pub fn yield_to_feeder() {
    let tid = rustix::thread::gettid();
    if let Ok(nice) = rustix::process::getpriority_process(Some(tid)) {
        let _ = rustix::process::setpriority_process(Some(tid), (nice + 5).min(19));
    }
}

/// Compresses (when that helps) and seals one blob's plaintext.
fn seal_blob(key: &MasterKey, plaintext: &[u8]) -> std::result::Result<Vec<u8>, String> {
    // One compression context per thread, reused: creating one costs more than a small chunk.
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let compressed = COMPRESSOR
        .with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
            }
            c.as_mut().expect("set above").compress(plaintext)
        })
        .map_err(|e| format!("zstd: {e}"))?;
    Ok(if compressed.len() < plaintext.len() {
        key.seal_parts(&[&[FLAG_ZSTD], &compressed])
    } else {
        key.seal_parts(&[&[FLAG_RAW], plaintext])
    })
}

/// How many threads read and open packs (restore, check): one per core, at most four.
pub fn reader_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// Decompresses one blob of `raw` bytes with this thread's reused context.
fn decompress(data: &[u8], raw: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(data, raw)
    })
}

/// zstd level for blobs. On the reference data in 16 KiB chunks, level 1 compresses 1.4-1.8×
/// faster than level 3 for 0.4-0.7% more bytes (docs/benchmarks.md): compression is most of a
/// cold snapshot's CPU time.
const ZSTD_LEVEL: i32 = 1;

/// Blob plaintext is stored compressed with zstd unless that does not help.
const FLAG_RAW: u8 = 0;
const FLAG_ZSTD: u8 = 1;

impl Repository {
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
        let writer = Writer {
            backend: backend.clone(),
            key: key.clone(),
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
            for name in backend.list(Kind::Key)? {
                let bytes = backend.read(Kind::Key, &name)?;
                let Ok(kf) = serde_json::from_slice::<KeyFile>(&bytes) else { continue };
                if let Ok(k) = kf.unwrap(password) {
                    key = Some((k, name));
                    break;
                }
            }
            Ok(())
        })?;
        let (key, key_name) =
            key.ok_or(RepoError::Key { location: location.clone(), source: CryptoError::WrongPassword })?;
        let config: RepoConfig = serde_json::from_slice(&key.open(&sealed).map_err(|_| RepoError::Corrupt {
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
        tracing::debug!(location, "repository: key unwrapped");
        let mut repo = Repository::with(backend, key, config);
        repo.key_name = Some(key_name);
        repo.load_index()?;
        tracing::debug!(location, blobs = repo.index.len(), "repository: index loaded");
        Ok(repo)
    }

    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Adds a key file for another password; returns its name.
    pub fn add_key(&self, password: &[u8]) -> Result<String> {
        let kf = KeyFile::new(&self.key, password, KdfParams::default_or_env())
            .map_err(|e| RepoError::Key { location: self.location(), source: e })?;
        let bytes = serde_json::to_vec_pretty(&kf).expect("serialises");
        let name = hex::encode(&blake3::hash(&bytes).as_bytes()[..16]);
        self.backend.write(Kind::Key, &name, &bytes)?;
        Ok(name)
    }

    /// Every key file: (name, file, whether it is the one in use).
    pub fn keys(&self) -> Result<Vec<(String, KeyFile, bool)>> {
        let mut out = Vec::new();
        for name in self.backend.list(Kind::Key)? {
            let bytes = self.backend.read(Kind::Key, &name)?;
            if let Ok(kf) = serde_json::from_slice::<KeyFile>(&bytes) {
                let current = self.key_name.as_deref() == Some(name.as_str());
                out.push((name, kf, current));
            }
        }
        Ok(out)
    }

    /// Removes a key file; never the one in use, never the last.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        let keys = self.keys()?;
        let Some((full, _, current)) = keys.iter().find(|(n, _, _)| n.starts_with(name)) else {
            return Err(RepoError::Other { location: self.location(), what: format!("no key {name}") });
        };
        if *current {
            return Err(RepoError::Other {
                location: self.location(),
                what: "refusing to remove the key in use (open with another password first)".into(),
            });
        }
        if keys.len() < 2 {
            return Err(RepoError::Other { location: self.location(), what: "refusing to remove the last key".into() });
        }
        self.backend.delete(Kind::Key, full)?;
        Ok(())
    }

    /// Replaces the password in use with another.
    pub fn change_password(&mut self, new_password: &[u8]) -> Result<String> {
        let old = self.key_name.clone();
        let name = self.add_key(new_password)?;
        if let Some(old) = old {
            self.backend.delete(Kind::Key, &old)?;
        }
        self.key_name = Some(name.clone());
        Ok(name)
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

    /// Reads every index file: on one thread per core (at most four), each reading,
    /// opening and parsing its share, then merged here.
    fn load_index(&mut self) -> Result<()> {
        let names = self.backend.list(Kind::Index)?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let this = &*self;
        let parse =
            |name: &String| -> Result<Vec<(BlobId, Location)>> {
                let sealed = this.backend.read(Kind::Index, name)?;
                let plain =
                    this.key.open(&sealed).map_err(|_| this.corrupt(format!("index {name} does not authenticate")))?;
                let file: IndexFile =
                    serde_json::from_slice(&plain).map_err(|e| this.corrupt(format!("index {name}: {e}")))?;
                let mut out = Vec::new();
                for p in file.packs {
                    let mut pack = [0u8; 32];
                    hex::decode_to_slice(&p.id, &mut pack)
                        .map_err(|_| this.corrupt(format!("index {name}: bad pack id")))?;
                    out.extend(p.blobs.into_iter().map(|b| {
                        (b.id, Location { pack, offset: b.offset, length: b.length, raw: b.raw, kind: b.kind })
                    }));
                }
                Ok(out)
            };
        let parts: Vec<Result<Vec<(BlobId, Location)>>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..reader_threads().min(names.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while let Some(name) = names.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                            mine.push(parse(name));
                        }
                        mine
                    })
                })
                .collect();
            threads.into_iter().flat_map(|t| t.join().expect("index thread")).collect()
        });
        let mut index = HashMap::new();
        for part in parts {
            index.extend(part?);
        }
        self.index = index;
        Ok(())
    }

    /// Whether the repository has the blob, or will once this process's packs are written.
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.index.contains_key(id) || {
            let st = self.writer.lock();
            st.written.contains_key(id) || st.in_flight.contains(id)
        }
    }

    pub fn blob_count(&self) -> usize {
        self.index.len() + self.writer.lock().written.len()
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

    /// Where a blob this process saved is: in a written pack, or (its sealed bytes and
    /// plaintext length copied out) in a pack still being filled. Waits while it is queued
    /// for sealing or in a pack being written.
    fn locate_new(&self, id: &BlobId) -> Result<NewBlob> {
        let mut st = self.writer.lock();
        loop {
            if let Some(loc) = st.written.get(id) {
                return Ok(NewBlob::Written(*loc));
            }
            if st.broken {
                return Err(self.corrupt(format!("blob {} was not written: a write failed", id.hex())));
            }
            if !st.in_flight.contains(id) {
                return Err(self.corrupt(format!("blob {} is not in the index", id.hex())));
            }
            let pending = st.pending.iter().find_map(|p| {
                let e = &p.entries[*p.by_id.get(id)?];
                Some((p.data[e.offset as usize..e.offset as usize + e.length as usize].to_vec(), e.raw))
            });
            if let Some((sealed, raw)) = pending {
                return Ok(NewBlob::Pending(sealed, raw));
            }
            st = self.writer.wait(st);
        }
    }

    /// Reads, authenticates and checks a blob.
    pub fn load_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = match self.index.get(id) {
            Some(loc) => *loc,
            None => match self.locate_new(id)? {
                NewBlob::Written(loc) => loc,
                NewBlob::Pending(sealed, raw) => return self.open_blob(id, &sealed, raw, "the pack being written"),
            },
        };
        let pack_name = hex::encode(loc.pack);
        let sealed = if self.backend.cheap_ranges() {
            // Trees are read one after another, all over their (tree-only) packs: have the
            // disk read each such pack ahead, once, rather than seek for every tree.
            if loc.kind == BlobType::Tree && self.read_ahead.lock().expect("read-ahead").insert(loc.pack) {
                self.backend.will_read(Kind::Pack, &pack_name);
            }
            self.backend.read_range(Kind::Pack, &pack_name, loc.offset, loc.length as u64)?
        } else {
            let mut cache = self.pack_cache.lock().expect("cache lock");
            let hit = cache.iter().position(|(p, _)| *p == loc.pack);
            match hit {
                Some(i) => {
                    let entry = cache.remove(i);
                    let end = (loc.offset as usize + loc.length as usize).min(entry.1.len());
                    let blob = entry.1[(loc.offset as usize).min(end)..end].to_vec();
                    cache.push(entry);
                    blob
                }
                None => {
                    // Whole packs are read once and kept: restores read blobs in pack order.
                    let size = self.backend.stat(Kind::Pack, &pack_name)?.unwrap_or(0);
                    if size <= (PACK_TARGET as u64) * 2 {
                        let data = self.backend.read(Kind::Pack, &pack_name)?;
                        let end = loc.offset as usize + loc.length as usize;
                        if end > data.len() {
                            return Err(self.corrupt(format!("pack {pack_name} is shorter than its index says")));
                        }
                        let blob = data[loc.offset as usize..end].to_vec();
                        if cache.len() >= PACK_CACHE_SLOTS {
                            cache.remove(0);
                        }
                        cache.push((loc.pack, data));
                        blob
                    } else {
                        self.backend.read_range(Kind::Pack, &pack_name, loc.offset, loc.length as u64)?
                    }
                }
            }
        };
        self.open_blob(id, &sealed, loc.raw, &format!("pack {pack_name}"))
    }

    /// Forgets the packs kept from earlier reads (their memory is better used elsewhere).
    pub fn drop_pack_cache(&self) {
        self.pack_cache.lock().expect("cache lock").clear();
    }

    /// Where a stored blob is, if it is in a written pack.
    pub fn locate(&self, id: &BlobId) -> Option<Location> {
        self.index.get(id).copied().or_else(|| self.writer.lock().written.get(id).copied())
    }

    /// A hint that `pack` will be read whole soon.
    pub fn will_read_pack(&self, pack: &[u8; 32]) {
        self.backend.will_read(Kind::Pack, &hex::encode(pack));
    }

    /// Runs `work` on every item of `packs` (each naming a pack through `pack_of`), on one
    /// thread per core (at most four), each thread with its own reused state (say a read
    /// buffer); the backend is asked to read ahead the packs the threads take next. Stops at
    /// the first failure and returns it.
    pub fn on_pack_threads<T: Sync, S: Default>(
        &self,
        packs: &[T],
        pack_of: impl Fn(&T) -> &[u8; 32] + Sync,
        work: impl Fn(&T, &mut S) -> Result<()> + Sync,
    ) -> Result<()> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let failure: Mutex<Option<RepoError>> = Mutex::new(None);
        let threads = reader_threads();
        std::thread::scope(|s| {
            for _ in 0..threads.min(packs.len()) {
                s.spawn(|| {
                    let mut state = S::default();
                    while !stop.load(Relaxed) {
                        let i = next.fetch_add(1, Relaxed);
                        let Some(item) = packs.get(i) else { return };
                        // The disk reads the next packs while this thread works on this one.
                        if let Some(ahead) = packs.get(i + threads) {
                            self.will_read_pack(pack_of(ahead));
                        }
                        if let Err(e) = work(item, &mut state) {
                            stop.store(true, Relaxed);
                            failure.lock().expect("failure").get_or_insert(e);
                        }
                    }
                });
            }
        });
        match failure.into_inner().expect("failure") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads blobs of one pack, in the order given (which should be by offset), and hands
    /// each to `each` opened (authenticated, decompressed, its ID checked) or with the reason
    /// it could not be. Remote packs are fetched whole, once; local ones are read in windows
    /// of at most [`READ_WINDOW`] bytes, so memory stays small. `buf` is reused between calls.
    /// An error reading the pack ends the call (as `E::from` it); `each` decides what a
    /// damaged blob means, and may end the call with an error of its own.
    pub fn read_pack_blobs<T, E: From<RepoError>>(
        &self,
        pack: &[u8; 32],
        blobs: &[T],
        key: impl Fn(&T) -> (&BlobId, &Location),
        buf: &mut Vec<u8>,
        mut each: impl FnMut(&T, Result<Vec<u8>>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let failed_read = |e: crate::backend::BackendError| E::from(RepoError::from(e));
        let name = hex::encode(pack);
        let place = format!("pack {name}");
        let mut open = |buf: &[u8], base: u64, b: &T| {
            let (id, loc) = key(b);
            let start = (loc.offset - base) as usize;
            let blob = match buf.get(start..start + loc.length as usize) {
                Some(sealed) => self.open_blob(id, sealed, loc.raw, &place),
                None => Err(self.corrupt(format!("{place} is shorter than its index says"))),
            };
            each(b, blob)
        };
        if !self.backend.cheap_ranges() {
            self.backend.read_into(Kind::Pack, &name, buf).map_err(failed_read)?;
            return blobs.iter().try_for_each(|b| open(buf, 0, b));
        }
        let mut i = 0;
        while i < blobs.len() {
            let start = key(&blobs[i]).1.offset;
            let mut end = start + key(&blobs[i]).1.length as u64;
            let mut j = i + 1;
            while let Some(b) = blobs.get(j) {
                let loc = key(b).1;
                let b_end = loc.offset + loc.length as u64;
                // A window ends at its size, on a long gap (blobs not wanted), or out of order.
                if loc.offset < start || b_end - start > READ_WINDOW || loc.offset > end + READ_GAP {
                    break;
                }
                end = end.max(b_end);
                j += 1;
            }
            self.backend.read_range_into(Kind::Pack, &name, start, end - start, buf).map_err(failed_read)?;
            blobs[i..j].iter().try_for_each(|b| open(buf, start, b))?;
            i = j;
        }
        Ok(())
    }

    /// Authenticates, decompresses and checks one sealed blob.
    fn open_blob(&self, id: &BlobId, sealed: &[u8], raw: u32, place: &str) -> Result<Vec<u8>> {
        let body = self
            .key
            .open(sealed)
            .map_err(|_| self.corrupt(format!("blob {} in {place} does not authenticate", id.hex())))?;
        let plain = match body.split_first() {
            Some((&FLAG_RAW, rest)) => rest.to_vec(),
            Some((&FLAG_ZSTD, rest)) => {
                decompress(rest, raw as usize).map_err(|e| self.corrupt(format!("blob {}: {e}", id.hex())))?
            }
            _ => return Err(self.corrupt(format!("blob {}: unknown encoding", id.hex()))),
        };
        if self.id_of(&plain) != *id {
            return Err(self.corrupt(format!("blob {} does not match its ID", id.hex())));
        }
        Ok(plain)
    }

    /// Every pack file and its blobs, as the index says.
    pub fn packs(&self) -> HashMap<[u8; 32], Vec<(BlobId, Location)>> {
        let mut out: HashMap<[u8; 32], Vec<(BlobId, Location)>> = HashMap::new();
        for (id, loc) in &self.index {
            out.entry(loc.pack).or_default().push((*id, *loc));
        }
        out
    }

    /// Writes a sealed JSON object of `kind` under a random name; returns the name.
    pub fn save_object<T: Serialize>(&self, kind: Kind, value: &T) -> Result<String> {
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

/// Reads a whole stream in content-defined chunks.
pub fn chunks<R: Read>(reader: R, p: ChunkerParams) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::new(reader, p.min, p.avg, p.max).map(|r| {
        r.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

/// Cuts data already in memory into the same content-defined chunks [`chunks`] finds in a
/// stream of it.
pub fn chunk_slice(data: &[u8], p: ChunkerParams) -> impl Iterator<Item = &[u8]> {
    fastcdc::v2020::FastCDC::new(data, p.min, p.avg, p.max).map(move |c| &data[c.offset..c.offset + c.length])
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
