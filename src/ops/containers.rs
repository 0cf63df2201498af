//! Container commands: create (from an image and what `run` was asked), list, logs, stop,
//! start, restart, kill, remove, pause, processes, usage, ports, inspect, export, and the
//! boot-time start of restartable containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::UsageError;
use crate::image::changes::expand_port;
use crate::report::text::{ago, human_size};
use crate::runtime::container::{
    ContainerError, HealthCheck, MountSource, MountSpec, NetworkMode, PortMapping, Protocol, RestartPolicy, RunConfig,
    State, Status, new_id,
};
use crate::runtime::{self, Host, names};

/// The network a container is asked to use; `Container` names a peer (resolved at create).
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkRequest {
    Private,
    Host,
    None,
    Container(String),
    /// A named network shared by every container that names it (made at first use).
    Named(String),
}

impl NetworkRequest {
    /// `private` (or `bridge`, `default`), `host`, `none`, `container:NAME`, or the name of a
    /// network shared with the other containers that name it.
    pub fn parse(s: &str) -> Result<NetworkRequest, UsageError> {
        Ok(match s {
            "private" | "bridge" | "default" => NetworkRequest::Private,
            "host" => NetworkRequest::Host,
            "none" => NetworkRequest::None,
            other => match other.strip_prefix("container:") {
                Some(name) if !name.is_empty() => NetworkRequest::Container(name.to_string()),
                Some(_) => {
                    return Err(UsageError("invalid network \"container:\": container:NAME needs a name".into()));
                }
                None => {
                    names::validate_name(other).map_err(|e| {
                        UsageError(format!(
                            "invalid network {other:?}: private, host, none, container:NAME or a network name ({e})"
                        ))
                    })?;
                    NetworkRequest::Named(other.to_string())
                }
            },
        })
    }
}

/// What a new container is to be: the image and what the caller asked on top of it.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub image: String,
    /// Command and arguments (empty: the image's).
    pub command: Vec<String>,
    /// Override of the image's entrypoint (`Some("")` clears it).
    pub entrypoint: Option<String>,
    pub name: Option<String>,
    pub ports: Vec<PortMapping>,
    /// Also publish every port the image exposes, on free host ports.
    pub publish_all: bool,
    /// `KEY=VALUE`, or `KEY` to take the value from this process's environment.
    pub env: Vec<String>,
    /// Files of `KEY=VALUE` lines, read before `env`.
    pub env_files: Vec<PathBuf>,
    pub mounts: Vec<MountSpec>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub restart: RestartPolicy,
    pub network: NetworkRequest,
    pub auto_remove: bool,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub init: bool,
    /// The health check: the image's, with what is given here over it.
    pub health: HealthRequest,
    pub tty: bool,
    pub stdin_open: bool,
    /// `--label KEY=VALUE`s, over the image's.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--add-host NAME:ADDRESS`es.
    pub extra_hosts: Vec<String>,
}

impl RunRequest {
    /// A request for `image` with every setting at its default.
    pub fn new(image: &str) -> RunRequest {
        RunRequest {
            image: image.to_string(),
            command: Vec::new(),
            entrypoint: None,
            name: None,
            ports: Vec::new(),
            publish_all: false,
            env: Vec::new(),
            env_files: Vec::new(),
            mounts: Vec::new(),
            workdir: None,
            user: None,
            hostname: None,
            restart: RestartPolicy::No,
            network: NetworkRequest::Private,
            auto_remove: false,
            memory: None,
            cpus: None,
            pids_limit: None,
            read_only: false,
            init: false,
            health: HealthRequest::default(),
            tty: false,
            stdin_open: false,
            labels: Default::default(),
            extra_hosts: Vec::new(),
        }
    }
}

/// What `run` (flags), `up` (the configuration) or Compose say of the health check; what they
/// leave out is the image's `HEALTHCHECK`, then Docker's defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthRequest {
    /// No check at all, not even the image's (`--no-healthcheck`).
    pub disable: bool,
    /// A shell command (`--health-cmd`).
    pub command: Option<String>,
    /// Or a program and its arguments, run without a shell (Compose's `["CMD", …]`).
    pub args: Vec<String>,
    pub interval_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub start_period_secs: Option<u64>,
    pub retries: Option<u32>,
}

impl HealthRequest {
    /// The check a container of an image with `image` (its `HEALTHCHECK`, if any) gets.
    pub fn resolve(&self, image: Option<&serde_json::Value>) -> Option<HealthCheck> {
        if self.disable {
            return None;
        }
        let command = match (&self.command, self.args.is_empty()) {
            (_, false) => Some(self.args.join(" ")),
            (c, true) => c.clone(),
        };
        let mut h = match (command, image.and_then(HealthCheck::from_image)) {
            (Some(cmd), base) => HealthCheck {
                command: cmd.clone(),
                args: self.args.clone(),
                ..base.unwrap_or_else(|| HealthCheck::shell(&cmd))
            },
            (None, Some(base)) => base,
            (None, None) => return None,
        };
        if let Some(v) = self.interval_secs {
            h.interval_secs = v;
        }
        if let Some(v) = self.timeout_secs {
            h.timeout_secs = v;
        }
        if let Some(v) = self.start_period_secs {
            h.start_period_secs = v;
        }
        if let Some(v) = self.retries {
            h.retries = v;
        }
        Some(h)
    }
}

