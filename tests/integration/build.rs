//! Dockerfile builds: every instruction, multi-stage builds, .dockerignore, ADD of archives, the
//! layer cache (which steps were reused is asserted), errors that name their line, and the seed
//! article's "article-as-container" on a Debian base made with debootstrap.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Env, have, http_get, peers_required, run, wait_until};

/// Runs a build; returns its output and, per step, whether it was CACHED.
fn build(env: &Env, args: &[&str]) -> (String, Vec<(String, bool)>) {
    let mut all = vec!["build"];
    all.extend(args);
    let out = env.ok(&all);
    let lines: Vec<&str> = out.lines().collect();
    let mut steps = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(rest) = l.strip_prefix("Step ") {
            let instruction = rest.split_once(" : ").map(|(_, ins)| ins.to_string()).unwrap_or_default();
            let cached = lines[i + 1..].iter().find(|l| l.starts_with(" ---> ")).is_some_and(|l| l.contains("CACHED"));
            steps.push((instruction, cached));
        }
    }
    (out, steps)
}

fn cached_flags(steps: &[(String, bool)]) -> Vec<bool> {
    steps.iter().map(|(_, c)| *c).collect()
}

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=site:1
FROM ${BASE} AS build
ARG GREETING=hello
ENV APP=/app \
    LEGACY_FORM=no
ENV OLD value with spaces
WORKDIR $APP
# a comment between steps
RUN echo "$GREETING from the build" > built.txt \
 # a comment inside a continuation
 && echo "$OLD" > old.txt
RUN ["/bin/sh", "-c", "echo exec form > exec.txt"]
COPY *.md ./docs/
ADD data.tar.gz /data/
COPY --chown=65534:65534 owned.txt /owned.txt

FROM site:1
LABEL org.example.title="the library" maintainer-note=yes
MAINTAINER IT team <it@library.example>
COPY --from=build /app /app
COPY --from=build /data /data
USER nobody
EXPOSE 8080 53/udp
VOLUME /var/cache/site
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s CMD wget -q -O /dev/null http://127.0.0.1:8080/
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/built.txt"]
"#;

