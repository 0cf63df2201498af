//! The `lifeboat.toml` model: repositories, services, and the jobs the agent runs on them
//! (snapshots with retention, replication, checks, restore drills), plus notifications and
//! metrics.
//!
//! Loading parses and validates everything at once; every problem is reported with its line.
//! This module never acts on the configuration; `up`/`down` and the agent do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::image::Reference;

pub const DEFAULT_PATH: &str = "/etc/lifeboat/lifeboat.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub agent: AgentSettings,
    #[serde(default)]
    pub notifications: Notifications,
    #[serde(default)]
    pub repositories: BTreeMap<String, Repository>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Services snapshotted together, at one instant (a database and its application).
    #[serde(default)]
    pub stacks: BTreeMap<String, Stack>,
    /// Containers Docker or Podman runs on this host, snapshotted where they run.
    #[serde(default)]
    pub external: BTreeMap<String, External>,
    #[serde(default)]
    pub replications: BTreeMap<String, Replication>,
    #[serde(default)]
    pub checks: BTreeMap<String, Check>,
    #[serde(default)]
    pub drills: BTreeMap<String, Drill>,
    /// How to reach registries, by `HOST[:PORT]` (like Docker's insecure registries).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySettings>,
}

/// How to reach one registry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Speak plain HTTP to it (credentials then travel unencrypted). Default false; loopback
    /// registries may use plain HTTP without it.
    #[serde(default)]
    pub plain_http: bool,
    /// Check its TLS certificate. Default true.
    pub tls_verify: Option<bool>,
}

/// How the agent itself behaves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Serve Prometheus metrics on this address (loopback only, e.g. `127.0.0.1:9787`).
    pub metrics_listen: Option<Spanned<String>>,
    /// Also write the metrics to this file, for node_exporter's textfile collector.
    pub metrics_textfile: Option<PathBuf>,
    /// Delay each run by a random time up to this long (`10m`), so many hosts do not start at once.
    pub randomized_delay: Option<Spanned<String>>,
    /// Run a job once at start if its last scheduled time passed while the agent was down.
    /// Default true (systemd's `Persistent=true`).
    pub catch_up: Option<bool>,
    /// On SIGTERM, how long running jobs may take to finish before they are stopped. Default `60s`.
    pub shutdown_grace: Option<Spanned<String>>,
    /// How long a job waits for a repository locked by another job or host. Default `30m`.
    pub retry_lock: Option<Spanned<String>>,
    /// Where the agent keeps its state (last runs). Default `<root>/agent`.
    pub state_dir: Option<PathBuf>,
}

/// Who hears about runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// A healthchecks.io-style URL: `URL/start` when a job starts, `URL` on success,
    /// `URL/fail` on failure.
    pub ping_url: Option<Spanned<String>>,
    /// A shell command run when a job fails; it gets `LIFEBOAT_JOB`, `LIFEBOAT_JOB_KIND` and
    /// `LIFEBOAT_ERROR` in its environment.
    pub on_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// A local path or `s3://bucket/prefix`.
    pub url: Spanned<String>,
    /// File holding the repository password (never the password itself).
    pub password_file: Option<PathBuf>,
    pub s3: Option<S3Options>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    /// An AWS-style credentials file; otherwise the standard AWS chain applies.
    pub credentials_file: Option<PathBuf>,
    pub profile: Option<String>,
}

impl Repository {
    /// The location as the command line takes it (S3 options become query parameters).
    pub fn location(&self) -> String {
        let url = self.url.get_ref().clone();
        let Some(s3) = &self.s3 else { return url };
        let mut params = Vec::new();
        if let Some(e) = &s3.endpoint {
            params.push(format!("endpoint={e}"));
        }
        if let Some(r) = &s3.region {
            params.push(format!("region={r}"));
        }
        if s3.path_style {
            params.push("path-style=true".to_string());
        }
        if let Some(c) = &s3.credentials_file {
            params.push(format!("credentials-file={}", c.display()));
        }
        if let Some(p) = &s3.profile {
            params.push(format!("profile={p}"));
        }
        if params.is_empty() {
            return url;
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{}", params.join("&"))
    }
}

/// A service, as `lifeboat run` would start it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub image: Spanned<String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<String>,
    #[serde(default)]
    pub ports: Vec<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<Spanned<String>>,
    pub network: Option<Spanned<String>>,
    pub restart: Option<Spanned<String>>,
    pub hostname: Option<Spanned<String>>,
    pub user: Option<String>,
    pub workdir: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
    pub cpus: Option<Spanned<f64>>,
    pub pids_limit: Option<Spanned<i64>>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub init: bool,
    pub healthcheck: Option<HealthCheck>,
    /// How its data is made consistent for a snapshot: `freeze` (default), `mariadb`,
    /// `postgres`, `sqlite:/path/db`. Not part of how it runs.
    #[serde(default, skip_serializing)]
    pub consistency: Option<Spanned<String>>,
    /// Not part of how the service runs: changing it never recreates the container.
    #[serde(skip_serializing)]
    pub snapshot: Option<SnapshotPolicy>,
}

