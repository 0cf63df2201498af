//! The command lines Lifeboat writes for itself, in one place: the shim a start launches
//! (`lifeboat --root R --run-root S shim ID`), the shim re-executing itself for a restart,
//! and the `exec` a health check runs; and the reading of the shim's line, which the binary
//! recognises without building its whole parser (it is on the path of every start).

use std::ffi::{CString, OsString};
use std::path::Path;
use std::process::Command;

use super::Paths;

/// `--root R --run-root S`, the arguments every re-execution starts with.
fn roots(paths: &Paths) -> [OsString; 4] {
    ["--root".into(), paths.root.clone().into_os_string(), "--run-root".into(), paths.run_root.clone().into_os_string()]
}

/// The arguments (after the program name) of the shim of container `id`.
pub fn shim_args(paths: &Paths, id: &str) -> Vec<OsString> {
    roots(paths).into_iter().chain(["shim".into(), id.into()]).collect()
}

/// The shim's command line, read back: the paths and the container ID, if `args` (after the
/// program name) is exactly a shim's.
pub fn parse_shim_args(args: &[OsString]) -> Option<(Paths, String)> {
    let [root_flag, root, run_root_flag, run_root, shim, id] = args else { return None };
    if root_flag != "--root" || run_root_flag != "--run-root" || shim != "shim" {
        return None;
    }
    Some((Paths { root: root.into(), run_root: run_root.into() }, id.to_str()?.to_string()))
}

/// Whether process `pid` is the shim of container `id` (read from its command line: a PID
/// reused by another process, after a reboot say, is not).
pub fn is_shim_of(pid: i32, id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| cmdline_is_shim_of(&line, id))
}

/// Whether a `/proc/PID/cmdline` (arguments ended by NULs) is the shim of container `id`.
fn cmdline_is_shim_of(line: &[u8], id: &str) -> bool {
    let args: Vec<OsString> = line
        .split(|b| *b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .map(|a| <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a).to_os_string())
        .collect();
    parse_shim_args(&args).is_some_and(|(_, shim_of)| shim_of == id)
}

/// `exe` run as the shim of container `id`.
pub fn shim_command(exe: &Path, paths: &Paths, id: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(shim_args(paths, id));
    cmd
}

/// Replaces this process with a fresh shim of container `id` (a restart: every container
/// creation happens in a freshly executed, single-threaded process).
pub fn exec_shim(paths: &Paths, id: &str) -> anyhow::Result<std::convert::Infallible> {
    let exe = CString::new("/proc/self/exe")?;
    let mut args = vec![CString::new("lifeboat")?];
    for a in shim_args(paths, id) {
        args.push(CString::new(a.into_encoded_bytes())?);
    }
    Ok(nix::unistd::execv(&exe, &args)?)
}

/// The word that makes this program a thaw guard.
const THAW_GUARD: &str = "thaw-guard";

/// `exe` as the thaw guard of containers `ids` frozen by process `owner`: it waits for its
/// standard input to close (the freezing process thawed them, or died), then thaws those
/// still marked frozen by `owner`. A snapshot killed with SIGKILL never leaves a service
/// frozen.
pub fn thaw_guard_command(exe: &Path, paths: &Paths, owner: u32, ids: &[String]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(roots(paths)).args([THAW_GUARD.to_string(), owner.to_string()]).args(ids);
    cmd
}

/// A thaw guard's command line, read back: the paths, the freezing process, the containers.
pub fn parse_thaw_guard_args(args: &[OsString]) -> Option<(Paths, u32, Vec<String>)> {
    let [root_flag, root, run_root_flag, run_root, word, owner, ids @ ..] = args else { return None };
    if root_flag != "--root" || run_root_flag != "--run-root" || word != THAW_GUARD || ids.is_empty() {
        return None;
    }
    let owner = owner.to_str()?.parse().ok()?;
    let ids = ids.iter().map(|i| i.to_str().map(String::from)).collect::<Option<Vec<_>>>()?;
    Some((Paths { root: root.into(), run_root: run_root.into() }, owner, ids))
}

/// The word that makes this program an instant restore's hydrator.
const HYDRATE: &str = "hydrate";

