//! Restoring part of a snapshot: the paths `--include` selects (less `--exclude`), into a
//! directory on the host or back into the running service.
//!
//! Either way the selected entries are first unpacked into a staging directory next to where
//! they go (on the same filesystem): a volume's stage sits beside its data on the host, the
//! container layer's at the container's root. Then everything is moved into place by renames
//! only ([`merge_into`]): what is missing is placed, directories are merged, and an entry that
//! exists is kept (written since the snapshot, say) unless `overwrite` exchanges it. A running
//! service is frozen only for those renames. The stages are removed whatever happens.
//!
//! The unpacking is the layer code's (it never leaves its target directory): owners, modes,
//! nanosecond times, extended attributes, hard links and holes come back as recorded.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use super::Frozen;
use super::view::{Entry, Origin, PathFilter, Pick, TarStats, View};
use crate::error::NotFound;
use crate::fsutil::scope::{Merged, Scope, fd_path, merge_into, open_dir_beneath};
use crate::image::layer::{self, ApplyOptions, WhiteoutMode};
use crate::repo::Repository;
use crate::repo::snapshot::Snapshot;
use crate::runtime::container::{MountSource, Status};
use crate::runtime::{self, Host};

/// Stages are named with this prefix.
pub const STAGING_PREFIX: &str = ".lifeboat-restore-";

/// Where a partial restore goes.
#[derive(Clone, Debug)]
pub enum PartialTarget {
    /// A directory on the host: the selected paths under it as the service saw them
    /// (`DIR/var/www/page.html`).
    Dir(PathBuf),
    /// The service's own container: its volumes and its layer.
    InPlace,
}

#[derive(Clone, Debug)]
pub struct PartialOptions {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Replace entries that exist (otherwise they are kept).
    pub overwrite: bool,
    pub target: PartialTarget,
}

/// What a partial restore did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PartialReport {
    pub snapshot: String,
    pub service: String,
    /// The directory, or the container's name.
    pub target: String,
    /// Entries and bytes of file content read from the snapshot.
    pub entries: u64,
    pub bytes: u64,
    /// What was placed, replaced, kept (and why), or could not be moved, with paths as the
    /// service saw them.
    #[serde(flatten)]
    pub merged: Merged,
    /// How long the service was frozen while its files were swapped (in place, running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_ms: Option<u64>,
    pub seconds: f64,
}

/// A staging directory: where the entries are unpacked, the directory they go into, and its
/// own parent (it is removed from there when dropped, with whatever it still holds).
struct Stage {
    parent: OwnedFd,
    name: OsString,
    dir: OwnedFd,
    dest: OwnedFd,
    stats: TarStats,
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Only the directory made for this restore, still under its name: a stage in a
        // container's root could have been moved away and something else put there.
        let ours = rustix::fs::fstat(&self.dir).ok().map(|st| (st.st_dev, st.st_ino));
        let there = rustix::fs::statat(&self.parent, &self.name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| (st.st_dev, st.st_ino));
        if ours.is_none() || ours != there {
            tracing::warn!(stage = ?self.name, "a restore's staging directory was moved; left where it is");
            return;
        }
        if let Err(e) = layer::apply::remove_all_at(self.parent.as_fd(), self.name.as_encoded_bytes()) {
            tracing::warn!(stage = ?self.name, error = %e, "cannot remove a restore's staging directory");
        }
    }
}

impl Stage {
    /// Makes a staging directory in `parent` for entries going into `dest`, and unpacks into
    /// it what `pick` selects below `top` (named relative to `top`, which is `dest`'s place in
    /// the view), of `only`'s origin.
    fn fill(
        view: &View<'_>,
        top: &Entry,
        only: Option<&Origin>,
        pick: &(dyn Fn(&Entry) -> Pick + Sync),
        parent: OwnedFd,
        dest: OwnedFd,
    ) -> anyhow::Result<Stage> {
        let name = OsString::from(format!("{STAGING_PREFIX}{}", crate::fsutil::random_hex(8)));
        rustix::fs::mkdirat(&parent, &name, rustix::fs::Mode::from_raw_mode(0o700))
            .with_context(|| format!("cannot make a staging directory in {}", fd_path(&parent).display()))?;
        let dir = open_dir_beneath(parent.as_fd(), &name)?;
        let mut stage = Stage { parent, name, dir, dest, stats: TarStats::default() };
        let target = fd_path(&stage.dir);
        let apply = ApplyOptions { whiteouts: WhiteoutMode::Literal, ..ApplyOptions::default() };
        stage.stats = runtime::copy::through_pipe(
            |w| view.write_selection(top, &top.path, false, only, pick, w),
            |r| layer::apply_layer(r, &target, &apply).map(drop).map_err(Into::into),
        )?;
        Ok(stage)
    }

    fn merge(&self, overwrite: bool) -> anyhow::Result<Merged> {
        merge_into(self.dir.as_fd(), self.dest.as_fd(), overwrite).context("cannot move the restored files into place")
    }
}

/// A new descriptor of a scope's own directory (to stage in, or to merge into).
fn dir_of(scope: &Scope) -> std::io::Result<OwnedFd> {
    open_dir_beneath(scope.fd(), std::ffi::OsStr::new("."))
}

