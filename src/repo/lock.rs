//! Repository locks: shared for writers (snapshot, copy), exclusive for forget and prune.
//!
//! A lock is a sealed object naming its host, process, the process's start time and the
//! moment it was last refreshed. Its holder refreshes it on a thread of its own (a new object,
//! then the old one deleted), every `refresh` interval; the lock says how long after its last
//! refresh others may call it stale (six intervals: 30 minutes by default). A lock is stale
//! only then, or when its process is provably gone on this same host (no such process, or
//! another one that started at a different time under the same PID).
//!
//! A holder whose refreshes keep failing stops writing before anyone could call its lock
//! stale: once the last good refresh is older than the stale age less one and a half
//! intervals, the lock is lost and every later write of the repository fails (the writer and
//! `save_object` check). A lock is released when it is dropped, on every exit path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::crypto::MasterKey;
use super::{RepoError, Repository, Result};
use crate::backend::{Backend, Kind};

/// How often a holder refreshes its lock, unless the repository was told otherwise.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A lock is stale this many refresh intervals after its last refresh.
const STALE_INTERVALS: u32 = 6;
/// Locks written before refresh existed (no `stale_after_s`) are stale after this long.
const LEGACY_STALE_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: i32,
    /// When the lock was taken or last refreshed (RFC 3339, the holder's clock).
    pub time: String,
    pub exclusive: bool,
    /// The holder process's start time (clock ticks since boot), to tell a reused PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
    /// The holder's boot (`/proc/sys/kernel/random/boot_id`): a lock is judged by its process
    /// only on the very machine, and boot, that wrote it (two hosts may share a host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Seconds after `time` when others may call the lock stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_s: Option<u64>,
}

impl LockInfo {
    fn stale_after(&self) -> Duration {
        self.stale_after_s.map(Duration::from_secs).unwrap_or(LEGACY_STALE_AFTER)
    }

    /// Whether nobody holds this lock any more: its process is gone from this host, or it
    /// has not been refreshed for longer than it said it would be.
    pub fn is_stale(&self) -> bool {
        let same_boot = self.boot_id.as_deref().is_none_or(|b| Some(b) == crate::sys::boot_id().as_deref());
        if self.host == crate::sys::hostname() && same_boot {
            match crate::sys::process_start(self.pid) {
                None => return true,
                Some(start) if self.process_start.is_some_and(|s| s != start) => return true,
                Some(_) => {}
            }
        }
        let Ok(time) = chrono::DateTime::parse_from_rfc3339(&self.time) else { return true };
        let age = chrono::Utc::now().signed_duration_since(time).to_std().unwrap_or_default();
        age > self.stale_after()
    }

    /// Whether the holder is provably gone: it ran on this very host and boot, and its process
    /// is not there any more (or its PID is another process's now). A lock stale only by its
    /// age may be another host's with a wrong clock: it is never removed on that ground.
    pub fn holder_gone_here(&self) -> bool {
        let same_boot = self.boot_id.is_some() && self.boot_id == crate::sys::boot_id();
        same_boot
            && self.host == crate::sys::hostname()
            && match crate::sys::process_start(self.pid) {
                None => true,
                Some(start) => self.process_start.is_some_and(|s| s != start),
            }
    }
}

/// The live locks of others (name and what it says), and the stale ones.
type Others = (Vec<(String, LockInfo)>, Vec<StaleLock>);

/// A stale lock seen while taking one: its name, and whether its holder is provably gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleLock {
    pub name: String,
    pub holder_gone: bool,
}

/// What a held lock shares with its refresh thread and the repository's writers.
#[derive(Debug)]
pub struct LockHealth {
    /// The lock object's current name.
    name: Mutex<String>,
    /// Set when the lock can no longer be trusted: refreshes failed for too long, or its
    /// object was removed by someone else (`repo unlock --all`).
    lost: AtomicBool,
    /// Until when the lock may be trusted: its last stamp (taken before it was written) plus
    /// its stale age, less one and a half refresh intervals. Checked by every write, so a
    /// refresh that hangs in the backend cannot let a write through after others may have
    /// called the lock stale.
    trusted_until: Mutex<Instant>,
    location: String,
}

