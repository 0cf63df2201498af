//! `ls`, `find` and `dump`: looking into snapshots without restoring them.

use clap::Args;

use super::Context;
use super::output::{OutputFormat, human_size, out_line, shown, sorted_json};
use super::repo::RepoArgs;
use lifeboat::ops::browse::{self, Address, EntryRow};

pub const LS_EXAMPLES: &str = "\
Addresses: SNAPSHOT[:PATH], SNAPSHOT being an ID (prefix), latest, SERVICE (its latest) or
SERVICE@TIME (its newest at or before TIME, RFC 3339 or a date); PATH as the service saw it.

Examples:
  lifeboat ls website:/var/www                  the latest snapshot of website
  lifeboat ls website@2026-12-01:/var/www -l    the newest on or before 1 December
  lifeboat ls 3f2a1b4c:/ -R                     everything a snapshot holds";
pub const FIND_EXAMPLES: &str = "\
Examples:
  lifeboat find page.html                        in every snapshot, newest first
  lifeboat find '*.php' --service website --since 2026-12-01
  lifeboat find '/var/www/**/wp-config.php'      a pattern with / matches whole paths";
pub const DUMP_EXAMPLES: &str = "\
Examples:
  lifeboat dump website:/var/www/wp-config.php > wp-config.php
  lifeboat dump website@2026-12-01:/var/www | tar t      a directory is a tar stream
  lifeboat restore website --include /var/www/page.html --in-place";

pub const MOUNT_EXAMPLES: &str = "\
The mount shows services/NAME/TIME/… and snapshots/ID/… (each with latest), paths as the
service saw them, read-only; file data is fetched when read. It is served until unmounted
(umount MOUNTPOINT) or interrupted (Ctrl-C).

Examples:
  lifeboat mount /mnt/snapshots &
  ls /mnt/snapshots/services/website/
  diff -r /mnt/snapshots/services/website/latest/var/www /srv/www
  umount /mnt/snapshots";

#[derive(Debug, Args)]
pub struct MountArgs {
    /// An empty directory to serve the snapshots at.
    pub mountpoint: std::path::PathBuf,
    /// Only this service's snapshots.
    #[arg(long, add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub service: Option<String>,
    /// File data kept in memory at most, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub cache_size: usize,
    /// Let every user read it, as the files' owners and modes allow (the container's user IDs
    /// taken as this host's); by default only root can.
    #[arg(long)]
    pub allow_other: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// SNAPSHOT[:PATH] (see below).
    pub address: String,
    /// Long listing: permissions, owner, size, time.
    #[arg(short, long)]
    pub long: bool,
    /// Everything below the path.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(Debug, Args)]
pub struct FindArgs {
    /// A name pattern (page.html, *.php) or, with a /, a path pattern (** spans directories).
    pub pattern: String,
    /// Only this service's snapshots.
    #[arg(long, add = clap_complete::ArgValueCandidates::new(super::complete::services))]
    pub service: Option<String>,
    /// Only snapshots taken at or after this time (RFC 3339, or a date: from its start).
    #[arg(long)]
    pub since: Option<String>,
    /// Match regardless of case.
    #[arg(short, long)]
    pub ignore_case: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// SNAPSHOT:PATH: a file is written as it is, a directory as a tar stream.
    pub address: String,
    /// A tar stream even for a single file (keeps its owner, mode and times).
    #[arg(long)]
    pub tar: bool,
    #[command(flatten)]
    pub repo: RepoArgs,
}

fn long_line(r: &EntryRow) -> String {
    let time = chrono::DateTime::parse_from_rfc3339(&r.mtime)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| r.mtime.clone());
    let link = r.link_target.as_deref().map(|t| format!(" -> {t}")).unwrap_or_default();
    let (path, link) = (shown(&r.path), shown(&link));
    format!("{} {:>6} {:>6} {:>10}  {time}  {path}{link}", r.permissions, r.uid, r.gid, r.size)
}

