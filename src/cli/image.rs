//! Image commands: import, images, tag, rmi, history, inspect, save, load, image prune/unpack.

use std::collections::HashSet;
use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::output::{OutputFormat, ago, human_size, print_table, sorted_json, truncate};
use super::{Context, UsageError};
use lifeboat::image::Reference;
use lifeboat::image::archive::ArchiveFormat;
use lifeboat::image::import::{ImportOptions, ImportSource};
use lifeboat::image::layer::Compression;
use lifeboat::ops::images;

pub const IMPORT_EXAMPLES: &str = "\
Examples:
  lifeboat import rootfs.tar website:1
  lifeboat import ./rootfs website:1 --change 'CMD [\"/bin/httpd\", \"-f\", \"-p\", \"80\"]' --change 'EXPOSE 80'
  tar -C rootfs -c . | lifeboat import - website:1";
pub const IMAGES_EXAMPLES: &str = "\
Examples:
  lifeboat images
  lifeboat images website          all tags of one repository
  lifeboat images -q               IDs only
  lifeboat images --format json";
pub const TAG_EXAMPLES: &str = "\
Examples:
  lifeboat tag website:1 website:stable
  lifeboat tag 3f2a1b4c5d6e 127.0.0.1:5000/library/website:1";
pub const RMI_EXAMPLES: &str = "\
Examples:
  lifeboat rmi website:1
  lifeboat rmi -f 3f2a1b4c5d6e     remove an image with several names";
pub const HISTORY_EXAMPLES: &str = "\
Examples:
  lifeboat history website:1
  lifeboat history --no-trunc website:1";
pub const INSPECT_EXAMPLES: &str = "\
Examples:
  lifeboat inspect website:1
  lifeboat inspect website:1 | jq '.[0].Config.Cmd'";
pub const SAVE_EXAMPLES: &str = "\
Examples:
  lifeboat save -o website.tar website:1                       OCI archive (podman load, skopeo)
  lifeboat save --format docker-archive -o w.tar website:1     for docker load
  lifeboat save website:1 | gzip > website.tar.gz";
pub const LOAD_EXAMPLES: &str = "\
Examples:
  lifeboat load -i busybox.tar          from docker save, podman save or lifeboat save
  gunzip -c website.tar.gz | lifeboat load";
pub const PRUNE_EXAMPLES: &str = "\
Examples:
  lifeboat image prune          remove untagged images and unreferenced data
  lifeboat image prune -a -f    remove every image no container uses";
pub const UNPACK_EXAMPLES: &str = "\
Examples:
  lifeboat image unpack website:1 /tmp/website-rootfs";

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A tar archive (plain, gzip or zstd), a directory, or - for standard input.
    pub source: String,
    /// Name for the new image, e.g. website:1.
    pub name: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL).
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message recorded in the image history.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag).
    pub repository: Option<String>,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show all images (accepted for Docker compatibility; intermediate images are always shown).
    #[arg(short, long)]
    pub all: bool,
    /// Show manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// table, json, or a Go-style template: '{{.Repository}}:{{.Tag}}'
    /// (fields: Repository Tag ID Digest Created CreatedSince Size).
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// SOURCE TARGET: give image SOURCE (name or ID) the name TARGET. With --add, --remove
    /// or --set: the snapshots (ID prefixes) whose tags to change, as restic's `tag` does.
    #[arg(required = true, value_name = "SOURCE TARGET | SNAPSHOT…")]
    pub names: Vec<String>,
    /// Add tags to the snapshots (a,b or the flag again).
    #[arg(long, value_name = "TAG")]
    pub add: Vec<String>,
    /// Remove tags from the snapshots.
    #[arg(long, value_name = "TAG")]
    pub remove: Vec<String>,
    /// Replace the snapshots' tags with these (--set '' clears them).
    #[arg(long, value_name = "TAG")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub repo: super::repo::RepoArgs,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to remove (names or IDs).
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::images))]
    pub images: Vec<String>,
    /// Remove an image referenced by several names, by ID.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::images))]
    pub image: String,
    /// Do not truncate the CREATED BY column.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show IDs only.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::containers_and_images))]
    pub names: Vec<String>,
    /// A Go-style template applied to each object: '{{.State.Status}}',
    /// '{{json .Config.Env}}', '{{range .Mounts}}{{.Source}} {{end}}'; or json (the default).
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save (names or IDs).
    #[arg(required = true, add = clap_complete::ArgValueCandidates::new(super::complete::images))]
    pub images: Vec<String>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ArchiveFormat::OciArchive)]
    pub format: ArchiveFormat,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from this file instead of standard input (plain, gzip or zstd).
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Print nothing.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image that no container uses, not only untagged ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::images))]
    pub image: String,
    /// An empty or missing directory to receive the flattened root filesystem.
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list", after_help = IMAGES_EXAMPLES)]
    Ls(ImagesArgs),
    /// Remove images.
    #[command(visible_alias = "remove", after_help = RMI_EXAMPLES)]
    Rm(RmiArgs),
    /// Remove untagged images and data nothing references.
    #[command(after_help = PRUNE_EXAMPLES)]
    Prune(PruneArgs),
    /// Create an image from a root filesystem.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import(ImportArgs),
    /// Show an image's details as JSON.
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Show an image's history.
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),
    /// Give an image another name.
    #[command(after_help = TAG_EXAMPLES)]
    Tag(TagArgs),
    /// Write images to an archive.
    #[command(after_help = SAVE_EXAMPLES)]
    Save(SaveArgs),
    /// Read images from an archive.
    #[command(after_help = LOAD_EXAMPLES)]
    Load(LoadArgs),
    /// Write an image's flattened root filesystem to a directory.
    #[command(after_help = UNPACK_EXAMPLES)]
    Unpack(UnpackArgs),
}

