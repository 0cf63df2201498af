//! Opening snapshots: `ls`, `find`, `dump`, `diff SNAPSHOT:PATH SNAPSHOT:PATH` and partial
//! restores (`restore --include`), all addressed as `SNAPSHOT:PATH` with paths as the service
//! saw them (see [`crate::snapshot::view`]).

use std::collections::HashMap;
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{NotFound, UsageError};
use crate::ops::backup::{Access, parse_time};
use crate::repo::snapshot::{self, Snapshot};
use crate::repo::tree::NodeKind;
use crate::repo::{BlobId, Repository};
use crate::runtime::Host;
use crate::snapshot::partial::{PartialOptions, PartialReport};
use crate::snapshot::view::{Entry, View};

/// Which snapshot an address names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// The newest snapshot of any service.
    Latest,
    /// An ID or unique ID prefix (or, if no snapshot has such an ID, a service's newest).
    Id(String),
    /// A service's newest snapshot, or its newest at or before a time.
    Service { name: String, at: Option<String> },
}

/// `SNAPSHOT[:PATH]`: `latest`, an ID prefix, `SERVICE` or `SERVICE@TIME` (RFC 3339 or a
/// date), then a path in the service's view (default `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub which: Which,
    pub path: PathBuf,
}

impl Address {
    pub fn parse(s: &str) -> Result<Address, UsageError> {
        let bad = || UsageError(format!("{s:?}: expected SNAPSHOT[:PATH] (an ID, latest, SERVICE or SERVICE@TIME)"));
        // SERVICE@TIME only when the @ comes before any colon (a path may hold an @).
        let at_sign = s.find('@').filter(|&i| s.find(':').is_none_or(|c| i < c));
        let (which, path) = if let Some((service, rest)) = at_sign.map(|i| (&s[..i], &s[i + 1..])) {
            // A time has colons of its own: the path starts at the first ":/", else after
            // the last colon if what is before it is a whole time.
            let (at, path) = match rest.find(":/") {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None if parse_time(rest).is_ok() || rest == "latest" => (rest, None),
                None => match rest.rsplit_once(':') {
                    Some((at, path)) => (at, Some(path)),
                    None => (rest, None),
                },
            };
            if service.is_empty() || at.is_empty() {
                return Err(bad());
            }
            let at = (at != "latest").then(|| at.to_string());
            (Which::Service { name: service.to_string(), at }, path)
        } else {
            let (snap, path) = match s.split_once(':') {
                Some((snap, path)) => (snap, Some(path)),
                None => (s, None),
            };
            let which = match snap {
                "" => return Err(bad()),
                "latest" => Which::Latest,
                id if id.chars().all(|c| c.is_ascii_hexdigit()) => Which::Id(id.to_string()),
                name => Which::Service { name: name.to_string(), at: None },
            };
            (which, path)
        };
        let path = match path {
            None | Some("") => PathBuf::from("/"),
            Some(p) => Path::new("/").join(p),
        };
        Ok(Address { which, path })
    }

    /// The service it may name (its repository may be configured): a name of hex digits
    /// may be a service's as well as an ID prefix.
    pub fn service(&self) -> Option<&str> {
        match &self.which {
            Which::Service { name, .. } | Which::Id(name) => Some(name),
            Which::Latest => None,
        }
    }
}

/// The snapshot an address names.
pub fn resolve(repo: &Repository, which: &Which) -> anyhow::Result<(String, Snapshot)> {
    match which {
        Which::Latest => Ok(snapshot::find(repo, None, "latest")?),
        Which::Id(id) => {
            // A service of that name wins over an ID prefix (`db`, `cafe` are both).
            let all = snapshot::list(repo)?;
            if all.iter().any(|(_, s)| s.service == *id) {
                Ok(snapshot::find_in(repo, all, Some(id), "latest")?)
            } else {
                Ok(snapshot::find_in(repo, all, None, id)?)
            }
        }
        Which::Service { name, at } => crate::ops::backup::select(repo, name, "latest", at.as_deref()),
    }
}

