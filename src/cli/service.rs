//! Config-driven commands: config check, up, down, agent, status; and shell completions and
//! man pages generated from the command definitions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory, Subcommand};
use serde_json::json;

use super::container::{RunArgs, create};
use super::output::{OutputFormat, human_size, print_table};
use super::{Context, UsageError};
use crate::config::{self, Config};
use crate::runtime::{self, container::Status};

pub const CONFIG_EXAMPLES: &str = "\
Examples:
  lifeboat config check                                 /etc/lifeboat/lifeboat.toml
  lifeboat config check --config ./lifeboat.toml";
pub const UP_EXAMPLES: &str = "\
Examples:
  lifeboat up                    start every service in the config (create, or recreate if changed)
  lifeboat up website            just one
  lifeboat down website          stop and remove it (its volumes stay)";
pub const AGENT_EXAMPLES: &str = "\
Examples:
  lifeboat agent                                        run every job on its schedule (systemd runs this)
  lifeboat --log-format json agent --config /etc/lifeboat/lifeboat.toml
  systemctl reload lifeboat-agent                       re-read the config (SIGHUP)
  lifeboat status                                       every job's last and next run";
pub const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  lifeboat completions bash > /etc/bash_completion.d/lifeboat
  lifeboat completions zsh > /usr/local/share/zsh/site-functions/_lifeboat
  lifeboat manpages /usr/local/share/man/man1";

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long, env = "LIFEBOAT_CONFIG", default_value = config::DEFAULT_PATH, value_name = "FILE")]
    pub config: PathBuf,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&self.config)?)
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration; every problem is reported with its line.
    #[command(after_help = CONFIG_EXAMPLES)]
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Services to act on (default: all).
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Seconds to wait for each service to stop before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// Also remove the services' named volumes (their data!).
    #[arg(short, long)]
    pub volumes: bool,
    /// Services to act on (default: all).
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// Directory to write lifeboat.1 and one page per command into.
    pub dir: PathBuf,
}

pub fn config_command(cmd: ConfigCommand) -> anyhow::Result<i32> {
    match cmd {
        ConfigCommand::Check { config } => {
            let c = config.load()?;
            let jobs = crate::agent::jobs::jobs(&c);
            println!(
                "{}: ok ({} repositories, {} services, {} scheduled jobs)",
                config.config.display(),
                c.repositories.len(),
                c.services.len(),
                jobs.len()
            );
            Ok(0)
        }
    }
}

/// The marker `up` leaves in a container it created: the service definition it was made from.
const SERVICE_MARKER: &str = "service.json";

