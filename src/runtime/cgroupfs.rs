//! The host's cgroup filesystems, and the view of them a container gets.
//!
//! A container sees the cgroup filesystem read-only and only its own cgroup, as with Docker:
//! it lives in a cgroup namespace (so `/proc/self/cgroup` shows `/`), and
//!
//! - on a cgroup v2 host, `/sys/fs/cgroup` is a fresh, read-only cgroup2 mount made inside that
//!   namespace (its root is the container's cgroup);
//! - on a v1 or hybrid host, `/sys/fs/cgroup` is a read-only directory holding, for each v1
//!   hierarchy whose controllers the runtime places the container in, a read-only bind of the
//!   container's own cgroup directory, plus the host's symlinks for co-mounted controllers
//!   (`cpu -> cpu,cpuacct`). Named hierarchies (`name=systemd`) and the hybrid host's cgroup2
//!   mount are not shown: the container is not in a cgroup of its own there, and their roots
//!   are the host's.
//!
//! Nothing here mounts: [`view`] returns the mounts as OCI spec entries for the runtime.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::kernel::Kernel;

/// The v1 controllers the runtime (libcgroups) puts every container in a cgroup of its own.
const PLACED_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
];

/// How the host mounts cgroups under `/sys/fs/cgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// cgroup2 alone at `/sys/fs/cgroup`.
    Unified,
    /// v1 hierarchies (and maybe a cgroup2 mount beside them).
    V1 { hierarchies: Vec<Hierarchy>, symlinks: Vec<(String, String)> },
}

/// A v1 hierarchy mounted at `/sys/fs/cgroup/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub name: String,
    pub mount_point: PathBuf,
    /// Its controllers (`name=systemd` for a named hierarchy).
    pub controllers: Vec<String>,
}

impl Hierarchy {
    /// Whether the container has a cgroup of its own in it.
    fn placed(&self) -> bool {
        !self.controllers.is_empty() && self.controllers.iter().all(|c| PLACED_CONTROLLERS.contains(&c.as_str()))
    }
}

impl Layout {
    /// This host's layout, from `/proc/self/mountinfo` and the symlinks in `/sys/fs/cgroup`.
    pub fn of_host(kernel: &dyn Kernel) -> io::Result<Layout> {
        let mountinfo = kernel.read(Path::new("/proc/self/mountinfo"))?;
        let mut layout = Layout::parse(&mountinfo);
        if let Layout::V1 { symlinks, .. } = &mut layout {
            // The co-mount links are a convenience: without them the view still works.
            *symlinks = kernel.links(Path::new("/sys/fs/cgroup")).unwrap_or_default();
        }
        Ok(layout)
    }

    /// The layout `mountinfo` describes (symlinks are not in it).
    pub fn parse(mountinfo: &str) -> Layout {
        let mut hierarchies = Vec::new();
        let mut unified_root = false;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mount_point = left.split(' ').nth(4).unwrap_or_default();
            let mut right = right.split(' ');
            let (fstype, super_opts) = (right.next().unwrap_or_default(), right.nth(1).unwrap_or_default());
            match fstype {
                "cgroup2" if mount_point == "/sys/fs/cgroup" => unified_root = true,
                "cgroup" => {
                    let Some(name) = mount_point.strip_prefix("/sys/fs/cgroup/").filter(|n| !n.contains('/')) else {
                        continue;
                    };
                    let controllers = super_opts
                        .split(',')
                        .filter(|o| PLACED_CONTROLLERS.contains(o) || o.starts_with("name=") || is_controller(o))
                        .map(String::from)
                        .collect();
                    hierarchies.push(Hierarchy {
                        name: name.to_string(),
                        mount_point: mount_point.into(),
                        controllers,
                    });
                }
                _ => {}
            }
        }
        // cgroup2 at /sys/fs/cgroup is a v2 host, whatever named v1 hierarchies are mounted
        // beside it (the runtime uses v2 there, as libcgroups decides from the same mount).
        if unified_root {
            return Layout::Unified;
        }
        hierarchies.sort_by(|a, b| a.name.cmp(&b.name));
        Layout::V1 { hierarchies, symlinks: Vec::new() }
    }
}

/// Super options of a v1 cgroup mount that name a controller (not a mount flag).
fn is_controller(opt: &str) -> bool {
    !matches!(opt, "rw" | "ro" | "noprefix" | "xattr" | "cpuset_v2_mode" | "favordynmods")
        && !opt.starts_with("release_agent=")
        && !opt.contains('=')
}

