//! A container's root filesystem: an overlay of the image's unpacked layers with a private
//! upper directory, plus the small files Docker generates (/etc/hosts, hostname, resolv.conf).
//!
//! `plan` describes the mount as data (so it is testable); `mount` and `unmount` apply it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::kernel::Kernel;
use crate::fsutil::scope::Scope;
use crate::image::{Digest, Store};

/// An overlay mount, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlan {
    pub target: PathBuf,
    /// Lower directories, top first (overlayfs order).
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Skip every sync (overlayfs `volatile`): for a root filesystem thrown away when its
    /// container ends. Unmounting a normal overlay syncs the whole filesystem under it.
    pub volatile: bool,
}

impl OverlayPlan {
    /// The mount data string. Index and redirect features stay off so layers remain plain
    /// directories that any kernel reads the same way.
    pub fn options(&self) -> String {
        let lower: Vec<String> = self.lower.iter().map(|p| escape(p)).collect();
        format!(
            "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off{}",
            lower.join(":"),
            escape(&self.upper),
            escape(&self.work),
            if self.volatile { ",volatile" } else { "" }
        )
    }
}

fn escape(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "\\\\").replace(':', "\\:").replace(',', "\\,")
}

/// The plan for a directory `dir` over `layers` (bottom to top): mounted at `dir/rootfs`, its
/// changes in `dir/upper`. An image with no layers gets an empty lower directory.
pub fn plan(dir: &Path, layers: &[PathBuf]) -> OverlayPlan {
    let mut lower: Vec<PathBuf> = layers.iter().rev().cloned().collect();
    if lower.is_empty() {
        lower.push(dir.join("empty"));
    }
    OverlayPlan { target: dir.join("rootfs"), lower, upper: dir.join("upper"), work: dir.join("work"), volatile: false }
}

impl OverlayPlan {
    /// A container's root filesystem: its image's unpacked layers (`layers`, diff IDs bottom to
    /// top) under its own upper directory in `dir`. With `discard` (`run --rm`), the changes go
    /// with the container, so nothing is synced.
    pub fn for_container(store: &Store, dir: &Path, layers: &[Digest], discard: bool) -> OverlayPlan {
        let lowers: Vec<PathBuf> = layers.iter().map(|d| store.layer_diff_dir(d)).collect();
        OverlayPlan { volatile: discard, ..plan(dir, &lowers) }
    }

    /// A look at `layers` merged, for reading (a build's `COPY --from`): in the scratch
    /// directory `dir`, never written, so never synced.
    pub fn for_reading(store: &Store, dir: &Path, layers: &[Digest]) -> OverlayPlan {
        OverlayPlan::for_container(store, dir, layers, true)
    }
}

pub fn is_mounted(kernel: &dyn Kernel, target: &Path) -> bool {
    kernel.is_mount_root(target)
}

/// Applies a plan: makes its directories and mounts the overlay (nothing if it is mounted
/// already).
pub fn mount(kernel: &dyn Kernel, plan: &OverlayPlan) -> io::Result<()> {
    for d in [&plan.target, &plan.upper, &plan.work] {
        fs::create_dir_all(d)?;
    }
    for l in &plan.lower {
        if !l.is_dir() {
            fs::create_dir_all(l)?;
        }
    }
    if kernel.is_mount_root(&plan.target) {
        return Ok(());
    }
    let options = plan.options();
    if options.len() >= 4000 {
        return Err(io::Error::other(format!("too many layers for one overlay mount ({})", plan.lower.len())));
    }
    let mount = |options: &str| kernel.mount("overlay", &plan.target, "overlay", options);
    match mount(&options) {
        // Kernels before 5.10 do not know `volatile`: an ordinary overlay does the same job.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && plan.volatile => {
            mount(&OverlayPlan { volatile: false, ..plan.clone() }.options())
        }
        other => other,
    }
    .map_err(|e| io::Error::other(format!("overlay mount on {}: {e}", plan.target.display())))
}

pub fn unmount(kernel: &dyn Kernel, target: &Path) -> io::Result<()> {
    if !kernel.is_mount_root(target) {
        return Ok(());
    }
    kernel.unmount(target).map_err(|e| io::Error::other(format!("unmount {}: {e}", target.display())))
}

