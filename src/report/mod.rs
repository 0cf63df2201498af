//! Typed reports: what each command returns, printed by the command line as a table or as
//! JSON, and read back by the agent from its job processes. One definition serves both ends
//! (serde both ways), so a renamed field is a compile error or a failed test, never a metric
//! that silently reads zero.
//!
//! A job process the agent starts prints a [`JobReport`] (`--format job`): the report of its
//! command in a versioned envelope. [`text`] holds the human forms of sizes, ages, durations.

pub mod text;

use serde::{Deserialize, Serialize};

pub use crate::snapshot::DrillReport;

/// The version of [`JobReport`]. It changes when a field the agent relies on changes meaning
/// or name; the agent refuses a report of another version rather than misread it.
pub const VERSION: u32 = 1;

/// What a job step reports to the agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobReport {
    pub version: u32,
    #[serde(flatten)]
    pub body: JobBody,
}

/// The report of the command a job step ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobBody {
    /// `snapshot`: one report per repository written to.
    Snapshots(Vec<SnapshotReport>),
    /// `drill`.
    Drill(DrillReport),
    /// `start --restartable`, at boot.
    Recovery(Recovery),
}

/// What `start --restartable` did at boot.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Recovery {
    /// Names started because their policy asks for it.
    pub started: Vec<String>,
    /// Names, and why they could not be started.
    pub not_started: Vec<(String, String)>,
    /// `run --rm` containers a shutdown cut short, removed.
    pub removed: Vec<String>,
    /// Leftovers (names or paths) that could not be cleared, and why.
    pub not_cleared: Vec<(String, String)>,
}

/// One snapshot taken into one repository (the agent reads this from its jobs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotReport {
    pub repository: String,
    pub id: String,
    pub service: String,
    pub time: String,
    pub stats: crate::repo::snapshot::SnapshotStats,
    pub image: Option<String>,
    pub pushed: Option<String>,
    /// The stack snapshot this one is part of (several services frozen together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl JobReport {
    pub fn new(body: JobBody) -> JobReport {
        JobReport { version: VERSION, body }
    }

    /// A job step's standard output, read as a report of this version.
    pub fn parse(stdout: &str) -> Result<JobReport, String> {
        let v: serde_json::Value =
            serde_json::from_str(stdout.trim()).map_err(|e| format!("the step's report is not JSON: {e}"))?;
        match v.get("version").and_then(serde_json::Value::as_u64) {
            Some(n) if n == VERSION as u64 => {}
            Some(n) => return Err(format!("the step reported version {n}; this agent reads version {VERSION}")),
            None => return Err("the step's report has no version".into()),
        }
        serde_json::from_value(v).map_err(|e| format!("unreadable report: {e}"))
    }
}