impl RunRequest {
    /// Refuses what the kernel or the runtime would refuse later, with words a person
    /// understands, before anything is created (`run`, `up`, and `config check` call it).
    pub fn validate(&self) -> Result<(), UsageError> {
        if let Some(cpus) = self.cpus {
            crate::syntax::cpus(cpus)?;
        }
        if let Some(m) = self.memory {
            crate::syntax::memory(&m.to_string())?;
        }
        if let Some(p) = self.pids_limit {
            crate::syntax::pids_limit(p)?;
        }
        if let Some(w) = &self.workdir
            && !w.starts_with('/')
        {
            return Err(UsageError(format!("the working directory {w:?} must be an absolute path")));
        }
        for e in &self.env {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            if key.is_empty() || key.contains('\0') || e.contains('\0') {
                return Err(UsageError(format!("invalid environment variable {e:?}: it needs a name (NAME=VALUE)")));
            }
        }
        if let Some(h) = &self.hostname {
            names::validate_hostname(h).map_err(UsageError)?;
        }
        if self.user.as_deref() == Some("") {
            return Err(UsageError("--user must not be empty".into()));
        }
        let mut targets = std::collections::HashSet::new();
        for m in &self.mounts {
            if !targets.insert(m.target.trim_end_matches('/')) {
                return Err(UsageError(format!("duplicate mount point {}", m.target)));
            }
        }
        let mut published = std::collections::HashSet::new();
        for p in self.ports.iter().filter(|p| p.host_port != 0) {
            if !published.insert((p.host_ip.as_str(), p.host_port, p.protocol.clone())) {
                return Err(UsageError(format!("host port {} is published twice", p.host_port)));
            }
        }
        for h in &self.extra_hosts {
            crate::syntax::extra_host(h)?;
        }
        if self.health.interval_secs == Some(0) || self.health.timeout_secs == Some(0) {
            return Err(UsageError("a health check's interval and timeout must be at least a second".into()));
        }
        Ok(())
    }
}

fn read_env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::error::io_error(e, path, "cannot read env file"))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

/// `base` with `extra` applied: a `KEY=VALUE` replaces or adds; a bare `KEY` takes this
/// process's value (and is left out if it has none), as Docker does.
pub fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut env: Vec<String> = base.to_vec();
    for e in extra {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match std::env::var(e) {
                Ok(v) => (e.clone(), v),
                Err(_) => continue,
            },
        };
        let entry = format!("{k}={v}");
        match env.iter_mut().find(|x| x.split_once('=').map_or(x.as_str(), |(a, _)| a) == k) {
            Some(x) => *x = entry,
            None => env.push(entry),
        }
    }
    env
}

/// Records a new container (image defaults, then the request on top) and returns its
/// configuration; nothing runs yet.
pub fn create(host: &Host, req: &RunRequest) -> anyhow::Result<RunConfig> {
    req.validate()?;
    // `--mount type=bind` never makes its source (Docker refuses it before creating anything).
    for m in &req.mounts {
        if let MountSource::Bind { path, must_exist: true } = &m.source
            && !path.exists()
        {
            return Err(crate::error::NotFound(format!(
                "invalid mount: the bind source path {} does not exist (-v would make it; --mount does not)",
                path.display()
            ))
            .into());
        }
    }
    let store = host.store()?;
    let image = store.find(&req.image).map_err(|e| match e {
        crate::image::StoreError::NotFound(n) => anyhow::Error::from(crate::image::StoreError::NotFound(n))
            .context("the image is not in the local store (use lifeboat load or import)"),
        other => other.into(),
    })?;
    runtime::ensure_layers(store, &image)?;
    let ic = &image.config.config;

    let entrypoint: Vec<String> = match &req.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => ic.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !req.command.is_empty() {
        req.command.clone()
    } else if req.entrypoint.is_some() {
        Vec::new()
    } else {
        ic.cmd.clone().unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(UsageError("no command specified, and the image has no CMD or ENTRYPOINT".into()).into());
    }
    let mut extra_env = Vec::new();
    for f in &req.env_files {
        extra_env.extend(read_env_file(f)?);
    }
    extra_env.extend(req.env.iter().cloned());
    let env = merge_env(&ic.env, &extra_env);

    let mut ports = req.ports.clone();
    if req.publish_all {
        for exposed in ic.exposed_ports.keys() {
            for p in expand_port(exposed).map_err(UsageError)? {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let protocol = match proto {
                    "udp" => Protocol::Udp,
                    "tcp" => Protocol::Tcp,
                    _ => {
                        tracing::warn!(port = p.as_str(), "only TCP and UDP ports are published; skipping");
                        continue;
                    }
                };
                let container_port: u16 = port.parse().map_err(|_| UsageError(format!("invalid exposed port {p}")))?;
                if !ports.iter().any(|m: &PortMapping| m.container_port == container_port && m.protocol == protocol) {
                    ports.push(PortMapping { host_ip: String::new(), host_port: 0, container_port, protocol });
                }
            }
        }
    }
    let containers = host.containers()?;
    let network = match &req.network {
        NetworkRequest::Private => NetworkMode::Private,
        NetworkRequest::Host => NetworkMode::Host,
        NetworkRequest::None => NetworkMode::None,
        // Recorded by name and found again at every start: a peer that is recreated (by
        // `up`, or a restore on another host) is joined all the same.
        NetworkRequest::Container(name) => NetworkMode::Container(containers.find(name)?.name),
        NetworkRequest::Named(name) => NetworkMode::Network(name.clone()),
    };
    if req.auto_remove && req.restart != RestartPolicy::No {
        return Err(UsageError("--rm and --restart cannot be combined".into()).into());
    }

    let _lock = containers.lock()?;
    let name = match &req.name {
        Some(n) => {
            names::validate_name(n).map_err(UsageError)?;
            if let Some(other) = containers.name_taken(n)? {
                return Err(ContainerError::Conflict(format!(
                    "the container name {n:?} is already in use by container {}; remove or rename it",
                    &other[..12]
                ))
                .into());
            }
            n.clone()
        }
        None => {
            let mut retry = 0;
            loop {
                let n = names::random_name(retry);
                if containers.name_taken(&n)?.is_none() {
                    break n;
                }
                retry += 1;
            }
        }
    };
    // The image's VOLUMEs nothing is mounted on get volumes of their own (random names), as
    // Docker gives them: listed by `volume ls`, removed by `rm -v` and `run --rm`.
    let mut mounts = req.mounts.clone();
    for path in ic.volumes.keys() {
        let target = if path.starts_with('/') { path.clone() } else { format!("/{path}") };
        let covered = mounts.iter().any(|m| m.target.trim_end_matches('/') == target.trim_end_matches('/'));
        if !covered {
            mounts.push(crate::runtime::container::MountSpec {
                source: MountSource::Volume { name: crate::fsutil::random_hex(32) },
                target,
                read_only: false,
                nocopy: false,
                anonymous: true,
            });
        }
    }
    let id = new_id();
    let config = RunConfig {
        hostname: req.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        id,
        name,
        image: req.image.clone(),
        image_id: image.id().clone(),
        layers: image.config.rootfs.diff_ids.clone(),
        created: crate::sys::now_rfc3339(),
        args,
        env,
        working_dir: req.workdir.clone().or_else(|| ic.working_dir.clone()).unwrap_or_default(),
        user: req.user.clone().or_else(|| ic.user.clone().filter(|u| !u.is_empty())),
        ports,
        mounts,
        network,
        restart: req.restart.clone(),
        auto_remove: req.auto_remove,
        memory: req.memory,
        cpus: req.cpus,
        pids_limit: req.pids_limit,
        read_only: req.read_only,
        init: req.init,
        stop_signal: ic.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
        health: req.health.resolve(ic.healthcheck.as_ref()),
        tty: req.tty,
        stdin_open: req.stdin_open,
        labels: ic.labels.clone().into_iter().chain(req.labels.clone()).collect(),
        extra_hosts: req.extra_hosts.clone(),
    };
    containers.create_record(&config)?;
    Ok(config)
}