/// Whether a pattern has wildcards (a plain path must be in the snapshot).
fn is_pattern(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Restores what `opts` selects of snapshot `id` (`snap`).
pub fn restore_paths(
    host: &Host,
    repo: &Repository,
    id: &str,
    snap: &Snapshot,
    opts: &PartialOptions,
) -> anyhow::Result<PartialReport> {
    let started = Instant::now();
    let view = View::new(repo, snap);
    let short = &id[..12.min(id.len())];
    for p in opts.include.iter().filter(|p| !is_pattern(p)) {
        if view.lookup(Path::new(p))?.is_none() {
            return Err(NotFound(format!(
                "{p} is not in snapshot {short} of {} (it holds the container's own changes and its volumes; `lifeboat ls {short}:/` shows them)",
                snap.service
            ))
            .into());
        }
    }
    let filter = PathFilter::new(&opts.include, &opts.exclude);
    let pick = |e: &Entry| filter.pick(e);
    let mut report = PartialReport { snapshot: id.to_string(), service: snap.service.clone(), ..Default::default() };
    let merged = &mut report.merged;
    match &opts.target {
        PartialTarget::Dir(dir) => {
            // Made private, as the files may be anyone's (set-user-ID programs, device nodes,
            // another user's data): the user opens it up as they see fit.
            std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let dest = Scope::open(dir)?;
            let stage = Stage::fill(&view, &view.root(), None, &pick, dir_of(&dest)?, dir_of(&dest)?)?;
            merged.absorb(stage.merge(opts.overwrite)?, Path::new("/"));
            (report.entries, report.bytes) = (stage.stats.entries, stage.stats.bytes);
            report.target = dir.display().to_string();
        }
        PartialTarget::InPlace => {
            let config = host.containers()?.named(&snap.service).with_context(|| {
                format!(
                    "{} has no container here to restore into; restore to a directory with --target DIR",
                    snap.service
                )
            })?;
            report.target = config.name.clone();
            // Not into a service a snapshot holds frozen (its capture would take half a restore).
            if super::frozen_by(host.containers()?, &config.id).is_some_and(|pid| pid > 0 && host.kernel().alive(pid)) {
                return Err(crate::runtime::container::ContainerError::Conflict(format!(
                    "a snapshot of {} is being taken (it is frozen); try again when it is done",
                    config.name
                ))
                .into());
            }
            let mut stages: Vec<(PathBuf, Stage)> = Vec::new();
            // The container's own layer, through its root, if anything of it is selected.
            let root = if view.selects_any(&view.root(), Some(&Origin::Layer), &pick)? {
                if config.read_only {
                    return Err(crate::error::UsageError(format!(
                        "{}'s root filesystem is read-only: restore its files with --target DIR",
                        config.name
                    ))
                    .into());
                }
                let root = runtime::copy::ContainerRoot::open(host, &config)?;
                let scope = root.writable()?;
                let stage =
                    Stage::fill(&view, &view.root(), Some(&Origin::Layer), &pick, dir_of(scope)?, dir_of(scope)?)?;
                stages.push((PathBuf::from("/"), stage));
                Some(root)
            } else {
                None
            };
            // Each volume, beside its data on the host.
            for v in &snap.volumes {
                let Some(top) = view.lookup(Path::new(&v.target))? else { continue };
                if top.origin != Origin::Volume(v.name.clone()) || !view.selects_any(&top, Some(&top.origin), &pick)? {
                    continue;
                }
                let target = super::view::components(Path::new(&v.target));
                let live = config.mounts.iter().find(|m| super::view::components(Path::new(&m.target)) == target);
                if live.is_some_and(|m| m.read_only) {
                    return Err(crate::error::UsageError(format!(
                        "{} is mounted read-only in {}: restore its files with --target DIR",
                        v.target, config.name
                    ))
                    .into());
                }
                let data = match live.map(|m| &m.source) {
                    Some(MountSource::Volume { name }) => {
                        host.volumes()?.refuse_if_hydrating(name, "restore files into it")?;
                        host.volumes()?.data_dir(name)
                    }
                    Some(MountSource::Bind { path, .. }) => path.clone(),
                    _ => {
                        return Err(anyhow::anyhow!(
                            "{} has no volume at {} now; restore to a directory with --target DIR",
                            config.name,
                            v.target
                        ));
                    }
                };
                let dest_scope = Scope::open(&data)?;
                // A named volume's stage sits beside its data, out of the container's sight; a
                // bind mount's inside it.
                let parent = match live.map(|m| &m.source) {
                    Some(MountSource::Volume { .. }) => dir_of(&Scope::open(data.parent().unwrap_or(&data))?)?,
                    _ => dir_of(&dest_scope)?,
                };
                let dest = dir_of(&dest_scope)?;
                let stage = Stage::fill(&view, &top, Some(&top.origin), &pick, parent, dest)?;
                if stage.stats.entries > 0 {
                    stages.push((PathBuf::from(&v.target), stage));
                }
            }
            for (_, s) in &stages {
                report.entries += s.stats.entries;
                report.bytes += s.stats.bytes;
            }
            // Frozen only for the renames, if it runs (a paused service stays as it was).
            let running = runtime::observed_state(host.containers()?, &config.id)?.status == Status::Running;
            let mut frozen = if running && !stages.is_empty() {
                Some(Frozen::freeze(host, &[config.id.as_str()], &[])?)
            } else {
                None
            };
            let mut result = Ok(());
            for (at, s) in &stages {
                match s.merge(opts.overwrite) {
                    Ok(m) => merged.absorb(m, at),
                    Err(e) => {
                        result = Err(e.context(format!("in {}", at.display())));
                        break;
                    }
                }
            }
            if result.is_err() {
                // What was moved stays (it is the snapshot's); say so with the error.
                tracing::warn!(placed = merged.placed, replaced = merged.replaced, "the restore stopped part-way");
            }
            if let Some(f) = frozen.as_mut() {
                report.frozen_ms = Some(f.thaw().as_millis() as u64);
            }
            drop(frozen);
            drop(stages);
            drop(root);
            result?;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
