//! The OCI distribution API over HTTP: authentication (anonymous, basic, bearer tokens),
//! retries with backoff on 5xx/429 and broken connections, and the handful of calls pull and
//! push need.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};

use super::auth::{Challenge, Credentials, parse_challenge};
use crate::image::Digest;
use crate::image::spec::MEDIA_TYPE_MANIFEST;

/// Blobs up to this size go up in one request; larger ones in chunks of this size.
pub const CHUNK: u64 = 32 * 1024 * 1024;
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {host}: {what} not found")]
    NotFound { host: String, what: String },
    #[error("registry {host}: access denied{}", if *.logged_in { " (check the credentials stored by `lifeboat login`)" } else { ": log in first with `lifeboat login` or use a repository you may access" })]
    Unauthorized { host: String, logged_in: bool },
    #[error("registry {host}: {what}")]
    Protocol { host: String, what: String },
    #[error("registry {host} cannot be reached: {what}")]
    Unreachable { host: String, what: String },
}

type Result<T> = std::result::Result<T, RegistryError>;

/// How to reach a registry: HTTPS with its certificate checked unless told otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Check the registry's TLS certificate (`--tls-verify=false`: HTTPS without the check).
    pub tls_verify: bool,
    /// Speak plain HTTP (`--plain-http`). Loopback registries may without being told.
    pub plain_http: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { tls_verify: true, plain_http: false }
    }
}

pub struct Registry {
    pub host: String,
    /// `scheme://host[:port]` of the API.
    base: String,
    /// The same, parsed: requests to it may carry credentials.
    own: reqwest::Url,
    /// The client for the registry itself (which may skip certificate checks: loopback,
    /// `--tls-verify=false`).
    http: Client,
    /// The client for anywhere else (a token service on another host): always verifying.
    verified: Client,
    creds: Option<Credentials>,
    /// Plain HTTP was asked for (or the registry is on loopback): credentials may travel over it.
    plain_allowed: bool,
    /// Authorization header per scope, once obtained.
    tokens: Mutex<HashMap<String, String>>,
}

/// Whether `host[:port]` names this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(host: &str) -> bool {
    let name =
        host.rsplit_once(':').map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the server at `host` answers a TLS handshake (a quick `GET /v2/` over HTTPS): a
/// loopback registry is often plain HTTP.
fn speaks_tls(http: &Client, host: &str) -> bool {
    match http.get(format!("https://{host}/v2/")).timeout(Duration::from_secs(10)).send() {
        Ok(_) => true,
        // Nothing listening at all: stay with HTTPS, so the error says what failed.
        Err(e) => connection_refused(&e),
    }
}

/// What to do about a TLS failure described by `what`, if it is one.
fn tls_failure(what: &str) -> Option<&'static str> {
    if what.contains("InvalidContentType") || what.contains("corrupt message") || what.contains("wrong version number")
    {
        Some(
            "the registry does not speak HTTPS; if it is a plain-HTTP registry on a network you trust, use --plain-http",
        )
    } else if what.contains("certificate") {
        Some("its certificate is not trusted here; for a self-signed certificate use --tls-verify=false")
    } else {
        None
    }
}

fn connection_refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = s.source();
    }
    false
}

/// The `Accept` header for manifests: every format we read.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

