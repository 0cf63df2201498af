//! Services run by Docker, snapshotted by Lifeboat while they serve (paused for the capture,
//! never stopped) and restored under Lifeboat's own runtime on a root with no engine.

use std::fs;
use std::process::Command;

use crate::util::{Env, docker, run, stderr, wait_until};

/// A Docker service writing to its volume all the time: every line of `/data/log` is the
/// count after it and a tag drawn at each start, and `/data/n` the last count (written after
/// the log); started again, it counts on from the log's last line (with a new tag, so a lost
/// tail shows).
struct DockerService {
    env: Env,
    name: String,
    volume: String,
    image: String,
    repo: String,
    pwfile: String,
}

fn dock() -> Command {
    docker().expect("checked")
}

/// Docker containers and volumes a test made besides its service, removed however it ends.
struct Leftovers {
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Leftovers {
    fn new(containers: &[&str], volumes: &[&str]) -> Leftovers {
        let l = Leftovers {
            containers: containers.iter().map(|c| c.to_string()).collect(),
            volumes: volumes.iter().map(|v| v.to_string()).collect(),
        };
        l.remove();
        l
    }

    fn remove(&self) {
        for c in &self.containers {
            let _ = dock().args(["rm", "-f", c]).output();
        }
        for v in &self.volumes {
            let _ = dock().args(["volume", "rm", "-f", v]).output();
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        self.remove();
    }
}

impl DockerService {
    /// `tag` sets the names apart from those of the other tests running at the same time.
    fn start(tag: &str) -> Option<DockerService> {
        docker()?;
        let env = Env::new();
        let pid = std::process::id();
        let (name, volume, image) =
            (format!("lbeng-{tag}-{pid}"), format!("lbeng-{tag}-vol-{pid}"), format!("lbeng-{tag}-{pid}:1"));
        // Whatever an earlier, interrupted run left.
        let _ = dock().args(["rm", "-f", &name]).output();
        let _ = dock().args(["volume", "rm", "-f", &volume]).output();
        let rootfs = env.busybox_rootfs("rootfs");
        let tar = env.path("rootfs.tar");
        run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
        run(dock().arg("import").arg(&tar).arg(&image));
        run(dock().args(["volume", "create", &volume]));
        run(dock().args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "-v",
            &format!("{volume}:/data"),
            "-e",
            "GREETING=hello from docker",
            "--label",
            "team=library",
            "--restart",
            "unless-stopped",
            &image,
            "sh",
            "-c",
            "echo from-the-layer > /etc/motd; rm -f /bin/vi; i=$(tail -n 1 /data/log 2>/dev/null | cut -d' ' -f1); \
             i=${i:-0}; t=$RANDOM$RANDOM; \
             while true; do i=$((i+1)); echo \"$i $t\" >> /data/log; echo $i > /data/n.new; mv /data/n.new /data/n; done",
        ]));
        let pwfile = env.path("pw");
        fs::write(&pwfile, "engine test password\n").unwrap();
        let repo = env.path("repo").display().to_string();
        let s = DockerService { env, name, volume, image, repo, pwfile: pwfile.display().to_string() };
        s.lb(&s.env, &["repo", "init"]);
        wait_until(30, "the service to write", || fs::metadata(s.docker_data().join("n")).is_ok());
        Some(s)
    }

    /// The volume's directory on this host (Docker's).
    fn docker_data(&self) -> std::path::PathBuf {
        let out = run(dock().args(["volume", "inspect", "-f", "{{.Mountpoint}}", &self.volume]));
        std::path::PathBuf::from(out.trim())
    }

    fn lb(&self, env: &Env, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--repo", &self.repo, "--password-file", &self.pwfile]);
        env.ok(&all)
    }

    fn docker_state(&self) -> String {
        run(dock().args(["inspect", "-f", "{{.State.Status}} paused={{.State.Paused}}", &self.name])).trim().to_string()
    }
}

impl Drop for DockerService {
    fn drop(&mut self) {
        let _ = dock().args(["rm", "-f", &self.name]).output();
        let _ = dock().args(["volume", "rm", "-f", &self.volume]).output();
        let _ = dock().args(["rmi", &self.image]).output();
    }
}

