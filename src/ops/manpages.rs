//! Installing the man pages the command line renders from its own definitions.

use std::path::Path;

use anyhow::Context as _;

/// Writes each `(name, page)` as `dir/name.1` (each complete or not at all), making `dir`
/// if needed; returns how many were written.
pub fn install(dir: &Path, pages: &[(String, Vec<u8>)]) -> anyhow::Result<usize> {
    crate::fsutil::dir_with_mode(dir, 0o755).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        crate::fsutil::write_atomic(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(pages.len())
}
