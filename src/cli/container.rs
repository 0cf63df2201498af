//! Container commands: run, ps, logs, exec, stop, start, restart, kill, rm, pause, unpause,
//! top, stats, port, volume, and the hidden `shim`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::output::{OutputFormat, Shape, ago, human_size, print_table, sorted_json, truncate};
use super::{Context, UsageError};
use lifeboat::ops::containers::{self, NetworkRequest, RunRequest};
use lifeboat::ops::volumes;
use lifeboat::runtime::container::{Protocol, RestartPolicy};
use lifeboat::runtime::{self};
use lifeboat::syntax;

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
    /// Mount a named volume (NAME:/path[:ro]) or a host path (/host:/path[:ro], or
    /// ./relative:/path from the current directory).
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// Mount as Docker's --mount: type=volume|bind|tmpfs,source=…,target=…[,readonly]
    /// (a bind source must exist; a volume without a source is anonymous).
    #[arg(long = "mount", value_name = "type=…,source=…,target=…")]
    pub mount: Vec<String>,
    /// Mount a fresh memory filesystem: /path[:size=64m,mode=1770].
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Set a label on the container (KEY=VALUE; `ps --filter label=KEY=VALUE` finds it).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
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
    /// Add a line to /etc/hosts (NAME:ADDRESS).
    #[arg(long = "add-host", value_name = "NAME:ADDRESS")]
    pub add_host: Vec<String>,
    /// no | on-failure[:N] | always | unless-stopped
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// private (own namespace, loopback only) | host | none | container:NAME | NAME (a named
    /// network: one namespace shared by every container naming it, made at first use; they
    /// reach each other on 127.0.0.1 by container name)
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
    /// Health check command, run inside the container with `sh -c` (exit 0 = healthy);
    /// replaces the image's HEALTHCHECK.
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between health checks (Docker's 1m30s form; default 30s, or the image's).
    #[arg(long, value_parser = parse_interval)]
    pub health_interval: Option<u64>,
    /// A check that runs longer is killed and counts as a failure (default 30s).
    #[arg(long, value_parser = parse_interval)]
    pub health_timeout: Option<u64>,
    /// Failures in this first while after the start do not count (default 0s).
    #[arg(long, value_parser = parse_period)]
    pub health_start_period: Option<u64>,
    /// Consecutive failures that make the container unhealthy (default 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub health_retries: Option<u32>,
    /// No health check, not even the image's.
    #[arg(long, conflicts_with_all = ["health_cmd", "health_interval", "health_timeout", "health_start_period", "health_retries"])]
    pub no_healthcheck: bool,
    /// The image to run.
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::images))]
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
    /// Show each container's disk use: its own layer, and with its image (virtual).
    #[arg(short, long)]
    pub size: bool,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only containers that match: id=, name=, label=KEY[=VALUE], status=, ancestor=IMAGE,
    /// health=, exited=CODE (the same key twice: either; different keys: both).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// table, json, or a Go-style template: '{{.Names}}', 'table {{.ID}}\t{{.Status}}'
    /// (fields: ID Image Command CreatedAt RunningFor Status State Ports Names Labels ExitCode,
    /// and Size with -s).
    #[arg(long)]
    pub format: Option<String>,
}

/// Docker's column names for the fields whose names differ.
pub fn ps_header(field: &str) -> Option<&'static str> {
    Some(match field {
        "ID" => "CONTAINER ID",
        "RunningFor" => "CREATED",
        "CreatedAt" => "CREATED AT",
        "ExitCode" => "EXIT CODE",
        _ => return None,
    })
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub container: String,
    /// Keep printing new output until the container stops (--follow=false: do not).
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
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
    /// Kill the command after this long (it then exits 124), as a health check is.
    #[arg(long, hide = true, value_parser = lifeboat::syntax::duration)]
    pub timeout: Option<std::time::Duration>,
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Start every container whose restart policy asks for it (after a reboot).
    #[arg(long)]
    pub restartable: bool,
    #[arg(required_unless_present = "restartable", add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub containers: Vec<String>,
    /// With --restartable: `json` prints what was done as JSON.
    #[arg(long, value_enum, default_value_t, requires = "restartable")]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
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
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub containers: Vec<String>,
}

