//! Containers run by another engine (Docker, or Podman through its Docker-compatible API):
//! what a snapshot needs of them. Their configuration comes from the engine's `inspect`,
//! translated into Lifeboat's run configuration; their writable layer and volumes are read
//! from this host's disk (overlay upper directory and volume mount points); hooks run with
//! the engine's exec; the freeze is the engine's pause.
//!
//! A container is named `docker://NAME` (or `podman://NAME`), a service of a Compose project
//! `docker://PROJECT/SERVICE`, and every container of a project `docker://PROJECT/*`.

pub mod client;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::runtime::container::{
    HealthCheck, MountSource, MountSpec, NetworkMode, PortMapping, Protocol, RestartPolicy, RunConfig,
};

/// Which engine serves the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Docker,
    Podman,
}

impl Kind {
    pub fn scheme(self) -> &'static str {
        match self {
            Kind::Docker => "docker",
            Kind::Podman => "podman",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Docker => "Docker",
            Kind::Podman => "Podman",
        }
    }

    /// Where its socket is: `DOCKER_HOST` (Docker) or `CONTAINER_HOST` (Podman) when set,
    /// else the system service's.
    pub fn socket(self) -> anyhow::Result<PathBuf> {
        let (var, default) = match self {
            Kind::Docker => ("DOCKER_HOST", "/var/run/docker.sock"),
            Kind::Podman => ("CONTAINER_HOST", "/run/podman/podman.sock"),
        };
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => client::socket_path(&v),
            _ => Ok(PathBuf::from(default)),
        }
    }
}

/// Refuses a socket that someone other than root (or this user) could have put there: the
/// engine behind it says which directories Lifeboat reads and writes as root.
fn check_socket(socket: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(socket) {
        Ok(m) => m,
        // Connecting says it better (is the engine running?).
        Err(_) => return Ok(()),
    };
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "{} belongs to user {}: Lifeboat only talks to an engine whose socket belongs to root (or to you)",
            socket.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// `docker://NAME`, `docker://PROJECT/SERVICE` or `docker://PROJECT/*`, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Container(Kind, String),
    Service { kind: Kind, project: String, service: String },
    Project(Kind, String),
}

impl Target {
    /// None when `s` names no engine (a Lifeboat service).
    pub fn parse(s: &str) -> Option<Result<Target, crate::error::UsageError>> {
        let (kind, rest) = if let Some(rest) = s.strip_prefix("docker://") {
            (Kind::Docker, rest)
        } else if let Some(rest) = s.strip_prefix("podman://") {
            (Kind::Podman, rest)
        } else {
            return None;
        };
        // Docker's own rule for names: a letter or digit, then letters, digits, _ . -
        let valid = |n: &str| {
            n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        };
        let bad = || {
            crate::error::UsageError(format!(
                "{s:?}: write {0}://CONTAINER, {0}://PROJECT/SERVICE or {0}://PROJECT/* (names of letters, digits, _ . -)",
                kind.scheme()
            ))
        };
        Some(match rest.split_once('/') {
            None if valid(rest) => Ok(Target::Container(kind, rest.to_string())),
            Some((project, "*")) if valid(project) => Ok(Target::Project(kind, project.to_string())),
            Some((project, service)) if valid(project) && valid(service) => {
                Ok(Target::Service { kind, project: project.to_string(), service: service.to_string() })
            }
            _ => Err(bad()),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Target::Container(k, _) | Target::Project(k, _) | Target::Service { kind: k, .. } => *k,
        }
    }
}

/// A connection to one engine.
pub struct Engine {
    pub kind: Kind,
    client: client::Client,
    /// Where it keeps its files (`DockerRootDir`), once asked.
    root: std::sync::OnceLock<Option<PathBuf>>,
}

/// A container of the engine as a snapshot sees it.
#[derive(Clone, Debug)]
pub struct Container {
    /// The engine's ID (64 hex digits).
    pub id: String,
    /// Its configuration in Lifeboat's terms (its `id` is the engine's).
    pub config: RunConfig,
    pub running: bool,
    /// Paused already (by someone else): a snapshot leaves it paused.
    pub paused: bool,
    /// The writable layer's directory on this host.
    pub upper: PathBuf,
    /// Named volumes: (name, path in the container, data directory on this host).
    pub volumes: Vec<(String, String, PathBuf)>,
    /// What the engine runs it with that Lifeboat does not record (said once, at snapshot).
    pub not_kept: Vec<String>,
    /// Seconds the engine gives it to stop before killing it (`--stop-timeout`).
    pub stop_timeout: Option<u64>,
}

impl Engine {
    /// Connects to the engine's socket and checks that it answers.
    pub fn connect(kind: Kind) -> anyhow::Result<Engine> {
        let socket = kind.socket()?;
        check_socket(&socket)?;
        let client = client::Client::new(kind.title(), &socket)?;
        client.negotiate()?;
        let engine = Engine { kind, client, root: std::sync::OnceLock::new() };
        engine.check_rootful()?;
        Ok(engine)
    }

