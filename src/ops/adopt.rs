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

/// An adoption, recorded before anything is changed and kept until the service is back in
/// its engine (`<root>/adopted/NAME.json`): what to put back, and how far it got, so that a
/// command killed midway can be taken up (`adopt --back` finishes or undoes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adoption {
    pub name: String,
    pub engine: String,
    /// The engine's container, kept stopped while Lifeboat runs the service.
    pub container: String,
    /// Its volumes in the engine (the data as it was at adoption).
    pub volumes: Vec<String>,
    /// Its restart policy before adoption (`no` while Lifeboat runs it).
    pub restart: String,
    pub restart_retries: u32,
    /// It ran when adopted (and is started again if the adoption is undone).
    pub was_running: bool,
    pub phase: Phase,
    /// When the engine last started it, as it said after stopping it: a later start means
    /// someone runs it again, with data Lifeboat's copy does not have.
    #[serde(default)]
    pub engine_started_at: String,
    /// Lifeboat's copy ran when sending it back began.
    #[serde(default)]
    pub ours_running: bool,
    /// Sending back: the engine's old copy is gone (a container named so in the engine is
    /// then the half-made new one).
    #[serde(default)]
    pub cleared: bool,
    /// Sending back: the engine's new container, made and started; only Lifeboat's copy is
    /// left to remove.
    #[serde(default)]
    pub returned: Option<String>,
    pub time: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Being moved to Lifeboat: not done until the record says `adopted`.
    Adopting,
    Adopted,
    /// Being sent back.
    Returning,
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
    /// The snapshot sent back (none when an interrupted adoption was undone).
    pub snapshot: Option<String>,
    pub container: String,
    pub unavailable_seconds: f64,
    /// An adoption that had not finished was undone: the engine's container as it was.
    pub undone: bool,
}

fn record_path(host: &Host, name: &str) -> PathBuf {
    crate::snapshot::adoption_record(host, name)
}

fn save(host: &Host, record: &Adoption) -> anyhow::Result<()> {
    let path = record_path(host, &record.name);
    std::fs::create_dir_all(path.parent().expect("a directory"))?;
    crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(record)?)
        .with_context(|| format!("cannot record the adoption in {}", path.display()))
}