/// `lifeboat container …`: Docker's management form of the container commands.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers.
    #[command(visible_aliases = ["list", "ps"])]
    Ls(PsArgs),
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// Show a container's output.
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Stop containers.
    Stop(StopArgs),
    /// Start stopped containers.
    Start(StartArgs),
    /// Restart containers.
    Restart(StopArgs),
    /// Send a signal to containers.
    Kill(KillArgs),
    /// Remove containers.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Freeze containers.
    Pause(NamesArgs),
    /// Thaw containers.
    Unpause(NamesArgs),
    /// Show a container's processes.
    Top(NamesArgs),
    /// Show resource usage.
    Stats(StatsArgs),
    /// Show published ports.
    Port(NamesArgs),
    /// Show containers' details (Docker's shape; -f for a template).
    Inspect(super::image::InspectArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Block until containers exit; print their exit codes.
    Wait(NamesArgs),
    /// Copy files between a container and the host.
    Cp(CpArgs),
    /// Make an image from a container's changes.
    Commit(CommitArgs),
    /// Write a container's filesystem as a tar archive.
    Export(ExportArgs),
}

impl ContainerCommand {
    /// The top-level command this is another spelling of.
    pub fn into_command(self) -> super::Command {
        use super::Command as T;
        match self {
            Self::Ls(a) => T::Ps(a),
            Self::Run(a) => T::Run(a),
            Self::Logs(a) => T::Logs(a),
            Self::Exec(a) => T::Exec(a),
            Self::Stop(a) => T::Stop(a),
            Self::Start(a) => T::Start(a),
            Self::Restart(a) => T::Restart(a),
            Self::Kill(a) => T::Kill(a),
            Self::Rm(a) => T::Rm(a),
            Self::Pause(a) => T::Pause(a),
            Self::Unpause(a) => T::Unpause(a),
            Self::Top(a) => T::Top(a),
            Self::Stats(a) => T::Stats(a),
            Self::Port(a) => T::Port(a),
            Self::Inspect(a) => T::Inspect(a),
            Self::Rename(a) => T::Rename(a),
            Self::Wait(a) => T::Wait(a),
            Self::Cp(a) => T::Cp(a),
            Self::Commit(a) => T::Commit(a),
            Self::Export(a) => T::Export(a),
        }
    }
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// CONTAINER:PATH, a host path, or - (a tar stream on standard input).
    pub src: String,
    /// CONTAINER:PATH, a host path, or - (a tar stream on standard output).
    pub dest: String,
    /// Keep the owners of what is copied (otherwise copies belong to root).
    #[arg(short, long)]
    pub archive: bool,
    /// Follow a symbolic link named as the source.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Print nothing on success.
    #[arg(short, long)]
    pub quiet: bool,
}

pub const CP_EXAMPLES: &str = "Examples:
  lifeboat cp website:/var/www/html/wp-config.php .      one file out, here
  lifeboat cp ./theme website:/var/www/html/wp-content/themes/
  lifeboat cp website:/var/www/html/. /srv/site-copy     a directory's content
  lifeboat cp db:/var/lib/mysql - | gzip > mysql.tar.gz  a tar stream out
  tar -c conf | lifeboat cp - website:/etc/app           a tar stream in

Paths in the container are resolved inside it (its links never lead to the host); a running
container is seen with its volumes and mounts, a stopped one through its own files.
";

#[derive(Debug, Args)]
pub struct RenameArgs {
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub container: String,
    pub new_name: String,
}

pub const RENAME_EXAMPLES: &str = "Examples:
  lifeboat rename web website        # ps, logs, snapshots now use the new name
";

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub containers: Vec<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// A repository's size instead (restic's `stats`; the same as `repo stats --repo`).
    #[arg(long, value_name = "REPO", conflicts_with_all = ["containers", "no_stream"])]
    pub repo: Option<String>,
    /// The repository's password file (with --repo).
    #[arg(long, requires = "repo")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShimArgs {
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Disk space taken by images, containers and volumes, and what removing the unused
    /// ones would give back.
    #[command(after_help = DF_EXAMPLES)]
    Df {
        /// table, json, or a Go-style template: '{{.Type}} {{.Size}}'
        /// (fields: Type TotalCount Active Size Reclaimable SizeBytes ReclaimableBytes).
        #[arg(long)]
        format: Option<String>,
    },
}

