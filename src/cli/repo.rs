//! Repository and snapshot commands: repo init/info/unlock, snapshot, snapshots, restore.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{OutputFormat, human_size, print_table};
use super::{Context, UsageError};
use crate::repo::{Repository, lock::Lock, snapshot};
use crate::snapshot::{CaptureOptions, RestoreOptions};

pub const REPO_EXAMPLES: &str = "\
Examples:
  lifeboat repo init                                   the default repository under --root
  lifeboat repo init --repo /srv/backup --password-file /etc/lifeboat/repo.pass
  lifeboat repo info --repo /srv/backup --password-file /etc/lifeboat/repo.pass
  lifeboat repo stats";
pub const SNAPSHOT_EXAMPLES: &str = "\
Examples:
  lifeboat snapshot website
  lifeboat snapshot db --exec-before 'mysqldump --all-databases > /var/lib/mysql-dump/all.sql'
  lifeboat snapshot website --repo /srv/backup --password-file /etc/lifeboat/repo.pass --tag nightly";
pub const SNAPSHOTS_EXAMPLES: &str = "\
Examples:
  lifeboat snapshots
  lifeboat snapshots website --format json";
pub const RESTORE_EXAMPLES: &str = "\
Examples:
  lifeboat restore website                             latest snapshot, same name, started
  lifeboat restore website --snapshot 3f2a1b4c          a given snapshot
  lifeboat restore website --as website-test --no-start";

