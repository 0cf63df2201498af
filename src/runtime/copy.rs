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

use anyhow::Context as _;

use super::container::{MountSource, RunConfig, Status};
use super::{Host, rootfs};
use crate::error::NotFound;
use crate::fsutil::FileLock;
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

fn invalid(msg: String) -> anyhow::Error {
    crate::error::UsageError(msg).into()
}

/// An I/O error on `path` (a path in the container or on the host): "not found" (exit code
/// 3) when it is not there, a failure (1) otherwise.
fn io(path: &Path) -> impl Fn(std::io::Error) -> anyhow::Error + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NotFound(format!("{}: no such file or directory", path.display())).into()
        } else {
            anyhow::Error::new(e).context(path.display().to_string())
        }
    }
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

/// One place files are reached through: the container's root or something mounted in it.
struct Place {
    scope: Scope,
    /// Mounted read-only in the container: a copy into it is refused, as Docker refuses it.
    read_only: bool,
}

/// A container's filesystem, for one copy.
struct View<'h> {
    host: &'h Host,
    root: Place,
    /// Mount points and what is mounted there, longest first (a stopped container's).
    mounts: Vec<(PathBuf, Place)>,
    /// The overlay this copy mounted (unmounted when done), under the container's mount lock.
    mounted: Option<(PathBuf, FileLock)>,
    /// Mount points whose host side cannot be reached as a directory (single-file binds).
    unreachable: Vec<(PathBuf, PathBuf)>,
}

