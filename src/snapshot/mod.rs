//! Capturing a running service into a repository, and bringing it back.
//!
//! Capture: hooks inside the container (e.g. a database dump) → freeze (cgroup freezer) →
//! archive the container layer and every named volume (reading only what changed since the
//! parent snapshot) → thaw → store the image's blobs and the run configuration → write the
//! snapshot (the commit point).
//!
//! Restore: fetch the image if this host lacks it → recreate volumes and the container layer
//! → recreate the container with the recorded configuration → start it → wait for its health
//! check.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::image::store::LayerInput;
use crate::image::{Digest, Reference, Store};
pub mod consistency;
mod engine_pause;
pub mod instant;
pub mod mount;
pub mod partial;
pub mod to_engine;
pub mod view;

use crate::repo::snapshot::{ImageRef, Snapshot, SnapshotStats, StackRef, VolumeRef};
use crate::repo::tree::{ArchiveStats, Archiver, Restorer};
use crate::repo::{BlobId, Repository, lock::Lock};
use crate::runtime::container::{ContainerError, Containers, MountSource, RunConfig, Status};
use crate::runtime::{self, Host};

pub struct CaptureOptions {
    pub tags: Vec<String>,
    pub no_volumes: bool,
    /// Running totals while files are read (progress displays).
    pub progress: Option<crate::repo::tree::ProgressFn>,
    /// Services are named exactly (the agent's, from the configuration): never taken as an
    /// ID prefix of another container.
    pub exact_names: bool,
    /// Told once, before reading starts, the totals the progress will reach (files and
    /// bytes: the parent snapshots', or a quick count of what has none).
    pub expected: Option<std::sync::Arc<dyn Fn(ArchiveStats) + Send + Sync>>,
    /// Which files are a database's pages, besides those known by their headers.
    pub pages: crate::repo::PageRules,
}

/// Runs a hook inside the container; a failure aborts the snapshot.
fn hook(inside: &consistency::Inside, cmd: &str, when: &str) -> anyhow::Result<()> {
    let code = inside.shell(None, cmd, None).with_context(|| format!("{when} hook {cmd:?} could not run"))?;
    if code != 0 {
        bail!("{when} hook {cmd:?} failed with exit code {code}; no snapshot was taken");
    }
    Ok(())
}

/// Marks a container frozen by a snapshot process; a later snapshot thaws it if that process
/// died (kill -9) before it could.
const FROZEN_BY: &str = "frozen-by";

/// The process a snapshot that froze container `id` runs in (dead or alive), if one did.
fn frozen_by(containers: &Containers, id: &str) -> Option<i32> {
    let text = std::fs::read_to_string(containers.dir(id).join(FROZEN_BY)).ok()?;
    Some(text.trim().parse().unwrap_or(0))
}

fn thaw_if_abandoned(host: &Host, containers: &Containers, id: &str) -> anyhow::Result<()> {
    let marker = containers.dir(id).join(FROZEN_BY);
    let Some(owner) = frozen_by(containers, id) else { return Ok(()) };
    if owner != std::process::id() as i32 && !host.kernel().alive(owner) {
        tracing::warn!(container = id, pid = owner, "thawing a container left frozen by a snapshot that died");
        runtime::force_thaw(host, id)?;
        let _ = std::fs::remove_file(&marker);
    }
    Ok(())
}

/// What a capture's progress will count up to: the parent snapshots' totals, and for each
/// member never snapshotted, its image's blobs, layer and volumes as they are now.
struct ExpectedSources {
    known: ArchiveStats,
    blobs: Vec<PathBuf>,
    trees: Vec<PathBuf>,
}

fn expected_sources(members: &[Member], store: &crate::image::Store) -> ExpectedSources {
    let mut out = ExpectedSources { known: ArchiveStats::default(), blobs: Vec::new(), trees: Vec::new() };
    for m in members {
        if let Some((_, p)) = &m.parent {
            out.known.files += p.stats.files;
            out.known.bytes += p.stats.bytes;
            continue;
        }
        out.blobs.extend(
            [&m.image.manifest_digest, &m.image.config_digest]
                .into_iter()
                .chain(m.image.manifest.layers.iter().map(|l| &l.digest))
                .map(|d| store.blob_path(d)),
        );
        out.trees.extend(std::iter::once(m.upper.clone()).chain(m.volume_dirs.iter().map(|(_, _, d)| d.clone())));
    }
    out
}

impl ExpectedSources {
    fn count(self) -> ArchiveStats {
        let mut total = self.known;
        for b in &self.blobs {
            total.files += 1;
            total.bytes += std::fs::metadata(b).map_or(0, |st| st.len());
        }
        for dir in &self.trees {
            if let Ok(t) = crate::fsutil::tree_size(dir) {
                total.files += t.files;
                total.bytes += t.bytes;
            }
        }
        total
    }
}

/// Thaws service `name` if a snapshot process froze it and died before thawing it.
pub fn thaw_abandoned(host: &Host, name: &str) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let config = containers.named(name)?;
    thaw_if_abandoned(host, containers, &config.id)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Containers frozen together, thawed (in the reverse order) when dropped: an error while
/// frozen never leaves a service frozen. Each is marked with this process's ID while frozen,
/// so a later snapshot can thaw what a killed one left frozen. Containers of another engine
/// are paused through it, and marked the same way.
struct Frozen<'a> {
    host: &'a Host,
    /// Frozen, in the order they were.
    ids: Vec<String>,
    /// Paused through their engine, in the order they were.
    paused: Vec<(std::rc::Rc<crate::engine::Engine>, String)>,
    since: Instant,
    /// The process that thaws them if this one dies first (its standard input is ours).
    guard: Option<std::process::Child>,
}

impl<'a> Frozen<'a> {
    /// Nothing frozen (a service that is not running).
    fn none(host: &'a Host) -> Frozen<'a> {
        Frozen { host, ids: Vec::new(), paused: Vec::new(), since: Instant::now(), guard: None }
    }

    /// Freezes `ids` in order, then pauses `paused` through their engines. If one cannot be
    /// frozen, those before it are thawed again and the error returned.
    fn freeze(
        host: &'a Host,
        ids: &[&str],
        paused: &[(std::rc::Rc<crate::engine::Engine>, String)],
    ) -> anyhow::Result<Frozen<'a>> {
        let mut guarded: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        guarded.extend(paused.iter().map(|(_, id)| format!("engine={id}")));
        let guard = spawn_thaw_guard(host, &guarded);
        let mut frozen = Frozen { host, ids: Vec::new(), paused: Vec::new(), since: Instant::now(), guard };
        for id in ids {
            let marker = host.containers()?.dir(id).join(FROZEN_BY);
            std::fs::write(&marker, std::process::id().to_string())?;
            if let Err(e) = runtime::set_paused(host, id, true) {
                let _ = std::fs::remove_file(&marker);
                return Err(
                    anyhow::Error::from(e).context(format!("cannot freeze container {}", &id[..12.min(id.len())]))
                );
            }
            frozen.ids.push(id.to_string());
        }
        for (engine, id) in paused {
            engine_pause::mark(host, engine, id)?;
            if let Err(e) = engine.pause(id) {
                // Refused by the engine (someone else paused it, it stopped): not paused by
                // this snapshot. Lost on the way: it may be paused all the same, and is then
                // unpaused with the others; if that cannot be known, the mark stays for the
                // sweep.
                if e.downcast_ref::<crate::engine::client::ApiError>().is_some() {
                    engine_pause::unmark(host, id);
                } else {
                    match engine.is_paused(id) {
                        Ok(true) => frozen.paused.push((engine.clone(), id.clone())),
                        Ok(false) => engine_pause::unmark(host, id),
                        Err(_) => {}
                    }
                }
                return Err(e.context(format!("cannot pause container {}", &id[..12.min(id.len())])));
            }
            frozen.paused.push((engine.clone(), id.clone()));
        }
        frozen.since = Instant::now();
        Ok(frozen)
    }