/// Remounts every mount below each of `dirs` read-only, parents first (the read-only remount
/// hook, in a container's mount namespace before it enters its root, on kernels without
/// `mount_setattr`). A listed point that is no longer a mount root (covered by a later mount
/// above it, or gone) is skipped; a mount that cannot be made read-only is an error, and the
/// container does not start.
pub fn read_only_below(kernel: &dyn Kernel, dirs: &[PathBuf]) -> io::Result<usize> {
    let table = kernel.read_bytes(Path::new("/proc/self/mountinfo"))?;
    let table = super::mountinfo::parse(&table).map_err(io::Error::other)?;
    let mut n = 0;
    for dir in dirs {
        for point in super::mountinfo::below(&table, dir) {
            if !kernel.is_mount_root(&point) {
                continue;
            }
            match kernel.remount_read_only(&point) {
                Ok(()) => n += 1,
                // A FUSE mount whose server is gone: nothing can be written through it anyway.
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                    tracing::warn!(path = %point.display(), "a mount whose filesystem is gone is left as it is");
                }
                Err(e) => return Err(io::Error::other(format!("cannot make {} read-only: {e}", point.display()))),
            }
        }
    }
    Ok(n)
}

/// Writes /etc/hosts, /etc/hostname and /etc/resolv.conf for the container into `files`;
/// `extra` are more lines of /etc/hosts (address, name).
pub fn write_etc_files(
    files: &Path,
    hostname: &str,
    host_network: bool,
    extra: &[(std::net::IpAddr, String)],
) -> io::Result<()> {
    fs::create_dir_all(files)?;
    let mut hosts = if host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
    };
    for (addr, name) in extra {
        hosts.push_str(&format!("{addr}\t{name}\n"));
    }
    fs::write(files.join("hosts"), hosts)?;
    fs::write(files.join("hostname"), format!("{hostname}\n"))?;
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    fs::write(files.join("resolv.conf"), resolv)?;
    Ok(())
}

/// Resolves `user[:group]` (names or numbers) against the container's /etc/passwd and
/// /etc/group, read inside its root (a symlink there never leads to the host's).
pub fn resolve_user(rootfs: &Scope, spec: Option<&str>) -> Result<(u32, u32, Vec<u32>), String> {
    let passwd = rootfs.read_to_string(Path::new("etc/passwd")).unwrap_or_default();
    let group = rootfs.read_to_string(Path::new("etc/group")).unwrap_or_default();
    let Some(spec) = spec.filter(|s| !s.is_empty()) else { return Ok((0, 0, supplementary(&group, "root", 0))) };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry =
        passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 4 && (f[0] == u || f[2] == u));
    let (uid, name, primary_gid) = match (u.parse::<u32>(), entry) {
        (_, Some(f)) => (
            f[2].parse().map_err(|_| format!("bad uid for {u} in /etc/passwd"))?,
            f[0].to_string(),
            f[3].parse().unwrap_or(0),
        ),
        (Ok(n), None) => (n, String::new(), n),
        (Err(_), None) => return Err(format!("unable to find user {u}: no matching entries in passwd file")),
    };
    let gid = match g {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid, supplementary(&group, &name, gid)))
}

