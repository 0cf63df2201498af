//! `commit`: a container's changes (its overlay upper directory) become one new layer on top of
//! its image, with whiteouts for what it deleted, as `docker commit` does.

use std::path::Path;

use super::changes::apply_change;
use super::import::add_dir_layer;
use super::layer::{Compression, TreeMode};
use super::spec::History;
use super::{Image, ImageError, Reference, Store};
use crate::sys::now_rfc3339;

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
    commit_dirs(store, base, &[(upper, TreeMode::OverlayUpper, opts.created_by.clone())], name, opts)
}

/// Makes a new image: `base` plus one layer per directory, in order, each with its history
/// line. `opts.created_by` is not used here; each directory brings its own.
pub fn commit_dirs(
    store: &Store,
    base: &Image,
    dirs: &[(&Path, TreeMode, String)],
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
    let mut layers = base.manifest.layers.clone();
    let created = now_rfc3339();
    for (dir, mode, created_by) in dirs {
        let (desc, meta) = add_dir_layer(&mut txn, dir, *mode, opts.compression)?;
        config.rootfs.diff_ids.push(meta.diff_id);
        config.history.push(History {
            created: Some(created.clone()),
            created_by: Some(created_by.clone()),
            author: opts.author.clone(),
            comment: opts.message.clone(),
            empty_layer: false,
        });
        layers.push(desc);
    }
    config.created = Some(created);
    if let Some(a) = &opts.author {
        config.author = Some(a.clone());
    }
    let manifest = txn.put_image(&config, layers)?;
    let names: Vec<Reference> = name.cloned().into_iter().collect();
    txn.commit(&[(manifest.clone(), names)])?;
    Ok(store.image_by_manifest(&manifest.digest)?)
}