pub const DF_EXAMPLES: &str = "Examples:
  lifeboat system df
  lifeboat system df --format '{{.Type}}: {{.Reclaimable}}'
  lifeboat image prune -a; lifeboat volume prune       give the reclaimable space back

Images count each layer once, however many images share it; what is reclaimable is what
only unused images, stopped containers and unmounted volumes hold.
";

pub fn system(ctx: &Context, cmd: SystemCommand) -> anyhow::Result<i32> {
    match cmd {
        SystemCommand::Df { format } => {
            let shape = Shape::parse(format.as_deref())?;
            let rows = lifeboat::ops::system::df(ctx.host())?;
            match &shape {
                Shape::Json => println!("{}", sorted_json(&rows)?),
                Shape::Template(t) => Shape::print_template(t, &rows, &|f| match f {
                    "TotalCount" => Some("TOTAL"),
                    _ => None,
                })?,
                Shape::Table => {
                    let table: Vec<Vec<String>> = rows
                        .iter()
                        .map(|r| {
                            vec![
                                r.kind.to_string(),
                                r.total.to_string(),
                                r.active.to_string(),
                                r.size.clone(),
                                r.reclaimable.clone(),
                            ]
                        })
                        .collect();
                    print_table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &table);
                }
            }
            Ok(0)
        }
    }
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
        /// table, json, or a Go-style template: '{{.Name}}' (fields: Name Driver Mountpoint
        /// CreatedAt).
        #[arg(long)]
        format: Option<String>,
    },
    /// Show a volume's details.
    #[command(after_help = VOLUME_EXAMPLES)]
    Inspect {
        #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::volumes))]
        names: Vec<String>,
    },
    /// Remove volumes.
    #[command(visible_alias = "remove", after_help = VOLUME_EXAMPLES)]
    Rm {
        /// Remove even if a container uses it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::volumes))]
        names: Vec<String>,
    },
    /// Remove volumes no container uses.
    #[command(after_help = VOLUME_EXAMPLES)]
    Prune {
        #[arg(short, long)]
        force: bool,
    },
}

/// `30s`, `1m`, `2h` (or plain seconds) as seconds.
/// A health check's start period (Docker's `1m30s`), in whole seconds (zero allowed).
fn parse_period(s: &str) -> Result<u64, lifeboat::error::UsageError> {
    Ok(lifeboat::syntax::duration(s)?.as_secs())
}

/// A health check's interval or timeout (Docker's `1m30s`), in whole seconds, at least one.
fn parse_interval(s: &str) -> Result<u64, lifeboat::error::UsageError> {
    let d = lifeboat::syntax::duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(lifeboat::error::UsageError(format!("{s:?} is shorter than a second")));
    }
    Ok(d.as_secs())
}

impl RunArgs {
    /// The request these flags make.
    pub fn request(&self) -> anyhow::Result<RunRequest> {
        let mut ports = Vec::new();
        for p in &self.publish {
            ports.push(syntax::publish(p)?);
        }
        Ok(RunRequest {
            image: self.image.clone(),
            command: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            name: self.name.clone(),
            ports,
            publish_all: self.publish_all,
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            mounts: {
                let cwd = std::env::current_dir().ok();
                let volumes = self.volume.iter().map(|v| syntax::mount_in(v, cwd.as_deref()));
                let mounts = self.mount.iter().map(|m| syntax::mount_flag(m, cwd.as_deref()));
                volumes
                    .chain(mounts)
                    .chain(self.tmpfs.iter().map(|t| syntax::tmpfs_flag(t)))
                    .collect::<Result<_, _>>()?
            },
            labels: self.label.iter().map(|l| syntax::label(l)).collect::<Result<_, _>>()?,
            extra_hosts: self.add_host.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            restart: RestartPolicy::parse(&self.restart).map_err(UsageError)?,
            network: NetworkRequest::parse(&self.network)?,
            auto_remove: self.rm,
            memory: self.memory.as_deref().map(syntax::size).transpose()?,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            read_only: self.read_only,
            init: self.init,
            health: containers::HealthRequest {
                disable: self.no_healthcheck,
                command: self.health_cmd.clone(),
                args: Vec::new(),
                interval_secs: self.health_interval,
                timeout_secs: self.health_timeout,
                start_period_secs: self.health_start_period,
                retries: self.health_retries,
            },
            tty: self.tty,
            stdin_open: self.interactive,
        })
    }
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
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut sink = |l: &runtime::logs::LogLine| {
        let _ = if l.stream == "stderr" { err.write_all(l.log.as_bytes()) } else { out.write_all(l.log.as_bytes()) };
        let _ = out.flush();
    };
    let attach = if a.detach {
        containers::Attach::Detached
    } else if a.tty {
        containers::Attach::Terminal { interactive: a.interactive }
    } else {
        containers::Attach::Output { stdin: a.interactive, sink: &mut sink }
    };
    Ok(match containers::run(ctx.host(), &a.request()?, attach)? {
        containers::RunOutcome::Started(config) => {
            println!("{}", config.id);
            0
        }
        containers::RunOutcome::Exited(_, code) => code.unwrap_or(RUN_FAILED),
        containers::RunOutcome::Failed(config, e) => {
            eprintln!("lifeboat: cannot run {}: {e}", config.image);
            RUN_FAILED
        }
    })
}

