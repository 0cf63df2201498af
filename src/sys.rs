//! Small facts about this machine and its processes, shared by every room: the time as the
//! stores record it, this host's name, whether a process lives. Nothing here keeps state.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether this process was asked to stop (SIGINT, SIGTERM): long work checks it between
/// steps and stops there, its guards releasing locks and thawing services on the way out.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Asks long work to stop at its next step; a second request ends the process at once (exit
/// code 130), for a person who does not want to wait for the clean-up.
pub fn interrupt() {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe; nothing else is done here.
        unsafe { libc::_exit(130) };
    }
}

/// Makes SIGINT and SIGTERM call [`interrupt`] (handlers do not survive exec, so the
/// processes this one starts get the default dispositions back).
pub fn stop_on_signals() -> std::io::Result<()> {
    extern "C" fn on_signal(_: libc::c_int) {
        interrupt();
    }
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches an atomic and may call _exit (both async-signal-safe).
        unsafe { sigaction(sig, &action) }.map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// This boot of this machine (the kernel's random boot ID), if the kernel says.
pub fn boot_id() -> Option<String> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string()))
        .clone()
}

/// Now, in RFC 3339 with nanoseconds (UTC), as every record the stores write says it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// This host's name (as `uname -n` says it).
pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Whether a process exists on this host (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// When process `pid` started (clock ticks since boot, `/proc/PID/stat` field 22), if it
/// exists and is not a zombie: with the PID, it names one process even after PIDs wrap.
pub fn process_start(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lives_and_times_are_utc() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
        let me = process_start(std::process::id() as i32).unwrap();
        assert_eq!(process_start(std::process::id() as i32), Some(me));
        assert!(process_start(1).unwrap() <= me, "init started after this test");
        assert_eq!(process_start(i32::MAX), None);
        assert_eq!(process_start(-1), None);
        assert!(now_rfc3339().ends_with('Z'));
        assert!(!hostname().is_empty());
    }
}
