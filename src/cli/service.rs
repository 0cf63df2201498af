//! Config-driven commands: config check, up, down, agent, status; and shell completions and
//! man pages generated from the command definitions.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Subcommand};
use serde_json::json;

use super::Context;
use super::output::{OutputFormat, human_size, print_table};
use lifeboat::ops::services;

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

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration; every problem is reported with its line.
    #[command(after_help = CONFIG_EXAMPLES)]
    Check,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// A Compose file (or -p): bring up that project instead of the configuration's services
    /// (a Compose file in this directory is used when there is no configuration).
    #[command(flatten)]
    pub compose: super::compose::ProjectArgs,
    /// With a Compose file: build images with a `build:` even if they exist.
    #[arg(long)]
    pub build: bool,
    /// Services to act on (default: all).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// A Compose file (or -p): take down that project instead of the configuration's services.
    #[command(flatten)]
    pub compose: super::compose::ProjectArgs,
    /// Seconds to wait for each service to stop before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    /// Also remove the services' named volumes (their data!); one another container still
    /// uses is kept, and said.
    #[arg(short, long)]
    pub volumes: bool,
    /// Services to act on (default: all).
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// Directory to write lifeboat.1 and one page per command into.
    pub dir: PathBuf,
}

pub fn config_command(ctx: &Context, cmd: ConfigCommand) -> anyhow::Result<i32> {
    match cmd {
        ConfigCommand::Check => {
            let c = services::check_config(&ctx.config_path)?;
            println!(
                "{}: ok ({} repositories, {} services, {} scheduled jobs)",
                ctx.config_path.display(),
                c.repositories,
                c.services,
                c.jobs
            );
            Ok(0)
        }
    }
}

/// Prints what happened to each service; the exit code of the worst failure, or 0.
pub(crate) fn outcomes(list: Vec<services::ServiceOutcome>) -> i32 {
    let mut code = 0;
    for o in list {
        match (o.action, o.error) {
            (Some(what), _) => println!("{}: {what}", o.service),
            (None, Some(e)) => {
                eprintln!("lifeboat: {}: {}", o.service, lifeboat::error::describe(&e));
                code = code.max(lifeboat::error::exit_code(&e));
            }
            (None, None) => {}
        }
    }
    code
}

/// Creates, recreates (definition changed) or starts each service; leaves alone what already
/// runs as defined. Containers not created by `up` are never touched.
pub fn up(ctx: &Context, a: UpArgs) -> anyhow::Result<i32> {
    if let Some(args) = compose_instead(ctx, &a.compose) {
        return super::compose::up(ctx, &args.load(lifeboat::compose::Keys::Refuse)?, &a.services, a.build, 300);
    }
    let config = ctx.config()?;
    Ok(outcomes(services::up(ctx.host(), &config, &a.services)?))
}

/// Stops and removes the services' containers (in reverse order); volumes stay unless -v.
pub fn down(ctx: &Context, a: DownArgs) -> anyhow::Result<i32> {
    if let Some(args) = compose_instead(ctx, &a.compose) {
        if !a.services.is_empty() {
            return Err(lifeboat::error::UsageError("down of a Compose project takes no service names".into()).into());
        }
        return super::compose::down(ctx, &args.load(lifeboat::compose::Keys::Warn)?, a.time, a.volumes);
    }
    let config = ctx.config()?;
    Ok(outcomes(services::down(ctx.host(), &config, &a.services, Duration::from_secs(a.time), a.volumes)?))
}

/// Whether `up`/`down` act on a Compose project: one was named (-f, -p), or none was and no
/// configuration is given or present while this directory holds a Compose file.
fn compose_instead(ctx: &Context, args: &super::compose::ProjectArgs) -> Option<super::compose::ProjectArgs> {
    if args.file.is_some() || args.project.is_some() {
        return Some(args.clone());
    }
    let cwd = std::env::current_dir().ok()?;
    lifeboat::compose::instead_of_config(&cwd, &ctx.config_path, ctx.config_named()).then(|| args.clone())
}

