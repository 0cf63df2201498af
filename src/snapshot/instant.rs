//! Instant restore (`restore SERVICE --instant`): the service starts on its snapshot before
//! the data has arrived, and a hydrator fills its volumes behind it.
//!
//! Each volume is served through an overlay: below, the snapshot's volume tree over FUSE
//! ([`super::mount::SnapshotFs::volume`], data fetched from the repository when read); above,
//! the volume's own data directory, where the service's writes land. The hydrator, a process
//! of its own that outlives the `restore` command, serves those FUSE mounts and copies every
//! entry up through the overlay (opening a file for writing, without writing, copies it up
//! whole), the service's start-up files first (the hot set its last drill recorded), then the
//! files the service opens, then the rest. When everything is up, the service is stopped once,
//! the overlay and the FUSE mounts go, whiteouts and overlay markers are cleared from the data
//! directories (they are ordinary volumes again), and the service is started on them: the one
//! switch, timed and reported.
//!
//! The hydrator is handed the repository's key on its standard input (never in its arguments
//! or environment), reports on its standard output when the volumes are mounted, and writes
//! its progress to the container's `hydration.json` ([`Hydration`]). A repository that stops
//! answering stalls it (retried, loudly, in `ps` and the log); it never switches before every
//! file is in. A hydrator that dies leaves the volumes marked: the container cannot start on
//! them until `restore --finish` (a new hydrator takes over where the data directories are) or
//! `restore --undo` (the container and its volumes go).

use std::ffi::OsStr;
use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::mount::{SnapshotFs, Watch};
use super::view::{Entry, TreeCache, View};
use crate::repo::crypto::MasterKey;
use crate::repo::snapshot::{HotFile, Snapshot};
use crate::repo::tree::NodeKind;
use crate::repo::{BlobId, Repository};
use crate::runtime::container::ContainerError;
use crate::runtime::host::Host;
use crate::runtime::hydration::{Hydration, Phase};
use crate::runtime::volume::{Hydrating, InstantDirs, Owner};

/// How long a restore waits for its hydrator to mount the volumes.
const READY_WITHIN: Duration = Duration::from_secs(300);
/// Chunks of file data the FUSE server keeps for the service's reads.
const CACHE_BYTES: usize = 64 << 20;
/// How far the read-ahead for the copy may run before the copy catches up.
const READ_AHEAD_BYTES: u64 = 96 << 20;
/// Threads reading ahead (a remote repository answers several requests at once).
const READ_AHEAD_THREADS: usize = 4;
/// How long a copy waits for the read-ahead to bring its packs before fetching on its own.
const READ_AHEAD_WAIT: Duration = Duration::from_secs(5);
/// How often progress is written down.
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// A copy that keeps failing for any other reason than an unreachable repository fails the
/// hydration after this many tries.
const TRIES: u32 = 5;

/// Where drills write down what a service read while starting: `<root>/hot/SERVICE.json`.
fn hot_set_path(host: &Host, service: &str) -> PathBuf {
    host.paths().root.join("hot").join(format!("{service}.json"))
}

/// The hot set the last drill of `service` on this host recorded (none: empty); snapshots
/// carry it, so an instant restore on any host fetches those files first.
pub fn recorded_hot_set(host: &Host, service: &str) -> Vec<HotFile> {
    std::fs::read(hot_set_path(host, service)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Records the files of `volumes` (each: its name in the snapshot, and its data directory
/// here) read since `since`: files whose access time moved past it. A restore writes every
/// file's access time as its modification time, and the kernel then moves it at the first
/// read (`relatime`, the default; a volume mounted `noatime` records nothing).
pub fn record_hot_set(
    host: &Host,
    service: &str,
    volumes: &[(String, PathBuf)],
    since: std::time::SystemTime,
) -> anyhow::Result<usize> {
    let since_ns = since.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
    let mut hot: Vec<(i128, HotFile)> = Vec::new();
    for (name, data) in volumes {
        let Ok(top) = std::fs::File::open(data) else { continue };
        let Ok(top_st) = rustix::fs::fstat(&top) else { continue };
        hot_walk(top.into(), top_st.st_dev, Path::new("/"), 0, name, since_ns, &mut hot);
    }
    // In the order they were first read.
    hot.sort_by_key(|h| h.0);
    let files: Vec<HotFile> = hot.into_iter().map(|(_, f)| f).collect();
    let path = hot_set_path(host, service);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&files).expect("serialises"))?;
    Ok(files.len())
}

/// Files a hot set holds at most (a start-up that reads more gains nothing from the order).
const HOT_FILES: usize = 10_000;

/// Adds the files of directory `dir` (at `at` in volume `volume`, on device `dev`) read since
/// `since_ns` to `hot`. Opened by descriptor, never through a link, never onto another
/// filesystem: the drill's service may have put anything in its volume.
fn hot_walk(
    dir: std::os::fd::OwnedFd,
    dev: u64,
    at: &Path,
    depth: usize,
    volume: &str,
    since_ns: i128,
    hot: &mut Vec<(i128, HotFile)>,
) {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let Ok(names) = crate::fsutil::scope::list_dir(dir.as_fd()) else { return };
    for n in names {
        if hot.len() >= HOT_FILES {
            return;
        }
        let Ok(st) = rustix::fs::statat(&dir, &n, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        if st.st_dev != dev {
            continue;
        }
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory if depth < super::view::MAX_DEPTH => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(sub) = rustix::fs::openat(&dir, &n, flags, Mode::empty()) {
                    hot_walk(sub, dev, &at.join(&n), depth + 1, volume, since_ns, hot);
                }
            }
            FileType::RegularFile => {
                let atime = st.st_atime as i128 * 1_000_000_000 + st.st_atime_nsec as i128;
                if atime >= since_ns {
                    hot.push((atime, HotFile { volume: volume.to_string(), path: at.join(&n).display().to_string() }));
                }
            }
            _ => {}
        }
    }
}

/// What the restore hands its hydrator: one JSON line on its standard input, then the index
/// as the restore loaded it ([`Repository::write_index`]): the hydrator need not read every
/// index file again over the link before the service may start.
#[derive(Serialize, Deserialize)]
struct Handover {
    repository: String,
    /// The repository's keys, hex (never on a command line).
    encryption: String,
    id: String,
    snapshot: String,
    container: String,
    /// Each volume to fill: its index in the snapshot and its name on this host.
    volumes: Vec<(usize, String)>,
    /// The index files the handed index was read from.
    index_files: Vec<String>,
}

/// The volumes of `snap` a restore fills, as (index in the snapshot, name here).
pub type Planned = Vec<(usize, String)>;

