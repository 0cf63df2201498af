//! OCI registries: pull, push, login.
//!
//! Pulled images keep their blobs byte for byte (same digests), so pushing an image that came
//! from a registry sends no layer the registry has, and pushing twice sends nothing. Blobs are
//! transferred a few at a time in parallel; known blobs are checked with HEAD and never re-sent;
//! a blob this host pulled from another repository of the same registry is mounted, not
//! uploaded.

pub mod auth;
pub mod client;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};

use crate::image::spec::{self, Descriptor, Index, Manifest, Platform};
use crate::image::store::LayerInput;
use crate::image::{Digest, Image, Reference, Store};
use client::{Options, Registry, RegistryError};

/// How many blobs move at once.
const PARALLEL: usize = 3;

/// What happened to one blob, for progress lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobEvent {
    /// Already there (local store on pull, registry on push).
    Exists,
    Transferred,
    /// Linked from another repository of the registry (push).
    Mounted(String),
}

/// Hears about each blob's transfer (bars on a terminal, lines otherwise, or nothing).
pub trait Progress: Sync {
    /// A transfer of `size` bytes begins.
    fn start(&self, _digest: &Digest, _size: u64) {}
    /// `bytes` more moved.
    fn advance(&self, _digest: &Digest, _bytes: u64) {}
    /// The blob is dealt with.
    fn done(&self, digest: &Digest, size: u64, event: &BlobEvent);
}

/// No progress output.
pub struct Silent;

impl Progress for Silent {
    fn done(&self, _: &Digest, _: u64, _: &BlobEvent) {}
}

/// Tells `on_read` how many bytes each read brought.
struct Counting<R, F> {
    inner: R,
    on_read: F,
}

impl<R: Read, F: FnMut(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_read)(n as u64);
        Ok(n)
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Transfer {
    pub blobs_transferred: usize,
    pub bytes_transferred: u64,
    pub blobs_existing: usize,
    pub blobs_mounted: usize,
    pub manifest_written: bool,
}

pub fn registry_for(reference: &Reference, opts: &Options) -> Result<Registry, RegistryError> {
    let host = reference.domain();
    Registry::new(host, auth::lookup(host), opts)
}

/// Where blobs came from (`registry → repositories`), so a push to another repository of the
/// same registry can mount them instead of uploading.
struct Sources {
    path: PathBuf,
}

impl Sources {
    fn open(root: &Path) -> Sources {
        Sources { path: root.join("registry-sources.json") }
    }
    fn load(&self) -> BTreeMap<String, BTreeSet<String>> {
        std::fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }
    fn record(&self, host: &str, repo: &str, digests: &[&Digest]) {
        let mut all = self.load();
        for d in digests {
            all.entry(d.to_string()).or_default().insert(format!("{host}/{repo}"));
        }
        if let Ok(bytes) = serde_json::to_vec(&all) {
            let _ = crate::fsutil::write_atomic_volatile(&self.path, &bytes);
        }
    }
    /// Another repository of `host` known to hold `digest`.
    fn elsewhere(&self, host: &str, repo: &str, digest: &Digest) -> Option<String> {
        let prefix = format!("{host}/");
        self.load()
            .get(&digest.to_string())?
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix))
            .find(|r| *r != repo)
            .map(String::from)
    }
}

