//! Repository and snapshot commands: repo init/info/unlock, snapshot, snapshots, restore.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::Context;
use super::output::{OutputFormat, human_size, print_table, sorted_json};
use lifeboat::ops::backup::{self, Access, RepoSpec};
use lifeboat::snapshot::{CaptureOptions, RestoreOptions};

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
  lifeboat restore website --as website-test --no-start
  lifeboat restore website --include /var/www/page.html --in-place
                                                      one file back into the running service
  lifeboat restore website --at 2026-12-01 --include '/var/www/**/*.php' --target /tmp/old
                                                      files into a directory (DIR/var/www/…)
  lifeboat restore wordpress --to docker://          back into Docker (image, volumes, container)";

pub const ADOPT_EXAMPLES: &str = "\
Examples:
  lifeboat adopt docker://wordpress        Docker's service now runs under Lifeboat, with its data
  lifeboat adopt --back wordpress          and back to Docker, with the data as it is now";

/// `adopt docker://NAME` | `adopt --back NAME`.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The container to move: docker://NAME or podman://NAME; with --back, the service's name.
    #[arg(value_name = "docker://NAME")]
    pub target: String,
    /// Send an adopted service back to its engine, with its data as it is now.
    #[arg(long)]
    pub back: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Seconds to wait for the restored service's health check.
    #[arg(long, default_value_t = 60)]
    pub health_timeout: u64,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

pub fn adopt(ctx: &Context, a: AdoptArgs) -> anyhow::Result<i32> {
    let json = a.format.machine();
    if a.back {
        let r = a.repo.with(ctx, Some(&a.target), |r| lifeboat::ops::adopt::give_back(ctx.host(), r, &a.target))?;
        if json {
            println!("{}", sorted_json(&r)?);
        } else if r.undone {
            println!("the adoption of {} that did not finish was undone: {} runs it as before", r.name, r.engine);
        } else {
            println!(
                "{} runs under {} again (container {}, from snapshot {}); unavailable for {:.2} s",
                r.name,
                r.engine,
                r.container.get(..12).unwrap_or(&r.container),
                r.snapshot.as_deref().and_then(|s| s.get(..12)).unwrap_or("?"),
                r.unavailable_seconds
            );
        }
        return Ok(0);
    }
    let name = a.target.rsplit('/').next().unwrap_or(&a.target).to_string();
    let timeout = Duration::from_secs(a.health_timeout);
    let r = a.repo.with(ctx, Some(&name), |r| lifeboat::ops::adopt::adopt(ctx.host(), r, &a.target, timeout))?;
    if json {
        println!("{}", sorted_json(&r)?);
    } else {
        println!(
            "{} runs under Lifeboat (from snapshot {}); unavailable for {:.2} s; {}'s container is kept, stopped \
             (lifeboat adopt --back {} returns it)",
            r.name,
            r.snapshot.get(..12).unwrap_or(&r.snapshot),
            r.unavailable_seconds,
            r.engine,
            r.name
        );
    }
    Ok(0)
}

