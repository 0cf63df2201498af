//! The write side: blobs sealed (compressed when that helps, then encrypted) on worker
//! threads, appended to the pending pack of their type, and packs written by whichever thread
//! fills one; index files written every few packs. Nothing here decides what to store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

use super::crypto::MasterKey;
use super::*;
use crate::backend::Kind;

/// A data pack's buffer: the target and room for the blobs that arrive while it is written.
pub(super) const PACK_BUFFER: usize = PACK_TARGET + (1 << 20);

/// The buffer a pack starts in while the previous one is still being written.
pub(super) const PACK_START: usize = 2 << 20;

/// An index file is written after this many packs (and at the end): index files stay small,
/// and so does the memory that writing one takes.
pub(super) const INDEX_PACKS: usize = 8;

#[derive(Default)]
pub(super) struct PendingPack {
    pub(super) data: Vec<u8>,
    pub(super) entries: Vec<PackEntry>,
    /// Position of each blob in `entries`, for reading a blob back before its pack is written.
    pub(super) by_id: HashMap<BlobId, usize>,
}

/// The write side of a repository. Any thread may save blobs (`Repository::save_blob` takes
/// `&self`): the sealing threads append what they seal to the pending pack of its type, and
/// whichever thread fills a pack writes it, so packing and writing never wait on one thread.
pub(super) struct Writer {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) key: MasterKey,
    /// The locks held: nothing is written once one is lost.
    pub(super) held_locks: Arc<super::lock::HeldLocks>,
    pub(super) state: Mutex<WriteState>,
    /// Signalled whenever `busy` drops or a failure is recorded.
    pub(super) settled: Condvar,
}

#[derive(Default)]
pub(super) struct WriteState {
    /// The packs being filled, one per blob type (trees apart from data, so listing a
    /// snapshot's directories reads a few small packs, not every data pack).
    pub(super) pending: [PendingPack; 2],
    /// Blobs saved by this process and not yet in a written pack: queued for sealing, pending,
    /// or in a pack being written. A blob is saved once even if two threads meet it at once.
    pub(super) in_flight: HashSet<BlobId>,
    /// Where the blobs this process wrote are; moved into the index by `flush_pack`.
    pub(super) written: HashMap<BlobId, Location>,
    /// Packs written by this process whose index is not yet written.
    pub(super) unindexed: Vec<IndexPack>,
    /// Bytes added to the repository by this process (sealed pack and index bytes).
    pub(super) added_bytes: u64,
    /// Blobs handed to the sealing threads and not yet packed, plus packs and index files
    /// being written: a flush waits for this to reach zero.
    pub(super) busy: usize,
    /// The first failure of a sealing thread or a write; the next save or flush reports it.
    pub(super) failure: Option<RepoError>,
    /// Set once a failure is recorded: blobs may be lost, so nothing more is saved or
    /// flushed through this handle (a later snapshot must not refer to them).
    pub(super) broken: bool,
    /// What the first failure said, for every later report of it.
    pub(super) broken_by: String,
    /// Whether a pack of each type is being written.
    pub(super) writing: [bool; 2],
    /// Whether the backend still holds the buffer of the data pack being written.
    pub(super) buffer_out: bool,
    /// Threads waiting in `settle` or for a blob being written (they need waking).
    pub(super) waiting: usize,
    /// The buffer of the last data pack written, kept for the next one: allocating and
    /// freeing 16 MiB per pack makes the allocator's footprint creep.
    pub(super) spare: Option<Vec<u8>>,
}

impl WriteState {
    /// Records a failure: the first is kept for the caller, and the handle is broken.
    pub(super) fn record(&mut self, e: RepoError) {
        if !self.broken {
            self.broken_by = e.to_string();
            self.failure = Some(e);
            self.broken = true;
        }
    }
}

/// Where a blob saved by this process is, for reading it back.
pub(super) enum NewBlob {
    Written(Location),
    /// Still in the pack being filled: its sealed bytes and plaintext length.
    Pending(Vec<u8>, u32),
}

/// A full pack taken out of the pending slot, to be written.
pub(super) struct FullPack {
    pub(super) kind: BlobType,
    pub(super) data: Vec<u8>,
    pub(super) entries: Vec<PackEntry>,
}