/// A hydrator started by a restore, mounting its volumes.
pub struct Hydrator {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    /// The index being written to the hydrator's standard input (tens of megabytes through a
    /// pipe), on a thread of its own so that [`Hydrator::ready`]'s deadline covers it; it
    /// gives the pipe back when done.
    handing: Option<std::thread::JoinHandle<std::io::Result<std::process::ChildStdin>>>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Hydrator {
    /// Waits until the volumes are mounted (the container may start), or says why not.
    pub fn ready(&mut self) -> anyhow::Result<()> {
        // Reading the handed index and mounting take seconds at most.
        let answered = {
            let mut fds = [nix::poll::PollFd::new(self.stdout.get_ref().as_fd(), nix::poll::PollFlags::POLLIN)];
            let timeout = nix::poll::PollTimeout::try_from(READY_WITHIN.as_millis() as i32)
                .unwrap_or(nix::poll::PollTimeout::MAX);
            nix::poll::poll(&mut fds, timeout).unwrap_or(0) > 0
        };
        if !answered {
            bail!("the hydrator did not mount the volumes within {} s", READY_WITHIN.as_secs());
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line).context("the hydrator did not answer")?;
        match line.trim_end() {
            "ready" => {
                // It read all it was handed before it mounted: the pipe is free for "go".
                let handed = self.handing.take().map(|t| t.join());
                if let Some(Ok(Ok(stdin))) = handed {
                    self.stdin = Some(stdin);
                }
                Ok(())
            }
            "" => {
                let status = self.child.wait().ok();
                bail!(
                    "the hydrator stopped before the volumes were mounted ({status:?}); its log is hydrate.log in the container's directory"
                )
            }
            other => bail!("the hydrator cannot mount the volumes: {}", other.strip_prefix("error: ").unwrap_or(other)),
        }
    }

    /// Lets it copy (the service is started, or asked not to be): it goes on alone.
    pub fn go(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }

    /// Stops it (a restore that failed): it unmounts what it mounted.
    pub fn abandon(mut self) {
        self.stdin.take();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        // Its end of the pipe is closed: a write still going fails and the thread ends.
        if let Some(t) = self.handing.take() {
            let _ = t.join();
        }
    }
}

/// Marks the volumes as filled by an instant restore for container `container` and starts
/// the hydrator; the caller waits for [`Hydrator::ready`] before starting the container.
pub fn spawn(
    host: &Host,
    repo: &Repository,
    snapshot_id: &str,
    container: &str,
    volumes: &Planned,
) -> anyhow::Result<Hydrator> {
    let vols = host.volumes()?;
    let log_path = host.containers()?.dir(container).join("hydrate.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find this program to start the hydrator")?;
    let mut cmd = crate::runtime::reexec::hydrator_command(&exe, host.paths(), container);
    // The restore's environment: the repository's credentials may come from it (AWS_*).
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(log);
    // Its own process group: an interrupt of the restore does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("cannot start the hydrator")?;
    // The volumes are its own from now on (it waits for its handover before doing anything):
    // without it alive, nothing may use them.
    let pid = child.id() as i32;
    let hydrator = Owner { pid, start: crate::sys::process_start(pid) };
    for (_, name) in volumes {
        let marked = vols.begin_hydration(
            name,
            Hydrating {
                container: container.to_string(),
                snapshot: snapshot_id.to_string(),
                hydrator: Some(hydrator.clone()),
                cleaning: false,
            },
        );
        if let Err(e) = marked {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.into());
        }
    }
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let key = repo.key();
    let handover = Handover {
        repository: repo.backend().reopen_location(),
        encryption: hex::encode(key.encryption),
        id: hex::encode(key.id),
        snapshot: snapshot_id.to_string(),
        container: container.to_string(),
        volumes: volumes.clone(),
        index_files: repo.index_files(),
    };
    let mut handover = serde_json::to_vec(&handover).expect("serialises");
    handover.push(b'\n');
    // The index after the line, written while `ready` waits (it stays within its deadline
    // even if the hydrator stops reading); a hydrator that dies meanwhile is said by `ready`.
    repo.write_index(&mut handover).expect("writing to memory");
    let handing = std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || stdin.write_all(&handover).map(|()| stdin))
        .context("cannot hand the repository to the hydrator");
    let handing = match handing {
        Ok(t) => t,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Hydrator { child, stdin: None, handing: Some(handing), stdout })
}

fn key_from(h: &Handover) -> anyhow::Result<MasterKey> {
    let part = |s: &str| -> anyhow::Result<[u8; 32]> {
        hex::decode(s).ok().and_then(|b| b.try_into().ok()).context("the handed key is not 32 bytes of hex")
    };
    Ok(MasterKey { encryption: part(&h.encryption)?, id: part(&h.id)? })
}

/// One entry to copy up: its path in the volume, and what the snapshot says it is.
struct Item {
    volume: usize,
    path: PathBuf,
    kind: NodeKind,
    size: u64,
    content: Vec<BlobId>,
    /// The file's inode in the snapshot when it has other links (copying up breaks links:
    /// they are made again at the switch), and its modification time.
    linked: Option<u64>,
    mtime_ns: i64,
}

/// Paths of one volume that were one file in the snapshot, with its size and mtime.
struct LinkGroup {
    volume: usize,
    paths: Vec<PathBuf>,
    size: u64,
    mtime_ns: i64,
}

/// The hydrator (`lifeboat hydrate CONTAINER`, started by [`spawn`]): reads its handover,
/// mounts, copies, switches. Its exit code says how it ended; `hydration.json` says more.
pub fn run(host: &Host, container: &str) -> anyhow::Result<()> {
    crate::sys::stop_on_signals()?;
    // Cleaning a deep tree keeps a descriptor per level: the soft limit up to the hard one.
    let mut files = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    files.current = files.maximum;
    let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, files);
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).context("no handover on standard input")?;
    let handover: Handover = serde_json::from_str(&line).context("the handover is unreadable")?;
    if handover.container != container {
        bail!("the handover is for container {}, not {container}", handover.container);
    }
    let index = crate::repo::read_index(&mut stdin).context("the handed index is unreadable")?;
    let mut out = std::io::stdout().lock();
    let result = hydrate(host, &handover, index, &mut stdin, &mut out);
    if let Err(e) = &result {
        // Said to the restore if it still waits; it is in the log and the state either way.
        let _ = writeln!(out, "error: {}", crate::error::describe(e));
        tracing::error!(error = %crate::error::describe(e), "hydration failed");
    }
    result
}

/// Everything the hydrator serves and counts, shared by its threads.
struct Served {
    dirs: Vec<InstantDirs>,
    watches: Vec<Arc<Watch>>,
    /// The FUSE mounts' device numbers (to cut their connections at the end).
    fuse_devs: Vec<u64>,
}

impl Served {
    /// Bytes of file data read from the repository so far, over all volumes.
    fn fetched(&self) -> u64 {
        self.watches.iter().map(|w| w.fetched.load(Ordering::Relaxed)).sum()
    }

    /// Unmounts every volume's overlay and FUSE mount (detached if busy) and cuts the FUSE
    /// connections, so that no server waits on a mount something still holds.
    fn release(&self, vols: &crate::runtime::volume::Volumes, names: &[String]) {
        for n in names {
            vols.unmount_instant(n);
        }
        for dev in &self.fuse_devs {
            abort_fuse(*dev);
        }
    }
}

