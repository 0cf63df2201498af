use std::collections::HashMap;
use std::path::Path;

use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let f = dir.join("compose.yaml");
    std::fs::write(&f, text).unwrap();
    f
}

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| m.get(k).cloned()
}

const STACK: &str = r#"
name: blog
x-restart: &restart
  restart: unless-stopped
services:
  wordpress:
    <<: *restart
    build:
      context: ./wp
      args:
        PHP: "8.2"
    ports: ["127.0.0.1:${WP_PORT:-8080}:80"]
    environment:
      DB_HOST: db
      DB_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD}
      WP_PORT:
      UNSET_HERE:
    volumes:
      - uploads:/var/www/uploads
      - ./site:/var/www/site:ro
    depends_on:
      db:
        condition: service_healthy
    secrets: [db_pw]
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 256m, pids: 100}
  db:
    <<: *restart
    image: lifeboat-test/lamp:1
    user: mysql
    command: mariadbd --bind-address=127.0.0.1
    healthcheck:
      test: ["CMD", "mariadb-admin", "ping", "--silent"]
      interval: 2s
      retries: 5
    volumes:
      - type: volume
        source: dbdata
        target: /var/lib/mysql
    labels:
      lifeboat.consistency: mariadb
volumes:
  uploads:
  dbdata:
    name: shared-dbdata
secrets:
  db_pw:
    file: ./db_pw.txt
"#;

#[test]
fn a_stack_reads_into_requests_in_start_order() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(".env"), "DB_PASSWORD=from-dotenv\nWP_PORT=9000\n").unwrap();
    let f = write(tmp.path(), STACK);
    let p = load(&f, None, &env_of(&[("WP_PORT", "8181")]), Keys::Refuse).unwrap();
    assert_eq!(p.name, "blog");
    assert_eq!(p.network, "blog_default");
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "wordpress"], "a service comes after what it depends on");
    let (db, wp) = (&p.services[0], &p.services[1]);
    assert_eq!(db.container, "blog-db-1");
    assert_eq!(db.request.command, ["mariadbd", "--bind-address=127.0.0.1"]);
    assert_eq!(db.request.restart, RestartPolicy::UnlessStopped);
    // An argument list runs without a shell.
    let check = db.request.health.resolve(None).unwrap();
    assert_eq!(check.command, "mariadb-admin ping --silent");
    assert_eq!(check.argv(), ["mariadb-admin", "ping", "--silent"]);
    assert_eq!((db.request.health.interval_secs, db.request.health.retries), (Some(2), Some(5)));
    assert_eq!(db.consistency.as_deref(), Some("mariadb"));
    assert_eq!(db.request.mounts[0].source, MountSource::Volume { name: "shared-dbdata".into() });
    assert_eq!(db.request.network, NetworkRequest::Named("blog_default".into()));
    assert!(p.request(db).extra_hosts.contains(&"wordpress:127.0.0.1".to_string()));
    // The process environment wins over .env; .env fills what it lacks.
    assert_eq!(wp.request.ports[0].host_port, 8181);
    assert!(wp.request.env.contains(&"DB_PASSWORD=from-dotenv".to_string()));
    // A name without a value takes it from the variables, and is left out when unset.
    assert!(wp.request.env.contains(&"WP_PORT=8181".to_string()), "{:?}", wp.request.env);
    assert!(!wp.request.env.iter().any(|e| e.starts_with("UNSET_HERE")), "{:?}", wp.request.env);
    let build = wp.build.as_ref().unwrap();
    assert_eq!((build.context.clone(), build.tag.as_str()), (tmp.path().join("wp"), "blog-wordpress"));
    assert_eq!(build.args["PHP"], "8.2");
    assert_eq!(wp.depends_on, [("db".to_string(), Condition::Healthy)]);
    assert_eq!(wp.request.mounts[0].source, MountSource::Volume { name: "blog_uploads".into() });
    assert_eq!(wp.request.mounts[1].source, MountSource::Bind { path: tmp.path().join("site"), must_exist: false });
    assert!(wp.request.mounts[1].read_only);
    let secret = &wp.request.mounts[2];
    assert_eq!((secret.target.as_str(), secret.read_only), ("/run/secrets/db_pw", true));
    assert_eq!((wp.request.cpus, wp.request.memory, wp.request.pids_limit), (Some(0.5), Some(256 << 20), Some(100)));
    assert_eq!(wp.request.labels[PROJECT_LABEL], "blog");
    assert_eq!(p.volumes, ["shared-dbdata", "blog_uploads"]);
    // -p wins over the file's name.
    assert_eq!(load(&f, Some("other"), &env_of(&[]), Keys::Refuse).unwrap().services[0].container, "other-db-1");
}

