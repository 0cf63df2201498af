//! The configuration file and the grammars it uses, on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = lifeboat::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
    let _ = lifeboat::syntax::duration(text);
    let _ = lifeboat::syntax::size(text);
    let _ = lifeboat::syntax::publish(text);
    let _ = lifeboat::syntax::mount(text);
    let _ = lifeboat::syntax::since(text);
    let _ = lifeboat::repo::forget::Within::parse(text);
    let _ = lifeboat::config::parse_schedule(text);
    let _ = lifeboat::config::parse_http_check(text);
});