    /// Thaws everything (last frozen first); how long it was frozen.
    fn thaw(&mut self) -> Duration {
        // This host's first (a file write each), then the engines' (a request each).
        while let Some(id) = self.ids.pop() {
            if let Err(e) = runtime::set_paused(self.host, &id, false) {
                tracing::error!(container = id.as_str(), error = %e, "cannot thaw the container");
            }
            if let Ok(c) = self.host.containers() {
                let _ = std::fs::remove_file(c.dir(&id).join(FROZEN_BY));
            }
        }
        while let Some((engine, id)) = self.paused.pop() {
            match engine.unpause(&id) {
                Ok(()) => engine_pause::unmark(self.host, &id),
                // The mark stays: the guard, or the next snapshot, unpauses it.
                Err(e) => tracing::error!(container = id.as_str(), error = %e, "cannot unpause the container"),
            }
        }
        let frozen_for = self.since.elapsed();
        if let Some(mut guard) = self.guard.take() {
            // Its input closes: it finds nothing marked frozen by us, and ends.
            drop(guard.stdin.take());
            let _ = guard.wait();
        }
        frozen_for
    }
}

/// Starts the thaw guard of `ids` (before anything is frozen: not in the frozen window). A
/// guard that cannot be started is logged: the next snapshot still thaws what a killed one
/// left frozen.
fn spawn_thaw_guard(host: &Host, ids: &[String]) -> Option<std::process::Child> {
    let exe = std::env::current_exe().ok()?;
    let mut cmd = runtime::reexec::thaw_guard_command(&exe, host.paths(), std::process::id(), ids);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    cmd.env_clear().envs(runtime::shim::inherited_environment());
    // Its own process group: a signal to the snapshot's group does not end it too.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    match cmd.spawn() {
        Ok(child) => Some(child),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the thaw guard");
            None
        }
    }
}

/// The thaw guard's work (`lifeboat thaw-guard OWNER ID…`): waits until its standard input
/// closes, then thaws each container still marked frozen by process `owner`.
pub fn thaw_guard(host: &Host, owner: u32, ids: &[String]) -> anyhow::Result<usize> {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while std::io::Read::read(&mut stdin, &mut sink).is_ok_and(|n| n > 0) {}
    let containers = host.containers()?;
    let mut thawed = 0;
    // This host's containers first (a file write each), then the engines' (requests).
    let engine_last =
        ids.iter().rev().filter(|i| !i.starts_with("engine=")).chain(ids.iter().filter(|i| i.starts_with("engine=")));
    for id in engine_last {
        if let Some(engine_id) = id.strip_prefix("engine=") {
            match engine_pause::guard_release(host, owner, engine_id) {
                Ok(unpaused) => thawed += unpaused as usize,
                // The mark stays: the next snapshot unpauses it.
                Err(e) => tracing::error!(container = engine_id, error = %e, "cannot unpause the container"),
            }
            continue;
        }
        let marker = containers.dir(id).join(FROZEN_BY);
        let Ok(text) = std::fs::read_to_string(&marker) else { continue };
        if text.trim() != owner.to_string() {
            continue;
        }
        // Whatever state.json says: the owner may have died between freezing the cgroup and
        // recording it.
        runtime::force_thaw(host, id)?;
        thawed += 1;
        let _ = std::fs::remove_file(&marker);
    }
    Ok(thawed)
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// One service of a snapshot: its name, its hooks and how its data is made consistent.
#[derive(Clone, Debug, Default)]
pub struct ServicePlan {
    pub name: String,
    /// Shell commands run inside it before the freeze (a failing one stops the snapshot).
    pub exec_before: Vec<String>,
    pub exec_after: Vec<String>,
    pub consistency: consistency::Consistency,
}

impl ServicePlan {
    pub fn named(name: &str) -> ServicePlan {
        ServicePlan { name: name.to_string(), ..Default::default() }
    }
}

/// Takes a snapshot of container `name` into `repo`; returns its ID and object.
pub fn capture(
    host: &Host,
    repo: &mut Repository,
    plan: &ServicePlan,
    opts: &CaptureOptions,
) -> anyhow::Result<(String, Snapshot)> {
    let mut taken = capture_stack(host, repo, std::slice::from_ref(plan), opts)?;
    Ok(taken.remove(0))
}

/// After-hooks still to run: each member's, inside it. [`AfterHooks::run`] runs them and
/// reports the first failure; dropped without that (the capture failed), they run and a
/// failure is logged.
struct AfterHooks<'a>(Vec<(consistency::Inside<'a>, Vec<String>)>);

