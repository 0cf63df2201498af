//! Exit codes: the contract with scripts (documented in docs/exit-codes.md).
//!
//! Library errors are typed; the binary maps the first error in the chain that it recognises
//! to a code. Anything unrecognised is a plain failure (1).

use crate::image::layer::LayerError;
use crate::image::{ImageError, StoreError, changes::ChangeError, digest::DigestError, reference::ReferenceError};
use crate::repo::{RepoError, crypto::CryptoError};
use crate::runtime::ContainerError;

/// A named thing that is not there (a file named on the command line, say): exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// An I/O error on a path the user named: "not found" when it is not there (exit code 3),
/// a failure (1) otherwise; the message says what was done and to which path.
pub fn io_error(e: std::io::Error, path: &std::path::Path, doing: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        return NotFound(format!("{doing} {}: no such file or directory", path.display())).into();
    }
    anyhow::Error::new(e).context(format!("{doing} {}", path.display()))
}

/// A request that makes no sense as given: a bad flag value, a missing argument, two options
/// that exclude each other (exit code 2).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub const SUCCESS: i32 = 0;
/// Something failed (I/O, a peer, a bug).
pub const FAILURE: i32 = 1;
/// The command line or the configuration file was wrong: unknown flag, bad value, invalid image
/// reference, a config problem.
pub const USAGE: i32 = 2;
/// The named object (image, container, snapshot) does not exist.
pub const NOT_FOUND: i32 = 3;
/// Input was refused as unsafe or corrupt (hostile archive, digest mismatch); nothing was changed.
pub const BAD_INPUT: i32 = 4;
/// The request conflicts with the current state (name in use, ambiguous ID, image in use).
pub const CONFLICT: i32 = 5;
/// The repository does not exist.
pub const REPO_MISSING: i32 = 10;
/// The repository is locked by another process.
pub const REPO_LOCKED: i32 = 11;
/// Wrong repository password.
pub const WRONG_PASSWORD: i32 = 12;
/// Interrupted by SIGINT/SIGTERM.
pub const INTERRUPTED: i32 = 130;

/// The message for an error and its causes, each cause said once: library errors often
/// include their cause's text in their own message already.
pub fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The documented exit code for an error.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_code(e);
        }
        if let Some(e) = cause.downcast_ref::<ImageError>() {
            return match e {
                ImageError::Store(s) => store_code(s),
                ImageError::Change(_) | ImageError::Reference(_) => USAGE,
                ImageError::Archive { .. } => BAD_INPUT,
                ImageError::Source { source, .. } if source.kind() == std::io::ErrorKind::NotFound => NOT_FOUND,
                ImageError::Source { .. } | ImageError::Output { .. } => FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<LayerError>() {
            return if e.is_bad_input() { BAD_INPUT } else { FAILURE };
        }
        if cause.is::<ReferenceError>() || cause.is::<ChangeError>() || cause.is::<DigestError>() {
            return USAGE;
        }
        if let Some(e) = cause.downcast_ref::<RepoError>() {
            return match e {
                RepoError::Missing(_) => REPO_MISSING,
                RepoError::Key { source: CryptoError::WrongPassword | CryptoError::NoKeyTried(_), .. } => {
                    WRONG_PASSWORD
                }
                RepoError::Corrupt { .. } => BAD_INPUT,
                RepoError::Locked { .. } => REPO_LOCKED,
                RepoError::AlreadyExists(_) | RepoError::Ambiguous { .. } => CONFLICT,
                RepoError::NotFound { .. } => NOT_FOUND,
                RepoError::Other { .. } | RepoError::Key { .. } | RepoError::Backend(_) => FAILURE,
                RepoError::Interrupted => INTERRUPTED,
            };
        }
        if cause.is::<UsageError>() {
            return USAGE;
        }
        if cause.is::<NotFound>() {
            return NOT_FOUND;
        }
        if let Some(crate::registry::client::RegistryError::NotFound { .. }) = cause.downcast_ref() {
            return NOT_FOUND;
        }
        if let Some(e) = cause.downcast_ref::<crate::config::ConfigError>() {
            return match e {
                crate::config::ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    NOT_FOUND
                }
                crate::config::ConfigError::Read { .. } => FAILURE,
                crate::config::ConfigError::Invalid { .. } => USAGE,
            };
        }
        if let Some(e) = cause.downcast_ref::<ContainerError>() {
            return match e {
                ContainerError::NotFound(_) | ContainerError::NoSuchVolume(_) => NOT_FOUND,
                ContainerError::Conflict(_) => CONFLICT,
                ContainerError::Invalid(_) => USAGE,
                ContainerError::Io { .. } | ContainerError::Runtime(_) => FAILURE,
                ContainerError::Command { code, .. } => *code,
            };
        }
    }
    FAILURE
}

fn store_code(e: &StoreError) -> i32 {
    match e {
        StoreError::NotFound(_) => NOT_FOUND,
        StoreError::Conflict(_) => CONFLICT,
        StoreError::DigestMismatch { .. } | StoreError::Invalid(_) => BAD_INPUT,
        StoreError::Layer(l) if l.is_bad_input() => BAD_INPUT,
        StoreError::Layer(_) | StoreError::Io { .. } => FAILURE,
        StoreError::Reference(_) => USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_says_each_cause_once() {
        let io = std::io::Error::other("connection refused");
        let e = anyhow::Error::new(StoreError::Io { path: "/x".into(), source: io }).context("cannot import x");
        assert_eq!(describe(&e), "cannot import x: image store: cannot access /x: connection refused");
    }
}
