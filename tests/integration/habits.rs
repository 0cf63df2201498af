//! Docker's everyday forms typed as a Docker user types them — `run -l`, `wait`, `ps --filter`,
//! `ps --format`, `inspect -f`, `rename`, `container ls`, `logs --follow=false`, relative bind
//! mounts — each answered as Docker answers the same lines for the same containers (the
//! private dockerd of the suite runs them beside).

use std::process::Command;

use crate::util::{Env, docker, run};

/// The same steps for Lifeboat and for Docker: what each printed, step by step.
fn session(cli: &dyn Fn(&[&str]) -> (i32, String), image: &str) -> Vec<(String, i32, String)> {
    let mut seen = Vec::new();
    let mut step = |args: &[&str]| {
        let (code, out) = cli(args);
        seen.push((args.join(" "), code, out));
    };
    step(&["run", "-d", "--name", "web", "-l", "app=catalogue", "-l", "tier=front", image, "sleep", "600"]);
    step(&["run", "-d", "--name", "job", "-l", "app=catalogue", image, "sh", "-c", "exit 3"]);
    step(&["wait", "job"]);
    step(&["ps", "--filter", "label=app=catalogue", "--format", "{{.Names}}"]);
    step(&["ps", "-a", "--filter", "label=app=catalogue", "--format", "{{.Names}} {{.State}}"]);
    step(&["ps", "--filter", "status=exited", "--filter", "label=app=catalogue", "--format", "{{.Names}}"]);
    step(&["ps", "-a", "--filter", "exited=3", "--filter", "label=app", "--format", "{{.Names}}"]);
    step(&["ps", "-a", "--filter", "label=tier=front", "--format", "{{.Names}}"]);
    step(&["ps", "-a", "--filter", "name=we", "--filter", "name=jo", "--format", "{{.Names}}"]);
    step(&["ps", "-a", "--filter", &format!("ancestor={image}"), "--format", "{{.Names}}"]);
    step(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{index .Config.Labels \"app\"}}", "job"]);
    step(&["inspect", "-f", "{{json .Config.Labels}}", "web"]);
    step(&["inspect", "-f", "{{if .State.Running}}up{{else}}down{{end}}", "web", "job"]);
    step(&["rename", "web", "website"]);
    step(&["container", "ls", "--filter", "label=app", "--format", "{{.Names}}"]);
    step(&["inspect", "-f", "{{.Name}}", "website"]);
    step(&["logs", "--follow=false", "job"]);
    step(&["ps", "-a", "--filter", "name=^website$", "--filter", "label=app", "--format", "{{.Names}}"]);
    step(&["ps", "-a", "--filter", "name=^web$", "--filter", "label=app", "--format", "{{.Names}}"]);
    step(&["inspect", "-f", "{{.Config.Labels.tier}}/{{.Config.Labels.missing}}", "website"]);
    seen
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut l: Vec<&str> = s.lines().collect();
    l.sort();
    l
}