fn context(env: &Env) -> PathBuf {
    let ctx = env.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(ctx.join("guide.md"), "# Guide\n").unwrap();
    fs::write(ctx.join("secret.md"), "do not ship\n").unwrap();
    fs::write(ctx.join("owned.txt"), "mine\n").unwrap();
    fs::write(ctx.join(".dockerignore"), "secret.md\n*.log\n").unwrap();
    fs::write(ctx.join("build.log"), "noise\n").unwrap();
    let data = env.path("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("sub/catalogue.csv"), "id,title\n1,Dune\n").unwrap();
    run(Command::new("tar").arg("-C").arg(&data).arg("-czf").arg(ctx.join("data.tar.gz")).arg("."));
    ctx
}

#[test]
fn every_instruction_builds_and_unchanged_steps_are_reused() {
    let env = Env::new();
    env.site_image("site:1");
    let ctx = context(&env);
    let ctx_s = ctx.to_str().unwrap();
    let (out, steps) = build(&env, &["-t", "lib:1", "--build-arg", "GREETING=hi", ctx_s]);
    assert!(out.contains("Successfully tagged lib:1"), "{out}");
    assert_eq!(steps.len(), 24, "{out}");

    // What containers of the image see.
    assert_eq!(env.ok(&["run", "--rm", "lib:1"]), "hi from the build\n");
    let files = env.ok(&["run", "--rm", "--entrypoint", "", "lib:1", "sh", "-c",
        "cat /app/old.txt /app/exec.txt /data/sub/catalogue.csv; ls /app/docs; id -u; stat -c %u /owned.txt 2>/dev/null || echo no-owned"]);
    assert_eq!(
        files, "value with spaces\nexec form\nid,title\n1,Dune\nguide.md\n65534\nno-owned\n",
        "only the final stage ships; secret.md is ignored"
    );
    let inspect = env.inspect("lib:1");
    let config = &inspect["Config"];
    assert_eq!(config["User"], "nobody");
    assert_ne!(config["WorkingDir"], "/app", "WORKDIR was set in the first stage only");
    assert_eq!(config["Labels"]["org.example.title"], "the library");
    assert_eq!(config["Labels"]["maintainer"], "IT team <it@library.example>");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object() && config["ExposedPorts"]["53/udp"].is_object(), "{config}");
    assert!(config["Volumes"]["/var/cache/site"].is_object());
    assert_eq!(config["StopSignal"], "SIGQUIT");
    assert_eq!(config["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    let env_list = config["Env"].as_array().cloned().unwrap_or_default();
    assert!(env_list.iter().all(|e| !e.as_str().unwrap().starts_with("APP=")), "ENV of the first stage stays there");

    // Unchanged: every step is reused, and the image is the very same.
    let id = env.inspect("lib:1")["Id"].clone();
    let (_, again) = build(&env, &["-t", "lib:1", "--build-arg", "GREETING=hi", ctx_s]);
    assert!(again.iter().all(|(_, c)| *c), "{again:?}");
    assert_eq!(env.inspect("lib:1")["Id"], id, "a fully cached rebuild makes the same image");

    // A changed source re-runs from its COPY on; an ignored file changes nothing.
    fs::write(ctx.join("secret.md"), "still not shipped\n").unwrap();
    fs::write(ctx.join("guide.md"), "# Guide, 2nd edition\n").unwrap();
    let (_, third) = build(&env, &["-t", "lib:2", "--build-arg", "GREETING=hi", ctx_s]);
    let copy_at = third.iter().position(|(i, _)| i.starts_with("COPY *.md")).unwrap();
    assert!(third[..copy_at].iter().all(|(_, c)| *c), "{third:?}");
    assert!(!third[copy_at].1, "{third:?}");
    assert!(!third[copy_at + 1].1, "steps after a miss run again: {third:?}");

    // Another build argument re-runs the RUN that sees it.
    let (_, fourth) = build(&env, &["-t", "lib:3", "--build-arg", "GREETING=hey", ctx_s]);
    let flags = cached_flags(&fourth);
    let run_at = fourth.iter().position(|(i, _)| i.starts_with("RUN echo")).unwrap();
    assert!(flags[..run_at].iter().all(|c| *c) && !flags[run_at], "{fourth:?}");
    assert_eq!(env.ok(&["run", "--rm", "lib:3"]), "hey from the build\n");

    // --target stops at a stage; --no-cache reuses nothing.
    let (_, target) = build(&env, &["-t", "lib:build", "--target", "build", "--build-arg", "GREETING=hey", ctx_s]);
    assert_eq!(target.len(), 11, "{target:?}");
    assert_eq!(
        env.ok(&["run", "--rm", "lib:build", "sh", "-c", "cat /owned.txt; stat -c %u:%g /owned.txt"]),
        "mine\n65534:65534\n"
    );
    let (_, fresh) = build(&env, &["--no-cache", "-t", "lib:4", "--build-arg", "GREETING=hey", ctx_s]);
    assert!(fresh.iter().filter(|(i, _)| !i.starts_with("ARG BASE")).all(|(_, c)| !*c), "{fresh:?}");
}

#[test]
fn build_errors_name_their_line() {
    let env = Env::new();
    env.site_image("site:1");
    let ctx = env.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let cases = [
        ("FROM site:1\nRUN true\nRUN exit 7\n", 1, "line 3", "non-zero code: 7"),
        ("FROM site:1\n\nONBUILD RUN true\n", 1, "line 3", "ONBUILD is not supported"),
        ("FROM site:1\nFETCH x\n", 1, "line 2", "unknown instruction FETCH"),
        ("FROM site:1\nADD https://example.org/x.tar /x\n", 1, "line 2", "ADD from a URL is not supported"),
        ("FROM site:1\nCOPY missing.txt /x\n", 1, "line 2", "missing.txt: no such file"),
        ("FROM site:1\nCOPY ../outside /x\n", 1, "line 2", "inside the build context"),
        ("RUN true\n", 1, "line 1", "no FROM"),
        ("FROM site:1\nRUN --mount=type=cache,target=/x true\n", 1, "line 2", "RUN --mount is not supported"),
    ];
    for (dockerfile, code, line, message) in cases {
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let err = env.fails(&["build", "-t", "bad:1", ctx.to_str().unwrap()], code);
        assert!(err.contains(line) && err.contains(message), "{dockerfile:?}:\n{err}");
    }
    // A hermetic build has no network: the RUN sees only loopback.
    fs::write(ctx.join("Dockerfile"), "FROM site:1\nRUN cat /proc/net/dev | grep -c : > /ifaces\n").unwrap();
    env.ok(&["build", "--network", "none", "-t", "hermetic:1", ctx.to_str().unwrap()]);
    assert_eq!(env.ok(&["run", "--rm", "hermetic:1", "cat", "/ifaces"]), "1\n");
}

/// A minimal Debian 12 root filesystem as a tarball, made once with debootstrap and kept
/// between runs (it takes minutes).
fn debian_base() -> Option<PathBuf> {
    let cache = Path::new("/var/tmp/lifeboat-cache");
    let tar = cache.join("debian-12-minbase.tar");
    if tar.exists() {
        return Some(tar);
    }
    if !have("debootstrap") {
        return None;
    }
    fs::create_dir_all(cache).unwrap();
    let dir = cache.join(format!("debian-12-minbase.{}", std::process::id()));
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = fs::remove_dir_all(&dir);
        assert!(!peers_required(), "debootstrap failed:\n{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("skipping: debootstrap failed");
        return None;
    }
    let partial = cache.join(format!("debian-12-minbase.tar.{}", std::process::id()));
    run(Command::new("tar").arg("-C").arg(&dir).arg("-cf").arg(&partial).arg("."));
    fs::rename(&partial, &tar).unwrap();
    let _ = fs::remove_dir_all(&dir);
    Some(tar)
}

const ARTICLE_DOCKERFILE: &str = r#"FROM debian:12
RUN apt-get update \
 && apt-get install -y --no-install-recommends pandoc python3 \
 && rm -rf /var/lib/apt/lists/*
ADD start.sh /start.sh
ADD article.md /article.md
EXPOSE 8888
CMD ["/bin/bash", "/start.sh"]
"#;

const START_SH: &str = "#!/bin/bash\nset -e\nmkdir -p /www\npandoc -f markdown -t html -s --metadata title=Article /article.md -o /www/index.html\ncd /www\nexec python3 -m http.server 8888\n";

#[test]
fn the_article_as_a_container_is_built_served_and_rebuilt_from_the_changed_step() {
    let Some(base) = debian_base() else { return };
    let env = Env::new();
    env.ok(&["import", base.to_str().unwrap(), "debian:12"]);
    let ctx = env.path("article");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), ARTICLE_DOCKERFILE).unwrap();
    fs::write(ctx.join("start.sh"), START_SH).unwrap();
    let article = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed/docker-article.txt"))
        .unwrap_or_else(|_| "Docker: a Software as a Service, Operating System-Level Virtualization Framework\n\nDocker is a relatively new method of virtualization.\n".into());
    fs::write(ctx.join("article.md"), &article).unwrap();
    let ctx_s = ctx.to_str().unwrap();

    let (out, steps) = build(&env, &["-t", "article:1", ctx_s]);
    assert_eq!(steps.len(), 6, "{out}");
    let serve = |name: &str| -> String {
        env.ok(&["run", "-Pd", "--name", name, "article:1"]);
        let ps = env.ok(&["ps"]);
        let port: u16 = ps
            .lines()
            .find(|l| l.contains(name))
            .and_then(|l| l.split("0.0.0.0:").nth(1))
            .and_then(|p| p.split("->8888/tcp").next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no published port in ps:\n{ps}"));
        let mut page = String::new();
        wait_until(30, "the article", || {
            page = http_get(port, "/").unwrap_or_default();
            page.contains("<p>")
        });
        env.ok(&["rm", "-f", name]);
        page
    };
    let page = serve("article");
    assert!(page.contains("Virtualization Framework"), "{page}");

    // Edit the article, rebuild: everything before its ADD is reused.
    fs::write(ctx.join("article.md"), format!("{article}\n\n## Update\n\nLifeboat rebuilt this page.\n")).unwrap();
    let (_, again) = build(&env, &["-t", "article:1", ctx_s]);
    assert_eq!(cached_flags(&again), vec![true, true, true, false, false, false], "{again:?}");
    let page = serve("article2");
    assert!(page.contains("Lifeboat rebuilt this page."), "{page}");
}
