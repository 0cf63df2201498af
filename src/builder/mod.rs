//! `build`: a Dockerfile becomes an image, step by step, with a layer cache.
//!
//! Every step has a cache key: the previous step's key, the instruction as expanded, the build
//! arguments a RUN sees, and for ADD/COPY a hash of the sources' names, modes and contents.
//! A step whose key is known reuses its recorded result (its layer, and its creation time, so
//! a fully cached rebuild makes the very same image); the first step that misses and every step
//! after it run. RUN steps run in Lifeboat's own runtime (host network by default, so package
//! installs work; `--network none` for hermetic builds), and their changes become the layer.

pub mod context;
pub mod dockerfile;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::image::layer::{self, Compression, TreeMode};
use crate::image::spec::{Descriptor, History, ImageConfig, Platform, RootFs};
use crate::image::{Digest, Image, Reference, Store};
use crate::runtime::container::{NetworkMode, RestartPolicy, RunConfig};
use crate::runtime::{self, Host};
use dockerfile::{Command, Instruction, Vars};

pub struct BuildOptions {
    pub context: PathBuf,
    /// Default: `CONTEXT/Dockerfile`, else `CONTEXT/Containerfile`.
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: HashMap<String, String>,
    pub no_cache: bool,
    /// Network for RUN steps: host (default) or none.
    pub network: NetworkMode,
    /// Build up to this stage (default: the last).
    pub target: Option<String>,
}

/// What happened at one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub number: usize,
    pub line: usize,
    pub instruction: String,
    pub cached: bool,
    pub seconds: f64,
}

pub struct Built {
    pub image: Image,
    pub steps: Vec<StepReport>,
}

/// A step's recorded result in the cache.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    created: String,
    layer: Option<(Descriptor, Digest)>,
}

/// One stage's image as it is being built.
#[derive(Clone)]
struct Stage {
    name: Option<String>,
    config: ImageConfig,
    layers: Vec<Descriptor>,
    key: String,
    /// ARGs declared in this stage, with their values.
    args: Vars,
    shell: Vec<String>,
    /// The base's digest (for RUN containers' image ID).
    base_id: Digest,
    cmd_set_here: bool,
}

fn key_of(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

struct Builder<'a> {
    host: &'a Host,
    store: &'a Store,
    opts: &'a BuildOptions,
    escape: char,
    cache_dir: PathBuf,
    /// Global ARGs (declared before the first FROM).
    global_args: Vars,
    stages: Vec<Stage>,
    /// Once a step misses, every later step of the stage runs.
    out: &'a mut dyn FnMut(&str),
    used_args: std::collections::HashSet<String>,
    /// The instruction being run, as the history shows it.
    current: Option<String>,
}

