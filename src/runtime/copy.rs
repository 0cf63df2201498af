//! `cp`: files between a container and the host, as `docker cp` copies them. Every path on
//! the container's side is resolved inside the container (`openat2` with `RESOLVE_IN_ROOT`):
//! a symlink in the container leads to the container's file, never to the host's.
//!
//! A running container is reached through its process's root (`/proc/PID/root`), so its
//! volumes, bind mounts and tmpfs mounts are seen as it sees them. A stopped one is reached
//! through its own overlay, mounted for the copy if it is not mounted, with its volumes and
//! bind mounts found by their mount points.
//!
//! What goes across is a tar stream (the one `cp … -` writes or reads), unpacked by the
//! layer code that never leaves its target directory.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::FileType;

use super::container::{ContainerError, MountSource, RunConfig, Status};
use super::{Host, rootfs};
use crate::fsutil::scope::{Scope, fd_path};
use crate::image::layer::{self, ApplyOptions, WhiteoutMode};

/// How a copy treats ownership and links.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOptions {
    /// Keep the owners (user and group) of what is copied (`-a`); otherwise copies belong to
    /// root, as Docker makes them.
    pub archive: bool,
    /// Follow a symbolic link named as the source (`-L`), instead of copying the link.
    pub follow_link: bool,
}

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub entries: u64,
    pub bytes: u64,
}

fn invalid(msg: String) -> ContainerError {
    ContainerError::Invalid(msg)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ContainerError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ContainerError::Invalid(format!("{}: no such file or directory", path.display()))
        } else {
            ContainerError::Io { path: path.to_path_buf(), source: e }
        }
    }
}

fn layer_err(e: layer::LayerError) -> ContainerError {
    ContainerError::Invalid(format!("{e:#}"))
}

/// A path as the container sees it, made absolute and with `.` and `..` taken by name (the
/// root's parent is the root), and whether it asked for a directory's content (`/.` at its
/// end) or named a directory (`/` at its end).
fn container_path(path: &str) -> (PathBuf, bool, bool) {
    let contents = path.ends_with("/.") || path == ".";
    let trailing = path.ends_with('/');
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    (out, contents, trailing)
}

/// A container's filesystem, for one copy.
struct View<'h> {
    host: &'h Host,
    root: Scope,
    /// Mount points and what is mounted there, longest first (a stopped container's).
    mounts: Vec<(PathBuf, Scope)>,
    /// Where this copy mounted the container's overlay (unmounted when done).
    mounted: Option<(PathBuf, String)>,
}