/// The entry at an address's path, or "not found" (exit code 3) saying what a snapshot holds.
fn entry_at(view: &View<'_>, id: &str, snap: &Snapshot, path: &Path) -> anyhow::Result<Entry> {
    view.lookup(path)?.ok_or_else(|| {
        let short = &id[..12.min(id.len())];
        NotFound(format!(
            "{} is not in snapshot {short} of {} (a snapshot holds what the container changed and its volumes; files of its image {} it never changed are not in it)",
            path.display(),
            snap.service,
            snap.image.reference
        ))
        .into()
    })
}

/// One entry, as `ls` and `find` show it.
#[derive(Clone, Debug, Serialize)]
pub struct EntryRow {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// `ls -l`'s mode string (`drwxr-xr-x`).
    pub permissions: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// RFC 3339, with nanoseconds.
    pub mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// Where it is stored: the layer, a volume, or a path that leads to one.
    pub stored_in: crate::snapshot::view::Origin,
    /// The names of its extended attributes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<String>,
}

fn permissions(kind: NodeKind, mode: u32) -> String {
    let t = match kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Char => 'c',
        NodeKind::Block => 'b',
        NodeKind::Fifo => 'p',
        NodeKind::File => '-',
    };
    let mut s = String::from(t);
    for (i, c) in ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x'].iter().enumerate() {
        let bit = 0o400 >> i;
        let special = match i {
            2 if mode & 0o4000 != 0 => Some('s'),
            5 if mode & 0o2000 != 0 => Some('s'),
            8 if mode & 0o1000 != 0 => Some('t'),
            _ => None,
        };
        s.push(match (mode & bit != 0, special) {
            (true, Some(sp)) => sp,
            (false, Some(sp)) => sp.to_ascii_uppercase(),
            (true, None) => *c,
            (false, None) => '-',
        });
    }
    s
}

fn time_text(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

impl EntryRow {
    pub fn of(e: &Entry) -> EntryRow {
        let n = &e.node;
        EntryRow {
            path: e.path.to_string_lossy().into_owned(),
            kind: n.kind,
            permissions: permissions(n.kind, n.mode),
            mode: n.mode & 0o7777,
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            mtime: time_text(n.mtime_ns),
            link_target: n
                .target
                .as_deref()
                .and_then(|t| hex::decode(t).ok())
                .map(|t| String::from_utf8_lossy(&t).into_owned()),
            stored_in: e.origin.clone(),
            xattrs: crate::snapshot::view::file_xattrs(n).map(|(k, _)| k.to_string()).collect(),
        }
    }
}

/// What `ls` lists: the snapshot, then its entries one by one.
#[derive(Clone, Debug, Serialize)]
pub struct Listed {
    pub snapshot: String,
    pub service: String,
    pub time: String,
}

/// `ls SNAPSHOT[:PATH]`: the entry at the path, or a directory's entries (everything below it
/// with `recursive`), each told to `each` as it is found. Reads tree blobs only.
pub fn ls(
    host: &Host,
    access: Access,
    address: &Address,
    recursive: bool,
    each: &mut dyn FnMut(&EntryRow),
) -> anyhow::Result<Listed> {
    let repo = &access.open(host)?;
    let (id, snap) = resolve(repo, &address.which)?;
    let view = View::new(repo, &snap);
    let top = entry_at(&view, &id, &snap, &address.path)?;
    if !top.is_dir() {
        each(&EntryRow::of(&top));
    } else if recursive {
        view.walk(&top, &mut |e| -> anyhow::Result<bool> {
            if e.path != top.path {
                each(&EntryRow::of(e));
            }
            Ok(true)
        })?;
    } else {
        for e in view.children(&top)? {
            each(&EntryRow::of(&e));
        }
    }
    Ok(Listed { snapshot: id, service: snap.service, time: snap.time })
}

/// What `find` looks for.
#[derive(Clone, Debug, Default)]
pub struct FindRequest {
    /// A wildcard pattern: without `/` it matches names (`*.php`), with one whole paths
    /// (`/var/www/**/config.php`).
    pub pattern: String,
    pub service: Option<String>,
    /// Only snapshots taken at or after this time (RFC 3339 or a date).
    pub since: Option<String>,
    pub ignore_case: bool,
}

/// One hit of `find`.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub snapshot: String,
    pub service: String,
    pub time: String,
    #[serde(flatten)]
    pub entry: EntryRow,
}

