//! Named volumes: `<root>/volumes/<name>/_data`, outliving the containers that use them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::container::ContainerError;
use crate::image::layer::{self, ApplyOptions, TreeMode, WhiteoutMode};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub name: String,
    pub created: String,
    /// Set once the volume has been filled from an image (or used), so it never is again.
    #[serde(default)]
    pub filled: bool,
    /// Being filled by a restore (this process, started then): not a volume anyone may use
    /// until the restore finishes; one whose restore died is removed by the next restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<Owner>,
    /// The volume was there (empty) before the restore began: what a dead restore left is
    /// emptied, the volume kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existed: bool,
    /// Being filled by an instant restore while its service runs on it: the service sees the
    /// volume through an overlay (the snapshot below, this volume's data above) until every
    /// file is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hydrating: Option<Hydrating>,
}

/// An instant restore filling a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hydrating {
    /// The container it was restored for, and the snapshot it comes from.
    pub container: String,
    pub snapshot: String,
    /// The process serving and filling it; the volume is not whole without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hydrator: Option<Owner>,
    /// Every file is in and the data directory is being made ordinary (the overlay's
    /// markers removed): it must never be mounted under an overlay again, only finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleaning: bool,
}

/// Where an instant restore serves a volume from: the snapshot's files (`lower`, a FUSE
/// mount), the overlay's work directory, and the overlay the container mounts (`merged`),
/// whose upper directory is the volume's own data directory.
pub struct InstantDirs {
    pub lower: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

fn is_mount_point(path: &Path) -> bool {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return false };
    match fs::File::open(parent) {
        Ok(dir) => crate::fsutil::scope::is_mount_root(std::os::fd::AsFd::as_fd(&dir), name),
        Err(_) => false,
    }
}

/// Detaches whatever is mounted at `path` (nothing is fine).
fn detach(path: &Path) {
    while is_mount_point(path) {
        if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %path.display(), error = %e, "cannot unmount");
            return;
        }
    }
}

/// A process, named so that a reused PID is not taken for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: i32,
    pub start: Option<u64>,
}

impl Owner {
    pub fn this_process() -> Owner {
        let pid = std::process::id() as i32;
        Owner { pid, start: crate::sys::process_start(pid) }
    }

    /// Whether this process still runs.
    pub fn alive(&self) -> bool {
        match crate::sys::process_start(self.pid) {
            None => false,
            Some(s) => self.start.is_none_or(|mine| mine == s),
        }
    }
}

pub struct Volume {
    pub data: PathBuf,
    /// Never used before: fill it from the image.
    pub fresh: bool,
}

pub struct Volumes {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Io { path: path.to_path_buf(), source }
}

impl Volumes {
    pub fn open(root: &Path) -> Result<Volumes, ContainerError> {
        let dir = root.join("volumes");
        crate::fsutil::private_dir(&dir).map_err(io_err(&dir))?;
        Ok(Volumes { dir })
    }

