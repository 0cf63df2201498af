//! The layer applier on arbitrary tar streams (plain, gzip or zstd): never a panic, never a
//! file outside the target.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeboat::image::layer::{self, ApplyOptions, WhiteoutMode};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let target = dir.path().join("target");
    std::fs::create_dir(&target).expect("the target");
    for whiteouts in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let opts = ApplyOptions { whiteouts, max_file_size: Some(1 << 20), owner: None, keep_kinds: false };
        if let Ok((_, tar)) = layer::decompressed(data) {
            let _ = layer::apply_layer(tar, &target, &opts);
        }
    }
    // Nothing was made beside the target.
    let beside: Vec<_> = std::fs::read_dir(dir.path()).expect("the directory").collect();
    assert_eq!(beside.len(), 1, "the layer wrote outside its target");
});
