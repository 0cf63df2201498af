//! The built-in runtime: containers from images, each supervised by its own shim process.
//!
//! `create` records how a container is to run; `start` launches its shim and waits until the
//! container is running (or failed); the shim does the rest. Every other verb reads the
//! records the shim keeps and signals the container's processes directly. This module never
//! forks containers itself: only the freshly exec'd shim does (see `shim`).

pub mod cgroup;
pub mod cgroupfs;
pub mod commit;
pub mod container;
pub mod copy;
pub mod host;
pub mod hydration;
pub mod kernel;
pub mod logs;
pub mod mountinfo;
pub mod names;
pub mod network;
mod prepare;
pub mod reexec;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod tty;
pub mod volume;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use container::{ContainerError, Containers, RunConfig, State, Status};
pub use host::Host;
use kernel::Kernel;

use crate::image::Store;

/// Where a runtime keeps its data: persistent (`root`) and live state (`run_root`).
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub run_root: PathBuf,
}

pub use crate::sys::alive;

/// Written by a shim when its container's process has ended, before it drains the output
/// and writes the exit down.
pub(crate) const ENDING_MARKER: &str = "ending";

/// How long a shim may take from its container's end to writing it down (draining the
/// output takes two seconds at most) before the container is taken for one whose shim hung.
const ENDING_GRACE: Duration = Duration::from_secs(30);

/// The state as it really is: a "running" record whose process is gone means the shim died
/// before it could write the exit, unless the shim still lives and is within its grace
/// (it writes the exit down once the container's output has drained): then the record stands.
pub fn observed_state(containers: &Containers, id: &str) -> Result<State, ContainerError> {
    let mut state = containers.state(id)?;
    let shim_finishing = || {
        let ending = fs::metadata(containers.dir(id).join(ENDING_MARKER)).and_then(|m| m.modified());
        let within_grace = match ending {
            Ok(t) => t.elapsed().is_ok_and(|age| age < ENDING_GRACE),
            Err(_) => true, // the marker is written the moment the process is reaped
        };
        within_grace && state.shim_pid.is_some_and(|shim| reexec::is_shim_of(shim, id))
    };
    if matches!(state.status, Status::Running | Status::Paused) && !state.pid.is_some_and(alive) && !shim_finishing() {
        state.status = Status::Exited;
        state.pid = None;
        state.error.get_or_insert_with(|| "the container's supervisor (shim) died; exit status unknown".into());
        state.exit_code.get_or_insert(255);
    }
    if state.status == Status::Restarting && !state.shim_pid.is_some_and(alive) {
        state.status = Status::Exited;
        state.error.get_or_insert_with(|| "the container's supervisor (shim) died while restarting it".into());
    }
    Ok(state)
}

/// Whether the shim supervising a running container is gone (the container runs unsupervised).
pub fn shim_lost(state: &State) -> bool {
    state.status == Status::Running && !state.shim_pid.is_some_and(alive)
}

/// The health check's verdict, written by the shim to `health.json`.
/// In Docker's field names (`inspect` shows it as `State.Health`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// starting, healthy or unhealthy.
    #[serde(alias = "status")]
    pub status: String,
    #[serde(alias = "failing_streak")]
    pub failing_streak: u32,
    #[serde(alias = "last_check")]
    pub last_check: Option<String>,
    /// The last five checks, newest last, with what they printed (Docker's `Health.Log`).
    #[serde(default)]
    pub log: Vec<HealthResult>,
}

/// One health check, as Docker's `State.Health.Log` keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    /// The command's exit code; -1 when it could not run or was killed at its timeout.
    pub exit_code: i32,
    /// Its first 4096 bytes of output (standard output, then error), or why it failed.
    pub output: String,
}

/// How many results `Health.log` keeps.
const HEALTH_LOG: usize = 5;

impl Health {
    pub fn starting() -> Health {
        Health { status: "starting".into(), failing_streak: 0, last_check: None, log: Vec::new() }
    }

