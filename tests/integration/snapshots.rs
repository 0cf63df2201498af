//! Snapshots and restore end to end on a local repository: a service's files, volume and run
//! configuration come back exactly; restore works on an empty root; wrong passwords, failing
//! hooks and damaged data give clear errors and never a silently wrong restore.

use std::fs;
use std::process::Command;

use crate::util::{Env, free_port, http_get, wait_until};

const MARKER: &str = "MARKER-7d1f0c2e-library-secret";

struct Service {
    env: Env,
    port: u16,
    repo: String,
    pwfile: String,
}

impl Service {
    /// A web service with its site in a volume and a "database" file, on a private repository.
    fn start() -> Service {
        let env = Env::new();
        env.site_image("site:1");
        let port = free_port();
        env.ok(&[
            "run",
            "-d",
            "--name",
            "website",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "-v",
            "content:/www",
            "--health-cmd",
            "wget -q -O /dev/null http://127.0.0.1/",
            "site:1",
        ]);
        env.ok(&["exec", "website", "sh", "-c", &format!("echo '<p>{MARKER}</p>' >> /www/index.html; mkdir -p /var/db; head -c 3000000 /dev/urandom > /var/db/books.db")]);
        let pwfile = env.path("pw");
        fs::write(&pwfile, "correct horse battery staple\n").unwrap();
        let repo = env.path("repo").display().to_string();
        let s = Service { env, port, repo, pwfile: pwfile.display().to_string() };
        s.lb(&["repo", "init"]);
        s
    }

    /// Runs lifeboat with this service's repository options appended.
    fn lb(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--repo", &self.repo, "--password-file", &self.pwfile]);
        self.env.ok(&all)
    }

    fn page(&self) -> String {
        http_get(self.port, "/").unwrap_or_default()
    }
}

