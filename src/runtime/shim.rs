//! The shim: one small process per container, `lifeboat shim <id>`, started by the CLI and
//! outliving it. It mounts the root filesystem, creates and starts the container through
//! youki's `libcontainer` while still single-threaded, then supervises it: stdout/stderr to the
//! log, published ports, the exit status in `state.json`, the restart policy, zombie reaping
//! (it is a child subreaper).
//!
//! A restart re-executes the shim itself, so every container creation happens in a freshly
//! exec'd, single-threaded process, never after threads were started.

use std::fs;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::container::{NetworkMode, RestartPolicy, State, Status};
use super::{Host, logs, network, prepare};

pub const SYNC_FD_ENV: &str = "LIFEBOAT_SHIM_SYNC_FD";
/// The console socket an attached `run -t` listens on.
pub const CONSOLE_ENV: &str = "LIFEBOAT_SHIM_CONSOLE";
/// Set when the shim's standard input is the user's, for the container (`run -i`).
pub const STDIN_ENV: &str = "LIFEBOAT_SHIM_STDIN";
/// A pipe on which the starting command reports "ok" once it prepared the container's root
/// filesystem and bundle itself, while this process started (or "error ..."). Without it
/// (a restart), the shim prepares them.
pub const PREPARED_FD_ENV: &str = "LIFEBOAT_SHIM_PREPARED_FD";
const STOP_MARKER: &str = "stop-requested";

/// Runs the shim for container `id`; never returns.
pub fn main(host: &Host, id: &str) -> ! {
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // Ours alone: no container, health check or restarted shim inherits them, so the CLI
    // sees the sync pipe close exactly when this shim is gone.
    let sync = inherited_pipe(SYNC_FD_ENV);
    let attach = Attach {
        console: std::env::var_os(CONSOLE_ENV).map(PathBuf::from),
        stdin: std::env::var_os(STDIN_ENV).is_some(),
        prepared: inherited_pipe(PREPARED_FD_ENV),
    };
    // SAFETY: called once at start, before any other thread exists.
    unsafe {
        std::env::remove_var(SYNC_FD_ENV);
        std::env::remove_var(CONSOLE_ENV);
        std::env::remove_var(STDIN_ENV);
        std::env::remove_var(PREPARED_FD_ENV);
    }
    let mut sync = Sync(sync);
    let code = match supervise(host, id, &mut sync, attach) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            sync.send(&format!("error {msg}\n"));
            if let Ok(containers) = host.containers() {
                let mut state = containers.state(id).unwrap_or_else(|_| State::created());
                state.status = Status::Exited;
                state.pid = None;
                state.exit_code = Some(127);
                state.error = Some(msg);
                state.finished_at = Some(crate::sys::now_rfc3339());
                let _ = containers.write_state(id, &state);
                if let Ok(config) = containers.config(id) {
                    let _ = super::rootfs::unmount(host.kernel(), &containers.dir(id).join("rootfs"));
                    if config.auto_remove {
                        let _ = super::remove_files(host, id);
                    }
                }
            }
            1
        }
    };
    std::process::exit(code)
}

/// The pipe back to the CLI: "ok" once started, "exit N" when the container ends.
struct Sync(Option<fs::File>);

impl Sync {
    fn send(&mut self, msg: &str) {
        if let Some(f) = &mut self.0
            && f.write_all(msg.as_bytes()).is_err()
        {
            self.0 = None; // the CLI went away (detached run): nobody to tell
        }
    }

    /// Closes the pipe: a CLI waiting for it to close returns.
    fn close(&mut self) {
        self.0 = None;
    }
}

/// A pipe the starting CLI passed as the descriptor named in `env`, made close-on-exec.
fn inherited_pipe(env: &str) -> Option<fs::File> {
    let fd = std::env::var(env).ok()?.parse::<i32>().ok()?;
    // SAFETY: the CLI passed this descriptor to us for exactly this purpose; nothing else owns it.
    let f = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    Some(f)
}

/// What the starting CLI attached (only for the first start; restarts run detached).
struct Attach {
    console: Option<PathBuf>,
    stdin: bool,
    /// Where the CLI says it prepared the container (see [`PREPARED_FD_ENV`]).
    prepared: Option<fs::File>,
}

