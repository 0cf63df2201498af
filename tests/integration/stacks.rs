//! Real services, restored right: MariaDB with a PHP application on its network, PostgreSQL
//! with a client, SQLite in an application, from Debian's packages (tests/images/build.sh), each
//! run through write → snapshot (with its recipe) → more writes → outage → restore, and the
//! data found to be exactly the snapshot's.

use std::time::Duration;

use crate::util::{Env, free_port, http_get, wait_until};

pub(crate) fn exec(env: &Env, args: &[&str]) -> String {
    env.ok(&[&["exec"], args].concat())
}

pub(crate) fn ps_line(env: &Env, name: &str) -> String {
    env.ok(&["ps", "-a"]).lines().find(|l| l.ends_with(name)).unwrap_or_default().to_string()
}

/// The PHP pieces of the catalogue: a page that counts the books, and a writer that adds
/// book N to the database, then file N beside it (so a consistent snapshot of both has every
/// file's row, and at most one row without its file).
const PAGE: &str = r#"<?php $db = new mysqli('127.0.0.1', 'app', 'pw', 'catalogue');
$r = $db->query('SELECT COUNT(*), COALESCE(MAX(id), 0) FROM books')->fetch_row();
echo "books=$r[0] max=$r[1]\n";"#;
const INSERT: &str = r#"<?php $db = new mysqli('127.0.0.1', 'app', 'pw', 'catalogue');
$n = (int) $argv[1];
$db->query("INSERT INTO books VALUES ($n, 'book $n')") or exit(1);"#;

/// (rows, max row id) from the page (None while it does not answer), and the numbers of the
/// files the writer left.
fn try_catalogue(env: &Env, port: u16) -> Option<((u64, u64), Vec<u64>)> {
    let page = http_get(port, "/").ok()?;
    let field = |k: &str| -> Option<u64> { page.split_whitespace().find_map(|w| w.strip_prefix(k))?.parse().ok() };
    let counts = (field("books=")?, field("max=")?);
    let files = exec(env, &["web", "sh", "-c", "ls /app/rows"]);
    let mut nums: Vec<u64> = files.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    nums.sort();
    Some((counts, nums))
}

fn catalogue(env: &Env, port: u16) -> ((u64, u64), Vec<u64>) {
    let mut last = None;
    wait_until(30, "the catalogue page", || {
        last = try_catalogue(env, port);
        last.is_some()
    });
    last.unwrap()
}

