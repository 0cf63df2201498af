//! Compose files run by Lifeboat's runtime: a WordPress + MariaDB project comes up from its
//! Compose file (one image built, the database waited for until healthy, services reaching
//! each other by name), snapshots as one stack, and comes back with one command after
//! `down -v`; a key Lifeboat cannot honour is named with its line.

use std::fs;

use crate::stacks::{WORDPRESS_START, WP_CLI, exec, page_with};
use crate::util::{Env, free_port, wait_until};

const COMPOSE: &str = r#"
name: blog
x-restart: &restart
  restart: unless-stopped
services:
  wordpress:
    <<: *restart
    build: ./wp
    ports: ["127.0.0.1:${WP_PORT:?}:8080"]
    environment:
      WORDPRESS_DB_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD in .env}
    volumes:
      - wpconfig:/etc/wordpress
      - wpcontent:/var/lib/wordpress/wp-content
    secrets: [admin_note]
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: test -e /etc/wordpress/config-default.php
      interval: 1s
  db:
    <<: *restart
    image: ${IMAGE}
    user: mysql
    command:
      - sh
      - -c
      - "[ -d /var/lib/mysql/mysql ] || mariadb-install-db --skip-test-db >/dev/null; exec mariadbd --bind-address=127.0.0.1"
    healthcheck:
      test: ["CMD", "mariadb-admin", "ping", "--silent"]
      interval: 1s
    volumes:
      - dbdata:/var/lib/mysql
    labels:
      lifeboat.consistency: mariadb
volumes:
  dbdata:
  wpconfig:
  wpcontent:
secrets:
  admin_note:
    file: ./admin-note.txt
"#;