impl AfterHooks<'_> {
    fn run(mut self) -> anyhow::Result<()> {
        let mut first = None;
        for (inside, hooks) in std::mem::take(&mut self.0) {
            for h in &hooks {
                if let Err(e) = hook(&inside, h, "after") {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for AfterHooks<'_> {
    fn drop(&mut self) {
        for (inside, hooks) in std::mem::take(&mut self.0) {
            for h in &hooks {
                if let Err(e) = hook(&inside, h, "after") {
                    tracing::error!(error = %crate::error::describe(&e), "an after-hook failed");
                }
            }
        }
    }
}

/// What one service of a stack snapshot has come to, step by step.
struct Member {
    config: RunConfig,
    /// Run by another engine (Docker, Podman) rather than this host's runtime.
    engine: Option<EngineMember>,
    running: bool,
    parent: Option<(String, Snapshot)>,
    image: crate::image::Image,
    image_tree: BlobId,
    upper: PathBuf,
    volume_dirs: Vec<(String, String, PathBuf)>,
    layer_parent: Option<BlobId>,
    volume_parents: Vec<Option<BlobId>>,
    stats: ArchiveStats,
    read_ahead_since: Option<i64>,
    /// Set by the pass while the service runs: what it recorded of files changed since then
    /// is not trusted by the frozen pass.
    distrust_since: Option<i64>,
    layer_tree: Option<BlobId>,
    volumes: Vec<VolumeRef>,
}

/// What a member run by another engine needs besides its configuration.
struct EngineMember {
    engine: std::rc::Rc<crate::engine::Engine>,
    /// Paused by someone else before the snapshot: left paused, never unpaused by it.
    paused: bool,
}

impl Member {
    fn inside<'a>(&self, host: &'a Host) -> consistency::Inside<'a> {
        match &self.engine {
            None => consistency::Inside::Own(host, self.config.id.clone()),
            Some(e) => consistency::Inside::Engine(e.engine.clone(), self.config.id.clone()),
        }
    }
}

/// Where the record of service `name`'s adoption from another engine is (`ops::adopt`).
pub fn adoption_record(host: &Host, name: &str) -> PathBuf {
    host.paths().root.join("adopted").join(format!("{name}.json"))
}

/// Whether service `name` was adopted from its engine (Lifeboat runs it now); while an
/// adoption is under way the engine's container is still the service.
fn adoption_finished(host: &Host, name: &str) -> bool {
    let Ok(bytes) = std::fs::read(adoption_record(host, name)) else { return false };
    serde_json::from_slice::<serde_json::Value>(&bytes).map_or(true, |r| r["phase"] != "adopting")
}

/// A service named for a snapshot: its plan, configuration and, for an engine's, how to
/// reach it.
type Resolved = (ServicePlan, RunConfig, Option<(EngineMember, crate::engine::Container)>);

/// The services a snapshot names, resolved: this host's containers by name or ID prefix,
/// an engine's by `docker://…` / `podman://…` (a project standing for all its containers).
fn resolve_members(host: &Host, plans: &[ServicePlan], exact_names: bool) -> anyhow::Result<Vec<Resolved>> {
    let containers = host.containers()?;
    // Whatever a snapshot that died left paused in an engine is unpaused first.
    engine_pause::sweep(host);
    let mut engines: Vec<std::rc::Rc<crate::engine::Engine>> = Vec::new();
    let mut out: Vec<Resolved> = Vec::new();
    for p in plans {
        let Some(target) = crate::engine::Target::parse(&p.name) else {
            let config = if exact_names { containers.named(&p.name)? } else { containers.find(&p.name)? };
            thaw_if_abandoned(host, containers, &config.id)?;
            out.push((p.clone(), config, None));
            continue;
        };
        let target = target?;
        let engine = match engines.iter().find(|e| e.kind == target.kind()) {
            Some(e) => e.clone(),
            None => {
                let e = std::rc::Rc::new(crate::engine::Engine::connect(target.kind())?);
                engines.push(e.clone());
                e
            }
        };
        for name in engine.resolve(&target)? {
            let c = engine.container(&name)?;
            let name = c.config.name.clone();
            // Snapshots are kept by name: one name, one service.
            if adoption_finished(host, &name) {
                bail!(ContainerError::Conflict(format!(
                    "{name} was adopted: Lifeboat runs it now (lifeboat snapshot {name}); {}'s container is its old copy",
                    engine.title()
                )));
            }
            if containers.named(&name).is_ok() {
                bail!(ContainerError::Conflict(format!(
                    "Lifeboat also has a container {name}, and snapshots are kept by name: rename one of them"
                )));
            }
            if let Some(pid) = engine_pause::held_by_another(host, &c.id) {
                bail!(crate::runtime::container::ContainerError::Conflict(format!(
                    "another snapshot (process {pid}) is capturing {name}; try again when it is done"
                )));
            }
            for what in &c.not_kept {
                tracing::warn!(container = name.as_str(), "not recorded, so not restored: {what}");
            }
            let plan = ServicePlan { name: c.config.name.clone(), ..p.clone() };
            out.push((plan, c.config.clone(), Some((EngineMember { engine: engine.clone(), paused: c.paused }, c))));
        }
    }
    for (i, (_, c, _)) in out.iter().enumerate() {
        if out[..i].iter().any(|(_, other, _)| other.id == c.id) {
            bail!(crate::error::UsageError(format!("{} is named twice", c.name)));
        }
        if out[..i].iter().any(|(_, other, _)| other.name == c.name) {
            bail!(crate::error::UsageError(format!(
                "two services named {} (one of them run by another engine): snapshot them apart",
                c.name
            )));
        }
    }
    Ok(out)
}

/// Takes a snapshot of several services at one instant (a stack): every member's hooks and
/// consistency recipe run, then all are frozen together, read, and thawed together; each
/// gets its snapshot object, the same time, and the stack's ID and members. Returns them in
/// the order given.
pub fn capture_stack(
    host: &Host,
    repo: &mut Repository,
    plans: &[ServicePlan],
    opts: &CaptureOptions,
) -> anyhow::Result<Vec<(String, Snapshot)>> {
    if plans.is_empty() {
        bail!(crate::error::UsageError("name a service to snapshot".into()));
    }
    let started = Instant::now();
    let containers = host.containers()?;
    let resolved = resolve_members(host, plans, opts.exact_names)?;
    let lock = Lock::acquire(repo, false)?;
    // A snapshot that was killed midway left packs behind: they are taken in, so this one
    // goes on from them instead of writing that data again.
    if let Err(e) = crate::repo::maintenance::recover_after_crash(repo, &lock.stale) {
        tracing::warn!(error = %e, "cannot take in what an interrupted snapshot left; going on without it");
    }
    let all = crate::repo::snapshot::list(repo)?;
    let store = host.store()?;
    let vols = host.volumes()?;

    // Hooks and recipes, in the order the services were named.
    let mut members: Vec<Member> = Vec::new();
    let mut plans_run: Vec<ServicePlan> = Vec::new();
    let mut prepared = Vec::new();
    // The after-hooks of every member whose before-hooks ran, run however the capture ends
    // (a hook that put the service in maintenance mode must take it out again); declared
    // before `prepared`, so that on an error they run once the databases go on.
    let mut after = AfterHooks(Vec::new());
    for (plan, config, engine) in resolved {
        let (running, upper, volume_dirs, image) = match &engine {
            None => {
                let running = runtime::observed_state(containers, &config.id)?.status == Status::Running;
                let upper = containers.dir(&config.id).join("upper");
                std::fs::create_dir_all(&upper)?;
                for m in &config.mounts {
                    if let MountSource::Volume { name } = &m.source {
                        vols.refuse_if_hydrating(name, &format!("snapshot {}", config.name))?;
                    }
                }
                let dirs = config
                    .mounts
                    .iter()
                    .filter_map(|m| match &m.source {
                        MountSource::Volume { name } => Some((name.clone(), m.target.clone(), vols.data_dir(name))),
                        _ => None,
                    })
                    .collect();
                let image = store.find(&config.image_id.to_string()).or_else(|_| store.find(&config.image))?;
                (running, upper, dirs, image)
            }
            Some((e, c)) => {
                if c.paused && (!plan.exec_before.is_empty() || plan.consistency != consistency::Consistency::Freeze) {
                    bail!("container {} is paused, so its hooks cannot run; no snapshot was taken", config.name);
                }
                let image = crate::engine::image_into_store(&e.engine, store, &config.image_id)?;
                (c.running, c.upper.clone(), c.volumes.clone(), image)
            }
        };
        let volume_dirs: Vec<(String, String, PathBuf)> = if opts.no_volumes { Vec::new() } else { volume_dirs };
        let engine = engine.map(|(e, _)| e);
        let member_running = running && !engine.as_ref().is_some_and(|e| e.paused);
        let mut m = Member {
            config,
            engine,
            running,
            parent: None,
            image,
            image_tree: BlobId([0; 32]),
            upper,
            volume_dirs,
            layer_parent: None,
            volume_parents: Vec::new(),
            stats: ArchiveStats::default(),
            read_ahead_since: None,
            distrust_since: None,
            layer_tree: None,
            volumes: Vec::new(),
        };
        if member_running {
            let inside = m.inside(host);
            for h in &plan.exec_before {
                hook(&inside, h, "before")?;
            }
            if !plan.exec_after.is_empty() {
                after.0.push((m.inside(host), plan.exec_after.clone()));
            }
        } else if !m.running && (!plan.exec_before.is_empty() || plan.consistency != consistency::Consistency::Freeze) {
            bail!("container {} is not running, so its hooks cannot run; no snapshot was taken", m.config.name);
        }
        let parent = all.iter().rev().find(|(_, s)| s.service == m.config.name).cloned();
        m.layer_parent = parent.as_ref().map(|(_, p)| p.container_layer);
        m.volume_parents = m
            .volume_dirs
            .iter()
            .map(|(name, _, _)| {
                parent.as_ref().and_then(|(_, p)| p.volumes.iter().find(|v| v.name == *name)).map(|v| v.tree)
            })
            .collect();
        // Files whose inode changed before the parent's capture began are probably unchanged.
        m.read_ahead_since = parent.as_ref().and_then(|(_, p)| {
            let t = chrono::DateTime::parse_from_rfc3339(&p.time).ok()?;
            t.timestamp_nanos_opt().map(|t| t - (p.stats.duration_ms as i64 + 1000) * 1_000_000)
        });
        m.parent = parent;
        members.push(m);
        plans_run.push(plan);
    }

    // The totals to expect, counted on a thread of their own: never in the way of the
    // capture (nor inside a recipe's lock); the progress shows counts until they arrive.
    if let Some(tell) = opts.expected.clone() {
        let sources = expected_sources(&members, store);
        let spawned = std::thread::Builder::new().name("count".into()).spawn(move || tell(sources.count()));
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no expected totals for the progress");
        }
    }
    // Each member's progress follows the ones before it (the display adds up the stack).
    let progress_after = |before: ArchiveStats| -> Option<crate::repo::tree::ProgressFn> {
        let inner = opts.progress.clone()?;
        Some(std::sync::Arc::new(move |s: &ArchiveStats| inner(&(before + *s))))
    };
    let sum = |members: &[Member]| members.iter().fold(ArchiveStats::default(), |a, m| a + m.stats);

    // While the services run (their hooks done, a dump they write included): their images,
    // and a first copy of what changed since their last snapshot (of everything, for one
    // never snapshotted); the freeze then only reads what changed meanwhile.
    for k in 0..members.len() {
        let before = sum(&members[..k]);
        let m = &mut members[k];
        let mut archiver = Archiver::new(repo);
        archiver.on_progress = progress_after(before);
        archiver.read_ahead_since = m.read_ahead_since;
        archiver.pages = opts.pages.clone();
        let mut blobs: Vec<(String, PathBuf)> = vec![
            (m.image.manifest_digest.hex(), store.blob_path(&m.image.manifest_digest)),
            (m.image.config_digest.hex(), store.blob_path(&m.image.config_digest)),
        ];
        blobs.extend(m.image.manifest.layers.iter().map(|l| (l.digest.hex(), store.blob_path(&l.digest))));
        m.image_tree = archiver.archive_files(&blobs, m.parent.as_ref().map(|(_, p)| &p.image.tree))?;
        if m.running {
            // A file whose ctime is older than a clock tick before this pass began was read
            // whole after its last change; a newer one may have been written in the same
            // tick after it was read: the frozen pass reads those again.
            m.distrust_since = Some(now_ns() - 20_000_000);
            let began = now_ns() - 1_000_000_000;
            let image_only = archiver.stats;
            m.layer_parent = Some(archiver.archive_dir(&m.upper, m.layer_parent.as_ref())?);
            for (i, (_, _, data)) in m.volume_dirs.iter().enumerate() {
                m.volume_parents[i] = Some(archiver.archive_dir(data, m.volume_parents[i].as_ref())?);
            }
            // The totals count each file once (the frozen pass's); reads and new bytes add up.
            let first = archiver.stats;
            archiver.stats = ArchiveStats { files_read: first.files_read, new_bytes: first.new_bytes, ..image_only };
            m.read_ahead_since = Some(began);
        }
        m.stats = archiver.stats;
    }

    // The recipes last (a database locked, or its pages written out), so that what they
    // hold back is held only for the freeze.
    for (plan, m) in plans_run.iter().zip(&members) {
        if m.running && !m.engine.as_ref().is_some_and(|e| e.paused) {
            prepared.push(consistency::prepare(&plan.consistency, m.inside(host))?);
        }
    }

    // One instant for all of them.
    let running: Vec<&str> =
        members.iter().filter(|m| m.running && m.engine.is_none()).map(|m| m.config.id.as_str()).collect();
    let paused: Vec<(std::rc::Rc<crate::engine::Engine>, String)> = members
        .iter()
        .filter(|m| m.running)
        .filter_map(|m| {
            let e = m.engine.as_ref()?;
            // Paused by someone else when it was named, and still: left as it is. Unpaused
            // meanwhile: paused for the capture like the others.
            if e.paused && e.engine.is_paused(&m.config.id).unwrap_or(true) {
                return None;
            }
            Some((e.engine.clone(), m.config.id.clone()))
        })
        .collect();
    let mut frozen = if running.is_empty() && paused.is_empty() {
        Frozen::none(host)
    } else {
        Frozen::freeze(host, &running, &paused)?
    };
    let first_pass: Vec<ArchiveStats> = members.iter().map(|m| m.stats).collect();
    for k in 0..members.len() {
        // The members before this one as they ended, the ones after as they stand.
        let before = sum(&members[..k]);
        let m = &mut members[k];
        let mut archiver = Archiver::new(repo);
        archiver.on_progress = progress_after(before);
        archiver.read_ahead_since = m.read_ahead_since;
        // What the pass while it ran recorded of a file written in the same clock tick may
        // look unchanged: such files are read again now.
        archiver.distrust_since = m.distrust_since;
        archiver.pages = opts.pages.clone();
        archiver.stats = first_pass[k];
        m.layer_tree = Some(archiver.archive_dir(&m.upper, m.layer_parent.as_ref())?);
        for ((name, target, data), previous) in m.volume_dirs.iter().zip(&m.volume_parents) {
            let tree = archiver.archive_dir(data, previous.as_ref())?;
            let root = std::fs::metadata(data).ok().map(|st| {
                use std::os::unix::fs::MetadataExt;
                crate::repo::snapshot::RootMeta { uid: st.uid(), gid: st.gid(), mode: st.mode() & 0o7777 }
            });
            m.volumes.push(VolumeRef { name: name.clone(), target: target.clone(), tree, root });
        }
        m.stats = archiver.stats;
    }
    let frozen_for = frozen.thaw();
    drop(frozen);
    // The databases go on; then the after-hooks.
    drop(prepared);
    after.run()?;
    repo.flush()?;
    let time = crate::sys::now_rfc3339();
    let stack = (members.len() > 1).then(|| StackRef {
        id: crate::fsutil::random_hex(8),
        services: members.iter().map(|m| m.config.name.clone()).collect(),
    });
    let added = repo.added_bytes();
    let mut out = Vec::new();
    for m in members {
        let snapshot = Snapshot {
            time: time.clone(),
            hostname: crate::sys::hostname(),
            service: m.config.name.clone(),
            tags: opts.tags.clone(),
            parent: m.parent.map(|(id, _)| id),
            run_config: serde_json::to_value(&m.config)?,
            image: ImageRef {
                reference: m.config.image.clone(),
                manifest: m.image.manifest_digest.clone(),
                tree: m.image_tree,
            },
            container_layer: m.layer_tree.expect("archived while frozen"),
            volumes: m.volumes,
            hot: instant::recorded_hot_set(host, &m.config.name),
            engine: m.engine.as_ref().map(|e| e.engine.kind.scheme().to_string()),
            stats: SnapshotStats {
                files: m.stats.files,
                bytes: m.stats.bytes,
                files_read: m.stats.files_read,
                // The repository's growth is the stack's: counted once, on its first member.
                added_bytes: if out.is_empty() { added } else { 0 },
                frozen_ms: frozen_for.as_millis() as u64,
                duration_ms: started.elapsed().as_millis() as u64,
            },
            stack: stack.clone(),
        };
        let id = repo.save_object(crate::backend::Kind::Snapshot, &snapshot)?;
        out.push((id, snapshot));
    }
    // The snapshots are saved: a lock that cannot be removed now turns stale on its own.
    drop(lock);
    Ok(out)
}

