//! Image references as Docker parses them: `name`, `name:tag`, `host:port/ns/name:tag`,
//! `name@sha256:…`, with `docker.io/library/` normalisation and Docker's "familiar" short form.
//!
//! The grammar follows the distribution project's reference grammar: lower-case path components
//! separated by `.`, `_`, `__` or dashes; a domain is recognised in the first component when it
//! holds a `.` or `:` or is `localhost`; tags are `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const OFFICIAL_NAMESPACE: &str = "library";
const NAME_TOTAL_MAX: usize = 255;

/// A normalised image reference. `tag` is always set unless the reference names a digest only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("invalid reference format {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Reference {
    /// Parses like `docker pull` does, adding `:latest` when neither tag nor digest is given.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_without_default(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses without adding a default tag (`busybox` stays tag-less), for matching "all tags
    /// of a repository".
    pub fn parse_without_default(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError { input: input.to_string(), reason: reason.to_string() };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        if input.len() == 64 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("a 64-character hexadecimal string is an image ID, not a repository name"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| err(&e.to_string()))?)),
            None => (input, None),
        };
        // The tag follows the last ':' that comes after the last '/', so that `host:5000/x` is
        // not read as name `host` with tag `5000/x`.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|r| err(&r))?;
        }
        if name.is_empty() {
            return Err(err("missing repository name"));
        }
        if name.len() > NAME_TOTAL_MAX {
            return Err(err("repository name must not be longer than 255 characters"));
        }
        let (domain, path) = split_domain(name);
        if let Some(d) = &domain {
            validate_domain(d).map_err(|r| err(&r))?;
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        for component in path.split('/') {
            validate_path_component(component).map_err(|r| err(&r))?;
        }
        let mut domain = domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_string());
        if domain == "index.docker.io" {
            domain = DEFAULT_DOMAIN.to_string();
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_string()
        };
        // The limit is on the whole name as it is printed and sent (`docker.io/library/…`),
        // so that what parses prints back to something that parses.
        if domain.len() + 1 + path.len() > NAME_TOTAL_MAX {
            return Err(err("repository name must not be longer than 255 characters"));
        }
        Ok(Reference { domain, path, tag: tag.map(str::to_string), digest })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/busybox` for `busybox`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it: `busybox`, `me/app`, `127.0.0.1:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.full_name()
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag).map_err(|reason| ReferenceError { input: tag.to_string(), reason })?;
        Ok(Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() })
    }

    /// The same repository pinned to a digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { tag: None, digest: Some(digest), ..self.clone() }
    }

    /// Whether `self` (possibly tag-less) names the same repository as `other`.
    pub fn same_repository(&self, other: &Reference) -> bool {
        self.domain == other.domain && self.path == other.path
    }

    /// The familiar form with tag/digest: `busybox:latest`, `127.0.0.1:5000/x@sha256:…`.
    pub fn familiar(&self) -> String {
        self.render(&self.familiar_name())
    }

    fn render(&self, name: &str) -> String {
        let mut s = name.to_string();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    /// The fully qualified form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&self.full_name()))
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

fn split_domain(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (Some(first.to_string()), rest)
        }
        // Upper case in the first component cannot be a repository path, so Docker treats it
        // as a domain too (`Example/x` is a host named Example).
        Some((first, rest)) if first.bytes().any(|b| b.is_ascii_uppercase()) => (Some(first.to_string()), rest),
        _ => (None, name),
    }
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if bytes.is_empty() {
        return Err("empty tag".into());
    }
    if bytes.len() > 128 {
        return Err("tag must not be longer than 128 characters".into());
    }
    if !word(bytes[0]) {
        return Err(format!("tag {tag:?} must start with a letter, digit or '_'"));
    }
    if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(format!("tag {tag:?} may only contain letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

fn validate_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // IPv6 literal: [::1]:5000
        let (inside, after) = rest.split_once(']').ok_or_else(|| format!("bad IPv6 domain {domain:?}"))?;
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(format!("bad IPv6 domain {domain:?}"));
        }
        match after {
            "" => return Ok(()),
            p => (None, Some(p.strip_prefix(':').ok_or_else(|| format!("bad domain {domain:?}"))?)),
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("bad port in domain {domain:?}"));
    }
    if let Some(host) = host {
        for label in host.split('.') {
            let b = label.as_bytes();
            let ok = !b.is_empty()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-';
            if !ok {
                return Err(format!("bad domain {domain:?}"));
            }
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn validate_path_component(c: &str) -> Result<(), String> {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let bad = || Err(format!("bad repository path component {c:?}"));
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or one or more '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Found by fuzzing: a 251-character name parsed, but printed with its `docker.io/`
    /// prefix it was over the limit, and the printed form no longer parsed.
    #[test]
    fn the_length_limit_is_on_the_name_as_printed() {
        let long = format!("a/{}", "b".repeat(246)); // 248: fits alone, not with docker.io/
        assert!(Reference::parse(&long).is_err());
        let edge = format!("a/{}", "b".repeat(243)); // docker.io/ + 245 = 255: the most there is
        assert_eq!(p(&edge).to_string().len(), 255 + ":latest".len());
        assert!(Reference::parse(&format!("a/{}", "b".repeat(244))).is_err(), "256");
        let fits = format!("a/{}", "b".repeat(233)); // docker.io/ + 235 = 245
        let r = p(&fits);
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        let crash = concat!(
            "p-p0ams/prp-0/ams/am/vnd.eams/prdigesms/prp-0/amsms/o/n/p/prdigesms/prp-0/amsms/",
            "o/n/p-0/vnd.eams/prap-0ams/prp-0/ams/am/vnd.eamp-0/am-0/vnd.eams/prap-0ams/prp-0",
            "/ams/am/vnd.eams/prap-0ameeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeees/prp",
            "-0/amsms/prp/k:c",
        );
        if let Ok(r) = Reference::parse(crash) {
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("me/app:v2", "docker.io/me/app:v2", "me/app:v2"),
            ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
            ("localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t", "localhost:5000/a/b/c:t"),
            ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
            ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
            ("quay.io/podman/stable", "quay.io/podman/stable:latest", "quay.io/podman/stable:latest"),
            ("ab-c__d---e/f.g", "docker.io/ab-c__d---e/f.g:latest", "ab-c__d---e/f.g:latest"),
            ("x:_T.a-9", "docker.io/library/x:_T.a-9", "x:_T.a-9"),
        ];
        for (input, full, familiar) in cases {
            let r = p(input);
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn digest_references_get_no_default_tag() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = p(&format!("busybox@{d}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), d);
        let r = p(&format!("host:5000/busybox:1@{d}"));
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.domain(), "host:5000");
    }

    #[test]
    fn rejects_what_docker_rejects() {
        let long_tag = format!("x:{}", "a".repeat(129));
        let long_name = "a".repeat(256);
        let bad = [
            "",
            ":tag",
            "Busybox",
            "busybox:",
            "busybox:-tag",
            "busybox:ta/g",
            "bu..sybox",
            "busybox_",
            "-busybox",
            "a/-b",
            "a//b",
            "a/b/",
            "a___b",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "host:port/x",
            "-host:5000/x",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            long_tag.as_str(),
            long_name.as_str(),
            "a b",
        ];
        for input in bad {
            assert!(Reference::parse(input).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn error_names_the_input() {
        let e = Reference::parse("Busybox").unwrap_err();
        assert!(e.to_string().contains("\"Busybox\""), "{e}");
        assert!(e.to_string().contains("lowercase"), "{e}");
    }

    #[test]
    fn tagless_parse_and_repository_match() {
        let r = Reference::parse_without_default("busybox").unwrap();
        assert_eq!(r.tag(), None);
        assert!(r.same_repository(&p("docker.io/library/busybox:1")));
        assert!(!r.same_repository(&p("me/busybox")));
    }
}
