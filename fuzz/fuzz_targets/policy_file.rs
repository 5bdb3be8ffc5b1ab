//! A policy file as `hubguard webhook`, `node-agent` and `policy validate` load it: refused with
//! a message or loaded, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hubguard_policy::Policy::from_yaml(text, "fuzz.yaml");
    }
});
