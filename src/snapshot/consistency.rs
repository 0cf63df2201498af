//! How a service's data is made consistent for the instant it is frozen: a recipe per kind of
//! database, each running that database's own commands inside its container before the freeze
//! (and undoing them after the thaw, whatever happens in between).
//!
//! - `freeze` (the default): the cgroup freezer alone. Every process stops at once, so the
//!   files are as a power cut would leave them: crash-consistent, which every database that
//!   survives a power cut recovers from.
//! - `mariadb` (or `mysql`): InnoDB writes all its dirty pages first (so its files hold every
//!   committed row and a restored server has no redo to apply), then a session holds
//!   `FLUSH TABLES WITH READ LOCK` across the freeze: nothing commits half-way, and MyISAM and
//!   Aria tables are flushed and closed.
//! - `postgres`: a `CHECKPOINT` just before the freeze, so a restored cluster replays at most
//!   the little WAL written since (PostgreSQL's own guarantee for an atomic snapshot of its
//!   data directory).
//! - `sqlite:/path/db`: the WAL is checkpointed into the database, then a session holds
//!   `BEGIN IMMEDIATE` across the freeze, so no writer is half-way through a transaction.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::runtime::{self, Host};

pub use crate::syntax::Consistency;

/// Prepares container `id` for the freeze as `recipe` says; the guard undoes it when dropped.
pub fn prepare<'a>(recipe: &Consistency, inside: Inside<'a>) -> anyhow::Result<Prepared<'a>> {
    let run = |user: &str, script: &str| -> anyhow::Result<String> { run_in(&inside, user, script) };
    let undo = match recipe {
        Consistency::Freeze => None,
        Consistency::Mariadb => {
            // Every dirty page written, then the lock taken and held by a session that
            // outlives this exec, until the guard ends it.
            run("0", MARIADB_PREPARE).context("the mariadb recipe could not prepare the database")?;
            Some(("0", MARIADB_RELEASE.to_string()))
        }
        Consistency::Postgres => {
            run("postgres", "psql -q -X -c CHECKPOINT").context("the postgres recipe could not checkpoint")?;
            None
        }
        Consistency::Sqlite(path) => {
            run("0", &sqlite_prepare(path)).context("the sqlite recipe could not prepare the database")?;
            Some(("0", SQLITE_RELEASE.to_string()))
        }
    };
    Ok(Prepared { inside, undo })
}

/// Where a recipe's commands run: a container of this host's runtime, or of an engine.
pub enum Inside<'a> {
    Own(&'a Host, String),
    Engine(std::rc::Rc<crate::engine::Engine>, String),
}

impl Inside<'_> {
    fn id(&self) -> &str {
        match self {
            Inside::Own(_, id) | Inside::Engine(_, id) => id,
        }
    }

    /// Runs `sh -c SCRIPT` as `user` (output to standard error); its exit code.
    pub fn shell(&self, user: Option<&str>, script: &str, timeout: Option<Duration>) -> anyhow::Result<i64> {
        match self {
            Inside::Own(host, id) => {
                let mut opts = runtime::ExecOptions::shell(script);
                opts.user = user.map(String::from);
                opts.timeout = timeout;
                opts.output = runtime::ExecOutput::Stderr;
                Ok(runtime::exec(host, id, opts)?.into())
            }
            Inside::Engine(engine, id) => engine.exec_shell(id, user, script, timeout),
        }
    }
}

/// A service made ready for the freeze; dropping it lets the database go on as before.
pub struct Prepared<'a> {
    inside: Inside<'a>,
    undo: Option<(&'static str, String)>,
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        if let Some((user, script)) = self.undo.take()
            && let Err(e) = run_in(&self.inside, user, &script)
        {
            tracing::warn!(container = self.inside.id(), error = %e, "cannot release the database after the snapshot");
        }
    }
}

/// How long a recipe may take to prepare, and the longest a database stays locked if the
/// snapshot dies without releasing it.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(120);
const HOLD_AT_MOST_SECS: u32 = 600;