/// The log's lines are 1, 2, … without a gap or a torn line, and `n` is its last line or the
/// one before (the capture fell between the two writes): the volume as it was at one instant.
fn assert_one_instant(data: &std::path::Path) -> u64 {
    let log = fs::read_to_string(data.join("log")).unwrap();
    let lines: Vec<u64> = log
        .lines()
        .map(|l| l.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("a torn line {l:?}")))
        .collect();
    assert!(!lines.is_empty());
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(*v, i as u64 + 1, "the log is not one instant's");
    }
    assert!(log.ends_with('\n'), "the log's last line is torn");
    let last = *lines.last().unwrap();
    let n: u64 = fs::read_to_string(data.join("n")).unwrap().trim().parse().unwrap();
    assert!(n == last || n + 1 == last, "n = {n}, but the log ends at {last}");
    last
}

#[test]
fn a_docker_service_is_snapshotted_while_it_serves_and_restored_without_docker() {
    let Some(s) = DockerService::start("restore") else { return };
    let target = format!("docker://{}", s.name);
    let since = run(dock().args(["info", "-f", "{{.SystemTime}}"])).trim().to_string();
    let out = s.lb(&s.env, &["snapshot", &target, "--exec-before", "echo hooked > /data/hook", "--format", "json"]);
    // Docker paused it for the capture and unpaused it: never a stop.
    let until = run(dock().args(["info", "-f", "{{.SystemTime}}"])).trim().to_string();
    let events = run(dock().args([
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={}", s.name),
        "--format",
        "{{.Action}}",
    ]));
    let actions: Vec<&str> = events.lines().filter(|a| !a.starts_with("exec_")).collect();
    assert_eq!(actions, ["pause", "unpause"], "{events}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["service"], s.name.as_str(), "{report}");
    assert!(report["stats"]["frozen_ms"].as_u64().is_some(), "no frozen window reported: {report}");
    // Paused for the capture, never stopped: it runs on, unpaused, and was never restarted.
    assert_eq!(s.docker_state(), "running paused=false");
    let restarts = run(dock().args(["inspect", "-f", "{{.RestartCount}} {{.State.StartedAt}}", &s.name]));
    let before = fs::read_to_string(s.docker_data().join("n")).unwrap();
    wait_until(10, "the service to go on writing", || {
        fs::read_to_string(s.docker_data().join("n")).is_ok_and(|now| now != before)
    });
    let snaps = s.lb(&s.env, &["snapshots", "--format", "json"]);
    let snaps: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");

    // A second snapshot only reads what changed, and takes the image from the store.
    s.lb(&s.env, &["snapshot", &target]);
    assert_eq!(run(dock().args(["inspect", "-f", "{{.RestartCount}} {{.State.StartedAt}}", &s.name])), restarts);

    // The Docker side is gone, and a new host has no Docker at all: it restores from the
    // repository alone, under Lifeboat's runtime.
    run(dock().args(["rm", "-f", &s.name]));
    run(dock().args(["volume", "rm", &s.volume]));
    let host = Env::new();
    let restored = host
        .lifeboat()
        .env_remove("DOCKER_HOST")
        .args(["restore", &s.name, "--no-start", "--repo", &s.repo, "--password-file", &s.pwfile])
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", stderr(&restored));
    let data = host.root().join("volumes").join(&s.volume).join("_data");
    let counted = assert_one_instant(&data);
    assert_eq!(fs::read_to_string(data.join("hook")).unwrap(), "hooked\n", "the hook ran before the capture");

    // Its configuration came with it: the command, environment, labels, restart policy.
    let inspect: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", &s.name])).unwrap();
    let c = &inspect[0];
    assert!(c["Config"]["Env"].as_array().unwrap().iter().any(|e| e == "GREETING=hello from docker"), "{c}");
    assert_eq!(c["Config"]["Labels"]["team"], "library");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");

    // It runs from where the snapshot left it: its layer (a file written, one deleted) and
    // its volume, counting on.
    host.ok(&["start", &s.name]);
    assert_eq!(host.ok(&["exec", &s.name, "cat", "/etc/motd"]), "from-the-layer\n");
    let vi = host.lifeboat().args(["exec", &s.name, "test", "-e", "/bin/vi"]).output().unwrap();
    assert_eq!(vi.status.code(), Some(1), "a file deleted in the container came back");
    wait_until(20, "the restored service to count on", || {
        fs::read_to_string(data.join("n"))
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > counted + 10)
    });
    host.ok(&["rm", "-f", &s.name]);

    // And back into Docker, from the same repository, the image gone there too: image,
    // volume and container made in Docker, its layer and data as the snapshot holds them.
    run(dock().args(["rmi", &s.image]));
    let out = s.lb(&s.env, &["restore", &s.name, "--to", "docker://", "--format", "json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((r["loaded_image"].as_bool(), r["started"].as_bool()), (Some(true), Some(true)), "{r}");
    assert_eq!(s.docker_state(), "running paused=false");
    assert_eq!(run(dock().args(["exec", &s.name, "cat", "/etc/motd"])), "from-the-layer\n");
    let vi = dock().args(["exec", &s.name, "test", "-e", "/bin/vi"]).output().unwrap();
    assert_eq!(vi.status.code(), Some(1), "a file deleted in the container came back in Docker");
    let env = run(dock().args([
        "inspect",
        "-f",
        "{{json .Config.Env}} {{.Config.Labels.team}} {{.HostConfig.RestartPolicy.Name}}",
        &s.name,
    ]));
    assert!(env.contains("GREETING=hello from docker") && env.contains(" library unless-stopped"), "{env}");
    let data = s.docker_data();
    wait_until(20, "the service to count on in Docker", || {
        fs::read_to_string(data.join("n"))
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > counted + 10)
    });
    // The snapshot's log, tags included, then what the restored service wrote since.
    let snapshot_log = s.lb(&s.env, &["dump", &format!("{}:/data/log", s.name)]);
    assert_eq!(counted_lines_of(&snapshot_log), counted);
    let log = fs::read_to_string(data.join("log")).unwrap();
    assert!(log.starts_with(&snapshot_log), "the log restored into Docker is not the snapshot's");
    assert_eq!(fs::read_to_string(data.join("hook")).unwrap(), "hooked\n");

    // Again: the name is taken in Docker, nothing is touched.
    let e = s.env.fails(&["restore", &s.name, "--to", "docker://", "--repo", &s.repo, "--password-file", &s.pwfile], 5);
    assert!(e.contains("already has a container"), "{e}");
    assert_eq!(s.docker_state(), "running paused=false");
}

#[test]
fn engine_targets_that_cannot_be_served_are_clear_errors() {
    let Some(s) = DockerService::start("errors") else { return };
    // No such container: not found.
    let e = s
        .env
        .fails(&["snapshot", "docker://no-such-container-here", "--repo", &s.repo, "--password-file", &s.pwfile], 3);
    assert!(e.contains("no container no-such-container-here"), "{e}");
    // No such project.
    let e =
        s.env.fails(&["snapshot", "docker://no-such-project/*", "--repo", &s.repo, "--password-file", &s.pwfile], 3);
    assert!(e.contains("Compose project no-such-project"), "{e}");
    // A malformed target: usage.
    let e = s.env.fails(&["snapshot", "docker://a/b/c", "--repo", &s.repo, "--password-file", &s.pwfile], 2);
    assert!(e.contains("docker://CONTAINER"), "{e}");
    // An engine that does not answer: a clear error naming the socket, nothing paused.
    let out = s
        .env
        .lifeboat()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["snapshot", &format!("docker://{}", s.name), "--repo", &s.repo, "--password-file", &s.pwfile])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/docker.sock"), "{}", stderr(&out));
    // A failing hook: no snapshot, and the service runs on unpaused.
    let e = s.env.fails(
        &[
            "snapshot",
            &format!("docker://{}", s.name),
            "--exec-before",
            "exit 3",
            "--repo",
            &s.repo,
            "--password-file",
            &s.pwfile,
        ],
        1,
    );
    assert!(e.contains("exit code 3"), "{e}");
    assert_eq!(s.docker_state(), "running paused=false");
    let snaps: serde_json::Value = serde_json::from_str(&s.lb(&s.env, &["snapshots", "--format", "json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 0, "{snaps}");
}

#[test]
fn a_snapshot_killed_while_docker_has_the_service_paused_leaves_it_running() {
    let Some(s) = DockerService::start("killed") else { return };
    // A second service that rewrites 16 MiB over and over: every capture reads it again
    // while Docker has the service paused, so the pause lasts long enough to be seen.
    let busy = format!("{}-busy", s.name);
    let _leftovers = Leftovers::new(&[&busy], &[]);
    run(dock().args([
        "run",
        "-d",
        "--name",
        &busy,
        "--network",
        "none",
        &s.image,
        "sh",
        "-c",
        "while true; do dd if=/dev/urandom of=/big.new bs=1M count=16 2>/dev/null; mv /big.new /big; done",
    ]));
    let id = run(dock().args(["inspect", "-f", "{{.Id}}", &busy])).trim().to_string();
    let mark = s.env.path("run").join("engine-paused").join(&id);
    let target = format!("docker://{busy}");
    let state =
        || run(dock().args(["inspect", "-f", "{{.State.Status}} paused={{.State.Paused}}", &busy])).trim().to_string();
    wait_until(30, "the busy service to write its file", || {
        dock().args(["exec", &busy, "test", "-e", "/big"]).status().is_ok_and(|st| st.success())
    });
    let mut killed_paused = 0;
    for _ in 0..5 {
        let mut child = s
            .env
            .lifeboat()
            .args(["snapshot", &target, "--no-image", "--repo", &s.repo, "--password-file", &s.pwfile])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed once Docker says the service is paused.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut paused = false;
        while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            if state().ends_with("paused=true") {
                paused = true;
                break;
            }
        }
        let _ = child.kill();
        child.wait().unwrap();
        if !paused {
            continue;
        }
        killed_paused += 1;
        // The guard unpauses it and clears the mark (before any other snapshot could).
        wait_until(15, "the thaw guard to unpause the service", || state() == "running paused=false");
        wait_until(10, "the guard to clear its mark", || !mark.exists());
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert_eq!(state(), "running paused=false", "paused again after the guard");
    }
    assert!(killed_paused >= 1, "no snapshot was ever killed while Docker had the service paused");
    // The next snapshot goes through, and the service runs on.
    s.lb(&s.env, &["snapshot", &target, "--no-image"]);
    assert_eq!(state(), "running paused=false");
    assert!(!mark.exists());
}

#[test]
fn a_restore_into_docker_that_fails_midway_leaves_nothing_behind() {
    let Some(s) = DockerService::start("midway") else { return };
    // A second container in the first one's network, with a volume of its own.
    let peer = format!("{}-peer", s.name);
    let peer_vol = format!("{}-peervol", s.name);
    let leftovers = Leftovers::new(&[&peer], &[&peer_vol]);
    let cleanup = || leftovers.remove();
    run(dock().args([
        "run",
        "-d",
        "--name",
        &peer,
        "--network",
        &format!("container:{}", s.name),
        "-v",
        &format!("{peer_vol}:/p"),
        &s.image,
        "sh",
        "-c",
        "echo kept > /p/file; sleep 100000",
    ]));
    wait_until(20, "the peer to write", || run(dock().args(["exec", &peer, "cat", "/p/file"])) == "kept\n");
    s.lb(&s.env, &["snapshot", &format!("docker://{peer}")]);
    // Its network is recorded by the other's name.
    let ls = s.lb(&s.env, &["snapshots", "--format", "json"]);
    assert!(ls.contains(&peer), "{ls}");
    cleanup();
    run(dock().args(["rm", "-f", &s.name]));

    // The container whose network it joins is gone: Docker refuses to create it, after its
    // volume was made and filled; the volume goes again.
    let out = s
        .env
        .lifeboat()
        .args(["restore", &peer, "--to", "docker://", "--repo", &s.repo, "--password-file", &s.pwfile])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&s.name), "the error does not name the missing peer: {}", stderr(&out));
    let vols = run(dock().args(["volume", "ls", "-q"]));
    assert!(!vols.lines().any(|v| v == peer_vol), "a half-restored volume was left: {vols}");
    let containers = run(dock().args(["ps", "-a", "--format", "{{.Names}}"]));
    assert!(!containers.lines().any(|c| c == peer), "a half-restored container was left: {containers}");
    cleanup();
}

