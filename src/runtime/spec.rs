//! The OCI runtime spec for a container: Docker's default confinement plus what `run` asked for.
//!
//! Built as JSON in the spec's own field names (it is written to `bundle/config.json` for the
//! runtime to load); a unit test parses it with `oci-spec` to keep it valid.

use std::path::Path;

use serde_json::{Value, json};

use super::container::{MountSource, NetworkMode, RunConfig};

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Where `--init` puts the init binary inside the container.
pub const INIT_PATH: &str = "/sbin/lifeboat-init";

/// The init binary for `--init`: `LIFEBOAT_INIT_BINARY`, or Debian's static tini.
pub fn init_binary() -> Result<std::path::PathBuf, String> {
    let candidates = std::env::var_os("LIFEBOAT_INIT_BINARY")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/tini-static".into(), "/usr/sbin/tini-static".into()]);
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
    }
    Err("--init needs a static init binary: install tini (apt-get install tini) or set LIFEBOAT_INIT_BINARY".into())
}

/// Resolved identity of the process.
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Builds the spec. `rootfs` is the mounted overlay; `files` holds hosts/hostname/resolv.conf;
/// `volumes` maps each mount to its host source; `netns` is the path of a namespace to join.
/// What the host side provides for a container's spec.
pub struct Inputs<'a> {
    /// The mounted overlay root.
    pub rootfs: &'a Path,
    /// Holds hosts, hostname and resolv.conf.
    pub files: &'a Path,
    pub user: &'a ProcessUser,
    /// The host source of each of `config.mounts`, in order.
    pub mount_sources: &'a [std::path::PathBuf],
    /// A network namespace to join.
    pub netns: Option<&'a Path>,
    pub cgroups_path: &'a str,
    /// The container's view of the cgroup filesystem (runtime::cgroupfs::view).
    pub cgroup_mounts: &'a [Value],
    /// The init binary for `--init`.
    pub init: Option<&'a Path>,
    /// How read-only binds are made read-only all the way down.
    pub read_only_binds: ReadOnlyBinds<'a>,
}

/// How a `:ro` bind is made read-only with everything mounted below its source.
#[derive(Clone, Copy, Debug)]
pub enum ReadOnlyBinds<'a> {
    /// The kernel does it for a whole tree (`mount_setattr` with `AT_RECURSIVE`, Linux 5.12+).
    Recursive,
    /// Older kernels: this program (its path here), run as the runtime's `createContainer`
    /// hook in the container's mount namespace once its mounts are made, remounts every
    /// mount below each read-only bind read-only (`reexec::read_only_hook`).
    Remount(&'a Path),
}

pub fn build(config: &RunConfig, inputs: &Inputs<'_>) -> Value {
    let Inputs { rootfs, files, user, mount_sources, netns, cgroups_path, cgroup_mounts, init, read_only_binds } =
        *inputs;
    let caps = DEFAULT_CAPS;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    // Read-only, and only the container's own cgroup (runtime::cgroupfs).
    mounts.extend(cgroup_mounts.iter().cloned());
    for name in ["hosts", "hostname", "resolv.conf"] {
        let options = if config.read_only { vec!["rbind", "rprivate", "ro"] } else { vec!["rbind", "rprivate"] };
        mounts.push(json!({"destination": format!("/etc/{name}"), "type": "bind", "source": files.join(name), "options": options}));
    }
    // Recursively read-only, as Docker 25+ does: the mounts under a read-only bind (a host's
    // /dev/shm, /proc, cgroups) are read-only too.
    let mut remount_below = Vec::new();
    for (m, source) in config.mounts.iter().zip(mount_sources) {
        if let MountSource::Tmpfs { size, mode, exec } = &m.source {
            // Docker's options for a tmpfs: no devices, no set-user-ID, no programs (unless
            // asked for); 1777.
            let mut options: Vec<String> = ["nosuid", "nodev"].map(String::from).to_vec();
            if !exec {
                options.push("noexec".into());
            }
            options.push(format!("mode={:o}", mode.unwrap_or(0o1777)));
            options.extend(size.map(|s| format!("size={s}")));
            if m.read_only {
                options.push("ro".into());
            }
            mounts.push(json!({"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": options}));
            continue;
        }
        let mut options = vec!["rbind", "rprivate"];
        match read_only_binds {
            ReadOnlyBinds::Recursive if m.read_only => options.extend(["ro", "rro"]),
            ReadOnlyBinds::Remount(_) if m.read_only => {
                options.push("ro");
                remount_below.push(rootfs.join(m.target.trim_start_matches('/')));
            }
            _ => {}
        }
        mounts.push(json!({"destination": m.target, "type": "bind", "source": source, "options": options}));
    }
    let hooks = match read_only_binds {
        ReadOnlyBinds::Remount(exe) if !remount_below.is_empty() => {
            json!({"createContainer": [super::reexec::read_only_hook(exe, &remount_below)]})
        }
        _ => json!({}),
    };

    let mut args = config.args.clone();
    if let Some(init) = init {
        // Like `docker run --init`: a tiny init as PID 1 forwards signals and reaps zombies.
        mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["rbind", "rprivate", "ro"]}),
        );
        args = [INIT_PATH.to_string(), "--".to_string()].into_iter().chain(args).collect();
    }

    // A cgroup namespace: /proc/self/cgroup shows the container's cgroup as its root.
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match (&config.network, netns) {
        (NetworkMode::Host, _) => {}
        (_, Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        _ => namespaces.push(json!({"type": "network"})),
    }

    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"}
        ]
    });
    if let Some(m) = config.memory {
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(c) = config.cpus {
        let period = 100_000u64;
        resources["cpu"] = json!({"quota": (c * period as f64) as i64, "period": period});
    }
    if let Some(p) = config.pids_limit {
        resources["pids"] = json!({"limit": p});
    }

    let mut env = config.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", config.hostname));
    }

    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": config.tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": args,
            "env": env,
            "cwd": if config.working_dir.is_empty() { "/" } else { config.working_dir.as_str() },
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile_limit(), "soft": nofile_limit()}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs, "readonly": config.read_only},
        "hostname": config.hostname,
        "mounts": mounts,
        "hooks": hooks,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "cgroupsPath": cgroups_path,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            // No "seccomp": the container's processes install Lifeboat's filter themselves, as
            // their last step before executing the command (runtime::seccomp).
        }
    })
}

