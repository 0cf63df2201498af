//! Container commands: run, ps, logs, exec, stop, start, restart, kill, rm, pause, unpause,
//! top, stats, port, volume, and the hidden `shim`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{OutputFormat, ago, human_size, print_table, truncate};
use super::{Context, UsageError};
use crate::image::changes::expand_port;
use crate::runtime::container::{
    ContainerError, Containers, MountSource, MountSpec, NetworkMode, PortMapping, Protocol, RestartPolicy, RunConfig,
    State, Status, new_id,
};
use crate::runtime::{self, Paths, names, volume::Volumes};

pub const RUN_EXAMPLES: &str = "\
Examples:
  lifeboat run -d -p 8080:80 --name website website:1
  lifeboat run -Pd website:1                           publish every EXPOSEd port on a free port
  lifeboat run --rm busybox echo hello
  lifeboat run -d -v site-data:/www --restart unless-stopped website:1
  lifeboat run -d --name db -e MYSQL_ROOT_PASSWORD_FILE=/run/pw mysql:8
  lifeboat run -d --network container:db wordpress:6   share db's network (localhost)";
pub const PS_EXAMPLES: &str = "\
Examples:
  lifeboat ps
  lifeboat ps -a          include stopped containers
  lifeboat ps -q          IDs only
  lifeboat ps --format json";
pub const LOGS_EXAMPLES: &str = "\
Examples:
  lifeboat logs website
  lifeboat logs -f --tail 20 website
  lifeboat logs --since 10m -t website";
pub const EXEC_EXAMPLES: &str = "\
Examples:
  lifeboat exec website cat /etc/hostname
  lifeboat exec -u www-data -w /var/www website ls
  lifeboat exec db sh -c 'mysqldump --all-databases > /backup/dump.sql'";
pub const STOP_EXAMPLES: &str = "\
Examples:
  lifeboat stop website
  lifeboat stop -t 30 db";
pub const START_EXAMPLES: &str = "\
Examples:
  lifeboat start website
  lifeboat start --restartable       after a reboot: every container whose restart policy says so";
pub const RM_EXAMPLES: &str = "\
Examples:
  lifeboat rm website
  lifeboat rm -f website             stop it first
  lifeboat rm -v website             also remove the named volumes it used";
pub const SIMPLE_EXAMPLES: &str = "\
Examples:
  lifeboat kill -s HUP website
  lifeboat restart website
  lifeboat pause website && lifeboat unpause website
  lifeboat top website
  lifeboat stats --no-stream
  lifeboat port website";