/// How the caller of [`run`] stays with the new container.
pub enum Attach<'a> {
    /// Started in the background.
    Detached,
    /// The caller gets its output line by line (and, with `stdin`, gives it this process's
    /// standard input) until it ends.
    Output { stdin: bool, sink: &'a mut dyn FnMut(&runtime::logs::LogLine) },
    /// This process's terminal becomes the container's (raw, resized with it) until it ends.
    Terminal { interactive: bool },
}

/// What became of a container [`run`] made.
pub enum RunOutcome {
    /// Running in the background.
    Started(RunConfig),
    /// Ran attached and ended, with its exit code (None if it was not known).
    Exited(RunConfig, Option<i32>),
    /// The runtime could not start it (its record is gone if it was `--rm`).
    Failed(RunConfig, ContainerError),
}

/// Creates a container from `req` and starts it, attached as asked.
pub fn run(host: &Host, req: &RunRequest, attach: Attach<'_>) -> anyhow::Result<RunOutcome> {
    let config = create(host, req)?;
    // An attached terminal: we listen for it; the container's side arrives once it starts.
    let console = match attach {
        Attach::Terminal { .. } => Some(runtime::tty::ConsoleSocket::for_container(host, &config.id)?),
        _ => None,
    };
    let io = runtime::StartIo {
        console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
        stdin: matches!(attach, Attach::Output { stdin: true, .. }),
    };
    let started = match runtime::start_with(host, &config.id, &io) {
        Ok(s) => s,
        Err(e) => {
            if config.auto_remove {
                let _ = runtime::remove_files(host, &config.id);
            }
            return Ok(RunOutcome::Failed(config, e));
        }
    };
    let code = match (attach, console) {
        (Attach::Detached, _) => return Ok(RunOutcome::Started(config)),
        (Attach::Terminal { interactive }, Some(console)) => {
            let master = console.receive_master(Duration::from_secs(10))?;
            let relay = std::thread::spawn(move || runtime::tty::relay(master, interactive));
            let code = runtime::wait_attached(host, &config, started, &mut |_| {})?;
            let _ = relay.join();
            code
        }
        (Attach::Output { sink, .. }, _) => runtime::wait_attached(host, &config, started, &mut |l| sink(l))?,
        (Attach::Terminal { .. }, None) => unreachable!("a terminal attach has its console socket"),
    };
    Ok(RunOutcome::Exited(config, code))
}

/// Runs a command in a running container (joining its namespaces and cgroup); its exit code.
pub fn exec(host: &Host, name: &str, opts: runtime::ExecOptions) -> anyhow::Result<i32> {
    let config = host.containers()?.find(name)?;
    Ok(runtime::exec(host, &config.id, opts)?)
}

/// A container as `ps` lists it (Docker's field names in JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRow {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Command")]
    pub command: String,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    /// `Up 5 minutes (healthy)`, `Exited (0) 2 hours ago`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "State")]
    pub state: Status,
    #[serde(rename = "Ports")]
    pub ports: String,
    #[serde(rename = "Names")]
    pub names: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: Option<i32>,
    /// `5 minutes ago`.
    #[serde(rename = "RunningFor")]
    pub running_for: String,
    /// `KEY=VALUE,…`, as Docker lists them.
    #[serde(rename = "Labels")]
    pub labels_text: String,
    /// `2B (virtual 4.3MB)`: the container's own layer, and with its image (`ps -s`).
    #[serde(rename = "Size", skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// The same in bytes: its own layer, and with its image.
    #[serde(skip)]
    pub size_bytes: Option<(u64, u64)>,
    /// Running, paused or restarting.
    #[serde(skip)]
    pub up: bool,
    #[serde(skip)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// starting, healthy, unhealthy; none without a check.
    #[serde(skip)]
    pub health: Option<String>,
    #[serde(skip)]
    pub image_id: String,
    /// An instant restore not done yet: how far it is.
    #[serde(rename = "Hydration", skip_serializing_if = "Option::is_none")]
    pub hydration: Option<runtime::hydration::Hydration>,
}

/// Docker's `name=` filter: a part of the name, with the anchors scripts use (`^web$`, and
/// the leading `/` Docker's names carry).
fn name_matches(name: &str, pattern: &str) -> bool {
    let (start, rest) = match pattern.strip_prefix('^') {
        Some(p) => (true, p.strip_prefix('/').unwrap_or(p)),
        None => (false, pattern.strip_prefix('/').unwrap_or(pattern)),
    };
    let (end, part) = match rest.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, rest),
    };
    match (start, end) {
        (true, true) => name == part,
        (true, false) => name.starts_with(part),
        (false, true) => name.ends_with(part),
        (false, false) => name.contains(part),
    }
}

