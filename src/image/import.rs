//! `import`: a root filesystem (tarball, directory or stdin) becomes a one-layer image.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::changes::apply_change;
use super::layer::{self, Compression, TreeMode};
use super::spec::{History, ImageConfig, Platform, RootFs};
use super::store::LayerInput;
use super::{Image, ImageError, Reference, Store};
use crate::sys::now_rfc3339;

pub enum ImportSource {
    /// A tar archive, plain or compressed with gzip or zstd.
    Archive(PathBuf),
    /// A directory, archived deterministically.
    Dir(PathBuf),
    /// A tar archive on standard input.
    Stdin,
}

impl ImportSource {
    /// `-` is stdin, a directory is a directory, anything else a file.
    pub fn from_arg(arg: &str) -> ImportSource {
        if arg == "-" {
            ImportSource::Stdin
        } else if Path::new(arg).is_dir() {
            ImportSource::Dir(PathBuf::from(arg))
        } else {
            ImportSource::Archive(PathBuf::from(arg))
        }
    }

    fn describe(&self) -> String {
        match self {
            ImportSource::Archive(p) | ImportSource::Dir(p) => p.display().to_string(),
            ImportSource::Stdin => "-".to_string(),
        }
    }
}

pub struct ImportOptions {
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub compression: Compression,
}

/// Imports `source` as a new image, named `name` if given.
pub fn import(
    store: &Store,
    source: &ImportSource,
    name: Option<&Reference>,
    opts: &ImportOptions,
) -> Result<Image, ImageError> {
    let mut config = ImageConfig::default();
    for change in &opts.changes {
        apply_change(&mut config.config, change)?;
    }
    let mut txn = store.begin()?;
    let input = LayerInput::Tar(opts.compression);
    let (desc, meta) = match source {
        ImportSource::Archive(path) => {
            let file = File::open(path).map_err(|e| ImageError::Source { path: path.clone(), source: e })?;
            let (_, tar) =
                layer::decompressed(file).map_err(|e| ImageError::Source { path: path.clone(), source: e })?;
            txn.add_layer(tar, input, None)?
        }
        ImportSource::Stdin => {
            let (_, tar) =
                layer::decompressed(io::stdin()).map_err(|e| ImageError::Source { path: "-".into(), source: e })?;
            txn.add_layer(tar, input, None)?
        }
        ImportSource::Dir(dir) => add_dir_layer(&mut txn, dir, TreeMode::Plain, opts.compression)?,
    };
    let created = now_rfc3339();
    let platform = Platform::host();
    config.created = Some(created.clone());
    config.architecture = platform.architecture;
    config.os = platform.os;
    config.variant = platform.variant;
    config.rootfs = RootFs { kind: "layers".into(), diff_ids: vec![meta.diff_id] };
    config.history = vec![History {
        created: Some(created),
        created_by: Some(format!("lifeboat import {}", source.describe())),
        comment: Some(opts.message.clone().unwrap_or_else(|| format!("Imported from {}", source.describe()))),
        ..Default::default()
    }];
    let manifest = txn.put_image(&config, vec![desc])?;
    let names: Vec<Reference> = name.cloned().into_iter().collect();
    txn.commit(&[(manifest.clone(), names)])?;
    Ok(store.image_by_manifest(&manifest.digest)?)
}

/// Archives `dir` (a plain tree, or an overlay upper directory) as a new layer in `txn`.
pub(crate) fn add_dir_layer(
    txn: &mut super::store::Txn<'_>,
    dir: &Path,
    mode: TreeMode,
    compression: Compression,
) -> Result<(super::spec::Descriptor, super::store::LayerMeta), ImageError> {
    let (reader, writer) = io::pipe().map_err(|e| ImageError::Source { path: dir.to_path_buf(), source: e })?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || layer::write_tree(dir, writer, mode).map(|_| ()));
        let added = txn.add_layer(reader, LayerInput::Tar(compression), None);
        match (producer.join().expect("archiver thread panicked"), added) {
            // A file of the tree could not be read: that is the cause.
            (Err(e @ layer::LayerError::Read { .. }), _) => Err(ImageError::Store(e.into())),
            // The pipe broke because unpacking stopped: report why it stopped.
            (_, Err(e)) => Err(e.into()),
            (Err(e), Ok(_)) => Err(ImageError::Store(e.into())),
            (Ok(()), Ok(added)) => Ok(added),
        }
    })
}
