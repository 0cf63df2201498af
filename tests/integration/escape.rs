//! A container, an image or a build context never reaches the host: the cgroup filesystem,
//! read-only binds, symlinks in images and contexts, `.dockerignore`, the seccomp profile,
//! file modes under the root, the shims' environment, and how registries are spoken to.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Env, stderr, stdout};

/// Runs `script` in a fresh container of `image` with `args` before it; (exit code, output).
fn sh(env: &Env, args: &[&str], image: &str, script: &str) -> (i32, String) {
    let mut cmd = env.lifeboat();
    cmd.args(["run", "--rm"]).args(args).args([image, "sh", "-c", script]);
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), format!("{}{}", stdout(&out), stderr(&out)))
}

#[test]
fn a_container_cannot_write_its_cgroup_and_sees_only_its_own() {
    let env = Env::new();
    env.site_image("site:1");
    let limits = ["--memory", "64m", "--pids-limit", "50"];
    // This host's files for the limits: v1 hierarchies, or cgroup2 alone.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v2 = mountinfo.lines().any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    let (pids_max, memory_max, pids_dir) = if v2 {
        ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup")
    } else {
        ("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids")
    };
    for (what, script) in [
        ("raise its pids limit", format!("echo 100000 > {pids_max}")),
        ("raise its memory limit", format!("echo -1 > {memory_max}")),
        ("make a cgroup", format!("mkdir {pids_dir}/x")),
        ("write to the cgroup filesystem's root", "mkdir /sys/fs/cgroup/x".to_string()),
    ] {
        let (code, out) = sh(&env, &limits, "site:1", &script);
        assert_ne!(code, 0, "a container could {what}: {out}");
        assert!(out.contains("Read-only file system"), "{what}: {out}");
    }
    // A hierarchy the container has no cgroup of its own in is not there at all.
    let (code, out) = sh(&env, &limits, "site:1", "mkdir -p /sys/fs/cgroup/systemd/x");
    assert_ne!(code, 0, "{out}");
    let (code, out) = sh(&env, &limits, "site:1", &format!("cat {pids_max} {memory_max}"));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["50", "67108864"], "{out}");
    // Every hierarchy's path is its own root; no release_agent (a hierarchy root's file) in sight.
    let (_, out) = sh(&env, &limits, "site:1", "cat /proc/self/cgroup; find /sys/fs/cgroup -name release_agent");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() > 1, "{out}");
    assert!(lines.iter().all(|l| l.ends_with(":/")), "a host path in /proc/self/cgroup:\n{out}");
    // And the limits still hold.
    let (_, out) = sh(&env, &limits, "site:1", "for i in $(seq 80); do sleep 5 & done; wait");
    assert!(out.contains("can't fork"), "the pids limit did not hold: {out}");
}

#[test]
fn a_read_only_bind_is_read_only_all_the_way_down() {
    read_only_all_the_way_down(false);
}

/// The same on a kernel without `mount_setattr`: each mount below the bind is bound read-only
/// on its own (taken on this kernel with LIFEBOAT_NO_MOUNT_SETATTR=1).
#[test]
fn a_read_only_bind_is_read_only_all_the_way_down_without_mount_setattr() {
    read_only_all_the_way_down(true);
}

