//! The jobs a configuration defines, and how one run of a job is carried out.
//!
//! Every step of a run is `lifeboat` itself in a child process (as borgmatic drives borg): a
//! crash or a leak in one run never takes the agent down, the agent stays small while idle, and
//! a step does exactly what the same command typed by hand would do.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{self, Config};
use crate::report::{JobBody, JobReport};

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

/// A repository as a step names it: its location and password file.
#[derive(Clone, Debug, PartialEq)]
pub struct RepoTarget {
    pub location: String,
    pub password_file: Option<PathBuf>,
}

/// The retention a forget step applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<String>,
    pub tags: Vec<String>,
}

/// One step of a job: a `lifeboat` command, as typed options. [`JobCommand::argv`] is the one
/// place its command line is written.
#[derive(Clone, Debug, PartialEq)]
pub enum JobCommand {
    Snapshot {
        /// One service, or a stack's (frozen together).
        services: Vec<String>,
        /// `SERVICE=RECIPE` for each service with a consistency recipe.
        consistency: Vec<String>,
        /// Empty: the host's default repository.
        repositories: Vec<RepoTarget>,
        exec_before: Vec<String>,
        exec_after: Vec<String>,
        tags: Vec<String>,
        /// `PATTERN=SIZE` page rules.
        pages: Vec<String>,
    },
    Forget {
        service: String,
        /// None: the host's default repository.
        repository: Option<RepoTarget>,
        keep: Keep,
        prune: bool,
    },
    Copy {
        from: RepoTarget,
        to: RepoTarget,
    },
    Check {
        repository: RepoTarget,
        read_data: bool,
        read_data_subset: Option<String>,
    },
    Drill {
        /// One service, or a stack's.
        services: Vec<String>,
        repository: Option<RepoTarget>,
        http: Option<String>,
        command: Option<String>,
        timeout: Option<String>,
    },
    /// At the agent's start: containers whose restart policy asks for it.
    StartRestartable,
}

fn repo_argv(args: &mut Vec<String>, r: &RepoTarget, flag: &str, password_flag: &str) {
    args.extend([flag.to_string(), r.location.clone()]);
    if let Some(p) = &r.password_file {
        args.extend([password_flag.to_string(), p.display().to_string()]);
    }
}

impl JobCommand {
    /// Whether the step prints a [`JobReport`](crate::report::JobReport) the agent reads.
    pub fn reports(&self) -> bool {
        matches!(self, JobCommand::Snapshot { .. } | JobCommand::Drill { .. })
    }