/// Containers of another engine (`docker://NAME`, `podman://NAME`), frozen and captured
/// together on a schedule; restored like any service (`restore NAME`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct External {
    pub containers: Vec<Spanned<String>>,
    /// A consistency recipe for some of them, by the name given in `containers`.
    #[serde(default)]
    pub consistency: BTreeMap<String, Spanned<String>>,
    pub snapshot: Option<SnapshotPolicy>,
}

impl External {
    /// The containers' names (the snapshots' service names).
    pub fn names(&self) -> Vec<String> {
        self.containers
            .iter()
            .filter_map(|c| match crate::engine::Target::parse(c.get_ref()) {
                Some(Ok(crate::engine::Target::Container(_, name))) => Some(name),
                _ => None,
            })
            .collect()
    }
}

/// Services frozen and captured together, restored together (`restore db web`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Names under `[services]`, at least two.
    pub services: Vec<Spanned<String>>,
    /// When and where the stack is snapshotted; its members' own hooks and recipes apply.
    pub snapshot: Option<SnapshotPolicy>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Run inside the container with `sh -c`; healthy when it exits 0. Empty with `disable`.
    #[serde(default)]
    pub command: String,
    /// How often (`30s`, `1m`). Default 30s.
    pub interval: Option<Spanned<String>>,
    /// A check still running after this long is killed and fails. Default 30s.
    pub timeout: Option<Spanned<String>>,
    /// Failures in this first while after the start do not count. Default 0s.
    pub start_period: Option<Spanned<String>>,
    /// Consecutive failures that make the service unhealthy. Default 3.
    pub retries: Option<u32>,
    /// No health check, not even the image's (`HEALTHCHECK NONE`).
    #[serde(default)]
    pub disable: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicy {
    /// Cron expression: 5 fields, or 6 with seconds first.
    pub schedule: Spanned<String>,
    /// Names under `[repositories]`; default: the embedded local repository.
    #[serde(default)]
    pub repositories: Vec<Spanned<String>>,
    /// Shell commands run inside the container before the freeze (e.g. a database dump).
    #[serde(default)]
    pub exec_before: Vec<String>,
    #[serde(default)]
    pub exec_after: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// `PATTERN=SIZE`: files so named are a database's pages of that size (`*.ibd=16k`).
    #[serde(default)]
    pub pages: Vec<Spanned<String>>,
    #[serde(default)]
    pub keep: KeepPolicy,
    /// Delete unreferenced data after applying `keep`. Default true.
    pub prune: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl KeepPolicy {
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// Off-site replication: copies every snapshot `to` lacks from `from`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub schedule: Spanned<String>,
}

/// A repository verification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub repository: Spanned<String>,
    pub schedule: Spanned<String>,
    /// Read every byte.
    #[serde(default)]
    pub read_data: bool,
    /// Or a random share of the packs, e.g. `10%`.
    pub read_data_subset: Option<Spanned<String>>,
}

/// A restore rehearsal: the latest snapshot is restored into a throw-away container with no
/// published ports, its health is checked, and it is removed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// The service to rehearse; or `stack`, a `[stacks.NAME]` (the probe checks its last
    /// service, the others pass by their own health check).
    pub service: Option<Spanned<String>>,
    pub stack: Option<Spanned<String>>,
    pub repository: Option<Spanned<String>>,
    pub schedule: Spanned<String>,
    /// An HTTP GET inside the container's network, e.g. `http://localhost:80/`; healthy on 2xx/3xx.
    pub http: Option<Spanned<String>>,
    /// Or a command run inside the container; healthy when it exits 0. Default: the service's
    /// health check, else "the container is running".
    pub command: Option<String>,
    /// How long the service may take to become healthy. Default `2m`.
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", problems.iter().map(|p| format!("{}:{p}", path.display())).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