/// Where the repository is and how to open it.
#[derive(Debug, Args, Clone)]
pub struct RepoArgs {
    /// Repository location: a path (default: <root>/repository).
    #[arg(long, env = "LIFEBOAT_REPOSITORY")]
    pub repo: Option<String>,
    /// File holding the repository password (else a configured repository's own, else
    /// LIFEBOAT_PASSWORD_FILE).
    #[arg(long)]
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

/// `--stack NAME` or `--compose FILE`: the services of a stack of the configuration, or the
/// containers of a Compose project, as if named.
#[derive(Debug, Args)]
pub struct StackArg {
    /// A stack of the configuration ([stacks.NAME]): its services, as if named one by one.
    #[arg(long, value_name = "NAME", conflicts_with = "compose")]
    pub stack: Option<String>,
    /// A Compose project (its file, or a directory holding one): its containers, as if
    /// named one by one, with their `lifeboat.consistency` labels as recipes.
    #[arg(long, value_name = "FILE")]
    pub compose: Option<PathBuf>,
}

impl StackArg {
    /// The services named, or the stack's or project's, with the consistency recipes their
    /// definitions give (`SERVICE=RECIPE`; None when nothing defines them).
    fn services(&self, ctx: &Context, named: &[String]) -> anyhow::Result<(Vec<String>, Option<Vec<String>>)> {
        if let Some(file) = &self.compose {
            let args = super::compose::ProjectArgs { file: Some(file.clone()), project: None };
            let project = args.load(lifeboat::compose::Keys::Warn)?;
            let names = project.services.iter().map(|s| s.container.clone()).collect();
            let recipes = project
                .services
                .iter()
                .filter_map(|s| Some(format!("{}={}", s.container, s.consistency.as_ref()?)))
                .collect();
            return Ok((names, Some(recipes)));
        }
        let Some(stack) = &self.stack else { return Ok((named.to_vec(), None)) };
        let config = ctx.config()?;
        let names = config.stack_services(stack)?;
        let recipes = config.recipes(&names);
        Ok((names, Some(recipes)))
    }
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The containers (services) to snapshot; several are frozen together, at one instant
    /// (a stack: a database and the application that writes to it). A container run by
    /// Docker or Podman on this host: docker://NAME, docker://PROJECT/SERVICE (a Compose
    /// project's service), docker://PROJECT/* (all of it); podman://… alike.
    #[arg(required_unless_present_any = ["stack", "compose"], conflicts_with_all = ["stack", "compose"], value_name = "SERVICE", add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub containers: Vec<String>,
    /// The stack's members' consistency recipes in the configuration apply, unless
    /// --consistency is given.
    #[command(flatten)]
    pub stack: StackArg,
    /// Repository locations (repeatable: the snapshot goes to each; default: <root>/repository).
    #[arg(long = "repo", env = "LIFEBOAT_REPOSITORY")]
    pub repos: Vec<String>,
    /// Password files, one per --repo in the same order (or one for all); else a configured
    /// repository's own, else LIFEBOAT_PASSWORD_FILE.
    #[arg(long = "password-file")]
    pub password_files: Vec<PathBuf>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Run this inside the container before capturing (e.g. a database dump); failure aborts.
    /// With several services: inside each.
    #[arg(long)]
    pub exec_before: Vec<String>,
    /// Run this inside the container after capturing.
    #[arg(long)]
    pub exec_after: Vec<String>,
    /// How the data is made consistent for the freeze: freeze (the default), mariadb,
    /// postgres or sqlite:/path/db; SERVICE=RECIPE for one of several services.
    #[arg(long, value_name = "RECIPE")]
    pub consistency: Vec<String>,
    /// Do not capture named volumes.
    #[arg(long)]
    pub no_volumes: bool,
    /// Files named like PATTERN are a database's pages of SIZE bytes (`*.ibd=16k`): cut at
    /// page boundaries, so a page rewritten in place adds about one page. SQLite, InnoDB and
    /// PostgreSQL files are known by their headers without this. Repeatable.
    #[arg(long, value_name = "PATTERN=SIZE", value_parser = lifeboat::repo::PageRules::parse_rule)]
    pub pages: Vec<(String, u32)>,
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
    /// The same as --format json (restic's habit).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots of this service.
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub service: Option<String>,
    /// Only snapshots with these tags (a,b: both; the flag again: either).
    #[arg(long, value_name = "TAG[,TAG…]")]
    pub tag: Vec<String>,
    /// Only snapshots taken on this host (again: either).
    #[arg(long, value_name = "HOSTNAME")]
    pub host: Vec<String>,
    /// Only the newest N snapshots of each service.
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    #[command(flatten)]
    pub repo: RepoArgs,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// The same as --format json (restic's habit).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The service to bring back; several: from snapshots taken together (a stack), each
    /// after the one whose network it joins.
    #[arg(required_unless_present_any = ["stack", "compose"], conflicts_with_all = ["stack", "compose"], value_name = "SERVICE", add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub services: Vec<String>,
    #[command(flatten)]
    pub stack: StackArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Which snapshot: an ID (prefix) or latest.
    #[arg(long, default_value = "latest", add = clap_complete::ArgValueCandidates::new(super::complete::snapshots))]
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
    /// Roll the running service (or stack) back in place: the current containers and volumes
    /// are kept aside until the restored ones are up and healthy, then removed (or put back
    /// if the restore fails).
    #[arg(long, conflicts_with_all = ["rename", "no_start", "from"])]
    pub replace: bool,
    /// Seconds to wait for the service's health check.
    #[arg(long, default_value_t = 60)]
    pub health_timeout: u64,
    /// Restore from a snapshot image in a registry (registry://HOST/REPO:TAG) or the local
    /// store, instead of a repository.
    #[arg(long, value_name = "registry://HOST/REPO:TAG", conflicts_with_all = ["snapshot", "at"])]
    pub from: Option<String>,
    #[command(flatten)]
    pub tls: super::registry::TlsArgs,
    /// Restore only these paths (as the service saw them; wildcards, ** spans directories),
    /// with --target or --in-place. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub include: Vec<String>,
    /// Leave these paths out (wildcards as --include). Repeatable.
    #[arg(long, value_name = "PATH")]
    pub exclude: Vec<String>,
    /// Write the files into this directory (DIR/var/www/…) instead of recreating the service.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["in_place", "rename", "no_start", "replace", "from"])]
    pub target: Option<PathBuf>,
    /// Put the files back into the service's own container (its volumes and layer), running or
    /// not; a running one is frozen only while the files are moved into place.
    #[arg(long, conflicts_with_all = ["rename", "no_start", "replace", "from"])]
    pub in_place: bool,
    /// With --target or --in-place: replace files that exist (by default they are kept,
    /// being newer than the snapshot or someone's work).
    #[arg(long)]
    pub overwrite: bool,
    /// Start the service at once on its snapshot, its volumes' data fetched as it is read,
    /// and fill them in the background (hot files first); once every file is in, the
    /// service is restarted once on plain volumes. `lifeboat ps` shows the progress.
    #[arg(long, conflicts_with_all = ["target", "in_place", "from", "replace"])]
    pub instant: bool,
    /// Take up an instant restore whose hydrator died (the host rebooted, it was killed):
    /// the service restarts and the copy goes on from where it was.
    #[arg(long, conflicts_with_all = ["target", "in_place", "from", "replace", "instant", "undo", "rename", "no_start"])]
    pub finish: bool,
    /// Undo an instant restore that did not finish: remove the service and the volumes made
    /// for it.
    #[arg(long, conflicts_with_all = ["target", "in_place", "from", "replace", "instant", "rename", "no_start"])]
    pub undo: bool,
    /// Bring the service back into Docker or Podman on this host (docker:// or podman://)
    /// instead of Lifeboat's runtime: image, volumes and container made there.
    #[arg(long, value_name = "docker://", conflicts_with_all = ["target", "in_place", "from", "replace", "instant", "finish", "undo"])]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// The same as --format json (restic's habit).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

impl RepoArgs {
    /// The repository meant: `--repo NAME` of the configuration's, a location, or (none
    /// given) `service`'s own repository in the configuration, else the host's default one.
    pub fn spec(&self, ctx: &Context, service: Option<&str>) -> anyhow::Result<RepoSpec> {
        let mut specs = configured(ctx, self.repo.as_slice(), self.password_file.as_slice(), service.as_slice())?;
        Ok(specs.remove(0))
    }