/// Services in an order where each comes after the one whose network it joins.
fn ordered(config: &Config, wanted: &[String]) -> anyhow::Result<Vec<String>> {
    for w in wanted {
        if !config.services.contains_key(w) {
            return Err(UsageError(format!("no service {w:?} in the configuration")).into());
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(config: &Config, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<String>, depth: usize) {
        if depth > config.services.len() || !seen.insert(name.to_string()) {
            return;
        }
        if let Some(other) = config.services[name].network.as_ref().and_then(|n| n.get_ref().strip_prefix("container:"))
            && config.services.contains_key(other)
        {
            visit(config, other, seen, out, depth + 1);
        }
        out.push(name.to_string());
    }
    let names: Vec<&String> =
        if wanted.is_empty() { config.services.keys().collect() } else { wanted.iter().collect() };
    for n in names {
        visit(config, n, &mut seen, &mut out, 0);
    }
    Ok(out)
}

fn run_args(name: &str, svc: &config::Service) -> RunArgs {
    RunArgs {
        detach: true,
        interactive: false,
        tty: false,
        rm: false,
        name: Some(name.to_string()),
        publish: svc.ports.clone(),
        publish_all: false,
        env: svc.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        env_file: Vec::new(),
        volume: svc.volumes.clone(),
        workdir: svc.workdir.clone(),
        user: svc.user.clone(),
        entrypoint: svc.entrypoint.clone(),
        hostname: svc.hostname.clone(),
        restart: svc.restart.as_ref().map(|r| r.get_ref().clone()).unwrap_or_else(|| "unless-stopped".into()),
        network: svc.network.as_ref().map(|n| n.get_ref().clone()).unwrap_or_else(|| "private".into()),
        memory: svc.memory.clone(),
        cpus: svc.cpus,
        pids_limit: svc.pids_limit,
        read_only: svc.read_only,
        init: svc.init,
        health_cmd: svc.healthcheck.as_ref().map(|h| h.command.clone()),
        health_interval: svc
            .healthcheck
            .as_ref()
            .and_then(|h| h.interval.as_ref())
            .and_then(|i| config::parse_duration(i.get_ref()).ok())
            .map_or(30, |d| d.as_secs()),
        image: svc.image.get_ref().clone(),
        command: svc.command.clone().unwrap_or_default(),
    }
}

/// Creates, recreates (definition changed) or starts each service; leaves alone what already
/// runs as defined. Containers not created by `up` are never touched.
pub fn up(ctx: &Context, a: UpArgs) -> anyhow::Result<i32> {
    let config = a.config.load()?;
    let paths = ctx.paths();
    let containers = crate::runtime::container::Containers::open(&ctx.root)?;
    let mut code = 0;
    for name in ordered(&config, &a.services)? {
        let svc = &config.services[&name];
        let wanted = serde_json::to_string_pretty(svc)?;
        let result = (|| -> anyhow::Result<&'static str> {
            if let Ok(existing) = containers.find(&name) {
                let marker = containers.dir(&existing.id).join(SERVICE_MARKER);
                let Ok(had) = std::fs::read_to_string(&marker) else {
                    anyhow::bail!(crate::runtime::container::ContainerError::Conflict(format!(
                        "a container named {name} exists that `up` did not create (run or restore made it); \
                         leaving it alone — remove it to let `up` manage the service"
                    )));
                };
                let state = runtime::observed_state(&containers, &existing.id)?;
                // A container joins another's network by ID: if that one was recreated, so
                // must this one be.
                let peer_moved = match &existing.network {
                    crate::runtime::container::NetworkMode::Container(id) => {
                        let peer = svc.network.as_ref().and_then(|n| n.get_ref().strip_prefix("container:"));
                        peer.and_then(|p| containers.find(p).ok()).is_none_or(|c| c.id != *id)
                    }
                    _ => false,
                };
                if had == wanted && !peer_moved {
                    if matches!(state.status, Status::Running | Status::Paused | Status::Restarting) {
                        return Ok("up to date");
                    }
                    runtime::start(&paths, &existing.id)?;
                    return Ok("started");
                }
                runtime::remove(&paths, &existing.id, true)?;
                let c = create(ctx, &run_args(&name, svc))?;
                crate::fsutil::write_atomic(&containers.dir(&c.id).join(SERVICE_MARKER), wanted.as_bytes())?;
                runtime::start(&paths, &c.id)?;
                return Ok(if had == wanted {
                    "recreated (the container whose network it joins was recreated)"
                } else {
                    "recreated (definition changed)"
                });
            }
            let c = create(ctx, &run_args(&name, svc))?;
            crate::fsutil::write_atomic(&containers.dir(&c.id).join(SERVICE_MARKER), wanted.as_bytes())?;
            runtime::start(&paths, &c.id)?;
            Ok("created")
        })();
        match result {
            Ok(what) => println!("{name}: {what}"),
            Err(e) => {
                eprintln!("lifeboat: {name}: {}", crate::error::describe(&e));
                code = code.max(crate::error::exit_code(&e));
            }
        }
    }
    Ok(code)
}

/// Stops and removes the services' containers (in reverse order); volumes stay unless -v.
pub fn down(ctx: &Context, a: DownArgs) -> anyhow::Result<i32> {
    let config = a.config.load()?;
    let paths = ctx.paths();
    let containers = crate::runtime::container::Containers::open(&ctx.root)?;
    let vols = crate::runtime::volume::Volumes::open(&ctx.root)?;
    let mut code = 0;
    for name in ordered(&config, &a.services)?.into_iter().rev() {
        let Ok(c) = containers.find(&name) else {
            println!("{name}: not running");
            continue;
        };
        let result = (|| -> anyhow::Result<()> {
            if !containers.dir(&c.id).join(SERVICE_MARKER).exists() {
                anyhow::bail!(crate::runtime::container::ContainerError::Conflict(format!(
                    "container {name} was not created by `up`; leaving it alone (use lifeboat rm)"
                )));
            }
            runtime::stop(&paths, &c.id, Duration::from_secs(a.time))?;
            runtime::remove(&paths, &c.id, true)?;
            if a.volumes {
                for m in &c.mounts {
                    if let crate::runtime::container::MountSource::Volume { name: v } = &m.source {
                        vols.remove(v)?;
                    }
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => println!("{name}: removed"),
            Err(e) => {
                eprintln!("lifeboat: {name}: {}", crate::error::describe(&e));
                code = code.max(crate::error::exit_code(&e));
            }
        }
    }
    Ok(code)
}

pub fn agent(ctx: &Context, a: AgentArgs) -> anyhow::Result<i32> {
    crate::agent::run(crate::agent::Options {
        config_path: a.config.config,
        root: ctx.root.clone(),
        run_root: ctx.run_root.clone(),
    })?;
    Ok(0)
}

fn short_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

pub fn status(ctx: &Context, a: StatusArgs) -> anyhow::Result<i32> {
    let config = a.config.load()?;
    let (agent, jobs) = crate::agent::status(&config, &ctx.root);
    if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&json!({"agent_pid": agent, "jobs": jobs}))?);
        return Ok(0);
    }
    match agent {
        Some(pid) => println!("agent: running (pid {pid})"),
        None => println!("agent: not running"),
    }
    let mut rows = Vec::new();
    for j in &jobs {
        let last = j.state.last.as_ref();
        let ms = |v: Option<u64>| v.map(|m| format!("{:.1}s", m as f64 / 1000.0)).unwrap_or_else(|| "-".into());
        rows.push(vec![
            j.job.clone(),
            j.schedule.clone(),
            last.map(|r| short_time(&r.finished)).unwrap_or_else(|| "never".into()),
            last.map(|r| if r.ok { "ok".to_string() } else { "FAILED".to_string() }).unwrap_or_else(|| "-".into()),
            ms(last.map(|r| r.duration_ms)),
            last.and_then(|r| r.bytes_added).map(human_size).unwrap_or_else(|| "-".into()),
            last.and_then(|r| r.frozen_ms).map(|m| format!("{m} ms")).unwrap_or_else(|| "-".into()),
            ms(last.and_then(|r| r.time_to_healthy_ms)),
            j.next_run.as_deref().map(short_time).unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(
        &["JOB", "SCHEDULE", "LAST RUN", "RESULT", "DURATION", "ADDED", "FROZEN", "HEALTHY IN", "NEXT RUN"],
        &rows,
    );
    for j in &jobs {
        if let Some(e) = j.state.last.as_ref().and_then(|r| r.error.as_ref()) {
            println!("{}: {e}", j.job);
        }
    }
    Ok(0)
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "lifeboat", &mut script);
    std::io::Write::write_all(&mut std::io::stdout(), &script)?;
    Ok(0)
}

pub fn manpages(a: ManpagesArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("cannot create {}", a.dir.display()))?;
    let cmd = super::Cli::command();
    let mut n = 0;
    write_pages(&cmd, "lifeboat", &a.dir, &mut n)?;
    println!("wrote {n} man pages to {}", a.dir.display());
    Ok(0)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, n: &mut usize) -> anyhow::Result<()> {
    let cmd = cmd.clone().name(name.to_string()).bin_name(name.replace('-', " "));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.1")), out)?;
    *n += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, n)?;
    }
    Ok(())
}