/// Where the repository is and how to open it.
#[derive(Debug, Args, Clone)]
pub struct RepoArgs {
    /// Repository location: a path (default: <root>/repository).
    #[arg(long, env = "LIFEBOAT_REPOSITORY")]
    pub repo: Option<String>,
    /// File holding the repository password.
    #[arg(long, env = "LIFEBOAT_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a new, empty repository.
    #[command(after_help = REPO_EXAMPLES)]
    Init {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Show a repository's identity and size.
    #[command(after_help = REPO_EXAMPLES)]
    Info {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Show what the repository stores: sizes before and after deduplication and compression.
    #[command(after_help = REPO_EXAMPLES)]
    Stats {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Remove stale locks (or all locks with --all).
    #[command(after_help = REPO_EXAMPLES)]
    Unlock {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The container (service) to snapshot.
    pub container: String,
    /// Repository locations (repeatable: the snapshot goes to each; default: <root>/repository).
    #[arg(long = "repo", env = "LIFEBOAT_REPOSITORY")]
    pub repos: Vec<String>,
    /// Password files, one per --repo in the same order (or one for all).
    #[arg(long = "password-file", env = "LIFEBOAT_PASSWORD_FILE")]
    pub password_files: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Run this inside the container before capturing (e.g. a database dump); failure aborts.
    #[arg(long)]
    pub exec_before: Vec<String>,
    /// Run this inside the container after capturing.
    #[arg(long)]
    pub exec_after: Vec<String>,
    /// Do not capture named volumes.
    #[arg(long)]
    pub no_volumes: bool,
    /// Do not commit the local image SERVICE:snap-<UTC time> (the newest 3 are kept).
    #[arg(long)]
    pub no_image: bool,
    /// Also push the snapshot as a portable image (volumes included) to an OCI registry:
    /// registry://HOST/REPO[:TAG]. Docker and Podman can run it; restore --from brings it back.
    #[arg(long, value_name = "registry://HOST/REPO")]
    pub to: Option<String>,
    #[command(flatten)]
    pub tls: super::registry::TlsArgs,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots of this service.
    pub service: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The service to bring back.
    pub service: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Which snapshot: an ID (prefix) or latest.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// The newest snapshot taken at or before this time (RFC 3339, or a date like 2026-11-27).
    #[arg(long, conflicts_with = "snapshot")]
    pub at: Option<String>,
    /// Restore under another name (volumes get NEWNAME- prefixes).
    #[arg(long = "as", value_name = "NEWNAME")]
    pub rename: Option<String>,
    /// Recreate the container but do not start it.
    #[arg(long)]
    pub no_start: bool,
    /// Seconds to wait for the service's health check.
    #[arg(long, default_value_t = 60)]
    pub health_timeout: u64,
    /// Restore from a snapshot image in a registry (registry://HOST/REPO:TAG) or the local
    /// store, instead of a repository.
    #[arg(long, value_name = "registry://HOST/REPO:TAG", conflicts_with_all = ["snapshot", "at"])]
    pub from: Option<String>,
    #[command(flatten)]
    pub tls: super::registry::TlsArgs,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

impl RepoArgs {
    fn location(&self, ctx: &Context) -> (String, bool) {
        match &self.repo {
            Some(r) => (r.clone(), false),
            None => (ctx.root.join("repository").display().to_string(), true),
        }
    }

    /// The password: a file, the default repository's generated one, or a prompt.
    fn password(&self, ctx: &Context, is_default: bool, create_default: bool) -> anyhow::Result<Vec<u8>> {
        if let Some(f) = &self.password_file {
            return read_password_file(f);
        }
        if is_default {
            let f = ctx.root.join("repository.password");
            if !f.exists() && create_default {
                std::fs::create_dir_all(&ctx.root)?;
                let pw = crate::fsutil::random_hex(32);
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&f)?;
                std::io::Write::write_all(&mut file, pw.as_bytes())?;
            }
            if f.exists() {
                return read_password_file(&f);
            }
        }
        if std::io::stdin().is_terminal() {
            return prompt("repository password: ");
        }
        Err(UsageError("no repository password: use --password-file or LIFEBOAT_PASSWORD_FILE".into()).into())
    }

    pub fn open(&self, ctx: &Context) -> anyhow::Result<Repository> {
        let (location, is_default) = self.location(ctx);
        let backend = crate::backend::open(&location)?;
        if is_default && backend.stat(crate::backend::Kind::Config, "config")?.is_none() {
            // The embedded default repository is created on first use.
            let password = self.password(ctx, true, true)?;
            return Ok(Repository::init(backend, &password)?);
        }
        let password = self.password(ctx, is_default, false)?;
        Ok(Repository::open(backend, &password)?)
    }
}

fn read_password_file(f: &Path) -> anyhow::Result<Vec<u8>> {
    let mut s = String::new();
    std::fs::File::open(f)
        .and_then(|mut h| h.read_to_string(&mut s))
        .with_context(|| format!("cannot read password file {}", f.display()))?;
    let pw = s.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
    if pw.is_empty() {
        bail!(UsageError(format!("password file {} is empty", f.display())));
    }
    Ok(pw)
}

pub(super) fn prompt(msg: &str) -> anyhow::Result<Vec<u8>> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").context("cannot open the terminal")?;
    let old = tcgetattr(&tty)?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{msg}");
    tcsetattr(&tty, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let result = std::io::BufRead::read_line(&mut std::io::BufReader::new(&tty), &mut line);
    tcsetattr(&tty, SetArg::TCSANOW, &old)?;
    eprintln!();
    result?;
    Ok(line.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}

pub fn repo(ctx: &Context, cmd: RepoCommand) -> anyhow::Result<i32> {
    match cmd {
        RepoCommand::Init { repo } => {
            let (location, is_default) = repo.location(ctx);
            let password = repo.password(ctx, is_default, true)?;
            let r = Repository::init(crate::backend::open(&location)?, &password)?;
            println!("created repository {} at {location}", r.config.id);
        }
        RepoCommand::Info { repo, format } => {
            let r = repo.open(ctx)?;
            let snaps = snapshot::list(&r)?;
            let packs = r.packs();
            let mut size = 0;
            for p in packs.keys() {
                size += r.backend().stat(crate::backend::Kind::Pack, &hex::encode(p))?.unwrap_or(0);
            }
            let info = json!({"location": r.location(), "id": r.config.id, "version": r.config.version,
                "chunker": r.config.chunker, "snapshots": snaps.len(), "blobs": r.blob_count(), "packs": packs.len(), "pack_bytes": size});
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("repository {} at {}", r.config.id, r.location());
                println!(
                    "format version {}, {} snapshots, {} blobs in {} packs, {}",
                    r.config.version,
                    snaps.len(),
                    r.blob_count(),
                    packs.len(),
                    human_size(size)
                );
            }
        }
        RepoCommand::Stats { repo, format } => {
            let r = repo.open(ctx)?;
            let snaps = snapshot::list(&r)?;
            let logical: u64 = snaps.iter().map(|(_, s)| s.stats.bytes).sum();
            let mut used = std::collections::HashSet::new();
            for (_, s) in &snaps {
                let mut roots = vec![s.image.tree, s.container_layer];
                roots.extend(s.volumes.iter().map(|v| v.tree));
                used.extend(crate::repo::maintenance::reachable(&r, roots)?);
            }
            let packs = r.packs();
            let mut raw = 0u64;
            let mut stored = 0u64;
            for blobs in packs.values() {
                for (id, loc) in blobs {
                    if used.contains(id) {
                        raw += loc.raw as u64;
                        stored += loc.length as u64;
                    }
                }
            }
            let ratio = if stored > 0 { logical as f64 / stored as f64 } else { 0.0 };
            let v = json!({"snapshots": snaps.len(), "logical_bytes": logical, "unique_bytes": raw, "stored_bytes": stored,
                "blobs": used.len(), "ratio": ratio});
            if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{} snapshots of {} in total", snaps.len(), human_size(logical));
                println!(
                    "unique data: {} in {} blobs, stored as {} (compressed, encrypted)",
                    human_size(raw),
                    used.len(),
                    human_size(stored)
                );
                println!("space saving: {ratio:.1}x");
            }
        }
        RepoCommand::Unlock { repo, all } => {
            let r = repo.open(ctx)?;
            let n = Lock::remove_stale(&r, all)?;
            println!("removed {n} locks");
        }
    }
    Ok(0)
}

pub fn snapshot(ctx: &Context, a: SnapshotArgs) -> anyhow::Result<i32> {
    if a.password_files.len() > 1 && a.password_files.len() != a.repos.len() {
        bail!(UsageError(format!(
            "{} password files for {} repositories: give one for all, or one per --repo",
            a.password_files.len(),
            a.repos.len()
        )));
    }
    let targets: Vec<RepoArgs> = if a.repos.is_empty() {
        vec![RepoArgs { repo: None, password_file: a.password_files.first().cloned() }]
    } else {
        a.repos
            .iter()
            .enumerate()
            .map(|(i, r)| RepoArgs {
                repo: Some(r.clone()),
                password_file: a.password_files.get(i).or(a.password_files.first()).cloned(),
            })
            .collect()
    };
    let spinner = super::progress::Activity::new(a.format == OutputFormat::Json);
    let progress: Option<crate::repo::tree::ProgressFn> = spinner.bar().map(|bar| {
        let name = a.container.clone();
        std::sync::Arc::new(move |s: &crate::repo::tree::ArchiveStats| {
            bar.set_message(format!(
                "snapshot {name}: {} files, {} ({} read, {} new)",
                s.files,
                human_size(s.bytes),
                s.files_read,
                human_size(s.new_bytes)
            ))
        }) as crate::repo::tree::ProgressFn
    });
    let opts = CaptureOptions {
        tags: a.tags,
        exec_before: a.exec_before,
        exec_after: a.exec_after,
        no_volumes: a.no_volumes,
        progress,
    };
    if let Some(to) = &a.to {
        registry_target(to)?; // a bad target is refused before anything is frozen
    }
    let mut results = Vec::new();
    let mut image = None;
    let mut pushed: Option<String> = None;
    for target in &targets {
        let mut repo = target.open(ctx)?;
        let (id, snap) = crate::snapshot::capture(&ctx.paths(), &mut repo, &a.container, &opts)
            .with_context(|| format!("cannot snapshot {} into {}", a.container, repo.location()))?;
        if image.is_none() && !a.no_image {
            // The service is running again; the local image comes from what was stored.
            let name = crate::snapshot::commit_local_image(&ctx.paths(), &repo, &id, &snap)
                .with_context(|| format!("snapshot {} was saved, but the local image could not be made", &id[..12]))?;
            image = Some(name.familiar());
        }
        if let Some(to) = a.to.as_deref().filter(|_| pushed.is_none()) {
            pushed = Some(push_snapshot(ctx, &repo, &id, &snap, to, &a.tls, a.format == OutputFormat::Json)?);
        }
        results.push((repo.location(), id, snap));
    }
    drop(spinner);
    if a.format == OutputFormat::Json {
        let v: Vec<_> = results
            .iter()
            .map(|(loc, id, snap)| json!({"repository": loc, "id": id, "service": snap.service, "time": snap.time, "stats": snap.stats, "image": image, "pushed": pushed}))
            .collect();
        let out = if v.len() == 1 { v[0].clone() } else { json!(v) };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for (loc, id, snap) in results {
        let s = snap.stats;
        println!(
            "snapshot {} of {} saved to {loc}: {} files, {}, {} read, {} added, frozen {} ms, {:.2} s",
            &id[..12],
            snap.service,
            s.files,
            human_size(s.bytes),
            s.files_read,
            human_size(s.added_bytes),
            s.frozen_ms,
            s.duration_ms as f64 / 1000.0
        );
    }
    if let Some(name) = image {
        println!("local image {name} (lifeboat run {name} starts the service as it was)");
    }
    if let Some(p) = pushed {
        println!("pushed {p} (docker run / podman run serve it with its data; lifeboat restore --from registry://{p})");
    }
    Ok(0)
}

/// `registry://HOST/REPO[:TAG]` → the reference.
fn registry_target(url: &str) -> anyhow::Result<crate::image::Reference> {
    let rest = url
        .strip_prefix("registry://")
        .ok_or_else(|| UsageError(format!("{url:?}: a registry target is written registry://HOST/REPO[:TAG]")))?;
    if !rest.contains('/') {
        bail!(UsageError(format!("{url:?}: name the repository: registry://HOST/REPO[:TAG]")));
    }
    Ok(crate::image::Reference::parse(rest)?)
}

/// Builds the portable image of a snapshot and pushes it; returns where it went.
fn push_snapshot(
    ctx: &Context,
    repo: &Repository,
    id: &str,
    snap: &crate::repo::snapshot::Snapshot,
    to: &str,
    tls: &super::registry::TlsArgs,
    quiet: bool,
) -> anyhow::Result<String> {
    let target = registry_target(to)?;
    let time = chrono::DateTime::parse_from_rfc3339(&snap.time)?.with_timezone(&chrono::Utc);
    let snap_tag = target.with_tag(&format!("snap-{}", time.format("%Y%m%dT%H%M%SZ")))?;
    let image = crate::snapshot::build_portable_image(&ctx.paths(), repo, id, snap, &snap_tag)?;
    let store = ctx.store()?;
    let mut targets = vec![snap_tag.clone()];
    if target.tag().is_some_and(|t| t != "latest") || to.ends_with(":latest") {
        store.tag(&image, &target)?;
        targets.push(target.clone());
    }
    let progress = super::progress::Transfers::new(quiet);
    let tls = tls.options(target.domain())?;
    for t in &targets {
        crate::registry::push(&store, &image, t, &tls, &progress)
            .with_context(|| format!("snapshot {} was saved, but pushing it to {} failed", &id[..12], t.familiar()))?;
    }
    Ok(targets.last().expect("one target").familiar())
}

pub fn snapshots(ctx: &Context, a: SnapshotsArgs) -> anyhow::Result<i32> {
    let repo = a.repo.open(ctx)?;
    let list: Vec<_> = snapshot::list(&repo)?
        .into_iter()
        .filter(|(_, s)| a.service.as_deref().is_none_or(|n| s.service == n))
        .collect();
    if a.format == OutputFormat::Json {
        let v: Vec<_> = list.iter().map(|(id, s)| json!({"id": id, "time": s.time, "service": s.service, "host": s.hostname, "tags": s.tags, "stats": s.stats, "parent": s.parent})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|(id, s)| {
            let time = chrono::DateTime::parse_from_rfc3339(&s.time)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|_| s.time.clone());
            vec![
                id[..12].to_string(),
                time,
                s.service.clone(),
                s.hostname.clone(),
                human_size(s.stats.bytes),
                human_size(s.stats.added_bytes),
                s.tags.join(","),
            ]
        })
        .collect();
    print_table(&["ID", "TIME", "SERVICE", "HOST", "SIZE", "ADDED", "TAGS"], &rows);
    Ok(0)
}

pub fn restore(ctx: &Context, a: RestoreArgs) -> anyhow::Result<i32> {
    if let Some(from) = &a.from {
        return restore_from(ctx, &a, from);
    }
    let repo = a.repo.open(ctx)?;
    let (id, snap) = match &a.at {
        Some(at) => {
            let limit = parse_time(at)?;
            snapshot::list(&repo)?
                .into_iter()
                .rev()
                .find(|(_, s)| {
                    s.service == a.service && chrono::DateTime::parse_from_rfc3339(&s.time).is_ok_and(|t| t <= limit)
                })
                .ok_or_else(|| crate::repo::RepoError::Other {
                    location: repo.location(),
                    what: format!("no snapshot of {} at or before {at}", a.service),
                })?
        }
        None => snapshot::find(&repo, Some(&a.service), &a.snapshot)?,
    };
    let opts = RestoreOptions {
        rename: a.rename,
        no_start: a.no_start,
        health_timeout: Duration::from_secs(a.health_timeout),
        throwaway: false,
        progress: None,
    };
    let spinner = super::progress::Activity::new(a.format == OutputFormat::Json);
    let opts = RestoreOptions {
        progress: spinner.bar().map(|bar| {
            let name = a.service.clone();
            std::sync::Arc::new(move |s: &crate::repo::tree::RestoreStats| {
                bar.set_message(format!("restore {name}: {} files, {}", s.files, human_size(s.bytes)))
            }) as crate::repo::tree::RestoreProgressFn
        }),
        ..opts
    };
    let r = crate::snapshot::restore(&ctx.paths(), &repo, &id, &snap, &opts)
        .with_context(|| format!("cannot restore {}", a.service))?;
    drop(spinner);
    if a.format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"snapshot": id, "container": r.container.id, "name": r.container.name,
            "seconds": r.elapsed.as_secs_f64(), "fetched_image": r.fetched_image, "healthy": r.healthy})
            )?
        );
    } else {
        let health = match r.healthy {
            Some(true) => ", healthy",
            Some(false) => ", NOT healthy yet",
            None => "",
        };
        let state = if opts.no_start { "created" } else { "running" };
        println!(
            "restored {} from snapshot {} in {:.2} s ({state}{health})",
            r.container.name,
            &id[..12],
            r.elapsed.as_secs_f64()
        );
    }
    if r.healthy == Some(false) {
        return Ok(crate::error::FAILURE);
    }
    Ok(0)
}