    /// Runs `f` with this repository's access (the prompt for a password at a terminal).
    pub fn with<T>(
        &self,
        ctx: &Context,
        service: Option<&str>,
        f: impl FnOnce(Access) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let spec = self.spec(ctx, service)?;
        f(Access { spec: &spec, ask: &ask_password })
    }
}

/// The repositories `--repo`s (and their `--password-file`s) name, with the configuration's
/// names resolved; none named: the configured repositories of the first of `services` that
/// has any, else the host's default one.
pub fn configured(
    ctx: &Context,
    repos: &[String],
    password_files: &[PathBuf],
    services: &[&str],
) -> anyhow::Result<Vec<RepoSpec>> {
    let config = backup::ConfigPlace {
        path: &ctx.config_path,
        named: ctx.config_named(),
        consult: std::env::var_os(lifeboat::agent::STEP_ENV).is_none(),
    };
    // The environment's password file is the last resort: a configured repository's own
    // file wins over it (a flag wins over both).
    let fallback = std::env::var_os("LIFEBOAT_PASSWORD_FILE").filter(|f| !f.is_empty()).map(PathBuf::from);
    backup::configured_repositories(&config, repos, password_files, fallback.as_deref(), services)
}

/// The password from the person at the terminal, if there is one.
fn ask_password() -> anyhow::Result<Option<Vec<u8>>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    Ok(Some(lifeboat::runtime::tty::prompt("repository password: ")?))
}

pub fn repo(ctx: &Context, cmd: RepoCommand) -> anyhow::Result<i32> {
    match cmd {
        RepoCommand::Init { repo } => {
            let (id, location) = repo.spec(ctx, None)?.init(ctx.host(), &ask_password)?;
            println!("created repository {id} at {location}");
        }
        RepoCommand::Info { repo, format } => {
            let info = repo.with(ctx, None, |a| backup::info(ctx.host(), a))?;
            if format == OutputFormat::Json {
                println!("{}", sorted_json(&info)?);
            } else {
                println!("repository {} at {}", info.id, info.location);
                println!(
                    "format version {}, {} snapshots, {} blobs in {} packs, {}",
                    info.version,
                    info.snapshots,
                    info.blobs,
                    info.packs,
                    human_size(info.pack_bytes)
                );
            }
        }
        RepoCommand::Stats { repo, format } => {
            let st = repo.with(ctx, None, |a| backup::stats(ctx.host(), a))?;
            if format == OutputFormat::Json {
                println!("{}", sorted_json(&st)?);
            } else {
                println!("{} snapshots of {} in total", st.snapshots, human_size(st.logical_bytes));
                println!(
                    "unique data: {} in {} blobs, stored as {} (compressed, encrypted)",
                    human_size(st.unique_bytes),
                    st.blobs,
                    human_size(st.stored_bytes)
                );
                println!("space saving: {:.1}x", st.ratio);
            }
        }
        RepoCommand::Unlock { repo, all } => {
            let n = repo.with(ctx, None, |a| backup::unlock(ctx.host(), a, all))?;
            println!("removed {n} locks");
        }
    }
    Ok(0)
}

pub fn snapshot(ctx: &Context, a: SnapshotArgs) -> anyhow::Result<i32> {
    let began = std::time::Instant::now();
    let (containers, recipes) = a.stack.services(ctx, &a.containers)?;
    let named: Vec<&str> = containers.iter().map(String::as_str).collect();
    let repositories = configured(ctx, &a.repos, &a.password_files, &named)?;
    let consistency = match recipes {
        Some(recipes) if a.consistency.is_empty() => recipes,
        _ => a.consistency.clone(),
    };
    let services = backup::service_plans(&containers, &a.exec_before, &a.exec_after, &consistency)?;
    let json = a.format.machine();
    let spinner = super::progress::Activity::new(json);
    // The totals to expect arrive once the parents are known; the line then shows how far.
    let expected = std::sync::Arc::new(std::sync::Mutex::new(None));
    // Never backwards: a first snapshot reads its service twice (a copy while it runs, then
    // the changes while frozen), and the second pass counts from the image again. With
    // several --repo, each capture tells its totals anew: the mark starts over then.
    let furthest = std::sync::Arc::new(std::sync::Mutex::new(lifeboat::repo::tree::ArchiveStats::default()));
    let progress: Option<lifeboat::repo::tree::ProgressFn> = spinner.bar().map(|bar| {
        let name = containers.join("+");
        let expected = expected.clone();
        let started = std::time::Instant::now();
        let furthest = furthest.clone();
        std::sync::Arc::new(move |s: &lifeboat::repo::tree::ArchiveStats| {
            let total = *expected.lock().unwrap_or_else(|e| e.into_inner());
            let mut far = furthest.lock().unwrap_or_else(|e| e.into_inner());
            if s.bytes >= far.bytes {
                *far = *s;
            }
            bar.set_message(super::progress::snapshot_line(&name, &far, total, started.elapsed()))
        }) as lifeboat::repo::tree::ProgressFn
    });
    let tell_expected = progress.as_ref().map(|_| {
        let (expected, furthest) = (expected.clone(), furthest.clone());
        std::sync::Arc::new(move |t: lifeboat::repo::tree::ArchiveStats| {
            *expected.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
            *furthest.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
        }) as std::sync::Arc<dyn Fn(lifeboat::repo::tree::ArchiveStats) + Send + Sync>
    });
    let push = match &a.to {
        Some(to) => Some((to.clone(), a.tls.request())),
        None => None,
    };
    let transfers = super::progress::Transfers::new(json);
    let req = backup::SnapshotRequest {
        services,
        repositories,
        capture: CaptureOptions {
            tags: a.tags,
            no_volumes: a.no_volumes,
            progress,
            // The agent's steps name configured services: exactly those.
            exact_names: std::env::var_os(lifeboat::agent::STEP_ENV).is_some(),
            expected: tell_expected,
            pages: lifeboat::repo::PageRules { by_name: a.pages },
        },
        local_image: !a.no_image,
        push,
        ask: &ask_password,
        transfers: &transfers,
    };
    let reports = backup::take_snapshot(ctx.host(), &req)?;
    drop(spinner);
    if a.format == OutputFormat::Job {
        let report = lifeboat::report::JobReport::new(lifeboat::report::JobBody::Snapshots(reports));
        println!("{}", serde_json::to_string(&report)?);
        return Ok(0);
    }
    if json {
        let out = if reports.len() == 1 { serde_json::to_value(&reports[0])? } else { serde_json::to_value(&reports)? };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for r in &reports {
        let s = &r.stats;
        println!(
            "snapshot {} of {} saved to {}: {} files, {}, {} read, {} added, frozen {} ms, captured in {:.2} s",
            &r.id[..12],
            r.service,
            r.repository,
            s.files,
            human_size(s.bytes),
            s.files_read,
            human_size(s.added_bytes),
            s.frozen_ms,
            s.duration_ms as f64 / 1000.0
        );
    }
    // The whole command: the capture, the local image, a push, every repository.
    println!("done in {:.2} s", began.elapsed().as_secs_f64());
    if let Some(name) = reports.first().and_then(|r| r.image.as_ref()) {
        println!("local image {name} (lifeboat run {name} starts the service as it was)");
    }
    if let Some(p) = reports.first().and_then(|r| r.pushed.as_ref()) {
        println!("pushed {p} (docker run / podman run serve it with its data; lifeboat restore --from registry://{p})");
    }
    Ok(0)
}

pub fn snapshots(ctx: &Context, a: SnapshotsArgs) -> anyhow::Result<i32> {
    let filter = backup::SnapshotFilter {
        service: a.service.clone(),
        tags: a.tag.clone(),
        hosts: a.host.clone(),
        latest: a.latest,
    };
    let list = a.repo.with(ctx, a.service.as_deref(), |r| backup::list(ctx.host(), r, &filter))?;
    if a.format == OutputFormat::Json || a.json {
        println!("{}", sorted_json(&list)?);
        return Ok(0);
    }
    // A stack snapshot is one row: its services joined (in the order they were named), its
    // sizes added up.
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut stacks: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut sums: Vec<(u64, u64)> = Vec::new();
    for s in &list {
        if let Some(stack) = &s.stack
            && let Some(&row) = stacks.get(&stack.id)
        {
            sums[row].0 += s.stats.bytes;
            sums[row].1 += s.stats.added_bytes;
            continue;
        }
        if let Some(stack) = &s.stack {
            stacks.insert(stack.id.clone(), rows.len());
        }
        let time = chrono::DateTime::parse_from_rfc3339(&s.time)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| s.time.clone());
        rows.push(vec![
            s.id[..12].to_string(),
            time,
            s.stack.as_ref().map(|st| st.services.join("+")).unwrap_or_else(|| s.service.clone()),
            s.host.clone(),
            String::new(),
            String::new(),
            s.tags.join(","),
        ]);
        sums.push((s.stats.bytes, s.stats.added_bytes));
    }
    for (row, (bytes, added)) in rows.iter_mut().zip(sums) {
        row[4] = human_size(bytes);
        row[5] = human_size(added);
    }
    print_table(&["ID", "TIME", "SERVICE", "HOST", "SIZE", "ADDED", "TAGS"], &rows);
    Ok(0)
}

pub fn restore(ctx: &Context, mut a: RestoreArgs) -> anyhow::Result<i32> {
    let json = a.format == OutputFormat::Json;
    a.services = a.stack.services(ctx, &a.services)?.0;
    let service = a.services[0].clone();
    if a.target.is_some() || a.in_place {
        return restore_paths(ctx, a);
    }
    if a.finish || a.undo {
        if a.services.len() > 1 {
            return Err(lifeboat::error::UsageError("--finish and --undo take one service".into()).into());
        }
        if a.undo {
            let volumes = lifeboat::snapshot::instant::undo(ctx.host(), &service)?;
            if json {
                println!("{}", sorted_json(&serde_json::json!({"name": service, "volumes_removed": volumes}))?);
            } else {
                println!("removed {service} and its volumes ({})", volumes.join(", "));
            }
            return Ok(0);
        }
        let f = a.repo.with(ctx, Some(&service), |r| backup::finish_instant(ctx.host(), r, &service))?;
        if json {
            println!("{}", sorted_json(&f)?);
        } else {
            println!("{} runs again; hydration goes on from {}% (lifeboat ps shows its progress)", f.name, f.percent);
        }
        return Ok(0);
    }
    if !a.include.is_empty() || !a.exclude.is_empty() || a.overwrite {
        return Err(lifeboat::error::UsageError(
            "--include, --exclude and --overwrite restore files: say where, with --target DIR or --in-place".into(),
        )
        .into());
    }
    if let Some(to) = &a.to {
        if a.services.len() > 1 {
            return Err(lifeboat::error::UsageError("--to restores one service".into()).into());
        }
        let selection = backup::Selection { which: a.snapshot.clone(), at: a.at.clone() };
        let r = a.repo.with(ctx, Some(&service), |r| {
            backup::restore_to_engine(ctx.host(), r, &service, &selection, to, a.rename.as_deref(), !a.no_start)
        })?;
        if json {
            println!("{}", sorted_json(&r)?);
        } else {
            println!(
                "restored {} into {} as container {} in {:.2} s{}",
                r.name,
                r.engine,
                r.container.get(..12).unwrap_or(&r.container),
                r.seconds,
                if r.started { "" } else { " (not started)" }
            );
        }
        return Ok(0);
    }
    if a.services.len() > 1 && a.from.is_some() {
        return Err(lifeboat::error::UsageError("--from restores one service".into()).into());
    }
    if let Some(from) = &a.from {
        let opts = RestoreOptions {
            rename: a.rename.clone(),
            no_start: a.no_start,
            health_timeout: Duration::from_secs(a.health_timeout),
            throwaway: false,
            progress: None,
            peers: Default::default(),
            instant: false,
            network_key: None,
        };
        let r = backup::restore_from_image(ctx.host(), &service, from, &a.tls.request(), &opts)?;
        if json {
            println!("{}", sorted_json(&r)?);
        } else {
            println!("restored {} from {} in {:.2} s", r.name, r.image, r.seconds);
        }
        return Ok(if r.healthy == Some(false) { lifeboat::error::FAILURE } else { 0 });
    }
    let spinner = super::progress::Activity::new(json);
    let opts = RestoreOptions {
        rename: a.rename,
        no_start: a.no_start,
        health_timeout: Duration::from_secs(a.health_timeout),
        throwaway: false,
        peers: Default::default(),
        instant: a.instant,
        network_key: None,
        progress: spinner.bar().map(|bar| {
            // Several services restore one after another, each with its own total: the line
            // says which one it is on.
            let (names, several) = (a.services.clone(), a.services.len() > 1);
            let started = std::time::Instant::now();
            let on = std::sync::Mutex::new((0usize, 0u64, 0u64)); // (service, its total, bytes seen)
            std::sync::Arc::new(move |s: &lifeboat::repo::tree::RestoreStats| {
                let mut on = on.lock().unwrap_or_else(|e| e.into_inner());
                if several && (s.expected_bytes != on.1 || s.bytes < on.2) && on.2 > 0 {
                    on.0 = (on.0 + 1).min(names.len() - 1);
                }
                (on.1, on.2) = (s.expected_bytes, s.bytes);
                let name = if several {
                    format!("{} ({} of {})", names[on.0], on.0 + 1, names.len())
                } else {
                    names[0].clone()
                };
                bar.set_message(super::progress::restore_line(&name, s, started.elapsed()))
            }) as lifeboat::repo::tree::RestoreProgressFn
        }),
    };
    let selection = backup::Selection { which: a.snapshot.clone(), at: a.at.clone() };
    let reports = if a.replace {
        a.repo.with(ctx, a.services.first().map(String::as_str), |r| {
            backup::restore_replacing(ctx.host(), r, &a.services, &selection, &opts)
        })?
    } else if a.services.len() == 1 {
        vec![a.repo.with(ctx, Some(&service), |r| backup::restore(ctx.host(), r, &service, &selection, &opts))?]
    } else {
        a.repo.with(ctx, a.services.first().map(String::as_str), |r| {
            backup::restore_stack(ctx.host(), r, &a.services, &selection, &opts)
        })?
    };
    drop(spinner);
    if json {
        let out = if reports.len() == 1 { sorted_json(&reports[0])? } else { sorted_json(&reports)? };
        println!("{out}");
    } else {
        for r in &reports {
            let health = match r.healthy {
                Some(true) => ", healthy",
                Some(false) => ", NOT healthy yet",
                None => "",
            };
            let state = if opts.no_start { "created" } else { "running" };
            let filling =
                if r.hydrating { "; its volumes fill in the background: lifeboat ps shows how far" } else { "" };
            println!(
                "restored {} from snapshot {} in {:.2} s ({state}{health}{filling})",
                r.name,
                &r.snapshot[..12],
                r.seconds
            );
        }
    }
    Ok(if reports.iter().any(|r| r.healthy == Some(false)) { lifeboat::error::FAILURE } else { 0 })
}

/// `restore SERVICE (--target DIR | --in-place) [--include …]`: files, not the service.
fn restore_paths(ctx: &Context, a: RestoreArgs) -> anyhow::Result<i32> {
    use lifeboat::snapshot::partial::{PartialOptions, PartialTarget};
    if a.services.len() > 1 {
        return Err(lifeboat::error::UsageError("--target and --in-place restore one service's files".into()).into());
    }
    let service = &a.services[0];
    let opts = PartialOptions {
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        overwrite: a.overwrite,
        target: match &a.target {
            Some(dir) => PartialTarget::Dir(dir.clone()),
            None => PartialTarget::InPlace,
        },
    };
    let selection = backup::Selection { which: a.snapshot.clone(), at: a.at.clone() };
    let spinner = super::progress::Activity::new(a.format == OutputFormat::Json);
    let r = a.repo.with(ctx, Some(service), |r| {
        lifeboat::ops::browse::restore_paths(ctx.host(), r, service, &selection, &opts)
    })?;
    drop(spinner);
    let m = &r.merged;
    let code = if m.failed.is_empty() { 0 } else { lifeboat::error::FAILURE };
    if a.format == OutputFormat::Json {
        println!("{}", sorted_json(&r)?);
        return Ok(code);
    }
    let frozen = r.frozen_ms.map(|ms| format!(", frozen {ms} ms")).unwrap_or_default();
    println!(
        "restored {} entries ({}) of {} from snapshot {} into {} in {:.2} s: {} placed, {} replaced, {} kept{frozen}",
        r.entries,
        super::output::human_size(r.bytes),
        r.service,
        &r.snapshot[..12.min(r.snapshot.len())],
        r.target,
        r.seconds,
        m.placed,
        m.replaced,
        m.kept
    );
    if m.kept > 0 {
        eprintln!("kept as they are (--overwrite replaces what exists):");
        for l in &m.kept_paths {
            eprintln!("  {} ({})", l.path.display(), l.why);
        }
        if m.kept as usize > m.kept_paths.len() {
            eprintln!("  … and {} more", m.kept as usize - m.kept_paths.len());
        }
    }
    if !m.failed.is_empty() {
        eprintln!("could not be put in place ({}; the rest was):", m.failed.len());
        for l in &m.failed {
            eprintln!("  {}: {}", l.path.display(), l.why);
        }
    }
    Ok(code)
}

pub const DRILL_EXAMPLES: &str = "\
Examples:
  lifeboat drill website                               restore the latest snapshot aside, probe, remove
  lifeboat drill website --http http://localhost:80/   healthy when GET / answers 2xx or 3xx
  lifeboat drill db --command 'mysqladmin ping' --timeout 5m --format json";

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The service whose snapshot to rehearse; several: a stack's snapshot (taken together),
    /// each restored aside after the one whose network it joins, each checked by its own
    /// health check; --http or --command checks the last one named.
    #[arg(required_unless_present_any = ["stack", "compose"], conflicts_with_all = ["stack", "compose"], value_name = "SERVICE", add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub services: Vec<String>,
    #[command(flatten)]
    pub stack: StackArg,
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Which snapshot: an ID (prefix) or latest.
    #[arg(long, default_value = "latest", add = clap_complete::ArgValueCandidates::new(super::complete::snapshots))]
    pub snapshot: String,
    /// Healthy when this URL answers 2xx/3xx inside the container (http://localhost:PORT/PATH).
    #[arg(long, conflicts_with = "command")]
    pub http: Option<String>,
    /// Healthy when this command exits 0 inside the container (default: the service's health
    /// check, else: its process is running).
    #[arg(long)]
    pub command: Option<String>,
    /// How long the service may take to become healthy.
    #[arg(long, default_value = "2m", value_parser = lifeboat::syntax::duration)]
    pub timeout: Duration,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// The same as --format json (restic's habit).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// Rehearses a restore without touching the running service.
pub fn drill(ctx: &Context, a: DrillArgs) -> anyhow::Result<i32> {
    let probe = match (&a.http, &a.command) {
        (Some(url), _) => backup::ProbeSpec::Http(url.clone()),
        (None, Some(cmd)) => backup::ProbeSpec::Command(cmd.clone()),
        (None, None) => backup::ProbeSpec::Default,
    };
    let services = a.stack.services(ctx, &a.services)?.0;
    let report = a.repo.with(ctx, services.first().map(String::as_str), |r| {
        backup::drill(ctx.host(), r, &services, &a.snapshot, &probe, a.timeout)
    })?;
    let id = report.snapshot.clone();
    let healthy = report.healthy;
    if a.format == OutputFormat::Job {
        println!(
            "{}",
            serde_json::to_string(&lifeboat::report::JobReport::new(lifeboat::report::JobBody::Drill(report)))?
        );
        return Ok(if healthy { 0 } else { lifeboat::error::FAILURE });
    }
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
    Ok(if report.healthy { 0 } else { lifeboat::error::FAILURE })
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
    /// The same as --format json (restic's habit).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Only snapshots of this service (default: every service, each on its own).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::services))]
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
    /// Keep everything within this long of the newest snapshot, as restic writes it: 7d, 12h,
    /// 4w, 6m (months), 1y2m.
    #[arg(long, value_parser = lifeboat::repo::forget::Within::parse)]
    pub keep_within: Option<lifeboat::repo::forget::Within>,
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
    /// The same as --format json (restic's habit).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
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
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::snapshots))]
    pub snapshots: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A container (alone), or the first of two snapshots; SNAPSHOT:PATH compares one file
    /// or directory (a unified diff for text files).
    pub first: String,
    /// The second snapshot (or SNAPSHOT:PATH).
    pub second: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// The same as --format json (restic's habit).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
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
    let report =
        a.repo.with(ctx, None, |r| backup::check(ctx.host(), r, a.read_data, a.read_data_subset.as_deref()))?;
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
    Ok(if report.errors.is_empty() { 0 } else { lifeboat::error::BAD_INPUT })
}

