//! What `hubguard check` reads: multi-document YAML, Lists inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hubguard_policy::manifest::parse_manifests(text, "fuzz.yaml");
    }
});