/// Restores never replace a container: the name must be free.
fn name_free_for_restore(containers: &Containers, name: &str) -> anyhow::Result<()> {
    match containers.name_taken(name)? {
        Some(other) => Err(ContainerError::Conflict(format!(
            "a container named {name} already exists ({}); remove it first or restore with --as NEWNAME",
            &other[..12]
        ))
        .into()),
        None => Ok(()),
    }
}

pub struct RestoreOptions {
    /// Restore under another container name.
    pub rename: Option<String>,
    pub no_start: bool,
    /// How long to wait for the health check.
    pub health_timeout: Duration,
    /// A throw-away copy for a restore drill: no published ports, no restart policy.
    pub throwaway: bool,
    /// Running totals of restored files and bytes (progress displays).
    pub progress: Option<crate::repo::tree::RestoreProgressFn>,
    /// Services restored under other names in the same operation (a drill of a stack): a
    /// container whose network is one of them joins it under its new name.
    pub peers: std::collections::BTreeMap<String, String>,
    /// Start the service on a lazily fetched view of its volumes and fill them behind it
    /// ([`instant`]).
    pub instant: bool,
    /// With `rename` or `throwaway`: what sets the restored copy's named network apart from
    /// the live one (every member of one drill gives the same); default: the new name.
    pub network_key: Option<String>,
}

pub struct Restored {
    pub container: RunConfig,
    pub elapsed: Duration,
    pub fetched_image: bool,
    pub healthy: Option<bool>,
    /// Its volumes are being filled behind it (an instant restore).
    pub hydrating: bool,
}