fn read_only_all_the_way_down(each_submount: bool) {
    let env = Env::new();
    env.site_image("site:1");
    let sh = |env: &Env, args: &[&str], image: &str, script: &str| {
        let mut cmd = env.lifeboat();
        if each_submount {
            cmd.env("LIFEBOAT_NO_MOUNT_SETATTR", "1");
        }
        cmd.args(["run", "--rm"]).args(args).args([image, "sh", "-c", script]);
        let out = cmd.output().unwrap();
        (out.status.code().unwrap_or(-1), format!("{}{}", stdout(&out), stderr(&out)))
    };
    let marker = format!("lifeboat-escape-{}", lifeboat::fsutil::random_hex(4));
    for (what, script) in [
        ("the host's /dev/shm", format!("echo x > /host/dev/shm/{marker}")),
        ("the host's /tmp", format!("echo x > /host/tmp/{marker}")),
        ("the host's cgroup tmpfs", format!("mkdir /host/sys/fs/cgroup/{marker}")),
        ("a host cgroup", format!("mkdir /host/sys/fs/cgroup/pids/{marker}")),
        // Opened for writing, never written: nothing changes even if it failed to refuse.
        ("core_pattern", ": >> /host/proc/sys/kernel/core_pattern".to_string()),
        ("release_agent", ": >> /host/sys/fs/cgroup/systemd/release_agent".to_string()),
        ("ksm", ": >> /host/sys/kernel/mm/ksm/run".to_string()),
    ] {
        let (code, out) = sh(&env, &["-v", "/:/host:ro"], "site:1", &script);
        assert_ne!(code, 0, "{what} is writable through a :ro bind: {out}");
        assert!(out.contains("Read-only file system"), "{what}: {out}");
    }
    for p in ["/dev/shm", "/tmp", "/sys/fs/cgroup", "/sys/fs/cgroup/pids"] {
        assert!(!Path::new(p).join(&marker).exists(), "{p}/{marker} was created");
    }
    // Reading through it still works.
    let (code, out) = sh(&env, &["-v", "/:/host:ro"], "site:1", "cat /host/etc/hostname");
    assert_eq!((code, out.trim()), (0, fs::read_to_string("/etc/hostname").unwrap().trim()));
}

/// An image whose paths lead, through absolute and relative symlinks, to `host` (a directory
/// outside every root, holding a secret and a passwd file with a user only it knows).
fn hostile_image(env: &Env, host: &Path) -> PathBuf {
    fs::create_dir_all(host.join("www")).unwrap();
    fs::write(host.join("www/secret.txt"), "host secret").unwrap();
    fs::write(host.join("passwd"), "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
    let rootfs = env.busybox_rootfs("hostile-rootfs");
    fs::remove_dir_all(rootfs.join("www")).unwrap();
    symlink(host.join("www"), rootfs.join("www")).unwrap();
    let up = "../".repeat(host.components().count() + 2);
    symlink(format!("{up}{}", host.join("www").display()), rootfs.join("relwww")).unwrap();
    symlink(host, rootfs.join("data")).unwrap();
    fs::create_dir_all(rootfs.join("etc2")).unwrap();
    fs::write(rootfs.join("etc2/group"), "root:x:0:\n").unwrap();
    fs::rename(rootfs.join("etc/passwd"), rootfs.join("etc2/passwd")).unwrap();
    symlink(host.join("passwd"), rootfs.join("etc/passwd")).unwrap();
    env.ok(&["import", rootfs.to_str().unwrap(), "hostile:1"]);
    rootfs
}

#[test]
fn symlinks_in_an_image_never_lead_onto_the_host() {
    let env = Env::new();
    let host = env.path("host");
    let rootfs = hostile_image(&env, &host);
    let before = crate::util::tree(&host);
    // A new volume on a path that is a link out of the image is filled from inside the image
    // (there is nothing there), never from the host.
    for (volume, target) in [("abs", "/www"), ("rel", "/relwww")] {
        let (code, out) = sh(&env, &["-v", &format!("{volume}:{target}")], "hostile:1", &format!("ls -A {target}"));
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("secret"), "volume {volume} was filled from the host: {out}");
        let data = env.root().join("volumes").join(volume).join("_data");
        assert_eq!(fs::read_dir(&data).unwrap().count(), 0, "volume {volume} holds host files");
    }
    // A mount point below a link out of the image is made inside the container's root.
    let (code, out) = sh(&env, &["-v", "mp:/data/made/here"], "hostile:1", "test -d /data/made/here && echo made");
    assert_eq!((code, out.trim()), (0, "made"));
    // The user database is read inside the image: a user only the host's "passwd" knows is unknown.
    let (code, out) = sh(&env, &["--user", "hostonly"], "hostile:1", "id");
    assert_ne!(code, 0, "resolved a user through a link to the host: {out}");
    // A working directory through a link is made inside the container's root, at run time
    // and by a build's WORKDIR.
    // (The link's target, an absolute path, is made inside the container's root.)
    let (code, out) = sh(&env, &["-w", "/data/wd"], "hostile:1", "pwd");
    assert_eq!((code, out.trim()), (0, host.join("wd").to_str().unwrap()), "{out}");
    let ctx = env.path("wd-ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM hostile:1\nWORKDIR /data/wd\nWORKDIR /www/wd2\nWORKDIR /relwww/wd3\n")
        .unwrap();
    env.ok(&["build", "-t", "hostile:2", ctx.to_str().unwrap()]);
    // Each link is followed inside the image, and stays a link (as Docker keeps it).
    let (code, out) = sh(&env, &[], "hostile:2", "pwd; readlink /data; readlink /www; readlink /relwww");
    let expected = format!(
        "{}\n{}\n{}\n{}",
        host.join("www/wd3").display(),
        host.display(),
        host.join("www").display(),
        // (the import writes the link's `..//var` as `../var`)
        fs::read_link(rootfs.join("relwww")).unwrap().display().to_string().replace("//", "/")
    );
    assert_eq!((code, out.trim()), (0, expected.as_str()), "{out}");
    assert_eq!(crate::util::tree(&host), before, "the host directory changed");
}

