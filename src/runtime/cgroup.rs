//! A container's cgroups, through the [`Kernel`](super::kernel::Kernel) seam: finding its
//! directory for a controller on v1, v2 or hybrid hosts, the freezer (v1 `freezer.state`, v2
//! `cgroup.freeze`, waiting until the kernel reports the new state), its processes, its use
//! of CPU, memory and pids, and whether the kernel OOM-killed something in it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::container::ContainerError;
use super::kernel::Kernel;

/// Where every container's cgroup lives, relative to each hierarchy's root.
pub fn path_of(id: &str) -> String {
    format!("/lifeboat/{id}")
}

/// The container's cgroup directory for `controller` (v1), or in the unified hierarchy (a v2
/// host's `/sys/fs/cgroup`, or a hybrid host's `/sys/fs/cgroup/unified`).
pub fn dir(kernel: &dyn Kernel, id: &str, controller: &str) -> Option<PathBuf> {
    let rel = format!("lifeboat/{id}");
    [
        PathBuf::from(format!("/sys/fs/cgroup/{controller}/{rel}")),
        PathBuf::from(format!("/sys/fs/cgroup/{rel}")),
        PathBuf::from(format!("/sys/fs/cgroup/unified/{rel}")),
    ]
    .into_iter()
    .find(|p| kernel.exists(&p.join("cgroup.procs")))
}

/// Sets the container's freezer and waits (up to 10 s) until the kernel reports the new state.
pub fn freeze(kernel: &dyn Kernel, id: &str, frozen: bool) -> Result<(), ContainerError> {
    let err = |what: String| ContainerError::Runtime(format!("cgroup freezer: {what}"));
    let io = |p: &Path, e: std::io::Error| err(format!("{}: {e}", p.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    if let Some(dir) = dir(kernel, id, "freezer").filter(|d| kernel.exists(&d.join("freezer.state"))) {
        let file = dir.join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        loop {
            kernel.write(&file, want).map_err(|e| io(&file, e))?;
            if kernel.read(&file).map_err(|e| io(&file, e))?.trim() == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!("{} did not become {want}", file.display())));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let dir = dir(kernel, id, "unified")
        .filter(|d| kernel.exists(&d.join("cgroup.freeze")))
        .ok_or_else(|| err("no freezer for this container (neither cgroup v1 freezer nor cgroup v2)".into()))?;
    let file = dir.join("cgroup.freeze");
    kernel.write(&file, if frozen { "1" } else { "0" }).map_err(|e| io(&file, e))?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    loop {
        let events = kernel.read(&dir.join("cgroup.events")).map_err(|e| io(&dir, e))?;
        if events.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!("{} did not report {want}", dir.display())));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// PIDs (host view) of every process in the container, sorted.
pub fn processes(kernel: &dyn Kernel, id: &str) -> Vec<i32> {
    let Some(dir) = dir(kernel, id, "pids").or_else(|| dir(kernel, id, "memory")) else { return Vec::new() };
    let mut pids: Vec<i32> = kernel
        .read(&dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    pids.sort();
    pids
}

/// A container's use of the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub memory: u64,
    /// None: unlimited.
    pub memory_limit: Option<u64>,
    pub pids: u64,
}

/// What the container uses now (v1 or v2 files, whichever the host has).
pub fn usage(kernel: &dyn Kernel, id: &str) -> Usage {
    let read = |d: Option<PathBuf>, f: &str| d.and_then(|d| kernel.read(&d.join(f)).ok()).map(|s| s.trim().to_string());
    let cpu = read(dir(kernel, id, "cpuacct"), "cpuacct.usage").and_then(|s| s.parse().ok()).or_else(|| {
        read(dir(kernel, id, "cpu"), "cpu.stat")
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("usage_usec ").and_then(|v| v.parse::<u64>().ok())))
            .map(|us| us.saturating_mul(1000))
    });
    let mem_dir = dir(kernel, id, "memory");
    let memory = read(mem_dir.clone(), "memory.usage_in_bytes")
        .or_else(|| read(mem_dir.clone(), "memory.current"))
        .and_then(|s| s.parse().ok());
    let memory_limit = read(mem_dir.clone(), "memory.limit_in_bytes")
        .or_else(|| read(mem_dir, "memory.max"))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&l| l < (1 << 62));
    let pids = read(dir(kernel, id, "pids"), "pids.current")
        .and_then(|s| s.parse().ok())
        .unwrap_or(processes(kernel, id).len() as u64);
    Usage { cpu_ns: cpu.unwrap_or(0), memory: memory.unwrap_or(0), memory_limit, pids }
}

