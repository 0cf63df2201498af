//! Repository locks: shared for writers (snapshot, copy), exclusive for prune. A lock is a
//! sealed object naming its host, process and time; one whose process is gone (same host) or
//! that is older than `STALE_AFTER` without refresh is stale and ignored.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RepoError, Repository, Result};
use crate::backend::Kind;

pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: i32,
    pub time: String,
    pub exclusive: bool,
}

impl LockInfo {
    fn is_stale(&self) -> bool {
        let host = crate::sys::hostname();
        if self.host == host && !crate::sys::alive(self.pid) {
            return true;
        }
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .map(|t| chrono::Utc::now().signed_duration_since(t).to_std().unwrap_or_default() > STALE_AFTER)
            .unwrap_or(true)
    }
}

/// A held lock; removed from the repository when released.
#[derive(Debug)]
pub struct Lock {
    name: String,
}

impl Lock {
    /// Takes a lock, waiting up to the repository's lock wait for conflicting ones to be
    /// released.
    pub fn acquire(repo: &Repository, exclusive: bool) -> Result<Lock> {
        let deadline = std::time::Instant::now() + repo.lock_wait();
        let mut pause = Duration::from_millis(100);
        loop {
            match Self::try_acquire(repo, exclusive) {
                Err(RepoError::Locked { .. }) if std::time::Instant::now() + pause < deadline => {
                    tracing::info!(
                        location = repo.location(),
                        wait_ms = pause.as_millis() as u64,
                        "repository locked; waiting"
                    );
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    fn try_acquire(repo: &Repository, exclusive: bool) -> Result<Lock> {
        for (name, other) in Self::others(repo)? {
            if other.exclusive || exclusive {
                let what = if other.exclusive { "an exclusive" } else { "a" };
                return Err(RepoError::Locked {
                    location: repo.location(),
                    what: format!(
                        "locked: {what} lock {} is held by pid {} on {} since {} (remove it with `lifeboat repo unlock` if that process is gone)",
                        &name[..12.min(name.len())],
                        other.pid,
                        other.host,
                        other.time
                    ),
                });
            }
        }
        let info = LockInfo {
            host: crate::sys::hostname(),
            pid: std::process::id() as i32,
            time: crate::sys::now_rfc3339(),
            exclusive,
        };
        let name = repo.save_object(Kind::Lock, &info)?;
        // Two exclusive lockers may both have passed the check: the later one backs off.
        if exclusive && Self::others(repo)?.into_iter().any(|(n, _)| n != name) {
            let _ = repo.backend().delete(Kind::Lock, &name);
            return Err(RepoError::Locked {
                location: repo.location(),
                what: "locked: another process took a lock at the same moment; try again".into(),
            });
        }
        Ok(Lock { name })
    }

    /// Live locks of other processes (stale ones are skipped).
    fn others(repo: &Repository) -> Result<Vec<(String, LockInfo)>> {
        let mut out = Vec::new();
        for name in repo.backend().list(Kind::Lock)? {
            let Ok(info) = repo.load_object::<LockInfo>(Kind::Lock, &name) else { continue };
            if !info.is_stale() {
                out.push((name, info));
            }
        }
        Ok(out)
    }

    pub fn release(self, repo: &Repository) -> Result<()> {
        repo.backend().delete(Kind::Lock, &self.name)?;
        Ok(())
    }

    /// Removes every stale lock (or all locks with `all`); returns how many.
    pub fn remove_stale(repo: &Repository, all: bool) -> Result<usize> {
        let mut n = 0;
        for name in repo.backend().list(Kind::Lock)? {
            let stale = repo.load_object::<LockInfo>(Kind::Lock, &name).map(|i| i.is_stale()).unwrap_or(true);
            if all || stale {
                repo.backend().delete(Kind::Lock, &name)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