impl<'h> View<'h> {
    fn open(host: &'h Host, config: &RunConfig) -> anyhow::Result<View<'h>> {
        let containers = host.containers()?;
        let dir = containers.dir(&config.id);
        let plan = rootfs::OverlayPlan::for_container(host.store()?, &dir, &config.layers, false);
        let state = super::observed_state(containers, &config.id)?;
        if let (Status::Running | Status::Paused, Some(pid)) = (state.status, state.pid)
            && let Some(root) = Self::process_root(pid, &plan.target)
        {
            // The kernel's view of the container's mounts, read-only ones refusing writes.
            return Ok(View {
                host,
                root: Place { scope: root, read_only: false },
                mounts: Vec::new(),
                mounted: None,
                unreachable: Vec::new(),
            });
        }
        // Stopped (or ending): its own overlay, mounted under its lock so a start waits.
        let lock = containers.mount_lock(&config.id)?;
        let mounted = if rootfs::is_mounted(host.kernel(), &plan.target) {
            None
        } else {
            rootfs::mount(host.kernel(), &plan).with_context(|| format!("cannot mount {}", plan.target.display()))?;
            Some((plan.target.clone(), lock))
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
        let mut view = View {
            host,
            root: Place { scope: root, read_only: config.read_only },
            mounts: Vec::new(),
            mounted,
            unreachable: Vec::new(),
        };
        let volumes = host.volumes()?;
        for m in &config.mounts {
            let source = match &m.source {
                MountSource::Volume { name } => {
                    volumes.refuse_if_hydrating(name, "copy its files")?;
                    volumes.data_dir(name)
                }
                MountSource::Bind { path, .. } => path.clone(),
                // Nothing is there while the container is stopped: the image's directory shows.
                MountSource::Tmpfs { .. } => continue,
            };
            let target = container_path(&m.target).0;
            match Scope::open(&source) {
                Ok(scope) => view.mounts.push((target, Place { scope, read_only: m.read_only })),
                // A bind mount of a single file (or a source gone): only its placeholder is in
                // the overlay, so it is out of reach while the container is stopped.
                Err(_) => view.unreachable.push((target, source)),
            }
        }
        view.mounts.sort_by_key(|(target, _)| std::cmp::Reverse(target.as_os_str().len()));
        Ok(view)
    }

    /// The root of process `pid`, if it is the container's: a PID reused by another process
    /// (the container ended a moment ago) shows another root, and is not taken.
    fn process_root(pid: i32, rootfs: &Path) -> Option<Scope> {
        let root = Scope::open(Path::new(&format!("/proc/{pid}/root"))).ok()?;
        let theirs = rustix::fs::fstat(root.fd()).ok()?;
        let ours = rustix::fs::stat(rootfs).ok()?;
        (theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino).then_some(root)
    }

    /// The place holding absolute container path `path`, and the path inside it.
    fn locate(&self, path: &Path) -> anyhow::Result<(&Place, PathBuf)> {
        if let Some((_, source)) = self.unreachable.iter().find(|(target, _)| path.starts_with(target)) {
            return Err(invalid(format!(
                "{} is bind-mounted from the host's {}: copy that file on the host, or while the container runs",
                path.display(),
                source.display()
            )));
        }
        for (target, place) in &self.mounts {
            if let Ok(rest) = path.strip_prefix(target) {
                return Ok((place, rest.to_path_buf()));
            }
        }
        Ok((&self.root, path.strip_prefix("/").unwrap_or(path).to_path_buf()))
    }

    /// `path` with symbolic links at its end followed (inside the container), at most 40.
    fn follow(&self, mut path: PathBuf) -> anyhow::Result<PathBuf> {
        for _ in 0..40 {
            let (place, rel) = self.locate(&path)?;
            let Ok(st) = place.scope.stat(&rel, false) else { return Ok(path) };
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                return Ok(path);
            }
            let target = place.scope.read_link(&rel).map_err(io(&path))?;
            let next = if target.is_absolute() { target } else { path.parent().unwrap_or(Path::new("/")).join(target) };
            path = container_path(&next.to_string_lossy()).0;
        }
        Err(invalid(format!("{}: too many levels of symbolic links", path.display())))
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        // Unmounted before the lock goes: a start waiting for it mounts afresh.
        if let Some((target, _lock)) = self.mounted.take()
            && let Err(e) = rootfs::unmount(self.host.kernel(), &target)
        {
            tracing::warn!(error = %e, "cannot unmount the container's filesystem after the copy");
        }
    }
}

/// A writer that fails once the command is asked to stop (Ctrl-C): the copy ends at its next
/// write, and what it mounted is unmounted.
pub(crate) struct Interruptible<W>(pub(crate) W);

impl<W: Write> Write for Interruptible<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if crate::sys::interrupted() {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted"));
        }
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Writes what `write` produces into a pipe and unpacks it with `unpack`, side by side.
pub(crate) fn through_pipe<T: Send>(
    write: impl FnOnce(Interruptible<std::io::PipeWriter>) -> anyhow::Result<T> + Send,
    unpack: impl FnOnce(std::io::PipeReader) -> anyhow::Result<()>,
) -> anyhow::Result<T> {
    let (reader, writer) = std::io::pipe().context("cannot make a pipe")?;
    std::thread::scope(|s| {
        let producer = s.spawn(move || write(Interruptible(writer)));
        let unpacked = unpack(reader);
        let written = producer.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the copy's reader failed")));
        if crate::sys::interrupted() {
            return Err(crate::repo::RepoError::Interrupted.into());
        }
        match (written, unpacked) {
            (Ok(copied), Ok(())) => Ok(copied),
            // The side that failed first is the one to tell: a writer whose reader stopped
            // reads "broken pipe".
            (Err(w), Err(u)) if is_broken_pipe(&w) => Err(u),
            (Err(w), _) => Err(w),
            (Ok(_), Err(u)) => Err(u),
        }
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
        || format!("{e:#}").contains("Broken pipe")
}

fn stats(s: layer::write::WriteStats) -> Copied {
    Copied { entries: s.entries, bytes: s.bytes }
}

/// The apply options of a copy: names taken literally, owners kept only with `archive`, a
/// directory never replaced by a file nor a file by a directory.
fn apply_options(opts: &CopyOptions, owner: (u32, u32)) -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Literal,
        max_file_size: None,
        owner: (!opts.archive).then_some(owner),
        keep_kinds: true,
    }
}

/// Where something lands: the directory it goes into and the name it gets there (`None`: its
/// content goes into the directory).
struct Landing {
    dir: OwnedFd,
    name: Option<OsString>,
}

/// The tar stream of `rel` in `scope`: itself under `as_name` (a directory with everything
/// below it), or (`None`) its content.
fn write_source<W: Write>(
    scope: &Scope,
    rel: &Path,
    shown: &Path,
    as_name: Option<&OsStr>,
    out: W,
) -> anyhow::Result<(W, Copied)> {
    let Some(as_name) = as_name else {
        let dir = scope.open_dir(rel).map_err(io(shown))?;
        let (out, s) = layer::write_tree(&fd_path(&dir), out, layer::TreeMode::Copy)?;
        return Ok((out, stats(s)));
    };
    // The top of a scope (a volume's mount point, the root) has no parent here: it is
    // written from its own descriptor.
    let (parent, name) = if rel.as_os_str().is_empty() {
        (scope.open_dir(rel).map_err(io(shown))?, OsString::from("."))
    } else {
        scope.parent(rel, None).map_err(io(shown))?
    };
    let (out, s) = layer::write_entry(parent.as_fd(), &name, as_name.as_bytes(), out)?;
    Ok((out, stats(s)))
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
) -> anyhow::Result<Landing> {
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
                return Err(NotFound(format!("{}: no such directory", shown.display())).into());
            }
            let (dir, name) = scope
                .parent(dest, None)
                .map_err(|_| NotFound(format!("{}: its directory does not exist", shown.display())))?;
            Ok(Landing { dir, name: Some(name) })
        }
        Err(e) => Err(io(shown)(e)),
    }
}

/// A container's source, checked: its place, path inside, whether it is a directory, and
/// whether its content (`/.`) was asked for.
/// A source in the container, checked.
struct Source<'v> {
    place: &'v Place,
    /// The path inside `place`.
    rel: PathBuf,
    /// The container's path (after links followed).
    path: PathBuf,
    /// The name it is copied under: its own as typed (a followed link keeps the link's name).
    name: Option<OsString>,
    is_dir: bool,
    /// Its content was asked for (`DIR/.`).
    contents: bool,
}

