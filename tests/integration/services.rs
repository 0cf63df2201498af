//! Docker's semantics where real services rely on them, on the small busybox image: volumes
//! filled with the owner and mode of the image's directory, `VOLUME` instructions, `nocopy`,
//! network peers found by name, and health checks as Docker runs them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::util::{Env, wait_until};

fn ps_line(env: &Env, name: &str) -> String {
    env.ok(&["ps", "-a"]).lines().find(|l| l.ends_with(name)).unwrap_or_default().to_string()
}

/// An image whose `/var/lib/app` belongs to user 1000 (mode 0750, with a file), declared a
/// `VOLUME` at `/cache`, and run as that user.
fn owned_image(env: &Env) {
    env.site_image("site:1");
    let ctx = env.path("owned-ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM site:1\n\
         RUN mkdir -p /var/lib/app /cache && echo seed > /var/lib/app/seed && echo c > /cache/c \
             && chown -R 1000:1000 /var/lib/app && chmod 0750 /var/lib/app\n\
         VOLUME /cache\n\
         USER 1000\n",
    )
    .unwrap();
    env.ok(&["build", "-t", "owned:1", ctx.to_str().unwrap()]);
}

#[test]
fn a_volume_gets_the_owner_and_mode_of_the_directory_it_is_mounted_on() {
    let env = Env::new();
    owned_image(&env);
    // A named volume, new or created empty beforehand: filled, and given 1000:1000 0750.
    env.ok(&["volume", "create", "made-before"]);
    for vol in ["fresh", "made-before"] {
        let out = env.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{vol}:/var/lib/app"),
            "owned:1",
            "sh",
            "-c",
            "echo written > /var/lib/app/new && cat /var/lib/app/seed && id -u",
        ]);
        assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["seed", "1000"], "{vol}: {out}");
        let data = env.root().join("volumes").join(vol).join("_data");
        let m = fs::metadata(&data).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o750), "{vol}");
    }
    // nocopy: neither the content nor... the volume stays as it is (root's, empty).
    let out = env
        .lifeboat()
        .args([
            "run",
            "--rm",
            "-v",
            "bare:/var/lib/app:nocopy",
            "owned:1",
            "sh",
            "-c",
            "ls -A /var/lib/app; touch /var/lib/app/x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a non-root user wrote into a root-owned nocopy volume");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("seed"));
    // A volume that was used is never filled again, even once emptied.
    env.ok(&["run", "--rm", "-u", "0", "-v", "fresh:/var/lib/app", "owned:1", "sh", "-c", "rm -f /var/lib/app/*"]);
    let out = env.ok(&["run", "--rm", "-v", "fresh:/var/lib/app", "owned:1", "ls", "-A", "/var/lib/app"]);
    assert_eq!(out.trim(), "", "an emptied volume was filled again");
}

#[test]
fn image_volumes_are_anonymous_volumes_removed_with_rm_v_and_run_rm() {
    let env = Env::new();
    owned_image(&env);
    let before: Vec<String> = env.ok(&["volume", "ls", "-q"]).lines().map(String::from).collect();
    env.ok(&["run", "-d", "--name", "keeper", "-v", "named:/var/lib/app", "owned:1", "sleep", "600"]);
    let after: Vec<String> = env.ok(&["volume", "ls", "-q"]).lines().map(String::from).collect();
    let anonymous: Vec<&String> = after.iter().filter(|v| !before.contains(v) && *v != "named").collect();
    assert_eq!(anonymous.len(), 1, "no anonymous volume for VOLUME /cache: {after:?}");
    assert_eq!(anonymous[0].len(), 64, "{}", anonymous[0]);
    // Filled from the image like any new volume.
    assert_eq!(env.ok(&["exec", "keeper", "cat", "/cache/c"]).trim(), "c");
    let anonymous = anonymous[0].clone();
    // rm -v: the anonymous volume goes, the named one stays (Docker's rule).
    env.ok(&["rm", "-f", "-v", "keeper"]);
    let left = env.ok(&["volume", "ls", "-q"]);
    assert!(!left.contains(&anonymous), "rm -v kept the anonymous volume");
    assert!(left.lines().any(|l| l == "named"), "rm -v removed a named volume");
    // run --rm takes its anonymous volume too.
    env.ok(&["run", "--rm", "owned:1", "true"]);
    // (The container is gone when run returns; its files and volume go right after.)
    wait_until(10, "run --rm to take its anonymous volume", || env.ok(&["volume", "ls", "-q"]) == left);
    // A mount on the VOLUME path takes its place: no anonymous volume.
    env.ok(&["run", "--rm", "-v", "mine:/cache", "owned:1", "true"]);
    let now: Vec<String> = env.ok(&["volume", "ls", "-q"]).lines().map(String::from).collect();
    assert!(now.iter().all(|v| v.len() != 64), "{now:?}");
    // A bind mount of a missing host path is made, as Docker's -v does.
    let missing = env.path("made/by/run");
    env.ok(&["run", "--rm", "-u", "0", "-v", &format!("{}:/x", missing.display()), "owned:1", "touch", "/x/file"]);
    assert!(missing.join("file").is_file());
}

