//! The node agent's rule compiler on any policy that loads: compiled within the kernel's limits
//! or refused with a message, never a panic. The destinations it resolves include a cluster
//! DNS address, a Service and a namespace's pods, so rules naming them compile too.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;

use hubguard_node_agent::rules::{compile, Resolved};
use libfuzzer_sys::fuzz_target;

fn resolved() -> Resolved {
    let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
    Resolved {
        cluster_dns: vec![ip("10.96.0.10")],
        services: HashMap::from([(
            "tess-private/proxy-public".to_string(),
            vec![ip("10.96.0.20")],
        )]),
        namespaces: HashMap::from([(
            "tess-private".to_string(),
            vec![ip("10.244.0.5"), ip("fd00::5")],
        )]),
        namespace_tenants: HashMap::from([(
            "tess-private".to_string(),
            vec![
                (Some("alice".to_string()), ip("10.244.0.5")),
                (None, ip("fd00::5")),
            ],
        )]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = hubguard_policy::Policy::from_yaml(text, "fuzz.yaml") else {
        return;
    };
    let _ = compile(&policy, &Resolved::default());
    let _ = compile(&policy, &resolved());
});
