//! One handle for a host's Lifeboat state: where it lives (root and run root) and its stores
//! (images, containers, volumes), each opened at most once per command and passed down.
//!
//! A command opens a `Host` and hands it to every function it calls; nothing below re-opens a
//! store from root paths. The stores are opened on first use, so a command that needs only
//! one of them does not create the others' directories.

use std::sync::OnceLock;

use super::Paths;
use super::container::{ContainerError, Containers};
use super::kernel::{Kernel, Linux};
use super::volume::Volumes;
use crate::image::{Store, StoreError};

pub struct Host {
    paths: Paths,
    kernel: Box<dyn Kernel>,
    store: OnceLock<Store>,
    containers: OnceLock<Containers>,
    volumes: OnceLock<Volumes>,
}

impl Host {
    pub fn new(paths: Paths) -> Host {
        Host::with_kernel(paths, Box::new(Linux))
    }

    /// A host whose kernel files are `kernel`'s (a [`Fake`](super::kernel::Fake) in tests).
    pub fn with_kernel(paths: Paths, kernel: Box<dyn Kernel>) -> Host {
        Host { paths, kernel, store: OnceLock::new(), containers: OnceLock::new(), volumes: OnceLock::new() }
    }

    /// The kernel's cgroup and `/proc` files.
    pub fn kernel(&self) -> &dyn Kernel {
        self.kernel.as_ref()
    }

    /// Where this host's state lives.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The image store.
    pub fn store(&self) -> Result<&Store, StoreError> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        let opened = Store::open(&self.paths.root)?;
        Ok(self.store.get_or_init(|| opened))
    }

    /// The containers.
    pub fn containers(&self) -> Result<&Containers, ContainerError> {
        if let Some(c) = self.containers.get() {
            return Ok(c);
        }
        let opened = Containers::open(&self.paths.root)?;
        Ok(self.containers.get_or_init(|| opened))
    }

    /// The named volumes.
    pub fn volumes(&self) -> Result<&Volumes, ContainerError> {
        if let Some(v) = self.volumes.get() {
            return Ok(v);
        }
        let opened = Volumes::open(&self.paths.root)?;
        Ok(self.volumes.get_or_init(|| opened))
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("root", &self.paths.root).field("run_root", &self.paths.run_root).finish()
    }
}