/// Docker's 1048576 open files, or as many as this host lets a process have.
fn nofile_limit() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    hard.min(1_048_576)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime::container::{RestartPolicy, RunConfig};

    pub(crate) fn sample() -> RunConfig {
        RunConfig {
            id: "a".repeat(64),
            name: "web".into(),
            image: "busybox".into(),
            image_id: crate::image::Digest::of(b""),
            layers: vec![],
            created: "2026-01-01T00:00:00Z".into(),
            args: vec!["/bin/sh".into()],
            env: vec!["A=1".into()],
            working_dir: "/".into(),
            user: None,
            hostname: "aaaaaaaaaaaa".into(),
            ports: vec![],
            mounts: vec![],
            network: NetworkMode::Private,
            restart: RestartPolicy::No,
            auto_remove: false,
            memory: Some(32 << 20),
            cpus: Some(0.5),
            pids_limit: Some(50),
            read_only: false,
            init: false,
            stop_signal: "SIGTERM".into(),
            health: None,
            tty: false,
            stdin_open: false,
            labels: Default::default(),
            extra_hosts: Vec::new(),
        }
    }

    #[test]
    fn spec_is_valid_oci() {
        let user = ProcessUser { uid: 0, gid: 0, additional_gids: vec![] };
        let mut inputs = Inputs {
            rootfs: Path::new("/r"),
            files: Path::new("/f"),
            user: &user,
            mount_sources: &[],
            netns: None,
            cgroups_path: "/lifeboat/x",
            cgroup_mounts: &[],
            init: None,
            read_only_binds: ReadOnlyBinds::Recursive,
        };
        let v = build(&sample(), &inputs);
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 6);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 50);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert!(v["process"]["env"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with("PATH=")));
        let ro = crate::runtime::container::MountSpec {
            source: crate::runtime::container::MountSource::Bind { path: "/".into(), must_exist: false },
            target: "/host".into(),
            read_only: true,
            nocopy: false,
            anonymous: false,
        };
        let with_ro = RunConfig { mounts: vec![ro], ..sample() };
        let sources = [std::path::PathBuf::from("/")];
        let v = build(&with_ro, &Inputs { mount_sources: &sources, ..inputs });
        let host = v["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/host").unwrap();
        assert_eq!(host["options"], serde_json::json!(["rbind", "rprivate", "ro", "rro"]));
        assert_eq!(v["hooks"], serde_json::json!({}));
        // A kernel without mount_setattr: the bind read-only, then a hook in the container's
        // mount namespace remounts what is below it.
        let exe = Path::new("/usr/local/bin/lifeboat");
        let v = build(
            &with_ro,
            &Inputs { mount_sources: &sources, read_only_binds: ReadOnlyBinds::Remount(exe), ..inputs },
        );
        let spec: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
        let host = v["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/host").unwrap();
        assert_eq!(host["options"], serde_json::json!(["rbind", "rprivate", "ro"]));
        let hook = &spec.hooks().as_ref().unwrap().create_container().as_ref().unwrap()[0];
        assert_eq!(hook.path(), exe);
        assert_eq!(
            super::super::reexec::parse_read_only_hook(
                &hook.args().as_ref().unwrap()[1..].iter().map(std::ffi::OsString::from).collect::<Vec<_>>()
            ),
            Some(vec![std::path::PathBuf::from("/r/host")])
        );
        // Nothing read-only: no hook.
        let v = build(&sample(), &Inputs { read_only_binds: ReadOnlyBinds::Remount(exe), ..inputs });
        assert_eq!(v["hooks"], serde_json::json!({}));
        inputs.init = Some(Path::new("/usr/bin/tini-static"));
        let v = build(&sample(), &inputs);
        assert_eq!(v["process"]["args"], serde_json::json!([INIT_PATH, "--", "/bin/sh"]));
    }
}