fn restore_from(ctx: &Context, a: &RestoreArgs, from: &str) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let (image, reference) = match from.strip_prefix("registry://") {
        Some(_) => {
            let r = registry_target(from)?;
            let (image, _) = crate::registry::pull(
                &store,
                &r,
                &crate::image::spec::Platform::host(),
                &a.tls.options(r.domain())?,
                true,
                &crate::registry::Silent,
            )?;
            (image, r.familiar())
        }
        None => (store.find(from)?, from.to_string()),
    };
    let service = image.config.config.labels.get(crate::snapshot::LABEL_SERVICE).cloned().unwrap_or_default();
    if !service.is_empty() && service != a.service && a.rename.is_none() {
        bail!(UsageError(format!(
            "{reference} is a snapshot of {service}, not {}: restore {service}, or use --as {} to give it that name",
            a.service, a.service
        )));
    }
    let opts = RestoreOptions {
        rename: a.rename.clone(),
        no_start: a.no_start,
        health_timeout: Duration::from_secs(a.health_timeout),
        throwaway: false,
        progress: None,
    };
    let r = crate::snapshot::restore_from_image(&ctx.paths(), &image, &reference, &opts)
        .with_context(|| format!("cannot restore {} from {reference}", a.service))?;
    if a.format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"image": reference, "container": r.container.id, "name": r.container.name,
                "seconds": r.elapsed.as_secs_f64(), "healthy": r.healthy})
            )?
        );
    } else {
        println!("restored {} from {reference} in {:.2} s", r.container.name, r.elapsed.as_secs_f64());
    }
    Ok(if r.healthy == Some(false) { crate::error::FAILURE } else { 0 })
}