/// `podman system service` on a private socket, stopped when dropped.
struct PodmanService {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl PodmanService {
    fn start(env: &Env) -> Option<PodmanService> {
        let dir = env.path("podman");
        let Some(mut cmd) = crate::util::podman(&dir) else {
            assert!(
                !crate::util::peers_required(),
                "Podman is required (LIFEBOAT_TEST_REQUIRE_PEERS) but not installed"
            );
            return None;
        };
        let socket = dir.join("podman.sock");
        let child = cmd
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let s = PodmanService { dir, child };
        wait_until(30, "podman's API socket", || socket.exists());
        Some(s)
    }

    fn cli(&self) -> Command {
        crate::util::podman(&self.dir).unwrap()
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("podman.sock").display())
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.cli().args(["rm", "-f", "-a"]).output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_podman_container_is_snapshotted_through_its_api_and_restored_without_podman() {
    let env = Env::new();
    let Some(pod) = PodmanService::start(&env) else { return };
    let rootfs = env.busybox_rootfs("rootfs");
    let tar = env.path("rootfs.tar");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
    run(pod.cli().args(["import", "-q"]).arg(&tar).arg("catalogue:1"));
    run(pod.cli().args([
        "run",
        "-d",
        "--name",
        "catalogue",
        "-v",
        "records:/data",
        "localhost/catalogue:1",
        "sh",
        "-c",
        "echo podman-layer > /etc/motd; i=$(tail -n 1 /data/log 2>/dev/null); i=${i:-0}; while true; do i=$((i+1)); echo $i >> /data/log; echo $i > /data/n.new; mv /data/n.new /data/n; done",
    ]));
    let pwfile = env.path("pw");
    fs::write(&pwfile, "podman test password\n").unwrap();
    let repo = env.path("repo").display().to_string();
    let lb = |e: &Env, args: &[&str]| {
        let out = e
            .lifeboat()
            .env("CONTAINER_HOST", pod.host())
            .args(args)
            .args(["--repo", &repo, "--password-file", pwfile.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "lifeboat {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    lb(&env, &["repo", "init"]);
    wait_until(30, "the service to write", || {
        run(pod.cli().args(["exec", "catalogue", "cat", "/data/n"])).trim() != ""
    });
    let report: serde_json::Value =
        serde_json::from_str(&lb(&env, &["snapshot", "podman://catalogue", "--format", "json"])).unwrap();
    assert!(report["stats"]["frozen_ms"].as_u64().is_some(), "{report}");
    let state = run(pod.cli().args(["inspect", "-f", "{{.State.Status}}", "catalogue"]));
    assert_eq!(state.trim(), "running", "Podman's service was left {state}");

    // A host with no Podman: Lifeboat's runtime runs it from the repository alone.
    let host = Env::new();
    lb(&host, &["restore", "catalogue", "--no-start"]);
    let data = host.root().join("volumes/records/_data");
    let counted = assert_one_instant(&data);
    host.ok(&["start", "catalogue"]);
    assert_eq!(host.ok(&["exec", "catalogue", "cat", "/etc/motd"]), "podman-layer\n");
    wait_until(20, "the restored service to count on", || {
        fs::read_to_string(data.join("n"))
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > counted + 10)
    });
    host.ok(&["rm", "-f", "catalogue"]);
}

/// The counts in a log the service writes: 1, 2, … with no gap (the last line may be cut by
/// a writer still running); how many.
fn counted_lines(log: &std::path::Path) -> u64 {
    counted_lines_of(&fs::read_to_string(log).unwrap())
}

fn counted_lines_of(text: &str) -> u64 {
    let mut n = 0;
    for line in text.lines() {
        match line.split(' ').next().unwrap_or_default().parse::<u64>() {
            Ok(v) => {
                assert_eq!(v, n + 1, "a gap in the log");
                n = v;
            }
            Err(_) => break,
        }
    }
    n
}

#[test]
fn adopt_moves_a_docker_service_to_lifeboat_and_back_with_its_data() {
    let Some(s) = DockerService::start("adopt") else { return };
    let target = format!("docker://{}", s.name);
    let out = s.lb(&s.env, &["adopt", &target, "--format", "json"]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(r["unavailable_seconds"].as_f64().is_some(), "{r}");
    // Docker keeps its container, stopped, and will not restart it on its own.
    let state = run(dock().args(["inspect", "-f", "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}", &s.name]));
    assert_eq!(state.trim(), "exited no");
    // Everything written before Docker stopped it is in Lifeboat's volume (its log begins
    // with Docker's whole, tags included: a lost tail would show as a later start's tag),
    // and it counts on.
    let theirs_at_stop = fs::read_to_string(s.docker_data().join("log")).unwrap();
    let at_stop = counted_lines(&s.docker_data().join("log"));
    let ours = s.env.root().join("volumes").join(&s.volume).join("_data");
    wait_until(20, "the adopted service to count on", || counted_lines(&ours.join("log")) > at_stop + 10);
    assert!(
        fs::read_to_string(ours.join("log")).unwrap().starts_with(&theirs_at_stop),
        "writes before the stop were lost"
    );
    assert!(s.env.ok(&["ps"]).contains(&s.name));
    assert_eq!(s.env.ok(&["exec", &s.name, "cat", "/etc/motd"]), "from-the-layer\n");
    // Adopting again is a conflict; nothing changes.
    let e = s.env.fails(&["adopt", &target, "--repo", &s.repo, "--password-file", &s.pwfile], 5);
    assert!(e.contains("already"), "{e}");

    // Back to Docker, with what it wrote under Lifeboat.
    let written_here = counted_lines(&ours.join("log"));
    s.lb(&s.env, &["adopt", "--back", &s.name]);
    let state = run(dock().args(["inspect", "-f", "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}", &s.name]));
    assert_eq!(state.trim(), "running unless-stopped");
    let theirs = s.docker_data().join("log");
    wait_until(20, "the service to count on in Docker", || counted_lines(&theirs) > written_here + 10);
    assert!(!s.env.ok(&["ps", "-a"]).contains(&s.name), "Lifeboat's copy was left behind");
    assert!(!ours.exists(), "Lifeboat's volume was left behind");
    // Docker's log begins with all Lifeboat's copy wrote (the snapshot taken at its stop).
    let sent = s.lb(&s.env, &["dump", &format!("{}:/data/log", s.name)]);
    assert!(counted_lines_of(&sent) >= written_here);
    assert!(fs::read_to_string(&theirs).unwrap().starts_with(&sent), "writes under Lifeboat were lost on the way back");
    // Not adopted any more.
    let e = s.env.fails(&["adopt", "--back", &s.name, "--repo", &s.repo, "--password-file", &s.pwfile], 3);
    assert!(e.contains("not adopted"), "{e}");
}

#[test]
fn an_adoption_that_fails_or_is_killed_puts_the_docker_service_back() {
    let Some(s) = DockerService::start("adoptfail") else { return };
    let target = format!("docker://{}", s.name);
    let state = || {
        run(dock().args(["inspect", "-f", "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}", &s.name]))
            .trim()
            .to_string()
    };
    let record = s.env.root().join("adopted").join(format!("{}.json", s.name));

    // Killed midway (once it has recorded what to put back): `adopt --back` undoes it.
    let mut child = s
        .env
        .lifeboat()
        .args(["adopt", &target, "--repo", &s.repo, "--password-file", &s.pwfile])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !record.exists() && std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(record.exists(), "adopt never recorded what to put back");
    child.kill().unwrap();
    child.wait().unwrap();
    let e = s.env.fails(&["adopt", &target, "--repo", &s.repo, "--password-file", &s.pwfile], 5);
    assert!(e.contains("did not finish"), "{e}");
    let out = s.lb(&s.env, &["adopt", "--back", &s.name, "--format", "json"]);
    assert!(out.contains("\"undone\": true"), "{out}");
    assert_eq!(state(), "running unless-stopped");
    assert!(!s.env.ok(&["ps", "-a"]).contains(&s.name));
    assert!(!record.exists());

    // Restored but never healthy under Lifeboat: removed, and Docker's runs again as it was.
    run(dock().args(["rm", "-f", &s.name]));
    run(dock().args([
        "run",
        "-d",
        "--name",
        &s.name,
        "--network",
        "none",
        "--restart",
        "always",
        "-v",
        &format!("{}:/data", s.volume),
        "--health-cmd",
        "test -e /data/never-there",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        &s.image,
        "sleep",
        "100000",
    ]));
    let e =
        s.env.fails(&["adopt", &target, "--health-timeout", "10", "--repo", &s.repo, "--password-file", &s.pwfile], 1);
    assert!(e.contains("not healthy") && e.contains("as before"), "{e}");
    assert_eq!(state(), "running always");
    assert!(!s.env.ok(&["ps", "-a"]).contains(&s.name), "the unhealthy copy was left");
    assert!(!s.env.root().join("volumes").join(&s.volume).exists(), "its volume was left");
    assert!(!record.exists());
}

#[test]
fn a_compose_project_under_docker_is_one_stack_and_comes_back_whole() {
    let Some(s) = DockerService::start("project") else { return };
    // The project's containers as Docker Compose labels them: a database with its volume,
    // and an application in its network.
    let project = format!("shop{}", std::process::id());
    let (db, web) = (format!("{project}-db-1"), format!("{project}-web-1"));
    let dbvol = format!("{project}_data");
    let leftovers = Leftovers::new(&[&web, &db], &[&dbvol]);
    let cleanup = || leftovers.remove();
    let labels = |service: &str| {
        vec![
            "--label".to_string(),
            format!("com.docker.compose.project={project}"),
            "--label".to_string(),
            format!("com.docker.compose.service={service}"),
        ]
    };
    let mut args: Vec<String> = ["run", "-d", "--name", &db, "--network", "none", "-v", &format!("{dbvol}:/data")]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(labels("db"));
    args.extend([s.image.clone(), "sh".into(), "-c".into(), "echo rows > /data/table; sleep 100000".into()]);
    run(dock().args(&args));
    let mut args: Vec<String> =
        ["run", "-d", "--name", &web, "--network", &format!("container:{db}")].iter().map(|a| a.to_string()).collect();
    args.extend(labels("web"));
    args.extend([s.image.clone(), "sh".into(), "-c".into(), "echo page > /index.html; sleep 100000".into()]);
    run(dock().args(&args));
    wait_until(20, "the project to write", || {
        dock().args(["exec", &web, "test", "-e", "/index.html"]).status().is_ok_and(|st| st.success())
            && dock().args(["exec", &db, "test", "-e", "/data/table"]).status().is_ok_and(|st| st.success())
    });

    let out = s.lb(&s.env, &["snapshot", &format!("docker://{project}/*"), "--format", "json"]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reports = reports.as_array().unwrap_or_else(|| panic!("one report per member: {out}"));
    assert_eq!(reports.len(), 2, "{out}");
    assert_eq!(reports[0]["stack"], reports[1]["stack"], "taken apart: {out}");
    assert!(reports[0]["stack"].is_string());
    cleanup();

    // On a host without Docker: both, the application in the database's network.
    let host = Env::new();
    let out = host
        .lifeboat()
        .env_remove("DOCKER_HOST")
        .args(["restore", &db, &web, "--repo", &s.repo, "--password-file", &s.pwfile])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(host.ok(&["exec", &db, "cat", "/data/table"]), "rows\n");
    assert_eq!(host.ok(&["exec", &web, "cat", "/index.html"]), "page\n");
    let inspect: serde_json::Value = serde_json::from_str(&host.ok(&["inspect", &web])).unwrap();
    let mode = inspect[0]["HostConfig"]["NetworkMode"].as_str().unwrap().to_string();
    let db_id = host.ok(&["inspect", "-f", "{{.Id}}", &db]);
    assert!(mode == format!("container:{db}") || mode == format!("container:{}", db_id.trim()), "{mode}");
    host.ok(&["rm", "-f", &web, &db]);
}

/// Loads one of the real service images (tests/images) into Docker as `lifeboat-test/NAME:1`.
fn docker_service_image(env: &Env, name: &str) -> Option<String> {
    let image = env.service_image(name)?;
    let archive = env.path(&format!("{name}-docker.tar"));
    env.ok(&["save", "--format", "docker-archive", "-o", archive.to_str().unwrap(), &image]);
    run(dock().arg("load").arg("-q").arg("-i").arg(&archive));
    Some(image)
}

#[test]
fn mariadb_under_docker_is_snapshotted_with_its_recipe_while_it_takes_writes() {
    let Some(s) = DockerService::start("mariadb") else { return };
    let Some(image) = docker_service_image(&s.env, "lamp") else { return };
    let db = format!("{}-db", s.name);
    let vol = format!("{}-dbdata", s.name);
    let _leftovers = Leftovers::new(&[&db], &[&vol]);
    run(dock().args([
        "run",
        "-d",
        "--name",
        &db,
        "--network",
        "none",
        "-u",
        "mysql",
        "-v",
        &format!("{vol}:/var/lib/mysql"),
        &image,
        "sh",
        "-c",
        "[ -d /var/lib/mysql/mysql ] || mariadb-install-db --skip-test-db >/dev/null; exec mariadbd --bind-address=127.0.0.1",
    ]));
    let sql = |q: &str| dock().args(["exec", "-u", "0", &db, "mariadb", "-N", "-e", q]).output().unwrap();
    wait_until(90, "MariaDB under Docker to answer", || sql("SELECT 1").status.success());
    let created = sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY) ENGINE=InnoDB;");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    // A writer inside the container: one order per transaction, for ever.
    run(dock().args([
        "exec",
        "-d",
        "-u",
        "0",
        &db,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); mariadb -e \"INSERT INTO shop.orders VALUES ($i)\"; done",
    ]));
    let count = |q: &dyn Fn(&str) -> std::process::Output| -> u64 {
        String::from_utf8_lossy(&q("SELECT COUNT(*) FROM shop.orders").stdout).trim().parse().unwrap_or(0)
    };
    wait_until(60, "orders to come in", || count(&sql) > 50);

    let target = format!("docker://{db}");
    let out = s.lb(&s.env, &["snapshot", &target, "--consistency", "mariadb", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(report["stats"]["frozen_ms"].as_u64().is_some(), "{report}");
    // The lock is released: orders keep coming.
    let after = count(&sql);
    wait_until(30, "orders after the snapshot", || count(&sql) > after + 20);

    // Docker's side gone; the database comes back under Lifeboat on a host without Docker,
    // with whole transactions only: orders 1..N, none missing, tables sound.
    run(dock().args(["rm", "-f", &db]));
    run(dock().args(["volume", "rm", &vol]));
    let host = Env::new();
    let out = host
        .lifeboat()
        .env_remove("DOCKER_HOST")
        .args(["restore", &db, "--repo", &s.repo, "--password-file", &s.pwfile])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = |q: &str| host.lifeboat().args(["exec", "-u", "0", &db, "mariadb", "-N", "-e", q]).output().unwrap();
    wait_until(90, "the restored MariaDB to answer", || ours("SELECT 1").status.success());
    let stats = String::from_utf8_lossy(
        &ours("SELECT COUNT(*), COALESCE(MIN(id),0), COALESCE(MAX(id),0) FROM shop.orders").stdout,
    )
    .trim()
    .to_string();
    let n: Vec<u64> = stats.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert!(n[0] > 50 && n[1] == 1 && n[2] == n[0], "orders are not 1..N: {stats}");
    let check = String::from_utf8_lossy(&ours("CHECK TABLE shop.orders").stdout).to_string();
    assert!(check.contains("\tOK") || check.trim_end().ends_with("OK"), "{check}");
    host.ok(&["rm", "-f", &db]);
}
