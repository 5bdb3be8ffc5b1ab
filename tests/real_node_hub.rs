//! tess-private served to its users on the test node: the real JupyterHub (z2jh 4.4.0's hub
//! pins), KubeSpawner and configurable-http-proxy run in the Deployments z2jh renders, under
//! hubguard's webhook and node agent. Users log in, spawn their server and run code in a
//! kernel, all through the proxy's HTTP port as a browser would; then, from that same kernel,
//! try what a user would try against the platform and another user.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::hub_charts::{layered_values, merge, yaml};
use crate::real_node::{apply_json, bound_claim, tenants_fixture, Node, ONE_NODE};
use crate::support::cluster::PUBLIC_IP;
use crate::support::controlplane::tools_bin;
use crate::support::upstream::{image_python, kubespawner, node_packages, python};
use crate::support::{binary, images, root, TempDir};

const NAMESPACE: &str = "tess-private";
const PASSWORD: &str = "tess-test-password";
/// The platform's Deployments the test node runs: z2jh's hub and proxy, then the gateway's
/// api, controller and traefik.
const PLATFORM: [&str; 5] = [
    "hub",
    "proxy",
    "api-tess-private-dask-gateway",
    "controller-tess-private-dask-gateway",
    "traefik-tess-private-dask-gateway",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut buffer,
    )
    .expect("reading /dev/urandom");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hub, proxy and notebook images: the pinned environments made into images of the names
/// the recorded Deployments and the values use.
fn load_images(node: &Node) {
    let started = Instant::now();
    let netprobe = binary("hubguard-netprobe");
    let hub = images::probe_with_python(
        &netprobe,
        &image_python("images/test/hub/requirements.txt"),
        images::HUB,
    )
    .unwrap_or_else(|e| panic!("the hub image: {e}"))
    .alias(images::GATEWAY);
    let traefik =
        images::traefik(&tools_bin()).unwrap_or_else(|e| panic!("the traefik image: {e}"));
    // repo2docker's images run as jovyan with this home; the home claim is mounted there.
    let notebook = images::probe_with_python(
        &netprobe,
        &image_python("images/test/notebook/requirements.txt"),
        images::TESS_NOTEBOOK,
    )
    .unwrap_or_else(|e| panic!("the notebook image: {e}"))
    .env("HOME", "/home/jovyan");
    let proxy = images::proxy(
        &netprobe,
        Path::new("/usr/bin/node"),
        &node_packages("images/test/proxy"),
    )
    .unwrap_or_else(|e| panic!("the proxy image: {e}"));
    for image in [&hub, &notebook, &proxy, &traefik] {
        node.cluster
            .load_image(image)
            .unwrap_or_else(|e| panic!("loading {}: {e}", image.name()));
    }
    eprintln!(
        "hub, proxy, gateway, traefik and notebook images made and loaded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// tess-private's hub as z2jh would install it from the layered values plus the test layer:
/// its ConfigMap and Secret under z2jh's names and keys, the hub's database claim, the users'
/// home volumes and the shared volume, the Services and Role, then the recorded hub and proxy
/// Deployments (not waited for).
fn install_hub(node: &Node, dir: &TempDir, values: &Value) {
    node.apply(&read("tests/fixtures/e2e/tess-private-hub.yaml"));
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "hub", "namespace": NAMESPACE},
        "data": {
            "jupyterhub_config.py": read("tests/upstream/z2jh_hub_config.py"),
            "z2jh.py": "# The test hub's configuration is in jupyterhub_config.py.\n",
            "kubespawner_pods.py": read("tests/upstream/kubespawner_pods.py"),
            "chart_values.py": read("tests/upstream/chart_values.py"),
            "values.yaml": values["jupyterhub"].to_string(),
        },
    });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "hub", "namespace": NAMESPACE},
        "stringData": {
            "hub.config.ConfigurableHTTPProxy.auth_token": random_hex(32),
            "hub.config.JupyterHub.cookie_secret": random_hex(32),
            "hub.config.CryptKeeper.keys": random_hex(32),
            "hub.services.dask-gateway.apiToken": random_hex(32),
            "values.yaml": "{}\n",
        },
    });
    // Volumes: the hub's database, the shared full-frame images, and each user's home as
    // KubeSpawner will claim it (the volume waits, bound in advance to that claim's name).
    let homes = kubespawner(&json!({
        "values": values["jupyterhub"], "namespace": NAMESPACE, "release": NAMESPACE,
        "servers": [["alice", ""], ["bob", ""]],
    }));
    let mut objects = vec![config, secret];
    objects.extend(bound_claim(NAMESPACE, "hub-db-dir", None, dir));
    objects.extend(bound_claim(NAMESPACE, "tess-ffi", None, dir));
    for home in homes.as_array().unwrap() {
        let claim = home["pvc_name"].as_str().unwrap();
        objects.extend(
            bound_claim(NAMESPACE, claim, Some(&home["pvc"]), dir)
                .into_iter()
                .take(1),
        );
    }
    // The volumes are directories of the host: writable by the hub's and the users' uids.
    for entry in std::fs::read_dir(dir.path("")).unwrap().flatten() {
        std::os::unix::fs::chown(entry.path(), Some(1000), Some(100)).unwrap();
    }
    apply_json(node, &objects);
    let recorded = read("tests/fixtures/e2e/tess-private-platform.yaml");
    for document in recorded.split("\n---\n") {
        let mut deployment: Value = serde_norway::from_str(document).unwrap();
        let name = deployment["metadata"]["name"].as_str().unwrap().to_string();
        if !PLATFORM[..2].contains(&name.as_str()) {
            continue;
        }
        deployment["metadata"]["namespace"] = json!(NAMESPACE);
        apply_json(node, &[deployment]);
    }
}

