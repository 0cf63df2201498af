//! The agent, end to end: `up` starts the configured services; the agent snapshots them on
//! schedules seconds apart to a local repository, applies retention, replicates to S3, runs a
//! restore drill, pings on failure, reloads on SIGHUP and stops cleanly on SIGTERM.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{Env, free_port, http_get, s3_location, stderr, wait_until};

/// A tiny HTTP server recording "METHOD PATH BODY" of every request (the ping endpoint).
fn ping_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let words: Vec<&str> = request.split_whitespace().collect();
            log.lock().unwrap().push(format!("{} {} {}", words[0], words[1], String::from_utf8_lossy(&body)));
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        }
    });
    (port, seen)
}

struct Agent {
    child: Child,
}

impl Agent {
    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status();
        assert!(ok.unwrap().success());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(env: &Env, config: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["status", "--config", config, "--format", "json"])).unwrap()
}

fn job<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["jobs"].as_array().unwrap().iter().find(|j| j["job"] == id).unwrap_or(&serde_json::Value::Null)
}

fn snapshots(env: &Env, service: &str, repo: &str, pw: &str) -> Vec<serde_json::Value> {
    let out = env.ok(&["snapshots", service, "--repo", repo, "--password-file", pw, "--format", "json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap()
}

#[test]
fn the_agent_runs_snapshots_retention_replication_and_drills_on_schedule() {
    let Some(s3) = s3_location("s3s") else { return };
    let env = Env::new();
    env.site_image("site:1");
    let pw = env.path("pw");
    fs::write(&pw, "agent test password\n").unwrap();
    let pw = pw.display().to_string();
    let local = env.path("repo").display().to_string();
    for repo in [&local, &s3] {
        env.ok(&["repo", "init", "--repo", repo, "--password-file", &pw]);
    }
    let (ping_port, pings) = ping_server();
    let (web_port, metrics_port) = (free_port(), free_port());
    let failed = env.path("failed-jobs");
    let config = env.path("lifeboat.toml");
    let write_config = |extra: &str| {
        let text = format!(
            r#"
[agent]
metrics_listen = "127.0.0.1:{metrics_port}"
shutdown_grace = "20s"

[notifications]
ping_url = "http://127.0.0.1:{ping_port}/hc"
on_failure = 'echo "$LIFEBOAT_JOB: $LIFEBOAT_ERROR" >> {failed}'

[repositories.local]
url = "{local}"
password_file = "{pw}"

[repositories.offsite]
url = "{s3}"
password_file = "{pw}"

[services.website]
image = "site:1"
ports = ["127.0.0.1:{web_port}:80"]
volumes = ["content:/www"]

[services.website.snapshot]
schedule = "*/2 * * * * *"
repositories = ["local"]
keep = {{ last = 2 }}

[services.broken]
image = "site:1"

[services.broken.snapshot]
schedule = "*/3 * * * * *"
repositories = ["local"]
exec_before = ["echo dump failed >&2; exit 3"]

[replications.offsite]
from = "local"
to = "offsite"
schedule = "*/5 * * * * *"

[drills.website]
service = "website"
repository = "local"
schedule = "*/4 * * * * *"
http = "http://localhost:80/"
{extra}"#,
            failed = failed.display()
        );
        fs::write(&config, text).unwrap();
    };
    write_config("");
    let config_s = config.display().to_string();
    env.ok(&["config", "check", "--config", &config_s]);

    // up: both services run; a second up changes nothing.
    let out = env.ok(&["up", "--config", &config_s]);
    assert!(out.contains("website: created") && out.contains("broken: created"), "{out}");
    wait_until(10, "the site", || http_get(web_port, "/").is_ok_and(|p| p.contains("Library")));
    let out = env.ok(&["up", "--config", &config_s]);
    assert!(out.contains("website: up to date"), "{out}");

    let log = fs::File::create(env.path("agent.log")).unwrap();
    let child = env
        .lifeboat()
        .args(["--log-level", "info", "--log-format", "json", "agent", "--config", &config_s])
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let agent = Agent { child };
    let agent_log = || fs::read_to_string(env.path("agent.log")).unwrap_or_default();

    // Snapshots on schedule, and a drill, and a replication, and the failing hook.
    wait_until(90, "4 snapshot runs, a drill and a replication", || {
        let s = status(&env, &config_s);
        let ok = |id: &str, runs: u64| {
            let j = job(&s, id);
            j["runs"].as_u64().unwrap_or(0) >= runs && j["last"]["ok"] == true
        };
        ok("snapshot:website", 4) && ok("drill:website", 1) && ok("replication:offsite", 1)
    });
    let s = status(&env, &config_s);
    assert!(s["agent_pid"].as_i64().is_some(), "{s}");
    let snap_job = job(&s, "snapshot:website");
    assert!(snap_job["last"]["frozen_ms"].is_u64() && snap_job["last"]["bytes_added"].is_u64(), "{snap_job}");
    let drill = job(&s, "drill:website");
    assert!(drill["last"]["time_to_healthy_ms"].as_u64().is_some_and(|ms| ms > 0), "{drill}");
    let broken = job(&s, "snapshot:broken");
    assert_eq!(broken["last"]["ok"], false, "{broken}");
    assert!(broken["last"]["error"].as_str().unwrap().contains("exit code 3"), "{broken}");
    assert!(broken["failures"].as_u64().unwrap() >= 1);
    wait_until(10, "the failure ping", || {
        pings.lock().unwrap().iter().any(|p| p.starts_with("POST /hc/fail snapshot:broken: FAILED"))
    });
    assert!(pings.lock().unwrap().iter().any(|p| p.starts_with("POST /hc/start")));
    assert!(pings.lock().unwrap().iter().any(|p| p.starts_with("POST /hc snapshot:website: ok")));
    wait_until(10, "the on_failure command", || {
        fs::read_to_string(&failed)
            .is_ok_and(|t| t.contains("snapshot:broken: snapshot failed") && t.contains("exit code 3"))
    });
    assert!(snapshots(&env, "broken", &local, &pw).is_empty(), "a failing hook must leave no snapshot");
    // A replication that ran before the first snapshot copied nothing; the next ones copy.
    wait_until(60, "a replicated snapshot", || !snapshots(&env, "website", &s3, &pw).is_empty());
    // Drills run every 4 s, so one may be under way now: whatever drill container is there
    // goes with its drill (a leftover would stay for ever).
    let drills = |env: &Env| -> Vec<String> {
        env.ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .filter(|n| n.contains("website-drill"))
            .map(String::from)
            .collect()
    };
    let now = drills(&env);
    wait_until(30, "the drill containers seen to be removed by their drills", || {
        let later = drills(&env);
        now.iter().all(|n| !later.contains(n))
    });

    // Metrics on loopback.
    let metrics = http_get(metrics_port, "/metrics").unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("lifeboat_job_runs_total{job=\"snapshot:website\",kind=\"snapshot\"}")),
        "{metrics}"
    );
    assert!(metrics.contains("lifeboat_drill_time_to_healthy_seconds{job=\"drill:website\""), "{metrics}");
    // The repositories at a glance: in status (read now) and in the metrics (read by the
    // agent after its snapshot and replication jobs); a drill's record names its snapshot.
    let s = status(&env, &config_s);
    let local_repo = s["repositories"].as_array().unwrap().iter().find(|r| r["name"] == "local").unwrap().clone();
    assert!(
        local_repo["snapshots"].as_u64().unwrap() >= 1 && local_repo["stored_bytes"].as_u64().unwrap() > 0,
        "{local_repo}"
    );
    assert!(local_repo["services"]["website"]["id"].as_str().is_some_and(|id| id.len() == 64), "{local_repo}");
    assert!(job(&s, "drill:website")["last"]["snapshots"][0].as_str().is_some_and(|id| id.len() == 64), "{s}");
    wait_until(30, "the repository metrics", || {
        http_get(metrics_port, "/metrics").is_ok_and(|m| {
            m.lines().any(|l| l.starts_with("lifeboat_repository_snapshots{repository=\"local\"}"))
                && m.contains(
                    "lifeboat_service_last_snapshot_timestamp_seconds{repository=\"local\",service=\"website\"}",
                )
        })
    });
    let text = env.ok(&["status", "--config", &config_s]);
    for column in ["LAST SNAPSHOT", "REPOSITORY", "SNAPSHOTS", "HEALTHY IN"] {
        assert!(text.contains(column), "{column} missing:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("website ") && l.contains("local")), "{text}");

    // SIGHUP picks up a new job; a broken config is refused and the old one kept.
    fs::write(&config, "[services.x]\nimage = 'Bad Image'\n").unwrap();
    agent.signal("HUP");
    wait_until(10, "the refused reload", || agent_log().contains("configuration not reloaded"));
    write_config("\n[checks.quick]\nrepository = \"local\"\nschedule = \"*/2 * * * * *\"\n");
    agent.signal("HUP");
    wait_until(30, "the check job added by SIGHUP", || {
        job(&status(&env, &config_s), "check:quick")["last"]["ok"] == true
    });

    // SIGTERM: running jobs finish, the agent exits 0, nothing is left frozen.
    agent.signal("TERM");
    let mut agent = agent;
    let code = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            agent.child.try_wait().unwrap()
        })
        .expect("the agent did not stop within 20 s of SIGTERM");
    assert!(code.success(), "agent exited with {code}:\n{}", agent_log());
    assert!(agent_log().contains("agent stopped"));
    let inspect = env.inspect("website");
    assert_eq!(inspect["State"]["Status"], "running", "{inspect}");

    // Retention: keep.last = 2 after at least four runs.
    let kept = snapshots(&env, "website", &local, &pw);
    assert_eq!(kept.len(), 2, "keep last 2: {kept:?}");
    env.ok(&["check", "--repo", &local, "--password-file", &pw, "--read-data"]);

    // down removes both services, keeps the volume.
    let out = env.ok(&["down", "--config", &config_s]);
    assert!(out.contains("website: removed"), "{out}");
    assert!(env.ok(&["volume", "ls", "-q"]).contains("content"));
    let out = env.lifeboat().args(["ps", "-a", "-q"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "{}", stderr(&out));
}

#[test]
fn a_broken_config_fails_with_line_numbers_and_every_example_passes_config_check() {
    let env = Env::new();
    let bad = env.path("bad.toml");
    fs::write(
        &bad,
        "[repositories.local]\nurl = \"/srv/r\"\n\n[services.web]\nimage = \"web:1\"\n\n[services.web.snapshot]\nschedule = \"0 2 * *\"\nrepositories = [\"offsite\"]\n",
    )
    .unwrap();
    let err = env.fails(&["config", "check", "--config", bad.to_str().unwrap()], 2);
    assert!(err.contains("bad.toml:8: ") && err.contains("5 fields"), "{err}");
    assert!(err.contains("bad.toml:9: ") && err.contains("\"offsite\" is not defined"), "{err}");
    let missing = env.fails(&["config", "check", "--config", env.path("nope.toml").to_str().unwrap()], 3);
    assert!(missing.contains("nope.toml"), "{missing}");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = env.ok(&["config", "check", "--config", path.to_str().unwrap()]);
            assert!(out.contains(": ok"), "{out}");
        }
    }
}

