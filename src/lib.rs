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
pub mod config;
pub mod digest;
pub mod error;
pub mod fsutil;
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

    /// Lines of code (comments left out) that contain `needle`. A grouped import
    /// (`use crate::{runtime, repo::X}`) counts as one `crate::runtime` and one `crate::repo`
    /// line, so grouping cannot hide a use.
    fn uses(files: &[(PathBuf, String)], needle: &str) -> Vec<String> {
        let mut hits = Vec::new();
        for (path, text) in files {
            for (n, line) in expand_groups(text).iter().enumerate() {
                let code = line.trim_start();
                if !code.starts_with("//") && code.contains(needle) {
                    hits.push(format!("{}:{}: {}", path.display(), n + 1, code));
                }
            }
        }
        hits
    }

    /// The source with `PREFIX::{a, b::c}` written out as `PREFIX::a PREFIX::b::c` on the
    /// line where the group opens (nested and multi-line groups included).
    fn expand_groups(text: &str) -> Vec<String> {
        let mut out: Vec<String> = text.lines().map(String::from).collect();
        for prefix in ["crate::", "super::", "lifeboat::"] {
            let mut from = 0;
            while let Some(at) = text[from..].find(&format!("{prefix}{{")).map(|i| i + from) {
                let open = at + prefix.len();
                let mut depth = 0;
                let mut end = open;
                for (i, c) in text[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                let line = text[..at].matches('\n').count();
                let inner: String = text[open + 1..end].split_whitespace().collect::<Vec<_>>().join(" ");
                let names: Vec<String> =
                    inner.split(',').map(|p| format!("{prefix}{}", p.trim())).filter(|p| !p.ends_with("::")).collect();
                out[line].push_str(&format!(" {}", names.join(" ")));
                from = end.max(at + 1);
            }
        }
        out
    }

    fn forbid(dir: &str, needles: &[&str]) {
        let files = sources(dir);
        let hits: Vec<String> = needles.iter().flat_map(|n| uses(&files, n)).collect();
        assert!(hits.is_empty(), "src/{dir} must not use {needles:?}:\n{}", hits.join("\n"));
    }

    #[test]
    fn grouped_imports_are_seen() {
        let text = "use crate::{\n    runtime::{self, Host},\n    repo::Repository,\n};\nfn f() {}\n";
        let files = vec![(PathBuf::from("x.rs"), text.to_string())];
        assert_eq!(uses(&files, "crate::runtime").len(), 1);
        assert_eq!(uses(&files, "crate::repo::Repository").len(), 1);
        assert!(uses(&files, "crate::ops").is_empty());
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
        ]
        .iter()
        .flat_map(|n| uses(&files, n))
        .collect();
        assert!(hits.is_empty(), "src/cli must leave files and stores to the library:\n{}", hits.join("\n"));
    }
}
