//! Registry commands: pull, push, login, logout.

use std::io::{BufRead, IsTerminal};

use clap::Args;

use super::output::{OutputFormat, human_size, sorted_json};
use super::{Context, UsageError};
use lifeboat::ops::registries::{self, PullRequest, PushRequest, TlsRequest};

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
    pub fn request(&self) -> TlsRequest {
        TlsRequest { tls_verify: self.tls_verify, plain_http: self.plain_http }
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
    #[arg(add = clap_complete::ArgValueCandidates::new(super::complete::images))]
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

pub fn pull(ctx: &Context, a: PullArgs) -> anyhow::Result<i32> {
    let quiet = a.quiet || a.format == OutputFormat::Json;
    if !quiet {
        eprintln!("pulling {}", lifeboat::image::Reference::parse(&a.image)?.familiar());
    }
    let req = PullRequest { image: a.image, platform: a.platform, tls: a.tls.request(), unpack: a.unpack };
    let r = registries::pull(ctx.host(), &req, &super::progress::Transfers::new(quiet))?;
    if a.format == OutputFormat::Json {
        println!("{}", sorted_json(&r)?);
    } else if a.quiet {
        println!("{}", r.id.as_deref().unwrap_or_default());
    } else {
        println!("Digest: {}", r.digest);
        println!(
            "pulled {} ({} layers downloaded, {}; {} already here)",
            r.image,
            r.transfer.blobs_transferred,
            human_size(r.transfer.bytes_transferred),
            r.transfer.blobs_existing
        );
    }
    Ok(0)
}

pub fn push(ctx: &Context, a: PushArgs) -> anyhow::Result<i32> {
    let quiet = a.quiet || a.format == OutputFormat::Json;
    if !quiet {
        eprintln!("pushing {} to {}", a.image, a.dest.as_deref().unwrap_or(&a.image));
    }
    let req = PushRequest { image: a.image, dest: a.dest, tls: a.tls.request() };
    let r = registries::push(ctx.host(), &req, &super::progress::Transfers::new(quiet))?;
    if a.format == OutputFormat::Json {
        println!("{}", sorted_json(&r)?);
    } else {
        println!(
            "{}: digest {} ({} blobs uploaded, {}; {} already there; {} mounted)",
            r.image,
            r.digest,
            r.transfer.blobs_transferred,
            human_size(r.transfer.bytes_transferred),
            r.transfer.blobs_existing,
            r.transfer.blobs_mounted
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
    let files = registries::login(&host, username, password, &a.tls.request())?;
    for f in files {
        tracing::info!(file = %f.display(), "credentials stored");
    }
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(a: LogoutArgs) -> anyhow::Result<i32> {
    let host = registry_host(&a.registry);
    if registries::logout(&host)? {
        println!("Removed login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(0)
}