/// Docker's `ancestor=`: the image by any of its spellings (`nginx`, `nginx:latest`,
/// `docker.io/library/nginx`), every tag of a repository named without one, or an image ID
/// (prefix of at least 4 characters).
fn ancestor_matches(image: &str, image_id: &str, wanted: &str) -> bool {
    let id = wanted.trim_start_matches("sha256:");
    if id.len() >= 4
        && id.chars().all(|c| c.is_ascii_hexdigit())
        && image_id.trim_start_matches("sha256:").starts_with(id)
    {
        return true;
    }
    let (Ok(have), Ok(want)) = (crate::image::Reference::parse(image), crate::image::Reference::parse(wanted)) else {
        return image == wanted;
    };
    let tag_given = wanted.rsplit('/').next().is_some_and(|last| last.contains(':'));
    have.domain() == want.domain() && have.path() == want.path() && (!tag_given || have.tag() == want.tag())
}

/// `ps --filter KEY=VALUE`s, as Docker takes them: the same key twice is either, different
/// keys are both.
#[derive(Debug, Default)]
pub struct PsFilter {
    by: std::collections::BTreeMap<String, Vec<String>>,
}

impl PsFilter {
    pub const KEYS: [&'static str; 7] = ["id", "name", "label", "status", "ancestor", "health", "exited"];

    pub fn parse(specs: &[String]) -> Result<PsFilter, UsageError> {
        let mut f = PsFilter::default();
        for spec in specs {
            let (k, v) = spec.split_once('=').ok_or_else(|| {
                UsageError(format!("invalid filter {spec:?}: use KEY=VALUE ({})", Self::KEYS.join(", ")))
            })?;
            if !Self::KEYS.contains(&k) {
                return Err(UsageError(format!("invalid filter {k:?}: known are {}", Self::KEYS.join(", "))));
            }
            let known_values: &[&str] = match k {
                "status" => &["created", "restarting", "running", "paused", "exited"],
                "health" => &["starting", "healthy", "unhealthy", "none"],
                _ => &[],
            };
            if !known_values.is_empty() && !known_values.contains(&v) {
                return Err(UsageError(format!("invalid filter {spec:?}: {k} is one of {}", known_values.join(", "))));
            }
            if k == "exited" && v.parse::<i32>().is_err() {
                return Err(UsageError(format!("invalid filter {spec:?}: exited takes an exit code")));
            }
            f.by.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(f)
    }

    /// Whether a status filter asks for containers that are not up (so all are looked at,
    /// as Docker does for `status=` only).
    pub fn looks_past_running(&self) -> bool {
        self.by.contains_key("status")
    }

    pub fn matches(&self, r: &ContainerRow) -> bool {
        self.by.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "id" => r.id.starts_with(v.as_str()),
                "name" => name_matches(&r.names, v),
                "label" => match v.split_once('=') {
                    Some((key, val)) => r.labels.get(key).is_some_and(|x| x == val),
                    None => r.labels.contains_key(v.as_str()),
                },
                "status" => {
                    serde_json::to_value(r.state).ok().and_then(|s| s.as_str().map(|s| s == v)).unwrap_or(false)
                }
                "ancestor" => ancestor_matches(&r.image, &r.image_id, v),
                "health" => r.health.as_deref().unwrap_or("none") == v,
                "exited" => {
                    r.state == Status::Exited && r.exit_code.map(|c| c.to_string()).as_deref() == Some(v.as_str())
                }
                _ => false,
            })
        })
    }
}

/// The containers, newest first; all of them, or those up.
pub fn list(host: &Host, all: bool) -> anyhow::Result<Vec<ContainerRow>> {
    let containers = host.containers()?;
    let mut rows = Vec::new();
    for id in containers.ids()?.into_iter().rev() {
        let Ok(config) = containers.config(&id) else { continue };
        let state = runtime::observed_state(containers, &id)?;
        let up = state.status.is_up();
        if !all && !up {
            continue;
        }
        let health = (state.status == Status::Running && config.health.is_some())
            .then(|| runtime::Health::load(&containers.dir(&id)))
            .flatten()
            .map(|h| h.status);
        let mut health_text = match health.as_deref() {
            Some("starting") => " (health: starting)".to_string(),
            Some(s) => format!(" ({s})"),
            None => String::new(),
        };
        // An instant restore still filling its volumes (or stuck doing so) says so.
        let hydration = runtime::hydration::Hydration::load(&containers.dir(&id))
            .filter(|h| h.phase != runtime::hydration::Phase::Done);
        if let Some(note) = hydration.as_ref().and_then(|h| h.status_note()) {
            health_text.push_str(&format!(" ({note})"));
        }
        rows.push(ContainerRow {
            id,
            image: config.image.clone(),
            command: config.args.join(" "),
            created_at: config.created.clone(),
            status: format!("{}{health_text}", status_text(&state, runtime::shim_lost(&state))),
            state: state.status,
            ports: ports_text(&state),
            names: config.name.clone(),
            exit_code: state.exit_code,
            running_for: ago(Some(&config.created)),
            labels_text: config.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            up,
            labels: config.labels.clone(),
            health,
            image_id: config.image_id.to_string(),
            size: None,
            size_bytes: None,
            hydration,
        });
    }
    Ok(rows)
}

/// The disk space of a container's own layer (what it wrote), and of its image below it.
pub fn sizes(host: &Host, id: &str, image_id: &str) -> anyhow::Result<(u64, u64)> {
    let own = crate::fsutil::disk_usage(&host.containers()?.dir(id).join("upper"))?;
    let store = host.store()?;
    let image = store.find(image_id).map(|i| store.image_size(&i)).unwrap_or(0);
    Ok((own, image))
}