/// Builds an image from a Dockerfile; `out` receives the build's output lines.
pub fn build(host: &Host, opts: &BuildOptions, out: &mut dyn FnMut(&str)) -> anyhow::Result<Built> {
    if !opts.context.is_dir() {
        bail!(crate::error::UsageError(format!("the build context {} is not a directory", opts.context.display())));
    }
    let path = match &opts.dockerfile {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => std::env::current_dir()?.join(p),
        None => {
            let d = opts.context.join("Dockerfile");
            if d.exists() { d } else { opts.context.join("Containerfile") }
        }
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let df = dockerfile::parse(&text)?;
    let store = host.store()?;
    let cache_dir = host.paths().root.join("build-cache");
    crate::fsutil::private_dir(&cache_dir)?;
    let mut b = Builder {
        host,
        store,
        opts,
        escape: df.escape,
        cache_dir,
        global_args: Vars::new(),
        stages: Vec::new(),
        out,
        used_args: Default::default(),
        current: None,
    };
    // Which instructions to run: up to the end of the target stage.
    let mut last = df.instructions.len();
    if let Some(t) = &opts.target {
        let mut found = None;
        for (i, ins) in df.instructions.iter().enumerate() {
            if ins.keyword == "FROM" {
                if found.is_some() {
                    last = i;
                    break;
                }
                let words: Vec<&str> = ins.rest.split_whitespace().collect();
                if words.len() == 3 && words[1].eq_ignore_ascii_case("as") && words[2] == t {
                    found = Some(i);
                }
            }
        }
        if found.is_none() {
            bail!(crate::error::UsageError(format!("no stage named {t:?} in the Dockerfile")));
        }
    }
    let todo = &df.instructions[..last];
    if !todo.iter().any(|i| i.keyword == "FROM") {
        bail!(dockerfile::ParseError { line: 1, message: "no FROM instruction".into() });
    }
    let mut steps = Vec::new();
    let mut missed = opts.no_cache;
    for (n, ins) in todo.iter().enumerate() {
        let started = Instant::now();
        (b.out)(&format!("Step {}/{} : {}", n + 1, todo.len(), ins.display()));
        b.current = Some(ins.display());
        let cached =
            b.step(ins, &mut missed).with_context(|| format!("Dockerfile line {}: {}", ins.line, ins.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        (b.out)(&if cached { " ---> CACHED".to_string() } else { format!(" ---> done in {seconds:.2} s") });
        steps.push(StepReport { number: n + 1, line: ins.line, instruction: ins.display(), cached, seconds });
    }
    for unused in b.opts.build_args.keys().filter(|k| !b.used_args.contains(*k)) {
        (b.out)(&format!("[warning] build argument {unused} was not consumed by any ARG"));
    }
    let stage = b.stages.last().expect("a FROM ran").clone();
    let image = b.finish(&stage)?;
    (b.out)(&format!("Successfully built {}", image.id().short()));
    for t in &opts.tags {
        (b.out)(&format!("Successfully tagged {}", t.familiar()));
    }
    Ok(Built { image, steps })
}

impl<'a> Builder<'a> {
    fn stage(&mut self) -> anyhow::Result<&mut Stage> {
        self.stages.last_mut().ok_or_else(|| anyhow::anyhow!("an instruction before the first FROM"))
    }

    /// Variables for expansion: the stage's ENV and ARGs (ENV wins, as in Docker).
    fn vars(&self) -> Vars {
        let Some(s) = self.stages.last() else { return self.global_args.clone() };
        let mut v = s.args.clone();
        for e in &s.config.config.env {
            if let Some((k, val)) = e.split_once('=') {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    fn cache_get(&self, key: &str) -> Option<CacheEntry> {
        let entry: CacheEntry = serde_json::from_slice(&std::fs::read(self.cache_dir.join(key)).ok()?).ok()?;
        if let Some((desc, diff_id)) = &entry.layer
            && !(self.store.has_blob(&desc.digest) && self.store.has_layer(diff_id))
        {
            return None; // the layer was pruned since
        }
        Some(entry)
    }

    fn cache_put(&self, key: &str, entry: &CacheEntry) -> anyhow::Result<()> {
        crate::fsutil::write_atomic_volatile(&self.cache_dir.join(key), &serde_json::to_vec(entry)?)?;
        Ok(())
    }

    /// Runs one instruction; returns whether it came from the cache.
    fn step(&mut self, ins: &Instruction, missed: &mut bool) -> anyhow::Result<bool> {
        let vars = self.vars();
        let esc = self.escape;
        match ins.keyword.as_str() {
            "FROM" => {
                self.from(ins)?;
                *missed = self.opts.no_cache;
                Ok(!*missed)
            }
            "ARG" => {
                for (name, default) in self.arg_decls(ins, &vars)? {
                    let value = self
                        .opts
                        .build_args
                        .get(&name)
                        .cloned()
                        .or(default)
                        .or_else(|| self.global_args.get(&name).cloned());
                    self.used_args.insert(name.clone());
                    match self.stages.last_mut() {
                        None => {
                            self.global_args.insert(name, value.unwrap_or_default());
                        }
                        Some(s) => {
                            s.args.insert(name, value.unwrap_or_default());
                        }
                    }
                }
                if self.stages.is_empty() {
                    return Ok(true); // a global ARG: only FROM lines see it
                }
                // The values count where they are used: in the keys of the RUN steps that see them.
                self.config_step(&ins.display(), missed, |_| Ok(()))
            }
            "RUN" => self.run(ins, missed),
            "COPY" | "ADD" => self.copy(ins, missed),
            "WORKDIR" => self.workdir(ins, missed),
            "ENV" => {
                let pairs = dockerfile::key_values(&ins.rest, &vars, esc, true).map_err(|e| anyhow::anyhow!(e))?;
                let text =
                    format!("ENV {}", pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" "));
                self.config_step(&text, missed, |s| {
                    for (k, v) in &pairs {
                        s.config.config.set_env(k, v);
                    }
                    Ok(())
                })
            }
            "LABEL" => {
                let pairs = dockerfile::key_values(&ins.rest, &vars, esc, false).map_err(|e| anyhow::anyhow!(e))?;
                self.config_step(&format!("LABEL {pairs:?}"), missed, |s| {
                    s.config.config.labels.extend(pairs.clone());
                    Ok(())
                })
            }
            "MAINTAINER" => {
                let who = ins.rest.trim().to_string();
                self.config_step(&format!("MAINTAINER {who}"), missed, |s| {
                    s.config.config.labels.insert("maintainer".into(), who.clone());
                    s.config.author = Some(who.clone());
                    Ok(())
                })
            }
            "EXPOSE" => {
                let ports = dockerfile::words(&ins.rest, &vars, esc).map_err(|e| anyhow::anyhow!(e))?;
                for p in &ports {
                    crate::image::changes::expand_port(p).map_err(|e| anyhow::anyhow!(e))?;
                }
                self.config_step(&format!("EXPOSE {ports:?}"), missed, |s| {
                    for p in &ports {
                        for one in crate::image::changes::expand_port(p).map_err(|e| anyhow::anyhow!(e))? {
                            s.config.config.exposed_ports.insert(one, serde_json::json!({}));
                        }
                    }
                    Ok(())
                })
            }
            "CMD" | "ENTRYPOINT" => {
                let kw = ins.keyword.clone();
                let rest = ins.rest.clone();
                self.config_step(&format!("{kw} {rest}"), missed, |s| {
                    let argv = match dockerfile::command(&rest) {
                        Command::Exec(v) => v,
                        Command::Shell(cmd) => s.shell.iter().cloned().chain([cmd]).collect(),
                    };
                    if kw == "CMD" {
                        s.config.config.cmd = Some(argv);
                        s.cmd_set_here = true;
                    } else {
                        s.config.config.entrypoint = Some(argv);
                        if !s.cmd_set_here {
                            s.config.config.cmd = None;
                        }
                    }
                    Ok(())
                })
            }
            "USER" => {
                let user = dockerfile::word(&ins.rest, &vars, esc).map_err(|e| anyhow::anyhow!(e))?;
                self.config_step(&format!("USER {user}"), missed, |s| {
                    s.config.config.user = Some(user.clone());
                    Ok(())
                })
            }
            "VOLUME" => {
                let vols = match dockerfile::json_list(&ins.rest) {
                    Some(v) => v,
                    None => dockerfile::words(&ins.rest, &vars, esc).map_err(|e| anyhow::anyhow!(e))?,
                };
                self.config_step(&format!("VOLUME {vols:?}"), missed, |s| {
                    for v in &vols {
                        s.config.config.volumes.insert(v.clone(), serde_json::json!({}));
                    }
                    Ok(())
                })
            }
            "STOPSIGNAL" => {
                let sig = dockerfile::word(&ins.rest, &vars, esc).map_err(|e| anyhow::anyhow!(e))?;
                if runtime::parse_signal(&sig).is_none() {
                    bail!("invalid stop signal {sig:?}");
                }
                self.config_step(&format!("STOPSIGNAL {sig}"), missed, |s| {
                    s.config.config.stop_signal = Some(sig.clone());
                    Ok(())
                })
            }
            "SHELL" => {
                let Some(shell) = dockerfile::json_list(&ins.rest).filter(|v| !v.is_empty()) else {
                    bail!("SHELL takes a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]");
                };
                self.config_step(&format!("SHELL {shell:?}"), missed, |s| {
                    s.shell = shell.clone();
                    s.config.config.shell = Some(shell.clone());
                    Ok(())
                })
            }
            "HEALTHCHECK" => {
                let check = healthcheck(ins)?;
                self.config_step(&format!("HEALTHCHECK {check}"), missed, |s| {
                    s.config.config.healthcheck = Some(check.clone());
                    Ok(())
                })
            }
            "ONBUILD" => bail!("ONBUILD is not supported"),
            other => bail!("unknown instruction {other}"),
        }
    }

    fn arg_decls(&self, ins: &Instruction, vars: &Vars) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let mut out = Vec::new();
        for w in dockerfile::words(&ins.rest, vars, self.escape).map_err(|e| anyhow::anyhow!(e))? {
            match w.split_once('=') {
                Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                None => out.push((w, None)),
            }
        }
        if out.is_empty() {
            bail!("ARG needs a name");
        }
        Ok(out)
    }

    /// A step that only changes the configuration: recorded in the history as an empty layer.
    fn config_step(
        &mut self,
        text: &str,
        missed: &mut bool,
        apply: impl FnOnce(&mut Stage) -> anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        let stage = self.stages.last().ok_or_else(|| anyhow::anyhow!("an instruction before the first FROM"))?;
        let key = key_of(&[&stage.key, text]);
        let text = self.current.clone().unwrap_or_else(|| text.to_string());
        let hit = if *missed { None } else { self.cache_get(&key) };
        let created = match &hit {
            Some(e) => e.created.clone(),
            None => {
                *missed = true;
                let created = crate::sys::now_rfc3339();
                self.cache_put(&key, &CacheEntry { created: created.clone(), layer: None })?;
                created
            }
        };
        let stage = self.stage()?;
        apply(stage)?;
        stage.key = key;
        stage.config.history.push(History {
            created: Some(created.clone()),
            created_by: Some(text),
            empty_layer: true,
            ..Default::default()
        });
        stage.config.created = Some(created);
        Ok(hit.is_some())
    }

    /// A step that adds a layer: from the cache, or made by `make` (which returns the
    /// directory to archive and how).
    fn layer_step(
        &mut self,
        key_parts: &[&str],
        created_by: &str,
        missed: &mut bool,
        make: impl FnOnce(&mut Self) -> anyhow::Result<Option<(TempDir, TreeMode)>>,
    ) -> anyhow::Result<bool> {
        let parent = self.stage()?.key.clone();
        let mut parts = vec![parent.as_str()];
        parts.extend_from_slice(key_parts);
        let key = key_of(&parts);
        let hit = if *missed { None } else { self.cache_get(&key) };
        let (entry, cached) = match hit {
            Some(e) => (e, true),
            None => {
                *missed = true;
                let made = make(self)?;
                let created = crate::sys::now_rfc3339();
                let layer = match made {
                    Some((dir, mode)) => {
                        let mut txn = self.store.begin()?;
                        let (desc, meta) =
                            crate::image::import::add_dir_layer(&mut txn, dir.path(), mode, Compression::Gzip)?;
                        txn.commit(&[])?;
                        Some((desc, meta.diff_id))
                    }
                    None => None,
                };
                let entry = CacheEntry { created, layer };
                self.cache_put(&key, &entry)?;
                (entry, false)
            }
        };
        let stage = self.stage()?;
        stage.key = key;
        let empty = entry.layer.is_none();
        if let Some((desc, diff_id)) = entry.layer {
            stage.layers.push(desc);
            stage.config.rootfs.diff_ids.push(diff_id);
        }
        stage.config.history.push(History {
            created: Some(entry.created.clone()),
            created_by: Some(created_by.to_string()),
            empty_layer: empty,
            ..Default::default()
        });
        stage.config.created = Some(entry.created);
        Ok(cached)
    }

    fn from(&mut self, ins: &Instruction) -> anyhow::Result<()> {
        let vars = self.global_args.clone();
        let words = dockerfile::words(&ins.rest, &vars, self.escape).map_err(|e| anyhow::anyhow!(e))?;
        let (image, name) = match words.as_slice() {
            [image] => (image.clone(), None),
            [image, as_, name] if as_.eq_ignore_ascii_case("as") => (image.clone(), Some(name.clone())),
            _ => bail!("FROM takes IMAGE [AS NAME]"),
        };
        if let Some(p) = ins.flag("platform") {
            let host = Platform::host();
            if p != format!("{}/{}", host.os, host.architecture) {
                bail!("--platform={p}: this host builds only for {}/{}", host.os, host.architecture);
            }
        }
        let default_shell = vec!["/bin/sh".to_string(), "-c".to_string()];
        let stage = if image == "scratch" {
            let platform = Platform::host();
            Stage {
                name: name.clone(),
                config: ImageConfig {
                    architecture: platform.architecture,
                    os: platform.os,
                    variant: platform.variant,
                    rootfs: RootFs { kind: "layers".into(), diff_ids: Vec::new() },
                    ..Default::default()
                },
                layers: Vec::new(),
                key: key_of(&["scratch"]),
                args: Vars::new(),
                shell: default_shell,
                base_id: Digest::of(b"scratch"),
                cmd_set_here: false,
            }
        } else if let Some(prev) = self.stages.iter().find(|s| s.name.as_deref() == Some(image.as_str())) {
            Stage { name: name.clone(), args: Vars::new(), cmd_set_here: false, ..prev.clone() }
        } else {
            let base = self.base_image(&image)?;
            let shell = base.config.config.shell.clone().unwrap_or(default_shell);
            Stage {
                name: name.clone(),
                config: base.config.clone(),
                layers: base.manifest.layers.clone(),
                key: key_of(&["image", &base.manifest_digest.to_string()]),
                args: Vars::new(),
                shell,
                base_id: base.id().clone(),
                cmd_set_here: false,
            }
        };
        self.stages.push(stage);
        Ok(())
    }

    fn base_image(&mut self, name: &str) -> anyhow::Result<Image> {
        let image = self.find_or_pull(name)?;
        // Steps look into the layers (WORKDIR, --chown) and RUN mounts them.
        crate::runtime::ensure_layers(self.store, &image)?;
        Ok(image)
    }

    fn find_or_pull(&mut self, name: &str) -> anyhow::Result<Image> {
        match self.store.find(name) {
            Ok(i) => Ok(i),
            Err(crate::image::StoreError::NotFound(_)) => {
                let r = Reference::parse(name)?;
                (self.out)(&format!(" ---> pulling {}", r.familiar()));
                let (image, _) = crate::registry::pull(
                    self.store,
                    &r,
                    &Platform::host(),
                    &crate::registry::client::Options::default(),
                    false,
                    &crate::registry::Silent,
                )
                .with_context(|| format!("{name} is not in the local store and could not be pulled"))?;
                Ok(image)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn run(&mut self, ins: &Instruction, missed: &mut bool) -> anyhow::Result<bool> {
        let mut network = self.opts.network.clone();
        for (flag, value) in &ins.flags {
            match (flag.as_str(), value.as_deref()) {
                ("network", Some("none")) => network = NetworkMode::None,
                ("network", Some("host" | "default")) => network = NetworkMode::Host,
                (f, _) => bail!("RUN --{f} is not supported"),
            }
        }
        let stage = self.stage()?.clone();
        let argv: Vec<String> = match dockerfile::command(&ins.rest) {
            Command::Exec(v) => v,
            Command::Shell(cmd) => stage.shell.iter().cloned().chain([cmd]).collect(),
        };
        if argv.is_empty() {
            bail!("RUN needs a command");
        }
        // What RUN sees: the image's environment plus the build arguments (ENV wins).
        let mut env = stage.config.config.env.clone();
        let mut arg_env: Vec<String> = stage
            .args
            .iter()
            .filter(|(k, _)| !env.iter().any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == *k)))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        arg_env.sort();
        env.extend(arg_env.iter().cloned());
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let created_by = format!("RUN {}", argv.join(" "));
        let key_text = format!("RUN {argv:?} {arg_env:?} {network:?}");
        self.layer_step(&[&key_text], &created_by, missed, |b| {
            let upper = b.run_container(&stage, argv.clone(), env.clone(), network.clone())?;
            Ok(Some((upper, TreeMode::OverlayUpper)))
        })
    }

    /// Runs a build container to completion; returns its upper directory (moved aside).
    fn run_container(
        &mut self,
        stage: &Stage,
        args: Vec<String>,
        env: Vec<String>,
        network: NetworkMode,
    ) -> anyhow::Result<TempDir> {
        let containers = self.host.containers()?;
        let id = crate::runtime::container::new_id();
        let config = RunConfig {
            id: id.clone(),
            name: format!("build-{}", &id[..12]),
            image: "(build)".into(),
            image_id: stage.base_id.clone(),
            layers: stage.config.rootfs.diff_ids.clone(),
            created: crate::sys::now_rfc3339(),
            args,
            env,
            working_dir: stage.config.config.working_dir.clone().unwrap_or_else(|| "/".into()),
            user: stage.config.config.user.clone().filter(|u| !u.is_empty()),
            hostname: id[..12].to_string(),
            ports: Vec::new(),
            mounts: Vec::new(),
            network,
            restart: RestartPolicy::No,
            auto_remove: false,
            memory: None,
            cpus: None,
            pids_limit: None,
            read_only: false,
            init: false,
            stop_signal: "SIGKILL".into(),
            health: None,
            tty: false,
            stdin_open: false,
            labels: Default::default(),
            extra_hosts: Vec::new(),
        };
        std::fs::create_dir_all(containers.dir(&id))?;
        containers.write_config(&config)?;
        let result = (|| -> anyhow::Result<TempDir> {
            let started = runtime::start(self.host, &id)?;
            let out = &mut self.out;
            let code = runtime::wait_attached(self.host, &config, started, &mut |l| {
                for line in l.log.lines() {
                    out(&format!("  {line}"));
                }
            })?;
            match code {
                Some(0) => {}
                Some(c) => bail!("the command returned a non-zero code: {c}"),
                None => bail!("the build container ended without an exit code"),
            }
            // Files the runtime bind-mounts over are artefacts of running, not content. The
            // step's own changes may make `etc` a link anywhere: looked up inside the layer.
            let upper = containers.dir(&id).join("upper");
            if let Ok(etc) = crate::fsutil::scope::Scope::open(&upper).and_then(|u| {
                u.open_nofollow(Path::new("etc"), rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY)
            }) {
                for f in ["hosts", "hostname", "resolv.conf"] {
                    let empty_file =
                        crate::fsutil::scope::stat_beneath(std::os::fd::AsFd::as_fd(&etc), std::ffi::OsStr::new(f))
                            .is_ok_and(|m| {
                                rustix::fs::FileType::from_raw_mode(m.st_mode) == rustix::fs::FileType::RegularFile
                                    && m.st_size == 0
                            });
                    if empty_file {
                        let _ = rustix::fs::unlinkat(&etc, f, rustix::fs::AtFlags::empty());
                    }
                }
            }
            let keep = TempDir::new(self.store.temp_path("run-layer").path().to_path_buf());
            std::fs::rename(&upper, keep.path()).context("cannot move the build container's changes aside")?;
            Ok(keep)
        })();
        if let Err(e) = runtime::remove(self.host, &id, true) {
            tracing::warn!(container = id.as_str(), error = %e, "cannot remove the build container");
        }
        result
    }

    fn workdir(&mut self, ins: &Instruction, missed: &mut bool) -> anyhow::Result<bool> {
        let vars = self.vars();
        let dir = dockerfile::word(&ins.rest, &vars, self.escape).map_err(|e| anyhow::anyhow!(e))?;
        let stage = self.stage()?;
        let current = stage.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
        let abs = if dir.starts_with('/') { dir.clone() } else { format!("{}/{dir}", current.trim_end_matches('/')) };
        let abs = normalize(&abs);
        stage.config.config.working_dir = Some(abs.clone());
        // Made where the image's links lead, inside the image (`/var/run/app` with
        // `/var/run -> /run` makes `/run/app`), as Docker does; the configuration keeps the
        // path as written.
        let made = self.canonical(&abs);
        let exists = self.lookup(&made).is_some_and(|m| m.is_dir());
        if exists {
            return self.config_step(&format!("WORKDIR {abs}"), missed, |_| Ok(()));
        }
        let store = &self.store;
        let tmp = TempDir::new(store.temp_path("workdir").path().to_path_buf());
        self.layer_step(&[&format!("WORKDIR {abs}")], &format!("WORKDIR {abs}"), missed, |_| {
            std::fs::create_dir_all(tmp.path().join(made.trim_start_matches('/')))?;
            Ok(Some((tmp, TreeMode::Plain)))
        })
    }

    /// Metadata of `path` in the current stage's filesystem (top layer first, whiteouts
    /// honoured), each layer looked into as a scope: a symlink in a layer never leads onto the
    /// host.
    fn lookup(&self, path: &str) -> Option<LayerEntry> {
        let stage = self.stages.last()?;
        let rel = Path::new(path.trim_start_matches('/'));
        for diff_id in stage.config.rootfs.diff_ids.iter().rev() {
            let Ok(layer) = crate::fsutil::scope::Scope::open(&self.store.layer_diff_dir(diff_id)) else { continue };
            if let Ok(st) = layer.stat(rel, true) {
                use rustix::fs::FileType;
                let kind = FileType::from_raw_mode(st.st_mode);
                if kind == FileType::CharacterDevice && st.st_rdev == 0 {
                    return None; // deleted above
                }
                return Some(LayerEntry { dir: kind == FileType::Directory });
            }
        }
        None
    }

    /// `path` in the current stage's filesystem with every symlink on the way resolved, as
    /// Docker resolves a COPY destination against the image (`/var/run -> /run`): links are
    /// looked up layer by layer (top first, whiteouts honoured), each inside its layer, and
    /// never leave the image's root.
    fn canonical(&self, path: &str) -> String {
        let Some(stage) = self.stages.last() else { return normalize(path) };
        let layers: Vec<crate::fsutil::scope::Scope> = stage
            .config
            .rootfs
            .diff_ids
            .iter()
            .rev()
            .filter_map(|d| crate::fsutil::scope::Scope::open(&self.store.layer_diff_dir(d)).ok())
            .collect();
        let link_target = |rel: &str| -> Option<String> {
            use rustix::fs::FileType;
            for layer in &layers {
                let Ok(st) = layer.stat(Path::new(rel), false) else { continue };
                return match FileType::from_raw_mode(st.st_mode) {
                    FileType::Symlink => layer.read_link(Path::new(rel)).ok().map(|t| t.to_string_lossy().into_owned()),
                    _ => None, // a real entry, or a whiteout (deleted here)
                };
            }
            None
        };
        let mut done: Vec<String> = Vec::new();
        let mut pending: Vec<String> =
            path.split('/').filter(|c| !c.is_empty() && *c != ".").rev().map(String::from).collect();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            let candidate = done.iter().chain([&c]).cloned().collect::<Vec<_>>().join("/");
            match link_target(&candidate) {
                Some(target) if links < 40 => {
                    links += 1;
                    if target.starts_with('/') {
                        done.clear();
                    }
                    pending.extend(target.split('/').filter(|c| !c.is_empty() && *c != ".").rev().map(String::from));
                }
                _ => done.push(c),
            }
        }
        format!("/{}", done.join("/"))
    }

    /// `/etc/passwd` or `/etc/group` of the current stage: the topmost layer that has it.
    fn stage_file(&self, file: &str) -> Option<String> {
        let stage = self.stages.last()?;
        stage.config.rootfs.diff_ids.iter().rev().find_map(|diff_id| {
            crate::fsutil::scope::Scope::open(&self.store.layer_diff_dir(diff_id))
                .ok()?
                .read_to_string(Path::new(file))
                .ok()
        })
    }

    fn copy(&mut self, ins: &Instruction, missed: &mut bool) -> anyhow::Result<bool> {
        let vars = self.vars();
        let is_add = ins.keyword == "ADD";
        for (flag, _) in &ins.flags {
            match flag.as_str() {
                "chown" | "chmod" => {}
                "from" if !is_add => {}
                f => bail!("{} --{f} is not supported", ins.keyword),
            }
        }
        let mut list = match dockerfile::json_list(&ins.rest) {
            Some(v) => v,
            None => dockerfile::words(&ins.rest, &vars, self.escape).map_err(|e| anyhow::anyhow!(e))?,
        };
        if list.len() < 2 {
            bail!("{} needs at least one source and a destination", ins.keyword);
        }
        let dest_raw = list.pop().expect("two or more");
        let workdir =
            self.stages.last().and_then(|s| s.config.config.working_dir.clone()).unwrap_or_else(|| "/".into());
        let dest_is_dir_hint = dest_raw.ends_with('/') || list.len() > 1;
        let dest = self.canonical(&if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", workdir.trim_end_matches('/'))
        });
        if is_add && list.iter().any(|s| s.contains("://")) {
            bail!(
                "ADD from a URL is not supported: download the file into the build context, or fetch it in a RUN step"
            );
        }
        let owner = match ins.flag("chown") {
            Some(spec) => Some(self.resolve_owner(spec)?),
            None => None,
        };
        let chmod = match ins.flag("chmod") {
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| anyhow::anyhow!("--chmod={m}: not an octal mode"))?),
            None => None,
        };
        // Where the sources come from: the context, another stage, or an image. Either is a
        // scope: nothing outside it is ever read.
        let (source_root, _mount, from_key) = match ins.flag("from") {
            None => (self.opts.context.clone(), None, "context".to_string()),
            Some(from) => self.stage_root(from)?,
        };
        let scope = crate::fsutil::scope::Scope::open(&source_root)
            .with_context(|| format!("cannot open the build context {}", source_root.display()))?;
        let ignore = if ins.flag("from").is_none() { context::Ignore::load(&scope)? } else { context::Ignore::none() };
        let mut sources = Vec::new();
        for pattern in &list {
            let found = context::expand(&scope, pattern, &ignore)?;
            if found.is_empty() {
                bail!(
                    "{pattern}: no such file or directory in the {}",
                    if from_key == "context" { "build context (or excluded by .dockerignore)" } else { "source stage" }
                );
            }
            sources.extend(found);
        }
        let dest_is_dir = dest_is_dir_hint || sources.len() > 1 || self.lookup(&dest).is_some_and(|m| m.is_dir());
        let content = context::hash_sources(&scope, &sources, &ignore)?;
        let key_text = format!(
            "{} from={from_key} {:?} -> {dest} dir={dest_is_dir} owner={owner:?} chmod={chmod:?} content={content}",
            ins.keyword, list
        );
        let created_by = format!("{} {} {}", ins.keyword, list.join(" "), dest);
        let store_tmp = self.store.temp_path("copy").path().to_path_buf();
        self.layer_step(&[&key_text], &created_by, missed, |_| {
            let staging = TempDir::new(store_tmp);
            std::fs::create_dir_all(staging.path())?;
            let root = crate::fsutil::scope::Scope::open(staging.path())?;
            let dest_rel = dest.trim_start_matches('/').to_string();
            for rel in &sources {
                let is_dir = context::source_is_dir(&scope, rel)?;
                let name = Path::new(rel).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let target = if is_dir || !dest_is_dir { dest_rel.clone() } else { format!("{dest_rel}/{name}") };
                if is_add && !is_dir && context::is_archive(&scope, rel)? {
                    let dir_rel =
                        if dest_is_dir || dest_raw.ends_with('/') { dest_rel.clone() } else { target.clone() };
                    let dir = root.mkdir_all(Path::new(&dir_rel), 0o755)?;
                    let file = scope.open_file(Path::new(rel))?;
                    let (_, tar) = layer::decompressed(file)?;
                    let opts = layer::ApplyOptions {
                        whiteouts: layer::WhiteoutMode::Apply,
                        max_file_size: None,
                        owner: None,
                        keep_kinds: false,
                    };
                    layer::apply_layer(tar, &crate::fsutil::scope::fd_path(&dir), &opts)
                        .with_context(|| format!("cannot extract {rel}"))?;
                    continue;
                }
                context::copy_into(&scope, rel, &root, &target, &ignore)?;
            }
            context::set_owner_mode(&root, &dest_rel, owner, chmod)?;
            Ok(Some((staging, TreeMode::Plain)))
        })
    }

    /// The root filesystem of a stage (by name or index) or an image, for COPY --from.
    fn stage_root(&mut self, from: &str) -> anyhow::Result<(PathBuf, Option<MountGuard<'a>>, String)> {
        let stage = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(from))
            .or_else(|| from.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
            .cloned();
        let (diff_ids, key) = match stage {
            Some(s) => (s.config.rootfs.diff_ids.clone(), s.key.clone()),
            None => {
                let image = self.base_image(from)?;
                crate::runtime::ensure_layers(self.store, &image)?;
                (image.config.rootfs.diff_ids.clone(), image.manifest_digest.to_string())
            }
        };
        let work = self.store.temp_path("from");
        std::fs::create_dir_all(work.path())?;
        let plan = crate::runtime::rootfs::OverlayPlan::for_reading(self.store, work.path(), &diff_ids);
        crate::runtime::rootfs::mount(self.host.kernel(), &plan).context("cannot mount the source stage")?;
        let root = plan.target.clone();
        Ok((root.clone(), Some(MountGuard { kernel: self.host.kernel(), target: root, _work: work }), key))
    }

    fn resolve_owner(&self, spec: &str) -> anyhow::Result<(u32, u32)> {
        let (user, group) = spec.split_once(':').map_or((spec, None), |(u, g)| (u, Some(g)));
        let entry = |file: &str, name: &str| -> Option<Vec<String>> {
            let text = self.stage_file(file)?;
            text.lines()
                .map(|l| l.split(':').map(String::from).collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == name)
        };
        let lookup = |file: &str, name: &str| -> anyhow::Result<u32> {
            if let Ok(n) = name.parse() {
                return Ok(n);
            }
            match entry(file, name) {
                Some(f) => f[2].parse().map_err(|_| anyhow::anyhow!("bad /{file} entry for {name}")),
                None => bail!("--chown: no {name:?} in /{file} of the image"),
            }
        };
        let uid = lookup("etc/passwd", user)?;
        let gid = match group {
            Some(g) => lookup("etc/group", g)?,
            None if user.parse::<u32>().is_ok() => uid,
            // The user's primary group.
            None => entry("etc/passwd", user).and_then(|f| f.get(3)?.parse().ok()).unwrap_or(uid),
        };
        Ok((uid, gid))
    }

    fn finish(&mut self, stage: &Stage) -> anyhow::Result<Image> {
        let mut txn = self.store.begin()?;
        let manifest = txn.put_image(&stage.config, stage.layers.clone())?;
        txn.commit(&[(manifest.clone(), self.opts.tags.clone())])?;
        let image = self.store.image_by_manifest(&manifest.digest)?;
        crate::runtime::ensure_layers(self.store, &image)?;
        Ok(image)
    }
}

/// What [`Builder::lookup`] found at a path.
struct LayerEntry {
    dir: bool,
}

impl LayerEntry {
    fn is_dir(&self) -> bool {
        self.dir
    }
}

/// Unmounts a COPY --from source when dropped.
struct MountGuard<'a> {
    kernel: &'a dyn crate::runtime::kernel::Kernel,
    target: PathBuf,
    _work: crate::fsutil::TempPath,
}

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        let _ = crate::runtime::rootfs::unmount(self.kernel, &self.target);
    }
}

