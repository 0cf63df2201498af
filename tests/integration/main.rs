//! Lifeboat's integration tests: one binary, one module per area. They run the real
//! `lifeboat` binary against real kernels features and real peers (skopeo, umoci, podman,
//! docker) where those are installed; see tests/README.md.

mod util;

mod agent;
mod backends;
mod browse;
mod build;
mod commit;
mod compose;
mod engines;
mod escape;
mod exit_codes;
mod faults;
mod habits;
mod hostile;
mod images;
mod instant;
mod interop;
mod registry;
mod runtime;
mod services;
mod snapshots;
mod stacks;
