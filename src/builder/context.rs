//! The build context: `.dockerignore`, source patterns, content hashes for the cache, and
//! copying sources into a layer's staging directory (owned by root unless `--chown`, as Docker
//! does).
//!
//! The context is a [`Scope`]: every source is resolved inside it, so no `..`, absolute path or
//! symlink in the context reaches a host file; what is under a directory source is walked by
//! descriptor without following symlinks (they are copied as symlinks).

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context as _, bail};
use rustix::fs::{AtFlags, FileType, OFlags, Stat};
use rustix::io::Errno;

use crate::fsutil::scope::{Scope, fd_path, list_dir, open_beneath, open_dir_beneath, open_regular, stat_beneath};

/// `.dockerignore` rules, in order; the last matching rule decides (`!` re-includes).
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    pub fn none() -> Ignore {
        Ignore { rules: Vec::new() }
    }

    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (negate, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            rules.push((negate, crate::glob::clean_segments(pat)));
        }
        Ignore { rules }
    }

    pub fn load(context: &Scope) -> anyhow::Result<Ignore> {
        match context.read_to_string(Path::new(".dockerignore")) {
            Ok(t) => Ok(Ignore::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::none()),
            Err(e) => Err(e).context("cannot read .dockerignore"),
        }
    }

    /// Whether `rel` (a path under the context) is excluded. A rule matching a parent
    /// directory matches everything under it.
    pub fn excluded(&self, rel: &str) -> bool {
        let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        let mut out = false;
        for (negate, pat) in &self.rules {
            let hit = (1..=segs.len()).any(|n| crate::glob::path_match(pat, &segs[..n]));
            if hit {
                out = !negate;
            }
        }
        out
    }

    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(n, _)| *n)
    }
}

/// The paths (relative to the context) a COPY/ADD source names: itself, or what its
/// wildcards match. Every lookup is resolved inside the context (a symlink pointing out of it
/// leads nowhere), and `..` is refused.
pub fn expand(root: &Scope, pattern: &str, ignore: &Ignore) -> anyhow::Result<Vec<String>> {
    let segs = crate::glob::clean_segments(pattern);
    if segs.iter().any(|s| s == "..") {
        bail!("{pattern}: sources must stay inside the build context");
    }
    if segs.is_empty() {
        return Ok(vec![String::new()]); // the root itself: "."
    }
    let mut found = vec![String::new()];
    for seg in &segs {
        let wild = seg.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for base in &found {
            if wild {
                let Ok(dir) = root.open_dir(Path::new(base)) else { continue };
                let pat: Vec<char> = seg.chars().collect();
                for n in list_dir(dir.as_fd())? {
                    let n = n.to_string_lossy().into_owned();
                    if crate::glob::segment_match(&pat, &n.chars().collect::<Vec<_>>()) {
                        next.push(join(base, &n));
                    }
                }
            } else if root.exists(Path::new(&join(base, seg))) {
                next.push(join(base, seg));
            }
        }
        found = next;
    }
    Ok(found.into_iter().filter(|p| !ignore.excluded(p)).collect())
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() { name.to_string() } else { format!("{base}/{name}") }
}

/// One thing a source holds, met while walking it.
struct Entry<'a> {
    /// Its path relative to the source (empty for the source itself).
    rel: &'a str,
    stat: &'a Stat,
    /// The directory it is in, and its name there (None for the source itself).
    at: Option<(BorrowedFd<'a>, &'a OsStr)>,
    /// The source itself, opened (a directory or a file; None for other kinds).
    opened: Option<&'a OwnedFd>,
}

