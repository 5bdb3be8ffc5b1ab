//! A user's Dask on the real node, as tess-private runs it: a dask-gateway cluster exactly as
//! the gateway's real controller makes it from the hub's values, computing through hubguard's
//! webhook and node agent with the secured hub's Dask NetworkPolicy enforced (kube-router's
//! firewall), and what a user would try against another user's cluster from there.

use std::time::{Duration, Instant};

use crate::real_node::{probe_pod_running, tenants_fixture, Node, METADATA, ONE_NODE};
use crate::support::images;
use crate::support::upstream::image_python;
use crate::support::{binary, root, TempDir};

/// dask-gateway's controller as the dask-gateway chart gives it rights in tess-private.
const GATEWAY_CONTROLLER: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: controller-tess-private-dask-gateway, namespace: tess-private}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: dask-gateway-controller, namespace: tess-private}
rules:
  - apiGroups: [""]
    resources: [pods, secrets, services, endpoints]
    verbs: [get, list, watch, create, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dask-gateway-controller, namespace: tess-private}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: dask-gateway-controller}
subjects: [{kind: ServiceAccount, name: controller-tess-private-dask-gateway, namespace: tess-private}]
"#;

/// A user's gateway cluster as dask-gateway-server 2026.3.0's controller makes it from
/// tess-private's prod values (the real backend and controller, tests/upstream/dask_pods.py):
/// its credentials Secret, its scheduler's headless Service, the scheduler pod and `workers`
/// worker pods. Changed only where the 2-core test node needs it: sizes (requests, limits,
/// the worker's --memory-limit), images loaded without a registry, the workers' names.
fn gateway_cluster(user: &str, workers: usize) -> (String, Vec<serde_json::Value>) {
    use serde_json::json;
    let values = crate::hub_charts::layered_values("tess-private", "prod");
    let built = crate::support::upstream::dask(&json!({"gateway": {
        "values": values["dask-gateway"],
        "namespace": "tess-private",
        "release": "tess-private",
        "user": user,
        "options": [{}],
        "overrides": {},
    }}));
    let built = &built[0];
    let name = built["service"]["metadata"]["name"]
        .as_str()
        .expect("the scheduler Service's name")
        .trim_start_matches("dask-")
        .to_string();
    let mut secret = built["secret"].clone();
    secret["metadata"]["namespace"] = json!("tess-private");
    let mut service = built["service"].clone();
    service["apiVersion"] = json!("v1");
    service["kind"] = json!("Service");
    service["metadata"]["namespace"] = json!("tess-private");
    // The controller's Python client sends `target_port`, which the API server drops (the
    // port's own number is used); kubectl's strict validation would refuse it.
    for port in service["spec"]["ports"].as_array_mut().unwrap() {
        port.as_object_mut().unwrap().remove("target_port");
    }
    let size = |pod: &mut serde_json::Value| {
        let container = &mut pod["spec"]["containers"][0];
        container["imagePullPolicy"] = json!("Never");
        container["resources"] = json!({
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        });
        for key in ["command", "args"] {
            if let Some(argv) = container[key].as_array_mut() {
                for i in 1..argv.len() {
                    if argv[i - 1] == "--memory-limit" {
                        argv[i] = json!("900000000");
                    }
                }
            }
        }
    };
    let mut scheduler = built["scheduler"].clone();
    size(&mut scheduler);
    let mut objects = vec![secret, service, scheduler];
    for index in 0..workers {
        let mut worker = built["worker"].clone();
        size(&mut worker);
        let metadata = worker["metadata"].as_object_mut().unwrap();
        metadata.remove("generateName");
        metadata.insert("name".into(), json!(format!("dask-worker-{name}-{index}")));
        objects.push(worker);
    }
    (name, objects)
}