fn sha(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn snapshot_mutate_snapshot_outage_restore() {
    let s = Service::start();
    let env = &s.env;
    wait_until(10, "site up", || s.page().contains(MARKER));
    let first_page = s.page();
    let out = s.lb(&["snapshot", "website", "--tag", "first"]);
    assert!(out.contains("frozen") && out.contains("saved"), "{out}");
    let db = env.root().join("containers");
    let _ = db;

    // Mutate, snapshot again: the second snapshot reads only the changed files.
    env.ok(&["exec", "website", "sh", "-c", "echo '<p>second</p>' >> /www/index.html"]);
    let json: serde_json::Value = serde_json::from_str(&s.lb(&["snapshot", "website", "--format", "json"])).unwrap();
    assert_eq!(json["stats"]["files_read"], 1, "{json}");
    let second_page = s.page();
    assert!(second_page.contains("second"));

    let list: serde_json::Value = serde_json::from_str(&s.lb(&["snapshots", "website", "--format", "json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let first_id = list[0]["id"].as_str().unwrap().to_string();
    let table = s.lb(&["snapshots"]);
    assert!(table.starts_with("ID") && table.contains("first") && table.contains("website"), "{table}");

    // Outage.
    let db_before = {
        let upper = env.root().join("containers");
        let id = env.ok(&["ps", "-q", "--no-trunc"]).trim().to_string();
        sha(&upper.join(id).join("upper/var/db/books.db"))
    };
    env.ok(&["rm", "-f", "website"]);
    env.ok(&["volume", "rm", "content"]);
    assert!(http_get(s.port, "/").is_err());

    let out = s.lb(&["restore", "website"]);
    assert!(out.contains("restored website") && out.contains("healthy"), "{out}");
    wait_until(10, "site back", || s.page() == second_page);
    let id = env.ok(&["ps", "-q", "--no-trunc"]).trim().to_string();
    assert_eq!(sha(&env.root().join("containers").join(&id).join("upper/var/db/books.db")), db_before);
    let v = env.inspect("website");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "no");
    assert_eq!(v["Mounts"][0]["Name"], "content");

    // An older snapshot under another name, side by side.
    let port2 = free_port();
    let _ = port2;
    s.lb(&["restore", "website", "--snapshot", &first_id[..10], "--as", "website-old", "--no-start"]);
    let vols = env.ok(&["volume", "ls", "-q"]);
    assert!(vols.contains("website-old-content"), "{vols}");
    let data = env.root().join("volumes/website-old-content/_data/index.html");
    assert_eq!(fs::read_to_string(data).unwrap(), first_page);

    // Restoring over an existing container is refused.
    let err = env.fails(&["restore", "website", "--repo", &s.repo, "--password-file", &s.pwfile], 5);
    assert!(err.contains("already exists"), "{err}");

    // Nothing in the repository reveals the content.
    let hits = Command::new("grep").args(["-rl", MARKER]).arg(&s.repo).output().unwrap();
    assert!(hits.stdout.is_empty(), "marker found in {}", String::from_utf8_lossy(&hits.stdout));
    let hits = Command::new("grep").args(["-rl", "City Library"]).arg(&s.repo).output().unwrap();
    assert!(hits.stdout.is_empty());
}

#[test]
fn restore_on_an_empty_root_fetches_the_image_too() {
    let s = Service::start();
    s.lb(&["snapshot", "website"]);
    let page = s.page();
    s.env.ok(&["rm", "-f", "website"]);
    // A new host: nothing but the repository.
    let host = Env::new();
    let out = host.ok(&["restore", "website", "--repo", &s.repo, "--password-file", &s.pwfile]);
    assert!(out.contains("restored website"), "{out}");
    wait_until(10, "site back on the new host", || s.page() == page);
    assert!(host.ok(&["images"]).contains("site"));
}

#[test]
fn wrong_password_missing_repo_and_failing_hook_are_clear_errors() {
    let s = Service::start();
    let env = &s.env;
    let bad = env.path("bad-pw");
    fs::write(&bad, "nope").unwrap();
    let err = env.fails(&["snapshots", "--repo", &s.repo, "--password-file", bad.to_str().unwrap()], 12);
    assert!(err.contains("wrong password"), "{err}");
    let missing = env.path("no-repo");
    let err = env.fails(&["snapshots", "--repo", missing.to_str().unwrap(), "--password-file", &s.pwfile], 10);
    assert!(err.contains("does not exist") && err.contains("repo init"), "{err}");

    let out = env
        .lifeboat()
        .args([
            "snapshot",
            "website",
            "--exec-before",
            "echo dumping; exit 3",
            "--repo",
            &s.repo,
            "--password-file",
            &s.pwfile,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed with exit code 3") && err.contains("no snapshot"), "{err}");
    assert_eq!(s.lb(&["snapshots", "--format", "json"]).trim(), "[]");
    // The service is not left frozen.
    assert!(env.ok(&["ps"]).contains("Up ") && !env.ok(&["ps"]).contains("Paused"));

    // A working hook runs inside the container before the capture.
    s.lb(&["snapshot", "website", "--exec-before", "echo dumped > /www/dump.sql"]);
    env.ok(&["rm", "-f", "website"]);
    env.ok(&["volume", "rm", "content"]);
    s.lb(&["restore", "website", "--no-start"]);
    assert_eq!(fs::read_to_string(env.root().join("volumes/content/_data/dump.sql")).unwrap(), "dumped\n");
}

#[test]
fn a_flipped_byte_is_detected_never_restored() {
    let s = Service::start();
    s.lb(&["snapshot", "website"]);
    s.env.ok(&["rm", "-f", "website"]);
    s.env.ok(&["volume", "rm", "content"]);
    // Flip one byte in the middle of every pack file.
    for entry in walk(&std::path::Path::new(&s.repo).join("data")) {
        let mut bytes = fs::read(&entry).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&entry, bytes).unwrap();
    }
    let out = s
        .env
        .lifeboat()
        .args(["check", "--read-data", "--repo", &s.repo, "--password-file", &s.pwfile])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not authenticate"));
    let err = s.env.fails(&["restore", "website", "--repo", &s.repo, "--password-file", &s.pwfile], 4);
    assert!(err.contains("does not authenticate") && err.contains("snapshot"), "{err}");
}

#[test]
fn forget_prune_check_copy_keys_and_diff() {
    let s = Service::start();
    let env = &s.env;
    for i in 0..3 {
        env.ok(&[
            "exec",
            "website",
            "sh",
            "-c",
            &format!("echo round{i} > /www/round.txt; head -c 200000 /dev/urandom > /www/noise{i}"),
        ]);
        s.lb(&["snapshot", "website", "--tag", &format!("r{i}")]);
    }
    let list: serde_json::Value = serde_json::from_str(&s.lb(&["snapshots", "--format", "json"])).unwrap();
    let ids: Vec<String> = list.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3);

    // restic's filters: tags (a set must all be there; the flag again is either), host, the
    // newest N; --json as --format json.
    let listed = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["snapshots", "--json"];
        a.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&s.lb(&a)).unwrap();
        v.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(listed(&["--tag", "r1"]), [ids[1].clone()]);
    assert_eq!(listed(&["--tag", "r0", "--tag", "r2"]), [ids[0].clone(), ids[2].clone()]);
    assert!(listed(&["--tag", "r0,r2"]).is_empty(), "a set needs all of its tags");
    assert_eq!(listed(&["--latest", "2"]), ids[1..].to_vec());
    let host = list[0]["host"].as_str().unwrap().to_string();
    assert_eq!(listed(&["--host", &host]).len(), 3);
    assert!(listed(&["--host", "elsewhere"]).is_empty());
    assert_eq!(listed(&["website", "--latest", "1", "--tag", "r0"]), [ids[0].clone()]);

    let d = s.lb(&["diff", &ids[0][..12], &ids[1][..12]]);
    assert!(d.contains("M  volume content:/round.txt") && d.contains("+  volume content:/noise1"), "{d}");

    assert!(s.lb(&["check"]).contains("no errors"));
    let stats: serde_json::Value = serde_json::from_str(&s.lb(&["repo", "stats", "--format", "json"])).unwrap();
    assert_eq!(stats["snapshots"], 3);
    // restic's `stats` (with a repository) is the repository's, not the containers'.
    let restic_style: serde_json::Value = serde_json::from_str(&s.lb(&["stats", "--format", "json"])).unwrap();
    assert_eq!(restic_style, stats);
    // Three snapshots of mostly the same data: stored well below their total.
    assert!(stats["stored_bytes"].as_u64().unwrap() < stats["logical_bytes"].as_u64().unwrap() / 2, "{stats}");
    let dry = s.lb(&["forget", "--keep-last", "1", "--keep-tag", "r0", "--dry-run"]);
    assert!(dry.contains("would remove 1 snapshots"), "{dry}");
    assert_eq!(s.lb(&["snapshots", "--format", "json"]).matches("\"id\"").count(), 3);
    let out = s.lb(&["forget", "--keep-last", "1", "--prune"]);
    assert!(out.contains("removed 2 snapshots") && out.contains("pruned"), "{out}");
    let report: serde_json::Value = serde_json::from_str(&s.lb(&["check", "--read-data", "--format", "json"])).unwrap();
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["snapshots"], 1);

    // restic's `tag`: tags changed after the fact (the snapshot gets a new ID, the old one
    // goes); `tag SOURCE TARGET` is still Docker's for images.
    let kept = &listed(&[])[0];
    let out = s.lb(&["tag", "--add", "keep,audit", "--remove", "r2", &kept[..12]]);
    assert!(out.contains("is now") && out.contains("keep,audit"), "{out}");
    let tagged = listed(&["--tag", "keep,audit"]);
    assert_eq!(tagged.len(), 1);
    assert_ne!(&tagged[0], kept, "a snapshot's ID is its content");
    assert_eq!(listed(&[]).len(), 1, "the old one is gone");
    assert!(listed(&["--tag", "r2"]).is_empty());
    assert!(s.lb(&["tag", "--add", "keep", &tagged[0][..12]]).contains("unchanged"));
    s.lb(&["tag", "--set", "", &tagged[0][..12]]);
    assert!(listed(&["--tag", "keep"]).is_empty());
    env.fails(&["tag", "only-one-name"], 2);
    env.fails(&["tag", "--add", "x", "ffffffffffff", "--repo", &s.repo, "--password-file", &s.pwfile], 3);
    assert!(s.lb(&["check", "--read-data"]).contains("no errors"));

    // Off-site copy to a repository with another password; restore from it on a new host.
    let other_pw = env.path("other-pw");
    fs::write(&other_pw, "another password").unwrap();
    let offsite = env.path("offsite").display().to_string();
    env.ok(&["repo", "init", "--repo", &offsite, "--password-file", other_pw.to_str().unwrap()]);
    let copy = ["copy", "--to", &offsite, "--to-password-file", other_pw.to_str().unwrap()];
    // A snapshot already in a repository that shares nothing: everything it holds is added
    // there, and the copy's listing says so (not what it once added to its own repository).
    let src_listed: Vec<serde_json::Value> = serde_json::from_str(&s.lb(&["snapshots", "--json"])).unwrap();
    let src_added: u64 = src_listed.iter().map(|x| x["stats"]["added_bytes"].as_u64().unwrap()).sum();
    let copied = s.lb(&copy);
    assert!(copied.contains("1 snapshots copied"), "{copied}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&env.ok(&[
        "snapshots",
        "--json",
        "--repo",
        &offsite,
        "--password-file",
        other_pw.to_str().unwrap(),
    ]))
    .unwrap();
    let added = listed[0]["stats"]["added_bytes"].as_u64().unwrap();
    assert!(added > 0 && copied.contains(&format!("({} added)", human(added))), "{added}: {copied}");
    // The snapshot copied was an incremental one at home (its first was forgotten): there it
    // added little, here it brought everything.
    assert!(added > src_added, "the target shows the source's figure ({src_added}), not its own ({added})");
    // Everything is there already: the second copy moves nothing.
    assert!(s.lb(&copy).contains("0 snapshots copied"));
    let page = s.page();
    env.ok(&["rm", "-f", "website"]);
    let host = Env::new();
    host.ok(&["restore", "website", "--repo", &offsite, "--password-file", other_pw.to_str().unwrap()]);
    wait_until(10, "site back from the copy", || s.page() == page);

    // Keys: add a second password, open with it, remove the first.
    let third = env.path("third-pw");
    fs::write(&third, "third").unwrap();
    s.lb(&["key", "add", "--new-password-file", third.to_str().unwrap()]);
    let keys = env.ok(&["key", "list", "--repo", &s.repo, "--password-file", third.to_str().unwrap()]);
    assert_eq!(keys.lines().count(), 3, "{keys}");
    let first_key = keys
        .lines()
        .find(|l| l.starts_with(' ') && !l.contains("ID"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    env.ok(&["key", "remove", &first_key, "--repo", &s.repo, "--password-file", third.to_str().unwrap()]);
    env.fails(&["snapshots", "--repo", &s.repo, "--password-file", &s.pwfile], 12);
    env.ok(&["snapshots", "--repo", &s.repo, "--password-file", third.to_str().unwrap()]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A pseudo-random delay in [0, max_ms) milliseconds.
fn jitter(max_ms: u64) -> std::time::Duration {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    std::time::Duration::from_millis(u64::from_le_bytes(b) % max_ms)
}

/// Starts `lifeboat ARGS` on the service's repository, SIGKILLs it at a random moment within
/// `max_ms`, and asserts the repository still checks clean.
fn kill_midway(s: &Service, args: &[&str], max_ms: u64, what: &str) {
    let mut child = s
        .env
        .lifeboat()
        .args(args)
        .args(["--repo", &s.repo, "--password-file", &s.pwfile])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(jitter(max_ms));
    let _ = child.kill();
    child.wait().unwrap();
    let report = s.lb(&["check"]);
    assert!(report.contains("no errors"), "after killed {what}: {report}");
}

fn volume_tree(env: &Env, name: &str) -> std::collections::BTreeMap<String, crate::util::Node> {
    crate::util::tree(&env.root().join("volumes").join(name).join("_data"))
}

#[test]
fn kill_9_of_snapshot_and_prune_never_damages_the_repository() {
    let s = Service::start();
    let env = &s.env;
    let mut expected: Vec<(String, std::collections::BTreeMap<String, crate::util::Node>)> = Vec::new();
    let record = |env: &Env| {
        let json: serde_json::Value =
            serde_json::from_str(&s.lb(&["snapshot", "website", "--format", "json"])).unwrap();
        (json["id"].as_str().unwrap().to_string(), volume_tree(env, "content"))
    };
    for trial in 0..20 {
        env.ok(&[
            "exec",
            "website",
            "sh",
            "-c",
            &format!("head -c 400000 /dev/urandom > /www/t{trial}; echo {trial} >> /www/index.html"),
        ]);
        kill_midway(&s, &["snapshot", "website"], 250, &format!("snapshot {trial}"));
        expected.push(record(env));
        // The service is never left frozen.
        assert!(!env.ok(&["ps"]).contains("Paused"), "trial {trial}");
    }
    for trial in 0..20 {
        s.lb(&["forget", "--keep-last", "6"]);
        env.ok(&["exec", "website", "sh", "-c", &format!("head -c 300000 /dev/urandom > /www/p{trial}")]);
        expected.push(record(env));
        kill_midway(&s, &["prune"], 300, &format!("prune {trial}"));
    }
    let report = s.lb(&["check", "--read-data"]);
    assert!(report.contains("no errors"), "{report}");
    // Every snapshot still in the repository restores byte-identical.
    let remaining: serde_json::Value = serde_json::from_str(&s.lb(&["snapshots", "--format", "json"])).unwrap();
    let remaining: Vec<String> =
        remaining.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_string()).collect();
    assert!(remaining.len() >= 6);
    let mut checked = 0;
    for (i, (id, tree)) in expected.iter().enumerate() {
        if !remaining.contains(id) {
            continue;
        }
        let name = format!("check{i}");
        s.lb(&["restore", "website", "--snapshot", &id[..16], "--as", &name, "--no-start"]);
        assert_eq!(&volume_tree(env, &format!("{name}-content")), tree, "snapshot {id}");
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} snapshots compared");
}

#[test]
fn one_snapshot_into_two_repositories_and_restore_at_a_time() {
    let s = Service::start();
    let env = &s.env;
    let pw2 = env.path("pw2");
    fs::write(&pw2, "second repository").unwrap();
    let repo2 = env.path("repo2").display().to_string();
    env.ok(&["repo", "init", "--repo", &repo2, "--password-file", pw2.to_str().unwrap()]);
    let out = env.ok(&[
        "snapshot",
        "website",
        "--repo",
        &s.repo,
        "--password-file",
        &s.pwfile,
        "--repo",
        &repo2,
        "--password-file",
        pw2.to_str().unwrap(),
    ]);
    assert_eq!(out.matches("saved to").count(), 2, "{out}");
    for (repo, pw) in [(s.repo.as_str(), s.pwfile.as_str()), (repo2.as_str(), pw2.to_str().unwrap())] {
        let list: serde_json::Value =
            serde_json::from_str(&env.ok(&["snapshots", "--repo", repo, "--password-file", pw, "--format", "json"]))
                .unwrap();
        assert_eq!(list.as_array().unwrap().len(), 1);
    }
    env.ok(&["rm", "-f", "website"]);
    env.ok(&["volume", "rm", "content"]);
    let err =
        env.fails(&["restore", "website", "--at", "2000-01-01", "--repo", &s.repo, "--password-file", &s.pwfile], 3);
    assert!(err.contains("at or before 2000-01-01"), "{err}");
    let out = env.ok(&[
        "restore",
        "website",
        "--at",
        "2999-12-31T00:00:00Z",
        "--no-start",
        "--repo",
        &repo2,
        "--password-file",
        pw2.to_str().unwrap(),
    ]);
    assert!(out.contains("restored website"), "{out}");
}

#[test]
fn each_snapshot_is_also_a_local_image_and_only_the_newest_three_stay() {
    let s = Service::start();
    let env = &s.env;
    env.ok(&["exec", "website", "sh", "-c", "echo v1 > /srv-version"]);
    let out = s.lb(&["snapshot", "website"]);
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("local image "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no local image reported:\n{out}"))
        .to_string();
    assert!(name.starts_with("website:snap-"), "{name}");
    // The image runs with the container's changes (not the volume: volumes live in the repository).
    env.ok(&["exec", "website", "sh", "-c", "echo v2 > /srv-version"]);
    let seen = env.ok(&["run", "--rm", &name, "sh", "-c", "cat /srv-version; md5sum < /var/db/books.db"]);
    let live = env.ok(&["exec", "website", "sh", "-c", "md5sum < /var/db/books.db"]);
    assert_eq!(seen, format!("v1\n{live}"));
    let history = env.ok(&["history", &name]);
    assert!(history.contains("lifeboat snapshot website"), "{history}");
    // The volume's content is in the image too, at its mount path: the image alone runs the
    // service with its data (and `push` sends it whole).
    let page = env.ok(&["run", "--rm", &name, "cat", "/www/index.html"]);
    assert!(page.contains(MARKER), "{page}");

    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        s.lb(&["snapshot", "website"]);
    }
    let images = env.ok(&["images"]);
    let snaps = images.lines().filter(|l| l.contains("snap-")).count();
    assert_eq!(snaps, 3, "{images}");
    assert!(!images.contains(name.split(':').nth(1).unwrap()), "the oldest should be gone:\n{images}");
    let no_image = s.lb(&["snapshot", "website", "--no-image"]);
    assert!(!no_image.contains("local image"), "{no_image}");
}

/// Sizes as the command line prints them (1000-based, four significant digits).
fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let (mut v, mut unit) = (bytes as f64, 0);
    while v >= 1000.0 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text };
    format!("{text}{}", units[unit])
}