/// Cuts the connection of the FUSE mount with device number `dev`: its server's session
/// ends, and whoever still uses the mount gets errors.
fn abort_fuse(dev: u64) {
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let id = ((major as u64) << 20) | minor as u64;
    let knob = format!("/sys/fs/fuse/connections/{id}/abort");
    if let Err(e) = std::fs::write(&knob, "1")
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(knob, error = %e, "cannot cut a FUSE connection");
    }
}

fn hydrate(
    host: &Host,
    h: &Handover,
    index: std::collections::HashMap<BlobId, crate::repo::Location>,
    stdin: &mut impl BufRead,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let dir = containers.dir(&h.container);
    let backend = crate::backend::open(&h.repository)?;
    let mut repo = Repository::open_with_key(backend, key_from(h)?, Some((index, h.index_files.clone())))?;
    // Held (and refreshed) for as long as the volumes are served: a prune meanwhile would
    // delete packs the service still reads.
    repo.set_lock_wait(Duration::from_secs(60));
    let _lock = crate::repo::lock::Lock::acquire(&mut repo, false)?;
    let (id, snap) = crate::repo::snapshot::find(&repo, None, &h.snapshot)?;
    // Checked before anything is recorded: a record must never say "mounting" forever.
    if let Some((index, _)) = h.volumes.iter().find(|(index, _)| snap.volumes.get(*index).is_none()) {
        bail!("the snapshot has no volume {index}");
    }
    let vols = host.volumes()?;
    let names: Vec<String> = h.volumes.iter().map(|(_, n)| n.clone()).collect();
    let mut state = Hydration {
        hydrator: Owner::this_process(),
        snapshot: id.clone(),
        repository: repo.location(),
        // Every volume of the restore (a `--finish` fills only some: the record keeps all, in
        // the snapshot's order, for the next one).
        volumes: Hydration::load(&dir)
            .map(|earlier| earlier.volumes)
            .filter(|v| v.len() == snap.volumes.len())
            .unwrap_or_else(|| names.clone()),
        phase: Phase::Mounting,
        started: crate::sys::now_rfc3339(),
        total_files: 0,
        total_bytes: 0,
        done_files: 0,
        done_bytes: 0,
        fetched_bytes: 0,
        hot_files: 0,
        error: None,
        switch_ms: None,
        finished: None,
        updated: None,
    };
    state.save(&dir)?;
    let mut served = Served {
        dirs: names.iter().map(|n| vols.instant_dirs(n)).collect(),
        watches: h.volumes.iter().map(|_| Arc::new(Watch::default())).collect(),
        fuse_devs: Vec::new(),
    };
    // What was left mounted by a hydrator that died goes first.
    for n in &names {
        vols.unmount_instant(n);
    }
    std::thread::scope(|scope| -> anyhow::Result<()> {
        // One FUSE server per volume, each on its own thread until unmounted.
        let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let mut servers = Vec::new();
        for (i, (index, name)) in h.volumes.iter().enumerate() {
            let fs =
                SnapshotFs::volume(&repo, (id.clone(), snap.clone()), *index, CACHE_BYTES, served.watches[i].clone())
                    .with_context(|| format!("the snapshot has no volume {index}"))?;
            let lower = served.dirs[i].lower.clone();
            let tx = tx.clone();
            let name = name.clone();
            servers.push(scope.spawn(move || {
                let mut told = false;
                let r = super::mount::serve_lower(fs, &lower, &mut || {
                    told = true;
                    let _ = tx.send(Ok(()));
                });
                if !told && let Err(e) = &r {
                    let _ = tx.send(Err(anyhow::anyhow!("volume {name}: {e}")));
                }
                r
            }));
        }
        drop(tx);
        let mounted = (|| -> anyhow::Result<()> {
            // Every server's answer first (a failed one must not leave another mounted
            // behind the cleanup).
            let mut first_error = None;
            for _ in &h.volumes {
                match rx.recv() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(_) => {
                        first_error.get_or_insert(anyhow::anyhow!("a volume's server stopped before mounting"));
                        break;
                    }
                }
            }
            for d in &served.dirs {
                if let Ok(fs) = rustix::fs::statfs(&d.lower)
                    && fs.f_type == FUSE_MAGIC
                {
                    use std::os::unix::fs::MetadataExt;
                    served.fuse_devs.push(std::fs::metadata(&d.lower)?.dev());
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            for d in &served.dirs {
                read_ahead_more(&d.lower);
            }
            for (i, (_, name)) in h.volumes.iter().enumerate() {
                mount_overlay(&served.dirs[i], &vols.data_dir(name))
                    .with_context(|| format!("cannot mount the overlay of volume {name}"))?;
            }
            Ok(())
        })();
        if let Err(e) = mounted {
            served.release(vols, &names);
            return Err(e);
        }
        // A restore that died meanwhile does not read it: the copy goes on regardless.
        let _ = writeln!(out, "ready").and_then(|()| out.flush());
        // The restore says go once the service started (its start-up reads come first);
        // a restore that died says nothing, and the volumes are whole only once copied.
        // Waited for in steps, so that being asked to stop meanwhile is noticed.
        // (Nothing can be buffered yet: the restore says go only after reading "ready".)
        while !crate::sys::interrupted() {
            let input = std::io::stdin();
            let mut fds = [nix::poll::PollFd::new(input.as_fd(), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap_or(1) > 0 {
                break;
            }
        }
        if !crate::sys::interrupted() {
            let mut word = String::new();
            let _ = stdin.read_line(&mut word);
        }
        // A panic must not leave the servers running with nobody copying: it is an error
        // like any other (the mounts go, the state says why).
        let switched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let links = copy_everything(&repo, &snap, h, &served, &mut state, &dir)?;
            switch(host, &h.container, &names, &served, &links, &mut state, &dir)
        }))
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the hydrator failed unexpectedly (a bug: see hydrate.log)")));
        if let Err(e) = &switched {
            // A failure stops the service rather than leave it on half a volume; a hydrator
            // asked to stop leaves it be (its reads of what was not copied then fail).
            if !crate::sys::interrupted() {
                tracing::error!(error = %crate::error::describe(e), "hydration failed; stopping the service");
                if let Err(e) = crate::runtime::stop(host, &h.container, Duration::from_secs(10)) {
                    tracing::error!(error = %e, "cannot stop the service");
                }
            }
            // Whatever still holds the mounts (a running service) must not keep the servers
            // waiting: their connections are cut.
            served.release(vols, &names);
        }
        for s in servers {
            match s.join() {
                Ok(Err(e)) => tracing::warn!(error = %e, "a volume's server ended with an error"),
                Err(_) => tracing::error!("a volume's server panicked"),
                Ok(Ok(())) => {}
            }
        }
        switched
    })
    .inspect_err(|e| {
        if crate::sys::interrupted() {
            state.error = Some("the hydrator was stopped".into());
        } else {
            state.phase = Phase::Failed;
            state.error = Some(crate::error::describe(e));
        }
        let _ = state.save(&dir);
    })
}

