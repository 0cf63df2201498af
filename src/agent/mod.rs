//! The agent: runs every job of the configuration on its schedule.
//!
//! One thread schedules; each run happens on its own thread, whose steps are `lifeboat`
//! child processes (see `jobs`). Signals are taken synchronously by a dedicated thread
//! (`sigwait`) and arrive on the same channel as finished runs, so the scheduler is a plain loop
//! over one channel with a timeout: the next due time.
//!
//! Guarantees: never two runs of one job at once (a run due while the previous one still goes
//! is skipped and counted); one missed run is caught up at start (systemd's `Persistent=true`);
//! SIGHUP reloads the configuration (a broken one is reported and the old one kept); SIGTERM
//! lets running jobs finish within a grace period, then stops them, and leaves no service
//! frozen.

pub mod jobs;
pub mod state;

/// Set in the environment of the agent's steps: they name their repositories exactly, and
/// the configuration's defaults for commands typed by hand are not consulted.
pub const STEP_ENV: &str = "LIFEBOAT_AGENT_STEP";

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Local, Utc};
use nix::sys::signal::{SigSet, Signal};

use crate::config::{self, Config};
use jobs::{Job, Kind, Outcome, Runner};
use state::{AgentState, JobState, MetricJob, RunRecord};

pub struct Options {
    pub config_path: PathBuf,
    pub root: PathBuf,
    pub run_root: PathBuf,
}

enum Event {
    Signal(Signal),
    Finished {
        job: String,
        started: DateTime<Utc>,
        outcome: Outcome,
    },
    /// The repositories read again after a job that changed them.
    Repositories(Vec<crate::ops::backup::RepoSummary>),
}

struct Scheduled {
    job: Job,
    /// When it runs next (the schedule's time plus any random delay).
    fire_at: DateTime<Utc>,
    /// The schedule's own time for that run.
    due: DateTime<Utc>,
}

struct Running {
    pid: Arc<Mutex<Option<u32>>>,
}

/// The directory holding the agent's state for `config`.
pub fn state_dir(config: &Config, root: &Path) -> PathBuf {
    config.agent.state_dir.clone().unwrap_or_else(|| root.join("agent"))
}

