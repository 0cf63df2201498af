//! The command line: clap definitions, validated into calls on the library. No logic lives
//! here beyond choosing what to call and printing its result.

// The command line prints through these: a closed pipe (`ps | head`) ends the output quietly
// instead of panicking in the standard macros. They are textually in scope in every module
// below.
macro_rules! println {
    () => { $crate::cli::output::out_line(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::cli::output::out_line(format_args!($($arg)*), true) };
}
macro_rules! eprintln {
    () => { $crate::cli::output::err_line(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::cli::output::err_line(format_args!($($arg)*), true) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::cli::output::err_line(format_args!($($arg)*), false) };
}

mod browse;
mod build;
pub mod complete;
mod compose;
mod container;
mod image;
mod output;
mod progress;
mod registry;
mod repo;
mod service;
mod template;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use lifeboat::error::UsageError;

const ABOUT: &str = "Run services in containers, snapshot them, and bring them back anywhere.";

const AFTER_HELP: &str = "\
Examples:
  lifeboat run -d -p 8080:80 --name website website:1   run a service
  lifeboat ps                                 list running containers
  lifeboat import rootfs.tar.gz website:1     make an image from a root filesystem
  lifeboat images                             list images
  lifeboat save -o website.tar website:1      export for podman/skopeo (OCI archive)
  lifeboat load -i busybox.tar                import what docker/podman save wrote
  lifeboat build -t article:1 .               build from a Dockerfile (with a layer cache)
  lifeboat snapshot website                   snapshot a running service (deduplicated, encrypted)
  lifeboat restore website                    bring it back, here or on a new host
  lifeboat up && lifeboat agent               run /etc/lifeboat/lifeboat.toml's services and jobs

Files: images and layers under --root (default /var/lib/lifeboat).
Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 refused input, 5 conflict (docs/exit-codes.md).";

#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about = ABOUT, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// Where images, layers, containers and volumes live.
    #[arg(long, global = true, env = "LIFEBOAT_ROOT", default_value = "/var/lib/lifeboat", value_name = "DIR")]
    pub root: PathBuf,

    /// Where live state lives (runtime state, cleared at boot).
    #[arg(long, global = true, env = "LIFEBOAT_RUN_ROOT", default_value = "/run/lifeboat", value_name = "DIR")]
    pub run_root: PathBuf,

    /// How much to log on stderr.
    #[arg(long, global = true, env = "LIFEBOAT_LOG_LEVEL", value_enum, default_value_t = LogLevel::Warn)]
    pub log_level: LogLevel,

    /// Log as human text or as one JSON object per line (for journald and log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The configuration file: its services for up, down, status and the agent; its
    /// repositories by name for --repo NAME, and a service's own repository as the default.
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG", default_value = lifeboat::config::DEFAULT_PATH, value_name = "FILE")]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container.
    #[command(after_help = container::RUN_EXAMPLES)]
    Run(Box<container::RunArgs>),
    /// List containers.
    #[command(after_help = container::PS_EXAMPLES)]
    Ps(container::PsArgs),
    /// Show a container's output.
    #[command(after_help = container::LOGS_EXAMPLES)]
    Logs(container::LogsArgs),
    /// Run a command in a running container.
    #[command(after_help = container::EXEC_EXAMPLES)]
    Exec(container::ExecArgs),
    /// Stop containers (stop signal, then SIGKILL after a timeout).
    #[command(after_help = container::STOP_EXAMPLES)]
    Stop(container::StopArgs),
    /// Start stopped containers.
    #[command(after_help = container::START_EXAMPLES)]
    Start(container::StartArgs),
    /// Stop and start containers.
    #[command(after_help = container::STOP_EXAMPLES)]
    Restart(container::StopArgs),
    /// Send a signal to containers.
    #[command(after_help = container::SIMPLE_EXAMPLES)]
    Kill(container::KillArgs),
    /// Remove containers.
    #[command(after_help = container::RM_EXAMPLES)]
    Rm(container::RmArgs),
    /// Manage containers (Docker's `container ls`, `container rm`, … forms).
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Rename a container (running or not).
    #[command(after_help = container::RENAME_EXAMPLES)]
    Rename(container::RenameArgs),
    /// Block until containers exit, then print their exit codes.
    #[command(after_help = container::SIMPLE_EXAMPLES)]
    Wait(container::NamesArgs),
    /// Copy files between a container and the host (or a tar stream).
    #[command(after_help = container::CP_EXAMPLES)]
    Cp(container::CpArgs),
    /// Freeze every process of containers (cgroup freezer).
    #[command(after_help = container::SIMPLE_EXAMPLES)]
    Pause(container::NamesArgs),
    /// Thaw paused containers.
    #[command(after_help = container::SIMPLE_EXAMPLES)]
    Unpause(container::NamesArgs),
    /// Show the processes of a container.
    #[command(after_help = container::SIMPLE_EXAMPLES)]
    Top(container::NamesArgs),
    /// Show CPU, memory and process counts of containers.
    #[command(after_help = container::SIMPLE_EXAMPLES)]
    Stats(container::StatsArgs),
    /// Show a container's published ports.
    #[command(after_help = container::SIMPLE_EXAMPLES)]
    Port(container::NamesArgs),
    /// Manage named volumes.
    #[command(subcommand, after_help = container::VOLUME_EXAMPLES)]
    Volume(container::VolumeCommand),
    /// The host as a whole: `system df`.
    #[command(subcommand)]
    System(container::SystemCommand),
    /// Supervise one container (started by `run`/`start`; not for direct use).
    #[command(hide = true)]
    Shim(container::ShimArgs),
    /// Create an image from a root filesystem (tarball, directory, or - for stdin).
    #[command(after_help = image::IMPORT_EXAMPLES)]
    Import(image::ImportArgs),
    /// List images.
    #[command(visible_alias = "image-ls", after_help = image::IMAGES_EXAMPLES)]
    Images(image::ImagesArgs),
    /// Give an image another name.
    #[command(after_help = image::TAG_EXAMPLES)]
    Tag(image::TagArgs),
    /// Remove images (by name or ID).
    #[command(after_help = image::RMI_EXAMPLES)]
    Rmi(image::RmiArgs),
    /// Show how an image was built, layer by layer.
    #[command(after_help = image::HISTORY_EXAMPLES)]
    History(image::HistoryArgs),
    /// Show a container's or an image's full details as JSON.
    #[command(after_help = image::INSPECT_EXAMPLES)]
    Inspect(image::InspectArgs),
    /// Write images to an archive (OCI archive, or Docker's format for `docker load`).
    #[command(after_help = image::SAVE_EXAMPLES)]
    Save(image::SaveArgs),
    /// Read images from an archive written by `save`, `docker save` or `podman save`.
    #[command(after_help = image::LOAD_EXAMPLES)]
    Load(image::LoadArgs),
    /// Snapshot a running service into a repository.
    #[command(after_help = repo::SNAPSHOT_EXAMPLES)]
    Snapshot(repo::SnapshotArgs),
    /// List snapshots.
    #[command(after_help = repo::SNAPSHOTS_EXAMPLES)]
    Snapshots(repo::SnapshotsArgs),
    /// List the files of a snapshot (SNAPSHOT[:PATH], paths as the service saw them).
    #[command(after_help = browse::LS_EXAMPLES)]
    Ls(browse::LsArgs),
    /// Find files by name or path in every snapshot, newest first.
    #[command(after_help = browse::FIND_EXAMPLES)]
    Find(browse::FindArgs),
    /// Write a file of a snapshot to standard output (a directory as a tar stream).
    #[command(after_help = browse::DUMP_EXAMPLES)]
    Dump(browse::DumpArgs),
    /// Serve the snapshots as a read-only filesystem (FUSE) until unmounted.
    #[command(after_help = browse::MOUNT_EXAMPLES)]
    Mount(browse::MountArgs),
    /// Bring a service back from a snapshot.
    #[command(after_help = repo::RESTORE_EXAMPLES)]
    Restore(repo::RestoreArgs),
    /// Move a service from Docker or Podman to Lifeboat's runtime, with its data (and back).
    #[command(after_help = repo::ADOPT_EXAMPLES)]
    Adopt(repo::AdoptArgs),
    /// Rehearse a restore: bring a snapshot up aside, check its health, remove it.
    #[command(after_help = repo::DRILL_EXAMPLES)]
    Drill(repo::DrillArgs),
    /// Verify a repository (structure; with --read-data every byte).
    #[command(after_help = repo::MAINT_EXAMPLES)]
    Check(repo::CheckArgs),
    /// Remove snapshots by a retention policy.
    #[command(after_help = repo::MAINT_EXAMPLES)]
    Forget(repo::ForgetArgs),
    /// Delete data no snapshot references.
    #[command(after_help = repo::MAINT_EXAMPLES)]
    Prune(repo::PruneArgs),
    /// Copy snapshots to another repository (off-site replication).
    #[command(after_help = repo::MAINT_EXAMPLES)]
    Copy(repo::CopyArgs),
    /// Show what a container changed (A/C/D), or what changed between two snapshots (or in one path: A:PATH B:PATH).
    #[command(after_help = container::COMMIT_EXAMPLES)]
    Diff(repo::DiffArgs),
    /// Create an image from a container's changes.
    #[command(after_help = container::COMMIT_EXAMPLES)]
    Commit(container::CommitArgs),
    /// Write a container's whole filesystem as a tarball.
    #[command(after_help = container::COMMIT_EXAMPLES)]
    Export(container::ExportArgs),
    /// Manage repository passwords (add, list, remove, passwd).
    #[command(subcommand, after_help = repo::MAINT_EXAMPLES)]
    Key(repo::KeyCommand),
    /// Manage backup repositories (init, info, unlock).
    #[command(subcommand, after_help = repo::REPO_EXAMPLES)]
    Repo(repo::RepoCommand),
    /// Build an image from a Dockerfile.
    #[command(after_help = build::BUILD_EXAMPLES)]
    Build(build::BuildArgs),
    /// Download an image from a registry.
    #[command(after_help = registry::REGISTRY_EXAMPLES)]
    Pull(registry::PullArgs),
    /// Upload an image to a registry.
    #[command(after_help = registry::REGISTRY_EXAMPLES)]
    Push(registry::PushArgs),
    /// Store credentials for a registry (where Docker and Podman find them too).
    #[command(after_help = registry::REGISTRY_EXAMPLES)]
    Login(registry::LoginArgs),
    /// Remove stored credentials for a registry.
    #[command(after_help = registry::REGISTRY_EXAMPLES)]
    Logout(registry::LogoutArgs),
    /// Manage images (ls, rm, prune, unpack, …).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Work with the configuration file (check).
    #[command(subcommand, after_help = service::CONFIG_EXAMPLES)]
    Config(service::ConfigCommand),
    /// Run a Compose project with Lifeboat's runtime: up, down, ps, logs, config.
    #[command(after_help = compose::COMPOSE_EXAMPLES)]
    Compose(compose::ComposeArgs),
    /// Start the services of the configuration (create, or recreate those whose definition changed).
    #[command(after_help = service::UP_EXAMPLES)]
    Up(service::UpArgs),
    /// Stop and remove the services of the configuration (volumes stay unless -v).
    #[command(after_help = service::UP_EXAMPLES)]
    Down(service::DownArgs),
    /// Run every job of the configuration on its schedule: snapshots, replication, checks, drills.
    #[command(after_help = service::AGENT_EXAMPLES)]
    Agent(service::AgentArgs),
    /// Show every scheduled job's last run and next run.
    #[command(after_help = service::AGENT_EXAMPLES)]
    Status(service::StatusArgs),
    /// Print a shell completion script.
    #[command(after_help = service::COMPLETIONS_EXAMPLES)]
    Completions(service::CompletionsArgs),
    /// Write man pages for every command into a directory.
    #[command(after_help = service::COMPLETIONS_EXAMPLES)]
    Manpages(service::ManpagesArgs),
}

/// The shim's entry point, `lifeboat --root R --run-root S shim ID` exactly as the runtime
/// starts it, handled without building the whole command-line parser: the shim is on the path
/// of every container start. None for any other command line.
/// The read-only remount hook (`lifeboat read-only-below DIR…`), run by the runtime in a new
/// container's mount namespace on kernels without `mount_setattr`; None for any other
/// command line.
/// Reports a command's failure on standard error (one line, each cause said once); its
/// documented exit code.
pub fn fail(err: &anyhow::Error) -> i32 {
    eprintln!("lifeboat: {}", lifeboat::error::describe(err));
    lifeboat::error::exit_code(err)
}

/// The thaw guard of a snapshot (`lifeboat --root R --run-root S thaw-guard OWNER ID…`); None
/// for any other command line.
pub fn thaw_guard_entry() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (paths, owner, ids) = lifeboat::runtime::reexec::parse_thaw_guard_args(&args)?;
    init_logging(LogLevel::Warn, LogFormat::Text);
    let ctx = Context::new(paths.root, paths.run_root);
    Some(match lifeboat::snapshot::thaw_guard(ctx.host(), owner, &ids) {
        Ok(_) => 0,
        Err(e) => fail(&e),
    })
}