/// Lets the kernel read a FUSE mount ahead in 1 MiB requests rather than 128 KiB ones (the
/// copy reads files whole; each request is a round trip to the server). A kernel that does
/// not let us only costs speed.
fn read_ahead_more(mount: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mount) else { return };
    let (major, minor) = (rustix::fs::major(meta.dev()), rustix::fs::minor(meta.dev()));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, "1024") {
        tracing::debug!(knob, error = %e, "cannot raise the read-ahead of the snapshot's mount");
    }
}

/// The overlay a volume is served through while it fills: the snapshot below, the volume's
/// data above. No metadata-only copy-up (a copy must bring the data), no index, no redirects
/// (a directory renamed by the service is copied, so the data directory alone is whole).
fn mount_overlay(dirs: &InstantDirs, upper: &Path) -> anyhow::Result<()> {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},index=off,metacopy=off,redirect_dir=off,xino=off",
        dirs.lower.display(),
        upper.display(),
        dirs.work.display()
    );
    nix::mount::mount(Some("overlay"), &dirs.merged, Some("overlay"), nix::mount::MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| anyhow::anyhow!("{e} (options {opts})"))
}

/// The gettid of the calling thread.
fn thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Copies every entry of the volumes up through their overlays: the hot set first, then what
/// the service opens, then the rest in tree order (parents first).
fn copy_everything(
    repo: &Repository,
    snap: &Snapshot,
    h: &Handover,
    served: &Served,
    state: &mut Hydration,
    dir: &Path,
) -> anyhow::Result<Vec<LinkGroup>> {
    // The plan: every entry of every volume (its trees read again while the repository does
    // not answer: the hydration stalls, said, rather than fails).
    let mut wait = Duration::from_millis(200);
    let items = loop {
        match plan(repo, snap, h) {
            Ok(items) => break items,
            Err(e) if e.is::<Unsupported>() => return Err(e),
            Err(e) => {
                if crate::sys::interrupted() {
                    bail!("interrupted");
                }
                tracing::error!(error = %e, "hydration: cannot read the snapshot's trees; retrying");
                state.error = Some(format!(
                    "cannot read the snapshot's trees: {} (is the repository reachable?)",
                    crate::error::describe(&e)
                ));
                state.save(dir)?;
                pause(wait, None)?;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    };
    state.error = None;
    state.total_files = items.iter().filter(|i| i.kind == NodeKind::File).count() as u64;
    state.total_bytes = items.iter().map(|i| i.size).sum();
    // Hot files first, in the order the drill saw them (then the rest in tree order).
    let mut order: Vec<usize> = Vec::with_capacity(items.len());
    let mut hot = 0u64;
    // Each entry by its volume and path: for the hot set here, for the service's opens later.
    let by_path: ByPath = items.iter().enumerate().map(|(n, it)| ((it.volume, it.path.as_path()), n)).collect();
    {
        let mut taken = vec![false; items.len()];
        for f in &snap.hot {
            let Some(v) = h.volumes.iter().position(|(index, _)| snap.volumes[*index].name == f.volume) else {
                continue;
            };
            let p = Path::new(f.path.trim_start_matches('/'));
            if let Some(&n) = by_path.get(&(v, p))
                && !taken[n]
                && items[n].kind == NodeKind::File
            {
                taken[n] = true;
                order.push(n);
                hot += 1;
            }
        }
        order.extend((0..items.len()).filter(|n| !taken[*n]));
    }
    state.hot_files = hot;
    state.phase = Phase::Hydrating;
    state.save(dir)?;

    // Read-ahead: the packs holding the files about to be copied, in the order the copy
    // needs them, fetched on several threads and handed to the FUSE servers (the kernel's copy
    // reads one request at a time). Each pack is read once, for every file that needs it.
    let (packs, needs) = packs_in_order(repo, &items, &order);
    let stop = AtomicBool::new(false);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let fetched: Vec<AtomicBool> = packs.iter().map(|_| AtomicBool::new(false)).collect();
    // An entry is copied once the read-ahead has its packs (or gave up on them): a copy that
    // ran ahead would fetch the same packs again, on demand, over the same link.
    let ready = |n: usize| needs[n].iter().all(|&p| fetched[p].load(Ordering::Acquire));
    let result = std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..READ_AHEAD_THREADS.min(packs.len()) {
            scope.spawn(|| read_ahead(repo, &packs, &served.watches, &next, &fetched, &stop));
        }
        let r = copy_in_order(served, &items, &by_path, &order, &ready, state, dir);
        stop.store(true, Ordering::Relaxed);
        r
    });
    for w in &served.watches {
        w.drop_prefetched();
    }
    result?;
    let mut groups: std::collections::BTreeMap<(usize, u64), LinkGroup> = std::collections::BTreeMap::new();
    for it in items.iter() {
        if let Some(inode) = it.linked {
            groups
                .entry((it.volume, inode))
                .or_insert_with(|| LinkGroup {
                    volume: it.volume,
                    paths: Vec::new(),
                    size: it.size,
                    mtime_ns: it.mtime_ns,
                })
                .paths
                .push(it.path.clone());
        }
    }
    Ok(groups.into_values().filter(|g| g.paths.len() > 1).collect())
}

/// One pack the read-ahead fetches: its blobs the copy needs (each once, with the volume whose
/// server gets it).
struct PackWork {
    pack: [u8; 32],
    blobs: Vec<(BlobId, crate::repo::Location, usize)>,
}

/// The packs holding the items' content, in the order the copy first needs them, and for
/// each item the packs it needs.
fn packs_in_order(repo: &Repository, items: &[Item], order: &[usize]) -> (Vec<PackWork>, Vec<Vec<usize>>) {
    let mut at: std::collections::HashMap<[u8; 32], usize> = std::collections::HashMap::new();
    let mut seen: std::collections::HashSet<BlobId> = std::collections::HashSet::new();
    let mut packs: Vec<PackWork> = Vec::new();
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); items.len()];
    for &n in order {
        let it = &items[n];
        for id in &it.content {
            // A blob not in a written pack yet cannot be here (the snapshot is saved); the
            // FUSE server fetches whatever is missed.
            let Some(loc) = repo.locate(id) else { continue };
            let i = *at.entry(loc.pack).or_insert_with(|| {
                packs.push(PackWork { pack: loc.pack, blobs: Vec::new() });
                packs.len() - 1
            });
            if !needs[n].contains(&i) {
                needs[n].push(i);
            }
            if seen.insert(*id) {
                packs[i].blobs.push((*id, loc, it.volume));
            }
        }
    }
    for p in &mut packs {
        p.blobs.sort_by_key(|(_, loc, _)| loc.offset);
    }
    (packs, needs)
}

