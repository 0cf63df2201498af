//! Key files: passwords that unlock the master key, added, listed, removed and changed.

use super::crypto::{KdfParams, KeyFile, MasterKey};
use super::*;
use crate::backend::Kind;

/// The most key files opening a repository tries, and how long it may spend on them: each try
/// costs a deliberately slow key derivation, and anyone who can write to the storage can add
/// key files.
const MAX_KEYS_TRIED: usize = 20;
const KEY_SEARCH_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// Finds the key file `password` opens: those made on this host first. Key files that are
/// unreadable or ask for costs out of bounds are skipped without deriving anything; what was
/// skipped, and why, is the error when none opens.
pub(super) fn unlock(backend: &dyn Backend, password: &[u8]) -> std::result::Result<(MasterKey, String), Vec<String>> {
    let mut skipped = Vec::new();
    let names = match backend.list(Kind::Key) {
        Ok(n) => n,
        Err(e) => return Err(vec![format!("the key files cannot be listed: {e}")]),
    };
    let mut files = Vec::new();
    for name in names {
        match backend.read(Kind::Key, &name).map(|b| serde_json::from_slice::<KeyFile>(&b)) {
            Ok(Ok(kf)) => match kf.params.check() {
                Ok(()) => files.push((name, kf)),
                Err(e) => skipped.push(format!("key file keys/{name} was skipped: {e}")),
            },
            Ok(Err(e)) => skipped.push(format!("key file keys/{name} was skipped: not a key file ({e})")),
            Err(e) => skipped.push(format!("key file keys/{name} was skipped: {e}")),
        }
    }
    let here = crate::sys::hostname();
    files.sort_by_key(|(_, kf)| kf.host != here);
    let started = std::time::Instant::now();
    let total = files.len();
    for (tried, (name, kf)) in files.into_iter().enumerate() {
        if tried == MAX_KEYS_TRIED || started.elapsed() > KEY_SEARCH_BUDGET {
            skipped.push(format!(
                "{} of {total} key files were not tried (at most {MAX_KEYS_TRIED}, within {} s)",
                total - tried,
                KEY_SEARCH_BUDGET.as_secs()
            ));
            break;
        }
        match kf.unwrap(password) {
            Ok(k) => return Ok((k, name)),
            Err(super::crypto::CryptoError::WrongPassword) => {}
            Err(e) => skipped.push(format!("key file keys/{name} was skipped: {e}")),
        }
    }
    Err(skipped)
}

impl Repository {
    /// Adds a key file for another password; returns its name.
    pub fn add_key(&self, password: &[u8]) -> Result<String> {
        let kf = KeyFile::new(&self.key, password, KdfParams::default_or_env())
            .map_err(|e| RepoError::Key { location: self.location(), source: e })?;
        let bytes = serde_json::to_vec_pretty(&kf).expect("serialises");
        let name = hex::encode(&blake3::hash(&bytes).as_bytes()[..16]);
        self.backend.write(Kind::Key, &name, &bytes)?;
        Ok(name)
    }

    /// Every key file: (name, file, whether it is the one in use).
    pub fn keys(&self) -> Result<Vec<(String, KeyFile, bool)>> {
        let mut out = Vec::new();
        for name in self.backend.list(Kind::Key)? {
            let bytes = self.backend.read(Kind::Key, &name)?;
            if let Ok(kf) = serde_json::from_slice::<KeyFile>(&bytes) {
                let current = self.key_name.as_deref() == Some(name.as_str());
                out.push((name, kf, current));
            }
        }
        Ok(out)
    }

    /// Removes a key file; never the one in use, never the last.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        let keys = self.keys()?;
        let Some((full, _, current)) = keys.iter().find(|(n, _, _)| n.starts_with(name)) else {
            return Err(RepoError::NotFound { location: self.location(), what: format!("no key {name}") });
        };
        if *current {
            return Err(RepoError::Other {
                location: self.location(),
                what: "refusing to remove the key in use (open with another password first)".into(),
            });
        }
        if keys.len() < 2 {
            return Err(RepoError::Other { location: self.location(), what: "refusing to remove the last key".into() });
        }
        self.backend.delete(Kind::Key, full)?;
        Ok(())
    }

    /// Replaces the password in use with another.
    pub fn change_password(&mut self, new_password: &[u8]) -> Result<String> {
        let old = self.key_name.clone();
        let name = self.add_key(new_password)?;
        if let Some(old) = old {
            self.backend.delete(Kind::Key, &old)?;
        }
        self.key_name = Some(name.clone());
        Ok(name)
    }
}