fn run_in(inside: &Inside, user: &str, script: &str) -> anyhow::Result<String> {
    let code = inside.shell(Some(user), script, Some(PREPARE_TIMEOUT))?;
    if code != 0 {
        bail!("its commands exited with {code}");
    }
    Ok(String::new())
}

// The lock first (nothing commits from then on), then every dirty page written while it is
// held: InnoDB's files then hold every committed row, and a restored server has no redo to
// apply. A server that cannot write them all within a minute is frozen anyway (its files are
// crash-consistent all the same).
const MARIADB_PREPARE: &str = concat!(
    "set -e; rm -f /run/lifeboat-locked; ",
    "mariadb -N -e \"SELECT @@GLOBAL.innodb_max_dirty_pages_pct\" > /run/lifeboat-dirty-pct; ",
    "(mariadb --unbuffered -N -e \"FLUSH TABLES WITH READ LOCK; FLUSH ENGINE LOGS; SELECT 'locked'; DO SLEEP(600)\" ",
    "> /run/lifeboat-locked 2>&1 &) ; ",
    "i=0; until grep -q locked /run/lifeboat-locked 2>/dev/null; do ",
    "i=$((i+1)); [ $i -lt 600 ] || { cat /run/lifeboat-locked >&2; exit 1; }; sleep 0.1; done; ",
    "mariadb -e \"SET GLOBAL innodb_max_dirty_pages_pct = 0\"; ",
    "i=0; while [ \"$(mariadb -N -e \"SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'\" | cut -f2)\" != 0 ]; do ",
    "i=$((i+1)); [ $i -lt 600 ] || { echo 'InnoDB still has dirty pages; freezing anyway' >&2; break; }; sleep 0.1; done"
);

const MARIADB_RELEASE: &str = concat!(
    "mariadb -N -e \"SELECT id FROM information_schema.processlist WHERE info LIKE '%SLEEP(600)%' AND id <> CONNECTION_ID()\" ",
    "| while read id; do mariadb -e \"KILL $id\"; done; ",
    "[ -s /run/lifeboat-dirty-pct ] && mariadb -e \"SET GLOBAL innodb_max_dirty_pages_pct = $(cat /run/lifeboat-dirty-pct)\"; ",
    "rm -f /run/lifeboat-locked /run/lifeboat-dirty-pct"
);

fn sqlite_prepare(path: &str) -> String {
    format!(
        "set -e; sqlite3 -cmd '.timeout 30000' '{path}' 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null; rm -f /run/lifeboat-sqlite-locked; \
         (printf '.timeout 30000\\nBEGIN IMMEDIATE;\\n.print locked\\n.shell sleep {HOLD_AT_MOST_SECS}.5\\nROLLBACK;\\n' \
         | sqlite3 '{path}' > /run/lifeboat-sqlite-locked 2>&1 &); \
         i=0; until grep -q locked /run/lifeboat-sqlite-locked 2>/dev/null; do \
         i=$((i+1)); [ $i -lt 300 ] || {{ cat /run/lifeboat-sqlite-locked >&2; exit 1; }}; sleep 0.1; done"
    )
}

/// Ends the session holding the transaction: its `sleep` is found by its own argument.
const SQLITE_RELEASE: &str = "for p in /proc/[0-9]*; do grep -qas 'sleep.600.5' \"$p/cmdline\" && kill \"${p#/proc/}\"; done; \
     rm -f /run/lifeboat-sqlite-locked; true";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_are_named_as_the_docs_name_them() {
        assert_eq!(Consistency::parse("freeze").unwrap(), Consistency::Freeze);
        assert_eq!(Consistency::parse("mysql").unwrap(), Consistency::Mariadb);
        assert_eq!(Consistency::parse("postgresql").unwrap(), Consistency::Postgres);
        assert_eq!(Consistency::parse("sqlite:/data/app.db").unwrap(), Consistency::Sqlite("/data/app.db".into()));
        assert!(Consistency::parse("sqlite:relative.db").is_err());
        assert!(Consistency::parse("sqlite:/a'b").is_err());
        assert!(Consistency::parse("oracle").unwrap_err().contains("unknown consistency recipe"));
    }
}
