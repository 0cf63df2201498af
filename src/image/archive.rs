//! `save` and `load`: images in and out of tar archives, in the two formats people exchange —
//! an OCI image layout in a tar (`podman save --format oci-archive`, `skopeo copy oci-archive:`)
//! and Docker's archive (`docker save`: `manifest.json`, config, `layer.tar` files).
//!
//! Loading extracts the outer archive with the same safe unpacker as layers into a private
//! temporary directory, reads it with `RESOLVE_IN_ROOT` (Docker archives may hold symlinks
//! between layer files), verifies every digest, and stages everything in one store
//! transaction: a bad archive leaves the store as it was.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

use super::layer::{self, ApplyOptions, Compression, WhiteoutMode};
use super::spec::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use super::store::{LayerInput, Txn};
use super::{Image, ImageError, Reference, Store};
use crate::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar (podman load, skopeo oci-archive:).
    OciArchive,
    /// Docker's format (docker load).
    DockerArchive,
}

/// An image to save, with the names to record for it.
pub struct SaveItem {
    pub image: Image,
    pub names: Vec<Reference>,
}

/// Writes `items` to `out` as one archive.
pub fn save<W: Write>(store: &Store, items: &[SaveItem], format: ArchiveFormat, out: W) -> Result<W, ImageError> {
    let mut b = tar::Builder::new(out);
    let out_err = |e: io::Error| ImageError::Output { path: "archive".into(), source: e };
    match format {
        ArchiveFormat::OciArchive => {
            let mut index = Index::empty();
            let mut blobs: Vec<Digest> = Vec::new();
            for item in items {
                let desc = Descriptor::new(
                    item.image.manifest.media_type.as_deref().unwrap_or(spec::MEDIA_TYPE_MANIFEST),
                    item.image.manifest_digest.clone(),
                    item.image.manifest_size,
                );
                if item.names.is_empty() {
                    index.manifests.push(desc.clone());
                }
                for name in &item.names {
                    let mut d = desc.clone();
                    d.annotations.insert(spec::ANNOTATION_REF_NAME.into(), name.to_string());
                    d.annotations.insert(spec::ANNOTATION_CONTAINERD_NAME.into(), name.to_string());
                    index.manifests.push(d);
                }
                for d in std::iter::once(&item.image.manifest_digest)
                    .chain(std::iter::once(&item.image.config_digest))
                    .chain(item.image.manifest.layers.iter().map(|l| &l.digest))
                {
                    if !blobs.contains(d) {
                        blobs.push(d.clone());
                    }
                }
            }
            append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(out_err)?;
            append_bytes(&mut b, "index.json", &spec::to_json(&index)).map_err(out_err)?;
            append_dir(&mut b, "blobs/").map_err(out_err)?;
            append_dir(&mut b, "blobs/sha256/").map_err(out_err)?;
            for d in blobs {
                let file = store.open_blob(&d)?;
                let len = file.metadata().map_err(out_err)?.len();
                append_reader(&mut b, &format!("blobs/sha256/{}", d.hex()), len, file).map_err(out_err)?;
            }
        }
        ArchiveFormat::DockerArchive => {
            let mut manifest = Vec::new();
            let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            let mut written: Vec<Digest> = Vec::new();
            for item in items {
                let image = &item.image;
                let config_name = format!("{}.json", image.config_digest.hex());
                if !written.contains(&image.config_digest) {
                    append_bytes(&mut b, &config_name, &store.read_blob(&image.config_digest)?).map_err(out_err)?;
                    written.push(image.config_digest.clone());
                }
                let mut layer_names = Vec::new();
                for (desc, diff_id) in image.manifest.layers.iter().zip(&image.config.rootfs.diff_ids) {
                    let name = format!("{}/layer.tar", diff_id.hex());
                    if !written.contains(diff_id) {
                        append_dir(&mut b, &format!("{}/", diff_id.hex())).map_err(out_err)?;
                        write_uncompressed_layer(store, &mut b, &name, desc, diff_id)?;
                        written.push(diff_id.clone());
                    }
                    layer_names.push(name);
                }
                let tags: Vec<String> = item.names.iter().filter(|n| n.tag().is_some()).map(|n| n.familiar()).collect();
                for n in item.names.iter().filter(|n| n.tag().is_some()) {
                    repositories
                        .entry(n.familiar_name())
                        .or_default()
                        .insert(n.tag().unwrap_or_default().to_string(), image.config_digest.hex());
                }
                manifest.push(DockerManifestEntry { config: config_name, repo_tags: tags, layers: layer_names });
            }
            append_bytes(&mut b, "manifest.json", &serde_json::to_vec(&manifest).expect("serialises"))
                .map_err(out_err)?;
            append_bytes(&mut b, "repositories", &serde_json::to_vec(&repositories).expect("serialises"))
                .map_err(out_err)?;
        }
    }
    b.into_inner().map_err(out_err)
}

