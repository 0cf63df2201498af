//! The exit-code contract of docs/exit-codes.md: one command per documented code, as a script
//! would meet it; every code the table lists is exercised here (the table is read, so a code
//! added to the docs without a case fails this test). Also: a closed pipe is a normal end of
//! output, and Ctrl-C during long work stops it cleanly.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Env, stderr, stdout};

/// The codes documented in docs/exit-codes.md's table.
fn documented() -> BTreeSet<i32> {
    let doc = include_str!("../../docs/exit-codes.md");
    doc.lines().filter_map(|l| l.strip_prefix("| ")).filter_map(|l| l.split(" |").next()?.trim().parse().ok()).collect()
}

/// Runs `args`; its exit code and stderr.
fn code(env: &Env, args: &[&str]) -> (i32, String) {
    let out = env.lifeboat().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), stderr(&out))
}

/// Every pack file of a local repository.
fn packs(repo: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in fs::read_dir(repo.join("data")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    assert!(!out.is_empty(), "no pack under {}", repo.display());
    out
}

#[test]
fn every_documented_exit_code_is_what_a_script_gets() {
    let env = Env::new();
    env.site_image("site:1");
    let pw = env.path("pw");
    fs::write(&pw, "right").unwrap();
    let wrong = env.path("wrong");
    fs::write(&wrong, "wrong").unwrap();
    let repo = env.path("repo");
    let r = repo.to_str().unwrap();
    let p = pw.to_str().unwrap();
    env.ok(&["repo", "init", "--repo", r, "--password-file", p]);
    env.ok(&["volume", "create", "svcdata"]);
    env.ok(&["run", "--rm", "-v", "svcdata:/data", "site:1", "sh", "-c", "seq 1 20000 > /data/numbers"]);
    env.ok(&["run", "-d", "--name", "svc", "-v", "svcdata:/data", "site:1", "sleep", "600"]);
    env.ok(&["snapshot", "svc", "--repo", r, "--password-file", p]);
    env.ok(&["snapshot", "svc", "--repo", r, "--password-file", p]);

    let mut seen = BTreeSet::new();
    let mut expect = |want: i32, args: &[&str], says: &str| {
        let (got, err) = code(&env, args);
        assert_eq!(got, want, "{args:?} exited {got}, not {want}: {err}");
        assert!(err.contains(says), "{args:?}: {says:?} not in: {err}");
        seen.insert(want);
    };

    expect(0, &["images"], "");
    expect(1, &["save", "-o", "/etc/hostname/site.tar", "site:1"], "lifeboat:");
    expect(2, &["run", "--cpus", "nan", "site:1", "true"], "cpus");
    expect(2, &["run", "Bad:Name", "true"], "lowercase");
    expect(2, &["run", "-w", "relative", "site:1", "true"], "absolute");
    expect(2, &["run", "-e", "=value", "site:1", "true"], "environment variable");
    expect(2, &["run", "--memory", "99999999999999999999g", "site:1", "true"], "too large");
    expect(2, &["forget", "--keep-within", "1000000000000d", "--repo", r, "--password-file", p], "retention span");
    expect(3, &["inspect", "nope:1"], "nope:1");
    expect(3, &["restore", "svc", "--snapshot", "ffffffffffff", "--repo", r, "--password-file", p], "no snapshot");
    expect(3, &["run", "--env-file", "/nonexistent/env", "site:1", "true"], "/nonexistent/env");
    expect(3, &["load", "-i", "/nonexistent/site.tar"], "/nonexistent/site.tar");
    expect(3, &["volume", "rm", "nosuchvol"], "no such volume: nosuchvol");
    expect(5, &["run", "-d", "--name", "svc", "site:1", "true"], "already in use");
    expect(5, &["restore", "svc", "--snapshot", "", "--as", "copy", "--repo", r, "--password-file", p], "names 2");
    expect(10, &["snapshots", "--repo", "/nonexistent/repo"], "does not exist");
    expect(12, &["snapshots", "--repo", r, "--password-file", wrong.to_str().unwrap()], "wrong password");
    expect(125, &["run", "--rm", "site:1", "/no/such/command"], "lifeboat:");
    expect(126, &["exec", "svc", "/etc"], "cannot execute");
    expect(127, &["exec", "svc", "nosuchcommand"], "not found");
    // Nothing of the refused runs was left behind.
    let ps = env.ok(&["ps", "-a", "--format", "json"]);
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&ps)
        .unwrap()
        .iter()
        .map(|c| c["Names"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["svc"], "a refused run left a container: {ps}");

    // Locked: a snapshot holds its lock while its hook runs; a prune meets it.
    let mut holder = env
        .lifeboat()
        .args(["snapshot", "svc", "--repo", r, "--password-file", p, "--exec-before", "sleep 4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::util::wait_until(10, "the snapshot's lock", || {
        fs::read_dir(repo.join("locks")).is_ok_and(|mut d| d.next().is_some())
    });
    expect(11, &["prune", "--repo", r, "--password-file", p], "locked");
    assert!(holder.wait().unwrap().success());

    // A share of the packs is at least one pack (10% of a handful once read none).
    let report = env.ok(&["check", "--read-data-subset", "10%", "--format", "json", "--repo", r, "--password-file", p]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(report["packs"].as_u64().unwrap() < 10, "a small repository: {report}");
    assert_eq!(report["packs_read"].as_u64(), Some(1), "{report}");

    // Damaged: a byte flipped every 500 bytes of every pack's blobs (its header, at the end,
    // left alone). restore and check say so with 4.
    for pack in packs(&repo) {
        let f = fs::OpenOptions::new().write(true).read(true).open(&pack).unwrap();
        let len = f.metadata().unwrap().len();
        for at in (100..len.saturating_sub(4096)).step_by(500) {
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, at).unwrap();
            f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
        }
    }
    expect(4, &["check", "--read-data", "--repo", r, "--password-file", p], "");
    expect(4, &["restore", "svc", "--as", "damaged", "--repo", r, "--password-file", p], "damaged");
    assert!(!env.root().join("volumes/damaged-svcdata").exists(), "a failed restore left a volume");
    assert!(!env.ok(&["ps", "-a"]).contains("damaged"), "a failed restore left a container");

    // Interrupted: checked below (its own test); a 130 is what it exits with.
    seen.insert(130);
    let missing: Vec<i32> = documented().difference(&seen).copied().collect();
    assert!(missing.is_empty(), "documented codes with no case here: {missing:?}");
    env.ok(&["rm", "-f", "svc"]);
}

/// `lifeboat … | head -1`: the reader goes away; the command ends quietly, with its own code.
#[test]
fn a_closed_pipe_is_a_normal_end_of_output() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "--name", "chatty", "site:1", "sh", "-c", "seq 1 200000"]);
    env.ok(&["run", "-d", "--name", "idle", "site:1", "sleep", "600"]);
    let lb = format!("{} --root {} --run-root {}", crate::util::BIN, env.root().display(), env.path("run").display());
    for pipeline in [
        format!("{lb} logs chatty | head -1"),
        format!("{lb} logs -f chatty | head -1"),
        format!("{lb} stats idle | head -1"),
        format!("{lb} ps -a --format json | head -c 1"),
    ] {
        let script = format!("{pipeline} >/dev/null; echo \"status ${{PIPESTATUS[0]}}\"");
        let mut child =
            Command::new("bash").args(["-c", &script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // A stream that does not notice its reader is gone never ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "{pipeline} did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let (text, err) = (stdout(&out), stderr(&out));
        assert_eq!(text.trim(), "status 0", "{pipeline}: {text}{err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{pipeline}: {err}");
    }
    env.ok(&["rm", "-f", "idle", "chatty"]);
}

/// Ctrl-C in the middle of a snapshot: it stops at its next step with 130, its lock is gone,
/// the service runs (not left frozen), and the repository is sound.
#[test]
fn ctrl_c_stops_a_snapshot_cleanly() {
    let env = Env::new();
    env.site_image("site:1");
    let pw = env.path("pw");
    fs::write(&pw, "pw").unwrap();
    let repo = env.path("repo");
    let (r, p) = (repo.to_str().unwrap(), pw.to_str().unwrap());
    env.ok(&["repo", "init", "--repo", r, "--password-file", p]);
    env.ok(&["volume", "create", "big"]);
    // Enough data that the snapshot is still going when the signal comes.
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "big:/data",
        "site:1",
        "sh",
        "-c",
        "for i in $(seq 1 40); do head -c 8000000 /dev/urandom > /data/f$i; done",
    ]);
    env.ok(&["run", "-d", "--name", "svc", "-v", "big:/data", "site:1", "sleep", "600"]);
    let child = env
        .lifeboat()
        .args(["snapshot", "svc", "--repo", r, "--password-file", p])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::util::wait_until(20, "the snapshot to take its lock", || {
        fs::read_dir(repo.join("locks")).is_ok_and(|mut d| d.next().is_some())
    });
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(repo.join("locks")).unwrap().count(), 0, "the lock was left behind");
    let svc = env.inspect("svc");
    assert_eq!(svc["State"]["Status"], "running", "the service was left {}", svc["State"]["Status"]);
    env.ok(&["check", "--read-data", "--repo", r, "--password-file", p]);
    assert!(env.ok(&["snapshots", "--repo", r, "--password-file", p, "--format", "json"]).trim() == "[]");
    env.ok(&["rm", "-f", "svc"]);
}
