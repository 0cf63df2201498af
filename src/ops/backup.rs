//! Repository and snapshot commands: opening a repository (its location and password,
//! including the embedded default one), init, info, stats, unlock, snapshot, snapshots,
//! restore (from a repository or a snapshot image), drill, check, forget, prune, copy, diff
//! and keys.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::backend::Kind;
use crate::error::UsageError;
use crate::image::Reference;
use crate::ops::registries::TlsRequest;
use crate::registry::client::Options as RegistryOptions;
use crate::repo::snapshot::{self, Snapshot, SnapshotStats};
use crate::repo::{Repository, lock::Lock};
use crate::runtime::Host;
use crate::snapshot::{CaptureOptions, RestoreOptions};

pub use crate::report::SnapshotReport;

/// Asks the person at the terminal for a password (the command line's prompt), if anyone.
pub type AskPassword<'a> = &'a dyn Fn() -> anyhow::Result<Option<Vec<u8>>>;

/// Where a repository is and how to open it.
#[derive(Debug, Clone, Default)]
pub struct RepoSpec {
    /// A path or `s3://…`; None: the host's default repository, `<root>/repository`, whose
    /// password Lifeboat generates and keeps in `<root>/repository.password`.
    pub location: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl RepoSpec {
    fn location(&self, host: &Host) -> (String, bool) {
        match &self.location {
            Some(r) => (r.clone(), false),
            None => (host.paths().root.join("repository").display().to_string(), true),
        }
    }

    /// The password: its file, the default repository's generated one (made now with
    /// `create_default`), or what `ask` gets.
    fn password(
        &self,
        host: &Host,
        is_default: bool,
        create_default: bool,
        ask: AskPassword,
    ) -> anyhow::Result<Vec<u8>> {
        if let Some(f) = &self.password_file {
            return read_password_file(f);
        }
        if is_default {
            let f = host.paths().root.join("repository.password");
            if !f.exists() && create_default {
                std::fs::create_dir_all(&host.paths().root)?;
                let pw = crate::fsutil::random_hex(32);
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&f)?;
                std::io::Write::write_all(&mut file, pw.as_bytes())?;
            }
            if f.exists() {
                return read_password_file(&f);
            }
        }
        if let Some(pw) = ask()? {
            return Ok(pw);
        }
        Err(UsageError("no repository password: use --password-file or LIFEBOAT_PASSWORD_FILE".into()).into())
    }

    /// Opens the repository (the default one is created on first use). Its locks wait as
    /// long as `LIFEBOAT_RETRY_LOCK` says (`5m`; the agent sets it for its jobs).
    pub fn open(&self, host: &Host, ask: AskPassword) -> anyhow::Result<Repository> {
        self.open_with(host, ask, true)
    }

    /// Opens the repository only if it exists, the default one too (for looks that must
    /// never make anything: `status`, completions, the agent's readings).
    pub fn open_existing(&self, host: &Host, ask: AskPassword) -> anyhow::Result<Repository> {
        self.open_with(host, ask, false)
    }

    fn open_with(&self, host: &Host, ask: AskPassword, create_default: bool) -> anyhow::Result<Repository> {
        let (location, is_default) = self.location(host);
        let backend = crate::backend::open(&location)?;
        let exists = backend.stat(Kind::Config, "config")?.is_some();
        let mut repo = if is_default && !exists && create_default {
            let password = self.password(host, true, true, ask)?;
            Repository::init(backend, &password)?
        } else if !exists {
            // Said before any password is asked for.
            return Err(crate::repo::RepoError::Missing(location).into());
        } else {
            let password = self.password(host, is_default, false, ask)?;
            Repository::open(backend, &password)?
        };
        let wait = std::env::var("LIFEBOAT_RETRY_LOCK").ok().and_then(|v| crate::config::parse_duration(&v).ok());
        repo.set_lock_wait(wait.unwrap_or_default());
        if let Some(every) =
            std::env::var("LIFEBOAT_LOCK_REFRESH").ok().and_then(|v| crate::config::parse_duration(&v).ok())
        {
            repo.set_lock_refresh(every);
        }
        Ok(repo)
    }

    /// Creates a new, empty repository here; returns its ID and location.
    pub fn init(&self, host: &Host, ask: AskPassword) -> anyhow::Result<(String, String)> {
        let (location, is_default) = self.location(host);
        let password = self.password(host, is_default, true, ask)?;
        let r = Repository::init(crate::backend::open(&location)?, &password)?;
        Ok((r.config.id.clone(), location))
    }
}

/// A repository to open: where it is, and how to get its password. Commands take this and
/// open the repository themselves, so the command line makes one call per command.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    pub spec: &'a RepoSpec,
    pub ask: AskPassword<'a>,
}

impl Access<'_> {
    pub fn open(&self, host: &Host) -> anyhow::Result<Repository> {
        self.spec.open(host, self.ask)
    }
}

/// The repositories `snapshot --repo A --repo B --password-file …` names: one password file
/// for all, or one per repository; none named: the default repository.
pub fn pair_repositories(repos: &[String], password_files: &[PathBuf]) -> Result<Vec<RepoSpec>, UsageError> {
    if password_files.len() > 1 && password_files.len() != repos.len() {
        return Err(UsageError(format!(
            "{} password files for {} repositories: give one for all, or one per --repo",
            password_files.len(),
            repos.len()
        )));
    }
    if repos.is_empty() {
        return Ok(vec![RepoSpec { location: None, password_file: password_files.first().cloned() }]);
    }
    Ok(repos
        .iter()
        .enumerate()
        .map(|(i, r)| RepoSpec {
            location: Some(r.clone()),
            password_file: password_files.get(i).or(password_files.first()).cloned(),
        })
        .collect())
}

/// Where the configuration is, and whether it was named (then it must be there).
pub struct ConfigPlace<'a> {
    pub path: &'a Path,
    pub named: bool,
    /// False for the agent's own steps, which name their repositories exactly.
    pub consult: bool,
}