/// The failures a user met, fixed: MariaDB as its own user on a named volume starts; a PHP
/// application on its network namespace is restored after it. And the two are snapshotted as
/// one stack while a writer keeps adding a row and a matching file: the restore holds both
/// from the same instant, none of the later writes, and InnoDB starts without crash recovery.
#[test]
fn mariadb_and_a_php_application_snapshot_and_restore_as_one_stack() {
    let env = Env::new();
    let Some(image) = env.service_image("lamp") else { return };
    let port = free_port();
    env.ok(&["volume", "create", "dbdata"]);
    start_mariadb(&env, &image, "dbdata", port);
    // cp through a running database's named volume (its mount point, as the container sees
    // it): MariaDB's own files, owned by mysql, come out as a tar stream.
    let tar = env.lifeboat().args(["cp", "-a", "db:/var/lib/mysql", "-"]).output().unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let stream = env.path("mysql.tar");
    std::fs::write(&stream, &tar.stdout).unwrap();
    let listed = crate::util::run(std::process::Command::new("tar").arg("-tf").arg(&stream));
    assert!(listed.lines().any(|l| l == "mysql/ibdata1"), "{listed}");
    exec(
        &env,
        &[
            "-u",
            "0",
            "db",
            "mariadb",
            "-e",
            "CREATE DATABASE catalogue; CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'pw'; \
         GRANT ALL ON catalogue.* TO 'app'@'127.0.0.1'; \
         CREATE TABLE catalogue.books (id INT PRIMARY KEY, title TEXT) ENGINE=InnoDB;",
        ],
    );
    let app = format!(
        "mkdir -p /app/rows && cat > /app/index.php <<'EOF'\n{PAGE}\nEOF\ncat > /app/insert.php <<'EOF'\n{INSERT}\nEOF\n"
    );
    env.ok(&["run", "--rm", "-v", "webapp:/app", &image, "sh", "-c", &app]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "container:db",
        "-v",
        "webapp:/app",
        &image,
        "php",
        "-S",
        "127.0.0.1:8080",
        "-t",
        "/app",
    ]);
    wait_until(30, "the page", || http_get(port, "/").is_ok_and(|p| p.contains("books=0")));
    // The writer: not part of the stack, removed with the outage.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "writer",
        "--network",
        "container:db",
        "-v",
        "webapp:/app",
        &image,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); php /app/insert.php $i && echo $i > /app/rows/$i; done",
    ]);
    wait_until(60, "rows to be written", || try_catalogue(&env, port).is_some_and(|c| c.0.0 > 30));

    let out = env.ok(&["snapshot", "db", "web", "--consistency", "db=mariadb", "--format", "json"]);
    let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 2, "{out}");
    assert_eq!(reports[0]["stack"], reports[1]["stack"], "{out}");
    assert!(reports[0]["stack"].is_string(), "{out}");
    // The writer carries on; the lock is gone (rows keep coming).
    let before = catalogue(&env, port).0;
    wait_until(30, "writes after the snapshot", || try_catalogue(&env, port).is_some_and(|c| c.0.0 > before.0 + 10));
    let ((rows_at_outage, _), _) = catalogue(&env, port);
    let listed = env.ok(&["snapshots"]);
    assert!(listed.lines().filter(|l| l.contains("db+web")).count() == 1, "the stack is not one row:\n{listed}");

    // The real database through the open snapshot: its data directory listed with its owner,
    // found, dumped, and restored into a directory with the same bytes and owner.
    let id_of = |service: &str| -> String {
        let r = reports.as_array().unwrap().iter().find(|r| r["service"] == service).unwrap();
        r["id"].as_str().unwrap()[..12].to_string()
    };
    let (db_id, web_id) = (id_of("db"), id_of("web"));
    let listing: serde_json::Value =
        serde_json::from_str(&env.ok(&["ls", &format!("{db_id}:/var/lib/mysql"), "--json"])).unwrap();
    let ibdata = listing["entries"].as_array().unwrap().iter().find(|e| e["path"] == "/var/lib/mysql/ibdata1").unwrap();
    assert_eq!(ibdata["stored_in"]["name"], "dbdata", "{ibdata}");
    let found = env.ok(&["find", "ibdata1", "--service", "db"]);
    assert!(found.contains("/var/lib/mysql/ibdata1") && found.contains(&db_id), "{found}");
    let dumped = env.lifeboat().args(["dump", &format!("{db_id}:/var/lib/mysql/ibdata1")]).output().unwrap();
    assert!(dumped.status.success(), "{}", String::from_utf8_lossy(&dumped.stderr));
    assert_eq!(dumped.stdout.len() as u64, ibdata["size"].as_u64().unwrap());
    let out_dir = env.dir.path().join("db-files");
    env.ok(&[
        "restore",
        "db",
        "--snapshot",
        &db_id,
        "--include",
        "/var/lib/mysql/ibdata1",
        "--target",
        out_dir.to_str().unwrap(),
    ]);
    let restored = out_dir.join("var/lib/mysql/ibdata1");
    assert!(std::fs::read(&restored).unwrap() == dumped.stdout, "the restored ibdata1 differs from the dumped one");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&restored).unwrap().uid() as u64, ibdata["uid"].as_u64().unwrap());
    // A file of the PHP application's volume deleted and put back while it serves.
    env.ok(&["exec", "web", "rm", "/app/rows/1"]);
    env.ok(&["restore", "web", "--snapshot", &web_id, "--include", "/app/rows/1", "--in-place"]);
    assert_eq!(env.ok(&["exec", "web", "cat", "/app/rows/1"]), "1\n");

    // A drill of the stack, named by the configuration: both restored aside, web on the drill
    // copy of db's network, db passing its own health check, web the page; then gone.
    let config = env.dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[services.db]\nimage = \"{image}\"\n[services.web]\nimage = \"{image}\"\nnetwork = \"container:db\"\n\
             [stacks.site]\nservices = [\"db\", \"web\"]\n"
        ),
    )
    .unwrap();
    let (before_ps, before_volumes) = (env.ok(&["ps", "-a", "-q"]), env.ok(&["volume", "ls", "-q"]));
    let config_arg = config.display().to_string();
    let out = env.ok(&[
        "drill",
        "--stack",
        "site",
        "--config",
        &config_arg,
        "--http",
        "http://localhost:8080/",
        "--format",
        "json",
    ]);
    let drill: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(drill["healthy"], true, "{out}");
    assert_eq!(drill["service"], "db+web", "{out}");
    let members: Vec<&str> =
        drill["members"].as_array().unwrap().iter().map(|m| m["service"].as_str().unwrap()).collect();
    assert_eq!(members, ["db", "web"], "{out}");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), before_ps, "the drill left containers");
    assert_eq!(env.ok(&["volume", "ls", "-q"]), before_volumes, "the drill left volumes");
    // A probe that fails fails the drill, and still leaves nothing.
    let out = env
        .lifeboat()
        .args(["drill", "db", "web", "--command", "test -e /app/missing", "--timeout", "15s", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let drill: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(drill["healthy"], false, "{drill}");
    assert!(drill["error"].as_str().unwrap().starts_with("web: "), "{drill}");
    assert_eq!(env.ok(&["ps", "-a", "-q"]), before_ps, "the failed drill left containers");
    assert_eq!(env.ok(&["volume", "ls", "-q"]), before_volumes, "the failed drill left volumes");

    // The outage: every container and volume gone.
    env.ok(&["rm", "-f", "writer", "web", "db"]);
    env.ok(&["volume", "rm", "dbdata", "webapp"]);
    let out = env.ok(&["restore", "db", "web"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().next().unwrap().starts_with("restored db"), "db first (web joins its network):\n{out}");
    wait_until(60, "the restored page", || http_get(port, "/").is_ok_and(|p| p.contains("books=")));
    let ((rows, max), files) = catalogue(&env, port);
    // One instant for both: every file has its row, at most the last row lacks its file.
    assert!(
        files.iter().all(|f| *f <= max),
        "a file without its row: rows {rows} max {max}, files up to {:?}",
        files.last()
    );
    assert!(rows as usize - files.len() <= 1, "rows {rows} but {} files", files.len());
    assert_eq!(rows, max, "rows are 1..=max");
    assert!(rows > 30 && rows < rows_at_outage, "rows {rows}: not the snapshot's ({} at the outage)", rows_at_outage);
    let logs = env.ok(&["logs", "db"]);
    assert!(!logs.contains("crash recovery"), "InnoDB recovered from a crash:\n{logs}");
    env.ok(&["rm", "-f", "web", "db"]);
}

/// PostgreSQL as its own user on a volume, a client inserting continuously; the `postgres`
/// recipe; after the outage the cluster starts on the restored volume with exactly the rows
/// committed before the snapshot (a row counter kept in the same transaction agrees).
#[test]
fn postgres_snapshot_and_restore_keep_exactly_the_committed_rows() {
    let env = Env::new();
    let Some(image) = env.service_image("postgres") else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "pg",
        "-v",
        "pgdata:/var/lib/postgresql/data",
        "--health-cmd",
        "pg_isready -q",
        "--health-interval",
        "1s",
        &image,
        "postgres",
        "-c",
        "listen_addresses=127.0.0.1",
    ]);
    wait_until(60, "PostgreSQL to answer", || ps_line(&env, "pg").contains("(healthy)"));
    exec(
        &env,
        &[
            "pg",
            "psql",
            "-q",
            "-c",
            "CREATE TABLE loans (id serial PRIMARY KEY, at timestamptz DEFAULT now()); \
         CREATE TABLE counter (n int); INSERT INTO counter VALUES (0);",
        ],
    );
    env.ok(&[
        "run", "-d", "--name", "client", "--network", "container:pg", "-u", "postgres", &image, "sh", "-c",
        "while true; do psql -h 127.0.0.1 -q -c 'BEGIN; INSERT INTO loans DEFAULT VALUES; UPDATE counter SET n = n + 1; COMMIT;' || sleep 0.2; done",
    ]);
    let count = |env: &Env| -> (u64, u64) {
        let out =
            exec(env, &["pg", "psql", "-tA", "-c", "SELECT (SELECT count(*) FROM loans), (SELECT n FROM counter)"]);
        let mut it = out.trim().split('|').map(|v| v.parse::<u64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    wait_until(60, "loans to be written", || count(&env).0 > 50);
    env.ok(&["snapshot", "pg", "--consistency", "postgres"]);
    let after = count(&env).0;
    wait_until(30, "loans after the snapshot", || count(&env).0 > after + 20);
    let at_outage = count(&env).0;
    env.ok(&["rm", "-f", "client", "pg"]);
    env.ok(&["volume", "rm", "pgdata"]);
    env.ok(&["restore", "pg"]);
    wait_until(60, "the restored cluster", || ps_line(&env, "pg").contains("(healthy)"));
    let (loans, counter) = count(&env);
    assert_eq!(loans, counter, "a half-committed transaction was restored");
    assert!(loans > 50 && loans < at_outage, "{loans} loans: not the snapshot's ({at_outage} at the outage)");
    env.ok(&["rm", "-f", "pg"]);
}

/// SQLite in an application's volume, written continuously; the `sqlite:` recipe holds a write
/// transaction across the freeze: the restored database is intact and holds whole transactions.
#[test]
fn sqlite_snapshot_holds_whole_transactions() {
    let env = Env::new();
    let Some(image) = env.service_image("lamp") else { return };
    env.ok(&[
        "run", "-d", "--name", "app", "-v", "appdata:/data", &image, "sh", "-c",
        "sqlite3 /data/app.db 'PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE IF NOT EXISTS c (n INT); INSERT INTO c SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM c);' >/dev/null; \
         while true; do sqlite3 /data/app.db 'BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (hex(randomblob(64))); UPDATE c SET n = n + 1; COMMIT;' 2>/dev/null; done",
    ]);
    // Until the start script has made the tables, the query fails: counted as none yet.
    let count = |env: &Env| -> (u64, u64) {
        let out = env
            .lifeboat()
            .args(["exec", "app", "sqlite3", "-cmd", ".timeout 10000", "/data/app.db"])
            .arg("SELECT (SELECT count(*) FROM t), (SELECT n FROM c)")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        let mut it = out.trim().split('|').map(|v| v.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    wait_until(60, "rows to be written", || count(&env).0 > 50);
    env.ok(&["snapshot", "app", "--consistency", "sqlite:/data/app.db"]);
    std::thread::sleep(Duration::from_millis(500));
    env.ok(&["rm", "-f", "app"]);
    env.ok(&["volume", "rm", "appdata"]);
    env.ok(&["restore", "app", "--no-start"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        "appdata:/data",
        &image,
        "sqlite3",
        "/data/app.db",
        "PRAGMA integrity_check; SELECT (SELECT count(*) FROM t) = (SELECT n FROM c);",
    ]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["ok", "1"], "{out}");
    env.ok(&["rm", "-f", "app"]);
}

/// The seed article's WordPress: secrets made at first start (salts, keys, the database
/// password), kept in a volume. The start script writes them only when they are missing.
pub(crate) const WORDPRESS_START: &str = include_str!("../fixtures/wordpress/start.sh");

/// WordPress's own functions from the command line, inside the wp container.
pub(crate) const WP_CLI: &str = include_str!("../fixtures/wordpress/wp.php");

/// Until the front page answers with `title` on it (None after `secs`).
pub(crate) fn page_with(port: u16, title: &str, secs: u64) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(page) = http_get(port, "/")
            && page.contains(title)
        {
            return Some(page);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// WordPress from Debian's package with MariaDB on its network, its secrets made at first
/// start: snapshotted as a stack to a local repository and both S3 servers at once; a post
/// written after the snapshot; the outage; `restore db wp` brings back the site as it was
/// (the later post absent) with the same secrets (a login cookie made before still
/// authenticates); and the same stack comes back from each S3 server on an empty root.
#[test]
fn wordpress_keeps_its_secrets_and_comes_back_from_s3_on_an_empty_root() {
    let (Some(s3s), Some(moto)) = (crate::util::s3_location("s3s"), crate::util::s3_location("moto")) else {
        return;
    };
    let env = Env::new();
    let Some(image) = env.service_image("lamp") else { return };
    let port = free_port();
    let password = env.path("repo.password");
    std::fs::write(&password, "wordpress stack repositories\n").unwrap();
    let pw = password.to_str().unwrap();
    let local = env.path("repo").display().to_string();
    for repo in [&local, &s3s, &moto] {
        env.ok(&["repo", "init", "--repo", repo, "--password-file", pw]);
    }

    start_mariadb(&env, &image, "wpdb", port);
    exec(
        &env,
        &[
            "-u",
            "0",
            "db",
            "mariadb",
            "-e",
            "CREATE DATABASE wordpress; CREATE USER 'wordpress'@'127.0.0.1' IDENTIFIED BY 'db-secret'; \
         GRANT ALL ON wordpress.* TO 'wordpress'@'127.0.0.1';",
        ],
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "wp",
        "--network",
        "container:db",
        "-e",
        "WORDPRESS_DB_PASSWORD=db-secret",
        "-v",
        "wpconfig:/etc/wordpress",
        "-v",
        "wpcontent:/var/lib/wordpress/wp-content",
        "--health-cmd",
        "test -e /etc/wordpress/config-default.php",
        "--health-interval",
        "1s",
        &image,
        "sh",
        "-c",
        WORDPRESS_START,
    ]);
    wait_until(30, "the WordPress configuration", || ps_line(&env, "wp").contains("(healthy)"));
    exec(&env, &["wp", "sh", "-c", &format!("cat > /usr/local/bin/wp.php <<'EOF'\n{WP_CLI}\nEOF")]);
    let wp = |args: &[&str]| exec(&env, &[&["wp", "php", "/usr/local/bin/wp.php"], args].concat());
    wp(&["install"]);
    wp(&["post", "Opening hours for the winter"]);
    assert!(page_with(port, "Opening hours for the winter", 30).is_some(), "the post is not on the front page");
    let cookie = wp(&["cookie"]);
    assert_eq!(wp(&["valid", &cookie]), "valid");
    let secrets = exec(&env, &["wp", "cat", "/etc/wordpress/config-default.php"]);
    assert!(secrets.contains("AUTH_SALT"), "{secrets}");

    env.ok(&[
        "snapshot",
        "db",
        "wp",
        "--consistency",
        "db=mariadb",
        "--repo",
        &local,
        "--repo",
        &s3s,
        "--repo",
        &moto,
        "--password-file",
        pw,
    ]);
    wp(&["post", "Written after the snapshot"]);
    assert!(page_with(port, "Written after the snapshot", 30).is_some());

    // The outage; one command brings the site back.
    env.ok(&["rm", "-f", "wp", "db"]);
    env.ok(&["volume", "rm", "wpdb", "wpconfig", "wpcontent"]);
    let started = std::time::Instant::now();
    env.ok(&["restore", "db", "wp", "--repo", &local, "--password-file", pw]);
    let page = page_with(port, "Opening hours for the winter", 60).expect("the restored site's front page");
    eprintln!("wordpress: outage -> first correct page, local repository: {:.2} s", started.elapsed().as_secs_f64());
    assert!(!page.contains("Written after the snapshot"), "a post written after the snapshot came back");
    assert_eq!(exec(&env, &["wp", "cat", "/etc/wordpress/config-default.php"]), secrets, "the secrets changed");
    assert_eq!(wp(&["valid", &cookie]), "valid", "a login made before the snapshot no longer authenticates");
    env.ok(&["rm", "-f", "wp", "db"]);

    // A new host: nothing but the repository.
    for (server, repo) in [("s3s", &s3s), ("moto", &moto)] {
        let fresh = Env::new();
        let started = std::time::Instant::now();
        fresh.ok(&["restore", "db", "wp", "--repo", repo, "--password-file", pw]);
        let page = page_with(port, "Opening hours for the winter", 60).expect("the site restored from S3");
        eprintln!(
            "wordpress: outage -> first correct page, {server} on an empty root: {:.2} s",
            started.elapsed().as_secs_f64()
        );
        assert!(!page.contains("Written after the snapshot"));
        let valid = fresh.ok(&["exec", "wp", "php", "/usr/local/bin/wp.php", "valid", &cookie]);
        assert_eq!(valid, "valid", "{server}: the secrets did not come back");
        fresh.ok(&["rm", "-f", "wp", "db"]);
    }
}

/// MariaDB from the lamp image as `db`, running as `mysql` on volume `volume` (initialised on
/// first start), publishing `port` for the application that joins its network; healthy.
pub(crate) fn start_mariadb(env: &Env, image: &str, volume: &str, port: u16) {
    let mount = format!("{volume}:/var/lib/mysql");
    let publish = format!("127.0.0.1:{port}:8080");
    env.ok(&[
        "run", "-d", "--name", "db", "-u", "mysql", "-v", &mount, "-p", &publish,
        "--health-cmd", "mariadb-admin ping --silent", "--health-interval", "1s",
        image, "sh", "-c",
        "[ -d /var/lib/mysql/mysql ] || mariadb-install-db --skip-test-db >/dev/null; exec mariadbd --bind-address=127.0.0.1",
    ]);
    wait_until(60, "MariaDB to answer", || ps_line(env, "db").contains("(healthy)"));
}
