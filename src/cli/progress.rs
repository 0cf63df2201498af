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
