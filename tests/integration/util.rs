//! Test helpers: a private Lifeboat root per test, the real binary, peers (skopeo, umoci,
//! podman, docker) and tree comparisons.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// A scratch area for one test: a Lifeboat root and room for fixtures, removed at the end.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    /// Containers left running by a failed test are killed and removed.
    fn drop(&mut self) {
        if self.root().join("containers").is_dir() {
            let ids = self.lifeboat().args(["ps", "-aq"]).output().map(|o| stdout(&o)).unwrap_or_default();
            for id in ids.lines() {
                let _ = self.lifeboat().args(["rm", "-f", id]).output();
            }
        }
        // What a failed test left mounted here (an instant restore's FUSE and overlay mounts
        // whose hydrator died) goes too: a dead mount on the host breaks others' tests.
        let base = self.dir.path().display().to_string();
        let table = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut left: Vec<&str> =
            table.lines().filter_map(|l| l.split_whitespace().nth(4)).filter(|m| m.starts_with(&base)).collect();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Env {
    pub fn new() -> Env {
        let base = std::env::var_os("LIFEBOAT_TEST_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        fs::create_dir_all(&base).unwrap();
        Env { dir: tempfile::Builder::new().prefix("lifeboat-test-").tempdir_in(base).unwrap() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn root(&self) -> PathBuf {
        self.path("root")
    }

    /// `lifeboat --root <this env's root> ARGS`.
    pub fn lifeboat(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.root()).arg("--run-root").arg(self.path("run"));
        c.stdin(Stdio::null());
        // Cheap key derivation for test repositories (recorded in their key files).
        c.env("LIFEBOAT_KDF", "1024,1,1");
        // An empty configuration of the test's own: a host's /etc/lifeboat/lifeboat.toml
        // must never decide where a test's snapshots go (a test's --config still wins).
        let config = self.path("empty-config.toml");
        if !config.exists() {
            std::fs::write(&config, "").unwrap();
        }
        c.env("LIFEBOAT_CONFIG", config);
        c
    }

    /// Runs lifeboat and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.lifeboat().args(args).output().unwrap();
        assert!(out.status.success(), "lifeboat {args:?} failed ({}):\n{}", out.status, stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs lifeboat and asserts failure with `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.lifeboat().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "lifeboat {args:?}: expected exit {code}, got {}:\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stderr(&out)
    }

    /// A busybox root filesystem with a small web site, at `<env>/<name>`.
    pub fn busybox_rootfs(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        make_busybox_rootfs(&dir);
        dir
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command and asserts success; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}{}", out.status, stdout(&out), stderr(&out));
    stdout(&out)
}

pub fn busybox_path() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("busybox-static is not installed (apt-get install busybox-static; the test script does this)");
}

pub fn make_busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "tmp", "www", "srv/data"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let bb = dir.join("bin/busybox");
    fs::copy(busybox_path(), &bb).unwrap();
    // The system copy answers --list: executing the fresh copy could race with a fork in a
    // parallel test that inherited its write descriptor (ETXTBSY).
    let list = run(Command::new(busybox_path()).arg("--list"));
    for applet in list.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    fs::write(dir.join("www/index.html"), "<h1>City Library</h1>\n").unwrap();
    fs::write(dir.join("srv/data/books.db"), vec![7u8; 100_000]).unwrap();
}

/// Whether the peers must be present (set by the test script and CI): then a missing peer
/// fails the test instead of skipping it.
pub fn peers_required() -> bool {
    std::env::var_os("LIFEBOAT_TEST_REQUIRE_PEERS").is_some_and(|v| v == "1")
}

/// `true` if `tool` is on PATH; otherwise skips (or fails, when peers are required).
pub fn have(tool: &str) -> bool {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(!peers_required(), "{tool} is required (LIFEBOAT_TEST_REQUIRE_PEERS=1) but not installed");
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// The Docker engine started by the test script (DOCKER_HOST), if any.
pub fn docker() -> Option<Command> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        std::env::var_os("DOCKER_HOST").is_some()
            && Command::new("docker")
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    });
    if !ok {
        assert!(!peers_required(), "a Docker engine is required (DOCKER_HOST) but none answers");
        eprintln!("skipping: no Docker engine (set DOCKER_HOST)");
        return None;
    }
    let mut c = Command::new("docker");
    c.env("DOCKER_API_VERSION", "1.41");
    Some(c)
}

/// Podman with private storage and configuration under `dir`.
pub fn podman(dir: &Path) -> Option<Command> {
    if !have("podman") {
        return None;
    }
    let conf = dir.join("containers.conf");
    if !conf.exists() {
        fs::create_dir_all(dir.join("tmp")).unwrap();
        fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits=[\"nofile=1024:1024\",\"nproc=4096:4096\"]\nnetns=\"none\"\n[engine]\nruntime=\"runc\"\ntmp_dir=\"{}\"\n",
                dir.join("tmp").display()
            ),
        )
        .unwrap();
        fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver=\"overlay\"\ngraphroot=\"{}\"\nrunroot=\"{}\"\n",
                dir.join("root").display(),
                dir.join("run").display()
            ),
        )
        .unwrap();
    }
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", &conf).env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"));
    Some(c)
}

/// One file's identity in a tree comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content digest for files, target for symlinks, major:minor for devices.
    pub content: String,
    /// The first path (in sorted order) sharing this inode, for hard links.
    pub link_group: Option<String>,
}

/// Every path under `root` with type, mode, owner, content and hard-link grouping.
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    for paths in inodes.values().filter(|p| p.len() > 1) {
        let first = paths.iter().min().unwrap().clone();
        for p in paths {
            out.get_mut(p).unwrap().link_group = Some(first.clone());
        }
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>, inodes: &mut BTreeMap<(u64, u64), Vec<String>>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let ft = m.file_type();
        let (kind, content) = if ft.is_dir() {
            ("dir", String::new())
        } else if ft.is_symlink() {
            ("symlink", fs::read_link(&p).unwrap().to_string_lossy().into_owned())
        } else if ft.is_file() {
            let mut h = Sha256::new();
            let mut f = fs::File::open(&p).unwrap();
            let mut buf = vec![0; 1 << 16];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            if m.nlink() > 1 {
                inodes.entry((m.dev(), m.ino())).or_default().push(rel.clone());
            }
            ("file", hex::encode(h.finalize()))
        } else if ft.is_char_device() {
            ("char", format!("{}:{}", rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())))
        } else if ft.is_block_device() {
            ("block", format!("{}:{}", rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())))
        } else if ft.is_fifo() {
            ("fifo", String::new())
        } else {
            ("other", String::new())
        };
        out.insert(rel, Node { kind, mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid(), content, link_group: None });
        if ft.is_dir() {
            walk(root, &p, out, inodes);
        }
    }
}

/// Asserts two trees are identical, listing the differences.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let mut diffs = Vec::new();
    for (k, v) in &ta {
        match tb.get(k) {
            None => diffs.push(format!("only in {}: {k}", a.display())),
            Some(w) if w != v => diffs.push(format!("differs: {k}: {v:?} vs {w:?}")),
            _ => {}
        }
    }
    for k in tb.keys().filter(|k| !ta.contains_key(*k)) {
        diffs.push(format!("only in {}: {k}", b.display()));
    }
    assert!(diffs.is_empty(), "trees differ ({} vs {}):\n{}", a.display(), b.display(), diffs.join("\n"));
}

/// Polls `f` every 50 ms for up to `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A TCP port on loopback that nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP GET on loopback; returns the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

impl Env {
    /// A busybox image named `name` whose default command serves /www over HTTP on port 80.
    pub fn site_image(&self, name: &str) -> PathBuf {
        let rootfs = self.busybox_rootfs(&format!("rootfs-{}", name.replace([':', '/'], "-")));
        self.ok(&[
            "import",
            rootfs.to_str().unwrap(),
            name,
            "--change",
            r#"CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]"#,
            "--change",
            "EXPOSE 80",
        ]);
        rootfs
    }

    /// `inspect` of one object as JSON.
    pub fn inspect(&self, what: &str) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", what])).unwrap();
        v[0].clone()
    }
}

/// `s3://lifeboat-test/<unique prefix>?endpoint=…&path-style=true&credentials-file=…` for a
/// server the test script started, or None (skip) when not running under it.
pub fn s3_location(server: &str) -> Option<String> {
    let (endpoint, creds) = match server {
        "s3s" => (std::env::var("LIFEBOAT_TEST_S3S").ok(), std::env::var("LIFEBOAT_TEST_S3S_CREDENTIALS").ok()),
        _ => (std::env::var("LIFEBOAT_TEST_MOTO").ok(), std::env::var("LIFEBOAT_TEST_MOTO_CREDENTIALS").ok()),
    };
    match (endpoint, creds) {
        (Some(e), Some(c)) => Some(format!(
            "s3://lifeboat-test/{}?endpoint={e}&path-style=true&region=us-east-1&credentials-file={c}",
            lifeboat::fsutil::random_hex(8)
        )),
        _ => {
            assert!(
                !peers_required(),
                "S3 server {server} is required but LIFEBOAT_TEST_{} is not set",
                server.to_uppercase()
            );
            eprintln!("skipping: no {server} server (run scripts/test.sh)");
            None
        }
    }
}

impl Env {
    /// Loads `lifeboat-test/NAME:1`, one of the real services' images tests/images/build.sh
    /// made (MariaDB with PHP and WordPress: `lamp`; PostgreSQL: `postgres`); None (skip)
    /// when the test script did not build them.
    pub fn service_image(&self, name: &str) -> Option<String> {
        let Some(dir) = std::env::var_os("LIFEBOAT_TEST_IMAGES") else {
            assert!(!peers_required(), "LIFEBOAT_TEST_IMAGES is required (run scripts/test.sh)");
            eprintln!("skipping: no service images (run scripts/test.sh)");
            return None;
        };
        let archive = std::path::Path::new(&dir).join(format!("{name}.tar"));
        self.ok(&["load", "-i", archive.to_str().unwrap()]);
        Some(format!("lifeboat-test/{name}:1"))
    }
}