/// Fills `ps -s`'s size column as Docker writes it: `2B (virtual 4.3MB)`.
pub fn fill_sizes(host: &Host, rows: &mut [ContainerRow]) -> anyhow::Result<()> {
    for r in rows {
        let (own, image) = sizes(host, &r.id, &r.image_id)?;
        r.size = Some(format!("{} (virtual {})", human_size(own), human_size(own + image)));
        r.size_bytes = Some((own, own + image));
    }
    Ok(())
}

/// Docker's status column: `Up 5 minutes`, `Exited (1) 2 hours ago`, …
pub fn status_text(state: &State, shim_lost: bool) -> String {
    let since = |t: &Option<String>| ago(t.as_deref()).trim_end_matches(" ago").to_string();
    match state.status {
        Status::Created => "Created".into(),
        Status::Running if shim_lost => format!("Up {} (unsupervised: shim died)", since(&state.started_at)),
        Status::Running => format!("Up {}", since(&state.started_at)),
        Status::Paused => format!("Up {} (Paused)", since(&state.started_at)),
        Status::Restarting => {
            format!("Restarting ({}) {}", state.exit_code.unwrap_or(0), ago(state.finished_at.as_deref()))
        }
        Status::Exited => format!("Exited ({}) {}", state.exit_code.unwrap_or(0), ago(state.finished_at.as_deref())),
    }
}

/// `0.0.0.0:8080->80/tcp, …`
pub fn ports_text(state: &State) -> String {
    state
        .ports
        .iter()
        .map(|p| {
            let ip = if p.host_ip.is_empty() { "0.0.0.0" } else { p.host_ip.as_str() };
            let proto = if p.protocol == Protocol::Udp { "udp" } else { "tcp" };
            format!("{ip}:{}->{}/{proto}", p.host_port, p.container_port)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which log lines to show.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub tail: Option<usize>,
    /// Keep reading until the container stops.
    pub follow: bool,
}

/// Hands a container's log lines to `show`, as asked; with `follow`, until it stops.
pub fn logs(
    host: &Host,
    name: &str,
    opts: &LogOptions,
    show: &mut dyn FnMut(Vec<runtime::logs::LogLine>) -> std::ops::ControlFlow<()>,
) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let config = containers.find(name)?;
    let path = containers.dir(&config.id).join("log.json");
    let (mut lines, mut offset) = runtime::logs::read_from(&path, 0)?;
    if let Some(t) = opts.since {
        lines.retain(|l| chrono::DateTime::parse_from_rfc3339(&l.time).is_ok_and(|lt| lt >= t));
    }
    if let Some(n) = opts.tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    if show(lines).is_break() || !opts.follow {
        return Ok(());
    }
    loop {
        let state = runtime::observed_state(containers, &config.id);
        let running = state.as_ref().is_ok_and(|s| s.status.is_up());
        let (more, next) = runtime::logs::read_from(&path, offset)?;
        offset = next;
        if show(more).is_break() || !running {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Does `f` to each named container; each name's outcome, in the order given. `parallel`
/// does them all at once (stopping ten containers should not take ten grace periods).
pub fn each(
    host: &Host,
    names: &[String],
    parallel: bool,
    f: &(dyn Fn(&RunConfig) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    let containers = host.containers()?;
    let one = |n: &String| containers.find(n).map_err(anyhow::Error::from).and_then(|c| f(&c));
    let results: Vec<anyhow::Result<()>> = if parallel {
        std::thread::scope(|s| {
            let handles: Vec<_> = names.iter().map(|n| s.spawn(move || one(n))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("worker thread panicked"))))
                .collect()
        })
    } else {
        names.iter().map(one).collect()
    };
    Ok(names.iter().cloned().zip(results).collect())
}

pub fn stop(host: &Host, names: &[String], timeout: Duration) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    each(host, names, true, &|c| Ok(runtime::stop(host, &c.id, timeout)?))
}

pub fn start(host: &Host, names: &[String]) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    each(host, names, false, &|c| {
        runtime::start(host, &c.id)?;
        Ok(())
    })
}

pub fn restart(host: &Host, names: &[String], timeout: Duration) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    each(host, names, false, &|c| {
        runtime::stop(host, &c.id, timeout)?;
        runtime::start(host, &c.id)?;
        Ok(())
    })
}

pub fn kill(host: &Host, names: &[String], signal: &str) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    let sig = runtime::parse_signal(signal).ok_or_else(|| UsageError(format!("invalid signal {signal:?}")))?;
    let containers = host.containers()?;
    each(host, names, false, &|c| {
        if matches!(sig, nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGTERM) {
            // A killed container is not restarted by its policy (Docker's behaviour for `kill`
            // is to restart `always` containers; we honour that only for other signals).
            let _ = runtime::shim::request_stop(&containers.dir(&c.id));
        }
        Ok(runtime::signal(containers, &c.id, sig)?)
    })
}

/// Removes containers (`force`: running ones too), and with `volumes` the named volumes they
/// used that no other container uses.
pub fn remove(
    host: &Host,
    names: &[String],
    force: bool,
    volumes: bool,
) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    each(host, names, false, &|c| {
        runtime::remove(host, &c.id, force)?;
        if volumes {
            remove_anonymous_volumes(host, c)?;
        }
        Ok(())
    })
}

/// Removes the anonymous volumes of a removed container that no other container uses (named
/// volumes stay, as Docker keeps them).
pub fn remove_anonymous_volumes(host: &Host, c: &RunConfig) -> anyhow::Result<()> {
    for m in c.mounts.iter().filter(|m| m.anonymous) {
        if let MountSource::Volume { name } = &m.source
            && host.volumes()?.get(name).is_ok()
            && !super::volumes::in_use(host, name)?
        {
            host.volumes()?.remove(name)?;
        }
    }
    Ok(())
}

