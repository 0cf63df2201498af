//! A snapshot as its service saw it: one directory tree with the container's own layer at `/`
//! and each volume at its mount path, so `ls`, `find`, `dump`, `diff` and partial restores take
//! the paths users know (`/var/www/index.php`) and never how volumes are stored.
//!
//! The view holds what the snapshot stored: the container layer (what the container changed
//! relative to its image: whiteouts hide what it deleted) and the volumes. Files the container
//! never changed belong to its image and are not part of it; directories that only lead to a
//! volume's mount path (say `/var/lib` above `/var/lib/mysql`) are shown as plain directories.
//!
//! Listing and finding read tree blobs only, through a bounded cache; file data is read when a
//! file's content is asked for (`dump`, `diff`, restores), chunk by chunk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::repo::snapshot::{RootMeta, Snapshot};
use crate::repo::tree::{Node, NodeKind, Tree, load_tree};
use crate::repo::{BlobId, RepoError, Repository, Result};

/// Trees kept in memory at most; listing a large snapshot never holds more.
const TREE_CACHE: usize = 4096;

/// Directories nested deeper than this are damage (a path of 4096 bytes holds at most 2048).
pub const MAX_DEPTH: usize = 2048;

/// Where an entry of the view is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Origin {
    /// The container's own layer.
    Layer,
    /// A named volume (its name).
    Volume(String),
    /// A directory that only leads to a volume's mount path (it belongs to the image).
    Path,
}

/// One entry of the view: its path there, its metadata, and where it is stored.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: PathBuf,
    pub node: Node,
    pub origin: Origin,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.node.kind == NodeKind::Dir
    }
}

/// A volume (or the layer) and where it sits.
#[derive(Clone, Debug)]
struct Mount {
    /// The mount path's components (none for the layer).
    at: Vec<Vec<u8>>,
    tree: BlobId,
    root: Option<RootMeta>,
    origin: Origin,
}

/// The view of one snapshot.
pub struct View<'r> {
    repo: &'r Repository,
    /// The layer first, then the volumes.
    mounts: Vec<Mount>,
    /// The snapshot's time (the mtime shown for a volume's root and the paths leading to it).
    time_ns: i64,
    trees: TreeCache,
}

/// Trees read, kept for the next look (shared by the views of one mount); at most
/// [`TREE_CACHE`] of them.
pub type TreeCache = Arc<Mutex<HashMap<BlobId, Arc<Tree>>>>;

