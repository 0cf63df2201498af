//! Everything a container needs on disk before the runtime creates it: the overlay root
//! filesystem, the generated /etc files, its volumes (filled from the image on first use, as
//! Docker does), and the OCI bundle.

use std::fs;
use std::path::PathBuf;

use anyhow::Context as _;

use super::container::{Containers, MountSource, NetworkMode, RunConfig};
use super::{Paths, rootfs, spec, volume};
use crate::image::Store;

pub struct Prepared {
    pub bundle: PathBuf,
    pub cgroups_path: String,
}

pub fn prepare(paths: &Paths, config: &RunConfig) -> anyhow::Result<Prepared> {
    let containers = Containers::open(&paths.root)?;
    let store = Store::open(&paths.root)?;
    let dir = containers.dir(&config.id);
    let layers: Vec<PathBuf> = config.layers.iter().map(|d| store.layer_diff_dir(d)).collect();
    for (d, path) in config.layers.iter().zip(&layers) {
        if !path.is_dir() {
            anyhow::bail!("layer {d} of image {} is missing from the store (was the image removed?)", config.image);
        }
    }
    // A `run --rm` container's changes are discarded with it: nothing to sync.
    let plan = rootfs::OverlayPlan { volatile: config.auto_remove, ..rootfs::plan(&dir, &layers) };
    rootfs::mount(&plan)?;
    let files = dir.join("etc");
    rootfs::write_etc_files(&files, &config.hostname, config.network == NetworkMode::Host)?;

    let mut sources = Vec::new();
    for m in &config.mounts {
        let source = match &m.source {
            MountSource::Bind { path } => {
                if !path.exists() {
                    fs::create_dir_all(path)
                        .with_context(|| format!("cannot create bind mount source {}", path.display()))?;
                }
                path.clone()
            }
            MountSource::Volume { name } => {
                let vol = volume::Volumes::open(&paths.root)?.ensure(name)?;
                if vol.fresh {
                    // A new volume starts with the image's content at its mount path.
                    let from = plan.target.join(m.target.trim_start_matches('/'));
                    if from.is_dir() {
                        volume::copy_tree(&from, &vol.data)
                            .with_context(|| format!("cannot fill volume {name} from the image"))?;
                    }
                    volume::Volumes::open(&paths.root)?.mark_filled(name)?;
                }
                vol.data
            }
        };
        let target = plan.target.join(m.target.trim_start_matches('/'));
        if !target.exists() {
            // Create the mount point in the container's upper layer.
            if source.is_dir() {
                let _ = fs::create_dir_all(&target);
            }
        }
        sources.push(source);
    }

    let (uid, gid, additional_gids) =
        rootfs::resolve_user(&plan.target, config.user.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    let user = spec::ProcessUser { uid, gid, additional_gids };
    let netns = match &config.network {
        NetworkMode::Container(other) => {
            let state = containers.state(other)?;
            let pid = state
                .pid
                .filter(|p| super::alive(*p))
                .ok_or_else(|| anyhow::anyhow!("container {other} whose network this one joins is not running"))?;
            Some(PathBuf::from(format!("/proc/{pid}/ns/net")))
        }
        _ => None,
    };
    let cgroups_path = format!("/lifeboat/{}", config.id);
    let init = if config.init { Some(spec::init_binary().map_err(|e| anyhow::anyhow!(e))?) } else { None };
    let value = spec::build(
        config,
        &spec::Inputs {
            rootfs: &plan.target,
            files: &files,
            user: &user,
            mount_sources: &sources,
            netns: netns.as_deref(),
            cgroups_path: &cgroups_path,
            init: init.as_deref(),
        },
    );
    let bundle = dir.join("bundle");
    fs::create_dir_all(&bundle)?;
    crate::fsutil::write_atomic_volatile(&bundle.join("config.json"), &serde_json::to_vec(&value)?)?;
    Ok(Prepared { bundle, cgroups_path })
}