fn supervise(host: &Host, id: &str, sync: &mut Sync, attach: Attach) -> anyhow::Result<i32> {
    let containers = host.containers()?;
    let config = containers.config(id)?;
    let dir = containers.dir(id);
    let mut state = containers.state(id)?;
    state.shim_pid = Some(std::process::id() as i32);
    let _ = fs::remove_file(dir.join(STOP_MARKER));
    let _ = fs::remove_file(dir.join(super::ENDING_MARKER));

    tracing::debug!("shim up");
    let prepared = match attach.prepared {
        Some(report) => {
            let mut line = String::new();
            std::io::BufReader::new(report).read_line(&mut line)?;
            match line.trim_end() {
                "ok" => prepare::Prepared::made(containers, &config),
                l => match l.strip_prefix("error ") {
                    Some(why) => anyhow::bail!("{why}"),
                    None => anyhow::bail!("the command that started the container went away while preparing it"),
                },
            }
        }
        None => prepare::prepare(host, &config)?,
    };
    tracing::debug!("root filesystem and bundle prepared");
    let bound = network::bind_ports(&config.ports)?;

    let (out_r, out_w) = nix::unistd::pipe()?;
    let (err_r, err_w) = nix::unistd::pipe()?;
    let stdin = if attach.stdin && !config.tty {
        // The user's standard input, which the CLI handed us as ours.
        fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?)
    } else {
        fs::File::open("/dev/null")?
    };
    // A terminal goes to the attached CLI's console socket, or, detached, to our own (we keep
    // the terminal and log what the container writes to it).
    crate::fsutil::private_dir(&host.paths().run_root)?;
    let own_console = match (&attach.console, config.tty) {
        // Under the run root: socket host are limited to 108 bytes.
        (None, true) => {
            Some(super::tty::ConsoleSocket::bind(&host.paths().run_root.join(format!("console-{}.sock", &id[..12])))?)
        }
        _ => None,
    };
    let console_path = attach.console.clone().or_else(|| own_console.as_ref().map(|c| c.path().to_path_buf()));
    let lc_root = host.paths().run_root.join("libcontainer");
    fs::create_dir_all(&lc_root)?;
    let stale = lc_root.join(id);
    if stale.exists() {
        if let Ok(mut c) = libcontainer::container::Container::load(stale.clone()) {
            let _ = c.delete(true);
        }
        let _ = fs::remove_dir_all(&stale);
    }
    let confined = super::seccomp::Confined::load(&host.paths().run_root)?;
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(&lc_root)
        .map_err(|e| anyhow::anyhow!("runtime state dir {}: {e}", lc_root.display()))?
        .with_executor(confined)
        .with_stdin(stdin)
        .with_console_socket(console_path.filter(|_| config.tty))
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(&prepared.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot create container: {e}"))?;
    let pid = container.pid().ok_or_else(|| anyhow::anyhow!("runtime reported no container pid"))?;
    tracing::debug!(pid = pid.as_raw(), "container created");
    // Held until the exit is reported: when the container's last process exits, the kernel
    // tears its mount namespace down (every mount, then an RCU grace period) before the exit
    // is visible to us. With this reference the teardown waits for our close instead, after
    // the CLI has been told.
    let mut mount_ns = fs::File::open(format!("/proc/{}/ns/mnt", pid.as_raw())).ok();
    let netns = PathBuf::from(format!("/proc/{}/ns/net", pid.as_raw()));
    if config.network == NetworkMode::Private {
        network::loopback_up(&netns).map_err(|e| anyhow::anyhow!("cannot bring up loopback: {e}"))?;
    }
    container.start().map_err(|e| anyhow::anyhow!("cannot start container: {e}"))?;
    tracing::debug!("container started");

    // From here on the shim may have threads.
    let log = Arc::new(Mutex::new(logs::open_for_append(&dir.join("log.json"))?));
    let (pumped, pumps_done) = std::sync::mpsc::channel();
    spawn_pump(fs::File::from(out_r), "stdout", log.clone(), pumped.clone());
    spawn_pump(fs::File::from(err_r), "stderr", log.clone(), pumped.clone());
    let mut pumps = 2;
    if let Some(console) = &own_console {
        match console.receive_master(Duration::from_secs(10)) {
            Ok(master) => {
                spawn_pump(fs::File::from(master), "stdout", log.clone(), pumped.clone());
                pumps += 1;
            }
            Err(e) => tracing::warn!(error = %e, "no terminal from the container; its output is not logged"),
        }
    }
    state.status = Status::Running;
    state.pid = Some(pid.as_raw());
    state.started_at = Some(crate::sys::now_rfc3339());
    state.finished_at = None;
    state.exit_code = None;
    state.oom_killed = false;
    state.error = None;
    state.ports = bound.iter().map(|(m, _)| m.clone()).collect();
    containers.write_state(id, &state)?;
    let published =
        if config.network != NetworkMode::Host { network::serve(bound, &netns)? } else { Default::default() };
    if let Some(h) = &config.health {
        spawn_health_checks(host, id, h.clone());
    }
    sync.send("ok\n");

    let code = wait_for(pid);
    // From here until the state is written (output drained), the container reads as running.
    let _ = fs::write(dir.join(super::ENDING_MARKER), b"");
    // The host's ports are free before anyone hears the container ended.
    published.close();
    // Pipes close when the last process holding them exits; do not hang on a straggler.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for _ in 0..pumps {
        if pumps_done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).is_err() {
            break;
        }
    }
    tracing::debug!(code, "container exited");
    let oom = super::cgroup::oom_killed(host.kernel(), &prepared.cgroups_path);
    if config.auto_remove {
        // Its code is kept for a `wait` watching it; then it is gone for everyone (one
        // rename), then the waiting CLI is told; the root filesystem, files, cgroups and
        // runtime state go after it returned.
        if let Err(e) = super::record_exit(host, id, code) {
            tracing::warn!(error = %e, "cannot keep the exit code for wait");
        }
        let retired = containers.retire(id)?;
        sync.send(&format!("exit {code}\n"));
        sync.close();
        drop(mount_ns);
        if !remove_runtime_leftovers(&lc_root.join(id), &prepared.cgroups_path) {
            let _ = container.delete(true);
        }
        super::remove_retired(host.kernel(), &retired)?;
        // `run --rm` takes its anonymous volumes with it (Docker's), never named ones.
        if let Ok(volumes) = host.volumes() {
            for m in config.mounts.iter().filter(|m| m.anonymous) {
                if let super::container::MountSource::Volume { name } = &m.source
                    && !containers.uses_volume(name).unwrap_or(true)
                    && let Err(e) = volumes.remove(name)
                {
                    tracing::warn!(volume = name.as_str(), error = %e, "cannot remove an anonymous volume");
                }
            }
        }
        return Ok(0);
    }
    if !remove_runtime_leftovers(&lc_root.join(id), &prepared.cgroups_path) {
        let _ = container.delete(true);
    }
    tracing::debug!("runtime state deleted");

    let stopped = dir.join(STOP_MARKER).exists();
    state.pid = None;
    state.exit_code = Some(code);
    state.oom_killed = oom;
    state.finished_at = Some(crate::sys::now_rfc3339());
    if config.restart.should_restart(code, state.restart_count, stopped) {
        state.status = Status::Restarting;
        state.restart_count += 1;
        containers.write_state(id, &state)?;
        sync.send(&format!("exit {code}\n"));
        drop(mount_ns.take());
        std::thread::sleep(RestartPolicy::delay(state.restart_count));
        reexec(host, id)?;
    }
    state.status = Status::Exited;
    containers.write_state(id, &state)?;
    sync.send(&format!("exit {code}\n"));
    drop(mount_ns);
    super::rootfs::unmount(host.kernel(), &dir.join("rootfs"))?;
    Ok(0)
}