pub fn ps(ctx: &Context, a: PsArgs) -> anyhow::Result<i32> {
    let filter = containers::PsFilter::parse(&a.filter)?;
    let shape = Shape::parse(a.format.as_deref())?;
    let mut rows = containers::list(ctx.host(), a.all || filter.looks_past_running())?;
    rows.retain(|r| filter.matches(r));
    // A template that asks for .Size gets sizes, as Docker's does.
    if (a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size"))) && !a.quiet {
        containers::fill_sizes(ctx.host(), &mut rows)?;
    }
    if a.quiet {
        for r in &rows {
            println!("{}", if a.no_trunc { r.id.as_str() } else { &r.id[..12] });
        }
    } else if let Shape::Json = shape {
        println!("{}", sorted_json(&rows)?);
    } else if let Shape::Template(t) = &shape {
        // What the table shows, as Docker's templates see it: short IDs, quoted commands.
        for r in rows.iter_mut() {
            if !a.no_trunc {
                r.id.truncate(12);
                r.command = truncate(&r.command, 20);
            }
            r.command = format!("\"{}\"", r.command);
        }
        Shape::print_template(t, &rows, &ps_header)?;
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let command =
                    if a.no_trunc { format!("\"{}\"", r.command) } else { format!("\"{}\"", truncate(&r.command, 20)) };
                let mut row = vec![
                    if a.no_trunc { r.id.clone() } else { r.id[..12].to_string() },
                    r.image.clone(),
                    command,
                    ago(Some(&r.created_at)),
                    r.status.clone(),
                    if r.up { r.ports.clone() } else { String::new() },
                    r.names.clone(),
                ];
                row.extend(r.size.clone());
                row
            })
            .collect();
        let mut header = vec!["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"];
        if a.size {
            header.push("SIZE");
        }
        print_table(&header, &table);
    }
    Ok(0)
}

