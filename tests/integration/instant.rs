//! Instant restores: the service answers from its snapshot before the data has arrived, its
//! volumes fill behind it, and it ends on plain local volumes identical to the snapshot; an
//! interrupted one is finished or undone, and a repository that goes away stalls it loudly.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::util::{Env, free_port, wait_until};

/// Deterministic bytes for file `n` of `len` bytes (printable, so pages are text).
fn content(n: u64, len: usize) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// GET over HTTP/1.0 on loopback: the status line's code and the body's bytes.
fn get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
    let code =
        String::from_utf8_lossy(&resp[..end]).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, resp[end + 4..].to_vec()))
}

/// The site's files: (path in the volume, content).
struct Files(Vec<(String, Vec<u8>)>);

impl Files {
    /// An index page, `pages` small pages and `catalogue_mb` MiB of catalogue in 4 MiB parts.
    fn new(pages: u64, catalogue_mb: u64) -> Files {
        let mut f = vec![("index.html".to_string(), b"<h1>Instant library</h1>\n".to_vec())];
        for i in 0..pages {
            f.push((format!("pages/page-{i}.html"), content(i, 8192)));
        }
        for i in 0..catalogue_mb.div_ceil(4) {
            f.push((format!("catalogue/part-{i}"), content(1_000_000 + i, 4 << 20)));
        }
        Files(f)
    }

    fn write_into(&self, dir: &Path) {
        for (p, c) in &self.0 {
            let path = dir.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, c).unwrap();
        }
    }

    fn bytes(&self) -> u64 {
        self.0.iter().map(|(_, c)| c.len() as u64).sum()
    }

    /// Every file of `dir` is the one written, and nothing else is there.
    fn assert_same_as(&self, dir: &Path) {
        let mut found = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    todo.push(e.path());
                } else {
                    found.push(e.path().strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        let mut expected: Vec<String> = self.0.iter().map(|(p, _)| p.clone()).collect();
        expected.sort();
        assert_eq!(found, expected, "the volume holds other files than the snapshot");
        for (p, c) in &self.0 {
            assert!(fs::read(dir.join(p)).unwrap() == *c, "{p} differs from the snapshot");
        }
    }
}

struct Site {
    env: Env,
    port: u16,
    repo: String,
    pwfile: String,
}

impl Site {
    /// The web site serving volume `content` at /www, `files` in it, snapshotted to `repo`
    /// (None: a local one). Extra `run` flags go before the image.
    fn start(files: &Files, repo: Option<String>, run_flags: &[&str]) -> Site {
        let env = Env::new();
        env.site_image("site:1");
        let port = free_port();
        let published = format!("127.0.0.1:{port}:80");
        let mut args = vec!["run", "-d", "--name", "website", "-p", &published, "-v", "content:/www"];
        args.extend(run_flags);
        args.push("site:1");
        env.ok(&args);
        files.write_into(&env.root().join("volumes/content/_data"));
        let pwfile = env.path("pw");
        fs::write(&pwfile, "shelves at once\n").unwrap();
        let repo = repo.unwrap_or_else(|| env.path("repo").display().to_string());
        let s = Site { env, port, repo, pwfile: pwfile.display().to_string() };
        s.with_repo(&s.env, &["repo", "init"]);
        wait_until(20, "the site to answer", || get(port, "/index.html").is_ok_and(|(c, _)| c == 200));
        s
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--repo", &self.repo, "--password-file", &self.pwfile]);
        all
    }

    /// `lifeboat ARGS --repo … --password-file …` in `env`'s root.
    fn with_repo(&self, env: &Env, args: &[&str]) -> String {
        env.ok(&self.args(args))
    }

    /// The outage: the service and its volume are gone.
    fn destroy(&self, env: &Env) {
        env.ok(&["rm", "-f", "website"]);
        env.ok(&["volume", "rm", "content"]);
    }
}

