//! Keeping a repository healthy: `check` (structure, and optionally every byte), `prune`
//! (delete data no snapshot references), `copy` (replicate snapshots to another repository,
//! re-keyed, moving only what the target lacks), `diff` (what changed between snapshots).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::lock::Lock;
use super::snapshot::{self, Snapshot};
use super::tree::{NodeKind, Tree, load_tree};
use super::{BlobId, BlobType, IndexFile, IndexPack, PackEntry, PackHeader, RepoError, Repository, Result};
use crate::backend::Kind;

/// Every tree and data blob reachable from `roots`.
pub fn reachable(repo: &Repository, roots: impl IntoIterator<Item = BlobId>) -> Result<HashSet<BlobId>> {
    let mut seen = HashSet::new();
    let mut stack: Vec<BlobId> = roots.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let tree = load_tree(repo, &id)?;
        for n in tree.nodes {
            seen.extend(n.content);
            if let Some(s) = n.subtree {
                stack.push(s);
            }
        }
    }
    Ok(seen)
}

fn roots(s: &Snapshot) -> Vec<BlobId> {
    let mut r = vec![s.image.tree, s.container_layer];
    r.extend(s.volumes.iter().map(|v| v.tree));
    r
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub blobs_read: usize,
    pub errors: Vec<String>,
}

/// Checks structure (every pack exists and its header matches the index, every blob a snapshot
/// needs is indexed, every tree decodes) and, with `read_fraction`, authenticates every blob of
/// that share of the packs.
pub fn check(repo: &Repository, read_fraction: Option<f64>) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let packs = repo.packs();
    report.packs = packs.len();
    for (pack, blobs) in &packs {
        let name = hex::encode(pack);
        match pack_header(repo, &name) {
            Ok(entries) => {
                let listed: HashSet<BlobId> = entries.iter().map(|e| e.id).collect();
                for (id, _) in blobs {
                    if !listed.contains(id) {
                        report.errors.push(format!(
                            "pack {name}: blob {} is in the index but not in the pack's header",
                            id.hex()
                        ));
                    }
                }
            }
            Err(e) => report.errors.push(format!("pack {name}: {e}")),
        }
    }
    // Damaged snapshot objects are reported; the others are checked all the same.
    let (snaps, damaged) = snapshot::list_readable(repo)?;
    report.errors.extend(damaged);
    report.snapshots = snaps.len();
    for (id, s) in &snaps {
        match reachable(repo, roots(s)) {
            Ok(used) => {
                for b in used {
                    if !repo.has_blob(&b) {
                        report.errors.push(format!("snapshot {}: blob {} is missing", &id[..12], b.hex()));
                    }
                }
            }
            Err(e) => report.errors.push(format!("snapshot {}: {e}", &id[..12])),
        }
    }
    if let Some(fraction) = read_fraction {
        let mut names: Vec<&[u8; 32]> = packs.keys().collect();
        names.sort();
        let names = choose_share(names, fraction);
        let mut chosen: Vec<PackToRead> = Vec::new();
        for pack in names {
            let mut blobs = packs[pack].clone();
            blobs.sort_by_key(|(_, loc)| loc.offset);
            chosen.push((pack, blobs));
        }
        report.packs_read = chosen.len();
        report.blobs_read = chosen.iter().map(|(_, b)| b.len()).sum();
        report.errors.extend(read_packs(repo, &chosen));
    }
    Ok(report)
}

/// A random `fraction` of `items` (kept in their order): the share rounded to whole items,
/// and never none when the share is above zero, so `10%` of four packs reads one.
fn choose_share<T>(items: Vec<T>, fraction: f64) -> Vec<T> {
    if fraction >= 1.0 {
        return items;
    }
    let n = items.len();
    let mut want = (n as f64 * fraction.max(0.0)).round() as usize;
    if fraction > 0.0 && want == 0 && n > 0 {
        want = 1;
    }
    // Random keys, the `want` smallest chosen: a uniform sample without replacement.
    let mut keys: Vec<(u64, usize)> = (0..n).map(|i| (crate::fsutil::random_u64(), i)).collect();
    keys.sort_unstable();
    let mut picked: Vec<usize> = keys.into_iter().take(want).map(|(_, i)| i).collect();
    picked.sort_unstable();
    let mut items: Vec<Option<T>> = items.into_iter().map(Some).collect();
    picked.into_iter().filter_map(|i| items[i].take()).collect()
}

/// A pack and the blobs in it to read, by offset.
type PackToRead<'a> = (&'a [u8; 32], Vec<(BlobId, super::Location)>);