    /// Records a check. A failure counts toward `retries` only after the start period (a
    /// success counts at once), as Docker counts them.
    pub fn record(&mut self, result: HealthResult, retries: u32, in_start_period: bool) {
        self.last_check = Some(result.end.clone());
        if result.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if !in_start_period || self.status != "starting" {
            self.failing_streak += 1;
            if self.failing_streak >= retries.max(1) {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(result);
        if self.log.len() > HEALTH_LOG {
            self.log.remove(0);
        }
    }

    pub fn save(&self, dir: &std::path::Path) -> std::io::Result<()> {
        crate::fsutil::write_atomic_volatile(&dir.join("health.json"), &serde_json::to_vec(self).expect("serialises"))
    }

    pub fn load(dir: &std::path::Path) -> Option<Health> {
        serde_json::from_slice(&fs::read(dir.join("health.json")).ok()?).ok()
    }
}

/// A container `start` left running, as its starter sees it.
pub struct Started {
    /// The shim's pipe, past its "ok": it reports "exit N" when the container ends, then
    /// closes when the shim is done (an auto-removed container is gone by then).
    sync: BufReader<fs::File>,
    /// The container's log, opened before the shim started: an attached caller reads all of
    /// it even if the container ended and was removed before the caller looked.
    log: fs::File,
}

/// Launches the shim for a created (or exited) container and waits until it runs.
pub fn start(host: &Host, id: &str) -> Result<Started, ContainerError> {
    start_with(host, id, &StartIo::default())
}

/// How an attached start connects the caller to the container.
#[derive(Default)]
pub struct StartIo {
    /// The console socket the caller listens on (`run -it`): the container's terminal goes there.
    pub console_socket: Option<PathBuf>,
    /// Hand this process's standard input to the container (`run -i` without `-t`).
    pub stdin: bool,
}

/// `start`, with the caller's terminal or standard input attached.
pub fn start_with(host: &Host, id: &str, io: &StartIo) -> Result<Started, ContainerError> {
    warm_cgroup_lock();
    let containers = host.containers()?;
    let state = observed_state(containers, id)?;
    if state.status.is_up() {
        return Err(ContainerError::Conflict(format!("container {} is already running", &id[..12])));
    }
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ContainerError::Runtime(e.to_string()))?;
    // Our word to the shim on whether we prepared the container while it started.
    let (prepared_read, prepared_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ContainerError::Runtime(e.to_string()))?;
    // The write end of the first pipe and the read end of the second go to the shim: clear
    // close-on-exec on them only.
    for fd in [write.as_raw_fd(), prepared_read.as_raw_fd()] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
            .map_err(|e| ContainerError::Runtime(e.to_string()))?;
    }
    let dir = containers.dir(id);
    let log_path = dir.join("log.json");
    let log = fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&log_path)
        .map_err(|e| ContainerError::Io { path: log_path, source: e })?;
    let shim_log = fs::File::create(dir.join("shim.log"))
        .map_err(|e| ContainerError::Io { path: dir.join("shim.log"), source: e })?;
    let exe = std::env::current_exe()
        .map_err(|e| ContainerError::Runtime(format!("cannot find the lifeboat binary: {e}")))?;
    let child = reexec::shim_command(&exe, host.paths(), id)
        // Only what the shim needs: it lives as long as the container, and nothing the CLI was
        // given (a repository password, S3 keys) belongs in its environment.
        .env_clear()
        .envs(shim::inherited_environment())
        .env(shim::SYNC_FD_ENV, write.as_raw_fd().to_string())
        .env(shim::PREPARED_FD_ENV, prepared_read.as_raw_fd().to_string())
        // One malloc arena: the shim's few threads move little data, and every arena costs memory
        // in each of the (possibly many) shims.
        .env("MALLOC_ARENA_MAX", "1")
        .envs(io.console_socket.iter().map(|p| (shim::CONSOLE_ENV, p.as_os_str())))
        .envs(io.stdin.then_some((shim::STDIN_ENV, "1")))
        .stdin(if io.stdin { Stdio::inherit() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(shim_log)
        .spawn()
        .map_err(|e| ContainerError::Runtime(format!("cannot start the shim: {e}")))?;
    drop(write);
    drop(prepared_read);
    drop(child); // the shim detaches (setsid) and outlives us
    // The root filesystem and bundle, made here while the shim process starts; the shim
    // reports a failure as its own.
    let report = match containers.config(id).map_err(anyhow::Error::from).and_then(|c| prepare::prepare(host, &c)) {
        Ok(_) => "ok\n".to_string(),
        // One line: the shim reads one.
        Err(e) => format!("error {}\n", format!("{e:#}").replace('\n', " ")),
    };
    let _ = fs::File::from(prepared_write).write_all(report.as_bytes());
    started(BufReader::new(fs::File::from(read)), log, &dir)
}

/// Reads the shim's first word on `sync`: "ok", or why the container did not start.
fn started(mut sync: BufReader<fs::File>, log: fs::File, dir: &Path) -> Result<Started, ContainerError> {
    let mut line = String::new();
    sync.read_line(&mut line).map_err(|e| ContainerError::Runtime(format!("shim: {e}")))?;
    match line.trim_end() {
        // The reader may hold what came after "ok" (a short-lived container's exit): it goes on.
        "ok" => Ok(Started { sync, log }),
        l if l.starts_with("error ") => Err(ContainerError::Runtime(l["error ".len()..].to_string())),
        _ => {
            let log = fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            Err(ContainerError::Runtime(format!("the shim exited before the container started: {}", log.trim())))
        }
    }
}

/// Moving a process into a cgroup takes a kernel-wide lock whose first taker after a quiet
/// spell waits for a full RCU grace period (8-20 ms on this project's test machines); the lock
/// stays cheap for a few tens of milliseconds after each taker. The container's first process
/// is moved into its cgroups a few tens of milliseconds after a start begins, so a thread of
/// this process takes the lock first, by "moving" itself into the cgroup it is already in (a
/// no-op), a few times, and the wait overlaps starting the shim instead of delaying the
/// container. Failures change nothing but speed. Only for processes that never fork while the
/// thread runs (the shim, which forks the container, does not do this; the CLI spawns it).
fn warm_cgroup_lock() {
    fn own_cgroup_file() -> Option<(PathBuf, String)> {
        let table = fs::read_to_string("/proc/self/cgroup").ok()?;
        let tid = rustix::thread::gettid().as_raw_nonzero().to_string();
        for line in table.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let path = path.trim_start_matches('/');
            if controllers.split(',').any(|c| c == "pids") {
                return Some((Path::new("/sys/fs/cgroup/pids").join(path).join("tasks"), tid));
            }
        }
        // cgroup v2 only: the whole process, into the cgroup it is in.
        let path = table.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/');
        let pid = std::process::id().to_string();
        ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(|root| Path::new(root).join(path).join("cgroup.procs"))
            .find(|p| p.exists())
            .map(|p| (p, pid))
    }
    let _ = std::thread::Builder::new().name("cgroup-warm".into()).stack_size(64 * 1024).spawn(|| {
        let Some((file, who)) = own_cgroup_file() else { return };
        for _ in 0..4 {
            if fs::write(&file, &who).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

/// Follows an attached container (started with `start`, `sync` its pipe) until it exits,
/// handing every output line to `on_output`; returns its exit code (None if unknown).
pub fn wait_attached(
    host: &Host,
    config: &RunConfig,
    started: Started,
    on_output: &mut dyn FnMut(&logs::LogLine),
) -> Result<Option<i32>, ContainerError> {
    let containers = host.containers()?;
    let Started { sync: mut reader, log: log_file } = started;
    // The log through our descriptor: an auto-removed container's files go when it ends.
    let log = PathBuf::from(format!("/proc/self/fd/{}", log_file.as_raw_fd()));
    // The shim says "exit N" when the container ends; the pipe closes when the shim is gone
    // (after removing an auto-removed container).
    let (tx, rx) = std::sync::mpsc::channel();
    let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut told = false;
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(code) = line.trim().strip_prefix("exit ").and_then(|c| c.parse::<i32>().ok())
                && !told
            {
                let _ = tx.send(code);
                told = true;
            }
            line.clear();
        }
        if !told {
            let _ = tx.send(-1);
        }
        let _ = closed_tx.send(());
    });
    let read =
        |offset: u64| -> (Vec<logs::LogLine>, u64) { logs::read_from(&log, offset).unwrap_or((Vec::new(), offset)) };
    let mut offset = 0;
    loop {
        let (lines, next) = read(offset);
        offset = next;
        lines.iter().for_each(&mut *on_output);
        match rx.recv_timeout(Duration::from_millis(25)) {
            Ok(code) => {
                let (lines, _) = read(offset);
                lines.iter().for_each(&mut *on_output);
                if config.auto_remove {
                    // Like `docker run --rm`: return once the container is gone.
                    let _ = closed.recv_timeout(Duration::from_secs(10));
                }
                if code < 0 {
                    return Ok(observed_state(containers, &config.id).ok().and_then(|s| s.exit_code));
                }
                return Ok(Some(code));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => return Ok(None),
        }
    }
}

/// Sends `signal` to the container's main process.
pub fn signal(containers: &Containers, id: &str, signal: Signal) -> Result<(), ContainerError> {
    let state = observed_state(containers, id)?;
    let pid = state.pid.filter(|_| state.status == Status::Running || state.status == Status::Paused);
    let Some(pid) = pid else {
        return Err(ContainerError::Conflict(format!("container {} is not running", &id[..12])));
    };
    kill(Pid::from_raw(pid), signal).map_err(|e| ContainerError::Runtime(format!("cannot signal container: {e}")))
}

/// The read-only remount hook's work (`lifeboat read-only-below DIR…`, run by the runtime in
/// a new container's mount namespace): every mount below `dirs` made read-only.
pub fn read_only_hook(dirs: &[PathBuf]) -> std::io::Result<usize> {
    rootfs::read_only_below(&kernel::Linux, dirs)
}

/// Stops a container: its stop signal, then SIGKILL after `timeout`. Returns once it exited.
pub fn stop(host: &Host, id: &str, timeout: Duration) -> Result<(), ContainerError> {
    let containers = host.containers()?;
    let config = containers.config(id)?;
    shim::request_stop(&containers.dir(id)).map_err(|e| ContainerError::Io { path: containers.dir(id), source: e })?;
    let state = observed_state(containers, id)?;
    let Some(pid) = state.pid.filter(|_| state.status == Status::Running || state.status == Status::Paused) else {
        return wait_settled(containers, id, Duration::from_secs(5));
    };
    let sig = parse_signal(&config.stop_signal).unwrap_or(Signal::SIGTERM);
    let _ = kill(Pid::from_raw(pid), sig);
    let deadline = Instant::now() + timeout;
    while host.kernel().alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if host.kernel().alive(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    wait_settled(containers, id, Duration::from_secs(10))
}

/// Waits until the shim recorded the exit (or is gone).
fn wait_settled(containers: &Containers, id: &str, limit: Duration) -> Result<(), ContainerError> {
    let deadline = Instant::now() + limit;
    loop {
        let state = match containers.state(id) {
            Ok(s) => s,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let settled =
            state.status == Status::Exited || state.status == Status::Created || !state.shim_pid.is_some_and(alive);
        if settled || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long the exit code of a container removed at its end (`run --rm`) is kept for a
/// `wait` that was watching it.
const EXIT_RECORD_AGE: Duration = Duration::from_secs(600);

fn exit_records(host: &Host) -> PathBuf {
    host.paths().run_root.join("exits")
}

/// Writes down the exit code of a container about to be removed at its end, in the run root
/// (gone at a reboot), and forgets records older than [`EXIT_RECORD_AGE`].
pub fn record_exit(host: &Host, id: &str, code: i32) -> std::io::Result<()> {
    let dir = exit_records(host);
    fs::create_dir_all(&dir)?;
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries.flatten() {
            let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if old.is_some_and(|age| age > EXIT_RECORD_AGE) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    crate::fsutil::write_atomic_volatile(&dir.join(id), code.to_string().as_bytes())
}

/// The exit code of a container removed at its end, while its record is kept.
pub fn recorded_exit(host: &Host, id: &str) -> Option<i32> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    fs::read_to_string(exit_records(host).join(id)).ok()?.trim().parse().ok()
}

/// Removes a container's files (after it stopped): unmounts its root, deletes its directory.
pub fn remove_files(host: &Host, id: &str) -> Result<(), ContainerError> {
    let containers = host.containers()?;
    let lc = host.paths().run_root.join("libcontainer").join(id);
    if lc.exists() {
        if let Ok(mut c) = libcontainer::container::Container::load(lc.clone()) {
            let _ = c.delete(true);
        }
        let _ = fs::remove_dir_all(&lc);
    }
    match containers.retire(id) {
        Ok(retired) => remove_retired(host.kernel(), &retired),
        Err(ContainerError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the files of a container [`Containers::retire`] took out of the store (its root
/// filesystem is unmounted first: the mount moved with the rename).
pub fn remove_retired(kernel: &dyn Kernel, retired: &Path) -> Result<(), ContainerError> {
    rootfs::unmount(kernel, &retired.join("rootfs")).map_err(|e| ContainerError::Runtime(e.to_string()))?;
    match fs::remove_dir_all(retired) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ContainerError::Io { path: retired.to_path_buf(), source: e }),
    }
}

/// Removes the named network `name` if no container (of any kind) is configured in it any
/// more; whether it went.
pub fn remove_network_if_unused(host: &Host, name: &str) -> anyhow::Result<bool> {
    let containers = host.containers()?;
    // No container is made meanwhile; one whose record cannot be read may be in it.
    let _lock = containers.lock()?;
    let wanted = container::NetworkMode::Network(name.to_string());
    let used = containers.ids()?.into_iter().any(|id| containers.config(&id).map_or(true, |c| c.network == wanted));
    if !used {
        network::remove_named(&host.paths().run_root, name)?;
    }
    Ok(!used)
}

/// Removes a container; `force` stops a running one first.
pub fn remove(host: &Host, id: &str, force: bool) -> Result<(), ContainerError> {
    let containers = host.containers()?;
    let _lock = containers.lock()?;
    let state = observed_state(containers, id)?;
    if state.status.is_up() {
        if !force {
            return Err(ContainerError::Conflict(format!(
                "cannot remove container {}: it is running (stop it first, or use rm -f)",
                &id[..12]
            )));
        }
        let _ = shim::request_stop(&containers.dir(id));
        if let Some(pid) = state.pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        wait_settled(containers, id, Duration::from_secs(10))?;
    }
    // An instant restore's hydrator unmounts what it serves before the files go.
    hydration::stop_hydrator(&containers.dir(id));
    remove_files(host, id)
}

/// Diff IDs of layers that containers still need (image removal must keep them).
pub fn layers_in_use(host: &Host) -> Result<std::collections::HashSet<crate::image::Digest>, ContainerError> {
    let containers = host.containers()?;
    let mut out = std::collections::HashSet::new();
    for id in containers.ids()? {
        if let Ok(c) = containers.config(&id) {
            out.extend(c.layers);
        }
    }
    Ok(out)
}

/// Ensures every layer of an image is unpacked (e.g. after a manual cleanup).
pub fn ensure_layers(store: &Store, image: &crate::image::Image) -> Result<(), crate::image::StoreError> {
    for (desc, diff_id) in image.manifest.layers.iter().zip(&image.config.rootfs.diff_ids) {
        store.ensure_layer(desc, diff_id)?;
    }
    Ok(())
}

pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse().ok()
}

/// Runs a command inside a running container (joining its namespaces and cgroup) and returns
/// its exit code. Standard input and output are this process's.
pub fn exec(host: &Host, id: &str, opts: ExecOptions) -> Result<i32, ContainerError> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let containers = host.containers()?;
    let state = observed_state(containers, id)?;
    if state.status != Status::Running {
        return Err(ContainerError::Conflict(format!("container {} is not running", &id[..12])));
    }
    let config = containers.config(id)?;
    let rootfs_path = containers.dir(id).join("rootfs");
    let rootfs = crate::fsutil::scope::Scope::open(&rootfs_path)
        .map_err(|source| ContainerError::Io { path: rootfs_path.clone(), source })?;
    let user = opts.user.as_deref().or(config.user.as_deref());
    let (uid, gid, _) = rootfs::resolve_user(&rootfs, user).map_err(ContainerError::Invalid)?;
    let mut env: std::collections::HashMap<String, String> = config
        .env
        .iter()
        .chain(&opts.env)
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    env.entry("PATH".into()).or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let cwd = opts
        .workdir
        .clone()
        .unwrap_or_else(|| if config.working_dir.is_empty() { "/".into() } else { config.working_dir.clone() });
    let lc_root = host.paths().run_root.join("libcontainer");
    let program = opts.args.first().ok_or_else(|| ContainerError::Invalid("exec: no command given".into()))?;
    find_command(&rootfs, program, env.get("PATH").map(String::as_str).unwrap_or(""), &cwd)?;
    if opts.tty {
        return exec_tty(host, id, containers, opts, env, cwd, uid, gid);
    }
    let confined =
        seccomp::Confined::load(&host.paths().run_root).map_err(|e| ContainerError::Runtime(e.to_string()))?;
    let timeout = opts.timeout;
    let streams = |what: &str| {
        ContainerError::Runtime(format!("cannot set up the command's {what}: {}", std::io::Error::last_os_error()))
    };
    let (stdin, stdout, stderr): (
        Option<std::os::fd::OwnedFd>,
        Option<std::os::fd::OwnedFd>,
        Option<std::os::fd::OwnedFd>,
    ) = match opts.output {
        ExecOutput::Inherit => (None, None, None),
        ExecOutput::Stderr => {
            let null = std::fs::File::open("/dev/null").map_err(|_| streams("input"))?;
            let err = std::io::stderr().as_fd().try_clone_to_owned().map_err(|_| streams("output"))?;
            let err2 = err.try_clone().map_err(|_| streams("output"))?;
            (Some(null.into()), Some(err), Some(err2))
        }
        ExecOutput::Discard => {
            let null = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/null");
            let n = |_| streams("streams");
            (Some(null().map_err(n)?.into()), Some(null().map_err(n)?.into()), Some(null().map_err(n)?.into()))
        }
    };
    let mut builder = ContainerBuilder::new(id.to_string(), SyscallType::Linux);
    if let Some(fd) = stdin {
        builder = builder.with_stdin(fd);
    }
    if let Some(fd) = stdout {
        builder = builder.with_stdout(fd);
    }
    if let Some(fd) = stderr {
        builder = builder.with_stderr(fd);
    }
    let pid = builder
        .with_root_path(&lc_root)
        .map_err(|e| ContainerError::Runtime(e.to_string()))?
        .with_executor(confined)
        .as_tenant()
        .with_container_args(opts.args)
        .with_env(env)
        .with_cwd(Some(PathBuf::from(cwd)))
        .with_user(Some(uid))
        .with_group(Some(gid))
        .with_no_new_privs(true)
        .with_capabilities(spec::DEFAULT_CAPS.iter().map(|c| c.to_string()).collect())
        .with_detach(false)
        .build()
        .map_err(|e| ContainerError::Runtime(format!("cannot exec in container: {e}")))?;
    match timeout {
        Some(limit) => wait_exec_for(pid, limit),
        None => wait_exec(pid),
    }
}

/// Exit code of a command killed at its timeout (as `timeout` reports it).
pub const TIMED_OUT: i32 = 124;

/// [`wait_exec`], killing the command when `limit` has passed.
fn wait_exec_for(pid: Pid, limit: Duration) -> Result<i32, ContainerError> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ContainerError::Runtime(format!("waiting for exec: {e}"))),
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Ok(TIMED_OUT);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks that `program` can be run in the container (looked up inside its root: a name in
/// `path`, a path from `cwd`), so a typo is "not found" (127) and a directory or a file
/// without an execute bit "cannot execute" (126), as a shell says.
fn find_command(
    root: &crate::fsutil::scope::Scope,
    program: &str,
    path: &str,
    cwd: &str,
) -> Result<(), ContainerError> {
    use rustix::fs::FileType;
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![Path::new(cwd).join(program)]
    } else {
        path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).collect()
    };
    let mut not_executable = None;
    for c in &candidates {
        let rel = c.strip_prefix("/").unwrap_or(c);
        let Ok(st) = root.stat(rel, true) else { continue };
        if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_mode & 0o111 != 0 {
            return Ok(());
        }
        not_executable.get_or_insert_with(|| c.clone());
    }
    Err(match not_executable {
        Some(c) => ContainerError::Command {
            code: 126,
            message: format!("{}: cannot execute (not an executable file)", c.display()),
        },
        None if program.contains('/') => {
            ContainerError::Command { code: 127, message: format!("{program}: no such file") }
        }
        None => {
            ContainerError::Command { code: 127, message: format!("{program}: executable file not found in $PATH") }
        }
    })
}

fn wait_exec(pid: Pid) -> Result<i32, ContainerError> {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ContainerError::Runtime(format!("waiting for exec: {e}"))),
        }
    }
}

/// `exec -t`: the process gets a terminal, relayed to ours. Its process definition is the
/// container's own (capabilities, limits, confinement) with the command, user, environment
/// and directory of this exec.
#[allow(clippy::too_many_arguments)]
fn exec_tty(
    host: &Host,
    id: &str,
    containers: &Containers,
    opts: ExecOptions,
    env: std::collections::HashMap<String, String>,
    cwd: String,
    uid: u32,
    gid: u32,
) -> Result<i32, ContainerError> {
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let runtime_err = |e: String| ContainerError::Runtime(e);
    let bundle = containers.dir(id).join("bundle/config.json");
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(&bundle).map_err(|e| ContainerError::Io { path: bundle.clone(), source: e })?)
            .map_err(|e| runtime_err(format!("the container's runtime spec is unreadable: {e}")))?;
    let mut process = spec.get("process").cloned().unwrap_or_default();
    let mut env_list: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    env_list.sort();
    if !env_list.iter().any(|e| e.starts_with("TERM=")) {
        env_list.push("TERM=xterm".into());
    }
    process["terminal"] = true.into();
    process["args"] = serde_json::json!(opts.args);
    process["env"] = serde_json::json!(env_list);
    process["cwd"] = cwd.into();
    process["user"] = serde_json::json!({"uid": uid, "gid": gid});
    crate::fsutil::private_dir(&host.paths().run_root)
        .map_err(|e| ContainerError::Io { path: host.paths().run_root.clone(), source: e })?;
    let tag = crate::fsutil::random_hex(6);
    let process_file = host.paths().run_root.join(format!("exec-{tag}.json"));
    let _cleanup = crate::fsutil::TempPath::new(process_file.clone());
    fs::write(&process_file, serde_json::to_vec(&process).expect("serialises"))
        .map_err(|e| ContainerError::Io { path: process_file.clone(), source: e })?;
    let console = tty::ConsoleSocket::bind(&host.paths().run_root.join(format!("exec-{tag}.sock")))
        .map_err(|e| runtime_err(format!("cannot make a console socket: {e}")))?;
    let confined = seccomp::Confined::load(&host.paths().run_root).map_err(|e| runtime_err(e.to_string()))?;
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(host.paths().run_root.join("libcontainer"))
        .map_err(|e| runtime_err(e.to_string()))?
        .with_executor(confined)
        .with_console_socket(Some(console.path()))
        .as_tenant()
        .with_process(Some(&process_file))
        .with_detach(true)
        .build()
        .map_err(|e| runtime_err(format!("cannot exec in container: {e}")))?;
    let master = console.receive_master(Duration::from_secs(10)).map_err(|e| runtime_err(e.to_string()))?;
    let interactive = opts.interactive;
    let relay = std::thread::spawn(move || tty::relay(master, interactive));
    let code = wait_exec(pid);
    let _ = relay.join();
    code
}