pub const DRILL_EXAMPLES: &str = "\
Examples:
  lifeboat drill website                               restore the latest snapshot aside, probe, remove
  lifeboat drill website --http http://localhost:80/   healthy when GET / answers 2xx or 3xx
  lifeboat drill db --command 'mysqladmin ping' --timeout 5m --format json";

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The service whose snapshot to rehearse.
    pub service: String,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Which snapshot: an ID (prefix) or latest.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Healthy when this URL answers 2xx/3xx inside the container (http://localhost:PORT/PATH).
    #[arg(long, conflicts_with = "command")]
    pub http: Option<String>,
    /// Healthy when this command exits 0 inside the container (default: the service's health
    /// check, else: its process is running).
    #[arg(long)]
    pub command: Option<String>,
    /// How long the service may take to become healthy.
    #[arg(long, default_value = "2m", value_parser = crate::config::parse_duration)]
    pub timeout: Duration,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

/// Rehearses a restore without touching the running service.
pub fn drill(ctx: &Context, a: DrillArgs) -> anyhow::Result<i32> {
    let repo = a.repo.open(ctx)?;
    let (id, snap) = snapshot::find(&repo, Some(&a.service), &a.snapshot)?;
    let probe = match (&a.http, &a.command) {
        (Some(url), _) => {
            let (port, path) = crate::config::parse_http_check(url).map_err(UsageError)?;
            crate::snapshot::DrillProbe::Http(port, path)
        }
        (None, Some(cmd)) => crate::snapshot::DrillProbe::Command(cmd.clone()),
        (None, None) => match snap.run_config.get("health").and_then(|h| h.get("command")).and_then(|c| c.as_str()) {
            Some(cmd) => crate::snapshot::DrillProbe::Command(cmd.to_string()),
            None => crate::snapshot::DrillProbe::Running,
        },
    };
    let report = crate::snapshot::drill(&ctx.paths(), &repo, &id, &snap, &probe, a.timeout)?;
    if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.healthy {
        println!(
            "drill of {} from snapshot {}: healthy after {:.2} s (restored in {:.2} s); removed",
            report.service,
            &id[..12],
            report.time_to_healthy_ms.unwrap_or(0) as f64 / 1000.0,
            report.restore_ms as f64 / 1000.0
        );
    } else {
        println!(
            "drill of {} from snapshot {}: FAILED: {}",
            report.service,
            &id[..12],
            report.error.as_deref().unwrap_or("not healthy")
        );
    }
    Ok(if report.healthy { 0 } else { crate::error::FAILURE })
}

pub const MAINT_EXAMPLES: &str = "\
Examples:
  lifeboat check --read-data-subset 10%
  lifeboat forget --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --dry-run
  lifeboat forget website --keep-last 3 --prune
  lifeboat prune
  lifeboat copy --to /mnt/offsite --to-password-file /etc/lifeboat/offsite.pass
  lifeboat diff 3f2a1b4c 9e8d7c6b
  lifeboat key add --new-password-file /root/second.pass";

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Also read and authenticate every stored byte.
    #[arg(long)]
    pub read_data: bool,
    /// Read a random share of the packs, e.g. 10%.
    #[arg(long, value_name = "PERCENT")]
    pub read_data_subset: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Only snapshots of this service (default: every service, each on its own).
    pub service: Option<String>,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long)]
    pub keep_last: Option<usize>,
    #[arg(long)]
    pub keep_hourly: Option<usize>,
    #[arg(long)]
    pub keep_daily: Option<usize>,
    #[arg(long)]
    pub keep_weekly: Option<usize>,
    #[arg(long)]
    pub keep_monthly: Option<usize>,
    #[arg(long)]
    pub keep_yearly: Option<usize>,
    /// Keep everything within this long of the newest snapshot (7d, 12h, 4w, 6m, 1y).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Keep snapshots with this tag.
    #[arg(long)]
    pub keep_tag: Vec<String>,
    /// Show what would be removed, remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Prune afterwards.
    #[arg(long)]
    pub prune: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source repository (default: the --repo / default repository).
    #[command(flatten)]
    pub from: RepoArgs,
    /// Target repository.
    #[arg(long)]
    pub to: String,
    /// Password file of the target repository.
    #[arg(long, env = "LIFEBOAT_TO_PASSWORD_FILE")]
    pub to_password_file: Option<PathBuf>,
    /// Snapshots to copy (default: all that the target lacks).
    pub snapshots: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A container (alone), or the first of two snapshots.
    pub first: String,
    /// The second snapshot.
    pub second: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a password (read from --new-password-file).
    #[command(after_help = MAINT_EXAMPLES)]
    Add {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long)]
        new_password_file: PathBuf,
    },
    /// List the repository's keys.
    #[command(after_help = MAINT_EXAMPLES)]
    List {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Remove a key (not the one in use, not the last).
    #[command(after_help = MAINT_EXAMPLES)]
    Remove {
        name: String,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Change the password in use.
    #[command(after_help = MAINT_EXAMPLES)]
    Passwd {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long)]
        new_password_file: PathBuf,
    },
}

