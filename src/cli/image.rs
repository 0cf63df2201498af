//! Image commands: import, images, tag, rmi, history, inspect, save, load, image prune/unpack.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{OutputFormat, ago, human_size, print_table, truncate};
use super::{Context, UsageError};
use crate::fsutil::{self, TempPath};
use crate::image::archive::{self, ArchiveFormat, SaveItem};
use crate::image::import::{ImportOptions, ImportSource};
use crate::image::layer::{self, ApplyOptions, Compression, WhiteoutMode};
use crate::image::{Image, Reference, Store, StoreError};

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
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image (name or ID).
    pub source: String,
    /// New name.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to remove (names or IDs).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove an image referenced by several names, by ID.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
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
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save (names or IDs).
    #[arg(required = true)]
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
    let store = ctx.store()?;
    let opts = ImportOptions { changes: a.changes, message: a.message, compression: a.compression };
    let image = crate::image::import::import(&store, &source, name.as_ref(), &opts)
        .with_context(|| format!("cannot import {}", a.source))?;
    println!("{}", image.id());
    Ok(0)
}

pub fn images(ctx: &Context, a: ImagesArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let filter = a.repository.as_deref().map(Reference::parse_without_default).transpose()?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    let mut seen_ids = HashSet::new();
    for image in store.images()? {
        let size = store.image_size(&image);
        let names: Vec<Option<&Reference>> =
            if image.names.is_empty() { vec![None] } else { image.names.iter().map(Some).collect() };
        for name in names {
            if let Some(f) = &filter {
                let Some(n) = name else { continue };
                if !f.same_repository(n) || f.tag().is_some_and(|t| Some(t) != n.tag()) {
                    continue;
                }
            }
            let repo = name.map_or("<none>".to_string(), |n| n.familiar_name());
            let tag = name.and_then(|n| n.tag()).unwrap_or("<none>").to_string();
            let id = if a.no_trunc { image.id().to_string() } else { image.id().short() };
            if a.quiet {
                if seen_ids.insert(id.clone()) {
                    rows.push(vec![id]);
                }
                continue;
            }
            json_rows.push(json!({
                "Repository": repo, "Tag": tag, "ID": image.id().to_string(),
                "Digest": image.manifest_digest.to_string(), "Created": image.config.created,
                "CreatedSince": ago(image.config.created.as_deref()), "Size": size,
            }));
            let mut row = vec![repo, tag];
            if a.digests {
                row.push(image.manifest_digest.to_string());
            }
            row.extend([id, ago(image.config.created.as_deref()), human_size(size)]);
            rows.push(row);
        }
    }
    if a.quiet {
        for r in rows {
            println!("{}", r[0]);
        }
    } else if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&json_rows)?);
    } else {
        let mut headers = vec!["REPOSITORY", "TAG"];
        if a.digests {
            headers.push("DIGEST");
        }
        headers.extend(["IMAGE ID", "CREATED", "SIZE"]);
        print_table(&headers, &rows);
    }
    Ok(0)
}

pub fn tag(ctx: &Context, a: TagArgs) -> anyhow::Result<i32> {
    let target = Reference::parse(&a.target)?;
    if target.digest().is_some() {
        return Err(UsageError(format!("cannot tag with a digest reference {:?}", a.target)).into());
    }
    let store = ctx.store()?;
    let image = store.find(&a.source)?;
    store.tag(&image, &target)?;
    Ok(0)
}

pub fn rmi(ctx: &Context, a: RmiArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let mut failed = None;
    for what in &a.images {
        if let Err(e) = remove_one(ctx, &store, what, a.force) {
            eprintln!("lifeboat: {}", crate::error::describe(&e));
            failed = Some(crate::error::exit_code(&e));
        }
    }
    Ok(failed.unwrap_or(0))
}

