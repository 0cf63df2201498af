//! The local image store: an OCI image layout plus unpacked layer directories.
//!
//! ```text
//! <root>/images/            OCI image layout (oci-layout, index.json, blobs/sha256/<hex>)
//! <root>/layers/<hex>/      one unpacked layer per diff ID: diff/ (overlay lower dir), layer.json
//! <root>/tmp/               work in progress; never referenced, removed on failure and by prune
//! <root>/locks/             advisory locks (index.lock, gc.lock)
//! ```
//!
//! Blobs and layers appear under their final names only when complete and verified (temp name,
//! fsync, digest check, rename). `index.json` changes under an exclusive lock and is replaced
//! atomically. Writers hold `gc.lock` shared for their whole operation; garbage collection takes
//! it exclusively, so it never deletes what a concurrent import is about to reference.
//!
//! Each name in the index is a manifest descriptor whose `org.opencontainers.image.ref.name`
//! annotation holds the familiar reference (`website:1`), so `skopeo inspect
//! oci:<root>/images:website:1` works; an image that lost its last name stays listed once,
//! without the annotation (Docker's dangling `<none>` image) until pruned or removed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};

use serde::{Deserialize, Serialize};

use super::layer::{self, ApplyOptions, Compression, LayerError, WhiteoutMode};
use super::reference::Reference;
use super::spec::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::digest::{Digest, HashingReader, HashingWriter};
use crate::fsutil::{self, FileLock, TempPath};

const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image store: cannot access {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{what} {expected}: content has digest {actual} (corrupt or tampered data)")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("invalid image data: {0}")]
    Invalid(String),
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Neither an image name nor an ID: a usage error, not a missing image.
    #[error(transparent)]
    Reference(#[from] crate::image::reference::ReferenceError),
}

impl StoreError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What we record about an unpacked layer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayerMeta {
    pub diff_id: Digest,
    /// Sum of regular file sizes: the layer's apparent size once unpacked.
    pub size: u64,
    /// Length of the uncompressed tar stream.
    pub tar_size: u64,
    pub entries: u64,
}

/// An image in the store: its manifest, configuration and names.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub names: Vec<Reference>,
}

impl Image {
    /// Docker's image ID: the config digest.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }
}

/// How a layer arrives.
pub enum LayerInput {
    /// An uncompressed tar stream, to be stored with this compression.
    Tar(Compression),
    /// A blob to be stored byte for byte, with its media type and (if known) its digest and
    /// size: a blob longer or shorter than its descriptor says is refused (and never read
    /// past it).
    Blob { media_type: String, digest: Option<Digest>, size: Option<u64> },
}

#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// How many times this handle rewrote `index.json` (tests check it stays one per command).
    #[cfg(test)]
    index_writes: std::sync::atomic::AtomicUsize,
}

