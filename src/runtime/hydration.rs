//! What an instant restore's hydrator reports about the container it is filling
//! (`<container>/hydration.json`): read by `ps`, `status` and `inspect`, and by whoever must
//! stop the hydrator (removing the container).
//!
//! The hydrator itself lives in `snapshot::instant`; the runtime only needs to know that a
//! volume is served through an overlay while it runs ([`super::volume::Hydrating`]).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::volume::Owner;

const FILE: &str = "hydration.json";

/// Where a hydration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Mounting the volumes' lazy views.
    Mounting,
    /// Copying the snapshot's files into the volumes while the service runs.
    Hydrating,
    /// Every file is in: the service is restarted once on its plain volumes.
    Switching,
    /// The volumes are ordinary ones; the repository is no longer needed.
    Done,
    /// Stopped by a failure it could not get past (`error` says which).
    Failed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hydration {
    pub hydrator: Owner,
    /// The snapshot being hydrated (its full ID) and the repository it is read from.
    pub snapshot: String,
    pub repository: String,
    /// The volumes it fills.
    pub volumes: Vec<String>,
    pub phase: Phase,
    pub started: String,
    /// Files and bytes of the volumes in the snapshot, and how many are in place.
    pub total_files: u64,
    pub total_bytes: u64,
    pub done_files: u64,
    pub done_bytes: u64,
    /// Bytes of file data read from the repository (by the service's reads and the copy).
    pub fetched_bytes: u64,
    /// Hot-set files (read by the service's start-up in its last drill) copied first.
    #[serde(default)]
    pub hot_files: u64,
    /// The last error met, while it lasts (the hydrator retries a repository that stopped
    /// answering); the reason for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the service was stopped for the switch to plain volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// When it was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

impl Hydration {
    /// The record in container directory `dir`, if an instant restore made one.
    pub fn load(dir: &Path) -> Option<Hydration> {
        serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
    }

    /// Writes the record, stamped with the time (`updated`): what it says was true then.
    pub fn save(&mut self, dir: &Path) -> std::io::Result<()> {
        self.updated = Some(crate::sys::now_rfc3339());
        crate::fsutil::write_atomic(&dir.join(FILE), &serde_json::to_vec_pretty(self).expect("serialises"))
    }

    /// Whether it still has work to do (not done, not failed).
    pub fn unfinished(&self) -> bool {
        !matches!(self.phase, Phase::Done | Phase::Failed)
    }

    /// The share of bytes in place, in percent (files when there are no bytes).
    pub fn percent(&self) -> u64 {
        match (self.total_bytes, self.total_files) {
            (0, 0) => 100,
            (0, f) => self.done_files * 100 / f,
            (b, _) => self.done_bytes.min(b) * 100 / b,
        }
    }

    /// What `ps` adds to an unfinished hydration's status: `hydrating 37%`, or why it is not
    /// moving.
    pub fn status_note(&self) -> Option<String> {
        if !self.unfinished() {
            return (self.phase == Phase::Failed)
                .then(|| format!("hydration failed: {}", self.error.as_deref().unwrap_or("unknown")));
        }
        if !self.hydrator.alive() {
            return Some("hydration interrupted: lifeboat restore --finish or --undo".into());
        }
        Some(match (&self.error, self.phase) {
            (Some(e), _) => format!("hydration stalled at {}%: {e}", self.percent()),
            (None, Phase::Switching) => "switching to plain volumes".into(),
            (None, Phase::Mounting) => "hydrating 0%".into(),
            _ => format!("hydrating {}%", self.percent()),
        })
    }
}

/// Stops the hydrator of the container in `dir`, if one runs, and waits for it to go (it
/// unmounts what it served). Used before the container is removed.
pub fn stop_hydrator(dir: &Path) {
    let Some(h) = Hydration::load(dir) else { return };
    if !h.hydrator.alive() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(h.hydrator.pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let until = Instant::now() + Duration::from_secs(10);
    while h.hydrator.alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if h.hydrator.alive() {
        tracing::warn!(pid = h.hydrator.pid, "the hydrator did not stop in 10 s; killing it");
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let until = Instant::now() + Duration::from_secs(5);
        while h.hydrator.alive() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
