//! `build`: Dockerfile → image, with the layer cache.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;

use super::{Context, UsageError};
use lifeboat::image::Reference;
use lifeboat::runtime::container::NetworkMode;

pub const BUILD_EXAMPLES: &str = "\
Examples:
  lifeboat build -t article:1 .                          ./Dockerfile (or ./Containerfile)
  lifeboat build -t app:2 -f docker/Dockerfile.prod --build-arg VERSION=2.1 .
  lifeboat build --target build -t app:builder .         stop at the stage named build
  lifeboat build --network none --no-cache -t app:2 .    hermetic, from scratch

Each step shows CACHED when its result is reused: a step is reused when everything before it
is, its instruction is unchanged, and (ADD/COPY) its sources have the same content.";

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name the image (repeatable).
    #[arg(short, long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Set a build argument declared with ARG (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Run every step, reusing nothing.
    #[arg(long)]
    pub no_cache: bool,
    /// Network for RUN steps: host (so package managers work) or none.
    #[arg(long, default_value = "host")]
    pub network: String,
    /// Build only up to this stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// The build context: files ADD and COPY can use.
    pub context: PathBuf,
}

pub fn build(ctx: &Context, a: BuildArgs) -> anyhow::Result<i32> {
    let tags = a.tags.iter().map(|t| Reference::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let mut build_args = HashMap::new();
    for arg in &a.build_args {
        match arg.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => build_args.insert(arg.clone(), std::env::var(arg).unwrap_or_default()),
        };
    }
    let network = match a.network.as_str() {
        "host" | "default" => NetworkMode::Host,
        "none" => NetworkMode::None,
        other => return Err(UsageError(format!("--network {other}: builds use host or none")).into()),
    };
    let opts = lifeboat::builder::BuildOptions {
        context: a.context.clone(),
        dockerfile: a.file.clone(),
        tags,
        build_args,
        no_cache: a.no_cache,
        network,
        target: a.target.clone(),
    };
    let quiet = a.quiet;
    let built = lifeboat::builder::build(ctx.host(), &opts, &mut |line| {
        if !quiet {
            println!("{line}");
        }
    })?;
    if quiet {
        println!("{}", built.image.id());
    }
    Ok(0)
}