pub const VOLUME_EXAMPLES: &str = "\
Examples:
  lifeboat volume create site-data
  lifeboat volume ls
  lifeboat volume inspect site-data
  lifeboat volume rm site-data
  lifeboat volume prune -f           remove volumes no container uses";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep standard input open (send what you type to the container).
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal (with -i: an interactive shell).
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Name the container (default: a random adjective_surname).
    #[arg(long)]
    pub name: Option<String>,
    /// Publish a port: [IP:]HOST:CONTAINER[/tcp|/udp], or CONTAINER for a free host port.
    #[arg(short, long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs on free host ports.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from this environment).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Mount a named volume (NAME:/path[:ro]) or a host path (/host:/path[:ro]).
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name or UID) and optional group: USER[:GROUP].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// no | on-failure[:N] | always | unless-stopped
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// private (own namespace, loopback only) | host | none | container:NAME
    #[arg(long, default_value = "private")]
    pub network: String,
    /// Memory limit (e.g. 512m, 2g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPU limit in CPUs (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Run a tiny init (tini) as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Health check command, run inside the container (exit 0 = healthy).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between health checks (30s, 1m, 2h).
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    pub health_interval: u64,
    /// The image to run.
    pub image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running only).
    #[arg(short, long)]
    pub all: bool,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub container: String,
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long)]
    pub tail: Option<usize>,
    /// Only lines since a time (RFC 3339) or a duration ago (10s, 5m, 2h).
    #[arg(long)]
    pub since: Option<String>,
    /// Prefix each line with its timestamp.
    #[arg(short, long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep standard input open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Start every container whose restart policy asks for it (after a reboot).
    #[arg(long)]
    pub restartable: bool,
    #[arg(required_unless_present = "restartable")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stop running containers first.
    #[arg(short, long)]
    pub force: bool,
    /// Also remove the named volumes the containers used.
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    pub containers: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ShimArgs {
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    #[command(after_help = VOLUME_EXAMPLES)]
    Create { name: String },
    /// List volumes.
    #[command(visible_alias = "list", after_help = VOLUME_EXAMPLES)]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
    /// Show a volume's details.
    #[command(after_help = VOLUME_EXAMPLES)]
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes.
    #[command(visible_alias = "remove", after_help = VOLUME_EXAMPLES)]
    Rm {
        /// Remove even if a container uses it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes no container uses.
    #[command(after_help = VOLUME_EXAMPLES)]
    Prune {
        #[arg(short, long)]
        force: bool,
    },
}

impl Context {
    pub fn paths(&self) -> Paths {
        Paths { root: self.root.clone(), run_root: self.run_root.clone() }
    }
    fn containers(&self) -> anyhow::Result<Containers> {
        Ok(Containers::open(&self.root)?)
    }
}

/// `30s`, `1m`, `2h` (or plain seconds) as seconds.
fn parse_interval(s: &str) -> Result<u64, String> {
    crate::config::parse_duration(s).map(|d| d.as_secs())
}

fn parse_size(s: &str) -> Result<u64, UsageError> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.trim_end_matches('b').chars().last() {
        Some('k') => (&s[..s.trim_end_matches('b').len() - 1], 1u64 << 10),
        Some('m') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&s[..s.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (s.trim_end_matches('b'), 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| *n > 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| UsageError(format!("invalid size {s:?} (e.g. 512m, 2g)")))
}

fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, UsageError> {
    let bad = || UsageError(format!("invalid port {spec:?}: use [IP:]HOST:CONTAINER[/tcp|/udp]"));
    let (addr, proto) = spec.rsplit_once('/').map_or((spec, "tcp"), |(a, p)| (a, p));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return Err(bad()),
    };
    let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("", "", *c),
        [c, h] => ("", *h, *c),
        [c, h, ip] => (*ip, *h, *c),
        _ => return Err(bad()),
    };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    let ctr: u16 = ctr.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
    let host: u16 = if host.is_empty() { 0 } else { host.parse().map_err(|_| bad())? };
    Ok(vec![PortMapping { host_ip: ip.to_string(), host_port: host, container_port: ctr, protocol }])
}

fn parse_volume(spec: &str) -> Result<MountSpec, UsageError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => return Err(UsageError(format!("invalid volume {spec:?}: use NAME:/path[:ro] or /host/path:/path[:ro]"))),
    };
    if !dst.starts_with('/') {
        return Err(UsageError(format!("invalid volume {spec:?}: the container path must be absolute")));
    }
    let source = if src.starts_with('/') {
        MountSource::Bind { path: PathBuf::from(src) }
    } else if src.starts_with('.') {
        return Err(UsageError(format!("invalid volume {spec:?}: host paths must be absolute")));
    } else {
        names::validate_name(src).map_err(UsageError)?;
        MountSource::Volume { name: src.to_string() }
    };
    Ok(MountSpec { source, target: dst.to_string(), read_only: ro })
}

