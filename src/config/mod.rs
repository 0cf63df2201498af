//! The `lifeboat.toml` model: repositories, services and their snapshot schedules.
//!
//! Loading parses and validates; every error names the file and, where TOML knows it, the line.
//! This module never acts on the configuration; the agent and `up`/`down` do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::Reference;

pub const DEFAULT_PATH: &str = "/etc/lifeboat/lifeboat.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub repositories: BTreeMap<String, Repository>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    /// A local path or `s3://bucket/prefix`.
    pub url: String,
    /// File holding the repository password (never the password itself).
    pub password_file: Option<PathBuf>,
    pub s3: Option<S3Options>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    /// An AWS-style credentials file; otherwise the standard AWS chain applies.
    pub credentials_file: Option<PathBuf>,
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub image: String,
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    pub network: Option<String>,
    pub restart: Option<String>,
    pub snapshot: Option<SnapshotPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicy {
    /// Cron expression: 5 fields, or 6 with seconds first.
    pub schedule: String,
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub exec_before: Vec<String>,
    #[serde(default)]
    pub exec_after: Vec<String>,
    #[serde(default)]
    pub keep: KeepPolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
        Config::parse(&text, path)
    }

    /// Parses and validates; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            invalid(match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            })
        })?;
        let mut problems = Vec::new();
        for (name, svc) in &config.services {
            if let Err(e) = Reference::parse(&svc.image) {
                problems.push(format!("service {name:?}: {e}"));
            }
            if let Some(snap) = &svc.snapshot {
                for repo in &snap.repositories {
                    if !config.repositories.contains_key(repo) {
                        problems.push(format!(
                            "service {name:?}: snapshot repository {repo:?} is not defined under [repositories]"
                        ));
                    }
                }
                let fields = snap.schedule.split_whitespace().count();
                if !(5..=6).contains(&fields) {
                    problems.push(format!(
                        "service {name:?}: schedule {:?} must have 5 fields (or 6 with seconds)",
                        snap.schedule
                    ));
                }
            }
        }
        for (name, repo) in &config.repositories {
            if repo.url.trim().is_empty() {
                problems.push(format!("repository {name:?}: empty url"));
            }
        }
        if problems.is_empty() { Ok(config) } else { Err(invalid(problems.join("; "))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_fail_with_their_line() {
        let text =
            "[repositories.local]\nurl = \"/srv/repo\"\n\n[services.web]\nimage = \"busybox\"\nimgae = \"typo\"\n";
        let e = Config::parse(text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("imgae"), "{e}");
    }

    #[test]
    fn references_are_validated() {
        let text = "[services.web]\nimage = \"Bad Image\"\n[services.web.snapshot]\nschedule = \"0 2 * * *\"\nrepositories = [\"nowhere\"]\n";
        let e = Config::parse(text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(e.contains("invalid reference"), "{e}");
        assert!(e.contains("\"nowhere\""), "{e}");
    }
}