impl ConfigPlace<'_> {
    /// The configuration; one at the default place that cannot be read is a warning there,
    /// not a failure of commands it has nothing to say about.
    fn load(&self) -> anyhow::Result<Option<crate::config::Config>> {
        if !self.consult || (!self.named && !self.path.exists()) {
            return Ok(None);
        }
        match crate::config::Config::load(self.path) {
            Ok(c) => Ok(Some(c)),
            Err(e) if !self.named => {
                tracing::warn!(config = %self.path.display(), error = %e, "the configuration is not used");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `--repo` looks like a name (`offsite`), not a path or URL.
fn is_repo_name(repo: &str) -> bool {
    !repo.is_empty()
        && !repo.contains(['/', ':'])
        && !repo.starts_with('.')
        && repo.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The repositories `--repo`s (and their `--password-file`s) name, with the names of the
/// configuration's `[repositories]` resolved (their password file unless one is given; a
/// name the configuration has wins over a directory of that name); none named and one
/// service: its configured repositories, else the host's default one. `fallback` is the
/// password file of a repository that has no other (the environment's).
pub fn configured_repositories(
    config: &ConfigPlace<'_>,
    repos: &[String],
    password_files: &[PathBuf],
    fallback: Option<&Path>,
    services: &[&str],
) -> anyhow::Result<Vec<RepoSpec>> {
    let specs = resolve_configured(config, repos, password_files, services)?;
    Ok(specs
        .into_iter()
        .map(|s| RepoSpec { password_file: s.password_file.or_else(|| fallback.map(Path::to_path_buf)), ..s })
        .collect())
}

fn resolve_configured(
    config: &ConfigPlace<'_>,
    repos: &[String],
    password_files: &[PathBuf],
    services: &[&str],
) -> anyhow::Result<Vec<RepoSpec>> {
    let mut specs = pair_repositories(repos, password_files)?;
    // A service's own repositories are the default for one service named alone (several may
    // name different ones: those go to the default repository, as the agent sends a stack
    // whose policy names none).
    let wants_config = repos.iter().any(|r| is_repo_name(r)) || (repos.is_empty() && services.len() == 1);
    let Some(cfg) = (if wants_config { config.load()? } else { None }) else { return Ok(specs) };
    if repos.is_empty() {
        let own = services.iter().find_map(|s| {
            let policy = cfg.services.get(*s)?.snapshot.as_ref()?;
            (!policy.repositories.is_empty()).then_some(&policy.repositories)
        });
        if let Some(names) = own {
            specs = names
                .iter()
                .filter_map(|n| cfg.repositories.get(n.get_ref()))
                .map(|r| RepoSpec {
                    location: Some(r.location()),
                    password_file: password_files.first().cloned().or_else(|| r.password_file.clone()),
                })
                .collect();
        }
        return Ok(specs);
    }
    for spec in specs.iter_mut() {
        let Some(name) = spec.location.clone().filter(|r| is_repo_name(r)) else { continue };
        match cfg.repositories.get(&name) {
            Some(r) => {
                spec.location = Some(r.location());
                if password_files.is_empty() {
                    spec.password_file = r.password_file.clone();
                }
            }
            None if !Path::new(&name).is_dir() => {
                let known: Vec<&str> = cfg.repositories.keys().map(String::as_str).collect();
                return Err(UsageError(format!(
                    "--repo {name}: {} names no such repository (it has: {}), and there is no directory {name} here",
                    config.path.display(),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ))
                .into());
            }
            None => {}
        }
    }
    Ok(specs)
}

/// How `tag` changes snapshots' tags: `set` replaces them, then `add` and `remove` apply.
#[derive(Debug, Default)]
pub struct TagChange {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub set: Option<Vec<String>>,
}

/// What `tag` did to one snapshot: its new ID (a snapshot's ID is its content), or none if
/// its tags were already so.
#[derive(Debug, Serialize)]
pub struct Retagged {
    pub old_id: String,
    pub new_id: Option<String>,
    pub service: String,
    pub tags: Vec<String>,
}

/// Changes the tags of the snapshots `which` names (ID prefixes), as restic's `tag` does:
/// each is written again with its new tags, then the old one is removed, under the
/// repository's exclusive lock. Stacks keep their members; the next snapshot's parent is
/// found by service, not by ID, so nothing points at the old ID.
pub fn retag(host: &Host, access: Access, which: &[String], change: &TagChange) -> anyhow::Result<Vec<Retagged>> {
    let mut repo = access.open(host)?;
    // Exclusive, as forget's: a snapshot found before a forget removed it must not come back,
    // and two retags must not each write a copy of one snapshot.
    let lock = Lock::acquire(&mut repo, true)?;
    let mut found: Vec<(String, Snapshot)> = Vec::new();
    for w in which {
        let (id, snap) = snapshot::find(&repo, None, w)?;
        if !found.iter().any(|(f, _)| *f == id) {
            found.push((id, snap));
        }
    }
    let mut out = Vec::new();
    for (id, mut snap) in found {
        let mut tags = change.set.clone().unwrap_or_else(|| snap.tags.clone());
        for t in &change.add {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags.retain(|t| !change.remove.contains(t));
        if tags == snap.tags {
            out.push(Retagged { old_id: id, new_id: None, service: snap.service, tags });
            continue;
        }
        snap.tags = tags.clone();
        repo.check_locks()?;
        let new_id = repo.save_object(Kind::Snapshot, &snap)?;
        repo.check_locks()?;
        if new_id != id {
            repo.backend().delete(Kind::Snapshot, &id)?;
        }
        out.push(Retagged { old_id: id, new_id: Some(new_id), service: snap.service, tags });
    }
    drop(lock);
    Ok(out)
}

/// A password from a file: its first line, not empty.
pub fn read_password_file(f: &Path) -> anyhow::Result<Vec<u8>> {
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

/// A repository's identity and size.
#[derive(Debug, Serialize, Deserialize)]
pub struct RepoInfo {
    pub location: String,
    pub id: String,
    pub version: u32,
    pub chunker: serde_json::Value,
    pub snapshots: usize,
    pub blobs: usize,
    pub packs: usize,
    pub pack_bytes: u64,
}

pub fn info(host: &Host, access: Access) -> anyhow::Result<RepoInfo> {
    let repo = &access.open(host)?;
    let snaps = snapshot::list(repo)?;
    let packs = repo.packs();
    let mut size = 0;
    for p in packs.keys() {
        size += repo.backend().stat(Kind::Pack, &hex::encode(p))?.unwrap_or(0);
    }
    Ok(RepoInfo {
        location: repo.location(),
        id: repo.config.id.clone(),
        version: repo.config.version,
        chunker: serde_json::to_value(repo.config.chunker)?,
        snapshots: snaps.len(),
        blobs: repo.blob_count(),
        packs: packs.len(),
        pack_bytes: size,
    })
}

/// What a repository stores, before and after deduplication and compression.
#[derive(Debug, Serialize, Deserialize)]
pub struct RepoStats {
    pub snapshots: usize,
    /// The snapshots' sizes added up.
    pub logical_bytes: u64,
    /// The distinct data they hold, uncompressed.
    pub unique_bytes: u64,
    /// What that takes in the repository (compressed, encrypted).
    pub stored_bytes: u64,
    pub blobs: usize,
    /// logical / stored.
    pub ratio: f64,
}

pub fn stats(host: &Host, access: Access) -> anyhow::Result<RepoStats> {
    let repo = &access.open(host)?;
    let snaps = snapshot::list(repo)?;
    let logical: u64 = snaps.iter().map(|(_, s)| s.stats.bytes).sum();
    let mut used = std::collections::HashSet::new();
    for (_, s) in &snaps {
        let mut roots = vec![s.image.tree, s.container_layer];
        roots.extend(s.volumes.iter().map(|v| v.tree));
        used.extend(crate::repo::maintenance::reachable(repo, roots)?);
    }
    let (mut raw, mut stored) = (0u64, 0u64);
    for blobs in repo.packs().values() {
        for (id, loc) in blobs {
            if used.contains(id) {
                raw += loc.raw as u64;
                stored += loc.length as u64;
            }
        }
    }
    let ratio = if stored > 0 { logical as f64 / stored as f64 } else { 0.0 };
    Ok(RepoStats {
        snapshots: snaps.len(),
        logical_bytes: logical,
        unique_bytes: raw,
        stored_bytes: stored,
        blobs: used.len(),
        ratio,
    })
}

/// Removes stale locks (or all with `all`); returns how many.
pub fn unlock(host: &Host, access: Access, all: bool) -> anyhow::Result<usize> {
    Ok(Lock::remove_stale(&access.open(host)?, all)?)
}

/// `registry://HOST/REPO[:TAG]` → the reference.
pub fn registry_target(url: &str) -> anyhow::Result<Reference> {
    let rest = url
        .strip_prefix("registry://")
        .ok_or_else(|| UsageError(format!("{url:?}: a registry target is written registry://HOST/REPO[:TAG]")))?;
    if !rest.contains('/') {
        bail!(UsageError(format!("{url:?}: name the repository: registry://HOST/REPO[:TAG]")));
    }
    Ok(Reference::parse(rest)?)
}

/// A snapshot to take: of which service, into which repositories, and what else to do.
pub struct SnapshotRequest<'a> {
    /// The services, frozen together at one instant when there are several (a stack).
    pub services: Vec<crate::snapshot::ServicePlan>,
    /// Each repository gets the snapshot, in order.
    pub repositories: Vec<RepoSpec>,
    pub capture: CaptureOptions,
    /// Commit the local image `SERVICE:snap-<UTC time>` (the newest 3 are kept).
    pub local_image: bool,
    /// Also push the snapshot as a portable image to this registry target.
    pub push: Option<(String, TlsRequest)>,
    pub ask: AskPassword<'a>,
    pub transfers: &'a dyn crate::registry::Progress,
}

/// The plans of `snapshot SERVICE… [--exec-before C] [--consistency [SERVICE=]RECIPE]`: hooks
/// for every service; a bare recipe for the only service, `SERVICE=RECIPE` for one of several.
pub fn service_plans(
    names: &[String],
    exec_before: &[String],
    exec_after: &[String],
    consistency: &[String],
) -> Result<Vec<crate::snapshot::ServicePlan>, UsageError> {
    use crate::snapshot::consistency::Consistency;
    let mut plans: Vec<crate::snapshot::ServicePlan> = names
        .iter()
        .map(|n| crate::snapshot::ServicePlan {
            name: n.clone(),
            exec_before: exec_before.to_vec(),
            exec_after: exec_after.to_vec(),
            consistency: Consistency::Freeze,
        })
        .collect();
    for c in consistency {
        let (who, recipe) = match c.split_once('=') {
            Some((who, recipe)) => (Some(who), recipe),
            None => (None, c.as_str()),
        };
        let recipe = Consistency::parse(recipe).map_err(UsageError)?;
        match who {
            Some(who) => match plans.iter_mut().find(|p| p.name == who) {
                Some(p) => p.consistency = recipe,
                None => return Err(UsageError(format!("--consistency {c}: {who} is not one of the services named"))),
            },
            None if plans.len() == 1 => plans[0].consistency = recipe,
            None => return Err(UsageError(format!("--consistency {c}: say which service (SERVICE={c})"))),
        }
    }
    Ok(plans)
}

/// Takes a snapshot of a running service into each repository; returns one report per
/// repository. The service is frozen once per repository, for milliseconds.
pub fn take_snapshot(host: &Host, req: &SnapshotRequest) -> anyhow::Result<Vec<SnapshotReport>> {
    let push_target = match &req.push {
        // A bad target is refused before anything is frozen.
        Some(_)
            if req.services.len() > 1
                || req.services.iter().any(|p| {
                    matches!(crate::engine::Target::parse(&p.name), Some(Ok(t)) if !matches!(t, crate::engine::Target::Container(..)))
                }) =>
        {
            bail!(UsageError("--to pushes one service's snapshot: name one service".into()))
        }
        Some((to, _)) => Some(registry_target(to)?),
        None => None,
    };
    let names = req.services.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(" and ");
    let mut results = Vec::new();
    // By service: a plan may stand for several (an engine's project).
    let mut images: std::collections::BTreeMap<String, String> = Default::default();
    let mut pushed: Option<String> = None;
    for (n, spec) in req.repositories.iter().enumerate() {
        let mut repo = spec.open(host, req.ask)?;
        let taken = crate::snapshot::capture_stack(host, &mut repo, &req.services, &req.capture)
            .with_context(|| format!("cannot snapshot {names} into {}", repo.location()))?;
        for (id, snap) in taken {
            if n == 0 && req.local_image {
                // The service is running again; the local image comes from what was stored.
                let name = crate::snapshot::commit_local_image(host, &repo, &id, &snap).with_context(|| {
                    format!("snapshot {} was saved, but the local image could not be made", &id[..12])
                })?;
                images.insert(snap.service.clone(), name.familiar());
            }
            if let (Some(target), Some((to, tls)), None) = (&push_target, &req.push, &pushed) {
                let tls = tls.options(target.domain());
                pushed = Some(push_snapshot(host, &repo, &id, &snap, target, to, &tls, req.transfers)?);
            }
            results.push((repo.location(), id, snap));
        }
    }
    Ok(results
        .into_iter()
        .map(|(repository, id, snap)| SnapshotReport {
            repository,
            id,
            image: images.get(&snap.service).cloned(),
            service: snap.service,
            time: snap.time,
            stats: snap.stats,
            pushed: pushed.clone(),
            stack: snap.stack.map(|s| s.id),
        })
        .collect())
}

/// Builds the portable image of a snapshot and pushes it; returns where it went.
#[allow(clippy::too_many_arguments)]
fn push_snapshot(
    host: &Host,
    repo: &Repository,
    id: &str,
    snap: &Snapshot,
    target: &Reference,
    to: &str,
    tls: &RegistryOptions,
    transfers: &dyn crate::registry::Progress,
) -> anyhow::Result<String> {
    let time = chrono::DateTime::parse_from_rfc3339(&snap.time)?.with_timezone(&chrono::Utc);
    let snap_tag = target.with_tag(&format!("snap-{}", time.format("%Y%m%dT%H%M%SZ")))?;
    let image = crate::snapshot::build_portable_image(host, repo, id, snap, &snap_tag)?;
    let store = host.store()?;
    let mut targets = vec![snap_tag.clone()];
    if target.tag().is_some_and(|t| t != "latest") || to.ends_with(":latest") {
        store.tag(&image, target)?;
        targets.push(target.clone());
    }
    for t in &targets {
        crate::registry::push(store, &image, t, tls, transfers)
            .with_context(|| format!("snapshot {} was saved, but pushing it to {} failed", &id[..12], t.familiar()))?;
    }
    Ok(targets.last().expect("one target").familiar())
}

/// One snapshot as `snapshots` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub id: String,
    pub time: String,
    pub service: String,
    pub host: String,
    pub tags: Vec<String>,
    pub stats: SnapshotStats,
    pub parent: Option<String>,
    /// The stack snapshot it is part of, and that stack's services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<crate::repo::snapshot::StackRef>,
}

/// A service's newest snapshot in a repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LastSnapshot {
    pub id: String,
    pub time: String,
    /// Bytes it added to the repository.
    pub added_bytes: u64,
}

/// A repository at a glance: how many snapshots, how much it stores, and each service's
/// newest snapshot (or why it could not be read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RepoSummary {
    pub name: String,
    pub location: String,
    pub snapshots: usize,
    /// The packs' bytes: what the repository takes in its storage.
    pub stored_bytes: u64,
    #[serde(default)]
    pub services: std::collections::BTreeMap<String, LastSnapshot>,
    /// When this was read.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads a repository's summary without a prompt (its password from its file, or the
/// default repository's kept one) and without a lock (nothing is written); an error is kept
/// in the summary.
fn summarize(host: &Host, name: &str, spec: &RepoSpec) -> RepoSummary {
    let mut out = RepoSummary {
        name: name.to_string(),
        location: spec.location(host).0,
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ..Default::default()
    };
    let ask = || Ok(None);
    let read = (|| -> anyhow::Result<()> {
        let repo = spec.open_existing(host, &ask)?;
        let snaps = snapshot::list(&repo)?;
        out.snapshots = snaps.len();
        out.stored_bytes = repo.stored_bytes();
        for (id, s) in snaps {
            let last = LastSnapshot { id, time: s.time.clone(), added_bytes: s.stats.added_bytes };
            out.services.insert(s.service.clone(), last); // oldest first: the newest stays
        }
        Ok(())
    })();
    if let Err(e) = read {
        out.error = Some(crate::error::describe(&e));
    }
    out
}

/// Whether the host's default repository (`<root>/repository`) has been made.
fn default_repository_exists(host: &Host) -> bool {
    host.paths().root.join("repository").join("config").is_file()
}

/// The repositories to look at: every repository of the configuration, and the host's
/// default repository if it exists (services without repositories of their own snapshot
/// there). A configured repository without a password file takes `fallback`'s.
pub fn repositories_at_a_glance(
    host: &Host,
    config: Option<&crate::config::Config>,
    fallback: Option<&Path>,
) -> Vec<(String, RepoSpec)> {
    let mut out: Vec<(String, RepoSpec)> = config
        .map(|c| {
            c.repositories
                .iter()
                .map(|(name, r)| {
                    let password_file = r.password_file.clone().or_else(|| fallback.map(Path::to_path_buf));
                    (name.clone(), RepoSpec { location: Some(r.location()), password_file })
                })
                .collect()
        })
        .unwrap_or_default();
    let default = RepoSpec { location: None, password_file: None };
    let default_location = default.location(host).0;
    let configured_there =
        out.iter().any(|(name, spec)| name == "default" || spec.location(host).0 == default_location);
    if !configured_there && default_repository_exists(host) {
        out.push(("default".to_string(), default));
    }
    out
}

/// Each repository at a glance, read side by side; one that has not answered within `limit`
/// (an unreachable store retries for minutes) is reported as such. Nothing is created,
/// nothing asked, no lock taken.
pub fn repository_summaries(host: &Host, repositories: &[(String, RepoSpec)], limit: Duration) -> Vec<RepoSummary> {
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, (name, spec)) in repositories.iter().enumerate() {
        let (tx, name, spec, paths) = (tx.clone(), name.clone(), spec.clone(), host.paths().clone());
        let spawned = std::thread::Builder::new().name(format!("read {name}")).spawn(move || {
            let host = Host::new(paths);
            let _ = tx.send((i, summarize(&host, &name, &spec)));
        });
        if let Err(e) = spawned {
            tracing::warn!(repository = repositories[i].0.as_str(), error = %e, "cannot start a thread to read it");
        }
    }
    drop(tx);
    let deadline = std::time::Instant::now() + limit;
    let mut got: Vec<Option<RepoSummary>> = vec![None; repositories.len()];
    while got.iter().any(Option::is_none) {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok((i, summary)) => got[i] = Some(summary),
            Err(_) => break,
        }
    }
    got.into_iter()
        .zip(repositories)
        .map(|(summary, (name, spec))| {
            summary.unwrap_or_else(|| RepoSummary {
                name: name.clone(),
                location: spec.location(host).0,
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                error: Some(format!("no answer within {} s", limit.as_secs())),
                ..Default::default()
            })
        })
        .collect()
}

/// The snapshots of the host's default repository, oldest first, when it exists and its
/// password is the one Lifeboat keeps: nothing is made and nothing asked (for completions).
pub fn default_repository_snapshots(host: &Host) -> Vec<SnapshotRow> {
    if !default_repository_exists(host) || !host.paths().root.join("repository.password").is_file() {
        return Vec::new();
    }
    let spec = RepoSpec { location: None, password_file: None };
    let ask = || Ok(None);
    let Ok(repo) = spec.open_existing(host, &ask) else { return Vec::new() };
    snapshot_rows(snapshot::list(&repo).unwrap_or_default(), &SnapshotFilter::default())
}

/// The repository's snapshots, oldest first; those of `service` only if given.
/// Which snapshots `snapshots` lists, as restic's flags choose them.
#[derive(Debug, Default)]
pub struct SnapshotFilter {
    pub service: Option<String>,
    /// Each entry a comma-separated set that a snapshot must hold all of; any entry will do.
    pub tags: Vec<String>,
    /// Any of these hosts.
    pub hosts: Vec<String>,
    /// Only the newest N of each service.
    pub latest: Option<usize>,
}

impl SnapshotFilter {
    fn admits(&self, s: &Snapshot) -> bool {
        self.service.as_deref().is_none_or(|n| s.service == n)
            && (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|set| set.split(',').filter(|t| !t.is_empty()).all(|t| s.tags.iter().any(|x| x == t))))
    }
}