/// Fetches packs in order while what was fetched and not yet used stays under
/// [`READ_AHEAD_BYTES`]. A failure is left to the copy, which meets it again and reports it.
fn read_ahead(
    repo: &Repository,
    packs: &[PackWork],
    watches: &[Arc<Watch>],
    next: &std::sync::atomic::AtomicUsize,
    fetched: &[AtomicBool],
    stop: &AtomicBool,
) {
    let mut buf = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) || crate::sys::interrupted() {
            return;
        }
        let pending: u64 = watches.iter().map(|w| w.prefetched_bytes()).sum();
        if pending > READ_AHEAD_BYTES {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(p) = packs.get(i) else { return };
        let _ = repo.read_pack_blobs(
            &p.pack,
            &p.blobs,
            |(id, loc, _)| (id, loc),
            &mut buf,
            |(id, _, volume), plain| -> crate::repo::Result<()> {
                if let Ok(data) = plain {
                    watches[*volume].prefetched(*id, data);
                }
                Ok(())
            },
        );
        fetched[i].store(true, Ordering::Release);
    }
}

/// Every entry of the volumes to fill, in tree order (parents first).
fn plan(repo: &Repository, snap: &Snapshot, h: &Handover) -> anyhow::Result<Vec<Item>> {
    let mut items: Vec<Item> = Vec::new();
    for (i, (index, _)) in h.volumes.iter().enumerate() {
        let view = View::volume(repo, snap, *index, TreeCache::default()).context("no such volume")?;
        let mut whiteout = None;
        view.walk(&view.root(), &mut |e: &Entry| -> crate::repo::Result<bool> {
            if e.node.kind == NodeKind::Char && e.node.rdev == 0 && whiteout.is_none() {
                whiteout = Some(e.path.clone());
            }
            if e.path != Path::new("/") {
                items.push(Item {
                    volume: i,
                    path: e.path.strip_prefix("/").unwrap_or(&e.path).to_path_buf(),
                    kind: e.node.kind,
                    size: if e.node.kind == NodeKind::File { e.node.size } else { 0 },
                    content: if e.node.kind == NodeKind::File { e.node.content.clone() } else { Vec::new() },
                    linked: (e.node.kind == NodeKind::File && e.node.links > 1).then_some(e.node.inode),
                    mtime_ns: e.node.mtime_ns,
                });
            }
            Ok(true)
        })?;
        // An overlay would take such a device for a deleted file and hide it.
        if let Some(p) = whiteout {
            return Err(Unsupported(format!(
                "volume {} holds an overlay whiteout ({}): restore it without --instant",
                snap.volumes[*index].name,
                p.display()
            ))
            .into());
        }
    }
    Ok(items)
}

/// What an instant restore cannot do (not worth retrying).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unsupported(String);

