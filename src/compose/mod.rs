//! Compose files read into what Lifeboat's runtime runs: each service a container request,
//! with its image build, its start order and what it waits for.
//!
//! A project runs in one named network (`PROJECT_default`): one network namespace shared by
//! its containers, as in a Podman pod. Services reach each other on 127.0.0.1, by service
//! name through /etc/hosts; two services of a project cannot listen on one port (refused
//! when both publish it; a clash on unpublished ports shows as the second service failing to
//! bind). Named volumes are `PROJECT_NAME` unless declared `external` or given a `name`.
//! Containers are `PROJECT-SERVICE-1` (or `container_name`), labelled as Docker Compose
//! labels them. Every key outside what is supported is refused with its line: nothing is
//! silently ignored.

pub mod interpolate;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use yaml::Node;

use crate::error::UsageError;
use crate::ops::containers::{HealthRequest, NetworkRequest, RunRequest};
use crate::runtime::container::{MountSource, MountSpec, RestartPolicy};

/// The file names looked for in a directory, in order (as Docker Compose looks).
pub const FILE_NAMES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

/// Labels Docker Compose puts on its containers; `ps --filter label=…` finds a project by them.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// A Compose project, read and checked.
#[derive(Debug)]
pub struct Project {
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// Its services, each after those it depends on.
    pub services: Vec<Service>,
    /// The named network its containers share.
    pub network: String,
    /// Named volumes it owns (removed by `down --volumes`), as the runtime names them.
    pub volumes: Vec<String>,
}

impl Project {
    /// What the runtime is asked for `svc`: its request, with every service of the project
    /// named in its /etc/hosts (on the shared loopback). The names are left out of the
    /// service's own definition, so adding a service does not recreate the others.
    pub fn request(&self, svc: &Service) -> RunRequest {
        let mut req = svc.request.clone();
        req.extra_hosts.extend(self.services.iter().map(|s| format!("{}:127.0.0.1", s.name)));
        req
    }
}

/// One service as the runtime will run it.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    /// The container's name.
    pub container: String,
    pub request: RunRequest,
    pub build: Option<Build>,
    /// Services started first, and what each must have reached.
    pub depends_on: Vec<(String, Condition)>,
    /// The consistency recipe for snapshots (`x-lifeboat: {consistency: …}` or the
    /// `lifeboat.consistency` label).
    pub consistency: Option<String>,
    /// The line the service starts on.
    pub line: usize,
}

/// `build:` of a service: the image is built, then run.
#[derive(Debug, Clone)]
pub struct Build {
    pub context: PathBuf,
    pub dockerfile: Option<PathBuf>,
    pub args: HashMap<String, String>,
    pub target: Option<String>,
    /// The tag it is built as (`image:` if given, else `PROJECT-SERVICE`).
    pub tag: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

/// Where a project's file is: `file` itself (relative to `dir`; a directory is searched), or
/// the first of [`FILE_NAMES`] in `dir`.
pub fn find_file(file: Option<&Path>, dir: &Path) -> Result<PathBuf, UsageError> {
    if let Some(f) = file {
        let f = if f.is_absolute() { f.to_path_buf() } else { dir.join(f) };
        return if f.is_dir() { find_file(None, &f) } else { Ok(f) };
    }
    FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        UsageError(format!(
            "no Compose file in {} (looked for {}); name one with -f",
            dir.display(),
            FILE_NAMES.join(", ")
        ))
    })
}

/// Whether a plain `up`/`down` means the Compose project of `dir`: it holds a Compose file,
/// and no configuration file was named or exists at `config`.
pub fn instead_of_config(dir: &Path, config: &Path, config_named: bool) -> bool {
    find_file(None, dir).is_ok() && !config_named && !config.exists()
}

/// How keys Lifeboat does not support are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// Refused, with their line (`up`, `config`: nothing is run that the file does not say).
    Refuse,
    /// Warned about and left out (`down`, `ps`, `logs`, snapshots: a project that runs can
    /// always be listed, snapshotted and taken down).
    Warn,
}