/// Walks a source of the context: the source itself (a symlink at its end followed inside the
/// context, as Docker does), then, for a directory, everything under it in sorted order, by
/// descriptor and without following any symlink. `prefix` is the source's path in the
/// context, for `.dockerignore` matching.
fn walk_source(
    root: &Scope,
    prefix: &str,
    ignore: &Ignore,
    visit: &mut dyn FnMut(&Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let rel = Path::new(prefix);
    let stat = root.stat(rel, true).with_context(|| format!("cannot read {prefix} in the build context"))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    let opened = match kind {
        FileType::Directory => Some(root.open_dir(rel)?),
        FileType::RegularFile => Some(OwnedFd::from(root.open_file(rel)?)),
        _ => None,
    };
    visit(&Entry { rel: "", stat: &stat, at: None, opened: opened.as_ref() })?;
    if kind == FileType::Directory
        && let Some(dir) = &opened
    {
        walk_dir(dir.as_fd(), prefix, "", ignore, visit)?;
    }
    Ok(())
}

fn walk_dir(
    dir: BorrowedFd<'_>,
    prefix: &str,
    rel: &str,
    ignore: &Ignore,
    visit: &mut dyn FnMut(&Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for name in list_dir(dir)? {
        let child = join(rel, &name.to_string_lossy());
        let stat = match stat_beneath(dir, &name) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", join(prefix, &child))),
        };
        let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
        let excluded = ignore.excluded(&join(prefix, &child));
        // An excluded directory is still entered when an exception may re-include something
        // under it; an excluded file never is.
        if excluded && (!is_dir || !ignore.has_exceptions()) {
            continue;
        }
        if !excluded {
            visit(&Entry { rel: &child, stat: &stat, at: Some((dir, &name)), opened: None })?;
        }
        if is_dir {
            let sub = open_dir_beneath(dir, &name).with_context(|| format!("cannot read {}", join(prefix, &child)))?;
            walk_dir(sub.as_fd(), prefix, &child, ignore, visit)?;
        }
    }
    Ok(())
}

/// A source entry opened for reading: the source itself, or a file found under it.
fn open_entry(e: &Entry<'_>) -> std::io::Result<fs::File> {
    match (e.opened, e.at) {
        (Some(fd), _) => Ok(fs::File::from(fd.try_clone()?)),
        (None, Some((dir, name))) => Ok(fs::File::from(open_regular(dir, name)?)),
        (None, None) => Err(std::io::Error::other("not a file")),
    }
}

/// A content hash of the sources: names, types, modes, sizes, contents, link targets. Owners
/// and times do not count (COPY resets owners; Docker's cache ignores times too).
pub fn hash_sources(root: &Scope, sources: &[String], ignore: &Ignore) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    for s in sources {
        walk_source(root, s, ignore, &mut |e| {
            h.update(join(s, e.rel).as_bytes());
            h.update(&[0]);
            h.update(&(e.stat.st_mode & 0o7777).to_le_bytes());
            match FileType::from_raw_mode(e.stat.st_mode) {
                FileType::RegularFile => {
                    h.update(b"f");
                    h.update(&(e.stat.st_size as u64).to_le_bytes());
                    let mut f = open_entry(e)?;
                    loop {
                        let n = f.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                }
                FileType::Symlink => {
                    let (dir, name) = e.at.expect("a followed source is never a symlink");
                    h.update(b"l");
                    h.update(rustix::fs::readlinkat(dir, name, Vec::new())?.as_bytes());
                }
                FileType::Directory => {
                    h.update(b"d");
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Whether ADD should unpack this source: a tar archive, plain or compressed.
pub fn is_archive(root: &Scope, rel: &str) -> anyhow::Result<bool> {
    let mut head = [0u8; 512];
    let mut f = root.open_file(Path::new(rel))?;
    let n = f.read(&mut head)?;
    let h = &head[..n];
    let compressed = h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || h.starts_with(b"BZh")
        || h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]);
    Ok(compressed || (n >= 262 && &h[257..262] == b"ustar"))
}

/// What a source is (a symlink at its end followed inside the context).
pub fn source_is_dir(root: &Scope, rel: &str) -> anyhow::Result<bool> {
    let st = root.stat(Path::new(rel), true).with_context(|| format!("cannot read {rel} in the build context"))?;
    Ok(FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Copies source `rel` of `root` to `target` inside `staging`: a directory's contents into
/// `target`, anything else to `target`. `.dockerignore` rules apply to everything under a
/// directory. Paths in `staging` are resolved inside it too, so a symlink an earlier source
/// put there cannot send a later write out of it.
pub fn copy_into(root: &Scope, rel: &str, staging: &Scope, target: &str, ignore: &Ignore) -> anyhow::Result<()> {
    let target = Path::new(target);
    // The destination directories from the top of the copy down to the current entry's
    // parent, by the entry's path in the source: the walk is depth-first, so an entry's
    // parent is always on it.
    let mut dirs: Vec<(String, OwnedFd)> = Vec::new();
    walk_source(root, rel, ignore, &mut |e| {
        let kind = FileType::from_raw_mode(e.stat.st_mode);
        let mode = rustix::fs::Mode::from_raw_mode(e.stat.st_mode & 0o7777);
        if e.rel.is_empty() {
            if kind == FileType::Directory {
                let dir = staging.mkdir_all(target, 0o755)?;
                rustix::fs::fchmod(&dir, mode)?;
                dirs.push((String::new(), dir));
                return Ok(());
            }
            let (dir, name) =
                staging.parent(target, Some(0o755)).with_context(|| format!("cannot create {}", target.display()))?;
            return copy_entry(e, kind, mode, dir.as_fd(), &name, rel);
        }
        let parent = e.rel.rsplit_once('/').map_or("", |(p, _)| p);
        while dirs.last().is_some_and(|(d, _)| d != parent && !parent.starts_with(&format!("{d}/")) && !d.is_empty()) {
            dirs.pop();
        }
        if dirs.last().is_none_or(|(d, _)| d != parent) {
            // Under a directory `.dockerignore` excluded but for an exception: its
            // directories are made on the way, as Docker does.
            let made = staging.mkdir_all(&target.join(parent), 0o755)?;
            dirs.push((parent.to_string(), made));
        }
        let (_, dir) = dirs.last().expect("pushed above");
        let name = OsStr::new(e.rel.rsplit_once('/').map_or(e.rel, |(_, n)| n));
        if kind == FileType::Directory {
            match rustix::fs::mkdirat(dir, name, rustix::fs::Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(err) => return Err(err.into()),
            }
            let sub = open_dir_beneath(dir.as_fd(), name)?;
            rustix::fs::fchmod(&sub, mode)?;
            dirs.push((e.rel.to_string(), sub));
            return Ok(());
        }
        copy_entry(e, kind, mode, dir.as_fd(), name, rel)
    })
}

/// Copies one entry that is not a directory to `name` in `dir`, replacing (never following)
/// whatever is there.
fn copy_entry(
    e: &Entry<'_>,
    kind: FileType,
    mode: rustix::fs::Mode,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    source: &str,
) -> anyhow::Result<()> {
    let replace = || match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) | Err(Errno::ISDIR) => Ok(()),
        Err(e) => Err(e),
    };
    match kind {
        FileType::Symlink => {
            let (from_dir, from_name) = e.at.expect("a followed source is never a symlink");
            let link = rustix::fs::readlinkat(from_dir, from_name, Vec::new())?;
            replace()?;
            rustix::fs::symlinkat(link.as_c_str(), dir, name)?;
        }
        FileType::RegularFile => {
            let mut from = open_entry(e)?;
            replace()?;
            let out = rustix::fs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                rustix::fs::Mode::from_raw_mode(0o600),
            )?;
            let mut out = fs::File::from(out);
            std::io::copy(&mut from, &mut out).with_context(|| format!("cannot copy {}", join(source, e.rel)))?;
            rustix::fs::fchmod(&out, mode)?;
            let mtime = rustix::fs::Timespec { tv_sec: e.stat.st_mtime, tv_nsec: e.stat.st_mtime_nsec as _ };
            let _ =
                rustix::fs::futimens(&out, &rustix::fs::Timestamps { last_access: mtime, last_modification: mtime });
        }
        // Sockets, fifos and devices are not build content.
        _ => {}
    }
    Ok(())
}

/// Sets the owner (default root) and, if given, the mode of `rel` inside `staging` and of
/// everything under it, by descriptor and without following symlinks.
pub fn set_owner_mode(staging: &Scope, rel: &str, owner: Option<(u32, u32)>, chmod: Option<u32>) -> anyhow::Result<()> {
    let (uid, gid) = owner.unwrap_or((0, 0));
    fn apply(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32, chmod: Option<u32>) -> anyhow::Result<()> {
        let st = match stat_beneath(dir, name) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        if let Some(mode) = chmod
            && kind != FileType::Symlink
        {
            let fd = open_beneath(dir, name, OFlags::PATH)?;
            rustix::fs::chmodat(
                rustix::fs::CWD,
                fd_path(&fd),
                rustix::fs::Mode::from_raw_mode(mode),
                AtFlags::empty(),
            )?;
        }
        if kind == FileType::Directory {
            let sub = open_dir_beneath(dir, name)?;
            for child in list_dir(sub.as_fd())? {
                apply(sub.as_fd(), &child, uid, gid, chmod)?;
            }
        }
        Ok(())
    }
    if Path::new(rel).components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::CurDir)) {
        // The destination is the root (`COPY --chown=app . /`): everything copied.
        let root = staging.open_dir(Path::new(""))?;
        for child in list_dir(root.as_fd())? {
            apply(root.as_fd(), &child, uid, gid, chmod)?;
        }
        return Ok(());
    }
    let Ok((dir, name)) = staging.parent(Path::new(rel), None) else { return Ok(()) };
    apply(dir.as_fd(), &name, uid, gid, chmod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse("# comment\n*.log\nnode_modules\n**/*.tmp\n!keep.log\ndocs/*/draft.md\n");
        assert!(ig.excluded("app.log"));
        assert!(!ig.excluded("keep.log"));
        assert!(ig.excluded("node_modules/x/y.js"));
        assert!(ig.excluded("a/b/c.tmp"));
        assert!(ig.excluded("x.tmp"));
        assert!(!ig.excluded("src/app.log"), "*.log is anchored to the root");
        assert!(ig.excluded("docs/v1/draft.md"));
        assert!(!ig.excluded("docs/draft.md"));
        assert!(!ig.excluded("Dockerfile"));
    }

    #[test]
    fn sources_expand_and_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.md", "b.md", "c.txt", "sub/d.md"] {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        let root = Scope::open(dir.path()).unwrap();
        let none = Ignore::none();
        assert_eq!(expand(&root, "*.md", &none).unwrap(), vec!["a.md", "b.md"]);
        assert_eq!(expand(&root, "sub/*.md", &none).unwrap(), vec!["sub/d.md"]);
        assert_eq!(expand(&root, "./c.txt", &none).unwrap(), vec!["c.txt"]);
        assert!(expand(&root, "nope", &none).unwrap().is_empty());
        assert!(expand(&root, "../etc/passwd", &none).is_err());
        let ig = Ignore::parse("b.md\n");
        assert_eq!(expand(&root, "*.md", &ig).unwrap(), vec!["a.md"]);
        // Content changes change the hash; nothing else does.
        let h1 = hash_sources(&root, &["a.md".into()], &none).unwrap();
        fs::write(dir.path().join("a.md"), "changed").unwrap();
        assert_ne!(h1, hash_sources(&root, &["a.md".into()], &none).unwrap());
    }

    /// A context whose links point at a "host" directory beside it.
    fn hostile_context() -> (tempfile::TempDir, std::path::PathBuf, Scope) {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("shadow"), "host secret").unwrap();
        let ctx = dir.path().join("ctx");
        fs::create_dir_all(ctx.join("site/sub")).unwrap();
        fs::write(ctx.join("site/index.html"), "page").unwrap();
        std::os::unix::fs::symlink(&host, ctx.join("hostetc")).unwrap();
        std::os::unix::fs::symlink("../../host", ctx.join("site/up")).unwrap();
        std::os::unix::fs::symlink(host.join("shadow"), ctx.join("site/sub/shadow")).unwrap();
        let root = Scope::open(&ctx).unwrap();
        (dir, host, root)
    }

    #[test]
    fn a_symlink_in_the_context_never_reads_a_host_file() {
        let (dir, host, root) = hostile_context();
        let none = Ignore::none();
        // Through a link in the middle of the path, or as the source itself: not found.
        assert!(expand(&root, "hostetc/shadow", &none).unwrap().is_empty());
        assert!(expand(&root, "site/up/shadow", &none).unwrap().is_empty());
        let staging_dir = dir.path().join("staging");
        fs::create_dir_all(&staging_dir).unwrap();
        let staging = Scope::open(&staging_dir).unwrap();
        assert!(copy_into(&root, "hostetc", &staging, "y", &none).is_err());
        assert!(hash_sources(&root, &["hostetc".into()], &none).is_err());
        // Inside a copied directory, links stay links: their targets are not read.
        copy_into(&root, "site", &staging, "app", &none).unwrap();
        assert_eq!(fs::read_to_string(staging_dir.join("app/index.html")).unwrap(), "page");
        let link = staging_dir.join("app/sub/shadow");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        // A later copy through a link an earlier one made stays inside the staging area.
        fs::create_dir_all(dir.path().join("ctx/more/up")).unwrap();
        fs::write(dir.path().join("ctx/more/up/planted"), "planted").unwrap();
        copy_into(&root, "more", &staging, "app/site-up", &none).unwrap();
        std::os::unix::fs::symlink(&host, staging_dir.join("app/through")).unwrap();
        // The link's target is made inside the staging area, and the copy lands there.
        copy_into(&root, "more", &staging, "app/through", &none).unwrap();
        let landed = staging_dir.join(host.strip_prefix("/").unwrap()).join("up/planted");
        assert_eq!(fs::read_to_string(&landed).unwrap(), "planted");
        set_owner_mode(&staging, "app/through", Some((1, 1)), Some(0o700)).unwrap();
        // A link to a place inside is followed there.
        std::os::unix::fs::symlink("/app", staging_dir.join("app/inside")).unwrap();
        copy_into(&root, "more", &staging, "app/inside/more", &none).unwrap();
        assert_eq!(fs::read_to_string(staging_dir.join("app/more/up/planted")).unwrap(), "planted");
        assert_eq!(fs::read_dir(&host).unwrap().count(), 1, "the host directory was written to");
        assert_eq!(fs::read_to_string(host.join("shadow")).unwrap(), "host secret");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(host.join("shadow")).unwrap().uid(), 0);
    }

    #[test]
    fn chown_to_the_root_destination_covers_everything_copied() {
        let dir = tempfile::tempdir().unwrap();
        let staging_dir = dir.path().join("staging");
        fs::create_dir_all(staging_dir.join("a/b")).unwrap();
        fs::write(staging_dir.join("a/b/f"), "x").unwrap();
        fs::write(staging_dir.join("top"), "y").unwrap();
        let staging = Scope::open(&staging_dir).unwrap();
        for dest in ["", "/", "."] {
            set_owner_mode(&staging, dest, Some((7, 8)), Some(0o750)).unwrap();
            use std::os::unix::fs::MetadataExt;
            for p in ["a", "a/b", "a/b/f", "top"] {
                let m = fs::metadata(staging_dir.join(p)).unwrap();
                assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (7, 8, 0o750), "{dest:?}: {p}");
            }
            set_owner_mode(&staging, dest, None, None).unwrap();
        }
    }

    #[test]
    fn dockerignore_applies_under_a_copied_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        for f in ["index.html", "secret.txt", "keys/a.key", "deep/er/b.key", "keep.key", "node_modules/m.js"] {
            let p = ctx.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        let root = Scope::open(&ctx).unwrap();
        let ig = Ignore::parse("secret.txt\n**/*.key\n!keep.key\nnode_modules\n!node_modules/m.js\n");
        let staging_dir = dir.path().join("staging");
        fs::create_dir_all(&staging_dir).unwrap();
        let staging = Scope::open(&staging_dir).unwrap();
        copy_into(&root, "", &staging, "app", &ig).unwrap();
        let mut found: Vec<String> = Vec::new();
        for e in walk_all(&staging_dir.join("app")) {
            found.push(e);
        }
        found.sort();
        assert_eq!(found, ["deep", "deep/er", "index.html", "keep.key", "keys", "node_modules", "node_modules/m.js"]);
        // The cache key does not see ignored files either.
        let before = hash_sources(&root, &[String::new()], &ig).unwrap();
        fs::write(ctx.join("secret.txt"), "changed").unwrap();
        assert_eq!(before, hash_sources(&root, &[String::new()], &ig).unwrap());
    }

    fn walk_all(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.extend(walk_all(&p).into_iter().map(|c| format!("{name}/{c}")));
            }
            out.push(name);
        }
        out
    }
}
