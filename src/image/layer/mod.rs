//! Layers: making them from directories and overlay upper dirs (`write`), and applying them
//! safely to a directory (`apply`), plus the compression codecs and media types they travel in.
//!
//! Nothing in this module knows about the image store; it works on readers, writers and
//! directories handed to it.

pub mod apply;
pub mod write;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

pub use apply::{ApplyOptions, ApplyStats, WhiteoutMode, apply_layer};
pub use write::{TreeMode, write_entry, write_tree};

pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_MEDIA_TYPE_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The prefix that marks a deleted file in an OCI layer.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry that marks a directory whose lower content is hidden.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to treat a directory as opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether an extended attribute is overlayfs's own bookkeeping (opacity, redirects, origins),
/// which describes a layer's structure, not a file.
pub fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed tar.
    None,
    /// gzip: what Docker and every registry understand (the default).
    Gzip,
    /// zstd: smaller and faster; needs Docker 23+ or Podman 4+ to pull.
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_TAR,
            Compression::Gzip => MEDIA_TYPE_TAR_GZIP,
            Compression::Zstd => MEDIA_TYPE_TAR_ZSTD,
        }
    }

    /// The compression a layer media type implies, if we understand the media type.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            MEDIA_TYPE_TAR | DOCKER_MEDIA_TYPE_TAR => Some(Compression::None),
            MEDIA_TYPE_TAR_GZIP | DOCKER_MEDIA_TYPE_TAR_GZIP => Some(Compression::Gzip),
            MEDIA_TYPE_TAR_ZSTD | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            // Non-distributable ("foreign") layers use the same encodings.
            "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Wraps `w` in this compression's encoder.
    pub fn encoder<'a, W: Write + Send + 'a>(self, w: W) -> io::Result<Box<dyn FinishWrite<W> + 'a>> {
        Ok(match self {
            Compression::None => Box::new(Plain(w)),
            Compression::Gzip => Box::new(flate2::write::GzEncoder::new(w, flate2::Compression::new(GZIP_LEVEL))),
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
                z.multithread(available_threads())?;
                Box::new(z)
            }
        })
    }
}

/// gzip level: 1 is about 3x faster than the default 6 and costs ~10% in size on service trees
/// (see docs/benchmarks.md), the right trade for backups taken every night.
const GZIP_LEVEL: u32 = 1;
const ZSTD_LEVEL: i32 = 3;

fn available_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// A compressing writer that must be finished to flush its trailer.
pub trait FinishWrite<W>: Write {
    fn finish_write(self: Box<Self>) -> io::Result<W>;
}

struct Plain<W>(W);
impl<W: Write> Write for Plain<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write> FinishWrite<W> for Plain<W> {
    fn finish_write(self: Box<Self>) -> io::Result<W> {
        Ok(self.0)
    }
}
impl<W: Write> FinishWrite<W> for flate2::write::GzEncoder<W> {
    fn finish_write(self: Box<Self>) -> io::Result<W> {
        (*self).finish()
    }
}
impl<W: Write> FinishWrite<W> for zstd::stream::write::Encoder<'_, W> {
    fn finish_write(self: Box<Self>) -> io::Result<W> {
        (*self).finish()
    }
}

/// What a stream's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Tar,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// Sniffs the compression of `r` and returns a reader of the decompressed tar stream.
/// bzip2 and xz are recognised only to give a clear error.
pub fn decompressed<'a, R: Read + 'a>(r: R) -> io::Result<(Detected, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let head = r.fill_buf()?;
    let detected = if head.starts_with(&[0x1f, 0x8b]) {
        Detected::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Detected::Zstd
    } else if head.starts_with(b"BZh") {
        Detected::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Detected::Xz
    } else {
        Detected::Tar
    };
    let reader: Box<dyn Read + 'a> = match detected {
        Detected::Tar => Box::new(r),
        Detected::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Detected::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        Detected::Bzip2 | Detected::Xz => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{detected:?} compression is not supported; decompress the archive first (e.g. with xz -d or bzip2 -d)"
                ),
            ));
        }
    };
    Ok((detected, reader))
}

/// A layer could not be made, read or applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The archive tries something that would escape or damage the target; nothing outside
    /// the target was touched.
    #[error("refused layer entry {entry:?}: {reason}")]
    Unsafe { entry: String, reason: String },
    /// The archive itself is malformed.
    #[error("malformed layer archive{}: {source}", at.as_ref().map(|e| format!(" at entry {e:?}")).unwrap_or_default())]
    Malformed { at: Option<String>, source: io::Error },
    /// A filesystem operation failed while unpacking.
    #[error("cannot unpack {entry:?} into {}: {source}", target.display())]
    Unpack { entry: String, target: PathBuf, source: io::Error },
    /// A file of the tree could not be read while making a layer.
    #[error("cannot read {} while making a layer: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The output stream failed while making a layer.
    #[error("cannot write layer: {0}")]
    Write(io::Error),
}

impl LayerError {
    /// Whether the failure is the input's fault (hostile or corrupt), as opposed to the host's.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, LayerError::Unsafe { .. } | LayerError::Malformed { .. })
    }
}