/// A cold snapshot killed midway (kill -9) leaves packs no index lists yet: the next snapshot
/// takes them in and goes on from them instead of writing that data again, and the repository
/// checks clean.
#[test]
fn a_killed_cold_snapshot_is_taken_up_by_the_next() {
    let s = Service::start();
    s.env.ok(&[
        "exec",
        "website",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do head -c 25000000 /dev/urandom > /www/big-$i; done",
    ]);
    let data = std::path::Path::new(&s.repo).join("data");
    let mut child = s
        .env
        .lifeboat()
        .args(["snapshot", "website", "--no-image", "--repo", &s.repo, "--password-file", &s.pwfile])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once three whole packs are written (an index file comes only after eight).
    let repo = std::path::Path::new(&s.repo).to_path_buf();
    let whole_packs = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        if !dir.exists() {
            return Vec::new();
        }
        walk(dir)
            .into_iter()
            .filter(|f| f.file_name().is_some_and(|n| n.len() == 64 && !n.to_string_lossy().starts_with('.')))
            .collect()
    };
    wait_until(120, "three packs", || whole_packs(&data).len() >= 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let empty = |d: &str| fs::read_dir(repo.join(d)).map_or(true, |mut r| r.next().is_none());
    assert!(empty("index") && empty("snapshots"), "the snapshot was not killed midway");
    let written: u64 = whole_packs(&data).iter().map(|f| fs::metadata(f).map_or(0, |m| m.len())).sum();
    let before = volume_tree(&s.env, "content");
    let out = s.lb(&["snapshot", "website", "--no-image", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let added = v["stats"]["added_bytes"].as_u64().unwrap();
    assert!(
        added < 150_000_000 - written + 10_000_000,
        "the second snapshot wrote {added} bytes again, though {written} were in packs already"
    );
    assert!(
        fs::read_dir(std::path::Path::new(&s.repo).join("locks")).unwrap().next().is_none(),
        "the dead lock stayed"
    );
    let report = s.lb(&["check", "--read-data"]);
    assert!(report.contains("no errors"), "{report}");
    s.env.ok(&["rm", "-f", "website"]);
    s.env.ok(&["volume", "rm", "content"]);
    s.lb(&["restore", "website", "--no-start"]);
    assert_eq!(volume_tree(&s.env, "content"), before, "the restore differs from what was snapshotted");
}