/// The hydration record of the container `name` in `env`.
fn hydration(env: &Env, id: &str) -> serde_json::Value {
    let text = fs::read(env.root().join("containers").join(id).join("hydration.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Restores `website --instant` into `env`; the container's ID.
fn restore_instant(s: &Site, env: &Env) -> String {
    let out = s.with_repo(env, &["restore", "website", "--instant", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hydrating"], true, "{out}");
    v["container"].as_str().unwrap().to_string()
}

fn wait_done(env: &Env, id: &str, secs: u64) {
    wait_until(secs, "the hydration to finish", || {
        let h = hydration(env, id);
        assert_ne!(h["phase"], "failed", "the hydration failed: {h}");
        h["phase"] == "done"
    });
}

/// Mounts of `root` left behind (FUSE servers, overlays).
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&root) && m.contains("/volumes/"))
        .collect()
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// The size of the reference site in this run (`LIFEBOAT_TEST_INSTANT_MB`, 1 GiB by default).
fn site_mb() -> u64 {
    std::env::var("LIFEBOAT_TEST_INSTANT_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024)
}

#[test]
fn an_instant_restore_from_s3_answers_at_once_and_ends_identical() {
    let Some(repo) = crate::util::s3_location("s3s") else { return };
    let pages = Files::new(200, 0);
    let s = Site::start(&pages, Some(repo), &[]);
    // A drill reads the index page: that is the hot set the next snapshot carries (drilled
    // while the site is small; it is the same page once the catalogue is in).
    s.with_repo(&s.env, &["snapshot", "website"]);
    s.with_repo(&s.env, &["drill", "website", "--http", "http://localhost:80/index.html"]);
    let files = Files::new(200, site_mb());
    files.write_into(&s.env.root().join("volumes/content/_data"));
    s.with_repo(&s.env, &["snapshot", "website"]);
    s.destroy(&s.env);

    // A new host: nothing there, not even the image.
    let host = Env::new();
    let id = restore_instant(&s, &host);
    // The service has no health check: the restore returns once it is started, and its
    // server may take a moment to listen (under load, a connection can come first).
    let mut first = get(s.port, "/index.html");
    wait_until(10, "the site to answer", || {
        first = get(s.port, "/index.html");
        first.is_ok()
    });
    let (code, body) = first.expect("the site answers at once");
    assert_eq!((code, body.as_slice()), (200, files.0[0].1.as_slice()));
    // What had been fetched when the page came is at most what the first record written
    // after it says.
    let before = hydration(&host, &id)["updated"].clone();
    let mut h = hydration(&host, &id);
    wait_until(30, "a record of the hydration after the first page", || {
        h = hydration(&host, &id);
        h["updated"] != before && h["phase"] != "mounting"
    });
    let fetched = h["fetched_bytes"].as_u64().unwrap();
    assert!(
        fetched < files.bytes() / 10,
        "the first page came after {fetched} of {} bytes were fetched",
        files.bytes()
    );
    assert!(h["hot_files"].as_u64().unwrap() >= 1, "the drill's hot set was not used: {h}");
    let ps = host.ok(&["ps"]);
    assert!(ps.contains("hydrating"), "{ps}");

    // The service changes its volume meanwhile: a page deleted, one written, one changed.
    host.ok(&[
        "exec",
        "website",
        "sh",
        "-c",
        "rm /www/pages/page-3.html && echo fresh > /www/new.html && echo changed > /www/pages/page-4.html",
    ]);
    let mut files = files;
    files.0.retain(|(p, _)| p != "pages/page-3.html");
    files.0.push(("new.html".into(), b"fresh\n".to_vec()));
    files.0.iter_mut().find(|(p, _)| p == "pages/page-4.html").unwrap().1 = b"changed\n".to_vec();

    // Every page is right while the volume fills: a client reads them all, over and over.
    let done = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicUsize::new(0));
    let record = host.root().join("containers").join(&id).join("hydration.json");
    let client = {
        let (done, passes, port) = (done.clone(), passes.clone(), s.port);
        let files: Vec<(String, Vec<u8>)> = files.0.clone();
        // The service is stopped for the one switch at the end: not answering is right then.
        let switching = move || {
            fs::read(&record)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|h| h["phase"] == "switching" || h["phase"] == "done")
        };
        std::thread::spawn(move || -> Result<(), String> {
            while !done.load(Ordering::Relaxed) {
                for (p, c) in &files {
                    match get(port, &format!("/{p}")) {
                        Ok((200, body)) if body == *c => {}
                        // A transfer cut by the switch's stop, too.
                        Ok(_) if switching() => return Ok(()),
                        Ok((code, body)) => {
                            return Err(format!("{p}: status {code}, {} bytes, not the snapshot's", body.len()));
                        }
                        Err(_) if switching() => return Ok(()),
                        Err(e) => return Err(format!("{p}: {e}")),
                    }
                }
                passes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    let mut during = 0;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let h = hydration(&host, &id);
        assert_ne!(h["phase"], "failed", "{h}");
        if h["phase"] == "done" {
            break;
        }
        if h["phase"] == "hydrating" {
            during = passes.load(Ordering::Relaxed);
        }
        assert!(Instant::now() < deadline, "hydration did not finish: {h}");
        std::thread::sleep(Duration::from_millis(100));
    }
    done.store(true, Ordering::Relaxed);
    client.join().unwrap().expect("a page was wrong during hydration");
    eprintln!("{during} full reads of the site while it hydrated");
    assert!(passes.load(Ordering::Relaxed) >= 1, "the client never read the whole site");
    let h = hydration(&host, &id);
    assert!(h["switch_ms"].as_u64().is_some(), "{h}");
    // The record says done just before the hydrator's last steps (its servers joined, its
    // index dropped): it is gone soon after, never left behind.
    let pid = h["hydrator"]["pid"].as_i64().unwrap();
    wait_until(30, "the hydrator to exit after the switch", || !alive(pid));
    assert_eq!(mounts_under(&host.root()), Vec::<String>::new());

    // Plain local files, the repository no longer needed: identical to the snapshot.
    files.assert_same_as(&host.root().join("volumes/content/_data"));
    let ps = host.ok(&["ps"]);
    assert!(ps.contains("website") && !ps.contains("hydrat"), "{ps}");
    wait_until(30, "the site to answer after the switch", || get(s.port, "/index.html").is_ok_and(|(c, _)| c == 200));
    let (code, body) = get(s.port, "/pages/page-7.html").unwrap();
    assert_eq!((code, body), (200, content(7, 8192)));
    assert_eq!(get(s.port, "/pages/page-3.html").unwrap().0, 404, "a deleted page came back");
}

/// The hydrator's PID of container `id`.
fn hydrator_pid(env: &Env, id: &str) -> i64 {
    hydration(env, id)["hydrator"]["pid"].as_i64().unwrap()
}

#[test]
fn an_interrupted_instant_restore_is_finished_or_undone_and_a_lost_repository_stalls_it() {
    let files = Files::new(50, 160);
    let s = Site::start(&files, None, &[]);
    s.with_repo(&s.env, &["snapshot", "website"]);
    s.destroy(&s.env);
    let env = &s.env;

    // Killed: the service is told (ps), reads of what was not copied fail rather than lie.
    let id = restore_instant(&s, env);
    let pid = hydrator_pid(env, &id);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until(10, "the hydrator to die", || !alive(pid));
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("hydration interrupted"), "{ps}");
    for (p, c) in files.0.iter().skip(40) {
        if let Ok((200, body)) = get(s.port, &format!("/{p}")) {
            assert!(body == *c, "{p} was served wrong after the hydrator died");
        }
    }
    // The container cannot be started on half a volume.
    env.ok(&["stop", "website"]);
    let err = env.fails(&["start", "website"], 1);
    assert!(err.contains("half restored") && err.contains("--finish"), "{err}");

    // Finishing needs the repository; without it, a clear error and nothing changes.
    let moved = PathBuf::from(format!("{}.away", s.repo));
    fs::rename(&s.repo, &moved).unwrap();
    let err = env.fails(&s.args(&["restore", "website", "--finish"]), 10);
    assert!(err.contains("repository"), "{err}");
    fs::rename(&moved, &s.repo).unwrap();

    // Finished: a new hydrator takes over. Its repository goes away mid-way (it is stopped
    // first, so the copy cannot be over before): it stalls, says so, and goes on when the
    // repository is back.
    let out = s.with_repo(env, &["restore", "website", "--finish"]);
    assert!(out.contains("runs again"), "{out}");
    let pid = hydrator_pid(env, &id);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGSTOP).unwrap();
    let packs = Path::new(&s.repo).join("data");
    let packs_away = Path::new(&s.repo).join("data.away");
    fs::rename(&packs, &packs_away).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGCONT).unwrap();
    let mut last = serde_json::Value::Null;
    let reported = (0..1200).any(|_| {
        last = hydration(env, &id);
        let yes = last["error"].as_str().is_some_and(|e| e.contains("repository"));
        if !yes {
            std::thread::sleep(Duration::from_millis(100));
        }
        yes
    });
    assert!(reported, "the hydration did not report the lost repository: {last}");
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("stalled"), "{ps}");
    assert_ne!(hydration(env, &id)["phase"], "done");
    fs::rename(&packs_away, &packs).unwrap();
    wait_done(env, &id, 600);
    assert_eq!(mounts_under(&env.root()), Vec::<String>::new());
    files.assert_same_as(&env.root().join("volumes/content/_data"));
    assert!(
        get(s.port, "/index.html").is_ok_and(|(c, _)| c == 200) || {
            std::thread::sleep(Duration::from_secs(2));
            get(s.port, "/index.html").is_ok_and(|(c, _)| c == 200)
        }
    );

    // Undone: after another interrupted one, the service and its volume are gone, nothing
    // stays mounted.
    s.destroy(env);
    let id = restore_instant(&s, env);
    let pid = hydrator_pid(env, &id);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until(10, "the hydrator to die", || !alive(pid));
    let out = env.ok(&["restore", "website", "--undo"]);
    assert!(out.contains("removed website"), "{out}");
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
    assert!(!env.ok(&["volume", "ls"]).contains("content"));
    assert_eq!(mounts_under(&env.root()), Vec::<String>::new());
    // Nothing to finish or undo any more.
    let err = env.fails(&["restore", "website", "--undo"], 3);
    assert!(err.contains("website"), "{err}");
}

/// A real MariaDB on a named volume, restored instantly: InnoDB starts on files still being
/// fetched, answers with exactly the snapshot's rows, takes writes, and after the switch to
/// a plain volume holds all of them in tables that check clean. InnoDB opens its files for
/// writing as it starts, so the overlay copies them up whole then: most of the volume is in
/// before the service answers, and the switch may fall between any two statements (they are
/// sent again then, as a client would).
#[test]
fn a_mariadb_restored_instantly_keeps_its_rows_and_writes_through_the_switch() {
    use crate::stacks::{ps_line, start_mariadb};
    let env = Env::new();
    let Some(image) = env.service_image("lamp") else { return };
    env.ok(&["volume", "create", "dbdata"]);
    start_mariadb(&env, &image, "dbdata", free_port());
    let try_sql = |q: &str| -> Result<String, String> {
        let out = env.lifeboat().args(["exec", "-u", "0", "db", "mariadb", "-N", "-e", q]).output().unwrap();
        if out.status.success() {
            Ok(crate::util::stdout(&out).trim().to_string())
        } else {
            Err(crate::util::stderr(&out))
        }
    };
    // A failed statement says what the database and the hydrator were doing.
    let explain = |q: &str, e: String| -> ! {
        let logs = env.lifeboat().args(["logs", "db"]).output().unwrap();
        let hydrate = fs::read_dir(env.root().join("containers"))
            .unwrap()
            .filter_map(|d| fs::read_to_string(d.ok()?.path().join("hydrate.log")).ok())
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{q}: {e}\n--- db's log ---\n{}{}\n--- hydrator's log ---\n{hydrate}\n--- ps ---\n{}",
            crate::util::stdout(&logs),
            crate::util::stderr(&logs),
            env.ok(&["ps", "-a"])
        )
    };
    let sql = |q: &str| try_sql(q).unwrap_or_else(|e| explain(q, e));
    let phase = |id: &str| hydration(&env, id)["phase"].as_str().unwrap_or_default().to_string();
    // A statement sent again while the one switch (the service restarted on its plain
    // volume) falls in between, as a client would; any other failure is one.
    let sql_through_switch = |id: &str, q: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match try_sql(q) {
                Ok(out) => return out,
                Err(e) => {
                    let now = phase(id);
                    if !(now == "switching" || now == "done") || Instant::now() > deadline {
                        explain(q, format!("{e} (hydration phase {now})"));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    sql("CREATE DATABASE catalogue; \
         CREATE TABLE catalogue.books (id INT AUTO_INCREMENT PRIMARY KEY, title TEXT) ENGINE=InnoDB; \
         USE catalogue; INSERT INTO books (title) SELECT CONCAT(seq, ':', REPEAT(MD5(seq), 60)) FROM seq_1_to_60000;");
    let summary = "SELECT COUNT(*), SUM(CRC32(title)) FROM catalogue.books";
    let at_snapshot = sql(summary);
    assert!(at_snapshot.starts_with("60000\t"), "{at_snapshot}");
    env.ok(&["snapshot", "db", "--consistency", "mariadb"]);
    env.ok(&["rm", "-f", "db"]);
    env.ok(&["volume", "rm", "dbdata"]);

    let out = env.ok(&["restore", "db", "--instant", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hydrating"], true, "{out}");
    let id = v["container"].as_str().unwrap().to_string();
    // restore returned with the service healthy, served through the overlay.
    assert_eq!(v["healthy"], true, "{out}");
    let answer = sql_through_switch(&id, summary);
    assert_eq!(answer, at_snapshot, "the instantly restored database differs from its snapshot");
    // Explicit ids: a statement sent again after the switch cut its answer adds nothing twice.
    sql_through_switch(&id, "INSERT IGNORE INTO catalogue.books VALUES (60001, 'during the hydration');");
    wait_done(&env, &id, 600);
    wait_until(60, "MariaDB on its plain volume", || ps_line(&env, "db").contains("(healthy)"));
    sql_through_switch(&id, "INSERT IGNORE INTO catalogue.books VALUES (60002, 'after the switch');");
    let rows = sql("SELECT title FROM catalogue.books WHERE id > 60000 ORDER BY id");
    assert_eq!(rows, "during the hydration\nafter the switch");
    let checked = sql("CHECK TABLE catalogue.books");
    assert!(checked.ends_with("status\tOK"), "{checked}");
    let left = mounts_under(&env.root());
    assert!(left.is_empty(), "{left:?}");
    env.ok(&["rm", "-f", "db"]);
}
