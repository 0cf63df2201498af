//! Hostile archives: each one is refused (or neutralised) with a clear error naming the entry,
//! nothing outside the target is created or changed, and the store is left exactly as it was.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::util::{Env, tree};

/// Builds a tar stream entry by entry with raw names, which the `tar` crate's safe setters
/// would refuse.
struct Evil {
    out: Vec<u8>,
}

impl Evil {
    fn new() -> Evil {
        Evil { out: Vec::new() }
    }

    fn entry(&mut self, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> &mut Self {
        if name.len() > 100 {
            self.long(b'L', name);
        }
        if link.len() > 100 {
            self.long(b'K', link);
        }
        let mut h = tar::Header::new_gnu();
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.data(data);
        self
    }

    fn long(&mut self, kind: u8, value: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(value.len() as u64 + 1);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        let mut v = value.to_vec();
        v.push(0);
        self.data(&v);
    }

    fn data(&mut self, data: &[u8]) {
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), tar::EntryType::Regular, b"", data)
    }
    fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), tar::EntryType::Directory, b"", b"")
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), tar::EntryType::Symlink, target.as_bytes(), b"")
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name.as_bytes(), tar::EntryType::Link, target.as_bytes(), b"")
    }

    /// A GNU sparse entry that claims `real_size` bytes while carrying one 512-byte block.
    fn sparse(&mut self, name: &str, real_size: u64) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(512);
        let gnu = h.as_gnu_mut().unwrap();
        octal(&mut gnu.realsize, real_size);
        octal(&mut gnu.sparse[0].offset, real_size - 512);
        octal(&mut gnu.sparse[0].numbytes, 512);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.data(&[b'x'; 512]);
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.out);
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }
}

/// A GNU numeric field: octal when it fits, else base-256 (high bit set, big-endian).
fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    if s.len() < field.len() {
        field[..s.len()].copy_from_slice(s.as_bytes());
        field[s.len()] = 0;
    } else {
        field.fill(0);
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
        field[0] |= 0x80;
    }
}

/// A fixture: a store with one image in it, and an "outside" directory with a victim file
/// that hostile archives aim at.
struct Fixture {
    env: Env,
}

impl Fixture {
    fn new() -> Fixture {
        let env = Env::new();
        let rootfs = env.busybox_rootfs("rootfs");
        env.ok(&["import", rootfs.to_str().unwrap(), "base:1"]);
        fs::create_dir_all(env.path("outside")).unwrap();
        fs::write(env.path("outside/victim"), "precious").unwrap();
        Fixture { env }
    }

    fn outside(&self) -> String {
        self.env.path("outside").to_str().unwrap().to_string()
    }

    /// Imports `archive`; asserts refusal (exit 4, message naming `entry`), an untouched
    /// outside directory, and an unchanged store.
    fn refused(&self, label: &str, archive: &[u8], entry: &str) {
        let path = self.env.path(&format!("{label}.tar"));
        fs::write(&path, archive).unwrap();
        let store_before = tree(&self.env.root());
        let outside_before = tree(&self.env.path("outside"));
        let err = self.env.fails(&["import", path.to_str().unwrap(), &format!("evil:{label}")], 4);
        assert!(err.contains(entry), "{label}: error does not name {entry:?}: {err}");
        assert_eq!(tree(&self.env.path("outside")), outside_before, "{label}: outside changed");
        assert_eq!(fs::read_to_string(self.env.path("outside/victim")).unwrap(), "precious", "{label}");
        assert_eq!(tree(&self.env.root()), store_before, "{label}: store changed");
        assert!(!Path::new("/tmp/lifeboat-pwned").exists(), "{label}");
    }
}

#[test]
fn dotdot_escape_is_refused() {
    let f = Fixture::new();
    f.refused(
        "dotdot",
        &Evil::new().file("ok.txt", b"x").file("../../../../outside/pwned", b"x").finish(),
        "../../../../outside/pwned",
    );
    f.refused("dotdot-mid", &Evil::new().file("a/../../outside/pwned", b"x").finish(), "a/../../outside/pwned");
}

#[test]
fn absolute_path_is_refused() {
    let f = Fixture::new();
    let target = format!("{}/pwned", f.outside());
    f.refused("absolute", &Evil::new().file(&target, b"x").finish(), &target);
}

