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
  lifeboat repo info --repo /srv/backup --password-file /etc/lifeboat/repo.pass";
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
    #[command(flatten)]
    pub repo: RepoArgs,
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
    /// Restore under another name (volumes get NEWNAME- prefixes).
    #[arg(long = "as", value_name = "NEWNAME")]
    pub rename: Option<String>,
    /// Recreate the container but do not start it.
    #[arg(long)]
    pub no_start: bool,
    /// Seconds to wait for the service's health check.
    #[arg(long, default_value_t = 60)]
    pub health_timeout: u64,
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

fn prompt(msg: &str) -> anyhow::Result<Vec<u8>> {
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
        RepoCommand::Unlock { repo, all } => {
            let r = repo.open(ctx)?;
            let n = Lock::remove_stale(&r, all)?;
            println!("removed {n} locks");
        }
    }
    Ok(0)
}

pub fn snapshot(ctx: &Context, a: SnapshotArgs) -> anyhow::Result<i32> {
    let mut repo = a.repo.open(ctx)?;
    let opts =
        CaptureOptions { tags: a.tags, exec_before: a.exec_before, exec_after: a.exec_after, no_volumes: a.no_volumes };
    let (id, snap) = crate::snapshot::capture(&ctx.paths(), &mut repo, &a.container, &opts)
        .with_context(|| format!("cannot snapshot {}", a.container))?;
    if a.format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"id": id, "service": snap.service, "time": snap.time, "stats": snap.stats})
            )?
        );
    } else {
        let s = snap.stats;
        println!(
            "snapshot {} of {} saved: {} files, {}, {} read, {} added, frozen {} ms, {:.2} s",
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
    Ok(0)
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
    let repo = a.repo.open(ctx)?;
    let (id, snap) = snapshot::find(&repo, Some(&a.service), &a.snapshot)?;
    let opts = RestoreOptions {
        rename: a.rename,
        no_start: a.no_start,
        health_timeout: Duration::from_secs(a.health_timeout),
    };
    let r = crate::snapshot::restore(&ctx.paths(), &repo, &id, &snap, &opts)
        .with_context(|| format!("cannot restore {}", a.service))?;
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
