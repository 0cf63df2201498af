//! Compose projects brought up and down: each service built if it has a `build:` (and its
//! image is missing, or `--build`), started after what it depends on has started, become
//! healthy or completed, and created, recreated or left alone as `up` does for the
//! configuration's services. `down` removes the project's containers, its network, and with
//! `--volumes` the volumes it owns (never external ones).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::containers::{self, ContainerRow};
use super::services::{self, ServiceOutcome};
use crate::compose::{Condition, PROJECT_LABEL, Project, Service};
use crate::error::UsageError;
use crate::runtime::{self, Host};

/// What `up` is asked beyond the project.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Build images that have a `build:` even when they exist.
    pub build: bool,
    /// How long to wait for a dependency to become healthy or complete.
    pub wait: Duration,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions { build: false, wait: Duration::from_secs(300) }
    }
}

/// The services `wanted` (all if empty) and everything they depend on, in start order.
pub fn selected<'p>(project: &'p Project, wanted: &[String]) -> Result<Vec<&'p Service>, UsageError> {
    for w in wanted {
        if !project.services.iter().any(|s| &s.name == w) {
            return Err(UsageError(format!("no service {w:?} in project {}", project.name)));
        }
    }
    let mut keep: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
    if keep.is_empty() {
        return Ok(project.services.iter().collect());
    }
    // Dependencies come before their dependents: walking backwards closes the set.
    for s in project.services.iter().rev() {
        if keep.contains(s.name.as_str()) {
            keep.extend(s.depends_on.iter().map(|(d, _)| d.as_str()));
        }
    }
    Ok(project.services.iter().filter(|s| keep.contains(s.name.as_str())).collect())
}

/// Brings up the project's `wanted` services (all if empty). A service whose dependency
/// failed is not started, and says why; the others go on. Build output goes to `progress`.
pub fn up(
    host: &Host,
    project: &Project,
    wanted: &[String],
    opts: &UpOptions,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<ServiceOutcome>> {
    let services = selected(project, wanted)?;
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for svc in services {
        let result = (|| -> anyhow::Result<String> {
            for (dep, condition) in &svc.depends_on {
                if failed.contains(dep) {
                    anyhow::bail!("not started: the service it depends on, {dep}, failed");
                }
                let container = &project.services.iter().find(|s| &s.name == dep).expect("checked at load").container;
                wait_for(host, container, *condition, opts.wait)
                    .map_err(|e| e.context(format!("not started: waiting for {dep}")))?;
            }
            if let Some(b) = &svc.build
                && (opts.build || host.store()?.find(&b.tag).is_err())
            {
                progress(&format!("building {} ({})", svc.name, b.context.display()));
                let options = crate::builder::BuildOptions {
                    context: b.context.clone(),
                    dockerfile: b.dockerfile.clone(),
                    tags: vec![crate::image::reference::Reference::parse(&b.tag)?],
                    build_args: b.args.clone(),
                    no_cache: false,
                    network: crate::runtime::container::NetworkMode::Host,
                    target: b.target.clone(),
                };
                crate::builder::build(host, &options, progress)?;
            }
            let wanted = definition(host, svc)?;
            adopt_restored(host, project, svc, &wanted)?;
            services::apply(host, &svc.container, &project.request(svc), &wanted)
        })();
        if result.is_err() {
            failed.insert(svc.name.clone());
        }
        out.push(ServiceOutcome::of(&svc.name, result));
    }
    Ok(out)
}

/// What `up` compares to decide whether `svc`'s container is as defined: its request and its
/// image's ID (a rebuilt or pulled image recreates it).
fn definition(host: &Host, svc: &Service) -> anyhow::Result<String> {
    let image = host.store()?.find(&svc.request.image).map(|i| i.id().to_string()).unwrap_or_default();
    Ok(format!("{:#?}\nimage {image}\n", svc.request))
}

/// A container of the project that `restore` brought back (it carries the project's labels
/// but not `up`'s marker) is taken as the service as it is: `up` starts it if it is stopped
/// and `down` removes it, instead of refusing to touch it or recreating it over what the
/// restore put back. As Docker Compose does, the labels and the name are what make a
/// container the project's.
fn adopt_restored(host: &Host, project: &Project, svc: &Service, wanted: &str) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let Ok(existing) = containers.named(&svc.container) else { return Ok(()) };
    let marker = containers.dir(&existing.id).join(services::SERVICE_MARKER);
    let ours = existing.labels.get(PROJECT_LABEL) == Some(&project.name)
        && existing.labels.get(crate::compose::SERVICE_LABEL) == Some(&svc.name);
    if ours && !marker.exists() {
        crate::fsutil::write_atomic(&marker, wanted.as_bytes())?;
    }
    Ok(())
}

/// Waits until container `name` has reached `condition`.
fn wait_for(host: &Host, name: &str, condition: Condition, timeout: Duration) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let deadline = Instant::now() + timeout;
    loop {
        let c = containers.named(name)?;
        let state = runtime::observed_state(containers, &c.id)?;
        let done = match condition {
            Condition::Started => return Ok(()),
            Condition::Healthy => {
                if c.health.is_none() {
                    anyhow::bail!("{name} has no health check, so it can never be healthy (service_healthy)");
                }
                let health = runtime::Health::load(&containers.dir(&c.id)).map(|h| h.status).unwrap_or_default();
                if !state.status.is_up() {
                    anyhow::bail!("{name} stopped before it was healthy (exit code {:?})", state.exit_code);
                }
                health == "healthy"
            }
            Condition::CompletedSuccessfully => match (state.status.is_up(), state.exit_code) {
                (true, _) | (false, None) => false,
                (false, Some(0)) => true,
                (false, Some(code)) => anyhow::bail!("{name} ended with exit code {code}"),
            },
        };
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{name} did not become {condition:?} within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Stops and removes the project's containers (dependents first), then its network; with
/// `volumes`, the named volumes it owns and its services' anonymous volumes.
pub fn down(host: &Host, project: &Project, timeout: Duration, volumes: bool) -> anyhow::Result<Vec<ServiceOutcome>> {
    let containers = host.containers()?;
    let mut out = Vec::new();
    for svc in project.services.iter().rev() {
        let Ok(c) = containers.named(&svc.container) else {
            out.push(ServiceOutcome::of(&svc.name, Ok("not running".into())));
            continue;
        };
        adopt_restored(host, project, svc, &definition(host, svc)?)?;
        let result = services::take_down(host, &c, timeout, false).and_then(|done| {
            if volumes {
                containers::remove_anonymous_volumes(host, &c)?;
            }
            Ok(done)
        });
        out.push(ServiceOutcome::of(&svc.name, result));
    }
    // A volume goes only when every container of the project went, and never while another
    // container still uses it.
    if volumes && out.iter().all(|o| o.error.is_none()) {
        for v in &project.volumes {
            if host.volumes()?.get(v).is_ok() {
                let result = super::volumes::remove(host, v, false).map(|_| "removed".to_string());
                out.push(ServiceOutcome::of(&format!("volume {v}"), result));
            }
        }
    }
    // The network goes once no container is left in it (of the project or not).
    runtime::remove_network_if_unused(host, &project.network)?;
    Ok(out)
}

/// The project's containers (running or not), as `ps -a` lists them.
pub fn ps(host: &Host, project: &Project) -> anyhow::Result<Vec<ContainerRow>> {
    let mut rows = containers::list(host, true)?;
    rows.retain(|r| r.labels.get(PROJECT_LABEL) == Some(&project.name));
    Ok(rows)
}