fn read_env_file(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read env file {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
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

/// Builds the container's record from the image defaults and the flags.
pub(super) fn create(ctx: &Context, a: &RunArgs) -> anyhow::Result<RunConfig> {
    let store = ctx.store()?;
    let image = store.find(&a.image).map_err(|e| match e {
        crate::image::StoreError::NotFound(n) => anyhow::Error::from(crate::image::StoreError::NotFound(n))
            .context("the image is not in the local store (use lifeboat load or import)"),
        other => other.into(),
    })?;
    runtime::ensure_layers(&store, &image)?;
    let ic = &image.config.config;

    let entrypoint: Vec<String> = match &a.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => ic.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !a.command.is_empty() {
        a.command.clone()
    } else if a.entrypoint.is_some() {
        Vec::new()
    } else {
        ic.cmd.clone().unwrap_or_default()
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(UsageError("no command specified, and the image has no CMD or ENTRYPOINT".into()).into());
    }
    let mut extra_env = Vec::new();
    for f in &a.env_file {
        extra_env.extend(read_env_file(f)?);
    }
    extra_env.extend(a.env.iter().cloned());
    let env = merge_env(&ic.env, &extra_env);

    let mut ports = Vec::new();
    for p in &a.publish {
        ports.extend(parse_publish(p)?);
    }
    if a.publish_all {
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
    let mounts = a.volume.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>, _>>()?;
    let containers = ctx.containers()?;
    let network = match a.network.as_str() {
        "private" | "bridge" | "default" => NetworkMode::Private,
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        other => match other.strip_prefix("container:") {
            Some(name) => NetworkMode::Container(containers.find(name)?.id),
            None => {
                return Err(
                    UsageError(format!("invalid network {other:?}: private, host, none or container:NAME")).into()
                );
            }
        },
    };
    let restart = RestartPolicy::parse(&a.restart).map_err(UsageError)?;
    if a.rm && restart != RestartPolicy::No {
        return Err(UsageError("--rm and --restart cannot be combined".into()).into());
    }
    let memory = a.memory.as_deref().map(parse_size).transpose()?;

    let _lock = containers.lock()?;
    let name = match &a.name {
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
    let id = new_id();
    let config = RunConfig {
        hostname: a.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        id,
        name,
        image: a.image.clone(),
        image_id: image.id().clone(),
        layers: image.config.rootfs.diff_ids.clone(),
        created: crate::image::now_rfc3339(),
        args,
        env,
        working_dir: a.workdir.clone().or_else(|| ic.working_dir.clone()).unwrap_or_default(),
        user: a.user.clone().or_else(|| ic.user.clone().filter(|u| !u.is_empty())),
        ports,
        mounts,
        network,
        restart,
        auto_remove: a.rm,
        memory,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        read_only: a.read_only,
        init: a.init,
        stop_signal: ic.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
        health: a
            .health_cmd
            .clone()
            .map(|command| crate::runtime::container::HealthCheck { command, interval_secs: a.health_interval }),
        tty: a.tty,
        stdin_open: a.interactive,
    };
    std::fs::create_dir_all(containers.dir(&config.id))?;
    containers.write_config(&config)?;
    Ok(config)
}

/// Docker's exit status when the runtime itself fails to run the container.
const RUN_FAILED: i32 = 125;

pub fn run(ctx: &Context, a: RunArgs) -> anyhow::Result<i32> {
    if a.tty && !a.detach && a.restart != "no" {
        return Err(UsageError(
            "an attached -t container cannot have a restart policy (use -d, or no --restart)".into(),
        )
        .into());
    }
    let config = create(ctx, &a)?;
    let paths = ctx.paths();
    // An attached terminal: we listen for it; the container's side arrives once it starts.
    let console = if a.tty && !a.detach {
        crate::fsutil::private_dir(&ctx.run_root)?;
        Some(runtime::tty::ConsoleSocket::bind(&ctx.run_root.join(format!("console-{}.sock", &config.id[..12])))?)
    } else {
        None
    };
    let io = runtime::StartIo {
        console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
        stdin: a.interactive && !a.tty && !a.detach,
    };
    let started = match runtime::start_with(&paths, &config.id, &io) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lifeboat: cannot run {}: {e}", config.image);
            if config.auto_remove {
                let _ = runtime::remove_files(&paths, &config.id);
            }
            return Ok(RUN_FAILED);
        }
    };
    if a.detach {
        println!("{}", config.id);
        return Ok(0);
    }
    if let Some(console) = console {
        let master = console.receive_master(Duration::from_secs(10))?;
        let interactive = a.interactive;
        let relay = std::thread::spawn(move || runtime::tty::relay(master, interactive));
        let code = runtime::wait_attached(&paths, &config, started, &mut |_| {})?;
        let _ = relay.join();
        return Ok(code.unwrap_or(RUN_FAILED));
    }
    attach(ctx, &config, started)
}

/// Streams a container's output until it exits; returns its exit code.
fn attach(ctx: &Context, config: &RunConfig, started: runtime::Started) -> anyhow::Result<i32> {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = runtime::wait_attached(&ctx.paths(), config, started, &mut |l| {
        let _ = if l.stream == "stderr" { err.write_all(l.log.as_bytes()) } else { out.write_all(l.log.as_bytes()) };
        let _ = out.flush();
    })?;
    Ok(code.unwrap_or(RUN_FAILED))
}

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

pub fn ps(ctx: &Context, a: PsArgs) -> anyhow::Result<i32> {
    let containers = ctx.containers()?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for id in containers.ids()?.into_iter().rev() {
        let Ok(config) = containers.config(&id) else { continue };
        let state = runtime::observed_state(&containers, &id)?;
        let up = matches!(state.status, Status::Running | Status::Paused | Status::Restarting);
        if !a.all && !up {
            continue;
        }
        let shim_lost = runtime::shim_lost(&state);
        let short = if a.no_trunc { id.clone() } else { id[..12].to_string() };
        let health = (state.status == Status::Running && config.health.is_some())
            .then(|| runtime::Health::load(&containers.dir(&id)))
            .flatten()
            .map(
                |h| if h.status == "starting" { " (health: starting)".to_string() } else { format!(" ({})", h.status) },
            )
            .unwrap_or_default();
        if a.quiet {
            rows.push(vec![short]);
            continue;
        }
        let command = shell_words(&config.args);
        json_rows.push(json!({
            "ID": id, "Image": config.image, "Command": command, "CreatedAt": config.created,
            "Status": format!("{}{health}", status_text(&state, shim_lost)), "State": state.status, "Ports": ports_text(&state),
            "Names": config.name, "ExitCode": state.exit_code,
        }));
        let command = if a.no_trunc { format!("\"{command}\"") } else { format!("\"{}\"", truncate(&command, 20)) };
        let ports = if up { ports_text(&state) } else { String::new() };
        rows.push(vec![
            short,
            config.image.clone(),
            command,
            ago(Some(&config.created)),
            format!("{}{health}", status_text(&state, shim_lost)),
            ports,
            config.name.clone(),
        ]);
    }
    if a.quiet {
        for r in rows {
            println!("{}", r[0]);
        }
    } else if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&json_rows)?);
    } else {
        print_table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows);
    }
    Ok(0)
}