pub struct ExecOptions {
    /// A terminal for the command (`exec -t`).
    pub tty: bool,
    /// Kill the command if it has not ended by then (a health check's timeout); it then
    /// exits with 124, as `timeout` does.
    pub timeout: Option<Duration>,
    /// Send our standard input (with `tty`; without it, standard input is always passed).
    pub interactive: bool,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Where the command's output goes (without `tty`).
    pub output: ExecOutput,
}

/// Where an exec's standard streams go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecOutput {
    /// Ours: `lifeboat exec`.
    #[default]
    Inherit,
    /// Both to our standard error, nothing read: hooks and recipes, whose output a user wants
    /// to see but which must not mix with a report on standard output.
    Stderr,
    /// Nowhere, nothing read: health checks and drill probes.
    Discard,
}

impl ExecOptions {
    /// `/bin/sh -c CMD` as the container's default user.
    pub fn shell(cmd: &str) -> ExecOptions {
        ExecOptions {
            tty: false,
            timeout: None,
            interactive: false,
            args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
            env: vec![],
            user: None,
            workdir: None,
            output: ExecOutput::Inherit,
        }
    }
}

/// Freezes (`pause`) or thaws a running container through the cgroup freezer.
///
/// The freezer is driven directly (v1 `freezer.state`, v2 `cgroup.freeze`) rather than through
/// the runtime library, whose state file is not written atomically: a `snapshot` killed while
/// freezing must never leave a container its shim can no longer manage.
pub fn set_paused(host: &Host, id: &str, paused: bool) -> Result<(), ContainerError> {
    let containers = host.containers()?;
    let _lock = containers.lock()?;
    let mut state = observed_state(containers, id)?;
    let want_from = if paused { Status::Running } else { Status::Paused };
    if state.status != want_from {
        let verb = if paused { "running" } else { "paused" };
        return Err(ContainerError::Conflict(format!("container {} is not {verb}", &id[..12])));
    }
    cgroup::freeze(host.kernel(), id, paused)?;
    state.status = if paused { Status::Paused } else { Status::Running };
    containers.write_state(id, &state)
}