#[test]
fn write_through_symlink_is_refused() {
    let f = Fixture::new();
    let archive =
        Evil::new().symlink("link", &f.outside()).file("link/pwned", b"x").file("link/victim", b"overwritten").finish();
    f.refused("symlink-write", &archive, "link/pwned");
    // A relative symlink climbing out, then a write through it.
    let archive =
        Evil::new().dir("d").symlink("d/up", "../../../../../../..").file("d/up/tmp/lifeboat-pwned", b"x").finish();
    f.refused("symlink-relative", &archive, "d/up/tmp/lifeboat-pwned");
}

#[test]
fn hardlink_to_outside_is_refused() {
    let f = Fixture::new();
    f.refused("hardlink-dotdot", &Evil::new().hardlink("h", "../../outside/victim").finish(), "\"h\"");
    let abs = format!("{}/victim", f.outside());
    f.refused("hardlink-abs", &Evil::new().hardlink("h", &abs).finish(), "\"h\"");
    // Through a symlink to outside.
    let archive = Evil::new().symlink("s", &f.outside()).hardlink("h", "s/victim").finish();
    f.refused("hardlink-via-symlink", &archive, "\"h\"");
}

#[test]
fn symlink_loop_is_refused() {
    let f = Fixture::new();
    let archive = Evil::new().symlink("a", "b").symlink("b", "a").file("a/x", b"x").finish();
    f.refused("symlink-loop", &archive, "a/x");
}

#[test]
fn overlong_names_are_refused() {
    let f = Fixture::new();
    let long_component = format!("d/{}", "n".repeat(300));
    f.refused("long-component", &Evil::new().file(&long_component, b"x").finish(), "more than the 255 allowed");
    let long_path = (0..50)
        .map(|_| "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmno")
        .collect::<Vec<_>>()
        .join("/");
    f.refused("long-path", &Evil::new().file(&long_path, b"x").finish(), "more than the 4095 allowed");
}

#[test]
fn duplicate_entry_turning_a_dir_into_a_link_is_refused() {
    let f = Fixture::new();
    let archive = Evil::new().dir("d").file("d/ok", b"1").symlink("d", &f.outside()).file("d/pwned", b"x").finish();
    f.refused("dir-to-link", &archive, "d/pwned");
}

#[test]
fn whiteouts_of_dotdot_or_through_symlinks_are_refused() {
    let f = Fixture::new();
    f.refused("whiteout-dotdot", &Evil::new().file(".wh...", b"").finish(), ".wh...");
    f.refused("whiteout-dotdot-sub", &Evil::new().dir("a").file("a/.wh...", b"").finish(), "a/.wh...");
    let archive = Evil::new().symlink("s", &f.outside()).file("s/.wh.victim", b"").finish();
    f.refused("whiteout-via-symlink", &archive, "s/.wh.victim");
    let archive = Evil::new().symlink("s", &f.outside()).file("s/.wh..wh..opq", b"").finish();
    f.refused("opaque-via-symlink", &archive, "s/.wh..wh..opq");
}

#[test]
fn huge_sparse_claim_is_refused() {
    let f = Fixture::new();
    // 1 PiB: more than any disk here has free.
    f.refused("sparse-bomb", &Evil::new().sparse("big", 1 << 50).finish(), "\"big\"");
    // A claim that fits the disk is neutralised instead: written as a hole, costing nothing.
    let path = f.env.path("sparse-ok.tar");
    fs::write(&path, Evil::new().sparse("big", 1 << 30).finish()).unwrap();
    f.env.ok(&["import", path.to_str().unwrap(), "sparse:1"]);
    let layers = f.env.root().join("layers");
    let big = fs::read_dir(&layers).unwrap().map(|e| e.unwrap().path().join("diff/big")).find(|p| p.exists()).unwrap();
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(&big).unwrap();
    assert_eq!(m.len(), 1 << 30);
    assert!(m.blocks() * 512 < 1 << 20, "1 GiB claim used {} bytes of disk", m.blocks() * 512);
}

#[test]
fn truncated_archive_is_refused() {
    let f = Fixture::new();
    let mut archive = Evil::new().file("a", &[1u8; 4000]).finish();
    archive.truncate(1500);
    f.refused("truncated", &archive, "\"a\"");
}