fn shell_words(args: &[String]) -> String {
    args.join(" ")
}

fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, UsageError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| UsageError(format!("invalid --since {s:?}: an RFC 3339 time or a duration like 10m")))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(UsageError(format!("invalid --since {s:?}"))),
    };
    Ok(chrono::Utc::now() - chrono::Duration::seconds(secs))
}

pub fn logs(ctx: &Context, a: LogsArgs) -> anyhow::Result<i32> {
    let containers = ctx.containers()?;
    let config = containers.find(&a.container)?;
    let path = containers.dir(&config.id).join("log.json");
    let since = a.since.as_deref().map(parse_since).transpose()?;
    let (mut lines, mut offset) = runtime::logs::read_from(&path, 0)?;
    if let Some(t) = since {
        lines.retain(|l| chrono::DateTime::parse_from_rfc3339(&l.time).is_ok_and(|lt| lt >= t));
    }
    if let Some(n) = a.tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let show = |lines: Vec<runtime::logs::LogLine>| {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for l in lines {
            let text = if a.timestamps { format!("{} {}", l.time, l.log) } else { l.log };
            let _ = if l.stream == "stderr" { err.write_all(text.as_bytes()) } else { out.write_all(text.as_bytes()) };
        }
        let _ = out.flush();
    };
    show(lines);
    if a.follow {
        loop {
            let state = runtime::observed_state(&containers, &config.id);
            let running =
                state.as_ref().is_ok_and(|s| matches!(s.status, Status::Running | Status::Paused | Status::Restarting));
            let (more, next) = runtime::logs::read_from(&path, offset)?;
            offset = next;
            show(more);
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

pub fn exec(ctx: &Context, a: ExecArgs) -> anyhow::Result<i32> {
    let config = ctx.containers()?.find(&a.container)?;
    let code = runtime::exec(
        &ctx.paths(),
        &config.id,
        runtime::ExecOptions {
            tty: a.tty,
            interactive: a.interactive,
            args: a.command,
            env: a.env,
            user: a.user,
            workdir: a.workdir,
        },
    )?;
    Ok(code)
}

/// Applies `f` to each named container in turn, reporting failures and carrying on, like Docker.
fn each(ctx: &Context, names: &[String], mut f: impl FnMut(&RunConfig) -> anyhow::Result<()>) -> anyhow::Result<i32> {
    let containers = ctx.containers()?;
    let results = names.iter().map(|n| containers.find(n).map_err(anyhow::Error::from).and_then(|c| f(&c))).collect();
    Ok(report(names, results))
}

/// Like `each`, but all at once (stopping ten containers should not take ten grace periods).
fn each_parallel(
    ctx: &Context,
    names: &[String],
    f: impl Fn(&RunConfig) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<i32> {
    let containers = ctx.containers()?;
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let (containers, f) = (&containers, &f);
                s.spawn(move || containers.find(n).map_err(anyhow::Error::from).and_then(|c| f(&c)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("worker thread panicked"))))
            .collect()
    });
    Ok(report(names, results))
}

/// Prints each name that succeeded (in the order given) and each failure; returns the exit
/// code of the last failure, or 0.
fn report(names: &[String], results: Vec<anyhow::Result<()>>) -> i32 {
    let mut code = 0;
    for (n, result) in names.iter().zip(results) {
        match result {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("lifeboat: {}", crate::error::describe(&e));
                code = crate::error::exit_code(&e);
            }
        }
    }
    code
}

