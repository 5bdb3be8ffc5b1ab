//! The crates' dependency direction: policy ← daemon ← webhook, node agent ← the binary.
//! Nothing depends upward, and test tooling stays out of the product crates' normal
//! dependencies (each crate's README says what it may depend on).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// For each of the project's crates, the project's crates it may depend on (normal and build
/// dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("hubguard-policy", &[]),
    ("hubguard-daemon", &["hubguard-policy"]),
    ("hubguard-webhook", &["hubguard-policy", "hubguard-daemon"]),
    (
        "hubguard-node-agent",
        &["hubguard-policy", "hubguard-daemon"],
    ),
    // Test tooling: never a normal dependency of anything (nothing lists it here).
    (
        "hubguard-testkit",
        &[
            "hubguard-policy",
            "hubguard-daemon",
            "hubguard-webhook",
            "hubguard-node-agent",
        ],
    ),
    (
        "hubguard",
        &[
            "hubguard-policy",
            "hubguard-daemon",
            "hubguard-webhook",
            "hubguard-node-agent",
        ],
    ),
];

#[test]
fn dependencies_point_one_way() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(crate::support::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(name, deps)| (*name, deps.iter().copied().collect()))
        .collect();
    let mut wrong = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(may) = allowed.get(name) else {
            wrong.push(format!(
                "{name}: a crate this test does not know; add it to ALLOWED"
            ));
            continue;
        };
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let dev = dep["kind"].as_str() == Some("dev");
            if dep_name.starts_with("hubguard") && !dev && !may.contains(dep_name) {
                wrong.push(format!("{name} depends on {dep_name}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