#[test]
fn device_node_as_non_root_is_refused() {
    let f = Fixture::new();
    let env = &f.env;
    // A store owned by nobody, used by nobody.
    let root = env.path("nobody-root");
    fs::create_dir_all(&root).unwrap();
    let dir = env.dir.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    crate::util::run(Command::new("chown").arg("65534:65534").arg(&root));
    let mut archive = Evil::new();
    archive.file("ok", b"x");
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..3].copy_from_slice(b"sda");
    h.set_entry_type(tar::EntryType::Block);
    h.set_mode(0o666);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h.set_device_major(8).unwrap();
    h.set_device_minor(0).unwrap();
    h.set_cksum();
    archive.out.extend_from_slice(h.as_bytes());
    let path = env.path("dev.tar");
    fs::write(&path, archive.finish()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(crate::util::BIN)
        .arg("--root")
        .arg(&root)
        .args(["import", path.to_str().unwrap(), "dev:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("\"sda\"") && err.contains("device"), "{err}");
    assert!(fs::read_dir(root.join("layers")).unwrap().next().is_none());
    assert!(fs::read_dir(root.join("tmp")).unwrap().next().is_none());
}

#[test]
fn hostile_layer_inside_a_loaded_archive_leaves_the_store_unchanged() {
    let f = Fixture::new();
    let env = &f.env;
    // A docker-archive whose second layer escapes: the first, valid layer must not stay behind.
    let good = Evil::new().file("good.txt", b"fine").finish();
    let bad = Evil::new().file("../escape", b"x").finish();
    let diff = |b: &[u8]| format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b)));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff(&good), diff(&bad)]}
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": ["evil:load"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("config.json", config_bytes.as_slice()),
        ("l1/layer.tar", &good),
        ("l2/layer.tar", &bad),
        ("manifest.json", &serde_json::to_vec(&manifest).unwrap()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let path = env.path("evil-load.tar");
    fs::write(&path, b.into_inner().unwrap()).unwrap();
    let before = tree(&env.root());
    let err = env.fails(&["load", "-i", path.to_str().unwrap()], 4);
    assert!(err.contains("../escape"), "{err}");
    assert_eq!(tree(&env.root()), before);

    // manifest.json pointing outside the archive resolves inside it (and finds nothing).
    let manifest = serde_json::json!([{"Config": "../../../../etc/passwd", "RepoTags": ["evil:cfg"], "Layers": []}]);
    let mut b = tar::Builder::new(Vec::new());
    let data = serde_json::to_vec(&manifest).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "manifest.json", data.as_slice()).unwrap();
    fs::write(&path, b.into_inner().unwrap()).unwrap();
    let err = env.fails(&["load", "-i", path.to_str().unwrap()], 4);
    assert!(err.contains("etc/passwd"), "{err}");
    assert_eq!(tree(&env.root()), before);
}

/// An OCI archive whose descriptors lie about sizes: a layer declared 2^63 bytes, or a few
/// bytes short, and a manifest declared longer than it is. Each is refused (4), the store is
/// left as it was, and nothing reads past what was declared.
#[test]
fn descriptor_sizes_that_lie_are_refused() {
    let f = Fixture::new();
    let env = &f.env;
    let sha = |b: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b));
    let layer = Evil::new().file("good.txt", b"fine").finish();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&layer))]}
    }))
    .unwrap();
    let archive = |layer_size: u64, manifest_extra: u64| {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", sha(&layer)), "size": layer_size}]
        }))
        .unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha(&manifest)),
                "size": manifest.len() as u64 + manifest_extra, "annotations": {"org.opencontainers.image.ref.name": "liar:1"}}]
        }))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json".to_string(), index),
            (format!("blobs/sha256/{}", sha(&manifest)), manifest.clone()),
            (format!("blobs/sha256/{}", sha(&config)), config.clone()),
            (format!("blobs/sha256/{}", sha(&layer)), layer.clone()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    };
    let path = env.path("liar.tar");
    let before = tree(&env.root());
    for (layer_size, manifest_extra, what) in [
        (1u64 << 63, 0, "descriptor says 9223372036854775808 bytes"),
        (layer.len() as u64 - 10, 0, "more than"),
        (layer.len() as u64, 7, "descriptor says"),
    ] {
        fs::write(&path, archive(layer_size, manifest_extra)).unwrap();
        let err = env.fails(&["load", "-i", path.to_str().unwrap()], 4);
        assert!(err.contains(what), "{what}: {err}");
        assert_eq!(tree(&env.root()), before, "{what}: the store changed");
    }
    // Told the truth, the same archive loads.
    fs::write(&path, archive(layer.len() as u64, 0)).unwrap();
    env.ok(&["load", "-i", path.to_str().unwrap()]);
    assert!(env.ok(&["images"]).contains("liar"));
}