impl<'h> View<'h> {
    fn open(host: &'h Host, config: &RunConfig) -> Result<View<'h>, ContainerError> {
        let containers = host.containers()?;
        let state = super::observed_state(containers, &config.id)?;
        if let (Status::Running | Status::Paused, Some(pid)) = (state.status, state.pid) {
            let root = PathBuf::from(format!("/proc/{pid}/root"));
            let root = Scope::open(&root).map_err(io(&root))?;
            return Ok(View { host, root, mounts: Vec::new(), mounted: None });
        }
        let store = host.store().map_err(|e| invalid(format!("{e:#}")))?;
        let dir = containers.dir(&config.id);
        let plan = rootfs::OverlayPlan::for_container(store, &dir, &config.layers, false);
        let mounted = if rootfs::is_mounted(host.kernel(), &plan.target) {
            None
        } else {
            rootfs::mount(host.kernel(), &plan).map_err(io(&plan.target))?;
            Some((plan.target.clone(), config.id.clone()))
        };
        let root = match Scope::open(&plan.target) {
            Ok(root) => root,
            Err(e) => {
                if mounted.is_some() {
                    let _ = rootfs::unmount(host.kernel(), &plan.target);
                }
                return Err(io(&plan.target)(e));
            }
        };
        let mut view = View { host, root, mounts: Vec::new(), mounted };
        let volumes = host.volumes()?;
        let mut mounts = Vec::new();
        for m in &config.mounts {
            let source = match &m.source {
                MountSource::Volume { name } => volumes.data_dir(name),
                MountSource::Bind { path, .. } => path.clone(),
                // Nothing is there while the container is stopped: the image's directory shows.
                MountSource::Tmpfs { .. } => continue,
            };
            if let Ok(scope) = Scope::open(&source) {
                mounts.push((container_path(&m.target).0, scope));
            }
        }
        mounts.sort_by_key(|(target, _)| std::cmp::Reverse(target.as_os_str().len()));
        view.mounts = mounts;
        Ok(view)
    }

    /// The scope holding absolute container path `path`, and the path inside it.
    fn locate(&self, path: &Path) -> (&Scope, PathBuf) {
        for (target, scope) in &self.mounts {
            if let Ok(rest) = path.strip_prefix(target) {
                return (scope, rest.to_path_buf());
            }
        }
        (&self.root, path.strip_prefix("/").unwrap_or(path).to_path_buf())
    }

    /// `path` with symbolic links at its end followed (inside the container), at most 40.
    fn follow(&self, mut path: PathBuf) -> Result<PathBuf, ContainerError> {
        for _ in 0..40 {
            let (scope, rel) = self.locate(&path);
            let Ok(st) = scope.stat(&rel, false) else { return Ok(path) };
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                return Ok(path);
            }
            let target = scope.read_link(&rel).map_err(io(&path))?;
            let next = if target.is_absolute() { target } else { path.parent().unwrap_or(Path::new("/")).join(target) };
            path = container_path(&next.to_string_lossy()).0;
        }
        Err(invalid(format!("{}: too many levels of symbolic links", path.display())))
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        let Some((target, id)) = self.mounted.take() else { return };
        // Left mounted if the container was started meanwhile (its start used this mount).
        let started = self
            .host
            .containers()
            .ok()
            .and_then(|c| super::observed_state(c, &id).ok())
            .is_some_and(|s| matches!(s.status, Status::Running | Status::Paused));
        if !started && let Err(e) = rootfs::unmount(self.host.kernel(), &target) {
            tracing::warn!(error = %e, "cannot unmount the container's filesystem after the copy");
        }
    }
}

/// Writes what `write` produces into a pipe and unpacks it with `unpack`, side by side.
fn through_pipe(
    write: impl FnOnce(std::io::PipeWriter) -> Result<Copied, ContainerError> + Send,
    unpack: impl FnOnce(std::io::PipeReader) -> Result<(), ContainerError>,
) -> Result<Copied, ContainerError> {
    let (reader, writer) =
        std::io::pipe().map_err(|e| ContainerError::Io { path: PathBuf::from("pipe"), source: e })?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || write(writer));
        let unpacked = unpack(reader);
        let written = producer.join().unwrap_or_else(|_| Err(invalid("the copy's reader failed".into())));
        // The writer's error explains a reader's broken stream: said first.
        let copied = written?;
        unpacked.map(|()| copied)
    })
}

fn stats(s: layer::write::WriteStats) -> Copied {
    Copied { entries: s.entries, bytes: s.bytes }
}

/// The apply options of a copy: names taken literally, owners kept only with `archive`.
fn apply_options(opts: &CopyOptions, owner: (u32, u32)) -> ApplyOptions {
    ApplyOptions { whiteouts: WhiteoutMode::Literal, max_file_size: None, owner: (!opts.archive).then_some(owner) }
}

/// Where something lands: the directory it goes into and the name it gets there (`None`: its
/// content goes into the directory).
struct Landing {
    dir: OwnedFd,
    name: Option<OsString>,
}

/// Copies `src` out of container `config` as a tar stream into `out` (`cp NAME:SRC -`).
pub fn copy_out_tar(
    host: &Host,
    config: &RunConfig,
    src: &str,
    opts: &CopyOptions,
    out: impl Write,
) -> Result<Copied, ContainerError> {
    let view = View::open(host, config)?;
    let (path, contents, trailing) = container_path(src);
    let path = if opts.follow_link { view.follow(path)? } else { path };
    let (scope, rel) = view.locate(&path);
    let st = scope.stat(&rel, false).map_err(io(&path))?;
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    if (contents || trailing) && !is_dir {
        return Err(invalid(format!("{}: not a directory", path.display())));
    }
    // The stream holds the source under its own name, or its content (`/.`, or the root).
    let name = path.file_name().filter(|_| !contents && !rel.as_os_str().is_empty());
    write_source(scope, &rel, &path, name, out).map(|(_, c)| c)
}

