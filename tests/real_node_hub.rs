//! tess-private served to its users on the test node: the real JupyterHub (z2jh 4.4.0's hub
//! pins), KubeSpawner and configurable-http-proxy run in the Deployments z2jh renders, under
//! hubguard's webhook and node agent. Users log in, spawn their server and run code in a
//! kernel, all through the proxy's HTTP port as a browser would; then, from that same kernel,
//! try what a user would try against the platform and another user.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::real_node::{tenants_fixture, Node, ONE_NODE};
use crate::support::cluster::PUBLIC_IP;
use crate::support::hub::{self, serve, PASSWORD, TESS_PRIVATE, TESS_PUBLIC};
use crate::support::upstream::{node_packages, python};
use crate::support::{binary, root, TempDir};

/// `tests/upstream/hub_user.py` on `request`, run in the node's network namespace (where the
/// proxy's Service is reached as a browser beside the cluster would reach it). A flow that
/// fails panics with the hub's logs and the agent's denials in `namespace`.
fn as_user(node: &Node, namespace: &str, request: &Value) -> Value {
    let python = python();
    let script = root().join("tests/upstream/hub_user.py");
    let mut child = node
        .cluster
        .in_node(&[python.to_str().unwrap(), script.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting hub_user.py");
    serde_json::to_writer(child.stdin.take().unwrap(), request).unwrap();
    let out = child.wait_with_output().unwrap();
    let failed = |why: String| -> ! {
        panic!(
            "the flow of {request}: {why}\n{}\nagent denials: {:#?}",
            logs(node, namespace),
            crate::real_node_dask::agent_denials(node, namespace)
        )
    };
    if !out.status.success() {
        failed(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| failed(format!("{e}: {}", String::from_utf8_lossy(&out.stdout))))
}

/// What cell `cell` of a flow printed; it must have raised nothing.
fn cell_output(node: &Node, namespace: &str, answer: &Value, cell: usize) -> String {
    let out = &answer["outputs"][cell];
    assert_eq!(
        out["error"],
        Value::Null,
        "{answer}\n{}",
        logs(node, namespace)
    );
    out["stdout"].as_str().unwrap().trim().to_string()
}

/// The users' flow since `drops_before` was neither dropped by NetworkPolicy nor refused by
/// the agent (the route probes of starting Dask processes included: a UDP connect() sends
/// nothing; the packet layer judges what is sent).
fn assert_happy_path(node: &Node, namespace: &str, drops_before: u64) {
    assert_eq!(
        node.cluster.network_policy_drops() - drops_before,
        0,
        "NetworkPolicy dropped packets of the users' flow"
    );
    let denials = crate::real_node_dask::agent_denials(node, namespace);
    assert!(
        denials.is_empty(),
        "the agent refused the users' flow: {denials:#?}"
    );
}

const NAMESPACE: &str = TESS_PRIVATE.namespace;

/// The last lines of the platform's logs in `namespace`, and its pods.
fn logs(node: &Node, namespace: &str) -> String {
    hub::logs(
        &node.cluster,
        namespace,
        "app.kubernetes.io/name in (jupyterhub, dask-gateway)",
    )
}

/// The names of the pods of `namespace` that `selector` picks.
fn pods_labelled(node: &Node, namespace: &str, selector: &str) -> String {
    node.kubectl(&[
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
}

/// A user's server pod, as KubeSpawner labels it.
fn user_pod(node: &Node, namespace: &str, user: &str) -> String {
    pods_labelled(
        node,
        namespace,
        &format!("hub.jupyter.org/username={user},component=singleuser-server"),
    )
}

/// What a user's code tries from the kernel: each target's connect() outcome, by errno name.
fn probe_cell(targets: &[(&str, &str, u16)]) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|(name, host, port)| format!("{name:?}: ({host:?}, {port})"))
        .collect();
    format!(
        r#"import errno, json, socket
def attempt(host, port):
    s = socket.socket(socket.AF_INET)
    s.settimeout(3)
    try:
        s.connect((host, port))
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
print(json.dumps({{name: attempt(*target) for name, target in {{{}}}.items()}}))
"#,
        targets.join(", ")
    )
}

/// Alice's Dask through the gateway, as the dask-gateway docs show it: a cluster of two
/// workers, a matrix multiply and a P2P shuffle, the dashboard link opened through the hub's
/// proxy. Prints what happened as JSON.
const GATEWAY_COMPUTATION: &str = r#"import json, urllib.request
import dask, dask.array as da, dask.dataframe as dd, pandas as pd
from dask_gateway import Gateway
gateway = Gateway()
cluster = gateway.new_cluster()
cluster.scale(2)
client = cluster.get_client()
client.wait_for_workers(2, timeout=300)
x = da.random.RandomState(0).random((2000, 2000), chunks=500)
matmul = float((x @ x.T).sum().compute())
df = dd.from_pandas(pd.DataFrame({"k": range(40000), "v": range(40000)}), npartitions=8)
with dask.config.set({"dataframe.shuffle.method": "p2p"}):
    shuffled = len(df.shuffle("k").compute())
link = cluster.dashboard_link
dashboard = urllib.request.urlopen("http://proxy-public" + link, timeout=30)
print(json.dumps({"cluster": cluster.name, "workers": len(client.scheduler_info()["workers"]),
                  "matmul": matmul, "shuffled_rows": shuffled, "dashboard": link,
                  "dashboard_status": dashboard.status,
                  "listed": [c.name for c in gateway.list_clusters()]}))
"#;

/// Bob's cluster, left running for Alice to try (past his kernel's end).
const BOBS_CLUSTER: &str = r#"from dask_gateway import Gateway
cluster = Gateway().new_cluster(shutdown_on_close=False)
cluster.scale(1)
cluster.get_client().wait_for_workers(1, timeout=300)
print(cluster.name)
"#;

/// The cell after the computation: the cluster shut down, and what the gateway lists once
/// it has stopped (the listing keeps a stopping cluster).
const SHUTDOWN: &str = r#"import time
client.close()
cluster.shutdown()
deadline = time.monotonic() + 120
while gateway.list_clusters() and time.monotonic() < deadline:
    time.sleep(1)
print(json.dumps([c.name for c in gateway.list_clusters()]))
"#;

#[test]
fn users_log_in_spawn_and_compute_with_dask_through_the_hubs_proxy() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let mut node = Node::up_with(false, true);
    let dir = TempDir::new("hub-volumes");
    node.apply(&tenants_fixture());
    // The secured hub's Dask NetworkPolicy, enforced by kube-router's firewall.
    node.cluster.kubectl_stdin(
        &["apply", "-n", NAMESPACE, "-f", "-"],
        Some(&crate::real_node_dask::dask_network_policy(&node)),
    );
    node.install_hubguard("install", &[]);
    let proxy = serve(
        &mut node.cluster,
        &TESS_PRIVATE,
        &binary("hubguard-netprobe"),
        &dir.0,
    );
    let hub = format!("http://{proxy}");
    let user = |name: &str, cells: &[&str], stop: bool| {
        as_user(
            &node,
            NAMESPACE,
            &json!({"hub": hub, "user": name, "password": PASSWORD, "cells": cells, "stop": stop}),
        )
    };
    let output = |answer: &Value, cell: usize| cell_output(&node, NAMESPACE, answer, cell);

    // Bob logs in, starts a Dask cluster and leaves it running.
    let drops_before = node.cluster.network_policy_drops();
    let bob = user("bob", &[BOBS_CLUSTER], false);
    let bob_cluster = output(&bob, 0);
    // The gateway names a cluster <namespace>.<id>; its objects carry the id.
    let bob_id = bob_cluster.rsplit('.').next().unwrap().to_string();
    eprintln!("bob: {bob}");

    // Alice logs in, opens JupyterLab, and computes on a cluster of her own.
    let alice = user(
        "alice",
        &["print(6 * 7)", GATEWAY_COMPUTATION, SHUTDOWN],
        false,
    );
    eprintln!("alice: {alice}");
    assert!(
        alice["lab_url"]
            .as_str()
            .unwrap()
            .ends_with("/user/alice/lab"),
        "{alice}"
    );
    assert_eq!(output(&alice, 0), "42");
    let result: Value = serde_json::from_str(&output(&alice, 1)).unwrap();
    assert_eq!(result["workers"], 2, "{result}");
    assert_eq!(result["shuffled_rows"], 40000, "{result}");
    assert!(result["matmul"].as_f64().unwrap() > 0.0, "{result}");
    assert_eq!(result["dashboard_status"], 200, "{result}");
    // The gateway lists her own cluster only, and none once she shut it down.
    assert_eq!(result["listed"], json!([result["cluster"]]), "{result}");
    assert_eq!(output(&alice, 2), "[]");
    assert_happy_path(&node, NAMESPACE, drops_before);
    eprintln!("the users' flow: no agent denial, no NetworkPolicy drop");

    // Their servers and clusters are their own pods, recorded as theirs.
    let alice_pod = user_pod(&node, NAMESPACE, "alice");
    let bob_pod = user_pod(&node, NAMESPACE, "bob");
    let bob_pods = |role: &str| {
        pods_labelled(
            &node,
            NAMESPACE,
            &format!("gateway.dask.org/cluster={bob_id},app.kubernetes.io/component=dask-{role}"),
        )
    };
    let bob_scheduler = bob_pods("scheduler");
    let bob_worker = bob_pods("worker");
    for (pod, record) in [
        (&alice_pod, "user/alice"),
        (&bob_pod, "user/bob"),
        (&bob_scheduler, "dask/bob"),
        (&bob_worker, "dask/bob"),
    ] {
        assert_eq!(
            node.pod_field(
                NAMESPACE,
                pod,
                "{.metadata.labels.hubguard\\.dev/class}/{.metadata.labels.hubguard\\.dev/tenant}",
            ),
            record,
            "{pod}"
        );
    }
    let ip = |pod: &str| node.pod_field(NAMESPACE, pod, "{.status.podIP}");

    // From Alice's kernel, what a user would try next.
    let probes = probe_cell(&[
        ("hub API", "hub", 8081),
        ("public web", PUBLIC_IP, 443),
        ("metadata", "169.254.169.254", 80),
        ("API server (Service)", "10.96.0.1", 443),
        ("API server (node)", "10.250.0.1", 6443),
        ("kubelet", "10.250.0.1", 10250),
        ("Bob's server", &ip(&bob_pod), 8888),
        ("the proxy's API", "proxy-api", 8001),
        ("Bob's scheduler", &ip(&bob_scheduler), 8786),
        ("Bob's dashboard", &ip(&bob_scheduler), 8787),
        ("Bob's worker", &ip(&bob_worker), 8789),
        ("Bob's scheduler (Service)", &format!("dask-{bob_id}"), 8786),
        (
            "the gateway's API, directly",
            "api-tess-private-dask-gateway",
            8000,
        ),
    ]);
    let bobs_through_the_gateway = format!(
        r#"from dask_gateway import Gateway
try:
    Gateway().connect({bob_cluster:?})
    print("connected")
except Exception as e:
    print(type(e).__name__, e)
"#
    );
    let alice = user("alice", &[&probes, &bobs_through_the_gateway], true);
    let outcomes: Value = serde_json::from_str(&output(&alice, 0)).unwrap();
    eprintln!("from Alice's kernel: {outcomes}");
    assert_eq!(
        outcomes,
        json!({
            "hub API": "connected",
            "public web": "connected",
            "metadata": "EPERM",
            "API server (Service)": "EPERM",
            "API server (node)": "EPERM",
            "kubelet": "EPERM",
            "Bob's server": "EPERM",
            "the proxy's API": "EPERM",
            "Bob's scheduler": "EPERM",
            "Bob's dashboard": "EPERM",
            "Bob's worker": "EPERM",
            "Bob's scheduler (Service)": "EPERM",
            "the gateway's API, directly": "EPERM",
        })
    );
    // The gateway itself refuses her another user's cluster.
    eprintln!(
        "Alice asks the gateway for Bob's cluster: {}",
        output(&alice, 1)
    );
    assert!(output(&alice, 1).contains("403"), "{alice}");
    node.wait(
        "Alice's server is still running after she stopped it",
        Duration::from_secs(60),
        || user_pod(&node, NAMESPACE, "alice").is_empty(),
    );

    // Alice again, in a real browser on this machine (the hub's proxy through a port on its
    // loopback, as scripts/run gives it): the login form, the spawn page, JupyterLab drawn.
    let port = node
        .cluster
        .forward(format!("{proxy}:80").parse().unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let picture = artifacts.join("jupyterlab-alice.png");
    let out = std::process::Command::new("node")
        .arg(root().join("tests/browser/jupyterlab.js"))
        .args([&format!("http://127.0.0.1:{port}/"), "alice", PASSWORD])
        .arg(&picture)
        .env(
            "NODE_PATH",
            node_packages("tests/browser").join("node_modules"),
        )
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "the browser: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        hub::logs(
            &node.cluster,
            NAMESPACE,
            "component in (hub, singleuser-server)"
        )
    );
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        page["url"].as_str().unwrap().contains("/user/alice/lab"),
        "{page}"
    );
    assert!(std::fs::metadata(&picture).unwrap().len() > 10_000);
    eprintln!("the browser: {page}; its picture: {}", picture.display());
}

