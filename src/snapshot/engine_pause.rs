//! Marks of the engine containers a snapshot has paused, so that none stays paused when the
//! snapshot dies: `<run root>/engine-paused/<container ID>` holds the snapshot process (with
//! its start time: a reused PID is not taken for it) and how to reach the engine. The mark is
//! made (exclusively) before the pause is asked for and removed only once the container is
//! known to be unpaused; a mark whose process is gone is swept by the next snapshot, which
//! unpauses the container.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Kind};
use crate::runtime::Host;
use crate::runtime::volume::Owner;

#[derive(Debug, Serialize, Deserialize)]
pub struct Mark {
    pub owner: Owner,
    pub engine: String,
    pub socket: PathBuf,
}

fn dir(host: &Host) -> PathBuf {
    host.paths().run_root.join("engine-paused")
}

/// Container IDs of an engine are 64 hex digits (they name files here).
pub fn id_ok(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn kind_of(scheme: &str) -> Option<Kind> {
    [Kind::Docker, Kind::Podman].into_iter().find(|k| k.scheme() == scheme)
}

fn read(path: &Path) -> Option<Mark> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Every change to the marks holds this lock: a sweep, a guard and a new snapshot never act
/// on a mark another has just replaced.
fn locked(host: &Host) -> anyhow::Result<crate::fsutil::FileLock> {
    let dir = dir(host);
    std::fs::create_dir_all(&dir)?;
    crate::fsutil::FileLock::exclusive(&dir.join(".lock")).with_context(|| format!("cannot lock {}", dir.display()))
}

/// Marks container `id` as being paused by this process. Refused if a live snapshot holds
/// it (two snapshots of one service at once); a dead one's mark is taken over (its
/// container unpaused first).
pub fn mark(host: &Host, engine: &Engine, id: &str) -> anyhow::Result<()> {
    if !id_ok(id) {
        bail!("the engine gave container ID {id:?}, which is not one");
    }
    let _lock = locked(host)?;
    let path = dir(host).join(id);
    let mark =
        Mark { owner: Owner::this_process(), engine: engine.kind.scheme().into(), socket: engine.socket().into() };
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(&serde_json::to_vec(&mark)?)?;
                f.sync_all()?;
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(&path) {
                Some(m) if m.owner.alive() => bail!(crate::runtime::container::ContainerError::Conflict(format!(
                    "another snapshot (process {}) has container {} paused; try again when it is done",
                    m.owner.pid,
                    &id[..12]
                ))),
                _ => release_abandoned(&path, id),
            },
            Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
        }
    }
    bail!("cannot mark container {} as paused: {} keeps coming back", &id[..12], path.display())
}

/// Removes this process's mark of `id` (the container is unpaused).
pub fn unmark(host: &Host, id: &str) {
    let Ok(_lock) = locked(host) else { return };
    let path = dir(host).join(id);
    if read(&path).is_some_and(|m| m.owner == Owner::this_process()) {
        let _ = std::fs::remove_file(&path);
    }
}

/// Unpauses the container of a mark whose snapshot died, and removes the mark (kept if the
/// engine cannot be asked: the next sweep tries again). The caller holds the lock.
fn release_abandoned(path: &Path, id: &str) {
    let Some(m) = read(path) else {
        let _ = std::fs::remove_file(path);
        return;
    };
    if m.owner.alive() {
        return;
    }
    let unpaused = (|| -> anyhow::Result<()> {
        let kind = kind_of(&m.engine).context("an unknown engine")?;
        let engine = Engine::at(kind, &m.socket)?;
        if engine.has_container(id)? && engine.is_paused(id)? {
            tracing::warn!(
                container = id,
                pid = m.owner.pid,
                "unpausing a container left paused by a snapshot that died"
            );
            engine.unpause(id)?;
        }
        Ok(())
    })();
    match unpaused {
        Ok(()) => {
            let _ = std::fs::remove_file(path);
        }
        Err(e) => tracing::error!(container = id, error = %e, "cannot unpause a container a dead snapshot paused"),
    }
}

/// Every mark whose snapshot died: its container unpaused. Run at each snapshot.
pub fn sweep(host: &Host) {
    let Ok(entries) = std::fs::read_dir(dir(host)) else { return };
    let ids: Vec<String> =
        entries.flatten().filter_map(|e| e.file_name().to_str().filter(|n| id_ok(n)).map(String::from)).collect();
    if ids.is_empty() {
        return;
    }
    let Ok(_lock) = locked(host) else { return };
    for id in ids {
        release_abandoned(&dir(host).join(&id), &id);
    }
}

/// Whether a live snapshot other than this process has container `id` paused.
pub fn held_by_another(host: &Host, id: &str) -> Option<i32> {
    let m = read(&dir(host).join(id))?;
    (m.owner.alive() && m.owner != Owner::this_process()).then_some(m.owner.pid)
}

/// The thaw guard's part: unpauses container `id` while `owner`'s mark is still on it, and
/// watches a little longer for a pause that was on its way when the snapshot died. The mark
/// goes only if it is still `owner`'s and the container was seen unpaused at the end.
pub fn guard_release(host: &Host, owner: u32, id: &str) -> anyhow::Result<bool> {
    let path = dir(host).join(id);
    let ours = |m: &Option<Mark>| m.as_ref().is_some_and(|m| m.owner.pid == owner as i32);
    let first = read(&path);
    if !ours(&first) {
        return Ok(false);
    }
    let m = first.expect("checked");
    let kind = kind_of(&m.engine).context("an unknown engine")?;
    let engine = Engine::at(kind, &m.socket)?;
    let until = Instant::now() + Duration::from_secs(3);
    let mut unpaused = false;
    loop {
        {
            let _lock = locked(host)?;
            // Taken over meanwhile (a sweep, then another snapshot): that one's pause is left be.
            if !ours(&read(&path)) {
                return Ok(unpaused);
            }
            if engine.is_paused(id)? {
                engine.unpause(id)?;
                unpaused = true;
            }
            if Instant::now() > until {
                if !engine.is_paused(id)? {
                    let _ = std::fs::remove_file(&path);
                }
                return Ok(unpaused);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