/// The tar stream of `rel` in `scope`: itself under `as_name`, or (`None`) its content.
fn write_source<W: Write>(
    scope: &Scope,
    rel: &Path,
    shown: &Path,
    as_name: Option<&OsStr>,
    out: W,
) -> Result<(W, Copied), ContainerError> {
    let Some(as_name) = as_name else {
        let dir = scope.open_dir(rel).map_err(io(shown))?;
        let (out, s) = layer::write_tree(&fd_path(&dir), out, layer::TreeMode::Plain).map_err(layer_err)?;
        return Ok((out, stats(s)));
    };
    let (parent, name) = scope.parent(rel, None).map_err(io(shown))?;
    let (out, s) = layer::write_entry(parent.as_fd(), &name, as_name.as_bytes(), out).map_err(layer_err)?;
    Ok((out, stats(s)))
}

/// A source that is the top of its scope (a container's root, a volume's mount point) has
/// no parent to be named from: its directory is made at the landing, and its content goes
/// there.
fn settle(land: Landing, source_is_top: bool) -> Result<Landing, ContainerError> {
    let Some(name) = land.name.as_ref().filter(|_| source_is_top) else { return Ok(land) };
    match rustix::fs::mkdirat(&land.dir, name.as_os_str(), rustix::fs::Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(io(Path::new(name))(e.into())),
    }
    let dir = crate::fsutil::scope::open_dir_beneath(land.dir.as_fd(), name).map_err(io(Path::new(name)))?;
    Ok(Landing { dir, name: None })
}

/// Where a copy to `dest` (in `scope`, shown as `shown`) of a source that is a directory
/// (`src_is_dir`) named `src_name` lands, as `cp` decides: into an existing directory under
/// the source's name (or its content, with `contents`), else at `dest` itself, whose parent
/// must exist.
fn landing(
    scope: &Scope,
    dest: &Path,
    shown: &Path,
    trailing: bool,
    src_is_dir: bool,
    src_name: Option<&OsStr>,
    contents: bool,
) -> Result<Landing, ContainerError> {
    match scope.stat(dest, true) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            let dir = scope.open_dir(dest).map_err(io(shown))?;
            let name = if contents { None } else { src_name.map(OsStr::to_os_string) };
            Ok(Landing { dir, name })
        }
        Ok(_) if src_is_dir => {
            Err(invalid(format!("cannot copy a directory onto {}, which is not a directory", shown.display())))
        }
        Ok(_) if trailing => Err(invalid(format!("{}: not a directory", shown.display()))),
        Ok(_) => {
            let (dir, name) = scope.parent(dest, None).map_err(io(shown))?;
            Ok(Landing { dir, name: Some(name) })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if trailing && !src_is_dir {
                return Err(invalid(format!("{}: no such directory", shown.display())));
            }
            let (dir, name) = scope
                .parent(dest, None)
                .map_err(|_| invalid(format!("{}: its directory does not exist", shown.display())))?;
            Ok(Landing { dir, name: Some(name) })
        }
        Err(e) => Err(io(shown)(e)),
    }
}