#[test]
fn docker_forms_answer_as_docker_does() {
    let env = Env::new();
    env.site_image("site:1");
    let lifeboat = |args: &[&str]| {
        let o = env.lifeboat().args(args).output().unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let ours = session(&lifeboat, "site:1");
    let step = |i: usize| &ours[i];
    for (cmd, code, out) in &ours {
        assert_eq!(*code, 0, "{cmd}: exited {code}: {out}");
    }
    assert_eq!(step(2).2.trim(), "3", "wait prints the exit code");
    assert_eq!(step(3).2.trim(), "web", "without -a, only what runs");
    assert_eq!(sorted_lines(&step(4).2), ["job exited", "web running"]);
    assert_eq!(step(5).2.trim(), "job", "a status filter looks at stopped containers too");
    assert_eq!(step(6).2.trim(), "job");
    assert_eq!(step(7).2.trim(), "web");
    assert_eq!(sorted_lines(&step(8).2), ["job", "web"], "the same key twice is either");
    assert_eq!(sorted_lines(&step(9).2), ["job", "web"]);
    assert_eq!(step(10).2.trim(), "exited 3 catalogue");
    assert_eq!(step(11).2.trim(), r#"{"app":"catalogue","tier":"front"}"#);
    assert_eq!(step(12).2, "up\ndown\n");
    assert_eq!(step(14).2.trim(), "website", "renamed, still running");
    assert_eq!(step(15).2.trim(), "/website");
    assert_eq!(step(17).2.trim(), "website", "anchored names, as scripts check for one");
    assert_eq!(step(18).2.trim(), "", "^web$ is not website");
    assert_eq!(step(19).2.trim(), "front/<no value>", "a missing label is Go's <no value>");

    // Mistakes are named, with the usage code, and leave nothing behind.
    let bad = env.fails(&["ps", "--filter", "colour=red"], 2);
    assert!(bad.contains("colour") && bad.contains("label"), "{bad}");
    let bad = env.fails(&["ps", "--format", "{{.Nmes}}"], 2);
    assert!(bad.contains("Nmes") && bad.contains("Names"), "{bad}");
    let bad = env.fails(&["ps", "--format", "{{printf \"%s\" .Names}}"], 2);
    assert!(bad.contains("printf"), "{bad}");
    let taken = env.fails(&["rename", "website", "job"], 5);
    assert!(taken.contains("already in use"), "{taken}");
    env.fails(&["wait", "nosuch"], 3);

    // wait: a container a restart policy brings back has exited at its first exit; one
    // removed while waited on is an error, not a wait for ever.
    env.ok(&["run", "-d", "--name", "flappy", "--restart", "on-failure:2", "site:1", "sh", "-c", "sleep 1; exit 4"]);
    assert_eq!(env.ok(&["wait", "flappy"]).trim(), "4");
    env.ok(&["rm", "-f", "flappy"]);
    // A container removed at its end (run --rm) still answers wait with its code, as Docker's.
    env.ok(&["run", "-d", "--rm", "--name", "brief", "site:1", "sh", "-c", "sleep 1; exit 7"]);
    assert_eq!(env.ok(&["wait", "brief"]).trim(), "7");
    env.fails(&["inspect", "brief"], 3);
    env.ok(&["run", "-d", "--name", "doomed", "site:1", "sleep", "600"]);
    let mut rm = env.lifeboat();
    rm.args(["rm", "-f", "doomed"]);
    let remover = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        rm.output().unwrap()
    });
    let waited = env.lifeboat().args(["wait", "doomed"]).output().unwrap();
    assert!(remover.join().unwrap().status.success());
    // Either its exit was seen (killed: 137, as Docker says) or it was gone first.
    let said = String::from_utf8_lossy(&waited.stdout).trim().to_string();
    match waited.status.code() {
        Some(0) => assert_eq!(said, "137", "{waited:?}"),
        Some(3) => assert!(String::from_utf8_lossy(&waited.stderr).contains("removed"), "{waited:?}"),
        _ => panic!("{waited:?}"),
    }

    // ancestor= takes the image by any spelling: site, site:1, docker.io/library/site:1.
    env.ok(&["run", "-d", "--name", "anc", "-l", "anc=1", "site:1", "sleep", "600"]);
    for spelling in ["site", "site:1", "docker.io/library/site:1"] {
        let f = format!("ancestor={spelling}");
        let found = env.ok(&["ps", "--filter", &f, "--filter", "label=anc", "--format", "{{.Names}}"]);
        assert_eq!(found.trim(), "anc", "{f}");
    }
    let none = env.ok(&["ps", "--filter", "ancestor=site:2", "--filter", "label=anc", "--format", "{{.Names}}"]);
    assert_eq!(none.trim(), "");
    env.ok(&["rm", "-f", "anc"]);
    // A table template whose text holds more tabs than its header: aligned, no crash.
    let t = env.ok(&["ps", "-a", "--format", "table {{.Names}}{{if .ID}}\t{{.ID}}\t{{.Image}}{{end}}"]);
    assert!(t.lines().nth(1).is_some_and(|l| l.contains("site:1")), "{t}");

    // Labels as ps lists them (Docker's own order is its map's: not compared).
    let labels = env.ok(&["ps", "--format", "{{.Labels}}"]);
    assert_eq!(labels.trim(), "app=catalogue,tier=front");

    // A table template: Docker's column names, aligned.
    let table = env.ok(&["ps", "--format", "table {{.ID}}\t{{.Names}}\t{{.RunningFor}}"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("CONTAINER ID") && header.contains("NAMES") && header.contains("CREATED"), "{table}");

    // images and volume ls take templates too.
    assert!(env.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines().any(|l| l == "site:1"));
    // .Size as Docker prints it: "1.2MB", not a count of bytes.
    let sizes = env.ok(&["images", "--format", "{{.Size}}", "site"]);
    let size = sizes.trim();
    let unit = size.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    assert!(size.len() > unit.len() && ["B", "kB", "MB", "GB"].contains(&unit), "{sizes:?}");
    env.ok(&["volume", "create", "habitvol"]);
    let vols = env.ok(&["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(vols.lines().any(|l| l == "habitvol local"), "{vols}");
    env.ok(&["volume", "rm", "habitvol"]);

    // A relative bind mount is taken from the current directory.
    let here = env.path("project");
    std::fs::create_dir_all(here.join("site")).unwrap();
    std::fs::write(here.join("site/index.html"), "relative\n").unwrap();
    let o = env
        .lifeboat()
        .current_dir(&here)
        .args(["run", "--rm", "-v", "./site:/x:ro", "site:1", "cat", "/x/index.html"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "relative\n", "{}", String::from_utf8_lossy(&o.stderr));

    // A container that joins the renamed one's network follows it.
    env.ok(&["run", "-d", "--name", "side", "--network", "container:website", "site:1", "sleep", "600"]);
    env.ok(&["rename", "website", "web2"]);
    assert_eq!(env.ok(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "side"]).trim(), "container:web2");
    env.ok(&["restart", "side"]);
    env.ok(&["rm", "-f", "web2", "job", "side"]);

    // Docker, the same lines: the same answers.
    let Some(_) = docker() else { return };
    let rootfs = env.busybox_rootfs("docker-rootfs");
    let tar = env.path("rootfs.tar");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
    let image = format!("lifeboat-habits-{}:1", std::process::id());
    run(docker().unwrap().arg("import").arg(&tar).arg(&image));
    let prefix = format!("lbh{}", std::process::id());
    // Docker's names are global to the engine: each name gets this run's prefix, taken off
    // again before comparing.
    let dock = |args: &[&str]| {
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "web" | "job" | "website" => format!("{prefix}{a}"),
                other => other
                    .replace("name=we", &format!("name={prefix}we"))
                    .replace("name=jo", &format!("name={prefix}jo"))
                    .replace("name=^web", &format!("name=^{prefix}web")),
            })
            .collect();
        let o = docker().unwrap().args(&args).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).replace(&prefix, "");
        (o.status.code().unwrap_or(-1), out)
    };
    let theirs = session(&dock, &image);
    let _ = docker().unwrap().args(["rm", "-f", &format!("{prefix}website"), &format!("{prefix}job")]).output();
    let _ = docker().unwrap().args(["rmi", &image]).output();
    for (i, ((cmd, code, out), (_, dcode, dout))) in ours.iter().zip(&theirs).enumerate() {
        if i < 2 {
            continue; // container IDs
        }
        assert_eq!((code, sorted_lines(out)), (dcode, sorted_lines(dout)), "`{cmd}`: Lifeboat beside Docker");
    }
}