/// A cron schedule: 5 fields (minute first), or 6 with seconds first. Day-of-week follows
/// Unix cron (0 or 7 = Sunday, 1 = Monday, names allowed); it is translated for the `cron`
/// crate, which numbers Sunday 1.
pub fn parse_schedule(s: &str) -> Result<cron::Schedule, String> {
    let mut fields: Vec<String> = s.split_whitespace().map(String::from).collect();
    match fields.len() {
        5 => fields.insert(0, "0".into()),
        6 => {}
        _ => return Err(format!("schedule {s:?} must have 5 fields (or 6 with seconds first)")),
    }
    let dow = unix_day_of_week(&fields[5]).map_err(|e| format!("schedule {s:?}: day of week: {e}"))?;
    fields[5] = dow;
    cron::Schedule::from_str(&fields.join(" ")).map_err(|e| {
        format!("schedule {s:?} is not a valid cron expression: {}", e.to_string().lines().last().unwrap_or("").trim())
    })
}

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// A Unix cron day-of-week field (`*`, `1-5`, `0,6`, `*/2`, `mon-fri`, `5-7`) as a list of
/// day names, which mean the same to every cron dialect.
fn unix_day_of_week(field: &str) -> Result<String, String> {
    let day = |v: &str| -> Result<usize, String> {
        if let Ok(n) = v.parse::<usize>() {
            return if n <= 7 { Ok(n % 7) } else { Err(format!("{n} is not 0-7")) };
        }
        DAY_NAMES
            .iter()
            .position(|d| d.eq_ignore_ascii_case(v))
            .ok_or_else(|| format!("{v:?} is not a day (0-7 or sun-sat)"))
    };
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (r, st.parse::<usize>().ok().filter(|n| *n > 0).ok_or(format!("bad step in {part:?}"))?),
            None => (part, 1),
        };
        let (from, to) = match range.split_once('-') {
            _ if range == "*" || range == "?" => (0, 6),
            Some((a, b)) => {
                // 7 is Sunday at the end of a range: 5-7 is Fri, Sat, Sun.
                let to = if b == "7" { 7 } else { day(b)? };
                (day(a)?, to)
            }
            None if step > 1 => (day(range)?, 6),
            None => (day(range)?, day(range)?),
        };
        if from > to {
            return Err(format!("range {range:?} runs backwards"));
        }
        for d in (from..=to).step_by(step) {
            days[d % 7] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".into());
    }
    Ok(DAY_NAMES.iter().zip(days).filter(|(_, on)| *on).map(|(n, _)| *n).collect::<Vec<_>>().join(","))
}

/// A duration in the configuration: Docker's grammar (`crate::syntax::duration`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::syntax::duration(s).map_err(|e| e.0)
}

/// Collects problems with the line each one is on.
struct Problems<'a> {
    text: &'a str,
    list: Vec<(usize, String)>,
}

impl Problems<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }
    fn at<T>(&mut self, spanned: &Spanned<T>, message: String) {
        self.list.push((self.line_of(spanned.span().start), message));
    }
    fn check<T, E: std::fmt::Display>(&mut self, spanned: &Spanned<T>, what: &str, r: Result<E, String>) {
        if let Err(e) = r {
            self.at(spanned, format!("{what}: {e}"));
        }
    }
}

