//! The configuration's services brought up and down: `up` creates, recreates (when the
//! definition changed, or the container whose network a service joins was recreated) or
//! starts each service, in an order where a service comes after its network peer; `down`
//! stops and removes them in the reverse order. Containers `up` did not create are never
//! touched. The command line and the agent both call these.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::containers::HealthRequest;
use super::containers::{self, NetworkRequest, RunRequest};
use crate::config::{self, Config};
use crate::error::UsageError;
use crate::runtime::container::{ContainerError, MountSource, NetworkMode, RestartPolicy};
use crate::runtime::{self, Host};

/// The marker `up` leaves in a container it created: the service definition it was made from.
pub(crate) const SERVICE_MARKER: &str = "service.json";

/// Services in an order where each comes after the one whose network it joins; all of them,
/// or those named (each name checked).
pub fn ordered(config: &Config, wanted: &[String]) -> Result<Vec<String>, UsageError> {
    for w in wanted {
        if !config.services.contains_key(w) {
            return Err(UsageError(format!("no service {w:?} in the configuration")));
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

/// The container request a service's definition makes.
pub fn request(name: &str, svc: &config::Service) -> anyhow::Result<RunRequest> {
    let mut req = RunRequest::new(svc.image.get_ref());
    req.name = Some(name.to_string());
    req.command = svc.command.clone().unwrap_or_default();
    req.entrypoint = svc.entrypoint.clone();
    for p in &svc.ports {
        req.ports.push(crate::syntax::publish(p.get_ref())?);
    }
    req.env = svc.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    req.mounts = svc.volumes.iter().map(|v| crate::syntax::mount(v.get_ref())).collect::<Result<_, _>>()?;
    req.workdir = svc.workdir.as_ref().map(|w| w.get_ref().clone());
    req.user = svc.user.clone();
    req.hostname = svc.hostname.as_ref().map(|h| h.get_ref().clone());
    let restart = svc.restart.as_ref().map(|r| r.get_ref().as_str()).unwrap_or("unless-stopped");
    req.restart = RestartPolicy::parse(restart).map_err(UsageError)?;
    req.network = NetworkRequest::parse(svc.network.as_ref().map(|n| n.get_ref().as_str()).unwrap_or("private"))?;
    req.memory = svc.memory.as_ref().map(|m| crate::syntax::memory(m.get_ref())).transpose()?;
    req.cpus = svc.cpus.as_ref().map(|c| *c.get_ref());
    req.pids_limit = svc.pids_limit.as_ref().map(|n| *n.get_ref());
    req.read_only = svc.read_only;
    req.init = svc.init;
    if let Some(h) = &svc.healthcheck {
        let secs = |d: &Option<toml::Spanned<String>>, default: u64| {
            d.as_ref().and_then(|i| config::parse_duration(i.get_ref()).ok()).map_or(default, |d| d.as_secs())
        };
        req.health = HealthRequest {
            disable: h.disable,
            command: Some(h.command.clone()).filter(|c| !c.is_empty()),
            args: Vec::new(),
            interval_secs: h.interval.as_ref().map(|_| secs(&h.interval, 30)),
            timeout_secs: h.timeout.as_ref().map(|_| secs(&h.timeout, 30)),
            start_period_secs: h.start_period.as_ref().map(|_| secs(&h.start_period, 0)),
            retries: h.retries,
        };
    }
    Ok(req)
}

/// What `up` or `down` did to one service, or why it could not.
#[derive(Debug, Serialize)]
pub struct ServiceOutcome {
    pub service: String,
    /// `created`, `started`, `up to date`, `recreated (…)`, `removed`, `not running`.
    pub action: Option<String>,
    #[serde(skip)]
    pub error: Option<anyhow::Error>,
}

impl ServiceOutcome {
    pub(crate) fn of(service: &str, result: anyhow::Result<String>) -> ServiceOutcome {
        match result {
            Ok(action) => ServiceOutcome { service: service.to_string(), action: Some(action), error: None },
            Err(e) => ServiceOutcome { service: service.to_string(), action: None, error: Some(e) },
        }
    }
}

/// Brings up `wanted` services of `config` (all if empty), each independently: one that fails
/// is reported and the others go on.
pub fn up(host: &Host, config: &Config, wanted: &[String]) -> anyhow::Result<Vec<ServiceOutcome>> {
    let order = ordered(config, wanted)?;
    // The whole file is checked before anything is made: an error in the second service
    // does not leave the first one created.
    for name in &order {
        request(name, &config.services[name])
            .and_then(|r| Ok(r.validate()?))
            .map_err(|e| e.context(format!("service {name}: nothing was started")))?;
    }
    let mut out = Vec::new();
    for name in order {
        let svc = &config.services[&name];
        let result = serde_json::to_string_pretty(svc)
            .map_err(anyhow::Error::from)
            .and_then(|wanted| apply(host, &name, &request(&name, svc)?, &wanted));
        out.push(ServiceOutcome::of(&name, result));
    }
    Ok(out)
}

/// Brings container `name` to what `req` asks: creates it, starts it, recreates it when its
/// definition (`wanted`, any text that changes when the request does) changed, or leaves it
/// running as it is. A container of that name that `up` did not make is never touched.
pub(crate) fn apply(host: &Host, name: &str, req: &RunRequest, wanted: &str) -> anyhow::Result<String> {
    let containers = host.containers()?;
    let create = || -> anyhow::Result<()> {
        let c = containers::create(host, req)?;
        crate::fsutil::write_atomic(&containers.dir(&c.id).join(SERVICE_MARKER), wanted.as_bytes())?;
        runtime::start(host, &c.id)?;
        Ok(())
    };
    let Ok(existing) = containers.named(name) else {
        create()?;
        return Ok("created".into());
    };
    let marker = containers.dir(&existing.id).join(SERVICE_MARKER);
    let Ok(had) = std::fs::read_to_string(&marker) else {
        return Err(ContainerError::Conflict(format!(
            "a container named {name} exists that `up` did not create (run or restore made it); \
             leaving it alone — remove it to let `up` manage the service"
        ))
        .into());
    };
    let state = runtime::observed_state(containers, &existing.id)?;
    let running = state.status.is_up();
    if had == wanted {
        if !running {
            runtime::start(host, &existing.id)?;
            return Ok("started".into());
        }
        // A container joins its peer's network (by name) when it starts: if the peer
        // was recreated or restarted since, it joins the new one again.
        if let NetworkMode::Container(peer) = &existing.network
            && !same_network(containers, &existing.id, peer)
        {
            runtime::stop(host, &existing.id, Duration::from_secs(10))?;
            runtime::start(host, &existing.id)?;
            return Ok("restarted (the container whose network it joins was recreated)".into());
        }
        return Ok("up to date".into());
    }
    runtime::remove(host, &existing.id, true)?;
    create()?;
    Ok("recreated (definition changed)".into())
}

/// Whether running container `id` is in the network namespace its peer runs in now.
fn same_network(containers: &runtime::Containers, id: &str, peer: &str) -> bool {
    let netns = |cid: &str| -> Option<u64> {
        let pid = containers.state(cid).ok()?.pid?;
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?).into()
    };
    match (netns(id), containers.named(peer).ok().and_then(|p| netns(&p.id))) {
        (Some(mine), Some(theirs)) => mine == theirs,
        _ => false,
    }
}

/// Stops and removes `wanted` services' containers (all if empty), in reverse order; their
/// volumes too with `volumes`.
pub fn down(
    host: &Host,
    config: &Config,
    wanted: &[String],
    timeout: Duration,
    volumes: bool,
) -> anyhow::Result<Vec<ServiceOutcome>> {
    let containers = host.containers()?;
    let mut out = Vec::new();
    for name in ordered(config, wanted)?.into_iter().rev() {
        let Ok(c) = containers.named(&name) else {
            out.push(ServiceOutcome::of(&name, Ok("not running".into())));
            continue;
        };
        out.push(ServiceOutcome::of(&name, take_down(host, &c, timeout, volumes)));
    }
    Ok(out)
}

/// Stops and removes container `c`, which `up` made; its named volumes too with `volumes`.
pub(crate) fn take_down(
    host: &Host,
    c: &runtime::container::RunConfig,
    timeout: Duration,
    volumes: bool,
) -> anyhow::Result<String> {
    let containers = host.containers()?;
    if !containers.dir(&c.id).join(SERVICE_MARKER).exists() {
        return Err(ContainerError::Conflict(format!(
            "container {} was not created by `up`; leaving it alone (use lifeboat rm)",
            c.name
        ))
        .into());
    }
    runtime::stop(host, &c.id, timeout)?;
    runtime::remove(host, &c.id, true)?;
    // Its volumes, except one another container still uses (kept, and said).
    let mut kept = Vec::new();
    for m in c.mounts.iter().filter(|_| volumes) {
        if let MountSource::Volume { name: v } = &m.source
            && host.volumes()?.get(v).is_ok()
        {
            if super::volumes::in_use(host, v)? {
                kept.push(v.as_str());
            } else {
                host.volumes()?.remove(v)?;
            }
        }
    }
    Ok(match kept.as_slice() {
        [] => "removed".into(),
        kept => format!("removed (volumes kept, still used by another container: {})", kept.join(", ")),
    })
}

/// What a configuration file holds, once it has been found valid.
#[derive(Debug, Serialize)]
pub struct ConfigSummary {
    pub repositories: usize,
    pub services: usize,
    pub jobs: usize,
}

/// Loads and validates the configuration at `path` (every problem reported with its line).
pub fn check_config(path: &std::path::Path) -> anyhow::Result<ConfigSummary> {
    let c = Config::load(path)?;
    Ok(ConfigSummary {
        repositories: c.repositories.len(),
        services: c.services.len(),
        jobs: crate::agent::jobs::jobs(&c).len(),
    })
}