/// Runs `f` on every item, `PARALLEL` at a time; the first error wins.
fn parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> anyhow::Result<()> + Sync) -> anyhow::Result<()> {
    let next = Mutex::new(0usize);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(items.len()) {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        if *n >= items.len() || first_error.lock().unwrap().is_some() {
                            return;
                        }
                        *n += 1;
                        *n - 1
                    };
                    if let Err(e) = f(&items[i]) {
                        first_error.lock().unwrap().get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn matches_platform(p: &Platform, want: &Platform) -> bool {
    p.os == want.os && p.architecture == want.architecture && (want.variant.is_none() || p.variant == want.variant)
}

/// Pulls `reference` into the store; returns the image. Layers are downloaded and their
/// digests checked; with `unpack` they are also unpacked now (otherwise on first use, as
/// containerd does).
pub fn pull(
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    tls: &Options,
    unpack: bool,
    progress: &dyn Progress,
) -> anyhow::Result<(Image, Transfer)> {
    let reg = registry_for(reference, tls)?;
    let repo = reference.path();
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let (mut bytes, mut media_type, mut digest) = reg.get_manifest(repo, &wanted)?;
    if media_type == spec::MEDIA_TYPE_INDEX || media_type == spec::DOCKER_MEDIA_TYPE_MANIFEST_LIST {
        let index: Index = serde_json::from_slice(&bytes).context("the image index is unreadable")?;
        let chosen = index
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| matches_platform(p, platform)))
            .ok_or_else(|| {
                let offered: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref())
                    .map(|p| {
                        format!(
                            "{}/{}{}",
                            p.os,
                            p.architecture,
                            p.variant.as_ref().map(|v| format!("/{v}")).unwrap_or_default()
                        )
                    })
                    .collect();
                crate::image::StoreError::NotFound(format!(
                    "{} has no image for {}/{} (it offers {})",
                    reference.familiar(),
                    platform.os,
                    platform.architecture,
                    offered.join(", ")
                ))
            })?;
        (bytes, media_type, digest) = reg.get_manifest(repo, &chosen.digest.to_string())?;
    }
    let manifest: Manifest = serde_json::from_slice(&bytes).context("the image manifest is unreadable")?;
    let mut transfer = Transfer::default();

    // Held for the whole pull, so an image prune cannot collect layers before the manifest lands.
    let mut txn = store.begin()?;
    let config_bytes = if store.has_blob(&manifest.config.digest) {
        store.read_blob(&manifest.config.digest)?
    } else {
        let mut body = Vec::new();
        reg.get_blob(repo, &manifest.config.digest)?.read_to_end(&mut body).context("downloading the image config")?;
        if Digest::of(&body) != manifest.config.digest {
            bail!(crate::image::StoreError::DigestMismatch {
                what: "image config".into(),
                expected: manifest.config.digest.clone(),
                actual: Digest::of(&body)
            });
        }
        body
    };
    let config: spec::ImageConfig = serde_json::from_slice(&config_bytes).context("the image config is unreadable")?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        bail!(
            "{}: the config lists {} layers, the manifest {}",
            reference.familiar(),
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        );
    }
    let layers: Vec<(&Descriptor, &Digest)> = manifest.layers.iter().zip(&config.rootfs.diff_ids).collect();
    let counts = Mutex::new((0usize, 0u64, 0usize));
    parallel(&layers, |(layer, diff_id)| {
        if store.has_blob(&layer.digest) {
            counts.lock().unwrap().2 += 1;
            progress.done(&layer.digest, layer.size, &BlobEvent::Exists);
            return Ok(());
        }
        let body = reg.get_blob(repo, &layer.digest)?;
        progress.start(&layer.digest, layer.size);
        let mut body = Counting { inner: body, on_read: |n| progress.advance(&layer.digest, n) };
        if unpack {
            let mut layer_txn = store.begin()?;
            layer_txn
                .add_layer(
                    std::io::BufReader::with_capacity(256 * 1024, body),
                    LayerInput::Blob {
                        media_type: layer.media_type.clone(),
                        digest: Some(layer.digest.clone()),
                        size: Some(layer.size),
                    },
                    Some(diff_id),
                )
                .with_context(|| format!("layer {}", layer.digest.short()))?;
            layer_txn.commit(&[])?;
        } else {
            // Stored as it came, its digest checked; unpacked (and its diff ID checked) when a
            // container first needs it.
            let mut blob = store.blob_writer()?;
            std::io::copy(&mut body, &mut blob)
                .with_context(|| format!("downloading layer {}", layer.digest.short()))?;
            let mut layer_txn = store.begin()?;
            layer_txn
                .stage_blob(blob, Some(&layer.digest))
                .with_context(|| format!("layer {}", layer.digest.short()))?;
            layer_txn.commit(&[])?;
        }
        let mut c = counts.lock().unwrap();
        c.0 += 1;
        c.1 += layer.size;
        progress.done(&layer.digest, layer.size, &BlobEvent::Transferred);
        Ok(())
    })?;
    let (n, b, e) = counts.into_inner().unwrap();
    (transfer.blobs_transferred, transfer.bytes_transferred, transfer.blobs_existing) = (n, b, e);

    txn.put_blob(&manifest.config.media_type, &config_bytes)?;
    let desc = txn.put_blob(&media_type, &bytes)?;
    if desc.digest != digest {
        bail!("the manifest changed while it was stored");
    }
    let names: Vec<Reference> = match reference.tag() {
        Some(_) if reference.digest().is_none() => vec![reference.clone()],
        None if reference.digest().is_none() => vec![reference.with_tag("latest")?],
        _ => Vec::new(),
    };
    txn.commit(&[(desc, names)])?;
    let mut all: Vec<&Digest> = manifest.layers.iter().map(|l| &l.digest).collect();
    all.push(&manifest.config.digest);
    Sources::open(store.root()).record(reg.host.as_str(), repo, &all);
    Ok((store.image_by_manifest(&digest)?, transfer))
}