/// tess-private's values as the test node installs them: the shipped layers (common, prod)
/// and the test layer in place of the secrets.
fn test_values() -> Value {
    let mut values = layered_values(NAMESPACE, "prod");
    merge(
        &mut values,
        &yaml(&read("tests/fixtures/e2e/tess-private-test.values.yaml")),
    );
    values
}

/// Traefik's resource definitions, as its Go module (the version tests/traefik pins) ships
/// them: the gateway chart installs the same ones.
fn traefik_crds() -> String {
    let module = read("tests/traefik/go.mod");
    let version = module
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("require github.com/traefik/traefik/v3 ")
        })
        .expect("tests/traefik/go.mod requires traefik");
    let out = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .expect("go env");
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = format!(
        "{cache}/github.com/traefik/traefik/v3@{version}/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path} (scripts/tools downloads traefik's module): {e}"))
}

/// tess-private's dask-gateway as its chart would install it: traefik's resource definitions,
/// the gateway's objects, the api's and controller's ConfigMaps, then the recorded api,
/// controller and traefik Deployments (not waited for).
fn install_gateway(node: &Node, values: &Value) {
    node.cluster
        .kubectl_stdin(&["create", "-f", "-"], Some(&traefik_crds()));
    node.apply(&read("tests/fixtures/e2e/tess-private-gateway.yaml"));
    let chart = json!({"release": NAMESPACE, "values": values["dask-gateway"]});
    let config = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {
                "dask_gateway_config.py": read("tests/upstream/dask_gateway_config.py"),
                "dask_pods.py": read("tests/upstream/dask_pods.py"),
                "chart_values.py": read("tests/upstream/chart_values.py"),
                "values.json": chart.to_string(),
            },
        })
    };
    apply_json(
        node,
        &[
            config("api-tess-private-dask-gateway"),
            config("controller-tess-private-dask-gateway"),
        ],
    );
    for document in read("tests/fixtures/e2e/tess-private-platform.yaml").split("\n---\n") {
        let mut deployment: Value = serde_norway::from_str(document).unwrap();
        if PLATFORM[2..].contains(&deployment["metadata"]["name"].as_str().unwrap()) {
            deployment["metadata"]["namespace"] = json!(NAMESPACE);
            apply_json(node, &[deployment]);
        }
    }
}