/// Renames a container (running or not), as `docker rename` does. Containers that join its
/// network by name follow it to the new name.
pub fn rename(host: &Host, name: &str, new: &str) -> anyhow::Result<RunConfig> {
    let containers = host.containers()?;
    let c = containers.find(name)?;
    Ok(containers.rename(&c.id, new)?)
}

/// Blocks until container `name` exits; its exit code (`docker wait`). A container that a
/// restart policy brings back counts as exited at its first exit. One removed before its
/// exit was seen (`rm -f`, `run --rm`) is an error: its code went with it.
pub fn wait(host: &Host, name: &str) -> anyhow::Result<i32> {
    let containers = host.containers()?;
    let c = containers.find(name)?;
    let first = runtime::observed_state(containers, &c.id)?;
    loop {
        if containers.config(&c.id).is_err() {
            // Removed at its end (`run --rm`): its shim kept the code.
            return runtime::recorded_exit(host, &c.id).ok_or_else(|| {
                ContainerError::NotFound(format!("{name} (removed before its exit code was seen)")).into()
            });
        }
        // A process that has just ended is written down with its code by its shim (after
        // draining its output); only a dead shim means the code is lost. Removed since the
        // look above (`run --rm`): its kept code.
        let state = match runtime::observed_state(containers, &c.id) {
            Err(ContainerError::NotFound(_)) => {
                return runtime::recorded_exit(host, &c.id).ok_or_else(|| {
                    ContainerError::NotFound(format!("{name} (removed before its exit code was seen)")).into()
                });
            }
            other => other?,
        };
        let exited_since = state.restart_count != first.restart_count
            || (state.finished_at.is_some() && state.finished_at != first.finished_at);
        if state.status == Status::Exited || (state.status != Status::Created && exited_since) {
            return Ok(state.exit_code.unwrap_or(0));
        }
        if crate::sys::interrupted() {
            return Err(crate::repo::RepoError::Interrupted.into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One side of `cp`: a host path, `-` (a tar stream on standard input or output), or
/// `CONTAINER:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpEnd {
    Host(PathBuf),
    Stream,
    Container { name: String, path: String },
}

impl CpEnd {
    /// As Docker reads it: `NAME:PATH` when a colon comes before any slash (a host path with
    /// a colon is written `./a:b`).
    pub fn parse(arg: &str) -> CpEnd {
        if arg == "-" {
            return CpEnd::Stream;
        }
        match arg.split_once(':') {
            Some((name, path)) if !name.is_empty() && !name.contains('/') => CpEnd::Container {
                name: name.to_string(),
                path: if path.is_empty() { "/".into() } else { path.to_string() },
            },
            _ => CpEnd::Host(PathBuf::from(arg)),
        }
    }
}

/// `cp SRC DEST`: between a container and the host (or a tar stream), never between two
/// containers or two host paths, as Docker's. Returns what was copied and a description of
/// where it went.
pub fn cp(
    host: &Host,
    src: &CpEnd,
    dest: &CpEnd,
    opts: &runtime::copy::CopyOptions,
    stdin: &mut dyn std::io::Read,
    stdout: &mut dyn std::io::Write,
) -> anyhow::Result<runtime::copy::Copied> {
    use runtime::copy;
    let containers = host.containers()?;
    Ok(match (src, dest) {
        (CpEnd::Container { name, path }, CpEnd::Host(to)) => {
            copy::copy_out(host, &containers.find(name)?, path, to, opts)?
        }
        (CpEnd::Container { name, path }, CpEnd::Stream) => {
            copy::copy_out_tar(host, &containers.find(name)?, path, opts, stdout)?
        }
        (CpEnd::Host(from), CpEnd::Container { name, path }) => {
            copy::copy_in(host, &containers.find(name)?, from, path, opts)?
        }
        (CpEnd::Stream, CpEnd::Container { name, path }) => {
            copy::copy_in_tar(host, &containers.find(name)?, stdin, path, opts)?
        }
        (CpEnd::Container { .. }, CpEnd::Container { .. }) => {
            return Err(UsageError("copying between containers is not supported: copy to the host first".into()).into());
        }
        _ => return Err(UsageError("one side of cp must be a container: NAME:PATH".into()).into()),
    })
}

pub fn pause(host: &Host, names: &[String], paused: bool) -> anyhow::Result<Vec<(String, anyhow::Result<()>)>> {
    each(host, names, false, &|c| Ok(runtime::set_paused(host, &c.id, paused)?))
}

/// After a reboot: clears what a crash left of removals and of `run --rm` containers, and
/// starts every container whose restart policy asks for it. Never in the way of bringing
/// services back: a failure is recorded and the rest goes on.
pub fn start_restartable(host: &Host) -> anyhow::Result<crate::report::Recovery> {
    let containers = host.containers()?;
    let mut report = crate::report::Recovery::default();
    for retired in containers.retired()? {
        if let Err(e) = runtime::remove_retired(host.kernel(), &retired) {
            report.not_cleared.push((retired.display().to_string(), format!("cannot remove it: {e}")));
        }
    }
    for id in containers.ids()? {
        let config = containers.config(&id)?;
        let state = runtime::observed_state(containers, &id)?;
        if config.auto_remove && state.status == Status::Exited {
            match runtime::remove_files(host, &id) {
                Ok(()) => report.removed.push(config.name.clone()),
                Err(e) => report.not_cleared.push((config.name.clone(), format!("cannot remove it: {e}"))),
            }
            continue;
        }
        let stopped_by_user = containers.dir(&id).join("stop-requested").exists();
        if wants_restart(&config.restart, stopped_by_user, state.exit_code) && state.status == Status::Exited {
            match runtime::start(host, &id) {
                Ok(_) => report.started.push(config.name.clone()),
                Err(e) => report.not_started.push((config.name.clone(), format!("cannot start it: {e}"))),
            }
        }
    }
    Ok(report)
}

/// Whether a container that is not running should be started again at boot.
pub fn wants_restart(policy: &RestartPolicy, stopped_by_user: bool, exit_code: Option<i32>) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::UnlessStopped => !stopped_by_user,
        RestartPolicy::OnFailure { .. } => !stopped_by_user && exit_code.is_some_and(|c| c != 0),
        RestartPolicy::No => false,
    }
}

/// One process of a container, as `top` lists it.
#[derive(Debug, Serialize)]
pub struct ProcessRow {
    pub uid: String,
    pub pid: i32,
    pub command: String,
}

pub fn processes(host: &Host, name: &str) -> anyhow::Result<Vec<ProcessRow>> {
    let c = host.containers()?.find(name)?;
    let mut rows = Vec::new();
    for pid in runtime::cgroup::processes(host.kernel(), &c.id) {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let command = String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_string();
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().next().unwrap_or("").to_string()))
            })
            .unwrap_or_default();
        rows.push(ProcessRow { uid, pid, command });
    }
    Ok(rows)
}