#[test]
fn a_network_peer_is_found_by_name_at_every_start() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "site:1",
        "sh",
        "-c",
        "echo db-answers > /www/index.html; httpd -f -p 8080 -h /www",
    ]);
    env.ok(&["run", "-d", "--name", "web", "--network", "container:db", "site:1", "sleep", "600"]);
    assert_eq!(env.inspect("web")["HostConfig"]["NetworkMode"], "container:db");
    let fetch =
        || env.lifeboat().args(["exec", "web", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&fetch().stdout).trim(), "db-answers");
    // The peer is replaced by a new container of the same name: web, started again, joins it.
    env.ok(&["rm", "-f", "db"]);
    env.ok(&["stop", "web"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "site:1",
        "sh",
        "-c",
        "echo new-db > /www/index.html; httpd -f -p 8080 -h /www",
    ]);
    env.ok(&["start", "web"]);
    wait_until(10, "web to reach the new db", || String::from_utf8_lossy(&fetch().stdout).trim() == "new-db");
    // Without its peer, a start says so plainly.
    env.ok(&["rm", "-f", "db"]);
    env.ok(&["stop", "web"]);
    let err = env.fails(&["start", "web"], 1);
    assert!(err.contains("container db, whose network this one joins, does not exist"), "{err}");
    env.ok(&["rm", "-f", "web"]);
}

/// The failure a user met: db and web (on db's network) snapshotted, both removed, db
/// restored, then web restored: it joins the restored db by name.
#[test]
fn a_service_on_its_peer_s_network_is_restored_after_its_peer() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "-v",
        "dbdata:/www",
        "site:1",
        "sh",
        "-c",
        "echo rows > /www/index.html; httpd -f -p 8080 -h /www",
    ]);
    env.ok(&["run", "-d", "--name", "web", "--network", "container:db", "site:1", "sleep", "600"]);
    env.ok(&["snapshot", "db"]);
    env.ok(&["snapshot", "web"]);
    env.ok(&["rm", "-f", "web", "db"]);
    env.ok(&["volume", "rm", "dbdata"]);
    env.ok(&["restore", "db"]);
    env.ok(&["restore", "web"]);
    let out = env.ok(&["exec", "web", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]);
    assert_eq!(out.trim(), "rows");
    env.ok(&["rm", "-f", "web", "db"]);
}

#[test]
fn health_checks_are_run_as_docker_runs_them() {
    let env = Env::new();
    env.site_image("site:1");
    let ctx = env.path("hc-ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM site:1\nHEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD test -f /tmp/ok || { echo not-ok-yet; exit 1; }\n",
    )
    .unwrap();
    env.ok(&["build", "-t", "hc:1", ctx.to_str().unwrap()]);
    // The image's check: starting, then unhealthy after two failures, with their output.
    env.ok(&["run", "-d", "--name", "hc", "hc:1", "sleep", "600"]);
    assert!(ps_line(&env, "hc").contains("(health: starting)"), "{}", ps_line(&env, "hc"));
    wait_until(20, "unhealthy", || ps_line(&env, "hc").contains("(unhealthy)"));
    let health = env.inspect("hc")["State"]["Health"].clone();
    assert!(health["FailingStreak"].as_u64().unwrap() >= 2, "{health}");
    let log = health["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{health}");
    assert!(log.iter().all(|r| r["ExitCode"] == 1 && r["Output"].as_str().unwrap().contains("not-ok-yet")), "{health}");
    assert_eq!(env.inspect("hc")["Config"]["Healthcheck"]["Retries"], 2);
    env.ok(&["exec", "hc", "touch", "/tmp/ok"]);
    wait_until(20, "healthy", || ps_line(&env, "hc").contains("(healthy)"));
    // A restore waits for the check, and what it saw is what ps says.
    env.ok(&["snapshot", "hc"]);
    env.ok(&["rm", "-f", "hc"]);
    let out = env.ok(&["restore", "hc"]);
    assert!(out.contains("healthy") && !out.contains("NOT"), "{out}");
    assert!(ps_line(&env, "hc").contains("(healthy)"), "{}", ps_line(&env, "hc"));
    // A check that hangs is killed at its timeout, and counts as a failure.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "hang",
        "--health-cmd",
        "sleep 60",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "site:1",
        "sleep",
        "600",
    ]);
    wait_until(20, "the hanging check to fail", || ps_line(&env, "hang").contains("(unhealthy)"));
    let log = env.inspect("hang")["State"]["Health"]["Log"].clone();
    assert!(
        log.as_array().unwrap().iter().any(|r| r["Output"].as_str().unwrap().contains("exceeded timeout")),
        "{log}"
    );
    // Flags over the image's check: --no-healthcheck drops it.
    env.ok(&["run", "-d", "--name", "none", "--no-healthcheck", "hc:1", "sleep", "600"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!ps_line(&env, "none").contains("health"), "{}", ps_line(&env, "none"));
    assert!(env.inspect("none")["Config"]["Healthcheck"].is_null());
    env.ok(&["rm", "-f", "hc", "hang", "none"]);
}

