//! The runtime end to end, as root, on the real kernel: ports, networks, confinement, limits,
//! restart policies, supervision, volumes.

use std::fs;
use std::process::{Command, Stdio};

use crate::util::{Env, http_get, wait_until};

fn port_of(env: &Env, name: &str) -> u16 {
    let out = env.ok(&["port", name]);
    out.lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {out:?}"))
}

#[test]
fn run_attached_returns_the_exit_code_and_output() {
    let env = Env::new();
    env.site_image("site:1");
    let out =
        env.lifeboat().args(["run", "--rm", "site:1", "sh", "-c", "echo out; echo err >&2; exit 7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // --rm removed it.
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    // A command that does not exist fails like Docker (125/127), with a message.
    let out = env.lifeboat().args(["run", "--rm", "site:1", "/no/such/binary"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn published_ports_serve_http_and_ps_shows_them() {
    let env = Env::new();
    let rootfs = env.site_image("site:1");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fixed = listener.local_addr().unwrap().port();
    drop(listener);
    let id =
        env.ok(&["run", "-d", "-p", &format!("127.0.0.1:{fixed}:80"), "--name", "web", "site:1"]).trim().to_string();
    assert_eq!(id.len(), 64);
    env.ok(&["run", "-Pd", "--name", "web2", "site:1"]);
    let random = port_of(&env, "web2");
    let expected = fs::read_to_string(rootfs.join("www/index.html")).unwrap();
    for port in [fixed, random] {
        wait_until(10, "http answer", || http_get(port, "/").is_ok_and(|b| b == expected));
    }
    let ps = env.ok(&["ps"]);
    let header = ps.lines().next().unwrap();
    for col in ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] {
        assert!(header.contains(col), "{ps}");
    }
    assert!(ps.contains(&format!("0.0.0.0:{random}->80/tcp")), "{ps}");
    assert!(ps.contains(&format!("127.0.0.1:{fixed}->80/tcp")), "{ps}");
    assert!(ps.lines().any(|l| l.starts_with(&id[..12]) && l.contains("Up ") && l.ends_with("web")), "{ps}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["ps", "--format", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
}

#[test]
fn containers_sharing_a_network_namespace_talk_over_localhost() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "db", "site:1", "httpd", "-f", "-p", "3306", "-h", "/www"]);
    let out = env
        .lifeboat()
        .args([
            "run",
            "--rm",
            "--network",
            "container:db",
            "site:1",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1:3306/ && exit 0; sleep 0.2; done; exit 1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("City Library"));
    // A private namespace does not see it.
    let out = env
        .lifeboat()
        .args(["run", "--rm", "site:1", "wget", "-q", "-T", "1", "-O", "-", "http://127.0.0.1:3306/"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn in_container(env: &Env, script: &str) -> (i32, String) {
    let out = env.lifeboat().args(["run", "--rm", "site:1", "sh", "-c", script]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn confinement_matches_docker_defaults() {
    let env = Env::new();
    env.site_image("site:1");
    // Host processes are invisible: a handful of processes, our shell as PID 1, no shim.
    let (_, out) = in_container(&env, "cat /proc/1/cmdline; echo; cat /proc/[0-9]*/comm");
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("sh"), "{out}");
    let comms: Vec<&str> = lines.collect();
    assert!(comms.len() < 6 && !comms.iter().any(|c| c.contains("lifeboat") || c.contains("integration")), "{out}");
    for (what, script) in [
        ("mount", "mkdir -p /mnt/x && mount -t tmpfs none /mnt/x"),
        ("mknod of a block device", "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda"),
        ("sysrq-trigger", "echo h > /proc/sysrq-trigger"),
        ("/proc/sys/kernel", "echo pwned > /proc/sys/kernel/hostname"),
        ("module loading", "insmod /tmp/none.ko || modprobe dummy"),
        // No capability is needed for this one: only the seccomp filter refuses it.
        ("a new user namespace", "unshare -U true"),
    ] {
        let (code, out) = in_container(&env, script);
        assert_ne!(code, 0, "{what} succeeded inside the container: {out}");
    }
    // /proc/1/root is the container's own root, not the host's.
    let marker = env.path("host-marker");
    fs::write(&marker, "host").unwrap();
    let (code, _) = in_container(&env, &format!("cat /proc/1/root{}", marker.display()));
    assert_ne!(code, 0);
    // Its own hostname (the short ID by default, or --hostname).
    let out = env.ok(&["run", "--rm", "--hostname", "catalogue", "site:1", "hostname"]);
    assert_eq!(out.trim(), "catalogue");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "catalogue");
    // Docker's default capability set, in every set that matters, and no_new_privs.
    let (_, status) = in_container(&env, "cat /proc/self/status");
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).unwrap();
    assert_eq!(field("CapBnd:"), "00000000a80425fb", "{status}");
    assert_eq!(field("CapEff:"), "00000000a80425fb");
    assert_eq!(field("CapPrm:"), "00000000a80425fb");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
}

#[test]
fn memory_limit_oom_kills_and_inspect_says_so() {
    let env = Env::new();
    env.site_image("site:1");
    let out = env
        .lifeboat()
        .args([
            "run",
            "--name",
            "hog",
            "--memory",
            "32m",
            "site:1",
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    let v = env.inspect("hog");
    assert_eq!(v["State"]["OOMKilled"], true, "{v}");
    assert_eq!(v["State"]["ExitCode"], 137);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let env = Env::new();
    env.site_image("site:1");
    let out = env
        .lifeboat()
        .args([
            "run",
            "--rm",
            "--pids-limit",
            "50",
            "site:1",
            "sh",
            "-c",
            "n=0; for i in $(seq 1 200); do sleep 5 & n=$((n+1)); done; echo started",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable") || err.contains("can't"),
        "fork bomb was not stopped: {err}"
    );
    // The host still forks fine.
    assert!(Command::new("true").status().unwrap().success());
}

#[test]
fn on_failure_restarts_three_times_then_stops() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "crashy",
        "--restart",
        "on-failure:3",
        "site:1",
        "sh",
        "-c",
        "echo attempt; exit 3",
    ]);
    wait_until(30, "three restarts", || {
        let v = env.inspect("crashy");
        v["State"]["Status"] == "exited" && v["RestartCount"] == 3
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let v = env.inspect("crashy");
    assert_eq!(v["RestartCount"], 3, "{v}");
    assert_eq!(v["State"]["ExitCode"], 3);
    let logs = env.ok(&["logs", "crashy"]);
    assert_eq!(logs.matches("attempt").count(), 4, "{logs}");
}

#[test]
fn killing_the_cli_leaves_the_container_and_killing_the_shim_leaves_ps_truthful() {
    let env = Env::new();
    env.site_image("site:1");
    let mut cli = env
        .lifeboat()
        .args(["run", "--name", "attached", "site:1", "sleep", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(10, "container up", || env.ok(&["ps"]).contains("attached"));
    cli.kill().unwrap();
    cli.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("attached") && ps.contains("Up "), "{ps}");

    // kill -9 the shim: ps says the container runs unsupervised.
    let v = env.inspect("attached");
    let shim = v["State"]["ShimPid"].as_i64().unwrap();
    let pid = v["State"]["Pid"].as_i64().unwrap();
    Command::new("kill").args(["-9", &shim.to_string()]).status().unwrap();
    wait_until(5, "shim gone", || {
        !std::path::Path::new(&format!("/proc/{shim}")).exists()
            || fs::read_to_string(format!("/proc/{shim}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("unsupervised"), "{ps}");
    // And once the container dies too, it is shown as exited, not running.
    Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    wait_until(5, "container gone from ps", || !env.ok(&["ps"]).contains("attached"));
    let all = env.ok(&["ps", "-a"]);
    assert!(all.contains("Exited"), "{all}");
}

#[test]
fn run_rm_frees_the_name_at_once_and_the_files_soon_after() {
    let env = Env::new();
    env.site_image("site:1");
    // The name is free as soon as the first run returned.
    for _ in 0..2 {
        assert_eq!(env.ok(&["run", "--rm", "--name", "once", "site:1", "echo", "hi"]), "hi\n");
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    let containers = env.root().join("containers");
    wait_until(10, "the removed containers' files deleted", || {
        fs::read_dir(&containers).unwrap().all(|e| e.unwrap().file_name() == ".lock")
    });
}

#[test]
fn start_restartable_after_a_reboot_brings_back_what_the_policy_says() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "always", "--restart", "always", "site:1", "sleep", "1000"]);
    env.ok(&["run", "-d", "--name", "never", "site:1", "sleep", "1000"]);
    env.ok(&["run", "-d", "--rm", "--name", "passing", "site:1", "sleep", "1000"]);
    // The host goes down: every shim and container dies, none of them cleaning up.
    for name in ["always", "never", "passing"] {
        let v = env.inspect(name);
        for key in ["ShimPid", "Pid"] {
            let pid = v["State"][key].as_i64().unwrap();
            Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
            wait_until(5, "process gone", || {
                fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
            });
        }
    }
    wait_until(5, "nothing running", || env.ok(&["ps", "-q"]).is_empty());
    // And a removal the crash cut short.
    let leftover = env.root().join("containers").join(format!(".removing-{}", "ab".repeat(32)));
    fs::create_dir_all(leftover.join("upper/etc")).unwrap();
    fs::write(leftover.join("upper/etc/hosts"), "x").unwrap();

    assert_eq!(env.ok(&["start", "--restartable"]), "always\n");
    wait_until(10, "always back up", || env.ok(&["ps"]).contains("always"));
    let all = env.ok(&["ps", "-a"]);
    assert!(all.contains("never") && all.contains("Exited"), "{all}");
    assert!(!all.contains("passing"), "a --rm container is not kept: {all}");
    assert!(!leftover.exists());
}

/// A host whose only cgroup hierarchy is cgroup2: in a private mount namespace, the v1
/// hierarchies are unmounted and cgroup2 is mounted at /sys/fs/cgroup. (Every controller that
/// limits is bound to v1 on this machine, so limits cannot be applied here; the rest can run.)
#[test]
fn a_cgroup2_only_host_runs_pauses_execs_and_cleans_up() {
    let env = Env::new();
    env.site_image("site:1");
    let script = format!(
        r#"set -e
umount -R /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup
lb() {{ {bin} --root {root} --run-root {run} "$@"; }}
echo "fs $(stat -fc %T /sys/fs/cgroup)"
lb run --rm site:1 echo hello
id=$(lb run -d --name v2 site:1 sleep 100)
echo "cgroup dir $(test -f /sys/fs/cgroup/lifeboat/$id/cgroup.procs && echo yes)"
echo "exec $(lb exec v2 cat /proc/self/cgroup | grep '^0::')"
lb exec v2 sleep 1 &
sleep 0.5
echo "exec procs $(wc -l < /sys/fs/cgroup/lifeboat/$id/cgroup.procs)"
wait
echo "view $(lb exec v2 sh -c 'ls /sys/fs/cgroup | grep -c lifeboat; echo 1 > /sys/fs/cgroup/cgroup.freeze && echo writable' 2>&1 | tr '\n' ' ')"
lb pause v2 >/dev/null
echo "paused $(grep frozen /sys/fs/cgroup/lifeboat/$id/cgroup.events) $(lb ps | grep -c '(Paused)')"
lb unpause v2 >/dev/null
echo "unpaused $(grep frozen /sys/fs/cgroup/lifeboat/$id/cgroup.events)"
echo "stats $(lb stats --no-stream --format json v2 | tr -d ' \n')"
lb rm -f v2 >/dev/null
echo "removed $(test -d /sys/fs/cgroup/lifeboat/$id && echo no || echo yes) $id"
lb run --rm --memory 32m site:1 true 2>&1 || true
"#,
        bin = crate::util::BIN,
        root = env.root().display(),
        run = env.path("run").display(),
    );
    let out = Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.lines().any(|l| l.starts_with("removed yes ")), "the cgroup was not removed:\n{text}");
    for expected in [
        "fs cgroup2fs".to_string(),
        "hello".into(),
        "cgroup dir yes".into(),
        // The exec'd process is in the container's cgroup namespace, and in its cgroup.
        "exec 0::/".into(),
        "exec procs 2".into(),
        // Its cgroup2 mount is read-only and shows only its own cgroup.
        "view 0 sh: can't create /sys/fs/cgroup/cgroup.freeze: Read-only file system".into(),
        "paused frozen 1 1".into(),
        "unpaused frozen 0".into(),
        "--memory needs the cgroup memory controller".into(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from:\n{text}");
    }
    // Exactly its own root: not `0::/lifeboat/<id>`, the host's path of its cgroup.
    assert!(text.lines().any(|l| l == "exec 0::/"), "the exec'd process sees a host cgroup path:\n{text}");
    assert!(text.contains(r#""PIDs":1"#), "{text}");
}

#[test]
fn volumes_survive_rm_and_bind_mounts_can_be_read_only() {
    let env = Env::new();
    env.site_image("site:1");
    // A new volume starts with the image's content at its mount path.
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        "site-data:/www",
        "site:1",
        "sh",
        "-c",
        "cat /www/index.html; echo catalogue > /www/books.txt",
    ]);
    assert!(out.contains("City Library"), "{out}");
    let out = env.ok(&["run", "--rm", "-v", "site-data:/www", "site:1", "cat", "/www/books.txt"]);
    assert_eq!(out, "catalogue\n");
    assert!(env.ok(&["volume", "ls"]).contains("site-data"));
    // A volume in use cannot be removed without -f.
    env.ok(&["run", "-d", "--name", "user", "-v", "site-data:/www", "site:1"]);
    env.fails(&["volume", "rm", "site-data"], 5);
    env.ok(&["rm", "-f", "user"]);
    env.ok(&["volume", "rm", "site-data"]);

    let host = env.path("host-dir");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("f"), "original").unwrap();
    let out = env
        .lifeboat()
        .args([
            "run",
            "--rm",
            "-v",
            &format!("{}:/data:ro", host.display()),
            "site:1",
            "sh",
            "-c",
            "echo changed > /data/f",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(fs::read_to_string(host.join("f")).unwrap(), "original");
    env.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", host.display()),
        "site:1",
        "sh",
        "-c",
        "echo changed > /data/f",
    ]);
    assert_eq!(fs::read_to_string(host.join("f")).unwrap(), "changed\n");
}

#[test]
fn exec_logs_stop_start_pause_and_rm() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "site:1",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    wait_until(10, "ready in logs", || env.ok(&["logs", "svc"]).contains("ready"));
    assert_eq!(env.ok(&["exec", "-e", "X=42", "svc", "sh", "-c", "echo $X"]), "42\n");
    let out = env.lifeboat().args(["exec", "svc", "sh", "-c", "exit 4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    // An exec'd process is confined like the container's own: capabilities, no_new_privs and
    // the seccomp filter (a new user namespace needs no capability; only the filter refuses it).
    let status = env.ok(&["exec", "svc", "cat", "/proc/self/status"]);
    for (key, value) in [("CapEff:", "00000000a80425fb"), ("NoNewPrivs:", "1"), ("Seccomp:", "2")] {
        assert!(status.lines().any(|l| l.starts_with(key) && l.ends_with(value)), "{key} {status}");
    }
    let out = env.lifeboat().args(["exec", "svc", "unshare", "-U", "true"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "a user namespace from exec");
    let logs = env.ok(&["logs", "-t", "svc"]);
    assert!(logs.starts_with("20") && logs.contains(" ready"), "{logs}");

    env.ok(&["pause", "svc"]);
    assert!(env.ok(&["ps"]).contains("(Paused)"));
    env.ok(&["unpause", "svc"]);

    env.fails(&["rm", "svc"], 5);
    // Two containers that ignore SIGTERM stop in one grace period, not two.
    env.ok(&["run", "-d", "--name", "stubborn1", "site:1", "sleep", "1000"]);
    env.ok(&["run", "-d", "--name", "stubborn2", "site:1", "sleep", "1000"]);
    let t = std::time::Instant::now();
    assert_eq!(env.ok(&["stop", "-t", "2", "stubborn1", "stubborn2"]), "stubborn1\nstubborn2\n");
    assert!(t.elapsed() < std::time::Duration::from_millis(3900), "stopping took {:?}", t.elapsed());
    env.ok(&["stop", "svc"]);
    assert!(env.ok(&["logs", "svc"]).contains("bye"));
    let v = env.inspect("svc");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 0);
    env.ok(&["start", "svc"]);
    wait_until(10, "running again", || env.inspect("svc")["State"]["Running"] == true);
    env.ok(&["rm", "-f", "svc"]);
    env.fails(&["inspect", "svc"], 3);
    // The container's image cannot be removed while a container uses it.
    env.ok(&["run", "-d", "--name", "user", "site:1"]);
    env.fails(&["rmi", "site:1"], 5);
}

#[test]
fn init_runs_as_pid_1_and_forwards_signals() {
    let env = Env::new();
    env.site_image("site:1");
    let out = env.ok(&["run", "--rm", "--init", "site:1", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]);
    assert!(out.starts_with("/sbin/lifeboat-init -- sh"), "{out}");
    // With an init, a shell that ignores SIGTERM as PID 1 no longer delays stop by 10 s.
    env.ok(&["run", "-d", "--init", "--name", "svc", "site:1", "sleep", "1000"]);
    let t = std::time::Instant::now();
    env.ok(&["stop", "-t", "20", "svc"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "stop took {:?}", t.elapsed());
}

#[test]
fn health_checks_run_periodically_and_show_in_ps() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "svc", "--health-cmd", "test -f /tmp/ready", "--health-interval", "1s", "site:1"]);
    wait_until(20, "unhealthy after three failures", || env.ok(&["ps"]).contains("(unhealthy)"));
    env.ok(&["exec", "svc", "touch", "/tmp/ready"]);
    wait_until(10, "healthy", || env.ok(&["ps"]).contains("(healthy)"));
    assert_eq!(env.inspect("svc")["State"]["Health"]["Status"], "healthy");
}

/// A static UDP echo server for the busybox image (busybox has none).
fn udp_echo_binary(env: &Env) -> Option<std::path::PathBuf> {
    if !crate::util::have("gcc") {
        return None;
    }
    let src = env.path("udp-echo.c");
    fs::write(
        &src,
        r#"#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    char buf[2048];
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n > 0) sendto(s, buf, n, 0, (struct sockaddr *)&from, len);
    }
}
"#,
    )
    .unwrap();
    let bin = env.path("udp-echo");
    crate::util::run(Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&bin).arg(&src));
    Some(bin)
}

#[test]
fn udp_ports_are_published() {
    let env = Env::new();
    let Some(bin) = udp_echo_binary(&env) else { return };
    let rootfs = env.busybox_rootfs("rootfs-udp");
    fs::copy(&bin, rootfs.join("bin/udp-echo")).unwrap();
    env.ok(&["import", rootfs.to_str().unwrap(), "udp:1"]);
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "-p",
        &format!("127.0.0.1:{port}:5353/udp"),
        "udp:1",
        "/bin/udp-echo",
        "5353",
    ]);
    assert!(env.ok(&["ps"]).contains(&format!("127.0.0.1:{port}->5353/udp")));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 64];
    wait_until(10, "udp echo", || {
        sock.send_to(b"catalogue?", ("127.0.0.1", port)).unwrap();
        matches!(sock.recv_from(&mut buf), Ok((10, _))) && &buf[..10] == b"catalogue?"
    });
}

/// Runs lifeboat ARGS under `script`, which gives it a terminal; `input` is typed into it.
fn in_terminal(env: &Env, args: &[&str], input: &str) -> (String, Option<i32>) {
    let cmd = std::iter::once(crate::util::BIN.to_string())
        .chain([
            "--root".into(),
            env.root().display().to_string(),
            "--run-root".into(),
            env.path("run").display().to_string(),
        ])
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (String::from_utf8_lossy(&out.stdout).replace('\r', ""), out.status.code())
}

#[test]
fn terminals_for_run_and_exec_and_stdin_for_run_i() {
    if !crate::util::have("script") {
        return;
    }
    let env = Env::new();
    env.site_image("site:1");
    // An interactive shell: what is typed runs, and its exit code comes back.
    let (out, code) = in_terminal(&env, &["run", "-it", "--rm", "site:1", "sh"], "echo typed-$((6*7))\nexit 5\n");
    assert!(out.contains("typed-42"), "{out}");
    assert_eq!(code, Some(5), "{out}");
    let (out, code) = in_terminal(&env, &["run", "-t", "--rm", "site:1", "tty"], "");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert_eq!(code, Some(0));

    env.ok(&["run", "-d", "--name", "box", "site:1"]);
    let (out, code) =
        in_terminal(&env, &["exec", "-it", "box", "sh", "-c", "tty; read x; echo got-$x; exit 4"], "line\n");
    assert!(out.contains("/dev/pts/") && out.contains("got-line"), "{out}");
    assert_eq!(code, Some(4), "{out}");

    // Detached with a terminal: the shim keeps it and logs what the container writes.
    env.ok(&["run", "-dt", "--name", "dt", "site:1", "sh", "-c", "tty; echo from-dt; sleep 100"]);
    wait_until(10, "the detached terminal's output", || env.ok(&["logs", "dt"]).contains("from-dt"));
    assert!(env.ok(&["logs", "dt"]).contains("/dev/pts/0"));

    // -i without -t: standard input goes to the container.
    let mut child = env
        .lifeboat()
        .args(["run", "-i", "--rm", "site:1", "wc", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"one\ntwo\nthree\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    // Without -i, the container's standard input is empty.
    let mut child = env
        .lifeboat()
        .args(["run", "--rm", "site:1", "wc", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"ignored\n").unwrap();
    assert_eq!(String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).trim(), "0");
    let err = env.fails(&["run", "-it", "--restart", "always", "site:1", "sh"], 2);
    assert!(err.contains("restart policy"), "{err}");
}

/// A container that has just ended is never shown as "Exited (255)" (the code of a dead
/// supervisor) while its shim is still writing its real code down.
#[test]
fn a_container_just_ended_shows_its_own_exit_code() {
    let env = Env::new();
    env.site_image("site:1");
    let names: Vec<String> = (0..6).map(|i| format!("brief{i}")).collect();
    for n in &names {
        // Output still flowing as it ends: the shim drains it before writing the code.
        env.ok(&["run", "-d", "--name", n, "site:1", "sh", "-c", "seq 1 20000; exit 3"]);
    }
    let mut seen = Vec::new();
    wait_until(60, "every container to show its exit code", || {
        let out = env.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
        let statuses: Vec<String> = out.lines().filter(|l| l.starts_with("brief")).map(String::from).collect();
        seen.extend(statuses.iter().filter(|s| s.contains("(255)")).cloned());
        statuses.len() == names.len() && statuses.iter().all(|s| s.contains("Exited (3)"))
    });
    assert!(seen.is_empty(), "shown as a dead supervisor's: {seen:?}");
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    env.ok(&rm);
}
