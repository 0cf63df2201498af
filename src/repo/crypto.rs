//! Repository cryptography: a random master key, wrapped by each password with Argon2id;
//! every stored object sealed with XChaCha20-Poly1305 under a random 192-bit nonce; chunk IDs as
//! BLAKE3 keyed by a second secret key, so the store never sees a plaintext fingerprint.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object has beyond its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed: the data was changed or the key is wrong")]
    Auth,
    #[error("wrong password (no key in the repository opens with it)")]
    WrongPassword,
    /// No key opened, and some could not be tried: the password may be right.
    #[error("wrong password, or the key it opens could not be tried: {}", .0.join("; "))]
    NoKeyTried(Vec<String>),
    #[error("invalid key file: {0}")]
    KeyFile(String),
}

/// The repository's secrets.
#[derive(Clone)]
pub struct MasterKey {
    /// Seals and opens every object.
    pub encryption: [u8; 32],
    /// Keys the BLAKE3 hash that names chunks and trees.
    pub id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the kernel's random source is unavailable");
    b
}

impl MasterKey {
    pub fn generate() -> MasterKey {
        MasterKey { encryption: random(), id: random() }
    }

    /// The keyed ID of some plaintext.
    pub fn id_of(&self, plaintext: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.id, plaintext).as_bytes()
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.encryption, &[plaintext])
    }

    /// Seals the concatenation of `parts` (without concatenating them first).
    pub fn seal_parts(&self, parts: &[&[u8]]) -> Vec<u8> {
        seal(&self.encryption, parts)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.encryption, sealed)
    }
}

/// nonce ‖ ciphertext ‖ tag, the plaintext copied once (into the result, encrypted there).
fn seal(key: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random();
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(OVERHEAD + len);
    out.extend_from_slice(&nonce);
    for p in parts {
        out.extend_from_slice(p);
    }
    let tag = XChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"", &mut out[NONCE_LEN..])
        .expect("encryption of a slice cannot fail");
    out.extend_from_slice(&tag);
    out
}

fn open(key: &[u8; 32], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < OVERHEAD {
        return Err(CryptoError::Auth);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into()).decrypt(XNonce::from_slice(nonce), ct).map_err(|_| CryptoError::Auth)
}

/// Argon2id cost parameters, recorded in each key file.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m: u32,
    pub t: u32,
    pub p: u32,
}

/// The largest Argon2 memory cost a key file may ask for: 1 GiB (in KiB). A key file is read
/// before anyone knows it is genuine, so its costs are bounded before they are paid.
pub const KDF_MAX_MEMORY_KIB: u32 = 1 << 20;
/// The most Argon2 passes a key file may ask for.
pub const KDF_MAX_PASSES: u32 = 10;
/// The most Argon2 lanes a key file may ask for.
pub const KDF_MAX_LANES: u32 = 16;

impl KdfParams {
    /// 64 MiB, 3 passes: about half a second here. `LIFEBOAT_KDF=m,t,p` overrides (for hosts
    /// with little memory, and for tests), within the same bounds as every key file.
    pub fn default_or_env() -> KdfParams {
        if let Ok(v) = std::env::var("LIFEBOAT_KDF") {
            let n: Vec<u32> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            if let [m, t, p] = n[..] {
                let asked = KdfParams { m, t, p };
                match asked.check() {
                    Ok(()) => return asked,
                    Err(e) => tracing::warn!(error = e.as_str(), "LIFEBOAT_KDF is not used"),
                }
            }
        }
        KdfParams { m: 64 * 1024, t: 3, p: 1 }
    }

    /// Refuses costs outside the documented bounds (docs/repository-format.md): at most 1 GiB
    /// of memory, 10 passes and 16 lanes, and Argon2's own minimum of 8 KiB per lane.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=KDF_MAX_LANES).contains(&self.p) {
            return Err(format!("Argon2 lanes {} outside 1..={KDF_MAX_LANES}", self.p));
        }
        if !(1..=KDF_MAX_PASSES).contains(&self.t) {
            return Err(format!("Argon2 passes {} outside 1..={KDF_MAX_PASSES}", self.t));
        }
        let least = 8 * self.p;
        if !(least..=KDF_MAX_MEMORY_KIB).contains(&self.m) {
            return Err(format!("Argon2 memory {} KiB outside {least}..={KDF_MAX_MEMORY_KIB} KiB", self.m));
        }
        Ok(())
    }
}

/// A key file: the master key sealed by a key derived from one password.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub created: String,
    pub host: String,
    pub user: String,
    pub kdf: String,
    pub params: KdfParams,
    /// hex
    pub salt: String,
    /// hex of the sealed master key (64 bytes: encryption key then ID key)
    pub data: String,
}