/// Waits for Deployment `name` to have its replica available; says why not on timeout.
fn wait_available(node: &Node, name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while node.kubectl(&[
        "get",
        "deployment",
        name,
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.status.availableReplicas}",
    ]) != "1"
    {
        assert!(
            Instant::now() < deadline,
            "Deployment {name} is not available after {timeout:?}: {}",
            logs(node, "app.kubernetes.io/name in (jupyterhub, dask-gateway)")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The namespace's pods, and the last lines of the logs of those `selector` picks.
fn logs(node: &Node, selector: &str) -> String {
    let run = |args: &[&str]| {
        node.cluster
            .kubectl_output(args)
            .map(|out| {
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            })
            .unwrap_or_default()
    };
    format!(
        "{}
{}",
        run(&["get", "pods", "-n", NAMESPACE, "-o", "wide"]),
        run(&[
            "logs",
            "-n",
            NAMESPACE,
            "-l",
            selector,
            "--tail=25",
            "--prefix"
        ])
    )
}

/// `tests/upstream/hub_user.py` on `request`, run in the node's network namespace (where the
/// proxy's Service is reached as a browser beside the cluster would reach it).
fn as_user(node: &Node, request: &Value) -> Result<Value, String> {
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
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The names of the namespace's pods `selector` picks.
fn pods_labelled(node: &Node, selector: &str) -> String {
    node.kubectl(&[
        "get",
        "pods",
        "-n",
        NAMESPACE,
        "-l",
        selector,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
}

/// A user's server pod, as KubeSpawner labels it.
fn user_pod(node: &Node, user: &str) -> String {
    pods_labelled(
        node,
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
    load_images(&node);
    node.cluster
        .wait_dns_ready(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let values = test_values();
    // Everything at once, as one helm install would: the hub looks the gateway's Service up
    // when it starts, and a name looked up before it exists is remembered as missing.
    install_gateway(&node, &values);
    install_hub(&node, &dir, &values);
    for name in PLATFORM {
        wait_available(&node, name, Duration::from_secs(180));
    }
    eprintln!(
        "the hub, proxy and gateway served in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let proxy = node.kubectl(&[
        "get",
        "service",
        "proxy-public",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let hub = format!("http://{proxy}");
    let user =
        |name: &str, cells: &[&str], stop: bool| {
            as_user(
            &node,
            &json!({"hub": hub, "user": name, "password": PASSWORD, "cells": cells, "stop": stop}),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{name}'s flow: {e}\n{}\nagent denials: {:#?}",
                logs(&node, "app.kubernetes.io/name in (jupyterhub, dask-gateway)"),
                crate::real_node_dask::agent_denials(&node, NAMESPACE)
            )
        })
        };
    let output = |answer: &Value, cell: usize| -> String {
        let out = &answer["outputs"][cell];
        assert_eq!(
            out["error"],
            Value::Null,
            "{answer}\n{}",
            logs(
                &node,
                "app.kubernetes.io/name in (jupyterhub, dask-gateway)"
            )
        );
        out["stdout"].as_str().unwrap().trim().to_string()
    };

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
    assert_eq!(
        node.cluster.network_policy_drops() - drops_before,
        0,
        "NetworkPolicy dropped packets of the users' flow"
    );
    // The agent refused nothing of the flow but route probes: distributed's get_ip, a UDP
    // connect() to port 80 that sends nothing (schedulers towards 8.8.8.8, workers towards
    // their scheduler). Seeing those needs the packet layer (issue 30).
    let denials = crate::real_node_dask::agent_denials(&node, NAMESPACE);
    let other: Vec<&Value> = denials
        .iter()
        .filter(|d| !(d["protocol"] == "UDP" && d["port"] == 80))
        .collect();
    assert!(
        other.is_empty(),
        "the agent refused the users' flow: {other:#?}"
    );
    eprintln!(
        "the users' flow: {} UDP route probes refused, nothing else; no NetworkPolicy drop",
        denials.len()
    );

    // Their servers and clusters are their own pods, recorded as theirs.
    let alice_pod = user_pod(&node, "alice");
    let bob_pod = user_pod(&node, "bob");
    let bob_pods = |role: &str| {
        pods_labelled(
            &node,
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
        || user_pod(&node, "alice").is_empty(),
    );
}
