//! A repository in any S3-compatible object store, through `aws-sdk-s3`.
//!
//! The location is `s3://BUCKET/PREFIX` with options as query parameters — never secrets:
//! `endpoint=http://127.0.0.1:9000`, `region=us-east-1`, `path-style=true`,
//! `credentials-file=/etc/lifeboat/s3.credentials`, `profile=NAME`. Credentials come from that
//! file or the standard AWS chain (environment, `~/.aws`). The SDK retries temporary errors
//! with backoff; operations time out instead of hanging on a dead server.
//!
//! The backend is synchronous like the rest of the core: it owns a small single-threaded
//! tokio runtime and blocks on each request.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::{Backend, BackendError, Kind, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: bool,
    pub credentials_file: Option<String>,
    pub profile: Option<String>,
}

impl S3Location {
    pub fn parse(url: &str) -> std::result::Result<S3Location, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url:?} is not an s3:// location"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket (s3://BUCKET/PREFIX)"));
        }
        let mut loc = S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            path_style: false,
            credentials_file: None,
            profile: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "endpoint" => loc.endpoint = Some(v.to_string()),
                "region" => loc.region = Some(v.to_string()),
                "path-style" => loc.path_style = matches!(v, "true" | "1" | "yes" | ""),
                "credentials-file" => loc.credentials_file = Some(v.to_string()),
                "profile" => loc.profile = Some(v.to_string()),
                other => {
                    return Err(format!(
                        "unknown S3 option {other:?} (endpoint, region, path-style, credentials-file, profile)"
                    ));
                }
            }
        }
        Ok(loc)
    }

    fn display(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

pub struct S3 {
    client: Client,
    loc: S3Location,
    /// The URL it was opened with.
    url: String,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3({})", self.loc.display())
    }
}