fn derive(password: &[u8], salt: &[u8], p: KdfParams) -> Result<[u8; 32], CryptoError> {
    p.check().map_err(CryptoError::KeyFile)?;
    let params = Params::new(p.m, p.t, p.p, Some(32)).map_err(|e| CryptoError::KeyFile(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| CryptoError::KeyFile(e.to_string()))?;
    Ok(out)
}

impl KeyFile {
    pub fn new(master: &MasterKey, password: &[u8], params: KdfParams) -> Result<KeyFile, CryptoError> {
        let salt: [u8; 16] = random();
        let wrap = derive(password, &salt, params)?;
        let mut secret = Vec::with_capacity(64);
        secret.extend_from_slice(&master.encryption);
        secret.extend_from_slice(&master.id);
        Ok(KeyFile {
            created: crate::sys::now_rfc3339(),
            host: crate::sys::hostname(),
            user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            data: hex::encode(seal(&wrap, &[&secret])),
        })
    }

    /// The master key, if `password` is this key's.
    pub fn unwrap(&self, password: &[u8]) -> Result<MasterKey, CryptoError> {
        if self.kdf != "argon2id" {
            return Err(CryptoError::KeyFile(format!("unknown KDF {:?}", self.kdf)));
        }
        let salt = hex::decode(&self.salt).map_err(|e| CryptoError::KeyFile(e.to_string()))?;
        let data = hex::decode(&self.data).map_err(|e| CryptoError::KeyFile(e.to_string()))?;
        let wrap = derive(password, &salt, self.params)?;
        let secret = open(&wrap, &data).map_err(|_| CryptoError::WrongPassword)?;
        if secret.len() != 64 {
            return Err(CryptoError::KeyFile("master key has the wrong length".into()));
        }
        let mut m = MasterKey { encryption: [0; 32], id: [0; 32] };
        m.encryption.copy_from_slice(&secret[..32]);
        m.id.copy_from_slice(&secret[32..]);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams { m: 64, t: 1, p: 1 };

    #[test]
    fn seal_open_and_tamper() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"library catalogue");
        assert_eq!(k.open(&sealed).unwrap(), b"library catalogue");
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(matches!(k.open(&bad), Err(CryptoError::Auth)));
        assert!(MasterKey::generate().open(&sealed).is_err());
        assert!(!sealed.windows(7).any(|w| w == b"library"));
    }

    #[test]
    fn key_file_wraps_and_refuses_wrong_password() {
        let k = MasterKey::generate();
        let f = KeyFile::new(&k, b"correct horse", FAST).unwrap();
        let back = f.unwrap(b"correct horse").unwrap();
        assert_eq!(back.encryption, k.encryption);
        assert_eq!(back.id, k.id);
        assert!(matches!(f.unwrap(b"wrong"), Err(CryptoError::WrongPassword)));
    }

    /// A key file anyone with write access to the storage could plant: costs that would take
    /// the machine's memory or hours are refused before anything is allocated.
    #[test]
    fn hostile_key_costs_are_refused_before_they_are_paid() {
        let k = MasterKey::generate();
        let good = KeyFile::new(&k, b"pw", FAST).unwrap();
        for (params, what) in [
            (KdfParams { m: u32::MAX, t: 1, p: 1 }, "memory"),
            (KdfParams { m: 4 << 20, t: 1, p: 1 }, "memory"),
            (KdfParams { m: 64, t: u32::MAX, p: 1 }, "passes"),
            (KdfParams { m: 64, t: 0, p: 1 }, "passes"),
            (KdfParams { m: 64, t: 1, p: 0 }, "lanes"),
            (KdfParams { m: 64, t: 1, p: 1000 }, "lanes"),
            (KdfParams { m: 8, t: 1, p: 4 }, "memory"),
        ] {
            let hostile = KeyFile { params, ..good.clone() };
            let started = std::time::Instant::now();
            match hostile.unwrap(b"pw") {
                Err(CryptoError::KeyFile(e)) => assert!(e.contains(what), "{params:?}: {e}"),
                other => panic!("{params:?} was not refused: {other:?}"),
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "{params:?} was paid for");
        }
        assert!(KdfParams { m: KDF_MAX_MEMORY_KIB, t: KDF_MAX_PASSES, p: KDF_MAX_LANES }.check().is_ok());
        assert!(KeyFile::new(&k, b"pw", KdfParams { m: u32::MAX, t: 1, p: 1 }).is_err());
    }

    #[test]
    fn ids_are_keyed() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        assert_ne!(a.id_of(b"x"), b.id_of(b"x"));
        assert_eq!(a.id_of(b"x"), a.id_of(b"x"));
    }
}
