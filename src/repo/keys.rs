//! Key files: passwords that unlock the master key, added, listed, removed and changed.

use super::crypto::{KdfParams, KeyFile};
use super::*;
use crate::backend::Kind;

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
            return Err(RepoError::Other { location: self.location(), what: format!("no key {name}") });
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