pub fn list(host: &Host, access: Access, filter: &SnapshotFilter) -> anyhow::Result<Vec<SnapshotRow>> {
    Ok(snapshot_rows(snapshot::list(&access.open(host)?)?, filter))
}

/// The rows of `snapshots` (oldest first) that `filter` admits.
fn snapshot_rows(all: Vec<(String, Snapshot)>, filter: &SnapshotFilter) -> Vec<SnapshotRow> {
    let mut admitted: Vec<(String, Snapshot)> = all.into_iter().filter(|(_, s)| filter.admits(s)).collect();
    if let Some(n) = filter.latest {
        // Newest first, counted per service, then back to oldest first.
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        admitted.reverse();
        admitted.retain(|(_, s)| {
            let count = seen.entry(s.service.clone()).or_default();
            *count += 1;
            *count <= n
        });
        admitted.reverse();
    }
    admitted
        .into_iter()
        .map(|(id, s)| SnapshotRow {
            id,
            time: s.time,
            service: s.service,
            host: s.hostname,
            tags: s.tags,
            stats: s.stats,
            parent: s.parent,
            stack: s.stack,
        })
        .collect()
}

/// The snapshot to restore: the newest of `service` taken at or before `at` (RFC 3339 or a
/// date, the end of that day), or the one `which` names (an ID prefix, or `latest`).
pub(crate) fn select(
    repo: &Repository,
    service: &str,
    which: &str,
    at: Option<&str>,
) -> anyhow::Result<(String, Snapshot)> {
    let Some(at) = at else { return Ok(snapshot::find(repo, Some(service), which)?) };
    let limit = parse_time(at)?;
    snapshot::list(repo)?
        .into_iter()
        .rev()
        .find(|(_, s)| s.service == service && chrono::DateTime::parse_from_rfc3339(&s.time).is_ok_and(|t| t <= limit))
        .ok_or_else(|| {
            crate::repo::RepoError::NotFound {
                location: repo.location(),
                what: format!("no snapshot of {service} at or before {at}"),
            }
            .into()
        })
}