pub fn forget(ctx: &Context, a: ForgetArgs) -> anyhow::Result<i32> {
    let policy = lifeboat::repo::forget::Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within,
        tags: a.keep_tag.clone(),
    };
    let report = a.repo.with(ctx, a.service.as_deref(), |r| {
        backup::forget(ctx.host(), r, a.service.as_deref(), &policy, a.dry_run, a.prune)
    })?;
    if a.format == OutputFormat::Json {
        println!("{}", sorted_json(&report.decisions)?);
    } else {
        for d in &report.decisions {
            let what = if d.keep { format!("keep    ({})", d.reasons.join(", ")) } else { "remove".to_string() };
            println!("{}  {}  {:<10}  {what}", &d.id[..12], d.time, d.service);
        }
        let verb = if a.dry_run { "would remove" } else { "removed" };
        println!("{verb} {} snapshots", report.decisions.iter().filter(|d| !d.keep).count());
    }
    if let Some(stats) = &report.pruned {
        println!(
            "pruned: {} packs deleted ({} repacked), {} freed",
            stats.packs_deleted,
            stats.packs_repacked,
            human_size(stats.bytes_freed)
        );
    }
    match report.prune_failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

pub fn prune(ctx: &Context, a: PruneArgs) -> anyhow::Result<i32> {
    let stats = a.repo.with(ctx, None, |r| backup::prune(ctx.host(), r, a.dry_run))?;
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
    let to = RepoArgs { repo: Some(a.to.clone()), password_file: a.to_password_file.clone() };
    let copied = a.from.with(ctx, None, |from| {
        to.with(ctx, None, |to| {
            backup::copy(ctx.host(), from, to, &a.snapshots, &mut |c| {
                println!(
                    "copied snapshot {} of {} as {} ({} added)",
                    &c.id[..12],
                    c.service,
                    &c.new_id[..12],
                    human_size(c.added_bytes)
                );
            })
        })
    })?;
    println!("{} snapshots copied", copied.len());
    Ok(0)
}

