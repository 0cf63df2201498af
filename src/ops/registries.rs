//! How to reach a registry: the command's flags over the configuration's
//! `[registries."HOST"]` settings.

use crate::registry::client::Options;

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
pub fn login(host: &str, username: String, password: String, tls: &Options) -> anyhow::Result<Vec<std::path::PathBuf>> {
    if username.is_empty() || password.is_empty() {
        return Err(crate::error::UsageError("the user name and password must not be empty".into()).into());
    }
    let creds = crate::registry::auth::Credentials { username, password };
    let reg = crate::registry::client::Registry::new(host, Some(creds.clone()), tls)?;
    reg.ping()?;
    Ok(crate::registry::auth::store(host, &creds)?)
}
