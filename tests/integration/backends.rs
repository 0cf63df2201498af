//! One behaviour for every backend: the same suite runs against a local directory and two
//! independent S3 implementations (s3s-fs and moto with authentication on), and a service
//! snapshotted to S3 comes back on an empty host from S3 alone.

use std::fs;

use lifeboat::backend::{self, Backend, BackendError, Kind};

use crate::util::{Env, free_port, http_get, s3_location, wait_until};

fn suite(b: &dyn Backend) {
    let where_ = b.location();
    assert!(b.list(Kind::Snapshot).unwrap().is_empty(), "{where_}");
    assert_eq!(b.stat(Kind::Config, "config").unwrap(), None);
    b.write(Kind::Snapshot, "abc123", b"hello").unwrap();
    assert!(matches!(b.write(Kind::Snapshot, "abc123", b"again"), Err(BackendError::Exists { .. })), "{where_}");
    assert_eq!(b.read(Kind::Snapshot, "abc123").unwrap(), b"hello");
    assert_eq!(b.read_range(Kind::Snapshot, "abc123", 1, 3).unwrap(), b"ell");
    assert_eq!(b.stat(Kind::Snapshot, "abc123").unwrap(), Some(5));
    assert_eq!(b.stat(Kind::Snapshot, "nope").unwrap(), None);
    assert!(b.read(Kind::Snapshot, "nope").unwrap_err().is_not_found(), "{where_}");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    b.write(Kind::Pack, "ffee00aa", &big).unwrap();
    assert_eq!(b.read(Kind::Pack, "ffee00aa").unwrap(), big);
    assert_eq!(b.read_range(Kind::Pack, "ffee00aa", 2_999_990, 10).unwrap(), &big[2_999_990..]);
    assert_eq!(b.list(Kind::Pack).unwrap(), vec!["ffee00aa"]);
    assert_eq!(b.list(Kind::Snapshot).unwrap(), vec!["abc123"]);
    // Kinds do not see each other.
    assert!(b.list(Kind::Index).unwrap().is_empty());
    b.delete(Kind::Snapshot, "abc123").unwrap();
    b.delete(Kind::Snapshot, "abc123").unwrap();
    assert!(b.list(Kind::Snapshot).unwrap().is_empty());
    b.write(Kind::Config, "config", b"c").unwrap();
    assert_eq!(b.list(Kind::Config).unwrap(), vec!["config"]);
    assert_eq!(b.read(Kind::Config, "config").unwrap(), b"c");
}

#[test]
fn local_backend_passes_the_suite() {
    let env = Env::new();
    suite(backend::open(env.path("repo").to_str().unwrap()).unwrap().as_ref());
}

#[test]
fn s3s_fs_passes_the_suite() {
    let Some(loc) = s3_location("s3s") else { return };
    suite(backend::open(&loc).unwrap().as_ref());
}

#[test]
fn moto_passes_the_suite() {
    let Some(loc) = s3_location("moto") else { return };
    suite(backend::open(&loc).unwrap().as_ref());
}

#[test]
fn wrong_s3_credentials_fail_clearly() {
    let env = Env::new();
    for server in ["s3s", "moto"] {
        let Some(loc) = s3_location(server) else { return };
        let bad = env.path(&format!("{server}-bad.credentials"));
        fs::write(&bad, "[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n").unwrap();
        let creds = loc.split("credentials-file=").nth(1).unwrap().to_string();
        let loc = loc.replace(&creds, bad.to_str().unwrap());
        let err = backend::open(&loc).unwrap().list(Kind::Snapshot).unwrap_err().to_string();
        assert!(err.contains("credentials") || err.contains("Access") || err.contains("Signature"), "{server}: {err}");
    }
}

