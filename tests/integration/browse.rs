//! Opening snapshots: `ls`, `find`, `dump`, `diff A:PATH B:PATH` and partial restores, into a
//! directory and back into the running service, with paths as the service saw them.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::util::{Env, free_port, http_get, stderr, tree, wait_until};

struct Site {
    env: Env,
    port: u16,
    repo: String,
    pwfile: String,
}

impl Site {
    /// The web site with its pages in volume `content` (at /www), on a private repository.
    fn start() -> Site {
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
            "site:1",
        ]);
        let pwfile = env.path("pw");
        fs::write(&pwfile, "browse the shelves\n").unwrap();
        let repo = env.path("repo").display().to_string();
        let s = Site { env, port, repo, pwfile: pwfile.display().to_string() };
        s.lb(&["repo", "init"]);
        wait_until(20, "the site to answer", || http_get(port, "/").is_ok_and(|b| !b.is_empty()));
        s
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--repo", &self.repo, "--password-file", &self.pwfile]);
        all
    }

    fn lb(&self, args: &[&str]) -> String {
        self.env.ok(&self.args(args))
    }

    fn fails(&self, args: &[&str], code: i32) -> String {
        self.env.fails(&self.args(args), code)
    }

    fn sh(&self, script: &str) -> String {
        self.env.ok(&["exec", "website", "sh", "-c", script])
    }

    /// Takes a snapshot; its full ID.
    fn snapshot(&self) -> String {
        let out = self.lb(&["snapshot", "website", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let v = if v.is_array() { v[0].clone() } else { v };
        v["snapshot"].as_str().or(v["id"].as_str()).expect("snapshot id in the report").to_string()
    }

    fn volume_dir(&self) -> PathBuf {
        self.env.root().join("volumes/content/_data")
    }
}

/// Leftover staging directories anywhere under `dir` (a restore must never leave one).
fn stages_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(".lifeboat-restore-") {
            out.push(p.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(stages_under(&p));
        }
    }
    out
}

