//! The jobs a configuration defines, and how one run of a job is carried out.
//!
//! Every step of a run is `lifeboat` itself in a child process (as borgmatic drives borg): a
//! crash or a leak in one run never takes the agent down, the agent stays small while idle, and
//! a step does exactly what the same command typed by hand would do.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::config::{self, Config};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Snapshot,
    Replication,
    Check,
    Drill,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Replication => "replication",
            Kind::Check => "check",
            Kind::Drill => "drill",
        }
    }
}

/// One step: `lifeboat ARGS…`, whose stdout is JSON when `json` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub args: Vec<String>,
    pub json: bool,
}

#[derive(Clone, Debug)]
pub struct Job {
    /// `KIND:NAME`, e.g. `snapshot:website`.
    pub id: String,
    pub kind: Kind,
    /// The service a snapshot or drill is about.
    pub service: Option<String>,
    pub schedule_text: String,
    pub schedule: cron::Schedule,
    pub steps: Vec<Step>,
}

fn repo_args(config: &Config, name: &str, flag: &str, password_flag: &str) -> Vec<String> {
    let repo = &config.repositories[name];
    let mut args = vec![flag.to_string(), repo.location()];
    if let Some(p) = &repo.password_file {
        args.push(password_flag.to_string());
        args.push(p.display().to_string());
    }
    args
}

/// Every job of a (validated) configuration.
pub fn jobs(config: &Config) -> Vec<Job> {
    let mut jobs = Vec::new();
    let schedule = |s: &str| config::parse_schedule(s).expect("validated when the config was loaded");
    for (name, svc) in &config.services {
        let Some(snap) = &svc.snapshot else { continue };
        let mut args = vec!["snapshot".to_string(), name.clone(), "--format".into(), "json".into()];
        let mut forget_targets = Vec::new();
        for repo in &snap.repositories {
            let r = repo_args(config, repo.get_ref(), "--repo", "--password-file");
            args.extend(r.iter().cloned());
            forget_targets.push(r);
        }
        if snap.repositories.is_empty() {
            forget_targets.push(Vec::new());
        }
        for h in &snap.exec_before {
            args.extend(["--exec-before".to_string(), h.clone()]);
        }
        for h in &snap.exec_after {
            args.extend(["--exec-after".to_string(), h.clone()]);
        }
        for t in &snap.tags {
            args.extend(["--tag".to_string(), t.clone()]);
        }
        let mut steps = vec![Step { args, json: true }];
        if !snap.keep.is_empty() {
            for target in forget_targets {
                let mut args = vec!["forget".to_string(), name.clone()];
                args.extend(target);
                let k = &snap.keep;
                for (flag, value) in [
                    ("--keep-last", k.last),
                    ("--keep-hourly", k.hourly),
                    ("--keep-daily", k.daily),
                    ("--keep-weekly", k.weekly),
                    ("--keep-monthly", k.monthly),
                    ("--keep-yearly", k.yearly),
                ] {
                    if let Some(v) = value {
                        args.extend([flag.to_string(), v.to_string()]);
                    }
                }
                if let Some(w) = &k.within {
                    args.extend(["--keep-within".to_string(), w.get_ref().clone()]);
                }
                for t in &k.tags {
                    args.extend(["--keep-tag".to_string(), t.clone()]);
                }
                if snap.prune.unwrap_or(true) {
                    args.push("--prune".into());
                }
                steps.push(Step { args, json: false });
            }
        }
        jobs.push(Job {
            id: format!("snapshot:{name}"),
            kind: Kind::Snapshot,
            service: Some(name.clone()),
            schedule_text: snap.schedule.get_ref().clone(),
            schedule: schedule(snap.schedule.get_ref()),
            steps,
        });
    }
    for (name, r) in &config.replications {
        let mut args = vec!["copy".to_string()];
        args.extend(repo_args(config, r.from.get_ref(), "--repo", "--password-file"));
        args.extend(repo_args(config, r.to.get_ref(), "--to", "--to-password-file"));
        jobs.push(Job {
            id: format!("replication:{name}"),
            kind: Kind::Replication,
            service: None,
            schedule_text: r.schedule.get_ref().clone(),
            schedule: schedule(r.schedule.get_ref()),
            steps: vec![Step { args, json: false }],
        });
    }
    for (name, c) in &config.checks {
        let mut args = vec!["check".to_string()];
        args.extend(repo_args(config, c.repository.get_ref(), "--repo", "--password-file"));
        if c.read_data {
            args.push("--read-data".into());
        } else if let Some(s) = &c.read_data_subset {
            args.extend(["--read-data-subset".to_string(), s.get_ref().clone()]);
        }
        jobs.push(Job {
            id: format!("check:{name}"),
            kind: Kind::Check,
            service: None,
            schedule_text: c.schedule.get_ref().clone(),
            schedule: schedule(c.schedule.get_ref()),
            steps: vec![Step { args, json: false }],
        });
    }
    for (name, d) in &config.drills {
        let service = d.service.get_ref().clone();
        let mut args = vec!["drill".to_string(), service.clone(), "--format".into(), "json".into()];
        if let Some(r) = &d.repository {
            args.extend(repo_args(config, r.get_ref(), "--repo", "--password-file"));
        }
        if let Some(h) = &d.http {
            args.extend(["--http".to_string(), h.get_ref().clone()]);
        } else if let Some(c) = &d.command {
            args.extend(["--command".to_string(), c.clone()]);
        }
        if let Some(t) = &d.timeout {
            args.extend(["--timeout".to_string(), t.get_ref().clone()]);
        }
        jobs.push(Job {
            id: format!("drill:{name}"),
            kind: Kind::Drill,
            service: Some(service),
            schedule_text: d.schedule.get_ref().clone(),
            schedule: schedule(d.schedule.get_ref()),
            steps: vec![Step { args, json: true }],
        });
    }
    jobs
}