#[test]
fn commit_and_export_of_a_container_racing_links_to_the_host_hold_no_host_byte() {
    let env = Env::new();
    env.site_image("site:1");
    let host = env.path("host-secrets");
    fs::create_dir_all(&host).unwrap();
    let secret = format!("HOST-SECRET-{}", lifeboat::fsutil::random_hex(8));
    fs::write(host.join("secret.txt"), &secret).unwrap();
    fs::write(host.join("host-only.txt"), &secret).unwrap();
    // The container swaps a directory for a link to the host directory, as fast as it can.
    let script = format!(
        "mkdir -p /d; echo mine > /d/secret.txt; while true; do mv /d /d2; ln -s {h} /d; rm /d; mv /d2 /d; done",
        h = host.display()
    );
    env.ok(&["run", "-d", "--name", "racer", "site:1", "sh", "-c", &script]);
    for i in 0..15 {
        let out = env.path(&format!("export-{i}.tar"));
        env.ok(&["export", "racer", "-o", out.to_str().unwrap()]);
        let bytes = fs::read(&out).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "export {i} holds a host file");
        env.ok(&["commit", "racer", &format!("racer:{i}")]);
        let diff = env.ok(&["diff", "racer"]);
        assert!(!diff.contains("host-only"), "diff {i} listed a host file:\n{diff}");
    }
    let saved = env.path("racer.tar");
    let names: Vec<String> = (0..15).map(|i| format!("racer:{i}")).collect();
    let mut args = vec!["save", "-o", saved.to_str().unwrap()];
    args.extend(names.iter().map(String::as_str));
    env.ok(&args);
    let mut archive = tar::Archive::new(fs::File::open(&saved).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        // Layers are gzipped; everything else in the archive is plain.
        let mut plain = Vec::new();
        if std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).is_err() {
            plain = bytes.clone();
        }
        assert!(!plain.windows(secret.len()).any(|w| w == secret.as_bytes()), "a committed layer holds a host file");
    }
    env.ok(&["rm", "-f", "racer"]);
}

#[test]
fn a_build_context_never_reads_host_files() {
    let env = Env::new();
    env.site_image("base:1");
    let host = env.path("host-etc");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("shadow"), "root:HOSTHASH:19000::::::\n").unwrap();
    let ctx = env.path("ctx");
    fs::create_dir_all(ctx.join("site")).unwrap();
    fs::write(ctx.join("site/index.html"), "page\n").unwrap();
    symlink(&host, ctx.join("hostetc")).unwrap();
    symlink(host.join("shadow"), ctx.join("site/shadow-link")).unwrap();
    symlink("../../host-etc", ctx.join("site/up")).unwrap();
    let build = |dockerfile: &str| {
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        env.lifeboat().args(["build", "-t", "built:1", ctx.to_str().unwrap()]).output().unwrap()
    };
    // Through a link in the middle of the path, or a link as the source: not in the context.
    for copy in ["COPY hostetc/shadow /y", "COPY hostetc /y", "COPY site/up/shadow /y", "ADD hostetc/shadow /y"] {
        let out = build(&format!("FROM base:1\n{copy}\n"));
        assert!(!out.status.success(), "{copy} built");
        assert!(stderr(&out).contains("build context"), "{copy}: {}", stderr(&out));
    }
    // A copied directory keeps its links as links; their targets are not read.
    let out = build("FROM base:1\nCOPY site /app\nCOPY --chown=1:1 site /app2\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, out) = sh(
        &env,
        &[],
        "built:1",
        "cat /app/index.html; readlink /app/shadow-link; cat /app/shadow-link /app/up/shadow 2>&1; true",
    );
    assert_eq!(code, 0);
    assert!(out.contains("page") && out.contains(&host.join("shadow").display().to_string()), "{out}");
    assert!(!out.contains("HOSTHASH"), "a host file's content is in the image: {out}");
    assert_eq!(fs::read_to_string(host.join("shadow")).unwrap(), "root:HOSTHASH:19000::::::\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(host.join("shadow")).unwrap().uid(), 0, "--chown followed a link to the host");
}