/// A matcher for `find`'s pattern.
struct Matcher {
    segments: Vec<String>,
    whole_path: bool,
    ignore_case: bool,
}

impl Matcher {
    fn new(req: &FindRequest) -> Matcher {
        let pattern = if req.ignore_case { req.pattern.to_lowercase() } else { req.pattern.clone() };
        let whole_path = pattern.contains('/');
        Matcher { segments: crate::glob::clean_segments(&pattern), whole_path, ignore_case: req.ignore_case }
    }

    fn matches(&self, e: &Entry) -> bool {
        // A name pattern needs the name only; a path pattern the whole path.
        let text = if self.whole_path {
            e.path.to_string_lossy().into_owned()
        } else {
            String::from_utf8_lossy(&e.node.name_bytes()).into_owned()
        };
        let text = if self.ignore_case { text.to_lowercase() } else { text };
        let segs: Vec<&str> = text.split('/').filter(|s| !s.is_empty()).collect();
        crate::glob::path_match(&self.segments, &segs)
    }
}

/// The hits below `dir` (paths relative to it), remembered by tree: a directory that did not
/// change between snapshots is searched once.
type Hits = std::sync::Arc<Vec<(PathBuf, std::sync::Arc<Entry>)>>;
type Memo = HashMap<(BlobId, String), Hits>;

fn search(view: &View<'_>, dir: &Entry, m: &Matcher, memo: &mut Memo) -> anyhow::Result<Hits> {
    // A name pattern's hits below a tree do not depend on where the tree is; a path
    // pattern's do. Below a volume's mount path the trees are not the whole story.
    // The same tree hides whiteouts in the layer and not in a volume: where it is stored is
    // part of the key.
    let key = match (&dir.node.subtree, view.has_mount_below(&dir.path)) {
        (Some(tree), false) => {
            let layer = dir.origin == crate::snapshot::view::Origin::Layer;
            let place = if m.whole_path { dir.path.to_string_lossy().into_owned() } else { String::new() };
            Some((*tree, format!("{layer}:{place}")))
        }
        _ => None,
    };
    if let Some(hits) = key.as_ref().and_then(|k| memo.get(k)) {
        return Ok(hits.clone());
    }
    if dir.path.components().count() > crate::snapshot::view::MAX_DEPTH {
        return Err(view.too_deep(&dir.path).into());
    }
    let mut hits = Vec::new();
    for child in view.children(dir)? {
        let rel = child.path.strip_prefix(&dir.path).unwrap_or(&child.path).to_path_buf();
        if m.matches(&child) {
            hits.push((rel.clone(), std::sync::Arc::new(child.clone())));
        }
        if child.is_dir() {
            for (below, e) in search(view, &child, m, memo)?.iter() {
                hits.push((rel.join(below), std::sync::Arc::clone(e)));
            }
        }
    }
    let hits = std::sync::Arc::new(hits);
    if let Some(k) = key {
        memo.insert(k, hits.clone());
    }
    Ok(hits)
}

/// `find PATTERN`: every entry that matches, in every snapshot (newest first), each told to
/// `each` as its snapshot is searched. Reads tree blobs only, each unchanged tree once.
pub fn find(host: &Host, access: Access, req: &FindRequest, each: &mut dyn FnMut(&Found)) -> anyhow::Result<usize> {
    if req.pattern.is_empty() {
        return Err(UsageError("find needs a pattern (a name like page.html or *.php, or a path)".into()).into());
    }
    let since = req.since.as_deref().map(crate::ops::backup::parse_start).transpose()?;
    let repo = &access.open(host)?;
    let matcher = Matcher::new(req);
    let mut memo = Memo::new();
    let mut n = 0;
    for (id, snap) in snapshot::list(repo)?.into_iter().rev() {
        if req.service.as_ref().is_some_and(|s| *s != snap.service) {
            continue;
        }
        if let Some(since) = since
            && chrono::DateTime::parse_from_rfc3339(&snap.time).is_ok_and(|t| t < since)
        {
            continue;
        }
        let view = View::new(repo, &snap);
        let root = view.root();
        for (rel, e) in search(&view, &root, &matcher, &mut memo)?.iter() {
            let mut entry = EntryRow::of(e);
            entry.path = Path::new("/").join(rel).to_string_lossy().into_owned();
            each(&Found { snapshot: id.clone(), service: snap.service.clone(), time: snap.time.clone(), entry });
            n += 1;
        }
    }
    Ok(n)
}