/// Brings a snapshot back as a container on this host.
pub fn restore(
    host: &Host,
    repo: &Repository,
    snapshot_id: &str,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    tracing::debug!(snapshot_id, "restore: snapshot found");
    let label = format!("snapshot {}", &snapshot_id[..12.min(snapshot_id.len())]);
    let mut recorded: RunConfig =
        serde_json::from_value(snap.run_config.clone()).context("the snapshot's run configuration is unreadable")?;
    if let crate::runtime::container::NetworkMode::Container(peer) = &mut recorded.network
        && let Some(renamed) = opts.peers.get(peer.as_str())
    {
        *peer = renamed.clone();
    }
    let containers = host.containers()?;
    let name = opts.rename.clone().unwrap_or_else(|| snap.service.clone());
    if let crate::runtime::container::NetworkMode::Network(net) = &mut recorded.network {
        crate::runtime::names::validate_name(net)
            .map_err(|e| anyhow::anyhow!("the snapshot's network is unusable: {e}"))?;
        // A drill or a copy under another name must never join the live service's network
        // (its peers' names would lead to the live database): the members of one restore get
        // a network of their own.
        if opts.throwaway || opts.rename.is_some() {
            let key = opts.network_key.as_deref().unwrap_or(&name);
            let suffix = &blake3::hash(key.as_bytes()).to_hex()[..8];
            *net = format!("{}-{suffix}", &net[..net.len().min(100)]);
        }
    }
    name_free_for_restore(containers, &name)?;

    // The image, unless this host already has it.
    let store = host.store()?;
    let have_image = store.image_by_manifest(&snap.image.manifest).is_ok();
    if !have_image {
        fetch_image(store, repo, snap, &label)?;
    }
    let image = store.image_by_manifest(&snap.image.manifest)?;
    runtime::ensure_layers(store, &image)?;
    // What the trees will write: the snapshot's bytes less its image's blobs (counted in its
    // totals, fetched above); each tree's progress goes on from the ones before it.
    let image_bytes: u64 = [&image.manifest_digest, &image.config_digest]
        .into_iter()
        .chain(image.manifest.layers.iter().map(|l| &l.digest))
        .map(|d| std::fs::metadata(store.blob_path(d)).map_or(0, |st| st.len()))
        .sum();
    let expected_bytes = snap.stats.bytes.saturating_sub(image_bytes);
    // Bytes and files of the trees restored so far.
    let written = std::sync::Mutex::new((0u64, 0u64));
    let progress_after = || -> Option<crate::repo::tree::RestoreProgressFn> {
        let inner = opts.progress.clone()?;
        let (bytes, files) = *written.lock().unwrap_or_else(|e| e.into_inner());
        Some(std::sync::Arc::new(move |s: &crate::repo::tree::RestoreStats| {
            inner(&crate::repo::tree::RestoreStats { files: files + s.files, bytes: bytes + s.bytes, expected_bytes })
        }))
    };
    let restored = |r: &Restorer<'_>| {
        let mut w = written.lock().unwrap_or_else(|e| e.into_inner());
        w.0 += r.stats.bytes;
        w.1 += r.stats.files;
    };

    // Volumes: recreated with their recorded content. All are checked, then created marked
    // as being restored by this process, before any data lands (a marker's fsync after the
    // data would wait for the restored trees to reach the disk: 0.2 s on the reference data).
    // A failure removes what this restore made; a restore killed midway leaves volumes
    // marked, which nothing uses and the next restore removes.
    let vols = host.volumes()?;
    let vol_name = |v: &VolumeRef| match &opts.rename {
        Some(n) => format!("{n}-{}", v.name),
        None => v.name.clone(),
    };
    let mut undo = Undo::new(host);
    for v in &snap.volumes {
        let name = vol_name(v);
        if let Ok(meta) = vols.get(&name)
            && meta.restoring.as_ref().is_some_and(|o| !o.alive())
        {
            if containers.uses_volume(&name)? {
                vols.restored(&name)?; // its container appeared: the restore had finished it
            } else {
                tracing::warn!(volume = name.as_str(), "removing what a restore that died left in this volume");
                vols.discard_restore(&name)?;
            }
        }
        if vols.get(&name).is_ok() && containers.uses_volume(&name)? {
            bail!(ContainerError::Conflict(format!(
                "volume {name} is used by a container; remove it first, or restore with --as NEWNAME"
            )));
        }
        let data = vols.data_dir(&name);
        if data.exists() && std::fs::read_dir(&data)?.next().is_some() {
            bail!(ContainerError::Conflict(format!(
                "volume {name} already exists and is not empty; remove it (lifeboat volume rm) or restore with --as NEWNAME"
            )));
        }
    }
    for v in &snap.volumes {
        let name = vol_name(v);
        let existed = vols.get(&name).is_ok();
        vols.create_restoring(&name)?;
        if existed { undo.reused.push(name) } else { undo.volumes.push(name) }
    }
    for v in &snap.volumes {
        let data = vols.data_dir(&vol_name(v));
        if opts.instant {
            // Filled behind the running service; for now, the overlay's empty upper layer.
            std::fs::create_dir_all(&data)?;
        } else {
            let _ = std::fs::remove_dir(&data);
            let mut r = Restorer::new(repo, &format!("{label} volume {}", v.name));
            r.on_progress = progress_after();
            r.restore(&v.tree, &data)?;
            restored(&r);
        }
        if let Some(root) = v.root {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(&data, Some(root.uid), Some(root.gid))
                .with_context(|| format!("cannot give volume {} its owner", v.name))?;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(root.mode))
                .with_context(|| format!("cannot give volume {} its mode", v.name))?;
        }
        if opts.rename.is_some() {
            for m in recorded.mounts.iter_mut() {
                if matches!(&m.source, MountSource::Volume { name } if *name == v.name) {
                    m.source = MountSource::Volume { name: vol_name(v) };
                }
            }
        }
    }

    // The container, with its own layer.
    let id = new_identity(&mut recorded, name, &image);
    if opts.throwaway {
        recorded.ports.clear();
        recorded.restart = crate::runtime::container::RestartPolicy::No;
        // A drill must never take the host's ports.
        if recorded.network == crate::runtime::container::NetworkMode::Host {
            recorded.network = crate::runtime::container::NetworkMode::Private;
        }
    }
    // Put together out of sight, then moved into place whole.
    let staged = containers.staging_dir(&id);
    undo.staged = Some(staged.clone());
    std::fs::create_dir_all(&staged)?;
    let mut r = Restorer::new(repo, &format!("{label} container layer"));
    r.on_progress = progress_after();
    r.restore(&snap.container_layer, &staged.join("upper"))?;
    // The container appears whole (the commit point), then its volumes become ordinary ones
    // (a restore killed in between leaves them marked; the container's start clears that).
    containers.install(&recorded)?;
    undo.staged = None;
    undo.container = Some(recorded.id.clone());
    if opts.instant && recorded.auto_remove && !snap.volumes.is_empty() {
        // Its stop at the switch would remove it, and the volumes being filled.
        bail!(crate::error::UsageError(format!("{} was run with --rm: restore it without --instant", snap.service)));
    }
    let planned: instant::Planned = match opts.instant {
        true => snap.volumes.iter().enumerate().map(|(i, v)| (i, vol_name(v))).collect(),
        false => Vec::new(),
    };
    if !planned.is_empty() {
        // The volumes are served through their overlays before the container may start.
        let mut hydrator = instant::spawn(host, repo, snapshot_id, &recorded.id, &planned)?;
        let ready = hydrator.ready();
        undo.hydrator = Some((hydrator, planned.clone()));
        ready?;
    }
    for v in &snap.volumes {
        vols.restored(&vol_name(v))?;
    }

    let healthy = start_unless_asked_not_to(host, &recorded, opts)?;
    if let Some((hydrator, _)) = undo.hydrator.take() {
        hydrator.go();
    }
    undo.done();
    Ok(Restored {
        container: recorded,
        elapsed: started.elapsed(),
        fetched_image: !have_image,
        healthy,
        hydrating: !planned.is_empty(),
    })
}

/// What a restore made, removed again if it fails before the end: the container, its staged
/// files, the volumes it created. Nothing half-made looks like a service.
struct Undo<'a> {
    host: &'a Host,
    volumes: Vec<String>,
    /// Empty volumes that were there before: emptied again.
    reused: Vec<String>,
    staged: Option<std::path::PathBuf>,
    container: Option<String>,
    /// An instant restore's hydrator, with the volumes it serves: stopped first.
    hydrator: Option<(instant::Hydrator, instant::Planned)>,
    done: bool,
}

