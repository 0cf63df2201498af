//! Documents a registry or an archive hands over: manifests, indexes, image configs, and the
//! references and digests in them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat::image::spec::{ImageConfig, Index, Manifest};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Manifest>(data);
    let _ = serde_json::from_slice::<Index>(data);
    let _ = serde_json::from_slice::<ImageConfig>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = lifeboat::image::Reference::parse(text) {
            // What parses prints back to something that parses to the same.
            let again = lifeboat::image::Reference::parse(&r.to_string()).expect("a printed reference parses");
            assert_eq!(again, r);
        }
        let _ = text.parse::<lifeboat::image::Digest>();
    }
});