    /// Refuses an engine that stores its containers' files under shifted IDs (rootless, or
    /// Docker's userns-remap): their owners on disk are not the ones the container sees.
    fn check_rootful(&self) -> anyhow::Result<()> {
        let info: Value = self.client.call("GET", "/info", None)?.json("system description")?;
        let options = strings(&info["SecurityOptions"]);
        if let Some(o) = options.iter().find(|o| o.contains("name=rootless") || o.contains("name=userns")) {
            bail!(
                "{} runs with {o:?}: its files on disk belong to shifted user IDs, which Lifeboat does not map; \
                 snapshot services of a rootful engine",
                self.kind.title()
            );
        }
        let root = info["DockerRootDir"].as_str().filter(|r| r.starts_with('/')).map(PathBuf::from);
        let _ = self.root.set(root);
        Ok(())
    }

    /// Refuses a path the engine gave for a container's files unless it lies under the
    /// engine's own storage directory (when the engine says which).
    pub fn check_own_path(&self, what: &str, path: &Path) -> anyhow::Result<()> {
        let Some(Some(root)) = self.root.get() else { return Ok(()) };
        let real = std::fs::canonicalize(path).with_context(|| format!("{what} {} is not there", path.display()))?;
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
        if !real.starts_with(&root) {
            bail!(
                "{} gave {} as {what}, outside its storage directory {}: refused",
                self.kind.title(),
                path.display(),
                root.display()
            );
        }
        Ok(())
    }

    /// The engine at `socket`, not checked (the thaw guard's: it only unpauses).
    pub fn at(kind: Kind, socket: &Path) -> anyhow::Result<Engine> {
        let client = client::Client::new(kind.title(), socket)?;
        client.negotiate()?;
        Ok(Engine { kind, client, root: std::sync::OnceLock::new() })
    }

    pub fn socket(&self) -> &Path {
        self.client.socket()
    }

    /// The names of the containers a target stands for (a project's, sorted).
    pub fn resolve(&self, target: &Target) -> anyhow::Result<Vec<String>> {
        let (project, service) = match target {
            Target::Container(_, name) => return Ok(vec![name.clone()]),
            Target::Service { project, service, .. } => (project, Some(service)),
            Target::Project(_, project) => (project, None),
        };
        let mut labels = vec![format!("com.docker.compose.project={project}")];
        if let Some(s) = service {
            labels.push(format!("com.docker.compose.service={s}"));
        }
        let mut names = self.names_matching(json!({ "label": labels }))?;
        names.sort();
        if names.is_empty() {
            bail!(crate::error::NotFound(match service {
                Some(s) =>
                    format!("{} has no container of service {s} in Compose project {project}", self.kind.title()),
                None => format!("{} has no container of Compose project {project}", self.kind.title()),
            }));
        }
        Ok(names)
    }

    /// `inspect` of a container, raw.
    fn inspect_raw(&self, name: &str) -> anyhow::Result<Value> {
        match self.client.call("GET", &format!("/containers/{}/json", client::encode(name)), None) {
            Ok(r) => r.json("container description"),
            Err(e) if e.downcast_ref::<client::ApiError>().is_some_and(|a| a.status == 404) => {
                Err(crate::error::NotFound(format!("{} has no container {name}", self.kind.title())).into())
            }
            Err(e) => Err(e),
        }
    }