/// One container's resource use, as `stats` shows it (Docker's field names in JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct UsageRow {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CPUPerc")]
    pub cpu_percent: f64,
    #[serde(rename = "MemUsage")]
    pub memory: u64,
    #[serde(rename = "MemLimit")]
    pub memory_limit: Option<u64>,
    #[serde(rename = "PIDs")]
    pub pids: u64,
}

/// The containers `stats` samples: those named, or every running one.
pub fn usage_targets(host: &Host, names: &[String]) -> anyhow::Result<Vec<RunConfig>> {
    let containers = host.containers()?;
    Ok(if names.is_empty() {
        containers
            .ids()?
            .into_iter()
            .filter(|id| runtime::observed_state(containers, id).is_ok_and(|s| s.status == Status::Running))
            .filter_map(|id| containers.config(&id).ok())
            .collect()
    } else {
        names.iter().map(|n| containers.find(n)).collect::<Result<_, _>>()?
    })
}

/// One sample of `targets`' use, CPU measured over `over`.
pub fn usage(host: &Host, targets: &[RunConfig], over: Duration) -> Vec<UsageRow> {
    let kernel = host.kernel();
    let before: Vec<u64> = targets.iter().map(|c| runtime::cgroup::usage(kernel, &c.id).cpu_ns).collect();
    let t0 = std::time::Instant::now();
    std::thread::sleep(over);
    let elapsed = t0.elapsed().as_nanos() as f64;
    targets
        .iter()
        .zip(before)
        .map(|(c, cpu0)| {
            let u = runtime::cgroup::usage(kernel, &c.id);
            UsageRow {
                id: c.id.clone(),
                name: c.name.clone(),
                cpu_percent: (u.cpu_ns.saturating_sub(cpu0)) as f64 / elapsed * 100.0,
                memory: u.memory,
                memory_limit: u.memory_limit,
                pids: u.pids,
            }
        })
        .collect()
}

/// A container's published ports as they are bound now.
pub fn ports(host: &Host, name: &str) -> anyhow::Result<Vec<PortMapping>> {
    let containers = host.containers()?;
    let c = containers.find(name)?;
    Ok(runtime::observed_state(containers, &c.id)?.ports)
}

/// A container's details as JSON, in Docker's shape.
pub fn inspect(host: &Host, c: &RunConfig) -> anyhow::Result<serde_json::Value> {
    let containers = host.containers()?;
    let state = runtime::observed_state(containers, &c.id)?;
    let running = matches!(state.status, Status::Running | Status::Paused);
    let volumes = host.volumes().ok();
    let mounts: Vec<_> = c
        .mounts
        .iter()
        .map(|m| match &m.source {
            MountSource::Volume { name } => json!({"Type": "volume", "Name": name, "Source": volumes.map(|v| v.data_dir(name)), "Destination": m.target, "RW": !m.read_only}),
            MountSource::Bind { path, .. } => json!({"Type": "bind", "Source": path, "Destination": m.target, "RW": !m.read_only}),
            MountSource::Tmpfs { .. } => json!({"Type": "tmpfs", "Source": "", "Destination": m.target, "RW": !m.read_only}),
        })
        .collect();
    let ports: BTreeMap<String, Vec<serde_json::Value>> = state
        .ports
        .iter()
        .map(|p| {
            let proto = if p.protocol == Protocol::Udp { "udp" } else { "tcp" };
            (format!("{}/{proto}", p.container_port), vec![json!({"HostIp": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip }, "HostPort": p.host_port.to_string()})])
        })
        .collect();
    Ok(json!({
        "Id": c.id,
        "Name": format!("/{}", c.name),
        "Created": c.created,
        "State": {
            "Status": match state.status { Status::Created => "created", Status::Running => "running", Status::Paused => "paused", Status::Restarting => "restarting", Status::Exited => "exited" },
            "Running": running, "Paused": state.status == Status::Paused, "Restarting": state.status == Status::Restarting,
            "OOMKilled": state.oom_killed, "Pid": state.pid.unwrap_or(0), "ShimPid": state.shim_pid.unwrap_or(0),
            "ShimAlive": state.shim_pid.is_some_and(|p| host.kernel().alive(p)),
            "ExitCode": state.exit_code.unwrap_or(0), "Error": state.error.clone().unwrap_or_default(),
            "StartedAt": state.started_at, "FinishedAt": state.finished_at,
            "Health": runtime::Health::load(&containers.dir(&c.id)),
        },
        "Image": c.image_id,
        "RestartCount": state.restart_count,
        "Config": {
            "Hostname": c.hostname, "User": c.user.clone().unwrap_or_default(), "Env": c.env, "Cmd": c.args,
            "Image": c.image, "WorkingDir": c.working_dir, "StopSignal": c.stop_signal,
            "Healthcheck": c.health.as_ref().map(HealthCheck::to_docker),
            "Labels": c.labels,
        },
        "HostConfig": {
            "RestartPolicy": {"Name": c.restart.to_docker()},
            "AutoRemove": c.auto_remove,
            "NetworkMode": match &c.network { NetworkMode::Private => "private".to_string(), NetworkMode::Host => "host".into(), NetworkMode::None => "none".into(), NetworkMode::Container(id) => format!("container:{id}"), NetworkMode::Network(n) => n.clone() },
            "Memory": c.memory.unwrap_or(0), "NanoCpus": c.cpus.map_or(0, |x| (x * 1e9) as i64), "PidsLimit": c.pids_limit,
            "ReadonlyRootfs": c.read_only,
            "PortBindings": c.ports.iter().map(|p| json!({"HostIp": p.host_ip, "HostPort": p.host_port, "ContainerPort": p.container_port})).collect::<Vec<_>>(),
        },
        "Mounts": mounts,
        "NetworkSettings": {"Ports": ports},
        "LogPath": containers.dir(&c.id).join("log.json"),
    }))
}