#[test]
fn copy_destinations_follow_the_images_links_inside_the_image() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let rootfs = env.busybox_rootfs("rootfs");
    fs::create_dir_all(rootfs.join("run")).unwrap();
    fs::create_dir_all(rootfs.join("var")).unwrap();
    symlink("../run", rootfs.join("var/run")).unwrap();
    symlink(&outside, rootfs.join("away")).unwrap();
    env.ok(&["import", rootfs.to_str().unwrap(), "linked:1"]);
    let ctx = env.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("f"), "content\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM linked:1\nCOPY f /var/run/\nCOPY f /away/\n").unwrap();
    env.ok(&["build", "-t", "linked:2", ctx.to_str().unwrap()]);
    let script = format!("readlink /var/run; cat /run/f; cat {}/f", outside.display());
    let (code, out) = sh(&env, &[], "linked:2", &script);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["../run", "content", "content"], "{out}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "a COPY wrote outside the image");
}

#[test]
fn dockerignore_keeps_files_out_of_copy_dot() {
    let env = Env::new();
    env.site_image("base:1");
    let ctx = env.path("ctx");
    for f in ["index.html", "secret.txt", "keys/site.key", "deep/er/x.key", "keep.key", "node_modules/m.js"] {
        let p = ctx.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, f).unwrap();
    }
    fs::write(ctx.join(".dockerignore"), "secret.txt\n**/*.key\n!keep.key\nnode_modules\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM base:1\nCOPY . /app\n").unwrap();
    env.ok(&["build", "-t", "site:2", ctx.to_str().unwrap()]);
    let (code, out) = sh(&env, &[], "site:2", "cd /app && find . -type f | sort");
    assert_eq!(code, 0, "{out}");
    let files: Vec<&str> = out.lines().collect();
    assert_eq!(files, ["./.dockerignore", "./Dockerfile", "./index.html", "./keep.key"], "{out}");
    // Named one by one, an ignored file is not in the context either.
    fs::write(ctx.join("Dockerfile"), "FROM base:1\nCOPY secret.txt /s\n").unwrap();
    let err = env.fails(&["build", "-t", "site:3", ctx.to_str().unwrap()], 1);
    assert!(err.contains("excluded by .dockerignore"), "{err}");
}

/// A static binary for the busybox image, compiled from `source`.
fn static_binary(env: &Env, name: &str, source: &str) -> Option<PathBuf> {
    if !crate::util::have("gcc") {
        return None;
    }
    let src = env.path(&format!("{name}.c"));
    fs::write(&src, source).unwrap();
    let bin = env.path(name);
    crate::util::run(Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&bin).arg(&src));
    Some(bin)
}

#[test]
fn io_uring_and_calls_nobody_listed_are_refused() {
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    let Some(bin) = static_binary(
        &env,
        "calls",
        r#"#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
static void try(const char *name, long nr, long a0) {
    long rc = syscall(nr, a0, 0, 0, 0, 0, 0);
    printf("%s %s\n", name, rc == -1 ? strerror(errno) : "allowed");
}
int main(void) {
    try("io_uring_setup", 425, 8);
    try("personality-query", SYS_personality, 0xffffffffL);
    try("personality-other", SYS_personality, 0x0400000L);
    try("getpid", SYS_getpid, 0);
    try("clone3-unlisted", 435, 0);
    return 0;
}
"#,
    ) else {
        return;
    };
    fs::copy(&bin, rootfs.join("bin/calls")).unwrap();
    env.ok(&["import", rootfs.to_str().unwrap(), "calls:1"]);
    let out = env.ok(&["run", "--rm", "calls:1", "/bin/calls"]);
    assert!(out.contains("io_uring_setup Operation not permitted"), "{out}");
    assert!(out.contains("personality-query allowed"), "{out}");
    assert!(out.contains("personality-other Function not implemented"), "{out}");
    assert!(out.contains("getpid allowed"), "{out}");
    // A call this kernel has (it would answer EINVAL to these arguments) but nobody listed:
    // refused as if the kernel did not know it.
    assert!(out.contains("clone3-unlisted Function not implemented"), "{out}");
}

