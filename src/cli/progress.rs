//! Progress for long transfers: a bar per blob on a terminal, one line per blob otherwise,
//! nothing with `--quiet`. Always on stderr, so stdout stays for results.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::output::human_size;
use lifeboat::image::Digest;
use lifeboat::registry::{BlobEvent, Progress};

pub enum Transfers {
    Quiet,
    Lines,
    Bars { multi: MultiProgress, bars: Mutex<HashMap<String, ProgressBar>> },
}

impl Transfers {
    pub fn new(quiet: bool) -> Transfers {
        if quiet {
            Transfers::Quiet
        } else if std::io::stderr().is_terminal() {
            Transfers::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Transfers::Lines
        }
    }
}

fn event_text(size: u64, event: &BlobEvent) -> String {
    match event {
        BlobEvent::Exists => "already exists".to_string(),
        BlobEvent::Transferred => format!("done ({})", human_size(size)),
        BlobEvent::Mounted(from) => format!("mounted from {from}"),
    }
}

impl Progress for Transfers {
    fn start(&self, digest: &Digest, size: u64) {
        if let Transfers::Bars { multi, bars } = self {
            let bar = multi.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(digest.hex()[..12].to_string());
            bars.lock().unwrap().insert(digest.hex(), bar);
        }
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        if let Transfers::Bars { bars, .. } = self
            && let Some(bar) = bars.lock().unwrap().get(&digest.hex())
        {
            bar.inc(bytes);
        }
    }

    fn done(&self, digest: &Digest, size: u64, event: &BlobEvent) {
        match self {
            Transfers::Quiet => {}
            Transfers::Lines => eprintln!("{}: {}", &digest.hex()[..12], event_text(size, event)),
            Transfers::Bars { multi, bars } => {
                if let Some(bar) = bars.lock().unwrap().remove(&digest.hex()) {
                    bar.finish_and_clear();
                }
                let _ = multi.println(format!("{}: {}", &digest.hex()[..12], event_text(size, event)));
            }
        }
    }
}

/// A spinner with a message for long work whose size is not known up front (snapshots,
/// restores); only on a terminal, drawn from its first message on (a password prompt before
/// it stays readable), cleared when dropped.
pub struct Activity {
    bar: Option<Spinner>,
}

/// A cheap handle on an [`Activity`]'s spinner.
#[derive(Clone)]
pub struct Spinner {
    bar: ProgressBar,
    ticking: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Spinner {
    pub fn set_message(&self, message: String) {
        if !self.ticking.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        self.bar.set_message(message);
    }
}

impl Activity {
    pub fn new(quiet: bool) -> Activity {
        if quiet || !std::io::stderr().is_terminal() {
            return Activity { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template"));
        Activity { bar: Some(Spinner { bar, ticking: Default::default() }) }
    }

    /// The spinner to update, if there is one.
    pub fn bar(&self) -> Option<Spinner> {
        self.bar.clone()
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(s) = &self.bar {
            s.bar.finish_and_clear();
        }
    }
}

/// A snapshot's progress line: how far against the expected totals (percentage, rate, time
/// left) once they are known, else the running counts.
pub fn snapshot_line(
    name: &str,
    now: &lifeboat::repo::tree::ArchiveStats,
    expected: Option<lifeboat::repo::tree::ArchiveStats>,
    elapsed: std::time::Duration,
) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = now.bytes as f64 / secs;
    let detail = format!("{} read, {} new", now.files_read, human_size(now.new_bytes));
    match expected.filter(|t| t.bytes > 0 && now.bytes <= t.bytes) {
        Some(t) => {
            let fraction = now.bytes as f64 / t.bytes as f64;
            let left = if rate > 0.0 { (t.bytes - now.bytes) as f64 / rate } else { f64::INFINITY };
            format!(
                "snapshot {name}: {:.0}% of {}, {}/s, ETA {}, {} of {} files ({detail})",
                fraction * 100.0,
                human_size(t.bytes),
                human_size(rate as u64),
                eta(left),
                now.files,
                t.files
            )
        }
        None => format!(
            "snapshot {name}: {}, {}/s, {} files ({detail})",
            human_size(now.bytes),
            human_size(rate as u64),
            now.files
        ),
    }
}

/// A restore's progress line: how far against what it will write (percentage, rate, time
/// left) when known, else the running counts.
pub fn restore_line(name: &str, now: &lifeboat::repo::tree::RestoreStats, elapsed: std::time::Duration) -> String {
    let rate = now.bytes as f64 / elapsed.as_secs_f64().max(0.001);
    if now.expected_bytes == 0 || now.bytes > now.expected_bytes {
        return format!(
            "restore {name}: {}, {}/s, {} files",
            human_size(now.bytes),
            human_size(rate as u64),
            now.files
        );
    }
    let left = if rate > 0.0 { (now.expected_bytes - now.bytes) as f64 / rate } else { f64::INFINITY };
    format!(
        "restore {name}: {:.0}% of {}, {}/s, ETA {}",
        now.bytes as f64 * 100.0 / now.expected_bytes as f64,
        human_size(now.expected_bytes),
        human_size(rate as u64),
        eta(left)
    )
}

/// Time left as people read it: `45s`, `3m20s`, `1h05m`; `?` when unknown.
fn eta(secs: f64) -> String {
    if !secs.is_finite() || secs > 100.0 * 3600.0 {
        return "?".into();
    }
    let s = secs.ceil() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat::repo::tree::ArchiveStats;
    use std::time::Duration;

    #[test]
    fn a_snapshot_line_shows_how_far_and_how_long() {
        let now =
            ArchiveStats { files: 50, bytes: 250_000_000, files_read: 10, new_bytes: 1_000_000, ..Default::default() };
        let total = ArchiveStats { files: 100, bytes: 1_000_000_000, ..Default::default() };
        let line = snapshot_line("web", &now, Some(total), Duration::from_secs(5));
        assert_eq!(line, "snapshot web: 25% of 1GB, 50MB/s, ETA 15s, 50 of 100 files (10 read, 1MB new)");
        // Unknown totals, or past them (the tree grew): the counts alone.
        let line = snapshot_line("web", &now, None, Duration::from_secs(5));
        assert!(!line.contains('%') && line.contains("250MB"), "{line}");
        let small = ArchiveStats { bytes: 1, ..total };
        assert!(!snapshot_line("web", &now, Some(small), Duration::from_secs(5)).contains('%'));
        let r = lifeboat::repo::tree::RestoreStats { files: 10, bytes: 50_000_000, expected_bytes: 200_000_000 };
        assert_eq!(restore_line("web", &r, Duration::from_secs(1)), "restore web: 25% of 200MB, 50MB/s, ETA 3s");
        let unknown = lifeboat::repo::tree::RestoreStats { expected_bytes: 0, ..r };
        assert!(!restore_line("web", &unknown, Duration::from_secs(1)).contains('%'));
        assert_eq!(eta(3725.0), "1h02m");
        assert_eq!(eta(200.0), "3m20s");
        assert_eq!(eta(f64::INFINITY), "?");
    }
}