/// Pushes `image` to `dest` (a registry reference with a tag).
pub fn push(
    store: &Store,
    image: &Image,
    dest: &Reference,
    tls: &Options,
    progress: &dyn Progress,
) -> anyhow::Result<Transfer> {
    let reg = registry_for(dest, tls)?;
    let repo = dest.path();
    let tag = dest.tag().unwrap_or("latest");
    let sources = Sources::open(store.root());
    let config_size = std::fs::metadata(store.blob_path(&image.config_digest)).map(|m| m.len()).unwrap_or(0);
    let mut blobs: Vec<(Digest, u64)> = image.manifest.layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
    blobs.push((image.config_digest.clone(), config_size));
    let counts = Mutex::new(Transfer::default());
    // Upload bodies must own everything they hold, so byte counts travel over a channel.
    let (tx, rx) = std::sync::mpsc::channel::<(Digest, u64)>();
    let finished = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Stops when the uploads are over, even if the HTTP client still holds a body.
        let finished = &finished;
        s.spawn(move || {
            while !finished.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((d, n)) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
                    progress.advance(&d, n);
                }
            }
        });
        let result = parallel(&blobs, |(digest, size)| {
            if reg.blob_exists(repo, digest)? {
                counts.lock().unwrap().blobs_existing += 1;
                progress.done(digest, *size, &BlobEvent::Exists);
                return Ok(());
            }
            if let Some(from) = sources.elsewhere(&reg.host, repo, digest)
                && reg.mount_blob(repo, digest, &from)?
            {
                counts.lock().unwrap().blobs_mounted += 1;
                progress.done(digest, *size, &BlobEvent::Mounted(from));
                return Ok(());
            }
            let path = store.blob_path(digest);
            progress.start(digest, *size);
            let open = |offset: u64| -> std::io::Result<Box<dyn Read + Send>> {
                let mut f = std::fs::File::open(&path)?;
                f.seek(SeekFrom::Start(offset))?;
                let (tx, d) = (tx.clone(), digest.clone());
                let counted = Counting { inner: f, on_read: move |n| drop(tx.send((d.clone(), n))) };
                Ok(Box::new(std::io::BufReader::with_capacity(256 * 1024, counted)))
            };
            reg.upload_blob(repo, digest, *size, &open)?;
            let mut c = counts.lock().unwrap();
            c.blobs_transferred += 1;
            c.bytes_transferred += size;
            progress.done(digest, *size, &BlobEvent::Transferred);
            Ok(())
        });
        drop(tx);
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })?;
    let mut transfer = counts.into_inner().unwrap();
    if reg.head_manifest(repo, tag)?.as_ref() != Some(&image.manifest_digest) {
        let bytes = store.read_blob(&image.manifest_digest)?;
        let media_type = image.manifest.media_type.clone().unwrap_or_else(|| spec::MEDIA_TYPE_MANIFEST.to_string());
        reg.put_manifest(repo, tag, &media_type, &bytes)?;
        transfer.manifest_written = true;
    }
    let mut all: Vec<&Digest> = blobs.iter().map(|(d, _)| d).collect();
    all.push(&image.manifest_digest);
    sources.record(&reg.host, repo, &all);
    Ok(transfer)
}