/// Waits `wait`, or less if the hydrator is stopped (an error) or `failed` is set.
fn pause(wait: Duration, failed: Option<&AtomicBool>) -> anyhow::Result<()> {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if crate::sys::interrupted() {
            bail!("interrupted");
        }
        if failed.is_some_and(|f| f.load(Ordering::Relaxed)) {
            bail!("another copier failed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Threads copying at once: each copy ends with the overlay syncing the file, so several
/// keep the disk and the FUSE servers busy.
const COPIERS: usize = 4;

/// Which entries are taken and copied, shared by the copiers.
struct Queue<'a> {
    order: &'a [usize],
    /// The next place in `order` that may not be taken yet.
    pos: usize,
    taken: Vec<bool>,
    /// Entries the service opened, first.
    wanted: std::collections::VecDeque<usize>,
}

/// Entries by (volume, path).
type ByPath<'a> = std::collections::HashMap<(usize, &'a Path), usize>;

/// The copy itself, on [`COPIERS`] threads: what the service opened first, then `order`.
fn copy_in_order(
    served: &Served,
    items: &[Item],
    index: &ByPath<'_>,
    order: &[usize],
    ready: &(dyn Fn(usize) -> bool + Sync),
    state: &mut Hydration,
    dir: &Path,
) -> anyhow::Result<()> {
    let queue =
        std::sync::Mutex::new(Queue { order, pos: 0, taken: vec![false; items.len()], wanted: Default::default() });
    let shared = std::sync::Mutex::new(std::mem::replace(state, state.clone()));
    let failed = AtomicBool::new(false);
    let last_report = std::sync::Mutex::new(Instant::now());
    // The next entry to copy, if any is left, and whether the service asked for it.
    let next = || -> Option<(usize, bool)> {
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        for (v, w) in served.watches.iter().enumerate() {
            for p in w.wanted.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                let p = p.strip_prefix("/").unwrap_or(&p).to_path_buf();
                if let Some(&n) = index.get(&(v, p.as_path()))
                    && !q.taken[n]
                {
                    q.wanted.push_back(n);
                }
            }
        }
        while let Some(n) = q.wanted.pop_front() {
            if !q.taken[n] {
                q.taken[n] = true;
                return Some((n, true));
            }
        }
        while q.pos < q.order.len() && q.taken[q.order[q.pos]] {
            q.pos += 1;
        }
        let n = *q.order.get(q.pos)?;
        q.taken[n] = true;
        Some((n, false))
    };
    let fetched = || served.fetched();
    let work = || -> anyhow::Result<()> {
        let me = thread_id();
        for w in &served.watches {
            w.own_threads.lock().unwrap_or_else(|e| e.into_inner()).insert(me);
        }
        while !failed.load(Ordering::Relaxed) {
            if crate::sys::interrupted() {
                bail!("interrupted");
            }
            let Some((n, asked)) = next() else { return Ok(()) };
            // What the service waits for goes at once; the rest waits for the read-ahead (a
            // while at most: it may be held back by data fetched for later files).
            let until = Instant::now() + READ_AHEAD_WAIT;
            while !asked && !ready(n) && Instant::now() < until && !failed.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
            }
            copy_up_retrying(served, &items[n], &shared, dir, &failed)?;
            // What the copy did not take (the service removed the file, or the kernel had
            // the data already) is not kept waiting.
            served.watches[items[n].volume].forget_prefetched(&items[n].content);
            let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
            if items[n].kind == NodeKind::File {
                st.done_files += 1;
                st.done_bytes += items[n].size;
            }
            let mut last = last_report.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= REPORT_EVERY {
                st.fetched_bytes = fetched();
                st.save(dir)?;
                *last = Instant::now();
            }
        }
        Ok(())
    };
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..COPIERS)
            .map(|_| {
                scope.spawn(|| {
                    let r = work();
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a copier panicked")))).collect()
    });
    *state = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    state.fetched_bytes = fetched();
    if let Some(e) = results.into_iter().find_map(Result::err) {
        let _ = state.save(dir);
        return Err(e);
    }
    state.error = None;
    state.save(dir)?;
    Ok(())
}

/// Copies one entry up; a repository that does not answer is waited for (the hydration
/// stalls, reported), anything else fails it after [`TRIES`]. Gives up when another copier
/// failed.
fn copy_up_retrying(
    served: &Served,
    it: &Item,
    state: &std::sync::Mutex<Hydration>,
    dir: &Path,
    failed: &AtomicBool,
) -> anyhow::Result<()> {
    let mut tries = 0u32;
    let mut wait = Duration::from_millis(200);
    loop {
        match copy_up(&served.dirs[it.volume].merged, it) {
            Ok(()) => {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                if st.error.take().is_some() {
                    tracing::info!("the repository answers again; hydration goes on");
                    st.save(dir)?;
                }
                return Ok(());
            }
            Err(e) => {
                let transient =
                    matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ETIMEDOUT) | Some(libc::EAGAIN));
                tries += 1;
                let what = format!("cannot copy {} in: {e}", it.path.display());
                tracing::error!(path = %it.path.display(), error = %e, "hydration: cannot copy a file in; retrying");
                {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    st.error =
                        Some(if transient { format!("{what} (is the repository reachable?)") } else { what.clone() });
                    st.fetched_bytes = served.fetched();
                    st.save(dir)?;
                }
                if !transient && tries >= TRIES {
                    bail!(what);
                }
                pause(wait, Some(failed))?;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// The magic number of FUSE (`statfs`).
const FUSE_MAGIC: i64 = 0x6573_5546;

/// The magic number of overlayfs (`statfs`).
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// Copies one entry from the snapshot up into the volume's data directory through the
/// overlay, changing nothing the service relies on: the entry is opened as a path only
/// (never for reading or writing: a device node the service put there is never opened),
/// then a private extended attribute set and removed on a file copies it up whole (its
/// set-ID bits kept), and anything else gets the owner it has. An entry the service removed
/// or renamed since is its business (nothing to copy).
fn copy_up(merged: &Path, it: &Item) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let root = std::fs::File::open(merged)?;
    // The overlay, not the directory beneath it (unmounted by someone else): copying then
    // would copy nothing and lose the rest.
    let fs = rustix::fs::fstatfs(&root)?;
    if fs.f_type != OVERLAYFS_MAGIC {
        return Err(std::io::Error::other(format!("{} is no longer the overlay", merged.display())));
    }
    // Resolved inside the overlay, never through a symbolic link the service made.
    let parent = match beneath(&root, it.path.parent().unwrap_or(Path::new(""))) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV)) => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let name = it.path.file_name().unwrap_or(OsStr::new("."));
    let fd = match rustix::fs::openat(&parent, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        rustix::fs::setxattr(path.as_str(), TOUCH, b"", rustix::fs::XattrFlags::empty())?;
        return match rustix::fs::removexattr(path.as_str(), TOUCH) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    // A directory, link or special file: its owner set to the one it has (a directory's
    // set-group-ID bit stays).
    let (uid, gid) = (rustix::fs::Uid::from_raw(st.st_uid), rustix::fs::Gid::from_raw(st.st_gid));
    rustix::fs::chownat(&fd, "", Some(uid), Some(gid), AtFlags::EMPTY_PATH)?;
    Ok(())
}

/// The attribute whose setting copies a file up (removed at once).
const TOUCH: &str = "trusted.lifeboat.hydrating";

/// Every file is in: the service is stopped, the overlays and FUSE mounts go, the data
/// directories are made ordinary (whiteouts and overlay markers removed), the volumes are
/// marked whole, and the service is started again if it was running.
fn switch(
    host: &Host,
    container: &str,
    names: &[String],
    served: &Served,
    links: &[LinkGroup],
    state: &mut Hydration,
    dir: &Path,
) -> anyhow::Result<()> {
    let containers = host.containers()?;
    let vols = host.volumes()?;
    state.phase = Phase::Switching;
    state.save(dir)?;
    let started = Instant::now();
    let was = crate::runtime::observed_state(containers, container)?;
    let running = was.status.is_up();
    if running {
        crate::runtime::stop(host, container, Duration::from_secs(10))?;
    }
    // Every mount goes before any data directory is touched; one that will not (something
    // else holds the overlay) stops the switch with nothing changed: the volumes stay as
    // they are, for `restore --finish`.
    for d in &served.dirs {
        for at in [&d.merged, &d.lower] {
            nix::mount::umount(at)
                .with_context(|| format!("cannot unmount {}: something still uses it", at.display()))?;
        }
    }
    for dev in &served.fuse_devs {
        abort_fuse(*dev);
    }
    for (i, n) in names.iter().enumerate() {
        make_ordinary(vols, n, links.iter().filter(|g| g.volume == i))?;
    }
    if running {
        crate::runtime::start(host, container)?;
    }
    let ms = started.elapsed().as_millis() as u64;
    tracing::info!(container, switch_ms = ms, running, "hydration done: the service runs on its plain volumes");
    state.phase = Phase::Done;
    state.switch_ms = Some(ms);
    state.finished = Some(crate::sys::now_rfc3339());
    state.error = None;
    state.save(dir)?;
    Ok(())
}

/// Makes volume `name` (unmounted, every file in) an ordinary volume: marked as being made
/// so first (never to be mounted under an overlay again), the overlay's markers cleared, its
/// hard links made again, its instant-restore record removed.
fn make_ordinary<'a>(
    vols: &crate::runtime::volume::Volumes,
    name: &str,
    links: impl Iterator<Item = &'a LinkGroup>,
) -> anyhow::Result<()> {
    vols.begin_cleaning(name)?;
    let data = vols.data_dir(name);
    clean_upper(&data).with_context(|| format!("cannot make volume {name} ordinary"))?;
    for g in links {
        relink(&data, g);
    }
    vols.end_hydration(name)?;
    Ok(())
}

/// Makes the paths of `g` one file again, as in the snapshot, if none of them changed since
/// (each a single-link regular file of the snapshot's size and mtime): the first stays, the
/// others become links to it. A changed one is left as the service made it.
fn relink(data: &Path, g: &LinkGroup) {
    use rustix::fs::{AtFlags, FileType};
    let Ok(root) = std::fs::File::open(data) else { return };
    // Every path resolved inside the volume, never through a link the service made.
    let place = |p: &Path| -> Option<(std::os::fd::OwnedFd, std::ffi::OsString)> {
        Some((beneath(&root, p.parent()?).ok()?, p.file_name()?.to_os_string()))
    };
    let unchanged = |(dir, name): &(std::os::fd::OwnedFd, std::ffi::OsString)| {
        rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && st.st_nlink == 1
                && st.st_size as u64 == g.size
                && st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128 == g.mtime_ns as i128
        })
    };
    let Some(places) = g.paths.iter().map(|p| place(p)).collect::<Option<Vec<_>>>() else { return };
    if !places.iter().all(unchanged) {
        tracing::info!(paths = ?g.paths, "hard links not made again: the service changed one of the files");
        return;
    }
    let (first_dir, first_name) = &places[0];
    for (p, (dir, name)) in g.paths.iter().zip(&places).skip(1) {
        let tmp = format!(".lifeboat-link-{}", crate::fsutil::random_hex(6));
        let made = rustix::fs::linkat(first_dir, first_name.as_os_str(), dir, tmp.as_str(), AtFlags::empty())
            .and_then(|()| rustix::fs::renameat(dir, tmp.as_str(), dir, name.as_os_str()));
        if let Err(e) = made {
            let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
            tracing::warn!(path = %p.display(), error = %e, "cannot make a hard link again");
        }
    }
}

