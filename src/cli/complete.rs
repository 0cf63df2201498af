//! Dynamic shell completions: the names a command takes (containers, images, volumes,
//! services, snapshots) offered from this host at the moment of completing.
//!
//! The shell's script (`lifeboat completions bash|zsh|fish`) calls this program with
//! `LIFEBOAT_COMPLETE` set and the words typed so far; clap's completion engine finds which
//! argument is being completed and asks the functions here. They read the `--root`,
//! `--run-root` and `--config` typed on that line (else their environment variables and
//! defaults), never create anything, and offer nothing rather than fail.

use std::ffi::OsString;
use std::path::PathBuf;

use clap_complete::CompletionCandidate;
use lifeboat::ops;

/// The environment variable that makes this program complete instead of run.
pub const VAR: &str = "LIFEBOAT_COMPLETE";

/// The value of `--flag VALUE` or `--flag=VALUE` among the words being completed.
fn typed(words: &[OsString], flag: &str) -> Option<PathBuf> {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let w = w.to_string_lossy();
        if w == flag {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = w.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The host the line being completed names.
fn context() -> super::Context {
    let words: Vec<OsString> = std::env::args_os().skip_while(|a| a != "--").collect();
    let env_or = |var: &str, default: &str| std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    let root = typed(&words, "--root").unwrap_or_else(|| env_or("LIFEBOAT_ROOT", "/var/lib/lifeboat"));
    let run_root = typed(&words, "--run-root").unwrap_or_else(|| env_or("LIFEBOAT_RUN_ROOT", "/run/lifeboat"));
    let mut ctx = super::Context::new(root, run_root);
    if let Some(config) = typed(&words, "--config").or_else(|| std::env::var_os("LIFEBOAT_CONFIG").map(PathBuf::from)) {
        ctx.config_path = config;
    }
    ctx
}

fn candidates(names: impl IntoIterator<Item = (String, Option<String>)>) -> Vec<CompletionCandidate> {
    let mut seen = std::collections::BTreeMap::new();
    for (name, help) in names {
        seen.entry(name).or_insert(help);
    }
    seen.into_iter().map(|(name, help)| CompletionCandidate::new(name).help(help.map(Into::into))).collect()
}

fn container_names(ctx: &super::Context) -> Vec<(String, Option<String>)> {
    let rows = ops::containers::list(ctx.host(), true).unwrap_or_default();
    rows.into_iter().map(|r| (r.names, Some(r.status))).collect()
}

/// Every container's name.
pub fn containers() -> Vec<CompletionCandidate> {
    candidates(container_names(&context()))
}

/// Every image's name (`repository:tag`), untagged ones by short ID.
pub fn images() -> Vec<CompletionCandidate> {
    let ctx = context();
    let rows = ops::images::list(ctx.host(), None).unwrap_or_default();
    candidates(rows.into_iter().map(|r| {
        let id = r.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
        if r.repository == "<none>" { (id, None) } else { (format!("{}:{}", r.repository, r.tag), Some(id)) }
    }))
}

/// Containers and images (`inspect` takes both).
pub fn containers_and_images() -> Vec<CompletionCandidate> {
    let mut all = containers();
    all.extend(images());
    all
}

/// Every volume's name.
pub fn volumes() -> Vec<CompletionCandidate> {
    let ctx = context();
    let vols = ops::volumes::list(ctx.host()).unwrap_or_default();
    candidates(vols.into_iter().map(|v| (v.name, None)))
}

fn default_snapshots(ctx: &super::Context) -> Vec<ops::backup::SnapshotRow> {
    ops::backup::default_repository_snapshots(ctx.host())
}

/// Services: those of the configuration, the containers, and those with snapshots in the
/// default repository.
pub fn services() -> Vec<CompletionCandidate> {
    let ctx = context();
    let mut names: Vec<(String, Option<String>)> = Vec::new();
    if let Ok(config) = ctx.config() {
        names.extend(config.services.keys().map(|s| (s.clone(), Some("service".to_string()))));
    }
    names.extend(container_names(&ctx));
    names.extend(default_snapshots(&ctx).into_iter().map(|s| (s.service, Some("has snapshots".to_string()))));
    candidates(names)
}

/// Snapshot IDs (short) of the default repository, newest first, with their service and time.
pub fn snapshots() -> Vec<CompletionCandidate> {
    let ctx = context();
    let mut rows = default_snapshots(&ctx);
    rows.reverse();
    rows.into_iter()
        .map(|s| {
            CompletionCandidate::new(s.id.chars().take(8).collect::<String>())
                .help(Some(format!("{} {}", s.service, s.time).into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_typed_on_the_line_are_found_both_ways() {
        let words: Vec<OsString> = ["--", "lifeboat", "--root", "/srv/lb", "--config=/etc/x.toml", "rm", ""]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(typed(&words, "--root"), Some(PathBuf::from("/srv/lb")));
        assert_eq!(typed(&words, "--config"), Some(PathBuf::from("/etc/x.toml")));
        assert_eq!(typed(&words, "--run-root"), None);
    }
}