pub fn check(ctx: &Context, a: CheckArgs) -> anyhow::Result<i32> {
    let repo = a.repo.open(ctx)?;
    let fraction = match (&a.read_data_subset, a.read_data) {
        (_, true) => Some(1.0),
        (Some(p), false) => {
            let n: f64 = p
                .trim_end_matches('%')
                .parse()
                .map_err(|_| UsageError(format!("invalid --read-data-subset {p:?} (e.g. 10%)")))?;
            if !(0.0..=100.0).contains(&n) {
                bail!(UsageError(format!("--read-data-subset {p:?} must be between 0% and 100%")));
            }
            Some(n / 100.0)
        }
        (None, false) => None,
    };
    let report = crate::repo::maintenance::check(&repo, fraction)?;
    if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} snapshots, {} packs checked; {} packs ({} blobs) read",
            report.snapshots, report.packs, report.packs_read, report.blobs_read
        );
        for e in &report.errors {
            println!("error: {e}");
        }
        if report.errors.is_empty() {
            println!("no errors were found");
        }
    }
    Ok(if report.errors.is_empty() { 0 } else { crate::error::BAD_INPUT })
}

pub fn forget(ctx: &Context, a: ForgetArgs) -> anyhow::Result<i32> {
    use crate::repo::forget::{Policy, apply, parse_duration};
    let policy = Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within.as_deref().map(parse_duration).transpose().map_err(UsageError)?,
        tags: a.keep_tag.clone(),
    };
    if policy.is_empty() {
        bail!(UsageError(
            "no policy given: refusing to forget every snapshot (use --keep-last, --keep-daily, …)".into()
        ));
    }
    let mut repo = a.repo.open(ctx)?;
    let all = snapshot::list(&repo)?;
    let mut services: Vec<String> = all.iter().map(|(_, s)| s.service.clone()).collect();
    services.sort();
    services.dedup();
    let mut report = Vec::new();
    let mut removed = 0;
    for service in services.iter().filter(|s| a.service.as_deref().is_none_or(|n| n == s.as_str())) {
        let group: Vec<_> = all.iter().filter(|(_, s)| &s.service == service).cloned().collect();
        let decisions = apply(&policy, &group);
        for ((id, s), (keep, reasons)) in group.iter().zip(decisions) {
            report.push(json!({"id": id, "service": service, "time": s.time, "keep": keep, "reasons": reasons}));
            if a.format != OutputFormat::Json {
                let what = if keep { format!("keep    ({})", reasons.join(", ")) } else { "remove".to_string() };
                println!("{}  {}  {:<10}  {what}", &id[..12], s.time, service);
            }
            if !keep {
                removed += 1;
                if !a.dry_run {
                    repo.backend().delete(crate::backend::Kind::Snapshot, id)?;
                }
            }
        }
    }
    if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if a.dry_run { "would remove" } else { "removed" };
        println!("{verb} {removed} snapshots");
    }
    if a.prune && !a.dry_run {
        let stats = crate::repo::maintenance::prune(&mut repo, false)?;
        println!(
            "pruned: {} packs deleted ({} repacked), {} freed",
            stats.packs_deleted,
            stats.packs_repacked,
            human_size(stats.bytes_freed)
        );
    }
    Ok(0)
}