/// `restore --replace` after a bad upgrade: the service comes back as snapshotted, in place,
/// and what it replaced is gone; a restore that is not healthy puts the service back as it was.
#[test]
fn restore_replace_rolls_a_running_service_back_or_puts_it_back() {
    let env = Env::new();
    env.site_image("site:1");
    let port = crate::util::free_port();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "-v",
        "appdata:/www",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "--health-cmd",
        "test -f /www/ok",
        "--health-interval",
        "1s",
        "site:1",
    ]);
    env.ok(&["exec", "app", "sh", "-c", "echo good > /www/index.html; touch /www/ok"]);
    let good: serde_json::Value = serde_json::from_str(&env.ok(&["snapshot", "app", "--format", "json"])).unwrap();
    env.ok(&["exec", "app", "sh", "-c", "echo bad-upgrade > /www/index.html; rm /www/ok"]);
    let bad: serde_json::Value = serde_json::from_str(&env.ok(&["snapshot", "app", "--format", "json"])).unwrap();
    env.ok(&["exec", "app", "sh", "-c", "echo current > /www/index.html; touch /www/ok"]);

    // A snapshot that is not healthy: refused, and the service is as it was, running.
    let err = env
        .fails(&["restore", "app", "--replace", "--snapshot", bad["id"].as_str().unwrap(), "--health-timeout", "3"], 1);
    assert!(err.contains("not healthy") && err.contains("as it was is back"), "{err}");
    wait_until(20, "the service put back", || crate::util::http_get(port, "/").is_ok_and(|p| p.trim() == "current"));
    // The good one: back in place, healthy, nothing left aside.
    let out = env.ok(&["restore", "app", "--replace", "--snapshot", good["id"].as_str().unwrap()]);
    assert!(out.contains("healthy"), "{out}");
    wait_until(20, "the rolled-back page", || crate::util::http_get(port, "/").is_ok_and(|p| p.trim() == "good"));
    let ps = env.ok(&["ps", "-a"]);
    let volumes = env.ok(&["volume", "ls", "-q"]);
    assert!(!ps.contains("replaced") && !volumes.contains("replaced"), "left aside:\n{ps}\n{volumes}");
    assert_eq!(volumes.trim(), "appdata");
    env.ok(&["rm", "-f", "app"]);
}

/// A restore whose published port is taken fails and leaves `ps -a` and the volumes as they
/// were before it.
#[test]
fn a_restore_that_cannot_start_leaves_nothing_behind() {
    let env = Env::new();
    env.site_image("site:1");
    let port = crate::util::free_port();
    env.ok(&["run", "-d", "--name", "web", "-v", "webdata:/www", "-p", &format!("127.0.0.1:{port}:80"), "site:1"]);
    env.ok(&["snapshot", "web"]);
    env.ok(&["rm", "-f", "web"]);
    env.ok(&["volume", "rm", "webdata"]);
    let taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (ps, volumes) = (env.ok(&["ps", "-a", "-q"]), fs::read_dir(env.root().join("volumes")).unwrap().count());
    let out = env.lifeboat().args(["restore", "web"]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(env.ok(&["ps", "-a", "-q"]), ps, "a failed restore left a container");
    assert_eq!(fs::read_dir(env.root().join("volumes")).unwrap().count(), volumes, "a failed restore left a volume");
    drop(taken);
    env.ok(&["restore", "web"]);
    env.ok(&["rm", "-f", "web"]);
}

/// Issue 22's first defect: a service with a published port and a health check, restarted
/// (and stopped then started at once) takes its port again every time.
#[test]
fn a_published_service_with_a_health_check_restarts_at_once() {
    let env = Env::new();
    env.site_image("site:1");
    let port = crate::util::free_port();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        "--health-cmd",
        "wget -q -O /dev/null http://127.0.0.1:8080/",
        "--health-interval",
        "1s",
        "site:1",
        "sh",
        "-c",
        "echo up > /www/index.html; exec httpd -f -p 8080 -h /www",
    ]);
    let page = || crate::util::http_get(port, "/").is_ok_and(|p| p.trim() == "up");
    wait_until(20, "a healthy service", || ps_line(&env, "web").contains("(healthy)"));
    for round in 0..3 {
        // Connections open across the restart must not keep the port.
        let _held = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // httpd as PID 1 ignores SIGTERM (as under Docker): -t 1 kills it after a second.
        env.ok(&["restart", "-t", "1", "web"]);
        wait_until(20, &format!("the page after restart {round}"), page);
        env.ok(&["stop", "-t", "1", "web"]);
        env.ok(&["start", "web"]);
        wait_until(20, &format!("the page after stop and start {round}"), page);
    }
    env.ok(&["rm", "-f", "web"]);
}