    /// The command's name (its first word).
    pub fn name(&self) -> &'static str {
        match self {
            JobCommand::Snapshot { .. } => "snapshot",
            JobCommand::Forget { .. } => "forget",
            JobCommand::Copy { .. } => "copy",
            JobCommand::Check { .. } => "check",
            JobCommand::Drill { .. } => "drill",
            JobCommand::StartRestartable => "start",
        }
    }

    /// The arguments of `lifeboat` that run this step.
    pub fn argv(&self) -> Vec<String> {
        let mut args = vec![self.name().to_string()];
        match self {
            JobCommand::Snapshot { services, consistency, repositories, exec_before, exec_after, tags, pages } => {
                args.extend(services.iter().cloned());
                args.extend(["--format".into(), "job".into()]);
                for c in consistency {
                    args.extend(["--consistency".to_string(), c.clone()]);
                }
                for r in repositories {
                    repo_argv(&mut args, r, "--repo", "--password-file");
                }
                for h in exec_before {
                    args.extend(["--exec-before".to_string(), h.clone()]);
                }
                for h in exec_after {
                    args.extend(["--exec-after".to_string(), h.clone()]);
                }
                for t in tags {
                    args.extend(["--tag".to_string(), t.clone()]);
                }
                for p in pages {
                    args.extend(["--pages".to_string(), p.clone()]);
                }
            }
            JobCommand::Forget { service, repository, keep, prune } => {
                args.push(service.clone());
                if let Some(r) = repository {
                    repo_argv(&mut args, r, "--repo", "--password-file");
                }
                for (flag, value) in [
                    ("--keep-last", keep.last),
                    ("--keep-hourly", keep.hourly),
                    ("--keep-daily", keep.daily),
                    ("--keep-weekly", keep.weekly),
                    ("--keep-monthly", keep.monthly),
                    ("--keep-yearly", keep.yearly),
                ] {
                    if let Some(v) = value {
                        args.extend([flag.to_string(), v.to_string()]);
                    }
                }
                if let Some(w) = &keep.within {
                    args.extend(["--keep-within".to_string(), w.clone()]);
                }
                for t in &keep.tags {
                    args.extend(["--keep-tag".to_string(), t.clone()]);
                }
                if *prune {
                    args.push("--prune".into());
                }
            }
            JobCommand::Copy { from, to } => {
                repo_argv(&mut args, from, "--repo", "--password-file");
                repo_argv(&mut args, to, "--to", "--to-password-file");
            }
            JobCommand::Check { repository, read_data, read_data_subset } => {
                repo_argv(&mut args, repository, "--repo", "--password-file");
                if *read_data {
                    args.push("--read-data".into());
                } else if let Some(s) = read_data_subset {
                    args.extend(["--read-data-subset".to_string(), s.clone()]);
                }
            }
            JobCommand::Drill { services, repository, http, command, timeout } => {
                args.extend(services.iter().cloned());
                args.extend(["--format".into(), "job".into()]);
                if let Some(r) = repository {
                    repo_argv(&mut args, r, "--repo", "--password-file");
                }
                if let Some(h) = http {
                    args.extend(["--http".to_string(), h.clone()]);
                } else if let Some(c) = command {
                    args.extend(["--command".to_string(), c.clone()]);
                }
                if let Some(t) = timeout {
                    args.extend(["--timeout".to_string(), t.clone()]);
                }
            }
            JobCommand::StartRestartable => args.extend(["--restartable".into(), "--format".into(), "job".into()]),
        }
        args
    }
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
    pub steps: Vec<JobCommand>,
}

fn repo_target(config: &Config, name: &str) -> RepoTarget {
    let repo = &config.repositories[name];
    RepoTarget { location: repo.location(), password_file: repo.password_file.clone() }
}

/// Every job of a (validated) configuration.
/// The snapshot job of a service or a stack (`name`): the snapshot of `services` together,
/// then each one's retention in each repository.
/// `kept` names the snapshots' services for retention when they differ from what is named
/// (an engine's containers: `docker://db` is kept as `db`).
fn snapshot_job(
    config: &Config,
    name: &str,
    services: &[String],
    consistency: Vec<String>,
    kept: &[String],
    snap: &config::SnapshotPolicy,
) -> Job {
    let schedule = |s: &str| config::parse_schedule(s).expect("validated when the config was loaded");
    let repositories: Vec<RepoTarget> = snap.repositories.iter().map(|r| repo_target(config, r.get_ref())).collect();
    let mut steps = vec![JobCommand::Snapshot {
        services: services.to_vec(),
        consistency,
        repositories: repositories.clone(),
        exec_before: snap.exec_before.clone(),
        exec_after: snap.exec_after.clone(),
        tags: snap.tags.clone(),
        pages: snap.pages.iter().map(|p| p.get_ref().clone()).collect(),
    }];
    if !snap.keep.is_empty() {
        let k = &snap.keep;
        let keep = Keep {
            last: k.last,
            hourly: k.hourly,
            daily: k.daily,
            weekly: k.weekly,
            monthly: k.monthly,
            yearly: k.yearly,
            within: k.within.as_ref().map(|w| w.get_ref().clone()),
            tags: k.tags.clone(),
        };
        let targets: Vec<Option<RepoTarget>> =
            if repositories.is_empty() { vec![None] } else { repositories.into_iter().map(Some).collect() };
        for service in kept {
            for repository in &targets {
                steps.push(JobCommand::Forget {
                    service: service.clone(),
                    repository: repository.clone(),
                    keep: keep.clone(),
                    prune: snap.prune.unwrap_or(true),
                });
            }
        }
    }
    Job {
        id: format!("snapshot:{name}"),
        kind: Kind::Snapshot,
        service: Some(name.to_string()),
        schedule_text: snap.schedule.get_ref().clone(),
        schedule: schedule(snap.schedule.get_ref()),
        steps,
    }
}