fn source<'v>(view: &'v View<'_>, src: &str, opts: &CopyOptions) -> anyhow::Result<Source<'v>> {
    let (typed, contents, trailing) = container_path(src);
    let name = typed.file_name().map(OsStr::to_os_string);
    // Docker follows a link named with `-L`, or with `/` or `/.` after it.
    let path = if opts.follow_link || contents || trailing { view.follow(typed)? } else { typed };
    let (place, rel) = view.locate(&path)?;
    let st = place.scope.stat(&rel, false).map_err(io(&path))?;
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    if (contents || trailing) && !is_dir {
        return Err(invalid(format!("{}: not a directory", path.display())));
    }
    Ok(Source { place, rel, path, name, is_dir, contents })
}

/// Copies `src` out of container `config` as a tar stream into `out` (`cp NAME:SRC -`).
pub fn copy_out_tar(
    host: &Host,
    config: &RunConfig,
    src: &str,
    opts: &CopyOptions,
    out: impl Write,
) -> anyhow::Result<Copied> {
    let view = View::open(host, config)?;
    let src = source(&view, src, opts)?;
    // The stream holds the source under its own name (`/` itself: its content), or its
    // content (`/.`).
    let name = src.name.as_deref().filter(|_| !src.contents);
    write_source(&src.place.scope, &src.rel, &src.path, name, Interruptible(out)).map(|(_, c)| c)
}

/// Copies `src` out of container `config` to host path `dest` (`cp NAME:SRC DEST`).
pub fn copy_out(host: &Host, config: &RunConfig, src: &str, dest: &Path, opts: &CopyOptions) -> anyhow::Result<Copied> {
    let view = View::open(host, config)?;
    let src = source(&view, src, opts)?;
    // The host's side is the user's own: a path as given, resolved from the host's root.
    let host_root = Scope::open(Path::new("/")).map_err(io(Path::new("/")))?;
    let dest_abs = std::path::absolute(dest).map_err(io(dest))?;
    let dest_rel = dest_abs.strip_prefix("/").unwrap_or(&dest_abs);
    let dest_trailing = dest.as_os_str().as_bytes().ends_with(b"/");
    let land = landing(&host_root, dest_rel, dest, dest_trailing, src.is_dir, src.name.as_deref(), src.contents)?;
    let owner = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    let apply = apply_options(opts, owner);
    let target = fd_path(&land.dir);
    through_pipe(
        |w| write_source(&src.place.scope, &src.rel, &src.path, land.name.as_deref(), w).map(|(_, c)| c),
        |r| layer::apply_layer(r, &target, &apply).map(drop).map_err(Into::into),
    )
}

/// The place a copy into the container writes to, refused when it is mounted read-only.
fn writable<'v>(view: &'v View<'_>, path: &Path) -> anyhow::Result<(&'v Scope, PathBuf)> {
    let (place, rel) = view.locate(path)?;
    if place.read_only {
        return Err(invalid(format!("{} is mounted read-only in the container", path.display())));
    }
    Ok((&place.scope, rel))
}

/// A container's root directory held open for a restore into it: a running container's root
/// as its processes see it, or a stopped one's overlay (mounted under its lock until dropped).
pub struct ContainerRoot<'h>(View<'h>);

impl<'h> ContainerRoot<'h> {
    pub fn open(host: &'h Host, config: &RunConfig) -> anyhow::Result<ContainerRoot<'h>> {
        Ok(ContainerRoot(View::open(host, config)?))
    }

    /// The root, refused when the container's root filesystem is read-only.
    pub fn writable(&self) -> anyhow::Result<&Scope> {
        Ok(writable(&self.0, Path::new("/"))?.0)
    }
}

/// Copies host path `src` into container `config` at `dest` (`cp SRC NAME:DEST`); `src`
/// ending in `/.` copies a directory's content.
pub fn copy_in(host: &Host, config: &RunConfig, src: &Path, dest: &str, opts: &CopyOptions) -> anyhow::Result<Copied> {
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
    let (scope, rel) = writable(&view, &path)?;
    let land = landing(scope, &rel, &path, trailing, meta.is_dir(), src_abs.file_name(), contents)?;
    let apply = apply_options(opts, (0, 0));
    let target = fd_path(&land.dir);
    through_pipe(
        |w| write_source(&host_root, &src_rel, src, land.name.as_deref(), w).map(|(_, c)| c),
        |r| layer::apply_layer(r, &target, &apply).map(drop).map_err(Into::into),
    )
}

/// Unpacks the tar stream `input` into directory `dest` of container `config` (`cp - NAME:DEST`).
pub fn copy_in_tar(
    host: &Host,
    config: &RunConfig,
    input: impl Read,
    dest: &str,
    opts: &CopyOptions,
) -> anyhow::Result<Copied> {
    let view = View::open(host, config)?;
    let (path, _, _) = container_path(dest);
    let (scope, rel) = writable(&view, &path)?;
    let dir = scope.open_dir(&rel).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTDIR) => invalid(format!("{}: not a directory", path.display())),
        _ => io(&path)(e),
    })?;
    let apply = apply_options(opts, (0, 0));
    let s = layer::apply_layer(input, &fd_path(&dir), &apply)?;
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