/// The variables of the CLI's environment a shim keeps: the program search path, the init
/// binary and log level settings. Everything else (credentials above all) is left behind.
pub fn inherited_environment() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    const KEPT: &[&str] =
        &["PATH", "LIFEBOAT_INIT_BINARY", "LIFEBOAT_LOG_LEVEL", "LIFEBOAT_NO_MOUNT_SETATTR", "RUST_BACKTRACE", "TZ"];
    let mut env: Vec<_> = std::env::vars_os().filter(|(k, _)| KEPT.iter().any(|kept| k == kept)).collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
    }
    env
}

/// Runs the health check as Docker does: every `interval` (every 5 s at most while the start
/// period lasts), each through `lifeboat exec` (a fresh process, so no container work is
/// forked from this multi-threaded shim) killed at its timeout, and records the verdict and
/// the last five results with their output.
fn spawn_health_checks(host: &Host, id: &str, check: super::container::HealthCheck) {
    let (paths, id) = (host.paths().clone(), id.to_string());
    let Ok(containers) = host.containers().cloned() else { return };
    let spawned = std::thread::Builder::new().name("health".into()).stack_size(128 * 1024).spawn(move || {
        let dir = containers.dir(&id);
        let started = std::time::Instant::now();
        let start_period = Duration::from_secs(check.start_period_secs);
        let _ = super::Health::starting().save(&dir);
        let argv = check.argv();
        let timeout = Duration::from_secs(check.timeout_secs.max(1));
        loop {
            let in_start_period = started.elapsed() < start_period;
            let every = Duration::from_secs(check.interval_secs.max(1));
            std::thread::sleep(if in_start_period { every.min(Duration::from_secs(5)) } else { every });
            let begun = crate::sys::now_rfc3339();
            let mut cmd = super::reexec::exec_in_container(&paths, &id, &argv, timeout);
            cmd.stdin(std::process::Stdio::null());
            let out = run_health_child(cmd);
            let (exit_code, output) = match out {
                Ok(o) => {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    let code = o.status.code().unwrap_or(-1);
                    if code == super::TIMED_OUT {
                        (-1, format!("Health check exceeded timeout ({}s)", timeout.as_secs()))
                    } else {
                        (code, text)
                    }
                }
                Err(e) => (-1, format!("cannot run the health check: {e}")),
            };
            let output: String = output.chars().take(4096).collect();
            let result = super::HealthResult { start: begun, end: crate::sys::now_rfc3339(), exit_code, output };
            // Continue from what is recorded: a restore that saw the service healthy wrote it.
            let mut health = super::Health::load(&dir).unwrap_or_else(super::Health::starting);
            health.record(result, check.retries, in_start_period);
            let _ = health.save(&dir);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start health checks");
    }
}

/// The health checks' processes running now: the shim's reaper leaves them to their thread.
fn health_children() -> std::sync::MutexGuard<'static, std::collections::HashSet<i32>> {
    static SET: std::sync::OnceLock<Mutex<std::collections::HashSet<i32>>> = std::sync::OnceLock::new();
    SET.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a health check's process and waits for it here (not in the shim's reaper).
fn run_health_child(mut cmd: std::process::Command) -> std::io::Result<std::process::Output> {
    let child = {
        // Spawned and registered under the lock: the reaper cannot take it in between.
        let mut running = health_children();
        let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
        running.insert(child.id() as i32);
        child
    };
    let pid = child.id() as i32;
    let out = child.wait_with_output();
    health_children().remove(&pid);
    out
}

/// Copies a stream to the log on its own thread, which says on `done` when the stream ends.
fn spawn_pump(f: fs::File, stream: &'static str, log: Arc<Mutex<fs::File>>, done: std::sync::mpsc::Sender<()>) {
    std::thread::Builder::new()
        .name(format!("log-{stream}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            logs::pump(f, stream, log);
            let _ = done.send(());
        })
        .expect("cannot start a log thread");
}

/// Reaps children (the shim is a subreaper) until `pid` exits; returns its exit code (128+N
/// for a signal, as shells report it).
fn wait_for(pid: Pid) -> i32 {
    use nix::sys::wait::{Id, waitid};
    loop {
        // Which child ended, without reaping it yet: a health check's is its own thread's to
        // reap (reaping it here once made every check fail with ECHILD, and services flap).
        let ended = match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::__WALL) {
            Ok(status) => status.pid(),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECHILD) => {
                // Not our child after all (should not happen): poll until it is gone.
                while Path::new(&format!("/proc/{}", pid.as_raw())).exists() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return 255;
            }
            Err(_) => return 255,
        };
        let Some(ended) = ended else { continue };
        if health_children().contains(&ended.as_raw()) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match waitpid(ended, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return 128 + sig as i32,
            _ => {}
        }
    }
}

/// Removes what the runtime keeps for a container whose processes have all exited (its init
/// has: the kernel ends the rest of its PID namespace): its cgroups in every hierarchy and its
/// state directory. False if a cgroup is still busy, for libcontainer's own (slower, as it
/// looks every hierarchy up again) delete, which also kills stragglers.
fn remove_runtime_leftovers(state_dir: &Path, cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else { return false };
    let mut roots: Vec<PathBuf> = vec![PathBuf::from("/sys/fs/cgroup")];
    for h in hierarchies.flatten() {
        // Real hierarchy directories only: cpu and cpuacct are links to cpu,cpuacct.
        if h.file_type().is_ok_and(|t| t.is_dir()) {
            roots.push(h.path());
        }
    }
    for root in roots {
        match fs::remove_dir(root.join(rel)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return false,
        }
    }
    fs::remove_dir_all(state_dir).is_ok()
}

fn reexec(host: &Host, id: &str) -> anyhow::Result<()> {
    match super::reexec::exec_shim(host.paths(), id)? {}
}

/// Asks the shim not to restart the container after this exit.
pub fn request_stop(dir: &Path) -> io::Result<()> {
    fs::write(dir.join(STOP_MARKER), b"")
}