#[test]
fn systemd_accepts_the_units() {
    if !crate::util::have("systemd-analyze") {
        return;
    }
    let env = Env::new();
    // verify checks that the binary and the man pages the units name exist: point it at ours.
    let man = env.path("man");
    env.ok(&["manpages", man.join("man1").to_str().unwrap()]);
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let mut paths = Vec::new();
    for name in ["lifeboat-agent.service", "lifeboat-containers.service"] {
        let text = fs::read_to_string(units.join(name)).unwrap();
        assert!(text.contains("/usr/local/bin/lifeboat"), "{name} should name the installed binary");
        let local = env.path(name);
        fs::write(&local, text.replace("/usr/local/bin/lifeboat", crate::util::BIN)).unwrap();
        paths.push(local);
    }
    let out =
        std::process::Command::new("systemd-analyze").arg("verify").args(&paths).env("MANPATH", &man).output().unwrap();
    assert!(out.status.success(), "systemd-analyze verify:\n{}{}", crate::util::stdout(&out), stderr(&out));
    assert!(stderr(&out).trim().is_empty(), "systemd-analyze warnings:\n{}", stderr(&out));
}

#[test]
fn up_recreates_a_changed_service_and_leaves_the_others_alone() {
    let env = Env::new();
    env.site_image("site:1");
    let config = env.path("lifeboat.toml");
    let write = |site_name: &str| {
        fs::write(
            &config,
            format!(
                "[services.web]\nimage = \"site:1\"\nenv = {{ SITE_NAME = \"{site_name}\" }}\nvolumes = [\"web-data:/srv/data\"]\n\n[services.sidecar]\nimage = \"site:1\"\nnetwork = \"container:web\"\ncommand = [\"sleep\", \"1000\"]\n"
            ),
        )
        .unwrap()
    };
    write("City");
    let c = config.to_str().unwrap();
    let out = env.ok(&["up", "--config", c]);
    // The service whose network another joins comes first.
    assert_eq!(out, "web: created\nsidecar: created\n");
    let web_id = env.inspect("web")["Id"].clone();
    let sidecar_id = env.inspect("sidecar")["Id"].clone();
    env.ok(&["exec", "web", "sh", "-c", "echo kept > /srv/data/note"]);

    write("Town");
    let out = env.ok(&["up", "--config", c, "web"]);
    assert_eq!(out, "web: recreated (definition changed)\n");
    assert_ne!(env.inspect("web")["Id"], web_id);
    assert_eq!(env.ok(&["exec", "web", "sh", "-c", "echo $SITE_NAME; cat /srv/data/note"]), "Town\nkept\n");
    assert_eq!(env.inspect("sidecar")["Id"], sidecar_id, "up SERVICE touches only that service");

    // The sidecar joined the old web's network: the next full up restarts it, joining the new
    // one (its own container, named peer, unchanged).
    let out = env.ok(&["up", "--config", c]);
    assert_eq!(out, "web: up to date\nsidecar: restarted (the container whose network it joins was recreated)\n");
    assert_eq!(env.inspect("sidecar")["Id"], sidecar_id);
    assert_eq!(
        env.ok(&["exec", "sidecar", "sh", "-c", "wget -q -O - http://127.0.0.1/ | head -1"]),
        "<h1>City Library</h1>\n"
    );
    // A stopped service is started again; a container up did not make is left alone.
    env.ok(&["stop", "-t", "1", "sidecar"]);
    env.ok(&["run", "-d", "--name", "intruder", "site:1"]);
    let out = env.ok(&["up", "--config", c]);
    assert!(out.contains("web: up to date") && out.contains("sidecar: started"), "{out}");
    fs::write(&config, format!("{}\n[services.intruder]\nimage = \"site:1\"\n", fs::read_to_string(&config).unwrap()))
        .unwrap();
    let err = env.fails(&["up", "--config", c, "intruder"], 5);
    assert!(err.contains("did not create"), "{err}");
    let out = env.ok(&["down", "--config", c, "web", "sidecar"]);
    assert_eq!(out, "sidecar: removed\nweb: removed\n");
    // down -v never removes a volume another container still uses: it says so, and goes on.
    env.ok(&["up", "--config", c, "web"]);
    env.ok(&["run", "-d", "--name", "reader", "-v", "web-data:/data", "site:1", "sleep", "600"]);
    let out = env.ok(&["down", "--config", c, "-v", "web"]);
    assert_eq!(out, "web: removed (volumes kept, still used by another container: web-data)\n");
    assert_eq!(env.ok(&["exec", "reader", "cat", "/data/note"]), "kept\n");
    env.ok(&["rm", "-f", "reader", "intruder"]);
    env.ok(&["volume", "rm", "web-data"]);
}

