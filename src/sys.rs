//! Small facts about this machine and its processes, shared by every room: the time as the
//! stores record it, this host's name, whether a process lives. Nothing here keeps state.

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
