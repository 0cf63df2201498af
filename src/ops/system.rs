//! `system df`: the disk space images, containers and volumes take, and what removing the
//! unused ones would give back, as Docker reports it.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::report::text::human_size;
use crate::runtime::Host;

/// One line of `system df`, in Docker's field names (sizes as Docker prints them, and in
/// bytes for scripts).
#[derive(Clone, Debug, Serialize)]
pub struct DfRow {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    #[serde(rename = "TotalCount")]
    pub total: usize,
    #[serde(rename = "Active")]
    pub active: usize,
    #[serde(rename = "Size")]
    pub size: String,
    #[serde(rename = "Reclaimable")]
    pub reclaimable: String,
    #[serde(rename = "SizeBytes")]
    pub size_bytes: u64,
    #[serde(rename = "ReclaimableBytes")]
    pub reclaimable_bytes: u64,
}

impl DfRow {
    fn new(kind: &'static str, total: usize, active: usize, size: u64, reclaimable: u64) -> DfRow {
        let percent = if size == 0 { 0 } else { (reclaimable as u128 * 100 / size as u128) as u64 };
        DfRow {
            kind,
            total,
            active,
            size: human_size(size),
            reclaimable: if total == 0 { human_size(0) } else { format!("{} ({percent}%)", human_size(reclaimable)) },
            size_bytes: size,
            reclaimable_bytes: reclaimable,
        }
    }
}

/// Images (each layer counted once, however many images share it; reclaimable: the layers
/// only unused images have), containers (their own layers; reclaimable: the stopped ones'),
/// local volumes (reclaimable: those no container mounts).
pub fn df(host: &Host) -> anyhow::Result<Vec<DfRow>> {
    let store = host.store()?;
    let containers = host.containers()?;
    let volumes = host.volumes()?;
    let mut used_images = HashSet::new();
    let mut used_volumes = HashSet::new();
    let (mut c_total, mut c_active, mut c_size, mut c_free) = (0, 0, 0u64, 0u64);
    for id in containers.ids()? {
        let Ok(config) = containers.config(&id) else { continue };
        let state = crate::runtime::observed_state(containers, &id)?;
        let own = crate::fsutil::disk_usage(&containers.dir(&id).join("upper"))?;
        used_images.insert(config.image_id.to_string());
        for m in &config.mounts {
            if let crate::runtime::container::MountSource::Volume { name } = &m.source {
                used_volumes.insert(name.clone());
            }
        }
        c_total += 1;
        c_size += own;
        if state.status.is_up() {
            c_active += 1;
        } else {
            c_free += own;
        }
    }
    let images = store.images()?;
    // Each layer's size once, and whether an image in use holds it.
    let mut layers: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    let mut i_active = 0;
    for image in &images {
        let active = used_images.contains(&image.id().to_string());
        i_active += usize::from(active);
        for (diff_id, descriptor) in image.config.rootfs.diff_ids.iter().zip(&image.manifest.layers) {
            let size = store.layer_meta(diff_id).map_or(descriptor.size, |m| m.size);
            let entry = layers.entry(diff_id.to_string()).or_insert((size, false));
            entry.1 |= active;
        }
    }
    let i_size = layers.values().map(|(s, _)| s).sum();
    let i_free = layers.values().filter(|(_, used)| !used).map(|(s, _)| s).sum();
    let (mut v_total, mut v_active, mut v_size, mut v_free) = (0, 0, 0u64, 0u64);
    for v in volumes.list()? {
        let size = crate::fsutil::disk_usage(&volumes.data_dir(&v.name))?;
        v_total += 1;
        v_size += size;
        if used_volumes.contains(&v.name) {
            v_active += 1;
        } else {
            v_free += size;
        }
    }
    Ok(vec![
        DfRow::new("Images", images.len(), i_active, i_size, i_free),
        DfRow::new("Containers", c_total, c_active, c_size, c_free),
        DfRow::new("Local Volumes", v_total, v_active, v_size, v_free),
    ])
}