/// RFC 3339, or a bare date (the end of that day, UTC).
pub(crate) fn parse_time(s: &str) -> anyhow::Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let end = d.and_hms_opt(23, 59, 59).expect("valid time").and_utc();
        return Ok(end.fixed_offset());
    }
    bail!(UsageError(format!("invalid time {s:?}: use RFC 3339 (2026-11-27T02:30:00Z) or a date (2026-11-27)")))
}

/// RFC 3339, or a bare date (the start of that day, UTC): where a `--since` begins.
pub(crate) fn parse_start(s: &str) -> anyhow::Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("valid time").and_utc().fixed_offset());
    }
    parse_time(s)
}

/// A restore from a repository.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub container: String,
    pub name: String,
    pub seconds: f64,
    pub fetched_image: bool,
    pub healthy: Option<bool>,
    /// An instant restore: its volumes are being filled behind the running service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hydrating: bool,
}

/// Takes up an instant restore whose hydrator died (`restore NAME --finish`).
pub fn finish_instant(host: &Host, access: Access, name: &str) -> anyhow::Result<crate::snapshot::instant::Finished> {
    let repo = access.open(host)?;
    crate::snapshot::instant::finish(host, &repo, name).with_context(|| format!("cannot finish restoring {name}"))
}

/// Which snapshot of a service to restore: the one `which` names (an ID prefix, or
/// `latest`), or the newest taken at or before `at`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub which: String,
    pub at: Option<String>,
}

