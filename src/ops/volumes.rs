//! Volume commands: create, list, inspect, remove (refused while a container uses one),
//! prune.

use serde::Serialize;

use crate::runtime::Host;
use crate::runtime::container::ContainerError;
use crate::runtime::volume::VolumeMeta;

/// Whether any container (running or not) mounts volume `name`.
pub fn in_use(host: &Host, name: &str) -> anyhow::Result<bool> {
    Ok(host.containers()?.uses_volume(name)?)
}

pub fn create(host: &Host, name: &str) -> anyhow::Result<VolumeMeta> {
    Ok(host.volumes()?.create(name)?)
}

/// Every volume. What a restore that died left is settled first: a volume its container
/// already uses is whole (the container was the restore's commit point) and becomes ordinary;
/// any other is not a volume, and goes (or, if it was there before, is emptied again).
pub fn list(host: &Host) -> anyhow::Result<Vec<VolumeMeta>> {
    let vols = host.volumes()?;
    let mut out = Vec::new();
    for meta in vols.list()? {
        if meta.restoring.as_ref().is_none_or(|o| o.alive()) {
            out.push(meta);
            continue;
        }
        if in_use(host, &meta.name)? {
            vols.restored(&meta.name)?;
        } else {
            tracing::warn!(volume = meta.name.as_str(), "removing what a restore that died left");
            vols.discard_restore(&meta.name)?;
            if !meta.existed {
                continue;
            }
        }
        out.push(vols.get(&meta.name)?);
    }
    Ok(out)
}

/// A volume's details, in Docker's shape.
#[derive(Debug, Serialize)]
pub struct VolumeDetails {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: &'static str,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: std::path::PathBuf,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
}

pub fn inspect(host: &Host, name: &str) -> anyhow::Result<VolumeDetails> {
    let vols = host.volumes()?;
    let meta = vols.get(name)?;
    Ok(VolumeDetails { name: meta.name, driver: "local", mountpoint: vols.data_dir(name), created_at: meta.created })
}

/// Removes volume `name`; refused while a container uses it unless `force`.
pub fn remove(host: &Host, name: &str, force: bool) -> anyhow::Result<()> {
    let vols = host.volumes()?;
    vols.get(name)?;
    if !force && in_use(host, name)? {
        return Err(ContainerError::Conflict(format!(
            "volume {name} is in use by a container (remove it first, or use -f)"
        ))
        .into());
    }
    vols.remove(name)?;
    Ok(())
}

/// Removes every volume no container uses; returns their names.
pub fn prune(host: &Host) -> anyhow::Result<Vec<String>> {
    let vols = host.volumes()?;
    let mut removed = Vec::new();
    for v in vols.list()? {
        if !in_use(host, &v.name)? {
            vols.remove(&v.name)?;
            removed.push(v.name);
        }
    }
    Ok(removed)
}