fn write_uncompressed_layer<W: Write>(
    store: &Store,
    b: &mut tar::Builder<W>,
    name: &str,
    desc: &Descriptor,
    diff_id: &Digest,
) -> Result<(), ImageError> {
    let compression = Compression::from_media_type(&desc.media_type).ok_or_else(|| {
        ImageError::Store(super::StoreError::Invalid(format!("unsupported layer media type {:?}", desc.media_type)))
    })?;
    let open = || -> Result<Box<dyn Read>, ImageError> {
        let file = io::BufReader::new(store.open_blob(&desc.digest)?);
        let src = |e| ImageError::Source { path: store.blob_path(&desc.digest), source: e };
        Ok(match compression {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file).map_err(src)?),
        })
    };
    let len = match store.layer_meta(diff_id) {
        Some(m) => m.tar_size,
        None => io::copy(&mut open()?, &mut io::sink())
            .map_err(|e| ImageError::Source { path: store.blob_path(&desc.digest), source: e })?,
    };
    append_reader(b, name, len, open()?).map_err(|e| ImageError::Output { path: name.into(), source: e })
}

fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    b.append_data(&mut header(bytes.len() as u64, tar::EntryType::Regular, 0o644), name, bytes)
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    b.append_data(&mut header(0, tar::EntryType::Directory, 0o755), name, io::empty())
}

fn append_reader<W: Write>(b: &mut tar::Builder<W>, name: &str, len: u64, r: impl Read) -> io::Result<()> {
    let mut counted = CountingReader { inner: r.take(len), n: 0 };
    b.append_data(&mut header(len, tar::EntryType::Regular, 0o644), name, &mut counted)?;
    if counted.n != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{name}: expected {len} bytes, read {}", counted.n),
        ));
    }
    Ok(())
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}
impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default, deserialize_with = "null_as_empty")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// What `load` brought in.
pub struct Loaded {
    pub manifest: Descriptor,
    pub names: Vec<Reference>,
}