#[test]
fn a_deleted_page_comes_back_in_place_while_the_site_answers() {
    let s = Site::start();
    s.sh("echo '<p>opening hours</p>' > /www/page.html; echo '<p>home v1</p>' > /www/index.html");
    let first = s.snapshot();
    s.sh("echo '<p>home v2</p>' > /www/index.html; echo '<p>news</p>' > /www/news.html");
    let second = s.snapshot();
    s.sh("rm /www/page.html");
    let third = s.snapshot();
    assert!(!http_get(s.port, "/page.html").unwrap_or_default().contains("opening hours"));

    // find lists it in every snapshot that holds it, newest first, and in no other.
    let found: serde_json::Value = serde_json::from_str(&s.lb(&["find", "page.html", "--json"])).unwrap();
    let ids: Vec<&str> = found.as_array().unwrap().iter().map(|f| f["snapshot"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "{found}");
    let size = "<p>opening hours</p>\n".len();
    assert!(found.as_array().unwrap().iter().all(|f| f["path"] == "/www/page.html" && f["size"] == size), "{found}");
    let table = s.lb(&["find", "*.html", "--service", "website"]);
    assert_eq!(table.lines().filter(|l| l.contains("/www/news.html")).count(), 2, "{table}");
    assert!(table.lines().next().unwrap().starts_with("SNAPSHOT"), "{table}");
    let err = s.fails(&["find", "no-such-page.html"], 3);
    assert!(err.contains("nothing matches"), "{err}");

    // Back into the running service from the second snapshot, while a client keeps reading.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, served, failed, port) = (stop.clone(), served.clone(), failed.clone(), s.port);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match http_get(port, "/index.html") {
                    Ok(b) if b.contains("home v2") => served.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = s.lb(&[
        "restore",
        "website",
        "--snapshot",
        &second[..12],
        "--include",
        "/www/page.html",
        "--in-place",
        "--json",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((report["placed"].as_u64(), report["kept"].as_u64()), (Some(1), Some(0)), "{out}");
    assert!(report["frozen_ms"].as_u64().is_some(), "a running service is frozen for the swap: {out}");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "the site stopped answering during the restore");
    assert!(served.load(Ordering::Relaxed) > 5);
    assert!(http_get(s.port, "/page.html").unwrap().contains("opening hours"));
    assert!(stages_under(&s.volume_dir()).is_empty() && stages_under(&s.env.root().join("volumes/content")).is_empty());

    // Written since the snapshot: kept, unless --overwrite.
    s.sh("echo '<p>home v3, edited today</p>' > /www/index.html");
    let out = s.lb(&["restore", "website", "--snapshot", &first[..12], "--include", "/www/index.html", "--in-place"]);
    assert!(out.contains("1 kept"), "{out}");
    assert!(s.sh("cat /www/index.html").contains("v3"));
    s.lb(&[
        "restore",
        "website",
        "--snapshot",
        &first[..12],
        "--include",
        "/www/index.html",
        "--in-place",
        "--overwrite",
    ]);
    assert!(s.sh("cat /www/index.html").contains("home v1"));
    assert!(http_get(s.port, "/index.html").unwrap().contains("home v1"));

    // A directory of new work where the snapshot had a file is never swapped away, even with
    // --overwrite; mount points in the container (its /etc/hosts) are left as they are.
    s.sh("echo 'a page' > /www/uploads");
    let fifth = s.snapshot();
    s.sh("rm /www/uploads && mkdir /www/uploads && echo today > /www/uploads/photo.jpg");
    let out = s
        .env
        .lifeboat()
        .args(s.args(&[
            "restore",
            "website",
            "--snapshot",
            &fifth[..12],
            "--include",
            "/www/uploads",
            "--include",
            "/etc",
            "--in-place",
            "--overwrite",
        ]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("/www/uploads (a directory here)"), "{}", stderr(&out));
    assert!(stderr(&out).contains("/etc/hosts (a mount point in the container)"), "{}", stderr(&out));
    assert_eq!(s.sh("cat /www/uploads/photo.jpg"), "today\n");

    // The container layer too, through the container's root: a file the container made.
    s.sh("mkdir -p /srv/catalogue && echo 'isbn 978-0' > /srv/catalogue/books.txt");
    let fourth = s.snapshot();
    s.sh("rm -r /srv/catalogue");
    s.lb(&["restore", "website", "--snapshot", &fourth[..12], "--include", "/srv/catalogue", "--in-place"]);
    assert_eq!(s.sh("cat /srv/catalogue/books.txt"), "isbn 978-0\n");
    assert_eq!(
        s.sh("ls -a /").lines().filter(|l| l.starts_with(".lifeboat")).count(),
        0,
        "a stage is left in the root"
    );

    // Not in that snapshot: "not found", and nothing changes.
    let err =
        s.fails(&["restore", "website", "--snapshot", &third[..12], "--include", "/www/page.html", "--in-place"], 3);
    assert!(err.contains("/www/page.html is not in snapshot"), "{err}");
    let err = s.fails(&["restore", "website", "--include", "/www/page.html"], 2);
    assert!(err.contains("--target DIR or --in-place"), "{err}");

    // Not while a snapshot holds the service frozen (here: one that this test's process
    // claims to be taking).
    let id = s.env.inspect("website")["Id"].as_str().unwrap().to_string();
    let marker = s.env.root().join("containers").join(&id).join("frozen-by");
    fs::write(&marker, std::process::id().to_string()).unwrap();
    let err =
        s.fails(&["restore", "website", "--snapshot", &second[..12], "--include", "/www/page.html", "--in-place"], 5);
    assert!(err.contains("snapshot of website is being taken"), "{err}");
    fs::remove_file(&marker).unwrap();

    // A service that has the volume read-only is not written through it.
    s.env.ok(&["run", "-d", "--name", "reader", "-v", "content:/www:ro", "site:1", "sleep", "1000"]);
    let out = s.lb(&["snapshot", "reader", "--format", "json"]);
    assert!(out.contains("\"id\""), "{out}");
    let err = s.fails(&["restore", "reader", "--include", "/www/index.html", "--in-place", "--overwrite"], 2);
    assert!(err.contains("mounted read-only"), "{err}");
    s.env.ok(&["rm", "-f", "reader"]);
}

#[test]
fn ls_dump_and_diff_read_paths_as_the_service_saw_them() {
    let s = Site::start();
    s.sh("echo '<p>opening hours: 9-17</p>' > /www/page.html; mkdir -p /www/docs /var/lib/catalogue; echo a > /www/docs/a.txt; ln -s /www/page.html /www/latest; echo rec > /var/lib/catalogue/records; rm /bin/vi");
    let first = s.snapshot();
    s.sh("echo '<p>opening hours: 9-18</p>' > /www/page.html; echo b > /www/docs/b.txt");
    let second = s.snapshot();

    // ls: a directory's entries, the volume as a directory at its mount path, a whiteout (a
    // file the container deleted) not shown.
    let root = s.lb(&["ls", &format!("{}:/", &first[..8])]);
    assert!(root.lines().any(|l| l == "/www") && root.lines().any(|l| l == "/var"), "{root}");
    let bin = s.lb(&["ls", &format!("{}:/bin", &first[..8])]);
    assert!(!bin.lines().any(|l| l == "/bin/vi"), "a deleted file is listed: {bin}");
    let long = s.lb(&["ls", "-l", "website:/www/latest"]);
    assert!(long.starts_with("lrwxrwxrwx") && long.contains("/www/latest -> /www/page.html"), "{long}");
    let all = s.lb(&["ls", "-R", "website:/www"]);
    assert!(all.lines().any(|l| l == "/www/docs/b.txt"), "{all}");
    let json: serde_json::Value = serde_json::from_str(&s.lb(&["ls", "website:/www", "--json"])).unwrap();
    assert_eq!(json["snapshot"], second.as_str());
    let page = json["entries"].as_array().unwrap().iter().find(|e| e["path"] == "/www/page.html").unwrap();
    let size = "<p>opening hours: 9-18</p>\n".len() as u64;
    assert_eq!((page["type"].as_str(), page["size"].as_u64()), (Some("file"), Some(size)));
    assert_eq!(page["stored_in"]["name"], "content", "{page}");
    let vol = s.lb(&["ls", "-l", "website:/var/lib/catalogue/records"]);
    assert!(vol.contains(" 4  "), "{vol}");

    // dump: a file's bytes; a directory as a tar stream `tar` reads.
    let mut dump = s.env.lifeboat();
    dump.args(s.args(&["dump", &format!("website@{}:/www/page.html", chrono_now())])).stdout(Stdio::piped());
    let out = dump.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "<p>opening hours: 9-18</p>\n");
    let mut dump = s.env.lifeboat().args(s.args(&["dump", "website:/www"])).stdout(Stdio::piped()).spawn().unwrap();
    let listed = Command::new("tar").args(["tv"]).stdin(dump.stdout.take().unwrap()).output().unwrap();
    assert!(dump.wait().unwrap().success() && listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in ["www/", "www/page.html", "www/docs/a.txt", "www/docs/b.txt", "www/latest -> /www/page.html"] {
        assert!(listed.lines().any(|l| l.ends_with(name)), "{name} not in the tar stream:\n{listed}");
    }
    let err = s.fails(&["dump", "website:/www/no-such-file"], 3);
    assert!(err.contains("is not in snapshot"), "{err}");
    let err = s.fails(&["ls", "website:/www/latest/x"], 3);
    assert!(err.contains("symbolic link to /www/page.html"), "{err}");

    // diff: a unified diff of one file, the changes below a directory.
    let d = s.lb(&["diff", &format!("{}:/www/page.html", &first[..8]), &format!("{}:/www/page.html", &second[..8])]);
    assert!(d.contains("-<p>opening hours: 9-17</p>") && d.contains("+<p>opening hours: 9-18</p>"), "{d}");
    assert!(d.contains(&format!("--- {}:/www/page.html", &first[..12])), "{d}");
    let d = s.lb(&["diff", &format!("{}:/www", &first[..8]), "website:/www"]);
    let lines: Vec<&str> = d.lines().collect();
    assert_eq!(lines, ["+  /www/docs/b.txt", "M  /www/page.html"], "{d}");
    let same = s
        .env
        .lifeboat()
        .args(s.args(&["diff", "website:/www/docs/a.txt", &format!("{}:/www/docs/a.txt", &first[..8])]))
        .output()
        .unwrap();
    assert!(same.status.success() && stderr(&same).contains("no difference"));

    // A wrong password and an unknown snapshot are the documented errors.
    fs::write(&s.pwfile, "wrong\n").unwrap();
    s.fails(&["ls", "website:/"], 12);
    fs::write(&s.pwfile, "browse the shelves\n").unwrap();
    s.fails(&["ls", "ffffffff:/"], 3);
    s.fails(&["ls", "nobody:/"], 3);
    // A name holding a terminal's escape sequence is shown, never sent to the terminal.
    s.sh("printf x > \"$(printf '/www/evil\\033[2Jname')\"");
    s.snapshot();
    let all = s.lb(&["ls", "-R", "website:/www"]);
    assert!(!all.contains('\u{1b}'), "an escape sequence reached the terminal: {all:?}");
    assert!(all.lines().any(|l| l == "/www/evil\\u{1b}[2Jname"), "{all}");
}

/// A minute from now in RFC 3339 (the newest snapshot at or before it is the latest).
fn chrono_now() -> String {
    let out = Command::new("date").args(["-u", "-d", "+1 minute", "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn files_come_back_into_a_directory_with_their_metadata_exactly() {
    let s = Site::start();
    let vol = s.volume_dir();
    // Owners, modes, nanosecond times, a hard link, a sparse file, an extended attribute.
    fs::create_dir_all(vol.join("private/deep")).unwrap();
    fs::write(vol.join("private/deep/secret.txt"), "s3cret").unwrap();
    std::os::unix::fs::chown(vol.join("private/deep/secret.txt"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(vol.join("private/deep/secret.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(vol.join("private"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::hard_link(vol.join("private/deep/secret.txt"), vol.join("private/again.txt")).unwrap();
    let sparse = fs::File::create(vol.join("sparse.img")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"end", (64 << 20) - 3).unwrap();
    drop(sparse);
    let xattr =
        rustix::fs::setxattr(vol.join("index.html"), "user.origin", b"catalogue", rustix::fs::XattrFlags::empty())
            .is_ok();
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: 1_700_000_000, tv_nsec: 123_456_789 },
        last_modification: rustix::fs::Timespec { tv_sec: 1_700_000_000, tv_nsec: 123_456_789 },
    };
    rustix::fs::utimensat(rustix::fs::CWD, vol.join("private/deep/secret.txt"), &ts, rustix::fs::AtFlags::empty())
        .unwrap();
    s.snapshot();

    let out = s.env.path("out");
    s.lb(&["restore", "website", "--target", out.to_str().unwrap(), "--include", "/www"]);
    let (want, got) = (tree(&vol), tree(&out.join("www")));
    assert_eq!(want, got, "the restored files differ from the volume's");
    let m = fs::metadata(out.join("www/private/deep/secret.txt")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 123_456_789));
    assert!(fs::metadata(out.join("www/sparse.img")).unwrap().blocks() < 1024, "the sparse file was filled in");
    if xattr {
        let mut v = vec![0u8; 64];
        let n = rustix::fs::getxattr(out.join("www/index.html"), "user.origin", &mut v).unwrap();
        assert_eq!(&v[..n], b"catalogue");
    }
    // Only what was included (and the directories leading to it).
    let top: Vec<String> =
        fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(top, ["www"]);

    // An exclude, and a second restore into the same directory keeps what is there.
    fs::write(out.join("www/index.html"), "mine").unwrap();
    let again = s
        .env
        .lifeboat()
        .args(s.args(&[
            "restore",
            "website",
            "--target",
            out.to_str().unwrap(),
            "--include",
            "/www",
            "--exclude",
            "/www/private",
        ]))
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("/www/index.html (exists)"), "{}", stderr(&again));
    assert!(!stderr(&again).contains("/www/private"), "an excluded path was looked at: {}", stderr(&again));
    assert_eq!(fs::read_to_string(out.join("www/index.html")).unwrap(), "mine");
    let other = s.env.path("out2");
    s.lb(&[
        "restore",
        "website",
        "--target",
        other.to_str().unwrap(),
        "--include",
        "/www",
        "--exclude",
        "/www/private",
    ]);
    assert!(!other.join("www/private").exists() && other.join("www/sparse.img").exists());
    assert!(stages_under(&out).is_empty() && stages_under(&other).is_empty());
}

#[test]
fn damaged_data_restores_nothing_and_leaves_no_stage() {
    let s = Site::start();
    s.sh("head -c 200000 /dev/urandom > /www/big.bin; echo keep > /www/page.html");
    let id = s.snapshot();
    s.sh("echo live > /www/big.bin");
    // Damage the file data (every 4 KiB of the large packs; the trees are in small packs of
    // their own, so the restore starts and fails on the way, with a stage half filled).
    for entry in walk(&Path::new(&s.repo).join("data")) {
        let mut bytes = fs::read(&entry).unwrap();
        if bytes.len() < 100_000 {
            continue;
        }
        for i in (2048..bytes.len()).step_by(4096) {
            bytes[i] ^= 0x40;
        }
        fs::write(&entry, bytes).unwrap();
    }
    let err =
        s.fails(&["restore", "website", "--snapshot", &id[..12], "--include", "/www", "--in-place", "--overwrite"], 4);
    assert!(err.contains("does not authenticate") || err.contains("damaged"), "{err}");
    assert_eq!(s.sh("cat /www/big.bin"), "live\n", "a failed restore changed the service");
    assert!(stages_under(&s.env.root().join("volumes")).is_empty(), "a stage was left behind");
    let target = s.env.path("out");
    s.fails(&["restore", "website", "--snapshot", &id[..12], "--target", target.to_str().unwrap()], 4);
    assert!(stages_under(&target).is_empty());
    let out = s.env.lifeboat().args(s.args(&["dump", "website:/www/big.bin"])).stdout(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `lifeboat mount` running in the background; unmounted (by an interrupt) when dropped.
struct Mounted {
    child: std::process::Child,
    at: PathBuf,
}

impl Mounted {
    fn start(s: &Site, repo: &str, at: PathBuf) -> Mounted {
        fs::create_dir_all(&at).unwrap();
        let child = s
            .env
            .lifeboat()
            .args(["mount", at.to_str().unwrap(), "--repo", repo, "--password-file", &s.pwfile])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let m = Mounted { child, at };
        wait_until(30, "the snapshots to be mounted", || m.at.join("snapshots/latest").exists());
        m
    }

    /// Interrupts the mount; its exit code.
    fn stop(mut self) -> Option<i32> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(std::time::Instant::now() < deadline, "the mount did not end on SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

fn is_mount_point(p: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

/// The mount shows every snapshot under services/NAME/TIME and snapshots/ID, with the files,
/// owners, modes, times and extended attributes the service had; `diff -r` against the live
/// volume finds nothing.
fn mount_serves_the_live_service_files(s: &Site, repo: &str) {
    let vol = s.volume_dir();
    fs::create_dir_all(vol.join("shelves/a")).unwrap();
    fs::write(vol.join("shelves/a/book.txt"), "a book\n").unwrap();
    std::os::unix::fs::chown(vol.join("shelves/a/book.txt"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(vol.join("shelves/a/book.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(vol.join("big.bin"), &big).unwrap();
    let xattr =
        rustix::fs::setxattr(vol.join("big.bin"), "user.shelf", b"reference", rustix::fs::XattrFlags::empty()).is_ok();
    s.sh("mkdir -p /srv && echo catalogue > /srv/records.txt");
    let out = s.env.ok(&["snapshot", "website", "--repo", repo, "--password-file", &s.pwfile, "--format", "json"]);
    let id: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = id["id"].as_str().unwrap()[..12].to_string();

    let m = Mounted::start(s, repo, s.env.path("mnt"));
    let services: Vec<String> = fs::read_dir(m.at.join("services/website"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(services.iter().any(|n| n == "latest") && services.len() >= 2, "{services:?}");
    let snap = m.at.join("snapshots").join(&id);
    assert_eq!(fs::read_link(m.at.join("snapshots/latest")).unwrap(), Path::new(&id));
    let diff = Command::new("diff").arg("-r").arg(snap.join("www")).arg(&vol).output().unwrap();
    assert!(
        diff.status.success(),
        "the mount differs from the live volume:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    assert_eq!(fs::read(snap.join("www/big.bin")).unwrap(), big);
    assert_eq!(fs::read_to_string(snap.join("srv/records.txt")).unwrap(), "catalogue\n");
    let (live, mounted) = (
        fs::metadata(vol.join("shelves/a/book.txt")).unwrap(),
        fs::metadata(snap.join("www/shelves/a/book.txt")).unwrap(),
    );
    assert_eq!((mounted.uid(), mounted.gid(), mounted.mode() & 0o7777), (1234, 5678, 0o640));
    assert_eq!((mounted.mtime(), mounted.mtime_nsec()), (live.mtime(), live.mtime_nsec()));
    if xattr {
        let mut v = [0u8; 64];
        let n = rustix::fs::getxattr(snap.join("www/big.bin"), "user.shelf", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"reference");
    }
    let ls = Command::new("ls").arg("-lR").arg(m.at.join("services/website/latest/")).output().unwrap();
    assert!(ls.status.success() && String::from_utf8_lossy(&ls.stdout).contains("book.txt"));
    // Read-only.
    assert!(fs::write(snap.join("www/new.txt"), "x").is_err());
    assert!(fs::remove_file(snap.join("www/big.bin")).is_err());
    assert_eq!(m.stop(), Some(130));
    assert!(!is_mount_point(&s.env.path("mnt")), "the mount is still there");
}

#[test]
fn mount_on_a_local_repository_and_unmount_during_a_read() {
    let s = Site::start();
    s.snapshot();
    mount_serves_the_live_service_files(&s, &s.repo.clone());

    // A read in flight when the mount is stopped: the mount ends, the reader gets an error
    // or the rest of the file, never a hang, and the mount point is free.
    let m = Mounted::start(&s, &s.repo, s.env.path("mnt2"));
    let mut f = fs::File::open(m.at.join("snapshots/latest/www/big.bin")).unwrap();
    let mut first = vec![0u8; 65536];
    std::io::Read::read_exact(&mut f, &mut first).unwrap();
    // A slow reader: the mount stops while it is still reading.
    let reader = std::thread::spawn(move || {
        let (mut n, mut buf) = (0usize, vec![0u8; 16384]);
        loop {
            match std::io::Read::read(&mut f, &mut buf) {
                Ok(0) => return (true, n),
                Ok(k) => n += k,
                Err(_) => return (false, n),
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let at = m.at.clone();
    assert_eq!(m.stop(), Some(130));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reader.is_finished() {
        assert!(std::time::Instant::now() < deadline, "a read hung after the mount stopped");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (ok, n) = reader.join().unwrap();
    assert!(!ok || n == 3_000_000 - 65536, "a read ended early without an error ({n} bytes)");
    assert!(!is_mount_point(&at));
    // A missing mount point is "not found".
    s.fails(&["mount", s.env.path("nowhere").to_str().unwrap()], 3);
}

#[test]
fn mount_on_both_s3_servers() {
    for server in ["s3s", "moto"] {
        let Some(repo) = crate::util::s3_location(server) else { continue };
        let s = Site::start();
        s.env.ok(&["repo", "init", "--repo", &repo, "--password-file", &s.pwfile]);
        mount_serves_the_live_service_files(&s, &repo);
    }
}