pub fn jobs(config: &Config) -> Vec<Job> {
    let mut jobs = Vec::new();
    let schedule = |s: &str| config::parse_schedule(s).expect("validated when the config was loaded");
    for (name, svc) in &config.services {
        let Some(snap) = &svc.snapshot else { continue };
        let services = std::slice::from_ref(name);
        jobs.push(snapshot_job(config, name, services, config.recipes(services), services, snap));
    }
    for (name, stack) in &config.stacks {
        let Some(snap) = &stack.snapshot else { continue };
        let services: Vec<String> = stack.services.iter().map(|s| s.get_ref().clone()).collect();
        jobs.push(snapshot_job(config, name, &services, config.recipes(&services), &services, snap));
    }
    for (name, ext) in &config.external {
        let Some(snap) = &ext.snapshot else { continue };
        let targets: Vec<String> = ext.containers.iter().map(|s| s.get_ref().clone()).collect();
        let recipes = ext.consistency.iter().map(|(t, r)| format!("{t}={}", r.get_ref())).collect();
        jobs.push(snapshot_job(config, name, &targets, recipes, &ext.names(), snap));
    }
    for (name, r) in &config.replications {
        jobs.push(Job {
            id: format!("replication:{name}"),
            kind: Kind::Replication,
            service: None,
            schedule_text: r.schedule.get_ref().clone(),
            schedule: schedule(r.schedule.get_ref()),
            steps: vec![JobCommand::Copy {
                from: repo_target(config, r.from.get_ref()),
                to: repo_target(config, r.to.get_ref()),
            }],
        });
    }
    for (name, c) in &config.checks {
        jobs.push(Job {
            id: format!("check:{name}"),
            kind: Kind::Check,
            service: None,
            schedule_text: c.schedule.get_ref().clone(),
            schedule: schedule(c.schedule.get_ref()),
            steps: vec![JobCommand::Check {
                repository: repo_target(config, c.repository.get_ref()),
                read_data: c.read_data,
                read_data_subset: c.read_data_subset.as_ref().map(|s| s.get_ref().clone()),
            }],
        });
    }
    for (name, d) in &config.drills {
        let services = match (&d.service, &d.stack) {
            (Some(s), _) => vec![s.get_ref().clone()],
            (None, Some(stack)) => {
                config.stack_services(stack.get_ref()).expect("validated when the config was loaded")
            }
            (None, None) => unreachable!("validated when the config was loaded"),
        };
        jobs.push(Job {
            id: format!("drill:{name}"),
            kind: Kind::Drill,
            service: Some(services.join("+")),
            schedule_text: d.schedule.get_ref().clone(),
            schedule: schedule(d.schedule.get_ref()),
            steps: vec![JobCommand::Drill {
                services,
                repository: d.repository.as_ref().map(|r| repo_target(config, r.get_ref())),
                http: d.http.as_ref().map(|h| h.get_ref().clone()),
                command: d.command.clone(),
                timeout: d.timeout.as_ref().map(|t| t.get_ref().clone()),
            }],
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
    /// `lifeboat --root R --run-root S ARGS…` for a step.
    pub fn command(&self, step: &JobCommand) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--root").arg(&self.root).arg("--run-root").arg(&self.run_root).args(step.argv());
        cmd.env("LIFEBOAT_RETRY_LOCK", format!("{}s", self.retry_lock.as_secs()));
        // A step names its repositories exactly: the configuration's defaults for commands
        // typed by hand must not redirect it.
        cmd.env(super::STEP_ENV, "1");
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
            let child = match self.command(step).spawn() {
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
                    outcome.error = Some(format!("lost the {} step: {e}", step.name()));
                    return outcome;
                }
            };
            tracing::debug!(job = job.id.as_str(), step = step.name(), ms = started.elapsed().as_millis() as u64, status = %output.status, "step finished");
            let stdout = String::from_utf8_lossy(&output.stdout);
            if step.reports() && output.status.success() {
                match JobReport::parse(&stdout) {
                    Ok(report) => absorb(&mut outcome, &report),
                    Err(e) => {
                        outcome.error = Some(format!("{}: {e}", step.name()));
                        return outcome;
                    }
                }
            } else if step.reports()
                && let Ok(report) = JobReport::parse(&stdout)
            {
                absorb(&mut outcome, &report);
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
                    format!("{} failed ({how}): {detail}", step.name())
                } else {
                    format!(
                        "{} failed ({how}){}",
                        step.name(),
                        outcome.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                    )
                });
                return outcome;
            }
        }
        outcome
    }
}