fn supplementary(group: &str, user: &str, primary: u32) -> Vec<u32> {
    if user.is_empty() {
        return Vec::new();
    }
    group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == user))
        .filter_map(|f| f[2].parse().ok())
        .filter(|g| *g != primary)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_orders_layers_top_first_and_escapes() {
        let p = plan(Path::new("/c/x"), &[PathBuf::from("/l/a"), PathBuf::from("/l/b:c")]);
        assert_eq!(p.lower, vec![PathBuf::from("/l/b:c"), PathBuf::from("/l/a")]);
        assert!(p.options().starts_with("lowerdir=/l/b\\:c:/l/a,upperdir=/c/x/upper,workdir=/c/x/work"));
        assert_eq!(plan(Path::new("/c/x"), &[]).lower, vec![PathBuf::from("/c/x/empty")]);
        assert!(!p.options().contains("volatile"));
        assert!(OverlayPlan { volatile: true, ..p }.options().ends_with(",volatile"));
    }

    #[test]
    fn mount_points_are_told_from_plain_directories() {
        let linux = crate::runtime::kernel::Linux;
        assert!(is_mounted(&linux, Path::new("/proc")));
        assert!(is_mounted(&linux, Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mounted(&linux, dir.path()));
        assert!(!is_mounted(&linux, &dir.path().join("missing")));
    }

    /// A plan applied: its directories made, one overlay mount with the plan's options, not
    /// mounted twice, unmounted once; a kernel that does not know `volatile` gets the same
    /// overlay without it.
    #[test]
    fn plans_are_applied_through_the_kernel() {
        use crate::runtime::kernel::Fake;
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        let p = OverlayPlan { volatile: true, ..plan(&dir.path().join("c"), std::slice::from_ref(&layer)) };
        let kernel = Fake::new();
        mount(&kernel, &p).unwrap();
        mount(&kernel, &p).unwrap();
        let mounts = kernel.mounts();
        assert_eq!(mounts.len(), 1);
        assert_eq!((mounts[0].fstype.as_str(), &mounts[0].target), ("overlay", &p.target));
        assert_eq!(mounts[0].data, p.options());
        assert!(p.upper.is_dir() && p.work.is_dir() && layer.is_dir());
        unmount(&kernel, &p.target).unwrap();
        unmount(&kernel, &p.target).unwrap();
        assert!(kernel.mounts().is_empty());

        let old = Fake::new().without_mount_option("volatile");
        mount(&old, &p).unwrap();
        assert_eq!(old.mounts()[0].data, OverlayPlan { volatile: false, ..p.clone() }.options());
        // A plan that is not volatile has nothing to fall back to: the error is the mount's.
        let strict = Fake::new().without_mount_option("index=off");
        let e = mount(&strict, &p).unwrap_err().to_string();
        assert!(e.contains("overlay mount on") && strict.mounts().is_empty(), "{e}");
    }

    /// The hook of kernels without mount_setattr: each mount below the read-only bind is
    /// remounted read-only, those no longer reachable are skipped, nothing else is touched.
    #[test]
    fn mounts_below_a_read_only_bind_are_remounted_read_only() {
        use crate::runtime::kernel::Fake;
        let table = "1 0 8:1 / / rw - ext4 v rw\n\
                     2 1 0:5 / /c/rootfs/host rw - ext4 v rw\n\
                     3 2 0:6 / /c/rootfs/host/dev/shm rw - tmpfs shm rw\n\
                     4 2 0:7 / /c/rootfs/host/gone rw - tmpfs t rw\n\
                     5 2 0:8 / /c/rootfs/host/proc rw - proc proc rw\n\
                     6 1 0:9 / /c/rootfs/other rw - tmpfs t rw\n";
        let kernel = Fake::new().file("/proc/self/mountinfo", table);
        for p in ["/c/rootfs/host", "/c/rootfs/host/dev/shm", "/c/rootfs/host/proc", "/c/rootfs/other"] {
            kernel.mount("x", Path::new(p), "tmpfs", "rw").unwrap();
        }
        let n = read_only_below(&kernel, &[PathBuf::from("/c/rootfs/host")]).unwrap();
        assert_eq!(n, 2);
        let data: Vec<(String, String)> =
            kernel.mounts().into_iter().map(|m| (m.target.display().to_string(), m.data)).collect();
        assert_eq!(
            data,
            [
                ("/c/rootfs/host".into(), "rw".into()),
                ("/c/rootfs/host/dev/shm".into(), "rw,ro".into()),
                ("/c/rootfs/host/proc".into(), "rw,ro".into()),
                ("/c/rootfs/other".into(), "rw".into()),
            ]
        );
        // No mount table: refused, not skipped.
        assert!(read_only_below(&Fake::new(), &[PathBuf::from("/c/rootfs/host")]).is_err());
    }

    #[test]
    fn users_resolve_from_the_image() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n")
            .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\nwww:x:33:\nlogs:x:4:www\n").unwrap();
        let root = Scope::open(dir.path()).unwrap();
        assert_eq!(resolve_user(&root, Some("www")).unwrap(), (33, 33, vec![4]));
        assert_eq!(resolve_user(&root, Some("www:logs")).unwrap(), (33, 4, vec![]));
        assert_eq!(resolve_user(&root, Some("1000:1000")).unwrap(), (1000, 1000, vec![]));
        assert!(resolve_user(&root, Some("nobody")).is_err());
        assert_eq!(resolve_user(&root, None).unwrap().0, 0);
    }

    #[test]
    fn users_resolve_inside_the_root_even_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        fs::create_dir_all(&host).unwrap();
        fs::write(host.join("passwd"), "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(&host, root.join("etc")).unwrap();
        fs::write(host.join("group"), "hostgroup:x:4343:\n").unwrap();
        let root = Scope::open(&root).unwrap();
        assert!(resolve_user(&root, Some("hostonly")).is_err(), "read the host's passwd through a link");
        assert!(resolve_user(&root, Some("0:hostgroup")).is_err(), "read the host's group through a link");
    }
}