/// A visitor's local Dask computation, as a teaching notebook does it: a LocalCluster of two
/// worker processes inside the server's own pod (scheduler, workers and dashboard on its
/// loopback). Prints what happened as JSON.
const LOCAL_COMPUTATION: &str = r#"import json
import dask.array as da
from dask.distributed import Client, LocalCluster
with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
    x = da.random.RandomState(0).random((2000, 2000), chunks=500)
    matmul = float((x @ x.T).sum().compute())
    print(json.dumps({"workers": len(client.scheduler_info()["workers"]), "matmul": matmul}))
"#;

#[test]
fn visitors_of_tess_public_compute_and_their_idle_servers_are_culled() {
    const PUBLIC: &str = TESS_PUBLIC.namespace;
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let mut node = Node::up_with(false, true);
    let dir = TempDir::new("hub-volumes");
    node.install_hubguard("install", &["--set", "policy.preset=tess-public"]);
    // z2jh's own NetworkPolicies come with the recording, enforced by kube-router's firewall.
    let proxy = serve(
        &mut node.cluster,
        &TESS_PUBLIC,
        &binary("hubguard-netprobe"),
        &dir.0,
    );
    let hub = format!("http://{proxy}");
    let visit = |cells: &[&str], stop: bool| {
        as_user(
            &node,
            PUBLIC,
            &json!({"hub": hub, "login": "tmp", "cells": cells, "stop": stop}),
        )
    };
    let output = |answer: &Value, cell: usize| cell_output(&node, PUBLIC, answer, cell);

    // A visitor is logged straight in as a fresh user, opens JupyterLab, computes locally,
    // and walks away without stopping the server.
    let drops_before = node.cluster.network_policy_drops();
    let first = visit(&["print(6 * 7)", LOCAL_COMPUTATION], false);
    eprintln!("the first visitor: {first}");
    let visitor = first["user"].as_str().unwrap().to_string();
    assert!(
        first["lab_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/user/{visitor}/lab")),
        "{first}"
    );
    assert_eq!(output(&first, 0), "42");
    let result: Value = serde_json::from_str(&output(&first, 1)).unwrap();
    assert_eq!(result["workers"], 2, "{result}");
    assert!(result["matmul"].as_f64().unwrap() > 0.0, "{result}");
    assert_happy_path(&node, PUBLIC, drops_before);
    let first_pod = user_pod(&node, PUBLIC, &visitor);
    assert_eq!(
        node.pod_field(
            PUBLIC,
            &first_pod,
            "{.metadata.labels.hubguard\\.dev/class}"
        ),
        "user"
    );

    // A second visitor, another fresh user, tries what a visitor would try, then stops.
    let first_ip = node.pod_field(PUBLIC, &first_pod, "{.status.podIP}");
    let probes = probe_cell(&[
        ("hub API", "hub", 8081),
        ("public web", PUBLIC_IP, 443),
        ("public, another port", PUBLIC_IP, 22),
        ("metadata", "169.254.169.254", 80),
        ("API server (Service)", "10.96.0.1", 443),
        ("kubelet", "10.250.0.1", 10250),
        ("the other visitor's server", &first_ip, 8888),
        ("the proxy's API", "proxy-api", 8001),
    ]);
    let second = visit(&[&probes], true);
    assert_ne!(
        second["user"], first["user"],
        "tmpauthenticator made one user twice"
    );
    let outcomes: Value = serde_json::from_str(&output(&second, 0)).unwrap();
    eprintln!("from the second visitor's kernel: {outcomes}");
    assert_eq!(
        outcomes,
        json!({
            "hub API": "connected",
            "public web": "connected",
            "public, another port": "EPERM",
            "metadata": "EPERM",
            "API server (Service)": "EPERM",
            "kubelet": "EPERM",
            "the other visitor's server": "EPERM",
            "the proxy's API": "EPERM",
        })
    );

    // The culler (two idle minutes in the test layer, checked every 15 s) reclaims the first
    // visitor's server, and removes the throwaway user with it.
    let started = std::time::Instant::now();
    node.wait(
        "the idle culler did not reclaim the first visitor's server",
        Duration::from_secs(300),
        || user_pod(&node, PUBLIC, &visitor).is_empty(),
    );
    eprintln!(
        "the first visitor's server culled {:.0}s after their flow",
        started.elapsed().as_secs_f64()
    );
    let hub_log = || node.kubectl(&["logs", "-n", PUBLIC, "deployment/hub"]);
    node.wait(
        "the idle culler did not remove the first visitor",
        Duration::from_secs(60),
        || hub_log().contains(&format!("Culling user {visitor}")),
    );
    assert!(
        hub_log().contains(&format!("Culling server {visitor}")),
        "{}",
        hub_log()
    );
}