/// A notebook's Dask client over the gateway's TLS, with the cluster's own key pair (what the
/// gateway client gets from the gateway's API): a matrix multiply and a P2P shuffle.
fn dask_client_script(cluster: &str, secret: &serde_json::Value) -> String {
    format!(
        r#"
import base64, json, os, tempfile, time
import dask, dask.array as da, dask.dataframe as dd, pandas as pd
from distributed import Client
from distributed.security import Security
d = tempfile.mkdtemp()
for key, name in [("dask.crt", "cert"), ("dask.pem", "key")]:
    with open(os.path.join(d, name), "wb") as f:
        f.write(base64.b64decode({secret}[key]))
security = Security(tls_ca_file=d + "/cert", tls_client_cert=d + "/cert",
                    tls_client_key=d + "/key", require_encryption=True)
started = time.time()
with Client("tls://dask-{cluster}.tess-private:8786", security=security, timeout=60) as client:
    client.wait_for_workers(2, timeout=120)
    x = da.random.random((2000, 2000), chunks=500)
    total = float((x @ x.T).sum().compute())
    frame = dd.from_pandas(pd.DataFrame({{"k": range(40000), "v": range(40000)}}), npartitions=8)
    with dask.config.set({{"dataframe.shuffle.method": "p2p"}}):
        rows = int(frame.shuffle(on="k", npartitions=4).map_partitions(len).compute().sum())
    print(json.dumps({{"matmul": total, "shuffled_rows": rows,
                      "workers": len(client.scheduler_info()["workers"]),
                      "seconds": round(time.time() - started, 1)}}))
"#,
        secret = secret["data"]
    )
}

