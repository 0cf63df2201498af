//! The image commands end to end: import, images, tag, rmi, history, inspect, save/load round
//! trips, prune, concurrency and exit codes.

use std::fs;
use std::process::{Command, Stdio};

use crate::util::{Env, assert_same_tree, tree};

fn image_id(out: &str) -> String {
    out.trim().to_string()
}

#[test]
fn import_directory_then_list_tag_history_inspect() {
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    let id = image_id(&env.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "website:1",
        "--change",
        r#"CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]"#,
        "--change",
        "EXPOSE 80",
        "--change",
        "ENV SITE=library",
        "-m",
        "first import",
    ]));
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let images = env.ok(&["images"]);
    let lines: Vec<&str> = images.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID") && lines[0].ends_with("SIZE"),
        "{images}"
    );
    assert!(lines[1].starts_with("website ") && lines[1].contains(&id[7..19]), "{images}");

    env.ok(&["tag", "website:1", "127.0.0.1:5000/library/website:stable"]);
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["images", "--format", "json"])).unwrap();
    let repos: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{}:{}", r["Repository"].as_str().unwrap(), r["Tag"].as_str().unwrap()))
        .collect();
    assert_eq!(repos.len(), 2, "{repos:?}");
    assert!(
        repos.contains(&"website:1".to_string())
            && repos.contains(&"127.0.0.1:5000/library/website:stable".to_string()),
        "{repos:?}"
    );
    assert!(json[0]["Size"].as_u64().unwrap() > 1_000_000);

    // Filtering by repository, and -q prints each ID once.
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 1);
    assert_eq!(env.ok(&["images", "website"]).lines().count(), 2);

    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "website:1"])).unwrap();
    let cfg = &inspect[0]["Config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["/bin/httpd", "-f", "-p", "80", "-h", "/www"]));
    assert_eq!(cfg["Env"], serde_json::json!(["SITE=library"]));
    assert!(cfg["ExposedPorts"]["80/tcp"].is_object());
    assert_eq!(inspect[0]["Id"], id.as_str());

    let history = env.ok(&["history", "website:1"]);
    assert!(history.contains("first import") && history.contains("lifeboat import"), "{history}");

    // The image unpacks to exactly the imported tree.
    let out = env.path("unpacked");
    env.ok(&["image", "unpack", "website:1", out.to_str().unwrap()]);
    assert_same_tree(&rootfs, &out);
}