pub fn restore(
    host: &Host,
    access: Access,
    service: &str,
    selection: &Selection,
    opts: &RestoreOptions,
) -> anyhow::Result<RestoreReport> {
    let repo = &access.open(host)?;
    let (id, snap) = select(repo, service, &selection.which, selection.at.as_deref())?;
    let (id, snap) = (&id, &snap);
    let r = crate::snapshot::restore(host, repo, id, snap, opts)
        .with_context(|| format!("cannot restore {}", snap.service))?;
    Ok(RestoreReport {
        snapshot: id.to_string(),
        container: r.container.id.clone(),
        name: r.container.name.clone(),
        seconds: r.elapsed.as_secs_f64(),
        fetched_image: r.fetched_image,
        healthy: r.healthy,
        hydrating: r.hydrating,
    })
}

/// Restores a service into Docker or Podman (`to` is `docker://` or `podman://`).
pub fn restore_to_engine(
    host: &Host,
    access: Access,
    service: &str,
    selection: &Selection,
    to: &str,
    rename: Option<&str>,
    start: bool,
) -> anyhow::Result<crate::snapshot::to_engine::IntoEngine> {
    let kind = match to.trim_end_matches('/') {
        "docker:" => crate::engine::Kind::Docker,
        "podman:" => crate::engine::Kind::Podman,
        _ => bail!(UsageError(format!("--to {to}: write docker:// or podman://"))),
    };
    let engine = crate::engine::Engine::connect(kind)?;
    let repo = &access.open(host)?;
    let (id, snap) = select(repo, service, &selection.which, selection.at.as_deref())?;
    crate::snapshot::to_engine::restore_into(host, repo, &engine, &id, &snap, rename, start)
        .with_context(|| format!("cannot restore {} into {}", snap.service, engine.title()))
}

/// The snapshots of `services` taken together (one stack snapshot: the newest that holds all
/// of them, or the one `selection` names through any member's ID or a time), each service
/// after the one whose network it joins.
fn stack_members(
    repo: &Repository,
    services: &[String],
    selection: &Selection,
) -> anyhow::Result<Vec<(String, Snapshot)>> {
    let all = snapshot::list(repo)?;
    let limit = selection.at.as_deref().map(parse_time).transpose()?;
    let wanted: std::collections::BTreeSet<&str> = services.iter().map(String::as_str).collect();
    // Stack IDs, newest first, that hold every service named.
    let mut chosen: Option<Vec<(String, Snapshot)>> = None;
    for (_, s) in all.iter().rev() {
        let Some(stack) = &s.stack else { continue };
        if !wanted.iter().all(|w| stack.services.iter().any(|m| m == w)) {
            continue;
        }
        if limit.is_some_and(|l| chrono::DateTime::parse_from_rfc3339(&s.time).is_ok_and(|t| t > l)) {
            continue;
        }
        let members: Vec<(String, Snapshot)> = all
            .iter()
            .filter(|(_, m)| {
                m.stack.as_ref().is_some_and(|st| st.id == stack.id) && wanted.contains(m.service.as_str())
            })
            .cloned()
            .collect();
        let named = selection.which == "latest" || members.iter().any(|(id, _)| id.starts_with(&selection.which));
        if named && members.len() == wanted.len() {
            chosen = Some(members);
            break;
        }
    }
    let Some(mut members) = chosen else {
        return Err(crate::repo::RepoError::NotFound {
            location: repo.location(),
            what: format!(
                "no snapshot of {} taken together; restore them one by one, or snapshot them together (lifeboat snapshot {})",
                services.join(" and "),
                services.join(" ")
            ),
        }
        .into());
    };
    // A service whose network is another's comes after it.
    let peer = joins;
    let mut ordered: Vec<(String, Snapshot)> = Vec::with_capacity(members.len());
    while !members.is_empty() {
        // The first whose peer is not still waiting (a cycle cannot be recorded: a container
        // joins one that exists, so the fallback only guards against a hand-made snapshot).
        let next = members
            .iter()
            .position(|(_, s)| peer(s).is_none_or(|p| !members.iter().any(|(_, m)| m.service == p)))
            .unwrap_or(0);
        ordered.push(members.remove(next));
    }
    Ok(ordered)
}

