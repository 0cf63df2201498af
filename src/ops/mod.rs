//! The commands: one function per command, a typed request in and a typed report out. The
//! command line (`src/cli/`, in the binary) and the agent call these and print or record what
//! they return; nothing here prints, prompts or parses a command line.
//!
//! Each function works on a [`Host`](crate::runtime::Host) opened once by its caller and
//! composes the rooms below it: the runtime, the image store, the repository, snapshots,
//! the builder and the registry client.

pub mod adopt;
pub mod backup;
pub mod browse;
pub mod compose;
pub mod containers;
pub mod images;
pub mod manpages;
pub mod registries;
pub mod services;
pub mod system;
pub mod volumes;