/// The container's cgroup mounts for `layout`, its cgroup at `cgroups_path` (e.g.
/// `/lifeboat/<id>`). On v1 hosts, `skeleton` is a directory made by [`skeleton`] that becomes
/// the read-only `/sys/fs/cgroup`.
pub fn view(layout: &Layout, cgroups_path: &str, skeleton: &Path) -> Vec<Value> {
    let flags = ["nosuid", "noexec", "nodev"];
    match layout {
        Layout::Unified => vec![json!({
            "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        })],
        Layout::V1 { hierarchies, .. } => {
            let mut mounts = vec![json!({
                "destination": "/sys/fs/cgroup", "type": "bind", "source": skeleton,
                "options": ["bind", "ro", flags[0], flags[1], flags[2]],
            })];
            let own = cgroups_path.trim_start_matches('/');
            for h in hierarchies.iter().filter(|h| h.placed()) {
                mounts.push(json!({
                    "destination": format!("/sys/fs/cgroup/{}", h.name),
                    "type": "bind",
                    "source": h.mount_point.join(own),
                    "options": ["bind", "ro", flags[0], flags[1], flags[2]],
                }));
            }
            mounts
        }
    }
}

/// The directory that becomes a v1 container's `/sys/fs/cgroup`: an empty directory per shown
/// hierarchy and the host's co-mount symlinks, made once under `dir` (the run root) and shared
/// by every container. None on a v2 host.
pub fn skeleton(layout: &Layout, dir: &Path) -> io::Result<Option<PathBuf>> {
    let Layout::V1 { hierarchies, symlinks } = layout else { return Ok(None) };
    let shown: Vec<&Hierarchy> = hierarchies.iter().filter(|h| h.placed()).collect();
    let mut key = blake3::Hasher::new();
    for h in &shown {
        key.update(h.name.as_bytes());
        key.update(b"\0");
    }
    let links: Vec<&(String, String)> =
        symlinks.iter().filter(|(_, target)| shown.iter().any(|h| &h.name == target)).collect();
    for (name, target) in &links {
        key.update(format!("{name}->{target}\0").as_bytes());
    }
    let path = dir.join(format!("cgroup-view-{}", &key.finalize().to_hex()[..16]));
    if path.is_dir() {
        return Ok(Some(path));
    }
    crate::fsutil::private_dir(dir)?;
    let tmp = dir.join(format!(".cgroup-view-{}", crate::fsutil::random_hex(8)));
    let made = (|| {
        fs::create_dir_all(&tmp)?;
        for h in &shown {
            fs::create_dir(tmp.join(&h.name))?;
        }
        for (name, target) in &links {
            std::os::unix::fs::symlink(target, tmp.join(name))?;
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &path)
    })();
    match made {
        Ok(()) => Ok(Some(path)),
        // Another container made it first.
        Err(_) if path.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(Some(path))
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 31 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,relatime shared:8 - tmpfs tmpfs rw,mode=755
32 30 0:28 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/rdma rw,relatime shared:14 - cgroup cgroup rw,rdma
37 30 0:33 / /sys/fs/cgroup/pids rw,relatime shared:15 - cgroup cgroup rw,pids
";

    #[test]
    fn hybrid_hosts_show_only_the_hierarchies_the_container_has_a_cgroup_in() {
        let mut layout = Layout::parse(HYBRID);
        let Layout::V1 { hierarchies, symlinks } = &mut layout else { panic!("{layout:?}") };
        let names: Vec<&str> = hierarchies.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory", "pids", "rdma", "systemd"]);
        assert_eq!(hierarchies[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(hierarchies[4].controllers, ["name=systemd"]);
        symlinks.push(("cpu".into(), "cpu,cpuacct".into()));
        symlinks.push(("net_cls".into(), "net_cls,net_prio".into()));
        let dir = tempfile::tempdir().unwrap();
        let skeleton = skeleton(&layout, dir.path()).unwrap().unwrap();
        let mounts = view(&layout, "/lifeboat/abc", &skeleton);
        let dests: Vec<&str> = mounts.iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(
            dests,
            ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"]
        );
        assert_eq!(mounts[2]["source"], "/sys/fs/cgroup/memory/lifeboat/abc");
        assert!(mounts.iter().all(|m| m["options"].as_array().unwrap().contains(&json!("ro"))));
        // The skeleton: a directory per shown hierarchy, the co-mount link that points at one.
        let mut entries: Vec<String> =
            fs::read_dir(&skeleton).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        entries.sort();
        assert_eq!(entries, ["cpu", "cpu,cpuacct", "memory", "pids"]);
        assert_eq!(fs::read_link(skeleton.join("cpu")).unwrap(), Path::new("cpu,cpuacct"));
        // Made once, then shared.
        assert_eq!(self::skeleton(&layout, dir.path()).unwrap().unwrap(), skeleton);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_unified_host_gets_a_read_only_namespaced_cgroup2_mount() {
        let layout = Layout::parse("30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:8 - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(layout, Layout::Unified);
        // A named v1 hierarchy beside it (for old systemd containers) does not make it v1.
        let with_named = "30 25 0:26 / /sys/fs/cgroup rw shared:8 - cgroup2 cgroup2 rw\n\
                          40 30 0:40 / /sys/fs/cgroup/systemd rw shared:9 - cgroup cgroup rw,name=systemd\n";
        assert_eq!(Layout::parse(with_named), Layout::Unified);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(skeleton(&layout, dir.path()).unwrap(), None);
        let mounts = view(&layout, "/lifeboat/abc", Path::new("/unused"));
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0]["type"], "cgroup");
        assert!(mounts[0]["options"].as_array().unwrap().contains(&json!("ro")));
    }
}