pub fn prune(ctx: &Context, a: PruneArgs) -> anyhow::Result<i32> {
    let mut repo = a.repo.open(ctx)?;
    let stats = crate::repo::maintenance::prune(&mut repo, a.dry_run)?;
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} packs ({} repacked), {} unused blobs, {} freed",
        stats.packs_deleted,
        stats.packs_repacked,
        stats.blobs_removed,
        human_size(stats.bytes_freed)
    );
    Ok(0)
}

pub fn copy(ctx: &Context, a: CopyArgs) -> anyhow::Result<i32> {
    let src = a.from.open(ctx)?;
    let to_args = RepoArgs { repo: Some(a.to.clone()), password_file: a.to_password_file.clone() };
    let mut dst = to_args.open(ctx)?;
    let lock = Lock::acquire(&dst, false)?;
    let existing: Vec<(String, String, String)> =
        snapshot::list(&dst)?.into_iter().map(|(_, s)| (s.service, s.time, s.hostname)).collect();
    let mut map = std::collections::HashMap::new();
    let mut copied = 0;
    for (id, snap) in snapshot::list(&src)? {
        if !a.snapshots.is_empty() && !a.snapshots.iter().any(|p| id.starts_with(p.as_str())) {
            continue;
        }
        if existing.contains(&(snap.service.clone(), snap.time.clone(), snap.hostname.clone())) {
            continue;
        }
        let before = dst.added_bytes();
        let c = crate::repo::maintenance::copy_snapshot(&src, &mut dst, &snap, &mut map)?;
        let new_id = dst.save_object(crate::backend::Kind::Snapshot, &c)?;
        println!(
            "copied snapshot {} of {} as {} ({} added)",
            &id[..12],
            snap.service,
            &new_id[..12],
            human_size(dst.added_bytes() - before)
        );
        copied += 1;
    }
    lock.release(&dst)?;
    println!("{copied} snapshots copied");
    Ok(0)
}