/// The next time `job` is due after `after`.
pub fn next_due(job: &Job, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    job.schedule.after(&after.with_timezone(&Local)).next().map(|t| t.with_timezone(&Utc))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn now_text() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A random delay up to `max`.
fn jitter(max: Duration) -> chrono::Duration {
    if max.is_zero() {
        return chrono::Duration::zero();
    }
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the kernel's random source");
    let ms = u64::from_le_bytes(b) % (max.as_millis() as u64 + 1);
    chrono::Duration::milliseconds(ms as i64)
}

/// How long the agent waits for its repositories' readings (a store that does not answer
/// is reported as such; its thread is left to finish or fail on its own).
const READING_LIMIT: Duration = Duration::from_secs(120);

struct Agent {
    opts: Options,
    config: Config,
    runner: Runner,
    state_dir: PathBuf,
    state: AgentState,
    schedule: BTreeMap<String, Scheduled>,
    running: HashMap<String, Running>,
    tx: mpsc::Sender<Event>,
    metrics: Arc<Mutex<String>>,
    started_at: i64,
    http: reqwest::blocking::Client,
    /// A reading of the repositories is under way; `Some(true)`: another was asked for
    /// meanwhile (one at a time, and the newest reading is the one kept).
    reading: Option<bool>,
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    // Block the signals we handle before any thread exists, so every thread inherits the mask
    // and only the signal thread takes them. Child processes start with a clean mask.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().context("cannot block signals")?;

    let config = Config::load(&opts.config_path)?;
    let state_dir = state_dir(&config, &opts.root);
    std::fs::create_dir_all(&state_dir).with_context(|| format!("cannot create {}", state_dir.display()))?;
    let _pid_lock = lock_pid_file(&state_dir)?;
    let (tx, rx) = mpsc::channel();
    {
        let tx = tx.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            loop {
                match signals.wait() {
                    Ok(sig) => {
                        if tx.send(Event::Signal(sig)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "sigwait failed"),
                }
            }
        })?;
    }
    let runner = Runner {
        exe: std::env::current_exe().context("cannot find the lifeboat executable")?,
        root: opts.root.clone(),
        run_root: opts.run_root.clone(),
        retry_lock: config
            .agent
            .retry_lock
            .as_ref()
            .and_then(|d| config::parse_duration(d.get_ref()).ok())
            .unwrap_or(Duration::from_secs(30 * 60)),
    };
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client for notifications")?;
    // A run that was going on when an agent died is not going on now.
    let mut state = AgentState::load(&state_dir);
    for job in state.jobs.values_mut() {
        job.running_since = None;
    }
    let mut agent = Agent {
        state,
        reading: None,
        state_dir,
        config,
        runner,
        schedule: BTreeMap::new(),
        running: HashMap::new(),
        tx,
        metrics: Arc::new(Mutex::new(String::new())),
        started_at: Utc::now().timestamp(),
        http,
        opts,
    };
    if let Some(addr) = &agent.config.agent.metrics_listen {
        serve_metrics(addr.get_ref(), agent.metrics.clone())?;
    }
    agent.bring_back_services();
    agent.plan(true);
    agent.publish();
    tracing::info!(jobs = agent.schedule.len(), config = %agent.opts.config_path.display(), "agent started");

    let shutdown = loop {
        agent.fire_due();
        let wait = agent.until_next();
        match rx.recv_timeout(wait) {
            Ok(Event::Signal(Signal::SIGHUP)) => agent.reload(),
            Ok(Event::Signal(sig)) => break sig,
            Ok(Event::Finished { job, started, outcome }) => agent.finished(&job, started, outcome),
            Ok(Event::Repositories(list)) => {
                agent.state.repositories = list;
                if let Err(e) = agent.state.save(&agent.state_dir) {
                    tracing::error!(error = %e, "cannot save the agent state");
                }
                agent.publish();
                let again = agent.reading.take() == Some(true);
                if again {
                    agent.read_repositories();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("the agent holds a sender"),
        }
    };
    agent.shut_down(shutdown, &rx);
    Ok(())
}

/// One agent per state directory: a second one would run every job twice.
fn lock_pid_file(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("agent.pid");
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
    if nix::fcntl::Flock::lock(file.try_clone()?, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map(std::mem::forget)
        .is_err()
    {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        anyhow::bail!(crate::runtime::container::ContainerError::Conflict(format!(
            "another agent (pid {}) is running with state in {}",
            pid.trim(),
            dir.display()
        )));
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// The pid of the agent using `dir`, if one runs.
pub fn running_agent(dir: &Path) -> Option<i32> {
    let file = std::fs::File::open(dir.join("agent.pid")).ok()?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
        Ok(_) => None,
        Err((_, _)) => std::fs::read_to_string(dir.join("agent.pid")).ok()?.trim().parse().ok(),
    }
}

impl Agent {
    /// Services whose restart policy asks for it come back when the agent starts (at boot).
    fn bring_back_services(&self) {
        let step = jobs::JobCommand::StartRestartable;
        let out = match self.runner.command(&step).stdout(std::process::Stdio::piped()).output() {
            Ok(out) => out,
            Err(e) => return tracing::error!(error = %e, "cannot bring services back"),
        };
        match crate::report::JobReport::parse(&String::from_utf8_lossy(&out.stdout)) {
            Ok(crate::report::JobReport { body: crate::report::JobBody::Recovery(r), .. }) => {
                for name in &r.started {
                    tracing::info!(service = name.as_str(), "service brought back");
                }
                for (name, why) in &r.not_started {
                    tracing::error!(service = name.as_str(), error = why.as_str(), "service not brought back");
                }
                for (what, why) in &r.not_cleared {
                    tracing::warn!(leftover = what.as_str(), error = why.as_str(), "leftover not cleared");
                }
            }
            Ok(_) => tracing::error!("the recovery step reported something else"),
            Err(e) => tracing::error!(
                error = e.as_str(),
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "cannot bring services back"
            ),
        }
    }

    fn delay(&self) -> Duration {
        self.config
            .agent
            .randomized_delay
            .as_ref()
            .and_then(|d| config::parse_duration(d.get_ref()).ok())
            .unwrap_or_default()
    }

    /// (Re)builds the schedule from the configuration. Jobs whose schedule did not change keep
    /// their next run; new ones start counting now, or, at startup, catch up one missed run.
    fn plan(&mut self, at_start: bool) {
        let now = Utc::now();
        let catch_up = self.config.agent.catch_up.unwrap_or(true);
        let mut next = BTreeMap::new();
        for job in jobs::jobs(&self.config) {
            if let Some(old) = self.schedule.remove(&job.id)
                && old.job.schedule_text == job.schedule_text
            {
                next.insert(job.id.clone(), Scheduled { job, ..old });
                continue;
            }
            let st = self.state.jobs.entry(job.id.clone()).or_default();
            let last = st.last_scheduled.as_deref().and_then(parse_time);
            let missed = match last {
                Some(last) if at_start && catch_up => next_due(&job, last).filter(|t| *t <= now),
                _ => None,
            };
            if last.is_none() {
                st.last_scheduled = Some(now.to_rfc3339());
            }
            let (due, fire_at) = match missed {
                Some(missed) => {
                    tracing::info!(job = job.id.as_str(), missed = %missed, "catching up a run missed while the agent was down");
                    (missed, now)
                }
                None => {
                    let Some(due) = next_due(&job, now) else {
                        tracing::warn!(job = job.id.as_str(), "the schedule never fires again");
                        continue;
                    };
                    (due, due + jitter(self.delay()))
                }
            };
            next.insert(job.id.clone(), Scheduled { job, fire_at, due });
        }
        self.schedule = next;
        let _ = self.state.save(&self.state_dir);
    }

    fn until_next(&self) -> Duration {
        let now = Utc::now();
        let soonest = self.schedule.values().map(|s| s.fire_at).min();
        // Wake at least once a minute, so clock jumps (suspend, NTP) are noticed.
        let cap = Duration::from_secs(60);
        match soonest {
            Some(t) if t > now => (t - now).to_std().unwrap_or(cap).min(cap),
            Some(_) => Duration::ZERO,
            None => cap,
        }
    }

    fn fire_due(&mut self) {
        let now = Utc::now();
        let delay = self.delay();
        let due: Vec<String> =
            self.schedule.iter().filter(|(_, s)| s.fire_at <= now).map(|(id, _)| id.clone()).collect();
        for id in due {
            let s = self.schedule.get_mut(&id).expect("just listed");
            let scheduled_for = s.due;
            let next = next_due(&s.job, now.max(s.due));
            let job = s.job.clone();
            match next {
                Some(n) => {
                    s.due = n;
                    s.fire_at = n + jitter(delay);
                }
                None => {
                    self.schedule.remove(&id);
                }
            }
            let st = self.state.jobs.entry(id.clone()).or_default();
            st.last_scheduled = Some(scheduled_for.to_rfc3339());
            if self.running.contains_key(&id) {
                st.skipped += 1;
                tracing::warn!(job = id.as_str(), "previous run still going; this run is skipped");
                continue;
            }
            st.runs += 1;
            self.start(job);
        }
        let _ = self.state.save(&self.state_dir);
        self.publish();
    }

    fn start(&mut self, job: Job) {
        tracing::info!(job = job.id.as_str(), "job started");
        let pid = Arc::new(Mutex::new(None));
        self.running.insert(job.id.clone(), Running { pid: pid.clone() });
        // `status` shows it running (while this agent lives).
        self.state.jobs.entry(job.id.clone()).or_default().running_since = Some(now_text());
        if let Err(e) = self.state.save(&self.state_dir) {
            tracing::error!(error = %e, "cannot save the agent state");
        }
        let runner = self.runner.clone();
        let tx = self.tx.clone();
        let ping = self.config.notifications.ping_url.as_ref().map(|u| u.get_ref().clone());
        let http = self.http.clone();
        let spawned = std::thread::Builder::new().name(job.id.clone()).spawn(move || {
            let started = Utc::now();
            if let Some(url) = &ping {
                notify_ping(&http, &format!("{}/start", url.trim_end_matches('/')), &job.id);
            }
            let outcome = runner.run(&job, &pid);
            let _ = tx.send(Event::Finished { job: job.id.clone(), started, outcome });
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a job thread");
        }
    }

    fn finished(&mut self, id: &str, started: DateTime<Utc>, outcome: Outcome) {
        self.running.remove(id);
        let finished = Utc::now();
        let duration_ms = (finished - started).num_milliseconds().max(0) as u64;
        let kind = self.schedule.get(id).map(|s| s.job.kind);
        if kind == Some(Kind::Snapshot) && outcome.error.is_some() {
            // A step killed while the service was frozen must not leave it frozen.
            if let Some(service) = self.schedule.get(id).and_then(|s| s.job.service.clone()) {
                let host = crate::runtime::Host::new(crate::runtime::Paths {
                    root: self.opts.root.clone(),
                    run_root: self.opts.run_root.clone(),
                });
                if let Err(e) = crate::snapshot::thaw_abandoned(&host, &service) {
                    tracing::error!(service = service.as_str(), error = %e, "cannot check whether the service was left frozen");
                }
            }
        }
        let ok = outcome.error.is_none();
        let record = RunRecord {
            started: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            finished: now_text(),
            ok,
            error: outcome.error.clone(),
            duration_ms,
            bytes_added: outcome.bytes_added,
            frozen_ms: outcome.frozen_ms,
            time_to_healthy_ms: outcome.time_to_healthy_ms,
            snapshots: outcome.snapshots,
        };
        match &record.error {
            None => tracing::info!(
                job = id,
                duration_ms,
                bytes_added = record.bytes_added,
                frozen_ms = record.frozen_ms,
                time_to_healthy_ms = record.time_to_healthy_ms,
                "job succeeded"
            ),
            Some(e) => tracing::error!(job = id, duration_ms, error = e.as_str(), "job failed"),
        }
        let st = self.state.jobs.entry(id.to_string()).or_default();
        if ok {
            st.last_success = Some(record.finished.clone());
        } else {
            st.failures += 1;
        }
        st.last = Some(record.clone());
        st.running_since = None;
        if let Err(e) = self.state.save(&self.state_dir) {
            tracing::error!(error = %e, "cannot save the agent state");
        }
        self.publish();
        self.notify(id, kind, &record);
        if matches!(kind, Some(Kind::Snapshot | Kind::Replication)) {
            self.read_repositories();
        }
    }

    /// Reads the repositories' sizes and newest snapshots on a thread of its own (a slow
    /// store must not hold the schedule up); the main loop records them.
    fn read_repositories(&mut self) {
        if let Some(again) = self.reading.as_mut() {
            *again = true; // read again once the reading under way is in
            return;
        }
        self.reading = Some(false);
        let tx = self.tx.clone();
        let paths = crate::runtime::Paths { root: self.opts.root.clone(), run_root: self.opts.run_root.clone() };
        let host = crate::runtime::Host::new(paths.clone());
        let fallback = std::env::var_os("LIFEBOAT_PASSWORD_FILE").map(PathBuf::from);
        let repositories = crate::ops::backup::repositories_at_a_glance(&host, Some(&self.config), fallback.as_deref());
        let spawned = std::thread::Builder::new().name("repositories".into()).spawn(move || {
            let host = crate::runtime::Host::new(paths);
            let list = crate::ops::backup::repository_summaries(&host, &repositories, READING_LIMIT);
            let _ = tx.send(Event::Repositories(list));
        });
        if let Err(e) = spawned {
            self.reading = None;
            tracing::error!(error = %e, "cannot start a thread to read the repositories");
        }
    }

    /// Pings and the failure command run on a thread of their own: a slow endpoint must not
    /// hold the schedule up.
    fn notify(&self, id: &str, kind: Option<Kind>, record: &RunRecord) {
        let ping = self.config.notifications.ping_url.as_ref().map(|u| u.get_ref().clone());
        let on_failure = if record.ok { None } else { self.config.notifications.on_failure.clone() };
        if ping.is_none() && on_failure.is_none() {
            return;
        }
        let http = self.http.clone();
        let (id, record) = (id.to_string(), record.clone());
        let kind = kind.map_or("unknown", Kind::as_str);
        std::thread::spawn(move || {
            if let Some(url) = ping {
                let url = url.trim_end_matches('/');
                let target = if record.ok { url.to_string() } else { format!("{url}/fail") };
                notify_ping(&http, &target, &summary(&id, &record));
            }
            if let Some(cmd) = on_failure {
                let status = std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(&cmd)
                    .env("LIFEBOAT_JOB", &id)
                    .env("LIFEBOAT_JOB_KIND", kind)
                    .env("LIFEBOAT_ERROR", record.error.as_deref().unwrap_or(""))
                    .stdin(std::process::Stdio::null())
                    .status();
                match status {
                    Ok(s) if s.success() => {}
                    Ok(s) => tracing::error!(command = cmd.as_str(), status = %s, "the on_failure command failed"),
                    Err(e) => tracing::error!(command = cmd.as_str(), error = %e, "cannot run the on_failure command"),
                }
            }
        });
    }

    fn reload(&mut self) {
        match Config::load(&self.opts.config_path) {
            Ok(config) => {
                if config.agent.metrics_listen.as_ref().map(|a| a.get_ref())
                    != self.config.agent.metrics_listen.as_ref().map(|a| a.get_ref())
                {
                    tracing::warn!("metrics_listen changed; it takes effect when the agent restarts");
                }
                self.config = config;
                self.plan(false);
                self.publish();
                tracing::info!(jobs = self.schedule.len(), "configuration reloaded");
            }
            Err(e) => tracing::error!(error = %e, "configuration not reloaded; the previous one stays in force"),
        }
    }

    /// Updates the metrics (served, and the textfile if configured).
    fn publish(&self) {
        let now = Utc::now();
        let metric_jobs: Vec<MetricJob<'_>> = self
            .schedule
            .iter()
            .map(|(id, s)| MetricJob {
                id,
                kind: s.job.kind.as_str(),
                state: self.state.jobs.get(id),
                next_run: Some(s.fire_at.max(now).timestamp()),
                running: self.running.contains_key(id),
            })
            .collect();
        let text = state::render_metrics(self.started_at, &metric_jobs, &self.state.repositories);
        if let Some(path) = &self.config.agent.metrics_textfile
            && let Err(e) = crate::fsutil::write_atomic_volatile(path, text.as_bytes())
        {
            tracing::error!(path = %path.display(), error = %e, "cannot write the metrics textfile");
        }
        *self.metrics.lock().unwrap() = text;
    }

    fn shut_down(&mut self, sig: Signal, rx: &mpsc::Receiver<Event>) {
        let grace = self
            .config
            .agent
            .shutdown_grace
            .as_ref()
            .and_then(|d| config::parse_duration(d.get_ref()).ok())
            .unwrap_or(Duration::from_secs(60));
        if !self.running.is_empty() {
            tracing::info!(signal = %sig, running = self.running.len(), grace_s = grace.as_secs(), "stopping: waiting for running jobs");
        }
        let deadline = std::time::Instant::now() + grace;
        let mut stopped = false;
        while !self.running.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() && !stopped {
                for (id, r) in &self.running {
                    if let Some(pid) = *r.pid.lock().unwrap() {
                        tracing::warn!(job = id.as_str(), pid, "grace period over; stopping the job");
                        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
                    }
                }
                stopped = true;
            }
            let wait = if stopped { Duration::from_secs(30) } else { left };
            match rx.recv_timeout(wait) {
                Ok(Event::Finished { job, started, outcome }) => self.finished(&job, started, outcome),
                Ok(Event::Signal(s)) if s != Signal::SIGHUP && !stopped => {
                    // A second signal: stop now.
                    tracing::warn!(signal = %s, "second signal; stopping jobs now");
                    for r in self.running.values() {
                        if let Some(pid) = *r.pid.lock().unwrap() {
                            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
                        }
                    }
                    stopped = true;
                }
                Ok(_) => {}
                Err(_) if stopped => {
                    for r in self.running.values() {
                        if let Some(pid) = *r.pid.lock().unwrap() {
                            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
                        }
                    }
                }
                Err(_) => {}
            }
        }
        let _ = self.state.save(&self.state_dir);
        tracing::info!(signal = %sig, "agent stopped");
    }
}

fn summary(id: &str, r: &RunRecord) -> String {
    match &r.error {
        None => format!("{id}: ok in {:.1} s", r.duration_ms as f64 / 1000.0),
        Some(e) => format!("{id}: FAILED after {:.1} s: {e}", r.duration_ms as f64 / 1000.0),
    }
}

fn notify_ping(http: &reqwest::blocking::Client, url: &str, body: &str) {
    match http.post(url).body(body.to_string()).send() {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(url, status = %r.status(), "notification ping refused"),
        Err(e) => {
            tracing::warn!(url, error = %crate::error::describe(&anyhow::Error::from(e)), "notification ping failed")
        }
    }
}

/// Serves the metrics text to any GET on `addr` (loopback only; validated with the config).
fn serve_metrics(addr: &str, metrics: Arc<Mutex<String>>) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen for metrics on {addr}"))?;
    tracing::info!(addr, "serving metrics");
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            // Read the request head (it may arrive in pieces), at most 8 KiB.
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let request = String::from_utf8_lossy(&buf);
            let response = if request.starts_with("GET ") {
                let body = metrics.lock().unwrap().clone();
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.0 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n".to_string()
            };
            let _ = conn.write_all(response.as_bytes());
        }
    })?;
    Ok(())
}

/// What `status` shows about one job.
#[derive(Debug, serde::Serialize)]
pub struct JobStatus {
    pub job: String,
    pub kind: &'static str,
    pub schedule: String,
    pub next_run: Option<String>,
    #[serde(flatten)]
    pub state: JobState,
}

/// Every job of `config` with its last run (from the state) and next run.
pub fn status(config: &Config, root: &Path) -> (Option<i32>, Vec<JobStatus>) {
    let dir = state_dir(config, root);
    let state = AgentState::load(&dir);
    let now = Utc::now();
    let list = jobs::jobs(config)
        .into_iter()
        .map(|job| JobStatus {
            next_run: next_due(&job, now).map(|t| t.with_timezone(&Local).to_rfc3339()),
            kind: job.kind.as_str(),
            schedule: job.schedule_text.clone(),
            state: state.jobs.get(&job.id).cloned().unwrap_or_default(),
            job: job.id,
        })
        .collect();
    (running_agent(&dir), list)
}