#[test]
fn a_missed_run_is_caught_up_and_a_job_never_overlaps_itself() {
    let env = Env::new();
    env.site_image("site:1");
    let config = env.path("lifeboat.toml");
    // A yearly snapshot whose last scheduled run was two years ago (the agent was down), and a
    // check every second whose hook-free snapshot sibling is slow.
    fs::write(
        &config,
        "[agent]\nshutdown_grace = \"1s\"\n\n[services.web]\nimage = \"site:1\"\n\n[services.web.snapshot]\nschedule = \"0 0 1 1 *\"\n\n[services.slow]\nimage = \"site:1\"\n\n[services.slow.snapshot]\nschedule = \"* * * * * *\"\nexec_before = [\"sleep 3\"]\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    env.ok(&["up", "--config", c]);
    let state_dir = env.root().join("agent");
    fs::create_dir_all(&state_dir).unwrap();
    let two_years_ago = (chrono::Utc::now() - chrono::Duration::days(730)).to_rfc3339();
    fs::write(
        state_dir.join("state.json"),
        format!("{{\"jobs\": {{\"snapshot:web\": {{\"last_scheduled\": \"{two_years_ago}\"}}}}}}"),
    )
    .unwrap();
    let child = env.lifeboat().args(["agent", "--config", c]).stderr(Stdio::null()).spawn().unwrap();
    let agent = Agent { child };
    wait_until(60, "the caught-up snapshot", || job(&status(&env, c), "snapshot:web")["last"]["ok"] == true);
    let s = status(&env, c);
    assert_eq!(job(&s, "snapshot:web")["runs"], 1, "one catch-up run, not one per missed year");
    wait_until(30, "a skipped run of the slow job", || {
        job(&status(&env, c), "snapshot:slow")["skipped"].as_u64().unwrap_or(0) >= 2
    });
    // A job running now shows as running, in JSON and in the table.
    // (It runs nearly all the time: between two runs, a second at most.)
    wait_until(10, "the slow job shown running", || {
        job(&status(&env, c), "snapshot:slow")["running_since"].is_string()
            && env
                .ok(&["status", "--config", c])
                .lines()
                .any(|l| l.starts_with("snapshot:slow") && l.contains("running since"))
    });
    agent.signal("TERM");
    let mut agent = agent;
    let code = (0..300).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        agent.child.try_wait().unwrap()
    });
    assert!(code.is_some_and(|c| c.success()), "{code:?}");
    // Stopped mid-hook or mid-capture, the slow service is not left frozen.
    assert_eq!(env.inspect("slow")["State"]["Status"], "running");
}