    pub fn validate_name(name: &str) -> Result<(), ContainerError> {
        super::names::validate_name(name).map_err(ContainerError::Invalid)
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    pub fn get(&self, name: &str) -> Result<VolumeMeta, ContainerError> {
        let bytes = fs::read(self.meta_path(name)).map_err(|_| ContainerError::NoSuchVolume(name.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::Invalid(format!("volume {name}: {e}")))
    }

    pub fn create(&self, name: &str) -> Result<VolumeMeta, ContainerError> {
        Self::validate_name(name)?;
        let data = self.data_dir(name);
        fs::create_dir_all(&data).map_err(io_err(&data))?;
        if let Ok(meta) = self.get(name) {
            return Ok(meta);
        }
        let meta = VolumeMeta {
            name: name.to_string(),
            created: crate::sys::now_rfc3339(),
            filled: false,
            restoring: None,
            existed: false,
            hydrating: None,
        };
        self.write_meta(&meta)?;
        Ok(meta)
    }

    fn write_meta(&self, meta: &VolumeMeta) -> Result<(), ContainerError> {
        let path = self.meta_path(&meta.name);
        crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(meta).expect("serialises")).map_err(io_err(&path))
    }

    /// A new volume for a restore to fill: marked as being restored by this process until
    /// [`Volumes::restored`] (and filled, so no image is copied into it).
    pub fn create_restoring(&self, name: &str) -> Result<(), ContainerError> {
        Self::validate_name(name)?;
        let existed = self.get(name).ok();
        let data = self.data_dir(name);
        fs::create_dir_all(&data).map_err(io_err(&data))?;
        let meta = VolumeMeta {
            name: name.to_string(),
            created: existed.as_ref().map_or_else(crate::sys::now_rfc3339, |m| m.created.clone()),
            filled: true,
            restoring: Some(Owner::this_process()),
            existed: existed.is_some(),
            hydrating: None,
        };
        self.write_meta(&meta)
    }

    /// Undoes what a restore that died left in `name`: a volume it made goes; one that was
    /// there before is emptied and kept.
    pub fn discard_restore(&self, name: &str) -> Result<(), ContainerError> {
        let meta = self.get(name)?;
        if !meta.existed {
            return self.remove(name);
        }
        self.clear_instant(name)?;
        let data = self.data_dir(name);
        fs::remove_dir_all(&data).map_err(io_err(&data))?;
        fs::create_dir(&data).map_err(io_err(&data))?;
        self.write_meta(&VolumeMeta { restoring: None, existed: false, hydrating: None, ..meta })
    }

    /// Refuses volume `name` while an instant restore fills it: its data directory holds only
    /// what was copied so far (and the overlay's markers). `what` says what was refused.
    pub fn refuse_if_hydrating(&self, name: &str, what: &str) -> Result<(), ContainerError> {
        match self.get(name) {
            Ok(VolumeMeta { hydrating: Some(_), .. }) => Err(ContainerError::Conflict(format!(
                "volume {name} is still being filled by an instant restore; {what} once lifeboat ps no longer says hydrating"
            ))),
            _ => Ok(()),
        }
    }

    /// Where an instant restore of `name` keeps its directories.
    fn instant_root(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("instant")
    }

    /// The directories an instant restore serves volume `name` from.
    pub fn instant_dirs(&self, name: &str) -> InstantDirs {
        let at = self.instant_root(name);
        InstantDirs { lower: at.join("lower"), work: at.join("work"), merged: at.join("merged") }
    }

    /// Marks `name` as filled by an instant restore and makes its directories (only root may
    /// enter them).
    pub fn begin_hydration(&self, name: &str, hydrating: Hydrating) -> Result<InstantDirs, ContainerError> {
        let mut meta = self.get(name)?;
        if let Some(h) = &meta.hydrating {
            if h.container != hydrating.container {
                return Err(ContainerError::Conflict(format!("volume {name} is being restored for another container")));
            }
            if h.hydrator.as_ref().is_some_and(|o| o.alive() && Some(o) != hydrating.hydrator.as_ref()) {
                return Err(ContainerError::Conflict(format!("volume {name} is being filled by another hydrator")));
            }
            if h.cleaning {
                return Err(ContainerError::Conflict(format!(
                    "volume {name} was being switched to a plain volume; finish that (lifeboat restore SERVICE --finish)"
                )));
            }
        }
        let dirs = self.instant_dirs(name);
        let at = self.instant_root(name);
        crate::fsutil::private_dir(&at).map_err(io_err(&at))?;
        for d in [&dirs.lower, &dirs.work, &dirs.merged] {
            match fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(d)(e)),
            }
        }
        meta.hydrating = Some(hydrating);
        self.write_meta(&meta)?;
        Ok(dirs)
    }

    /// Unmounts what an instant restore of `name` mounted (the overlay, then the snapshot's
    /// files below it), if anything is.
    pub fn unmount_instant(&self, name: &str) {
        let dirs = self.instant_dirs(name);
        detach(&dirs.merged);
        detach(&dirs.lower);
    }

    /// Records that `name`'s data directory is being made ordinary (see [`Hydrating::cleaning`]).
    pub fn begin_cleaning(&self, name: &str) -> Result<(), ContainerError> {
        let mut meta = self.get(name)?;
        if let Some(h) = meta.hydrating.as_mut() {
            h.cleaning = true;
        }
        self.write_meta(&meta)
    }

    /// Unmounts what an instant restore of `name` left and removes its directories. Refused,
    /// with nothing removed, if a mount stays: a walk into it would reach files that are not
    /// this volume's.
    fn clear_instant(&self, name: &str) -> Result<(), ContainerError> {
        self.unmount_instant(name);
        if self.instant_mounted(name) {
            return Err(ContainerError::Conflict(format!(
                "volume {name}: cannot unmount what an instant restore left"
            )));
        }
        let at = self.instant_root(name);
        if at.exists() {
            fs::remove_dir_all(&at).map_err(io_err(&at))?;
        }
        Ok(())
    }

    /// Whether something is still mounted where an instant restore of `name` mounts.
    pub fn instant_mounted(&self, name: &str) -> bool {
        let dirs = self.instant_dirs(name);
        is_mount_point(&dirs.merged) || is_mount_point(&dirs.lower)
    }

    /// The instant restore of `name` is over: its directories go (it must be unmounted) and
    /// it is an ordinary volume.
    pub fn end_hydration(&self, name: &str) -> Result<(), ContainerError> {
        let mut meta = self.get(name)?;
        // The switch unmounted everything (strictly); only checked here, never detached.
        if self.instant_mounted(name) {
            return Err(ContainerError::Conflict(format!(
                "volume {name}: the instant restore's mounts are still there"
            )));
        }
        self.clear_instant(name)?;
        meta.hydrating = None;
        self.write_meta(&meta)
    }

    /// The restore filling `name` finished: it is an ordinary volume from now on.
    pub fn restored(&self, name: &str) -> Result<(), ContainerError> {
        let mut meta = self.get(name)?;
        meta.restoring = None;
        self.write_meta(&meta)
    }

    /// The volume, created if needed. One a restore is still filling (or died filling) is
    /// refused: its content is not whole.
    pub fn ensure(&self, name: &str) -> Result<Volume, ContainerError> {
        let meta = self.create(name)?;
        if let Some(owner) = &meta.restoring {
            let why =
                if owner.alive() { "is being filled by a restore" } else { "holds a restore that did not finish" };
            return Err(ContainerError::Conflict(format!(
                "volume {name} {why}; restore it again, or remove it (lifeboat volume rm {name})"
            )));
        }
        if let Some(h) = &meta.hydrating {
            // Served through the instant restore's overlay while its hydrator runs; without
            // it, the volume holds only part of the snapshot (what it mounted is dead).
            let merged = self.instant_dirs(name).merged;
            if !h.hydrator.as_ref().is_some_and(Owner::alive) || !is_mount_point(&merged) {
                return Err(ContainerError::Conflict(format!(
                    "volume {name} is half restored (an instant restore was interrupted); finish it with lifeboat restore SERVICE --finish, undo it with lifeboat restore SERVICE --undo, or remove it (lifeboat volume rm {name})"
                )));
            }
            return Ok(Volume { data: merged, fresh: false });
        }
        Ok(Volume { data: self.data_dir(name), fresh: !meta.filled })
    }

    pub fn mark_filled(&self, name: &str) -> Result<(), ContainerError> {
        let mut meta = self.get(name)?;
        meta.filled = true;
        self.write_meta(&meta)
    }

    /// Every volume, what a restore that died left among them included ([`VolumeMeta::restoring`]).
    /// Renames volume `old` to `new` (free, valid): its directory and record move.
    pub fn rename(&self, old: &str, new: &str) -> Result<(), ContainerError> {
        Self::validate_name(new)?;
        let mut meta = self.get(old)?;
        if self.get(new).is_ok() || self.dir.join(new).exists() {
            return Err(ContainerError::Conflict(format!("a volume named {new} exists")));
        }
        let (from, to) = (self.dir.join(old), self.dir.join(new));
        fs::rename(&from, &to).map_err(io_err(&from))?;
        meta.name = new.to_string();
        self.write_meta(&meta)
    }

    pub fn list(&self) -> Result<Vec<VolumeMeta>, ContainerError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            if let Ok(meta) = self.get(&e.file_name().to_string_lossy()) {
                out.push(meta);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn remove(&self, name: &str) -> Result<(), ContainerError> {
        let meta = self.get(name)?;
        if let Some(h) = &meta.hydrating {
            if h.hydrator.as_ref().is_some_and(Owner::alive) {
                return Err(ContainerError::Conflict(format!(
                    "volume {name} is being filled by an instant restore; remove its container first"
                )));
            }
            self.clear_instant(name)?;
        }
        let dir = self.dir.join(name);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))
    }
}