pub fn agent(ctx: &Context, _a: AgentArgs) -> anyhow::Result<i32> {
    lifeboat::agent::run(lifeboat::agent::Options {
        config_path: ctx.config_path.clone(),
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

/// How long ago an RFC 3339 time was, as `ps` says it (`5 hours ago`).
fn age(rfc3339: &str) -> String {
    super::output::ago(Some(rfc3339))
}

/// Everything at a glance: each service's newest snapshot, each repository's size and
/// snapshot count, and the agent's jobs (running ones as running, a drill with the snapshot
/// it restored). Without a configuration: the host's default repository.
pub fn status(ctx: &Context, a: StatusArgs) -> anyhow::Result<i32> {
    let config = match ctx.config() {
        Ok(c) => Some(c),
        // Nothing configured at the default place: what the host has, without jobs.
        Err(e) if !ctx.config_named() && lifeboat::error::exit_code(&e) == lifeboat::error::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let (agent, jobs) = match &config {
        Some(c) => lifeboat::agent::status(c, &ctx.root),
        None => (None, Vec::new()),
    };
    use lifeboat::ops::backup;
    let fallback = std::env::var_os("LIFEBOAT_PASSWORD_FILE").map(std::path::PathBuf::from);
    let looked_at = backup::repositories_at_a_glance(ctx.host(), config.as_ref(), fallback.as_deref());
    // A store that does not answer holds `status` up for 15 s at most.
    let repositories = backup::repository_summaries(ctx.host(), &looked_at, Duration::from_secs(15));
    // Instant restores still filling their volumes (or stuck doing so).
    let hydrations: Vec<(String, lifeboat::runtime::hydration::Hydration)> =
        lifeboat::ops::containers::list(ctx.host(), true)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.hydration.map(|h| (r.names, h)))
            .collect();
    if a.format == OutputFormat::Json {
        let hydrating: Vec<_> = hydrations.iter().map(|(name, h)| json!({"name": name, "hydration": h})).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"agent_pid": agent, "jobs": jobs, "repositories": repositories, "hydrating": hydrating})
            )?
        );
        return Ok(0);
    }
    match (&config, agent) {
        (None, _) => println!("no configuration at {} (no scheduled jobs)", ctx.config_path.display()),
        (Some(_), Some(pid)) => println!("agent: running (pid {pid})"),
        (Some(_), None) => println!("agent: not running"),
    }
    // Services: the newest snapshot of each, in each repository.
    let mut services = Vec::new();
    for r in &repositories {
        for (service, last) in &r.services {
            services.push(vec![
                service.clone(),
                last.id.chars().take(8).collect(),
                age(&last.time),
                human_size(last.added_bytes),
                r.name.clone(),
            ]);
        }
    }
    services.sort();
    if !services.is_empty() {
        println!();
        print_table(&["SERVICE", "LAST SNAPSHOT", "TAKEN", "ADDED", "REPOSITORY"], &services);
    }
    if !hydrations.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = hydrations
            .iter()
            .map(|(name, h)| {
                vec![
                    name.clone(),
                    format!("{}%", h.percent()),
                    format!("{} of {}", human_size(h.done_bytes), human_size(h.total_bytes)),
                    human_size(h.fetched_bytes),
                    h.status_note().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["RESTORING", "DONE", "IN PLACE", "FETCHED", "STATE"], &rows);
    }
    if !repositories.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = repositories
            .iter()
            .map(|r| match &r.error {
                None => vec![r.name.clone(), r.snapshots.to_string(), human_size(r.stored_bytes), r.location.clone()],
                Some(e) => {
                    let first = e.lines().next().unwrap_or_default();
                    vec![r.name.clone(), "?".into(), "?".into(), format!("{} (cannot read: {first})", r.location)]
                }
            })
            .collect();
        print_table(&["REPOSITORY", "SNAPSHOTS", "SIZE", "LOCATION"], &rows);
    }
    if jobs.is_empty() {
        return Ok(0);
    }
    println!();
    let mut rows = Vec::new();
    for j in &jobs {
        let last = j.state.last.as_ref();
        let ms = |v: Option<u64>| v.map(|m| format!("{:.1}s", m as f64 / 1000.0)).unwrap_or_else(|| "-".into());
        let result = match (&j.state.running_since, agent) {
            (Some(since), Some(_)) => format!("running since {}", short_time(since)),
            _ => last.map(|r| if r.ok { "ok".to_string() } else { "FAILED".to_string() }).unwrap_or_else(|| "-".into()),
        };
        rows.push(vec![
            j.job.clone(),
            j.schedule.clone(),
            last.map(|r| short_time(&r.finished)).unwrap_or_else(|| "never".into()),
            result,
            ms(last.map(|r| r.duration_ms)),
            last.and_then(|r| r.bytes_added).map(human_size).unwrap_or_else(|| "-".into()),
            last.and_then(|r| r.frozen_ms).map(|m| format!("{m} ms")).unwrap_or_else(|| "-".into()),
            last.and_then(|r| r.snapshots.first()).map(|id| id.chars().take(8).collect()).unwrap_or_else(|| "-".into()),
            ms(last.and_then(|r| r.time_to_healthy_ms)),
            j.next_run.as_deref().map(short_time).unwrap_or_else(|| "-".into()),
        ]);
    }
    print_table(
        &["JOB", "SCHEDULE", "LAST RUN", "RESULT", "DURATION", "ADDED", "FROZEN", "SNAPSHOT", "HEALTHY IN", "NEXT RUN"],
        &rows,
    );
    for j in &jobs {
        if let Some(e) = j.state.last.as_ref().and_then(|r| r.error.as_ref()) {
            println!("{}: {e}", j.job);
        }
    }
    Ok(0)
}

