//! Interoperability with the tools people already use: images written by Podman and Docker
//! load into Lifeboat with exactly the content skopeo + umoci see, and images Lifeboat writes
//! load and run in Podman and Docker and are read by skopeo and umoci straight from the store.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{Env, assert_same_tree, docker, have, podman, run};

/// Layers that exercise hard links, symlinks, fifos, set-id bits, whiteouts and an opaque dir.
const CONTAINERFILE: &str = "\
FROM base:1
RUN mkdir -p /srv/www/sub && echo hi > /srv/www/index.html && ln /srv/www/index.html /srv/www/hard && ln -s index.html /srv/www/soft && rm /bin/vi && mkfifo /srv/fifo && chmod 4755 /srv/www/index.html && chown 65534:65534 /srv/www/sub
RUN rm -rf /srv/www/sub && rm -rf /www && mkdir /www && echo new > /www/x && rm /srv/data/books.db
COPY Containerfile /etc/built-from
";

fn build_context(env: &Env) -> std::path::PathBuf {
    let ctx = env.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Containerfile"), CONTAINERFILE).unwrap();
    fs::write(ctx.join("Dockerfile"), CONTAINERFILE).unwrap();
    ctx
}

fn rootfs_tar(env: &Env) -> std::path::PathBuf {
    let rootfs = env.busybox_rootfs("rootfs");
    let tar = env.path("rootfs.tar");
    run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
    tar
}

/// What skopeo + umoci make of an archive: the reference unpacking.
fn umoci_rootfs(env: &Env, transport_ref: &str, label: &str) -> std::path::PathBuf {
    let layout = env.path(&format!("layout-{label}"));
    run(Command::new("skopeo").args(["copy", "-q", transport_ref]).arg(format!("oci:{}:ref", layout.display())));
    let bundle = env.path(&format!("bundle-{label}"));
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:ref", layout.display())).arg(&bundle));
    bundle.join("rootfs")
}

fn lifeboat_rootfs(env: &Env, name: &str, label: &str) -> std::path::PathBuf {
    let out = env.path(&format!("lifeboat-{label}"));
    env.ok(&["image", "unpack", name, out.to_str().unwrap()]);
    out
}

#[test]
fn podman_oci_archive_loads_exactly_as_umoci_unpacks_it() {
    let env = Env::new();
    if !(have("skopeo") && have("umoci")) {
        return;
    }
    let Some(_) = podman(&env.path("podman")) else {
        return;
    };
    let pod = || podman(&env.path("podman")).unwrap();
    let tar = rootfs_tar(&env);
    run(pod().args(["import", "-q"]).arg(&tar).arg("base:1"));
    run(pod().args(["tag", "localhost/base:1", "base:1"]));
    let ctx = build_context(&env);
    run(pod().args(["build", "-q", "-t", "multi:1"]).arg(&ctx));
    let archive = env.path("podman-oci.tar");
    run(pod().args(["save", "--format", "oci-archive", "-o"]).arg(&archive).arg("localhost/multi:1"));
    let docker_archive = env.path("podman-docker.tar");
    run(pod().args(["save", "--format", "docker-archive", "-o"]).arg(&docker_archive).arg("localhost/multi:1"));

    let loaded = env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded.trim(), "Loaded image: localhost/multi:1");
    let reference = umoci_rootfs(&env, &format!("oci-archive:{}", archive.display()), "oci");
    assert_same_tree(&reference, &lifeboat_rootfs(&env, "localhost/multi:1", "oci"));
    // Whiteouts and the opaque directory were applied.
    let ours = env.path("lifeboat-oci");
    assert!(
        !ours.join("bin/vi").exists() && !ours.join("srv/www/sub").exists() && !ours.join("srv/data/books.db").exists()
    );
    assert_eq!(fs::read_dir(ours.join("www")).unwrap().count(), 1);

    // podman's docker-archive (uncompressed layers) gives the same tree.
    env.ok(&["load", "-i", docker_archive.to_str().unwrap()]);
    assert_same_tree(&reference, &lifeboat_rootfs(&env, "localhost/multi:1", "docker"));
}

