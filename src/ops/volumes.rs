//! Volume commands: create, list, inspect, remove (refused while a container uses one),
//! prune.

use serde::Serialize;

use crate::runtime::Host;
use crate::runtime::container::{ContainerError, MountSource};
use crate::runtime::volume::VolumeMeta;

/// Whether any container (running or not) mounts volume `name`.
pub fn in_use(host: &Host, name: &str) -> anyhow::Result<bool> {
    let containers = host.containers()?;
    for id in containers.ids()? {
        if let Ok(c) = containers.config(&id)
            && c.mounts.iter().any(|m| matches!(&m.source, MountSource::Volume { name: n } if n == name))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn create(host: &Host, name: &str) -> anyhow::Result<VolumeMeta> {
    Ok(host.volumes()?.create(name)?)
}

pub fn list(host: &Host) -> anyhow::Result<Vec<VolumeMeta>> {
    Ok(host.volumes()?.list()?)
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