/// The shell's script: it asks this program, at each completion, for the commands, flags
/// and the names (containers, images, volumes, services, snapshots) this host has then.
pub fn completions(a: CompletionsArgs) -> anyhow::Result<i32> {
    use clap_complete::env::EnvCompleter as _;
    let mut script = Vec::new();
    let (var, name) = (super::complete::VAR, "lifeboat");
    match a.shell {
        CompletionShell::Bash => clap_complete::env::Bash.write_registration(var, name, name, name, &mut script)?,
        CompletionShell::Zsh => {
            clap_complete::env::Zsh.write_registration(var, name, name, name, &mut script)?;
            // Installed as an autoloaded `_lifeboat`, the first completion runs this file:
            // it completes too, instead of only defining the function.
            script.extend_from_slice(
                b"if [[ \"${funcstack[1]}\" == _lifeboat ]]; then _clap_dynamic_completer_lifeboat \"$@\"; fi\n",
            );
        }
        CompletionShell::Fish => clap_complete::env::Fish.write_registration(var, name, name, name, &mut script)?,
    }
    std::io::Write::write_all(&mut std::io::stdout(), &script)?;
    Ok(0)
}

/// One page: clap's sections, then the command's examples as written (lines kept, not
/// reflowed) and SEE ALSO.
fn render_page(cmd: &clap::Command, name: &str) -> anyhow::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        out.extend_from_slice(examples_section(&after.to_string()).as_bytes());
    }
    out.extend_from_slice(see_also(cmd, name).as_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// Text for roff: backslashes escaped, and a line starting with `.` or `'` kept as text.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') { format!("\\&{escaped}") } else { escaped }
}

/// The help's closing text as its own section: indented lines (the examples) printed line
/// for line in a fixed-width block (`.nf`), other lines as prose paragraphs.
fn examples_section(text: &str) -> String {
    let mut out = String::from(".SH EXAMPLES\n");
    let mut verbatim = false;
    let close = |out: &mut String, verbatim: &mut bool| {
        if *verbatim {
            out.push_str(".RE\n.fi\n");
            *verbatim = false;
        }
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            close(&mut out, &mut verbatim);
            out.push_str(".PP\n");
        } else if line.starts_with(' ') {
            if !verbatim {
                out.push_str(".PP\n.nf\n.RS 4\n");
                verbatim = true;
            }
            out.push_str(&roff_line(line.trim_start()));
            out.push('\n');
        } else if i == 0 && line == "Examples:" {
            // The section's own title already says it.
        } else {
            if verbatim {
                close(&mut out, &mut verbatim);
                out.push_str(".PP\n");
            }
            out.push_str(&roff_line(line));
            out.push('\n');
        }
    }
    close(&mut out, &mut verbatim);
    out
}