/// Restores several services from snapshots taken together (one stack snapshot: the newest
/// that holds all of them, or the one `selection` names through any member's ID or a time),
/// each service's network peer before it. All or nothing: if one cannot be restored, those
/// restored before it are removed again, with the volumes made for them.
pub fn restore_stack(
    host: &Host,
    access: Access,
    services: &[String],
    selection: &Selection,
    opts: &RestoreOptions,
) -> anyhow::Result<Vec<RestoreReport>> {
    if opts.rename.is_some() {
        bail!(UsageError("--as renames one service; restore a stack under its own names".into()));
    }
    let repo = &access.open(host)?;
    let members = stack_members(repo, services, selection)?;
    let mut done: Vec<RestoreReport> = Vec::new();
    for (id, snap) in &members {
        match crate::snapshot::restore(host, repo, id, snap, opts) {
            Ok(r) => done.push(RestoreReport {
                snapshot: id.clone(),
                container: r.container.id.clone(),
                name: r.container.name.clone(),
                seconds: r.elapsed.as_secs_f64(),
                fetched_image: r.fetched_image,
                healthy: r.healthy,
                hydrating: r.hydrating,
            }),
            Err(e) => {
                let mut undone = Vec::new();
                for r in done.iter().rev() {
                    let _ = crate::runtime::remove(host, &r.container, true);
                    if let Some((_, s)) = members.iter().find(|(sid, _)| *sid == r.snapshot) {
                        for v in &s.volumes {
                            let _ = host.volumes()?.remove(&v.name);
                        }
                    }
                    undone.push(r.name.clone());
                }
                let what = if undone.is_empty() {
                    String::new()
                } else {
                    format!(" ({} restored before it, removed again)", undone.join(", "))
                };
                return Err(e.context(format!("cannot restore {}{what}", snap.service)));
            }
        }
    }
    Ok(done)
}

/// A container set aside by `restore --replace`: its own name, its configuration under the
/// temporary name, and its volumes as (own name, temporary name).
struct SetAside {
    name: String,
    config: crate::runtime::RunConfig,
    volumes: Vec<(String, String)>,
}

/// A running service (or stack) rolled back in place (`restore --replace`): the current
/// containers are stopped and kept aside with their volumes (renamed `NAME-replaced-…`) until
/// the restored ones are up and healthy, then removed; if the restore fails or is not healthy
/// in time, what it made is removed and the service as it was is put back and started.
pub fn restore_replacing(
    host: &Host,
    access: Access,
    services: &[String],
    selection: &Selection,
    opts: &RestoreOptions,
) -> anyhow::Result<Vec<RestoreReport>> {
    if opts.rename.is_some() || opts.no_start {
        bail!(UsageError("--replace restores under the services' own names, started".into()));
    }
    let containers = host.containers()?;
    let vols = host.volumes()?;
    let suffix = format!("replaced-{}", crate::fsutil::random_hex(3));
    // Aside: each container stopped and renamed, its volumes renamed with it.
    let mut aside: Vec<SetAside> = Vec::new();
    let put_back = |aside: &[SetAside]| {
        for SetAside { name, config, volumes } in aside.iter().rev() {
            for (original, moved) in volumes {
                if let Err(e) = vols.rename(moved, original) {
                    tracing::error!(volume = original.as_str(), error = %e, "cannot put the volume back");
                }
            }
            let mut back = config.clone();
            back.name = name.clone();
            for m in back.mounts.iter_mut() {
                if let crate::runtime::container::MountSource::Volume { name: v } = &mut m.source
                    && let Some((original, _)) = volumes.iter().find(|(_, moved)| moved == v)
                {
                    *v = original.clone();
                }
            }
            if let Err(e) = containers.write_config(&back) {
                tracing::error!(container = name.as_str(), error = %e, "cannot put the container back");
            } else if let Err(e) = crate::runtime::start(host, &back.id) {
                tracing::error!(container = name.as_str(), error = %e, "cannot start the container put back");
            }
        }
    };
    for name in services {
        let Ok(current) = containers.named(name) else { continue };
        let step = (|| -> anyhow::Result<(crate::runtime::RunConfig, Vec<(String, String)>)> {
            for m in &current.mounts {
                if let crate::runtime::container::MountSource::Volume { name: v } = &m.source {
                    vols.refuse_if_hydrating(v, "roll it back")?;
                }
            }
            let state = crate::runtime::observed_state(containers, &current.id)?;
            if matches!(state.status, crate::runtime::Status::Running | crate::runtime::Status::Paused) {
                crate::runtime::stop(host, &current.id, Duration::from_secs(10))?;
            }
            let mut moved = Vec::new();
            let mut config = current.clone();
            for m in config.mounts.iter_mut() {
                if let crate::runtime::container::MountSource::Volume { name: v } = &mut m.source {
                    let to = format!("{v}-{suffix}");
                    vols.rename(v, &to)?;
                    moved.push((v.clone(), to.clone()));
                    *v = to;
                }
            }
            config.name = format!("{name}-{suffix}");
            containers.write_config(&config)?;
            Ok((config, moved))
        })();
        match step {
            Ok((config, volumes)) => aside.push(SetAside { name: name.clone(), config, volumes }),
            Err(e) => {
                put_back(&aside);
                return Err(e.context(format!("cannot set {name} aside; nothing was changed")));
            }
        }
    }
    let restored = if services.len() == 1 {
        restore(host, access, &services[0], selection, opts).map(|r| vec![r])
    } else {
        restore_stack(host, access, services, selection, opts)
    };
    let failure = match &restored {
        Ok(reports) => reports.iter().find(|r| r.healthy == Some(false)).map(|r| {
            anyhow::anyhow!("the restored {} was not healthy within {} s", r.name, opts.health_timeout.as_secs())
        }),
        Err(_) => None,
    };
    match (restored, failure) {
        (Ok(reports), None) => {
            // The restored service is up: what is left of the old one is only reported.
            for SetAside { config, volumes, .. } in &aside {
                if let Err(e) = crate::runtime::remove(host, &config.id, true) {
                    tracing::warn!(container = config.name.as_str(), error = %e, "cannot remove the replaced container");
                }
                for (_, v) in volumes {
                    if let Err(e) = vols.remove(v) {
                        tracing::warn!(volume = v.as_str(), error = %e, "cannot remove the replaced volume");
                    }
                }
            }
            Ok(reports)
        }
        (Ok(reports), Some(why)) => {
            for r in &reports {
                let made = containers.config(&r.container).ok();
                if let Err(e) = crate::runtime::remove(host, &r.container, true) {
                    tracing::error!(container = r.name.as_str(), error = %e, "cannot remove the restored container");
                }
                for m in made.iter().flat_map(|c| &c.mounts) {
                    if let crate::runtime::container::MountSource::Volume { name } = &m.source
                        && let Err(e) = vols.remove(name)
                    {
                        tracing::error!(volume = name.as_str(), error = %e, "cannot remove the restored volume");
                    }
                }
            }
            put_back(&aside);
            Err(why.context("the service as it was is back"))
        }
        (Err(e), _) => {
            put_back(&aside);
            Err(e.context("the service as it was is back"))
        }
    }
}

