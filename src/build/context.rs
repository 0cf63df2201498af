//! The build context: `.dockerignore`, source patterns, content hashes for the cache, and
//! copying sources into a layer's staging directory (owned by root unless `--chown`, as Docker
//! does).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// `.dockerignore` rules, in order; the last matching rule decides (`!` re-includes).
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

/// Glob match of one path segment: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn segment_match(pat: &[char], name: &[char]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => segment_match(&pat[1..], name) || (!name.is_empty() && segment_match(pat, &name[1..])),
        (Some('?'), Some(_)) => segment_match(&pat[1..], &name[1..]),
        (Some('['), Some(&c)) => {
            let Some(end) = pat.iter().position(|&x| x == ']') else { return false };
            let class = &pat[1..end];
            let (negate, class) = match class.first() {
                Some('!') | Some('^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && segment_match(&pat[end + 1..], &name[1..])
        }
        (Some('\\'), Some(&c)) if pat.len() > 1 => pat[1] == c && segment_match(&pat[2..], &name[1..]),
        (Some(&p), Some(&c)) => p == c && segment_match(&pat[1..], &name[1..]),
        _ => false,
    }
}

/// Matches path segments against pattern segments; `**` spans any number of segments.
fn path_match(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|i| path_match(&pat[1..], &path[i..])),
        Some(p) => {
            !path.is_empty()
                && segment_match(&p.chars().collect::<Vec<_>>(), &path[0].chars().collect::<Vec<_>>())
                && path_match(&pat[1..], &path[1..])
        }
    }
}