#[test]
fn other_local_users_read_nothing_under_the_root() {
    let env = Env::new();
    env.site_image("site:1");
    fs::create_dir_all(env.path("secret-site")).unwrap();
    env.ok(&["volume", "create", "private"]);
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "private:/data",
        "site:1",
        "sh",
        "-c",
        "echo dbpass > /data/world-readable.txt; chmod 644 /data/world-readable.txt",
    ]);
    env.ok(&["run", "-d", "--name", "svc", "-v", "private:/data", "site:1", "sleep", "60"]);
    env.ok(&["snapshot", "svc"]);
    // As nobody: every file under the root (volumes, layers, blobs, containers, the repository)
    // is out of reach; only the root itself can be traversed.
    let root = env.root();
    let script = format!(
        "n=0; for f in $(find {r} -type f 2>/dev/null); do head -c1 \"$f\" >/dev/null 2>&1 && {{ echo READ $f; n=$((n+1)); }}; done; \
         ls {r}/volumes >/dev/null 2>&1 && echo LISTED volumes; cat {r}/volumes/private/_data/world-readable.txt 2>/dev/null; echo n=$n",
        r = root.display()
    );
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.trim_end().ends_with("n=0"),
        "an unprivileged user read files under the root:\n{text}{}",
        stderr(&out)
    );
    assert!(!text.contains("LISTED") && !text.contains("dbpass"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    for d in ["images", "layers", "containers", "volumes", "tmp"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d} is {:o}", mode(&root.join(d)));
    }
    // The root can be traversed (for the shims' paths), not listed; the run root is private.
    assert_eq!(mode(&root), 0o711, "the root is {:o}", mode(&root));
    assert_eq!(mode(&env.path("run")) & 0o077, 0, "the run root is {:o}", mode(&env.path("run")));
    // Every blob of the image store is the owner's alone.
    let blobs = root.join("images/blobs/sha256");
    let mut n = 0;
    for e in fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{} is {:o}", p.display(), mode(&p));
        n += 1;
    }
    assert!(n > 3, "only {n} blobs under {}", blobs.display());
    // The repository's files too (the snapshot went to the default one under the root).
    let mut repo_files = 0;
    let mut stack = vec![root.join("repository")];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
                repo_files += 1;
            }
        }
    }
    assert!(repo_files > 3, "only {repo_files} repository files");
    env.ok(&["rm", "-f", "svc"]);
}

#[test]
fn a_shim_holds_no_secret_in_its_environment() {
    let env = Env::new();
    env.site_image("site:1");
    let id = env
        .lifeboat()
        .args(["run", "-d", "site:1", "sleep", "60"])
        .env("AWS_SECRET_ACCESS_KEY", "not-for-the-shim")
        .env("AWS_ACCESS_KEY_ID", "AKIDSHIM")
        .env("LIFEBOAT_PASSWORD", "hunter2")
        .env("RESTIC_PASSWORD", "hunter3")
        .output()
        .unwrap();
    assert!(id.status.success(), "{}", stderr(&id));
    let id = stdout(&id).trim().to_string();
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(env.root().join("containers").join(&id).join("state.json")).unwrap()).unwrap();
    for key in ["shim_pid", "pid"] {
        let pid = state[key].as_i64().unwrap_or_else(|| panic!("no {key} in {state}"));
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
        let text = String::from_utf8_lossy(&environ);
        for secret in ["not-for-the-shim", "AKIDSHIM", "hunter2", "hunter3", "AWS_", "PASSWORD"] {
            assert!(!text.contains(secret), "the {key} process holds {secret}: {text}");
        }
    }
    env.ok(&["rm", "-f", &id]);
}

