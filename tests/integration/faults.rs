//! The worst days: processes killed at random moments while a second host writes the same
//! repository, a snapshot that outlives the stale age with a prune waiting, full disks during
//! snapshot and restore, and every kind of damage to every folder of a repository. Afterwards
//! nothing is lost: `check --read-data` is clean and every snapshot left restores
//! byte-identical; damage is reported with its documented code, never a panic.

use std::collections::BTreeMap;
use std::fs;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{Env, Node, stderr};

type Tree = BTreeMap<String, Node>;

fn jitter(max_ms: u64) -> Duration {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    Duration::from_millis(u64::from_le_bytes(b) % max_ms.max(1))
}

/// How many of this host's containers' cgroups are frozen, whatever their state files say.
fn frozen_cgroups(env: &Env) -> usize {
    let ids = env.ok(&["ps", "-q", "--no-trunc"]);
    ids.lines()
        .filter(|id| {
            [
                format!("/sys/fs/cgroup/freezer/lifeboat/{id}/freezer.state"),
                format!("/sys/fs/cgroup/lifeboat/{id}/cgroup.freeze"),
            ]
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .any(|s| matches!(s.trim(), "FROZEN" | "FREEZING" | "1"))
        })
        .count()
}

/// The volumes under a root, as they are on disk (`volume ls` would settle a dead restore's).
fn volume_dirs(root: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("volumes"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn volume_tree(env: &Env, name: &str) -> Tree {
    crate::util::tree(&env.root().join("volumes").join(name).join("_data"))
}

/// A host (its own root) running one service with its data in a volume.
struct Host {
    env: Env,
    service: &'static str,
    volume: &'static str,
}

impl Host {
    fn new(service: &'static str, volume: &'static str) -> Host {
        let env = Env::new();
        env.site_image("site:1");
        env.ok(&["run", "-d", "--name", service, "-v", &format!("{volume}:/data"), "site:1", "sleep", "100000"]);
        Host { env, service, volume }
    }

    /// Changes the service's data a little (a new file, an appended line).
    fn write(&self, n: usize) {
        let script = format!(
            "head -c 200000 /dev/urandom > /data/f{n}; echo {n} >> /data/log; rm -f /data/f{}",
            n.saturating_sub(6)
        );
        self.env.ok(&["exec", self.service, "sh", "-c", &script]);
    }

    fn lifeboat(&self, repo: &str, pw: &str, args: &[&str]) -> Command {
        let mut c = self.env.lifeboat();
        c.args(args).args(["--repo", repo, "--password-file", pw]);
        c
    }

    /// A snapshot that is allowed to finish; its ID and the data it holds.
    fn snapshot(&self, repo: &str, pw: &str) -> Option<(String, Tree)> {
        let before = volume_tree(&self.env, self.volume);
        let out = self
            .lifeboat(repo, pw, &["snapshot", self.service, "--format", "json", "--no-image"])
            .env("LIFEBOAT_RETRY_LOCK", "60s")
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // The service is idle between writes: what the snapshot holds is what was there.
        Some((json["id"].as_str().unwrap().to_string(), before))
    }
}

/// 100 trials: a snapshot, prune, forget or copy SIGKILLed at a random moment, while a second
/// host snapshots into the same repository throughout. Then the repository (and the copy's
/// target) check clean with every byte read, and every snapshot left restores exactly.
fn kill_9_battery(repo: &str, repo2: &str, trials: usize) {
    let a = Host::new("website", "content");
    let b = Arc::new(Host::new("catalogue", "records"));
    let pw = a.env.path("pw");
    fs::write(&pw, "one password for both hosts").unwrap();
    let pw = pw.to_str().unwrap().to_string();
    for r in [repo, repo2] {
        a.env.ok(&["repo", "init", "--repo", r, "--password-file", &pw]);
    }
    let bpw = b.env.path("pw");
    fs::copy(&pw, &bpw).unwrap();
    let bpw = bpw.to_str().unwrap().to_string();

    let expected: Arc<Mutex<Vec<(String, Tree)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let second_writer = {
        let (b, repo, expected, stop) = (b.clone(), repo.to_string(), expected.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                b.write(n);
                if let Some(done) = b.snapshot(&repo, &bpw) {
                    expected.lock().unwrap().push(done);
                }
                n += 1;
            }
            n
        })
    };

    for trial in 0..trials {
        a.write(trial);
        let (args, max_ms): (Vec<&str>, u64) = match trial % 4 {
            0 => (vec!["snapshot", "website", "--no-image"], 600),
            1 => (vec!["prune"], 800),
            2 => (vec!["forget", "--keep-last", "10"], 300),
            _ => (vec!["copy", "--to", repo2, "--to-password-file", &pw], 800),
        };
        let mut child = a
            .lifeboat(repo, &pw, &args)
            .env("LIFEBOAT_RETRY_LOCK", "20s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(jitter(max_ms));
        let _ = child.kill();
        child.wait().unwrap();
        // The thaw guard of a killed snapshot thaws the service (at once, on its own).
        crate::util::wait_until(10, "the service to be thawed", || !a.env.ok(&["ps"]).contains("Paused"));
        assert_eq!(frozen_cgroups(&a.env), 0, "trial {trial}: a cgroup was left frozen");
        if trial % 4 == 0
            && let Some(done) = a.snapshot(repo, &pw)
        {
            expected.lock().unwrap().push(done);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let b_snapshots = second_writer.join().unwrap();
    assert!(b_snapshots > 3, "the second host took only {b_snapshots} snapshots");

    for r in [repo, repo2] {
        let out =
            a.env.lifeboat().args(["check", "--read-data", "--repo", r, "--password-file", &pw]).output().unwrap();
        let report = format!("{}{}", crate::util::stdout(&out), stderr(&out));
        assert!(out.status.success() && report.contains("no errors"), "{r}: {report}");
    }
    let listed: serde_json::Value =
        serde_json::from_str(&a.env.ok(&["snapshots", "--repo", repo, "--password-file", &pw, "--format", "json"]))
            .unwrap();
    let remaining: Vec<String> = listed.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().into()).collect();
    let expected = expected.lock().unwrap();
    let mut compared = 0;
    for (i, (id, tree)) in expected.iter().enumerate() {
        if !remaining.contains(id) {
            continue;
        }
        let service = match &listed.as_array().unwrap().iter().find(|v| v["id"] == id.as_str()).unwrap()["service"] {
            serde_json::Value::String(s) => s.clone(),
            other => panic!("{other}"),
        };
        let name = format!("check{i}");
        a.env.ok(&[
            "restore",
            &service,
            "--snapshot",
            id,
            "--as",
            &name,
            "--no-start",
            "--repo",
            repo,
            "--password-file",
            &pw,
        ]);
        let volume = if service == "website" { "content" } else { "records" };
        assert_eq!(&volume_tree(&a.env, &format!("{name}-{volume}")), tree, "snapshot {id} of {service}");
        a.env.ok(&["rm", "-f", &name]);
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} snapshots compared");
    a.env.ok(&["rm", "-f", "website"]);
    b.env.ok(&["rm", "-f", "catalogue"]);
}

#[test]
fn kill_9_with_a_second_host_writing_local() {
    let dir = Env::new();
    kill_9_battery(dir.path("repo").to_str().unwrap(), dir.path("repo2").to_str().unwrap(), 100);
}

#[test]
fn kill_9_with_a_second_host_writing_s3s() {
    let (Some(repo), Some(repo2)) = (crate::util::s3_location("s3s"), crate::util::s3_location("s3s")) else { return };
    kill_9_battery(&repo, &repo2, 100);
}

#[test]
fn kill_9_with_a_second_host_writing_moto() {
    let (Some(repo), Some(repo2)) = (crate::util::s3_location("moto"), crate::util::s3_location("moto")) else {
        return;
    };
    kill_9_battery(&repo, &repo2, 100);
}

/// A snapshot whose packs are written, then held by a slow hook for longer than the stale
/// age (six refresh intervals of a second here), with a prune waiting for the lock: the
/// prune starts when the snapshot ends, and deletes none of its packs.
#[test]
fn a_snapshot_longer_than_the_stale_age_loses_nothing_to_a_waiting_prune() {
    let host = Host::new("website", "content");
    let env = &host.env;
    // More than one pack (16 MiB) of data, written before the hook runs.
    env.ok(&["exec", "website", "sh", "-c", "for i in 1 2 3; do head -c 15000000 /dev/urandom > /data/big$i; done"]);
    let pw = env.path("pw");
    fs::write(&pw, "pw").unwrap();
    let repo = env.path("repo");
    let (r, p) = (repo.to_str().unwrap(), pw.to_str().unwrap());
    env.ok(&["repo", "init", "--repo", r, "--password-file", p]);
    let started = Instant::now();
    let snapshot = host
        .lifeboat(r, p, &["snapshot", "website", "--no-image", "--exec-after", "sleep 12", "--format", "json"])
        .env("LIFEBOAT_LOCK_REFRESH", "1s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Packs are out while the hook sleeps.
    crate::util::wait_until(60, "the snapshot's packs", || {
        fs::read_dir(repo.join("data"))
            .is_ok_and(|d| d.flatten().any(|e| fs::read_dir(e.path()).is_ok_and(|mut f| f.next().is_some())))
    });
    let prune = host
        .lifeboat(r, p, &["prune"])
        .env("LIFEBOAT_RETRY_LOCK", "2m")
        .env("LIFEBOAT_LOCK_REFRESH", "1s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let snapshot = snapshot.wait_with_output().unwrap();
    let snapshot_done = started.elapsed();
    assert!(snapshot.status.success(), "{}", stderr(&snapshot));
    assert!(snapshot_done > Duration::from_secs(10), "the hook did not hold the snapshot ({snapshot_done:?})");
    let prune = prune.wait_with_output().unwrap();
    assert!(prune.status.success(), "{}", stderr(&prune));
    let id = serde_json::from_slice::<serde_json::Value>(&snapshot.stdout).unwrap()["id"].as_str().unwrap().to_string();
    let report = env.ok(&["check", "--read-data", "--repo", r, "--password-file", p]);
    assert!(report.contains("no errors"), "{report}");
    let before = volume_tree(env, "content");
    env.ok(&["restore", "website", "--snapshot", &id, "--as", "back", "--no-start", "--repo", r, "--password-file", p]);
    assert_eq!(volume_tree(env, "back-content"), before);
    env.ok(&["rm", "-f", "website", "back"]);
}

/// A small filesystem of its own, mounted at `dir` for the life of the value.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn new(env: &Env, name: &str, mb: u64) -> SmallDisk {
        let image = env.path(&format!("{name}.img"));
        let dir = env.path(name);
        fs::create_dir_all(&dir).unwrap();
        crate::util::run(Command::new("truncate").arg("-s").arg(format!("{mb}M")).arg(&image));
        crate::util::run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        crate::util::run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&dir));
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The repository's disk fills during a snapshot: the snapshot fails (exit 1, saying why),
/// nothing names what was half-written, and once there is room the next snapshot works.
/// The root's disk fills during a restore: the restore fails and leaves no volume or
/// container behind (`volume ls` and `ps -a` as before), and the space is free again.
#[test]
fn full_disks_during_snapshot_and_restore_leave_nothing_half_made() {
    let host = Host::new("website", "content");
    let env = &host.env;
    env.ok(&["exec", "website", "sh", "-c", "for i in 1 2 3 4; do head -c 12000000 /dev/urandom > /data/big$i; done"]);
    let pw = env.path("pw");
    fs::write(&pw, "pw").unwrap();
    let p = pw.to_str().unwrap();
    let small = SmallDisk::new(env, "small-repo", 32);
    let repo = small.dir.join("repo");
    let r = repo.to_str().unwrap();
    env.ok(&["repo", "init", "--repo", r, "--password-file", p]);
    let out = host.lifeboat(r, p, &["snapshot", "website", "--no-image"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(repo.join("snapshots")).map(|d| d.count()).unwrap_or(0), 0);
    assert_eq!(fs::read_dir(repo.join("locks")).map(|d| d.count()).unwrap_or(0), 0, "a lock was left");
    assert!(!env.ok(&["ps"]).contains("Paused"));
    // Room again: the next snapshot works, and prune clears what the failed one left.
    env.ok(&["exec", "website", "sh", "-c", "rm /data/big3 /data/big4"]);
    env.ok(&["prune", "--repo", r, "--password-file", p]);
    env.ok(&["snapshot", "website", "--no-image", "--repo", r, "--password-file", p]);
    let report = env.ok(&["check", "--read-data", "--repo", r, "--password-file", p]);
    assert!(report.contains("no errors"), "{report}");

    // A restore onto a root whose disk is too small (the repository elsewhere).
    let big_repo = env.path("big-repo");
    let br = big_repo.to_str().unwrap();
    env.ok(&["exec", "website", "sh", "-c", "for i in 3 4 5; do head -c 12000000 /dev/urandom > /data/big$i; done"]);
    env.ok(&["repo", "init", "--repo", br, "--password-file", p]);
    env.ok(&["snapshot", "website", "--repo", br, "--password-file", p]);
    let disk = SmallDisk::new(env, "small-root", 48);
    let root = disk.dir.join("root");
    let on_small = |args: &[&str]| {
        let mut c = Command::new(crate::util::BIN);
        c.arg("--root").arg(&root).arg("--run-root").arg(env.path("small-run")).args(args);
        c.env("LIFEBOAT_KDF", "1024,1,1").stdin(Stdio::null());
        c.output().unwrap()
    };
    let listing = |args: &[&str]| crate::util::stdout(&on_small(args));
    let (volumes, containers) = (volume_dirs(&root), listing(&["ps", "-a", "-q"]));
    let out = on_small(&["restore", "website", "--repo", br, "--password-file", p]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    assert_eq!(volume_dirs(&root), volumes, "a failed restore left a volume");
    assert_eq!(listing(&["ps", "-a", "-q"]), containers, "a failed restore left a container");
    let out = on_small(&["image", "prune", "-a", "-f"]);
    assert!(out.status.success(), "the disk stayed full after the failed restore: {}", stderr(&out));
    env.ok(&["rm", "-f", "website"]);
}

/// How a file of a repository is damaged.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Bytes flipped throughout.
    Corrupt,
    /// Cut to half its length.
    Truncate,
    Delete,
    /// A file that was never the repository's, beside the others.
    Foreign,
}

/// One damage to one folder, and the exit codes `snapshots`, `check --read-data`, `restore`
/// and a new `snapshot` must then give (and a word the first failure must name).
struct Case {
    folder: &'static str,
    damage: Damage,
    /// For each command, the codes it may give (a snapshot after damage to the data may not
    /// meet it: which pack was damaged decides).
    codes: [&'static [i32]; 4],
    names: &'static str,
}

fn damage(repo: &std::path::Path, folder: &str, how: Damage) {
    let dir = if folder == "config" { repo.to_path_buf() } else { repo.join(folder) };
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if folder != "config" {
                    stack.push(p);
                }
            } else if folder != "config" || p.file_name().unwrap() == "config" {
                files.push(p);
            }
        }
    }
    files.sort();
    match how {
        Damage::Foreign => {
            let at =
                if folder == "data" { files[0].parent().unwrap().join("0badc0ffee") } else { dir.join("0badc0ffee") };
            fs::write(at, b"not a repository file").unwrap();
        }
        Damage::Delete => fs::remove_file(&files[0]).unwrap(),
        Damage::Truncate => {
            let len = fs::metadata(&files[0]).unwrap().len();
            fs::OpenOptions::new().write(true).open(&files[0]).unwrap().set_len(len / 2).unwrap();
        }
        Damage::Corrupt => {
            use std::os::unix::fs::FileExt;
            for f in &files {
                let file = fs::OpenOptions::new().read(true).write(true).open(f).unwrap();
                let len = file.metadata().unwrap().len();
                for at in (0..len).step_by(97) {
                    let mut b = [0u8; 1];
                    file.read_exact_at(&mut b, at).unwrap();
                    file.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
                }
            }
        }
    }
}

/// Every folder of a repository damaged every way: each reported with its documented code,
/// naming what is damaged; never a panic; a restore that succeeds is byte-identical, one that
/// fails leaves nothing behind.
#[test]
fn damage_to_every_folder_is_reported_never_misread() {
    use Damage::*;
    // snapshots, check --read-data, restore, snapshot
    let cases = [
        Case { folder: "config", damage: Corrupt, codes: [&[4], &[4], &[4], &[4]], names: "config" },
        Case { folder: "config", damage: Truncate, codes: [&[4], &[4], &[4], &[4]], names: "config" },
        Case { folder: "config", damage: Delete, codes: [&[10], &[10], &[10], &[10]], names: "does not exist" },
        Case { folder: "config", damage: Foreign, codes: [&[0], &[0], &[0], &[0]], names: "" },
        Case { folder: "keys", damage: Corrupt, codes: [&[12], &[12], &[12], &[12]], names: "keys/" },
        Case { folder: "keys", damage: Truncate, codes: [&[12], &[12], &[12], &[12]], names: "keys/" },
        Case { folder: "keys", damage: Delete, codes: [&[12], &[12], &[12], &[12]], names: "wrong password" },
        Case { folder: "keys", damage: Foreign, codes: [&[0], &[0], &[0], &[0]], names: "" },
        Case { folder: "index", damage: Corrupt, codes: [&[4], &[4], &[4], &[4]], names: "index" },
        Case { folder: "index", damage: Truncate, codes: [&[4], &[4], &[4], &[4]], names: "index" },
        Case { folder: "index", damage: Delete, codes: [&[0], &[4], &[4], &[4]], names: "not in the index" },
        Case { folder: "index", damage: Foreign, codes: [&[4], &[4], &[4], &[4]], names: "index 0badc0ffee" },
        Case { folder: "snapshots", damage: Corrupt, codes: [&[4], &[4], &[4], &[4]], names: "Snapshot" },
        Case { folder: "snapshots", damage: Truncate, codes: [&[4], &[4], &[4], &[4]], names: "Snapshot" },
        Case { folder: "snapshots", damage: Delete, codes: [&[0], &[0], &[0], &[0]], names: "" },
        Case { folder: "snapshots", damage: Foreign, codes: [&[4], &[4], &[4], &[4]], names: "0badc0ffee" },
        Case { folder: "data", damage: Corrupt, codes: [&[0], &[4], &[4], &[0, 4]], names: "" },
        Case { folder: "data", damage: Truncate, codes: [&[0], &[4], &[4], &[0, 4]], names: "" },
        Case { folder: "data", damage: Delete, codes: [&[0], &[4], &[4], &[0, 4]], names: "" },
        Case { folder: "data", damage: Foreign, codes: [&[0], &[0], &[0], &[0]], names: "" },
        Case { folder: "locks", damage: Foreign, codes: [&[0], &[0], &[0], &[11]], names: "" },
    ];
    let host = Host::new("website", "content");
    let env = &host.env;
    let pw = env.path("pw");
    fs::write(&pw, "pw").unwrap();
    let p = pw.to_str().unwrap();
    let template = env.path("template");
    let t = template.to_str().unwrap();
    env.ok(&["repo", "init", "--repo", t, "--password-file", p]);
    let mut trees: BTreeMap<String, Tree> = BTreeMap::new();
    for n in [1, 2] {
        host.write(n);
        let (id, tree) = host.snapshot(t, p).unwrap();
        trees.insert(id, tree);
    }
    for (n, case) in cases.iter().enumerate() {
        let repo = env.path(&format!("damaged-{n}"));
        crate::util::run(Command::new("cp").arg("-a").arg(&template).arg(&repo));
        damage(&repo, case.folder, case.damage);
        let r = repo.to_str().unwrap();
        let what = format!("{:?} {}", case.damage, case.folder);
        let name = format!("back{n}");
        let commands: [Vec<&str>; 4] = [
            vec!["snapshots"],
            vec!["check", "--read-data"],
            vec!["restore", "website", "--as", &name, "--format", "json"],
            vec!["snapshot", "website", "--no-image"],
        ];
        let volumes = volume_dirs(&env.root());
        for (args, want) in commands.iter().zip(case.codes) {
            let out = host.lifeboat(r, p, args).output().unwrap();
            let (code, err) = (out.status.code().unwrap_or(-1), stderr(&out));
            let text = format!("{}{err}", crate::util::stdout(&out));
            assert!(want.contains(&code), "{what}: {args:?} exited {code}, not {want:?}: {text}");
            assert!(!err.contains("panicked"), "{what}: {args:?} panicked: {err}");
            if code != 0 {
                assert!(text.contains(case.names), "{what}: {args:?} does not name {:?}: {text}", case.names);
            }
            if args[0] == "restore" {
                if code == 0 {
                    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    let id = report["snapshot"].as_str().unwrap();
                    assert_eq!(
                        Some(&volume_tree(env, &format!("{name}-content"))),
                        trees.get(id),
                        "{what}: a wrong restore"
                    );
                    env.ok(&["rm", "-f", &name]);
                    env.ok(&["volume", "rm", &format!("{name}-content")]);
                }
                assert_eq!(volume_dirs(&env.root()), volumes, "{what}: the restore left a volume");
                assert!(!env.ok(&["ps", "-a"]).contains(&name), "{what}: the restore left a container");
            }
        }
    }
    env.ok(&["rm", "-f", "website"]);
}

/// Key files anyone with write access to the storage could plant: costs that would take the
/// machine's memory or hours. Beside a good key they are skipped; alone, the repository does
/// not open (12, naming the file), at once and without the memory.
#[test]
fn hostile_key_costs_are_refused_before_they_are_paid() {
    let env = Env::new();
    let pw = env.path("pw");
    fs::write(&pw, "pw").unwrap();
    let (repo, p) = (env.path("repo"), pw.to_str().unwrap());
    let r = repo.to_str().unwrap();
    env.ok(&["repo", "init", "--repo", r, "--password-file", p]);
    let keys = repo.join("keys");
    let good = fs::read_dir(&keys).unwrap().next().unwrap().unwrap().path();
    let key: serde_json::Value = serde_json::from_slice(&fs::read(&good).unwrap()).unwrap();
    for (i, params) in [
        serde_json::json!({"m": 4294967295u32, "t": 1, "p": 1}),
        serde_json::json!({"m": 65536, "t": 4294967295u32, "p": 1}),
        serde_json::json!({"m": 4194304, "t": 3, "p": 1}),
        serde_json::json!({"m": 65536, "t": 1, "p": 0}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut hostile = key.clone();
        hostile["params"] = params.clone();
        fs::write(keys.join(format!("0hostile{i}")), serde_json::to_vec(&hostile).unwrap()).unwrap();
    }
    // Beside the good key: opens, quickly.
    let started = Instant::now();
    env.ok(&["snapshots", "--repo", r, "--password-file", p]);
    assert!(started.elapsed() < Duration::from_secs(20), "hostile keys were paid for: {:?}", started.elapsed());
    // Alone: refused, naming them, at once.
    fs::remove_file(&good).unwrap();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss %M"])
        .arg(crate::util::BIN)
        .args(["--root", env.root().to_str().unwrap(), "snapshots", "--repo", r, "--password-file", p])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(12), "{err}");
    assert!(err.contains("keys/0hostile0") && err.contains("Argon2 memory"), "{err}");
    let rss: u64 = err.lines().find_map(|l| l.strip_prefix("maxrss ")).and_then(|v| v.trim().parse().ok()).unwrap();
    assert!(rss < 256 * 1024, "opening took {rss} KiB");
}

/// A restore killed at random moments: afterwards `volume ls` and `ps -a` are as they were,
/// or the restore got as far as making the container, whole (then its volume holds exactly
/// the snapshot). The next restore is never in the way of a killed one's leftovers.
#[test]
fn a_killed_restore_leaves_nothing_that_looks_real() {
    let host = Host::new("website", "content");
    let env = &host.env;
    env.ok(&["exec", "website", "sh", "-c", "for i in $(seq 1 30); do head -c 1000000 /dev/urandom > /data/f$i; done"]);
    let pw = env.path("pw");
    fs::write(&pw, "pw").unwrap();
    let repo = env.path("repo");
    let (r, p) = (repo.to_str().unwrap(), pw.to_str().unwrap());
    env.ok(&["repo", "init", "--repo", r, "--password-file", p]);
    let (id, tree) = host.snapshot(r, p).unwrap();
    let volumes_before = env.ok(&["volume", "ls", "-q"]);
    let ps_before = env.ok(&["ps", "-a", "-q"]);
    for trial in 0..12 {
        let name = format!("killed{trial}");
        let mut child = host
            .lifeboat(r, p, &["restore", "website", "--snapshot", &id, "--as", &name, "--no-start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(jitter(1200));
        let _ = child.kill();
        child.wait().unwrap();
        let volumes = env.ok(&["volume", "ls", "-q"]);
        let ps = env.ok(&["ps", "-a", "-q"]);
        if volumes == volumes_before && ps == ps_before {
            continue;
        }
        // It finished making the container before it was killed: whole, or nothing at all.
        assert!(env.ok(&["ps", "-a"]).contains(&name), "trial {trial}: a volume without its container:\n{volumes}");
        assert_eq!(volume_tree(env, &format!("{name}-content")), tree, "trial {trial}: a half-made restore");
        env.ok(&["rm", "-f", &name]);
        env.ok(&["volume", "rm", &format!("{name}-content")]);
    }
    // A killed restore is not in the next one's way.
    env.ok(&[
        "restore",
        "website",
        "--snapshot",
        &id,
        "--as",
        "killed0",
        "--no-start",
        "--repo",
        r,
        "--password-file",
        p,
    ]);
    assert_eq!(volume_tree(env, "killed0-content"), tree);
    env.ok(&["rm", "-f", "website", "killed0"]);
}