impl<'a> Undo<'a> {
    fn new(host: &'a Host) -> Undo<'a> {
        Undo {
            host,
            volumes: Vec::new(),
            reused: Vec::new(),
            staged: None,
            container: None,
            hydrator: None,
            done: false,
        }
    }

    fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some((hydrator, volumes)) = self.hydrator.take() {
            instant::abandon(self.host, hydrator, &volumes);
        }
        if let Some(id) = &self.container
            && let Err(e) = runtime::remove(self.host, id, true)
        {
            tracing::warn!(container = id.as_str(), error = %e, "cannot remove the container of a failed restore");
        }
        if let Some(dir) = &self.staged
            && let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot remove the files of a failed restore");
        }
        if let Ok(vols) = self.host.volumes() {
            for v in &self.volumes {
                if let Err(e) = vols.remove(v) {
                    tracing::warn!(volume = v.as_str(), error = %e, "cannot remove a volume of a failed restore");
                }
            }
            for v in &self.reused {
                if let Err(e) = vols.discard_restore(v) {
                    tracing::warn!(volume = v.as_str(), error = %e, "cannot empty a volume of a failed restore");
                }
            }
        }
        if !self.volumes.is_empty() || self.container.is_some() {
            tracing::warn!(volumes = ?self.volumes, container = ?self.container, "the restore failed; what it made was removed");
        }
    }
}

/// Gives a recorded configuration a new container ID, its name, and the image it now runs on
/// (a generated hostname follows the new ID); returns the ID.
fn new_identity(recorded: &mut RunConfig, name: String, image: &crate::image::Image) -> String {
    let id = crate::runtime::container::new_id();
    if recorded.hostname.len() == 12 && recorded.hostname.bytes().all(|b| b.is_ascii_hexdigit()) {
        recorded.hostname = id[..12].to_string();
    }
    recorded.id = id.clone();
    recorded.name = name;
    recorded.created = crate::sys::now_rfc3339();
    recorded.image_id = image.id().clone();
    recorded.layers = image.config.rootfs.diff_ids.clone();
    id
}

/// Starts a restored container (unless `no_start`) and waits for its health check if it has one.
fn start_unless_asked_not_to(host: &Host, recorded: &RunConfig, opts: &RestoreOptions) -> anyhow::Result<Option<bool>> {
    if opts.no_start {
        return Ok(None);
    }
    runtime::start(host, &recorded.id)?;
    Ok(recorded.health.as_ref().map(|h| wait_healthy(host, &recorded.id, h, opts.health_timeout)))
}