fn remove_one(ctx: &Context, store: &Store, what: &str, force: bool) -> anyhow::Result<()> {
    let image = store.find(what)?;
    let containers = crate::runtime::Containers::open(&ctx.root)?;
    let users: Vec<String> = containers
        .ids()?
        .into_iter()
        .filter_map(|id| containers.config(&id).ok())
        .filter(|c| c.image_id == *image.id())
        .map(|c| c.name)
        .collect();
    let last_name = image.names.len() <= 1 || Reference::parse(what).is_err();
    if !users.is_empty() && last_name && !force {
        return Err(StoreError::Conflict(format!(
            "image {} is used by container(s) {}; remove them first, or use -f",
            image.id().short(),
            users.join(", ")
        ))
        .into());
    }
    // By name: drop that name; the image goes when its last name does.
    let by_name = Reference::parse(what).ok().filter(|r| image.names.contains(r));
    let to_untag: Vec<Reference> = match by_name {
        Some(r) => vec![r],
        None if image.names.len() > 1 && !force => {
            return Err(StoreError::Conflict(format!(
                "image {} is referenced by several names ({}); remove them by name or use -f",
                image.id().short(),
                image.names.iter().map(Reference::familiar).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
        None => image.names.clone(),
    };
    let mut orphan = image.names.is_empty();
    for r in &to_untag {
        println!("Untagged: {}", r.familiar());
        orphan = store.untag(r)?.is_some();
    }
    if orphan {
        store.remove_image(&image.manifest_digest, &crate::runtime::layers_in_use(&ctx.root)?)?;
        println!("Deleted: {}", image.id());
    }
    Ok(())
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
    let store = ctx.store()?;
    let containers = crate::runtime::Containers::open(&ctx.root)?;
    let used_images: HashSet<crate::image::Digest> =
        containers.ids()?.into_iter().filter_map(|id| containers.config(&id).ok()).map(|c| c.image_id).collect();
    if a.all {
        for image in store.images()?.into_iter().filter(|i| !used_images.contains(i.id())) {
            for name in &image.names {
                store.untag(name)?;
                println!("Untagged: {}", name.familiar());
            }
        }
    }
    let used_manifests: HashSet<crate::image::Digest> =
        store.images()?.into_iter().filter(|i| used_images.contains(i.id())).map(|i| i.manifest_digest).collect();
    let stats = store.prune(&used_manifests, &crate::runtime::layers_in_use(&ctx.root)?)?;
    println!(
        "Removed {} images, {} blobs, {} layers, {} leftovers; reclaimed {}",
        stats.images,
        stats.blobs,
        stats.layers,
        stats.temp,
        human_size(stats.bytes)
    );
    Ok(0)
}

pub fn history(ctx: &Context, a: HistoryArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let image = store.find(&a.image)?;
    let mut layers = image.config.rootfs.diff_ids.iter();
    let mut entries = Vec::new();
    for h in &image.config.history {
        let size =
            if h.empty_layer { 0 } else { layers.next().and_then(|d| store.layer_meta(d)).map_or(0, |m| m.size) };
        entries.push((h, size));
    }
    entries.reverse();
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (i, (h, size)) in entries.iter().enumerate() {
        let id = if i == 0 { image.id().short() } else { "<missing>".to_string() };
        let created_by = h.created_by.clone().unwrap_or_default();
        json_rows.push(json!({"ID": if i == 0 { image.id().to_string() } else { "<missing>".into() }, "Created": h.created, "CreatedBy": created_by, "Size": size, "Comment": h.comment}));
        if a.quiet {
            println!("{id}");
            continue;
        }
        let shown = if a.no_trunc { created_by } else { truncate(&created_by, 45) };
        rows.push(vec![id, ago(h.created.as_deref()), shown, human_size(*size), h.comment.clone().unwrap_or_default()]);
    }
    if a.quiet {
        return Ok(0);
    }
    if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&json_rows)?);
    } else {
        print_table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &rows);
    }
    Ok(0)
}