    /// A container, described for a snapshot.
    pub fn container(&self, name: &str) -> anyhow::Result<Container> {
        let c = self.inspect_raw(name)?;
        let image_id = c["Image"].as_str().unwrap_or_default();
        let image = self.client.call("GET", &format!("/images/{}/json", client::encode(image_id)), None)?;
        let image: Value = image.json("image description")?;
        let peer_name = |id: &str| -> anyhow::Result<String> {
            let peer = self.inspect_raw(id)?;
            Ok(peer["Name"].as_str().unwrap_or(id).trim_start_matches('/').to_string())
        };
        let got = translate(&c, &image, &peer_name)
            .with_context(|| format!("cannot read {}'s description of {name}", self.kind.title()))?;
        self.check_own_path("the writable layer", &got.upper)?;
        for (v, _, data) in &got.volumes {
            self.check_own_path(&format!("volume {v}'s mount point"), data)?;
            // A local volume with options (a device, NFS) is mounted on its directory only
            // while a container uses it: its directory alone may be empty.
            let desc: Value =
                self.client.call("GET", &format!("/volumes/{}", client::encode(v)), None)?.json("volume")?;
            if desc["Options"].as_object().is_some_and(|o| !o.is_empty()) {
                bail!(
                    "volume {v} is mounted from elsewhere ({}): Lifeboat reads local volumes whose data is in their directory",
                    desc["Options"]
                );
            }
        }
        // Files owned through a user namespace of its own carry shifted IDs on disk.
        if let Some(pid) = c["State"]["Pid"].as_i64().filter(|p| *p > 0)
            && let Ok(map) = std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
        {
            let fields: Vec<&str> = map.split_whitespace().collect();
            if fields != ["0", "0", "4294967295"] {
                bail!(
                    "{name} runs in a user namespace of its own (uid_map {}): its files have shifted owners",
                    map.trim()
                );
            }
        }
        Ok(got)
    }

    pub fn pause(&self, id: &str) -> anyhow::Result<()> {
        self.client.call("POST", &format!("/containers/{id}/pause"), None).map(drop)
    }

    pub fn unpause(&self, id: &str) -> anyhow::Result<()> {
        self.client.call("POST", &format!("/containers/{id}/unpause"), None).map(drop)
    }

    /// Whether the engine has container `id` paused now.
    pub fn is_paused(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self.inspect_raw(id)?["State"]["Paused"].as_bool().unwrap_or(false))
    }

    /// Runs `sh -c SCRIPT` in the container (as `user`, if given; its output to our standard
    /// error); its exit code. Given up after `timeout` (the engine cannot stop an exec: the
    /// command may go on).
    pub fn exec_shell(
        &self,
        id: &str,
        user: Option<&str>,
        script: &str,
        timeout: Option<std::time::Duration>,
    ) -> anyhow::Result<i64> {
        let mut body = json!({"Cmd": ["/bin/sh", "-c", script], "AttachStdout": true, "AttachStderr": true});
        if let Some(u) = user {
            body["User"] = json!(u);
        }
        let created: Value = self.client.call("POST", &format!("/containers/{id}/exec"), Some(body))?.json("exec")?;
        let exec = created["Id"].as_str().context("the engine gave the exec no ID")?.to_string();
        let start = json!({"Detach": false, "Tty": false});
        let out = self.client.call_within("POST", &format!("/exec/{exec}/start"), Some(start), timeout)?;
        let (stdout, stderr) = client::demultiplex(&out.body);
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&stdout).and_then(|()| err.write_all(&stderr));
        // The output ends a moment before the engine records the exit.
        for _ in 0..50 {
            let done: Value = self.client.call("GET", &format!("/exec/{exec}/json"), None)?.json("exec state")?;
            if done["Running"].as_bool() != Some(true) {
                return done["ExitCode"].as_i64().context("the engine gave no exit code for the command");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bail!("the engine says the command still runs after its output ended")
    }

    pub fn title(&self) -> &'static str {
        self.kind.title()
    }