pub fn logs(ctx: &Context, a: LogsArgs) -> anyhow::Result<i32> {
    let opts = containers::LogOptions {
        since: a.since.as_deref().map(syntax::since).transpose()?,
        tail: a.tail,
        follow: a.follow,
    };
    let timestamps = a.timestamps;
    containers::logs(ctx.host(), &a.container, &opts, &mut |lines| {
        let mut err = std::io::stderr().lock();
        for l in lines {
            let text = if timestamps { format!("{} {}", l.time, l.log) } else { l.log };
            if l.stream == "stderr" {
                let _ = err.write_all(text.as_bytes());
            } else if !super::output::out_bytes(text.as_bytes()) {
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(0)
}

pub fn exec(ctx: &Context, a: ExecArgs) -> anyhow::Result<i32> {
    let opts = runtime::ExecOptions {
        tty: a.tty,
        timeout: a.timeout,
        interactive: a.interactive,
        args: a.command,
        env: a.env,
        user: a.user,
        workdir: a.workdir,
        output: runtime::ExecOutput::Inherit,
    };
    containers::exec(ctx.host(), &a.container, opts)
}

/// Prints each name that succeeded (in the order given) and each failure; returns the exit
/// code of the last failure, or 0.
pub fn report(results: Vec<(String, anyhow::Result<()>)>) -> i32 {
    let mut code = 0;
    for (n, result) in results {
        match result {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("lifeboat: {}", lifeboat::error::describe(&e));
                code = lifeboat::error::exit_code(&e);
            }
        }
    }
    code
}

pub fn stop(ctx: &Context, a: StopArgs) -> anyhow::Result<i32> {
    Ok(report(containers::stop(ctx.host(), &a.containers, Duration::from_secs(a.time))?))
}

pub fn start(ctx: &Context, a: StartArgs) -> anyhow::Result<i32> {
    if !a.restartable {
        return Ok(report(containers::start(ctx.host(), &a.containers)?));
    }
    let recovery = containers::start_restartable(ctx.host())?;
    // Removing leftovers is not starting a service: only a failed start fails the command.
    let code = if recovery.not_started.is_empty() { 0 } else { lifeboat::error::FAILURE };
    match a.format {
        OutputFormat::Job => {
            let report = lifeboat::report::JobReport::new(lifeboat::report::JobBody::Recovery(recovery));
            println!("{}", serde_json::to_string(&report)?);
            return Ok(code);
        }
        OutputFormat::Json => println!("{}", sorted_json(&recovery)?),
        OutputFormat::Table => recovery.started.iter().for_each(|name| println!("{name}")),
    }
    for (name, why) in recovery.not_started.iter().chain(&recovery.not_cleared) {
        eprintln!("lifeboat: {name}: {why}");
    }
    Ok(code)
}

pub fn restart(ctx: &Context, a: StopArgs) -> anyhow::Result<i32> {
    Ok(report(containers::restart(ctx.host(), &a.containers, Duration::from_secs(a.time))?))
}

pub fn kill(ctx: &Context, a: KillArgs) -> anyhow::Result<i32> {
    Ok(report(containers::kill(ctx.host(), &a.containers, &a.signal)?))
}

pub fn rm(ctx: &Context, a: RmArgs) -> anyhow::Result<i32> {
    Ok(report(containers::remove(ctx.host(), &a.containers, a.force, a.volumes)?))
}

pub fn rename(ctx: &Context, a: RenameArgs) -> anyhow::Result<i32> {
    containers::rename(ctx.host(), &a.container, &a.new_name)?;
    Ok(0)
}

/// Each container's exit code on a line, as `docker wait` prints them; exits with the last
/// failure to wait (a missing container), else 0.
pub fn cp(ctx: &Context, a: CpArgs) -> anyhow::Result<i32> {
    let (src, dest) = (containers::CpEnd::parse(&a.src), containers::CpEnd::parse(&a.dest));
    let opts = lifeboat::runtime::copy::CopyOptions { archive: a.archive, follow_link: a.follow_link };
    let copied =
        containers::cp(ctx.host(), &src, &dest, &opts, &mut std::io::stdin().lock(), &mut std::io::stdout().lock())?;
    if !a.quiet && dest != containers::CpEnd::Stream {
        eprintln!("Successfully copied {} ({} entries) to {}", human_size(copied.bytes), copied.entries, a.dest);
    }
    Ok(0)
}

pub fn wait(ctx: &Context, a: NamesArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &a.containers {
        match containers::wait(ctx.host(), name) {
            Ok(exit) => println!("{exit}"),
            Err(e) => {
                eprintln!("lifeboat: {}", lifeboat::error::describe(&e));
                code = lifeboat::error::exit_code(&e);
            }
        }
    }
    Ok(code)
}

pub fn pause(ctx: &Context, a: NamesArgs, paused: bool) -> anyhow::Result<i32> {
    Ok(report(containers::pause(ctx.host(), &a.containers, paused)?))
}

pub fn top(ctx: &Context, a: NamesArgs) -> anyhow::Result<i32> {
    for name in &a.containers {
        let rows: Vec<Vec<String>> = containers::processes(ctx.host(), name)?
            .into_iter()
            .map(|p| vec![p.uid, p.pid.to_string(), p.command])
            .collect();
        print_table(&["UID", "PID", "CMD"], &rows);
    }
    Ok(0)
}

pub fn stats(ctx: &Context, a: StatsArgs) -> anyhow::Result<i32> {
    let targets = containers::usage_targets(ctx.host(), &a.containers)?;
    loop {
        let sample = containers::usage(ctx.host(), &targets, Duration::from_millis(500));
        if a.format == OutputFormat::Json {
            println!("{}", sorted_json(&sample)?);
        } else {
            let rows: Vec<Vec<String>> = sample
                .iter()
                .map(|u| {
                    let limit = u.memory_limit.map_or("unlimited".to_string(), human_size);
                    vec![
                        u.id[..12].to_string(),
                        u.name.clone(),
                        format!("{:.2}%", u.cpu_percent),
                        format!("{} / {limit}", human_size(u.memory)),
                        u.pids.to_string(),
                    ]
                })
                .collect();
            print_table(&["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"], &rows);
        }
        if a.no_stream || super::output::stdout_closed() {
            return Ok(0);
        }
    }
}

pub fn port(ctx: &Context, a: NamesArgs) -> anyhow::Result<i32> {
    for n in &a.containers {
        for p in containers::ports(ctx.host(), n)? {
            let proto = if p.protocol == Protocol::Udp { "udp" } else { "tcp" };
            let ip = if p.host_ip.is_empty() { "0.0.0.0" } else { p.host_ip.as_str() };
            println!("{}/{proto} -> {ip}:{}", p.container_port, p.host_port);
        }
    }
    Ok(0)
}

pub fn volume(ctx: &Context, cmd: VolumeCommand) -> anyhow::Result<i32> {
    let host = ctx.host();
    match cmd {
        VolumeCommand::Create { name } => {
            volumes::create(host, &name)?;
            println!("{name}");
        }
        VolumeCommand::Ls { quiet, format } => {
            let shape = Shape::parse(format.as_deref())?;
            let list = volumes::list(host)?;
            if quiet {
                list.iter().for_each(|v| println!("{}", v.name));
            } else if let Shape::Template(t) = &shape {
                let details =
                    list.iter().map(|v| volumes::inspect(host, &v.name)).collect::<anyhow::Result<Vec<_>>>()?;
                Shape::print_template(t, &details, &|f| (f == "Name").then_some("VOLUME NAME"))?;
            } else if let Shape::Json = shape {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(|v| vec!["local".into(), v.name.clone()]).collect();
                print_table(&["DRIVER", "VOLUME NAME"], &rows);
            }
        }
        VolumeCommand::Inspect { names } => {
            let out = names.iter().map(|n| volumes::inspect(host, n)).collect::<anyhow::Result<Vec<_>>>()?;
            println!("{}", sorted_json(&out)?);
        }
        VolumeCommand::Rm { force, names } => {
            let results = names.iter().map(|n| (n.clone(), volumes::remove(host, n, force))).collect();
            return Ok(report(results));
        }
        VolumeCommand::Prune { force: _ } => {
            let removed = volumes::prune(host)?;
            for name in &removed {
                println!("Deleted: {name}");
            }
            println!("Removed {} volumes", removed.len());
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
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub container: String,
    /// Name for the new image.
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::containers))]
    pub container: String,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn commit(ctx: &Context, a: CommitArgs) -> anyhow::Result<i32> {
    let req = containers::CommitRequest {
        container: a.container,
        image: a.image,
        pause: a.pause,
        changes: a.changes,
        message: a.message,
        author: a.author,
    };
    println!("{}", containers::commit(ctx.host(), req)?.id());
    Ok(0)
}

pub fn export(ctx: &Context, a: ExportArgs) -> anyhow::Result<i32> {
    match &a.output {
        Some(path) => containers::export_to_file(ctx.host(), &a.container, path)?,
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(
                    UsageError("refusing to write a tarball to a terminal: use -o FILE or a pipe".into()).into()
                );
            }
            containers::export(ctx.host(), &a.container, std::io::stdout().lock())?;
        }
    }
    Ok(0)
}

pub fn shim(ctx: &Context, a: ShimArgs) -> anyhow::Result<i32> {
    runtime::shim::main(ctx.host(), &a.id)
}