/// A restore from a snapshot image.
#[derive(Debug, Serialize, Deserialize)]
pub struct ImageRestoreReport {
    pub image: String,
    pub container: String,
    pub name: String,
    pub seconds: f64,
    pub healthy: Option<bool>,
}

/// Restores `service` from a snapshot image: `registry://HOST/REPO:TAG` (pulled) or a
/// local image name.
pub fn restore_from_image(
    host: &Host,
    service: &str,
    from: &str,
    tls: &TlsRequest,
    opts: &RestoreOptions,
) -> anyhow::Result<ImageRestoreReport> {
    let store = host.store()?;
    let (image, reference) = match from.strip_prefix("registry://") {
        Some(_) => {
            let r = registry_target(from)?;
            let platform = crate::image::spec::Platform::host();
            let tls = tls.options(r.domain());
            let (image, _) = crate::registry::pull(store, &r, &platform, &tls, true, &crate::registry::Silent)?;
            (image, r.familiar())
        }
        None => (store.find(from)?, from.to_string()),
    };
    let labelled = image.config.config.labels.get(crate::snapshot::LABEL_SERVICE).cloned().unwrap_or_default();
    if !labelled.is_empty() && labelled != service && opts.rename.is_none() {
        bail!(UsageError(format!(
            "{reference} is a snapshot of {labelled}, not {service}: restore {labelled}, or use --as {service} to give it that name"
        )));
    }
    let r = crate::snapshot::restore_from_image(host, &image, &reference, opts)
        .with_context(|| format!("cannot restore {service} from {reference}"))?;
    Ok(ImageRestoreReport {
        image: reference,
        container: r.container.id.clone(),
        name: r.container.name.clone(),
        seconds: r.elapsed.as_secs_f64(),
        healthy: r.healthy,
    })
}

/// How a drill decides the restored service is healthy.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// `http://localhost:PORT/PATH` answers 2xx/3xx inside the container.
    Http(String),
    /// This command exits 0 inside it.
    Command(String),
    /// The service's own health check, else: its process runs.
    Default,
}

/// Rehearses a restore of `services` aside (one, or a stack snapshotted together), probes
/// them, removes them. `probe` checks the last service named; the others (and the last,
/// without one) pass by their own health check, else by running.
pub fn drill(
    host: &Host,
    access: Access,
    services: &[String],
    which: &str,
    probe: &ProbeSpec,
    timeout: Duration,
) -> anyhow::Result<crate::snapshot::DrillReport> {
    let probe = match probe {
        ProbeSpec::Http(url) => {
            let (port, path) = crate::config::parse_http_check(url).map_err(UsageError)?;
            Some(crate::snapshot::DrillProbe::Http(port, path))
        }
        ProbeSpec::Command(cmd) => Some(crate::snapshot::DrillProbe::Command(cmd.clone())),
        ProbeSpec::Default => None,
    };
    let repo = &access.open(host)?;
    let mut members = match services {
        [] => bail!(UsageError("name the service to drill".into())),
        [service] => vec![snapshot::find(repo, Some(service), which)?],
        _ => stack_members(repo, services, &Selection { which: which.to_string(), at: None })?,
    };
    // The service named last is the one the probe is for: restored last if nothing needs it.
    if let Some(last) = services.last()
        && let Some(i) = members.iter().position(|(_, s)| &s.service == last)
        && !members.iter().any(|(_, s)| joins(s).as_deref() == Some(last.as_str()))
    {
        let m = members.remove(i);
        members.push(m);
    }
    crate::snapshot::drill(host, repo, &members, probe.as_ref(), timeout)
}

/// The service whose network a snapshot's container joins.
fn joins(s: &Snapshot) -> Option<String> {
    let mode = s.run_config.get("network")?;
    (mode.get("mode")?.as_str()? == "container").then(|| mode.get("container")?.as_str().map(String::from))?
}

/// `--read-data-subset 10%` as a fraction.
fn read_fraction(subset: Option<&str>, all: bool) -> Result<Option<f64>, UsageError> {
    match (subset, all) {
        (_, true) => Ok(Some(1.0)),
        (Some(p), false) => {
            let n: f64 = p
                .trim_end_matches('%')
                .parse()
                .map_err(|_| UsageError(format!("invalid --read-data-subset {p:?} (e.g. 10%)")))?;
            if !(0.0..=100.0).contains(&n) {
                return Err(UsageError(format!("--read-data-subset {p:?} must be between 0% and 100%")));
            }
            Ok(Some(n / 100.0))
        }
        (None, false) => Ok(None),
    }
}

/// Checks the repository's structure, and reads all (`read_data`) or a share
/// (`read_data_subset`, e.g. `10%`) of its packs.
pub fn check(
    host: &Host,
    access: Access,
    read_data: bool,
    read_data_subset: Option<&str>,
) -> anyhow::Result<crate::repo::maintenance::CheckReport> {
    let fraction = read_fraction(read_data_subset, read_data)?;
    let repo = access.open(host)?;
    Ok(crate::repo::maintenance::check(&repo, fraction)?)
}

/// Removes what no snapshot needs (nothing with `dry_run`).
pub fn prune(host: &Host, access: Access, dry_run: bool) -> anyhow::Result<crate::repo::maintenance::PruneStats> {
    let mut repo = access.open(host)?;
    Ok(crate::repo::maintenance::prune(&mut repo, dry_run)?)
}

/// What `forget` decided for one snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForgetDecision {
    pub id: String,
    pub service: String,
    pub time: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// What `forget` did: every decision, in order, and what the prune after it freed (or why