/// Directory `rel` of `root` (empty: `root` itself), opened without following any link and
/// never leaving `root`.
fn beneath(root: &std::fs::File, rel: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    Ok(rustix::fs::openat2(
        root.as_fd(),
        rel,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Makes an overlay's upper directory an ordinary one: whiteouts (what the service deleted)
/// removed, overlay xattrs (opaque directories, origins) dropped. Never follows a link.
fn clean_upper(upper: &Path) -> std::io::Result<()> {
    let top = std::fs::File::open(upper)?;
    clean_dir(top.as_fd(), upper, 0)
}

fn clean_dir(dir: std::os::fd::BorrowedFd<'_>, at: &Path, depth: usize) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    if depth > super::view::MAX_DEPTH {
        return Err(std::io::Error::other(format!("{}: nested too deep", at.display())));
    }
    drop_overlay_xattrs(dir, None)?;
    for name in crate::fsutil::scope::list_dir(dir)? {
        let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::CharacterDevice && st.st_rdev == 0 {
            rustix::fs::unlinkat(dir, &name, AtFlags::empty())?;
            continue;
        }
        if kind == FileType::Directory {
            let sub = rustix::fs::openat(
                dir,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            clean_dir(sub.as_fd(), &at.join(&name), depth + 1)?;
        } else if kind != FileType::Symlink {
            drop_overlay_xattrs(dir, Some(&name))?;
        }
    }
    Ok(())
}

/// Removes `trusted.overlay.*` from `name` in `dir` (or `dir` itself); never a link's.
fn drop_overlay_xattrs(dir: std::os::fd::BorrowedFd<'_>, name: Option<&OsStr>) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let owned;
    let fd = match name {
        Some(n) => {
            owned = rustix::fs::openat(dir, n, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
            owned.as_fd()
        }
        None => dir,
    };
    // O_PATH descriptors take xattr calls through their /proc/self/fd link.
    let path = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)));
    let len = rustix::fs::listxattr_query(&path)?;
    if len == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; len];
    let n = rustix::fs::listxattr(&path, &mut buf[..])?;
    for attr in buf[..n].split(|&b| b == 0).filter(|a| a.starts_with(b"trusted.overlay.")) {
        match rustix::fs::removexattr(&path, OsStr::from_bytes(attr)) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A failed restore's hydrator, with its volumes: stopped, unmounted.
pub fn abandon(host: &Host, hydrator: Hydrator, volumes: &Planned) {
    hydrator.abandon();
    if let Ok(vols) = host.volumes() {
        for (_, n) in volumes {
            vols.unmount_instant(n);
        }
    }
}

/// The error for a container with no hydration to finish.
pub fn nothing_to_finish(name: &str) -> anyhow::Error {
    ContainerError::Conflict(format!("{name} has no instant restore to finish or undo")).into()
}

/// What `restore --finish` did.
#[derive(Debug, Serialize, Deserialize)]
pub struct Finished {
    pub name: String,
    pub snapshot: String,
    /// Where the copy stood when it was taken up again.
    pub percent: u64,
}

/// Takes up an instant restore whose hydrator died (`restore NAME --finish`): volumes whose
/// switch to plain volumes had begun are finished; the others are mounted again by a new
/// hydrator over the data already copied (the container stopped first: its volumes were
/// served by the dead one), and the container is started on them.
pub fn finish(host: &Host, repo: &Repository, name: &str) -> anyhow::Result<Finished> {
    let containers = host.containers()?;
    let config = containers.named(name)?;
    let dir = containers.dir(&config.id);
    let Some(h) = Hydration::load(&dir).filter(|h| h.phase != Phase::Done) else { return Err(nothing_to_finish(name)) };
    if h.hydrator.alive() {
        bail!(ContainerError::Conflict(format!(
            "the instant restore of {name} is going on (hydrator {}); lifeboat ps shows its progress",
            h.hydrator.pid
        )));
    }
    if repo.location() != h.repository {
        bail!(crate::error::UsageError(format!(
            "{name} was restored from {}; finish it from there (--repo {})",
            h.repository, h.repository
        )));
    }
    let (id, snap) = crate::repo::snapshot::find(repo, None, &h.snapshot)?;
    if h.volumes.len() != snap.volumes.len() {
        bail!("the snapshot has {} volumes, the restore recorded {}", snap.volumes.len(), h.volumes.len());
    }
    let state = crate::runtime::observed_state(containers, &config.id)?;
    if state.status.is_up() {
        crate::runtime::stop(host, &config.id, Duration::from_secs(10))?;
    }
    // Which volumes still need their files: not those already ordinary, and those whose
    // switch had begun are finished here.
    let vols = host.volumes()?;
    let mut planned: Planned = Vec::new();
    for (i, v) in h.volumes.iter().enumerate() {
        let Some(hyd) = vols.get(v)?.hydrating.filter(|x| x.container == config.id) else { continue };
        vols.unmount_instant(v);
        if hyd.cleaning {
            make_ordinary(vols, v, std::iter::empty())?;
        } else {
            planned.push((i, v.clone()));
        }
    }
    if planned.is_empty() {
        crate::runtime::start(host, &config.id)?;
        let mut done = h.clone();
        done.phase = Phase::Done;
        done.error = None;
        done.finished = Some(crate::sys::now_rfc3339());
        done.save(&dir)?;
        return Ok(Finished { name: name.to_string(), snapshot: id, percent: 100 });
    }
    let mut hydrator = spawn(host, repo, &id, &config.id, &planned)?;
    if let Err(e) = hydrator.ready() {
        abandon(host, hydrator, &planned);
        return Err(e);
    }
    let started = crate::runtime::start(host, &config.id).map(drop);
    hydrator.go();
    started?;
    Ok(Finished { name: name.to_string(), snapshot: id, percent: h.percent() })
}

/// Undoes an instant restore that did not finish (`restore NAME --undo`): its hydrator is
/// stopped, the container removed, and each volume still being filled removed (emptied, if
/// it was there before the restore). A volume already made whole is kept. Returns the
/// volumes removed.
pub fn undo(host: &Host, name: &str) -> anyhow::Result<Vec<String>> {
    let containers = host.containers()?;
    let config = containers.named(name)?;
    let dir = containers.dir(&config.id);
    let Some(h) = Hydration::load(&dir).filter(|h| h.phase != Phase::Done) else { return Err(nothing_to_finish(name)) };
    crate::runtime::hydration::stop_hydrator(&dir);
    crate::runtime::remove(host, &config.id, true)?;
    let vols = host.volumes()?;
    let mut removed = Vec::new();
    for v in &h.volumes {
        let Ok(meta) = vols.get(v) else { continue };
        if meta.hydrating.as_ref().is_none_or(|x| x.container != config.id) {
            tracing::info!(volume = v.as_str(), "kept: it was made whole before the undo");
            continue;
        }
        if meta.existed {
            vols.discard_restore(v)?;
        } else {
            vols.remove(v)?;
        }
        removed.push(v.clone());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn whiteout(at: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            at,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mknod (run as root)");
    }

    fn has_xattr(p: &Path, name: &str) -> bool {
        let mut buf = [0u8; 64];
        rustix::fs::lgetxattr(p, name, &mut buf[..]).is_ok()
    }

    /// Whiteouts and overlay markers go, everything else stays, and nothing outside (behind a
    /// link the service made) is touched.
    #[test]
    fn an_upper_directory_is_made_ordinary_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(upper.join("dir/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(upper.join("dir/kept.txt"), "kept").unwrap();
        whiteout(&upper.join("deleted"));
        whiteout(&upper.join("dir/sub/deleted-too"));
        whiteout(&outside.join("not-ours"));
        std::os::unix::fs::symlink(&outside, upper.join("link")).unwrap();
        let set = |p: &str, name: &str, value: &[u8]| {
            rustix::fs::setxattr(upper.join(p), name, value, rustix::fs::XattrFlags::empty())
        };
        let xattrs = set("dir", "trusted.overlay.opaque", b"y")
            .and_then(|()| set("dir/kept.txt", "trusted.overlay.origin", b"x"))
            .and_then(|()| set("dir/kept.txt", "trusted.keep", b"k"))
            .is_ok();

        clean_upper(&upper).unwrap();
        assert!(!upper.join("deleted").exists() && std::fs::symlink_metadata(upper.join("deleted")).is_err());
        assert!(std::fs::symlink_metadata(upper.join("dir/sub/deleted-too")).is_err());
        assert_eq!(std::fs::read_to_string(upper.join("dir/kept.txt")).unwrap(), "kept");
        assert!(std::fs::symlink_metadata(outside.join("not-ours")).is_ok(), "a link was followed");
        assert!(std::fs::symlink_metadata(upper.join("link")).unwrap().file_type().is_symlink());
        if xattrs {
            assert!(!has_xattr(&upper.join("dir"), "trusted.overlay.opaque"));
            assert!(!has_xattr(&upper.join("dir/kept.txt"), "trusted.overlay.origin"));
            assert!(has_xattr(&upper.join("dir/kept.txt"), "trusted.keep"), "another attribute was dropped");
        }
    }

    fn group(data: &Path, paths: &[&str]) -> LinkGroup {
        let m = std::fs::metadata(data.join(paths[0])).unwrap();
        LinkGroup {
            volume: 0,
            paths: paths.iter().map(PathBuf::from).collect(),
            size: m.len(),
            mtime_ns: m.mtime() as i64 * 1_000_000_000 + m.mtime_nsec(),
        }
    }

    /// Gives `to` the modification time of `from`.
    fn same_mtime(from: &Path, to: &Path) {
        let m = std::fs::metadata(from).unwrap();
        let at = rustix::fs::Timespec { tv_sec: m.mtime(), tv_nsec: m.mtime_nsec() };
        let t = rustix::fs::Timestamps { last_access: at, last_modification: at };
        rustix::fs::utimensat(rustix::fs::CWD, to, &t, rustix::fs::AtFlags::empty()).unwrap();
    }

    /// Copies of one snapshot file become one file again, unless the service changed one, and
    /// never through a directory the service replaced with a link.
    #[test]
    fn hard_links_are_made_again_only_where_nothing_changed() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(data.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        for p in ["a/one", "two", "three", "four"] {
            std::fs::write(data.join(p), "same").unwrap();
        }
        same_mtime(&data.join("a/one"), &data.join("two"));
        relink(&data, &group(&data, &["a/one", "two"]));
        assert_eq!(
            std::fs::metadata(data.join("a/one")).unwrap().ino(),
            std::fs::metadata(data.join("two")).unwrap().ino()
        );

        // Changed since (another size): left alone.
        let g = group(&data, &["three", "four"]);
        std::fs::write(data.join("four"), "changed!").unwrap();
        relink(&data, &g);
        assert_ne!(
            std::fs::metadata(data.join("three")).unwrap().ino(),
            std::fs::metadata(data.join("four")).unwrap().ino()
        );

        // A directory on the way is now a link out: nothing is made there.
        std::fs::write(outside.join("victim"), "same").unwrap();
        // Unchanged by every other measure: only refusing the link keeps it out.
        same_mtime(&data.join("three"), &outside.join("victim"));
        std::fs::remove_dir_all(data.join("a")).unwrap();
        std::os::unix::fs::symlink(&outside, data.join("a")).unwrap();
        let mut g = group(&data, &["three"]);
        g.paths = vec![PathBuf::from("three"), PathBuf::from("a/victim")];
        relink(&data, &g);
        assert_eq!(std::fs::metadata(outside.join("victim")).unwrap().nlink(), 1, "a link was made outside");
    }

    /// The hot set names the files read since the drill began, never what a link leads to.
    #[test]
    fn the_hot_set_is_what_was_read_and_stays_in_the_volume() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(data.join("www")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let old = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 1_000_000, tv_nsec: 0 },
            last_modification: rustix::fs::Timespec { tv_sec: 1_000_000, tv_nsec: 0 },
        };
        for p in [data.join("www/index.html"), data.join("www/unread.html"), outside.join("secret")] {
            std::fs::write(&p, "x").unwrap();
            rustix::fs::utimensat(rustix::fs::CWD, &p, &old, rustix::fs::AtFlags::empty()).unwrap();
        }
        std::os::unix::fs::symlink(&outside, data.join("www/out")).unwrap();
        let since = std::time::SystemTime::now() - Duration::from_secs(1);
        std::fs::read(data.join("www/index.html")).unwrap();
        std::fs::read(outside.join("secret")).unwrap();
        let since_ns = since.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128;
        let top = std::fs::File::open(&data).unwrap();
        let dev = rustix::fs::fstat(&top).unwrap().st_dev;
        let mut hot = Vec::new();
        hot_walk(top.into(), dev, Path::new("/"), 0, "content", since_ns, &mut hot);
        let paths: Vec<String> = hot.into_iter().map(|(_, f)| f.path).collect();
        assert_eq!(paths, ["/www/index.html"]);
    }

    #[test]
    fn progress_and_its_note() {
        let mut h = Hydration {
            hydrator: Owner::this_process(),
            snapshot: "s".into(),
            repository: "r".into(),
            volumes: vec!["v".into()],
            phase: Phase::Hydrating,
            started: String::new(),
            total_files: 4,
            total_bytes: 400,
            done_files: 1,
            done_bytes: 150,
            fetched_bytes: 0,
            hot_files: 0,
            error: None,
            switch_ms: None,
            finished: None,
            updated: None,
        };
        assert_eq!(h.percent(), 37);
        assert_eq!(h.status_note().as_deref(), Some("hydrating 37%"));
        h.error = Some("cannot copy x in".into());
        assert_eq!(h.status_note().as_deref(), Some("hydration stalled at 37%: cannot copy x in"));
        h.hydrator = Owner { pid: i32::MAX, start: Some(1) };
        assert!(h.status_note().unwrap().contains("interrupted"));
        h.phase = Phase::Done;
        assert_eq!(h.status_note(), None);
        h.phase = Phase::Failed;
        assert!(h.status_note().unwrap().starts_with("hydration failed"));
        h.total_bytes = 0;
        assert_eq!(h.percent(), 25);
    }
}