impl S3 {
    pub fn open(url: &str) -> Result<S3> {
        let loc = S3Location::parse(url).map_err(|e| BackendError::Io {
            location: url.to_string(),
            op: "open",
            what: "location".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        // Several threads wait on requests at once (packs fetched in parallel): their sockets
        // are driven by the runtime's own workers, not by whichever caller holds a
        // single-threaded runtime.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lifeboat-s3")
            .enable_all()
            .build()
            .map_err(|e| BackendError::Io { location: loc.display(), op: "open", what: "runtime".into(), source: e })?;
        let client = rt.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .retry_config(RetryConfig::standard().with_max_attempts(5))
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(Duration::from_secs(120))
                        .build(),
                );
            if let Some(r) = &loc.region {
                loader = loader.region(Region::new(r.clone()));
            }
            if let Some(p) = &loc.profile {
                loader = loader.profile_name(p);
            }
            if let Some(f) = &loc.credentials_file {
                loader = loader.profile_files(
                    EnvConfigFiles::builder()
                        .with_file(EnvConfigFileKind::Credentials, f)
                        .include_default_config_file(true)
                        .build(),
                );
            }
            let shared = loader.load().await;
            let mut conf = aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(loc.path_style)
                // Plain S3 checksums only: many S3-compatible servers do not know the newer ones.
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
            if shared.region().is_none() {
                conf = conf.region(Region::new("us-east-1"));
            }
            if let Some(e) = &loc.endpoint {
                conf = conf.endpoint_url(e);
            }
            Client::from_conf(conf.build())
        });
        Ok(S3 { client, loc, url: url.to_string(), rt })
    }

    fn key(&self, kind: Kind, name: &str) -> String {
        let rel = match kind {
            Kind::Config => "config".to_string(),
            Kind::Pack => format!("{}/{}/{}", kind.dir(), &name[..2.min(name.len())], name),
            _ => format!("{}/{}", kind.dir(), name),
        };
        if self.loc.prefix.is_empty() { rel } else { format!("{}/{rel}", self.loc.prefix) }
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
        &self,
        op: &'static str,
        key: &str,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> BackendError {
        let detail = match &e {
            SdkError::ServiceError(s) => {
                let code = s.err().code().unwrap_or("error");
                let msg = s.err().message().unwrap_or("");
                let forbidden = s.raw().status().as_u16() == 403;
                match code {
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "NotSignedUp"
                    | "InvalidClientTokenId" => {
                        format!(
                            "{code}: {msg} (check the S3 credentials: credentials-file=, AWS_* variables or ~/.aws)"
                        )
                    }
                    _ if forbidden => {
                        format!(
                            "{code}: {msg} (check the S3 credentials: credentials-file=, AWS_* variables or ~/.aws)"
                        )
                    }
                    "NoSuchBucket" => format!("bucket {} does not exist", self.loc.bucket),
                    _ => format!("{code}: {msg}"),
                }
            }
            SdkError::TimeoutError(_) => "timed out (is the S3 server reachable?)".into(),
            SdkError::DispatchFailure(d) => {
                // The innermost cause ("Connection refused", a DNS failure) is what users need.
                let at = self.loc.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
                match d.as_connector_error() {
                    Some(c) => {
                        let mut cause: &dyn std::error::Error = c;
                        while let Some(next) = cause.source() {
                            cause = next;
                        }
                        let text = cause.to_string();
                        if text.contains("IMDS") || text.contains("credential") {
                            format!(
                                "no S3 credentials found ({text}): use credentials-file=, AWS_* variables or ~/.aws"
                            )
                        } else {
                            format!("cannot reach the S3 server{at}: {text}")
                        }
                    }
                    None => format!("cannot send the request to the S3 server{at}: {d:?}"),
                }
            }
            other => other.to_string(),
        };
        let kind = if detail.contains("timed out") || detail.contains("cannot reach") {
            std::io::ErrorKind::TimedOut
        } else {
            std::io::ErrorKind::Other
        };
        BackendError::Io {
            location: self.loc.display(),
            op,
            what: key.to_string(),
            source: std::io::Error::new(kind, detail),
        }
    }

    fn get(&self, kind: Kind, name: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        let key = self.key(kind, name);
        self.rt.block_on(async {
            let mut req = self.client.get_object().bucket(&self.loc.bucket).key(&key);
            if let Some((off, len)) = range {
                req = req.range(format!("bytes={}-{}", off, off + len.max(1) - 1));
            }
            let out = match req.send().await {
                Ok(o) => o,
                Err(e) => {
                    let not_found = matches!(&e, SdkError::ServiceError(s) if s.err().is_no_such_key() || s.raw().status().as_u16() == 404);
                    if not_found {
                        return Err(BackendError::NotFound { location: self.loc.display(), kind, name: name.to_string() });
                    }
                    return Err(self.err("read", &key, e));
                }
            };
            let bytes = out.body.collect().await.map_err(|e| BackendError::Io {
                location: self.loc.display(),
                op: "read",
                what: key.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            // One copy, out of the response's segments (reading threads hold a pack each).
            Ok(bytes.to_vec())
        })
    }
}

impl Backend for S3 {
    fn location(&self) -> String {
        self.loc.display()
    }

    fn reopen_location(&self) -> String {
        self.url.clone()
    }

    fn list(&self, kind: Kind) -> Result<Vec<String>> {
        let prefix = match kind {
            Kind::Config => self.key(kind, "config"),
            _ => {
                let d = kind.dir();
                if self.loc.prefix.is_empty() { format!("{d}/") } else { format!("{}/{d}/", self.loc.prefix) }
            }
        };
        self.rt.block_on(async {
            let mut names = Vec::new();
            let mut pages =
                self.client.list_objects_v2().bucket(&self.loc.bucket).prefix(&prefix).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.err("list", &prefix, e))?;
                for obj in page.contents() {
                    if let Some(k) = obj.key()
                        && let Some(name) = k.rsplit('/').next()
                        && !name.is_empty()
                    {
                        names.push(name.to_string());
                    }
                }
            }
            names.sort();
            Ok(names)
        })
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        self.get(kind, name, None)
    }

    fn read_range(&self, kind: Kind, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let data = self.get(kind, name, Some((offset, length)))?;
        if data.len() as u64 != length {
            return Err(BackendError::Io {
                location: self.loc.display(),
                op: "read",
                what: self.key(kind, name),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("asked for {length} bytes, got {}", data.len()),
                ),
            });
        }
        Ok(data)
    }

    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        if self.stat(kind, name)?.is_some() {
            return Err(BackendError::Exists { location: self.location(), kind, name: name.to_string() });
        }
        let key = self.key(kind, name);
        self.rt.block_on(async {
            self.client
                .put_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .body(ByteStream::from(data.to_vec()))
                .send()
                .await
                .map_err(|e| self.err("write", &key, e))?;
            Ok(())
        })
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let key = self.key(kind, name);
        self.rt.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.loc.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.err("delete", &key, e))?;
            Ok(())
        })
    }

    fn stat(&self, kind: Kind, name: &str) -> Result<Option<u64>> {
        let key = self.key(kind, name);
        self.rt.block_on(async {
            match self.client.head_object().bucket(&self.loc.bucket).key(&key).send().await {
                Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
                Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 404 => Ok(None),
                Err(e) => Err(self.err("stat", &key, e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let l = S3Location::parse(
            "s3://backups/lifeboat/site?endpoint=http://127.0.0.1:9000&path-style=true&region=eu-west-1",
        )
        .unwrap();
        assert_eq!(l.bucket, "backups");
        assert_eq!(l.prefix, "lifeboat/site");
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(l.path_style);
        assert_eq!(l.display(), "s3://backups/lifeboat/site");
        assert!(S3Location::parse("s3:///x").is_err());
        assert!(S3Location::parse("s3://b?secret=x").is_err());
        assert_eq!(S3Location::parse("s3://b").unwrap().prefix, "");
    }
}