/// it failed: the snapshots were removed all the same).
#[derive(Debug, Serialize)]
pub struct ForgetReport {
    pub decisions: Vec<ForgetDecision>,
    pub pruned: Option<crate::repo::maintenance::PruneStats>,
    #[serde(skip)]
    pub prune_failed: Option<anyhow::Error>,
}

/// Applies `policy` to each service's snapshots (those of `service` only, if given) and
/// removes what it does not keep (nothing with `dry_run`), then prunes if asked.
pub fn forget(
    host: &Host,
    access: Access,
    service: Option<&str>,
    policy: &crate::repo::forget::Policy,
    dry_run: bool,
    prune: bool,
) -> anyhow::Result<ForgetReport> {
    if policy.is_empty() {
        bail!(UsageError(
            "no policy given: refusing to forget every snapshot (use --keep-last, --keep-daily, …)".into()
        ));
    }
    let mut repo = access.open(host)?;
    let decisions = if dry_run {
        forget_in(&mut repo, service, policy, true)?
    } else {
        // Exclusive, as prune's: no snapshot is being written while others are removed.
        let lock = Lock::acquire(&mut repo, true)?;
        let decisions = forget_in(&mut repo, service, policy, false)?;
        drop(lock);
        decisions
    };
    let (mut pruned, mut prune_failed) = (None, None);
    if prune && !dry_run {
        match crate::repo::maintenance::prune(&mut repo, false) {
            Ok(stats) => pruned = Some(stats),
            Err(e) => {
                prune_failed = Some(anyhow::Error::new(e).context("the snapshots were removed, but the prune failed"))
            }
        }
    }
    Ok(ForgetReport { decisions, pruned, prune_failed })
}

fn forget_in(
    repo: &mut Repository,
    service: Option<&str>,
    policy: &crate::repo::forget::Policy,
    dry_run: bool,
) -> anyhow::Result<Vec<ForgetDecision>> {
    let all = snapshot::list(repo)?;
    let mut services: Vec<String> = all.iter().map(|(_, s)| s.service.clone()).collect();
    services.sort();
    services.dedup();
    let mut out = Vec::new();
    for name in services.iter().filter(|s| service.is_none_or(|n| n == s.as_str())) {
        let group: Vec<_> = all.iter().filter(|(_, s)| &s.service == name).cloned().collect();
        let decisions = crate::repo::forget::apply(policy, &group);
        for ((id, s), (keep, reasons)) in group.iter().zip(decisions) {
            if !keep && !dry_run {
                repo.check_locks()?;
                repo.backend().delete(Kind::Snapshot, id)?;
            }
            out.push(ForgetDecision {
                id: id.clone(),
                service: name.clone(),
                time: s.time.clone(),
                keep,
                reasons: reasons.into_iter().map(String::from).collect(),
            });
        }
    }
    Ok(out)
}

/// One snapshot `copy` brought over.
#[derive(Debug, Serialize)]
pub struct Copied {
    pub id: String,
    pub service: String,
    pub new_id: String,
    pub added_bytes: u64,
}

/// Copies the source's snapshots (those whose ID starts with one of `wanted`, or all) that
/// the target lacks; reports each as it is copied.
pub fn copy(
    host: &Host,
    from: Access,
    to: Access,
    wanted: &[String],
    each: &mut dyn FnMut(&Copied),
) -> anyhow::Result<Vec<Copied>> {
    let src = &from.open(host)?;
    let dst = &mut to.open(host)?;
    let lock = Lock::acquire(dst, false)?;
    let existing: Vec<(String, String, String)> =
        snapshot::list(dst)?.into_iter().map(|(_, s)| (s.service, s.time, s.hostname)).collect();
    let mut map = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (id, snap) in snapshot::list(src)? {
        if !wanted.is_empty() && !wanted.iter().any(|p| id.starts_with(p.as_str())) {
            continue;
        }
        if existing.contains(&(snap.service.clone(), snap.time.clone(), snap.hostname.clone())) {
            continue;
        }
        let before = dst.added_bytes();
        let mut c = crate::repo::maintenance::copy_snapshot(src, dst, &snap, &mut map)?;
        // What the copy added to this repository, not what the snapshot once added to its own.
        let added = dst.added_bytes() - before;
        c.stats.added_bytes = added;
        let new_id = dst.save_object(Kind::Snapshot, &c)?;
        let copied = Copied { id, service: snap.service.clone(), new_id, added_bytes: added };
        each(&copied);
        out.push(copied);
    }
    drop(lock);
    Ok(out)
}

/// One change between two snapshots.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotChange {
    pub kind: String,
    pub path: String,
}

pub fn diff(host: &Host, access: Access, first: &str, second: &str) -> anyhow::Result<Vec<SnapshotChange>> {
    let repo = &access.open(host)?;
    let (_, first) = snapshot::find(repo, None, first)?;
    let (_, second) = snapshot::find(repo, None, second)?;
    Ok(crate::repo::maintenance::diff(repo, &first, &second)?
        .into_iter()
        .map(|(c, path)| SnapshotChange { kind: c.to_string(), path })
        .collect())
}

/// One key of a repository, as `key list` shows it.
#[derive(Debug, Serialize)]
pub struct KeyRow {
    pub id: String,
    pub user: String,
    pub host: String,
    pub created: String,
    /// The key this command opened the repository with.
    pub current: bool,
}

/// What `key` does.
#[derive(Debug, Clone)]
pub enum KeyRequest {
    /// Add a key for the password in this file.
    Add {
        new_password_file: PathBuf,
    },
    List,
    /// Remove the key whose ID starts with this.
    Remove {
        id: String,
    },
    /// Replace the password in use by the one in this file.
    Passwd {
        new_password_file: PathBuf,
    },
}

/// What `key` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOutcome {
    Added(String),
    Listed(Vec<KeyRow>),
    Removed(String),
    Changed(String),
}

pub fn key(host: &Host, access: Access, req: &KeyRequest) -> anyhow::Result<KeyOutcome> {
    let mut repo = access.open(host)?;
    Ok(match req {
        KeyRequest::Add { new_password_file } => {
            KeyOutcome::Added(repo.add_key(&read_password_file(new_password_file)?)?)
        }
        KeyRequest::List => KeyOutcome::Listed(
            repo.keys()?
                .into_iter()
                .map(|(id, k, current)| KeyRow { id, user: k.user, host: k.host, created: k.created, current })
                .collect(),
        ),
        KeyRequest::Remove { id } => {
            repo.remove_key(id)?;
            KeyOutcome::Removed(id.clone())
        }
        KeyRequest::Passwd { new_password_file } => {
            KeyOutcome::Changed(repo.change_password(&read_password_file(new_password_file)?)?)
        }
    })
}