pub fn image_command(ctx: &Context, cmd: ImageCommand) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Ls(a) => images(ctx, a),
        ImageCommand::Rm(a) => rmi(ctx, a),
        ImageCommand::Prune(a) => prune(ctx, a),
        ImageCommand::Import(a) => import(ctx, a),
        ImageCommand::Inspect(a) => inspect(ctx, a),
        ImageCommand::History(a) => history(ctx, a),
        ImageCommand::Tag(a) => tag(ctx, a),
        ImageCommand::Save(a) => save(ctx, a),
        ImageCommand::Load(a) => load(ctx, a),
        ImageCommand::Unpack(a) => unpack(ctx, a),
    }
}

pub fn import(ctx: &Context, a: ImportArgs) -> anyhow::Result<i32> {
    let name = a.name.as_deref().map(Reference::parse).transpose()?;
    let source = ImportSource::from_arg(&a.source);
    let opts = ImportOptions { changes: a.changes, message: a.message, compression: a.compression };
    let image = images::import(ctx.host(), &source, name.as_ref(), &opts)
        .with_context(|| format!("cannot import {}", a.source))?;
    println!("{}", image.id());
    Ok(0)
}

pub fn images(ctx: &Context, a: ImagesArgs) -> anyhow::Result<i32> {
    let shape = super::output::Shape::parse(a.format.as_deref())?;
    let mut rows = images::list(ctx.host(), a.repository.as_deref())?;
    let short = |id: &str| if a.no_trunc { id.to_string() } else { id.trim_start_matches("sha256:")[..12].to_string() };
    if let super::output::Shape::Template(t) = &shape {
        for r in rows.iter_mut() {
            r.id = short(&r.id);
        }
        let header = |f: &str| match f {
            "ID" => Some("IMAGE ID"),
            "CreatedSince" => Some("CREATED"),
            "Created" => Some("CREATED AT"),
            _ => None,
        };
        // In templates, as in Docker's, sizes read as people read them ("7.8MB").
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r)?;
                v["Size"] = human_size(r.size).into();
                Ok(v)
            })
            .collect::<anyhow::Result<_>>()?;
        super::output::Shape::print_template(t, &rows, &header)?;
        return Ok(0);
    }
    if a.quiet {
        let mut seen = HashSet::new();
        for r in &rows {
            if seen.insert(r.id.clone()) {
                println!("{}", short(&r.id));
            }
        }
    } else if let super::output::Shape::Json = shape {
        println!("{}", sorted_json(&rows)?);
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut row = vec![r.repository.clone(), r.tag.clone()];
                if a.digests {
                    row.push(r.digest.clone());
                }
                row.extend([short(&r.id), r.created_since.clone(), human_size(r.size)]);
                row
            })
            .collect();
        let mut headers = vec!["REPOSITORY", "TAG"];
        if a.digests {
            headers.push("DIGEST");
        }
        headers.extend(["IMAGE ID", "CREATED", "SIZE"]);
        print_table(&headers, &table);
    }
    Ok(0)
}

