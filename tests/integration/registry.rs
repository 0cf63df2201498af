//! Registries: images flow both ways between Lifeboat and Docker, Podman and skopeo through
//! the reference registry (distribution); known blobs are never re-sent; basic-auth login writes
//! credentials Docker and Podman use too; a registry killed mid-push gives a clear error and
//! the next push completes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::util::{Env, assert_same_tree, docker, free_port, have, peers_required, podman, run, stderr, wait_until};

/// The loopback registry the test script started, or None (skip).
fn registry() -> Option<String> {
    match std::env::var("LIFEBOAT_TEST_REGISTRY") {
        Ok(r) => Some(r),
        Err(_) => {
            assert!(!peers_required(), "a registry is required but LIFEBOAT_TEST_REGISTRY is not set");
            eprintln!("skipping: no registry (run scripts/test.sh)");
            None
        }
    }
}

fn unique(name: &str) -> String {
    format!("{name}-{}", lifeboat::fsutil::random_hex(4))
}

/// The site image with a known command and environment.
fn site(env: &Env, name: &str) -> PathBuf {
    let rootfs = env.busybox_rootfs("site");
    env.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        name,
        "--change",
        r#"CMD ["/bin/cat", "/www/index.html"]"#,
        "--change",
        "ENV SITE_NAME=City",
    ]);
    rootfs
}

#[test]
fn images_lifeboat_pushes_are_pulled_and_run_by_docker_podman_and_skopeo() {
    let Some(reg) = registry() else { return };
    let env = Env::new();
    site(&env, "site:1");
    let dest = format!("{reg}/{}/site:1", unique("lb"));
    let out = env.ok(&["push", "site:1", &dest]);
    assert!(out.contains("2 blobs uploaded"), "{out}");
    let lb_config = env.inspect("site:1")["Config"].clone();

    if let Some(mut d) = docker() {
        run(d.args(["pull", "-q", &dest]));
        let page = run(docker().unwrap().args(["run", "--rm", "--network", "none", &dest]));
        assert_eq!(page, "<h1>City Library</h1>\n");
        let env_out =
            run(docker().unwrap().args(["run", "--rm", "--network", "none", &dest, "sh", "-c", "echo $SITE_NAME"]));
        assert_eq!(env_out, "City\n");
        let inspect: serde_json::Value =
            serde_json::from_str(&run(docker().unwrap().args(["image", "inspect", &dest]))).unwrap();
        assert_eq!(inspect[0]["Config"]["Cmd"], lb_config["Cmd"]);
        run(docker().unwrap().args(["rmi", &dest]));
    }
    if let Some(mut p) = podman(&env.path("podman")) {
        run(p.args(["pull", "-q", "--tls-verify=false", &dest]));
        let page = run(podman(&env.path("podman")).unwrap().args(["run", "--rm", &dest]));
        assert_eq!(page, "<h1>City Library</h1>\n");
    }
    if have("skopeo") && have("umoci") {
        // skopeo + umoci unpack exactly what Lifeboat has.
        let layout = env.path("layout");
        run(Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{dest}"))
            .arg(format!("oci:{}:ref", layout.display())));
        let bundle = env.path("bundle");
        run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:ref", layout.display())).arg(&bundle));
        let ours = env.path("ours");
        env.ok(&["image", "unpack", "site:1", ours.to_str().unwrap()]);
        assert_same_tree(&bundle.join("rootfs"), &ours);
    }
}

