//! Container records on disk: how a container was asked to run (`config.json`, written once)
//! and what it is doing (`state.json`, written by its shim), under `<root>/containers/<id>/`.
//!
//! The run configuration is the part of a service a snapshot records and a restore replays,
//! so it holds everything `run` was told, in Docker's terms.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FileLock};
use crate::image::Digest;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// `-p [IP:]HOST:CONTAINER[/proto]`; a host port of 0 means "pick a free one".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum MountSource {
    /// A named volume under `<root>/volumes/<name>/data`.
    Volume { name: String },
    /// A host path.
    Bind {
        path: PathBuf,
        /// Refused when missing (`--mount type=bind`), instead of made (`-v`), as Docker does.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        must_exist: bool,
    },
    /// A fresh memory filesystem at every start (`--tmpfs`, `--mount type=tmpfs`): never
    /// snapshotted, as its content is gone when the container stops.
    Tmpfs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        /// Programs may run from it (`--tmpfs /tmp:exec`); Docker's default is noexec.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        exec: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
    /// A new volume is not filled from the image (`-v NAME:/path:nocopy`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    /// A volume made for the image's `VOLUME` (a random name): removed with the container by
    /// `rm -v` and `run --rm`, as Docker does; named volumes never are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "container")]
pub enum NetworkMode {
    /// A network namespace of its own with only loopback (the default).
    Private,
    Host,
    None,
    /// Share the network namespace of another container (by ID).
    Container(String),
    /// A named network: one namespace with only loopback, shared by every container that
    /// names it and kept while the host is up (made again at the first start after a reboot).
    /// Its containers reach each other on 127.0.0.1, by name through /etc/hosts.
    Network(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    No,
    OnFailure { max_retries: Option<u32> },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy, String> {
        match s.split_once(':') {
            None if s == "no" => Ok(RestartPolicy::No),
            None if s == "always" => Ok(RestartPolicy::Always),
            None if s == "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            None if s == "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
            Some(("on-failure", n)) => n
                .parse()
                .map(|n| RestartPolicy::OnFailure { max_retries: Some(n) })
                .map_err(|_| format!("invalid restart count in {s:?}")),
            _ => Err(format!("invalid restart policy {s:?} (no, on-failure[:N], always, unless-stopped)")),
        }
    }

    pub fn to_docker(&self) -> String {
        match self {
            RestartPolicy::No => "no".into(),
            RestartPolicy::OnFailure { max_retries: Some(n) } => format!("on-failure:{n}"),
            RestartPolicy::OnFailure { max_retries: None } => "on-failure".into(),
            RestartPolicy::Always => "always".into(),
            RestartPolicy::UnlessStopped => "unless-stopped".into(),
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts should run again.
    /// `stopped` is true when a user stopped it.
    /// How long to wait before restart number `restarts` (Docker's back-off: 100 ms,
    /// doubling, at most a minute).
    pub fn delay(restarts: u32) -> std::time::Duration {
        std::time::Duration::from_millis(100u64.saturating_mul(1 << restarts.min(10)).min(60_000))
    }

    pub fn should_restart(&self, code: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max_retries } => code != 0 && max_retries.is_none_or(|m| restarts < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Run inside the container (`sh -c`); healthy when it exits 0. Empty when `args` is the
    /// check (an image's `HEALTHCHECK CMD ["…"]`).
    pub command: String,
    pub interval_secs: u64,
    /// The command as arguments, without a shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// A check that has not ended by then is killed, and counts as a failure.
    #[serde(default = "default_health_timeout")]
    pub timeout_secs: u64,
    /// Failures in this first while after the start do not count (a success does).
    #[serde(default)]
    pub start_period_secs: u64,
    /// Consecutive failures that make the container unhealthy.
    #[serde(default = "default_health_retries")]
    pub retries: u32,
}

fn default_health_timeout() -> u64 {
    30
}

fn default_health_retries() -> u32 {
    3
}

impl HealthCheck {
    /// A shell command with Docker's defaults: every 30 s, 30 s to answer, 3 retries.
    pub fn shell(command: &str) -> HealthCheck {
        HealthCheck {
            command: command.to_string(),
            interval_secs: 30,
            args: Vec::new(),
            timeout_secs: default_health_timeout(),
            start_period_secs: 0,
            retries: default_health_retries(),
        }
    }

    /// What runs: `/bin/sh -c COMMAND`, or the arguments as given.
    pub fn argv(&self) -> Vec<String> {
        if self.args.is_empty() { vec!["/bin/sh".into(), "-c".into(), self.command.clone()] } else { self.args.clone() }
    }

    /// An image's `HEALTHCHECK` (its `Test` and durations in nanoseconds); None for `NONE`,
    /// or a test that is not one.
    pub fn from_image(v: &serde_json::Value) -> Option<HealthCheck> {
        let test: Vec<String> =
            v.get("Test")?.as_array()?.iter().filter_map(|t| t.as_str().map(String::from)).collect();
        let secs = |key: &str, default: u64| {
            v.get(key).and_then(|n| n.as_u64()).filter(|n| *n > 0).map_or(default, |ns| (ns / 1_000_000_000).max(1))
        };
        let mut h = HealthCheck::shell("");
        match test.split_first()? {
            (kind, [cmd]) if kind == "CMD-SHELL" => h.command = cmd.clone(),
            (kind, args) if kind == "CMD" && !args.is_empty() => {
                h.args = args.to_vec();
                h.command = args.join(" ");
            }
            _ => return None, // NONE, or an empty test: no check
        }
        h.interval_secs = secs("Interval", 30);
        h.timeout_secs = secs("Timeout", 30);
        h.start_period_secs = v.get("StartPeriod").and_then(|n| n.as_u64()).map_or(0, |ns| ns / 1_000_000_000);
        h.retries = v.get("Retries").and_then(|n| n.as_u64()).filter(|n| *n > 0).map_or(3, |n| n.min(1000) as u32);
        Some(h)
    }

    /// Docker's `Healthcheck` form of this check (`inspect`, images).
    pub fn to_docker(&self) -> serde_json::Value {
        let test: Vec<String> = if self.args.is_empty() {
            vec!["CMD-SHELL".into(), self.command.clone()]
        } else {
            std::iter::once("CMD".to_string()).chain(self.args.iter().cloned()).collect()
        };
        let ns = |s: u64| s.saturating_mul(1_000_000_000);
        serde_json::json!({
            "Test": test,
            "Interval": ns(self.interval_secs),
            "Timeout": ns(self.timeout_secs),
            "StartPeriod": ns(self.start_period_secs),
            "Retries": self.retries,
        })
    }
}

/// Everything `run` was told: what a snapshot records and a restore replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: Digest,
    /// Layer diff IDs, bottom to top.
    pub layers: Vec<Digest>,
    pub created: String,
    /// The process: entrypoint + command after image defaults were applied.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: Option<String>,
    pub hostname: String,
    pub ports: Vec<PortMapping>,
    pub mounts: Vec<MountSpec>,
    pub network: NetworkMode,
    pub restart: RestartPolicy,
    pub auto_remove: bool,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub init: bool,
    pub stop_signal: String,
    pub health: Option<HealthCheck>,
    /// A terminal for the process (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// Standard input kept open (`-i`).
    #[serde(default)]
    pub stdin_open: bool,
    /// The image's labels with `--label`s over them, as Docker merges them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Extra `/etc/hosts` entries, `NAME:ADDRESS` (`--add-host`, Compose's service names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
}

impl Status {
    /// Running, paused or restarting: the container is up (a stop has work to do).
    pub fn is_up(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// What the shim reports. Only the shim writes it (atomically); readers check the pids it
/// names are still alive before believing "running".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: Option<i32>,
    pub shim_pid: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub restart_count: u32,
    pub error: Option<String>,
    /// Published ports with the host ports actually bound (resolves `-P` and `:0`).
    pub ports: Vec<PortMapping>,
}

impl State {
    pub fn created() -> State {
        State {
            status: Status::Created,
            pid: None,
            shim_pid: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            restart_count: 0,
            error: None,
            ports: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("no such volume: {0}")]
    NoSuchVolume(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("container store: cannot access {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Runtime(String),
    /// The command cannot be run: not found (exit code 127) or not executable (126), as a
    /// shell and Docker say.
    #[error("{message}")]
    Command { code: i32, message: String },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let path = path.into();
    move |source| ContainerError::Io { path, source }
}

/// Names a removed container's directory until its files are deleted.
const RETIRED_PREFIX: &str = ".removing-";

/// The containers under a root.
#[derive(Clone, Debug)]
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    pub fn open(root: &Path) -> Result<Containers, ContainerError> {
        let dir = root.join("containers");
        crate::fsutil::private_dir(&dir).map_err(io_err(&dir))?;
        Ok(Containers { dir })
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Takes a container out of the store in one step (a rename: it is gone for `ps`, its name
    /// and ID are free) and returns where its files now are, for [`super::remove_retired`].
    pub fn retire(&self, id: &str) -> Result<PathBuf, ContainerError> {
        let retired = self.dir.join(format!("{RETIRED_PREFIX}{id}"));
        match fs::rename(self.dir(id), &retired) {
            Ok(()) => Ok(retired),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ContainerError::NotFound(id.to_string())),
            Err(e) => Err(ContainerError::Io { path: self.dir(id), source: e }),
        }
    }

    /// A directory, out of every listing, in which a container is put together (a restore
    /// fills its layer there); [`Containers::install`] moves it into place. Left behind by a
    /// killed process, it is swept as a half-done removal.
    pub fn staging_dir(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{RETIRED_PREFIX}{id}"))
    }

    /// Moves a container put together in its staging directory into place and records its
    /// configuration: the container exists from this moment, whole.
    pub fn install(&self, config: &RunConfig) -> Result<(), ContainerError> {
        let staged = self.staging_dir(&config.id);
        let path = staged.join("config.json");
        fsutil::write_atomic(&path, &serde_json::to_vec_pretty(config).expect("serialises")).map_err(io_err(path))?;
        // The one step that makes it a container: before it, nothing; after it, all of it.
        fs::rename(&staged, self.dir(&config.id)).map_err(io_err(staged))?;
        fsutil::sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// Files of retired containers whose removal never finished (a process killed half-way).
    pub fn retired(&self) -> Result<Vec<PathBuf>, ContainerError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            if e.file_name().to_string_lossy().starts_with(RETIRED_PREFIX) {
                out.push(e.path());
            }
        }
        Ok(out)
    }

    /// Serialises name allocation and removal.
    pub fn lock(&self) -> Result<FileLock, ContainerError> {
        let path = self.dir.join(".lock");
        FileLock::exclusive(&path).map_err(io_err(path))
    }

    /// Held while a container's root filesystem is mounted by its start, or mounted, used
    /// and unmounted by a `cp` while it is stopped.
    pub fn mount_lock(&self, id: &str) -> Result<FileLock, ContainerError> {
        let dir = self.dir(id);
        if !dir.join("config.json").is_file() {
            return Err(ContainerError::NotFound(id.to_string()));
        }
        let path = dir.join("rootfs.lock");
        FileLock::exclusive(&path).map_err(io_err(path))
    }

    /// Whether any container mounts volume `name`.
    pub fn uses_volume(&self, name: &str) -> Result<bool, ContainerError> {
        for id in self.ids()? {
            if let Ok(c) = self.config(&id)
                && c.mounts.iter().any(|m| matches!(&m.source, MountSource::Volume { name: n } if n == name))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// All container IDs, oldest first.
    pub fn ids(&self) -> Result<Vec<String>, ContainerError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && e.path().join("config.json").is_file() {
                out.push(name);
            }
        }
        let mut with_time: Vec<(String, String)> =
            out.into_iter().map(|id| (self.config(&id).map(|c| c.created).unwrap_or_default(), id)).collect();
        with_time.sort();
        Ok(with_time.into_iter().map(|(_, id)| id).collect())
    }

    pub fn config(&self, id: &str) -> Result<RunConfig, ContainerError> {
        let path = self.dir(id).join("config.json");
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContainerError::NotFound(id.to_string()),
            _ => ContainerError::Io { path: path.clone(), source: e },
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::Invalid(format!("{}: {e}", path.display())))
    }

    /// A new container's directory and its configuration.
    pub fn create_record(&self, config: &RunConfig) -> Result<(), ContainerError> {
        let dir = self.dir(&config.id);
        fs::create_dir_all(&dir).map_err(io_err(dir))?;
        self.write_config(config)
    }

    pub fn write_config(&self, config: &RunConfig) -> Result<(), ContainerError> {
        let path = self.dir(&config.id).join("config.json");
        let bytes = serde_json::to_vec_pretty(config).expect("serialises");
        // A container removed when it ends (`run --rm`) is never brought back after a reboot:
        // forcing its configuration to disk would only slow its start.
        let write = if config.auto_remove { fsutil::write_atomic_volatile } else { fsutil::write_atomic };
        write(&path, &bytes).map_err(io_err(path))
    }

    pub fn state(&self, id: &str) -> Result<State, ContainerError> {
        let path = self.dir(id).join("state.json");
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| ContainerError::Invalid(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::created()),
            Err(e) => Err(ContainerError::Io { path, source: e }),
        }
    }

    pub fn write_state(&self, id: &str, state: &State) -> Result<(), ContainerError> {
        let path = self.dir(id).join("state.json");
        fsutil::write_atomic_volatile(&path, &serde_json::to_vec_pretty(state).expect("serialises"))
            .map_err(io_err(path))
    }

    /// Finds a container by its exact name or full ID, never by an ID prefix: for names the
    /// program recorded itself (a service's, a network peer's), which must not match another
    /// container whose ID happens to start with them (`db` is hex).
    pub fn named(&self, name: &str) -> Result<RunConfig, ContainerError> {
        let name = name.strip_prefix('/').unwrap_or(name);
        self.ids()?
            .iter()
            .filter_map(|id| self.config(id).ok())
            .find(|c| c.name == name || c.id == name)
            .ok_or_else(|| ContainerError::NotFound(name.to_string()))
    }

    /// Finds a container by exact name, full ID or unique ID prefix: for what users type.
    pub fn find(&self, what: &str) -> Result<RunConfig, ContainerError> {
        let what = what.strip_prefix('/').unwrap_or(what);
        let ids = self.ids()?;
        let configs: Vec<RunConfig> = ids.iter().filter_map(|id| self.config(id).ok()).collect();
        if let Some(c) = configs.iter().find(|c| c.name == what || c.id == what) {
            return Ok(c.clone());
        }
        let hits: Vec<&RunConfig> = configs.iter().filter(|c| !what.is_empty() && c.id.starts_with(what)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ContainerError::NotFound(what.to_string())),
            _ => Err(ContainerError::Conflict(format!("container ID prefix {what:?} is ambiguous"))),
        }
    }

    /// Gives container `id` the name `new` (free, valid), as `docker rename` does; a running
    /// container keeps running. Containers that join its network by name follow it: under
    /// one lock, they are rewritten first and the container last, and a failure puts back
    /// the ones already rewritten.
    pub fn rename(&self, id: &str, new: &str) -> Result<RunConfig, ContainerError> {
        super::names::validate_name(new).map_err(ContainerError::Invalid)?;
        let _lock = self.lock()?;
        if let Some(other) = self.name_taken(new)? {
            return Err(ContainerError::Conflict(format!(
                "the container name {new:?} is already in use by container {}",
                &other[..12.min(other.len())]
            )));
        }
        let mut config = self.config(id)?;
        let old = NetworkMode::Container(config.name.clone());
        let joiners: Vec<RunConfig> =
            self.ids()?.iter().filter_map(|j| self.config(j).ok()).filter(|j| j.network == old).collect();
        let mut done: Vec<&RunConfig> = Vec::new();
        let mut result = Ok(());
        for j in &joiners {
            let moved = RunConfig { network: NetworkMode::Container(new.to_string()), ..j.clone() };
            match self.write_config(&moved) {
                Ok(()) => done.push(j),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            config.name = new.to_string();
            result = self.write_config(&config);
        }
        if let Err(e) = result {
            for j in done {
                if let Err(undo) = self.write_config(j) {
                    tracing::error!(container = j.name.as_str(), error = %undo, "cannot put back its network peer's old name");
                }
            }
            return Err(e);
        }
        Ok(config)
    }

    pub fn name_taken(&self, name: &str) -> Result<Option<String>, ContainerError> {
        for id in self.ids()? {
            if self.config(&id).is_ok_and(|c| c.name == name) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

/// A new 64-hex container ID.
pub fn new_id() -> String {
    fsutil::random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded name (a network peer's, a service's) never matches another container whose
    /// ID starts with it; what a user types does, when no name matches.
    #[test]
    fn recorded_names_never_match_an_id_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let containers = Containers::open(dir.path()).unwrap();
        let web = RunConfig {
            id: format!("db{}", "0".repeat(62)),
            name: "web".into(),
            ..super::super::spec::tests::sample()
        };
        containers.create_record(&web).unwrap();
        assert!(matches!(containers.named("db"), Err(ContainerError::NotFound(_))));
        assert_eq!(containers.find("db").unwrap().name, "web");
        assert_eq!(containers.named("web").unwrap().id, web.id);
        assert_eq!(containers.named(&web.id).unwrap().name, "web");
        let db = RunConfig { id: "f".repeat(64), name: "db".into(), ..web.clone() };
        containers.create_record(&db).unwrap();
        assert_eq!(containers.named("db").unwrap().id, db.id);
        assert_eq!(containers.find("db").unwrap().id, db.id, "a name wins over an ID prefix");
    }

    #[test]
    fn restarts_back_off_like_docker() {
        let ms = |n| RestartPolicy::delay(n).as_millis();
        assert_eq!([ms(0), ms(1), ms(2), ms(3)], [100, 200, 400, 800]);
        assert_eq!(ms(10), 60_000);
        assert_eq!(ms(u32::MAX), 60_000);
    }

    #[test]
    fn restart_policies() {
        let p = RestartPolicy::parse("on-failure:3").unwrap();
        assert!(p.should_restart(1, 0, false));
        assert!(p.should_restart(1, 2, false));
        assert!(!p.should_restart(1, 3, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(!p.should_restart(1, 0, true));
        assert!(RestartPolicy::parse("always").unwrap().should_restart(0, 100, false));
        assert!(!RestartPolicy::parse("no").unwrap().should_restart(1, 0, false));
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert_eq!(RestartPolicy::parse("on-failure:3").unwrap().to_docker(), "on-failure:3");
    }
}