/// An instant restore's hydrator (`lifeboat --root R --run-root S hydrate ID`, started by the
/// restore with its handover on standard input); None for any other command line.
pub fn hydrator_entry() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (paths, id) = lifeboat::runtime::reexec::parse_hydrator_args(&args)?;
    init_logging(LogLevel::Info, LogFormat::Text);
    let ctx = Context::new(paths.root, paths.run_root);
    Some(match lifeboat::snapshot::instant::run(ctx.host(), &id) {
        Ok(()) => 0,
        Err(e) => fail(&e),
    })
}

pub fn hook_entry() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let dirs = lifeboat::runtime::reexec::parse_read_only_hook(&args)?;
    Some(match lifeboat::runtime::read_only_hook(&dirs) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("lifeboat: read-only binds: {e}");
            lifeboat::error::FAILURE
        }
    })
}

pub fn shim_entry() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let (paths, id) = lifeboat::runtime::reexec::parse_shim_args(&args)?;
    let level = std::env::var("LIFEBOAT_LOG_LEVEL")
        .ok()
        .and_then(|l| LogLevel::from_str(&l, true).ok())
        .unwrap_or(LogLevel::Warn);
    init_logging(level, LogFormat::Text);
    let ctx = Context::new(paths.root, paths.run_root);
    Some(match container::shim(&ctx, container::ShimArgs { id }) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lifeboat: {}", lifeboat::error::describe(&err));
            lifeboat::error::exit_code(&err)
        }
    })
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    // Libraries' own messages are noise to users (Lifeboat reports what failed itself, once);
    // they show from --log-level debug on.
    let others = if matches!(level, "debug" | "trace") { level } else { "off" };
    let filter = tracing_subscriber::EnvFilter::new(format!("lifeboat={level},{others}"));
    // Colours only for a person at a terminal: never in a log file or the journal.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