/// Loads every image of an archive (either format, compressed or not) into the store.
pub fn load(store: &Store, input: impl Read, label: &Path) -> Result<Vec<Loaded>, ImageError> {
    let bad = |reason: String| ImageError::Archive { path: label.to_path_buf(), reason };
    let mut txn = store.begin()?;
    let work = store.temp_path("load");
    std::fs::create_dir_all(work.path()).map_err(|e| ImageError::Output { path: work.path().into(), source: e })?;
    let (_, tar) = layer::decompressed(input).map_err(|e| ImageError::Source { path: label.into(), source: e })?;
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, max_file_size: None, owner: None, keep_kinds: false };
    layer::apply_layer(tar, work.path(), &opts).map_err(|e| ImageError::Store(e.into()))?;
    let dir = ArchiveDir::new(work.path()).map_err(|e| ImageError::Source { path: label.into(), source: e })?;

    let mut loaded = Vec::new();
    if dir.exists("manifest.json") {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&dir.read("manifest.json").map_err(|e| bad(format!("manifest.json: {e}")))?)
                .map_err(|e| bad(format!("manifest.json: {e}")))?;
        for entry in entries {
            loaded.push(load_docker_image(&mut txn, &dir, &entry).map_err(|e| match e {
                ImageError::Source { path, source } => bad(format!("{}: {source}", path.display())),
                other => other,
            })?);
        }
    } else if dir.exists("index.json") {
        let index: Index =
            serde_json::from_slice(&dir.read("index.json").map_err(|e| bad(format!("index.json: {e}")))?)
                .map_err(|e| bad(format!("index.json: {e}")))?;
        let mut positions: std::collections::HashMap<crate::image::Digest, usize> = Default::default();
        // Many names of one image: it is read and checked once.
        let mut seen: std::collections::HashMap<crate::image::Digest, usize> = Default::default();
        for desc in &index.manifests {
            let names: Vec<Reference> = reference_from_annotations(&desc.annotations).into_iter().collect();
            if let Some(&i) = seen.get(&desc.digest) {
                loaded[i].names.extend(names);
                continue;
            }
            let manifest = select_manifest(&dir, desc).map_err(bad)?;
            let stored = load_oci_image(&mut txn, &dir, &manifest).map_err(|e| match e {
                ImageError::Source { path, source } => bad(format!("{}: {source}", path.display())),
                other => other,
            })?;
            let i = match positions.get(&stored.digest) {
                Some(&i) => {
                    loaded[i].names.extend(names);
                    i
                }
                None => {
                    positions.insert(stored.digest.clone(), loaded.len());
                    loaded.push(Loaded { manifest: stored, names });
                    loaded.len() - 1
                }
            };
            seen.insert(desc.digest.clone(), i);
        }
    } else {
        return Err(bad("neither manifest.json (docker-archive) nor index.json (oci-archive) found".into()));
    }
    let commits: Vec<(Descriptor, Vec<Reference>)> =
        loaded.iter().map(|l| (l.manifest.clone(), l.names.clone())).collect();
    txn.commit(&commits)?;
    Ok(loaded)
}

/// The OCI annotations carry a full reference, or a bare tag with the name elsewhere.
fn reference_from_annotations(a: &BTreeMap<String, String>) -> Option<Reference> {
    let by_name = |k: &str| a.get(k).and_then(|v| Reference::parse(v).ok());
    match a.get(spec::ANNOTATION_REF_NAME) {
        Some(v) if v.contains(['/', ':', '@']) => {
            Reference::parse(v).ok().or_else(|| by_name(spec::ANNOTATION_CONTAINERD_NAME))
        }
        _ => by_name(spec::ANNOTATION_CONTAINERD_NAME),
    }
}

/// Follows an index (multi-platform) down to the manifest for this host.
fn select_manifest(dir: &ArchiveDir, desc: &Descriptor) -> Result<Descriptor, String> {
    let is_index =
        desc.media_type == spec::MEDIA_TYPE_INDEX || desc.media_type == spec::DOCKER_MEDIA_TYPE_MANIFEST_LIST;
    if !is_index {
        return Ok(desc.clone());
    }
    let bytes = dir.read_blob(&desc.digest).map_err(|e| format!("index {}: {e}", desc.digest))?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|e| format!("index {}: {e}", desc.digest))?;
    let host = Platform::host();
    let chosen = index
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(&host.architecture, &host.os)))
        .or_else(|| index.manifests.iter().find(|m| m.platform.is_none()))
        .ok_or_else(|| format!("index {} has no image for linux/{}", desc.digest, host.architecture))?;
    select_manifest(dir, chosen)
}