impl Writer {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.state.lock().expect("write state")
    }

    pub(super) fn corrupt(&self, what: String) -> RepoError {
        RepoError::Corrupt { location: self.backend.location(), what }
    }

    /// Appends a sealed blob to the pending pack of its type and writes the pack if that
    /// filled it. `queued`: the blob came through the sealing queue (and counted as busy).
    /// A failed write is recorded for `settle` to report.
    pub(super) fn append(&self, id: BlobId, kind: BlobType, raw: u32, sealed: &[u8], queued: bool) {
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
    pub(super) fn room(st: &mut WriteState, len: usize) -> bool {
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
    pub(super) fn wake(&self, st: &WriteState) {
        if st.waiting > 0 {
            self.settled.notify_all();
        }
    }

    /// Waits (the lock released meanwhile) until another thread changes the state.
    pub(super) fn wait<'a>(
        &self,
        mut st: std::sync::MutexGuard<'a, WriteState>,
    ) -> std::sync::MutexGuard<'a, WriteState> {
        st.waiting += 1;
        st = self.settled.wait(st).expect("write state");
        st.waiting -= 1;
        st
    }

    /// A queued blob will not be packed: it is no longer busy, and the handle is broken
    /// (the failure, the first one kept, is for `settle` to report).
    pub(super) fn abandon(&self, e: RepoError) {
        let mut st = self.lock();
        st.busy -= 1;
        st.record(e);
        self.wake(&st);
    }

    /// Takes the pending pack of `kind` out for writing (counted busy until written).
    pub(super) fn take(st: &mut WriteState, kind: BlobType) -> Option<FullPack> {
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
    pub(super) fn write_pack(&self, mut pack: FullPack) {
        let header =
            self.key.seal(&serde_json::to_vec(&PackHeader { blobs: pack.entries.clone() }).expect("serialises"));
        pack.data.extend_from_slice(&header);
        pack.data.extend_from_slice(&(header.len() as u32).to_le_bytes());
        let pack_id = *blake3::hash(&pack.data).as_bytes();
        let name = hex::encode(pack_id);
        let (kind, size) = (pack.kind, pack.data.len() as u64);
        let written = match self.held_locks.check() {
            Ok(()) => self
                .backend
                .write_releasing(Kind::Pack, &name, pack.data, &mut |buf| self.release(kind, buf))
                .map_err(RepoError::from),
            Err(e) => {
                self.release(kind, pack.data);
                Err(e)
            }
        };
        let mut guard = self.lock();
        let st = &mut *guard;
        st.busy -= 1;
        st.writing[kind as usize] = false;
        st.buffer_out = false; // released, or dropped by a backend that failed early
        if let Err(e) = written {
            st.record(e);
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
    pub(super) fn release(&self, kind: BlobType, mut buf: Vec<u8>) {
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
    pub(super) fn write_index(&self, packs: Vec<IndexPack>) {
        let sealed = self.key.seal(&serde_json::to_vec(&IndexFile { packs }).expect("serialises"));
        let name = hex::encode(blake3::hash(&sealed).as_bytes());
        let written = self.held_locks.check().and_then(|()| Ok(self.backend.write(Kind::Index, &name, &sealed)?));
        let mut st = self.lock();
        st.busy -= 1;
        match written {
            Ok(()) => st.added_bytes += sealed.len() as u64,
            Err(e) => {
                st.record(e);
            }
        }
        self.wake(&st);
    }

    /// The failure recorded, the first time it is asked for; then that there was one.
    pub(super) fn check(&self, st: &mut WriteState) -> Result<()> {
        if let Some(e) = st.failure.take() {
            return Err(e);
        }
        if st.broken {
            return Err(RepoError::Other {
                location: self.backend.location(),
                what: format!("a write failed ({}), so nothing more is written in this run", st.broken_by),
            });
        }
        Ok(())
    }

    /// Waits until nothing is queued or being written; reports a failure recorded meanwhile.
    pub(super) fn settle(&self) -> Result<std::sync::MutexGuard<'_, WriteState>> {
        let mut st = self.lock();
        while st.busy > 0 && !st.broken {
            st = self.wait(st);
        }
        self.check(&mut st)?;
        Ok(st)
    }
}

/// A blob to compress and seal.
pub(super) struct SealJob {
    pub(super) id: BlobId,
    pub(super) kind: BlobType,
    pub(super) plaintext: Vec<u8>,
}

/// Worker threads that compress and seal blobs while their callers read and chunk the next
/// ones; blobs are packed in whatever order they finish (the index records where each is).
pub(super) struct Sealers {
    pub(super) jobs: Option<std::sync::mpsc::SyncSender<SealJob>>,
    pub(super) threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sealers {
    pub(super) fn start(writer: &Arc<Writer>) -> Sealers {
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
pub(super) fn seal_blob(key: &MasterKey, plaintext: &[u8]) -> std::result::Result<Vec<u8>, String> {
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

/// zstd level for blobs. On the reference data in 16 KiB chunks, level 1 compresses 1.4-1.8×
/// faster than level 3 for 0.4-0.7% more bytes (docs/benchmarks.md): compression is most of a
/// cold snapshot's CPU time.
pub(super) const ZSTD_LEVEL: i32 = 1;
