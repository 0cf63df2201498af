//! What the agent remembers between runs (and tells `status` and Prometheus): each job's last
//! scheduled time (for catch-up after downtime) and the record of its last run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct AgentState {
    #[serde(default)]
    pub jobs: BTreeMap<String, JobState>,
    /// The repositories as last read after a job that changes them (for metrics).
    #[serde(default)]
    pub repositories: Vec<crate::ops::backup::RepoSummary>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct JobState {
    /// The schedule time of the last run started (or when the agent first saw the job).
    pub last_scheduled: Option<String>,
    pub last: Option<RunRecord>,
    /// The last successful run's finish time.
    pub last_success: Option<String>,
    #[serde(default)]
    pub runs: u64,
    #[serde(default)]
    pub failures: u64,
    /// Runs not started because the previous one was still running.
    #[serde(default)]
    pub skipped: u64,
    /// When the run going on now started (none between runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub started: String,
    pub finished: String,
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Snapshots: new bytes stored (sum over the target repositories).
    pub bytes_added: Option<u64>,
    /// Snapshots: how long the service was frozen (the longest over the repositories).
    pub frozen_ms: Option<u64>,
    /// Drills: time from the start of the restore to the first healthy probe.
    pub time_to_healthy_ms: Option<u64>,
    /// Snapshots: the IDs written.
    #[serde(default)]
    pub snapshots: Vec<String>,
}

impl AgentState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Loads the state; a missing file is an empty state, an unreadable one is set aside (the
    /// agent must start even if a disk error mangled it) and reported.
    pub fn load(dir: &Path) -> AgentState {
        let path = AgentState::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                let aside = dir.join("state.json.unreadable");
                tracing::error!(error = %e, path = %path.display(), aside = %aside.display(), "agent state unreadable; starting afresh");
                let _ = std::fs::rename(&path, aside);
                AgentState::default()
            }),
            Err(_) => AgentState::default(),
        }
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        crate::fsutil::write_atomic(&AgentState::path(dir), &serde_json::to_vec_pretty(self)?)
    }
}

/// One job as the metrics see it.
pub struct MetricJob<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub state: Option<&'a JobState>,
    pub next_run: Option<i64>,
    pub running: bool,
}

/// A label value in Prometheus' text format: backslash, double quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn ts(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339).ok().map(|t| t.timestamp())
}