/// In a network namespace of its own, with a non-loopback address on its loopback device:
/// a registry over self-signed HTTPS and one over plain HTTP, and what Lifeboat makes of each.
#[test]
fn registries_are_https_unless_told_and_self_signed_ones_work_without_verification() {
    if !crate::util::have("docker-registry") || !crate::util::have("openssl") {
        return;
    }
    let env = Env::new();
    env.site_image("site:1");
    let d = env.path("reg");
    fs::create_dir_all(d.join("tls-data")).unwrap();
    fs::create_dir_all(d.join("plain-data")).unwrap();
    let addr = "10.213.7.1";
    fs::write(
        d.join("tls.yml"),
        format!(
            "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {p}/tls-data}}}}\nhttp: {{addr: \"{addr}:5443\", tls: {{certificate: {p}/cert.pem, key: {p}/key.pem}}}}\n",
            p = d.display()
        ),
    )
    .unwrap();
    fs::write(
        d.join("plain.yml"),
        format!(
            "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {p}/plain-data}}}}\nhttp: {{addr: \"{addr}:5080\"}}\n",
            p = d.display()
        ),
    )
    .unwrap();
    let script = format!(
        r#"
ip link set lo up && ip addr add {addr}/32 dev lo
openssl req -x509 -newkey rsa:2048 -nodes -keyout {p}/key.pem -out {p}/cert.pem -days 1 -subj /CN={addr} -addext subjectAltName=IP:{addr} 2>/dev/null
docker-registry serve {p}/tls.yml >{p}/tls.log 2>&1 & a=$!
docker-registry serve {p}/plain.yml >{p}/plain.log 2>&1 & b=$!
for i in $(seq 100); do (echo >/dev/tcp/{addr}/5443) 2>/dev/null && (echo >/dev/tcp/{addr}/5080) 2>/dev/null && break; sleep 0.1; done
lb() {{ {bin} --root {root} --run-root {run} "$@"; }}
lb push site:1 {addr}:5443/site:1 >/dev/null 2>{p}/e1; echo "verified $? $(tr '\n' ' ' < {p}/e1)"
lb push --tls-verify=false site:1 {addr}:5443/site:1 >/dev/null 2>&1; echo "unverified $?"
lb rmi {addr}:5443/site:1 >/dev/null 2>&1
lb pull --tls-verify=false {addr}:5443/site:1 >/dev/null 2>&1; echo "pulled $?"
lb push site:1 {addr}:5080/site:1 >/dev/null 2>{p}/e2; echo "plain-refused $? $(tr '\n' ' ' < {p}/e2)"
lb push --plain-http site:1 {addr}:5080/site:1 >/dev/null 2>&1; echo "plain-allowed $?"
printf '[registries."{addr}:5080"]\nplain_http = true\n[registries."{addr}:5443"]\ntls_verify = false\n' > {p}/lifeboat.toml
LIFEBOAT_CONFIG={p}/lifeboat.toml lb push site:1 {addr}:5080/site:2 >/dev/null 2>&1; echo "configured-plain $?"
LIFEBOAT_CONFIG={p}/lifeboat.toml lb push site:1 {addr}:5443/site:2 >/dev/null 2>&1; echo "configured-unverified $?"
LIFEBOAT_CONFIG={p}/lifeboat.toml lb push --tls-verify=true site:1 {addr}:5443/site:3 >/dev/null 2>&1; echo "flag-over-config $?"
kill $a $b
"#,
        p = d.display(),
        bin = crate::util::BIN,
        root = env.root().display(),
        run = env.path("run").display(),
    );
    let out = Command::new("unshare").args(["-n", "bash", "-c", &script]).output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    let line =
        |k: &str| text.lines().find(|l| l.starts_with(k)).unwrap_or_else(|| panic!("no {k} in:\n{text}")).to_string();
    assert!(line("verified ").starts_with("verified 1") && line("verified ").contains("--tls-verify=false"), "{text}");
    assert_eq!(line("unverified "), "unverified 0", "{text}");
    assert_eq!(line("pulled "), "pulled 0", "{text}");
    let refused = line("plain-refused ");
    assert!(refused.starts_with("plain-refused 1") && refused.contains("--plain-http"), "{text}");
    assert_eq!(line("plain-allowed "), "plain-allowed 0", "{text}");
    // The configuration's [registries."HOST"] settings, and a flag over them.
    assert_eq!(line("configured-plain "), "configured-plain 0", "{text}");
    assert_eq!(line("configured-unverified "), "configured-unverified 0", "{text}");
    assert_eq!(line("flag-over-config "), "flag-over-config 1", "{text}");
}
