//! The node agent in a cluster: the real kube-apiserver (tests/controlplane) with hubguard's
//! webhook registered by the chart, pods bound to this node, and cgroup directories laid out as
//! kubelet lays them out with the systemd driver (the cgroupfs driver runs for real in
//! real_node.rs). The agent runs under the
//! chart's own RBAC and classes pods by the identity admission recorded on them; probes run
//! from the pods' container cgroups inside an isolated namespace with only `lo`.

use std::path::PathBuf;

use crate::support::controlplane::ControlPlane;
use crate::support::node::{
    assert_probes, require_root, uninstall, Agent, Netns, Pins, Servers, TestCgroup,
};
use crate::support::{free_port, root, TempDir, Webhook};

const NODE: &str = "node-a";

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: tess-public}
---
apiVersion: v1
kind: Namespace
metadata: {name: hubguard}
---
# No controller manager here makes the default service accounts.
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: tess-public}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: kube-system}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: hub, namespace: tess-public}
spec:
  clusterIP: 10.96.5.5
  ports: [{name: api, port: 8081}]
---
# A tenant whose account may create pods, and nothing else.
apiVersion: v1
kind: ServiceAccount
metadata: {name: user-dora, namespace: tess-public}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: notebook, namespace: tess-public}
rules: [{apiGroups: [""], resources: [pods], verbs: [create, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: notebook, namespace: tess-public}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: notebook}
subjects: [{kind: ServiceAccount, name: user-dora, namespace: tess-public}]
"#;

/// A pod that passes the tess-public user class, with no labels at all: its class and tenant
/// come from whoever creates it.
const TENANT_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: dora-notebook, namespace: tess-public}\nspec:\n  automountServiceAccountToken: false\n  containers: [{name: main, image: quay.io/jupyterhub/k8s-singleuser-sample:4.4.0, resources: {limits: {cpu: '1', memory: 1Gi}}}]\n";

/// Binds a pod to a node as the scheduler would (the binding subresource): tenants may not
/// set `nodeName` themselves.
fn bind(plane: &ControlPlane, namespace: &str, name: &str, node: &str) {
    let binding = format!(
        r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{name}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{node}"}}}}"#
    );
    let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/binding");
    plane.kubectl_stdin(&["create", "--raw", &path, "-f", "-"], Some(&binding));
}

fn pod(namespace: &str, name: &str, node: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: main, image: busybox}}]\n"
    )
}

const ADDRESSES: &[&str] = &[
    "169.254.169.254/32",
    "198.51.100.10/32",
    "10.96.0.10/32",
    "10.96.5.5/32",
    "10.20.0.10/32",
    "10.20.1.1/32", // alice's Dask scheduler
    "10.20.2.2/32", // bob's Dask scheduler
];

/// The operator-made Dask schedulers of two tenants (on another node: only their addresses
/// matter here), which listen without authentication.
const SCHEDULERS: &[(&str, &str, &str)] = &[
    ("alice-scheduler", "alice", "10.20.1.1"),
    ("bob-scheduler", "bob", "10.20.2.2"),
];
const SCHEDULER_PROBES: [&str; 2] = ["tcp:10.20.1.1:8786", "tcp:10.20.2.2:8786"];

const ENDPOINTS: &[&str] = &[
    "tcp:169.254.169.254:80",
    "tcp:198.51.100.10:443",
    "udp:10.96.0.10:53",
    "tcp:10.96.5.5:8081",
    "tcp:10.20.0.10:8080",
    SCHEDULER_PROBES[0],
    SCHEDULER_PROBES[1],
];

