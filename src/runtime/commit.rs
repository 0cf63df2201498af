//! A container's changes as an image (`commit`), as a list (`diff`), and its whole filesystem
//! as a tarball (`export`).

use std::io::Write;
use std::path::Path;

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::Context as _;

use super::container::{RunConfig, Status};
use super::{Host, observed_state, rootfs, set_paused};
use crate::fsutil::scope::{Scope, list_dir, open_dir_beneath, stat_beneath};
use crate::image::commit::{CommitOptions, commit_upper};
use crate::image::layer::{self, TreeMode};
use crate::image::spec::ContainerConfig;
use crate::image::{Image, Reference};

/// Pauses a running container for as long as it lives (and only if it was running).
struct PauseGuard<'a> {
    host: &'a Host,
    id: String,
    active: bool,
}

impl<'a> PauseGuard<'a> {
    fn new(host: &'a Host, id: &str, wanted: bool) -> anyhow::Result<PauseGuard<'a>> {
        let containers = host.containers()?;
        let running = observed_state(containers, id)?.status == Status::Running;
        let active = wanted && running;
        if active {
            set_paused(host, id, true)?;
        }
        Ok(PauseGuard { host, id: id.to_string(), active })
    }
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        if self.active
            && let Err(e) = set_paused(self.host, &self.id, false)
        {
            tracing::error!(container = self.id.as_str(), error = %e, "cannot unpause the container after commit");
        }
    }
}

/// The image configuration a container ran with: the image's, with the container's env,
/// working directory, user, command and ports.
pub fn run_config(image: &Image, c: &RunConfig) -> ContainerConfig {
    let mut cfg = image.config.config.clone();
    cfg.env = c.env.clone();
    cfg.working_dir = Some(c.working_dir.clone()).filter(|w| !w.is_empty()).or(cfg.working_dir);
    cfg.user = c.user.clone().or(cfg.user);
    let entrypoint = cfg.entrypoint.clone().unwrap_or_default();
    if c.args.starts_with(&entrypoint) {
        cfg.cmd = Some(c.args[entrypoint.len()..].to_vec()).filter(|rest| !rest.is_empty()).or(cfg.cmd);
    } else {
        cfg.entrypoint = None;
        cfg.cmd = Some(c.args.clone());
    }
    for p in &c.ports {
        let proto = format!("{:?}", p.protocol).to_ascii_lowercase();
        cfg.exposed_ports.entry(format!("{}/{proto}", p.container_port)).or_insert(serde_json::json!({}));
    }
    cfg
}

/// Commits container `what` as a new image (paused meanwhile if `pause`), named `name`.
pub fn commit(
    host: &Host,
    what: &str,
    name: Option<&Reference>,
    pause: bool,
    mut opts: CommitOptions,
) -> anyhow::Result<Image> {
    let containers = host.containers()?;
    let c = containers.find(what)?;
    let store = host.store()?;
    let base = store
        .find(&c.image_id.to_string())
        .with_context(|| format!("the image of container {} ({}) is no longer in the store", c.name, c.image))?;
    opts.run_config = Some(run_config(&base, &c));
    let upper = containers.dir(&c.id).join("upper");
    let _paused = PauseGuard::new(host, &c.id, pause)?;
    Ok(commit_upper(store, &base, &upper, name, &opts)?)
}

/// One line of `diff`: A(dded), C(hanged) or D(eleted), and the path.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub kind: char,
    pub path: String,
}

/// What a container changed, from its upper directory against its image's layers: deleted
/// files are whiteouts (character devices 0/0); a path that exists in a lower layer is
/// changed, otherwise added. Directories holding changes are listed as changed, as Docker does.
pub fn diff(host: &Host, what: &str) -> anyhow::Result<Vec<Change>> {
    let containers = host.containers()?;
    let c = containers.find(what)?;
    let store = host.store()?;
    // Every look, into the live upper directory and into the layers, stays inside them: the
    // walk goes by directory descriptor, and a layer path is resolved within its layer.
    let lowers: Vec<Scope> = c.layers.iter().filter_map(|d| Scope::open(&store.layer_diff_dir(d)).ok()).collect();
    let in_lower = |rel: &Path| lowers.iter().any(|l| l.exists(rel));
    let mut out = Vec::new();
    let upper = containers.dir(&c.id).join("upper");
    let top = Scope::open(&upper)?.open_dir(Path::new(""))?;
    walk(top.as_fd(), Path::new(""), &in_lower, &mut out)
        .with_context(|| format!("cannot read {}", upper.display()))?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(
    dir: BorrowedFd<'_>,
    rel: &Path,
    in_lower: &dyn Fn(&Path) -> bool,
    out: &mut Vec<Change>,
) -> anyhow::Result<()> {
    use rustix::fs::FileType;
    for name in list_dir(dir)? {
        let path = rel.join(&name);
        let Ok(meta) = stat_beneath(dir, &name) else { continue };
        let shown = format!("/{}", path.display());
        let kind = FileType::from_raw_mode(meta.st_mode);
        if kind == FileType::CharacterDevice && meta.st_rdev == 0 {
            out.push(Change { kind: 'D', path: shown });
            continue;
        }
        let existed = in_lower(&path);
        out.push(Change { kind: if existed { 'C' } else { 'A' }, path: shown });
        if kind == FileType::Directory
            && let Ok(sub) = open_dir_beneath(dir, &name)
        {
            walk(sub.as_fd(), &path, in_lower, out)?;
        }
    }
    Ok(())
}

/// Writes the container's whole filesystem (image layers and its changes, flattened) as a tar
/// stream. The overlay is mounted for the duration if the container is not running.
pub fn export(host: &Host, what: &str, out: impl Write) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let c = containers.find(what)?;
    let store = host.store()?;
    let dir = containers.dir(&c.id);
    // The container's own plan: if it runs, that overlay is mounted already.
    let plan = rootfs::OverlayPlan::for_container(store, &dir, &c.layers, c.auto_remove);
    let mounted_here = !rootfs::is_mounted(host.kernel(), &plan.target);
    if mounted_here {
        rootfs::mount(host.kernel(), &plan).with_context(|| format!("cannot mount the filesystem of {}", c.name))?;
    }
    let result = layer::write_tree(&plan.target, out, TreeMode::Plain);
    if mounted_here {
        let _ = rootfs::unmount(host.kernel(), &plan.target);
    }
    let (mut out, _) = result?;
    out.flush()?;
    Ok(())
}