/// A temporary directory removed when dropped.
pub struct TempDir(crate::fsutil::TempPath);

impl TempDir {
    fn new(path: PathBuf) -> TempDir {
        TempDir(crate::fsutil::TempPath::new(path))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// `/a/./b/../c` → `/a/c`.
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn healthcheck(ins: &Instruction) -> anyhow::Result<serde_json::Value> {
    let rest = ins.rest.trim();
    if rest.eq_ignore_ascii_case("none") {
        return Ok(serde_json::json!({"Test": ["NONE"]}));
    }
    let Some(cmd) = rest.strip_prefix("CMD").or_else(|| rest.strip_prefix("cmd")) else {
        bail!("HEALTHCHECK takes [OPTIONS] CMD command, or NONE");
    };
    let test = match dockerfile::command(cmd) {
        Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect::<Vec<_>>(),
        Command::Shell(s) => vec!["CMD-SHELL".to_string(), s],
    };
    let mut v = serde_json::json!({ "Test": test });
    for (flag, value) in &ins.flags {
        let value = value.as_deref().ok_or_else(|| anyhow::anyhow!("--{flag} needs a value"))?;
        let ns = |s: &str| -> anyhow::Result<u64> {
            Ok(u64::try_from(crate::syntax::duration(s)?.as_nanos()).unwrap_or(u64::MAX))
        };
        match flag.as_str() {
            "interval" => v["Interval"] = ns(value)?.into(),
            "timeout" => v["Timeout"] = ns(value)?.into(),
            "start-period" => v["StartPeriod"] = ns(value)?.into(),
            "start-interval" => v["StartInterval"] = ns(value)?.into(),
            "retries" => v["Retries"] = value.parse::<u64>().map_err(|_| anyhow::anyhow!("--retries={value}"))?.into(),
            f => bail!("HEALTHCHECK --{f} is not supported"),
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise() {
        assert_eq!(normalize("/a/./b/../c/"), "/a/c");
        assert_eq!(normalize("/../x"), "/x");
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn healthchecks_become_docker_config() {
        let df = dockerfile::parse(
            "HEALTHCHECK --interval=5s --retries=3 CMD wget -q http://localhost/\nHEALTHCHECK NONE\n",
        )
        .unwrap();
        let v = healthcheck(&df.instructions[0]).unwrap();
        assert_eq!(v["Test"], serde_json::json!(["CMD-SHELL", "wget -q http://localhost/"]));
        assert_eq!(v["Interval"], 5_000_000_000u64);
        assert_eq!(v["Retries"], 3);
        assert_eq!(healthcheck(&df.instructions[1]).unwrap()["Test"], serde_json::json!(["NONE"]));
    }
}