/// Pages that go with each command's.
const RELATED: &[(&str, &[&str])] = &[
    ("snapshot", &["snapshots", "restore", "forget", "agent", "status"]),
    ("snapshots", &["snapshot", "restore", "tag", "forget"]),
    ("restore", &["snapshot", "snapshots", "ls", "find", "drill", "cp"]),
    ("ls", &["find", "dump", "diff", "restore"]),
    ("find", &["ls", "dump", "restore"]),
    ("dump", &["ls", "find", "diff", "restore"]),
    ("mount", &["ls", "find", "dump", "restore"]),
    ("drill", &["restore", "agent", "status"]),
    ("forget", &["prune", "snapshots", "check"]),
    ("prune", &["forget", "check", "repo"]),
    ("check", &["prune", "repo"]),
    ("copy", &["snapshots", "repo"]),
    ("run", &["ps", "logs", "exec", "cp", "stop", "rm", "snapshot"]),
    ("ps", &["run", "inspect", "logs", "stats"]),
    ("logs", &["ps", "run"]),
    ("exec", &["run", "cp"]),
    ("cp", &["exec", "restore", "export"]),
    ("build", &["images", "run", "push", "tag"]),
    ("images", &["rmi", "tag", "build", "system"]),
    ("system", &["images", "volume", "ps"]),
    ("volume", &["run", "system", "snapshot"]),
    ("agent", &["status", "config", "up", "snapshot", "drill"]),
    ("status", &["agent", "snapshots", "drill"]),
    ("up", &["down", "config", "agent"]),
    ("down", &["up", "config"]),
    ("config", &["up", "agent", "status"]),
    ("push", &["pull", "login", "snapshot"]),
    ("pull", &["push", "login", "images"]),
];

/// SEE ALSO: the main page, the page this one belongs under, and the related commands'.
fn see_also(cmd: &clap::Command, name: &str) -> String {
    let mut refs: Vec<String> = Vec::new();
    if name != "lifeboat" {
        refs.push("lifeboat".into());
        if let Some((parent, _)) = name.rsplit_once('-').filter(|(p, _)| *p != "lifeboat") {
            refs.push(parent.to_string());
        }
    }
    let own = name.strip_prefix("lifeboat-").unwrap_or("");
    if let Some((_, related)) = RELATED.iter().find(|(c, _)| *c == own) {
        refs.extend(related.iter().map(|r| format!("lifeboat-{r}")));
    }
    if name == "lifeboat" {
        refs.extend(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .map(|s| format!("lifeboat-{}", s.get_name())),
        );
    }
    refs.dedup();
    let last = refs.len().saturating_sub(1);
    let list: Vec<String> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| format!(".BR {} (1){}", r.replace('-', "\\-"), if i < last { "," } else { "" }))
        .collect();
    format!(".SH SEE ALSO\n{}\n", list.join("\n"))
}

pub fn manpages(a: ManpagesArgs) -> anyhow::Result<i32> {
    let mut pages = Vec::new();
    render_pages(&super::Cli::command(), "lifeboat", &mut pages)?;
    let n = lifeboat::ops::manpages::install(&a.dir, &pages)?;
    println!("wrote {n} man pages to {}", a.dir.display());
    Ok(0)
}

fn render_pages(cmd: &clap::Command, name: &str, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let cmd = cmd.clone().name(name.to_string()).bin_name(name.replace('-', " "));
    pages.push((name.to_string(), render_page(&cmd, name)?));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        render_pages(sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

#[cfg(test)]
mod man_tests {
    use super::*;

    #[test]
    fn examples_keep_their_lines_and_roff_cannot_take_them_for_requests() {
        let text = "Examples:\n  lifeboat run -d --name web site:1\n  .hidden \\n\n'quoted prose.\n.fi\n\nMore prose.";
        let roff = examples_section(text);
        assert_eq!(
            roff,
            ".SH EXAMPLES\n.PP\n.nf\n.RS 4\nlifeboat run \\-d \\-\\-name web site:1\n\\&.hidden \\en\n.RE\n.fi\n.PP\n\\&'quoted prose.\n\\&.fi\n.PP\nMore prose.\n"
        );
    }
}