impl Store {
    /// Opens the store under `root`, creating its directories on first use.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
            #[cfg(test)]
            index_writes: Default::default(),
        };
        for dir in [
            root.to_path_buf(),
            store.layout(),
            store.blobs_dir(),
            store.layers_dir(),
            store.tmp_dir(),
            store.locks_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        }
        // The store holds device nodes and setuid files from images, and snapshots of service
        // data: keep other users out. The root is only traversable (others' files may live
        // under it, e.g. a local repository's).
        fsutil::dir_with_mode(root, 0o711).map_err(StoreError::io(root))?;
        for dir in [store.layout(), store.layers_dir(), store.tmp_dir(), store.locks_dir()] {
            fsutil::private_dir(&dir).map_err(StoreError::io(&dir))?;
        }
        let layout_file = store.layout().join("oci-layout");
        if !layout_file.exists() {
            fsutil::write_atomic(&layout_file, OCI_LAYOUT.as_bytes()).map_err(StoreError::io(&layout_file))?;
        }
        let index = store.index_path();
        if !index.exists() {
            let _lock = store.lock("index.lock", true)?;
            if !index.exists() {
                fsutil::write_atomic(&index, &spec::to_json(&Index::empty())).map_err(StoreError::io(&index))?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The OCI image layout directory (for `skopeo … oci:<this>:<name>`).
    pub fn layout(&self) -> PathBuf {
        self.root.join("images")
    }
    fn blobs_dir(&self) -> PathBuf {
        self.layout().join("blobs").join("sha256")
    }
    fn index_path(&self) -> PathBuf {
        self.layout().join("index.json")
    }
    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }
    fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.layers_dir().join(diff_id.hex())
    }
    /// The unpacked tree of a layer, usable as an overlayfs lower directory.
    pub fn layer_diff_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layer_path(diff_id).join("diff")
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<FileLock> {
        let path = self.locks_dir().join(name);
        let lock = if exclusive { FileLock::exclusive(&path) } else { FileLock::shared(&path) };
        lock.map_err(StoreError::io(path))
    }

    /// Held (shared) by every operation that adds content, so that garbage collection, which
    /// takes it exclusively, never removes what is being added.
    pub fn writer_lock(&self) -> Result<FileLock> {
        self.lock("gc.lock", false)
    }

    fn gc_lock(&self) -> Result<FileLock> {
        self.lock("gc.lock", true)
    }

    /// A new temporary path under `tmp/`, removed when dropped.
    pub fn temp_path(&self, prefix: &str) -> TempPath {
        TempPath::new(self.tmp_dir().join(format!("{prefix}-{}", fsutil::random_hex(8))))
    }

    // ---------------------------------------------------------------- blobs

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Invalid(format!("blob {digest} is missing from the store")),
            _ => StoreError::Io { path: path.clone(), source: e },
        })?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::DigestMismatch { what: "blob".into(), expected: digest.clone(), actual });
        }
        Ok(bytes)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(StoreError::io(path))
    }

    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let tmp = self.temp_path("blob");
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.path())
            .map_err(StoreError::io(tmp.path()))?;
        Ok(BlobWriter { inner: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)), tmp })
    }

    // ---------------------------------------------------------------- layers

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).join("layer.json").is_file()
    }

    pub fn layer_meta(&self, diff_id: &Digest) -> Option<LayerMeta> {
        let bytes = fs::read(self.layer_path(diff_id).join("layer.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Starts adding content. Nothing added through the transaction is visible (or left behind)
    /// unless it is committed.
    pub fn begin(&self) -> Result<Txn<'_>> {
        Ok(Txn { store: self, _writer: self.writer_lock()?, blobs: Vec::new(), layers: Vec::new() })
    }

    /// Unpacks a layer from its stored blob if its directory is missing (e.g. removed by hand).
    pub fn ensure_layer(&self, layer: &Descriptor, diff_id: &Digest) -> Result<()> {
        if self.has_layer(diff_id) {
            return Ok(());
        }
        let mut txn = self.begin()?;
        let file = self.open_blob(&layer.digest)?;
        txn.add_layer(
            io::BufReader::new(file),
            LayerInput::Blob {
                media_type: layer.media_type.clone(),
                digest: Some(layer.digest.clone()),
                size: Some(layer.size),
            },
            Some(diff_id),
        )?;
        txn.commit(&[])
    }

    // ---------------------------------------------------------------- images

    fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(StoreError::io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Read-modify-write of `index.json` under the index lock.
    fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = self.lock("index.lock", true)?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        let path = self.index_path();
        fsutil::write_atomic(&path, &spec::to_json(&index)).map_err(StoreError::io(&path))?;
        #[cfg(test)]
        self.index_writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }

    /// Adds stored manifests to the index, each under its names (or nameless if none), in
    /// one rewrite of `index.json` however many there are.
    fn add_manifests(&self, manifests: &[(Descriptor, Vec<Reference>)]) -> Result<()> {
        if manifests.is_empty() {
            return Ok(());
        }
        self.update_index(|index| {
            let mut changes = Vec::new();
            for (manifest, names) in manifests {
                let desc = Descriptor::new(&manifest.media_type, manifest.digest.clone(), manifest.size);
                if names.is_empty() {
                    changes.push((desc, None));
                } else {
                    changes.extend(names.iter().map(|n| (desc.clone(), Some(n.clone()))));
                }
            }
            set_names(index, changes);
            Ok(())
        })
    }

    /// Points `name` at `image`.
    pub fn tag(&self, image: &Image, name: &Reference) -> Result<()> {
        let desc = Descriptor::new(spec::MEDIA_TYPE_MANIFEST, image.manifest_digest.clone(), image.manifest_size);
        self.update_index(|index| {
            let media = index.manifests.iter().find(|d| d.digest == desc.digest).map(|d| d.media_type.clone());
            let desc = Descriptor { media_type: media.unwrap_or(desc.media_type.clone()), ..desc.clone() };
            set_names(index, vec![(desc, Some(name.clone()))]);
            Ok(())
        })
    }

    /// Every image in the store, named ones first in index order.
    pub fn images(&self) -> Result<Vec<Image>> {
        let index = self.read_index()?;
        let mut order: Vec<Digest> = Vec::new();
        let mut names: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
        for d in &index.manifests {
            if !names.contains_key(&d.digest) {
                order.push(d.digest.clone());
            }
            let entry = names.entry(d.digest.clone()).or_default();
            if let Some(r) = descriptor_name(d) {
                entry.push(r);
            }
        }
        let first: HashMap<&Digest, &Descriptor> = index.manifests.iter().rev().map(|d| (&d.digest, d)).collect();
        let mut out = Vec::new();
        for digest in order {
            let desc = first[&digest];
            let mut image = self.load_image(desc)?;
            image.names = names.remove(&digest).unwrap_or_default();
            out.push(image);
        }
        Ok(out)
    }

    fn load_image(&self, desc: &Descriptor) -> Result<Image> {
        let manifest_bytes = self.read_blob(&desc.digest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| StoreError::Invalid(format!("manifest {}: {e}", desc.digest)))?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| StoreError::Invalid(format!("config {}: {e}", manifest.config.digest)))?;
        Ok(Image {
            manifest_digest: desc.digest.clone(),
            manifest_size: manifest_bytes.len() as u64,
            config_digest: manifest.config.digest.clone(),
            manifest,
            config,
            names: Vec::new(),
        })
    }

    pub fn image_by_manifest(&self, digest: &Digest) -> Result<Image> {
        self.images()?
            .into_iter()
            .find(|i| i.manifest_digest == *digest)
            .ok_or_else(|| StoreError::NotFound(digest.to_string()))
    }

    /// Finds an image by name (`busybox`, `website:1`, `x@sha256:…`), by ID or unique ID prefix.
    pub fn find(&self, what: &str) -> Result<Image> {
        let images = self.images()?;
        let hex = what.strip_prefix("sha256:").unwrap_or(what);
        let looks_like_id = !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        let parsed = Reference::parse(what);
        if let (Err(e), false) = (&parsed, looks_like_id) {
            return Err(StoreError::Reference(e.clone()));
        }
        if let Ok(r) = parsed {
            let hit = images.iter().find(|i| match r.digest() {
                Some(d) => i.manifest_digest == *d,
                None => i.names.contains(&r),
            });
            if let Some(hit) = hit {
                return Ok(hit.clone());
            }
        }
        if looks_like_id {
            let hex = hex.to_ascii_lowercase();
            let mut hits = images.iter().filter(|i| i.id().hex().starts_with(&hex));
            if let Some(first) = hits.next() {
                if hits.any(|other| other.id() != first.id()) {
                    return Err(StoreError::Conflict(format!(
                        "image ID prefix {what:?} is ambiguous; give more characters"
                    )));
                }
                return Ok(first.clone());
            }
        }
        Err(StoreError::NotFound(what.to_string()))
    }

    /// Removes one name. Returns the image if it has no name left (the caller decides whether to
    /// delete it).
    pub fn untag(&self, name: &Reference) -> Result<Option<Digest>> {
        Ok(self.untag_all(std::slice::from_ref(name))?.into_iter().next())
    }

    /// Removes names in one rewrite of `index.json`; every one must be there. Returns the
    /// images left with no entry at all (the caller decides whether to delete them).
    pub fn untag_all(&self, names: &[Reference]) -> Result<Vec<Digest>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.update_index(|index| {
            let wanted: HashSet<String> = names.iter().map(Reference::familiar).collect();
            let mut found = HashSet::new();
            let mut removed: Vec<Digest> = Vec::new();
            index.manifests.retain(|d| match descriptor_name(d).map(|n| n.familiar()) {
                Some(n) if wanted.contains(&n) && !found.contains(&n) => {
                    found.insert(n);
                    removed.push(d.digest.clone());
                    false
                }
                _ => true,
            });
            if let Some(missing) = names.iter().find(|n| !found.contains(&n.familiar())) {
                return Err(StoreError::NotFound(missing.familiar()));
            }
            let left: HashSet<&Digest> = index.manifests.iter().map(|d| &d.digest).collect();
            let mut orphans: Vec<Digest> = removed.into_iter().filter(|d| !left.contains(d)).collect();
            orphans.sort();
            orphans.dedup();
            Ok(orphans)
        })
    }

    /// Removes an image (all its names) from the index and deletes what nothing else uses.
    /// `in_use` lists layer diff IDs that containers still need.
    pub fn remove_image(&self, manifest_digest: &Digest, in_use: &HashSet<Digest>) -> Result<GcStats> {
        let _gc = self.gc_lock()?;
        self.update_index(|index| {
            index.manifests.retain(|d| d.digest != *manifest_digest);
            Ok(())
        })?;
        self.collect_garbage(in_use, false)
    }

    /// Removes dangling images (no name) and then every blob and layer nothing references.
    pub fn prune(&self, in_use_images: &HashSet<Digest>, in_use_layers: &HashSet<Digest>) -> Result<GcStats> {
        let _gc = self.gc_lock()?;
        let mut removed_images = 0;
        self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|d| descriptor_name(d).is_some() || in_use_images.contains(&d.digest));
            removed_images = before - index.manifests.len();
            Ok(())
        })?;
        let mut stats = self.collect_garbage(in_use_layers, true)?;
        stats.images = removed_images;
        Ok(stats)
    }

    /// Deletes unreferenced blobs and layer directories (and, when `tmp`, leftovers of killed
    /// processes in `tmp/`). Callers hold the gc lock exclusively.
    fn collect_garbage(&self, in_use_layers: &HashSet<Digest>, tmp: bool) -> Result<GcStats> {
        let index = self.read_index()?;
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut layers: HashSet<Digest> = in_use_layers.clone();
        for d in &index.manifests {
            // Many names, one image: it is read once.
            if !blobs.insert(d.digest.clone()) {
                continue;
            }
            let image = self.load_image(d)?;
            blobs.insert(image.config_digest.clone());
            blobs.extend(image.manifest.layers.iter().map(|l| l.digest.clone()));
            layers.extend(image.config.rootfs.diff_ids.iter().cloned());
        }
        let mut stats = GcStats::default();
        for entry in fs::read_dir(self.blobs_dir()).map_err(StoreError::io(self.blobs_dir()))? {
            let entry = entry.map_err(StoreError::io(self.blobs_dir()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| blobs.contains(&d));
            if !keep {
                stats.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(StoreError::io(entry.path()))?;
                stats.blobs += 1;
            }
        }
        for entry in fs::read_dir(self.layers_dir()).map_err(StoreError::io(self.layers_dir()))? {
            let entry = entry.map_err(StoreError::io(self.layers_dir()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = Digest::from_hex(&name).is_ok_and(|d| layers.contains(&d));
            if !keep {
                fs::remove_dir_all(entry.path()).map_err(StoreError::io(entry.path()))?;
                stats.layers += 1;
            }
        }
        if tmp {
            // With the gc lock held exclusively no writer is running: all of tmp/ is debris.
            for entry in fs::read_dir(self.tmp_dir()).map_err(StoreError::io(self.tmp_dir()))? {
                let entry = entry.map_err(StoreError::io(self.tmp_dir()))?;
                drop(TempPath::new(entry.path()));
                stats.temp += 1;
            }
        }
        Ok(stats)
    }

    /// Apparent size of an image once unpacked (sum of its layers).
    /// The image's size unpacked; layers not unpacked yet count with their compressed size.
    pub fn image_size(&self, image: &Image) -> u64 {
        image
            .config
            .rootfs
            .diff_ids
            .iter()
            .zip(&image.manifest.layers)
            .map(|(d, l)| self.layer_meta(d).map_or(l.size, |m| m.size))
            .sum()
    }
}

/// How many layers unpack at once: one per core (decompression is single-threaded), at most
/// four.
pub fn unpack_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// A layer read, verified and unpacked under `tmp/`, not yet part of a transaction.
struct PreparedLayer {
    descriptor: Descriptor,
    blob: (Digest, TempPath),
    layer: (Digest, TempPath),
    meta: LayerMeta,
}

/// Content being added to the store: staged under `tmp/` until `commit` moves it into place
/// and names it in the index. Dropping a transaction removes everything it staged.
pub struct Txn<'s> {
    store: &'s Store,
    _writer: FileLock,
    blobs: Vec<(Digest, TempPath)>,
    layers: Vec<(Digest, TempPath)>,
}

impl Txn<'_> {
    pub fn store(&self) -> &Store {
        self.store
    }

    /// Whether a blob is in the store or staged here.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest) || self.blobs.iter().any(|(d, _)| d == digest)
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.store.has_layer(diff_id) || self.layers.iter().any(|(d, _)| d == diff_id)
    }

    /// Stages a small document; returns its descriptor.
    pub fn put_blob(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let mut w = self.store.blob_writer()?;
        w.write_all(bytes).map_err(StoreError::io(self.store.tmp_dir()))?;
        let (digest, size) = self.stage_blob(w, None)?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    /// Stages a blob written through `w`, checking it against `expected`.
    pub fn stage_blob(&mut self, w: BlobWriter, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.stage_blob_sized(w, expected, None)
    }

    /// [`Txn::stage_blob`], refusing a blob of another size than `size` (checked first: a
    /// blob that is not the declared length says so, whatever its digest).
    pub fn stage_blob_sized(
        &mut self,
        w: BlobWriter,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let (digest, size, tmp) = w.finish(expected, size)?;
        if !self.has_blob(&digest) {
            self.blobs.push((digest.clone(), tmp));
        }
        Ok((digest, size))
    }

    /// Stages one layer: its blob and its unpacked tree. Both exist only if the whole stream
    /// unpacked safely and every digest matched.
    pub fn add_layer<R: Read>(
        &mut self,
        reader: R,
        input: LayerInput,
        expected_diff_id: Option<&Digest>,
    ) -> Result<(Descriptor, LayerMeta)> {
        let prepared = self.prepare_layer(reader, input, expected_diff_id)?;
        Ok(self.stage_layer(prepared))
    }

    /// Stages layers read from several sources at once, `parallel` at a time (each one's
    /// decompression runs on its own core); in the order given. The first failure is returned
    /// and nothing of the others is staged.
    pub fn add_layers<R: Read + Send>(
        &mut self,
        layers: Vec<(R, LayerInput, Option<Digest>)>,
        parallel: usize,
    ) -> Result<Vec<(Descriptor, LayerMeta)>> {
        let mut prepared = Vec::with_capacity(layers.len());
        let mut pending = layers.into_iter();
        loop {
            let batch: Vec<_> = pending.by_ref().take(parallel.max(1)).collect();
            if batch.is_empty() {
                break;
            }
            let this = &*self;
            let done: Vec<Result<PreparedLayer>> = std::thread::scope(|s| {
                let handles: Vec<_> = batch
                    .into_iter()
                    .map(|(r, input, diff_id)| s.spawn(move || this.prepare_layer(r, input, diff_id.as_ref())))
                    .collect();
                handles.into_iter().map(|h| h.join().expect("layer thread panicked")).collect()
            });
            for p in done {
                prepared.push(p?);
            }
        }
        Ok(prepared.into_iter().map(|p| self.stage_layer(p)).collect())
    }

    fn stage_layer(&mut self, p: PreparedLayer) -> (Descriptor, LayerMeta) {
        if !self.has_blob(&p.blob.0) {
            self.blobs.push(p.blob);
        }
        if !self.has_layer(&p.layer.0) {
            self.layers.push(p.layer);
        }
        (p.descriptor, p.meta)
    }

    /// Reads, verifies and unpacks one layer into the store's staging area, touching nothing
    /// of the transaction (so several can run at once).
    fn prepare_layer<R: Read>(
        &self,
        reader: R,
        input: LayerInput,
        expected_diff_id: Option<&Digest>,
    ) -> Result<PreparedLayer> {
        let store = self.store;
        let work = store.temp_path("layer");
        let diff_dir = work.path().join("diff");
        fs::create_dir_all(&diff_dir).map_err(StoreError::io(&diff_dir))?;
        let opts =
            ApplyOptions { whiteouts: WhiteoutMode::Overlay, max_file_size: None, owner: None, keep_kinds: false };
        let blob = store.blob_writer()?;

        let expected_size = match &input {
            LayerInput::Blob { size, .. } => *size,
            LayerInput::Tar(_) => None,
        };
        // Never read more than one byte past the declared size: enough to know it lied.
        let reader = reader.take(expected_size.map_or(u64::MAX, |s| s.saturating_add(1)));
        let (media_type, blob, expected_digest, diff_id, tar_size, stats) = match input {
            LayerInput::Tar(compression) => {
                let (blob, unpacked) = std::thread::scope(|s| {
                    let (tx, rx) = sync_channel::<Vec<u8>>(8);
                    let compressor = s.spawn(move || -> io::Result<BlobWriter> {
                        let mut enc = compression.encoder(blob)?;
                        for chunk in rx {
                            enc.write_all(&chunk)?;
                        }
                        enc.finish_write()
                    });
                    let unpacked = (|| {
                        let mut hashing = HashingReader::new(ChannelTee { inner: reader, tx: Some(tx) });
                        let stats = layer::apply_layer(&mut hashing, &diff_dir, &opts)?;
                        drain(&mut hashing).map_err(|e| LayerError::Malformed { at: None, source: e })?;
                        let (diff_id, tar_size) = hashing.finish();
                        Ok::<_, StoreError>((diff_id, tar_size, stats))
                    })();
                    let blob = compressor.join().expect("compressor thread panicked");
                    (blob, unpacked)
                });
                let blob = blob.map_err(StoreError::io(store.tmp_dir()))?;
                let (diff_id, tar_size, stats) = unpacked?;
                (compression.media_type().to_string(), blob, None, diff_id, tar_size, stats)
            }
            LayerInput::Blob { media_type, digest, .. } => {
                let compression = Compression::from_media_type(&media_type)
                    .ok_or_else(|| StoreError::Invalid(format!("unsupported layer media type {media_type:?}")))?;
                // Three stages on three threads: this one reads and decompresses; one writes and
                // hashes the blob as it arrived; one hashes the tar stream and unpacks it. A pull
                // is bound by the slowest stage, not by their sum.
                let (blob, unpacked, decoded) = std::thread::scope(|s| {
                    let (blob_tx, blob_rx) = sync_channel::<Vec<u8>>(16);
                    let writer = s.spawn(move || -> io::Result<BlobWriter> {
                        let mut blob = blob;
                        for chunk in blob_rx {
                            blob.write_all(&chunk)?;
                        }
                        Ok(blob)
                    });
                    let (tar_tx, tar_rx) = sync_channel::<Vec<u8>>(16);
                    let diff_dir = &diff_dir;
                    let opts = &opts;
                    let unpacker = s.spawn(move || {
                        let mut hashing = HashingReader::new(ChannelReader { rx: tar_rx, buf: Vec::new(), pos: 0 });
                        let stats = layer::apply_layer(&mut hashing, diff_dir, opts)?;
                        drain(&mut hashing).map_err(|e| LayerError::Malformed { at: None, source: e })?;
                        let (d, n) = hashing.finish();
                        Ok::<_, StoreError>((d, n, stats))
                    });
                    let decoded = (|| -> io::Result<()> {
                        let mut tee = ChannelTee { inner: reader, tx: Some(blob_tx) };
                        let mut unpacker_stopped = false;
                        {
                            let mut decoder: Box<dyn Read> = match compression {
                                Compression::None => Box::new(&mut tee),
                                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut tee)),
                                Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(&mut tee)?),
                            };
                            loop {
                                let mut chunk = vec![0u8; 256 * 1024];
                                let n = decoder.read(&mut chunk)?;
                                if n == 0 {
                                    break;
                                }
                                chunk.truncate(n);
                                if tar_tx.send(chunk).is_err() {
                                    unpacker_stopped = true; // its error says why
                                    break;
                                }
                            }
                        }
                        drop(tar_tx);
                        if !unpacker_stopped {
                            // Whatever follows the compressed stream is part of the blob too.
                            drain(&mut tee)?;
                        }
                        Ok(())
                    })();
                    let unpacked = unpacker.join().expect("unpacker thread panicked");
                    let blob = writer.join().expect("blob writer thread panicked");
                    (blob, unpacked, decoded)
                });
                // A stream that could not be decompressed is the cause, whatever the unpacker saw.
                decoded.map_err(|e| LayerError::Malformed { at: None, source: e })?;
                let blob = blob.map_err(StoreError::io(store.tmp_dir()))?;
                let (diff_id, tar_size, stats) = unpacked?;
                (media_type, blob, digest, diff_id, tar_size, stats)
            }
        };
        // The blob as declared first (its size, then its digest), then what it unpacked to.
        let (digest, size, blob_tmp) = blob.finish(expected_digest.as_ref(), expected_size)?;
        if let Some(expected) = expected_diff_id
            && *expected != diff_id
        {
            return Err(StoreError::DigestMismatch {
                what: "layer with diff ID".into(),
                expected: expected.clone(),
                actual: diff_id,
            });
        }
        let meta = LayerMeta { diff_id: diff_id.clone(), size: stats.bytes, tar_size, entries: stats.entries };
        let meta_path = work.path().join("layer.json");
        fsutil::write_atomic(&meta_path, &serde_json::to_vec(&meta).expect("layer meta serialises"))
            .map_err(StoreError::io(&meta_path))?;
        Ok(PreparedLayer {
            descriptor: Descriptor::new(&media_type, digest.clone(), size),
            blob: (digest, blob_tmp),
            layer: (diff_id, work),
            meta,
        })
    }

    /// Stages config and manifest for `layers`; returns the manifest descriptor.
    pub fn put_image(&mut self, config: &ImageConfig, layers: Vec<Descriptor>) -> Result<Descriptor> {
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::Invalid("config lists a different number of layers than the manifest".into()));
        }
        let config_desc = self.put_blob(spec::MEDIA_TYPE_CONFIG, &spec::to_json(config))?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(spec::MEDIA_TYPE_MANIFEST.to_string()),
            config: config_desc,
            layers,
            annotations: BTreeMap::new(),
            extra: Default::default(),
        };
        self.put_blob(spec::MEDIA_TYPE_MANIFEST, &spec::to_json(&manifest))
    }

    /// Moves everything staged into place, then names the manifests in the index (the commit
    /// point: before it, an interrupted operation leaves only unreferenced data for prune).
    pub fn commit(mut self, manifests: &[(Descriptor, Vec<Reference>)]) -> Result<()> {
        let store = self.store;
        for (digest, tmp) in self.blobs.drain(..) {
            let dest = store.blob_path(&digest);
            if dest.is_file() {
                continue; // content-addressed: an existing copy is the same bytes
            }
            fs::rename(tmp.path(), &dest).map_err(StoreError::io(&dest))?;
            tmp.keep();
        }
        fsutil::sync_dir(&store.blobs_dir()).map_err(StoreError::io(store.blobs_dir()))?;
        for (diff_id, work) in self.layers.drain(..) {
            let dest = store.layer_path(&diff_id);
            match fs::rename(work.path(), &dest) {
                Ok(()) => {
                    work.keep();
                }
                // Another process unpacked the same layer first; ours is dropped.
                Err(_) if dest.join("layer.json").is_file() => {}
                Err(e) => {
                    return Err(StoreError::Io { path: dest, source: e });
                }
            }
        }
        fsutil::sync_dir(&store.layers_dir()).map_err(StoreError::io(store.layers_dir()))?;
        store.add_manifests(manifests)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcStats {
    pub images: usize,
    pub blobs: usize,
    pub layers: usize,
    pub temp: usize,
    pub bytes: u64,
}

/// The name a descriptor carries in our index.
fn descriptor_name(d: &Descriptor) -> Option<Reference> {
    d.annotations.get(spec::ANNOTATION_REF_NAME).and_then(|n| Reference::parse(n).ok())
}

/// Applies name changes to the index in one pass: each `(desc, Some(name))` moves `name` to
/// `desc` (an image that loses its last name stays, nameless: dangling), each `(desc, None)`
/// adds `desc` nameless unless it is already there; an image with a name loses its nameless
/// entry. Linear in the index and the changes, so loading an archive of 20,000 names costs
/// one rewrite, not 20,000.
fn set_names(index: &mut Index, changes: Vec<(Descriptor, Option<Reference>)>) {
    let mut slots: Vec<Option<Descriptor>> = std::mem::take(&mut index.manifests).into_iter().map(Some).collect();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, d) in slots.iter().enumerate() {
        if let Some(n) = d.as_ref().and_then(descriptor_name) {
            by_name.insert(n.familiar(), i);
        }
    }
    let mut displaced: Vec<Descriptor> = Vec::new();
    for (desc, name) in changes {
        match name {
            Some(name) => {
                let familiar = name.familiar();
                if let Some(old) = by_name.get(&familiar).and_then(|&i| slots[i].take()) {
                    displaced.push(old);
                }
                let mut named = desc.clone();
                named.annotations.insert(spec::ANNOTATION_REF_NAME.to_string(), familiar.clone());
                named.annotations.insert(spec::ANNOTATION_CONTAINERD_NAME.to_string(), name.to_string());
                by_name.insert(familiar, slots.len());
                slots.push(Some(named));
            }
            None => slots.push(Some(Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size))),
        }
    }
    let mut present: HashSet<Digest> = HashSet::new();
    let named: HashSet<Digest> = slots
        .iter()
        .flatten()
        .filter(|d| d.annotations.contains_key(spec::ANNOTATION_REF_NAME))
        .map(|d| d.digest.clone())
        .collect();
    let mut out = Vec::with_capacity(slots.len());
    for d in slots.into_iter().flatten() {
        let is_named = d.annotations.contains_key(spec::ANNOTATION_REF_NAME);
        // A nameless entry only for an image with no name, and only once.
        if !is_named && (named.contains(&d.digest) || !present.insert(d.digest.clone())) {
            continue;
        }
        present.insert(d.digest.clone());
        out.push(d);
    }
    for old in displaced {
        if present.insert(old.digest.clone()) {
            out.push(Descriptor::new(&old.media_type, old.digest, old.size));
        }
    }
    index.manifests = out;
}