/// Reads and opens every blob of `packs`, one pack per thread at a time (one per core);
/// returns what failed, in pack order.
fn read_packs(repo: &Repository, packs: &[PackToRead]) -> Vec<String> {
    let found: std::sync::Mutex<Vec<(usize, Vec<String>)>> = Default::default();
    let numbered: Vec<(usize, &PackToRead)> = packs.iter().enumerate().collect();
    let read = repo.on_pack_threads(
        &numbered,
        |(_, (pack, _))| pack,
        |(i, (pack, blobs)), buf: &mut Vec<u8>| {
            let mut errors = Vec::new();
            let read = repo.read_pack_blobs(
                pack,
                blobs,
                |(id, loc)| (id, loc),
                buf,
                |_, blob| {
                    if let Err(e) = blob {
                        errors.push(e.to_string());
                    }
                    Ok::<_, RepoError>(())
                },
            );
            if let Err(e) = read {
                errors.push(format!("pack {}: {e}", hex::encode(pack)));
            }
            if !errors.is_empty() {
                found.lock().expect("errors").push((*i, errors));
            }
            Ok(())
        },
    );
    debug_assert!(read.is_ok(), "reading packs for check never stops early");
    let mut found = found.into_inner().expect("errors");
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().flat_map(|(_, e)| e).collect()
}

/// After a writer died (a lock was stale when ours was taken): the packs it wrote that no
/// index file lists yet (a snapshot killed midway) are indexed now, so the next snapshot reuses
/// their blobs instead of reading and writing them again. A pack is taken in only whole and
/// intact (its name is the hash of its content), and only for blobs the index does not have
/// (an existing entry is never redirected). The stale locks of holders provably gone from this
/// host are removed; one stale only by its age (another host's, perhaps with a wrong clock) is
/// left for `repo unlock`. Returns how many packs were taken in. Costs nothing when no lock was
/// stale.
pub fn recover_after_crash(repo: &mut Repository, stale: &[super::lock::StaleLock]) -> Result<usize> {
    if stale.is_empty() {
        return Ok(0);
    }
    repo.refresh_index()?;
    let indexed: HashSet<[u8; 32]> = repo.index.values().map(|l| l.pack).collect();
    let mut adopted: Vec<super::IndexPack> = Vec::new();
    let mut known: HashSet<super::BlobId> = HashSet::new();
    for name in repo.backend().list(Kind::Pack)? {
        let Ok(id) = <[u8; 32]>::try_from(hex::decode(&name).unwrap_or_default()) else { continue };
        if indexed.contains(&id) {
            continue;
        }
        let intact = repo.backend().read(Kind::Pack, &name).is_ok_and(|data| blake3::hash(&data).as_bytes() == &id);
        let blobs = match (intact, intact.then(|| pack_header(repo, &name))) {
            (true, Some(Ok(blobs))) => blobs,
            // Not whole, not a pack, or damaged: left for prune to remove.
            _ => {
                tracing::warn!(pack = name.as_str(), "a pack no index lists is not intact; left");
                continue;
            }
        };
        let blobs: Vec<PackEntry> =
            blobs.into_iter().filter(|b| !repo.index.contains_key(&b.id) && known.insert(b.id)).collect();
        if !blobs.is_empty() {
            adopted.push(super::IndexPack { id: name, blobs });
        }
    }
    let n = adopted.len();
    // Written here, not through the snapshot's writer (a failure must not break it), in
    // index files of the usual size.
    for batch in adopted.chunks(super::writer::INDEX_PACKS) {
        repo.held_locks().check()?;
        let sealed =
            repo.key().seal(&serde_json::to_vec(&super::IndexFile { packs: batch.to_vec() }).expect("serialises"));
        let name = hex::encode(blake3::hash(&sealed).as_bytes());
        repo.backend().write(Kind::Index, &name, &sealed)?;
    }
    if n > 0 {
        repo.refresh_index()?;
        tracing::info!(packs = n, "took in the packs a writer that died had left without an index");
    }
    for lock in stale.iter().filter(|l| l.holder_gone) {
        let _ = repo.backend().delete(Kind::Lock, &lock.name);
    }
    Ok(n)
}

