//! Image commands: list, tag, remove (refused while a container uses an image), prune,
//! history, inspect, save to a file or a stream, load, unpack.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::UsageError;
use crate::fsutil::{self, TempPath};
use crate::image::archive::{self, ArchiveFormat, SaveItem};
use crate::image::layer::{self, ApplyOptions, Compression, WhiteoutMode};
use crate::image::{Digest, Image, Reference, StoreError};
use crate::report::text::ago;
use crate::runtime::{self, Host};

/// One name of an image, as `images` lists it (Docker's field names in JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageRow {
    #[serde(rename = "Repository")]
    pub repository: String,
    #[serde(rename = "Tag")]
    pub tag: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Digest")]
    pub digest: String,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "CreatedSince")]
    pub created_since: String,
    #[serde(rename = "Size")]
    pub size: u64,
}

/// Every image under every name it has (a nameless one once), filtered by `repository`
/// (`NAME` or `NAME:TAG`).
pub fn list(host: &Host, repository: Option<&str>) -> anyhow::Result<Vec<ImageRow>> {
    let store = host.store()?;
    let filter = repository.map(Reference::parse_without_default).transpose()?;
    let mut rows = Vec::new();
    for image in store.images()? {
        let size = store.image_size(&image);
        let names: Vec<Option<&Reference>> =
            if image.names.is_empty() { vec![None] } else { image.names.iter().map(Some).collect() };
        for name in names {
            if let Some(f) = &filter {
                let Some(n) = name else { continue };
                if !f.same_repository(n) || f.tag().is_some_and(|t| Some(t) != n.tag()) {
                    continue;
                }
            }
            rows.push(ImageRow {
                repository: name.map_or("<none>".to_string(), |n| n.familiar_name()),
                tag: name.and_then(|n| n.tag()).unwrap_or("<none>").to_string(),
                id: image.id().to_string(),
                digest: image.manifest_digest.to_string(),
                created: image.config.created.clone(),
                created_since: ago(image.config.created.as_deref()),
                size,
            });
        }
    }
    Ok(rows)
}

pub fn tag(host: &Host, source: &str, target: &str) -> anyhow::Result<()> {
    let target = Reference::parse(target)?;
    if target.digest().is_some() {
        return Err(UsageError(format!("cannot tag with a digest reference {:?}", target.familiar())).into());
    }
    let store = host.store()?;
    let image = store.find(source)?;
    store.tag(&image, &target)?;
    Ok(())
}

/// What removing one image did.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    pub untagged: Vec<String>,
    pub deleted: Option<String>,
}

/// The names of the containers made from `image`.
fn users(host: &Host, image: &Digest) -> anyhow::Result<Vec<String>> {
    let containers = host.containers()?;
    Ok(containers
        .ids()?
        .into_iter()
        .filter_map(|id| containers.config(&id).ok())
        .filter(|c| c.image_id == *image)
        .map(|c| c.name)
        .collect())
}

