//! Human text for reports, as Docker and restic print it: sizes, ages, durations.

use chrono::{DateTime, Utc};

/// Decimal sizes with up to four significant digits: `0B`, `4.26MB`, `1.235GB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(v, 4), UNITS[unit])
}

/// Formats like C's `%.Ng`: N significant digits, trailing zeros dropped.
fn significant(v: f64, digits: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Docker's "2 hours", "About a minute", "Less than a second".
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let minutes = d.num_minutes();
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    let days = hours / 24;
    if days < 14 {
        return format!("{days} days");
    }
    if days < 90 {
        return format!("{} weeks", days / 7);
    }
    if days < 730 {
        return format!("{} months", days / 30);
    }
    format!("{} years", days / 365)
}

/// "3 hours ago" for an RFC 3339 time, or "N/A".
pub fn ago(rfc3339: Option<&str>) -> String {
    match rfc3339.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => format!("{} ago", human_duration(Utc::now() - t.with_timezone(&Utc))),
        None => "N/A".into(),
    }
}

/// Cuts `s` to `max` characters with a trailing "…", as Docker's --no-trunc=false does.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }

    #[test]
    fn durations_like_docker() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(45)), "45 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(3 * 60)), "3 minutes");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(2 * 3600)), "2 hours");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(21 * 86400)), "3 weeks");
        assert_eq!(human_duration(d(400 * 86400)), "13 months");
        assert_eq!(human_duration(d(800 * 86400)), "2 years");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
