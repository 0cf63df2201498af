//! Retention policies: which snapshots to keep, as restic's `forget` decides it.
//!
//! Snapshots are grouped by service; within a group, newest first, a snapshot is kept if any
//! rule wants it: the last N, the newest of each of the last N hours/days/weeks/months/years
//! that have snapshots, everything within a duration of the newest, or any with a kept tag.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::Serialize;

use super::snapshot::Snapshot;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub last: Option<usize>,
    pub hourly: Option<usize>,
    pub daily: Option<usize>,
    pub weekly: Option<usize>,
    pub monthly: Option<usize>,
    pub yearly: Option<usize>,
    pub within: Option<Within>,
    pub tags: Vec<String>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// A retention span as restic writes it: `1y2m3d4h` (years, months, days, hours; `w` weeks
/// too), counted back on the calendar from the newest snapshot. `m` is months here, not
/// minutes: this is the one grammar of retention (docs/user-guide.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

/// The longest span a retention rule may name (a larger one is surely a typo).
const WITHIN_MAX_YEARS: u64 = 1000;

impl Within {
    pub fn parse(s: &str) -> Result<Within, String> {
        let bad = || format!("invalid retention span {s:?} (e.g. 7d, 12h, 4w, 6m, 1y2m)");
        let mut w = Within::default();
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total_hours: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let n: u32 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = rest[digits..].chars().next().ok_or_else(bad)?;
            rest = &rest[digits + unit.len_utf8()..];
            let (field, hours_each) = match unit {
                'y' => (&mut w.years, 365 * 24),
                'm' => (&mut w.months, 31 * 24),
                'w' => (&mut w.days, 7 * 24),
                'd' => (&mut w.days, 24),
                'h' => (&mut w.hours, 1),
                _ => return Err(bad()),
            };
            let add = if unit == 'w' { n.checked_mul(7).ok_or_else(bad)? } else { n };
            *field = field.checked_add(add).ok_or_else(bad)?;
            total_hours = total_hours.saturating_add(u64::from(n).saturating_mul(hours_each));
        }
        if total_hours > WITHIN_MAX_YEARS * 365 * 24 {
            return Err(format!("retention span {s:?} is longer than {WITHIN_MAX_YEARS} years"));
        }
        Ok(w)
    }

    /// `newest` less this span; None when that is before the calendar's start (everything
    /// is within it).
    fn before(&self, newest: DateTime<Utc>) -> Option<DateTime<Utc>> {
        newest
            .checked_sub_months(chrono::Months::new(self.years.checked_mul(12)?.checked_add(self.months)?))?
            .checked_sub_days(chrono::Days::new(u64::from(self.days)))?
            .checked_sub_signed(Duration::try_hours(i64::from(self.hours))?)
    }
}

