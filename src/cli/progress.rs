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
/// restores); only on a terminal, cleared when dropped.
pub struct Activity {
    bar: Option<ProgressBar>,
}

impl Activity {
    pub fn new(quiet: bool) -> Activity {
        if quiet || !std::io::stderr().is_terminal() {
            return Activity { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Activity { bar: Some(bar) }
    }

    /// The bar to update (a cheap handle), if there is one.
    pub fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