pub fn ls(ctx: &Context, a: LsArgs) -> anyhow::Result<i32> {
    let address = Address::parse(&a.address)?;
    let json = a.json || a.format == OutputFormat::Json;
    let mut rows = Vec::new();
    let listed = a.repo.with(ctx, address.service(), |r| {
        browse::ls(ctx.host(), r, &address, a.recursive, &mut |row| {
            if json {
                rows.push(row.clone());
            } else if a.long {
                out_line(format_args!("{}", long_line(row)), true);
            } else {
                out_line(format_args!("{}", shown(&row.path)), true);
            }
        })
    })?;
    if json {
        #[derive(serde::Serialize)]
        struct Out {
            #[serde(flatten)]
            listed: browse::Listed,
            entries: Vec<EntryRow>,
        }
        out_line(format_args!("{}", sorted_json(&Out { listed, entries: rows })?), true);
    }
    Ok(0)
}

pub fn find(ctx: &Context, a: FindArgs) -> anyhow::Result<i32> {
    let json = a.json || a.format == OutputFormat::Json;
    let req = browse::FindRequest {
        pattern: a.pattern.clone(),
        service: a.service.clone(),
        since: a.since.clone(),
        ignore_case: a.ignore_case,
    };
    let mut hits = Vec::new();
    let mut header = false;
    let n = a.repo.with(ctx, a.service.as_deref(), |r| {
        browse::find(ctx.host(), r, &req, &mut |f| {
            if json {
                hits.push(f.clone());
                return;
            }
            if !header {
                out_line(
                    format_args!(
                        "{:<12}  {:<19}  {:<16}  {:>9}  {:<19}  PATH",
                        "SNAPSHOT", "TAKEN", "SERVICE", "SIZE", "MODIFIED"
                    ),
                    true,
                );
                header = true;
            }
            let day = |t: &str| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|_| t.to_string())
            };
            let size =
                if f.entry.kind == lifeboat::repo::tree::NodeKind::Dir { "-".into() } else { human_size(f.entry.size) };
            out_line(
                format_args!(
                    "{:<12}  {:<19}  {:<16}  {:>9}  {:<19}  {}",
                    &f.snapshot[..12.min(f.snapshot.len())],
                    day(&f.time),
                    f.service,
                    size,
                    day(&f.entry.mtime),
                    shown(&f.entry.path)
                ),
                true,
            );
        })
    })?;
    if json {
        out_line(format_args!("{}", sorted_json(&hits)?), true);
    } else if n == 0 {
        eprintln!("nothing matches {:?}", a.pattern);
    }
    // Nothing found is "not found" (3), so scripts can tell.
    Ok(if n == 0 { lifeboat::error::NOT_FOUND } else { 0 })
}

pub fn dump(ctx: &Context, a: DumpArgs) -> anyhow::Result<i32> {
    let address = Address::parse(&a.address)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(lifeboat::error::UsageError(
            "dump writes file content or a tar stream: redirect it to a file or a pipe (dump … > FILE, dump … | tar t)"
                .into(),
        )
        .into());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    a.repo.with(ctx, address.service(), |r| browse::dump(ctx.host(), r, &address, a.tar, &mut out))?;
    std::io::Write::flush(&mut out)?;
    Ok(0)
}

pub fn mount(ctx: &Context, a: MountArgs) -> anyhow::Result<i32> {
    let req = browse::MountRequest {
        mountpoint: a.mountpoint.clone(),
        service: a.service.clone(),
        cache_bytes: a.cache_size.saturating_mul(1 << 20),
        allow_other: a.allow_other,
    };
    a.repo.with(ctx, a.service.as_deref(), |r| {
        browse::mount(ctx.host(), r, &req, &mut |n| {
            eprintln!(
                "{n} snapshots at {}: services/NAME/TIME and snapshots/ID; umount {} or Ctrl-C to stop",
                a.mountpoint.display(),
                a.mountpoint.display()
            )
        })
    })?;
    Ok(if lifeboat::sys::interrupted() { lifeboat::error::INTERRUPTED } else { 0 })
}
