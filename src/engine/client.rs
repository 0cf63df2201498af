//! A small blocking client of the Docker Engine API on a unix socket (Podman serves the same
//! API). HTTP/1.1 through hyper, which the S3 backend already brings in; one connection per
//! request, so nothing is shared between threads or kept open between calls.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Either, Full};
use hyper_util::rt::TokioIo;

/// How long an ordinary call may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The most a response body may hold in memory (an exec's output, a description); image
/// exports are written out as they come instead.
const MAX_BODY: usize = 64 << 20;

/// The engine's answer to a request that did not succeed.
#[derive(Debug, thiserror::Error)]
#[error("{engine} answered {status}: {message}")]
pub struct ApiError {
    pub engine: String,
    pub status: u16,
    pub message: String,
}

pub struct Client {
    /// Docker or Podman, for messages.
    pub name: String,
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
    /// `/vX.Y`, the engine's own API version (from its `_ping`); empty until asked.
    prefix: std::sync::OnceLock<String>,
}

/// What a request carries.
enum Payload {
    Bytes(Bytes),
    File(std::fs::File),
}

/// A response: its status and whole body.
pub struct Response {
    pub status: u16,
    pub body: Bytes,
    /// The `API-Version` header.
    pub api_version: Option<String>,
}

impl Response {
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| format!("the engine's {what} is not what the API describes"))
    }
}

impl Client {
    pub fn new(name: &str, socket: &Path) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        Ok(Client { name: name.to_string(), socket: socket.to_path_buf(), rt, prefix: std::sync::OnceLock::new() })
    }

    /// Asks the engine for its API version (`GET /_ping`, which every version serves) and
    /// speaks that version from then on: the fields Lifeboat reads have kept their meaning
    /// across versions, and an engine may refuse versions older than its minimum.
    pub fn negotiate(&self) -> anyhow::Result<()> {
        let r = self.send("GET", "/_ping", "text/plain", Payload::Bytes(Bytes::new()), None, Some(CALL_TIMEOUT))?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error(r).into());
        }
        let version = r
            .api_version
            .filter(|v| !v.is_empty() && v.len() <= 8 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
            .unwrap_or_else(|| "1.41".to_string());
        let _ = self.prefix.set(format!("/v{version}"));
        Ok(())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request (`path` after the API version, with its query) and returns the whole
    /// answer; a status outside 2xx is an [`ApiError`] with the engine's message.
    /// Given up after a minute: an engine that hangs must not keep a snapshot (and the
    /// services it froze) waiting for ever.
    pub fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<Response> {
        self.call_within(method, path, body, Some(CALL_TIMEOUT))
    }

    /// Like [`Client::call`], given up after `timeout` if there is one (the engine may go
    /// on with the work).
    pub fn call_within(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Option<std::time::Duration>,
    ) -> anyhow::Result<Response> {
        let body = match body {
            Some(v) => Bytes::from(serde_json::to_vec(&v)?),
            None => Bytes::new(),
        };
        let response = self.send(method, path, "application/json", Payload::Bytes(body), None, timeout)?;
        if !(200..300).contains(&response.status) {
            return Err(self.api_error(response).into());
        }
        Ok(response)
    }

    /// Like [`Client::call`], with the answer's body written to `out` as it arrives (an image
    /// export can be large).
    pub fn download(&self, path: &str, out: &mut dyn Write) -> anyhow::Result<()> {
        let response = self.send("GET", path, "application/json", Payload::Bytes(Bytes::new()), Some(out), None)?;
        if !(200..300).contains(&response.status) {
            return Err(self.api_error(response).into());
        }
        Ok(())
    }

    /// Sends file `body` (a tar archive) with a POST, read as it goes.
    pub fn upload(&self, path: &str, body: &Path) -> anyhow::Result<Response> {
        let file = std::fs::File::open(body).with_context(|| format!("cannot open {}", body.display()))?;
        let response = self.send("POST", path, "application/x-tar", Payload::File(file), None, None)?;
        if !(200..300).contains(&response.status) {
            return Err(self.api_error(response).into());
        }
        Ok(response)
    }

    fn api_error(&self, r: Response) -> ApiError {
        let message = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().chars().take(500).collect());
        ApiError { engine: self.name.clone(), status: r.status, message }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Payload,
        mut sink: Option<&mut dyn Write>,
        timeout: Option<std::time::Duration>,
    ) -> anyhow::Result<Response> {
        let prefix = if path == "/_ping" { "" } else { self.prefix.get().map_or("/v1.41", String::as_str) };
        let uri = format!("{prefix}{path}");
        let (body, file) = match body {
            Payload::Bytes(b) => (Either::Left(Full::new(b)), None),
            Payload::File(f) => {
                let (sender, channel) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
                (Either::Right(channel), Some((f, sender)))
            }
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(&uri)
            .header(hyper::header::HOST, "engine")
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(body)
            .context("an invalid request to the engine")?;
        let socket = self.socket.clone();
        let name = self.name.clone();
        let work = async move {
            let stream = tokio::net::UnixStream::connect(&socket).await.with_context(|| {
                format!("cannot reach {name} at {}: is it running (and is this its socket)?", socket.display())
            })?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .with_context(|| format!("{name} at {} does not speak HTTP", socket.display()))?;
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            // A file is sent as it is read, a MiB at a time.
            let feeder = file.map(|(mut f, mut sender)| {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        match std::io::Read::read(&mut f, &mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if sender.send_data(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                sender.abort(e);
                                break;
                            }
                        }
                    }
                })
            });
            let response =
                sender.send_request(request).await.with_context(|| format!("{name} did not answer {method} {uri}"))?;
            let status = response.status().as_u16();
            let api_version = response.headers().get("api-version").and_then(|v| v.to_str().ok()).map(String::from);
            let mut body = response.into_body();
            let mut whole = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.with_context(|| format!("{name} broke off its answer to {method} {uri}"))?;
                if let Ok(data) = frame.into_data() {
                    match sink.as_deref_mut() {
                        Some(out) if (200..300).contains(&status) => out.write_all(&data)?,
                        _ if whole.len() + data.len() > MAX_BODY => {
                            bail!("{name}'s answer to {method} {uri} is larger than {} MiB", MAX_BODY >> 20)
                        }
                        _ => whole.extend_from_slice(&data),
                    }
                }
            }
            driver.abort();
            if let Some(f) = feeder {
                f.abort();
            }
            Ok(Response { status, body: Bytes::from(whole), api_version })
        };
        self.rt.block_on(async move {
            match timeout {
                None => work.await,
                Some(t) => match tokio::time::timeout(t, work).await {
                    Ok(r) => r,
                    Err(_) => bail!("{} did not finish {method} {path} within {} s", self.name, t.as_secs()),
                },
            }
        })
    }
}