/// What one run achieved.
#[derive(Debug, Default)]
pub struct Outcome {
    pub error: Option<String>,
    pub bytes_added: Option<u64>,
    pub frozen_ms: Option<u64>,
    pub time_to_healthy_ms: Option<u64>,
    pub snapshots: Vec<String>,
}

/// How the agent reaches the `lifeboat` binary and its stores.
#[derive(Clone, Debug)]
pub struct Runner {
    pub exe: PathBuf,
    pub root: PathBuf,
    pub run_root: PathBuf,
    /// How long a step waits for a repository another step has locked.
    pub retry_lock: std::time::Duration,
}

impl Runner {
    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--root").arg(&self.root).arg("--run-root").arg(&self.run_root).args(args);
        cmd.env("LIFEBOAT_RETRY_LOCK", format!("{}s", self.retry_lock.as_secs()));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // Its own process group: the agent decides when its steps are stopped.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd
    }

    /// Runs the steps in order; the first failure ends the run. `current` holds the running
    /// step's pid, so a shutdown can stop it.
    pub fn run(&self, job: &Job, current: &Arc<Mutex<Option<u32>>>) -> Outcome {
        let mut outcome = Outcome::default();
        for step in &job.steps {
            let started = Instant::now();
            let child = match self.command(&step.args).spawn() {
                Ok(c) => c,
                Err(e) => {
                    outcome.error = Some(format!("cannot start {}: {e}", self.exe.display()));
                    return outcome;
                }
            };
            *current.lock().unwrap() = Some(child.id());
            let output = child.wait_with_output();
            *current.lock().unwrap() = None;
            let output = match output {
                Ok(o) => o,
                Err(e) => {
                    outcome.error = Some(format!("lost the {} step: {e}", step.args[0]));
                    return outcome;
                }
            };
            tracing::debug!(job = job.id.as_str(), step = step.args[0].as_str(), ms = started.elapsed().as_millis() as u64, status = %output.status, "step finished");
            let stdout = String::from_utf8_lossy(&output.stdout);
            if step.json
                && let Ok(v) = serde_json::from_str::<Value>(&stdout)
            {
                absorb(&mut outcome, &v);
            }
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let detail = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
                let detail = detail.strip_prefix("lifeboat: ").unwrap_or(detail);
                let how = match output.status.code() {
                    Some(c) => format!("exit code {c}"),
                    None => "killed by a signal".to_string(),
                };
                outcome.error = Some(if outcome.error.is_none() && !detail.is_empty() {
                    format!("{} failed ({how}): {detail}", step.args[0])
                } else {
                    format!(
                        "{} failed ({how}){}",
                        step.args[0],
                        outcome.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                    )
                });
                return outcome;
            }
        }
        outcome
    }
}