pub fn stop(ctx: &Context, a: StopArgs) -> anyhow::Result<i32> {
    let paths = ctx.paths();
    each_parallel(ctx, &a.containers, |c| Ok(runtime::stop(&paths, &c.id, Duration::from_secs(a.time))?))
}

pub fn start(ctx: &Context, a: StartArgs) -> anyhow::Result<i32> {
    let paths = ctx.paths();
    if a.restartable {
        let containers = ctx.containers()?;
        let mut code = 0;
        // Before a reboot cut them short: removals half done, and `run --rm` containers,
        // which are not kept once they ended.
        // Never in the way of bringing services back: a failure here is only reported.
        for retired in containers.retired()? {
            if let Err(e) = runtime::remove_retired(&retired) {
                eprintln!("lifeboat: cannot remove {}: {e}", retired.display());
            }
        }
        for id in containers.ids()? {
            let config = containers.config(&id)?;
            let state = runtime::observed_state(&containers, &id)?;
            if config.auto_remove && state.status == Status::Exited {
                if let Err(e) = runtime::remove_files(&paths, &id) {
                    eprintln!("lifeboat: cannot remove {}: {e}", config.name);
                }
                continue;
            }
            let stopped_by_user = containers.dir(&id).join("stop-requested").exists();
            let wanted = match config.restart {
                RestartPolicy::Always => true,
                RestartPolicy::UnlessStopped => !stopped_by_user,
                RestartPolicy::OnFailure { .. } => !stopped_by_user && state.exit_code.is_some_and(|c| c != 0),
                RestartPolicy::No => false,
            };
            if wanted && state.status == Status::Exited {
                match runtime::start(&paths, &id) {
                    Ok(_) => println!("{}", config.name),
                    Err(e) => {
                        eprintln!("lifeboat: cannot start {}: {e}", config.name);
                        code = crate::error::FAILURE;
                    }
                }
            }
        }
        return Ok(code);
    }
    each(ctx, &a.containers, |c| {
        runtime::start(&paths, &c.id)?;
        Ok(())
    })
}

pub fn restart(ctx: &Context, a: StopArgs) -> anyhow::Result<i32> {
    let paths = ctx.paths();
    each(ctx, &a.containers, |c| {
        runtime::stop(&paths, &c.id, Duration::from_secs(a.time))?;
        runtime::start(&paths, &c.id)?;
        Ok(())
    })
}

pub fn kill(ctx: &Context, a: KillArgs) -> anyhow::Result<i32> {
    let sig = runtime::parse_signal(&a.signal).ok_or_else(|| UsageError(format!("invalid signal {:?}", a.signal)))?;
    let containers = ctx.containers()?;
    each(ctx, &a.containers, |c| {
        if matches!(sig, nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGTERM) {
            // A killed container is not restarted by its policy (Docker's behaviour for `kill`
            // is to restart `always` containers; we honour that only for other signals).
            let _ = crate::runtime::shim::request_stop(&containers.dir(&c.id));
        }
        Ok(runtime::signal(&containers, &c.id, sig)?)
    })
}

