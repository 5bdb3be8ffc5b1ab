//! `hubguard check` and `hubguard policy validate` as a user meets them: exit codes, messages
//! that name the file, line and field, stdin, and nothing judged half-way.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn hubguard(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubguard"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const PRIVATE: &str = "policies/tess-private.yaml";
const GOOD: &str = "tests/corpus/pass/z2jh-user-pod-hardened.yaml";
const BAD: &str = "tests/corpus/attack/privileged-pod.yaml";

#[test]
fn exit_codes_follow_the_verdict() {
    let hub = ["--as", "system:serviceaccount:tess-private:hub"];
    let ok = hubguard(
        &[&["check", "--policy", PRIVATE], &hub[..], &[GOOD]].concat(),
        None,
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("ALLOWED"));

    let denied = hubguard(
        &[
            "check",
            "--policy",
            PRIVATE,
            "--as",
            "system:serviceaccount:tess-private:user-alice",
            GOOD,
            BAD,
        ],
        None,
    );
    assert_eq!(denied.status.code(), Some(1));
    let out = text(&denied.stdout);
    assert!(out.contains("DENIED"), "{out}");
    assert!(
        out.contains("spec.containers[0].securityContext.privileged"),
        "{out}"
    );
    assert!(
        out.contains("fix: remove securityContext.privileged"),
        "{out}"
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    let manifest = std::fs::read_to_string(root().join(BAD)).unwrap();
    let out = hubguard(
        &["check", "--policy", PRIVATE, "-o", "json", "-"],
        Some(&manifest),
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["objects"][0]["file"], "<stdin>");
    assert_eq!(report["objects"][0]["decision"], "denied");
}

#[test]
fn bad_yaml_names_file_and_line_and_judges_nothing() {
    let broken = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n";
    let out = hubguard(&["check", "--policy", PRIVATE, GOOD, "-"], Some(broken));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("<stdin>:"), "{err}");
    assert!(err.contains("nothing was judged"), "{err}");
    assert!(
        text(&out.stdout).is_empty(),
        "the good file must not be reported: {}",
        text(&out.stdout)
    );
}

#[test]
fn malformed_pod_spec_names_the_field() {
    let bad_spec = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: a\n      ports: {not: a-list}\n";
    let out = hubguard(&["check", "--policy", PRIVATE, "-"], Some(bad_spec));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("spec.containers[0].ports"), "{err}");
    assert!(err.contains("Pod/p"), "{err}");
}

#[test]
fn missing_file_and_bad_usage_exit_2() {
    let out = hubguard(&["check", "--policy", PRIVATE, "no-such-file.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no-such-file.yaml"));
    let usage = hubguard(&["check", "--policy", PRIVATE, "-o", "xml", GOOD], None);
    assert_eq!(usage.status.code(), Some(2));
    let no_policy = hubguard(
        &["check", "--policy", "tests/fixtures/typo-policy.yaml", GOOD],
        None,
    );
    assert_eq!(no_policy.status.code(), Some(2));
}

#[test]
fn policy_validate_names_every_bad_field() {
    let out = hubguard(
        &["policy", "validate", "tests/fixtures/broken-policy.yaml"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for field in [
        "spec.classes.user.modes.privilegd",
        "spec.classes.user.controls.runAsUser.ranges[0]",
        "spec.classes.user.resources.maxMemory",
        "spec.classes.user.egress[0].to",
    ] {
        assert!(err.contains(field), "{field} not named in: {err}");
    }

    let typo = hubguard(
        &["policy", "validate", "tests/fixtures/typo-policy.yaml"],
        None,
    );
    assert_eq!(typo.status.code(), Some(1));
    let err = text(&typo.stderr);
    assert!(
        err.contains("spec.classes.user.controls.runAsUser.rule"),
        "{err}"
    );
    assert!(
        err.contains("MustRunAsNonRoot"),
        "the message lists the valid values: {err}"
    );

    for preset in ["baseline", "restricted", "tess-public", "tess-private"] {
        let ok = hubguard(
            &["policy", "validate", &format!("policies/{preset}.yaml")],
            None,
        );
        assert_eq!(ok.status.code(), Some(0), "{preset}: {}", text(&ok.stderr));
    }
}

#[test]
fn warn_and_audit_allow_but_report() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n  containers: [{name: a, image: x}]\n";
    let out = hubguard(
        &[
            "check",
            "--policy",
            "tests/fixtures/warn-policy.yaml",
            "-o",
            "json",
            "-",
        ],
        Some(pod),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let modes: Vec<(&str, &str)> = report["objects"][0]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["rule"].as_str().unwrap(), v["mode"].as_str().unwrap()))
        .collect();
    assert!(modes.contains(&("hostNetwork", "audit")), "{modes:?}");
    assert!(modes.contains(&("seccomp", "warn")), "{modes:?}");
    assert!(modes.iter().all(|(_, m)| *m != "enforce"), "{modes:?}");

    let privileged = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, securityContext: {privileged: true}}]\n";
    let out = hubguard(
        &["check", "--policy", "tests/fixtures/warn-policy.yaml", "-"],
        Some(privileged),
    );
    assert_eq!(out.status.code(), Some(1), "privileged stays enforced");
}

#[test]
fn every_rule_is_documented() {
    let reference = std::fs::read_to_string(root().join("docs/policy-reference.md")).unwrap();
    let rules = hubguard(&["policy", "rules"], None);
    let listed = text(&rules.stdout);
    assert!(listed.lines().count() >= 26, "{listed}");
    for line in listed.lines() {
        let id = line.split_whitespace().next().unwrap();
        assert!(
            reference.contains(&format!("`{id}`")),
            "docs/policy-reference.md does not document rule {id}"
        );
    }
}

/// Without --as nothing is trusted: where the decision turns on the requester, the report
/// says so and names the requester to check as, instead of leaving only fixes that point
/// elsewhere. With --as, or where no requester would change it, no note.
#[test]
fn a_decision_that_turns_on_the_requester_says_so_without_as() {
    let platform = "tests/corpus/pass/z2jh-hub-and-proxy.yaml";
    let out = hubguard(
        &["check", "--policy", PRIVATE, "-o", "json", platform],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hint = report["objects"][0]["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("as system:serviceaccount:tess-private:hub (trusted) it is allowed")
            && hint.contains("--as"),
        "{report:#}"
    );
    let as_admin = hubguard(
        &[
            "check",
            "--policy",
            PRIVATE,
            "--as",
            "admin",
            "--as-group",
            "system:masters",
            platform,
        ],
        None,
    );
    assert_eq!(
        as_admin.status.code(),
        Some(0),
        "{}",
        text(&as_admin.stdout)
    );
    assert!(!text(&as_admin.stdout).contains("note:"));
    let privileged = hubguard(&["check", "--policy", PRIVATE, BAD], None);
    assert_eq!(privileged.status.code(), Some(1));
    assert!(
        !text(&privileged.stdout).contains("note:"),
        "privileged is refused whoever asks: {}",
        text(&privileged.stdout)
    );
}