/// Whether the kernel OOM-killed a process in the memory cgroup at `cgroups_path` (v1 or v2).
pub fn oom_killed(kernel: &dyn Kernel, cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    [
        format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
        format!("/sys/fs/cgroup/{rel}/memory.events"),
        format!("/sys/fs/cgroup/unified/{rel}/memory.events"),
    ]
    .iter()
    .any(|path| {
        kernel.read(Path::new(path)).ok().is_some_and(|s| {
            s.lines()
                .any(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).is_some_and(|n| n > 0))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::kernel::Fake;

    const ID: &str = "c0ffee";

    /// A hybrid host (v1 controllers, cgroup2 at /sys/fs/cgroup/unified) with the container's
    /// cgroups made.
    fn hybrid() -> Fake {
        let v1 = |c: &str, f: &str| format!("/sys/fs/cgroup/{c}/lifeboat/{ID}/{f}");
        Fake::new()
            .file(v1("freezer", "cgroup.procs"), "41\n42\n")
            .file(v1("freezer", "freezer.state"), "THAWED\n")
            .file(v1("pids", "cgroup.procs"), "42\n41\n")
            .file(v1("pids", "pids.current"), "2\n")
            .file(v1("memory", "cgroup.procs"), "41\n42\n")
            .file(v1("memory", "memory.usage_in_bytes"), "1048576\n")
            .file(v1("memory", "memory.limit_in_bytes"), "9223372036854771712\n")
            .file(v1("memory", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
            .file(v1("cpuacct", "cgroup.procs"), "41\n42\n")
            .file(v1("cpuacct", "cpuacct.usage"), "123456789\n")
            .file(format!("/sys/fs/cgroup/unified/lifeboat/{ID}/cgroup.procs"), "41\n42\n")
    }

    /// A host with v1 hierarchies only (no cgroup2 mount at all), a memory limit set and an
    /// OOM kill recorded.
    fn v1_only() -> Fake {
        let v1 = |c: &str, f: &str| format!("/sys/fs/cgroup/{c}/lifeboat/{ID}/{f}");
        Fake::new()
            .file(
                v1("freezer", "cgroup.procs"),
                "9
",
            )
            .file(
                v1("freezer", "freezer.state"),
                "THAWED
",
            )
            .file(
                v1("memory", "cgroup.procs"),
                "9
",
            )
            .file(
                v1("memory", "memory.usage_in_bytes"),
                "2048
",
            )
            .file(
                v1("memory", "memory.limit_in_bytes"),
                "67108864
",
            )
            .file(v1("memory", "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
            .file(
                v1("cpu,cpuacct", "cgroup.procs"),
                "9
",
            )
            .file(
                v1("cpuacct", "cgroup.procs"),
                "9
",
            )
            .file(
                v1("cpuacct", "cpuacct.usage"),
                "5000
",
            )
    }

    /// A cgroup2-only host.
    fn unified() -> Fake {
        let f = |n: &str| format!("/sys/fs/cgroup/lifeboat/{ID}/{n}");
        Fake::new()
            .file(f("cgroup.procs"), "7\n")
            .file(f("cgroup.freeze"), "0\n")
            .file(f("cgroup.events"), "populated 1\nfrozen 0\n")
            .file(f("cpu.stat"), "usage_usec 2500\nuser_usec 2000\n")
            .file(f("memory.current"), "4096\n")
            .file(f("memory.max"), "33554432\n")
            .file(f("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
            .file(f("pids.current"), "1\n")
    }

    #[test]
    fn cgroups_are_found_on_v1_hybrid_and_v2_hosts() {
        let h = hybrid();
        assert_eq!(dir(&h, ID, "freezer").unwrap(), Path::new("/sys/fs/cgroup/freezer/lifeboat/c0ffee"));
        // No v1 hierarchy for it: the hybrid host's unified mount.
        assert_eq!(dir(&h, ID, "unified").unwrap(), Path::new("/sys/fs/cgroup/unified/lifeboat/c0ffee"));
        assert_eq!(dir(&h, "other", "freezer"), None);
        let u = unified();
        assert_eq!(dir(&u, ID, "memory").unwrap(), Path::new("/sys/fs/cgroup/lifeboat/c0ffee"));
        assert_eq!(processes(&h, ID), [41, 42]);
        assert_eq!(processes(&u, ID), [7]);
        assert_eq!(usage(&h, ID), Usage { cpu_ns: 123_456_789, memory: 1 << 20, memory_limit: None, pids: 2 });
        assert_eq!(usage(&u, ID), Usage { cpu_ns: 2_500_000, memory: 4096, memory_limit: Some(32 << 20), pids: 1 });
        assert!(!oom_killed(&h, &path_of(ID)));
        assert!(oom_killed(&u, &path_of(ID)));
        // v1 only: no pids hierarchy, so processes come from memory's and are counted.
        let v = v1_only();
        assert_eq!(dir(&v, ID, "memory").unwrap(), Path::new("/sys/fs/cgroup/memory/lifeboat/c0ffee"));
        assert_eq!(dir(&v, ID, "unified"), None);
        assert_eq!(processes(&v, ID), [9]);
        assert_eq!(usage(&v, ID), Usage { cpu_ns: 5000, memory: 2048, memory_limit: Some(64 << 20), pids: 1 });
        assert!(oom_killed(&v, &path_of(ID)));
        freeze(&v, ID, true).unwrap();
        assert_eq!(
            v.writes(),
            [(PathBuf::from(format!("/sys/fs/cgroup/freezer/lifeboat/{ID}/freezer.state")), "FROZEN".into())]
        );
    }

    #[test]
    fn freezing_writes_then_waits_for_the_kernel_and_thawing_undoes_it() {
        let h = hybrid().slow_freezer(3);
        freeze(&h, ID, true).unwrap();
        freeze(&h, ID, false).unwrap();
        let state = PathBuf::from(format!("/sys/fs/cgroup/freezer/lifeboat/{ID}/freezer.state"));
        // Written until the kernel says FROZEN (three reads said FREEZING), then thawed once.
        let writes = h.writes();
        assert!(writes.iter().all(|(p, _)| p == &state), "{writes:?}");
        let values: Vec<&str> = writes.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["FROZEN", "FROZEN", "FROZEN", "FROZEN", "THAWED"]);
        // v2: one write each way, and the events file says when it is done.
        let u = unified();
        freeze(&u, ID, true).unwrap();
        assert!(
            u.read(Path::new(&format!("/sys/fs/cgroup/lifeboat/{ID}/cgroup.events"))).unwrap().contains("frozen 1")
        );
        freeze(&u, ID, false).unwrap();
        let writes: Vec<String> = u.writes().into_iter().map(|(_, v)| v).collect();
        assert_eq!(writes, ["1", "0"]);
        // No freezer at all: a clear error, nothing written.
        let none = Fake::new();
        let e = freeze(&none, ID, true).unwrap_err().to_string();
        assert!(e.contains("no freezer"), "{e}");
        assert!(none.writes().is_empty());
    }
}