/// The secured hub's Dask NetworkPolicy as charts/secured-hub renders it for tess-private (the
/// chart alone: its upstream dependencies are not needed for this template).
pub(crate) fn dask_network_policy(node: &Node) -> String {
    let dir = TempDir::new("secured-hub");
    let chart = dir.path("secured-hub");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    let source = root().join("charts/secured-hub");
    let manifest = std::fs::read_to_string(source.join("Chart.yaml")).unwrap();
    let without_dependencies = manifest.split("\ndependencies:").next().unwrap();
    std::fs::write(chart.join("Chart.yaml"), without_dependencies).unwrap();
    std::fs::copy(source.join("values.yaml"), chart.join("values.yaml")).unwrap();
    std::fs::copy(
        source.join("templates/dask-networkpolicy.yaml"),
        chart.join("templates/dask-networkpolicy.yaml"),
    )
    .unwrap();
    let out = node.helm(&[
        "template",
        "tess-private",
        chart.to_str().unwrap(),
        "--namespace",
        "tess-private",
        "--set",
        "dask-gateway.enabled=true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(rendered.contains("kind: NetworkPolicy"), "{rendered}");
    rendered
}

/// The agent's denial log lines for one namespace (JSON lines, each event's fields at the top
/// level).
pub(crate) fn agent_denials(node: &Node, namespace: &str) -> Vec<serde_json::Value> {
    node.kubectl(&[
        "logs",
        "-n",
        "hubguard",
        "-l",
        "app.kubernetes.io/component=node-agent",
        "--tail=-1",
    ])
    .lines()
    .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
    .filter(|event| event["message"] == "egress denied" && event["namespace"] == namespace)
    .collect()
}

#[test]
fn a_users_dask_gateway_cluster_computes_on_the_guarded_path_and_stays_theirs() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let mut node = Node::up_with(false, true);
    node.apply(&tenants_fixture());
    node.apply(GATEWAY_CONTROLLER);
    // Installed in the release's namespace, as Helm installs the template (it names none).
    node.cluster.kubectl_stdin(
        &["apply", "-n", "tess-private", "-f", "-"],
        Some(&dask_network_policy(&node)),
    );
    node.install_hubguard("install", &[]);
    let started = Instant::now();
    let image = images::probe_with_python(
        &binary("hubguard-netprobe"),
        &image_python("images/test/notebook/requirements.txt"),
        images::TESS_NOTEBOOK,
    )
    .unwrap_or_else(|e| panic!("the Dask image: {e}"));
    node.cluster
        .load_image(&image)
        .unwrap_or_else(|e| panic!("loading the Dask image: {e}"));
    eprintln!(
        "Dask image made and loaded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    node.cluster
        .wait_dns_ready(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));

    // Alice's cluster (two workers) and Bob's (one), each created as the gateway's controller.
    let controller = node
        .cluster
        .kubeconfig_for("tess-private", "controller-tess-private-dask-gateway");
    let (alice_cluster, alice_objects) = gateway_cluster("alice", 2);
    let (bob_cluster, bob_objects) = gateway_cluster("bob", 1);
    for object in alice_objects.iter().chain(&bob_objects) {
        let out = node.cluster.kubectl_as(
            &controller,
            &["create", "-f", "-"],
            Some(&object.to_string()),
        );
        assert!(
            out.status.success(),
            "the controller's {} {}: {}",
            object["kind"],
            object["metadata"]["name"],
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Alice's notebook, with the same image.
    let alice = node.cluster.kubeconfig_for("tess-private", "user-alice");
    let notebook = probe_pod_running(
        "tess-private",
        "alice-notebook",
        "hub.jupyter.org/username: alice",
        "{requests: {cpu: 100m, memory: 256Mi}, limits: {cpu: '1', memory: 1Gi}}",
        "",
        "exec /bin/sleep 3600",
    )
    .replace(images::NOTEBOOK, images::TESS_NOTEBOOK);
    let out = node
        .cluster
        .kubectl_as(&alice, &["create", "-f", "-"], Some(&notebook));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Notebooks reach a scheduler through the gateway's traefik, which passes TLS through: the
    // only way in the Dask NetworkPolicy leaves besides Dask pods and the gateway's API. The
    // test's client runs where traefik runs, in a pod labelled as the chart labels traefik.
    node.apply(
        &probe_pod_running(
            "tess-private",
            "traefik-stand-in",
            "app.kubernetes.io/name: dask-gateway, app.kubernetes.io/component: traefik, \
             gateway.dask.org/instance: tess-private-dask-gateway",
            "{requests: {cpu: 100m, memory: 256Mi}, limits: {cpu: '1', memory: 1Gi}}",
            "",
            "exec /bin/sleep 3600",
        )
        .replace(images::NOTEBOOK, images::TESS_NOTEBOOK),
    );
    for pod in [
        "traefik-stand-in".to_string(),
        "alice-notebook".to_string(),
        format!("dask-scheduler-{alice_cluster}"),
        format!("dask-worker-{alice_cluster}-0"),
        format!("dask-worker-{alice_cluster}-1"),
        format!("dask-scheduler-{bob_cluster}"),
        format!("dask-worker-{bob_cluster}-0"),
    ] {
        node.wait_running("tess-private", &pod);
    }
    for (pod, tenant) in [
        (format!("dask-worker-{alice_cluster}-0"), "alice"),
        (format!("dask-scheduler-{bob_cluster}"), "bob"),
    ] {
        assert_eq!(
            node.pod_field(
                "tess-private",
                &pod,
                "{.metadata.labels.hubguard\\.dev/class}/{.metadata.labels.hubguard\\.dev/tenant}",
            ),
            format!("dask/{tenant}"),
            "{pod} is recorded as {tenant}'s"
        );
    }

    // The computation, for Alice, from traefik's place.
    let drops_before = node.cluster.network_policy_drops();
    let secret = &alice_objects[0];
    let script = dask_client_script(&alice_cluster, secret);
    let out = node.cluster.kubectl_output(&[
        "exec",
        "-n",
        "tess-private",
        "traefik-stand-in",
        "--",
        "python",
        "-c",
        &script,
    ]);
    let out = out.unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    let logs = || {
        let mut text = String::new();
        for pod in [
            format!("dask-scheduler-{alice_cluster}"),
            format!("dask-worker-{alice_cluster}-0"),
        ] {
            text += &format!(
                "--- {pod}\n{}\n",
                node.kubectl(&["logs", "-n", "tess-private", &pod, "--tail=30"])
            );
        }
        text
    };
    assert!(
        out.status.success(),
        "the Dask computation failed: {}\n{}\nagent denials: {:#?}",
        String::from_utf8_lossy(&out.stderr),
        logs(),
        agent_denials(&node, "tess-private")
    );
    let result: serde_json::Value =
        serde_json::from_str(answer.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(result["workers"], 2, "{result}");
    assert_eq!(result["shuffled_rows"], 40000, "{result}");
    assert!(result["matmul"].as_f64().unwrap() > 0.0, "{result}");
    let drops = node.cluster.network_policy_drops() - drops_before;
    assert_eq!(drops, 0, "NetworkPolicy dropped packets of the computation");
    let ip = |pod: String| node.pod_field("tess-private", &pod, "{.status.podIP}");
    let summary = |denials: &[serde_json::Value]| {
        denials
            .iter()
            .map(|d| {
                format!(
                    "{} {}:{} from {}",
                    d["protocol"].as_str().unwrap_or(""),
                    d["destination"].as_str().unwrap_or(""),
                    d["port"],
                    d["pod"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
    };
    // Nothing on the way is refused: not the computation, and not the route probes of starting
    // Dask processes (distributed's get_ip: a UDP connect() to port 80 that sends nothing,
    // schedulers towards 8.8.8.8, workers towards their scheduler), which the connect hook
    // leaves to the packet layer.
    let since_start = agent_denials(&node, "tess-private");
    assert!(
        since_start.is_empty(),
        "the agent refused the Dask flow: {:#?}",
        summary(&since_start)
    );
    eprintln!("Dask on the guarded path: {result}; no agent denial since the clusters started");

    // What a user would try next: another user's cluster, from her notebook and from her own
    // Dask pods; and the metadata endpoint from both.
    let bob_scheduler = ip(format!("dask-scheduler-{bob_cluster}"));
    let bob_worker = ip(format!("dask-worker-{bob_cluster}-0"));
    let alice_scheduler = ip(format!("dask-scheduler-{alice_cluster}"));
    let probes_from_alice = [
        (format!("tcp:{bob_scheduler}:8786"), "EPERM"),
        (format!("tcp:{bob_scheduler}:8787"), "EPERM"),
        (format!("tcp:{bob_worker}:8789"), "EPERM"),
        (format!("tcp:dask-{bob_cluster}.tess-private:8787"), "EPERM"),
        (METADATA.to_string(), "EPERM"),
    ];
    for pod in [
        "alice-notebook".to_string(),
        format!("dask-worker-{alice_cluster}-0"),
    ] {
        let cases: Vec<(&str, &str)> = probes_from_alice
            .iter()
            .map(|(p, w)| (p.as_str(), *w))
            .collect();
        node.assert_probes("tess-private", &pod, &cases);
    }
    // Bob's worker is refused Alice's scheduler and workers too.
    node.assert_probes(
        "tess-private",
        &format!("dask-worker-{bob_cluster}-0"),
        &[
            (&format!("tcp:{alice_scheduler}:8786"), "EPERM"),
            (&format!("tcp:{alice_scheduler}:8787"), "EPERM"),
        ],
    );
    // Alice's notebook straight to her own scheduler: refused too. Notebooks reach Dask only
    // through the gateway's traefik (no layer opens Dask pods to them, their own included).
    node.assert_probes(
        "tess-private",
        "alice-notebook",
        &[(&format!("tcp:{alice_scheduler}:8786"), "EPERM")],
    );
    // traefik to a worker: the agent lets it (traefik is the platform's), the Dask
    // NetworkPolicy does not (traefik passes clients to schedulers only). The connection never
    // opens and the firewall counts the drop: the second layer is enforced, not only rendered.
    let drops_before = node.cluster.network_policy_drops();
    let alice_worker = ip(format!("dask-worker-{alice_cluster}-0"));
    let direct = format!("tcp:{alice_worker}:8789");
    let outcome = node
        .cluster
        .probe_from("tess-private", "traefik-stand-in", &[&direct]);
    let outcome = outcome.get(&direct).cloned().unwrap_or_default();
    let firewall = || {
        let rules = node
            .cluster
            .in_node(&["iptables-save", "-c", "-t", "filter"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        format!(
            "{}\nkube-router's log ends:\n{}",
            rules
                .lines()
                .filter(|l| l.contains("KUBE-ROUTER")
                    || l.contains("KUBE-POD-FW")
                    || l.contains("KUBE-NWPLCY"))
                .collect::<Vec<_>>()
                .join("\n"),
            node.cluster.log_tail("kube-router", 30)
        )
    };
    assert!(
        outcome.starts_with("error") && !outcome.contains("greeting") && outcome != "EPERM",
        "traefik to Alice's worker: {outcome}\n{}",
        firewall()
    );
    assert!(
        node.cluster.network_policy_drops() > drops_before,
        "NetworkPolicy counted no drop for {direct}"
    );
    // The log read above for "no denial" is the one that shows these refusals.
    let refused: Vec<serde_json::Value> = agent_denials(&node, "tess-private");
    assert!(
        refused
            .iter()
            .any(|d| d["protocol"] == "TCP" && d["destination"] == bob_scheduler.as_str()),
        "the agent's log shows no refusal of Bob's scheduler: {refused:#?}"
    );
}