/// Percent-encodes one component of a path or query (a name or a filter).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The frames of a multiplexed stream (an exec's output without a terminal): each is a
/// header of 8 bytes (stream, 0, 0, 0, length big-endian) and its bytes. Returns standard
/// output and standard error; a stream that is not framed is taken whole as output.
pub fn demultiplex(raw: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut rest = raw;
    while rest.len() >= 8 {
        let (kind, len) = (rest[0], u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize);
        if kind > 2 || rest[1..4] != [0, 0, 0] || rest.len() < 8 + len {
            break;
        }
        match kind {
            2 => err.extend_from_slice(&rest[8..8 + len]),
            _ => out.extend_from_slice(&rest[8..8 + len]),
        }
        rest = &rest[8 + len..];
    }
    if !rest.is_empty() {
        if out.is_empty() && err.is_empty() {
            return (raw.to_vec(), Vec::new());
        }
        out.extend_from_slice(rest);
    }
    (out, err)
}

/// A socket given as `unix:///path` (or a bare path); other transports are refused.
pub fn socket_path(host: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = host.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    bail!(crate::error::UsageError(format!(
        "engine address {host:?}: only a local unix socket (unix:///path) can be used, since Lifeboat reads the \
         container's files on this host"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_by_stream_and_unframed_output_is_kept() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"out");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        raw.extend_from_slice(b"er");
        assert_eq!(demultiplex(&raw), (b"out".to_vec(), b"er".to_vec()));
        assert_eq!(demultiplex(b"plain text here"), (b"plain text here".to_vec(), Vec::new()));
        // A frame that claims more than there is: what is there is kept, nothing panics.
        assert_eq!(demultiplex(&[1, 0, 0, 0, 0, 0, 1, 0, b'x']).0, vec![1, 0, 0, 0, 0, 0, 1, 0, b'x']);
    }

    #[test]
    fn only_unix_sockets_are_taken() {
        assert_eq!(socket_path("unix:///run/docker.sock").unwrap(), PathBuf::from("/run/docker.sock"));
        assert_eq!(socket_path("/x.sock").unwrap(), PathBuf::from("/x.sock"));
        assert!(socket_path("tcp://10.0.0.1:2375").is_err());
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