/// tess-public with the Dask ports open to the pods of the caller's own tenant, as a platform
/// that offers dask-kubernetes would have them (the TESS hubs do not).
fn policy_with_dask(dir: &TempDir) -> PathBuf {
    let shipped = std::fs::read_to_string(root().join("policies/tess-public.yaml")).unwrap();
    let policy = shipped.replace(
        "        - name: hub-api\n",
        "        - name: dask-clusters\n          to: {namespace: tess-public, sameTenant: true}\n          ports: [{port: 8786, endPort: 8788}]\n        - name: hub-api\n",
    );
    assert_ne!(
        policy, shipped,
        "the tess-public preset's hub-api rule moved"
    );
    let path = dir.path("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    path
}

/// What each class may reach under the tess-public preset (probe order as ENDPOINTS).
const USER: [&str; 5] = ["EPERM", "ok", "ok", "ok", "EPERM"];
const PLATFORM: [&str; 5] = ["EPERM", "ok", "ok", "ok", "ok"];
/// Ungoverned namespaces: anything but the credential endpoints.
const EXEMPT: [&str; 5] = ["EPERM", "ok", "ok", "ok", "ok"];
const UNMAPPED: [&str; 5] = ["EPERM", "EPERM", "ok", "EPERM", "EPERM"];
const NO_AGENT: [&str; 5] = ["ok", "ok", "ok", "ok", "ok"];

fn expect(outcomes: [&'static str; 5]) -> Vec<(&'static str, &'static str)> {
    ENDPOINTS.iter().copied().zip(outcomes).collect()
}

/// The Dask schedulers as `caller` reaches them: its own tenant's only.
fn schedulers(own: &'static str, other: &'static str) -> Vec<(&'static str, &'static str)> {
    SCHEDULER_PROBES.iter().copied().zip([own, other]).collect()
}

#[derive(Clone, Copy)]
enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The pod's container cgroup as kubelet (and the runtime) would create it with the systemd
/// driver.
fn container_cgroup(tree: &TestCgroup, qos: Qos, uid: &str) -> PathBuf {
    let uid = uid.replace('-', "_");
    let pod = match qos {
        Qos::Guaranteed => format!("kubepods-pod{uid}.slice"),
        Qos::Burstable => format!("kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice"),
        Qos::BestEffort => {
            format!("kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice")
        }
    };
    // containerd names its scopes cri-containerd-<id>, CRI-O crio-<id>: both sit under the
    // pod's slice, which is what the agent maps.
    let runtime = match qos {
        Qos::BestEffort => "crio",
        _ => "cri-containerd",
    };
    tree.child(&format!(
        "kubepods.slice/{pod}/{runtime}-0123456789abcdef.scope"
    ))
}

fn uid(plane: &ControlPlane, namespace: &str, name: &str) -> String {
    plane
        .kubectl(&[
            "get",
            "pod",
            "-n",
            namespace,
            name,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .trim()
        .to_string()
}

#[test]
fn cluster_pods_map_to_their_systemd_cgroups() {
    require_root();
    let plane = ControlPlane::start();
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(OBJECTS));
    // The node registered with the not-ready taint (and another taint that must stay).
    plane.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\nspec:\n  taints:\n    - {{key: hubguard.dev/agent-not-ready, value: 'true', effect: NoSchedule}}\n    - {{key: hub.jupyter.org/dedicated, value: user, effect: NoSchedule}}\n"
        )),
    );
    // Before hubguard: pods as admission would have recorded them (alice, the hub), and one
    // with no record at all (a pod from before hubguard, whatever its labels claim).
    let pods = [
        pod(
            "tess-public",
            "jupyter-alice",
            NODE,
            "{component: singleuser-server, hub.jupyter.org/username: alice, hubguard.dev/class: user, hubguard.dev/tenant: alice}",
        ),
        pod(
            "tess-public",
            "hub",
            NODE,
            "{component: hub, hubguard.dev/class: platform}",
        ),
        pod("tess-public", "legacy", NODE, "{component: hub}"),
        pod("kube-system", "coredns", NODE, "{k8s-app: kube-dns}"),
        pod(
            "tess-public",
            "jupyter-carol",
            "node-b",
            "{component: singleuser-server, hubguard.dev/class: user}",
        ),
    ];
    plane.kubectl_stdin(&["apply", "-f", "-"], Some(&pods.join("---\n")));
    for (name, tenant, ip) in SCHEDULERS {
        plane.kubectl_stdin(
            &["apply", "-f", "-"],
            Some(&pod(
                "tess-public",
                name,
                "node-b",
                &format!("{{dask.org/component: scheduler, hubguard.dev/class: dask, hubguard.dev/tenant: {tenant}}}"),
            )),
        );
        plane.kubectl(&[
            "patch",
            "pod",
            "-n",
            "tess-public",
            name,
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            &format!(r#"{{"status":{{"podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#),
        ]);
    }

    // hubguard installed by the chart: its RBAC (the agent acts as the chart's node-agent
    // account) and its webhook configurations, pointing at a webhook running here.
    let port = free_port();
    let chart = root().join("charts/hubguard");
    let install = plane.helm(&[
        "install",
        "hubguard",
        chart.to_str().unwrap(),
        "-n",
        "hubguard",
        "--set",
        "policy.preset=tess-public",
        "--set",
        &format!("webhook.url=https://127.0.0.1:{port}"),
    ]);
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let webhook_sa = plane.kubeconfig_for("hubguard", "hubguard-webhook");
    let webhook = Webhook::start_on(
        "policies/tess-public.yaml",
        port,
        false,
        &[
            "--kubeconfig",
            webhook_sa.to_str().unwrap(),
            "--manage-tls-secret",
            "hubguard/hubguard-webhook-tls",
            "--manage-tls-name",
            "127.0.0.1",
            "--manage-webhook-configuration",
            "hubguard",
        ],
    );
    // A tenant creates a pod with no labels: /mutate records the identity its requester
    // decides, and the agent reads exactly that.
    let dora = plane.kubeconfig_for("tess-public", "user-dora");
    let created = plane.kubectl_as(&dora, &["create", "-f", "-"], Some(TENANT_POD));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let record = plane.kubectl(&[
        "get",
        "pod",
        "-n",
        "tess-public",
        "dora-notebook",
        "-o",
        "jsonpath={.metadata.labels.hubguard\\.dev/class}/{.metadata.labels.hubguard\\.dev/tenant}",
    ]);
    assert_eq!(record, "user/dora", "the identity admission recorded");
    bind(&plane, "tess-public", "dora-notebook", NODE);
    let kubeconfig = plane.kubeconfig_for("hubguard", "hubguard-node-agent");

    let ns = Netns::isolated("cluster", ADDRESSES);
    let _servers = Servers::start(&ns, ENDPOINTS);
    let dir = TempDir::new("node-agent-cluster");
    let policy = policy_with_dask(&dir);

    // The cgroupfs layout runs for real in real_node.rs (kubelet, containerd, runc); the
    // systemd driver's layout, which that node does not use, is laid out here.
    {
        let context = |what: &str| format!("systemd driver: {what}");
        let tree = TestCgroup::new("cluster-systemd");
        let alice = container_cgroup(
            &tree,
            Qos::Burstable,
            &uid(&plane, "tess-public", "jupyter-alice"),
        );
        let hub = container_cgroup(&tree, Qos::Guaranteed, &uid(&plane, "tess-public", "hub"));
        let legacy = container_cgroup(
            &tree,
            Qos::BestEffort,
            &uid(&plane, "tess-public", "legacy"),
        );
        let dora = container_cgroup(
            &tree,
            Qos::Guaranteed,
            &uid(&plane, "tess-public", "dora-notebook"),
        );
        let coredns = container_cgroup(
            &tree,
            Qos::BestEffort,
            &uid(&plane, "kube-system", "coredns"),
        );
        let stranger = container_cgroup(
            &tree,
            Qos::BestEffort,
            "00000000-0000-0000-0000-00000000dead",
        );
        let pin_guard = Pins::new("cluster-systemd");
        let pins = pin_guard.0.clone();

        assert_probes(
            &ns,
            &alice,
            &expect(NO_AGENT),
            &context("baseline, no agent"),
        );
        let agent = Agent::start(&[
            "--policy",
            policy.to_str().unwrap(),
            "--node-name",
            NODE,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--cgroup-root",
            tree.0.to_str().unwrap(),
            "--bpffs",
            pins.to_str().unwrap(),
        ]);
        // Enforcing: the agent takes its not-ready taint off the node, and only that one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let taints =
                plane.kubectl(&["get", "node", NODE, "-o", "jsonpath={.spec.taints[*].key}"]);
            let keys: Vec<&str> = taints.split_whitespace().collect();
            if !keys.contains(&"hubguard.dev/agent-not-ready") {
                assert!(
                    keys.contains(&"hub.jupyter.org/dedicated"),
                    "other taints stay: {taints}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the not-ready taint stayed: {taints}\n{}",
                agent.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let samples = agent.metrics();
        let pods_of =
            |class: &str| samples.sum("hubguard_egress_policy_pods", &[("pod_class", class)]);
        assert_eq!(
            (pods_of("user"), pods_of("platform"), pods_of("exempt")),
            (2.0, 1.0, 1.0),
            "{}: pods mapped per class (carol is on another node)\n{}",
            context("metrics"),
            agent.log()
        );
        assert_eq!(
            samples.sum("hubguard_node_agent_unresolved_pods", &[]),
            0.0,
            "{}",
            agent.log()
        );
        assert_eq!(
            samples.sum("hubguard_node_agent_unresolved_destinations", &[]),
            0.0,
            "{}",
            agent.log()
        );

        assert_probes(&ns, &alice, &expect(USER), &context("alice, a user pod"));
        assert_probes(
            &ns,
            &alice,
            &schedulers("ok", "EPERM"),
            &context("alice reaches her own Dask scheduler, not bob's"),
        );
        assert_probes(
            &ns,
            &dora,
            &expect(USER),
            &context("dora's unlabelled pod: the class admission gave it"),
        );
        assert_probes(
            &ns,
            &dora,
            &schedulers("EPERM", "EPERM"),
            &context("dora reaches neither alice's nor bob's scheduler"),
        );
        assert_probes(
            &ns,
            &legacy,
            &expect(UNMAPPED),
            &context("a pod with no recorded identity: strictest, whatever its labels"),
        );
        assert_eq!(
            agent
                .metrics()
                .sum("hubguard_node_agent_unrecorded_pods", &[]),
            1.0,
            "the unrecorded pod is counted"
        );
        assert_probes(
            &ns,
            &hub,
            &expect(PLATFORM),
            &context("the hub, a platform pod"),
        );
        assert_probes(
            &ns,
            &coredns,
            &expect(EXEMPT),
            &context("kube-system is not governed"),
        );
        assert_probes(
            &ns,
            &stranger,
            &expect(UNMAPPED),
            &context("a pod the API server does not know"),
        );

        // A pod the hub spawns after the agent started, through the webhook (which records
        // it as bob's user pod): strictest until mapped, then its class.
        let bob_pod = "bob-systemd".to_string();
        plane.kubectl_stdin(
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {bob_pod}, namespace: tess-public, labels: {{component: singleuser-server, hub.jupyter.org/username: bob}}}}\nspec:\n  automountServiceAccountToken: false\n  containers: [{{name: main, image: quay.io/jupyterhub/k8s-singleuser-sample:4.4.0, resources: {{limits: {{cpu: '1', memory: 1Gi}}}}}}]\n"
            )),
        );
        bind(&plane, "tess-public", &bob_pod, NODE);
        let bob = container_cgroup(
            &tree,
            Qos::BestEffort,
            &uid(&plane, "tess-public", &bob_pod),
        );
        agent.wait_metrics("bob mapped", |m| {
            m.sum("hubguard_egress_policy_pods", &[("pod_class", "user")]) == 3.0
        });
        assert_probes(
            &ns,
            &bob,
            &expect(USER),
            &context("bob, created after the agent"),
        );
        let metadata_denials = agent.wait_metrics("denials by namespace", |m| {
            m.sum(
                "hubguard_metadata_denied_total",
                &[("namespace", "tess-public"), ("pod_class", "user")],
            ) == 3.0
        });
        assert_eq!(
            metadata_denials.sum(
                "hubguard_metadata_denied_total",
                &[("namespace", "unknown"), ("pod_class", "unmapped")]
            ),
            1.0
        );
        // A pod whose recorded class changes (an administrator relabels it) gets the new class
        // at once: the programs' per-cgroup class cache is invalidated when the agent changes
        // the map.
        let relabel = |label: &str, platform_pods: f64, outcomes, what: &str| {
            plane.kubectl(&[
                "label",
                "pod",
                "-n",
                "tess-public",
                "hub",
                label,
                "--overwrite",
            ]);
            agent.wait_metrics(what, |m| {
                m.sum("hubguard_egress_policy_pods", &[("pod_class", "platform")]) == platform_pods
            });
            assert_probes(&ns, &hub, &expect(outcomes), &context(what));
        };
        relabel(
            "hubguard.dev/class-",
            0.0,
            UNMAPPED,
            "the hub pod, its record removed",
        );
        relabel(
            "hubguard.dev/class=platform",
            1.0,
            PLATFORM,
            "the hub pod, recorded again",
        );
        // No kubelet here to confirm the deletion: force it.
        plane.kubectl(&[
            "delete",
            "pod",
            "-n",
            "tess-public",
            &bob_pod,
            "--grace-period=0",
            "--force",
        ]);
        drop(agent);
        uninstall(&pins);
        assert_probes(
            &ns,
            &stranger,
            &expect(NO_AGENT),
            &context("after --uninstall"),
        );
    }
    drop(webhook);
    drop(dir);
}