/// A blob being written under `tmp/`, hashed as it goes.
pub struct BlobWriter {
    inner: HashingWriter<BufWriter<File>>,
    tmp: TempPath,
}

impl BlobWriter {
    /// Syncs the blob and checks it against `expected`.
    fn finish(self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<(Digest, u64, TempPath)> {
        let (buf, digest, size) = self.inner.finish();
        if let Some(declared) = expected_size
            && declared != size
        {
            return Err(StoreError::Invalid(format!(
                "blob {}: its descriptor says {declared} bytes, the blob has {}",
                expected.unwrap_or(&digest),
                if size > declared { format!("more than {declared}") } else { size.to_string() }
            )));
        }
        let file = buf
            .into_inner()
            .map_err(|e| StoreError::Io { path: self.tmp.path().to_path_buf(), source: e.into_error() })?;
        file.sync_all().map_err(StoreError::io(self.tmp.path()))?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch { what: "blob".into(), expected: expected.clone(), actual: digest });
        }
        Ok((digest, size, self.tmp))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads what another thread sends, chunk by chunk; the end of the channel is the end of input.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Passes bytes through while sending a copy to another thread.
struct ChannelTee<R> {
    inner: R,
    tx: Option<SyncSender<Vec<u8>>>,
}

impl<R: Read> Read for ChannelTee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.tx = None; // end of stream: let the compressor finish
        } else if let Some(tx) = &self.tx {
            tx.send(buf[..n].to_vec()).map_err(|_| io::Error::other("layer compressor stopped"))?;
        }
        Ok(n)
    }
}

