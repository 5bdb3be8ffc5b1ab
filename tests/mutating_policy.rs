//! The two ways hubguard mutates on create give the same objects: the MutatingAdmissionPolicy
//! generated from the policy (installed by the webhook itself, `--manage-mutating-policy`) and
//! the `/mutate` webhook. Every corpus object (and the edge cases in tests/fixtures/mutation) is created (server-side dry run) as its corpus
//! requester through a real kube-apiserver, once in a namespace bound to the generated policy
//! and once in a namespace sent to `/mutate`, and the two results are compared whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::control_plane::{install_crds, wait_until};
use crate::support::controlplane::ControlPlane;
use crate::support::corpus::header;
use crate::support::{root, yaml_documents, Webhook};

fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["pass", "attack"] {
        for entry in std::fs::read_dir(root().join("tests/corpus").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    // Cases the corpus does not reach, for this test alone.
    for entry in std::fs::read_dir(root().join("tests/fixtures/mutation")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("edges-"))
        {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `kubectl --as` arguments for a corpus requester, with the groups the API server gives it.
fn impersonation(requester: &str, groups: &[String]) -> Vec<String> {
    let authenticated =
        hubguard_policy::Requester::authenticated(requester.to_string(), groups.to_vec());
    let mut args = vec![format!("--as={requester}")];
    args.extend(
        authenticated
            .groups
            .iter()
            .map(|g| format!("--as-group={g}")),
    );
    if !authenticated
        .groups
        .iter()
        .any(|g| g == "system:authenticated")
    {
        args.push("--as-group=system:authenticated".into());
    }
    args
}

/// The object as created, without what differs between any two creates.
fn created(
    plane: &ControlPlane,
    object: &Value,
    namespace: &str,
    as_args: &[String],
) -> Result<Value, String> {
    let mut object = object.clone();
    object["metadata"]["namespace"] = Value::String(namespace.into());
    let mut args: Vec<&str> = vec!["create", "--dry-run=server", "-o", "json", "-f", "-"];
    args.extend(as_args.iter().map(String::as_str));
    let out = plane.kubectl_as(&plane.kubeconfig, &args, Some(&object.to_string()));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).replace(namespace, "NS"));
    }
    let mut value: Value = serde_json::from_slice(&out.stdout).unwrap();
    // A Job's selector and template labels carry its uid.
    if let Some(uid) = value["metadata"]["uid"].as_str().map(str::to_string) {
        rename_strings(&mut value, &|s| (s == uid).then(|| "<uid>".to_string()));
    }
    let meta = value["metadata"].as_object_mut().unwrap();
    for key in [
        "namespace",
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "managedFields",
        "generation",
    ] {
        meta.remove(key);
    }
    // A name the API server generates differs on every create.
    if meta.contains_key("generateName") {
        meta.remove("name");
    }
    // The API server names each pod's projected token volume `kube-api-access-` and five
    // random characters: the same volume under two names is not a difference between the paths.
    rename_strings(&mut value, &|s| {
        s.starts_with("kube-api-access-")
            .then(|| "kube-api-access-*".to_string())
    });
    Ok(value)
}

/// Rewrites every string in `value` that `rename` gives a new one for.
fn rename_strings(value: &mut Value, rename: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::String(s) => {
            if let Some(new) = rename(s) {
                *s = new;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_strings(v, rename)),
        Value::Object(fields) => fields.values_mut().for_each(|v| rename_strings(v, rename)),
        _ => {}
    }
}

const MUTATED_RULES: &str = r#"
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods, replicationcontrollers], scope: Namespaced}
      - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments, statefulsets, daemonsets], scope: Namespaced}
      - {apiGroups: [batch], apiVersions: [v1], operations: [CREATE], resources: [jobs, cronjobs], scope: Namespaced}
      - {apiGroups: [kubernetes.dask.org], apiVersions: ["*"], operations: [CREATE], resources: [daskclusters, daskworkergroups, daskjobs], scope: Namespaced}"#;

/// Sets up both paths for `policy`: returns the webhook and the two namespaces.
/// `accounts`: the service accounts the corpus pods name (the API server refuses a pod whose
/// account does not exist before any mutation is compared).
fn both_paths(
    plane: &ControlPlane,
    policy: &str,
    index: usize,
    accounts: &[String],
) -> (Webhook, String, String) {
    let name = format!("hubguard-{index}");
    let (via_policy, via_webhook) = (format!("p{index}-policy"), format!("p{index}-webhook"));
    for ns in [&via_policy, &via_webhook] {
        plane.kubectl(&["create", "namespace", ns]);
        for account in accounts {
            plane.kubectl(&["create", "serviceaccount", account, "-n", ns]);
        }
    }
    let kubeconfig = plane.kubeconfig.to_str().unwrap().to_string();
    let webhook = Webhook::start_on(
        policy,
        crate::support::free_port(),
        true,
        &[
            "--kubeconfig",
            &kubeconfig,
            "--manage-mutating-policy",
            &name,
        ],
    );
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(webhook.ca.cert_pem.as_bytes());
    let configuration = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {via_policy}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: {name}}}