/// `exe` as the hydrator of container `id` (`lifeboat --root R --run-root S hydrate ID`): it
/// reads what to serve on its standard input.
pub fn hydrator_command(exe: &Path, paths: &Paths, id: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(roots(paths)).args([HYDRATE, id]);
    cmd
}

/// A hydrator's command line, read back: the paths and the container.
pub fn parse_hydrator_args(args: &[OsString]) -> Option<(Paths, String)> {
    let [root_flag, root, run_root_flag, run_root, word, id] = args else { return None };
    if root_flag != "--root" || run_root_flag != "--run-root" || word != HYDRATE {
        return None;
    }
    Some((Paths { root: root.into(), run_root: run_root.into() }, id.to_str()?.to_string()))
}

/// The word that makes this program the read-only remount hook.
const READ_ONLY_HOOK: &str = "read-only-below";

/// The OCI `createContainer` hook that remounts every mount below `dirs` (paths in the
/// container's mount namespace, before it enters its root) read-only: `exe read-only-below
/// DIR…`, for kernels without `mount_setattr`.
pub fn read_only_hook(exe: &Path, dirs: &[std::path::PathBuf]) -> serde_json::Value {
    let mut args: Vec<String> = vec!["lifeboat".into(), READ_ONLY_HOOK.into()];
    args.extend(dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    serde_json::json!({"path": exe, "args": args, "timeout": 30})
}

/// The hook's command line, read back (after the program name): the directories.
pub fn parse_read_only_hook(args: &[OsString]) -> Option<Vec<std::path::PathBuf>> {
    let (first, dirs) = args.split_first()?;
    if first != READ_ONLY_HOOK || dirs.is_empty() {
        return None;
    }
    Some(dirs.iter().map(std::path::PathBuf::from).collect())
}

/// This program run as `lifeboat exec --timeout Ns ID ARGS…` (a health check).
pub fn exec_in_container(paths: &Paths, id: &str, args: &[String], timeout: std::time::Duration) -> Command {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(roots(paths)).args(["exec", "--timeout", &format!("{}ms", timeout.as_millis().max(1)), id]).args(args);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_is_known_by_its_command_line() {
        let paths = Paths { root: "/r".into(), run_root: "/s".into() };
        let line = |args: &[OsString]| {
            let mut b = b"/usr/bin/lifeboat\0".to_vec();
            for a in args {
                b.extend_from_slice(a.as_encoded_bytes());
                b.push(0);
            }
            b
        };
        assert!(cmdline_is_shim_of(&line(&shim_args(&paths, "abc")), "abc"));
        assert!(!cmdline_is_shim_of(&line(&shim_args(&paths, "abc")), "abd"), "another container's shim");
        assert!(!cmdline_is_shim_of(b"/usr/sbin/sshd\0-D\0", "abc"), "a PID reused by another program");
        assert!(!cmdline_is_shim_of(b"", "abc"), "a zombie's empty line");
        // This very process is no shim.
        assert!(!is_shim_of(std::process::id() as i32, "abc"));
    }

    #[test]
    fn the_shim_line_is_read_back_as_it_is_written() {
        let paths = Paths { root: "/var/lib/lifeboat".into(), run_root: "/run/lifeboat".into() };
        let args = shim_args(&paths, "abc");
        let (back, id) = parse_shim_args(&args).unwrap();
        assert_eq!((back.root, back.run_root, id.as_str()), (paths.root.clone(), paths.run_root.clone(), "abc"));
        let mut other = args.clone();
        other[4] = "exec".into();
        assert!(parse_shim_args(&other).is_none());
        assert!(parse_shim_args(&args[1..]).is_none());
        let argv = ["/bin/sh".to_string(), "-c".into(), "true".into()];
        let health = exec_in_container(&paths, "abc", &argv, std::time::Duration::from_secs(3));
        let words: Vec<_> = health.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            words,
            [
                "--root",
                "/var/lib/lifeboat",
                "--run-root",
                "/run/lifeboat",
                "exec",
                "--timeout",
                "3000ms",
                "abc",
                "/bin/sh",
                "-c",
                "true"
            ]
        );
    }
}