fn drain(r: &mut impl Read) -> io::Result<u64> {
    io::copy(r, &mut io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::archive::{ArchiveFormat, SaveItem};
    use std::sync::atomic::Ordering;

    /// A gzip layer holding `files` (name, content): (blob, diff ID).
    fn gz_layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        (gz.finish().unwrap(), Digest::of(&tar))
    }

    fn blob_input(blob: &[u8]) -> LayerInput {
        LayerInput::Blob {
            media_type: crate::image::layer::MEDIA_TYPE_TAR_GZIP.to_string(),
            digest: Some(Digest::of(blob)),
            size: Some(blob.len() as u64),
        }
    }

    /// Layers unpacked side by side come out as they would one after another, in order; when
    /// one fails, none is staged and nothing is left in the store's scratch space.
    #[test]
    fn layers_added_at_once_are_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, a_id) = gz_layer(&[("a.txt", b"first")]);
        let (b, b_id) = gz_layer(&[("b.txt", b"second"), ("c.txt", b"third")]);
        let mut txn = store.begin().unwrap();
        let bad = vec![
            (&a[..], blob_input(&a), Some(a_id.clone())),
            (&b[..], blob_input(&b), Some(a_id.clone())), // the wrong diff ID
        ];
        assert!(matches!(txn.add_layers(bad, 2), Err(StoreError::DigestMismatch { .. })));
        assert!(!txn.has_layer(&a_id) && !txn.has_blob(&Digest::of(&a)), "nothing of the good layer staged");
        drop(txn);
        let scratch: Vec<_> = fs::read_dir(store.tmp_dir()).unwrap().collect();
        assert!(scratch.is_empty(), "left in tmp: {scratch:?}");

        let mut txn = store.begin().unwrap();
        let good = vec![(&a[..], blob_input(&a), Some(a_id.clone())), (&b[..], blob_input(&b), Some(b_id.clone()))];
        let added = txn.add_layers(good, 2).unwrap();
        assert_eq!(added.iter().map(|(_, m)| m.diff_id.clone()).collect::<Vec<_>>(), [a_id.clone(), b_id.clone()]);
        assert_eq!(added[1].0.digest, Digest::of(&b));
        txn.commit(&[]).unwrap();
        assert_eq!(fs::read(store.layer_path(&b_id).join("diff/c.txt")).unwrap(), b"third");
        assert_eq!(fs::read(store.layer_path(&a_id).join("diff/a.txt")).unwrap(), b"first");
    }

    /// An archive naming one small image 5,000 times is loaded with one rewrite of the
    /// index, and its names are pruned with one more (one per name made it quadratic: 75 s
    /// for 20,000 names).
    #[test]
    fn many_names_cost_one_index_rewrite_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(rootfs.join("etc/hostname"), "x\n").unwrap();
        let src = Store::open(&dir.path().join("src")).unwrap();
        let opts = crate::image::import::ImportOptions {
            changes: vec![],
            message: None,
            compression: crate::image::layer::Compression::Gzip,
        };
        let image =
            crate::image::import::import(&src, &crate::image::import::ImportSource::Dir(rootfs), None, &opts).unwrap();
        let names: Vec<Reference> = (0..5000).map(|i| Reference::parse(&format!("n{i}/img:{i}")).unwrap()).collect();
        let archive = dir.path().join("many.tar");
        let items = [SaveItem { image, names: names.clone() }];
        crate::image::archive::save(&src, &items, ArchiveFormat::OciArchive, fs::File::create(&archive).unwrap())
            .unwrap();

        let dst = Store::open(&dir.path().join("dst")).unwrap();
        let before = dst.index_writes.load(Ordering::Relaxed);
        crate::image::archive::load(&dst, fs::File::open(&archive).unwrap(), &archive).unwrap();
        assert_eq!(dst.index_writes.load(Ordering::Relaxed) - before, 1, "one rewrite for the whole load");
        let images = dst.images().unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names.len(), 5000);
        assert!(dst.find("n4999/img:4999").is_ok());

        // Loading it again changes nothing (the same names on the same image).
        crate::image::archive::load(&dst, fs::File::open(&archive).unwrap(), &archive).unwrap();
        assert_eq!(dst.images().unwrap()[0].names.len(), 5000);
        assert_eq!(dst.read_index().unwrap().manifests.len(), 5000, "no nameless duplicate");

        let before = dst.index_writes.load(Ordering::Relaxed);
        let orphans = dst.untag_all(&names).unwrap();
        assert_eq!(dst.index_writes.load(Ordering::Relaxed) - before, 1);
        assert_eq!(orphans.len(), 1, "the image lost its last name");
        assert!(dst.read_index().unwrap().manifests.is_empty());
        assert!(matches!(dst.untag_all(&names[..1]), Err(StoreError::NotFound(_))));
    }

    /// Moving a name to another image leaves the first one dangling (nameless), never lost.
    #[test]
    fn a_name_moved_away_leaves_its_image_dangling() {
        let d = |b: &[u8]| Descriptor::new(spec::MEDIA_TYPE_MANIFEST, Digest::of(b), 10);
        let (a, b) = (d(b"a"), d(b"b"));
        let name = Reference::parse("web:1").unwrap();
        let mut index = Index::empty();
        set_names(&mut index, vec![(a.clone(), Some(name.clone()))]);
        set_names(&mut index, vec![(b.clone(), Some(name.clone())), (b.clone(), None)]);
        let entries: Vec<(Digest, Option<Reference>)> =
            index.manifests.iter().map(|e| (e.digest.clone(), descriptor_name(e))).collect();
        assert_eq!(entries, [(b.digest.clone(), Some(name)), (a.digest.clone(), None)]);
    }
}
