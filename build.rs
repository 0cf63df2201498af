//! Links the `lifeboat` executable at a fixed address (not position-independent). Every
//! container has a shim, a `lifeboat` process; in a position-independent executable the dynamic
//! loader must patch about 1.2 MiB of pointer tables (vtables, string tables) at start, which
//! makes them private to each process. Linked at a fixed address they stay shared with the
//! file: a shim's own memory drops from about 2 MiB to under 1 MiB, and every start (CLI and
//! shim) skips the patching. Libraries, heap, stacks and mappings stay randomised.
//! docs/decisions/0004-fixed-address-executable.md weighs this against full ASLR.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
