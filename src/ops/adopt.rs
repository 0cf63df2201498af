//! `adopt docker://NAME`: a service moves from Docker (or Podman) to Lifeboat's runtime with
//! its data, and `adopt --back NAME` returns it.
//!
//! Adopting: a snapshot while it runs (the bulk of its data, read with the service up), then
//! the engine stops it, a second snapshot reads what changed meanwhile (so nothing written
//! before the stop is lost), and the service is restored under Lifeboat's runtime from it and
//! started. The engine's container and volumes stay, stopped and no longer restarted by the
//! engine, until the service is sent back; if the restore fails or the restored service is
//! not healthy, what Lifeboat made is removed and the engine's container started again as it
//! was. Both snapshots stay in the repository.
//!
//! Returning: Lifeboat's service is stopped and snapshotted, the engine's old container and
//! volumes (the data as it was at adoption) are removed, and the snapshot is restored into the
//! engine with its restart policy as it was; if that fails, Lifeboat's service starts again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::backup::Access;
use crate::engine::{Engine, Kind, Target};
use crate::error::UsageError;
use crate::runtime::Host;
use crate::runtime::container::{ContainerError, MountSource};
use crate::snapshot::{CaptureOptions, RestoreOptions, ServicePlan};

/// What an adoption left in the engine, to send the service back (`<root>/adopted/NAME.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adoption {
    pub name: String,
    pub engine: String,
    /// The engine's container, kept stopped.
    pub container: String,
    /// Its volumes in the engine (the data as it was at adoption).
    pub volumes: Vec<String>,
    /// Its restart policy before adoption (`no` while Lifeboat runs it).
    pub restart: String,
    pub restart_retries: u32,
    pub time: String,
}

#[derive(Debug, Serialize)]
pub struct AdoptReport {
    pub name: String,
    pub engine: String,
    /// The snapshot the service was restored from (taken after the engine stopped it).
    pub snapshot: String,
    /// From the engine's stop to the restored service's start (and health, if it has a check).
    pub unavailable_seconds: f64,
    pub healthy: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ReturnReport {
    pub name: String,
    pub engine: String,
    pub snapshot: String,
    pub container: String,
    pub unavailable_seconds: f64,
}

fn record_path(host: &Host, name: &str) -> PathBuf {
    host.paths().root.join("adopted").join(format!("{name}.json"))
}

fn kind_named(scheme: &str) -> anyhow::Result<Kind> {
    match scheme {
        "docker" => Ok(Kind::Docker),
        "podman" => Ok(Kind::Podman),
        other => bail!("an adoption record names engine {other:?}"),
    }
}

fn capture(host: &Host, access: &Access, target: &str) -> anyhow::Result<(String, crate::repo::snapshot::Snapshot)> {
    let mut repo = access.open(host)?;
    let opts = CaptureOptions {
        tags: vec!["adopt".into()],
        no_volumes: false,
        progress: None,
        exact_names: true,
        expected: None,
        pages: Default::default(),
    };
    crate::snapshot::capture(host, &mut repo, &ServicePlan::named(target), &opts)
}

/// Moves `target` (`docker://NAME`, `podman://NAME`) to Lifeboat's runtime.
pub fn adopt(host: &Host, access: Access, target: &str, health_timeout: Duration) -> anyhow::Result<AdoptReport> {
    let (kind, name) = match Target::parse(target) {
        Some(Ok(Target::Container(kind, name))) => (kind, name),
        Some(Ok(_)) => bail!(UsageError(format!("{target}: adopt takes one container, docker://NAME"))),
        Some(Err(e)) => return Err(e.into()),
        None => bail!(UsageError(format!("{target}: adopt takes a container of Docker or Podman: docker://NAME"))),
    };
    let engine = Engine::connect(kind)?;
    let c = engine.container(&name)?;
    let name = c.config.name.clone();
    if host.containers()?.named(&name).is_ok() {
        bail!(ContainerError::Conflict(format!("Lifeboat already has a container {name}")));
    }
    if record_path(host, &name).exists() {
        bail!(ContainerError::Conflict(format!("{name} was adopted already (lifeboat adopt --back {name})")));
    }
    let vols = host.volumes()?;
    for (v, _, _) in &c.volumes {
        if vols.get(v).is_ok() {
            bail!(ContainerError::Conflict(format!("Lifeboat already has a volume {v}; remove it first")));
        }
    }
    let (restart, retries) = engine.restart_policy(&c.id)?;
    let was_running = c.running;

    // The bulk while it runs; then what changed up to the stop.
    if was_running {
        capture(host, &access, target).context("the first snapshot (while it runs) failed; nothing was changed")?;
    }
    let stopped_at = Instant::now();
    let put_back = |why: anyhow::Error| -> anyhow::Error {
        if let Err(e) = engine.set_restart_policy(&c.id, &restart, retries) {
            tracing::error!(error = %e, "cannot give the engine's container its restart policy back");
        }
        if was_running && let Err(e) = engine.start(&c.id) {
            tracing::error!(error = %e, "cannot start the engine's container again");
            return why.context(format!("and {} could not start it again: {e}", engine.title()));
        }
        why.context(format!("{name} runs under {} as before", engine.title()))
    };
    engine.set_restart_policy(&c.id, "no", 0)?;
    if was_running && let Err(e) = engine.stop(&c.id, Duration::from_secs(10)) {
        return Err(put_back(e));
    }
    let (id, snap) = match capture(host, &access, target) {
        Ok(taken) => taken,
        Err(e) => return Err(put_back(e.context("the snapshot after the stop failed"))),
    };
    let opts = RestoreOptions {
        rename: None,
        no_start: !was_running,
        health_timeout,
        throwaway: false,
        progress: None,
        peers: Default::default(),
        instant: false,
        network_key: None,
    };
    let restored = access.open(host).and_then(|repo| crate::snapshot::restore(host, &repo, &id, &snap, &opts));
    let restored = match restored {
        Ok(r) if r.healthy == Some(false) => {
            remove_restored(host, &r.container);
            return Err(put_back(anyhow::anyhow!(
                "the service restored under Lifeboat was not healthy within {} s; it was removed",
                health_timeout.as_secs()
            )));
        }
        Ok(r) => r,
        Err(e) => return Err(put_back(e.context("the restore under Lifeboat failed"))),
    };
    let record = Adoption {
        name: name.clone(),
        engine: kind.scheme().into(),
        container: c.id.clone(),
        volumes: c.volumes.iter().map(|(v, _, _)| v.clone()).collect(),
        restart: restart.clone(),
        restart_retries: retries,
        time: crate::sys::now_rfc3339(),
    };
    let path = record_path(host, &name);
    let written = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(path.parent().expect("a directory"))?;
        crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&record)?)?;
        Ok(())
    })();
    if let Err(e) = written {
        remove_restored(host, &restored.container);
        return Err(put_back(e.context("cannot record the adoption")));
    }
    Ok(AdoptReport {
        name,
        engine: kind.scheme().into(),
        snapshot: id,
        unavailable_seconds: stopped_at.elapsed().as_secs_f64(),
        healthy: restored.healthy,
    })
}

