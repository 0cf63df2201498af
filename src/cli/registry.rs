//! Registry commands: pull, push, login, logout.

use std::io::{BufRead, IsTerminal};

use clap::Args;
use serde_json::json;

use super::output::{OutputFormat, human_size};
use super::{Context, UsageError};
use lifeboat::image::Reference;
use lifeboat::image::spec::Platform;
use lifeboat::registry::{self, auth};

pub const REGISTRY_EXAMPLES: &str = "\
Examples:
  lifeboat pull 127.0.0.1:5000/library-website:1
  lifeboat pull registry.example.org/team/app:2 --platform linux/arm64
  lifeboat tag website:1 registry.example.org/library/website:1
  lifeboat push registry.example.org/library/website:1
  lifeboat push website:1 127.0.0.1:5000/website:1       push under another name
  echo \"$TOKEN\" | lifeboat login -u ci --password-stdin registry.example.org
  lifeboat logout registry.example.org

Registries are spoken to over HTTPS. --tls-verify=false keeps HTTPS but skips the
certificate check (a self-signed certificate); --plain-http (or plain_http in the
configuration's [registries.\"HOST\"]) speaks plain HTTP. A loopback registry (127.0.0.1,
localhost) is tried over HTTPS, then over plain HTTP if it does not speak TLS.";

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Check the registry's TLS certificate (false: HTTPS without the check, e.g. for a
    /// self-signed certificate). Default true, or the configuration's setting for the registry.
    #[arg(long, value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Speak plain HTTP to the registry (loopback registries may without it). Credentials
    /// then travel unencrypted: only for a network you trust.
    #[arg(long)]
    pub plain_http: bool,
}

impl TlsArgs {
    /// The transport for `host` (these flags over the configuration's settings).
    pub fn options(&self, host: &str) -> anyhow::Result<registry::client::Options> {
        Ok(lifeboat::ops::registries::transport(host, self.tls_verify, self.plain_http))
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: [REGISTRY/]REPOSITORY[:TAG|@DIGEST].
    pub image: String,
    /// OS/ARCH[/VARIANT] to choose from a multi-platform image (default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Unpack the layers now rather than when a container first needs them.
    #[arg(long)]
    pub unpack: bool,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The local image; also the destination unless DEST is given.
    pub image: String,
    /// Where to push it: REGISTRY/REPOSITORY[:TAG].
    pub dest: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: HOST[:PORT].
    pub registry: String,
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    pub registry: String,
}

fn parse_platform(s: &str) -> Result<Platform, UsageError> {
    let mut p = Platform::host();
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] => (p.os, p.architecture, p.variant) = (os.to_string(), arch.to_string(), None),
        [os, arch, variant] => {
            (p.os, p.architecture, p.variant) = (os.to_string(), arch.to_string(), Some(variant.to_string()))
        }
        _ => return Err(UsageError(format!("invalid platform {s:?}: use OS/ARCH[/VARIANT], e.g. linux/amd64"))),
    }
    Ok(p)
}

pub fn pull(ctx: &Context, a: PullArgs) -> anyhow::Result<i32> {
    let reference = Reference::parse(&a.image)?;
    let platform = match &a.platform {
        Some(p) => parse_platform(p)?,
        None => Platform::host(),
    };
    let store = ctx.store()?;
    let quiet = a.quiet || a.format == OutputFormat::Json;
    if !quiet {
        eprintln!("pulling {}", reference.familiar());
    }
    let (image, t) = registry::pull(
        store,
        &reference,
        &platform,
        &a.tls.options(reference.domain())?,
        a.unpack,
        &super::progress::Transfers::new(quiet),
    )?;
    if a.format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"image": reference.familiar(), "id": image.id().to_string(), "digest": image.manifest_digest.to_string(), "transfer": t})
            )?
        );
    } else if a.quiet {
        println!("{}", image.id());
    } else {
        println!("Digest: {}", image.manifest_digest);
        println!(
            "pulled {} ({} layers downloaded, {}; {} already here)",
            reference.familiar(),
            t.blobs_transferred,
            human_size(t.bytes_transferred),
            t.blobs_existing
        );
    }
    Ok(0)
}

pub fn push(ctx: &Context, a: PushArgs) -> anyhow::Result<i32> {
    let store = ctx.store()?;
    let image = store.find(&a.image)?;
    let dest = Reference::parse(a.dest.as_deref().unwrap_or(&a.image))?;
    if dest.digest().is_some() {
        return Err(UsageError("push to a tag, not a digest".into()).into());
    }
    if dest.domain() == "docker.io" && a.dest.is_none() && !a.image.contains('/') {
        return Err(UsageError(format!(
            "{} would go to Docker Hub: tag it with a registry first (lifeboat tag {} REGISTRY/NAME:TAG), or give a destination",
            a.image, a.image
        ))
        .into());
    }
    let quiet = a.quiet || a.format == OutputFormat::Json;
    if !quiet {
        eprintln!("pushing {} to {}", a.image, dest.familiar());
    }
    let tls = a.tls.options(dest.domain())?;
    let t = registry::push(store, &image, &dest, &tls, &super::progress::Transfers::new(quiet))?;
    if a.format == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"image": dest.familiar(), "digest": image.manifest_digest.to_string(), "transfer": t})
            )?
        );
    } else {
        println!(
            "{}: digest {} ({} blobs uploaded, {}; {} already there; {} mounted)",
            dest.familiar(),
            image.manifest_digest,
            t.blobs_transferred,
            human_size(t.bytes_transferred),
            t.blobs_existing,
            t.blobs_mounted
        );
    }
    Ok(0)
}

/// `https://host/v2/` or `host` → `host`.
fn registry_host(arg: &str) -> String {
    let s = arg.strip_prefix("https://").or_else(|| arg.strip_prefix("http://")).unwrap_or(arg);
    s.split('/').next().unwrap_or(s).to_string()
}

pub fn login(a: LoginArgs) -> anyhow::Result<i32> {
    let host = registry_host(&a.registry);
    let tty = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if tty && !a.password_stdin => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
        None => return Err(UsageError("give the user name with -u USER".into()).into()),
    };
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if tty {
        String::from_utf8(lifeboat::runtime::tty::prompt("Password: ")?)?
    } else {
        return Err(
            UsageError("no password: use --password-stdin (passwords never go on the command line)".into()).into()
        );
    };
    let files = lifeboat::ops::registries::login(&host, username, password, &a.tls.options(&host)?)?;
    for f in files {
        tracing::info!(file = %f.display(), "credentials stored");
    }
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(a: LogoutArgs) -> anyhow::Result<i32> {
    let host = registry_host(&a.registry);
    if auth::remove(&host)? {
        println!("Removed login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(0)
}