impl Config {
    /// The services of stack `name` (`--stack NAME`), in the order the configuration lists them.
    pub fn stack_services(&self, name: &str) -> Result<Vec<String>, crate::error::UsageError> {
        match self.stacks.get(name) {
            Some(stack) => Ok(stack.services.iter().map(|s| s.get_ref().clone()).collect()),
            None if self.stacks.is_empty() => {
                Err(crate::error::UsageError(format!("no stack {name:?}: the configuration defines no [stacks.NAME]")))
            }
            None => Err(crate::error::UsageError(format!(
                "no stack {name:?} in the configuration (its stacks: {})",
                self.stacks.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// `SERVICE=RECIPE` for each of `services` whose configuration names a consistency recipe.
    pub fn recipes(&self, services: &[String]) -> Vec<String> {
        services
            .iter()
            .filter_map(|s| Some(format!("{s}={}", self.services.get(s)?.consistency.as_ref()?.get_ref())))
            .collect()
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
        Config::parse(&text, path)
    }

    /// Parses and validates; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |problems: Vec<String>| ConfigError::Invalid { path: path.to_path_buf(), problems };
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            invalid(vec![match line {
                Some(l) => format!("{l}: {}", e.message().trim_end()),
                None => format!(" {}", e.message().trim_end()),
            }])
        })?;
        let mut p = Problems { text, list: Vec::new() };
        config.validate(&mut p);
        if p.list.is_empty() {
            return Ok(config);
        }
        p.list.sort_by_key(|(line, _)| *line);
        Err(invalid(p.list.into_iter().map(|(line, m)| format!("{line}: {m}")).collect()))
    }

    /// The services from `name` along `network = "container:…"` back to one already met, if
    /// they go round.
    fn network_cycle(&self, name: &str) -> Option<Vec<String>> {
        let mut path = vec![name.to_string()];
        let mut at = name;
        while let Some(next) = self.services.get(at)?.network.as_ref()?.get_ref().strip_prefix("container:") {
            let seen = path.iter().any(|p| p == next);
            path.push(next.to_string());
            if seen {
                return Some(path);
            }
            at = next;
        }
        None
    }

    fn validate(&self, p: &mut Problems<'_>) {
        let repo_exists = |p: &mut Problems<'_>, who: &str, name: &Spanned<String>| {
            if !self.repositories.contains_key(name.get_ref()) {
                p.at(name, format!("{who}: repository {:?} is not defined under [repositories]", name.get_ref()));
            }
        };
        let duration = |p: &mut Problems<'_>, who: &str, d: &Option<Spanned<String>>| {
            if let Some(d) = d {
                p.check(d, who, parse_duration(d.get_ref()).map(|_| ""));
            }
        };
        let policy = |p: &mut Problems<'_>, who: &str, snap: &SnapshotPolicy| {
            p.check(&snap.schedule, &format!("{who} snapshot"), parse_schedule(snap.schedule.get_ref()).map(|_| ""));
            for repo in &snap.repositories {
                repo_exists(p, &format!("{who} snapshot"), repo);
            }
            for rule in &snap.pages {
                p.check(
                    rule,
                    &format!("{who} snapshot pages"),
                    crate::repo::PageRules::parse_rule(rule.get_ref()).map(|_| ""),
                );
            }
            if let Some(w) = &snap.keep.within {
                p.check(w, &format!("{who} keep.within"), crate::repo::forget::Within::parse(w.get_ref()).map(|_| ""));
            }
        };
        duration(p, "agent.randomized_delay", &self.agent.randomized_delay);
        duration(p, "agent.shutdown_grace", &self.agent.shutdown_grace);
        duration(p, "agent.retry_lock", &self.agent.retry_lock);
        if let Some(addr) = &self.agent.metrics_listen {
            match addr.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) if !a.ip().is_loopback() => p.at(
                    addr,
                    format!("agent.metrics_listen: {a} is not a loopback address (metrics stay on this host)"),
                ),
                Ok(_) => {}
                Err(_) => p.at(addr, format!("agent.metrics_listen: {:?} is not IP:PORT", addr.get_ref())),
            }
        }
        if let Some(url) = &self.notifications.ping_url
            && reqwest::Url::parse(url.get_ref()).is_err()
        {
            p.at(url, format!("notifications.ping_url: {:?} is not a URL", url.get_ref()));
        }
        for (name, repo) in &self.repositories {
            if repo.url.get_ref().trim().is_empty() {
                p.at(&repo.url, format!("repository {name:?}: empty url"));
            }
        }
        for (name, svc) in &self.services {
            let who = format!("service {name:?}");
            if let Err(e) = crate::runtime::names::validate_name(name) {
                p.at(&svc.image, format!("{who}: {e}"));
            }
            if let Err(e) = Reference::parse(svc.image.get_ref()) {
                p.at(&svc.image, format!("{who}: {e}"));
            }
            if let Some(r) = &svc.restart {
                p.check(r, &who, crate::runtime::container::RestartPolicy::parse(r.get_ref()).map(|_| ""));
            }
            if let Some(n) = &svc.network {
                let v = n.get_ref();
                match v.strip_prefix("container:") {
                    Some(other) if !self.services.contains_key(other) => {
                        p.at(n, format!("{who}: network {v:?} names a service that is not defined under [services]"))
                    }
                    Some(_) if self.network_cycle(name).is_some() => p.at(
                        n,
                        format!(
                            "{who}: network peers form a cycle ({}); one of them must have a network of its own",
                            self.network_cycle(name).unwrap_or_default().join(" -> ")
                        ),
                    ),
                    Some(_) => {}
                    None if !matches!(v.as_str(), "private" | "host" | "none") => {
                        p.at(n, format!("{who}: network {v:?} must be private, host, none or container:SERVICE"))
                    }
                    None => {}
                }
            }
            for port in &svc.ports {
                p.check(port, &who, crate::syntax::publish(port.get_ref()).map(|_| "").map_err(|e| e.0));
            }
            let mut taken = std::collections::HashSet::new();
            for port in svc.ports.iter().filter_map(|s| crate::syntax::publish(s.get_ref()).ok().map(|m| (s, m))) {
                if port.1.host_port != 0
                    && !taken.insert((port.1.host_ip.clone(), port.1.host_port, port.1.protocol.clone()))
                {
                    p.at(port.0, format!("{who}: host port {} is published twice", port.1.host_port));
                }
            }
            let mut targets = std::collections::HashSet::new();
            for v in &svc.volumes {
                match crate::syntax::mount(v.get_ref()) {
                    Ok(m) if !targets.insert(m.target.trim_end_matches('/').to_string()) => {
                        p.at(v, format!("{who}: duplicate mount point {}", m.target))
                    }
                    Ok(_) => {}
                    Err(e) => p.at(v, format!("{who}: {}", e.0)),
                }
            }
            if let Some(m) = &svc.memory {
                p.check(m, &who, crate::syntax::memory(m.get_ref()).map(|_| "").map_err(|e| e.0));
            }
            if let Some(c) = &svc.cpus {
                p.check(c, &who, crate::syntax::cpus(*c.get_ref()).map(|_| "").map_err(|e| e.0));
            }
            if let Some(n) = &svc.pids_limit {
                p.check(n, &who, crate::syntax::pids_limit(*n.get_ref()).map(|_| "").map_err(|e| e.0));
            }
            if let Some(h) = &svc.hostname {
                p.check(h, &who, crate::runtime::names::validate_hostname(h.get_ref()).map(|_| ""));
            }
            if let Some(w) = &svc.workdir
                && !w.get_ref().starts_with('/')
            {
                p.at(w, format!("{who}: workdir {:?} must be an absolute path", w.get_ref()));
            }
            if let Some(h) = &svc.healthcheck {
                duration(p, &format!("{who} healthcheck timeout"), &h.timeout);
                duration(p, &format!("{who} healthcheck start_period"), &h.start_period);
                duration(p, &format!("{who} healthcheck interval"), &h.interval);
                if let Some(i) = &h.interval
                    && parse_duration(i.get_ref()).is_ok_and(|d| d < Duration::from_secs(1))
                {
                    p.at(i, format!("{who} healthcheck interval: {:?} is shorter than a second", i.get_ref()));
                }
            }
            if let Some(c) = &svc.consistency {
                p.check(c, &who, crate::syntax::Consistency::parse(c.get_ref()).map(|_| ""));
            }
            if let Some(snap) = &svc.snapshot {
                policy(p, &who, snap);
            }
        }
        for (name, stack) in &self.stacks {
            let who = format!("stack {name:?}");
            let mut seen = std::collections::BTreeSet::new();
            for s in &stack.services {
                if !self.services.contains_key(s.get_ref()) {
                    p.at(s, format!("{who}: service {:?} is not defined under [services]", s.get_ref()));
                } else if !seen.insert(s.get_ref()) {
                    p.at(s, format!("{who}: service {:?} is named twice", s.get_ref()));
                }
            }
            if stack.services.len() < 2 {
                p.list.push((1, format!("{who}: a stack has at least two services")));
            }
            if let Some(snap) = &stack.snapshot {
                policy(p, &who, snap);
            }
        }
        let mut taken: BTreeMap<String, String> = BTreeMap::new();
        for (name, ext) in &self.external {
            let who = format!("external {name:?}");
            if self.services.contains_key(name) || self.stacks.contains_key(name) {
                p.list.push((1, format!("{who}: a service or stack has this name too (their jobs would be one)")));
            }
            if ext.containers.is_empty() {
                p.list.push((1, format!("{who}: name at least one container (docker://NAME or podman://NAME)")));
            }
            for c in &ext.containers {
                match crate::engine::Target::parse(c.get_ref()) {
                    Some(Ok(crate::engine::Target::Container(_, n))) => {
                        if self.services.contains_key(&n) {
                            p.at(c, format!("{who}: {n:?} is also a service under [services]; snapshots are kept by name"));
                        } else if let Some(other) = taken.insert(n.clone(), name.clone()) {
                            p.at(c, format!("{who}: container {n:?} is already named by external {other:?}"));
                        }
                    }
                    Some(Ok(_)) => p.at(
                        c,
                        format!(
                            "{who}: {:?}: name the containers (a Compose project's are PROJECT-SERVICE-1): their snapshots are kept by name",
                            c.get_ref()
                        ),
                    ),
                    Some(Err(e)) => p.at(c, format!("{who}: {}", e.0)),
                    None => p.at(c, format!("{who}: {:?} is not docker://NAME or podman://NAME", c.get_ref())),
                }
            }
            for (target, recipe) in &ext.consistency {
                if !ext.containers.iter().any(|c| c.get_ref() == target) {
                    p.at(recipe, format!("{who}: consistency for {target:?}, which is not one of its containers"));
                }
                p.check(recipe, &who, crate::syntax::Consistency::parse(recipe.get_ref()).map(|_| ""));
            }
            if let Some(snap) = &ext.snapshot {
                policy(p, &who, snap);
            }
        }
        for (name, job) in &self.replications {
            let who = format!("replication {name:?}");
            p.check(&job.schedule, &who, parse_schedule(job.schedule.get_ref()).map(|_| ""));
            repo_exists(p, &who, &job.from);
            repo_exists(p, &who, &job.to);
            if job.from.get_ref() == job.to.get_ref() {
                p.at(&job.to, format!("{who}: from and to are the same repository"));
            }
        }
        for (name, job) in &self.checks {
            let who = format!("check {name:?}");
            p.check(&job.schedule, &who, parse_schedule(job.schedule.get_ref()).map(|_| ""));
            repo_exists(p, &who, &job.repository);
            if let Some(s) = &job.read_data_subset {
                let ok = s
                    .get_ref()
                    .strip_suffix('%')
                    .and_then(|n| n.parse::<f64>().ok())
                    .is_some_and(|n| n > 0.0 && n <= 100.0);
                if !ok {
                    p.at(s, format!("{who}: read_data_subset {:?} must be a percentage like 10%", s.get_ref()));
                }
            }
        }
        for (name, job) in &self.drills {
            let who = format!("drill {name:?}");
            p.check(&job.schedule, &who, parse_schedule(job.schedule.get_ref()).map(|_| ""));
            match (&job.service, &job.stack) {
                (Some(service), None) => {
                    if !self.services.contains_key(service.get_ref()) {
                        p.at(
                            service,
                            format!("{who}: service {:?} is not defined under [services]", service.get_ref()),
                        );
                    }
                }
                (None, Some(stack)) => {
                    if !self.stacks.contains_key(stack.get_ref()) {
                        p.at(stack, format!("{who}: stack {:?} is not defined under [stacks]", stack.get_ref()));
                    }
                }
                (Some(_), Some(stack)) => p.at(stack, format!("{who}: name a service or a stack, not both")),
                (None, None) => {
                    p.list.push((1, format!("{who}: name the service (service = \"…\") or the stack to rehearse")))
                }
            }
            if let Some(r) = &job.repository {
                repo_exists(p, &who, r);
            }
            if let Some(h) = &job.http {
                p.check(h, &who, parse_http_check(h.get_ref()).map(|_| ""));
            }
            duration(p, &format!("{who} timeout"), &job.timeout);
            if let Some(t) = &job.timeout
                && parse_duration(t.get_ref()).is_ok_and(|d| d.is_zero())
            {
                p.at(t, format!("{who} timeout: {:?} leaves no time at all", t.get_ref()));
            }
        }
    }
}

