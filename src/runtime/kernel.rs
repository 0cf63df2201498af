//! The seam between the runtime and the kernel's files: cgroups, the freezer, `/proc`. The
//! runtime reads and writes them through [`Kernel`], so cgroup discovery, freezing, usage and
//! OOM detection are plain code over text that a unit test can hand a [`Fake`] of (a v1,
//! v2 or hybrid host, a freezer that takes a while), and check what was written, in order.
//!
//! Mounting stays with libcontainer and `rootfs` (which plan mounts as data); this seam is for
//! the files the runtime drives itself.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The kernel's files, as the runtime uses them.
pub trait Kernel: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<String>;
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// The symlinks directly in `dir`: (name, target).
    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>>;
}

impl<K: Kernel + ?Sized> Kernel for std::sync::Arc<K> {
    fn read(&self, path: &Path) -> io::Result<String> {
        (**self).read(path)
    }
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        (**self).write(path, value)
    }
    fn exists(&self, path: &Path) -> bool {
        (**self).exists(path)
    }
    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>> {
        (**self).links(dir)
    }
}

/// The real kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct Linux;

impl Kernel for Linux {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)?.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                out.push((e.file_name().to_string_lossy().into_owned(), target.to_string_lossy().into_owned()));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A kernel made of strings, for tests: files set up front, every write recorded in order,
/// and the freezers behaving as the kernel's do (a v1 `freezer.state` written `FROZEN` reads
/// back `FREEZING` for a while first, if asked; a v2 `cgroup.freeze` updates `cgroup.events`).
#[derive(Debug, Default)]
pub struct Fake {
    files: Mutex<BTreeMap<PathBuf, String>>,
    links: Mutex<BTreeMap<PathBuf, Vec<(String, String)>>>,
    writes: Mutex<Vec<(PathBuf, String)>>,
    /// How many reads of a freezer still say it is on its way.
    freezing_reads: Mutex<u32>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// Sets a file's content.
    pub fn file(self, path: impl Into<PathBuf>, content: &str) -> Fake {
        self.files.lock().expect("fake kernel").insert(path.into(), content.to_string());
        self
    }

    /// Adds a symlink `name -> target` in `dir`.
    pub fn link(self, dir: impl Into<PathBuf>, name: &str, target: &str) -> Fake {
        self.links.lock().expect("fake kernel").entry(dir.into()).or_default().push((name.into(), target.into()));
        self
    }

    /// A v1 freezer that reads back `FREEZING` this many times after a write.
    pub fn slow_freezer(self, reads: u32) -> Fake {
        *self.freezing_reads.lock().expect("fake kernel") = reads;
        self
    }

    /// Every write so far, in order.
    pub fn writes(&self) -> Vec<(PathBuf, String)> {
        self.writes.lock().expect("fake kernel").clone()
    }
}

impl Kernel for Fake {
    fn read(&self, path: &Path) -> io::Result<String> {
        let content = self.files.lock().expect("fake kernel").get(path).cloned();
        let content = content.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))?;
        let mut freezing = self.freezing_reads.lock().expect("fake kernel");
        if path.ends_with("freezer.state") && content.trim() == "FROZEN" && *freezing > 0 {
            *freezing -= 1;
            return Ok("FREEZING\n".into());
        }
        Ok(content)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut files = self.files.lock().expect("fake kernel");
        if !files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, path.display().to_string()));
        }
        self.writes.lock().expect("fake kernel").push((path.to_path_buf(), value.to_string()));
        files.insert(path.to_path_buf(), value.to_string());
        if path.ends_with("cgroup.freeze")
            && let Some(dir) = path.parent()
        {
            files.insert(dir.join("cgroup.events"), format!("populated 1\nfrozen {}\n", value.trim()));
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let files = self.files.lock().expect("fake kernel");
        files.contains_key(path) || files.keys().any(|p| p.starts_with(path))
    }

    fn links(&self, dir: &Path) -> io::Result<Vec<(String, String)>> {
        Ok(self.links.lock().expect("fake kernel").get(dir).cloned().unwrap_or_default())
    }
}