#[test]
fn images_docker_podman_and_skopeo_push_are_pulled_and_run_by_lifeboat() {
    let Some(reg) = registry() else { return };
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    let tar = env.path("rootfs.tar");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
    let mut pushed = Vec::new();
    if let Some(mut d) = docker() {
        let dest = format!("{reg}/{}/docker:1", unique("peer"));
        run(d
            .args(["import", "--change", "CMD [\"/bin/cat\", \"/www/index.html\"]", "--change", "ENV FROM=docker"])
            .arg(&tar)
            .arg(&dest));
        run(docker().unwrap().args(["push", "-q", &dest]));
        run(docker().unwrap().args(["rmi", &dest]));
        pushed.push((dest, "docker"));
    }
    if let Some(mut p) = podman(&env.path("podman")) {
        let dest = format!("{reg}/{}/podman:1", unique("peer"));
        run(p
            .args([
                "import",
                "-q",
                "--change",
                "CMD [\"/bin/cat\", \"/www/index.html\"]",
                "--change",
                "ENV FROM=podman",
            ])
            .arg(&tar)
            .arg(&dest));
        run(podman(&env.path("podman")).unwrap().args(["push", "-q", "--tls-verify=false", &dest]));
        pushed.push((dest, "podman"));
    }
    if have("skopeo") {
        // skopeo copies an OCI archive Lifeboat did not write: one podman saved, else ours.
        site(&env, "seed:1");
        let archive = env.path("seed.tar");
        env.ok(&["save", "-o", archive.to_str().unwrap(), "seed:1"]);
        let dest = format!("{reg}/{}/skopeo:1", unique("peer"));
        run(Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false", "--format", "v2s2"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{dest}")));
        pushed.push((dest, "skopeo"));
    }
    for (dest, who) in pushed {
        let fresh = Env::new();
        let out = fresh.ok(&["pull", &dest]);
        assert!(out.contains("pulled"), "{out}");
        let page = fresh.ok(&["run", "--rm", &dest]);
        assert_eq!(page, "<h1>City Library</h1>\n", "image pushed by {who}");
        if who != "skopeo" {
            let from = fresh.ok(&["run", "--rm", &dest, "sh", "-c", "echo $FROM"]);
            assert_eq!(from.trim(), who);
        }
        // The same files as the source tree.
        let out_dir = fresh.path("unpacked");
        fresh.ok(&["image", "unpack", &dest, out_dir.to_str().unwrap()]);
        assert_same_tree(&rootfs, &out_dir);
        // Pulled blobs keep their digests: pushing back sends no layer.
        let back = fresh.ok(&["push", &dest]);
        assert!(back.contains("0 blobs uploaded"), "{who}: {back}");
    }
}

/// Upload starts (POST …/blobs/uploads/) for `repo` in a distribution access log.
fn uploads_in_log(log: &Path, repo: &str) -> usize {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("\"POST /v2/") && l.contains(&format!("/v2/{repo}/blobs/uploads/"))).count()
}

#[test]
fn a_second_push_uploads_no_blob() {
    let Some(reg) = registry() else { return };
    let Ok(log) = std::env::var("LIFEBOAT_TEST_REGISTRY_LOG") else { return };
    let env = Env::new();
    site(&env, "site:1");
    let repo = unique("twice");
    let dest = format!("{reg}/{repo}/site:1");
    env.ok(&["push", "site:1", &dest]);
    let first = uploads_in_log(Path::new(&log), &format!("{repo}/site"));
    assert_eq!(first, 2, "the first push uploads the layer and the config");
    let again = env.ok(&["push", "site:1", &dest]);
    assert!(again.contains("0 blobs uploaded") && again.contains("2 already there"), "{again}");
    assert_eq!(uploads_in_log(Path::new(&log), &format!("{repo}/site")), first, "the second push started an upload");
    // Another repository of the same registry: blobs are mounted, not uploaded.
    let other = unique("mounted");
    let out = env.ok(&["push", "site:1", &format!("{reg}/{other}/site:1")]);
    assert!(out.contains("2 mounted"), "{out}");
    assert_eq!(uploads_in_log(Path::new(&log), &format!("{other}/site")), 2, "mount requests only (POST …?mount=)");
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.lines().filter(|l| l.contains(&format!("/v2/{other}/site/blobs/uploads/?mount="))).count() >= 2);
    assert!(!text.lines().any(|l| l.contains("\"PATCH") && l.contains(&other)), "no data sent to {other}");
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(dir: &Path, port: u16, htpasswd: Option<&Path>) -> Server {
    fs::create_dir_all(dir.join("data")).unwrap();
    let auth =
        htpasswd.map(|h| format!("auth: {{htpasswd: {{realm: test, path: {}}}}}\n", h.display())).unwrap_or_default();
    fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n{auth}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("log")).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    wait_until(10, "the registry", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    Server { child }
}