/// What `dump` wrote.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Dumped {
    /// A tar stream (a directory, or `--tar`), or a file's bytes.
    pub tar: bool,
    pub entries: u64,
    pub bytes: u64,
}

/// `dump SNAPSHOT:PATH`: a file's content, or (a directory, or `tar`) a tar stream of it.
pub fn dump(host: &Host, access: Access, address: &Address, tar: bool, out: &mut dyn Write) -> anyhow::Result<Dumped> {
    let repo = &access.open(host)?;
    let (id, snap) = resolve(repo, &address.which)?;
    let view = View::new(repo, &snap);
    let top = entry_at(&view, &id, &snap, &address.path)?;
    if tar || top.is_dir() {
        let s = view.write_tar(&top, &mut *out)?;
        return Ok(Dumped { tar: true, entries: s.entries, bytes: s.bytes });
    }
    if top.node.kind != NodeKind::File {
        return Err(UsageError(format!(
            "{} is not a regular file; dump it with --tar to get it as a tar entry",
            address.path.display()
        ))
        .into());
    }
    let copied = std::io::copy(&mut view.open(&top), out).map_err(crate::snapshot::view::content_error)?;
    Ok(Dumped { tar: false, entries: 1, bytes: copied })
}

/// The answer of `diff A:PATH B:PATH`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PathDiff {
    /// Two files with the same content and metadata, or two directories with nothing changed.
    Same,
    /// Two text files: a unified diff.
    Text { unified: String },
    /// Files that are not both text (or too large to compare line by line).
    Binary { first_size: u64, second_size: u64 },
    /// Metadata only (mode, owner, link target, kind).
    Metadata { first: Box<EntryRow>, second: Box<EntryRow> },
    /// Two directories (or a directory and something else): what was added (+), removed (-)
    /// or modified (M) below them.
    Changes { changes: Vec<crate::ops::backup::SnapshotChange> },
}

/// Files larger than this are compared byte for byte, not line by line.
const TEXT_DIFF_LIMIT: u64 = 16 << 20;

fn read_all(view: &View<'_>, e: &Entry) -> anyhow::Result<Vec<u8>> {
    let mut v = Vec::with_capacity(e.node.size as usize);
    view.open(e).read_to_end(&mut v).map_err(crate::snapshot::view::content_error)?;
    Ok(v)
}

fn same_meta(a: &Entry, b: &Entry) -> bool {
    let (x, y) = (&a.node, &b.node);
    x.kind == y.kind && x.mode == y.mode && x.uid == y.uid && x.gid == y.gid && x.target == y.target && x.rdev == y.rdev
}