/// Thaws a container whatever its recorded state says (a snapshot killed between freezing the
/// cgroup and recording it left them apart), and records it running if it was paused.
pub fn force_thaw(host: &Host, id: &str) -> Result<(), ContainerError> {
    let containers = host.containers()?;
    let _lock = containers.lock()?;
    let mut state = observed_state(containers, id)?;
    if !matches!(state.status, Status::Running | Status::Paused) {
        return Ok(());
    }
    cgroup::freeze(host.kernel(), id, false)?;
    if state.status == Status::Paused {
        state.status = Status::Running;
        containers.write_state(id, &state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attached_caller_gets_all_of_a_container_that_ended_and_went_before_it_looked() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let host = Host::new(Paths { root: tmp.path().join("root"), run_root: tmp.path().join("run") });
        let config = RunConfig { auto_remove: true, ..spec::tests::sample() };
        // The log as `start` opened it and the shim wrote it; then the container was removed.
        let log_path = tmp.path().join("log.json");
        let log = fs::OpenOptions::new().read(true).append(true).create(true).open(&log_path).unwrap();
        (&log).write_all(b"{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-29T00:00:00Z\"}\n").unwrap();
        fs::remove_file(&log_path).unwrap();
        // The shim's whole report was in the pipe before anyone read it, and the shim is gone.
        let (read, write) = nix::unistd::pipe().unwrap();
        fs::File::from(write).write_all(b"ok\nexit 3\n").unwrap();
        let started = started(BufReader::new(fs::File::from(read)), log, tmp.path()).unwrap();
        let mut lines = Vec::new();
        let code = wait_attached(&host, &config, started, &mut |l| lines.push(l.log.clone())).unwrap();
        assert_eq!(code, Some(3));
        assert_eq!(lines, ["hi\n"]);
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("sigquit"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("NOPE"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