#[test]
fn a_registry_killed_mid_push_gives_a_clear_error_and_the_next_push_completes() {
    if registry().is_none() || !have("docker-registry") {
        return;
    }
    let env = Env::new();
    // 96 MiB of incompressible data: three chunked PATCHes of 32 MiB.
    let rootfs = env.busybox_rootfs("big");
    run(Command::new("head")
        .args(["-c", "100663296", "/dev/urandom"])
        .stdout(fs::File::create(rootfs.join("srv/data/blob")).unwrap()));
    env.ok(&["import", rootfs.to_str().unwrap(), "big:1", "--compression", "none"]);
    let port = free_port();
    let dir = env.path("registry");
    let server = start_registry(&dir, port, None);
    let dest = format!("127.0.0.1:{port}/big/site:1");

    let push =
        env.lifeboat().args(["push", "big:1", &dest]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until(60, "the first chunk to arrive", || {
        fs::read_to_string(dir.join("log")).unwrap_or_default().contains("\"PATCH /v2/big/site/blobs/uploads/")
    });
    drop(server);
    let out = push.wait_with_output().unwrap();
    assert!(!out.status.success(), "push succeeded with the registry gone");
    let err = stderr(&out);
    assert!(err.contains(&format!("registry 127.0.0.1:{port} cannot be reached")), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let _server = start_registry(&dir, port, None);
    let out = env.ok(&["push", "big:1", &dest]);
    assert!(out.contains(&format!("127.0.0.1:{port}/big/site:1: digest")), "{out}");
    let fresh = Env::new();
    fresh.ok(&["pull", &dest]);
    let a = fresh.path("a");
    let b = env.path("b");
    fresh.ok(&["image", "unpack", &dest, a.to_str().unwrap()]);
    env.ok(&["image", "unpack", "big:1", b.to_str().unwrap()]);
    assert_same_tree(&b, &a);
}

#[test]
fn login_stores_credentials_docker_and_podman_use_and_logout_removes_them() {
    let Ok(reg) = std::env::var("LIFEBOAT_TEST_AUTH_REGISTRY") else {
        assert!(!peers_required(), "LIFEBOAT_TEST_AUTH_REGISTRY is required");
        return;
    };
    let password = fs::read_to_string(std::env::var("LIFEBOAT_TEST_AUTH_REGISTRY_PASSWORD_FILE").unwrap()).unwrap();
    let env = Env::new();
    site(&env, "site:1");
    let docker_dir = env.path("docker-config");
    let podman_auth = env.path("podman/auth.json");
    let lb = |args: &[&str], stdin: &str| {
        let mut c = env.lifeboat();
        c.args(args)
            .env("DOCKER_CONFIG", &docker_dir)
            .env("REGISTRY_AUTH_FILE", &podman_auth)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let dest = format!("{reg}/{}/site:1", unique("auth"));

    let anon = lb(&["push", "site:1", &dest], "");
    assert!(!anon.status.success());
    assert!(stderr(&anon).contains("access denied: log in first"), "{}", stderr(&anon));
    let wrong = lb(&["login", "-u", "lifeboat", "--password-stdin", &reg], "wrong\n");
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("access denied"), "{}", stderr(&wrong));
    assert!(!docker_dir.join("config.json").exists(), "a failed login stored credentials");

    let ok = lb(&["login", "-u", "lifeboat", "--password-stdin", &reg], &password);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let config = fs::read_to_string(docker_dir.join("config.json")).unwrap();
    assert!(config.contains(&reg) && !config.contains(password.trim()), "stored base64, never plain: {config}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(docker_dir.join("config.json")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(podman_auth.exists());

    let pushed = lb(&["push", "site:1", &dest], "");
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    if let Some(mut d) = docker() {
        // Docker reads the credentials Lifeboat stored.
        run(d.arg("--config").arg(&docker_dir).args(["pull", "-q", &dest]));
        run(docker().unwrap().args(["rmi", &dest]));
    }
    if let Some(mut p) = podman(&env.path("podman-store")) {
        run(p.env("REGISTRY_AUTH_FILE", &podman_auth).args(["pull", "-q", "--tls-verify=false", &dest]));
    }
    let out = lb(&["logout", &reg], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removed"));
    let after = lb(&["pull", &dest], "");
    assert!(!after.status.success());
    assert!(stderr(&after).contains("access denied"), "{}", stderr(&after));
}

#[test]
fn a_snapshot_pushed_to_the_registry_runs_in_docker_and_restores_with_lifeboat() {
    let Some(reg) = registry() else { return };
    let env = Env::new();
    env.site_image("site:1");
    let port = free_port();
    env.ok(&["run", "-d", "--name", "website", "-p", &format!("127.0.0.1:{port}:80"), "-v", "content:/www", "site:1"]);
    env.ok(&["exec", "website", "sh", "-c", "echo '<p>in the volume</p>' >> /www/index.html; echo layer > /etc/motd"]);
    wait_until(10, "the site", || crate::util::http_get(port, "/").is_ok_and(|p| p.contains("in the volume")));
    let page = crate::util::http_get(port, "/").unwrap();
    let repo = unique("snap");
    let out = env.ok(&["snapshot", "website", "--to", &format!("registry://{reg}/{repo}/website")]);
    let pushed = out.lines().find_map(|l| l.strip_prefix("pushed ")).and_then(|l| l.split_whitespace().next()).unwrap();
    assert!(pushed.starts_with(&format!("{reg}/{repo}/website:snap-")), "{out}");

    if let Some(mut d) = docker() {
        // Docker serves the same page from the image alone (host network, another port).
        run(d.args(["pull", "-q", pushed]));
        let dport = free_port();
        let name = unique("lbsnap");
        run(docker().unwrap().args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            pushed,
            "/bin/httpd",
            "-f",
            "-p",
            &dport.to_string(),
            "-h",
            "/www",
        ]));
        wait_until(10, "docker's copy", || crate::util::http_get(dport, "/").is_ok_and(|p| p == page));
        let motd = run(docker().unwrap().args(["exec", &name, "cat", "/etc/motd"]));
        assert_eq!(motd, "layer\n");
        run(docker().unwrap().args(["rm", "-f", &name]));
        run(docker().unwrap().args(["rmi", pushed]));
    }

    // Lifeboat on an empty host, from the registry alone.
    env.ok(&["rm", "-f", "website"]);
    let fresh = Env::new();
    let out = fresh.ok(&["restore", "website", "--from", &format!("registry://{pushed}")]);
    assert!(out.contains("restored website"), "{out}");
    wait_until(10, "the restored site", || crate::util::http_get(port, "/").is_ok_and(|p| p == page));
    let vols = fresh.ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.trim(), "content");
    let again = fresh.fails(&["restore", "website", "--from", &format!("registry://{pushed}")], 5);
    assert!(again.contains("already exists"), "{again}");
    let wrong = fresh.fails(&["restore", "catalogue", "--from", &format!("registry://{pushed}")], 2);
    assert!(wrong.contains("is a snapshot of website"), "{wrong}");
}

#[test]
fn an_image_index_is_resolved_for_the_platform_asked() {
    let Some(reg) = registry() else { return };
    if !have("curl") {
        return;
    }
    let env = Env::new();
    site(&env, "site:1");
    let repo = unique("index");
    env.ok(&["push", "-q", "site:1", &format!("{reg}/{repo}/site:1")]);
    let manifest = run(Command::new("curl").args([
        "-sf",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{reg}/v2/{repo}/site/manifests/1"),
    ]));
    let digest = format!("sha256:{}", lifeboat::image::Digest::of(manifest.as_bytes()).hex());
    let entry = |arch: &str| {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
            "size": manifest.len(), "platform": {"architecture": arch, "os": "linux"}})
    };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("arm64"), entry("amd64")]});
    run(Command::new("curl").args([
        "-sf",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.index.v1+json",
        "--data-binary",
        &index.to_string(),
        &format!("http://{reg}/v2/{repo}/site/manifests/multi"),
    ]));
    let fresh = Env::new();
    let multi = format!("{reg}/{repo}/site:multi");
    fresh.ok(&["pull", "--platform", "linux/arm64", &multi]);
    fresh.ok(&["pull", &multi]);
    assert_eq!(fresh.ok(&["run", "--rm", &multi]), "<h1>City Library</h1>\n");
    let err = fresh.fails(&["pull", "--platform", "linux/s390x", &multi], 3);
    assert!(
        err.contains("no image for linux/s390x") && err.contains("linux/arm64") && err.contains("linux/amd64"),
        "{err}"
    );
}