/// Takes what a step's report says about the run.
fn absorb(outcome: &mut Outcome, report: &JobReport) {
    match &report.body {
        JobBody::Snapshots(list) => {
            for s in list {
                outcome.bytes_added = Some(outcome.bytes_added.unwrap_or(0) + s.stats.added_bytes);
                outcome.frozen_ms = Some(outcome.frozen_ms.unwrap_or(0).max(s.stats.frozen_ms));
                outcome.snapshots.push(s.id.clone());
            }
        }
        JobBody::Drill(d) => {
            if d.members.is_empty() {
                outcome.snapshots.push(d.snapshot.clone());
            }
            outcome.snapshots.extend(d.members.iter().map(|m| m.snapshot.clone()));
            outcome.time_to_healthy_ms = d.time_to_healthy_ms;
            if !d.healthy {
                let why = d.error.as_deref().unwrap_or("not healthy");
                outcome.error = Some(format!("the restored service was not healthy: {why}"));
            }
        }
        JobBody::Recovery(r) => {
            if let Some((name, why)) = r.not_started.first() {
                outcome.error = Some(format!("{name}: {why}"));
            }
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
        let words = |s: &JobCommand| s.argv().join(" ");
        let snap = &jobs[0];
        assert_eq!(
            words(&snap.steps[0]),
            "snapshot web --format job --repo /srv/repo --password-file /etc/lifeboat/local.pass \
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
        assert_eq!(words(&jobs[2].steps[0]), "drill web --format job --http http://localhost:80/");
    }

    /// A stack is snapshotted with its members' recipes and drilled as one.
    #[test]
    fn a_stack_is_snapshotted_and_drilled_as_one() {
        let text = r#"
[services.db]
image = "db:1"
consistency = "mariadb"
[services.web]
image = "web:1"
network = "container:db"
[stacks.site]
services = ["db", "web"]
snapshot = { schedule = "0 2 * * *" }
[drills.site]
stack = "site"
schedule = "0 5 * * 1"
http = "http://localhost:80/"
"#;
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        let jobs = jobs(&config);
        let words = |s: &JobCommand| s.argv().join(" ");
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["snapshot:site", "drill:site"]);
        assert_eq!(words(&jobs[0].steps[0]), "snapshot db web --format job --consistency db=mariadb");
        assert_eq!(words(&jobs[1].steps[0]), "drill db web --format job --http http://localhost:80/");
        assert_eq!(jobs[1].service.as_deref(), Some("db+web"));
    }

    #[test]
    fn containers_of_another_engine_are_snapshotted_where_they_run_and_kept_by_name() {
        let text = r#"
[external.blog]
containers = ["docker://blog-db-1", "docker://blog-wordpress-1"]
consistency = { "docker://blog-db-1" = "mariadb" }
snapshot = { schedule = "30 2 * * *", keep = { daily = 7 } }
"#;
        let config = Config::parse(text, Path::new("t.toml")).unwrap();
        let jobs = jobs(&config);
        let words: Vec<String> = jobs[0].steps.iter().map(|s| s.argv().join(" ")).collect();
        assert_eq!(
            words,
            [
                "snapshot docker://blog-db-1 docker://blog-wordpress-1 --format job --consistency docker://blog-db-1=mariadb",
                "forget blog-db-1 --keep-daily 7 --prune",
                "forget blog-wordpress-1 --keep-daily 7 --prune",
            ]
        );
        assert_eq!(jobs[0].id, "snapshot:blog");
        for (bad, says) in [
            ("[external.x]\ncontainers = ['docker://shop/*']\n", "name the containers"),
            ("[external.x]\ncontainers = ['web']\n", "is not docker://NAME"),
            ("[external.x]\ncontainers = []\n", "at least one container"),
            ("[external.x]\ncontainers = ['docker://a', 'podman://a']\n", "already named"),
            (
                "[external.x]\ncontainers = ['docker://a']\nconsistency = { 'docker://b' = 'mariadb' }\n",
                "not one of its containers",
            ),
            (
                "[external.x]\ncontainers = ['docker://a']\nconsistency = { 'docker://a' = 'oracle' }\n",
                "unknown consistency recipe",
            ),
            ("[services.a]\nimage = 'a:1'\n[external.x]\ncontainers = ['docker://a']\n", "also a service"),
        ] {
            let e = Config::parse(bad, Path::new("t.toml")).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    /// What the command line prints for a snapshot and a drill, read back by the agent: the
    /// fields its metrics use are there, by the same definitions on both ends.
    #[test]
    fn job_reports_fill_the_outcome() {
        use crate::repo::snapshot::SnapshotStats;
        use crate::report::SnapshotReport;
        let snap = |id: &str, added_bytes, frozen_ms| SnapshotReport {
            repository: "/srv/repo".into(),
            id: id.into(),
            service: "web".into(),
            time: "2026-12-01T00:00:00Z".into(),
            stats: SnapshotStats { added_bytes, frozen_ms, ..Default::default() },
            image: None,
            pushed: None,
            stack: None,
        };
        let printed = serde_json::to_string_pretty(&JobReport::new(JobBody::Snapshots(vec![
            snap("aa", 10, 5),
            snap("bb", 7, 9),
        ])))
        .unwrap();
        // The fields the metrics read, by name, as a script would see them.
        let v: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(v["version"], crate::report::VERSION);
        assert_eq!(v["snapshots"][1]["stats"]["added_bytes"], 7);
        assert_eq!(v["snapshots"][1]["stats"]["frozen_ms"], 9);
        let mut o = Outcome::default();
        absorb(&mut o, &JobReport::parse(&printed).unwrap());
        assert_eq!(
            (o.bytes_added, o.frozen_ms, o.snapshots.clone()),
            (Some(17), Some(9), vec!["aa".into(), "bb".into()])
        );
        let drill = crate::snapshot::DrillReport {
            snapshot: "cc".into(),
            service: "web".into(),
            healthy: false,
            restore_ms: 1200,
            time_to_healthy_ms: Some(31_000),
            error: Some("GET / answered 500".into()),
            members: Vec::new(),
        };
        let printed = serde_json::to_string(&JobReport::new(JobBody::Drill(drill))).unwrap();
        absorb(&mut o, &JobReport::parse(&printed).unwrap());
        assert!(o.error.clone().unwrap().contains("500"));
        assert_eq!(o.snapshots.last().unwrap(), "cc");
        assert_eq!(o.time_to_healthy_ms, Some(31_000));
        let v: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(v["drill"]["time_to_healthy_ms"], 31_000);
        // The boot recovery's report: a service that could not be started is the job's error.
        let recovery = crate::report::Recovery {
            started: vec!["web".into()],
            not_started: vec![("db".into(), "cannot start it: port taken".into())],
            ..Default::default()
        };
        let printed = serde_json::to_string(&JobReport::new(JobBody::Recovery(recovery))).unwrap();
        let mut o = Outcome::default();
        absorb(&mut o, &JobReport::parse(&printed).unwrap());
        assert_eq!(o.error.as_deref(), Some("db: cannot start it: port taken"));
        // Another version, or no report at all, is refused rather than misread.
        assert!(
            JobReport::parse(&printed.replace("\"version\":1", "\"version\":2")).unwrap_err().contains("version 2")
        );
        assert!(JobReport::parse("{\"snapshots\": []}").is_err());
        assert!(JobReport::parse("not json").is_err());
    }
}