/// Removes a container a failed adoption made, with its volumes.
fn remove_restored(host: &Host, c: &crate::runtime::RunConfig) {
    if let Err(e) = crate::runtime::remove(host, &c.id, true) {
        tracing::error!(container = c.name.as_str(), error = %e, "cannot remove the restored container");
    }
    if let Ok(vols) = host.volumes() {
        for m in &c.mounts {
            if let MountSource::Volume { name } = &m.source
                && let Err(e) = vols.remove(name)
            {
                tracing::error!(volume = name.as_str(), error = %e, "cannot remove the restored volume");
            }
        }
    }
}

/// Sends adopted service `name` back to its engine with its data as it is now.
pub fn give_back(host: &Host, access: Access, name: &str) -> anyhow::Result<ReturnReport> {
    let path = record_path(host, name);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(crate::error::NotFound(format!("{name} was not adopted from another engine")))
        }
        Err(e) => return Err(e.into()),
    };
    let record: Adoption = serde_json::from_slice(&text).context("the adoption record is unreadable")?;
    let engine = Engine::connect(kind_named(&record.engine)?)?;
    let containers = host.containers()?;
    let ours = containers.named(name)?;
    let running = crate::runtime::observed_state(containers, &ours.id)?.status.is_up();
    let stopped_at = Instant::now();
    if running {
        crate::runtime::stop(host, &ours.id, Duration::from_secs(10))?;
    }
    let start_ours_again = |why: anyhow::Error| -> anyhow::Error {
        if running && let Err(e) = crate::runtime::start(host, &ours.id) {
            return why.context(format!("and Lifeboat could not start {name} again: {e}"));
        }
        why.context(format!("{name} runs under Lifeboat as before"))
    };
    let (id, snap) = match capture(host, &access, name) {
        Ok(t) => t,
        Err(e) => return Err(start_ours_again(e.context("the snapshot of the service failed"))),
    };
    // The engine's copy is the data as it was at adoption: it goes, the snapshot replaces it.
    let cleared = (|| -> anyhow::Result<()> {
        if engine.has_container(&record.container)? {
            engine.remove_container(&record.container)?;
        }
        for v in &record.volumes {
            if engine.volume_mountpoint(v)?.is_some() {
                engine.remove_volume(v)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = cleared {
        return Err(start_ours_again(e.context(format!("cannot clear the old container from {}", engine.title()))));
    }
    let repo = match access.open(host) {
        Ok(r) => r,
        Err(e) => return Err(start_ours_again(e)),
    };
    let into = match crate::snapshot::to_engine::restore_into(host, &repo, &engine, &id, &snap, None, running) {
        Ok(r) => r,
        Err(e) => return Err(start_ours_again(e.context(format!("the restore into {} failed", engine.title())))),
    };
    if let Err(e) = engine.set_restart_policy(&into.container, &record.restart, record.restart_retries) {
        tracing::warn!(error = %e, "cannot give the container its restart policy back");
    }
    let unavailable = stopped_at.elapsed().as_secs_f64();
    // Lifeboat's copy goes: the engine runs the service, and the snapshot holds this data.
    remove_restored(host, &ours);
    let _ = std::fs::remove_file(&path);
    Ok(ReturnReport {
        name: name.to_string(),
        engine: record.engine,
        snapshot: id,
        container: into.container,
        unavailable_seconds: unavailable,
    })
}
