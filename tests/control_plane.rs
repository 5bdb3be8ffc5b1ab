//! hubguard behind a real kube-apiserver (with etcd, built from the upstream Go modules):
//! the chart installed with real Helm, the webhook running locally and registered by URL,
//! with self-managed TLS written into the cluster under the chart's own RBAC; then requests
//! through the real API as untrusted service accounts, read back as kubectl prints them.
//!
//! One control plane for the whole story, in order: starting one costs seconds and memory.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::controlplane::ControlPlane;
use crate::support::corpus::header;
use crate::support::{free_port, root, Webhook};

const NS: &str = "tess-private";
const RELEASE: &str = "hubguard";
const WEBHOOK_DENIED: &str = "admission webhook \"validate.hubguard.dev\" denied the request";

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Stand-in CRDs (tests/fixtures/e2e/crds.yaml) for the Dask and monitoring kinds.
pub(crate) fn install_crds(plane: &ControlPlane) {
    let file = root().join("tests/fixtures/e2e/crds.yaml");
    plane.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    for name in [
        "daskclusters.kubernetes.dask.org",
        "prometheusrules.monitoring.coreos.com",
    ] {
        plane.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{name}"),
            "--timeout=60s",
        ]);
    }
}

/// The tenant namespace, as the local run (scripts/run) sets it up too.
fn tenant_namespace(plane: &ControlPlane) {
    let file = root().join("tests/fixtures/e2e/tenants.yaml");
    plane.kubectl(&["apply", "-f", file.to_str().unwrap()]);
}

/// Waits until the MutatingAdmissionPolicy the webhook installs is in force in the API
/// server: a pod created (dry run) in `namespace` comes back with its class recorded.
pub(crate) fn wait_for_mutation(plane: &ControlPlane, namespace: &str) {
    let probe = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: probe, namespace: {namespace}}}\nspec: {{containers: [{{name: a, image: probe}}]}}\n"
    );
    let args = [
        "create",
        "--dry-run=server",
        "-o",
        "jsonpath={.metadata.labels}",
        "-f",
        "-",
    ];
    wait_until(
        &format!("the generated MutatingAdmissionPolicy in force in {namespace}"),
        Duration::from_secs(60),
        || {
            let out = plane.kubectl_as(&plane.kubeconfig, &args, Some(&probe));
            String::from_utf8_lossy(&out.stdout).contains("hubguard.dev/class")
        },
    );
}

