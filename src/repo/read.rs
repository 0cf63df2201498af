//! The read side: blobs located through the index (or among those this process has just
//! written), packs read in windows on reader threads, every blob authenticated and its ID
//! recomputed before it is handed out.

use std::sync::Mutex;

use super::*;
use crate::backend::Kind;

/// The most bytes of a local pack read at once when reading many of its blobs.
pub const READ_WINDOW: u64 = 4 << 20;

/// Unwanted bytes between two wanted blobs that are still read rather than skipped.
pub(super) const READ_GAP: u64 = 256 << 10;

/// Whole packs kept in memory while reading: the one holding the trees and the one holding
/// the data being restored.
pub(super) const PACK_CACHE_SLOTS: usize = 2;

/// How many threads read and open packs (restore, check): one per core, at most four.
pub fn reader_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// Decompresses one blob of `raw` bytes with this thread's reused context.
pub(super) fn decompress(data: &[u8], raw: usize) -> std::io::Result<Vec<u8>> {
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

/// Packs fetched at once from a remote store: its latency, not this machine's cores, is
/// what bounds a restore (each thread decrypts what it fetched, so the cores stay busy too).
pub const REMOTE_READERS: usize = 8;

impl Repository {
    /// How many packs are read at once: one per core from a local disk, more from a remote
    /// store, whose round trips would otherwise leave the cores idle.
    pub fn pack_readers(&self) -> usize {
        if self.backend.cheap_ranges() {
            return reader_threads();
        }
        REMOTE_READERS
    }

    /// Where a blob this process saved is: in a written pack, or (its sealed bytes and
    /// plaintext length copied out) in a pack still being filled. Waits while it is queued
    /// for sealing or in a pack being written.
    pub(super) fn locate_new(&self, id: &BlobId) -> Result<NewBlob> {
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
        if crate::sys::interrupted() {
            return Err(RepoError::Interrupted);
        }
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
            self.backend
                .read_range(Kind::Pack, &pack_name, loc.offset, loc.length as u64)
                .map_err(|e| self.pack_read_failed(&pack_name, e))?
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
                        let data = self
                            .backend
                            .read(Kind::Pack, &pack_name)
                            .map_err(|e| self.pack_read_failed(&pack_name, e))?;
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
                        self.backend
                            .read_range(Kind::Pack, &pack_name, loc.offset, loc.length as u64)
                            .map_err(|e| self.pack_read_failed(&pack_name, e))?
                    }
                }
            }
        };
        self.open_blob(id, &sealed, loc.raw, &format!("pack {pack_name}"))
    }

    /// Reads, authenticates and checks one blob by itself, fetching only its bytes even from a
    /// remote store (no whole pack, no pack cache): the latency a single read wants, for a
    /// service waiting on it, rather than the throughput of reading packs in order.
    pub fn load_blob_alone(&self, id: &BlobId) -> Result<Vec<u8>> {
        if crate::sys::interrupted() {
            return Err(RepoError::Interrupted);
        }
        let Some(loc) = self.index.get(id).copied() else { return self.load_blob(id) };
        let pack_name = hex::encode(loc.pack);
        let sealed = self
            .backend
            .read_range(Kind::Pack, &pack_name, loc.offset, loc.length as u64)
            .map_err(|e| self.pack_read_failed(&pack_name, e))?;
        self.open_blob(id, &sealed, loc.raw, &format!("pack {pack_name}"))
    }

    /// Forgets the packs kept from earlier reads (their memory is better used elsewhere).
    pub fn drop_pack_cache(&self) {
        self.pack_cache.lock().expect("cache lock").clear();
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
        let threads = self.pack_readers();
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
        if crate::sys::interrupted() {
            return Err(E::from(RepoError::Interrupted));
        }
        let failed_read = |e: crate::backend::BackendError| E::from(self.pack_read_failed(&hex::encode(pack), e));
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

    /// A pack that is missing or shorter than the index says is damage (exit code 4), named;
    /// anything else (a dead server, a permission) stays the backend's error.
    pub(super) fn pack_read_failed(&self, pack: &str, e: crate::backend::BackendError) -> RepoError {
        match &e {
            crate::backend::BackendError::NotFound { .. } => {
                self.corrupt(format!("pack {pack} is missing (the index lists blobs in it)"))
            }
            crate::backend::BackendError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.corrupt(format!("pack {pack} is shorter than the index says"))
            }
            _ => e.into(),
        }
    }

    /// Authenticates, decompresses and checks one sealed blob.
    pub(super) fn open_blob(&self, id: &BlobId, sealed: &[u8], raw: u32, place: &str) -> Result<Vec<u8>> {
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
}