/// With a configuration, commands typed by hand use it: `--repo NAME` is one of its
/// repositories (with its password file), and a service's own repository is where
/// `snapshot`, `snapshots` and `restore` go without `--repo`. `--config` and
/// `LIFEBOAT_CONFIG` work for all of them.
#[test]
fn the_configuration_is_the_default_for_commands_typed_by_hand() {
    let env = Env::new();
    env.site_image("site:1");
    let pw = env.path("pw");
    std::fs::write(&pw, "configured\n").unwrap();
    let repo = env.path("configured-repo");
    let config = env.path("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            r#"[repositories.local]
url = "{repo}"
password_file = "{pw}"

[services.website]
image = "site:1"

[services.website.snapshot]
schedule = "0 3 * * *"
repositories = ["local"]
"#,
            repo = repo.display(),
            pw = pw.display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    env.ok(&["repo", "init", "--repo", "local", "--config", c]);
    assert!(repo.join("config").exists(), "--repo local is the configured repository");
    env.ok(&["run", "-d", "--name", "website", "site:1"]);
    env.ok(&["snapshot", "website", "--config", c]);
    assert!(!env.root().join("repository").exists(), "not the host's default repository");
    let ids = |args: &[&str]| -> usize {
        let mut a = vec!["snapshots", "--json"];
        a.extend_from_slice(args);
        serde_json::from_str::<Vec<serde_json::Value>>(&env.ok(&a)).unwrap().len()
    };
    assert_eq!(ids(&["--repo", "local", "--config", c]), 1);
    assert_eq!(ids(&["website", "--config", c]), 1, "the service's own repository");
    let by_env = env
        .lifeboat()
        .env("LIFEBOAT_CONFIG", &config)
        .args(["snapshots", "--repo", "local", "--json"])
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{}", String::from_utf8_lossy(&by_env.stderr));
    assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&by_env.stdout).unwrap().len(), 1);
    // A password file in the environment (for another repository) does not displace the
    // configured repository's own; a flag does.
    let wrong = env.path("other-pw");
    std::fs::write(&wrong, "another repository's\n").unwrap();
    let with_env = |extra: &[&str]| {
        env.lifeboat()
            .env("LIFEBOAT_PASSWORD_FILE", &wrong)
            .args(["snapshots", "--repo", "local", "--json", "--config", c])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = with_env(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(with_env(&["--password-file", wrong.to_str().unwrap()]).status.code(), Some(12), "a flag wins");
    // The agent's own steps name their repositories exactly: never redirected.
    let step = env
        .lifeboat()
        .env("LIFEBOAT_AGENT_STEP", "1")
        .args(["snapshots", "website", "--json", "--config", c])
        .output()
        .unwrap();
    assert!(step.status.success(), "{step:?}");
    assert_eq!(String::from_utf8_lossy(&step.stdout).trim(), "[]", "the host's default repository, not the service's");
    // Several services named together are not sent to one member's repository.
    env.ok(&["run", "-d", "--name", "other", "site:1"]);
    env.ok(&["snapshot", "website", "other", "--config", c]);
    assert!(env.root().join("repository").exists(), "a stack goes to the default repository");
    env.ok(&["rm", "-f", "other"]);
    env.ok(&["rm", "-f", "website"]);
    let out = env.ok(&["restore", "website", "--config", c]);
    assert!(out.contains("restored website"), "{out}");

    // A name the configuration does not have, and a configuration that is not there.
    let e = env.fails(&["snapshots", "--repo", "offsite", "--config", c], 2);
    assert!(e.contains("offsite") && e.contains("local"), "{e}");
    let e = env.fails(&["snapshots", "--repo", "local", "--config", "/nonexistent/lifeboat.toml"], 3);
    assert!(e.contains("/nonexistent/lifeboat.toml"), "{e}");
    // A path is still a path.
    assert_eq!(ids(&["--repo", repo.to_str().unwrap(), "--password-file", pw.to_str().unwrap()]), 1);
    env.ok(&["rm", "-f", "website"]);
}

/// `--mount` (volume, bind, tmpfs) and `--tmpfs` as a Docker user types them: the same
/// script inside sees the same mounts under Lifeboat and under Docker.
#[test]
fn mount_and_tmpfs_flags_as_docker_takes_them() {
    let env = Env::new();
    env.site_image("site:1");
    let host_dir = env.path("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("page"), "from the host\n").unwrap();
    let script = "echo kept > /data/file; cat /ro/page; (touch /ro/x 2>/dev/null && echo ro-writable) || echo ro-refused; \
                  stat -c %a /scratch /small; grep ' /scratch tmpfs ' /proc/mounts | grep -c 'nosuid,nodev,noexec'; \
                  (dd if=/dev/zero of=/small/big bs=1k count=2048 2>/dev/null && echo small-unbounded) || echo small-full";
    let args = |vol: &str, image: &str| -> Vec<String> {
        [
            "run",
            "--rm",
            "--mount",
            &format!("type=volume,source={vol},target=/data"),
            "--mount",
            &format!("type=bind,source={},target=/ro,readonly", host_dir.display()),
            "--mount",
            "type=tmpfs,target=/scratch",
            "--tmpfs",
            "/small:size=1m,mode=1770",
            image,
            "sh",
            "-c",
            script,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let ours_args = args("mountvol", "site:1");
    let ours = env.ok(&ours_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ours.lines().collect::<Vec<_>>(), ["from the host", "ro-refused", "1777", "1770", "1", "small-full"]);
    // The volume kept what was written; the host directory was not written.
    let data = env.root().join("volumes/mountvol/_data/file");
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "kept\n");
    assert!(!host_dir.join("x").exists());
    // A bind source that is not there is refused before anything is made (-v would make it).
    let missing = env.path("not-there");
    let before = env.ok(&["ps", "-a", "-q"]);
    let err = env.fails(
        &["run", "-d", "--name", "nobind", "--mount", &format!("type=bind,src={},dst=/x", missing.display()), "site:1"],
        3,
    );
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.exists());
    assert_eq!(env.ok(&["ps", "-a", "-q"]), before, "a container was left behind");
    env.fails(&["run", "--rm", "--mount", "type=nfs,src=x,dst=/x", "site:1", "true"], 2);
    // An anonymous volume from --mount is made, and goes with rm -v.
    let vols = env.ok(&["volume", "ls", "-q"]);
    env.ok(&["run", "-d", "--name", "anon", "--mount", "type=volume,target=/anon", "site:1", "sleep", "600"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), vols.lines().count() + 1);
    env.ok(&["rm", "-f", "-v", "anon"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), vols);

    let Some(_) = docker() else { return };
    let rootfs = env.busybox_rootfs("docker-rootfs");
    let tar = env.path("rootfs.tar");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
    let image = format!("lifeboat-mounts-{}:1", std::process::id());
    run(docker().unwrap().arg("import").arg(&tar).arg(&image));
    let vol = format!("lbmounts{}", std::process::id());
    let theirs = docker().unwrap().args(args(&vol, &image)).output().unwrap();
    let _ = docker().unwrap().args(["volume", "rm", &vol]).output();
    let _ = docker().unwrap().args(["rmi", &image]).output();
    assert_eq!(ours, String::from_utf8_lossy(&theirs.stdout), "Lifeboat beside Docker: {theirs:?}");
}

/// The `cp` steps for one CLI (Lifeboat or Docker) on a running container `c` with a
/// `/www` directory: what lands on the host under `out`, listed as `path: content`.
fn cp_session(
    cli: &dyn Fn(&[&str]) -> (i32, String),
    c: &str,
    src: &std::path::Path,
    out: &std::path::Path,
) -> Vec<String> {
    let s = |p: &str| src.join(p).display().to_string();
    let o = |p: &str| out.join(p).display().to_string();
    std::fs::create_dir_all(out).unwrap();
    let steps: Vec<Vec<String>> = vec![
        vec!["cp".into(), s("one.txt"), format!("{c}:/www/")],
        vec!["cp".into(), s("tree"), format!("{c}:/www/")],
        vec!["cp".into(), s("tree/."), format!("{c}:/www/flat")],
        vec!["cp".into(), s("one.txt"), format!("{c}:/www/renamed.txt")],
        vec!["cp".into(), format!("{c}:/www"), o("www")],
        vec!["cp".into(), format!("{c}:/www/tree/."), o("contents")],
        vec!["cp".into(), format!("{c}:/www/one.txt"), o("")],
        vec!["cp".into(), format!("{c}:/www/one.txt"), o("named.txt")],
    ];
    for step in &steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        let (code, said) = cli(&args);
        assert_eq!(code, 0, "{args:?}: {said}");
    }
    let mut seen = Vec::new();
    for e in walk(out) {
        let rel = e.strip_prefix(out).unwrap().display().to_string();
        let content = if e.is_file() { std::fs::read_to_string(&e).unwrap() } else { "<dir>".into() };
        seen.push(format!("{rel}: {}", content.trim()));
    }
    seen.sort();
    seen
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// `cp` both ways, as `docker cp` copies, and never through a link to the host.
#[test]
fn cp_copies_as_docker_does_and_stays_inside_the_container() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.site_image("site:1");
    let src = env.path("cp-src");
    std::fs::create_dir_all(src.join("tree/sub")).unwrap();
    std::fs::write(src.join("one.txt"), "one\n").unwrap();
    std::fs::write(src.join("tree/a.txt"), "a\n").unwrap();
    std::fs::write(src.join("tree/sub/b.txt"), "b\n").unwrap();
    std::os::unix::fs::chown(src.join("one.txt"), Some(1234), Some(1234)).unwrap();
    let ro_dir = env.path("ro-dir");
    std::fs::create_dir_all(&ro_dir).unwrap();
    let ro = format!("{}:/ro:ro", ro_dir.display());
    env.ok(&["run", "-d", "--name", "cpweb", "-v", "cpdata:/data", "-v", &ro, "site:1", "sleep", "600"]);
    let e = env.fails(&["cp", src.join("one.txt").to_str().unwrap(), "cpweb:/ro/"], 1);
    assert!(e.to_lowercase().contains("read-only"), "{e}");
    env.ok(&["exec", "cpweb", "sh", "-c", "echo in-volume > /data/v.txt"]);
    let lifeboat = |args: &[&str]| {
        let o = env.lifeboat().args(args).output().unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let ours = cp_session(&lifeboat, "cpweb", &src, &env.path("cp-ours"));
    for want in [
        "www/one.txt: one",
        "www/tree/sub/b.txt: b",
        "www/flat/a.txt: a",
        "www/renamed.txt: one",
        "contents/a.txt: a",
        "one.txt: one",
        "named.txt: one",
    ] {
        assert!(ours.iter().any(|l| l == want), "{want} missing from {ours:#?}");
    }
    // Owners: root's unless -a.
    assert_eq!(env.ok(&["exec", "cpweb", "stat", "-c", "%u", "/www/one.txt"]).trim(), "0");
    env.ok(&["cp", "-a", src.join("one.txt").to_str().unwrap(), "cpweb:/www/kept.txt"]);
    assert_eq!(env.ok(&["exec", "cpweb", "stat", "-c", "%u", "/www/kept.txt"]).trim(), "1234");
    // A volume's mount point, copied out whole; and a tar stream out.
    let vol_out = env.path("vol-out");
    env.ok(&["cp", "cpweb:/data", vol_out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(vol_out.join("v.txt")).unwrap(), "in-volume\n");
    let tar = env.lifeboat().args(["cp", "cpweb:/www/tree", "-"]).output().unwrap();
    assert!(tar.status.success());
    let stream = env.path("stream.tar");
    std::fs::write(&stream, &tar.stdout).unwrap();
    let listed = crate::util::run(Command::new("tar").arg("-tf").arg(&stream));
    assert!(listed.lines().any(|l| l == "tree/sub/b.txt"), "{listed}");
    // The whole root: the kernel's filesystems mounted in it (/proc, /sys) are left out.
    let whole = env.lifeboat().args(["cp", "cpweb:/", "-"]).output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    std::fs::write(&stream, &whole.stdout).unwrap();
    let listed = crate::util::run(Command::new("tar").arg("-tf").arg(&stream));
    assert!(listed.lines().any(|l| l == "www/tree/a.txt" || l == "./www/tree/a.txt"), "{listed}");
    assert!(!listed.lines().any(|l| l.contains("proc/1/") || l.contains("sys/kernel")), "kernel files copied");
    // And a tar stream in.
    let mut cp_in =
        env.lifeboat().args(["cp", "-", "cpweb:/data"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(cp_in.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(cp_in.stdin.take());
    assert!(cp_in.wait().unwrap().success());
    assert_eq!(env.ok(&["exec", "cpweb", "cat", "/data/tree/a.txt"]).trim(), "a");

    // Links inside the container lead inside it: a link to a host path copies nothing of the
    // host's, and a copy "into" a link to a host directory lands in the container.
    let host_secret = env.path("host-secret");
    std::fs::write(&host_secret, "host only\n").unwrap();
    let host_dir = env.path("host-dir");
    std::fs::create_dir_all(&host_dir).unwrap();
    env.ok(&["exec", "cpweb", "ln", "-s", host_secret.to_str().unwrap(), "/www/secret"]);
    env.ok(&["exec", "cpweb", "ln", "-s", host_dir.to_str().unwrap(), "/www/hostdir"]);
    env.ok(&["exec", "cpweb", "ln", "-s", "../../../../../../..", "/www/up"]);
    let got = env.path("got");
    let o = env.lifeboat().args(["cp", "-L", "cpweb:/www/secret", got.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success() && !got.exists(), "the host's file was copied: {o:?}");
    let o = env
        .lifeboat()
        .args(["cp", &format!("cpweb:/www/up{}", host_secret.display()), got.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success() && !got.exists(), "through .. links to the host: {o:?}");
    env.ok(&["exec", "cpweb", "mkdir", "-p", host_dir.to_str().unwrap()]);
    env.ok(&["cp", src.join("one.txt").to_str().unwrap(), "cpweb:/www/hostdir/"]);
    assert!(!host_dir.join("one.txt").exists(), "written on the host through a link");
    let inside = format!("{}/one.txt", host_dir.display());
    assert_eq!(env.ok(&["exec", "cpweb", "cat", &inside]).trim(), "one");
    // A missing source is "not found"; two host paths are a usage error.
    let e = env.fails(&["cp", "cpweb:/www/nope", got.to_str().unwrap()], 3);
    assert!(e.contains("no such file"), "{e}");
    env.fails(&["cp", src.to_str().unwrap(), got.to_str().unwrap()], 2);
    // A directory is never replaced by a file, nor a file by a directory (the host's
    // directory of the same name keeps what it holds), as Docker refuses.
    let proj = env.path("proj");
    std::fs::create_dir_all(proj.join("one.txt")).unwrap();
    std::fs::write(proj.join("one.txt/keep"), "mine\n").unwrap();
    let o = env.lifeboat().args(["cp", "cpweb:/www/one.txt", proj.to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success(), "{o:?}");
    assert_eq!(std::fs::read_to_string(proj.join("one.txt/keep")).unwrap(), "mine\n");
    env.ok(&["exec", "cpweb", "mkdir", "-p", "/www/tree-file"]);
    std::fs::write(env.path("tree-file"), "x").unwrap();
    let o = env.lifeboat().args(["cp", env.path("tree-file").to_str().unwrap(), "cpweb:/www/"]).output().unwrap();
    assert!(!o.status.success(), "{o:?}");
    env.ok(&["exec", "cpweb", "test", "-d", "/www/tree-file"]);

    // A stopped container: through its own files, and left as it was.
    env.ok(&["stop", "-t", "1", "cpweb"]);
    // Its read-only mounts stay read-only (the kernel no longer says so: cp does).
    let e = env.fails(&["cp", src.join("one.txt").to_str().unwrap(), "cpweb:/ro/"], 2);
    assert!(e.contains("read-only"), "{e}");
    assert!(!ro_dir.join("one.txt").exists());
    env.ok(&["cp", src.join("tree/a.txt").to_str().unwrap(), "cpweb:/www/while-stopped.txt"]);
    let stopped_out = env.path("stopped.txt");
    env.ok(&["cp", "cpweb:/www/one.txt", stopped_out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&stopped_out).unwrap(), "one\n");
    let volume_out = env.path("stopped-volume.txt");
    env.ok(&["cp", "cpweb:/data/v.txt", volume_out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&volume_out).unwrap(), "in-volume\n");
    let rootfs = env.root().join("containers").join(env.inspect("cpweb")["Id"].as_str().unwrap()).join("rootfs");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounted.contains(rootfs.to_str().unwrap()), "the copy left the container's filesystem mounted");
    env.ok(&["start", "cpweb"]);
    assert_eq!(env.ok(&["exec", "cpweb", "cat", "/www/while-stopped.txt"]).trim(), "a");
    assert_eq!(std::fs::metadata(src.join("one.txt")).unwrap().uid(), 1234, "the source was changed");
    env.ok(&["rm", "-f", "cpweb"]);

    // Docker, the same copies: the same files on the host.
    let Some(_) = docker() else { return };
    let rootfs = env.busybox_rootfs("docker-rootfs");
    let tar = env.path("rootfs.tar");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
    let image = format!("lifeboat-cp-{}:1", std::process::id());
    run(docker().unwrap().arg("import").arg(&tar).arg(&image));
    let name = format!("lbcp{}", std::process::id());
    // Both start with an empty /www, emptied before the first copy.
    run(docker().unwrap().args(["run", "-d", "--name", &name, &image, "sleep", "600"]));
    run(docker().unwrap().args(["exec", &name, "sh", "-c", "mkdir -p /www; rm -rf /www/*"]));
    env.ok(&["run", "-d", "--name", "cpweb2", "site:1", "sleep", "600"]);
    env.ok(&["exec", "cpweb2", "sh", "-c", "rm -rf /www/*"]);
    let dock = |args: &[&str]| {
        let o = docker().unwrap().args(args).output().unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let theirs = cp_session(&dock, &name, &src, &env.path("cp-docker"));
    let _ = docker().unwrap().args(["rm", "-f", &name]).output();
    let _ = docker().unwrap().args(["rmi", &image]).output();
    let ours = cp_session(&lifeboat, "cpweb2", &src, &env.path("cp-ours2"));
    env.ok(&["rm", "-f", "cpweb2"]);
    assert_eq!(ours, theirs, "Lifeboat's cp beside Docker's");
}

/// `ps -s` and `system df`, shaped as Docker's.
#[test]
fn ps_size_and_system_df_count_what_is_on_disk() {
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "writer", "-v", "dfvol:/data", "site:1", "sh", "-c",
        "dd if=/dev/zero of=/big bs=1k count=2048 2>/dev/null; dd if=/dev/zero of=/data/v bs=1k count=1024 2>/dev/null; exec sleep 600"]);
    wait_for_file(&env, "writer", "/data/v", 1024 * 1024);
    let size_of = |text: &str| -> f64 {
        let unit = text.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        let n: f64 = text[..text.len() - unit.len()].parse().unwrap_or_else(|_| panic!("{text:?}"));
        n * match unit {
            "B" => 1.0,
            "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            other => panic!("unit {other:?} in {text:?}"),
        }
    };
    // "2.1MB (virtual 3.4MB)", as Docker's template shows it.
    let size = env.ok(&["ps", "--filter", "name=^writer$", "--format", "{{.Size}}"]);
    let (own, virt) = size.trim().split_once(" (virtual ").unwrap_or_else(|| panic!("{size:?}"));
    let (own, virt) = (size_of(own), size_of(virt.trim_end_matches(')')));
    assert!((2.0e6..2.5e6).contains(&own), "its own layer holds the 2 MiB file, not the volume's: {size}");
    assert!(virt > own, "{size}");
    let table = env.ok(&["ps", "-s"]);
    assert!(table.lines().next().unwrap().trim_end().ends_with("SIZE"), "{table}");

    let df = |env: &Env| -> Vec<serde_json::Value> {
        serde_json::from_str(&env.ok(&["system", "df", "--format", "json"])).unwrap()
    };
    let row = |rows: &[serde_json::Value], kind: &str| rows.iter().find(|r| r["Type"] == kind).unwrap().clone();
    let before = df(&env);
    let vols = row(&before, "Local Volumes");
    assert!(vols["SizeBytes"].as_u64().unwrap() >= 1 << 20 && vols["ReclaimableBytes"] == 0, "{vols}");
    let cont = row(&before, "Containers");
    assert_eq!(
        (cont["TotalCount"].as_u64(), cont["Active"].as_u64(), cont["ReclaimableBytes"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    let images = row(&before, "Images");
    assert_eq!(images["Active"], 1);
    // Stopped: its layer is reclaimable; removed: the volume is.
    env.ok(&["stop", "-t", "1", "writer"]);
    let cont = row(&df(&env), "Containers");
    assert!(cont["ReclaimableBytes"].as_u64().unwrap() >= 2 << 20, "{cont}");
    env.ok(&["rm", "writer"]);
    let after = df(&env);
    assert!(row(&after, "Local Volumes")["ReclaimableBytes"].as_u64().unwrap() >= 1 << 20);
    assert_eq!(row(&after, "Images")["Active"], 0);
    assert_eq!(row(&after, "Images")["ReclaimableBytes"], row(&after, "Images")["SizeBytes"]);
    let table = env.ok(&["system", "df"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    assert!(table.contains("Local Volumes"), "{table}");
    let Some(_) = docker() else { return };
    let theirs = docker().unwrap().args(["system", "df"]).output().unwrap();
    let theirs = String::from_utf8_lossy(&theirs.stdout);
    let their_header: Vec<&str> = theirs.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, their_header, "the columns Docker prints");
}

fn wait_for_file(env: &Env, c: &str, path: &str, size: u64) {
    crate::util::wait_until(20, "the file to be written", || {
        let o = env.lifeboat().args(["exec", c, "stat", "-c", "%s", path]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().is_ok_and(|n| n >= size)
    });
}

/// Completion in a real shell: bash, with the script `completions bash` prints, offers the
/// names this host has now (a container, an image, a volume), commands and flags.
#[test]
fn bash_completion_offers_this_host_s_names() {
    if !crate::util::have("bash") {
        return;
    }
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "catalogue-web", "site:1", "sleep", "600"]);
    env.ok(&["volume", "create", "catalogue-data"]);
    let script = env.path("lifeboat.bash");
    std::fs::write(&script, env.ok(&["completions", "bash"])).unwrap();
    for shell in ["zsh", "fish"] {
        assert!(env.ok(&["completions", shell]).contains("LIFEBOAT_COMPLETE="), "{shell}");
    }
    // The script calls `lifeboat` from PATH, as an installed one would.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(crate::util::BIN, bin.join("lifeboat")).unwrap();
    let root = env.root().display().to_string();
    let run_root = env.path("run").display().to_string();
    let complete = |words: &[&str]| -> Vec<String> {
        let mut line = vec!["lifeboat", "--root", &root, "--run-root", &run_root];
        line.extend_from_slice(words);
        let quoted: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _clap_complete_lifeboat lifeboat \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            quoted.join(" "),
            line.len() - 1
        );
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(program)
            .env("PATH", path)
            .env("LIFEBOAT_CONFIG", env.path("empty-config.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').next().unwrap_or(l).to_string()).collect()
    };
    assert!(complete(&["rm", ""]).contains(&"catalogue-web".to_string()), "{:?}", complete(&["rm", ""]));
    assert_eq!(complete(&["logs", "cat"]), ["catalogue-web"]);
    assert!(complete(&["rmi", ""]).contains(&"site:1".to_string()), "{:?}", complete(&["rmi", ""]));
    assert_eq!(complete(&["volume", "rm", "cata"]), ["catalogue-data"]);
    assert!(
        complete(&["sna"]).contains(&"snapshot".to_string()) && complete(&["sna"]).contains(&"snapshots".to_string())
    );
    assert!(complete(&["ps", "--fi"]).contains(&"--filter".to_string()));
    // Nothing is made by completing: no repository appeared.
    let none = complete(&["restore", "--snapshot", ""]);
    env.ok(&["status"]);
    assert!(!env.root().join("repository").exists(), "completing or status made a repository: {none:?}");
    // Snapshots of the default repository, by short ID; services with snapshots.
    // (--json is --format json on backup commands, as restic users type it.)
    let taken: serde_json::Value = serde_json::from_str(&env.ok(&["snapshot", "catalogue-web", "--json"])).unwrap();
    let listed: Vec<serde_json::Value> = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let id: String = listed[0]["id"].as_str().unwrap().chars().take(8).collect();
    assert_eq!(taken["id"], listed[0]["id"]);
    let checked = env.ok(&["check", "--json"]);
    assert!(serde_json::from_str::<serde_json::Value>(&checked).is_ok(), "{checked}");
    assert!(complete(&["restore", "--snapshot", ""]).contains(&id), "{id} not offered");
    // status at a glance, with no configuration at all: the default repository, its size
    // and count, the service's last snapshot.
    if !std::path::Path::new("/etc/lifeboat/lifeboat.toml").exists() {
        let out = env.lifeboat().env_remove("LIFEBOAT_CONFIG").arg("status").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(text.contains("no configuration"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("catalogue-web") && l.contains(&id) && l.contains("default")),
            "{text}"
        );
        assert!(text.lines().any(|l| l.starts_with("default") && l.split_whitespace().nth(1) == Some("1")), "{text}");
    }
    env.ok(&["rm", "-f", "catalogue-web"]);
    assert_eq!(complete(&["restore", "catalogue-w"]), ["catalogue-web"], "a service known by its snapshots");
}

/// On a terminal, a snapshot's progress shows how far it is against the expected total (a
/// percentage, a rate and the time left); the summary gives the whole command's time.
#[test]
fn snapshot_progress_on_a_terminal_shows_a_percentage_and_an_eta() {
    if !crate::util::have("script") {
        return;
    }
    let env = Env::new();
    env.site_image("site:1");
    env.ok(&["run", "-d", "--name", "bulky", "-v", "bulkdata:/data", "site:1", "sleep", "600"]);
    // Enough data for the line to be drawn while it is read: 200 files of 256 KiB.
    env.ok(&["exec", "bulky", "sh", "-c", "for i in $(seq 1 200); do head -c 262144 /dev/urandom > /data/f$i; done"]);
    let line = format!(
        "{} --root {} --run-root {} snapshot bulky",
        crate::util::BIN,
        env.root().display(),
        env.path("run").display()
    );
    let run_in_terminal = || {
        let out = Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env("LIFEBOAT_KDF", "1024,1,1")
            .env("LIFEBOAT_CONFIG", env.path("empty-config.toml"))
            .env("COLUMNS", "200")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::write(env.path("empty-config.toml"), "").unwrap();
    // The first snapshot counts what it will read; the second knows it from its parent.
    let percentages = |seen: &str| -> Vec<u32> {
        seen.split("% of ").filter_map(|before| before.rsplit(' ').next()?.parse().ok()).collect()
    };
    for round in ["first", "second"] {
        let seen = run_in_terminal();
        assert!(seen.contains("% of ") && seen.contains("ETA "), "{round}: no percentage or ETA in {seen:?}");
        assert!(seen.contains("done in "), "{round}: {seen:?}");
        let shown = percentages(&seen);
        assert!(!shown.is_empty() && shown.iter().all(|p| *p <= 100), "{round}: {shown:?}");
        assert!(shown.windows(2).all(|w| w[0] <= w[1]), "{round}: the percentage went back: {shown:?}");
        if round == "second" {
            // Out of the parent's total.
            let listed: Vec<serde_json::Value> = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
            let parent = listed[listed.len() - 2]["stats"]["bytes"].as_u64().unwrap();
            let shown_total =
                seen.split("% of ").nth(1).and_then(|t| t.split(',').next()).unwrap_or_default().to_string();
            let unit = shown_total.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
            let n: f64 = shown_total[..shown_total.len() - unit.len()].parse().unwrap_or(0.0);
            let scale = match unit {
                "kB" => 1e3,
                "MB" => 1e6,
                "GB" => 1e9,
                _ => 1.0,
            };
            assert!(
                (n * scale - parent as f64).abs() <= parent as f64 * 0.01,
                "{shown_total} is not the parent's {parent}"
            );
        }
    }
    // A restore shows how far it is against what it will write.
    env.ok(&["rm", "-f", "bulky"]);
    env.ok(&["volume", "rm", "bulkdata"]);
    let restore = line.replace("snapshot bulky", "restore bulky --no-start");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &restore, "/dev/null"])
        .env("LIFEBOAT_KDF", "1024,1,1")
        .env("LIFEBOAT_CONFIG", env.path("empty-config.toml"))
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && seen.contains("% of ") && seen.contains("ETA "), "{seen:?}");
    let shown = percentages(&seen);
    assert!(shown.iter().all(|p| *p <= 100) && shown.windows(2).all(|w| w[0] <= w[1]), "{shown:?}");
    env.ok(&["rm", "-f", "bulky"]);
}

/// Man pages keep their examples line for line and name related pages under SEE ALSO.
#[test]
fn man_pages_keep_examples_as_written_and_say_what_to_read_next() {
    let env = Env::new();
    let dir = env.path("man1");
    env.ok(&["manpages", dir.to_str().unwrap()]);
    let page = std::fs::read_to_string(dir.join("lifeboat-snapshot.1")).unwrap();
    assert!(page.contains(".SH EXAMPLES") && page.contains(".nf"), "{page}");
    assert!(page.contains(".SH SEE ALSO") && page.contains(".BR lifeboat\\-restore (1)"), "{page}");
    assert!(!page.contains(".SH EXTRA"), "{page}");
    for name in ["lifeboat-cp.1", "lifeboat-system-df.1", "lifeboat.1"] {
        assert!(std::fs::read_to_string(dir.join(name)).unwrap().contains(".SH SEE ALSO"), "{name}");
    }
    if !crate::util::have("man") {
        return;
    }
    // Rendered, an example stays one line, as typed.
    let shown =
        Command::new("man").arg("-l").arg(dir.join("lifeboat-snapshot.1")).env("MANWIDTH", "150").output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    let example = "lifeboat snapshot website --repo /srv/backup --password-file /etc/lifeboat/repo.pass --tag nightly";
    assert!(shown.lines().any(|l| l.trim() == example), "{shown}");
    assert!(shown.contains("lifeboat-restore(1)"), "{shown}");
}