#[test]
fn docker_save_loads_exactly_as_umoci_unpacks_it() {
    let env = Env::new();
    if !(have("skopeo") && have("umoci")) {
        return;
    }
    let Some(_) = docker() else { return };
    let tag = format!("lifeboat-test-{}:1", std::process::id());
    let tar = rootfs_tar(&env);
    run(docker().unwrap().arg("import").arg(&tar).arg("base:1"));
    let ctx = build_context(&env);
    run(docker().unwrap().env("DOCKER_BUILDKIT", "0").args(["build", "-q", "--network", "none", "-t", &tag]).arg(&ctx));
    let archive = env.path("docker.tar");
    run(docker().unwrap().args(["save", "-o"]).arg(&archive).arg(&tag));
    run(docker().unwrap().args(["rmi", &tag]));

    let loaded = env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded.trim(), format!("Loaded image: {tag}"));
    let reference = umoci_rootfs(&env, &format!("docker-archive:{}", archive.display()), "docker");
    assert_same_tree(&reference, &lifeboat_rootfs(&env, &tag, "docker"));
}

fn site_image(env: &Env, name: &str) -> std::path::PathBuf {
    let rootfs = env.busybox_rootfs("site");
    env.ok(&["import", rootfs.to_str().unwrap(), name, "--change", r#"CMD ["/bin/cat", "/www/index.html"]"#]);
    rootfs
}

#[test]
fn lifeboat_oci_archive_loads_and_runs_in_podman() {
    let env = Env::new();
    let Some(_) = podman(&env.path("podman")) else {
        return;
    };
    let pod = || podman(&env.path("podman")).unwrap();
    site_image(&env, "website:1");
    let archive = env.path("website.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "website:1"]);
    let out = run(pod().args(["load", "-i"]).arg(&archive));
    assert!(out.contains("website:1"), "{out}");
    let page = run(pod().args(["run", "--rm", "docker.io/library/website:1"]));
    assert_eq!(page, "<h1>City Library</h1>\n");
}

#[test]
fn lifeboat_docker_archive_loads_and_runs_in_docker() {
    let env = Env::new();
    let Some(_) = docker() else { return };
    let tag = format!("lifeboat-site-{}:1", std::process::id());
    site_image(&env, &tag);
    let archive = env.path("website.tar");
    env.ok(&["save", "--format", "docker-archive", "-o", archive.to_str().unwrap(), &tag]);
    let out = run(docker().unwrap().args(["load", "-i"]).arg(&archive));
    assert!(out.contains(&tag), "{out}");
    let page = run(docker().unwrap().args(["run", "--rm", "--network", "none", &tag]));
    run(docker().unwrap().args(["rmi", &tag]));
    assert_eq!(page, "<h1>City Library</h1>\n");
}

#[test]
fn skopeo_and_umoci_read_the_store_directly() {
    let env = Env::new();
    if !(have("skopeo") && have("umoci")) {
        return;
    }
    let rootfs = site_image(&env, "website:1");
    let layout = env.root().join("images");
    let out = run(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:website:1", layout.display())));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1, "{out}");
    let cfg =
        run(Command::new("skopeo").args(["inspect", "--config"]).arg(format!("oci:{}:website:1", layout.display())));
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/bin/cat", "/www/index.html"]));

    // umoci takes a lock file in the layout; give it a copy so the store stays ours.
    let copy = env.path("layout-copy");
    run(Command::new("cp").arg("-a").arg(&layout).arg(&copy));
    let bundle = env.path("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:website:1", copy.display())).arg(&bundle));
    assert_same_tree(&rootfs, &bundle.join("rootfs"));
    assert!(Path::new(&bundle.join("config.json")).exists());
}