fn clean_segments(pattern: &str) -> Vec<String> {
    pattern.split('/').filter(|s| !s.is_empty() && *s != ".").map(String::from).collect()
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
            rules.push((negate, clean_segments(pat)));
        }
        Ignore { rules }
    }

    pub fn load(context: &Path) -> anyhow::Result<Ignore> {
        match fs::read_to_string(context.join(".dockerignore")) {
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
            let hit = (1..=segs.len()).any(|n| path_match(pat, &segs[..n]));
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

/// The paths (relative to `root`) a COPY/ADD source names: itself, or what its wildcards match.
/// Sources cannot leave the root.
pub fn expand(root: &Path, pattern: &str, ignore: &Ignore) -> anyhow::Result<Vec<String>> {
    let segs = clean_segments(pattern);
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
            let dir = root.join(base);
            if wild {
                let Ok(entries) = fs::read_dir(&dir) else { continue };
                let mut names: Vec<String> =
                    entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                let pat: Vec<char> = seg.chars().collect();
                for n in names {
                    if segment_match(&pat, &n.chars().collect::<Vec<_>>()) {
                        next.push(join(base, &n));
                    }
                }
            } else if dir.join(seg).symlink_metadata().is_ok() {
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

/// Every entry under the sources (themselves included), sorted, ignoring excluded ones.
fn walk(root: &Path, rel: &str, ignore: &Ignore, out: &mut Vec<String>) -> anyhow::Result<()> {
    let path = root.join(rel);
    let meta = path.symlink_metadata().with_context(|| format!("cannot read {}", path.display()))?;
    out.push(rel.to_string());
    if meta.is_dir() {
        let mut names: Vec<String> =
            fs::read_dir(&path)?.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for n in names {
            let child = join(rel, &n);
            let excluded = ignore.excluded(&child);
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            if excluded && !path.join(&n).is_dir() {
                continue;
            }
            walk(root, &child, ignore, out)?;
        }
    }
    Ok(())
}

/// A content hash of the sources: names, types, modes, sizes, contents, link targets. Owners
/// and times do not count (COPY resets owners; Docker's cache ignores times too).
pub fn hash_sources(root: &Path, sources: &[String]) -> anyhow::Result<String> {
    let ignore = Ignore::load(root).unwrap_or_else(|_| Ignore::none());
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    for s in sources {
        let mut all = Vec::new();
        walk(root, s, &ignore, &mut all)?;
        for rel in all {
            let p = root.join(&rel);
            let m = p.symlink_metadata()?;
            h.update(rel.as_bytes());
            h.update(&[0]);
            h.update(&(m.mode() & 0o7777).to_le_bytes());
            if m.is_file() {
                h.update(b"f");
                h.update(&m.len().to_le_bytes());
                let mut f = fs::File::open(&p)?;
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            } else if m.is_symlink() {
                h.update(b"l");
                h.update(fs::read_link(&p)?.as_os_str().as_encoded_bytes());
            } else if m.is_dir() {
                h.update(b"d");
            }
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Whether ADD should unpack this file: a tar archive, plain or compressed.
pub fn is_archive(path: &Path) -> anyhow::Result<bool> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path)?;
    let n = f.read(&mut head)?;
    let h = &head[..n];
    let compressed = h.starts_with(&[0x1f, 0x8b])
        || h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || h.starts_with(b"BZh")
        || h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]);
    Ok(compressed || (n >= 262 && &h[257..262] == b"ustar"))
}

/// Copies `src` to `target`: a directory's contents into `target`, anything else to `target`.
pub fn copy_into(src: &Path, target: &Path, is_dir: bool) -> anyhow::Result<()> {
    let ignore = Ignore::none();
    if is_dir {
        fs::create_dir_all(target)?;
        let meta = src.metadata()?;
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        let mut all = Vec::new();
        walk(src, "", &ignore, &mut all)?;
        for rel in all.into_iter().skip(1) {
            copy_one(&src.join(&rel), &target.join(&rel))?;
        }
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    copy_one(src, target)
}

fn copy_one(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let m = src.symlink_metadata()?;
    if m.is_dir() {
        fs::create_dir_all(dst)?;
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    } else if m.is_symlink() {
        let _ = fs::remove_file(dst);
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else if m.is_file() {
        fs::copy(src, dst).with_context(|| format!("cannot copy {}", src.display()))?;
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))?;
        let mtime = filetime(m.mtime(), m.mtime_nsec());
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            dst,
            &rustix::fs::Timestamps { last_access: mtime, last_modification: mtime },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    // Sockets, fifos and devices are not build content.
    Ok(())
}

fn filetime(secs: i64, nsecs: i64) -> rustix::fs::Timespec {
    rustix::fs::Timespec { tv_sec: secs, tv_nsec: nsecs as _ }
}

/// Sets the owner (default root) and, if given, the mode of everything under `path`.
pub fn set_owner_mode(path: &Path, owner: Option<(u32, u32)>, chmod: Option<u32>) -> anyhow::Result<()> {
    let (uid, gid) = owner.unwrap_or((0, 0));
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = p.symlink_metadata()?;
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
        if let Some(mode) = chmod
            && !m.is_symlink()
        {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        }
        if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
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
        let none = Ignore::none();
        assert_eq!(expand(dir.path(), "*.md", &none).unwrap(), vec!["a.md", "b.md"]);
        assert_eq!(expand(dir.path(), "sub/*.md", &none).unwrap(), vec!["sub/d.md"]);
        assert_eq!(expand(dir.path(), "./c.txt", &none).unwrap(), vec!["c.txt"]);
        assert!(expand(dir.path(), "nope", &none).unwrap().is_empty());
        assert!(expand(dir.path(), "../etc/passwd", &none).is_err());
        let ig = Ignore::parse("b.md\n");
        assert_eq!(expand(dir.path(), "*.md", &ig).unwrap(), vec!["a.md"]);
        // Content changes change the hash; nothing else does.
        let h1 = hash_sources(dir.path(), &["a.md".into()]).unwrap();
        fs::write(dir.path().join("a.md"), "changed").unwrap();
        assert_ne!(h1, hash_sources(dir.path(), &["a.md".into()]).unwrap());
    }
}