webhooks:
  - name: mutate.hubguard.dev
    clientConfig: {{url: "https://{addr}/mutate", caBundle: {ca}}}
    admissionReviewVersions: [v1]
    sideEffects: None
    timeoutSeconds: 10
    failurePolicy: Fail
    reinvocationPolicy: IfNeeded
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {via_webhook}}}
    rules:{MUTATED_RULES}
"#,
        addr = webhook.addr
    );
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(&configuration));
    // Both paths are in force once an unlabelled pod of nobody's comes back recorded.
    let probe: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "a", "image": "probe"}]}
    });
    for ns in [&via_policy, &via_webhook] {
        wait_until(
            &format!("hubguard's mutation in {ns}"),
            Duration::from_secs(60),
            || {
                created(plane, &probe, ns, &impersonation("nobody", &[]))
                    .is_ok_and(|p| p["metadata"]["labels"]["hubguard.dev/class"].is_string())
            },
        );
    }
    (webhook, via_policy, via_webhook)
}

#[test]
fn the_generated_mutating_policy_and_mutate_give_the_same_objects() {
    let plane = ControlPlane::start();
    install_crds(&plane);
    plane.kubectl(&[
        "create",
        "clusterrolebinding",
        "everyone-admin",
        "--clusterrole=cluster-admin",
        "--group=system:authenticated",
    ]);
    let files = corpus_files();
    let mut policies: Vec<String> = files.iter().map(|f| header(f).policy).collect();
    policies.sort();
    policies.dedup();
    let mut accounts = vec!["default".to_string()];
    for file in &files {
        for object in yaml_documents(&std::fs::read_to_string(file).unwrap()) {
            if let Some(account) = object
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
            {
                accounts.push(account.to_string());
            }
        }
    }
    accounts.sort();
    accounts.dedup();
    let (mut compared, mut mutated, mut refused) = (0, 0, 0);
    for (index, policy) in policies.iter().enumerate() {
        let policy_file = if Path::new(policy).extension().is_some() {
            policy.clone()
        } else {
            format!("policies/{policy}.yaml")
        };
        let (webhook, via_policy, via_webhook) = both_paths(&plane, &policy_file, index, &accounts);
        for file in files.iter().filter(|f| &header(f).policy == policy) {
            let h = header(file);
            let as_args = impersonation(h.requester.as_deref().unwrap_or("nobody"), &h.groups);
            let text = std::fs::read_to_string(file).unwrap();
            for object in yaml_documents(&text)
                .into_iter()
                .filter(|o| o.get("kind").is_some())
            {
                let a = created(&plane, &object, &via_policy, &as_args);
                let b = created(&plane, &object, &via_webhook, &as_args);
                let context = format!(
                    "{} ({} {})",
                    file.display(),
                    object["kind"],
                    object["metadata"]["name"]
                );
                match (&a, &b) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a, b, "{context}: MutatingAdmissionPolicy (left) and /mutate (right) differ");
                        let labels = &a["metadata"]["labels"];
                        if labels != &object["metadata"]["labels"] {
                            mutated += 1;
                        }
                    }
                    (Err(a), Err(b)) => {
                        assert_eq!(a, b, "{context}: both refused, differently");
                        // The edge cases are there to be mutated; a refusal compares nothing.
                        assert!(
                            !file.starts_with(root().join("tests/fixtures/mutation")),
                            "{context}: an edge case was refused by both paths: {a}"
                        );
                        eprintln!("refused by both: {context}: {}", a.trim());
                        refused += 1;
                    }
                    _ => panic!("{context}: one path refused it:\n policy: {a:?}\n webhook: {b:?}\nwebhook log:\n{}", webhook.log()),
                }
                compared += 1;
            }
        }
        assert!(
            webhook.metrics().sum(
                "hubguard_mutating_policy_syncs_total",
                &[("result", "applied")]
            ) >= 1.0
        );
    }
    eprintln!(
        "{compared} corpus objects created through both paths, all alike: {mutated} mutated, {refused} refused by both"
    );
    assert!(compared >= 70, "only {compared} objects compared");
    assert!(mutated >= 50, "only {mutated} objects were mutated at all");
}