pub fn rm(ctx: &Context, a: RmArgs) -> anyhow::Result<i32> {
    let paths = ctx.paths();
    each(ctx, &a.containers, |c| {
        runtime::remove(&paths, &c.id, a.force)?;
        if a.volumes {
            let vols = Volumes::open(&paths.root)?;
            for m in &c.mounts {
                if let MountSource::Volume { name } = &m.source
                    && !volume_in_use(ctx, name)?
                {
                    vols.remove(name)?;
                }
            }
        }
        Ok(())
    })
}

pub fn pause(ctx: &Context, a: NamesArgs, paused: bool) -> anyhow::Result<i32> {
    let paths = ctx.paths();
    each(ctx, &a.containers, |c| Ok(runtime::set_paused(&paths, &c.id, paused)?))
}

pub fn top(ctx: &Context, a: NamesArgs) -> anyhow::Result<i32> {
    let containers = ctx.containers()?;
    for name in &a.containers {
        let c = containers.find(name)?;
        let mut rows = Vec::new();
        for pid in runtime::processes(&c.id) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_string();
            let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("Uid:").map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                    })
                })
                .unwrap_or_default();
            rows.push(vec![uid, pid.to_string(), cmd]);
        }
        print_table(&["UID", "PID", "CMD"], &rows);
    }
    Ok(0)
}

pub fn stats(ctx: &Context, a: StatsArgs) -> anyhow::Result<i32> {
    let containers = ctx.containers()?;
    let targets: Vec<RunConfig> = if a.containers.is_empty() {
        containers
            .ids()?
            .into_iter()
            .filter(|id| runtime::observed_state(&containers, id).is_ok_and(|s| s.status == Status::Running))
            .filter_map(|id| containers.config(&id).ok())
            .collect()
    } else {
        a.containers.iter().map(|n| containers.find(n)).collect::<Result<_, _>>()?
    };
    loop {
        let before: Vec<u64> = targets.iter().map(|c| runtime::usage(&c.id).0).collect();
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let elapsed = t0.elapsed().as_nanos() as f64;
        let mut rows = Vec::new();
        let mut json_rows = Vec::new();
        for (c, cpu0) in targets.iter().zip(before) {
            let (cpu1, mem, limit, pids) = runtime::usage(&c.id);
            let cpu_pct = (cpu1.saturating_sub(cpu0)) as f64 / elapsed * 100.0;
            let limit_text = limit.map_or("unlimited".to_string(), human_size);
            json_rows.push(json!({"ID": c.id, "Name": c.name, "CPUPerc": cpu_pct, "MemUsage": mem, "MemLimit": limit, "PIDs": pids}));
            rows.push(vec![
                c.id[..12].to_string(),
                c.name.clone(),
                format!("{cpu_pct:.2}%"),
                format!("{} / {limit_text}", human_size(mem)),
                pids.to_string(),
            ]);
        }
        if a.format == OutputFormat::Json {
            println!("{}", serde_json::to_string_pretty(&json_rows)?);
        } else {
            print_table(&["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"], &rows);
        }
        if a.no_stream {
            return Ok(0);
        }
    }
}

pub fn port(ctx: &Context, a: NamesArgs) -> anyhow::Result<i32> {
    let containers = ctx.containers()?;
    for n in &a.containers {
        let c = containers.find(n)?;
        let state = runtime::observed_state(&containers, &c.id)?;
        for p in &state.ports {
            let proto = if p.protocol == Protocol::Udp { "udp" } else { "tcp" };
            let ip = if p.host_ip.is_empty() { "0.0.0.0" } else { p.host_ip.as_str() };
            println!("{}/{proto} -> {ip}:{}", p.container_port, p.host_port);
        }
    }
    Ok(0)
}