/// `diff CONTAINER` (Docker's A/C/D lines) or `diff SNAPSHOT SNAPSHOT`.
pub fn diff(ctx: &Context, a: DiffArgs) -> anyhow::Result<i32> {
    if let Some(second) = &a.second
        && (a.first.contains(':') || second.contains(':'))
    {
        return diff_paths(ctx, &a, second);
    }
    let Some(second) = &a.second else {
        let changes = lifeboat::ops::containers::diff(ctx.host(), &a.first)?;
        if a.format == OutputFormat::Json {
            println!("{}", serde_json::to_string_pretty(&changes)?);
        } else {
            for c in changes {
                println!("{} {}", c.kind, c.path);
            }
        }
        return Ok(0);
    };
    let changes = a.repo.with(ctx, None, |r| backup::diff(ctx.host(), r, &a.first, second))?;
    if a.format == OutputFormat::Json {
        println!("{}", sorted_json(&changes)?);
    } else {
        for c in changes {
            println!("{}  {}", c.kind, c.path);
        }
    }
    Ok(0)
}

/// `diff A:PATH B:PATH`: one file or directory in two snapshots.
fn diff_paths(ctx: &Context, a: &DiffArgs, second: &str) -> anyhow::Result<i32> {
    use lifeboat::ops::browse::{self, Address, PathDiff};
    let (first, second) = (Address::parse(&a.first)?, Address::parse(second)?);
    let d = a.repo.with(ctx, first.service(), |r| browse::diff_paths(ctx.host(), r, &first, &second))?;
    if a.format == OutputFormat::Json {
        println!("{}", sorted_json(&d)?);
        return Ok(0);
    }
    match d {
        PathDiff::Same => eprintln!("no difference"),
        PathDiff::Text { unified } => print!("{unified}"),
        PathDiff::Binary { first_size, second_size } => {
            println!("the files differ ({first_size} and {second_size} bytes; not both text)")
        }
        PathDiff::Metadata { first, second } => println!(
            "same content; metadata differs: {} {}:{} -> {} {}:{}",
            first.permissions, first.uid, first.gid, second.permissions, second.uid, second.gid
        ),
        PathDiff::Changes { changes } => {
            for c in changes {
                println!("{}  {}", c.kind, c.path);
            }
        }
    }
    Ok(0)
}

