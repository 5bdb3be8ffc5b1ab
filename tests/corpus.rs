//! The corpus under tests/corpus: real-world shapes that must pass the tess presets, and
//! attacks that must be denied, each for the rule its header names. Every file runs through the
//! real `hubguard check` binary. Headers:
//!   `# policy: NAME`   the preset (policies/NAME.yaml), or a path from the repository root
//!   `# as: USER`       the requester, `# groups: G...` its groups
//!   `# rule: ID`       (attack) the one enforced violation expected
//!   `# rules: ID...`   (attack) the set of rules expected, when one shape breaks several
//!   `# fix: TEXT`      (attack) every fix must contain this
//!   `# findings: N`    (attack, one rule) how many violations it makes; one by default
//!   `# mutations: none` (pass) the shape must pass without any default being set (the
//!                       identity /mutate records in the metadata is not a default)
//!   `# action: ACTION` the objects are the targets of delete, exec, attach or port-forward

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::corpus::{header, Header};
use crate::support::root;
use serde_json::Value;

fn check(path: &Path, h: &Header) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubguard"));
    cmd.arg("check")
        .arg("--policy")
        .arg(policy_path(&h.policy))
        .args(["-o", "json"]);
    if let Some(user) = &h.requester {
        cmd.args(["--as", user]);
    }
    for g in &h.groups {
        cmd.args(["--as-group", g]);
    }
    if let Some(action) = &h.action {
        cmd.args(["--action", action]);
    }
    let out = cmd.arg(path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{}: output is not JSON ({e}): {stdout}\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn policy_path(name: &str) -> PathBuf {
    if name.contains('/') {
        root().join(name)
    } else {
        root().join(format!("policies/{name}.yaml"))
    }
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join("tests/corpus").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no corpus files in {dir}");
    found
}

fn violations(report: &Value) -> Vec<&Value> {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o["violations"].as_array().unwrap())
        .collect()
}

#[test]
fn real_world_shapes_pass() {
    for path in files("pass") {
        let h = header(&path);
        let (code, report) = check(&path, &h);
        assert_eq!(code, 0, "{} should pass: {report:#}", path.display());
        assert!(
            violations(&report).is_empty(),
            "{}: {report:#}",
            path.display()
        );
        for object in report["objects"].as_array().unwrap() {
            if h.no_mutations {
                let defaults: Vec<&Value> = object["mutations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|op| !op["path"].as_str().unwrap().contains("/metadata"))
                    .collect();
                assert!(
                    defaults.is_empty(),
                    "{} needs no defaults: {defaults:?}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn attacks_are_denied_for_their_rule() {
    for path in files("attack") {
        let h = header(&path);
        assert!(
            !h.rules.is_empty(),
            "{}: no '# rule:' header",
            path.display()
        );
        let (code, report) = check(&path, &h);
        assert_eq!(code, 1, "{} should be denied: {report:#}", path.display());
        let found = violations(&report);
        let mut rules: Vec<&str> = found.iter().map(|v| v["rule"].as_str().unwrap()).collect();
        rules.dedup();
        assert_eq!(rules, h.rules, "{}: {report:#}", path.display());
        if h.rules.len() == 1 {
            assert_eq!(
                found.len(),
                h.findings,
                "{}: {} violation(s) expected: {report:#}",
                h.findings,
                path.display()
            );
        }
        for v in &found {
            assert_eq!(v["mode"], "enforce");
            assert!(v["path"].as_str().is_some_and(|p| !p.is_empty()));
            if let Some(fix) = &h.fix {
                let blocker_field = v["path"].as_str().unwrap().contains("initContainers");
                if blocker_field {
                    assert!(
                        v["fix"].as_str().unwrap().contains(fix.as_str()),
                        "{}: {v}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// Every registered rule has a case table in its own file and at least one attack in the
/// corpus: adding a rule is adding a file, its cases and its attack.
#[test]
fn every_rule_has_its_case_table_and_an_attack() {
    let out = Command::new(env!("CARGO_BIN_EXE_hubguard"))
        .args(["policy", "rules"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let rules: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(rules.len() >= 35, "{listed}");
    let attacked: Vec<Vec<String>> = files("attack").iter().map(|p| header(p).rules).collect();
    let checks = root().join("policies/src/checks");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&checks).unwrap() {
        sources.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    let mut missing = Vec::new();
    for rule in &rules {
        if !attacked.iter().any(|r| r.iter().any(|x| x == rule)) {
            missing.push(format!("{rule}: no attack in tests/corpus/attack"));
        }
        let file = sources
            .iter()
            .find(|s| s.contains(&format!("id: \"{rule}\",")));
        match file {
            None => missing.push(format!(
                "{rule}: no file in policies/src/checks registers it"
            )),
            Some(text) if !text.contains("fn cases()") => {
                missing.push(format!("{rule}: its file has no case table (fn cases)"))
            }
            Some(_) => {}
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