fn load_oci_image(txn: &mut Txn<'_>, dir: &ArchiveDir, desc: &Descriptor) -> Result<Descriptor, ImageError> {
    let manifest_bytes = dir
        .read_blob(&desc.digest)
        .map_err(|e| ImageError::Source { path: blob_rel(&desc.digest).into(), source: e })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| ImageError::Source {
        path: blob_rel(&desc.digest).into(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    let config_bytes = dir
        .read_blob(&manifest.config.digest)
        .map_err(|e| ImageError::Source { path: blob_rel(&manifest.config.digest).into(), source: e })?;
    for (what, d, bytes) in [("manifest", desc, &manifest_bytes), ("config", &manifest.config, &config_bytes)] {
        if d.size != bytes.len() as u64 {
            return Err(ImageError::Source {
                path: blob_rel(&d.digest).into(),
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the {what}'s descriptor says {} bytes, the blob has {}", d.size, bytes.len()),
                ),
            });
        }
    }
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| ImageError::Source {
        path: blob_rel(&manifest.config.digest).into(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::Source {
            path: blob_rel(&manifest.config.digest).into(),
            source: io::Error::new(io::ErrorKind::InvalidData, "config and manifest list different numbers of layers"),
        });
    }
    let mut layers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        // A layer listed twice is unpacked once.
        if (txn.has_blob(&layer.digest) && txn.has_layer(diff_id)) || !seen.insert(&layer.digest) {
            continue;
        }
        let file = dir
            .open(&blob_rel(&layer.digest))
            .map_err(|e| ImageError::Source { path: blob_rel(&layer.digest).into(), source: e })?;
        let input = LayerInput::Blob {
            media_type: layer.media_type.clone(),
            digest: Some(layer.digest.clone()),
            size: Some(layer.size),
        };
        layers.push((io::BufReader::with_capacity(1 << 20, file), input, Some(diff_id.clone())));
    }
    // Each layer decompresses on its own core.
    txn.add_layers(layers, crate::image::store::unpack_threads())?;
    txn.put_blob(&manifest.config.media_type, &config_bytes)?;
    Ok(txn.put_blob(desc.media_type.as_str(), &manifest_bytes)?)
}

fn load_docker_image(txn: &mut Txn<'_>, dir: &ArchiveDir, entry: &DockerManifestEntry) -> Result<Loaded, ImageError> {
    let src = |p: &str, e| ImageError::Source { path: p.into(), source: e };
    let config_bytes = dir.read(&entry.config).map_err(|e| src(&entry.config, e))?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| src(&entry.config, io::Error::new(io::ErrorKind::InvalidData, e)))?;
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(src(
            &entry.config,
            io::Error::new(io::ErrorKind::InvalidData, "config and manifest.json list different numbers of layers"),
        ));
    }
    let mut layers = Vec::new();
    for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        // A plain tar layer is stored as it is: its digest is its diff ID.
        if txn.has_blob(diff_id) && txn.has_layer(diff_id) {
            let size = txn.store().layer_meta(diff_id).map(|m| m.tar_size).unwrap_or(0);
            layers.push(Descriptor::new(layer::MEDIA_TYPE_TAR, diff_id.clone(), size));
            continue;
        }
        let file = dir.open(path).map_err(|e| src(path, e))?;
        let mut reader = io::BufReader::with_capacity(1 << 20, file);
        let compression = sniff(&mut reader).map_err(|e| src(path, e))?;
        let (desc, _) = txn.add_layer(
            reader,
            LayerInput::Blob {
                media_type: compression.media_type().to_string(),
                digest: (compression == Compression::None).then(|| diff_id.clone()),
                size: None,
            },
            Some(diff_id),
        )?;
        layers.push(desc);
    }
    let config_desc = txn.put_blob(spec::MEDIA_TYPE_CONFIG, &config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(spec::MEDIA_TYPE_MANIFEST.into()),
        config: config_desc,
        layers,
        annotations: BTreeMap::new(),
        extra: Default::default(),
    };
    let manifest_desc = txn.put_blob(spec::MEDIA_TYPE_MANIFEST, &spec::to_json(&manifest))?;
    let names = entry.repo_tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded { manifest: manifest_desc, names })
}

fn sniff(r: &mut io::BufReader<File>) -> io::Result<Compression> {
    use io::BufRead;
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

fn blob_rel(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// An extracted archive, read without ever resolving a path outside it.
struct ArchiveDir {
    root: OwnedFd,
}

impl ArchiveDir {
    fn new(path: &Path) -> io::Result<ArchiveDir> {
        Ok(ArchiveDir {
            root: rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?,
        })
    }

    fn open(&self, rel: &str) -> io::Result<File> {
        let fd = rustix::fs::openat2(
            &self.root,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?;
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{rel} is not a regular file")));
        }
        Ok(file)
    }

    fn exists(&self, rel: &str) -> bool {
        self.open(rel).is_ok()
    }

    fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open(rel)?.read_to_end(&mut v)?;
        Ok(v)
    }

    fn read_blob(&self, d: &Digest) -> io::Result<Vec<u8>> {
        let bytes = self.read(&blob_rel(d))?;
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("blob {d} has digest {actual}")));
        }
        Ok(bytes)
    }
}