impl LockHealth {
    pub fn check(&self) -> Result<()> {
        let expired = Instant::now() > *self.trusted_until.lock().unwrap_or_else(|e| e.into_inner());
        if expired || self.lost.load(Ordering::SeqCst) {
            return Err(RepoError::Locked {
                location: self.location.clone(),
                what: "no longer locked by this process: its lock could not be refreshed (or was removed), so \
                       nothing more is written in this run"
                    .into(),
            });
        }
        Ok(())
    }
}

/// The locks a repository's process holds, watched by its writers.
#[derive(Debug, Default)]
pub struct HeldLocks(Mutex<Vec<Weak<LockHealth>>>);

impl HeldLocks {
    /// An error if any lock this process holds was lost.
    pub fn check(&self) -> Result<()> {
        let held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for h in held.iter().filter_map(Weak::upgrade) {
            h.check()?;
        }
        Ok(())
    }

    fn add(&self, h: &Arc<LockHealth>) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|w| w.strong_count() > 0);
        held.push(Arc::downgrade(h));
    }
}

/// A held lock: refreshed while held, removed from the repository when dropped.
#[derive(Debug)]
pub struct Lock {
    /// The stale locks seen when it was taken (a writer died: what it left may be taken in).
    pub stale: Vec<StaleLock>,
    backend: Arc<dyn Backend>,
    health: Arc<LockHealth>,
    stop: Option<Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl Lock {
    /// Takes a lock, waiting up to the repository's lock wait for conflicting ones to be
    /// released, then brings the repository's index up to date: what others wrote or pruned
    /// before the lock was taken is seen.
    pub fn acquire(repo: &mut Repository, exclusive: bool) -> Result<Lock> {
        let deadline = Instant::now() + repo.lock_wait();
        let mut pause = Duration::from_millis(100);
        let lock = loop {
            match Self::try_acquire(repo, exclusive) {
                Err(RepoError::Locked { .. }) if Instant::now() + pause < deadline => {
                    tracing::info!(
                        location = repo.location(),
                        wait_ms = pause.as_millis() as u64,
                        "repository locked; waiting"
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => break other?,
            }
        };
        repo.refresh_index()?;
        Ok(lock)
    }

    fn info(exclusive: bool, refresh: Duration) -> LockInfo {
        let pid = std::process::id() as i32;
        LockInfo {
            host: crate::sys::hostname(),
            pid,
            time: crate::sys::now_rfc3339(),
            exclusive,
            process_start: crate::sys::process_start(pid),
            boot_id: crate::sys::boot_id(),
            stale_after_s: Some(stale_after(refresh).as_secs()),
        }
    }

    fn try_acquire(repo: &Repository, exclusive: bool) -> Result<Lock> {
        for (name, other) in Self::others(repo)?.0 {
            if other.exclusive || exclusive {
                let what = if other.exclusive { "an exclusive" } else { "a" };
                return Err(RepoError::Locked {
                    location: repo.location(),
                    what: format!(
                        "locked: {what} lock {} is held by pid {} on {} since {} (remove it with `lifeboat repo unlock` if that process is gone)",
                        name.get(..12).unwrap_or(&name),
                        other.pid,
                        other.host,
                        other.time
                    ),
                });
            }
        }
        let refresh = repo.lock_refresh();
        let stamped = Instant::now();
        let name = repo.save_lock(&Self::info(exclusive, refresh))?;
        // Two lockers may both have passed the check before either wrote its lock: each looks
        // again after writing its own, and backs off if it now sees one it conflicts with.
        // Whichever wrote second sees the other, so they never both go on.
        let (live, stale) = Self::others(repo)?;
        let conflict = live.into_iter().any(|(n, other)| n != name && (exclusive || other.exclusive));
        if conflict {
            let _ = repo.backend().delete(Kind::Lock, &name);
            return Err(RepoError::Locked {
                location: repo.location(),
                what: "locked: another process took a lock at the same moment; try again".into(),
            });
        }
        let health = Arc::new(LockHealth {
            name: Mutex::new(name),
            lost: AtomicBool::new(false),
            trusted_until: Mutex::new(stamped + trust(refresh)),
            location: repo.location(),
        });
        repo.held_locks().add(&health);
        let (stop, stopped) = std::sync::mpsc::channel();
        let refresher = {
            let backend = repo.backend_arc();
            let key = repo.key().clone();
            let health = health.clone();
            std::thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || refresh_loop(&*backend, &key, &health, exclusive, refresh, &stopped))
                .map_err(|e| RepoError::Other {
                    location: repo.location(),
                    what: format!("cannot start the lock refresh: {e}"),
                })?
        };
        Ok(Lock { stale, backend: repo.backend_arc(), health, stop: Some(stop), refresher: Some(refresher) })
    }

    /// Live locks of other processes (one that cannot be read is held, as a lock being
    /// written would be), and the stale ones.
    fn others(repo: &Repository) -> Result<Others> {
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for name in repo.backend().list(Kind::Lock)? {
            match repo.load_object::<LockInfo>(Kind::Lock, &name) {
                Ok(info) if info.is_stale() => stale.push(StaleLock { holder_gone: info.holder_gone_here(), name }),
                Ok(info) => out.push((name, info)),
                Err(RepoError::Backend(e)) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(lock = name.as_str(), error = %e, "an unreadable lock; treated as held");
                    out.push((name, unreadable()));
                }
            }
        }
        Ok((out, stale))
    }

    /// An error if this lock was lost (its refreshes failed for too long, or it was removed).
    pub fn check(&self) -> Result<()> {
        self.health.check()
    }

    /// Releases the lock now, reporting a failure to remove it (dropping it does the same,
    /// silently).
    pub fn release(mut self) -> Result<()> {
        self.stop_refreshing();
        let name = self.health.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.backend.delete(Kind::Lock, &name)?;
        Ok(())
    }

    fn stop_refreshing(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }

    /// Removes every stale lock (or all locks with `all`); returns how many.
    pub fn remove_stale(repo: &Repository, all: bool) -> Result<usize> {
        let mut n = 0;
        for name in repo.backend().list(Kind::Lock)? {
            let stale = all
                || match repo.load_object::<LockInfo>(Kind::Lock, &name) {
                    Ok(info) => info.is_stale(),
                    // Gone meanwhile, or damaged (it can never be anyone's): removed.
                    Err(RepoError::Backend(e)) if e.is_not_found() => true,
                    Err(RepoError::Corrupt { .. }) => true,
                    // A read that failed says nothing about the lock: it stays.
                    Err(e) => return Err(e),
                };
            if stale {
                repo.backend().delete(Kind::Lock, &name)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.refresher.is_none() {
            return; // released
        }
        self.stop_refreshing();
        let name = self.health.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = self.backend.delete(Kind::Lock, &name) {
            tracing::warn!(lock = name.as_str(), error = %e, "cannot remove a lock; it turns stale on its own");
        }
    }
}

/// How long a lock stamped now may be trusted by its holder: its stale age less one and a half
/// intervals (the margin for a write already under way).
fn trust(every: Duration) -> Duration {
    stale_after(every).saturating_sub(every * 3 / 2)
}

/// How long after its last refresh a lock refreshed every `every` may be called stale: six
/// intervals, in whole seconds rounded up (as the lock records it).
fn stale_after(every: Duration) -> Duration {
    Duration::from_secs((every * STALE_INTERVALS).as_millis().div_ceil(1000).max(1) as u64)
}

fn unreadable() -> LockInfo {
    LockInfo {
        host: "?".into(),
        pid: 0,
        time: crate::sys::now_rfc3339(),
        exclusive: true,
        process_start: None,
        boot_id: None,
        stale_after_s: Some(LEGACY_STALE_AFTER.as_secs()),
    }
}

/// Refreshes the lock every `every` until told to stop; marks it lost when it cannot be
/// refreshed in time or has been removed.
fn refresh_loop(
    backend: &dyn Backend,
    key: &MasterKey,
    health: &LockHealth,
    exclusive: bool,
    every: Duration,
    stop: &Receiver<()>,
) {
    loop {
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let old = health.name.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Ok(None) = backend.stat(Kind::Lock, &old) {
            tracing::error!(lock = old.as_str(), "this process's lock was removed by someone else; stopping");
            health.lost.store(true, Ordering::SeqCst);
            return;
        }
        let stamped = Instant::now();
        let info = Lock::info(exclusive, every);
        let sealed = key.seal(&serde_json::to_vec(&info).expect("a lock serialises"));
        let name = crate::fsutil::random_hex(32);
        match backend.write(Kind::Lock, &name, &sealed) {
            Ok(()) => {
                *health.name.lock().unwrap_or_else(|e| e.into_inner()) = name;
                *health.trusted_until.lock().unwrap_or_else(|e| e.into_inner()) = stamped + trust(every);
                if let Err(e) = backend.delete(Kind::Lock, &old) {
                    tracing::warn!(lock = old.as_str(), error = %e, "cannot remove the lock just refreshed");
                }
                tracing::debug!("repository lock refreshed");
            }
            Err(e) => tracing::warn!(error = %e, "cannot refresh the repository lock; trying again"),
        }
        if health.check().is_err() {
            tracing::error!("the repository lock could not be refreshed in time; stopping before it turns stale");
            health.lost.store(true, Ordering::SeqCst);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::Local;
    use crate::backend::{BackendError, Result as BackendResult};
    use std::sync::atomic::AtomicUsize;

    fn repo(dir: &std::path::Path) -> Repository {
        crate::repo::tests::fast_kdf();
        drop(Repository::init(Box::new(Local::new(dir)), b"pw").unwrap());
        let mut r = Repository::open(Box::new(Local::new(dir)), b"pw").unwrap();
        r.set_lock_refresh(Duration::from_millis(150));
        r
    }

    /// The locks there now (one replaced by a refresh between listing and reading is left out).
    fn locks(r: &Repository) -> Vec<(String, LockInfo)> {
        let names = r.backend().list(Kind::Lock).unwrap();
        names.into_iter().filter_map(|n| Some((n.clone(), r.load_object::<LockInfo>(Kind::Lock, &n).ok()?))).collect()
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_held_lock_is_refreshed_and_released_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = repo(dir.path());
        let lock = Lock::acquire(&mut r, false).unwrap();
        let first = locks(&r);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].1.stale_after_s, Some(1), "six intervals of 150 ms, at least a second");
        assert_eq!(first[0].1.process_start, crate::sys::process_start(std::process::id() as i32));
        // A new object replaces the old one: never two, never none.
        wait_for("a refresh", || locks(&r).first().is_some_and(|(n, _)| *n != first[0].0));
        assert_eq!(locks(&r).len(), 1);
        lock.check().unwrap();
        drop(lock);
        assert!(locks(&r).is_empty(), "a dropped lock stays behind");
        // Released explicitly: the same, with a failure reported.
        let lock = Lock::acquire(&mut r, true).unwrap();
        lock.release().unwrap();
        assert!(locks(&r).is_empty());
    }

    #[test]
    fn others_see_a_live_lock_as_held_however_old_the_operation() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = repo(dir.path());
        let _lock = Lock::acquire(&mut r, false).unwrap();
        // Longer than the stale age (one second here): the refreshes keep it held.
        std::thread::sleep(Duration::from_millis(1600));
        let mut other = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let e = Lock::acquire(&mut other, true).unwrap_err();
        assert!(matches!(e, RepoError::Locked { .. }), "{e}");
    }

    #[test]
    fn staleness_is_the_lock_s_own_age_or_a_provably_gone_process() {
        let me = std::process::id() as i32;
        let here = crate::sys::hostname();
        let ago = |secs: i64| {
            (chrono::Utc::now() - chrono::TimeDelta::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        };
        let info = |host: &str, pid: i32, start: Option<u64>, time: String, stale: Option<u64>| LockInfo {
            host: host.into(),
            pid,
            time,
            exclusive: false,
            process_start: start,
            boot_id: crate::sys::boot_id(),
            stale_after_s: stale,
        };
        let start = crate::sys::process_start(me);
        assert!(!info(&here, me, start, ago(5), Some(60)).is_stale());
        // Not refreshed for longer than it said: stale, alive or not.
        assert!(info(&here, me, start, ago(120), Some(60)).is_stale());
        // Another host's lock: only its age counts.
        assert!(!info("elsewhere", i32::MAX, None, ago(100), Some(600)).is_stale());
        assert!(info("elsewhere", i32::MAX, None, ago(700), Some(600)).is_stale());
        // Written before refreshes existed: thirty minutes.
        assert!(!info("elsewhere", 1, None, ago(29 * 60), None).is_stale());
        assert!(info("elsewhere", 1, None, ago(31 * 60), None).is_stale());
        // This host: a process that is gone, or a reused PID (another start time).
        assert!(info(&here, i32::MAX, None, ago(1), Some(600)).is_stale());
        assert!(info(&here, me, start.map(|s| s + 1), ago(1), Some(600)).is_stale());
        assert!(info(&here, me, None, "not a time".into(), Some(600)).is_stale());
        // Another machine with the same host name: its processes are not ours to judge.
        let twin = LockInfo { boot_id: Some("another-boot".into()), ..info(&here, i32::MAX, None, ago(1), Some(600)) };
        assert!(!twin.is_stale());
    }

    /// A local backend whose lock writes start failing after `ok` of them (a store that went
    /// away), counting what it was asked.
    #[derive(Debug)]
    struct LockWritesFail {
        inner: Local,
        ok: usize,
        writes: AtomicUsize,
    }

    impl Backend for LockWritesFail {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn list(&self, kind: Kind) -> BackendResult<Vec<String>> {
            self.inner.list(kind)
        }
        fn read(&self, kind: Kind, name: &str) -> BackendResult<Vec<u8>> {
            self.inner.read(kind, name)
        }
        fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
            self.inner.read_range(kind, name, offset, length)
        }
        fn write(&self, kind: Kind, name: &str, data: &[u8]) -> BackendResult<()> {
            if kind == Kind::Lock && self.writes.fetch_add(1, Ordering::SeqCst) >= self.ok {
                let source = std::io::Error::from_raw_os_error(libc::EIO);
                return Err(BackendError::Io { location: self.location(), op: "write", what: name.into(), source });
            }
            self.inner.write(kind, name, data)
        }
        fn delete(&self, kind: Kind, name: &str) -> BackendResult<()> {
            self.inner.delete(kind, name)
        }
        fn stat(&self, kind: Kind, name: &str) -> BackendResult<Option<u64>> {
            self.inner.stat(kind, name)
        }
    }

    #[test]
    fn a_lock_that_cannot_be_refreshed_in_time_stops_every_write_before_it_turns_stale() {
        let dir = tempfile::tempdir().unwrap();
        drop(repo(dir.path()));
        let backend = LockWritesFail { inner: Local::new(dir.path()), ok: 1, writes: AtomicUsize::new(0) };
        let mut r = Repository::open(Box::new(backend), b"pw").unwrap();
        r.set_lock_refresh(Duration::from_millis(300));
        let lock = Lock::acquire(&mut r, false).unwrap();
        let taken = Instant::now();
        assert_eq!(locks(&r)[0].1.stale_after_s, Some(2), "six intervals of 300 ms, rounded up");
        wait_for("the lock to be given up", || lock.check().is_err());
        // Given up one and a half intervals before others could call it stale (2 s).
        assert!(taken.elapsed() < Duration::from_secs(2), "gave up after {:?}", taken.elapsed());
        let e = r.save_object(Kind::Snapshot, &"a snapshot").unwrap_err();
        assert!(matches!(e, RepoError::Locked { .. }) && e.to_string().contains("no longer locked"), "{e}");
        assert!(r.backend().list(Kind::Snapshot).unwrap().is_empty());
        r.save_blob(crate::repo::BlobType::Tree, b"a tree").unwrap();
        assert!(r.flush().is_err(), "a pack was written without a lock");
        assert!(r.backend().list(Kind::Pack).unwrap().is_empty());
    }

    /// A local backend that, when this process writes its first lock, first lets "another
    /// process" write its own (it had passed its check at the same moment).
    #[derive(Debug)]
    struct Concurrent {
        inner: Local,
        theirs: Mutex<Option<Vec<u8>>>,
    }

    impl Backend for Concurrent {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn list(&self, kind: Kind) -> BackendResult<Vec<String>> {
            self.inner.list(kind)
        }
        fn read(&self, kind: Kind, name: &str) -> BackendResult<Vec<u8>> {
            self.inner.read(kind, name)
        }
        fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
            self.inner.read_range(kind, name, offset, length)
        }
        fn write(&self, kind: Kind, name: &str, data: &[u8]) -> BackendResult<()> {
            if kind == Kind::Lock
                && let Some(theirs) = self.theirs.lock().unwrap().take()
            {
                self.inner.write(Kind::Lock, "0their0lock0", &theirs)?;
            }
            self.inner.write(kind, name, data)
        }
        fn delete(&self, kind: Kind, name: &str) -> BackendResult<()> {
            self.inner.delete(kind, name)
        }
        fn stat(&self, kind: Kind, name: &str) -> BackendResult<Option<u64>> {
            self.inner.stat(kind, name)
        }
    }

    /// A shared and an exclusive locker that both found the repository free: whichever
    /// writes second backs off, whatever kind it is (a snapshot once went on beside a prune
    /// that then deleted its packs).
    #[test]
    fn lockers_that_meet_at_the_same_moment_never_both_go_on() {
        for (mine, theirs) in [(false, true), (true, false), (true, true)] {
            let dir = tempfile::tempdir().unwrap();
            let key = repo(dir.path()).key().clone();
            let mut other = Lock::info(theirs, Duration::from_secs(300));
            other.host = "another-host".into();
            let sealed = key.seal(&serde_json::to_vec(&other).unwrap());
            let backend = Concurrent { inner: Local::new(dir.path()), theirs: Mutex::new(Some(sealed)) };
            let mut r = Repository::open(Box::new(backend), b"pw").unwrap();
            let e = Lock::acquire(&mut r, mine).unwrap_err();
            assert!(matches!(e, RepoError::Locked { .. }), "mine exclusive {mine}, theirs {theirs}: {e}");
            let left: Vec<String> = r.backend().list(Kind::Lock).unwrap();
            assert_eq!(left, ["0their0lock0"], "mine exclusive {mine}: my lock stayed");
        }
        // Two shared lockers do not conflict.
        let dir = tempfile::tempdir().unwrap();
        let key = repo(dir.path()).key().clone();
        let mut other = Lock::info(false, Duration::from_secs(300));
        other.host = "another-host".into();
        let sealed = key.seal(&serde_json::to_vec(&other).unwrap());
        let backend = Concurrent { inner: Local::new(dir.path()), theirs: Mutex::new(Some(sealed)) };
        let mut r = Repository::open(Box::new(backend), b"pw").unwrap();
        Lock::acquire(&mut r, false).unwrap();
    }

    #[test]
    fn a_lock_removed_by_someone_else_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = repo(dir.path());
        let lock = Lock::acquire(&mut r, false).unwrap();
        assert_eq!(Lock::remove_stale(&r, true).unwrap(), 1);
        wait_for("the removal to be noticed", || lock.check().is_err());
        assert!(r.save_object(Kind::Snapshot, &"x").is_err());
        drop(lock);
        // The next lock of this repository is a fresh one. (Refreshed every second: trusted
        // for 4.5 s, so a test machine busy with other tests does not starve it.)
        r.set_lock_refresh(Duration::from_secs(1));
        let again = Lock::acquire(&mut r, false).unwrap();
        again.check().unwrap();
    }

    #[test]
    fn taking_a_lock_reads_what_others_indexed_or_pruned_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = repo(dir.path());
        let mut b = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        let (id, _) = b.save_blob(crate::repo::BlobType::Data, b"written by b").unwrap();
        b.flush().unwrap();
        assert!(!a.has_blob(&id), "a opened before b wrote");
        drop(Lock::acquire(&mut a, false).unwrap());
        assert!(a.has_blob(&id), "the new index file was not read under the lock");
        // A prune that replaces every index file: the whole index is read again.
        let mut c = Repository::open(Box::new(Local::new(dir.path())), b"pw").unwrap();
        crate::repo::maintenance::prune(&mut c, false).unwrap();
        drop(Lock::acquire(&mut a, false).unwrap());
        assert!(!a.has_blob(&id), "a blob the prune removed is still taken for stored");
    }
}