/// Prometheus text exposition (format 0.0.4).
pub fn render_metrics(
    started_at: i64,
    jobs: &[MetricJob<'_>],
    repositories: &[crate::ops::backup::RepoSummary],
) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let label = |j: &MetricJob<'_>| format!("job=\"{}\",kind=\"{}\"", label_value(j.id), j.kind);
    let each = |f: &dyn Fn(&MetricJob<'_>) -> Option<String>| -> Vec<(String, String)> {
        jobs.iter().filter_map(|j| f(j).map(|v| (label(j), v))).collect()
    };
    family(
        "lifeboat_agent_start_time_seconds",
        "When the agent started (Unix time).",
        "gauge",
        vec![(String::new(), started_at.to_string())],
    );
    family(
        "lifeboat_job_last_run_timestamp_seconds",
        "When the job's last run finished.",
        "gauge",
        each(&|j| j.state?.last.as_ref().and_then(|r| ts(&r.finished)).map(|t| t.to_string())),
    );
    family(
        "lifeboat_job_last_success_timestamp_seconds",
        "When the job last succeeded.",
        "gauge",
        each(&|j| j.state?.last_success.as_deref().and_then(ts).map(|t| t.to_string())),
    );
    family(
        "lifeboat_job_last_run_success",
        "1 if the job's last run succeeded, 0 if it failed.",
        "gauge",
        each(&|j| j.state?.last.as_ref().map(|r| if r.ok { "1" } else { "0" }.to_string())),
    );
    family(
        "lifeboat_job_last_run_duration_seconds",
        "How long the job's last run took.",
        "gauge",
        each(&|j| j.state?.last.as_ref().map(|r| format!("{:.3}", r.duration_ms as f64 / 1000.0))),
    );
    family(
        "lifeboat_job_runs_total",
        "Runs started.",
        "counter",
        each(&|j| Some(j.state.map_or(0, |s| s.runs).to_string())),
    );
    family(
        "lifeboat_job_failures_total",
        "Runs that failed.",
        "counter",
        each(&|j| Some(j.state.map_or(0, |s| s.failures).to_string())),
    );
    family(
        "lifeboat_job_skipped_total",
        "Runs skipped because the previous run was still going.",
        "counter",
        each(&|j| Some(j.state.map_or(0, |s| s.skipped).to_string())),
    );
    family(
        "lifeboat_job_running",
        "1 while the job runs.",
        "gauge",
        each(&|j| Some(if j.running { "1" } else { "0" }.to_string())),
    );
    family(
        "lifeboat_job_next_run_timestamp_seconds",
        "When the job runs next.",
        "gauge",
        each(&|j| j.next_run.map(|t| t.to_string())),
    );
    family(
        "lifeboat_snapshot_added_bytes",
        "Bytes the last snapshot added to its repositories.",
        "gauge",
        each(&|j| j.state?.last.as_ref()?.bytes_added.map(|b| b.to_string())),
    );
    family(
        "lifeboat_snapshot_frozen_seconds",
        "How long the last snapshot kept the service frozen.",
        "gauge",
        each(&|j| j.state?.last.as_ref()?.frozen_ms.map(|m| format!("{:.3}", m as f64 / 1000.0))),
    );
    family(
        "lifeboat_drill_time_to_healthy_seconds",
        "The last restore drill's time from start to a healthy service.",
        "gauge",
        each(&|j| j.state?.last.as_ref()?.time_to_healthy_ms.map(|m| format!("{:.3}", m as f64 / 1000.0))),
    );
    let readable: Vec<&crate::ops::backup::RepoSummary> = repositories.iter().filter(|r| r.error.is_none()).collect();
    let repo_label = |r: &crate::ops::backup::RepoSummary| format!("repository=\"{}\"", label_value(&r.name));
    family(
        "lifeboat_repository_up",
        "1 if the agent's last reading of the repository succeeded, 0 if it failed.",
        "gauge",
        repositories.iter().map(|r| (repo_label(r), if r.error.is_none() { "1" } else { "0" }.to_string())).collect(),
    );
    family(
        "lifeboat_repository_snapshots",
        "Snapshots in the repository (as read after the last job that changed it).",
        "gauge",
        readable.iter().map(|r| (repo_label(r), r.snapshots.to_string())).collect(),
    );
    family(
        "lifeboat_repository_stored_bytes",
        "Bytes the repository's packs take in its storage.",
        "gauge",
        readable.iter().map(|r| (repo_label(r), r.stored_bytes.to_string())).collect(),
    );
    family(
        "lifeboat_service_last_snapshot_timestamp_seconds",
        "When the service's newest snapshot in the repository was taken.",
        "gauge",
        readable
            .iter()
            .flat_map(|r| {
                r.services.iter().filter_map(move |(service, last)| {
                    Some((
                        format!("{},service=\"{}\"", repo_label(r), label_value(service)),
                        ts(&last.time)?.to_string(),
                    ))
                })
            })
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_each_jobs_last_run() {
        let state = JobState {
            last: Some(RunRecord {
                started: "2026-11-28T02:30:00Z".into(),
                finished: "2026-11-28T02:30:04Z".into(),
                ok: true,
                error: None,
                duration_ms: 4250,
                bytes_added: Some(1234),
                frozen_ms: Some(42),
                time_to_healthy_ms: None,
                snapshots: vec![],
            }),
            runs: 3,
            failures: 1,
            ..Default::default()
        };
        let jobs = [
            MetricJob {
                id: "snapshot:website",
                kind: "snapshot",
                state: Some(&state),
                next_run: Some(1800000000),
                running: false,
            },
            MetricJob { id: "check:weekly", kind: "check", state: None, next_run: None, running: true },
        ];
        let text = render_metrics(1700000000, &jobs, &[]);
        for line in [
            "lifeboat_job_last_run_success{job=\"snapshot:website\",kind=\"snapshot\"} 1",
            "lifeboat_job_last_run_duration_seconds{job=\"snapshot:website\",kind=\"snapshot\"} 4.250",
            "lifeboat_snapshot_added_bytes{job=\"snapshot:website\",kind=\"snapshot\"} 1234",
            "lifeboat_job_failures_total{job=\"snapshot:website\",kind=\"snapshot\"} 1",
            "lifeboat_job_running{job=\"check:weekly\",kind=\"check\"} 1",
            "lifeboat_job_runs_total{job=\"check:weekly\",kind=\"check\"} 0",
            "lifeboat_job_last_run_timestamp_seconds{job=\"snapshot:website\",kind=\"snapshot\"} 1795833004",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("lifeboat_snapshot_added_bytes{job=\"check:weekly\""));
    }

    #[test]
    fn repository_metrics_escape_their_labels_and_say_when_a_reading_failed() {
        use crate::ops::backup::{LastSnapshot, RepoSummary};
        let good = RepoSummary {
            name: "off\"site\\\n".into(),
            snapshots: 3,
            stored_bytes: 4096,
            services: [(
                "web".to_string(),
                LastSnapshot { id: "ab".into(), time: "2026-11-28T02:30:04Z".into(), added_bytes: 1 },
            )]
            .into(),
            ..Default::default()
        };
        let bad = RepoSummary { name: "gone".into(), error: Some("no answer".into()), ..Default::default() };
        let text = render_metrics(1700000000, &[], &[good, bad]);
        for line in [
            "lifeboat_repository_snapshots{repository=\"off\\\"site\\\\\\n\"} 3",
            "lifeboat_repository_stored_bytes{repository=\"off\\\"site\\\\\\n\"} 4096",
            "lifeboat_service_last_snapshot_timestamp_seconds{repository=\"off\\\"site\\\\\\n\",service=\"web\"} 1795833004",
            "lifeboat_repository_up{repository=\"gone\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(
            !text.contains("lifeboat_repository_snapshots{repository=\"gone\"}"),
            "an unread repository has no figures"
        );
        // Every sample line is one line: no raw newline inside a label.
        assert!(text.lines().all(|l| l.starts_with('#') || l.starts_with("lifeboat_")), "{text}");
    }
}