/// Reads the project in `file`. `project` overrides its name; variables come from `env`
/// (this process's environment), then the `.env` file beside it.
pub fn load(
    file: &Path,
    project: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    unsupported: Keys,
) -> Result<Project, UsageError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError(format!("cannot read the Compose file {}: {e}", file.display())))?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let dotenv: HashMap<String, String> = std::fs::read_to_string(dir.join(".env"))
        .map(|t| interpolate::dotenv(&t).into_iter().collect())
        .unwrap_or_default();
    let lookup = |name: &str| env(name).or_else(|| dotenv.get(name).cloned());
    let at = |line: usize, message: String| UsageError(format!("{}:{line}: {message}", file.display()));
    let root = yaml::parse(&text).map_err(|e| at(e.line, e.message))?;
    let root = interpolated(root, &lookup).map_err(|(line, m)| at(line, m))?;
    let reader = Reader { file, dir: &dir, lookup: &lookup, unsupported };
    reader.project(&root, project.map(str::to_string).or_else(|| env("COMPOSE_PROJECT_NAME")))
}

/// The tree with every value's variables replaced (keys are left as written).
fn interpolated(node: Node, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Node, (usize, String)> {
    use yaml::Value;
    let line = node.line;
    let value = match node.value {
        Value::Scalar { text, quoted } => {
            Value::Scalar { text: interpolate::interpolate(&text, lookup).map_err(|e| (line, e))?, quoted }
        }
        Value::Seq(items) => Value::Seq(items.into_iter().map(|n| interpolated(n, lookup)).collect::<Result<_, _>>()?),
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| Ok((k, interpolated(v, lookup)?)))
                .collect::<Result<_, (usize, String)>>()?,
        ),
        Value::Null => Value::Null,
    };
    Ok(Node { line, value })
}

/// A project name as Compose makes one from a directory: lower case, letters, digits, `-`
/// and `_`, starting with a letter or digit.
pub fn normalise_name(raw: &str) -> String {
    let s: String =
        raw.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect();
    s.trim_start_matches(['-', '_']).to_string()
}

struct Reader<'a> {
    file: &'a Path,
    dir: &'a Path,
    /// The variables: this process's environment, then `.env`.
    lookup: &'a dyn Fn(&str) -> Option<String>,
    unsupported: Keys,
}

type Res<T> = Result<T, UsageError>;

