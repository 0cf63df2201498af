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
    pub within: Option<i64>,
    pub tags: Vec<String>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }
}

/// `2d`, `12h`, `3w`, `6m` (months of 30 days), `1y` in seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("invalid duration {s:?} (e.g. 7d, 12h, 4w, 6m, 1y)"))?;
    let secs = match unit {
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        "m" => 30 * 86400,
        "y" => 365 * 86400,
        _ => return Err(format!("invalid duration {s:?} (e.g. 7d, 12h, 4w, 6m, 1y)")),
    };
    Ok(n * secs)
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
            && times[i] >= newest - Duration::seconds(w)
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
            Policy { within: Some(parse_duration("2d").unwrap()), tags: vec!["release".into()], ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2025-11-15T00:00:00Z", "2026-01-10T00:00:00Z", "2026-01-11T00:00:00Z"]);
        let p = Policy { monthly: Some(2), ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2025-12-20T00:00:00Z", "2026-01-11T00:00:00Z"]);
        let p = Policy { yearly: Some(5), ..Default::default() };
        assert_eq!(kept(&p, &snaps), vec!["2025-12-20T00:00:00Z", "2026-01-11T00:00:00Z"]);
        assert!(parse_duration("3x").is_err());
    }
}