/// An HTTP check URL: `http://localhost:PORT/PATH` (the host is always the container's own
/// loopback). Returns port and path.
pub fn parse_http_check(url: &str) -> Result<(u16, String), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if u.scheme() != "http" {
        return Err(format!("{url:?}: only http:// checks are supported inside a container"));
    }
    // The check runs inside the container: another host would be silently someone else.
    match u.host_str() {
        Some("localhost" | "127.0.0.1" | "[::1]") => {}
        other => {
            return Err(format!(
                "{url:?}: the check runs inside the restored container; use http://localhost:PORT/PATH, not {}",
                other.unwrap_or("no host")
            ));
        }
    }
    let port = u.port().unwrap_or(80);
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    Ok((port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> String {
        Config::parse(text, Path::new("t.toml")).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_fail_with_their_line() {
        let e = problems(
            "[repositories.local]\nurl = \"/srv/repo\"\n\n[services.web]\nimage = \"busybox\"\nimgae = \"typo\"\n",
        );
        assert!(e.starts_with("t.toml:6: "), "{e}");
        assert!(e.contains("imgae"), "{e}");
    }

    #[test]
    fn every_semantic_problem_is_reported_with_its_line() {
        let text = "\
[services.web]
image = \"Bad Image\"
[services.web.snapshot]
schedule = \"0 2 * *\"
repositories = [\"nowhere\"]
pages = [\"*.ibd=3000\"]
[replications.off]
from = \"nowhere\"
to = \"nowhere\"
schedule = \"61 * * * *\"
[drills.web]
service = \"ghost\"
schedule = \"0 3 * * *\"
http = \"https://x/\"
";
        let e = problems(text);
        let lines: Vec<&str> = e.lines().collect();
        for (line, needle) in [
            (2, "invalid reference"),
            (4, "5 fields"),
            (5, "\"nowhere\" is not defined"),
            (6, "a page size is a power of two"),
            (8, "replication \"off\": repository \"nowhere\""),
            (9, "same repository"),
            (10, "not a valid cron expression"),
            (12, "service \"ghost\""),
            (14, "only http://"),
        ] {
            let prefix = format!("t.toml:{line}: ");
            assert!(
                lines.iter().any(|l| l.starts_with(&prefix) && l.contains(needle)),
                "line {line} {needle:?} in\n{e}"
            );
        }
    }

    /// A drill names a service or a stack, one that is defined.
    #[test]
    fn a_drill_names_one_service_or_one_stack() {
        let text = "\
[services.aa]
image = \"aa:1\"
[services.bb]
image = \"bb:1\"
[stacks.ab]
services = [\"aa\", \"bb\"]
[drills.both]
service = \"aa\"
stack = \"ab\"
schedule = \"0 3 * * *\"
[drills.ghost]
stack = \"ba\"
schedule = \"0 3 * * *\"
[drills.neither]
schedule = \"0 3 * * *\"
";
        let e = problems(text);
        assert!(e.contains("t.toml:9: drill \"both\": name a service or a stack, not both"), "{e}");
        assert!(e.contains("t.toml:12: drill \"ghost\": stack \"ba\" is not defined"), "{e}");
        assert!(e.contains("drill \"neither\": name the service"), "{e}");
        let ok = text.split("[drills.both]").next().unwrap().to_string()
            + "[drills.ab]\nstack = \"ab\"\nschedule = \"0 3 * * *\"\n";
        let config = Config::parse(&ok, Path::new("t.toml")).unwrap();
        assert_eq!(config.stack_services("ab").unwrap(), ["aa", "bb"]);
        let e = config.stack_services("ba").unwrap_err().to_string();
        assert!(e.contains("no stack \"ba\"") && e.contains("its stacks: ab"), "{e}");
    }

    /// What `up`, the runtime or the agent would refuse, `config check` refuses first, each
    /// with its line.
    #[test]
    fn what_up_would_refuse_is_refused_with_its_line() {
        let text = "\
[services.a]
image = \"site:1\"
ports = [\"99999:80\", \"8080:80\", \"8080:81\"]
memory = \"lots\"
cpus = nan
pids_limit = -5
volumes = [\"data:relative\", \"v2:/x\", \"v3:/x/\"]
network = \"container:b\"
hostname = \"-bad-\"
workdir = \"relative\"
[services.a.healthcheck]
command = \"true\"
interval = \"0s\"
[services.b]
image = \"site:1\"
network = \"container:a\"
memory = \"1k\"
cpus = 0.0000001
[drills.a]
service = \"a\"
schedule = \"0 3 * * *\"
http = \"http://example.org:8080/\"
timeout = \"0s\"
";
        let e = problems(text);
        let lines: Vec<&str> = e.lines().collect();
        for (line, needle) in [
            (3, "invalid port \"99999:80\""),
            (3, "host port 8080 is published twice"),
            (4, "invalid size \"lots\""),
            (5, "cpus NaN"),
            (6, "pids limit -5"),
            (7, "must be absolute"),
            (7, "duplicate mount point /x"),
            (8, "cycle (a -> b -> a)"),
            (9, "invalid hostname"),
            (10, "absolute path"),
            (13, "shorter than a second"),
            (16, "cycle (b -> a -> b)"),
            (17, "6 MiB"),
            (18, "cpus 0.0000001"),
            (22, "not example.org"),
            (23, "no time at all"),
        ] {
            let prefix = format!("t.toml:{line}: ");
            assert!(
                lines.iter().any(|l| l.starts_with(&prefix) && l.contains(needle)),
                "line {line} {needle:?} in\n{e}"
            );
        }
    }

    /// `up` compares a service's definition with the one it recorded: positions in the file
    /// are not part of it (moving a line recreates nothing).
    #[test]
    fn a_service_s_recorded_definition_has_no_positions() {
        let c = Config::parse(
            "[services.web]\nimage = \"site:1\"\nports = [\"8080:80\"]\ncpus = 0.5\nmemory = \"64m\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let json = serde_json::to_value(&c.services["web"]).unwrap();
        assert_eq!(json["ports"], serde_json::json!(["8080:80"]));
        assert_eq!(json["cpus"], serde_json::json!(0.5));
        assert_eq!(json["memory"], serde_json::json!("64m"));
        assert_eq!(json["image"], serde_json::json!("site:1"));
    }

    /// The keys the code accepts in one table, from the parser's own "expected one of" list.
    fn accepted_keys(probe: &str) -> Vec<String> {
        let err = toml::from_str::<Config>(probe).unwrap_err().message().to_string();
        let expected = err.split_once("expected").unwrap_or_else(|| panic!("{probe}: {err}")).1;
        let mut keys: Vec<String> = expected.split('`').skip(1).step_by(2).map(String::from).collect();
        keys.sort();
        keys
    }

    #[test]
    fn the_config_reference_documents_exactly_the_keys_the_code_takes() {
        let doc = include_str!("../../docs/config-reference.md");
        let probes = [
            ("Top level", ""),
            ("`[agent]`", "[agent]\n"),
            ("`[notifications]`", "[notifications]\n"),
            ("`[repositories.NAME]`", "[repositories.x]\n"),
            ("`[repositories.NAME.s3]`", "[repositories.x]\nurl = 'a'\n[repositories.x.s3]\n"),
            ("`[services.NAME]`", "[services.x]\n"),
            ("`[services.NAME.healthcheck]`", "[services.x]\nimage = 'a'\n[services.x.healthcheck]\n"),
            ("`[services.NAME.snapshot]`", "[services.x]\nimage = 'a'\n[services.x.snapshot]\n"),
            (
                "`[services.NAME.snapshot.keep]`",
                "[services.x]\nimage = 'a'\n[services.x.snapshot]\nschedule = '* * * * *'\n[services.x.snapshot.keep]\n",
            ),
            ("`[stacks.NAME]`", "[stacks.x]\n"),
            ("`[external.NAME]`", "[external.x]\n"),
            ("`[replications.NAME]`", "[replications.x]\n"),
            ("`[checks.NAME]`", "[checks.x]\n"),
            ("`[drills.NAME]`", "[drills.x]\n"),
            ("`[registries.\"HOST[:PORT]\"]`", "[registries.\"r:5000\"]\n"),
        ];
        let sections: Vec<&str> = doc.split("\n#").skip(1).collect();
        assert_eq!(sections.iter().filter(|s| s.starts_with('#')).count(), probes.len(), "one section per table");
        for (heading, probe) in probes {
            let section = sections
                .iter()
                .find(|s| s.trim_start_matches('#').trim_start().lines().next() == Some(heading))
                .unwrap_or_else(|| panic!("no section {heading} in docs/config-reference.md"));
            let mut documented: Vec<String> = section
                .lines()
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
                .collect();
            documented.sort();
            assert_eq!(documented, accepted_keys(&format!("{probe}zzz_unknown = 1\n")), "section {heading}");
        }
    }

    #[test]
    fn schedules_take_five_or_six_fields() {
        let s = parse_schedule("30 2 * * *").unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(s.after(&t).next().unwrap().to_rfc3339(), "2026-11-28T02:30:00+00:00");
        let s = parse_schedule("*/5 * * * * *").unwrap();
        assert_eq!(s.after(&t).next().unwrap().to_rfc3339(), "2026-11-28T00:00:05+00:00");
        assert!(parse_schedule("* * *").is_err());
    }

    #[test]
    fn day_of_week_means_what_it_means_in_unix_cron() {
        // 2026-11-28 is a Saturday.
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let next = |s: &str| parse_schedule(s).unwrap().after(&t).next().unwrap().format("%a %d").to_string();
        assert_eq!(next("0 6 * * 1"), "Mon 30");
        assert_eq!(next("0 6 * * 0"), "Sun 29");
        assert_eq!(next("0 6 * * 7"), "Sun 29");
        assert_eq!(next("0 6 * * Mon"), "Mon 30");
        assert_eq!(next("0 6 * * 1-5"), "Mon 30");
        assert_eq!(next("0 6 * * 5-7"), "Sun 29");
        assert_eq!(next("0 13 * * 6"), "Sat 28");
        assert_eq!(next("0 6 * * */3"), "Sun 29");
        assert_eq!(unix_day_of_week("*/3").unwrap(), "Sun,Wed,Sat");
        assert_eq!(unix_day_of_week("1/3").unwrap(), "Mon,Thu");
        assert_eq!(unix_day_of_week("*/1").unwrap(), "*");
        assert_eq!(unix_day_of_week("0,6").unwrap(), "Sun,Sat");
        assert!(parse_schedule("0 6 * * 8").unwrap_err().contains("not 0-7"));
        assert!(parse_schedule("0 6 * * 5-2").unwrap_err().contains("backwards"));
    }

    #[test]
    fn s3_options_become_the_location_query() {
        let c = Config::parse(
            "[repositories.off]\nurl = \"s3://b/p\"\n[repositories.off.s3]\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.repositories["off"].location(), "s3://b/p?endpoint=http://127.0.0.1:9000&path-style=true");
    }

    #[test]
    fn durations_and_http_checks() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert!(parse_duration("2x").is_err());
        assert_eq!(parse_http_check("http://localhost:8080/health?x=1").unwrap(), (8080, "/health?x=1".into()));
        assert_eq!(parse_http_check("http://localhost/").unwrap(), (80, "/".into()));
    }
}
