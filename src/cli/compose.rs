//! `lifeboat compose …` (and `up`/`down -f compose.yaml`): Compose projects run by Lifeboat's
//! runtime.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::Context;
use super::output::{OutputFormat, print_table};
use lifeboat::compose::{self, Project};
use lifeboat::ops::compose as ops;

pub const COMPOSE_EXAMPLES: &str = "\
Examples:
  lifeboat compose up                       compose.yaml of this directory: build, create, start
  lifeboat compose -f blog/compose.yaml up db
  lifeboat compose ps
  lifeboat compose logs -f wordpress
  lifeboat compose config                   check the file: every unsupported key named with its line
  lifeboat snapshot --compose .             the project's containers frozen together, as one stack
  lifeboat restore --compose . --replace    the project back as it was
  lifeboat compose down -v                  remove it, with the volumes it owns";

/// Which project: `-f FILE` (or the Compose file of this directory) and `-p NAME`.
#[derive(Debug, Args, Clone, Default)]
pub struct ProjectArgs {
    /// The Compose file (default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml in this directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The project's name (default: the file's `name:`, else its directory's name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project: Option<String>,
}

impl ProjectArgs {
    /// Reads the project (a directory given as FILE is searched for a Compose file); keys
    /// Lifeboat does not support are refused or warned about, as `unsupported` says.
    pub fn load(&self, unsupported: compose::Keys) -> anyhow::Result<Project> {
        let cwd = std::env::current_dir()?;
        let file = compose::find_file(self.file.as_deref(), &cwd)?;
        Ok(compose::load(&file, self.project.as_deref(), &|k| std::env::var(k).ok(), unsupported)?)
    }
}

#[derive(Debug, Args)]
pub struct ComposeArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Build what needs building, then create, recreate (definition changed) or start each
    /// service after those it depends on. Always in the background (-d is accepted).
    Up(ComposeUpArgs),
    /// Stop and remove the project's containers and network (its volumes with -v).
    Down(ComposeDownArgs),
    /// The project's containers.
    Ps(ComposePsArgs),
    /// The services' output, each line prefixed with its service.
    Logs(ComposeLogsArgs),
    /// Check the file and print what it runs (every unsupported key is named with its line).
    Config(ComposePsArgs),
}

#[derive(Debug, Args)]
pub struct ComposeUpArgs {
    /// Accepted for Docker's habit: services always run in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Build images with a `build:` even if they exist.
    #[arg(long)]
    pub build: bool,
    /// Seconds to wait for a dependency to be healthy or complete.
    #[arg(long, default_value_t = 300)]
    pub wait_timeout: u64,
    /// Services to start (and what they depend on); default: all.
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ComposeDownArgs {
    /// Seconds to wait for each container to stop before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub timeout: u64,
    /// Also remove the volumes the project owns (not external ones) and anonymous volumes.
    #[arg(short, long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
pub struct ComposePsArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ComposeLogsArgs {
    /// Keep following new output until every container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each.
    #[arg(short = 'n', long)]
    pub tail: Option<usize>,
    /// Services (default: all).
    pub services: Vec<String>,
}

pub fn compose(ctx: &Context, a: ComposeArgs) -> anyhow::Result<i32> {
    // What runs must be what the file says; what lists or removes must always work.
    let unsupported = match a.command {
        ComposeCommand::Up(_) | ComposeCommand::Config(_) => compose::Keys::Refuse,
        _ => compose::Keys::Warn,
    };
    let project = a.project.load(unsupported)?;
    match a.command {
        ComposeCommand::Up(u) => up(ctx, &project, &u.services, u.build, u.wait_timeout),
        ComposeCommand::Down(d) => down(ctx, &project, d.timeout, d.volumes),
        ComposeCommand::Ps(p) => ps(ctx, &project, p.format),
        ComposeCommand::Logs(l) => logs(ctx, &project, l),
        ComposeCommand::Config(c) => config(&project, c.format),
    }
}

pub fn up(ctx: &Context, project: &Project, services: &[String], build: bool, wait: u64) -> anyhow::Result<i32> {
    let opts = ops::UpOptions { build, wait: Duration::from_secs(wait) };
    let done = ops::up(ctx.host(), project, services, &opts, &mut |line| eprintln!("{line}"))?;
    Ok(super::service::outcomes(done))
}

pub fn down(ctx: &Context, project: &Project, timeout: u64, volumes: bool) -> anyhow::Result<i32> {
    Ok(super::service::outcomes(ops::down(ctx.host(), project, Duration::from_secs(timeout), volumes)?))
}

fn ps(ctx: &Context, project: &Project, format: OutputFormat) -> anyhow::Result<i32> {
    let rows = ops::ps(ctx.host(), project)?;
    if format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let service =
        |r: &lifeboat::ops::containers::ContainerRow| r.labels.get(compose::SERVICE_LABEL).cloned().unwrap_or_default();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.names.clone(),
                r.image.clone(),
                service(r),
                r.status.clone(),
                if r.up { r.ports.clone() } else { String::new() },
            ]
        })
        .collect();
    print_table(&["NAME", "IMAGE", "SERVICE", "STATUS", "PORTS"], &table);
    Ok(0)
}