/// `diff CONTAINER` (Docker's A/C/D lines) or `diff SNAPSHOT SNAPSHOT`.
pub fn diff(ctx: &Context, a: DiffArgs) -> anyhow::Result<i32> {
    let Some(second_id) = &a.second else {
        let changes = crate::runtime::commit::diff(&ctx.paths(), &a.first)?;
        if a.format == OutputFormat::Json {
            println!("{}", serde_json::to_string_pretty(&changes)?);
        } else {
            for c in changes {
                println!("{} {}", c.kind, c.path);
            }
        }
        return Ok(0);
    };
    let repo = a.repo.open(ctx)?;
    let (_, first) = snapshot::find(&repo, None, &a.first)?;
    let (_, second) = snapshot::find(&repo, None, second_id)?;
    let changes = crate::repo::maintenance::diff(&repo, &first, &second)?;
    if a.format == OutputFormat::Json {
        let v: Vec<_> = changes.iter().map(|(c, p)| json!({"kind": c.to_string(), "path": p})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (c, path) in changes {
            println!("{c}  {path}");
        }
    }
    Ok(0)
}

pub fn key(ctx: &Context, cmd: KeyCommand) -> anyhow::Result<i32> {
    match cmd {
        KeyCommand::Add { repo, new_password_file } => {
            let r = repo.open(ctx)?;
            let name = r.add_key(&read_password_file(&new_password_file)?)?;
            println!("added key {name}");
        }
        KeyCommand::List { repo } => {
            let r = repo.open(ctx)?;
            let rows: Vec<Vec<String>> = r
                .keys()?
                .into_iter()
                .map(|(n, k, current)| {
                    vec![if current { format!("*{n}") } else { format!(" {n}") }, k.user, k.host, k.created]
                })
                .collect();
            print_table(&[" ID", "USER", "HOST", "CREATED"], &rows);
        }
        KeyCommand::Remove { name, repo } => {
            let r = repo.open(ctx)?;
            r.remove_key(&name)?;
            println!("removed key {name}");
        }
        KeyCommand::Passwd { repo, new_password_file } => {
            let mut r = repo.open(ctx)?;
            r.change_password(&read_password_file(&new_password_file)?)?;
            println!("password changed");
        }
    }
    Ok(0)
}

/// RFC 3339, or a bare date (the end of that day, UTC).
fn parse_time(s: &str) -> anyhow::Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let end = d.and_hms_opt(23, 59, 59).expect("valid time").and_utc();
        return Ok(end.fixed_offset());
    }
    bail!(UsageError(format!("invalid time {s:?}: use RFC 3339 (2026-11-27T02:30:00Z) or a date (2026-11-27)")))
}