impl Cli {
    pub fn init_logging(&self) {
        init_logging(self.log_level, self.log_format)
    }

    /// Runs the command; returns the exit code on success paths that are not 0 (none yet).
    pub fn run(self) -> anyhow::Result<i32> {
        let mut ctx = Context::new(self.root, self.run_root);
        ctx.config_path = self.config;
        // `container ls|rm|…` is Docker's other spelling of the top-level commands.
        let command = match self.command {
            Command::Container(c) => c.into_command(),
            other => other,
        };
        // `--json` is `--format json` on the backup commands (restic's habit).
        let mut command = command;
        match &mut command {
            Command::Snapshot(a) if a.json => a.format = output::OutputFormat::Json,
            Command::Restore(a) if a.json => a.format = output::OutputFormat::Json,
            Command::Drill(a) if a.json => a.format = output::OutputFormat::Json,
            Command::Check(a) if a.json => a.format = output::OutputFormat::Json,
            Command::Forget(a) if a.json => a.format = output::OutputFormat::Json,
            Command::Diff(a) if a.json => a.format = output::OutputFormat::Json,
            Command::Ls(a) if a.json => a.format = output::OutputFormat::Json,
            Command::Find(a) if a.json => a.format = output::OutputFormat::Json,
            _ => {}
        }
        // Long repository work stops cleanly on Ctrl-C or SIGTERM (locks released, services
        // thawed, exit code 130); interactive commands keep the default behaviour.
        if matches!(
            command,
            Command::Snapshot(_)
                | Command::Restore(_)
                | Command::Adopt(_)
                | Command::Check(_)
                | Command::Drill(_)
                | Command::Forget(_)
                | Command::Prune(_)
                | Command::Copy(_)
                | Command::Cp(_)
                | Command::Dump(_)
                | Command::Find(_)
                | Command::Mount(_)
        ) {
            lifeboat::sys::stop_on_signals()?;
        }
        match command {
            Command::Run(a) => container::run(&ctx, *a),
            Command::Ps(a) => container::ps(&ctx, a),
            Command::Logs(a) => container::logs(&ctx, a),
            Command::Exec(a) => container::exec(&ctx, a),
            Command::Stop(a) => container::stop(&ctx, a),
            Command::Start(a) => container::start(&ctx, a),
            Command::Restart(a) => container::restart(&ctx, a),
            Command::Kill(a) => container::kill(&ctx, a),
            Command::Rm(a) => container::rm(&ctx, a),
            Command::Container(_) => unreachable!("turned into its top-level command above"),
            Command::Rename(a) => container::rename(&ctx, a),
            Command::Wait(a) => container::wait(&ctx, a),
            Command::Cp(a) => container::cp(&ctx, a),
            Command::Pause(a) => container::pause(&ctx, a, true),
            Command::Unpause(a) => container::pause(&ctx, a, false),
            Command::Top(a) => container::top(&ctx, a),
            Command::Stats(a) if a.repo.is_some() => repo::repo(
                &ctx,
                repo::RepoCommand::Stats {
                    repo: repo::RepoArgs { repo: a.repo, password_file: a.password_file },
                    format: a.format,
                },
            ),
            Command::Stats(a) => container::stats(&ctx, a),
            Command::Port(a) => container::port(&ctx, a),
            Command::Volume(c) => container::volume(&ctx, c),
            Command::System(c) => container::system(&ctx, c),
            Command::Shim(a) => container::shim(&ctx, a),
            Command::Snapshot(a) => repo::snapshot(&ctx, a),
            Command::Snapshots(a) => repo::snapshots(&ctx, a),
            Command::Restore(a) => repo::restore(&ctx, a),
            Command::Ls(a) => browse::ls(&ctx, a),
            Command::Find(a) => browse::find(&ctx, a),
            Command::Dump(a) => browse::dump(&ctx, a),
            Command::Mount(a) => browse::mount(&ctx, a),
            Command::Repo(c) => repo::repo(&ctx, c),
            Command::Check(a) => repo::check(&ctx, a),
            Command::Drill(a) => repo::drill(&ctx, a),
            Command::Adopt(a) => repo::adopt(&ctx, a),
            Command::Forget(a) => repo::forget(&ctx, a),
            Command::Prune(a) => repo::prune(&ctx, a),
            Command::Copy(a) => repo::copy(&ctx, a),
            Command::Diff(a) => repo::diff(&ctx, a),
            Command::Commit(a) => container::commit(&ctx, a),
            Command::Export(a) => container::export(&ctx, a),
            Command::Key(c) => repo::key(&ctx, c),
            Command::Import(a) => image::import(&ctx, a),
            Command::Images(a) => image::images(&ctx, a),
            Command::Tag(a) => image::tag(&ctx, a),
            Command::Rmi(a) => image::rmi(&ctx, a),
            Command::History(a) => image::history(&ctx, a),
            Command::Inspect(a) => image::inspect(&ctx, a),
            Command::Save(a) => image::save(&ctx, a),
            Command::Load(a) => image::load(&ctx, a),
            Command::Image(c) => image::image_command(&ctx, c),
            Command::Build(a) => build::build(&ctx, a),
            Command::Pull(a) => registry::pull(&ctx, a),
            Command::Push(a) => registry::push(&ctx, a),
            Command::Login(a) => registry::login(a),
            Command::Logout(a) => registry::logout(a),
            Command::Config(c) => service::config_command(&ctx, c),
            Command::Compose(a) => compose::compose(&ctx, a),
            Command::Up(a) => service::up(&ctx, a),
            Command::Down(a) => service::down(&ctx, a),
            Command::Agent(a) => service::agent(&ctx, a),
            Command::Status(a) => service::status(&ctx, a),
            Command::Completions(a) => service::completions(a),
            Command::Manpages(a) => service::manpages(a),
        }
    }
}

/// What every command needs to find its data: the host's state, opened once.
pub struct Context {
    pub root: PathBuf,
    pub run_root: PathBuf,
    /// `--config` (or its default).
    pub config_path: PathBuf,
    host: lifeboat::runtime::Host,
}

impl Context {
    pub fn new(root: PathBuf, run_root: PathBuf) -> Context {
        let host =
            lifeboat::runtime::Host::new(lifeboat::runtime::Paths { root: root.clone(), run_root: run_root.clone() });
        Context { root, run_root, config_path: lifeboat::config::DEFAULT_PATH.into(), host }
    }

    /// The configuration file, which must be there.
    pub fn config(&self) -> anyhow::Result<lifeboat::config::Config> {
        Ok(lifeboat::config::Config::load(&self.config_path)?)
    }

    /// Whether the configuration file was named (--config or LIFEBOAT_CONFIG), so must be
    /// there; the default place may be empty.
    pub fn config_named(&self) -> bool {
        std::env::var_os("LIFEBOAT_CONFIG").is_some()
            || self.config_path != std::path::Path::new(lifeboat::config::DEFAULT_PATH)
    }

    pub fn host(&self) -> &lifeboat::runtime::Host {
        &self.host
    }
}