/// Decides, for snapshots of one service, which to keep. Returns one flag per input, in input
/// order, and the reasons for kept ones.
pub fn apply(policy: &Policy, snaps: &[(String, Snapshot)]) -> Vec<(bool, Vec<&'static str>)> {
    let times: Vec<DateTime<Utc>> = snaps
        .iter()
        .map(|(_, s)| DateTime::parse_from_rfc3339(&s.time).map(|t| t.with_timezone(&Utc)).unwrap_or_default())
        .collect();
    let mut order: Vec<usize> = (0..snaps.len()).collect();
    order.sort_by(|&a, &b| times[b].cmp(&times[a]));
    let mut result = vec![(false, Vec::new()); snaps.len()];
    let newest = order.first().map(|&i| times[i]);

    type Bucket = fn(&DateTime<Utc>) -> i64;
    let buckets: [(Option<usize>, Bucket, &'static str); 5] = [
        (policy.hourly, |t| t.year() as i64 * 1_000_000 + t.ordinal() as i64 * 100 + t.hour() as i64, "hourly"),
        (policy.daily, |t| t.year() as i64 * 1000 + t.ordinal() as i64, "daily"),
        (
            policy.weekly,
            |t| {
                let w = t.iso_week();
                w.year() as i64 * 100 + w.week() as i64
            },
            "weekly",
        ),
        (policy.monthly, |t| t.year() as i64 * 100 + t.month() as i64, "monthly"),
        (policy.yearly, |t| t.year() as i64, "yearly"),
    ];
    for (rank, &i) in order.iter().enumerate() {
        if policy.last.is_some_and(|n| rank < n) {
            result[i].1.push("last");
        }
        if let (Some(w), Some(newest)) = (policy.within, newest)
            && w.before(newest).is_none_or(|limit| times[i] >= limit)
        {
            result[i].1.push("within");
        }
        if snaps[i].1.tags.iter().any(|t| policy.tags.contains(t)) {
            result[i].1.push("tag");
        }
    }
    for (limit, bucket, name) in buckets {
        let Some(limit) = limit else { continue };
        let mut seen: Vec<i64> = Vec::new();
        for &i in &order {
            let b = bucket(&times[i]);
            if seen.contains(&b) {
                continue;
            }
            if seen.len() >= limit {
                break;
            }
            seen.push(b);
            result[i].1.push(name);
        }
    }
    for r in result.iter_mut() {
        r.0 = !r.1.is_empty();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::snapshot::{ImageRef, SnapshotStats};

    fn snap(time: &str, tags: &[&str]) -> (String, Snapshot) {
        let id = crate::repo::BlobId([0; 32]);
        (
            time.to_string(),
            Snapshot {
                time: time.to_string(),
                hostname: "h".into(),
                service: "web".into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                parent: None,
                run_config: serde_json::Value::Null,
                image: ImageRef { reference: "x".into(), manifest: crate::digest::Digest::of(b""), tree: id },
                container_layer: id,
                volumes: vec![],
                stats: SnapshotStats::default(),
                stack: None,
                hot: Vec::new(),
                engine: None,
            },
        )
    }

    fn kept(policy: &Policy, snaps: &[(String, Snapshot)]) -> Vec<String> {
        apply(policy, snaps).iter().zip(snaps).filter(|(r, _)| r.0).map(|(_, (id, _))| id.clone()).collect()
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let snaps = vec![
            snap("2026-01-01T01:00:00Z", &[]),
            snap("2026-01-01T23:00:00Z", &[]),
            snap("2026-01-02T12:00:00Z", &[]),
            snap("2026-01-03T08:00:00Z", &[]),
            snap("2026-01-03T09:00:00Z", &[]),
        ];
        let p = Policy { daily: Some(2), ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2026-01-02T12:00:00Z", "2026-01-03T09:00:00Z"]);
        let p = Policy { last: Some(1), daily: Some(3), ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2026-01-01T23:00:00Z", "2026-01-02T12:00:00Z", "2026-01-03T09:00:00Z"]);
    }

    #[test]
    fn within_tags_and_months() {
        let snaps = vec![
            snap("2025-11-15T00:00:00Z", &["release"]),
            snap("2025-12-20T00:00:00Z", &[]),
            snap("2026-01-10T00:00:00Z", &[]),
            snap("2026-01-11T00:00:00Z", &[]),
        ];
        let p =
            Policy { within: Some(Within::parse("2d").unwrap()), tags: vec!["release".into()], ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2025-11-15T00:00:00Z", "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z"]);
        let p = Policy { monthly: Some(2), ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2025-12-20T00:00:00Z", "2026-01-11T00:00:00Z"]);
        let p = Policy { yearly: Some(5), ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2025-12-20T00:00:00Z", "2026-01-11T00:00:00Z"]);
        assert!(Within::parse("3x").is_err());
    }

    /// restic's grammar: months are `m`, spans combine, and nothing a user types overflows.
    #[test]
    fn retention_spans_are_calendar_spans_and_never_overflow() {
        assert_eq!(Within::parse("1y2m3d4h").unwrap(), Within { years: 1, months: 2, days: 3, hours: 4 });
        assert_eq!(Within::parse("2w").unwrap(), Within { days: 14, ..Default::default() });
        for bad in ["", "d", "1", "1x", "1m30s", "-1d", "99999999999999999999d", "1000000000000d", "4294967295w"] {
            assert!(Within::parse(bad).is_err(), "{bad:?} was taken");
        }
        assert!(Within::parse("1001y").unwrap_err().contains("1000 years"));
        // A month back from the end of March is the end of February.
        let newest = DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z").unwrap().with_timezone(&Utc);
        let limit = Within::parse("1m").unwrap().before(newest).unwrap();
        assert_eq!(limit.to_rfc3339(), "2026-02-28T12:00:00+00:00");
        // The largest span reaches back a thousand years, and no further.
        let snaps = vec![
            snap("2026-01-01T00:00:00Z", &[]),
            snap("1500-01-02T00:00:00Z", &[]),
            snap("0900-01-02T00:00:00Z", &[]),
        ];
        let p = Policy { within: Some(Within::parse("1000y").unwrap()), ..Default::default() };
        assert_eq!(kept(&p, &snaps).len(), 2);
    }
}