fn load(host: &Host, name: &str) -> anyhow::Result<Option<Adoption>> {
    match std::fs::read(record_path(host, name)) {
        Ok(t) => Ok(Some(serde_json::from_slice(&t).context("the adoption record is unreadable")?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
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
    if let Some(r) = load(host, &name)? {
        bail!(ContainerError::Conflict(match r.phase {
            Phase::Adopted => format!("{name} was adopted already (lifeboat adopt --back {name} returns it)"),
            _ => format!("an adoption of {name} did not finish: lifeboat adopt --back {name} puts it back as it was"),
        }));
    }
    if host.containers()?.named(&name).is_ok() {
        bail!(ContainerError::Conflict(format!("Lifeboat already has a container {name}")));
    }
    if c.config.auto_remove {
        bail!(UsageError(format!(
            "{name} was run with --rm: stopping it would delete it; snapshot it instead (lifeboat snapshot {target})"
        )));
    }
    let vols = host.volumes()?;
    for (v, _, _) in &c.volumes {
        if vols.get(v).is_ok() {
            bail!(ContainerError::Conflict(format!("Lifeboat already has a volume {v}; remove it first")));
        }
        let others: Vec<String> = engine.containers_using(v)?.into_iter().filter(|n| *n != name).collect();
        if !others.is_empty() {
            bail!(ContainerError::Conflict(format!(
                "volume {v} is also used by {} in {}: adopt cannot move one without the other",
                others.join(", "),
                engine.title()
            )));
        }
    }
    let (restart, retries) = engine.restart_policy(&c.id)?;
    let mut record = Adoption {
        name: name.clone(),
        engine: kind.scheme().into(),
        container: c.id.clone(),
        volumes: c.volumes.iter().map(|(v, _, _)| v.clone()).collect(),
        restart: restart.clone(),
        restart_retries: retries,
        was_running: c.running,
        phase: Phase::Adopting,
        engine_started_at: String::new(),
        ours_running: false,
        cleared: false,
        returned: None,
        time: crate::sys::now_rfc3339(),
    };

    // The bulk while it runs (nothing is changed yet).
    if c.running {
        capture(host, &access, target).context("the first snapshot (while it runs) failed; nothing was changed")?;
    }
    save(host, &record)?;
    let stopped_at = Instant::now();
    let put_back = |record: &Adoption, why: anyhow::Error| -> anyhow::Error {
        match undo_adoption(host, &engine, record) {
            Ok(()) => why.context(format!("{name} runs under {} as before", engine.title())),
            Err(e) => {
                why.context(format!("and putting it back failed ({e}): lifeboat adopt --back {name} tries again"))
            }
        }
    };
    if c.running {
        let grace = Duration::from_secs(c.stop_timeout.unwrap_or(10));
        if let Err(e) = engine.stop(&c.id, grace) {
            return Err(put_back(&record, e));
        }
    }
    // What changed up to the stop; its configuration as the engine ran it.
    let (id, snap) = match capture(host, &access, target) {
        Ok(taken) => taken,
        Err(e) => return Err(put_back(&record, e.context("the snapshot after the stop failed"))),
    };
    // The engine must not start it again on its own (at its own restart, for one).
    if let Err(e) = engine.set_restart_policy(&c.id, "no", 0) {
        return Err(put_back(&record, e));
    }
    record.engine_started_at = engine.run_state(&c.id).map(|(_, s)| s).unwrap_or_default();
    if let Err(e) = save(host, &record) {
        return Err(put_back(&record, e));
    }
    let opts = RestoreOptions {
        rename: None,
        no_start: !c.running,
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
            return Err(put_back(
                &record,
                anyhow::anyhow!(
                    "the service restored under Lifeboat was not healthy within {} s; it was removed",
                    health_timeout.as_secs()
                ),
            ));
        }
        Ok(r) => r,
        Err(e) => return Err(put_back(&record, e.context("the restore under Lifeboat failed"))),
    };
    record.phase = Phase::Adopted;
    if let Err(e) = save(host, &record) {
        return Err(put_back(&record, e));
    }
    Ok(AdoptReport {
        name,
        engine: kind.scheme().into(),
        snapshot: id,
        unavailable_seconds: stopped_at.elapsed().as_secs_f64(),
        healthy: restored.healthy,
    })
}

/// Undoes an adoption that did not finish: the engine's container gets its restart policy
/// back and runs again if it ran; only then does what Lifeboat made go (kept, stopped, if the
/// engine's cannot be brought back); the record goes.
fn undo_adoption(host: &Host, engine: &Engine, record: &Adoption) -> anyhow::Result<()> {
    let ours = host.containers()?.named(&record.name).ok();
    if let Some(c) = &ours
        && crate::runtime::observed_state(host.containers()?, &c.id)?.status.is_up()
    {
        crate::runtime::stop(host, &c.id, Duration::from_secs(10))?;
    }
    if !engine.has_container(&record.container)? {
        bail!(
            "{}'s container {} is gone; Lifeboat's copy{} is kept",
            engine.title(),
            &record.container[..12.min(record.container.len())],
            if ours.is_some() { " (stopped)" } else { "" }
        );
    }
    engine.set_restart_policy(&record.container, &record.restart, record.restart_retries)?;
    if record.was_running && !engine.run_state(&record.container)?.0 {
        engine.start(&record.container)?;
    }
    if let Some(c) = &ours {
        remove_ours(host, c);
    }
    let _ = std::fs::remove_file(record_path(host, &record.name));
    Ok(())
}

/// Removes Lifeboat's copy of an adopted service, with its volumes.
fn remove_ours(host: &Host, c: &crate::runtime::RunConfig) {
    if let Err(e) = crate::runtime::remove(host, &c.id, true) {
        tracing::error!(container = c.name.as_str(), error = %e, "cannot remove Lifeboat's container");
    }
    if let Ok(vols) = host.volumes() {
        for m in &c.mounts {
            if let MountSource::Volume { name } = &m.source
                && let Err(e) = vols.remove(name)
            {
                tracing::error!(volume = name.as_str(), error = %e, "cannot remove Lifeboat's volume");
            }
        }
    }
}

/// Sends adopted service `name` back to its engine with its data as it is now (or undoes an
/// adoption that did not finish).
pub fn give_back(host: &Host, access: Access, name: &str) -> anyhow::Result<ReturnReport> {
    crate::runtime::names::validate_name(name).map_err(|e| UsageError(e.to_string()))?;
    let Some(mut record) = load(host, name)? else {
        bail!(crate::error::NotFound(format!("{name} was not adopted from another engine")))
    };
    let engine = Engine::connect(kind_named(&record.engine)?)?;
    let began = Instant::now();
    if record.phase == Phase::Adopting {
        undo_adoption(host, &engine, &record).context("cannot undo the adoption that did not finish")?;
        return Ok(ReturnReport {
            name: name.to_string(),
            engine: record.engine.clone(),
            snapshot: None,
            container: record.container.clone(),
            unavailable_seconds: began.elapsed().as_secs_f64(),
            undone: true,
        });
    }
    let containers = host.containers()?;
    let ours = containers.named(name).ok();
    if let Some(new) = record.returned.clone() {
        // Killed after the engine took it back: only Lifeboat's copy is left to remove.
        if let Some(c) = &ours {
            remove_ours(host, c);
        }
        let _ = std::fs::remove_file(record_path(host, name));
        return Ok(ReturnReport {
            name: name.to_string(),
            engine: record.engine.clone(),
            snapshot: None,
            container: new,
            unavailable_seconds: began.elapsed().as_secs_f64(),
            undone: false,
        });
    }
    let Some(ours) = ours else {
        bail!(crate::error::NotFound(format!("Lifeboat has no container {name} to send back")))
    };
    // The engine's old copy goes below: refused if someone runs it again, or another
    // container shares its volumes (their data is not in Lifeboat's copy).
    let old_untouched = |record: &Adoption| -> anyhow::Result<()> {
        if record.cleared || !engine.has_container(&record.container)? {
            return Ok(());
        }
        let (running, started) = engine.run_state(&record.container)?;
        if running || (!record.engine_started_at.is_empty() && started != record.engine_started_at) {
            bail!(ContainerError::Conflict(format!(
                "{}'s old container {name} was started again since the adoption: it may hold data Lifeboat's copy \
                 does not; remove it in {} to send Lifeboat's copy back",
                engine.title(),
                engine.title()
            )));
        }
        Ok(())
    };
    old_untouched(&record)?;
    if !record.cleared {
        for v in &record.volumes {
            let others: Vec<String> = engine.containers_using(v)?.into_iter().filter(|n| n != name).collect();
            if !others.is_empty() {
                bail!(ContainerError::Conflict(format!(
                    "volume {v} is used by {} in {}: it cannot be replaced",
                    others.join(", "),
                    engine.title()
                )));
            }
        }
    }
    if record.phase == Phase::Adopted {
        record.ours_running = crate::runtime::observed_state(containers, &ours.id)?.status.is_up();
        record.phase = Phase::Returning;
        save(host, &record)?;
    }
    let running = record.ours_running;
    if crate::runtime::observed_state(containers, &ours.id)?.status.is_up() {
        crate::runtime::stop(host, &ours.id, Duration::from_secs(10))?;
    }
    // Lifeboat's copy runs again after a failure, unless the engine runs one by that name
    // (never two copies serving).
    let start_ours_again = |why: anyhow::Error| -> anyhow::Error {
        if engine.has_container(name).unwrap_or(true) && engine.run_state(name).map_or(true, |(r, _)| r) {
            return why.context(format!(
                "{name} is left stopped under Lifeboat: {} has a container by that name",
                engine.title()
            ));
        }
        if running && let Err(e) = crate::runtime::start(host, &ours.id) {
            return why.context(format!("and Lifeboat could not start {name} again: {e}"));
        }
        why.context(format!("{name} runs under Lifeboat as before"))
    };
    let (id, snap) = match capture(host, &access, name) {
        Ok(t) => t,
        Err(e) => return Err(start_ours_again(e.context("the snapshot of the service failed"))),
    };
    // The engine's copy is the data as it was at adoption (in the repository since): the
    // snapshot just taken replaces it. Checked again just before (not forced: a container
    // someone started meanwhile is not killed).
    let cleared = (|| -> anyhow::Result<()> {
        if record.cleared {
            // A half-made container of a restore into the engine that was killed.
            if engine.has_container(name)? {
                engine.remove_container(name)?;
            }
        } else {
            old_untouched(&record)?;
            if engine.has_container(&record.container)? {
                engine.remove_stopped_container(&record.container)?;
            }
        }
        for v in &record.volumes {
            if engine.volume_mountpoint(v)?.is_some() {
                engine.remove_volume(v)?;
            }
        }
        record.cleared = true;
        save(host, &record)
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
    record.returned = Some(into.container.clone());
    if let Err(e) = save(host, &record) {
        tracing::warn!(error = %e, "cannot record that the service is back in its engine");
    }
    if let Err(e) = engine.set_restart_policy(&into.container, &record.restart, record.restart_retries) {
        tracing::warn!(error = %e, "cannot give the container its restart policy back");
    }
    let unavailable = began.elapsed().as_secs_f64();
    // Lifeboat's copy goes: the engine runs the service, and the snapshot holds this data.
    remove_ours(host, &ours);
    let _ = std::fs::remove_file(record_path(host, name));
    Ok(ReturnReport {
        name: name.to_string(),
        engine: record.engine,
        snapshot: Some(id),
        container: into.container,
        unavailable_seconds: unavailable,
        undone: false,
    })
}
