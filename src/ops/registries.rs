//! How to reach a registry: the command's flags over the configuration's
//! `[registries."HOST"]` settings.

use serde::Serialize;

use crate::error::UsageError;
use crate::image::Reference;
use crate::image::spec::Platform;
use crate::registry::client::Options;
use crate::registry::{Progress, Transfer};
use crate::runtime::Host;

/// How to reach a registry, as the command line says it (none: the configuration's setting
/// for the registry, else HTTPS with the certificate checked).
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsRequest {
    pub tls_verify: Option<bool>,
    pub plain_http: bool,
}

impl TlsRequest {
    pub fn options(&self, host: &str) -> Options {
        transport(host, self.tls_verify, self.plain_http)
    }
}

/// The transport for registry `host`: `tls_verify` and `plain_http` as given, else the
/// configuration's settings for it (`$LIFEBOAT_CONFIG`, else `/etc/lifeboat/lifeboat.toml`),
/// else HTTPS with the certificate checked. A configuration that cannot be read is reported
/// and left out: a pull does not depend on it.
pub fn transport(host: &str, tls_verify: Option<bool>, plain_http: bool) -> Options {
    let path = std::env::var_os("LIFEBOAT_CONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::config::DEFAULT_PATH.into());
    let configured = if path.exists() {
        match crate::config::Config::load(&path) {
            Ok(config) => config.registries.get(host).map(|r| (r.plain_http, r.tls_verify)),
            Err(e) => {
                tracing::warn!(error = %e, "the configuration's [registries] settings are not used");
                None
            }
        }
    } else {
        None
    };
    let (plain, verify) = configured.unwrap_or((false, None));
    Options { tls_verify: tls_verify.or(verify).unwrap_or(true), plain_http: plain_http || plain }
}

/// Checks `username` and `password` against registry `host` and stores them where Docker and
/// Podman keep credentials; returns the files written.
pub fn login(
    host: &str,
    username: String,
    password: String,
    tls: &TlsRequest,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let tls = &tls.options(host);
    if username.is_empty() || password.is_empty() {
        return Err(crate::error::UsageError("the user name and password must not be empty".into()).into());
    }
    let creds = crate::registry::auth::Credentials { username, password };
    let reg = crate::registry::client::Registry::new(host, Some(creds.clone()), tls)?;
    reg.ping()?;
    Ok(crate::registry::auth::store(host, &creds)?)
}

/// `OS/ARCH[/VARIANT]`, e.g. `linux/arm64/v8`.
pub fn parse_platform(s: &str) -> Result<Platform, UsageError> {
    let mut p = Platform::host();
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => {
            (p.os, p.architecture, p.variant) = (os.to_string(), arch.to_string(), None)
        }
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            (p.os, p.architecture, p.variant) = (os.to_string(), arch.to_string(), Some(variant.to_string()))
        }
        _ => return Err(UsageError(format!("invalid platform {s:?}: use OS/ARCH[/VARIANT], e.g. linux/amd64"))),
    }
    Ok(p)
}

/// An image to pull.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    /// `[REGISTRY/]REPOSITORY[:TAG|@DIGEST]`.
    pub image: String,
    /// `OS/ARCH[/VARIANT]` (none: this host's).
    pub platform: Option<String>,
    pub tls: TlsRequest,
    /// Unpack the layers now rather than when a container first needs them.
    pub unpack: bool,
}

/// What a pull or push did.
#[derive(Debug, Serialize)]
pub struct TransferReport {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub digest: String,
    pub transfer: Transfer,
}

pub fn pull(host: &Host, req: &PullRequest, progress: &dyn Progress) -> anyhow::Result<TransferReport> {
    let reference = Reference::parse(&req.image)?;
    let platform = match &req.platform {
        Some(p) => parse_platform(p)?,
        None => Platform::host(),
    };
    let tls = req.tls.options(reference.domain());
    let (image, transfer) = crate::registry::pull(host.store()?, &reference, &platform, &tls, req.unpack, progress)?;
    Ok(TransferReport {
        image: reference.familiar(),
        id: Some(image.id().to_string()),
        digest: image.manifest_digest.to_string(),
        transfer,
    })
}

/// A local image to push, and where.
#[derive(Debug, Clone, Default)]
pub struct PushRequest {
    /// The local image; also the destination unless `dest` is given.
    pub image: String,
    /// `REGISTRY/REPOSITORY[:TAG]`.
    pub dest: Option<String>,
    pub tls: TlsRequest,
}

/// The destination of a push: a tag, never a digest, and never Docker Hub by accident (a bare
/// local name with no destination).
pub fn push_destination(req: &PushRequest) -> anyhow::Result<Reference> {
    let dest = Reference::parse(req.dest.as_deref().unwrap_or(&req.image))?;
    if dest.digest().is_some() {
        return Err(UsageError("push to a tag, not a digest".into()).into());
    }
    if dest.domain() == "docker.io" && req.dest.is_none() && !req.image.contains('/') {
        return Err(UsageError(format!(
            "{} would go to Docker Hub: tag it with a registry first (lifeboat tag {} REGISTRY/NAME:TAG), or give a destination",
            req.image, req.image
        ))
        .into());
    }
    Ok(dest)
}

pub fn push(host: &Host, req: &PushRequest, progress: &dyn Progress) -> anyhow::Result<TransferReport> {
    let store = host.store()?;
    let image = store.find(&req.image)?;
    let dest = push_destination(req)?;
    let tls = req.tls.options(dest.domain());
    let transfer = crate::registry::push(store, &image, &dest, &tls, progress)?;
    Ok(TransferReport { image: dest.familiar(), id: None, digest: image.manifest_digest.to_string(), transfer })
}

/// Forgets the stored credentials for registry `host`; whether there were any.
pub fn logout(host: &str) -> anyhow::Result<bool> {
    Ok(crate::registry::auth::remove(host)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_and_push_destinations() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()), ("linux", "arm64", Some("v8")));
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux//").is_err());
        let req = |image: &str, dest: Option<&str>| PushRequest {
            image: image.into(),
            dest: dest.map(String::from),
            ..Default::default()
        };
        assert!(push_destination(&req("website:1", None)).unwrap_err().to_string().contains("Docker Hub"));
        assert_eq!(push_destination(&req("website:1", Some("127.0.0.1:5000/w:1"))).unwrap().domain(), "127.0.0.1:5000");
        let by_digest = format!("127.0.0.1:5000/w@sha256:{}", "a".repeat(64));
        assert!(push_destination(&req("w", Some(&by_digest))).unwrap_err().to_string().contains("not a digest"));
    }
}