/// Container details as JSON, in Docker's shape.
pub fn inspect_json(ctx: &Context, c: &RunConfig) -> anyhow::Result<serde_json::Value> {
    let containers = ctx.containers()?;
    let state = runtime::observed_state(&containers, &c.id)?;
    let running = matches!(state.status, Status::Running | Status::Paused);
    let mounts: Vec<_> = c
        .mounts
        .iter()
        .map(|m| match &m.source {
            MountSource::Volume { name } => json!({"Type": "volume", "Name": name, "Source": Volumes::open(&ctx.root).map(|v| v.data_dir(name)).ok(), "Destination": m.target, "RW": !m.read_only}),
            MountSource::Bind { path } => json!({"Type": "bind", "Source": path, "Destination": m.target, "RW": !m.read_only}),
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
        "Path": c.args.first(),
        "Args": c.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": match state.status { Status::Created => "created", Status::Running => "running", Status::Paused => "paused", Status::Restarting => "restarting", Status::Exited => "exited" },
            "Running": running, "Paused": state.status == Status::Paused, "Restarting": state.status == Status::Restarting,
            "OOMKilled": state.oom_killed, "Pid": state.pid.unwrap_or(0), "ShimPid": state.shim_pid.unwrap_or(0),
            "ShimAlive": state.shim_pid.is_some_and(runtime::alive),
            "ExitCode": state.exit_code.unwrap_or(0), "Error": state.error.clone().unwrap_or_default(),
            "StartedAt": state.started_at, "FinishedAt": state.finished_at,
            "Health": runtime::Health::load(&containers.dir(&c.id)),
        },
        "Image": c.image_id,
        "RestartCount": state.restart_count,
        "Config": {
            "Hostname": c.hostname, "User": c.user.clone().unwrap_or_default(), "Env": c.env, "Cmd": c.args,
            "Image": c.image, "WorkingDir": c.working_dir, "StopSignal": c.stop_signal,
            "Healthcheck": c.health.as_ref().map(|h| json!({"Test": ["CMD-SHELL", h.command], "Interval": h.interval_secs * 1_000_000_000})),
        },
        "HostConfig": {
            "RestartPolicy": {"Name": c.restart.to_docker()},
            "AutoRemove": c.auto_remove,
            "NetworkMode": match &c.network { NetworkMode::Private => "private".to_string(), NetworkMode::Host => "host".into(), NetworkMode::None => "none".into(), NetworkMode::Container(id) => format!("container:{id}") },
            "Memory": c.memory.unwrap_or(0), "NanoCpus": c.cpus.map_or(0, |x| (x * 1e9) as i64), "PidsLimit": c.pids_limit,
            "ReadonlyRootfs": c.read_only,
            "PortBindings": c.ports.iter().map(|p| json!({"HostIp": p.host_ip, "HostPort": p.host_port, "ContainerPort": p.container_port})).collect::<Vec<_>>(),
        },
        "Mounts": mounts,
        "NetworkSettings": {"Ports": ports},
        "LogPath": containers.dir(&c.id).join("log.json"),
    }))
}