/// Takes what a step's JSON output says about the run.
fn absorb(outcome: &mut Outcome, v: &Value) {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for item in items {
        if let Some(stats) = item.get("stats") {
            let added = stats.get("added_bytes").and_then(Value::as_u64).unwrap_or(0);
            outcome.bytes_added = Some(outcome.bytes_added.unwrap_or(0) + added);
            let frozen = stats.get("frozen_ms").and_then(Value::as_u64).unwrap_or(0);
            outcome.frozen_ms = Some(outcome.frozen_ms.unwrap_or(0).max(frozen));
        }
        if let Some(id) = item.get("id").and_then(Value::as_str) {
            outcome.snapshots.push(id.to_string());
        }
        if let Some(ms) = item.get("time_to_healthy_ms").and_then(Value::as_u64) {
            outcome.time_to_healthy_ms = Some(ms);
        }
        if item.get("healthy") == Some(&Value::Bool(false)) {
            let why = item.get("error").and_then(Value::as_str).unwrap_or("not healthy");
            outcome.error = Some(format!("the restored service was not healthy: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG: &str = r#"
[repositories.local]
url = "/srv/repo"
password_file = "/etc/lifeboat/local.pass"
[repositories.off]
url = "s3://b/p"
password_file = "/etc/lifeboat/off.pass"
[repositories.off.s3]
endpoint = "http://127.0.0.1:9000"
[services.web]
image = "web:1"
[services.web.snapshot]
schedule = "*/5 * * * * *"
repositories = ["local", "off"]
exec_before = ["dump"]
keep = { last = 2, daily = 7 }
[replications.offsite]
from = "local"
to = "off"
schedule = "0 4 * * *"
[drills.web]
service = "web"
schedule = "0 5 * * 1"
http = "http://localhost:80/"
"#;

    #[test]
    fn a_config_becomes_the_commands_a_person_would_type() {
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let jobs = jobs(&config);
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["snapshot:web", "replication:offsite", "drill:web"]);
        let words = |s: &Step| s.args.join(" ");
        let snap = &jobs[0];
        assert_eq!(
            words(&snap.steps[0]),
            "snapshot web --format json --repo /srv/repo --password-file /etc/lifeboat/local.pass \
             --repo s3://b/p?endpoint=http://127.0.0.1:9000 --password-file /etc/lifeboat/off.pass --exec-before dump"
        );
        assert_eq!(snap.steps.len(), 3, "one forget per repository");
        assert_eq!(
            words(&snap.steps[1]),
            "forget web --repo /srv/repo --password-file /etc/lifeboat/local.pass --keep-last 2 --keep-daily 7 --prune"
        );
        assert_eq!(
            words(&jobs[1].steps[0]),
            "copy --repo /srv/repo --password-file /etc/lifeboat/local.pass \
             --to s3://b/p?endpoint=http://127.0.0.1:9000 --to-password-file /etc/lifeboat/off.pass"
        );
        assert_eq!(words(&jobs[2].steps[0]), "drill web --format json --http http://localhost:80/");
    }

    #[test]
    fn json_outputs_fill_the_outcome() {
        let mut o = Outcome::default();
        absorb(
            &mut o,
            &serde_json::json!([
                {"id": "aa", "stats": {"added_bytes": 10, "frozen_ms": 5}},
                {"id": "bb", "stats": {"added_bytes": 7, "frozen_ms": 9}}
            ]),
        );
        assert_eq!((o.bytes_added, o.frozen_ms, o.snapshots.len()), (Some(17), Some(9), 2));
        absorb(&mut o, &serde_json::json!({"healthy": false, "error": "GET / answered 500"}));
        assert!(o.error.unwrap().contains("500"));
    }
}
