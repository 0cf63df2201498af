//! `restore NAME --to docker://`: a snapshot brought back into Docker (or Podman) rather than
//! Lifeboat's runtime: the image loaded into the engine if it lacks it, the volumes created
//! there and filled at their mount points, the container created from the recorded
//! configuration and its writable layer written into its upper directory before it starts.
//! All or nothing: a failure removes the container and the volumes it made.

use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::engine::Engine;
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Restorer;
use crate::runtime::Host;
use crate::runtime::container::{ContainerError, MountSource, RunConfig};

/// What a restore into an engine made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IntoEngine {
    pub engine: String,
    pub container: String,
    pub name: String,
    pub volumes: Vec<String>,
    /// The image was loaded into the engine (it did not have it).
    pub loaded_image: bool,
    pub started: bool,
    pub seconds: f64,
}

/// What was made so far, removed again unless the restore completes.
struct Made<'a> {
    engine: &'a Engine,
    container: Option<String>,
    volumes: Vec<String>,
    done: bool,
}

impl Drop for Made<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(id) = &self.container
            && let Err(e) = self.engine.remove_container(id)
        {
            tracing::error!(container = id.as_str(), error = %e, "cannot remove the half-restored container");
        }
        for v in &self.volumes {
            if let Err(e) = self.engine.remove_volume(v) {
                tracing::error!(volume = v.as_str(), error = %e, "cannot remove a half-restored volume");
            }
        }
    }
}

pub fn restore_into(
    host: &Host,
    repo: &Repository,
    engine: &Engine,
    snapshot_id: &str,
    snap: &Snapshot,
    rename: Option<&str>,
    start: bool,
) -> anyhow::Result<IntoEngine> {
    let began = Instant::now();
    let label = format!("snapshot {}", &snapshot_id[..12.min(snapshot_id.len())]);
    let mut recorded: RunConfig =
        serde_json::from_value(snap.run_config.clone()).context("the snapshot's run configuration is unreadable")?;
    let name = rename.unwrap_or(&snap.service).to_string();
    crate::runtime::names::validate_name(&name).map_err(|e| crate::error::UsageError(e.to_string()))?;
    engine.check_overlay()?;
    if engine.has_container(&name)? {
        bail!(ContainerError::Conflict(format!(
            "{} already has a container {name}; remove it, or restore with --as NEWNAME",
            engine.title()
        )));
    }
    let vol_name = |v: &str| match rename {
        Some(n) => format!("{n}-{v}"),
        None => v.to_string(),
    };
    // A volume the snapshot holds no data for (taken with --no-volumes) would be the engine's
    // live volume of that name, or a new empty one: refused.
    for m in &recorded.mounts {
        if let MountSource::Volume { name: v } = &m.source
            && !snap.volumes.iter().any(|s| s.name == *v)
        {
            bail!(crate::error::UsageError(format!(
                "the snapshot holds no data for volume {v} (taken with --no-volumes): restore it under Lifeboat's runtime"
            )));
        }
    }
    if rename.is_some() {
        // A copy never joins the live service's network (its peers' names would lead to the
        // live database), nor counts as one of its Compose project's containers.
        if let crate::runtime::container::NetworkMode::Network(net) = &mut recorded.network {
            crate::runtime::names::validate_name(net)
                .map_err(|e| anyhow::anyhow!("the snapshot's network is unusable: {e}"))?;
            let suffix = &blake3::hash(name.as_bytes()).to_hex()[..8];
            *net = format!("{}-{suffix}", &net[..net.len().min(100)]);
        }
        recorded.labels.retain(|k, _| !k.starts_with("com.docker.compose."));
    }
    for v in &snap.volumes {
        if engine.volume_mountpoint(&vol_name(&v.name))?.is_some() {
            bail!(ContainerError::Conflict(format!(
                "{} already has a volume {}; remove it, or restore with --as NEWNAME",
                engine.title(),
                vol_name(&v.name)
            )));
        }
    }

    // The image: the engine's own if it has it, else from the repository through this
    // host's image store, loaded as a docker-archive.
    let store = host.store()?;
    if store.image_by_manifest(&snap.image.manifest).is_err() {
        super::fetch_image(store, repo, snap, &label)?;
    }
    let image = store.image_by_manifest(&snap.image.manifest)?;
    let loaded_image = !engine.has_image(image.id())?;
    if loaded_image {
        let tmp = store.temp_path("to-engine");
        {
            let file = std::fs::File::create(tmp.path())?;
            let names: Vec<crate::image::Reference> = crate::image::Reference::parse(&snap.image.reference)
                .ok()
                .filter(|r| r.digest().is_none() && !engine.has_image_named(&r.familiar()).unwrap_or(true))
                .into_iter()
                .collect();
            let item = crate::image::archive::SaveItem { image: image.clone(), names };
            let out = crate::image::archive::save(
                store,
                &[item],
                crate::image::archive::ArchiveFormat::DockerArchive,
                std::io::BufWriter::new(file),
            )?;
            std::io::Write::flush(&mut { out })?;
        }
        engine.load_image(tmp.path()).with_context(|| format!("{} did not take the image", engine.title()))?;
        if !engine.has_image(image.id())? {
            bail!("{} loaded the image under another ID than {}", engine.title(), image.id().short());
        }
    }

    let mut made = Made { engine, container: None, volumes: Vec::new(), done: false };
    for v in &snap.volumes {
        let vname = vol_name(&v.name);
        // Creating a volume that exists gives the existing one: a label only this restore
        // knows says the volume is the one it made.
        let nonce = crate::fsutil::random_hex(16);
        let data = engine.create_volume(&vname, &nonce)?.ok_or_else(|| {
            ContainerError::Conflict(format!("{} has a volume {vname} already (made meanwhile)", engine.title()))
        })?;
        made.volumes.push(vname.clone());
        engine.check_own_path(&format!("volume {vname}'s mount point"), &data)?;
        if std::fs::read_dir(&data).with_context(|| format!("cannot read {}", data.display()))?.next().is_some() {
            bail!(ContainerError::Conflict(format!("{}'s new volume {vname} is not empty", engine.title())));
        }
        Restorer::new(repo, &format!("{label} volume {}", v.name)).restore(&v.tree, &data)?;
        if let Some(root) = v.root {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(&data, Some(root.uid), Some(root.gid))?;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(root.mode))?;
        }
        for m in recorded.mounts.iter_mut() {
            if matches!(&m.source, MountSource::Volume { name } if *name == v.name) {
                m.source = MountSource::Volume { name: vname.clone() };
            }
        }
    }

    recorded.name = name.clone();
    recorded.image_id = image.id().clone();
    let body = crate::engine::create_body(&recorded);
    let id = engine.create_container(&name, &body)?;
    made.container = Some(id.clone());
    let upper = engine.upper_dir(&id)?;
    engine.check_own_path("the new container's layer", &upper)?;
    if std::fs::read_dir(&upper).with_context(|| format!("cannot read {}", upper.display()))?.next().is_some() {
        bail!("{}'s new container {name} has files in its layer already", engine.title());
    }
    Restorer::new(repo, &format!("{label} container layer")).restore(&snap.container_layer, &upper)?;
    if start {
        engine.start(&id)?;
    }
    made.done = true;
    Ok(IntoEngine {
        engine: engine.kind.scheme().to_string(),
        container: id,
        name,
        volumes: snap.volumes.iter().map(|v| vol_name(&v.name)).collect(),
        loaded_image,
        started: start,
        seconds: began.elapsed().as_secs_f64(),
    })
}