/// Gives directory `to` the owner, group, mode (set-ID and sticky bits included) and extended
/// attributes of the directory open as `from`.
pub fn copy_dir_metadata(from: &impl std::os::fd::AsFd, to: &Path) -> io::Result<()> {
    use rustix::fs::{Gid, Mode, Uid};
    let st = rustix::fs::fstat(from)?;
    let target = rustix::fs::open(
        to,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let (uid, gid) = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
    rustix::fs::fchown(&target, Some(uid), Some(gid))?;
    // After the owner: chown clears set-ID bits.
    rustix::fs::fchmod(&target, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::flistxattr(from, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut value = vec![0u8; 64 * 1024];
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
        let len = rustix::fs::fgetxattr(from, &name, &mut value)?;
        match rustix::fs::fsetxattr(&target, &name, &value[..len], rustix::fs::XattrFlags::empty()) {
            // An attribute this filesystem does not take (another one's namespace) is left.
            Ok(()) | Err(rustix::io::Errno::NOTSUP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Copies a tree with all metadata (owners, modes, links, xattrs) through the layer code.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    let (reader, writer) = io::pipe()?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || layer::write_tree(from, writer, TreeMode::Plain).map(|_| ()));
        let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, max_file_size: None, owner: None, keep_kinds: false };
        let applied = layer::apply_layer(reader, to, &opts);
        producer.join().expect("copy thread panicked")?;
        applied?;
        Ok(())
    })
}