/// Everything that differs below two directories of two views.
fn diff_dirs(
    va: &View<'_>,
    a: Option<&Entry>,
    vb: &View<'_>,
    b: Option<&Entry>,
    rel: &Path,
    out: &mut Vec<crate::ops::backup::SnapshotChange>,
) -> anyhow::Result<()> {
    if rel.components().count() > crate::snapshot::view::MAX_DEPTH {
        return Err(va.too_deep(rel).into());
    }
    // Unchanged trees with nothing mounted below are equal without a look inside.
    if let (Some(x), Some(y)) = (a, b)
        && x.node.subtree.is_some()
        && x.node.subtree == y.node.subtree
        && !va.has_mount_below(&x.path)
        && !vb.has_mount_below(&y.path)
    {
        return Ok(());
    }
    let ca = match a {
        Some(e) if e.is_dir() => va.children(e)?,
        _ => Vec::new(),
    };
    let cb = match b {
        Some(e) if e.is_dir() => vb.children(e)?,
        _ => Vec::new(),
    };
    let ma: std::collections::BTreeMap<Vec<u8>, &Entry> = ca.iter().map(|e| (e.node.name_bytes(), e)).collect();
    let mb: std::collections::BTreeMap<Vec<u8>, &Entry> = cb.iter().map(|e| (e.node.name_bytes(), e)).collect();
    let names: std::collections::BTreeSet<&Vec<u8>> = ma.keys().chain(mb.keys()).collect();
    for name in names {
        let path = rel.join(std::ffi::OsStr::new(&*String::from_utf8_lossy(name)));
        let change = |kind: &str| crate::ops::backup::SnapshotChange {
            kind: kind.to_string(),
            path: path.to_string_lossy().into_owned(),
        };
        let (x, y) = (ma.get(name).copied(), mb.get(name).copied());
        match (x, y) {
            (Some(_), None) => out.push(change("-")),
            (None, Some(_)) => out.push(change("+")),
            (Some(x), Some(y)) => {
                let both_dirs = x.is_dir() && y.is_dir();
                if !both_dirs && (x.node.content != y.node.content || !same_meta(x, y)) {
                    out.push(change("M"));
                }
            }
            (None, None) => {}
        }
        if x.is_some_and(Entry::is_dir) || y.is_some_and(Entry::is_dir) {
            diff_dirs(va, x.filter(|e| e.is_dir()), vb, y.filter(|e| e.is_dir()), &path, out)?;
        }
    }
    Ok(())
}

/// `diff A:PATH B:PATH`: one file (a unified diff for text) or one directory (what changed
/// below it) in two snapshots.
pub fn diff_paths(host: &Host, access: Access, first: &Address, second: &Address) -> anyhow::Result<PathDiff> {
    let repo = &access.open(host)?;
    let (ida, sa) = resolve(repo, &first.which)?;
    let (idb, sb) = resolve(repo, &second.which)?;
    let (va, vb) = (View::new(repo, &sa), View::new(repo, &sb));
    let a = entry_at(&va, &ida, &sa, &first.path)?;
    let b = entry_at(&vb, &idb, &sb, &second.path)?;
    if a.is_dir() || b.is_dir() {
        let mut changes = Vec::new();
        diff_dirs(&va, Some(&a), &vb, Some(&b), &first.path, &mut changes)?;
        if !(a.is_dir() && b.is_dir()) {
            changes.insert(
                0,
                crate::ops::backup::SnapshotChange {
                    kind: "M".into(),
                    path: format!("{} (one side is not a directory)", first.path.display()),
                },
            );
        }
        return Ok(if changes.is_empty() { PathDiff::Same } else { PathDiff::Changes { changes } });
    }
    if a.node.content == b.node.content && a.node.kind == b.node.kind {
        return Ok(if same_meta(&a, &b) {
            PathDiff::Same
        } else {
            PathDiff::Metadata { first: Box::new(EntryRow::of(&a)), second: Box::new(EntryRow::of(&b)) }
        });
    }
    if a.node.kind != b.node.kind || a.node.kind != NodeKind::File {
        // Not two files: what they are says it (a link's target, a kind).
        return Ok(PathDiff::Metadata { first: Box::new(EntryRow::of(&a)), second: Box::new(EntryRow::of(&b)) });
    }
    if a.node.size > TEXT_DIFF_LIMIT || b.node.size > TEXT_DIFF_LIMIT {
        return Ok(PathDiff::Binary { first_size: a.node.size, second_size: b.node.size });
    }
    let (x, y) = (read_all(&va, &a)?, read_all(&vb, &b)?);
    let (Ok(tx), Ok(ty)) = (std::str::from_utf8(&x), std::str::from_utf8(&y)) else {
        return Ok(PathDiff::Binary { first_size: a.node.size, second_size: b.node.size });
    };
    if tx.contains('\0') || ty.contains('\0') {
        return Ok(PathDiff::Binary { first_size: a.node.size, second_size: b.node.size });
    }
    let name = |id: &str, p: &Path| format!("{}:{}", &id[..12.min(id.len())], p.display());
    let unified = similar::TextDiff::from_lines(tx, ty)
        .unified_diff()
        .context_radius(3)
        .header(&name(&ida, &first.path), &name(&idb, &second.path))
        .to_string();
    Ok(PathDiff::Text { unified })
}

