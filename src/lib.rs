//! Lifeboat: a container-based backup and disaster-recovery tool.
//!
//! The library holds everything; the `lifeboat` binary (`src/main.rs`, with its `cli` module,
//! which the library never sees) only parses arguments, calls one library function per
//! command, prints its report, and maps errors to exit codes through [`error`]. Data flows
//! through:
//!
//! - [`image`]: references, OCI documents, layers (made and applied safely), the local store.
//! - [`config`]: the `lifeboat.toml` model; [`agent`] runs its jobs on their schedules.
//! - [`fsutil`]: atomic writes, locks and temporary paths shared by the stores.

pub mod agent;
pub mod backend;
pub mod builder;
pub mod compose;
pub mod config;
pub mod digest;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod glob;
pub mod image;
pub mod ops;
pub mod registry;
pub mod repo;
pub mod report;
pub mod runtime;
pub mod snapshot;
pub mod syntax;
pub mod sys;

/// The rules of the house (docs/architecture.md), checked on the source: which room may use
/// which, and that the command line only parses, calls and prints.
#[cfg(test)]
mod architecture {
    use std::path::{Path, PathBuf};

    fn sources(dir: &str) -> Vec<(PathBuf, String)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir), &mut out);
        assert!(!out.is_empty(), "no sources under src/{dir}");
        out
    }

    /// Lines of code (comments left out) that contain `needle`, with imports written out:
    /// `use crate::{runtime::{self, Host}, repo::Repository}` counts as `crate::runtime`,
    /// `crate::runtime::Host` and `crate::repo::Repository`, and a later `runtime::start(…)`
    /// as `crate::runtime::start`, so neither grouping nor a short name hides a use.
    fn uses(files: &[(PathBuf, String)], needle: &str) -> Vec<String> {
        let mut hits = Vec::new();
        for (path, text) in files {
            for (n, line) in resolve(text).iter().enumerate() {
                let code = line.trim_start();
                if !code.starts_with("//") && code.contains(needle) {
                    hits.push(format!("{}:{}: {}", path.display(), n + 1, code));
                }
            }
        }
        hits
    }

    /// Every path a use tree names, as (full path, the name it is known by).
    fn use_paths(prefix: &str, tree: &str, out: &mut Vec<(String, String)>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let base = tree[..open].trim();
            let inner = tree.get(open + 1..tree.rfind('}').unwrap_or(tree.len())).unwrap_or("");
            let mut depth = 0;
            let mut part = String::new();
            for c in inner.chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !part.trim().is_empty() {
                            use_paths(&format!("{prefix}{base}"), &part, out);
                        }
                        part.clear();
                        continue;
                    }
                    _ => {}
                }
                part.push(c);
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim())),
            None => (tree, None),
        };
        let full = if path == "self" { prefix.trim_end_matches("::").to_string() } else { format!("{prefix}{path}") };
        let name = alias.map(String::from).unwrap_or_else(|| full.rsplit("::").next().unwrap_or("").to_string());
        out.push((full, name));
    }

    /// The source's lines, each with the full paths it uses appended.
    fn resolve(text: &str) -> Vec<String> {
        let mut out: Vec<String> = text.lines().map(String::from).collect();
        let mut aliases: Vec<(String, String)> = Vec::new();
        let mut from = 0;
        while let Some(at) = text.get(from..).and_then(|t| t.find("use ")).map(|i| i + from) {
            from = at + 4;
            let starts_line = text[..at].rsplit('\n').next().is_some_and(|l| l.trim().is_empty() || l.trim() == "pub");
            let Some(end) = text[at..].find(';').map(|i| i + at) else { break };
            if !starts_line {
                continue;
            }
            let mut paths = Vec::new();
            use_paths("", &text[at + 4..end].split_whitespace().collect::<Vec<_>>().join(" "), &mut paths);
            let line = text[..at].matches('\n').count();
            for (full, name) in paths {
                out[line].push_str(&format!(" {full}"));
                if ["crate::", "super::", "lifeboat::"].iter().any(|p| full.starts_with(p)) && !name.is_empty() {
                    aliases.push((name, full));
                }
            }
            from = end;
        }
        for line in out.iter_mut() {
            let mut extra = String::new();
            for (name, full) in &aliases {
                let short = format!("{name}::");
                let mut at = 0;
                while let Some(i) = line.get(at..).and_then(|l| l.find(&short)).map(|i| i + at) {
                    let boundary =
                        line[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
                    let rest: String = line[i + short.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    if boundary {
                        extra.push_str(&format!(" {full}::{rest}"));
                    }
                    at = i + short.len();
                }
            }
            line.push_str(&extra);
        }
        out
    }

    fn forbid(dir: &str, needles: &[&str]) {
        let files = sources(dir);
        let hits: Vec<String> = needles.iter().flat_map(|n| uses(&files, n)).collect();
        assert!(hits.is_empty(), "src/{dir} must not use {needles:?}:\n{}", hits.join("\n"));
    }

    #[test]
    fn grouped_imports_and_short_names_are_seen() {
        let text = "use crate::{\n    runtime::{self, Host},\n    repo::Repository as R,\n};\n\
                    use lifeboat::registry::{self, auth};\n\
                    fn f() { registry::pull(1); let x = \"crate::{\"; runtime::start(); }\n";
        let files = vec![(PathBuf::from("x.rs"), text.to_string())];
        assert_eq!(uses(&files, "crate::runtime::Host").len(), 1);
        assert_eq!(uses(&files, "crate::repo::Repository").len(), 1);
        assert_eq!(uses(&files, "lifeboat::registry::pull").len(), 1);
        assert_eq!(uses(&files, "lifeboat::registry::auth").len(), 1);
        assert_eq!(uses(&files, "crate::runtime::start").len(), 1);
        assert!(uses(&files, "crate::ops").is_empty());
        // Unbalanced text does not stop the check.
        let odd = vec![(PathBuf::from("y.rs"), "use crate::{a, b\nfn g() {}\n".to_string())];
        assert!(uses(&odd, "crate::ops").is_empty());
    }

    #[test]
    fn the_library_never_imports_the_command_line() {
        for room in [
            "repo", "backend", "image", "runtime", "snapshot", "builder", "registry", "agent", "ops", "config",
            "report",
        ] {
            forbid(room, &["crate::cli", "super::cli"]);
        }
    }

    #[test]
    fn the_repository_depends_only_on_backends_and_shared_helpers() {
        forbid(
            "repo",
            &["crate::runtime", "crate::config", "crate::snapshot", "crate::ops", "crate::agent", "crate::image::"],
        );
        forbid(
            "backend",
            &["crate::runtime", "crate::config", "crate::repo", "crate::image", "crate::snapshot", "crate::ops"],
        );
    }

    #[test]
    fn the_lower_rooms_do_not_reach_up() {
        for room in ["image", "runtime", "repo", "backend", "registry", "snapshot", "builder", "config", "report"] {
            forbid(room, &["crate::ops", "crate::agent"]);
        }
        forbid("image", &["crate::runtime", "crate::snapshot", "crate::repo"]);
        forbid("config", &["crate::snapshot", "crate::builder", "crate::registry"]);
    }

    /// The command line parses, calls the commands (`ops`, the agent, the builder) and
    /// prints: it never touches a file, nor reaches past the commands into the stores.
    #[test]
    fn the_command_line_touches_no_file_itself() {
        let files = sources("cli");
        let hits: Vec<String> = [
            "std::fs",
            "fs::",
            "File::",
            "OpenOptions",
            ".read_dir(",
            ".is_dir()",
            ".exists()",
            ".is_file()",
            ".metadata(",
            "canonicalize",
            "lifeboat::fsutil",
            "lifeboat::repo::maintenance",
            "lifeboat::repo::Repository",
            "lifeboat::runtime::commit",
            "lifeboat::image::import::import",
            "lifeboat::registry::pull",
            "lifeboat::registry::push",
            "lifeboat::registry::auth",
            "lifeboat::backend",
            "Store::open",
            "Containers::open",
            ".store()",
            ".containers()",
            ".volumes()",
        ]
        .iter()
        .flat_map(|n| uses(&files, n))
        .collect();
        assert!(hits.is_empty(), "src/cli must leave files and stores to the library:\n{}", hits.join("\n"));
    }
}
