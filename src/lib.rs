//! Lifeboat: a container-based backup and disaster-recovery tool.
//!
//! The library holds everything; the `lifeboat` binary only parses arguments (`cli`), sets up
//! logging and maps errors to exit codes (`error`). Data flows through:
//!
//! - [`image`]: references, OCI documents, layers (made and applied safely), the local store.
//! - [`config`]: the `lifeboat.toml` model; [`agent`] runs its jobs on their schedules.
//! - [`fsutil`]: atomic writes, locks and temporary paths shared by the stores.

pub mod agent;
pub mod backend;
pub mod builder;
pub mod cli;
pub mod config;
pub mod error;
pub mod fsutil;
pub mod image;
pub mod registry;
pub mod repo;
pub mod runtime;
pub mod snapshot;