/// A container's changes to its image: Docker's A/C/D lines.
pub fn diff(host: &Host, name: &str) -> anyhow::Result<Vec<runtime::commit::Change>> {
    runtime::commit::diff(host, name)
}

/// What `commit` makes of a container.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub container: String,
    /// The new image's name (none: only its ID).
    pub image: Option<String>,
    /// Pause the container while its changes are read.
    pub pause: bool,
    /// Dockerfile instructions applied to the new image's configuration.
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
}

/// Commits a container's changes as a new image (history says how, as Docker's does).
pub fn commit(host: &Host, req: CommitRequest) -> anyhow::Result<crate::image::Image> {
    let name = req.image.as_deref().map(crate::image::Reference::parse).transpose()?;
    let mut created_by = format!("lifeboat commit {}", req.container);
    for c in &req.changes {
        created_by.push_str(&format!(" --change {c:?}"));
    }
    let opts = crate::image::commit::CommitOptions {
        changes: req.changes,
        message: req.message,
        author: req.author,
        created_by,
        run_config: None,
        compression: crate::image::layer::Compression::Gzip,
    };
    runtime::commit::commit(host, &req.container, name.as_ref(), req.pause, opts)
}

/// Writes a container's whole filesystem as a tarball to `out`.
pub fn export(host: &Host, name: &str, out: impl std::io::Write) -> anyhow::Result<()> {
    runtime::commit::export(host, name, out)
}

/// Writes a container's whole filesystem as a tarball to `path` (complete or not at all: a
/// temporary name until the end).
pub fn export_to_file(host: &Host, name: &str, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("tar.partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    match runtime::commit::export(host, name, std::io::BufWriter::new(file)) {
        Ok(()) => Ok(std::fs::rename(&tmp, path)?),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_at_boot_follows_the_policy() {
        let on_failure = RestartPolicy::OnFailure { max_retries: None };
        assert!(wants_restart(&RestartPolicy::Always, true, Some(0)));
        assert!(wants_restart(&RestartPolicy::UnlessStopped, false, Some(0)));
        assert!(!wants_restart(&RestartPolicy::UnlessStopped, true, Some(1)));
        assert!(wants_restart(&on_failure, false, Some(3)));
        assert!(!wants_restart(&on_failure, false, Some(0)));
        assert!(!wants_restart(&on_failure, true, Some(3)));
        assert!(!wants_restart(&RestartPolicy::No, false, Some(1)));
    }

    #[test]
    fn run_requests_are_refused_before_anything_is_made() {
        let ok = RunRequest::new("site:1");
        ok.validate().unwrap();
        let bad: Vec<(RunRequest, &str)> = vec![
            (RunRequest { cpus: Some(f64::NAN), ..RunRequest::new("x") }, "cpus"),
            (RunRequest { cpus: Some(f64::INFINITY), ..RunRequest::new("x") }, "cpus"),
            (RunRequest { cpus: Some(0.0000001), ..RunRequest::new("x") }, "cpus"),
            (RunRequest { cpus: Some(1000.0), ..RunRequest::new("x") }, "cpus"),
            (RunRequest { memory: Some(1024), ..RunRequest::new("x") }, "6 MiB"),
            (RunRequest { pids_limit: Some(-5), ..RunRequest::new("x") }, "pids limit"),
            (RunRequest { workdir: Some("relative".into()), ..RunRequest::new("x") }, "absolute"),
            (RunRequest { env: vec!["=value".into()], ..RunRequest::new("x") }, "environment"),
            (RunRequest { hostname: Some("h".repeat(300)), ..RunRequest::new("x") }, "hostname"),
            (RunRequest { user: Some(String::new()), ..RunRequest::new("x") }, "--user"),
        ];
        for (req, what) in bad {
            let e = req.validate().unwrap_err().0;
            assert!(e.contains(what), "{what}: {e}");
        }
        let twice = |a: &str, b: &str| RunRequest {
            mounts: vec![crate::syntax::mount(a).unwrap(), crate::syntax::mount(b).unwrap()],
            ..RunRequest::new("x")
        };
        assert!(twice("va:/data", "vb:/data/").validate().is_err());
        assert!(twice("va:/data", "vb:/data2").validate().is_ok());
        let ports = RunRequest {
            ports: vec![crate::syntax::publish("8080:80").unwrap(), crate::syntax::publish("8080:81").unwrap()],
            ..RunRequest::new("x")
        };
        assert!(ports.validate().unwrap_err().0.contains("twice"));
    }

    #[test]
    fn networks_and_env() {
        assert_eq!(NetworkRequest::parse("bridge").unwrap(), NetworkRequest::Private);
        assert_eq!(NetworkRequest::parse("container:db").unwrap(), NetworkRequest::Container("db".into()));
        assert!(NetworkRequest::parse("container:").is_err());
        assert_eq!(NetworkRequest::parse("blog_default").unwrap(), NetworkRequest::Named("blog_default".into()));
        for bad in ["container:", "../escape", "a b", "x"] {
            assert!(NetworkRequest::parse(bad).is_err(), "{bad}");
        }
        let env = merge_env(&["PATH=/bin".into(), "A=1".into()], &["A=2".into(), "B=3".into()]);
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