impl Reader<'_> {
    fn err(&self, line: usize, message: impl std::fmt::Display) -> UsageError {
        UsageError(format!("{}:{line}: {message}", self.file.display()))
    }

    /// Refuses keys of `node` (a mapping, at `path`) outside `known`; `x-` keys are extensions.
    fn keys<'n>(&self, node: &'n Node, path: &str, known: &[&str]) -> Res<&'n [(Node, Node)]> {
        let map = node
            .as_map()
            .ok_or_else(|| self.err(node.line, format!("{path} must be a mapping, not {}", node.kind())))?;
        for (k, _) in map {
            let key = k.as_str().unwrap_or_default();
            if !known.contains(&key) && !key.starts_with("x-") {
                let message = format!("{path}.{key} is not supported by lifeboat (supported: {})", known.join(", "));
                match self.unsupported {
                    Keys::Refuse => return Err(self.err(k.line, message)),
                    Keys::Warn => tracing::warn!("{}:{}: {message}; left out", self.file.display(), k.line),
                }
            }
        }
        Ok(map)
    }

    fn string(&self, node: &Node, what: &str) -> Res<String> {
        node.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.err(node.line, format!("{what} must be a single value, not {}", node.kind())))
    }

    fn strings(&self, node: &Node, what: &str) -> Res<Vec<String>> {
        match node.as_seq() {
            Some(items) => items.iter().map(|n| self.string(n, what)).collect(),
            None => Ok(vec![self.string(node, what)?]),
        }
    }

    /// A command as a list, or a string split into words (not given to a shell).
    fn command(&self, node: &Node, what: &str) -> Res<Vec<String>> {
        match node.as_seq() {
            Some(_) => self.strings(node, what),
            None => crate::image::changes::split_words(&self.string(node, what)?)
                .map_err(|e| self.err(node.line, format!("{what}: {e}"))),
        }
    }

    /// `KEY: value` mapping or `KEY=value` list (environment, labels, build args). A bare
    /// `KEY` (or a null value) is `None`.
    fn pairs(&self, node: &Node, what: &str) -> Res<Vec<(String, Option<String>)>> {
        if let Some(map) = node.as_map() {
            return map
                .iter()
                .map(|(k, v)| Ok((self.string(k, what)?, if v.is_null() { None } else { Some(self.string(v, what)?) })))
                .collect();
        }
        let items = node.as_seq().ok_or_else(|| self.err(node.line, format!("{what} must be a mapping or a list")))?;
        items
            .iter()
            .map(|n| {
                let s = self.string(n, what)?;
                Ok(match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (s, None),
                })
            })
            .collect()
    }

    fn bool(&self, node: &Node, what: &str) -> Res<bool> {
        match node.as_str() {
            Some("true" | "True" | "TRUE" | "yes") => Ok(true),
            Some("false" | "False" | "FALSE" | "no") => Ok(false),
            _ => Err(self.err(node.line, format!("{what} must be true or false"))),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() { p.to_path_buf() } else { crate::syntax::lexical_join(self.dir, &p.to_string_lossy()) }
    }

    fn project(&self, root: &Node, name: Option<String>) -> Res<Project> {
        self.keys(root, "the file", &["version", "name", "services", "volumes", "networks", "secrets", "configs"])?;
        let name = match name.or(root.get("name").map(|n| self.string(n, "name")).transpose()?) {
            Some(n) => n,
            None => {
                let dir = std::fs::canonicalize(self.dir).unwrap_or_else(|_| self.dir.to_path_buf());
                normalise_name(&dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default())
            }
        };
        if name.is_empty() || normalise_name(&name) != name {
            return Err(UsageError(format!(
                "invalid project name {name:?}: lower-case letters, digits, '-' and '_', starting with a letter or digit (-p NAME)"
            )));
        }
        // Named volumes: declared ones, as the runtime names them.
        let mut volumes: BTreeMap<String, (String, bool)> = BTreeMap::new();
        if let Some(v) = root.get("volumes").filter(|v| !v.is_null()) {
            for (k, def) in v.as_map().ok_or_else(|| self.err(v.line, "volumes must be a mapping"))? {
                let key = self.string(k, "a volume name")?;
                let mut runtime_name = format!("{name}_{key}");
                let mut external = false;
                if !def.is_null() {
                    let fields = self.keys(def, &format!("volumes.{key}"), &["name", "external"])?;
                    for (f, val) in fields {
                        match f.as_str().unwrap_or_default() {
                            "name" => runtime_name = self.string(val, "a volume's name")?,
                            "external" => external = self.bool(val, "external")?,
                            _ => {}
                        }
                    }
                }
                crate::runtime::names::validate_name(&runtime_name).map_err(|e| self.err(k.line, e))?;
                volumes.insert(key, (runtime_name, external));
            }
        }
        if let Some(n) = root.get("networks").filter(|v| !v.is_null()) {
            let map = n.as_map().ok_or_else(|| self.err(n.line, "networks must be a mapping"))?;
            for (k, def) in map {
                if k.as_str() != Some("default") || !def.is_null() {
                    return Err(self.err(
                        k.line,
                        "networks other than a plain `default` are not supported by lifeboat: a project's services share one network namespace and reach each other by name",
                    ));
                }
            }
        }
        let files = |key: &str| -> Res<BTreeMap<String, PathBuf>> {
            let mut out = BTreeMap::new();
            if let Some(s) = root.get(key).filter(|v| !v.is_null()) {
                let map = s.as_map().ok_or_else(|| self.err(s.line, format!("{key} must be a mapping")))?;
                for (k, def) in map {
                    let id = self.string(k, key)?;
                    self.keys(def, &format!("{key}.{id}"), &["file"])?;
                    let file = def.get("file").ok_or_else(|| {
                        self.err(def.line, format!("{key}.{id}: only `file:` {key} are supported by lifeboat"))
                    })?;
                    out.insert(id, self.path(&self.string(file, "file")?));
                }
            }
            Ok(out)
        };
        let secrets = files("secrets")?;
        let configs = files("configs")?;
        if let Some((k, _)) = root.as_map().and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("x-lifeboat"))) {
            return Err(self.err(
                k.line,
                "x-lifeboat at the top of the file is not supported yet: schedule the project's snapshots with a \
                 [stacks.NAME] entry of lifeboat.toml naming its containers (recipes go in each service's \
                 x-lifeboat.consistency or lifeboat.consistency label)",
            ));
        }
        let network = format!("{name}_default");
        let services_node = root.get("services").ok_or_else(|| self.err(root.line, "the file has no services"))?;
        let services_map =
            services_node.as_map().ok_or_else(|| self.err(services_node.line, "services must be a mapping"))?;
        let service_names: Vec<String> =
            services_map.iter().map(|(k, _)| self.string(k, "a service name")).collect::<Res<_>>()?;
        let mut services = Vec::new();
        for (k, def) in services_map {
            let svc = self.service(&name, k, def, &service_names, &volumes, &secrets, &configs, &network)?;
            services.push(svc);
        }
        for (i, s) in services.iter().enumerate() {
            if let Some(other) = services[..i].iter().find(|o| o.container == s.container) {
                return Err(self.err(
                    s.line,
                    format!("services {} and {} both name their container {}", other.name, s.name, s.container),
                ));
            }
        }
        let services = start_order(services).map_err(|(line, m)| self.err(line, m))?;
        // Two services cannot publish one host port.
        let mut published: HashMap<(String, u16, String), &str> = HashMap::new();
        for s in &services {
            for p in s.request.ports.iter().filter(|p| p.host_port != 0) {
                let key = (p.host_ip.clone(), p.host_port, format!("{:?}", p.protocol));
                if let Some(other) = published.insert(key, &s.name) {
                    return Err(self.err(
                        s.line,
                        format!("services {other} and {} both publish host port {}", s.name, p.host_port),
                    ));
                }
            }
        }
        let owned = volumes.values().filter(|(_, ext)| !ext).map(|(n, _)| n.clone()).collect();
        Ok(Project { name, file: self.file.to_path_buf(), services, network, volumes: owned })
    }

    #[allow(clippy::too_many_arguments)]
    fn service(
        &self,
        project: &str,
        key: &Node,
        def: &Node,
        all: &[String],
        volumes: &BTreeMap<String, (String, bool)>,
        secrets: &BTreeMap<String, PathBuf>,
        configs: &BTreeMap<String, PathBuf>,
        network: &str,
    ) -> Res<Service> {
        const KNOWN: &[&str] = &[
            "image",
            "build",
            "command",
            "entrypoint",
            "environment",
            "env_file",
            "ports",
            "expose",
            "volumes",
            "depends_on",
            "healthcheck",
            "restart",
            "user",
            "working_dir",
            "hostname",
            "labels",
            "deploy",
            "secrets",
            "configs",
            "container_name",
            "read_only",
            "init",
            "extra_hosts",
            "networks",
            "stdin_open",
            "tty",
            "mem_limit",
            "cpus",
            "pids_limit",
        ];
        let name = self.string(key, "a service name")?;
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
            return Err(self.err(key.line, format!("invalid service name {name:?}: letters, digits, '-', '_' and '.'")));
        }
        let path = format!("services.{name}");
        let fields = self.keys(def, &path, KNOWN)?;
        let get = |k: &str| def.get(k).filter(|n| !n.is_null());
        let container = match get("container_name") {
            Some(n) => self.string(n, "container_name")?,
            None => format!("{project}-{name}-1"),
        };
        crate::runtime::names::validate_name(&container).map_err(|e| self.err(key.line, e))?;
        let build = match get("build") {
            None => None,
            Some(b) => {
                let tag = match get("image") {
                    Some(i) => self.string(i, "image")?,
                    None => format!("{project}-{name}"),
                };
                Some(self.build(b, &path, tag)?)
            }
        };
        let image = match (&build, get("image")) {
            (Some(b), _) => b.tag.clone(),
            (None, Some(i)) => self.string(i, "image")?,
            (None, None) => return Err(self.err(key.line, format!("service {name} has neither an image nor a build"))),
        };
        let mut req = RunRequest::new(&image);
        req.name = Some(container.clone());
        req.network = NetworkRequest::Named(network.to_string());
        // Compose's default restart policy is "no".
        req.restart = RestartPolicy::No;
        req.labels.insert(PROJECT_LABEL.into(), project.into());
        req.labels.insert(SERVICE_LABEL.into(), name.clone());
        let mut depends_on = Vec::new();
        let mut consistency = None;
        let mut entrypoint: Option<Vec<String>> = None;
        for (k, v) in fields {
            if v.is_null() {
                continue;
            }
            let key = k.as_str().unwrap_or_default();
            let what = format!("{path}.{key}");
            match key {
                "command" => req.command = self.command(v, &what)?,
                "entrypoint" => entrypoint = Some(self.command(v, &what)?),
                "environment" => {
                    // A name without a value takes it from the variables (left out if unset).
                    for (k, v) in self.pairs(v, &what)? {
                        if let Some(v) = v.or_else(|| (self.lookup)(&k)) {
                            req.env.push(format!("{k}={v}"));
                        }
                    }
                }
                "env_file" => {
                    let list: Vec<String> = match v.as_seq() {
                        Some(items) => items
                            .iter()
                            .map(|i| match i.as_map() {
                                // `required: false` and `format` are refused: a listed file must exist.
                                Some(_) => {
                                    self.keys(i, &what, &["path", "required"])?;
                                    if let Some(r) = i.get("required")
                                        && !self.bool(r, &what)?
                                    {
                                        return Err(self.err(
                                            r.line,
                                            format!("{what}: required: false is not supported by lifeboat"),
                                        ));
                                    }
                                    match i.get("path") {
                                        Some(p) => self.string(p, &what),
                                        None => Err(self.err(i.line, format!("{what}: path is required"))),
                                    }
                                }
                                None => self.string(i, &what),
                            })
                            .collect::<Res<_>>()?,
                        None => vec![self.string(v, &what)?],
                    };
                    req.env_files = list.iter().map(|p| self.path(p)).collect();
                }
                "ports" => {
                    for p in v.as_seq().ok_or_else(|| self.err(v.line, format!("{what} must be a list")))? {
                        req.ports.push(self.port(p, &what)?);
                    }
                }
                // Every service shares the project's loopback: exposed ports need nothing.
                "expose" => {}
                "volumes" => {
                    for m in v.as_seq().ok_or_else(|| self.err(v.line, format!("{what} must be a list")))? {
                        req.mounts.push(self.volume(m, &what, volumes)?);
                    }
                }
                "depends_on" => depends_on = self.depends_on(v, &what, all)?,
                "healthcheck" => req.health = self.healthcheck(v, &what)?,
                "restart" => {
                    let s = self.string(v, &what)?;
                    req.restart = RestartPolicy::parse(&s).map_err(|e| self.err(v.line, e))?;
                }
                "user" => req.user = Some(self.string(v, &what)?),
                "working_dir" => req.workdir = Some(self.string(v, &what)?),
                "hostname" => req.hostname = Some(self.string(v, &what)?),
                "labels" => {
                    for (k, v) in self.pairs(v, &what)? {
                        if k == "lifeboat.consistency" {
                            consistency = v.clone();
                        }
                        req.labels.insert(k, v.unwrap_or_default());
                    }
                }
                "deploy" => self.deploy(v, &what, &mut req)?,
                "mem_limit" => {
                    req.memory = Some(crate::syntax::size(&self.string(v, &what)?).map_err(|e| self.err(v.line, e))?)
                }
                "cpus" => req.cpus = Some(self.number(v, &what)?),
                "pids_limit" => req.pids_limit = Some(self.number(v, &what)? as i64),
                "secrets" | "configs" => {
                    let (known, default_dir) =
                        if key == "secrets" { (secrets, "/run/secrets/") } else { (configs, "/") };
                    for item in v.as_seq().ok_or_else(|| self.err(v.line, format!("{what} must be a list")))? {
                        let (source, target) = match item.as_map() {
                            Some(_) => {
                                // uid, gid and mode are refused: the file keeps its own.
                                self.keys(item, &what, &["source", "target"])?;
                                let source = self.string(
                                    item.get("source")
                                        .ok_or_else(|| self.err(item.line, format!("{what}: source is required")))?,
                                    &what,
                                )?;
                                let target = item.get("target").map(|t| self.string(t, &what)).transpose()?;
                                (source, target)
                            }
                            None => (self.string(item, &what)?, None),
                        };
                        let file = known.get(&source).ok_or_else(|| {
                            self.err(
                                item.line,
                                format!("{what}: {source:?} is not defined in the file's top-level {key}"),
                            )
                        })?;
                        let target = match target {
                            Some(t) if t.starts_with('/') => t,
                            Some(t) => format!("{default_dir}{t}"),
                            None => format!("{default_dir}{source}"),
                        };
                        req.mounts.push(MountSpec {
                            source: MountSource::Bind { path: file.clone(), must_exist: true },
                            target,
                            read_only: true,
                            nocopy: false,
                            anonymous: false,
                        });
                    }
                }
                "read_only" => req.read_only = self.bool(v, &what)?,
                "init" => req.init = self.bool(v, &what)?,
                "stdin_open" => req.stdin_open = self.bool(v, &what)?,
                "tty" => req.tty = self.bool(v, &what)?,
                "extra_hosts" => {
                    // `NAME: ADDRESS`, or a list of `NAME:ADDRESS` (or `NAME=ADDRESS`).
                    for (k, addr) in self.pairs(v, &what)? {
                        let spec = match addr {
                            Some(addr) => format!("{k}:{addr}"),
                            None => k,
                        };
                        crate::syntax::extra_host(&spec).map_err(|e| self.err(v.line, e))?;
                        req.extra_hosts.push(spec);
                    }
                }
                "networks" => {
                    let names: Vec<String> = match v.as_map() {
                        Some(m) => m.iter().map(|(k, _)| self.string(k, &what)).collect::<Res<_>>()?,
                        None => self.strings(v, &what)?,
                    };
                    if names.iter().any(|n| n != "default") {
                        return Err(self.err(v.line, format!("{what}: only the project's default network is supported by lifeboat (services share one network namespace)")));
                    }
                }
                "image" | "build" | "container_name" => {}
                "x-lifeboat" => {
                    for (xk, xv) in self.keys(v, &what, &["consistency"])? {
                        if xk.as_str() == Some("consistency") {
                            consistency = Some(self.string(xv, &what)?);
                        }
                    }
                }
                _ => {}
            }
        }
        // An entrypoint list is the program and its first arguments, then the command (in
        // whatever order the two keys are written).
        if let Some(words) = entrypoint {
            let mut words = words.into_iter();
            req.entrypoint = Some(words.next().unwrap_or_default());
            let rest: Vec<String> = words.collect();
            req.command = rest.into_iter().chain(std::mem::take(&mut req.command)).collect();
        }
        // An anonymous volume keeps its name from one `up` to the next (its definition must
        // not change, or every `up` would recreate the service).
        for m in req.mounts.iter_mut().filter(|m| m.anonymous) {
            let id = blake3::hash(format!("{container}\0{}", m.target).as_bytes());
            m.source = MountSource::Volume { name: id.to_hex().to_string() };
        }
        req.validate().map_err(|e| self.err(key.line, format!("service {name}: {}", e.0)))?;
        Ok(Service { name, container, request: req, build, depends_on, consistency, line: key.line })
    }

    fn number(&self, v: &Node, what: &str) -> Res<f64> {
        self.string(v, what)?.parse().map_err(|_| self.err(v.line, format!("{what} must be a number")))
    }

    fn build(&self, b: &Node, path: &str, tag: String) -> Res<Build> {
        if let Some(s) = b.as_str() {
            return Ok(Build { context: self.path(s), dockerfile: None, args: HashMap::new(), target: None, tag });
        }
        let what = format!("{path}.build");
        self.keys(b, &what, &["context", "dockerfile", "args", "target"])?;
        let context =
            self.path(&b.get("context").map(|c| self.string(c, &what)).transpose()?.unwrap_or_else(|| ".".into()));
        let dockerfile = b.get("dockerfile").map(|d| self.string(d, &what)).transpose()?.map(|d| {
            let p = Path::new(&d);
            if p.is_absolute() { p.to_path_buf() } else { context.join(p) }
        });
        let mut args = HashMap::new();
        if let Some(a) = b.get("args") {
            for (k, v) in self.pairs(a, &what)? {
                let v = v.or_else(|| (self.lookup)(&k)).unwrap_or_default();
                args.insert(k, v);
            }
        }
        let target = b.get("target").map(|t| self.string(t, &what)).transpose()?;
        Ok(Build { context, dockerfile, args, target, tag })
    }

    fn port(&self, p: &Node, what: &str) -> Res<crate::runtime::container::PortMapping> {
        let spec = match p.as_map() {
            None => self.string(p, what)?,
            Some(_) => {
                self.keys(p, what, &["target", "published", "host_ip", "protocol"])?;
                let field = |k: &str| p.get(k).map(|n| self.string(n, what)).transpose();
                let target = field("target")?.ok_or_else(|| self.err(p.line, format!("{what}: target is required")))?;
                let mut s = String::new();
                if let Some(ip) = field("host_ip")? {
                    s.push_str(&ip);
                    s.push(':');
                }
                if let Some(published) = field("published")? {
                    s.push_str(&published);
                    s.push(':');
                } else if !s.is_empty() {
                    s.push(':');
                }
                s.push_str(&target);
                if let Some(proto) = field("protocol")? {
                    s.push('/');
                    s.push_str(&proto);
                }
                s
            }
        };
        if spec.contains('-') {
            return Err(
                self.err(p.line, format!("{what}: port ranges ({spec}) are not supported by lifeboat; list each port"))
            );
        }
        crate::syntax::publish(&spec).map_err(|e| self.err(p.line, e))
    }

    fn volume(&self, m: &Node, what: &str, volumes: &BTreeMap<String, (String, bool)>) -> Res<MountSpec> {
        let named = |source: &str, line: usize| -> Res<String> {
            volumes.get(source).map(|(n, _)| n.clone()).ok_or_else(|| {
                self.err(line, format!("{what}: volume {source:?} is not declared in the file's top-level volumes"))
            })
        };
        if let Some(spec) = m.as_str() {
            let mut parts: Vec<String> = spec.split(':').map(str::to_string).collect();
            if parts.len() == 1 {
                // `/path` alone: an anonymous volume.
                return self.anonymous(spec, false, false, m.line, what);
            }
            let source = parts[0].clone();
            let is_path = source.starts_with('/') || source.starts_with('.') || source.starts_with('~');
            if is_path {
                let expanded = match source.strip_prefix("~/") {
                    Some(rest) => std::env::var("HOME").map(|h| format!("{h}/{rest}")).unwrap_or(source.clone()),
                    None => source.clone(),
                };
                parts[0] = self.path(&expanded).display().to_string();
            } else {
                parts[0] = named(&source, m.line)?;
            }
            let mut mount = crate::syntax::mount(&parts.join(":")).map_err(|e| self.err(m.line, e))?;
            if let MountSource::Bind { must_exist, .. } = &mut mount.source {
                // Compose makes a missing bind source as a directory, as Docker does.
                *must_exist = false;
            }
            return Ok(mount);
        }
        self.keys(m, what, &["type", "source", "target", "read_only", "volume"])?;
        let field = |k: &str| m.get(k).map(|n| self.string(n, what)).transpose();
        let kind = field("type")?.unwrap_or_else(|| "volume".into());
        let target = field("target")?.ok_or_else(|| self.err(m.line, format!("{what}: target is required")))?;
        let read_only = m.get("read_only").map(|n| self.bool(n, what)).transpose()?.unwrap_or(false);
        let nocopy = match m.get("volume") {
            Some(v) => match self.keys(v, &format!("{what}.volume"), &["nocopy"])?.first() {
                Some((_, n)) => self.bool(n, what)?,
                None => false,
            },
            None => false,
        };
        if !target.starts_with('/') {
            return Err(self.err(m.line, format!("{what}: the target {target:?} must be an absolute path")));
        }
        let source = match (kind.as_str(), field("source")?) {
            ("volume", None) => return self.anonymous(&target, read_only, nocopy, m.line, what),
            ("volume", Some(s)) => MountSource::Volume { name: named(&s, m.line)? },
            ("bind", Some(s)) => MountSource::Bind { path: self.path(&s), must_exist: false },
            ("bind", None) => return Err(self.err(m.line, format!("{what}: a bind mount needs a source"))),
            (other, _) => {
                return Err(self.err(
                    m.line,
                    format!("{what}: mounts of type {other:?} are not supported by lifeboat (volume, bind)"),
                ));
            }
        };
        Ok(MountSpec { source, target, read_only, nocopy, anonymous: false })
    }

    /// An anonymous volume on `target`; [`Reader::service`] names it after its container.
    fn anonymous(&self, target: &str, read_only: bool, nocopy: bool, line: usize, what: &str) -> Res<MountSpec> {
        if !target.starts_with('/') {
            return Err(self.err(line, format!("{what}: the target {target:?} must be an absolute path")));
        }
        let source = MountSource::Volume { name: String::new() };
        Ok(MountSpec { source, target: target.to_string(), read_only, nocopy, anonymous: true })
    }

    fn depends_on(&self, v: &Node, what: &str, all: &[String]) -> Res<Vec<(String, Condition)>> {
        let mut out = Vec::new();
        let check = |name: &str, line: usize| -> Res<()> {
            if all.iter().any(|s| s == name) {
                Ok(())
            } else {
                Err(self.err(line, format!("{what}: there is no service {name:?}")))
            }
        };
        if let Some(map) = v.as_map() {
            for (k, cond) in map {
                let dep = self.string(k, what)?;
                check(&dep, k.line)?;
                let mut condition = Condition::Started;
                if !cond.is_null() {
                    // `restart` is refused; `required: false` (an optional dependency) too.
                    self.keys(cond, &format!("{what}.{dep}"), &["condition", "required"])?;
                    if let Some(r) = cond.get("required")
                        && !self.bool(r, what)?
                    {
                        return Err(
                            self.err(r.line, format!("{what}.{dep}.required: false is not supported by lifeboat"))
                        );
                    }
                    if let Some(c) = cond.get("condition") {
                        condition = match self.string(c, what)?.as_str() {
                            "service_started" => Condition::Started,
                            "service_healthy" => Condition::Healthy,
                            "service_completed_successfully" => Condition::CompletedSuccessfully,
                            other => return Err(self.err(c.line, format!("{what}: unknown condition {other:?}"))),
                        };
                    }
                }
                out.push((dep, condition));
            }
        } else {
            for n in v.as_seq().ok_or_else(|| self.err(v.line, format!("{what} must be a list or a mapping")))? {
                let dep = self.string(n, what)?;
                check(&dep, n.line)?;
                out.push((dep, Condition::Started));
            }
        }
        Ok(out)
    }

    fn healthcheck(&self, v: &Node, what: &str) -> Res<HealthRequest> {
        self.keys(v, what, &["test", "interval", "timeout", "retries", "start_period", "disable"])?;
        let mut h = HealthRequest::default();
        let secs = |k: &str| -> Res<Option<u64>> {
            v.get(k)
                .map(|n| {
                    let s = self.string(n, what)?;
                    crate::syntax::duration(&s).map(|d| d.as_secs()).map_err(|e| self.err(n.line, e))
                })
                .transpose()
        };
        if let Some(t) = v.get("test") {
            match t.as_seq() {
                Some(items) => {
                    let words: Vec<String> = items.iter().map(|i| self.string(i, what)).collect::<Res<_>>()?;
                    match words.split_first() {
                        Some((first, rest)) if first == "CMD-SHELL" => h.command = Some(rest.join(" ")),
                        // An argument list, run without a shell (an image may have none).
                        Some((first, rest)) if first == "CMD" && !rest.is_empty() => h.args = rest.to_vec(),
                        Some((first, _)) if first == "NONE" => h.disable = true,
                        _ => {
                            return Err(
                                self.err(t.line, format!("{what}.test: a list starts with CMD, CMD-SHELL or NONE"))
                            );
                        }
                    }
                }
                None => h.command = Some(self.string(t, what)?),
            }
        }
        h.interval_secs = secs("interval")?;
        h.timeout_secs = secs("timeout")?;
        h.start_period_secs = secs("start_period")?;
        if let Some(r) = v.get("retries") {
            h.retries = Some(
                self.string(r, what)?
                    .parse()
                    .map_err(|_| self.err(r.line, format!("{what}.retries must be a whole number")))?,
            );
        }
        if let Some(d) = v.get("disable") {
            h.disable = self.bool(d, what)?;
        }
        Ok(h)
    }

    fn deploy(&self, v: &Node, what: &str, req: &mut RunRequest) -> Res<()> {
        self.keys(v, what, &["resources"])?;
        let Some(r) = v.get("resources") else { return Ok(()) };
        self.keys(r, &format!("{what}.resources"), &["limits", "reservations"])?;
        if let Some(l) = r.get("limits") {
            let path = format!("{what}.resources.limits");
            for (k, n) in self.keys(l, &path, &["cpus", "memory", "pids"])? {
                match k.as_str().unwrap_or_default() {
                    "cpus" => req.cpus = Some(self.number(n, &path)?),
                    "memory" => {
                        req.memory =
                            Some(crate::syntax::size(&self.string(n, &path)?).map_err(|e| self.err(n.line, e))?)
                    }
                    "pids" => req.pids_limit = Some(self.number(n, &path)? as i64),
                    _ => {}
                }
            }
        }
        if let Some(res) = r.get("reservations") {
            return Err(
                self.err(res.line, format!("{what}.resources.reservations is not supported by lifeboat (limits are)"))
            );
        }
        Ok(())
    }
}

/// Services ordered so each comes after those it depends on; a cycle is refused.
fn start_order(services: Vec<Service>) -> Result<Vec<Service>, (usize, String)> {
    let mut left: Vec<Service> = services;
    let mut out: Vec<Service> = Vec::new();
    while !left.is_empty() {
        let ready = left.iter().position(|s| s.depends_on.iter().all(|(d, _)| out.iter().any(|o| &o.name == d)));
        match ready {
            Some(i) => out.push(left.remove(i)),
            None => {
                let names: Vec<&str> = left.iter().map(|s| s.name.as_str()).collect();
                return Err((left[0].line, format!("services depend on each other in a cycle: {}", names.join(", "))));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