#[test]
fn hubguard_behind_a_real_api_server() {
    let plane = ControlPlane::start();
    install_crds(&plane);
    // No controller-manager here to create each namespace's default service account.
    for ns in ["default", "kube-system"] {
        plane.kubectl(&["create", "serviceaccount", "default", "-n", ns]);
    }

    // --- The chart, installed by Helm; the webhook registered by URL at a local hubguard.
    let port = free_port();
    let chart = root().join("charts/hubguard");
    let out = plane.helm(&[
        "install",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        RELEASE,
        "--create-namespace",
        "--set",
        &format!("webhook.url=https://127.0.0.1:{port}"),
        // The generated MutatingAdmissionPolicy, with the chart's binding and RBAC (the
        // default, /mutate, is exercised by the node agent's and the real node's tests).
        "--set",
        "webhook.mutation=auto",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.grafanaDashboard.enabled=true",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "helm install: {stderr}");
    assert!(
        stdout.contains("hubguard 0.1.0 is installed"),
        "NOTES.txt shown: {stdout}"
    );
    // Every object the chart renders was accepted by the API server's validation.
    let manifest = text(&plane.helm(&["get", "manifest", RELEASE, "-n", RELEASE])).0;
    let rendered = manifest.matches("\nkind: ").count();
    assert!(rendered >= 14, "{rendered} objects");
    for (kind, name) in [
        ("validatingwebhookconfiguration", RELEASE),
        // The 1.37 API server has MutatingAdmissionPolicy: the chart binds the generated one
        // instead of registering /mutate.
        ("mutatingadmissionpolicybinding", RELEASE),
        ("daemonset", "hubguard-node-agent"),
        ("configmap", "hubguard-policy"),
        ("prometheusrule", "hubguard"),
        ("clusterrole", "hubguard-webhook"),
    ] {
        plane.kubectl(&["get", kind, name, "-n", RELEASE]);
    }

    tenant_namespace(&plane);

    // The webhook acts as the chart's own service account: the chart's RBAC must be enough
    // to create its Secret and set the caBundle.
    let webhook_sa = plane.kubeconfig_for(RELEASE, "hubguard-webhook");
    let webhook_sa = webhook_sa.to_str().unwrap();
    let mut webhook = Webhook::start_on(
        "policies/tess-private.yaml",
        port,
        false,
        &[
            "--kubeconfig",
            webhook_sa,
            "--manage-tls-secret",
            "hubguard/hubguard-webhook-tls",
            "--manage-tls-name",
            "127.0.0.1",
            "--manage-webhook-configuration",
            RELEASE,
            "--manage-mutating-policy",
            RELEASE,
        ],
    );
    wait_for_mutation(&plane, NS);
    let bundle = plane.kubectl(&[
        "get",
        "validatingwebhookconfiguration",
        RELEASE,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    assert!(bundle.len() > 100, "caBundle set by hubguard: {bundle:?}");
    plane.kubectl(&["get", "secret", "hubguard-webhook-tls", "-n", RELEASE]);

    let alice = plane.kubeconfig_for(NS, "user-alice");
    let hub = plane.kubeconfig_for(NS, "hub");
    let create = |kubeconfig: &Path, file: &Path| -> Output {
        plane.kubectl_as(
            kubeconfig,
            &["create", "-n", NS, "-f", file.to_str().unwrap()],
            None,
        )
    };

    // --- Compliant pods are created, as the untrusted tenant service account.
    for file in [
        "tests/corpus/pass/tenant-own-pod.yaml",
        "tests/fixtures/e2e/alice-dask-worker.yaml",
        "tests/corpus/pass/tenant-own-service.yaml",
    ] {
        let out = create(&alice, &root().join(file));
        assert!(out.status.success(), "{file}: {}", text(&out).1);
    }
    // The hub's z2jh-default pod is hardened by the generated MutatingAdmissionPolicy, in the
    // API server itself.
    let out = create(
        &hub,
        &root().join("tests/corpus/pass/z2jh-user-pod-default.yaml"),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let seccomp = plane.kubectl(&[
        "get",
        "pod",
        "jupyter-alice--gpu",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.securityContext.seccompProfile.type}",
    ]);
    assert_eq!(
        seccomp, "RuntimeDefault",
        "the mutation was applied by the API server"
    );

    // --- What the corpus attacks point at: a priority class of the platform's, and Bob's
    // DaskCluster (created by an administrator for Bob, so recorded as his).
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: platform-critical}\nvalue: 1000000\n---\napiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: unconfined-runc}\nhandler: runc\n"),
    );
    plane.kubectl_stdin(
        &["create", "-n", NS, "-f", "-"],
        Some("apiVersion: kubernetes.dask.org/v1\nkind: DaskCluster\nmetadata:\n  name: bob-analysis\n  labels: {hub.jupyter.org/username: bob}\nspec:\n  worker:\n    spec:\n      automountServiceAccountToken: false\n      containers: [{name: worker, image: ghcr.io/dask/dask:2026.3.0, resources: {limits: {cpu: '1', memory: 2Gi}}}]\n"),
    );
    let recorded = plane.kubectl(&[
        "get",
        "daskcluster",
        "bob-analysis",
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.worker.metadata.labels.hubguard\\.dev/tenant}",
    ]);
    assert_eq!(
        recorded, "bob",
        "the mutation recorded Bob on his workers' template"
    );

    // --- Every attack the corpus makes as Alice is refused with hubguard's message.
    let mut refused = Vec::new();
    let mut attacks: Vec<_> = std::fs::read_dir(root().join("tests/corpus/attack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    attacks.sort();
    for file in attacks {
        let h = header(&file);
        if h.policy != "tess-private"
            || h.requester.as_deref() != Some("system:serviceaccount:tess-private:user-alice")
            || h.action.is_some()
        {
            continue;
        }
        let out = create(&alice, &file);
        let (_, stderr) = text(&out);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!out.status.success(), "{name} was created");
        assert!(
            stderr.contains(WEBHOOK_DENIED)
                && stderr.contains("hubguard policy tess-private denied"),
            "{name}: not refused by hubguard: {stderr}"
        );
        for rule in &h.rules {
            assert!(
                stderr.contains(&format!("[{rule}]")),
                "{name}: no [{rule}] in {stderr}"
            );
        }
        refused.push(name);
    }
    assert!(refused.len() >= 20, "{refused:?}");
    for must in [
        "privileged-deployment.yaml",
        "daskcluster-privileged-worker.yaml",
        "forged-exemption-label.yaml",
        "service-account-hub.yaml",
        "secret-hub-env.yaml",
        "ephemeral-clone-other-home.yaml",
        "daskworkergroup-other-tenant-cluster.yaml",
        "recorded-identity-forged.yaml",
        "host-probe-metadata.yaml",
        "runtime-class.yaml",
        "service-external-ips.yaml",
        "service-load-balancer.yaml",
        "service-selects-hub-labels.yaml",
        "service-takes-hub-name.yaml",
    ] {
        assert!(refused.iter().any(|r| r == must), "{must} not exercised");
    }

    // --- A tenant's own pod carries the identity the mutation recorded for its requester.
    let record = plane.kubectl(&[
        "get",
        "pod",
        "alice-helper",
        "-n",
        NS,
        "-o",
        "jsonpath={.metadata.labels.hubguard\\.dev/class}/{.metadata.labels.hubguard\\.dev/tenant}",
    ]);
    assert_eq!(record, "user/alice");

    // --- An in-place resize to 64 CPUs is judged like a create.
    let resize = plane.kubectl_as(
        &alice,
        &[
            "patch", "pod", "alice-helper", "-n", NS, "--subresource", "resize", "-p",
            r#"{"spec":{"containers":[{"name":"main","resources":{"limits":{"cpu":"64"},"requests":{"cpu":"64"}}}]}}"#,
        ],
        None,
    );
    let (_, stderr) = text(&resize);
    assert!(!resize.status.success(), "resized to 64 CPUs");
    assert!(
        stderr.contains(WEBHOOK_DENIED) && stderr.contains("[resources]"),
        "{stderr}"
    );

    // --- hubguard's own accounts are out of a tenant's reach: their namespace is not the
    // tenants', and the tenant's RBAC gives no token and no webhook configuration.
    let token = plane.kubectl_as(
        &alice,
        &["create", "token", "hubguard-webhook", "-n", RELEASE],
        None,
    );
    assert!(!token.status.success(), "a tenant minted hubguard's token");
    assert!(text(&token).1.contains("forbidden"), "{}", text(&token).1);
    let patch = plane.kubectl_as(
        &alice,
        &[
            "patch",
            "validatingwebhookconfiguration",
            RELEASE,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/webhooks/0/rules"}]"#,
        ],
        None,
    );
    assert!(
        !patch.status.success(),
        "a tenant patched the webhook configuration"
    );
    assert!(text(&patch).1.contains("forbidden"), "{}", text(&patch).1);
    let as_hubguard = plane.kubectl_as(
        &alice,
        &["create", "-n", NS, "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: as-hubguard, labels: {hub.jupyter.org/username: alice}}\nspec:\n  serviceAccountName: hubguard-webhook\n  containers: [{name: c, image: ghcr.io/tess-platform/tess-notebook:2026.11.0}]\n"),
    );
    assert!(
        !as_hubguard.status.success(),
        "a pod ran as hubguard's account"
    );

    // --- Exec into another tenant's pod is refused; into one's own reaches the node.
    let out = create(&hub, &root().join("tests/fixtures/e2e/bob-notebook.yaml"));
    assert!(out.status.success(), "{}", text(&out).1);
    let exec =
        |pod: &str| text(&plane.kubectl_as(&alice, &["exec", "-n", NS, pod, "--", "true"], None)).1;
    let into_bob = exec("jupyter-bob");
    assert!(
        into_bob.contains(WEBHOOK_DENIED)
            && into_bob
                .contains("it belongs to tenant bob (hub.jupyter.org/username), not to alice"),
        "{into_bob}"
    );
    let into_own = exec("alice-helper");
    assert!(
        !into_own.contains("hubguard"),
        "admission allowed it; there is no kubelet: {into_own}"
    );

    // --- Deleting: Bob's pod is not hers to delete; her own is.
    let delete = |kind: &str, name: &str| {
        let out = plane.kubectl_as(
            &alice,
            &["delete", kind, name, "-n", NS, "--wait=false"],
            None,
        );
        (out.status.success(), text(&out).1)
    };
    let (deleted, stderr) = delete("pod", "jupyter-bob");
    assert!(!deleted, "Alice deleted Bob's notebook");
    assert!(
        stderr.contains("admission webhook \"validate-delete.hubguard.dev\" denied the request")
            && stderr.contains("[tenantActions]")
            && stderr.contains("it belongs to tenant bob"),
        "{stderr}"
    );
    let (deleted, stderr) = delete("pod", "alice-helper");
    assert!(deleted, "Alice could not delete her own pod: {stderr}");

    // --- Warnings arrive as kubectl prints them: the policy file switched to warn mode,
    // picked up without a restart.
    std::fs::copy(
        root().join("tests/fixtures/warn-policy.yaml"),
        webhook.dir.path("policy.yaml"),
    )
    .unwrap();
    wait_until("the warn policy in force", Duration::from_secs(10), || {
        webhook
            .metrics()
            .sum("hubguard_policy_info", &[("policy", "warn-and-audit")])
            == 1.0
    });
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: tool, namespace: default}\nspec:\n  containers: [{name: c, image: busybox}]\n";
    let out = plane.kubectl_as(&plane.kubeconfig, &["create", "-f", "-"], Some(pod));
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Warning: hubguard [runAsUser]"), "{stderr}");
    std::fs::copy(
        root().join("policies/tess-private.yaml"),
        webhook.dir.path("policy.yaml"),
    )
    .unwrap();
    wait_until(
        "tess-private back in force",
        Duration::from_secs(10),
        || {
            webhook
                .metrics()
                .sum("hubguard_policy_info", &[("policy", "tess-private")])
                == 1.0
        },
    );

    let metrics = webhook.metrics();
    assert!(
        metrics.sum(
            "hubguard_admission_requests_total",
            &[("decision", "denied")]
        ) >= 20.0
    );
    assert!(metrics.sum("hubguard_tls_certificate_expiry_timestamp_seconds", &[]) > 0.0);

    // --- With the webhook gone, governed namespaces fail closed; kube-system still works.
    let _ = webhook.child.kill();
    let _ = webhook.child.wait();
    let out = create(
        &alice,
        &root().join("tests/corpus/pass/tenant-own-pod.yaml"),
    );
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "created with the webhook down");
    assert!(stderr.contains("failed calling webhook"), "{stderr}");
    let system_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: still-works, namespace: kube-system}\nspec:\n  containers: [{name: c, image: registry.k8s.io/pause:3.10}]\n";
    let out = plane.kubectl_as(&plane.kubeconfig, &["create", "-f", "-"], Some(system_pod));
    assert!(
        out.status.success(),
        "kube-system blocked: {}",
        text(&out).1
    );
    drop(webhook);
}