pub fn inspect(ctx: &Context, a: InspectArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let mut out = Vec::new();
    let mut code = 0;
    let containers = crate::runtime::Containers::open(&ctx.root)?;
    for name in &a.names {
        if let Ok(c) = containers.find(name) {
            out.push(super::container::inspect_json(ctx, &c)?);
            continue;
        }
        match store.find(name) {
            Ok(image) => out.push(inspect_json(&store, &image)),
            Err(e) => {
                let e = anyhow::Error::from(e);
                eprintln!("lifeboat: {}", crate::error::describe(&e));
                code = crate::error::exit_code(&e);
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}

fn inspect_json(store: &Store, image: &Image) -> serde_json::Value {
    let c = &image.config;
    json!({
        "Id": image.id().to_string(),
        "RepoTags": image.names.iter().filter(|n| n.tag().is_some()).map(Reference::familiar).collect::<Vec<_>>(),
        "RepoDigests": image.names.iter().map(|n| n.with_digest(image.manifest_digest.clone()).familiar()).collect::<Vec<_>>(),
        "Created": c.created,
        "Author": c.author,
        "Architecture": c.architecture,
        "Os": c.os,
        "Variant": c.variant,
        "Config": c.config,
        "Size": store.image_size(image),
        "RootFS": {"Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids},
        "Manifest": {"Digest": image.manifest_digest, "MediaType": image.manifest.media_type,
                     "Layers": image.manifest.layers.iter().map(|l| json!({"Digest": l.digest, "MediaType": l.media_type, "Size": l.size})).collect::<Vec<_>>()},
        "History": c.history,
    })
}

pub fn save(ctx: &Context, a: SaveArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let mut items = Vec::new();
    for what in &a.images {
        let image = store.find(what)?;
        // Saved by name: record that name. By ID: every name the image has.
        let names = match Reference::parse(what).ok().filter(|r| image.names.contains(r)) {
            Some(r) => vec![r],
            None => image.names.clone(),
        };
        items.push(SaveItem { image, names });
    }
    match &a.output {
        Some(path) => {
            let tmp = TempPath::new(sibling_temp(path));
            let file = File::create(tmp.path()).with_context(|| format!("cannot create {}", tmp.path().display()))?;
            let w = archive::save(&store, &items, a.format, BufWriter::with_capacity(1 << 20, file))?;
            let file = w
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", path.display()))?;
            file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
            fsutil::persist(tmp.path(), path).with_context(|| format!("cannot write {}", path.display()))?;
            tmp.keep();
        }
        None => {
            if io::stdout().is_terminal() {
                return Err(
                    UsageError("refusing to write an archive to a terminal; use -o FILE or redirect".into()).into()
                );
            }
            let mut w = archive::save(&store, &items, a.format, BufWriter::new(io::stdout().lock()))?;
            w.flush()?;
        }
    }
    Ok(0)
}

fn sibling_temp(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "archive".into());
    path.with_file_name(format!(".{name}.tmp-{}", fsutil::random_hex(6)))
}

pub fn load(ctx: &Context, a: LoadArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let loaded = match &a.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            archive::load(&store, io::BufReader::with_capacity(1 << 20, file), path)?
        }
        None => {
            if io::stdin().is_terminal() {
                return Err(UsageError("no archive on standard input; use -i FILE or a pipe".into()).into());
            }
            archive::load(&store, io::stdin().lock(), Path::new("-"))?
        }
    };
    if !a.quiet {
        for l in &loaded {
            if l.names.is_empty() {
                let image = store.image_by_manifest(&l.manifest.digest)?;
                println!("Loaded image ID: {}", image.id());
            }
            for n in &l.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(0)
}

pub fn unpack(ctx: &Context, a: UnpackArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let image = store.find(&a.image)?;
    if a.dir.exists() && a.dir.read_dir().with_context(|| format!("cannot read {}", a.dir.display()))?.next().is_some()
    {
        bail!(UsageError(format!("{} is not empty", a.dir.display())));
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("cannot create {}", a.dir.display()))?;
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, max_file_size: None };
    for desc in &image.manifest.layers {
        let compression = Compression::from_media_type(&desc.media_type)
            .ok_or_else(|| StoreError::Invalid(format!("unsupported layer media type {:?}", desc.media_type)))?;
        let file = io::BufReader::with_capacity(1 << 20, store.open_blob(&desc.digest)?);
        let reader: Box<dyn io::Read> = match compression {
            Compression::None => Box::new(file),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        };
        layer::apply_layer(reader, &a.dir, &opts).with_context(|| format!("cannot unpack layer {}", desc.digest))?;
    }
    Ok(0)
}