#[test]
fn what_cannot_be_honoured_is_named_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("services:\n  web:\n    image: x\n    stop_grace_period: 5s\n", ":4:", "services.web.stop_grace_period"),
        ("services:\n  web:\n    image: x\n    networks: [front]\n", ":4:", "default network"),
        ("networks:\n  front:\n    driver: bridge\nservices:\n  web:\n    image: x\n", ":2:", "networks other"),
        ("services:\n  web:\n    image: x\n    volumes: [data:/d]\n", ":4:", "not declared"),
        ("services:\n  web:\n    image: x\n    depends_on: [db]\n", ":4:", "no service \"db\""),
        (
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
            ":2:",
            "cycle",
        ),
        (
            "services:\n  a:\n    image: x\n    ports: [\"8080:80\"]\n  b:\n    image: x\n    ports: [\"8080:81\"]\n",
            ":5:",
            "both publish host port 8080",
        ),
        ("services:\n  web:\n    image: ${TAG:?name a tag}\n", ":3:", "name a tag"),
        ("services:\n  web:\n    build: .\n    image: x\n    secrets: [nope]\n", ":5:", "not defined"),
        ("services:\n  web: {}\n", ":2:", "neither an image nor a build"),
        ("services:\n  web:\n    image: x\n    ports: [\"8000-8001:80\"]\n", ":4:", "ranges"),
        ("services:\n  web:\n    image: x\n    deploy:\n      replicas: 2\n", ":5:", "deploy.replicas"),
        ("services:\n  web:\n    image: x\n    image: y\n", ":4:", "twice"),
        ("services:\n  web:\n    image: x\n    \"image\": y\n", ":4:", "twice"),
        (
            "services:\n  a:\n    image: x\n    container_name: one\n  b:\n    image: x\n    container_name: one\n",
            ":5:",
            "both name their container one",
        ),
        ("services:\n  web:\n    image: x\n    memory: 1g\n", ":4:", "memory is not supported"),
        ("services:\n  w:\n    image: x\nvolumes:\n  d:\n    labels: {a: b}\n", ":6:", "volumes.d.labels"),
        ("services:\n  w:\n    image: x\n    healthcheck:\n      start_interval: 1s\n", ":5:", "start_interval"),
        (
            "services:\n  w:\n    image: x\n    env_file:\n      - path: ./a\n        required: false\n",
            ":6:",
            "required",
        ),
        (
            "services:\n  w:\n    image: x\n    volumes:\n      - type: volume\n        target: /d\n        volume: {subpath: x}\n",
            ":7:",
            "subpath",
        ),
        ("services:\n  w:\n    image: x\n    volumes: [relative]\n", ":4:", "absolute"),
        (
            "services:\n  a:\n    image: x\n    depends_on:\n      b: {required: false}\n  b:\n    image: x\n",
            ":5:",
            "required: false",
        ),
        ("x-lifeboat:\n  schedule: daily\nservices:\n  web:\n    image: x\n", ":1:", "not supported yet"),
    ];
    for (text, line, what) in cases {
        let f = write(tmp.path(), text);
        let e = load(&f, Some("p"), &env_of(&[]), Keys::Refuse).unwrap_err().0;
        assert!(e.contains(line) && e.contains(what), "{text}\n→ {e}");
    }
}

#[test]
fn an_entrypoint_list_comes_before_the_command_whatever_the_order() {
    let tmp = tempfile::tempdir().unwrap();
    for text in [
        "services:\n  w:\n    image: x\n    entrypoint: [sh, -c]\n    command: echo hi\n",
        "services:\n  w:\n    image: x\n    command: [\"echo hi\"]\n    entrypoint: sh -c\n",
    ] {
        let f = write(tmp.path(), text);
        let p = load(&f, Some("p"), &env_of(&[]), Keys::Refuse).unwrap();
        let r = &p.services[0].request;
        assert_eq!(r.entrypoint.as_deref(), Some("sh"), "{text}");
        let want: &[&str] = if text.contains("[sh, -c]") { &["-c", "echo", "hi"] } else { &["-c", "echo hi"] };
        assert_eq!(r.command, want, "{text}");
    }
}

#[test]
fn a_running_project_with_an_unsupported_key_can_still_be_listed_and_taken_down() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "services:\n  web:\n    image: x\n    stop_grace_period: 5s\n");
    assert!(load(&f, Some("p"), &env_of(&[]), Keys::Refuse).is_err());
    let p = load(&f, Some("p"), &env_of(&[]), Keys::Warn).unwrap();
    assert_eq!(p.services[0].container, "p-web-1");
}

#[test]
fn project_names_follow_the_directory() {
    assert_eq!(normalise_name("My Library_Site"), "mylibrary_site");
    assert_eq!(normalise_name("--x"), "x");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Web Site");
    std::fs::create_dir(&dir).unwrap();
    let f = write(&dir, "services:\n  web:\n    image: x\n");
    assert_eq!(load(&f, None, &env_of(&[]), Keys::Refuse).unwrap().name, "website");
    assert!(load(&f, Some("Bad Name"), &env_of(&[]), Keys::Refuse).is_err());
    assert_eq!(find_file(None, &dir).unwrap(), f);
    assert!(find_file(None, tmp.path()).is_err());
}