fn volume_in_use(ctx: &Context, name: &str) -> anyhow::Result<bool> {
    let containers = ctx.containers()?;
    for id in containers.ids()? {
        if let Ok(c) = containers.config(&id)
            && c.mounts.iter().any(|m| matches!(&m.source, MountSource::Volume { name: n } if n == name))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn volume(ctx: &Context, cmd: VolumeCommand) -> anyhow::Result<i32> {
    let vols = Volumes::open(&ctx.root)?;
    match cmd {
        VolumeCommand::Create { name } => {
            vols.create(&name)?;
            println!("{name}");
        }
        VolumeCommand::Ls { quiet, format } => {
            let list = vols.list()?;
            if quiet {
                list.iter().for_each(|v| println!("{}", v.name));
            } else if format == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(|v| vec!["local".into(), v.name.clone()]).collect();
                print_table(&["DRIVER", "VOLUME NAME"], &rows);
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut out = Vec::new();
            for n in names {
                let meta = vols.get(&n)?;
                out.push(json!({"Name": meta.name, "Driver": "local", "Mountpoint": vols.data_dir(&n), "CreatedAt": meta.created}));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        VolumeCommand::Rm { force, names } => {
            let mut code = 0;
            for n in names {
                let result = (|| -> anyhow::Result<()> {
                    vols.get(&n)?;
                    if !force && volume_in_use(ctx, &n)? {
                        return Err(ContainerError::Conflict(format!(
                            "volume {n} is in use by a container (remove it first, or use -f)"
                        ))
                        .into());
                    }
                    vols.remove(&n)?;
                    Ok(())
                })();
                match result {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("lifeboat: {}", crate::error::describe(&e));
                        code = crate::error::exit_code(&e);
                    }
                }
            }
            return Ok(code);
        }
        VolumeCommand::Prune { force: _ } => {
            let mut removed = 0;
            for v in vols.list()? {
                if !volume_in_use(ctx, &v.name)? {
                    vols.remove(&v.name)?;
                    println!("Deleted: {}", v.name);
                    removed += 1;
                }
            }
            println!("Removed {removed} volumes");
        }
    }
    Ok(0)
}

pub const COMMIT_EXAMPLES: &str = "\
Examples:
  lifeboat commit website website:patched              the container's changes as a new image
  lifeboat commit -c 'CMD [\"/bin/httpd\",\"-f\"]' -m 'fix typo' -a 'IT team' website website:2
  lifeboat diff website                                 A added, C changed, D deleted
  lifeboat export website -o website-rootfs.tar         the whole filesystem, flattened";

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Pause the container while its changes are read (default true, as Docker does).
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    /// Apply a Dockerfile instruction to the new image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, …).
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// A commit message (recorded in the image's history).
    #[arg(short, long)]
    pub message: Option<String>,
    #[arg(short, long)]
    pub author: Option<String>,
    pub container: String,
    /// Name for the new image.
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub container: String,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn commit(ctx: &Context, a: CommitArgs) -> anyhow::Result<i32> {
    let name = a.image.as_deref().map(crate::image::Reference::parse).transpose()?;
    let mut created_by = format!("lifeboat commit {}", a.container);
    for c in &a.changes {
        created_by.push_str(&format!(" --change {c:?}"));
    }
    let opts = crate::image::commit::CommitOptions {
        changes: a.changes,
        message: a.message,
        author: a.author,
        created_by,
        run_config: None,
        compression: crate::image::layer::Compression::Gzip,
    };
    let image = crate::runtime::commit::commit(&ctx.paths(), &a.container, name.as_ref(), a.pause, opts)?;
    println!("{}", image.id());
    Ok(0)
}

pub fn export(ctx: &Context, a: ExportArgs) -> anyhow::Result<i32> {
    match &a.output {
        Some(path) => {
            let tmp = path.with_extension("tar.partial");
            let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let result = crate::runtime::commit::export(&ctx.paths(), &a.container, std::io::BufWriter::new(file));
            match result {
                Ok(()) => std::fs::rename(&tmp, path)?,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(
                    UsageError("refusing to write a tarball to a terminal: use -o FILE or a pipe".into()).into()
                );
            }
            crate::runtime::commit::export(&ctx.paths(), &a.container, std::io::stdout().lock())?;
        }
    }
    Ok(0)
}

pub fn shim(ctx: &Context, a: ShimArgs) -> anyhow::Result<i32> {
    runtime::shim::main(&ctx.paths(), &a.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!((p[0].host_port, p[0].container_port, p[0].host_ip.as_str()), (8080, 80, ""));
        let p = parse_publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!((p[0].host_ip.as_str(), p[0].protocol.clone()), ("127.0.0.1", Protocol::Udp));
        assert_eq!(parse_publish("80").unwrap()[0].host_port, 0);
        assert!(parse_publish("80:0").is_err());
        assert!(parse_publish("a:b").is_err());
        assert!(parse_publish("80/sctp").is_err());
    }

    #[test]
    fn volume_specs() {
        let v = parse_volume("site:/www:ro").unwrap();
        assert_eq!(v.source, MountSource::Volume { name: "site".into() });
        assert!(v.read_only);
        let v = parse_volume("/srv/data:/data").unwrap();
        assert_eq!(v.source, MountSource::Bind { path: "/srv/data".into() });
        assert!(parse_volume("site:relative").is_err());
        assert!(parse_volume("./x:/x").is_err());
    }

    #[test]
    fn sizes_and_env() {
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_interval("30s").unwrap(), 30);
        assert_eq!(parse_interval("2m").unwrap(), 120);
        assert!(parse_interval("soon").is_err());
        let env = merge_env(&["PATH=/bin".into(), "A=1".into()], &["A=2".into(), "B=3".into()]);
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
