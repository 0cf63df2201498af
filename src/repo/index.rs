//! The index: which pack holds each blob, loaded from every index file when the repository
//! opens.

use std::collections::HashMap;

use super::*;
use crate::backend::Kind;

impl Repository {
    /// Reads every index file: on one thread per core (at most four), each reading,
    /// opening and parsing its share, then merged here.
    pub(super) fn load_index(&mut self) -> Result<()> {
        let names = self.backend.list(Kind::Index)?;
        let index = self.read_index_files(&names)?;
        self.index = index;
        self.loaded_indexes = names.into_iter().collect();
        Ok(())
    }

    /// Brings the index up to date with the index files there are now (taken under a lock:
    /// what others wrote, or a prune rewrote, since the repository was opened). Only new
    /// files are read when none went away; otherwise the whole index is read again.
    pub fn refresh_index(&mut self) -> Result<()> {
        let names: std::collections::HashSet<String> = self.backend.list(Kind::Index)?.into_iter().collect();
        if names == self.loaded_indexes {
            return Ok(());
        }
        if self.loaded_indexes.is_subset(&names) {
            let new: Vec<String> = names.difference(&self.loaded_indexes).cloned().collect();
            let found = self.read_index_files(&new)?;
            self.index.extend(found);
            self.loaded_indexes = names;
            return Ok(());
        }
        tracing::debug!(location = self.location(), "index files were replaced; reading the index again");
        self.load_index()
    }

    fn read_index_files(&self, names: &[String]) -> Result<HashMap<BlobId, Location>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let this = self;
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
        Ok(index)
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

    /// Where a stored blob is, if it is in a written pack.
    pub fn locate(&self, id: &BlobId) -> Option<Location> {
        self.index.get(id).copied().or_else(|| self.writer.lock().written.get(id).copied())
    }

    /// The bytes the indexed packs take: each pack up to the end of its last blob (its
    /// header, a few dozen bytes per blob, left out).
    pub fn stored_bytes(&self) -> u64 {
        let mut ends: HashMap<[u8; 32], u64> = HashMap::new();
        for loc in self.index.values() {
            let end = loc.offset + loc.length as u64;
            let e = ends.entry(loc.pack).or_default();
            *e = (*e).max(end);
        }
        ends.values().sum()
    }

    /// Every pack file and its blobs, as the index says.
    pub fn packs(&self) -> HashMap<[u8; 32], Vec<(BlobId, Location)>> {
        let mut out: HashMap<[u8; 32], Vec<(BlobId, Location)>> = HashMap::new();
        for (id, loc) in &self.index {
            out.entry(loc.pack).or_default().push((*id, *loc));
        }
        out
    }
}

/// One index entry as [`Repository::write_index`] writes it: blob, pack, offset, length,
/// plaintext length, kind.
const WIRE_ENTRY: usize = 32 + 32 + 8 + 4 + 4 + 1;

/// The most entries [`read_index`] takes (268 million blobs: petabytes).
const WIRE_MAX: u64 = 1 << 28;

impl Repository {
    /// Writes the index as loaded to `out`, for a process of ours that opens the same
    /// repository next (an instant restore's hydrator), so that it need not read every index
    /// file again over the network. [`read_index`] reads it back. Only for a process that
    /// has written nothing: packs it wrote are in its index before any index file lists them.
    pub fn write_index(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(&(self.index.len() as u64).to_le_bytes())?;
        let mut buf = Vec::with_capacity(WIRE_ENTRY * 4096);
        for (id, l) in &self.index {
            buf.extend_from_slice(&id.0);
            buf.extend_from_slice(&l.pack);
            buf.extend_from_slice(&l.offset.to_le_bytes());
            buf.extend_from_slice(&l.length.to_le_bytes());
            buf.extend_from_slice(&l.raw.to_le_bytes());
            buf.push(match l.kind {
                BlobType::Data => 0,
                BlobType::Tree => 1,
            });
            if buf.len() >= WIRE_ENTRY * 4096 {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        out.write_all(&buf)
    }

    /// The index files the index was read from.
    pub fn index_files(&self) -> Vec<String> {
        self.loaded_indexes.iter().cloned().collect()
    }
}

/// Reads an index [`Repository::write_index`] wrote.
pub fn read_index(input: &mut impl std::io::Read) -> std::io::Result<HashMap<BlobId, Location>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("handed index: {what}"));
    let mut n = [0u8; 8];
    input.read_exact(&mut n)?;
    let count = u64::from_le_bytes(n);
    if count > WIRE_MAX {
        return Err(bad("too many entries"));
    }
    // Grown as entries arrive: a header alone reserves little.
    let mut index = HashMap::with_capacity(count.min(1 << 16) as usize);
    let mut e = [0u8; WIRE_ENTRY];
    for _ in 0..count {
        input.read_exact(&mut e)?;
        let word = |at: usize, len: usize| &e[at..at + len];
        let kind = match e[WIRE_ENTRY - 1] {
            0 => BlobType::Data,
            1 => BlobType::Tree,
            _ => return Err(bad("unknown blob kind")),
        };
        let id = BlobId(word(0, 32).try_into().expect("32 bytes"));
        let location = Location {
            pack: word(32, 32).try_into().expect("32 bytes"),
            offset: u64::from_le_bytes(word(64, 8).try_into().expect("8 bytes")),
            length: u32::from_le_bytes(word(72, 4).try_into().expect("4 bytes")),
            raw: u32::from_le_bytes(word(76, 4).try_into().expect("4 bytes")),
            kind,
        };
        index.insert(id, location);
    }
    Ok(index)
}