/// Runs the service's health check until it passes (or `timeout`), every 200 ms rather than
/// every interval: a restore wants to know at once. A pass is recorded as the container's
/// health, so `ps` says what the restore said.
fn wait_healthy(host: &Host, id: &str, check: &crate::runtime::container::HealthCheck, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let each = Duration::from_secs(check.timeout_secs.max(1)).min(timeout.max(Duration::from_secs(1)));
    loop {
        let begun = crate::sys::now_rfc3339();
        let opts = runtime::ExecOptions {
            args: check.argv(),
            timeout: Some(each),
            output: runtime::ExecOutput::Discard,
            ..runtime::ExecOptions::shell("")
        };
        let code = runtime::exec(host, id, opts).unwrap_or(-1);
        if code == 0 {
            if let Ok(containers) = host.containers() {
                let dir = containers.dir(id);
                let mut health = runtime::Health::load(&dir).unwrap_or_else(runtime::Health::starting);
                let result = runtime::HealthResult {
                    start: begun,
                    end: crate::sys::now_rfc3339(),
                    exit_code: 0,
                    output: String::new(),
                };
                health.record(result, check.retries, false);
                let _ = health.save(&dir);
            }
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many `SERVICE:snap-…` images each service keeps in the local store; older ones are
/// removed (unless a container uses them). The repository keeps the full history.
pub const LOCAL_SNAPSHOT_IMAGES: usize = 3;

/// Commits snapshot `snap` as the local image `SERVICE:snap-<UTC time>`: the portable image of
/// `build_portable_image` (its image, its container layer, a layer per volume at its mount
/// path, the run configuration), ready for `lifeboat run`, `push` or `save`. The layers come
/// from the repository, so the image is exactly the snapshot's point in time although the
/// service was thawed long ago.
pub fn commit_local_image(
    host: &Host,
    repo: &Repository,
    snapshot_id: &str,
    snap: &Snapshot,
) -> anyhow::Result<Reference> {
    let store = host.store()?;
    let time = chrono::DateTime::parse_from_rfc3339(&snap.time).context("the snapshot's time is unreadable")?;
    let name = Reference::parse(&format!(
        "{}:snap-{}",
        snap.service.to_ascii_lowercase(),
        time.with_timezone(&chrono::Utc).format("%Y%m%dT%H%M%SZ")
    ))?;
    build_portable_image(host, repo, snapshot_id, snap, &name)?;
    trim_local_images(host, store, &name)?;
    Ok(name)
}

/// Removes all but the newest `LOCAL_SNAPSHOT_IMAGES` snap- images of `latest`'s service.
fn trim_local_images(host: &Host, store: &Store, latest: &Reference) -> anyhow::Result<()> {
    let mut snaps: Vec<(String, Reference)> = store
        .images()?
        .into_iter()
        .flat_map(|i| i.names)
        .filter(|n| n.same_repository(latest) && n.tag().is_some_and(|t| t.starts_with("snap-")))
        .map(|n| (n.tag().unwrap_or_default().to_string(), n))
        .collect();
    snaps.sort();
    let excess = snaps.len().saturating_sub(LOCAL_SNAPSHOT_IMAGES);
    let in_use = runtime::layers_in_use(host)?;
    let containers = host.containers()?;
    let used_images: std::collections::HashSet<Digest> =
        containers.ids()?.into_iter().filter_map(|id| containers.config(&id).ok()).map(|c| c.image_id).collect();
    for (_, name) in snaps.into_iter().take(excess) {
        let image = store.find(&name.to_string())?;
        if used_images.contains(image.id()) {
            continue;
        }
        if store.untag(&name)?.is_some() {
            store.remove_image(&image.manifest_digest, &in_use)?;
        }
    }
    Ok(())
}

/// Labels that make a snapshot image self-describing (read back by `restore --from`).
pub const LABEL_SERVICE: &str = "org.lifeboat.service";
pub const LABEL_SNAPSHOT: &str = "org.lifeboat.snapshot";
pub const LABEL_RUN_CONFIG: &str = "org.lifeboat.run-config";
pub const LABEL_VOLUMES: &str = "org.lifeboat.volumes";

/// Builds the portable image of a snapshot, named `name`: its image, its container layer, and
/// one layer per named volume holding the volume's content at its mount path; the run
/// configuration goes in the image config (command, env, ports, user) and, in full, in labels.
/// `docker run`/`podman run` of it serves the service with its data; `restore --from` brings it
/// back with its volumes. Layers are gzip-compressed, which every engine reads.
pub fn build_portable_image(
    host: &Host,
    repo: &Repository,
    snapshot_id: &str,
    snap: &Snapshot,
    name: &Reference,
) -> anyhow::Result<crate::image::Image> {
    let store = host.store()?;
    let base = store.image_by_manifest(&snap.image.manifest)?;
    let recorded: RunConfig =
        serde_json::from_value(snap.run_config.clone()).context("the snapshot's run configuration is unreadable")?;
    let label = format!("snapshot {}", &snapshot_id[..12.min(snapshot_id.len())]);
    let work = store.temp_path("portable");
    let layer_dir = work.path().join("layer");
    Restorer::new(repo, &format!("{label} container layer")).restore(&snap.container_layer, &layer_dir)?;
    let mut dirs = vec![(
        layer_dir.clone(),
        crate::image::layer::TreeMode::OverlayUpper,
        format!("lifeboat snapshot {}: container layer", snap.service),
    )];
    let mut volumes = Vec::new();
    for (i, v) in snap.volumes.iter().enumerate() {
        let root = work.path().join(format!("volume-{i}"));
        let at = root.join(v.target.trim_start_matches('/'));
        Restorer::new(repo, &format!("{label} volume {}", v.name)).restore(&v.tree, &at)?;
        dirs.push((
            root,
            crate::image::layer::TreeMode::Plain,
            format!("lifeboat snapshot {}: volume {} at {}", snap.service, v.name, v.target),
        ));
        volumes.push(serde_json::json!({"name": v.name, "path": v.target}));
    }
    let mut config = crate::runtime::commit::run_config(&base, &recorded);
    config.labels.insert(LABEL_SERVICE.into(), snap.service.clone());
    config.labels.insert(LABEL_SNAPSHOT.into(), snapshot_id.to_string());
    config.labels.insert(LABEL_RUN_CONFIG.into(), serde_json::to_string(&recorded)?);
    config.labels.insert(LABEL_VOLUMES.into(), serde_json::Value::Array(volumes).to_string());
    let opts = crate::image::commit::CommitOptions {
        changes: Vec::new(),
        message: Some(format!("Lifeboat snapshot {snapshot_id} of {} taken {}", snap.service, snap.time)),
        author: None,
        created_by: String::new(),
        run_config: Some(config),
        compression: crate::image::layer::Compression::Gzip,
    };
    let dir_refs: Vec<(&std::path::Path, crate::image::layer::TreeMode, String)> =
        dirs.iter().map(|(p, m, c)| (p.as_path(), *m, c.clone())).collect();
    Ok(crate::image::commit::commit_dirs(store, &base, &dir_refs, Some(name), &opts)?)
}

/// Brings a service back from a portable snapshot image (see `build_portable_image`): its
/// volumes are created fresh and filled from the image (refusing ones that exist), and the
/// container is recreated with the recorded configuration, started and health-checked.
pub fn restore_from_image(
    host: &Host,
    image: &crate::image::Image,
    reference: &str,
    opts: &RestoreOptions,
) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let labels = &image.config.config.labels;
    let run = labels.get(LABEL_RUN_CONFIG).ok_or_else(|| {
        crate::image::StoreError::Invalid(format!(
            "{reference} is not a Lifeboat snapshot image (no {LABEL_RUN_CONFIG} label)"
        ))
    })?;
    let mut recorded: RunConfig = serde_json::from_str(run).context("the image's run configuration is unreadable")?;
    let containers = host.containers()?;
    let name =
        opts.rename.clone().unwrap_or_else(|| labels.get(LABEL_SERVICE).cloned().unwrap_or(recorded.name.clone()));
    name_free_for_restore(containers, &name)?;
    let vols = host.volumes()?;
    for m in recorded.mounts.iter_mut() {
        if let MountSource::Volume { name: v } = &mut m.source {
            if let Some(n) = &opts.rename {
                *v = format!("{n}-{v}");
            }
            if vols.data_dir(v).exists() {
                bail!(ContainerError::Conflict(format!(
                    "volume {v} already exists; remove it (lifeboat volume rm) or restore with --as NEWNAME"
                )));
            }
        }
    }
    recorded.image = reference.to_string();
    let id = new_identity(&mut recorded, name, image);
    std::fs::create_dir_all(containers.dir(&id))?;
    containers.write_config(&recorded)?;
    let healthy = start_unless_asked_not_to(host, &recorded, opts)?;
    Ok(Restored { container: recorded, elapsed: started.elapsed(), fetched_image: false, healthy, hydrating: false })
}

/// How a restore drill decides the service is healthy.
pub enum DrillProbe {
    /// HTTP GET on the container's own loopback: port and path; 2xx or 3xx is healthy.
    Http(u16, String),
    /// A command inside the container; exit 0 is healthy.
    Command(String),
    /// The service's own health check, as its monitor runs it (killed at its timeout).
    Health(crate::runtime::container::HealthCheck),
    /// The container's process is running.
    Running,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DrillReport {
    pub snapshot: String,
    /// The service, or a stack's services joined with `+`.
    pub service: String,
    pub healthy: bool,
    /// From the start of the drill to the restore finishing (container started).
    pub restore_ms: u64,
    /// From the start of the drill to the first healthy probe.
    pub time_to_healthy_ms: Option<u64>,
    pub error: Option<String>,
    /// A stack's drill: each member's own report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<DrillReport>,
}

/// Rehearses a restore: the snapshot becomes a throw-away container (`SERVICE-drill-XXXX`, no
/// published ports, its volumes prefixed likewise), is probed until healthy or `timeout`, and
/// is removed with its volumes whatever happened.
///
/// `members` is one snapshot, or a stack's snapshots in the order they are restored (each
/// after the one whose network it joins, which it joins under its drill name). Every member
/// must become healthy by its own check (its health command, else: its process runs);
/// `probe` replaces that check for the last member, the application that uses the others.
pub fn drill(
    host: &Host,
    repo: &Repository,
    members: &[(String, Snapshot)],
    probe: Option<&DrillProbe>,
    timeout: Duration,
) -> anyhow::Result<DrillReport> {
    let started = Instant::now();
    let wall_start = std::time::SystemTime::now();
    let tag = crate::fsutil::random_hex(2);
    let drill_name = |service: &str| format!("{service}-drill-{tag}");
    let mut peers = std::collections::BTreeMap::new();
    let mut reports = Vec::new();
    let mut restored = Vec::new();
    for (i, (id, snap)) in members.iter().enumerate() {
        let name = drill_name(&snap.service);
        let opts = RestoreOptions {
            rename: Some(name.clone()),
            no_start: false,
            health_timeout: Duration::ZERO,
            throwaway: true,
            progress: None,
            peers: peers.clone(),
            instant: false,
            network_key: Some(format!("drill-{tag}")),
        };
        let result = restore(host, repo, id, snap, &opts);
        peers.insert(snap.service.clone(), name.clone());
        let mut report = DrillReport {
            snapshot: id.clone(),
            service: snap.service.clone(),
            healthy: false,
            restore_ms: started.elapsed().as_millis() as u64,
            time_to_healthy_ms: None,
            error: None,
            members: Vec::new(),
        };
        match result {
            Ok(r) => {
                let own = default_probe(snap);
                let probe = if i + 1 == members.len() { probe.unwrap_or(&own) } else { &own };
                let deadline = started + timeout;
                loop {
                    match probe_once(host, &r.container.id, probe) {
                        Ok(()) => {
                            report.healthy = true;
                            report.time_to_healthy_ms = Some(started.elapsed().as_millis() as u64);
                            // What it read to get here is what an instant restore fetches first.
                            let vols = host.volumes()?;
                            let data: Vec<(String, std::path::PathBuf)> = snap
                                .volumes
                                .iter()
                                .map(|v| (v.name.clone(), vols.data_dir(&format!("{name}-{}", v.name))))
                                .collect();
                            match instant::record_hot_set(host, &snap.service, &data, wall_start) {
                                Ok(n) => {
                                    tracing::debug!(service = snap.service.as_str(), files = n, "hot set recorded")
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot record the files the service read while starting")
                                }
                            }
                            break;
                        }
                        Err(e) if Instant::now() >= deadline => {
                            report.error = Some(format!("not healthy after {} s: {e}", timeout.as_secs()));
                            break;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
                restored.push(r.container.id);
            }
            Err(e) => report.error = Some(format!("{e:#}")),
        }
        let healthy = report.healthy;
        reports.push(report);
        if !healthy {
            break; // the others would wait for a peer that is not there
        }
    }
    // Clean up, the last restored first: every container (whatever state it reached) and every
    // volume made for it.
    let mut networks = std::collections::BTreeSet::new();
    for (_, snap) in members.iter().rev() {
        let name = drill_name(&snap.service);
        if let Ok(containers) = host.containers()
            && let Ok(c) = containers.named(&name)
        {
            if let crate::runtime::container::NetworkMode::Network(net) = &c.network {
                networks.insert(net.clone());
            }
            if let Err(e) = runtime::remove(host, &c.id, true) {
                tracing::warn!(container = name.as_str(), error = %e, "cannot remove the drill container");
            }
        }
        if let Ok(vols) = host.volumes() {
            for v in &snap.volumes {
                let vol = format!("{name}-{}", v.name);
                if vols.data_dir(&vol).exists()
                    && let Err(e) = vols.remove(&vol)
                {
                    tracing::warn!(volume = vol.as_str(), error = %e, "cannot remove the drill volume");
                }
            }
        }
    }
    // The drill's own network (a stack of a Compose project has one), once it is empty.
    for net in networks {
        if let Err(e) = runtime::remove_network_if_unused(host, &net) {
            tracing::warn!(network = net.as_str(), error = %e, "cannot remove the drill's network");
        }
    }
    if reports.len() == 1 && members.len() == 1 {
        return Ok(reports.remove(0));
    }
    let all_healthy = reports.len() == members.len() && reports.iter().all(|r| r.healthy);
    let failed = reports.iter().find(|r| !r.healthy);
    Ok(DrillReport {
        snapshot: members.first().map(|(id, _)| id.clone()).unwrap_or_default(),
        service: members.iter().map(|(_, s)| s.service.as_str()).collect::<Vec<_>>().join("+"),
        healthy: all_healthy,
        restore_ms: reports.iter().map(|r| r.restore_ms).max().unwrap_or(0),
        time_to_healthy_ms: if all_healthy { reports.iter().filter_map(|r| r.time_to_healthy_ms).max() } else { None },
        error: failed.map(|r| format!("{}: {}", r.service, r.error.as_deref().unwrap_or("not healthy"))),
        members: reports,
    })
}

/// A service's own check in a drill: its health check, else: its process runs.
fn default_probe(snap: &Snapshot) -> DrillProbe {
    let health = snap.run_config.get("health").cloned().filter(|h| !h.is_null());
    match health.map(serde_json::from_value::<crate::runtime::container::HealthCheck>) {
        Some(Ok(check)) => DrillProbe::Health(check),
        _ => DrillProbe::Running,
    }
}

fn probe_once(host: &Host, id: &str, probe: &DrillProbe) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let state = runtime::observed_state(containers, id)?;
    let pid = match (state.status, state.pid) {
        (Status::Running, Some(pid)) => pid,
        (status, _) => bail!("the container is {status:?}"),
    };
    match probe {
        DrillProbe::Running => Ok(()),
        DrillProbe::Command(cmd) => {
            let opts =
                runtime::ExecOptions { output: runtime::ExecOutput::Discard, ..runtime::ExecOptions::shell(cmd) };
            match runtime::exec(host, id, opts)? {
                0 => Ok(()),
                code => bail!("{cmd:?} exited with {code}"),
            }
        }
        DrillProbe::Health(check) => {
            let opts = runtime::ExecOptions {
                args: check.argv(),
                output: runtime::ExecOutput::Discard,
                timeout: Some(Duration::from_secs(check.timeout_secs.max(1))),
                ..runtime::ExecOptions::shell("")
            };
            match runtime::exec(host, id, opts)? {
                0 => Ok(()),
                code => bail!("its health check exited with {code}"),
            }
        }
        DrillProbe::Http(port, path) => {
            let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let code = runtime::network::http_get_in(&netns, *port, path, Duration::from_secs(5))?;
            if (200..400).contains(&code) { Ok(()) } else { bail!("GET {path} on port {port} answered {code}") }
        }
    }
}

/// Restores an image's blobs from the repository into the local store, verifying digests;
/// its layers unpack at once, each on its own core (a new host waits for the largest).
pub(crate) fn fetch_image(store: &Store, repo: &Repository, snap: &Snapshot, label: &str) -> anyhow::Result<()> {
    let work = store.temp_path("fetch");
    Restorer::new(repo, &format!("{label} image")).restore(&snap.image.tree, work.path())?;
    let blob = |d: &Digest| work.path().join(d.hex());
    let manifest_bytes = std::fs::read(blob(&snap.image.manifest))?;
    let manifest: crate::image::spec::Manifest = serde_json::from_slice(&manifest_bytes)?;
    let config_bytes = std::fs::read(blob(&manifest.config.digest))?;
    let config: crate::image::spec::ImageConfig = serde_json::from_slice(&config_bytes)?;
    let mut txn = store.begin()?;
    let mut layers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        if !seen.insert(&layer.digest) {
            continue; // listed twice: unpacked once
        }
        let file = std::fs::File::open(blob(&layer.digest))?;
        let input = LayerInput::Blob {
            media_type: layer.media_type.clone(),
            digest: Some(layer.digest.clone()),
            size: Some(layer.size),
        };
        layers.push((std::io::BufReader::new(file), input, Some(diff_id.clone())));
    }
    txn.add_layers(layers, crate::image::store::unpack_threads())?;
    txn.put_blob(&manifest.config.media_type, &config_bytes)?;
    let desc = txn
        .put_blob(manifest.media_type.as_deref().unwrap_or(crate::image::spec::MEDIA_TYPE_MANIFEST), &manifest_bytes)?;
    if desc.digest != snap.image.manifest {
        bail!("{label}: the image manifest does not match its recorded digest");
    }
    let names: Vec<Reference> = Reference::parse(&snap.image.reference).ok().into_iter().collect();
    txn.commit(&[(desc, names)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::container::{RunConfig, State};
    use crate::runtime::kernel::Fake;
    use std::sync::Arc;

    /// A host with running containers `ids` (v1 freezers in a fake kernel; `no_freezer` has
    /// none).
    fn host_with(ids: &[&str], no_freezer: &[&str]) -> (tempfile::TempDir, Host, Arc<Fake>) {
        let tmp = tempfile::tempdir().unwrap();
        let mut fake = Fake::new();
        for id in ids.iter().filter(|id| !no_freezer.contains(id)) {
            let dir = format!("/sys/fs/cgroup/freezer/lifeboat/{id}");
            fake = fake.file(format!("{dir}/cgroup.procs"), "1\n").file(format!("{dir}/freezer.state"), "THAWED\n");
        }
        let fake = Arc::new(fake);
        let paths = runtime::Paths { root: tmp.path().join("root"), run_root: tmp.path().join("run") };
        let host = Host::with_kernel(paths, Box::new(fake.clone()));
        let containers = host.containers().unwrap();
        for id in ids {
            let config = RunConfig { id: id.to_string(), name: format!("c-{id}"), ..runtime::spec::tests::sample() };
            containers.create_record(&config).unwrap();
            let state = State { status: Status::Running, pid: Some(std::process::id() as i32), ..State::created() };
            containers.write_state(id, &state).unwrap();
        }
        (tmp, host, fake)
    }

    fn writes(fake: &Fake) -> Vec<String> {
        fake.writes()
            .into_iter()
            .map(|(p, v)| format!("{} {v}", p.parent().unwrap().file_name().unwrap().to_string_lossy()))
            .collect()
    }

    #[test]
    fn a_group_is_frozen_in_order_and_thawed_in_reverse_when_dropped() {
        let (_tmp, host, fake) = host_with(&["aaa", "bbb"], &[]);
        {
            let frozen = Frozen::freeze(&host, &["aaa", "bbb"], &[]).unwrap();
            assert_eq!(frozen.ids, ["aaa", "bbb"]);
            for id in ["aaa", "bbb"] {
                assert_eq!(host.containers().unwrap().state(id).unwrap().status, Status::Paused);
                assert!(host.containers().unwrap().dir(id).join(FROZEN_BY).exists());
            }
        }
        assert_eq!(writes(&fake), ["aaa FROZEN", "bbb FROZEN", "bbb THAWED", "aaa THAWED"]);
        for id in ["aaa", "bbb"] {
            assert_eq!(host.containers().unwrap().state(id).unwrap().status, Status::Running);
            assert!(!host.containers().unwrap().dir(id).join(FROZEN_BY).exists());
        }
    }

    #[test]
    fn when_one_cannot_be_frozen_those_before_it_are_thawed() {
        let (_tmp, host, fake) = host_with(&["aaa", "bbb", "ccc"], &["bbb"]);
        let e = Frozen::freeze(&host, &["aaa", "bbb", "ccc"], &[]).err().unwrap();
        assert!(format!("{e:#}").contains("cannot freeze container bbb"), "{e:#}");
        assert_eq!(writes(&fake), ["aaa FROZEN", "aaa THAWED"]);
        for id in ["aaa", "bbb", "ccc"] {
            assert_eq!(host.containers().unwrap().state(id).unwrap().status, Status::Running, "{id}");
            assert!(!host.containers().unwrap().dir(id).join(FROZEN_BY).exists(), "{id}");
        }
    }
}
