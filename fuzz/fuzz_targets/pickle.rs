//! cargo-fuzz target `pickle`: see fuzz/README.md and fuzz/targets.rs.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| {
    let _ = targets::pickle(data);
});