/// Removes an image by name (that name; the image goes with its last) or ID (every name).
/// Refused while a container uses it, or when an ID names an image with several names,
/// unless `force`.
pub fn remove(host: &Host, what: &str, force: bool) -> anyhow::Result<Removed> {
    let store = host.store()?;
    let image = store.find(what)?;
    let users = users(host, image.id())?;
    let last_name = image.names.len() <= 1 || Reference::parse(what).is_err();
    if !users.is_empty() && last_name && !force {
        return Err(StoreError::Conflict(format!(
            "image {} is used by container(s) {}; remove them first, or use -f",
            image.id().short(),
            users.join(", ")
        ))
        .into());
    }
    let by_name = Reference::parse(what).ok().filter(|r| image.names.contains(r));
    let to_untag: Vec<Reference> = match by_name {
        Some(r) => vec![r],
        None if image.names.len() > 1 && !force => {
            return Err(StoreError::Conflict(format!(
                "image {} is referenced by several names ({}); remove them by name or use -f",
                image.id().short(),
                image.names.iter().map(Reference::familiar).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
        None => image.names.clone(),
    };
    let mut report = Removed { untagged: to_untag.iter().map(Reference::familiar).collect(), ..Default::default() };
    let orphan = image.names.is_empty() || !store.untag_all(&to_untag)?.is_empty();
    if orphan {
        store.remove_image(&image.manifest_digest, &runtime::layers_in_use(host)?)?;
        report.deleted = Some(image.id().to_string());
    }
    Ok(report)
}

/// What `image prune` removed.
#[derive(Debug, Default, Serialize)]
pub struct Pruned {
    pub untagged: Vec<String>,
    pub images: usize,
    pub blobs: usize,
    pub layers: usize,
    pub temp: usize,
    pub bytes: u64,
}

/// Removes images no name and no container holds (`all`: every image no container uses).
pub fn prune(host: &Host, all: bool) -> anyhow::Result<Pruned> {
    let store = host.store()?;
    let containers = host.containers()?;
    let used_images: HashSet<Digest> =
        containers.ids()?.into_iter().filter_map(|id| containers.config(&id).ok()).map(|c| c.image_id).collect();
    let mut report = Pruned::default();
    if all {
        let names: Vec<Reference> =
            store.images()?.into_iter().filter(|i| !used_images.contains(i.id())).flat_map(|i| i.names).collect();
        store.untag_all(&names)?;
        report.untagged = names.iter().map(Reference::familiar).collect();
    }
    let used_manifests: HashSet<Digest> =
        store.images()?.into_iter().filter(|i| used_images.contains(i.id())).map(|i| i.manifest_digest).collect();
    let stats = store.prune(&used_manifests, &runtime::layers_in_use(host)?)?;
    (report.images, report.blobs, report.layers, report.temp, report.bytes) =
        (stats.images, stats.blobs, stats.layers, stats.temp, stats.bytes);
    Ok(report)
}

/// One step of an image's history, newest first (Docker's field names in JSON).
#[derive(Debug, Serialize)]
pub struct HistoryRow {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Created")]
    pub created: Option<String>,
    #[serde(rename = "CreatedBy")]
    pub created_by: String,
    #[serde(rename = "Size")]
    pub size: u64,
    #[serde(rename = "Comment")]
    pub comment: Option<String>,
}

pub fn history(host: &Host, what: &str) -> anyhow::Result<Vec<HistoryRow>> {
    let store = host.store()?;
    let image = store.find(what)?;
    let mut layers = image.config.rootfs.diff_ids.iter();
    let mut entries = Vec::new();
    for h in &image.config.history {
        let size =
            if h.empty_layer { 0 } else { layers.next().and_then(|d| store.layer_meta(d)).map_or(0, |m| m.size) };
        entries.push((h, size));
    }
    entries.reverse();
    Ok(entries
        .into_iter()
        .enumerate()
        .map(|(i, (h, size))| HistoryRow {
            id: if i == 0 { image.id().to_string() } else { "<missing>".into() },
            created: h.created.clone(),
            created_by: h.created_by.clone().unwrap_or_default(),
            size,
            comment: h.comment.clone(),
        })
        .collect())
}

/// An image's details, in Docker's shape.
pub fn inspect(host: &Host, image: &Image) -> anyhow::Result<serde_json::Value> {
    let store = host.store()?;
    let c = &image.config;
    Ok(json!({
        "Id": image.id().to_string(),
        "RepoTags": image.names.iter().filter(|n| n.tag().is_some()).map(Reference::familiar).collect::<Vec<_>>(),
        "RepoDigests": image.names.iter().map(|n| n.with_digest(image.manifest_digest.clone()).familiar()).collect::<Vec<_>>(),
        "Created": c.created,
        "Author": c.author,
        "Architecture": c.architecture,
        "Os": c.os,
        "Variant": c.variant,
        "Config": c.config,
        "Size": store.image_size(image),
        "RootFS": {"Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids},
        "Manifest": {"Digest": image.manifest_digest, "MediaType": image.manifest.media_type,
                     "Layers": image.manifest.layers.iter().map(|l| json!({"Digest": l.digest, "MediaType": l.media_type, "Size": l.size})).collect::<Vec<_>>()},
        "History": c.history,
    }))
}

/// Containers (by name or ID) and images (by name or ID) inspected together, as `inspect`
/// does: each found one's JSON, and each name not found with why.
pub fn inspect_any(host: &Host, names: &[String]) -> anyhow::Result<(Vec<serde_json::Value>, Vec<anyhow::Error>)> {
    let store = host.store()?;
    let containers = host.containers()?;
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for name in names {
        if let Ok(c) = containers.find(name) {
            found.push(super::containers::inspect(host, &c)?);
            continue;
        }
        match store.find(name) {
            Ok(image) => found.push(inspect(host, &image)?),
            // Not an image name, and no container has it: simply not there.
            Err(StoreError::Reference(_)) => missing.push(StoreError::NotFound(name.clone()).into()),
            Err(e) => missing.push(e.into()),
        }
    }
    Ok((found, missing))
}

/// The images to save: by name, that name; by ID, every name the image has.
fn save_items(host: &Host, images: &[String]) -> anyhow::Result<Vec<SaveItem>> {
    let store = host.store()?;
    let mut items = Vec::new();
    for what in images {
        let image = store.find(what)?;
        let names = match Reference::parse(what).ok().filter(|r| image.names.contains(r)) {
            Some(r) => vec![r],
            None => image.names.clone(),
        };
        items.push(SaveItem { image, names });
    }
    Ok(items)
}

/// Writes `images` as an archive to `path`, complete or not at all (a temporary name beside
/// it until it is whole and synced).
pub fn save_to_file(host: &Host, images: &[String], format: ArchiveFormat, path: &Path) -> anyhow::Result<()> {
    let items = save_items(host, images)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "archive".into());
    let tmp = TempPath::new(path.with_file_name(format!(".{name}.tmp-{}", fsutil::random_hex(6))));
    let file = std::fs::File::create(tmp.path()).with_context(|| format!("cannot create {}", tmp.path().display()))?;
    let w = archive::save(host.store()?, &items, format, BufWriter::with_capacity(1 << 20, file))?;
    let file =
        w.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    fsutil::persist(tmp.path(), path).with_context(|| format!("cannot write {}", path.display()))?;
    tmp.keep();
    Ok(())
}

/// Writes `images` as an archive to `out`.
pub fn save_to(host: &Host, images: &[String], format: ArchiveFormat, out: impl Write) -> anyhow::Result<()> {
    let items = save_items(host, images)?;
    let mut w = archive::save(host.store()?, &items, format, BufWriter::new(out))?;
    w.flush()?;
    Ok(())
}

/// What `load` brought in: each image's names (or its ID, for a nameless one).
#[derive(Debug, Serialize)]
pub struct Loaded {
    pub names: Vec<String>,
    pub id: Option<String>,
}

fn loaded(host: &Host, list: Vec<archive::Loaded>) -> anyhow::Result<Vec<Loaded>> {
    let store = host.store()?;
    let mut out = Vec::new();
    for l in list {
        let id =
            if l.names.is_empty() { Some(store.image_by_manifest(&l.manifest.digest)?.id().to_string()) } else { None };
        out.push(Loaded { names: l.names.iter().map(Reference::familiar).collect(), id });
    }
    Ok(out)
}

/// Loads the archive at `path` (written by `save`, `docker save` or `podman save`).
pub fn load_file(host: &Host, path: &Path) -> anyhow::Result<Vec<Loaded>> {
    let file = std::fs::File::open(path).map_err(|e| crate::error::io_error(e, path, "cannot open"))?;
    let list = archive::load(host.store()?, io::BufReader::with_capacity(1 << 20, file), path)?;
    loaded(host, list)
}

/// Loads an archive read from `input`.
pub fn load_from(host: &Host, input: impl io::Read) -> anyhow::Result<Vec<Loaded>> {
    let list = archive::load(host.store()?, input, Path::new("-"))?;
    loaded(host, list)
}

/// Unpacks an image's layers, flattened, into `dir` (which must be empty or missing).
pub fn unpack(host: &Host, what: &str, dir: &Path) -> anyhow::Result<()> {
    let store = host.store()?;
    let image = store.find(what)?;
    if dir.exists() && dir.read_dir().with_context(|| format!("cannot read {}", dir.display()))?.next().is_some() {
        bail!(UsageError(format!("{} is not empty", dir.display())));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, max_file_size: None, owner: None, keep_kinds: false };
    for desc in &image.manifest.layers {
        let compression = Compression::from_media_type(&desc.media_type)
            .ok_or_else(|| StoreError::Invalid(format!("unsupported layer media type {:?}", desc.media_type)))?;
        let file = io::BufReader::with_capacity(1 << 20, store.open_blob(&desc.digest)?);
        let reader: Box<dyn io::Read> = match compression {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        };
        layer::apply_layer(reader, dir, &opts).with_context(|| format!("cannot unpack layer {}", desc.digest))?;
    }
    Ok(())
}

/// Makes an image from a root filesystem (a tarball, a directory, or standard input).
pub fn import(
    host: &Host,
    source: &crate::image::import::ImportSource,
    name: Option<&crate::image::Reference>,
    opts: &crate::image::import::ImportOptions,
) -> anyhow::Result<Image> {
    Ok(crate::image::import::import(host.store()?, source, name, opts)?)
}