#[test]
fn import_tarball_and_stdin_give_the_same_content() {
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    let tarball = env.path("rootfs.tar.gz");
    crate::util::run(Command::new("tar").arg("-C").arg(&rootfs).arg("-czf").arg(&tarball).arg("."));
    env.ok(&["import", tarball.to_str().unwrap(), "from-file"]);

    let file = fs::File::open(&tarball).unwrap();
    let out = env.lifeboat().args(["import", "-", "from-stdin:2"]).stdin(Stdio::from(file)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for name in ["from-file", "from-stdin:2"] {
        let dir = env.path(&format!("out-{}", name.replace(':', "-")));
        env.ok(&["image", "unpack", name, dir.to_str().unwrap()]);
        assert_same_tree(&rootfs, &dir);
    }
    // Same bytes in, same layer: the second import stored no new layer.
    let layers = fs::read_dir(env.root().join("layers")).unwrap().count();
    assert_eq!(layers, 1);
}

#[test]
fn zstd_layers_round_trip() {
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    env.ok(&["import", "--compression", "zstd", rootfs.to_str().unwrap(), "z:1"]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "z:1"])).unwrap();
    assert_eq!(inspect[0]["Manifest"]["Layers"][0]["MediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
    let out = env.path("out");
    env.ok(&["image", "unpack", "z:1", out.to_str().unwrap()]);
    assert_same_tree(&rootfs, &out);
}

#[test]
fn rmi_and_prune_delete_only_unreferenced_data() {
    let env = Env::new();
    let a = env.busybox_rootfs("a");
    let b = env.busybox_rootfs("b");
    fs::write(b.join("www/index.html"), "other site").unwrap();
    env.ok(&["import", a.to_str().unwrap(), "a:1"]);
    env.ok(&["import", b.to_str().unwrap(), "b:1"]);
    env.ok(&["tag", "a:1", "a:2"]);
    let blobs = || fs::read_dir(env.root().join("images/blobs/sha256")).unwrap().count();
    assert_eq!(blobs(), 6);

    // Two names: removing by ID needs -f; removing one name keeps the image.
    let id = env.ok(&["images", "-q", "a"]).trim().to_string();
    let err = env.fails(&["rmi", &id], 5);
    assert!(err.contains("several names"), "{err}");
    let out = env.ok(&["rmi", "a:2"]);
    assert!(out.contains("Untagged: a:2") && !out.contains("Deleted"), "{out}");
    assert_eq!(blobs(), 6);
    let out = env.ok(&["rmi", "a:1"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    assert_eq!(blobs(), 3);
    assert_eq!(fs::read_dir(env.root().join("layers")).unwrap().count(), 1);

    // b still unpacks after a's removal.
    let out = env.path("out");
    env.ok(&["image", "unpack", "b:1", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(out.join("www/index.html")).unwrap(), "other site");

    // Re-tagging leaves the old image dangling; prune removes it and leftovers in tmp/.
    env.ok(&["import", a.to_str().unwrap(), "b:1"]);
    assert!(env.ok(&["images"]).contains("<none>"));
    fs::create_dir_all(env.root().join("tmp/layer-deadbeef/diff")).unwrap();
    let out = env.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Removed 1 images"), "{out}");
    assert!(!env.ok(&["images"]).contains("<none>"));
    assert_eq!(fs::read_dir(env.root().join("tmp")).unwrap().count(), 0);
    assert_eq!(blobs(), 3);
}

#[test]
fn exit_codes_for_missing_and_invalid() {
    let env = Env::new();
    let err = env.fails(&["inspect", "nope:1"], 3);
    assert!(err.contains("no such image: nope:1"), "{err}");
    env.fails(&["rmi", "nope"], 3);
    let err = env.fails(&["tag", "nope", "Bad:Name"], 2);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = env.fails(&["import", env.path("missing.tar").to_str().unwrap(), "x"], 3);
    assert!(err.contains("missing.tar"), "{err}");
    let err = env.fails(&["import", "/etc/hostname", "x", "--change", "RUN true"], 2);
    assert!(err.contains("RUN"), "{err}");
    env.fails(&["no-such-command"], 2);
}

#[test]
fn help_lists_every_command_with_examples() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    let commands = [
        "run",
        "ps",
        "logs",
        "exec",
        "stop",
        "start",
        "restart",
        "kill",
        "rm",
        "pause",
        "unpause",
        "top",
        "stats",
        "port",
        "snapshot",
        "snapshots",
        "restore",
        "import",
        "images",
        "tag",
        "rmi",
        "history",
        "inspect",
        "save",
        "load",
    ];
    for cmd in commands.iter().chain(&["volume", "repo", "image"]) {
        assert!(help.lines().any(|l| l.trim_start().starts_with(cmd)), "{cmd} missing from --help:\n{help}");
    }
    assert!(!help.contains("shim"), "the internal shim command is listed:\n{help}");
    for cmd in commands {
        let h = env.ok(&[cmd, "--help"]);
        assert!(h.contains("Examples:\n  lifeboat"), "{cmd} --help has no example:\n{h}");
    }
    for (group, subs) in [
        ("image", &["ls", "rm", "prune", "unpack", "import", "inspect", "history", "tag", "save", "load"][..]),
        ("volume", &["create", "ls", "inspect", "rm", "prune"][..]),
        ("repo", &["init", "info", "stats", "unlock"][..]),
    ] {
        for sub in subs {
            let h = env.ok(&[group, sub, "--help"]);
            assert!(h.contains("Examples:"), "{group} {sub} --help has no example:\n{h}");
        }
    }
}

#[test]
fn concurrent_imports_do_not_corrupt_the_store() {
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    env.ok(&["images"]); // create the store
    let children: Vec<_> = (0..8)
        .map(|i| {
            fs::write(rootfs.join(format!("www/page{i}.html")), format!("page {i}")).unwrap();
            let tar = env.path(&format!("r{i}.tar"));
            crate::util::run(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."));
            env.lifeboat()
                .args(["import", tar.to_str().unwrap(), &format!("site:{i}")])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["images", "--format", "json"])).unwrap();
    let mut tags: Vec<String> =
        json.as_array().unwrap().iter().map(|r| r["Tag"].as_str().unwrap().to_string()).collect();
    tags.sort();
    assert_eq!(tags, (0..8).map(|i| i.to_string()).collect::<Vec<_>>());
    // Every image is complete.
    for i in 0..8 {
        let out = env.path(&format!("out{i}"));
        env.ok(&["image", "unpack", &format!("site:{i}"), out.to_str().unwrap()]);
        assert_eq!(fs::read_to_string(out.join(format!("www/page{i}.html"))).unwrap(), format!("page {i}"));
    }
}

#[test]
fn save_and_load_round_trip_in_both_formats() {
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    env.ok(&["import", rootfs.to_str().unwrap(), "website:1", "--change", "CMD [\"/bin/sh\"]"]);
    for format in ["oci-archive", "docker-archive"] {
        let archive = env.path(&format!("{format}.tar"));
        env.ok(&["save", "--format", format, "-o", archive.to_str().unwrap(), "website:1"]);
        let other = Env::new();
        let out = other.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out.trim(), "Loaded image: website:1", "{format}");
        let dir = other.path("out");
        other.ok(&["image", "unpack", "website:1", dir.to_str().unwrap()]);
        assert_same_tree(&rootfs, &dir);
        let inspect: serde_json::Value = serde_json::from_str(&other.ok(&["inspect", "website:1"])).unwrap();
        assert_eq!(inspect[0]["Config"]["Cmd"], serde_json::json!(["/bin/sh"]), "{format}");
    }
    // Loading the same archive twice adds nothing new.
    let archive = env.path("oci-archive.tar");
    let before = tree(&env.root().join("images/blobs"));
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(before, tree(&env.root().join("images/blobs")));
}

#[test]
fn overlay_upper_dir_becomes_a_layer_with_whiteouts() {
    use lifeboat::image::layer::{self, ApplyOptions, TreeMode, WhiteoutMode};
    let env = Env::new();
    let (lower, upper, work, merged) = (env.path("lower"), env.path("upper"), env.path("work"), env.path("merged"));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    fs::create_dir_all(lower.join("d/sub")).unwrap();
    fs::write(lower.join("a"), "old").unwrap();
    fs::write(lower.join("gone"), "bye").unwrap();
    fs::write(lower.join("d/x"), "x").unwrap();
    fs::write(lower.join("d/sub/y"), "y").unwrap();
    fs::write(lower.join("keep"), "keep").unwrap();
    let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    crate::util::run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&merged));
    fs::write(merged.join("a"), "new").unwrap();
    fs::remove_file(merged.join("gone")).unwrap();
    fs::remove_dir_all(merged.join("d")).unwrap();
    fs::create_dir_all(merged.join("d")).unwrap();
    fs::write(merged.join("d/z"), "z").unwrap();
    fs::write(merged.join("added"), "added").unwrap();
    let expected = tree(&merged);
    crate::util::run(Command::new("umount").arg(&merged));

    let (tar, _) = layer::write_tree(&upper, Vec::new(), TreeMode::OverlayUpper).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&".wh.gone".to_string()), "{names:?}");
    assert!(names.contains(&"d/.wh..wh..opq".to_string()), "{names:?}");
    // The same tree gives the same bytes.
    assert_eq!(layer::write_tree(&upper, Vec::new(), TreeMode::OverlayUpper).unwrap().0, tar);

    // Lower + diff applied = what the container saw.
    let out = env.path("out");
    fs::create_dir_all(&out).unwrap();
    let (base, _) = layer::write_tree(&lower, Vec::new(), TreeMode::Plain).unwrap();
    let apply = ApplyOptions { whiteouts: WhiteoutMode::Apply, max_file_size: None, owner: None, keep_kinds: false };
    layer::apply_layer(&base[..], &out, &apply).unwrap();
    layer::apply_layer(&tar[..], &out, &apply).unwrap();
    assert_eq!(tree(&out), expected);

    // Unpacked for overlay use instead, the markers become overlay whiteouts again.
    let stacked = env.path("stacked");
    fs::create_dir_all(&stacked).unwrap();
    layer::apply_layer(&tar[..], &stacked, &ApplyOptions::default()).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(stacked.join("gone")).unwrap().file_type().is_char_device());
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(stacked.join("d"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
}

#[test]
fn devices_fifos_and_xattrs_survive_import_and_unpack() {
    let env = Env::new();
    let rootfs = env.busybox_rootfs("rootfs");
    fs::create_dir_all(rootfs.join("dev")).unwrap();
    crate::util::run(Command::new("mknod").arg(rootfs.join("dev/null")).args(["c", "1", "3"]));
    crate::util::run(Command::new("mkfifo").arg(rootfs.join("srv/queue")));
    rustix::fs::lsetxattr(
        rootfs.join("www/index.html"),
        "user.lifeboat.note",
        b"catalogue",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::lsetxattr(
        rootfs.join("bin/busybox"),
        "security.capability",
        &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    env.ok(&["import", rootfs.to_str().unwrap(), "dev:1"]);
    let out = env.path("out");
    env.ok(&["image", "unpack", "dev:1", out.to_str().unwrap()]);
    assert_same_tree(&rootfs, &out);
    let mut buf = [0u8; 64];
    let n = rustix::fs::lgetxattr(out.join("www/index.html"), "user.lifeboat.note", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"catalogue");
    let n = rustix::fs::lgetxattr(out.join("bin/busybox"), "security.capability", &mut buf).unwrap();
    assert_eq!(n, 20);
}