/// Copies `src` out of container `config` to host path `dest` (`cp NAME:SRC DEST`).
pub fn copy_out(
    host: &Host,
    config: &RunConfig,
    src: &str,
    dest: &Path,
    opts: &CopyOptions,
) -> Result<Copied, ContainerError> {
    let view = View::open(host, config)?;
    let (path, contents, trailing) = container_path(src);
    let path = if opts.follow_link { view.follow(path)? } else { path };
    let (scope, rel) = view.locate(&path);
    let st = scope.stat(&rel, false).map_err(io(&path))?;
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    if (contents || trailing) && !is_dir {
        return Err(invalid(format!("{}: not a directory", path.display())));
    }
    // The host's side is the user's own: a path as given, resolved from the host's root.
    let host_root = Scope::open(Path::new("/")).map_err(io(Path::new("/")))?;
    let dest_abs = std::path::absolute(dest).map_err(io(dest))?;
    let dest_rel = dest_abs.strip_prefix("/").unwrap_or(&dest_abs);
    let dest_trailing = dest.as_os_str().as_bytes().ends_with(b"/");
    let name = path.file_name().map(OsStr::to_os_string);
    let land = landing(&host_root, dest_rel, dest, dest_trailing, is_dir, name.as_deref(), contents)?;
    let land = settle(land, rel.as_os_str().is_empty())?;
    let owner = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    let apply = apply_options(opts, owner);
    let target = fd_path(&land.dir);
    through_pipe(
        |w| write_source(scope, &rel, &path, land.name.as_deref(), w).map(|(_, c)| c),
        |r| layer::apply_layer(r, &target, &apply).map(drop).map_err(layer_err),
    )
}

/// Copies host path `src` into container `config` at `dest` (`cp SRC NAME:DEST`); `src`
/// ending in `/.` copies a directory's content.
pub fn copy_in(
    host: &Host,
    config: &RunConfig,
    src: &Path,
    dest: &str,
    opts: &CopyOptions,
) -> Result<Copied, ContainerError> {
    let view = View::open(host, config)?;
    let src_text = src.as_os_str().as_bytes();
    let contents = src_text.ends_with(b"/.") || src_text == b".";
    let src_abs = std::path::absolute(src).map_err(io(src))?;
    let src_abs = if opts.follow_link { std::fs::canonicalize(&src_abs).map_err(io(src))? } else { src_abs };
    let meta = std::fs::symlink_metadata(&src_abs).map_err(io(src))?;
    if contents && !meta.is_dir() {
        return Err(invalid(format!("{}: not a directory", src.display())));
    }
    let host_root = Scope::open(Path::new("/")).map_err(io(Path::new("/")))?;
    let src_rel = src_abs.strip_prefix("/").unwrap_or(&src_abs).to_path_buf();
    let (path, _, trailing) = container_path(dest);
    let (scope, rel) = view.locate(&path);
    let land = landing(scope, &rel, &path, trailing, meta.is_dir(), src_abs.file_name(), contents)?;
    let land = settle(land, src_rel.as_os_str().is_empty())?;
    let apply = apply_options(opts, (0, 0));
    let target = fd_path(&land.dir);
    through_pipe(
        |w| write_source(&host_root, &src_rel, src, land.name.as_deref(), w).map(|(_, c)| c),
        |r| layer::apply_layer(r, &target, &apply).map(drop).map_err(layer_err),
    )
}

/// Unpacks the tar stream `input` into directory `dest` of container `config` (`cp - NAME:DEST`).
pub fn copy_in_tar(
    host: &Host,
    config: &RunConfig,
    input: impl Read,
    dest: &str,
    opts: &CopyOptions,
) -> Result<Copied, ContainerError> {
    let view = View::open(host, config)?;
    let (path, _, _) = container_path(dest);
    let (scope, rel) = view.locate(&path);
    let dir = scope.open_dir(&rel).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTDIR) => invalid(format!("{}: not a directory", path.display())),
        _ => io(&path)(e),
    })?;
    let apply = apply_options(opts, (0, 0));
    let s = layer::apply_layer(input, &fd_path(&dir), &apply).map_err(layer_err)?;
    Ok(Copied { entries: s.entries, bytes: s.bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_never_climb_above_the_root() {
        assert_eq!(container_path("/var/www/"), (PathBuf::from("/var/www"), false, true));
        assert_eq!(container_path("/var/www/."), (PathBuf::from("/var/www"), true, false));
        assert_eq!(container_path("../../etc/passwd"), (PathBuf::from("/etc/passwd"), false, false));
        assert_eq!(container_path("/a/../../b"), (PathBuf::from("/b"), false, false));
        assert_eq!(container_path("."), (PathBuf::from("/"), true, false));
    }
}