#[test]
fn a_compose_wordpress_comes_up_snapshots_as_one_stack_and_comes_back_after_down() {
    let env = Env::new();
    let Some(image) = env.service_image("lamp") else { return };
    let port = free_port();
    let dir = env.path("blog");
    fs::create_dir_all(dir.join("wp")).unwrap();
    fs::write(dir.join("compose.yaml"), COMPOSE).unwrap();
    fs::write(dir.join(".env"), format!("DB_PASSWORD=db-secret\nWP_PORT={port}\nIMAGE={image}\n")).unwrap();
    fs::write(dir.join("admin-note.txt"), "call the library desk\n").unwrap();
    // WordPress reaches its database by the service's name.
    let start = WORDPRESS_START.replace("define('DB_HOST', '127.0.0.1')", "define('DB_HOST', 'db')");
    assert_ne!(start, WORDPRESS_START, "the start script no longer names its database host");
    fs::write(dir.join("wp/start.sh"), start).unwrap();
    fs::write(
        dir.join("wp/Dockerfile"),
        format!("FROM {image}\nCOPY start.sh /usr/local/bin/start.sh\nCMD [\"sh\", \"/usr/local/bin/start.sh\"]\n"),
    )
    .unwrap();
    let file = dir.join("compose.yaml");
    let file = file.to_str().unwrap();

    let config = env.ok(&["compose", "-f", file, "config"]);
    assert!(config.contains("db → container blog-db-1"), "{config}");
    let up = env.ok(&["compose", "-f", file, "up", "-d"]);
    assert_eq!(up.lines().collect::<Vec<_>>(), ["db: created", "wordpress: created"], "{up}");
    exec(
        &env,
        &[
            "-u",
            "0",
            "blog-db-1",
            "mariadb",
            "-e",
            "CREATE DATABASE wordpress; CREATE USER 'wordpress'@'127.0.0.1' IDENTIFIED BY 'db-secret'; \
         GRANT ALL ON wordpress.* TO 'wordpress'@'127.0.0.1';",
        ],
    );
    wait_until(30, "the WordPress configuration", || {
        env.ok(&["compose", "-f", file, "ps"])
            .lines()
            .any(|l| l.starts_with("blog-wordpress-1") && l.contains("(healthy)"))
    });
    assert_eq!(exec(&env, &["blog-wordpress-1", "cat", "/run/secrets/admin_note"]), "call the library desk\n");
    let hosts = exec(&env, &["blog-wordpress-1", "cat", "/etc/hosts"]);
    assert!(hosts.contains("127.0.0.1\tdb\n"), "{hosts}");
    exec(&env, &["blog-wordpress-1", "sh", "-c", &format!("cat > /usr/local/bin/wp.php <<'EOF'\n{WP_CLI}\nEOF")]);
    let wp = |args: &[&str]| exec(&env, &[&["blog-wordpress-1", "php", "/usr/local/bin/wp.php"], args].concat());
    wp(&["install"]);
    wp(&["post", "Opening hours for the winter"]);
    assert!(page_with(port, "Opening hours for the winter", 30).is_some(), "the post is not on the front page");
    // Up again with nothing changed: nothing is recreated.
    let again = env.ok(&["compose", "-f", file, "up"]);
    assert_eq!(again.lines().collect::<Vec<_>>(), ["db: up to date", "wordpress: up to date"], "{again}");

    // The project as one stack, the database with its recipe from the label.
    let out = env.ok(&["snapshot", "--compose", dir.to_str().unwrap(), "--format", "json"]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2, "{out}");
    assert!(reports[0]["stack"].is_string() && reports[0]["stack"] == reports[1]["stack"], "{out}");
    // A drill of the project runs aside, in a network of its own (its `db` is its own copy,
    // whose 3306 would clash with the live one's on a shared network): it answers, its network
    // goes with it, and the live site keeps answering.
    let drill = env.ok(&["drill", "--compose", dir.to_str().unwrap(), "--http", "http://localhost:8080/", "--json"]);
    let drill: serde_json::Value = serde_json::from_str(&drill).unwrap();
    assert_eq!(drill["healthy"], true, "{drill}");
    let networks: Vec<String> = fs::read_dir(env.path("run/networks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(networks, ["blog_default"], "the drill's network was left behind, or the live one went");
    assert!(page_with(port, "Opening hours for the winter", 10).is_some(), "the live site stopped answering");
    wp(&["post", "Written after the snapshot"]);
    assert!(page_with(port, "Written after the snapshot", 30).is_some());

    let down = env.ok(&["down", "-f", file, "-v"]);
    assert!(down.contains("wordpress: removed") && down.contains("volume blog_dbdata: removed"), "{down}");
    assert!(env.ok(&["compose", "-f", file, "ps", "--format", "json"]).trim() == "[]");
    assert!(!env.ok(&["volume", "ls"]).contains("blog_"), "the project's volumes are still there");

    env.ok(&["restore", "--compose", file]);
    let page = page_with(port, "Opening hours for the winter", 60).expect("the restored site's front page");
    assert!(!page.contains("Written after the snapshot"), "a post written after the snapshot came back");
    // The restored project is the project: up leaves it, down takes it away.
    let after = env.ok(&["compose", "-f", file, "up"]);
    assert_eq!(after.lines().collect::<Vec<_>>(), ["db: up to date", "wordpress: up to date"], "{after}");
    env.ok(&["compose", "-f", file, "down", "-v"]);
    assert!(env.ok(&["ps", "-a"]).lines().count() == 1, "containers are left");
}

#[test]
fn a_compose_key_lifeboat_cannot_honour_is_named_with_its_line() {
    let env = Env::new();
    let dir = env.path("p");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("compose.yaml"), "services:\n  web:\n    image: site:1\n    stop_grace_period: 5s\n").unwrap();
    let file = dir.join("compose.yaml");
    let err = env.fails(&["compose", "-f", file.to_str().unwrap(), "up"], 2);
    assert!(err.contains("compose.yaml:4: services.web.stop_grace_period is not supported"), "{err}");
    assert!(env.ok(&["ps", "-a"]).lines().count() == 1, "something was created");
    let err = env.fails(&["compose", "-f", env.path("missing.yaml").to_str().unwrap(), "ps"], 2);
    assert!(err.contains("cannot read the Compose file"), "{err}");
}
