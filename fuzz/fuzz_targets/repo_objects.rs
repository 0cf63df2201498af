//! What a repository's storage hands back, as the repository decodes it: sealed objects
//! (refused unless they authenticate), and the plaintext documents inside them (snapshots,
//! trees, index files, locks, key files), including key files' costs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat::repo::crypto::{KeyFile, MasterKey};

fuzz_target!(|data: &[u8]| {
    let key = MasterKey { encryption: [7; 32], id: [9; 32] };
    assert!(key.open(data).is_err(), "a forged object authenticated");
    let _ = serde_json::from_slice::<lifeboat::repo::snapshot::Snapshot>(data);
    let _ = serde_json::from_slice::<lifeboat::repo::tree::Tree>(data);
    let _ = serde_json::from_slice::<lifeboat::repo::IndexFile>(data);
    let _ = serde_json::from_slice::<lifeboat::repo::lock::LockInfo>(data);
    if let Ok(kf) = serde_json::from_slice::<KeyFile>(data) {
        // Whatever costs it asks for: refused or cheap, never paid in full.
        if kf.params.check().is_ok() && kf.params.m <= 4096 && kf.params.t <= 2 {
            let _ = kf.unwrap(b"password");
        } else if kf.params.check().is_err() {
            assert!(kf.unwrap(b"password").is_err());
        }
    }
});