/// `restore SERVICE --include … (--target DIR | --in-place)`.
pub fn restore_paths(
    host: &Host,
    access: Access,
    service: &str,
    selection: &crate::ops::backup::Selection,
    opts: &PartialOptions,
) -> anyhow::Result<PartialReport> {
    let repo = &access.open(host)?;
    let (id, snap) = crate::ops::backup::select(repo, service, &selection.which, selection.at.as_deref())?;
    crate::snapshot::partial::restore_paths(host, repo, &id, &snap, opts)
}

/// What `mount` serves.
#[derive(Clone, Debug)]
pub struct MountRequest {
    pub mountpoint: PathBuf,
    /// Only this service's snapshots.
    pub service: Option<String>,
    /// File data kept in memory at most (bytes).
    pub cache_bytes: usize,
    /// Every user may read it (as the files' owners and modes allow), not only root.
    pub allow_other: bool,
}

/// `mount MOUNTPOINT`: the repository's snapshots as a read-only filesystem, served until it
/// is unmounted or the command is interrupted; `on_mounted` is told how many snapshots it
/// shows once they can be read.
pub fn mount(host: &Host, access: Access, req: &MountRequest, on_mounted: &mut dyn FnMut(usize)) -> anyhow::Result<()> {
    match std::fs::metadata(&req.mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(UsageError(format!("{} is not a directory", req.mountpoint.display())).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NotFound(format!("{}: no such directory", req.mountpoint.display())).into());
        }
        Err(e) => return Err(anyhow::Error::new(e).context(req.mountpoint.display().to_string())),
    }
    let repo = &access.open(host)?;
    let snapshots: Vec<(String, Snapshot)> = snapshot::list(repo)?
        .into_iter()
        .filter(|(_, s)| req.service.as_ref().is_none_or(|n| *n == s.service))
        .collect();
    let n = snapshots.len();
    let fs = crate::snapshot::mount::SnapshotFs::new(repo, snapshots, req.cache_bytes);
    crate::snapshot::mount::serve(fs, &req.mountpoint, req.allow_other, &mut || on_mounted(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_a_snapshot_and_a_path() {
        let a = |s: &str| Address::parse(s).unwrap();
        assert_eq!(a("latest"), Address { which: Which::Latest, path: "/".into() });
        assert_eq!(a("3fa2:/var/www"), Address { which: Which::Id("3fa2".into()), path: "/var/www".into() });
        assert_eq!(a("3fa2:var/www").path, Path::new("/var/www"), "relative paths are from the root");
        assert_eq!(
            a("website:/www/page.html"),
            Address { which: Which::Service { name: "website".into(), at: None }, path: "/www/page.html".into() }
        );
        assert_eq!(
            a("website@2026-12-06T10:00:00Z:/www"),
            Address {
                which: Which::Service { name: "website".into(), at: Some("2026-12-06T10:00:00Z".into()) },
                path: "/www".into()
            }
        );
        assert_eq!(
            a("website@2026-12-06T10:00:00Z"),
            Address {
                which: Which::Service { name: "website".into(), at: Some("2026-12-06T10:00:00Z".into()) },
                path: "/".into()
            }
        );
        assert_eq!(a("db@2026-12-06:var/lib").path, Path::new("/var/lib"));
        assert_eq!(a("db@latest:/x").which, Which::Service { name: "db".into(), at: None });
        // An @ in the path is the path's.
        assert_eq!(
            a("website:/app/node_modules/@types/x"),
            Address {
                which: Which::Service { name: "website".into(), at: None },
                path: "/app/node_modules/@types/x".into()
            }
        );
        assert_eq!(a("3fa2:/a@b").which, Which::Id("3fa2".into()));
        assert!(Address::parse("").is_err());
        assert!(Address::parse(":/x").is_err());
        assert!(Address::parse("@2026-12-06").is_err());
    }

    #[test]
    fn modes_read_as_ls_shows_them() {
        assert_eq!(permissions(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(permissions(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(permissions(NodeKind::File, 0o2640), "-rw-r-S---");
        assert_eq!(permissions(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(permissions(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }
}