fn logs(ctx: &Context, project: &Project, a: ComposeLogsArgs) -> anyhow::Result<i32> {
    let services = ops::selected(project, &a.services)?;
    let services: Vec<&compose::Service> = if a.services.is_empty() {
        services
    } else {
        services.into_iter().filter(|s| a.services.contains(&s.name)).collect()
    };
    let width = services.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let opts = lifeboat::ops::containers::LogOptions { since: None, tail: a.tail, follow: a.follow };
    let host = ctx.host();
    // One reader per service, all at once (following waits on each).
    std::thread::scope(|scope| {
        let handles: Vec<_> = services
            .iter()
            .map(|s| {
                let opts = opts.clone();
                let prefix = format!("{:width$} | ", s.name);
                scope.spawn(move || {
                    lifeboat::ops::containers::logs(host, &s.container, &opts, &mut |lines| {
                        let mut text = Vec::new();
                        for l in lines {
                            text.extend_from_slice(prefix.as_bytes());
                            text.extend_from_slice(l.log.as_bytes());
                        }
                        // One write per batch: lines of two services never interleave mid-line.
                        if std::io::stdout().lock().write_all(&text).is_err() {
                            return std::ops::ControlFlow::Break(());
                        }
                        std::ops::ControlFlow::Continue(())
                    })
                })
            })
            .collect();
        let mut code = 0;
        for (s, h) in services.iter().zip(handles) {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    eprintln!("lifeboat: {}: {}", s.name, lifeboat::error::describe(&e));
                    code = code.max(lifeboat::error::exit_code(&e));
                }
                Err(_) => code = 1,
            }
        }
        Ok(code)
    })
}

fn config(project: &Project, format: OutputFormat) -> anyhow::Result<i32> {
    let services: Vec<serde_json::Value> = project
        .services
        .iter()
        .map(|s| {
            serde_json::json!({
                "service": s.name,
                "container": s.container,
                "image": s.request.image,
                "build": s.build.as_ref().map(|b| b.context.display().to_string()),
                "depends_on": s.depends_on.iter().map(|(d, c)| format!("{d} ({c:?})")).collect::<Vec<_>>(),
                "ports": s.request.ports.iter().map(|p| format!("{}:{}->{}/{:?}", p.host_ip, p.host_port, p.container_port, p.protocol)).collect::<Vec<_>>(),
                "consistency": s.consistency,
            })
        })
        .collect();
    if format == OutputFormat::Json {
        let v = serde_json::json!({
            "project": project.name,
            "file": project.file,
            "network": project.network,
            "volumes": project.volumes,
            "services": services,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("{}: ok (project {}, {} services)", project.file.display(), project.name, project.services.len());
    for s in &project.services {
        let after: Vec<&str> = s.depends_on.iter().map(|(d, _)| d.as_str()).collect();
        let after = if after.is_empty() { String::new() } else { format!(" after {}", after.join(", ")) };
        println!("  {} → container {} ({}){after}", s.name, s.container, s.request.image);
    }
    Ok(0)
}
