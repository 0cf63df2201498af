//! `commit`: a container's changes (its overlay upper directory) become one new layer on top of
//! its image, with whiteouts for what it deleted, as `docker commit` does.

use std::path::Path;

use super::changes::apply_change;
use super::import::add_dir_layer;
use super::layer::{Compression, TreeMode};
use super::spec::History;
use super::{Image, ImageError, Reference, Store, now_rfc3339};

pub struct CommitOptions {
    /// Dockerfile-style instructions applied to the new image's config (`CMD …`, `ENV …`).
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    /// What the history entry says made the layer.
    pub created_by: String,
    /// The configuration the container ran with, when it differs from the image's (env,
    /// command): applied before `changes`, as Docker does.
    pub run_config: Option<super::spec::ContainerConfig>,
    pub compression: Compression,
}

/// Makes a new image: `base` plus one layer archived from the overlay upper directory `upper`.
pub fn commit_upper(
    store: &Store,
    base: &Image,
    upper: &Path,
    name: Option<&Reference>,
    opts: &CommitOptions,
) -> Result<Image, ImageError> {
    let mut config = base.config.clone();
    if let Some(run) = &opts.run_config {
        config.config = run.clone();
    }
    for change in &opts.changes {
        apply_change(&mut config.config, change)?;
    }
    let mut txn = store.begin()?;
    let (desc, meta) = add_dir_layer(&mut txn, upper, TreeMode::OverlayUpper, opts.compression)?;
    let created = now_rfc3339();
    config.created = Some(created.clone());
    config.rootfs.diff_ids.push(meta.diff_id);
    config.history.push(History {
        created: Some(created),
        created_by: Some(opts.created_by.clone()),
        author: opts.author.clone(),
        comment: opts.message.clone(),
        empty_layer: false,
    });
    if let Some(a) = &opts.author {
        config.author = Some(a.clone());
    }
    let mut layers = base.manifest.layers.clone();
    layers.push(desc);
    let manifest = txn.put_image(&config, layers)?;
    let names: Vec<Reference> = name.cloned().into_iter().collect();
    txn.commit(&[(manifest.clone(), names)])?;
    Ok(store.image_by_manifest(&manifest.digest)?)
}