fn pack_header(repo: &Repository, name: &str) -> Result<Vec<PackEntry>> {
    let corrupt = |what: String| RepoError::Corrupt { location: repo.location(), what: format!("pack {name}: {what}") };
    let size = repo.backend().stat(Kind::Pack, name)?.ok_or_else(|| corrupt("missing".into()))?;
    if size < 4 {
        return Err(corrupt("too short".into()));
    }
    let len_bytes = repo.backend().read_range(Kind::Pack, name, size - 4, 4)?;
    let hl = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as u64;
    if hl + 4 > size {
        return Err(corrupt("header length beyond the file".into()));
    }
    let sealed = repo.backend().read_range(Kind::Pack, name, size - 4 - hl, hl)?;
    let plain = repo.key().open(&sealed).map_err(|_| corrupt("header does not authenticate".into()))?;
    let header: PackHeader = serde_json::from_slice(&plain).map_err(|e| corrupt(format!("header: {e}")))?;
    Ok(header.blobs)
}

#[derive(Debug, Default, Serialize)]
pub struct PruneStats {
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// Deletes every blob no snapshot references. Holds the exclusive lock: no snapshot can be
/// written meanwhile. Crash-safe at every step: new packs and a complete new index are written
/// before anything is deleted; leftovers of an interrupted prune are unreferenced packs, which
/// the next prune removes.
pub fn prune(repo: &mut Repository, dry_run: bool) -> Result<PruneStats> {
    let lock = Lock::acquire(repo, true)?;
    let result = prune_locked(repo, dry_run);
    // Dropped, not released: a lock that cannot be removed turns stale on its own, and must not
    // hide what the prune did or why it failed.
    drop(lock);
    result
}

fn prune_locked(repo: &mut Repository, dry_run: bool) -> Result<PruneStats> {
    let mut used = HashSet::new();
    for (_, s) in snapshot::list(repo)? {
        used.extend(reachable(repo, roots(&s))?);
    }
    let mut stats = PruneStats::default();
    let packs = repo.packs();
    let mut delete_packs = Vec::new();
    let mut repack = Vec::new();
    for (pack, blobs) in &packs {
        let live = blobs.iter().filter(|(id, _)| used.contains(id)).count();
        stats.blobs_removed += blobs.len() - live;
        if live == blobs.len() {
            continue;
        }
        if live > 0 {
            repack.extend(blobs.iter().filter(|(id, _)| used.contains(id)).map(|(id, loc)| (*id, loc.kind)));
            stats.packs_repacked += 1;
        }
        delete_packs.push(*pack);
    }
    // Packs no index mentions (an interrupted snapshot or prune) go too.
    let indexed: HashSet<String> = packs.keys().map(hex::encode).collect();
    let orphans: Vec<String> = repo.backend().list(Kind::Pack)?.into_iter().filter(|n| !indexed.contains(n)).collect();
    for name in &delete_packs.iter().map(hex::encode).chain(orphans.iter().cloned()).collect::<Vec<_>>() {
        stats.bytes_freed += repo.backend().stat(Kind::Pack, name)?.unwrap_or(0);
    }
    stats.packs_deleted = delete_packs.len() + orphans.len();
    if dry_run {
        return Ok(stats);
    }
    let old_indexes = repo.backend().list(Kind::Index)?;
    // 1. Live blobs of partly used packs move to new packs.
    let mut moved = Vec::new();
    for (id, kind) in &repack {
        moved.push((*id, *kind, repo.load_blob(id)?));
    }
    let doomed: HashSet<[u8; 32]> = delete_packs.iter().copied().collect();
    repo.index.retain(|id, loc| used.contains(id) && !doomed.contains(&loc.pack));
    for (_, kind, data) in moved {
        repo.save_blob(kind, &data)?;
    }
    repo.flush_pack()?;
    repo.discard_unindexed();
    // 2. One complete index of what remains, then the old index files go.
    let mut by_pack: BTreeMap<[u8; 32], Vec<PackEntry>> = BTreeMap::new();
    for (id, loc) in &repo.index {
        by_pack.entry(loc.pack).or_default().push(PackEntry {
            id: *id,
            kind: loc.kind,
            offset: loc.offset,
            length: loc.length,
            raw: loc.raw,
        });
    }
    let file =
        IndexFile { packs: by_pack.into_iter().map(|(p, blobs)| IndexPack { id: hex::encode(p), blobs }).collect() };
    let sealed = repo.key().seal(&serde_json::to_vec(&file).expect("serialises"));
    let new_name = hex::encode(blake3::hash(&sealed).as_bytes());
    // Every step that deletes or replaces asks first whether the lock still holds.
    repo.check_locks()?;
    if !old_indexes.contains(&new_name) {
        repo.backend().write(Kind::Index, &new_name, &sealed)?;
    }
    for name in old_indexes.iter().filter(|n| **n != new_name) {
        repo.check_locks()?;
        repo.backend().delete(Kind::Index, name)?;
    }
    // 3. Finally the packs nothing references any more.
    for pack in delete_packs {
        repo.check_locks()?;
        repo.backend().delete(Kind::Pack, &hex::encode(pack))?;
    }
    for name in orphans {
        repo.check_locks()?;
        repo.backend().delete(Kind::Pack, &name)?;
    }
    Ok(stats)
}

/// Copies a snapshot into `dst`, re-keying every blob (the repositories have different ID
/// keys); only blobs `dst` lacks are stored. `map` caches source → destination IDs.
pub fn copy_snapshot(
    src: &Repository,
    dst: &mut Repository,
    snap: &Snapshot,
    map: &mut HashMap<BlobId, BlobId>,
) -> Result<Snapshot> {
    let mut copy = snap.clone();
    copy.image.tree = copy_tree(src, dst, &snap.image.tree, map)?;
    copy.container_layer = copy_tree(src, dst, &snap.container_layer, map)?;
    for v in copy.volumes.iter_mut() {
        v.tree = copy_tree(src, dst, &v.tree, map)?;
    }
    copy.parent = None;
    dst.flush()?;
    Ok(copy)
}

fn copy_tree(src: &Repository, dst: &mut Repository, id: &BlobId, map: &mut HashMap<BlobId, BlobId>) -> Result<BlobId> {
    if let Some(d) = map.get(id) {
        return Ok(*d);
    }
    let mut tree: Tree = load_tree(src, id)?;
    for node in tree.nodes.iter_mut() {
        let mut content = Vec::with_capacity(node.content.len());
        for c in &node.content {
            let d = match map.get(c) {
                Some(d) => *d,
                None => {
                    let data = src.load_blob(c)?;
                    let (d, _) = dst.save_blob(BlobType::Data, &data)?;
                    map.insert(*c, d);
                    d
                }
            };
            content.push(d);
        }
        node.content = content;
        if let Some(s) = node.subtree {
            node.subtree = Some(copy_tree(src, dst, &s, map)?);
        }
    }
    let (d, _) = dst.save_blob(BlobType::Tree, &serde_json::to_vec(&tree).expect("serialises"))?;
    map.insert(*id, d);
    Ok(d)
}

/// One line of a diff: `+` added, `-` removed, `M` changed.
pub fn diff(repo: &Repository, a: &Snapshot, b: &Snapshot) -> Result<Vec<(char, String)>> {
    let mut out = Vec::new();
    diff_trees(repo, Some(&a.container_layer), Some(&b.container_layer), "", &mut out)?;
    let names: std::collections::BTreeSet<&String> = a.volumes.iter().chain(&b.volumes).map(|v| &v.name).collect();
    for name in names {
        let ta = a.volumes.iter().find(|v| &v.name == name).map(|v| v.tree);
        let tb = b.volumes.iter().find(|v| &v.name == name).map(|v| v.tree);
        diff_trees(repo, ta.as_ref(), tb.as_ref(), &format!("volume {name}:"), &mut out)?;
    }
    Ok(out)
}

fn diff_trees(
    repo: &Repository,
    a: Option<&BlobId>,
    b: Option<&BlobId>,
    prefix: &str,
    out: &mut Vec<(char, String)>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let ta = a.map(|id| load_tree(repo, id)).transpose()?.unwrap_or_default();
    let tb = b.map(|id| load_tree(repo, id)).transpose()?.unwrap_or_default();
    let ma: BTreeMap<Vec<u8>, &super::tree::Node> = ta.nodes.iter().map(|n| (n.name_bytes(), n)).collect();
    let mb: BTreeMap<Vec<u8>, &super::tree::Node> = tb.nodes.iter().map(|n| (n.name_bytes(), n)).collect();
    let names: std::collections::BTreeSet<&Vec<u8>> = ma.keys().chain(mb.keys()).collect();
    for name in names {
        let path = format!("{prefix}/{}", String::from_utf8_lossy(name));
        match (ma.get(name), mb.get(name)) {
            (Some(_), None) => out.push(('-', path)),
            (None, Some(_)) => out.push(('+', path)),
            (Some(x), Some(y)) => {
                let both_dirs = x.kind == NodeKind::Dir && y.kind == NodeKind::Dir;
                if !both_dirs
                    && (x.content != y.content
                        || x.kind != y.kind
                        || x.mode != y.mode
                        || x.target != y.target
                        || x.uid != y.uid)
                {
                    out.push(('M', path.clone()));
                }
                if x.kind == NodeKind::Dir || y.kind == NodeKind::Dir {
                    diff_trees(repo, x.subtree.as_ref(), y.subtree.as_ref(), &path, out)?;
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::choose_share;
    use crate::backend::Kind;
    use crate::backend::local::Local;
    use crate::repo::lock::{Lock, LockInfo};
    use crate::repo::{BlobType, Repository};

    /// A lock as a process that is gone now (on this host and boot) left it, or as another
    /// host did long ago.
    fn lock_of(repo: &Repository, here: bool) {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let info = LockInfo {
            host: if here { crate::sys::hostname() } else { "elsewhere".into() },
            pid,
            time: if here { crate::sys::now_rfc3339() } else { "2020-01-01T00:00:00Z".into() },
            exclusive: false,
            process_start: None,
            boot_id: if here { crate::sys::boot_id() } else { Some("another-boot".into()) },
            stale_after_s: Some(1800),
        };
        repo.save_lock(&info).unwrap();
    }

    #[test]
    fn what_a_dead_writer_left_is_taken_in_intact_or_not_at_all() {
        crate::repo::tests::fast_kdf();
        let dir = tempfile::tempdir().unwrap();
        drop(Repository::init(Box::new(Local::new(dir.path())), b"pw").unwrap());
        // A writer that dies after writing two packs and no index file.
        let mut dead = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let (kept, _) = dead.save_blob(BlobType::Data, &vec![1u8; 100_000]).unwrap();
        dead.flush_pack().unwrap();
        let (damaged, _) = dead.save_blob(BlobType::Data, &vec![2u8; 100_000]).unwrap();
        dead.flush_pack().unwrap();
        dead.discard_unindexed();
        drop(dead);
        let packs =
            Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap().backend().list(Kind::Pack).unwrap();
        assert_eq!(packs.len(), 2);
        // Damage the second pack (its name is no longer its content's hash).
        let mut r = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let second =
            packs.iter().find(|p| super::pack_header(&r, p).unwrap().iter().any(|b| b.id == damaged)).unwrap().clone();
        let path = dir.path().join("data").join(&second[..2]).join(&second);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        // Nobody died yet as far as the lock says: nothing is done.
        let lock = Lock::acquire(&mut r, false).unwrap();
        assert_eq!(super::recover_after_crash(&mut r, &lock.stale).unwrap(), 0);
        assert!(!r.has_blob(&kept));
        drop(lock);
        // A dead writer's lock on this host, and another host's very old one.
        lock_of(&r, true);
        lock_of(&r, false);
        let lock = Lock::acquire(&mut r, false).unwrap();
        assert_eq!(lock.stale.len(), 2);
        assert_eq!(super::recover_after_crash(&mut r, &lock.stale).unwrap(), 1, "only the intact pack");
        assert!(r.has_blob(&kept));
        assert!(!r.has_blob(&damaged), "a damaged pack was taken in");
        assert_eq!(r.load_blob(&kept).unwrap(), vec![1u8; 100_000]);
        // The dead writer's lock is gone; the other host's stays for `repo unlock`.
        let left: Vec<LockInfo> = r
            .backend()
            .list(Kind::Lock)
            .unwrap()
            .iter()
            .filter_map(|n| r.load_object::<LockInfo>(Kind::Lock, n).ok())
            .filter(|l| l.pid != std::process::id() as i32)
            .collect();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].host, "elsewhere");
        drop(lock);
    }

    #[test]
    fn a_share_reads_that_many_packs_and_at_least_one() {
        let four: Vec<u32> = (0..4).collect();
        assert_eq!(choose_share(four.clone(), 0.10).len(), 1, "10% of four packs is one, not none");
        assert_eq!(choose_share(four.clone(), 0.50).len(), 2);
        assert_eq!(choose_share(four.clone(), 1.0), four);
        assert!(choose_share(four.clone(), 0.0).is_empty());
        assert!(choose_share(Vec::<u32>::new(), 0.5).is_empty());
        let hundred: Vec<u32> = (0..100).collect();
        let some = choose_share(hundred, 0.25);
        assert_eq!(some.len(), 25);
        assert!(some.windows(2).all(|w| w[0] < w[1]), "kept in order, no repeats: {some:?}");
        // Random: over many draws of one pack in four, every pack is read some time.
        let mut picked = [0u32; 4];
        for _ in 0..400 {
            picked[choose_share(four.clone(), 0.25)[0] as usize] += 1;
        }
        assert!(picked.iter().all(|&n| n > 40), "{picked:?}");
    }
}