/// A path made absolute, as components, with `.` dropped and `..` taken by name (the root's
/// parent is the root).
pub fn components(path: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn is_whiteout(n: &Node) -> bool {
    n.kind == NodeKind::Char && n.rdev == 0
}

/// A directory node made for the view (a volume's root, or a path leading to one).
fn dir_node(name: &[u8], meta: Option<RootMeta>, subtree: Option<BlobId>, time_ns: i64) -> Node {
    let m = meta.unwrap_or(RootMeta { uid: 0, gid: 0, mode: 0o755 });
    Node {
        name: hex::encode(name),
        kind: NodeKind::Dir,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        mtime_ns: time_ns,
        ctime_ns: time_ns,
        inode: 0,
        links: 1,
        size: 0,
        content: Vec::new(),
        subtree,
        target: None,
        rdev: 0,
        xattrs: Vec::new(),
    }
}

impl<'r> View<'r> {
    pub fn new(repo: &'r Repository, snapshot: &Snapshot) -> View<'r> {
        View::sharing(repo, snapshot, TreeCache::default())
    }

    /// A view whose trees are kept in `trees`, with other views'.
    pub fn sharing(repo: &'r Repository, snapshot: &Snapshot, trees: TreeCache) -> View<'r> {
        let mut mounts =
            vec![Mount { at: Vec::new(), tree: snapshot.container_layer, root: None, origin: Origin::Layer }];
        for v in &snapshot.volumes {
            mounts.push(Mount {
                at: components(Path::new(&v.target)),
                tree: v.tree,
                root: v.root,
                origin: Origin::Volume(v.name.clone()),
            });
        }
        let time_ns = chrono::DateTime::parse_from_rfc3339(&snapshot.time)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or(0);
        View { repo, mounts, time_ns, trees }
    }

    /// The view of one of the snapshot's volumes alone (`volume` indexes its volumes), its
    /// root the volume's own directory: what an instant restore serves as the volume's lower
    /// layer. No whiteouts are hidden (a volume has none; a device node is a device node).
    pub fn volume(repo: &'r Repository, snapshot: &Snapshot, volume: usize, trees: TreeCache) -> Option<View<'r>> {
        let v = snapshot.volumes.get(volume)?;
        let mut view = View::sharing(repo, snapshot, trees);
        view.mounts =
            vec![Mount { at: Vec::new(), tree: v.tree, root: v.root, origin: Origin::Volume(v.name.clone()) }];
        Some(view)
    }

    pub fn repo(&self) -> &'r Repository {
        self.repo
    }

    fn tree(&self, id: &BlobId) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(t.clone());
        }
        let t = Arc::new(load_tree(self.repo, id)?);
        let mut cache = self.trees.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= TREE_CACHE {
            cache.clear();
        }
        cache.insert(*id, t.clone());
        Ok(t)
    }

    /// The view's root directory.
    pub fn root(&self) -> Entry {
        let top = &self.mounts[0];
        Entry {
            path: PathBuf::from("/"),
            node: dir_node(b"", top.root, Some(top.tree), self.time_ns),
            origin: top.origin.clone(),
        }
    }

    /// Whether a volume is mounted at or below `at` (so the trees there are not the whole story).
    pub fn has_mount_below(&self, at: &Path) -> bool {
        let at = components(at);
        self.mounts[1..].iter().any(|m| m.at.len() > at.len() && m.at.starts_with(&at))
    }

    /// The entries of directory `dir`, sorted by name: its tree's (less the layer's whiteouts),
    /// with the volumes mounted in it, and the paths leading to deeper ones.
    pub fn children(&self, dir: &Entry) -> Result<Vec<Entry>> {
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let here = components(&dir.path);
        let mut out: Vec<Entry> = Vec::new();
        if let Some(sub) = &dir.node.subtree {
            let tree = self.tree(sub)?;
            for n in &tree.nodes {
                if dir.origin == Origin::Layer && is_whiteout(n) {
                    continue;
                }
                let name = n.name_bytes();
                if !crate::repo::tree::valid_name(&name) {
                    return Err(RepoError::Corrupt {
                        location: self.repo.location(),
                        what: format!("{}: an entry with an invalid name", dir.path.display()),
                    });
                }
                out.push(Entry {
                    path: dir.path.join(OsStr::from_bytes(&name)),
                    node: n.clone(),
                    origin: dir.origin.clone(),
                });
            }
        }
        for m in &self.mounts[1..] {
            if m.at.len() <= here.len() || !m.at.starts_with(&here) {
                continue;
            }
            let name = &m.at[here.len()];
            let path = dir.path.join(OsStr::from_bytes(name));
            let existing = out.iter().position(|e| e.node.name_bytes() == *name);
            if m.at.len() == here.len() + 1 {
                // The volume itself: it hides whatever the layer has there.
                let entry =
                    Entry { path, node: dir_node(name, m.root, Some(m.tree), self.time_ns), origin: m.origin.clone() };
                match existing {
                    Some(i) => out[i] = entry,
                    None => out.push(entry),
                }
            } else if existing.is_none_or(|i| !out[i].is_dir()) {
                // A path to a deeper volume that the layer does not hold (or holds as a file,
                // which the mount hides): a plain directory.
                let entry = Entry { path, node: dir_node(name, None, None, self.time_ns), origin: Origin::Path };
                match existing {
                    Some(i) => out[i] = entry,
                    None => out.push(entry),
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The entry `name` of directory `dir`, if it has one: as [`View::children`] finds it, but
    /// without making every other entry (a lookup in a large directory stays cheap).
    pub fn child(&self, dir: &Entry, name: &[u8]) -> Result<Option<Entry>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        // A volume at or below the name changes what is there: the full listing decides.
        let mut here = components(&dir.path);
        here.push(name.to_vec());
        if self.mounts[1..].iter().any(|m| m.at.starts_with(&here)) {
            return Ok(self.children(dir)?.into_iter().find(|e| e.node.name_bytes() == name));
        }
        let Some(sub) = &dir.node.subtree else { return Ok(None) };
        let tree = self.tree(sub)?;
        let wanted = hex::encode(name);
        let Some(n) = tree.nodes.iter().find(|n| n.name == wanted) else { return Ok(None) };
        if !crate::repo::tree::valid_name(name) {
            return Err(RepoError::Corrupt {
                location: self.repo.location(),
                what: format!("{}: an entry with an invalid name", dir.path.display()),
            });
        }
        if dir.origin == Origin::Layer && is_whiteout(n) {
            return Ok(None);
        }
        Ok(Some(Entry { path: dir.path.join(OsStr::from_bytes(name)), node: n.clone(), origin: dir.origin.clone() }))
    }

    /// The entry at `path`, if the snapshot holds it. A symbolic link on the way is not
    /// followed (the error says where it points).
    pub fn lookup(&self, path: &Path) -> Result<Option<Entry>> {
        let mut cur = self.root();
        for c in components(path) {
            match cur.node.kind {
                NodeKind::Dir => {}
                NodeKind::Symlink => {
                    let target = cur.node.target.as_deref().and_then(|t| hex::decode(t).ok()).unwrap_or_default();
                    return Err(RepoError::NotFound {
                        location: self.repo.location(),
                        what: format!(
                            "{} is a symbolic link to {}: give the path it leads to",
                            cur.path.display(),
                            String::from_utf8_lossy(&target)
                        ),
                    });
                }
                _ => return Ok(None),
            }
            let Some(next) = self.child(&cur, &c)? else {
                return Ok(None);
            };
            cur = next;
        }
        Ok(Some(cur))
    }

    /// Calls `each` for `top` and everything below it, parents before their entries, in name
    /// order; `each` returns whether to go into a directory.
    pub fn walk<E: From<RepoError>>(
        &self,
        top: &Entry,
        each: &mut dyn FnMut(&Entry) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        self.walk_from(top, 0, each)
    }

    fn walk_from<E: From<RepoError>>(
        &self,
        top: &Entry,
        depth: usize,
        each: &mut dyn FnMut(&Entry) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        if !each(top)? || !top.is_dir() {
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            return Err(self.too_deep(&top.path).into());
        }
        for child in self.children(top)? {
            self.walk_from(&child, depth + 1, each)?;
        }
        Ok(())
    }

    /// The error for a tree nested deeper than any filesystem holds (a hand-made one).
    pub fn too_deep(&self, at: &Path) -> RepoError {
        RepoError::Corrupt {
            location: self.repo.location(),
            what: format!("{}: directories nested more than {MAX_DEPTH} deep", at.display()),
        }
    }

    /// The content of a regular file, read chunk by chunk.
    pub fn open(&self, entry: &Entry) -> FileReader<'r> {
        FileReader {
            repo: self.repo,
            chunks: entry.node.content.clone(),
            next: 0,
            buf: Vec::new(),
            pos: 0,
            size: entry.node.size,
            read: 0,
            path: entry.path.clone(),
        }
    }

    /// Writes `top` (a directory with everything below it, or a single entry) as a tar stream
    /// named from `top`'s own name (the view's root: its content): numeric owners, modes,
    /// nanosecond mtimes and extended attributes as pax records, hard links as links.
    pub fn write_tar<W: Write>(&self, top: &Entry, out: W) -> anyhow::Result<TarStats> {
        match top.path.parent() {
            Some(base) => self.write_selection(top, base, true, None, &|_| Pick::All, out),
            None => self.write_selection(top, Path::new("/"), false, None, &|_| Pick::All, out),
        }
    }

    /// Calls `each` with what `pick` selects of `top` and below (`top` itself only with
    /// `with_top`), parents first, and how it was picked. With `only`, entries stored elsewhere
    /// (a volume within the layer) are left out with everything below them.
    pub fn visit_selection<E: From<RepoError>>(
        &self,
        top: &Entry,
        with_top: bool,
        only: Option<&Origin>,
        pick: &dyn Fn(&Entry) -> Pick,
        each: &mut dyn FnMut(&Entry, Pick) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.walk(top, &mut |e| -> std::result::Result<bool, E> {
            let is_top = e.path == top.path;
            if !is_top && only.is_some_and(|o| *o != e.origin) {
                return Ok(false);
            }
            if is_top && !with_top {
                return Ok(true);
            }
            let picked = pick(e);
            if picked == Pick::Skip {
                return Ok(false);
            }
            each(e, picked)?;
            Ok(true)
        })
    }

    /// Whether anything below `top` is selected for itself, not only as a directory on the way
    /// to something stored elsewhere (reading trees only): a volume-only restore makes no
    /// stage in the layer.
    pub fn selects_any(&self, top: &Entry, only: Option<&Origin>, pick: &dyn Fn(&Entry) -> Pick) -> Result<bool> {
        /// Ends the walk at the first entry selected for itself.
        enum Stop {
            Found,
            Failed(RepoError),
        }
        impl From<RepoError> for Stop {
            fn from(e: RepoError) -> Stop {
                Stop::Failed(e)
            }
        }
        let found = self.visit_selection(top, false, only, pick, &mut |_, picked| {
            if picked == Pick::All { Err(Stop::Found) } else { Ok(()) }
        });
        match found {
            Ok(()) => Ok(false),
            Err(Stop::Found) => Ok(true),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// Writes what `pick` selects of `top` and below as a tar stream, named relative to
    /// `base` (see [`View::visit_selection`]).
    pub fn write_selection<W: Write>(
        &self,
        top: &Entry,
        base: &Path,
        with_top: bool,
        only: Option<&Origin>,
        pick: &dyn Fn(&Entry) -> Pick,
        out: W,
    ) -> anyhow::Result<TarStats> {
        let mut tar = TarWriter { builder: tar::Builder::new(out), links: HashMap::new(), stats: TarStats::default() };
        tar.builder.follow_symlinks(false);
        self.visit_selection(top, with_top, only, pick, &mut |e, _| -> anyhow::Result<()> {
            let rel = e.path.strip_prefix(base).unwrap_or(&e.path);
            tar.entry(self, e, rel)
        })?;
        tar.builder.finish()?;
        Ok(tar.stats)
    }
}

/// What a selection takes of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The entry (and, unless they are excluded, what is below it).
    All,
    /// A directory on the way to what is selected: itself, and what is selected below it.
    Toward,
    /// Neither it nor anything below it.
    Skip,
}

/// Which paths of the view `--include` and `--exclude` select: an entry is selected when an
/// include pattern matches it or a directory above it, and none of the excludes does; the
/// directories leading to a selected entry come with it. No include: everything.
#[derive(Clone, Debug, Default)]
pub struct PathFilter {
    include: Vec<Vec<String>>,
    exclude: Vec<Vec<String>>,
}

impl PathFilter {
    pub fn new(include: &[String], exclude: &[String]) -> PathFilter {
        // `..` taken by name, as in addresses; the root (`/`) stands for everything.
        let compile = |v: &[String]| {
            v.iter()
                .map(|p| {
                    let segs: Vec<String> =
                        components(Path::new(p)).iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
                    if segs.is_empty() { vec!["**".to_string()] } else { segs }
                })
                .collect()
        };
        PathFilter { include: compile(include), exclude: compile(exclude) }
    }

    pub fn pick(&self, e: &Entry) -> Pick {
        let names: Vec<String> = components(&e.path).iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        let segs: Vec<&str> = names.iter().map(String::as_str).collect();
        let matches = |pat: &Vec<String>| (1..=segs.len()).any(|k| crate::glob::path_match(pat, &segs[..k]));
        if self.exclude.iter().any(matches) {
            return Pick::Skip;
        }
        if self.include.is_empty() || self.include.iter().any(matches) {
            return Pick::All;
        }
        if e.is_dir() && self.include.iter().any(|pat| crate::glob::leads_to(pat, &segs)) {
            return Pick::Toward;
        }
        Pick::Skip
    }
}

/// A time in nanoseconds as a pax record writes it: a signed decimal number of seconds
/// (`-0.500000000` is half a second before the epoch).
fn pax_time(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

/// A node's extended attributes as the file has them: overlayfs's own markers (which the
/// container layer's directories carry) say nothing about the file and are left out.
pub fn file_xattrs(n: &Node) -> impl Iterator<Item = (&str, Vec<u8>)> {
    n.xattrs
        .iter()
        .filter(|(k, _)| !crate::image::layer::is_overlay_xattr(k))
        .filter_map(|(k, v)| Some((k.as_str(), hex::decode(v).ok()?)))
}

/// An I/O error from reading a file's content: a repository error it carries (damage) becomes
/// that error again, with its exit code; any other stays what it is (a closed pipe, a full
/// disk).
pub fn content_error(e: io::Error) -> anyhow::Error {
    if e.get_ref().is_some_and(|i| i.is::<RepoError>()) {
        if let Some(Ok(r)) = e.into_inner().map(|i| i.downcast::<RepoError>()) {
            return anyhow::Error::new(*r);
        }
        return anyhow::anyhow!("cannot read the file's content");
    }
    anyhow::Error::new(e)
}

/// What a tar stream of the view held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TarStats {
    pub entries: u64,
    pub bytes: u64,
}

struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    /// The first name written of each hard-linked file, by (origin, inode).
    links: HashMap<(Origin, u64), PathBuf>,
    stats: TarStats,
}

impl<W: Write> TarWriter<W> {
    fn entry(&mut self, view: &View<'_>, e: &Entry, rel: &Path) -> anyhow::Result<()> {
        let n = &e.node;
        let mut h = tar::Header::new_gnu();
        h.set_mode(n.mode & 0o7777);
        h.set_uid(n.uid as u64);
        h.set_gid(n.gid as u64);
        h.set_mtime(n.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
        h.set_size(0);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if n.mtime_ns % 1_000_000_000 != 0 {
            pax.push(("mtime".into(), pax_time(n.mtime_ns).into_bytes()));
        }
        for (k, v) in file_xattrs(n) {
            pax.push((format!("SCHILY.xattr.{k}"), v));
        }
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        self.stats.entries += 1;
        match n.kind {
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                let mut name = rel.as_os_str().as_bytes().to_vec();
                name.push(b'/');
                self.builder.append_data(&mut h, OsStr::from_bytes(&name), io::empty())?;
            }
            NodeKind::Symlink => {
                let target = hex::decode(n.target.as_deref().unwrap_or_default())?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.builder.append_link(&mut h, rel, OsStr::from_bytes(&target))?;
            }
            NodeKind::File => {
                if n.links > 1 {
                    let key = (e.origin.clone(), n.inode);
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        return Ok(self.builder.append_link(&mut h, rel, first)?);
                    }
                    self.links.insert(key, rel.to_path_buf());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(n.size);
                let reader = view.open(e);
                self.builder.append_data(&mut h, rel, reader).map_err(content_error)?;
                self.stats.bytes += n.size;
            }
            NodeKind::Char | NodeKind::Block | NodeKind::Fifo => {
                h.set_entry_type(match n.kind {
                    NodeKind::Char => tar::EntryType::Char,
                    NodeKind::Block => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if n.kind != NodeKind::Fifo {
                    h.set_device_major(rustix::fs::major(n.rdev))?;
                    h.set_device_minor(rustix::fs::minor(n.rdev))?;
                }
                self.builder.append_data(&mut h, rel, io::empty())?;
            }
        }
        Ok(())
    }
}

/// A file's content from the repository, chunk by chunk (each verified as it is read).
pub struct FileReader<'r> {
    repo: &'r Repository,
    chunks: Vec<BlobId>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    /// The size the snapshot recorded: content that ends before or runs past it is damage.
    size: u64,
    read: u64,
    path: PathBuf,
}

impl FileReader<'_> {
    fn damaged(&self, what: &str) -> io::Error {
        io::Error::other(RepoError::Corrupt {
            location: self.repo.location(),
            what: format!("{}: content {what} the {} bytes the snapshot recorded", self.path.display(), self.size),
        })
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.chunks.get(self.next) else {
                if self.read != self.size {
                    return Err(self.damaged("ends before"));
                }
                return Ok(0);
            };
            self.buf = self.repo.load_blob(id).map_err(io::Error::other)?;
            self.pos = 0;
            self.next += 1;
            if self.read + self.buf.len() as u64 > self.size {
                return Err(self.damaged("runs past"));
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, dir: bool) -> Entry {
        let mut node = dir_node(b"x", None, None, 0);
        if !dir {
            node.kind = NodeKind::File;
        }
        Entry { path: PathBuf::from(path), node, origin: Origin::Layer }
    }

    #[test]
    fn a_filter_takes_what_is_included_and_the_directories_leading_there() {
        let f = PathFilter::new(&["/var/www/page.html".into()], &[]);
        assert_eq!(f.pick(&entry("/var", true)), Pick::Toward);
        assert_eq!(f.pick(&entry("/var/www", true)), Pick::Toward);
        assert_eq!(f.pick(&entry("/var/www/page.html", false)), Pick::All);
        assert_eq!(f.pick(&entry("/var/www/other.html", false)), Pick::Skip);
        assert_eq!(f.pick(&entry("/etc", true)), Pick::Skip);
        // A directory included takes everything below it, less what is excluded.
        let f = PathFilter::new(&["/var/www".into()], &["/var/www/cache".into(), "*.tmp".into()]);
        assert_eq!(f.pick(&entry("/var/www/a/b.html", false)), Pick::All);
        assert_eq!(f.pick(&entry("/var/www/cache/x", false)), Pick::Skip);
        // The root is everything; `..` is taken by name.
        assert_eq!(PathFilter::new(&["/".into()], &[]).pick(&entry("/etc/hosts", false)), Pick::All);
        let f = PathFilter::new(&["/var/lib/../www/x".into()], &[]);
        assert_eq!(f.pick(&entry("/var/www/x", false)), Pick::All);
        assert_eq!(f.pick(&entry("/var/lib", true)), Pick::Skip);
    }

    #[test]
    fn pax_times_carry_their_sign_on_the_whole_number() {
        assert_eq!(pax_time(1_500_000_000_123_456_789), "1500000000.123456789");
        assert_eq!(pax_time(-500_000_000), "-0.500000000");
        assert_eq!(pax_time(-1_500_000_000), "-1.500000000");
    }
}