#[test]
fn snapshot_to_s3_and_restore_on_an_empty_root_from_s3_alone() {
    for server in ["s3s", "moto"] {
        let Some(loc) = s3_location(server) else { return };
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
        env.ok(&["exec", "website", "sh", "-c", &format!("echo '<p>{server}</p>' >> /www/index.html")]);
        wait_until(10, "site up", || http_get(port, "/").is_ok_and(|b| b.contains(server)));
        let page = http_get(port, "/").unwrap();
        let pw = env.path("pw");
        fs::write(&pw, "s3 password").unwrap();
        let pw = pw.to_str().unwrap();
        env.ok(&["repo", "init", "--repo", &loc, "--password-file", pw]);
        env.ok(&["snapshot", "website", "--repo", &loc, "--password-file", pw]);
        env.ok(&["exec", "website", "sh", "-c", "echo more >> /www/index.html"]);
        env.ok(&["snapshot", "website", "--repo", &loc, "--password-file", pw]);
        let page2 = http_get(port, "/").unwrap();
        assert_ne!(page, page2);
        env.ok(&["rm", "-f", "website"]);
        let report = env.ok(&["check", "--read-data", "--repo", &loc, "--password-file", pw]);
        assert!(report.contains("no errors"), "{server}: {report}");
        let host = Env::new();
        let out = host.ok(&["restore", "website", "--repo", &loc, "--password-file", pw]);
        assert!(out.contains("restored website"), "{server}: {out}");
        wait_until(10, "site back from S3", || http_get(port, "/").is_ok_and(|b| b == page2));
        host.ok(&["rm", "-f", "website"]);
    }
}

/// A private s3s-fs server, so killing it does not disturb other tests.
struct PrivateS3 {
    child: Option<std::process::Child>,
    port: u16,
    data: std::path::PathBuf,
}

impl PrivateS3 {
    fn start(env: &Env, port: u16) -> PrivateS3 {
        let data = env.path("s3-data");
        fs::create_dir_all(data.join("lifeboat-test")).unwrap();
        let mut s = PrivateS3 { child: None, port, data };
        s.restart();
        s
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--access-key", "ak", "--secret-key", "sk"])
            .arg(&self.data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("s3s-fs (installed by scripts/peers.sh)");
        self.child = Some(child);
        let port = self.port;
        wait_until(20, "s3s-fs listening", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn s3_server_killed_mid_upload_gives_a_clear_error_and_the_next_snapshot_succeeds() {
    if s3_location("s3s").is_none() || !crate::util::have("s3s-fs") {
        return;
    }
    let env = Env::new();
    let port = free_port();
    let mut server = PrivateS3::start(&env, port);
    let creds = env.path("creds");
    fs::write(&creds, "[default]\naws_access_key_id = ak\naws_secret_access_key = sk\n").unwrap();
    let loc = format!(
        "s3://lifeboat-test/repo?endpoint=http://127.0.0.1:{port}&path-style=true&region=us-east-1&credentials-file={}",
        creds.display()
    );
    let pw = env.path("pw");
    fs::write(&pw, "pw").unwrap();
    let pw = pw.to_str().unwrap();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "website", "-v", "content:/www", "site:1"]);
    env.ok(&["repo", "init", "--repo", &loc, "--password-file", pw]);
    env.ok(&["snapshot", "website", "--repo", &loc, "--password-file", pw]);

    // Enough new data for several pack uploads, then the server dies during the snapshot.
    env.ok(&["exec", "website", "sh", "-c", "head -c 100000000 /dev/urandom > /www/big.bin"]);
    let child = env
        .lifeboat()
        .args(["snapshot", "website", "--repo", &loc, "--password-file", pw])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server as soon as the first new pack has arrived: later packs are still to come.
    let packs = || count_files(&env.path("s3-data/lifeboat-test/repo/data"));
    let before = packs();
    wait_until(60, "the first pack upload", || packs() > before);
    server.kill();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the snapshot succeeded although the server died");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("S3 server") || err.contains("timed out") || err.contains("dispatch"), "unclear error: {err}");
    assert!(!env.ok(&["ps"]).contains("Paused"), "the service was left frozen");

    server.restart();
    let out = env.ok(&["snapshot", "website", "--repo", &loc, "--password-file", pw]);
    assert!(out.contains("saved"), "{out}");
    let report = env.ok(&["check", "--read-data", "--repo", &loc, "--password-file", pw]);
    assert!(report.contains("no errors"), "{report}");
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--repo", &loc, "--password-file", pw, "--format", "json"]))
            .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    env.ok(&["rm", "-f", "website"]);
    env.ok(&["volume", "rm", "content"]);
    env.ok(&["restore", "website", "--no-start", "--repo", &loc, "--password-file", pw]);
    assert_eq!(fs::metadata(env.root().join("volumes/content/_data/big.bin")).unwrap().len(), 100_000_000);
}

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()).map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}