    /// Whether the answer to a call is "there is no such thing".
    fn missing<T>(r: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.downcast_ref::<client::ApiError>().is_some_and(|a| a.status == 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn has_container(&self, name: &str) -> anyhow::Result<bool> {
        match self.inspect_raw(name) {
            Ok(_) => Ok(true),
            Err(e) if e.downcast_ref::<crate::error::NotFound>().is_some() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Refuses an engine whose containers' layers are not overlay directories on this host.
    pub fn check_overlay(&self) -> anyhow::Result<()> {
        let info: Value = self.client.call("GET", "/info", None)?.json("system description")?;
        let driver = info["Driver"].as_str().unwrap_or_default();
        if !driver.starts_with("overlay") {
            bail!(
                "{}'s storage driver is {driver:?}: Lifeboat reads and writes a container's layer as an overlay \
                 upper directory (overlay2)",
                self.kind.title()
            );
        }
        Ok(())
    }

    /// Whether the engine has the image whose ID (configuration digest) is `id`.
    pub fn has_image(&self, id: &crate::image::Digest) -> anyhow::Result<bool> {
        let found = Self::missing(self.client.call("GET", &format!("/images/{id}/json"), None))?;
        Ok(found.is_some_and(|r| r.json::<Value>("image description").is_ok_and(|v| v["Id"] == id.to_string())))
    }

    /// Whether the engine has an image by this name.
    pub fn has_image_named(&self, name: &str) -> anyhow::Result<bool> {
        Ok(Self::missing(self.client.call("GET", &format!("/images/{}/json", client::encode(name)), None))?.is_some())
    }

    /// Loads a docker-archive into the engine.
    pub fn load_image(&self, archive: &Path) -> anyhow::Result<()> {
        let r = self.client.upload("/images/load?quiet=1", archive)?;
        // Errors of a load come in its stream of messages, with a success status.
        for line in r.body.split(|b| *b == b'\n') {
            if let Ok(v) = serde_json::from_slice::<Value>(line)
                && let Some(e) = v.get("error").and_then(|e| e.as_str())
            {
                bail!("{} refused the image: {e}", self.kind.title());
            }
        }
        Ok(())
    }

    /// A volume's mount point on this host, if the engine has the volume.
    pub fn volume_mountpoint(&self, name: &str) -> anyhow::Result<Option<PathBuf>> {
        let found = Self::missing(self.client.call("GET", &format!("/volumes/{}", client::encode(name)), None))?;
        let Some(r) = found else { return Ok(None) };
        let v: Value = r.json("volume description")?;
        Ok(Some(PathBuf::from(v["Mountpoint"].as_str().context("a volume without a mount point")?)))
    }

    /// Creates a local volume labelled with `nonce`; its mount point on this host, or None if
    /// the engine answered with a volume of that name it had already (another label).
    pub fn create_volume(&self, name: &str, nonce: &str) -> anyhow::Result<Option<PathBuf>> {
        let body = json!({"Name": name, "Driver": "local", "Labels": {"lifeboat.restore": nonce}});
        let r = self.client.call("POST", "/volumes/create", Some(body))?;
        let v: Value = r.json("volume description")?;
        if v["Labels"]["lifeboat.restore"].as_str() != Some(nonce) {
            return Ok(None);
        }
        Ok(Some(PathBuf::from(v["Mountpoint"].as_str().context("the new volume has no mount point")?)))
    }

    /// The containers (names) that mount volume `name`.
    pub fn containers_using(&self, volume: &str) -> anyhow::Result<Vec<String>> {
        self.names_matching(json!({ "volume": [volume] }))
    }

    /// The names of the containers (running or not) that `filters` select.
    fn names_matching(&self, filters: Value) -> anyhow::Result<Vec<String>> {
        let filters = client::encode(&filters.to_string());
        let list: Vec<Value> = self
            .client
            .call("GET", &format!("/containers/json?all=true&filters={filters}"), None)?
            .json("container list")?;
        Ok(list
            .iter()
            .filter_map(|c| c["Names"].as_array()?.first()?.as_str().map(|n| n.trim_start_matches('/').to_string()))
            .collect())
    }

    /// A container's state as the engine has it: running, and when it last started.
    pub fn run_state(&self, id: &str) -> anyhow::Result<(bool, String)> {
        let c = self.inspect_raw(id)?;
        Ok((
            c["State"]["Running"].as_bool().unwrap_or(false),
            c["State"]["StartedAt"].as_str().unwrap_or_default().into(),
        ))
    }

    pub fn remove_volume(&self, name: &str) -> anyhow::Result<()> {
        self.client.call("DELETE", &format!("/volumes/{}", client::encode(name)), None).map(drop)
    }

    /// Creates a container; its ID.
    pub fn create_container(&self, name: &str, body: &Value) -> anyhow::Result<String> {
        let r = self.client.call(
            "POST",
            &format!("/containers/create?name={}", client::encode(name)),
            Some(body.clone()),
        )?;
        let v: Value = r.json("created container")?;
        let id = v["Id"].as_str().filter(|i| i.len() == 64 && i.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(id.context("the engine's answer to create holds no container ID")?.to_string())
    }

    /// A container's writable layer on this host (an overlay upper directory).
    pub fn upper_dir(&self, id: &str) -> anyhow::Result<PathBuf> {
        let c = self.inspect_raw(id)?;
        let driver = c["GraphDriver"]["Name"].as_str().unwrap_or_default();
        match c["GraphDriver"]["Data"]["UpperDir"].as_str() {
            Some(u) if driver.starts_with("overlay") => Ok(PathBuf::from(u)),
            _ => bail!(
                "{}'s storage driver is {driver:?}: Lifeboat writes a container's layer into an overlay upper directory",
                self.kind.title()
            ),
        }
    }

    /// Stops a container (its stop signal, then SIGKILL after `timeout`).
    pub fn stop(&self, id: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
        let wait = Some(timeout + std::time::Duration::from_secs(30));
        self.client.call_within("POST", &format!("/containers/{id}/stop?t={}", timeout.as_secs()), None, wait).map(drop)
    }

    /// A container's restart policy: its name and retry count.
    pub fn restart_policy(&self, id: &str) -> anyhow::Result<(String, u32)> {
        let c = self.inspect_raw(id)?;
        let p = &c["HostConfig"]["RestartPolicy"];
        let name = p["Name"].as_str().filter(|n| !n.is_empty()).unwrap_or("no").to_string();
        Ok((name, p["MaximumRetryCount"].as_u64().unwrap_or(0).min(u32::MAX as u64) as u32))
    }

    pub fn set_restart_policy(&self, id: &str, name: &str, retries: u32) -> anyhow::Result<()> {
        let body = json!({"RestartPolicy": {"Name": name, "MaximumRetryCount": retries}});
        self.client.call("POST", &format!("/containers/{id}/update"), Some(body)).map(drop)
    }

    pub fn start(&self, id: &str) -> anyhow::Result<()> {
        self.client.call("POST", &format!("/containers/{id}/start"), None).map(drop)
    }

    /// Removes a container that is not running (the engine refuses a running one).
    pub fn remove_stopped_container(&self, id: &str) -> anyhow::Result<()> {
        self.client.call("DELETE", &format!("/containers/{}", client::encode(id)), None).map(drop)
    }

    pub fn remove_container(&self, id: &str) -> anyhow::Result<()> {
        self.client.call("DELETE", &format!("/containers/{}?force=true", client::encode(id)), None).map(drop)
    }

    /// Writes the image `id` as a docker-archive (`docker save`) to `out`.
    pub fn save_image(&self, id: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        self.client.download(&format!("/images/{}/get", client::encode(id)), out)
    }
}

/// The engine's image `id` in this host's image store: exported by the engine (`docker
/// save`) and loaded the first time, found by its ID every time after (an image ID is the
/// digest of its configuration, the same in both stores).
pub fn image_into_store(
    engine: &Engine,
    store: &crate::image::Store,
    id: &crate::image::Digest,
) -> anyhow::Result<crate::image::Image> {
    let by_id = |store: &crate::image::Store| store.images().ok()?.into_iter().find(|i| i.id() == id);
    if let Some(image) = by_id(store) {
        return Ok(image);
    }
    let tmp = store.temp_path("engine-image");
    let label = PathBuf::from(format!("{}:{id}", engine.kind.scheme()));
    {
        let file =
            std::fs::File::create(tmp.path()).with_context(|| format!("cannot create {}", tmp.path().display()))?;
        let mut out = std::io::BufWriter::new(file);
        engine
            .save_image(&id.to_string(), &mut out)
            .with_context(|| format!("cannot export image {} from {}", id.short(), engine.kind.title()))?;
        std::io::Write::flush(&mut out)?;
    }
    let file = std::fs::File::open(tmp.path())?;
    crate::image::archive::load(store, std::io::BufReader::new(file), &label)?;
    by_id(store).with_context(|| {
        format!(
            "{} exported image {} as an image with another ID: it cannot be recorded",
            engine.kind.title(),
            id.short()
        )
    })
}

/// The engine's `create` request for a container run as `r` says (the inverse of
/// [`translate`]): the process as its entrypoint, so the image's own command is not added.
pub fn create_body(r: &RunConfig) -> Value {
    let mut binds = Vec::new();
    let mut tmpfs = serde_json::Map::new();
    for m in &r.mounts {
        let ro = if m.read_only { ":ro" } else { "" };
        match &m.source {
            MountSource::Volume { name } => {
                let opts: Vec<&str> = [(m.read_only, "ro"), (m.nocopy, "nocopy")]
                    .into_iter()
                    .filter_map(|(on, o)| on.then_some(o))
                    .collect();
                let opts = if opts.is_empty() { String::new() } else { format!(":{}", opts.join(",")) };
                binds.push(format!("{name}:{}{opts}", m.target))
            }
            MountSource::Bind { path, .. } => binds.push(format!("{}:{}{ro}", path.display(), m.target)),
            MountSource::Tmpfs { size, mode, exec } => {
                let mut opts = Vec::new();
                if let Some(s) = size {
                    opts.push(format!("size={s}"));
                }
                if let Some(m) = mode {
                    opts.push(format!("mode={m:o}"));
                }
                if *exec {
                    opts.push("exec".into());
                }
                tmpfs.insert(m.target.clone(), json!(opts.join(",")));
            }
        }
    }
    let mut bindings: serde_json::Map<String, Value> = serde_json::Map::new();
    let mut exposed = serde_json::Map::new();
    for p in &r.ports {
        let key = format!("{}/{}", p.container_port, if p.protocol == Protocol::Udp { "udp" } else { "tcp" });
        exposed.insert(key.clone(), json!({}));
        let port = if p.host_port == 0 { String::new() } else { p.host_port.to_string() };
        let list = bindings.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.push(json!({"HostIp": p.host_ip, "HostPort": port}));
        }
    }
    let network = match &r.network {
        NetworkMode::Private => "default".to_string(),
        NetworkMode::Host => "host".into(),
        NetworkMode::None => "none".into(),
        NetworkMode::Container(peer) => format!("container:{peer}"),
        NetworkMode::Network(n) => n.clone(),
    };
    let (restart, retries) = match &r.restart {
        RestartPolicy::No => ("no", 0),
        RestartPolicy::Always => ("always", 0),
        RestartPolicy::UnlessStopped => ("unless-stopped", 0),
        RestartPolicy::OnFailure { max_retries } => ("on-failure", max_retries.unwrap_or(0)),
    };
    // A container sharing another's network (or the host's) has no name, ports or hosts
    // entries of its own there; a name that was the old container's ID is made anew.
    let shares = matches!(r.network, NetworkMode::Container(_));
    let own_name = !shares
        && r.network != NetworkMode::Host
        && !(r.hostname.len() == 12 && r.hostname.bytes().all(|b| b.is_ascii_hexdigit()));
    if shares {
        exposed.clear();
        bindings.clear();
    }
    // A Compose service is found by its service name on the project's network.
    let networking = match (&r.network, r.labels.get("com.docker.compose.service")) {
        (NetworkMode::Network(net), Some(service)) => {
            json!({"EndpointsConfig": {net.as_str(): {"Aliases": [service]}}})
        }
        _ => json!({}),
    };
    json!({
        "Hostname": if own_name { r.hostname.as_str() } else { "" },
        "NetworkingConfig": networking,
        "User": r.user.clone().unwrap_or_default(),
        "Env": r.env,
        "Entrypoint": r.args,
        "Cmd": null,
        "Image": r.image_id.to_string(),
        "WorkingDir": r.working_dir,
        "Labels": r.labels,
        "StopSignal": r.stop_signal,
        "Tty": r.tty,
        "OpenStdin": r.stdin_open,
        // None: no check at all, not the image's.
        "Healthcheck": r.health.as_ref().map_or_else(|| json!({"Test": ["NONE"]}), HealthCheck::to_docker),
        "ExposedPorts": exposed,
        "HostConfig": {
            "Binds": binds,
            "Tmpfs": tmpfs,
            "PortBindings": bindings,
            "NetworkMode": network,
            "RestartPolicy": {"Name": restart, "MaximumRetryCount": retries},
            "AutoRemove": r.auto_remove,
            "Memory": r.memory.unwrap_or(0),
            "NanoCpus": r.cpus.map_or(0, |c| (c * 1e9) as i64),
            "PidsLimit": r.pids_limit,
            "ReadonlyRootfs": r.read_only,
            "Init": r.init,
            "ExtraHosts": if shares { Vec::new() } else { r.extra_hosts.clone() },
        },
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// A container's `inspect` (and its image's) in Lifeboat's terms. `peer_name` names the
/// container whose network one joins (recorded by name, as Lifeboat records it).
pub fn translate(
    c: &Value,
    image: &Value,
    peer_name: &dyn Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Container> {
    let id = c["Id"].as_str().filter(|i| i.len() == 64 && i.bytes().all(|b| b.is_ascii_hexdigit()));
    let id = id.context("no container ID")?.to_string();
    let name = c["Name"].as_str().context("no name")?.trim_start_matches('/').to_string();
    crate::runtime::names::validate_name(&name).map_err(|e| anyhow::anyhow!("its name: {e}"))?;
    let config = &c["Config"];
    let host = &c["HostConfig"];
    let mut not_kept = Vec::new();

    let driver = c["GraphDriver"]["Name"].as_str().unwrap_or_default();
    let upper = c["GraphDriver"]["Data"]["UpperDir"].as_str().filter(|_| driver.starts_with("overlay"));
    let Some(upper) = upper else {
        bail!(
            "its storage driver is {driver:?}: Lifeboat reads a container's writable layer from an overlay (overlay2) \
             upper directory"
        )
    };

    // The process as the engine resolved it (entrypoint and command); Podman puts its own
    // init in front with --init (`/run/podman-init -- CMD…`): `init` records that.
    let mut args: Vec<String> = c["Path"].as_str().filter(|p| !p.is_empty()).map(String::from).into_iter().collect();
    args.extend(strings(&c["Args"]));
    if args.first().is_some_and(|a| a.ends_with("/podman-init")) && args.get(1).is_some_and(|a| a == "--") {
        args.drain(..2);
    }
    for (key, what) in [
        ("CapDrop", "dropped capabilities"),
        ("Sysctls", "sysctls"),
        ("Ulimits", "ulimits"),
        ("Dns", "DNS servers"),
        ("GroupAdd", "added groups"),
    ] {
        let set = match &host[key] {
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => false,
        };
        if set {
            not_kept.push(format!("{what} ({})", host[key]));
        }
    }
    if host["ShmSize"].as_u64().is_some_and(|s| s != 64 << 20 && s != 0) {
        not_kept.push(format!("a /dev/shm of {} bytes (Lifeboat gives 64 MiB)", host["ShmSize"]));
    }
    if let Some(mode) = host["UsernsMode"].as_str().filter(|m| !m.is_empty() && *m != "host") {
        bail!("it runs in a user namespace of its own ({mode}): its files on disk have shifted owners");
    }
    for (key, what) in [("IpcMode", "IPC namespace"), ("PidMode", "PID namespace")] {
        if host[key].as_str().is_some_and(|m| !m.is_empty() && m != "private" && m != "shareable") {
            not_kept.push(format!("{what} {}", host[key]));
        }
    }
    if let Some(nets) = c["NetworkSettings"]["Networks"].as_object()
        && nets.len() > 1
    {
        let names: Vec<&str> = nets.keys().map(String::as_str).collect();
        not_kept.push(format!("networks other than the first ({}): Lifeboat joins one", names.join(", ")));
    }

    let mut mounts = Vec::new();
    let mut volumes = Vec::new();
    for m in c["Mounts"].as_array().into_iter().flatten() {
        let target = m["Destination"].as_str().unwrap_or_default().to_string();
        let read_only = m["RW"].as_bool() == Some(false);
        let source = match m["Type"].as_str() {
            Some("volume") => {
                let name = m["Name"].as_str().context("a volume without a name")?.to_string();
                crate::runtime::names::validate_name(&name).map_err(|e| anyhow::anyhow!("volume {name:?}: {e}"))?;
                let data = m["Source"].as_str().context("a volume without a mount point")?;
                if m["Driver"].as_str().is_some_and(|d| d != "local") {
                    bail!("volume {name} uses driver {:?}: only local volumes can be read", m["Driver"]);
                }
                volumes.push((name.clone(), target.clone(), PathBuf::from(data)));
                let anonymous = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
                mounts.push(MountSpec {
                    source: MountSource::Volume { name },
                    target,
                    read_only,
                    nocopy: false,
                    anonymous,
                });
                continue;
            }
            Some("bind") => {
                MountSource::Bind { path: PathBuf::from(m["Source"].as_str().unwrap_or_default()), must_exist: false }
            }
            Some("tmpfs") => {
                if mounts.iter().any(|m: &MountSpec| m.target == target) {
                    continue;
                }
                let opts = &m["TmpfsOptions"];
                MountSource::Tmpfs {
                    size: opts["SizeBytes"].as_u64().filter(|s| *s > 0),
                    mode: opts["Mode"].as_u64().map(|m| m as u32 & 0o7777),
                    exec: false,
                }
            }
            other => {
                not_kept.push(format!("mount of type {} on {target}", other.unwrap_or("?")));
                continue;
            }
        };
        mounts.push(MountSpec { source, target, read_only, nocopy: false, anonymous: false });
    }
    if let Some(tmpfs) = host["Tmpfs"].as_object() {
        for (target, opts) in tmpfs {
            if mounts.iter().any(|m| m.target == *target) {
                continue;
            }
            let mut size = None;
            let mut mode = None;
            let mut exec = false;
            for o in opts.as_str().unwrap_or_default().split(',') {
                match o.split_once('=') {
                    Some(("size", v)) => size = crate::syntax::size(v).ok(),
                    Some(("mode", v)) => mode = u32::from_str_radix(v, 8).ok(),
                    None if o == "exec" => exec = true,
                    _ => {}
                }
            }
            mounts.push(MountSpec {
                source: MountSource::Tmpfs { size, mode, exec },
                target: target.clone(),
                read_only: false,
                nocopy: false,
                anonymous: false,
            });
        }
    }

    let mut ports = Vec::new();
    for (key, bindings) in host["PortBindings"].as_object().into_iter().flatten() {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let protocol = match proto {
            "udp" => Protocol::Udp,
            "tcp" => Protocol::Tcp,
            other => {
                not_kept.push(format!("published port {port}/{other} (Lifeboat publishes TCP and UDP)"));
                continue;
            }
        };
        let container_port: u16 = port.parse().with_context(|| format!("a published port {key:?}"))?;
        for b in bindings.as_array().into_iter().flatten() {
            ports.push(PortMapping {
                host_ip: b["HostIp"].as_str().unwrap_or_default().to_string(),
                host_port: b["HostPort"].as_str().unwrap_or_default().parse().unwrap_or(0),
                container_port,
                protocol: protocol.clone(),
            });
        }
    }

    let mode = host["NetworkMode"].as_str().unwrap_or("default");
    let network = match mode {
        "" | "default" | "bridge" => NetworkMode::Private,
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        m if m.starts_with("container:") => NetworkMode::Container(peer_name(&m["container:".len()..])?),
        named => NetworkMode::Network(named.to_string()),
    };

    let restart = match host["RestartPolicy"]["Name"].as_str().unwrap_or_default() {
        "always" => RestartPolicy::Always,
        "unless-stopped" => RestartPolicy::UnlessStopped,
        "on-failure" => RestartPolicy::OnFailure {
            max_retries: host["RestartPolicy"]["MaximumRetryCount"].as_u64().filter(|n| *n > 0).map(|n| n as u32),
        },
        _ => RestartPolicy::No,
    };

    let cpus = match host["NanoCpus"].as_i64() {
        Some(n) if n > 0 => Some(n as f64 / 1e9),
        _ => match (host["CpuQuota"].as_i64(), host["CpuPeriod"].as_i64()) {
            (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
            _ => None,
        },
    };
    if host["Privileged"].as_bool() == Some(true) {
        not_kept.push("privileged mode (restored with Lifeboat's default confinement)".into());
    }
    for (key, what) in [("CapAdd", "added capabilities"), ("Devices", "devices"), ("SecurityOpt", "security options")] {
        if host[key].as_array().is_some_and(|a| !a.is_empty()) {
            not_kept.push(format!("{what} ({})", host[key]));
        }
    }
    let health = HealthCheck::from_image(&config["Healthcheck"]);
    let image_id = c["Image"]
        .as_str()
        .unwrap_or_default()
        .parse::<crate::image::Digest>()
        .with_context(|| format!("the image ID {}", c["Image"]))?;
    let layers = strings(&image["RootFS"]["Layers"])
        .iter()
        .map(|l| l.parse::<crate::image::Digest>())
        .collect::<Result<Vec<_>, _>>()
        .context("the image's layer IDs")?;
    let state = &c["State"];
    let run = RunConfig {
        id: id.clone(),
        name,
        image: config["Image"].as_str().unwrap_or_default().to_string(),
        image_id,
        layers,
        created: c["Created"].as_str().unwrap_or_default().to_string(),
        args,
        env: strings(&config["Env"]),
        working_dir: config["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string(),
        user: config["User"].as_str().filter(|u| !u.is_empty()).map(String::from),
        hostname: config["Hostname"].as_str().unwrap_or_default().to_string(),
        ports,
        mounts,
        network,
        restart,
        auto_remove: host["AutoRemove"].as_bool().unwrap_or(false),
        memory: host["Memory"].as_u64().filter(|m| *m > 0),
        cpus,
        pids_limit: host["PidsLimit"].as_i64().filter(|p| *p > 0),
        read_only: host["ReadonlyRootfs"].as_bool().unwrap_or(false),
        init: host["Init"].as_bool().unwrap_or(false),
        stop_signal: config["StopSignal"].as_str().filter(|s| !s.is_empty()).unwrap_or("SIGTERM").to_string(),
        health,
        tty: config["Tty"].as_bool().unwrap_or(false),
        stdin_open: config["OpenStdin"].as_bool().unwrap_or(false),
        labels: config["Labels"]
            .as_object()
            .map(|l| l.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default(),
        extra_hosts: strings(&host["ExtraHosts"]),
    };
    Ok(Container {
        id,
        config: run,
        running: state["Running"].as_bool().unwrap_or(false),
        paused: state["Paused"].as_bool().unwrap_or(false),
        upper: PathBuf::from(upper),
        volumes,
        not_kept,
        stop_timeout: config["StopTimeout"].as_u64(),
    })
}

#[cfg(test)]
mod tests;