pub fn key(ctx: &Context, cmd: KeyCommand) -> anyhow::Result<i32> {
    let (repo, req) = match cmd {
        KeyCommand::Add { repo, new_password_file } => (repo, backup::KeyRequest::Add { new_password_file }),
        KeyCommand::List { repo } => (repo, backup::KeyRequest::List),
        KeyCommand::Remove { name, repo } => (repo, backup::KeyRequest::Remove { id: name }),
        KeyCommand::Passwd { repo, new_password_file } => (repo, backup::KeyRequest::Passwd { new_password_file }),
    };
    match repo.with(ctx, None, |r| backup::key(ctx.host(), r, &req))? {
        backup::KeyOutcome::Added(name) => println!("added key {name}"),
        backup::KeyOutcome::Listed(keys) => {
            let rows: Vec<Vec<String>> = keys
                .into_iter()
                .map(|k| {
                    vec![if k.current { format!("*{}", k.id) } else { format!(" {}", k.id) }, k.user, k.host, k.created]
                })
                .collect();
            print_table(&[" ID", "USER", "HOST", "CREATED"], &rows);
        }
        backup::KeyOutcome::Removed(name) => println!("removed key {name}"),
        backup::KeyOutcome::Changed(_) => println!("password changed"),
    }
    Ok(0)
}