pub fn tag(ctx: &Context, a: TagArgs) -> anyhow::Result<i32> {
    if a.add.is_empty() && a.remove.is_empty() && a.set.is_empty() {
        let [source, target] = a.names.as_slice() else {
            return Err(UsageError(
                "tag takes SOURCE TARGET (an image and its new name), or SNAPSHOT… with --add, --remove or --set"
                    .into(),
            )
            .into());
        };
        images::tag(ctx.host(), source, target)?;
        return Ok(0);
    }
    let split = |v: &[String]| -> Vec<String> {
        v.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(str::to_string).collect()
    };
    let change = lifeboat::ops::backup::TagChange {
        add: split(&a.add),
        remove: split(&a.remove),
        set: (!a.set.is_empty()).then(|| split(&a.set)),
    };
    let done = a.repo.with(ctx, None, |r| lifeboat::ops::backup::retag(ctx.host(), r, &a.names, &change))?;
    for t in &done {
        match &t.new_id {
            Some(new) => println!(
                "snapshot {} of {} is now {} (tags: {})",
                &t.old_id[..12],
                t.service,
                &new[..12],
                t.tags.join(",")
            ),
            None => println!("snapshot {} of {} unchanged (tags: {})", &t.old_id[..12], t.service, t.tags.join(",")),
        }
    }
    Ok(0)
}

pub fn rmi(ctx: &Context, a: RmiArgs) -> anyhow::Result<i32> {
    let mut failed = None;
    for what in &a.images {
        match images::remove(ctx.host(), what, a.force) {
            Ok(removed) => {
                for n in &removed.untagged {
                    println!("Untagged: {n}");
                }
                if let Some(id) = &removed.deleted {
                    println!("Deleted: {id}");
                }
            }
            Err(e) => {
                eprintln!("lifeboat: {}", lifeboat::error::describe(&e));
                failed = Some(lifeboat::error::exit_code(&e));
            }
        }
    }
    Ok(failed.unwrap_or(0))
}

pub fn prune(ctx: &Context, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force && io::stdin().is_terminal() {
        let what =
            if a.all { "all images without at least one container associated to them" } else { "all dangling images" };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let p = images::prune(ctx.host(), a.all)?;
    for n in &p.untagged {
        println!("Untagged: {n}");
    }
    println!(
        "Removed {} images, {} blobs, {} layers, {} leftovers; reclaimed {}",
        p.images,
        p.blobs,
        p.layers,
        p.temp,
        human_size(p.bytes)
    );
    Ok(0)
}

pub fn history(ctx: &Context, a: HistoryArgs) -> anyhow::Result<i32> {
    let rows = images::history(ctx.host(), &a.image)?;
    let short = |id: &str| {
        if id.starts_with("sha256:") { id.trim_start_matches("sha256:")[..12].to_string() } else { id.to_string() }
    };
    if a.quiet {
        for r in &rows {
            println!("{}", short(&r.id));
        }
        return Ok(0);
    }
    if a.format == OutputFormat::Json {
        println!("{}", sorted_json(&rows)?);
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let shown = if a.no_trunc { r.created_by.clone() } else { truncate(&r.created_by, 45) };
                vec![
                    short(&r.id),
                    ago(r.created.as_deref()),
                    shown,
                    human_size(r.size),
                    r.comment.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &table);
    }
    Ok(0)
}

pub fn inspect(ctx: &Context, a: InspectArgs) -> anyhow::Result<i32> {
    let template = match super::output::Shape::parse(a.format.as_deref())? {
        super::output::Shape::Template(t) => Some(t),
        _ => None,
    };
    let (found, missing) = images::inspect_any(ctx.host(), &a.names)?;
    let mut code = 0;
    for e in &missing {
        eprintln!("lifeboat: {}", lifeboat::error::describe(e));
        code = lifeboat::error::exit_code(e);
    }
    match template {
        Some(t) => {
            for object in &found {
                println!("{}", t.render(&serde_json::to_value(object)?)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&found)?),
    }
    Ok(code)
}

pub fn save(ctx: &Context, a: SaveArgs) -> anyhow::Result<i32> {
    match &a.output {
        Some(path) => images::save_to_file(ctx.host(), &a.images, a.format, path)?,
        None => {
            if io::stdout().is_terminal() {
                return Err(
                    UsageError("refusing to write an archive to a terminal; use -o FILE or redirect".into()).into()
                );
            }
            images::save_to(ctx.host(), &a.images, a.format, io::stdout().lock())?;
        }
    }
    Ok(0)
}

pub fn load(ctx: &Context, a: LoadArgs) -> anyhow::Result<i32> {
    let loaded = match &a.input {
        Some(path) => images::load_file(ctx.host(), path)?,
        None => {
            if io::stdin().is_terminal() {
                return Err(UsageError("no archive on standard input; use -i FILE or a pipe".into()).into());
            }
            images::load_from(ctx.host(), io::stdin().lock())?
        }
    };
    if !a.quiet {
        for l in &loaded {
            if let Some(id) = &l.id {
                println!("Loaded image ID: {id}");
            }
            for n in &l.names {
                println!("Loaded image: {n}");
            }
        }
    }
    Ok(0)
}

pub fn unpack(ctx: &Context, a: UnpackArgs) -> anyhow::Result<i32> {
    images::unpack(ctx.host(), &a.image, &a.dir)?;
    Ok(0)
}