impl Registry {
    /// A client for `host`. HTTPS by default; `opts.plain_http` for plain HTTP. A loopback
    /// registry, as Docker treats it, is tried over HTTPS without certificate checks first and
    /// over plain HTTP if it does not speak TLS.
    pub fn new(host: &str, creds: Option<Credentials>, opts: &Options) -> Result<Registry> {
        let api_host = if host == "docker.io" { "registry-1.docker.io" } else { host };
        let loopback = is_loopback(host);
        let client = |check: bool| {
            Client::builder()
                .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .timeout(Duration::from_secs(3600))
                .danger_accept_invalid_certs(!check)
                .build()
                .map_err(|e| RegistryError::Unreachable { host: host.to_string(), what: describe(&e) })
        };
        let http = client(opts.tls_verify && !loopback)?;
        let plain = opts.plain_http || (loopback && !speaks_tls(&http, api_host));
        let scheme = if plain { "http" } else { "https" };
        let base = format!("{scheme}://{api_host}");
        let own = reqwest::Url::parse(&base)
            .map_err(|e| RegistryError::Protocol { host: host.to_string(), what: format!("not a host name: {e}") })?;
        Ok(Registry {
            host: host.to_string(),
            base,
            own,
            verified: client(true)?,
            http,
            creds,
            plain_allowed: opts.plain_http || loopback,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `url` is on this registry's own API host (scheme, host and port, as URLs
    /// compare them: case and default ports do not matter).
    fn is_own(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.own.scheme()
            && url.host_str() == self.own.host_str()
            && url.port_or_known_default() == self.own.port_or_known_default()
    }

    /// Whether a request to `url` may carry credentials or tokens: HTTPS, or plain HTTP
    /// where it was allowed (loopback, `--plain-http`) to this registry's own host.
    fn may_authenticate(&self, url: &reqwest::Url) -> bool {
        match url.scheme() {
            "https" => true,
            "http" => self.plain_allowed && self.is_own(url),
            _ => false,
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn protocol(&self, what: impl Into<String>) -> RegistryError {
        RegistryError::Protocol { host: self.host.clone(), what: what.into() }
    }

    /// Sends the request `build` makes, authenticating as the registry asks and retrying
    /// temporary failures. `build` is called again for every attempt (bodies are re-opened).
    pub fn send(&self, scope: &str, build: &dyn Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let mut authenticated_once = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = build(&self.http).build().map_err(|e| self.protocol(describe(&e)))?;
            // Tokens go to the registry itself, never over plain HTTP it was not allowed, nor
            // to the storage a blob download is redirected to.
            if let Some(h) = self.tokens.lock().unwrap().get(scope)
                && self.is_own(req.url())
                && self.may_authenticate(req.url())
            {
                req.headers_mut().insert(AUTHORIZATION, h.parse().map_err(|_| self.protocol("unusable token"))?);
            }
            let retry = |what: String| -> Option<RegistryError> {
                if attempt >= ATTEMPTS {
                    return Some(RegistryError::Unreachable { host: self.host.clone(), what });
                }
                let pause = Duration::from_millis(250 * 2u64.pow(attempt - 1));
                tracing::info!(host = self.host.as_str(), attempt, error = what.as_str(), "retrying");
                std::thread::sleep(pause);
                None
            };
            match self.http.execute(req) {
                // A TLS failure does not go away by trying again: say what to do.
                Err(e) if tls_failure(&describe(&e)).is_some() => {
                    let what = describe(&e);
                    let hint = tls_failure(&what).unwrap_or_default();
                    return Err(RegistryError::Unreachable {
                        host: self.host.clone(),
                        what: format!("{what} ({hint})"),
                    });
                }
                Err(e) => {
                    if let Some(err) = retry(describe(&e)) {
                        return Err(err);
                    }
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated_once => {
                    authenticated_once = true;
                    let header = resp.headers().get(WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).unwrap_or("");
                    let value = self.authenticate(header, scope)?;
                    self.tokens.lock().unwrap().insert(scope.to_string(), value);
                    attempt -= 1; // authentication is not a failure
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN => {
                    return Err(RegistryError::Unauthorized {
                        host: self.host.clone(),
                        logged_in: self.creds.is_some(),
                    });
                }
                Ok(resp) if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let what = format!("{} {}", resp.status(), error_text(resp));
                    if let Some(err) = retry(what) {
                        return Err(err);
                    }
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    /// The Authorization header value that answers a challenge.
    fn authenticate(&self, header: &str, scope: &str) -> Result<String> {
        let basic = |c: &Credentials| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
            )
        };
        match parse_challenge(header) {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => Ok(basic(c)),
                None => Err(RegistryError::Unauthorized { host: self.host.clone(), logged_in: false }),
            },
            Some(Challenge::Bearer { realm, service, scope: offered }) => {
                let mut url =
                    reqwest::Url::parse(&realm).map_err(|e| self.protocol(format!("token realm {realm:?}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    let wanted = if scope.is_empty() { offered.unwrap_or_default() } else { scope.to_string() };
                    if !wanted.is_empty() {
                        q.append_pair("scope", &wanted);
                    }
                }
                if self.creds.is_some() && !self.may_authenticate(&url) {
                    return Err(self.protocol(format!(
                        "the registry asks for credentials at {realm}, over plain HTTP: refused \
                         (use --plain-http only for a registry you reach over a network you trust)"
                    )));
                }
                // Certificate checks are skipped, when they are, for the registry only.
                let client = if self.is_own(&url) { &self.http } else { &self.verified };
                let mut req = client.get(url);
                if let Some(c) = &self.creds {
                    req = req.header(AUTHORIZATION, basic(c));
                }
                let resp =
                    req.send().map_err(|e| RegistryError::Unreachable { host: realm.clone(), what: describe(&e) })?;
                if !resp.status().is_success() {
                    return Err(RegistryError::Unauthorized {
                        host: self.host.clone(),
                        logged_in: self.creds.is_some(),
                    });
                }
                let v: serde_json::Value =
                    resp.json().map_err(|e| self.protocol(format!("unreadable token response: {e}")))?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| self.protocol("the token response has no token"))?;
                Ok(format!("Bearer {token}"))
            }
            None => Err(self.protocol(format!("unsupported authentication challenge {header:?}"))),
        }
    }

    /// Checks that the registry answers and accepts our credentials (`GET /v2/`).
    pub fn ping(&self) -> Result<()> {
        let url = self.url("/v2/");
        let resp = self.send("", &|c| c.get(&url))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.protocol(format!("GET /v2/ answered {}", resp.status())))
        }
    }

    /// A manifest or index: its bytes, media type and digest.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<(Vec<u8>, String, Digest)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.send(&pull_scope(repo), &|c| c.get(&url).header(ACCEPT, MANIFEST_ACCEPT))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound { host: self.host.clone(), what: format!("{repo}:{reference}") });
        }
        if !resp.status().is_success() {
            return Err(self.protocol(format!("manifest {repo}:{reference}: {}", resp.status())));
        }
        let media_type = content_type(resp.headers());
        let bytes =
            resp.bytes().map_err(|e| self.protocol(format!("manifest {repo}:{reference}: {}", describe(&e))))?.to_vec();
        let digest = Digest::of(&bytes);
        if let Some(expected) = reference.strip_prefix("sha256:")
            && digest.hex() != expected
        {
            return Err(self.protocol(format!("manifest {repo}@{reference} does not match its digest")));
        }
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            // Older registries: the document says what it is.
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string())
        } else {
            media_type
        };
        Ok((bytes, media_type, digest))
    }

    /// The digest of what `repo:tag` names now, if it exists.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.send(&pull_scope(repo), &|c| c.head(&url).header(ACCEPT, MANIFEST_ACCEPT))?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|d| d.to_str().ok())
            .and_then(|d| d.parse::<Digest>().ok()))
    }

    /// A blob's body, streamed. The caller verifies its digest.
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(&pull_scope(repo), &|c| c.get(&url))?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND => {
                Err(RegistryError::NotFound { host: self.host.clone(), what: format!("blob {digest} in {repo}") })
            }
            s => Err(self.protocol(format!("blob {digest}: {s}"))),
        }
    }

    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(&push_scope(repo), &|c| c.head(&url))?;
        Ok(resp.status().is_success())
    }

    /// Asks the registry to link a blob it holds in `from` into `repo`; true if it did.
    pub fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"));
        let scope = format!("{} repository:{from}:pull", push_scope(repo));
        let resp = self.send(&scope, &|c| c.post(&url).header(CONTENT_LENGTH, 0))?;
        if resp.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // 202: the registry started an ordinary upload instead; abandon it.
        if resp.status() == StatusCode::ACCEPTED
            && let Some(loc) = location(resp.headers())
        {
            let url = self.url(&loc);
            let _ = self.send(&push_scope(repo), &|c| c.delete(&url));
        }
        Ok(false)
    }

    /// Uploads a blob: one PUT up to `CHUNK`, PATCHes of `CHUNK` then a PUT beyond.
    /// `open(offset)` gives the blob's bytes from `offset` (called again on retries).
    pub fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        open: &(dyn Fn(u64) -> std::io::Result<Box<dyn Read + Send>> + Sync),
    ) -> Result<()> {
        let scope = push_scope(repo);
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.send(&scope, &|c| c.post(&start).header(CONTENT_LENGTH, 0))?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.protocol(format!(
                "starting the upload of {digest}: {} {}",
                resp.status(),
                error_text(resp)
            )));
        }
        let mut loc = location(resp.headers()).ok_or_else(|| self.protocol("upload started without a Location"))?;
        let with_digest = |loc: &str| {
            let sep = if loc.contains('?') { '&' } else { '?' };
            self.url(&format!("{loc}{sep}digest={digest}"))
        };
        let body = |offset: u64, len: u64| -> std::io::Result<reqwest::blocking::Body> {
            let reader = open(offset)?;
            Ok(reqwest::blocking::Body::sized(reader.take(len), len))
        };
        let io_err = |e: std::io::Error| self.protocol(format!("cannot read blob {digest}: {e}"));
        if size > CHUNK {
            let mut offset = 0;
            while offset < size {
                let len = CHUNK.min(size - offset);
                let url = self.url(&loc);
                // A reader error becomes an empty body; the registry's answer then says so.
                let resp = self.send(&scope, &|c| {
                    let b = body(offset, len).unwrap_or_else(|_| reqwest::blocking::Body::from(Vec::new()));
                    c.patch(&url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", format!("{}-{}", offset, offset + len - 1))
                        .header(CONTENT_LENGTH, len)
                        .body(b)
                })?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.protocol(format!(
                        "uploading {digest} at {offset}: {} {}",
                        resp.status(),
                        error_text(resp)
                    )));
                }
                loc = location(resp.headers()).unwrap_or(loc);
                offset += len;
            }
            let url = with_digest(&loc);
            let resp = self.send(&scope, &|c| c.put(&url).header(CONTENT_LENGTH, 0))?;
            return self.upload_done(resp, digest);
        }
        open(0).map_err(io_err)?;
        let url = with_digest(&loc);
        let resp = self.send(&scope, &|c| {
            let b = body(0, size).unwrap_or_else(|_| reqwest::blocking::Body::from(Vec::new()));
            c.put(&url).header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size).body(b)
        })?;
        self.upload_done(resp, digest)
    }

    fn upload_done(&self, resp: Response, digest: &Digest) -> Result<()> {
        if resp.status() == StatusCode::CREATED {
            Ok(())
        } else {
            Err(self.protocol(format!("finishing the upload of {digest}: {} {}", resp.status(), error_text(resp))))
        }
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp =
            self.send(&push_scope(repo), &|c| c.put(&url).header(CONTENT_TYPE, media_type).body(bytes.to_vec()))?;
        if resp.status() == StatusCode::CREATED || resp.status() == StatusCode::OK {
            Ok(())
        } else {
            Err(self.protocol(format!("storing manifest {repo}:{reference}: {} {}", resp.status(), error_text(resp))))
        }
    }
}

pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn content_type(h: &HeaderMap) -> String {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

fn location(h: &HeaderMap) -> Option<String> {
    h.get(LOCATION).and_then(|v| v.to_str().ok()).map(String::from)
}

/// The registry's own error message (`{"errors":[{"code","message"}]}`), shortened.
fn error_text(resp: Response) -> String {
    let text = resp.text().unwrap_or_default();
    let parsed = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| {
        let errors = v.get("errors")?.as_array()?;
        Some(
            errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.get("code").and_then(|c| c.as_str()).unwrap_or("ERROR"),
                        e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    });
    parsed.unwrap_or_else(|| text.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn credentials_go_only_to_the_registry_over_https_or_an_allowed_plain_link() {
        let https = Registry::new("Registry.Example.org:443", None, &Options::default()).unwrap();
        // Case and default ports do not make another host.
        assert!(https.is_own(&url("https://registry.example.org/v2/")));
        assert!(https.is_own(&url("https://REGISTRY.example.org:443/v2/x")));
        assert!(!https.is_own(&url("https://registry.example.org:5000/v2/")));
        assert!(!https.is_own(&url("http://registry.example.org/v2/")));
        assert!(!https.is_own(&url("https://storage.example.net/blob")));
        assert!(https.may_authenticate(&url("https://auth.example.net/token")));
        assert!(!https.may_authenticate(&url("http://registry.example.org/v2/")));
        assert!(!https.may_authenticate(&url("http://auth.example.net/token")));
        // Plain HTTP where asked for: to that registry's own host only.
        let plain = Registry::new("10.0.0.5:5000", None, &Options { tls_verify: true, plain_http: true }).unwrap();
        assert!(plain.base.starts_with("http://"));
        assert!(plain.may_authenticate(&url("http://10.0.0.5:5000/v2/")));
        assert!(!plain.may_authenticate(&url("http://10.0.0.6:5000/token")));
        assert!(!plain.may_authenticate(&url("http://10.0.0.5:5001/token")));
        // --tls-verify=false is still HTTPS.
        let unverified =
            Registry::new("10.0.0.5:5000", None, &Options { tls_verify: false, plain_http: false }).unwrap();
        assert!(unverified.base.starts_with("https://"));
        assert!(!unverified.may_authenticate(&url("http://10.0.0.5:5000/v2/")));
    }

    #[test]
    fn loopback_registries_are_recognised() {
        for h in ["127.0.0.1:5000", "localhost:5000", "localhost", "[::1]:5000", "127.1.2.3"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["registry.example:5000", "10.0.0.1:5000", "docker.io"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
