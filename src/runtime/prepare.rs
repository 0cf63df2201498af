//! Everything a container needs on disk before the runtime creates it: the overlay root
//! filesystem, the generated /etc files, its volumes (filled from the image on first use, as
//! Docker does), and the OCI bundle.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::container::{ContainerError, Containers, MountSource, NetworkMode, RunConfig};
use super::{Host, cgroupfs, rootfs, spec, volume};
use crate::fsutil::scope::{Scope, fd_path};

pub struct Prepared {
    pub bundle: PathBuf,
    pub cgroups_path: String,
}

impl Prepared {
    /// What [`prepare`] made for `config`, when another process made it.
    pub fn made(containers: &Containers, config: &RunConfig) -> Prepared {
        Prepared { bundle: containers.dir(&config.id).join("bundle"), cgroups_path: format!("/lifeboat/{}", config.id) }
    }
}

pub fn prepare(host: &Host, config: &RunConfig) -> anyhow::Result<Prepared> {
    check_controllers(config, Path::new("/sys/fs/cgroup"))?;
    let containers = host.containers()?;
    let store = host.store()?;
    let dir = containers.dir(&config.id);
    for d in &config.layers {
        if !store.layer_diff_dir(d).is_dir() {
            anyhow::bail!("layer {d} of image {} is missing from the store (was the image removed?)", config.image);
        }
    }
    // A `run --rm` container's changes are discarded with it: nothing to sync.
    let plan = rootfs::OverlayPlan::for_container(store, &dir, &config.layers, config.auto_remove);
    {
        // A `cp` into the stopped container mounts it too: one at a time.
        let _mounting = containers.mount_lock(&config.id)?;
        rootfs::mount(host.kernel(), &plan)?;
    }
    let files = dir.join("etc");
    rootfs::write_etc_files(
        &files,
        &config.hostname,
        config.network == NetworkMode::Host,
        &extra_hosts(containers, config),
    )?;

    // The image's side of every path below is looked up inside the container's root: a
    // symlink in the image never leads onto the host.
    let root = Scope::open(&plan.target)?;
    let mut sources = Vec::new();
    for m in &config.mounts {
        let source = match &m.source {
            MountSource::Bind { path, must_exist } => {
                if !path.exists() {
                    if *must_exist {
                        anyhow::bail!(ContainerError::Invalid(format!(
                            "the bind mount source path {} does not exist",
                            path.display()
                        )));
                    }
                    fs::create_dir_all(path)
                        .with_context(|| format!("cannot create bind mount source {}", path.display()))?;
                }
                path.clone()
            }
            MountSource::Tmpfs { .. } => {
                root.mkdir_all(Path::new(&m.target), 0o755)
                    .with_context(|| format!("cannot make the mount point {} in the container", m.target))?;
                sources.push(PathBuf::from("tmpfs"));
                continue;
            }
            MountSource::Volume { name } => {
                // A restore that was killed after this container appeared (its commit point)
                // but before it marked the volume ordinary: the volume is whole.
                if let Ok(meta) = host.volumes()?.get(name)
                    && meta.restoring.as_ref().is_some_and(|o| !o.alive())
                {
                    host.volumes()?.restored(name)?;
                }
                // A volume an instant restore fills serves the container it was restored for.
                if let Ok(meta) = host.volumes()?.get(name)
                    && let Some(h) = &meta.hydrating
                    && h.container != config.id
                {
                    anyhow::bail!(ContainerError::Conflict(format!(
                        "volume {name} is being filled by an instant restore for another container"
                    )));
                }
                let vol = host.volumes()?.ensure(name)?;
                if vol.fresh {
                    // A new (or never used, empty) volume starts with the image's content at
                    // its mount path, and that directory's owner, mode and xattrs, as Docker
                    // fills it: a database running as its own user can write its data there.
                    let empty = fs::read_dir(&vol.data).map(|mut d| d.next().is_none()).unwrap_or(false);
                    if !m.nocopy
                        && empty
                        && let Ok(from) = root.open_dir(Path::new(&m.target))
                    {
                        volume::copy_tree(&fd_path(&from), &vol.data)
                            .with_context(|| format!("cannot fill volume {name} from the image"))?;
                        volume::copy_dir_metadata(&from, &vol.data)
                            .with_context(|| format!("cannot give volume {name} the owner and mode of {}", m.target))?;
                    }
                    host.volumes()?.mark_filled(name)?;
                }
                vol.data
            }
        };
        // The mount point, made inside the container's root (a link in the image on the way
        // is followed there, and its target made, as Docker does), before the runtime looks.
        let target = Path::new(&m.target);
        let made = if source.is_dir() {
            root.mkdir_all(target, 0o755).map(drop)
        } else {
            root.parent(target, Some(0o755)).map(drop)
        };
        made.with_context(|| format!("cannot make the mount point {} in the container", m.target))?;
        sources.push(source);
    }

    // The working directory is made if the image lacks it, inside the root, as Docker does.
    if config.working_dir.starts_with('/') && config.working_dir != "/" {
        root.mkdir_all(Path::new(&config.working_dir), 0o755)
            .with_context(|| format!("cannot make the working directory {} in the container", config.working_dir))?;
    }
    let (uid, gid, additional_gids) =
        rootfs::resolve_user(&root, config.user.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    let user = spec::ProcessUser { uid, gid, additional_gids };
    let netns = match &config.network {
        NetworkMode::Container(other) => {
            // By name (or, in configurations recorded before names, by ID).
            let peer = containers.named(other).map_err(|_| {
                ContainerError::Conflict(format!(
                    "container {other}, whose network this one joins, does not exist (start it, or restore it first)"
                ))
            })?;
            let other = &peer.name;
            let state = containers.state(&peer.id)?;
            let pid = state
                .pid
                .filter(|p| host.kernel().alive(*p))
                .ok_or_else(|| anyhow::anyhow!("container {other} whose network this one joins is not running"))?;
            Some(PathBuf::from(format!("/proc/{pid}/ns/net")))
        }
        NetworkMode::Network(name) => Some(
            super::network::named(&host.paths().run_root, name)
                .with_context(|| format!("cannot join network {name}"))?,
        ),
        _ => None,
    };
    let Prepared { bundle, cgroups_path } = Prepared::made(containers, config);
    let layout = cgroupfs::Layout::of_host(host.kernel()).context("cannot read this host's cgroup mounts")?;
    let skeleton = cgroupfs::skeleton(&layout, &host.paths().run_root)?.unwrap_or_default();
    let cgroup_mounts = cgroupfs::view(&layout, &cgroups_path, &skeleton);
    let init = if config.init { Some(spec::init_binary().map_err(|e| anyhow::anyhow!(e))?) } else { None };
    let exe = if host.kernel().has_mount_setattr() {
        None
    } else {
        Some(std::env::current_exe().context("cannot find this program for the read-only remount hook")?)
    };
    let read_only_binds = match &exe {
        None => spec::ReadOnlyBinds::Recursive,
        Some(exe) => spec::ReadOnlyBinds::Remount(exe),
    };
    let value = spec::build(
        config,
        &spec::Inputs {
            rootfs: &plan.target,
            files: &files,
            user: &user,
            mount_sources: &sources,
            netns: netns.as_deref(),
            cgroups_path: &cgroups_path,
            cgroup_mounts: &cgroup_mounts,
            init: init.as_deref(),
            read_only_binds,
        },
    );
    fs::create_dir_all(&bundle)?;
    crate::fsutil::write_atomic_volatile(&bundle.join("config.json"), &serde_json::to_vec(&value)?)?;
    Ok(Prepared { bundle, cgroups_path })
}

/// On a cgroup v2 host (`cgroup_root` is a cgroup2 mount) each limit needs its controller
/// enabled at the root: says which one is missing, rather than let the runtime fail on a file
/// that is not there. Hosts with v1 controllers are not checked (each limit has its hierarchy).
/// The lines `config` adds to its /etc/hosts: its `--add-host`s, and on a named network the
/// names of the containers that share it, and their Compose service names (they all answer
/// on 127.0.0.1).
fn extra_hosts(containers: &Containers, config: &RunConfig) -> Vec<(std::net::IpAddr, String)> {
    let mut out: Vec<(std::net::IpAddr, String)> = Vec::new();
    for h in &config.extra_hosts {
        match crate::syntax::extra_host(h) {
            Ok((name, addr)) => out.push((addr, name)),
            Err(e) => tracing::warn!(error = %e, "an extra host is left out of /etc/hosts"),
        }
    }
    if let NetworkMode::Network(net) = &config.network {
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        for id in containers.ids().unwrap_or_default() {
            if let Ok(peer) = containers.config(&id)
                && peer.id != config.id
                && peer.network == config.network
                && crate::runtime::names::validate_name(&peer.name).is_ok()
                && !out.iter().any(|(_, n)| *n == peer.name)
            {
                tracing::trace!(network = %net, peer = %peer.name, "peer listed in /etc/hosts");
                // A Compose service is found by its service name too.
                if let Some(service) = peer.labels.get(crate::compose::SERVICE_LABEL)
                    && crate::syntax::extra_host(&format!("{service}:127.0.0.1")).is_ok()
                    && !out.iter().any(|(_, n)| n == service)
                {
                    out.push((loopback, service.clone()));
                }
                out.push((loopback, peer.name));
            }
        }
    }
    out
}

fn check_controllers(config: &RunConfig, cgroup_root: &Path) -> anyhow::Result<()> {
    let Ok(available) = fs::read_to_string(cgroup_root.join("cgroup.controllers")) else { return Ok(()) };
    let have: Vec<&str> = available.split_whitespace().collect();
    let asked = [
        (config.memory.is_some(), "memory", "--memory"),
        (config.pids_limit.is_some(), "pids", "--pids-limit"),
        (config.cpus.is_some(), "cpu", "--cpus"),
    ];
    if let Some((_, controller, flag)) =
        asked.iter().find(|(asked, controller, _)| *asked && !have.contains(controller))
    {
        anyhow::bail!(
            "{flag} needs the cgroup {controller} controller, which this host's cgroup v2 hierarchy does not offer \
             (it offers: {})",
            if have.is_empty() { "none".to_string() } else { have.join(" ") }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_on_a_cgroup2_host_need_their_controllers() {
        let root = tempfile::tempdir().unwrap();
        let limited =
            RunConfig { memory: Some(32 << 20), pids_limit: Some(50), ..crate::runtime::spec::tests::sample() };
        // Not a cgroup2 root (a v1 or hybrid host): nothing to check.
        check_controllers(&limited, root.path()).unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").unwrap();
        check_controllers(&limited, root.path()).unwrap();
        fs::write(root.path().join("cgroup.controllers"), "hugetlb perf_event\n").unwrap();
        let e = check_controllers(&limited, root.path()).unwrap_err().to_string();
        assert!(e.contains("--memory needs the cgroup memory controller") && e.contains("hugetlb perf_event"), "{e}");
        let unlimited = RunConfig { memory: None, pids_limit: None, cpus: None, ..limited };
        check_controllers(&unlimited, root.path()).unwrap();
    }

    /// On a named network, /etc/hosts names every container sharing it, by container and by
    /// Compose service name; names that could break the file never reach it.
    #[test]
    fn hosts_name_the_network_s_containers() {
        let root = tempfile::tempdir().unwrap();
        let containers = Containers::open(root.path()).unwrap();
        let on = |id: char, name: &str, net: NetworkMode, service: Option<&str>| {
            let mut c = RunConfig {
                id: id.to_string().repeat(64),
                name: name.into(),
                network: net,
                ..crate::runtime::spec::tests::sample()
            };
            if let Some(s) = service {
                c.labels.insert(crate::compose::SERVICE_LABEL.into(), s.into());
            }
            containers.create_record(&c).unwrap();
            c
        };
        let blog = || NetworkMode::Network("blog_default".into());
        let mut me = on('a', "blog-web-1", blog(), Some("web"));
        me.extra_hosts = vec!["gateway:10.0.0.1".into(), "bad name:1.2.3.4".into()];
        on('b', "blog-db-1", blog(), Some("db"));
        on('c', "hand-made", blog(), None);
        on('d', "elsewhere", NetworkMode::Private, Some("other"));
        on('e', "evil\n1.2.3.4 bank", blog(), Some("x\ny"));
        let mut got: Vec<String> = extra_hosts(&containers, &me).iter().map(|(a, n)| format!("{a} {n}")).collect();
        got.sort();
        assert_eq!(got, ["10.0.0.1 gateway", "127.0.0.1 blog-db-1", "127.0.0.1 db", "127.0.0.1 hand-made"]);
    }
}
