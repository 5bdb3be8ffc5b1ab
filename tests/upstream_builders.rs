//! The secured hubs' pods as upstream's own software builds them, from PyPI (pinned,
//! `scripts/pyenv`): KubeSpawner 7 makes the user pods of each hub's layered values, for users
//! and servers whose names it has to make safe; dask-gateway-server's kubernetes backend makes
//! the scheduler and worker pods of every cluster option it offers; dask-kubernetes'
//! `KubeCluster` makes a notebook's DaskCluster and the operator's own handlers make its
//! Deployments. `hubguard check` judges each as its real creator. Where a chart turns values
//! into settings (z2jh's and dask-gateway's config files ship inside the charts), and where the
//! operator writes to the API, the scripts in `tests/upstream/` say what stands in and how it
//! was checked.

use serde_json::{json, Value};

use crate::hub_charts::{
    check, check_report, check_report_with, defaults_beyond_metadata, layered_values,
};
use crate::support::upstream::{dask, kubespawner};
use crate::support::TempDir;
use hubguard_policy::kubespawner as model;

/// Users and servers whose names KubeSpawner keeps, cuts, hashes or escapes.
const USERS: [&str; 11] = [
    "alice",
    "1337coder",
    "Alice.Smith@example.org",
    "UPPER",
    "dots.in.name",
    "_underscore",
    "ünïcødé",
    "alice--gpu",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a-very-long-institutional-login-name-of-a-researcher@observatory.example.edu",
    "x",
];
const SERVERS: [&str; 4] = [
    "",
    "gpu",
    "Analysis 2",
    "a-long-server-name-for-a-long-running-analysis",
];

#[test]
fn hubguard_names_homes_and_labels_as_kubespawner_does() {
    let templates = [
        "claim-{user_server}",
        "claim-{username}",
        "claim-{username}{servername}",
        "home-{username}--{servername}-",
    ];
    let mut cases = Vec::new();
    for template in templates {
        for user in USERS {
            for server in SERVERS {
                cases.push(json!([template, user, server]));
            }
        }
    }
    let answers = kubespawner(&json!({ "names": cases }));
    let answers = answers.as_array().expect("a list");
    assert_eq!(answers.len(), cases.len());
    let mut differ = Vec::new();
    for (case, answer) in cases.iter().zip(answers) {
        let (template, user, server) = (
            case[0].as_str().unwrap(),
            case[1].as_str().unwrap(),
            case[2].as_str().unwrap(),
        );
        let ours = json!([
            model::expand(template, user, server),
            model::username_label(user),
            model::servername_label(server),
        ]);
        if &ours != answer {
            differ.push(format!(
                "{template} {user:?} {server:?}: KubeSpawner {answer}, hubguard {ours}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} differ:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
    eprintln!("{} names agree with KubeSpawner 7.0.0", cases.len());
}

/// The request for each hub's user pods: every user on every server.
fn pods_request(values: &Value, deployment: &str) -> Value {
    let servers: Vec<Value> = USERS
        .iter()
        .flat_map(|u| SERVERS.iter().map(move |s| json!([u, s])))
        .collect();
    json!({
        "values": values["jupyterhub"],
        "namespace": deployment,
        "release": deployment,
        "servers": servers,
    })
}

#[test]
fn kubespawners_user_pods_pass_for_every_user_and_server() {
    for deployment in ["tess-public", "tess-private"] {
        let values = layered_values(deployment, "prod");
        let built = kubespawner(&pods_request(&values, deployment));
        let hub = format!("system:serviceaccount:{deployment}:hub");
        let mut refused = Vec::new();
        let mut homes = 0;
        for entry in built.as_array().expect("a list") {
            let pod = &entry["pod"];
            let (allowed, mutations) = check(deployment, &hub, pod);
            let defaults = defaults_beyond_metadata(&mutations);
            if !allowed || !defaults.is_empty() {
                refused.push(format!(
                    "{} / {:?}: allowed {allowed}, defaults {defaults:?}",
                    entry["user"], entry["server"]
                ));
            }
            homes += pod["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["persistentVolumeClaim"]["claimName"] == entry["pvc_name"])
                .count();
        }
        assert!(
            refused.is_empty(),
            "{deployment}: KubeSpawner's pods refused or needing defaults:\n{}",
            refused.join("\n")
        );
        let expected_homes = if deployment == "tess-private" {
            USERS.len() * SERVERS.len()
        } else {
            0
        };
        assert_eq!(
            homes, expected_homes,
            "{deployment}: pods mounting their home"
        );
        eprintln!(
            "{deployment}: {} KubeSpawner pods allowed as the hub",
            USERS.len() * SERVERS.len()
        );
    }
}

#[test]
fn kubespawners_pods_with_hostile_settings_are_refused() {
    let deployment = "tess-private";
    let hub = format!("system:serviceaccount:{deployment}:hub");
    let values = layered_values(deployment, "prod");
    // Settings a profile's kubespawner_override (or a hub admin's mistake) can give one pod,
    // each through KubeSpawner's own code path.
    let hostile: [(&str, Value); 4] = [
        ("privileged", json!({"privileged": true})),
        (
            "another user's home",
            json!({"volumes": [{"name": "other", "persistentVolumeClaim": {"claimName": "claim-alice"}}], "volume_mounts": [{"name": "other", "mountPath": "/other"}]}),
        ),
        (
            "host path",
            json!({"volumes": [{"name": "host", "hostPath": {"path": "/"}}], "volume_mounts": [{"name": "host", "mountPath": "/host"}]}),
        ),
        (
            "root",
            json!({"container_security_context": {"runAsUser": 0}}),
        ),
    ];
    for (what, settings) in hostile {
        let mut request = pods_request(&values, deployment);
        request["servers"] = json!([["1337coder", ""]]);
        let mut config = request["values"]["hub"]["config"]["KubeSpawner"].clone();
        for (key, value) in settings.as_object().unwrap() {
            config[key] = value.clone();
        }
        request["values"]["hub"]["config"]["KubeSpawner"] = config;
        let built = kubespawner(&request);
        let pod = &built[0]["pod"];
        let (allowed, _) = check(deployment, &hub, pod);
        assert!(
            !allowed,
            "KubeSpawner's pod with {what} was allowed: {pod:#}"
        );
    }
}

/// What a dask-gateway user may ask for in tess-private: the defaults, and every size its
/// options allow at their edges and between them.
fn offered_options() -> Vec<Value> {
    let mut options = vec![json!({})];
    for cores in 1..=4 {
        for memory in [2.0, 5.5, 8.0, 16.0] {
            options.push(json!({"worker_cores": cores, "worker_memory": memory}));
        }
    }
    options
}

fn gateway_request(
    values: &Value,
    deployment: &str,
    options: Vec<Value>,
    overrides: Value,
) -> Value {
    json!({"gateway": {
        "values": values["dask-gateway"],
        "namespace": deployment,
        "release": deployment,
        "user": "1337coder",
        "options": options,
        "overrides": overrides,
    }})
}

fn gateway_controller(deployment: &str) -> String {
    format!("system:serviceaccount:{deployment}:controller-{deployment}-dask-gateway")
}

#[test]
fn gateway_pods_pass_for_every_offered_option() {
    let deployment = "tess-private";
    for env in ["staging", "prod"] {
        let values = layered_values(deployment, env);
        let built = dask(&gateway_request(
            &values,
            deployment,
            offered_options(),
            json!({}),
        ));
        let mut refused = Vec::new();
        let mut pods = 0;
        for entry in built.as_array().expect("a list") {
            assert!(
                entry.get("error").is_none(),
                "{env}: the gateway refused options it offers: {entry}"
            );
            for role in ["scheduler", "worker"] {
                let pod = &entry[role];
                let (allowed, mutations) = check(deployment, &gateway_controller(deployment), pod);
                let defaults = defaults_beyond_metadata(&mutations);
                if !allowed || !defaults.is_empty() {
                    refused.push(format!(
                        "{env} {role} {}: allowed {allowed}, defaults {defaults:?}",
                        entry["options"]
                    ));
                }
                pods += 1;
            }
        }
        assert!(
            refused.is_empty(),
            "dask-gateway's pods refused or needing defaults:\n{}",
            refused.join("\n")
        );
        eprintln!("{deployment} {env}: {pods} dask-gateway pods allowed as its controller");
    }
}

/// The ports a gateway worker's container listens on, from the arguments the backend gives it.
fn worker_listen_ports(worker: &Value) -> Vec<(String, String)> {
    let container = &worker["spec"]["containers"][0];
    let argv: Vec<String> = ["command", "args"]
        .iter()
        .flat_map(|key| container[*key].as_array().cloned().unwrap_or_default())
        .map(|v| text(&v).to_string())
        .collect();
    argv.windows(2)
        .filter(|pair| pair[0].ends_with("-port"))
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

#[test]
fn a_users_gateway_cluster_is_recorded_as_theirs_and_its_workers_listen_where_the_agent_opens() {
    let deployment = "tess-private";
    let values = layered_values(deployment, "prod");
    let preset: Value = serde_norway::from_str(
        &std::fs::read_to_string(crate::support::root().join("policies/tess-private.yaml"))
            .unwrap(),
    )
    .unwrap();
    let dask_to_dask = preset["spec"]["classes"]["dask"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["to"]["sameTenant"] == true)
        .expect("the dask class's same-tenant rule")
        .clone();
    let mut checked = Vec::new();
    for user in USERS {
        let mut request = gateway_request(&values, deployment, vec![json!({})], json!({}));
        request["gateway"]["user"] = json!(user);
        let built = dask(&request);
        let tenant = model::username_label(user);
        for role in ["scheduler", "worker"] {
            let pod = &built[0][role];
            assert_eq!(
                pod["metadata"]["labels"]["hub.jupyter.org/username"],
                json!(tenant),
                "{user:?}'s gateway {role} carries KubeSpawner's label for them"
            );
            let report = check_report(deployment, &gateway_controller(deployment), pod);
            let judged = &report["objects"][0];
            assert_eq!(
                judged["decision"], "allowed",
                "{user:?}'s gateway {role}: {report:#}"
            );
            assert_eq!(
                judged["pods"][0],
                json!({"path": "spec", "class": "dask", "tenant": tenant}),
                "{user:?}'s gateway {role} is recorded as theirs"
            );
        }
        let ports = worker_listen_ports(&built[0]["worker"]);
        assert_eq!(
            ports,
            [
                ("--worker-port".to_string(), "8789".to_string()),
                ("--nanny-port".to_string(), "8790".to_string())
            ],
            "{user:?}'s worker listens on fixed ports"
        );
        for (_, port) in &ports {
            assert!(
                port_in(&dask_to_dask["ports"], port.parse().unwrap()),
                "the preset's dask-to-dask rule opens the worker's port {port}"
            );
        }
        checked.push(tenant);
    }
    eprintln!("gateway clusters recorded as their users': {checked:?}");
}

#[test]
fn gateway_refuses_sizes_beyond_its_options_and_hubguard_what_a_lax_handler_lets_through() {
    let deployment = "tess-private";
    let values = layered_values(deployment, "prod");
    let beyond = vec![
        json!({"worker_cores": 5}),
        json!({"worker_memory": 32}),
        json!({"worker_cores": 0}),
    ];
    for entry in dask(&gateway_request(&values, deployment, beyond, json!({})))
        .as_array()
        .expect("a list")
    {
        assert!(
            entry["error"].is_string(),
            "the gateway built pods for {}",
            entry["options"]
        );
    }
    // Configuration a handler that passes users' choices through would give the cluster,
    // set on the gateway's own KubeClusterConfig (so its own validation applies).
    let hostile: [(&str, Value); 7] = [
        (
            "an image of the user's choice",
            json!({"image": "docker.io/evil/miner:latest"}),
        ),
        (
            "a privileged worker",
            json!({"worker_extra_container_config": {"securityContext": {"privileged": true}}}),
        ),
        (
            "the node's filesystem",
            json!({"worker_extra_pod_config": {"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}}),
        ),
        (
            "a user's home",
            json!({"worker_extra_pod_config": {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}}]}}),
        ),
        (
            "the host's network",
            json!({"scheduler_extra_pod_config": {"hostNetwork": true}}),
        ),
        (
            "more cores than the class allows",
            json!({"worker_cores": 8, "worker_cores_limit": 8}),
        ),
        (
            "the hub's service account",
            json!({"worker_extra_pod_config": {"serviceAccountName": "hub", "automountServiceAccountToken": true}}),
        ),
    ];
    for (what, overrides) in hostile {
        let built = dask(&gateway_request(
            &values,
            deployment,
            vec![json!({})],
            overrides,
        ));
        let entry = &built[0];
        let refused = ["scheduler", "worker"]
            .iter()
            .any(|role| !check(deployment, &gateway_controller(deployment), &entry[*role]).0);
        assert!(
            refused,
            "dask-gateway's pods with {what} were allowed: {entry:#}"
        );
    }
}

const TENANT_NOTEBOOK: &str = "system:serviceaccount:tess-private:user-alice";
const OPERATOR: &str = "system:serviceaccount:dask-operator:dask-kubernetes-operator";
const REPLICASET_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";

/// The DaskCluster a notebook's plain `KubeCluster(name=..., image=..., resources=...)`
/// creates, in tess-private.
fn kubecluster(name: &str) -> Value {
    let mut cluster = dask(&json!({"kubecluster": {
        "name": name,
        "image": "ghcr.io/tess-platform/tess-notebook:2026.11.0",
        "resources": {"limits": {"cpu": "1", "memory": "4G"}, "requests": {"cpu": "1", "memory": "4G"}},
        "n_workers": 2,
    }}));
    cluster["metadata"]["namespace"] = json!("tess-private");
    cluster
}

/// `object` as the API server stores it once `/mutate`'s patch (from the check report) is applied.
fn admitted(object: &Value, report: &Value) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_value(report["objects"][0]["mutations"].clone()).expect("a JSON patch");
    let mut stored = object.clone();
    json_patch::patch(&mut stored, &patch).expect("the patch applies");
    stored
}

/// The pod the ReplicaSet controller makes from a Deployment's template (through the
/// ReplicaSet the deployment controller makes): the template's metadata and spec, in the
/// Deployment's namespace, with the pod-template-hash label both controllers add.
fn templated_pod(deployment: &Value) -> Value {
    let template = &deployment["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    metadata["namespace"] = deployment["metadata"]["namespace"].clone();
    metadata["name"] = json!(format!(
        "{}-5d9c7b8f6-x2x7q",
        text(&deployment["metadata"]["name"])
    ));
    metadata["labels"]["pod-template-hash"] = json!("5d9c7b8f6");
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// tess-private's preset as a platform that runs the dask-kubernetes operator would have it:
/// the operator trusted by name (the TESS hubs do not offer that path).
fn operator_trusting_preset(dir: &TempDir) -> std::path::PathBuf {
    let mut preset: Value = serde_norway::from_str(
        &std::fs::read_to_string(crate::support::root().join("policies/tess-private.yaml"))
            .unwrap(),
    )
    .unwrap();
    preset["spec"]["trust"]["requesters"]
        .as_array_mut()
        .unwrap()
        .push(json!(OPERATOR));
    let path = dir.path("operator-trusting.yaml");
    std::fs::write(&path, serde_norway::to_string(&preset).unwrap()).unwrap();
    path
}

#[test]
fn a_plain_kubecluster_passes_for_its_own_tenant_down_to_the_operators_pods() {
    let dir = TempDir::new("operator-preset");
    let preset = operator_trusting_preset(&dir);
    let cluster = kubecluster("alices-analysis");
    let report = check_report_with(&preset, TENANT_NOTEBOOK, &cluster);
    assert_eq!(report["allowed"], true, "alice's KubeCluster: {report:#}");
    for pod in report["objects"][0]["pods"].as_array().expect("pods") {
        assert_eq!(pod["tenant"], "alice", "{pod}");
        assert_eq!(pod["class"], "dask", "{pod}");
    }
    let stored = admitted(&cluster, &report);
    let created = dask(&json!({"operator": {"cluster": stored, "workers": 2}}));
    let created = created.as_array().expect("a list");
    let deployments: Vec<&Value> = created
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(
        deployments.len(),
        3,
        "a scheduler and two workers: {created:#?}"
    );
    for object in created.iter().filter(|o| o["kind"] != "Service") {
        let mut object = object.clone();
        object["metadata"]["namespace"] = json!("tess-private");
        let report = check_report_with(&preset, OPERATOR, &object);
        assert_eq!(
            report["allowed"], true,
            "the operator's {} was refused: {report:#}",
            object["kind"]
        );
        // The TESS hubs do not offer the operator path: as shipped, its objects are an
        // unknown controller's.
        let (allowed, _) = check("tess-private", OPERATOR, &object);
        assert!(
            !allowed,
            "tess-private as shipped let the operator's {} through",
            object["kind"]
        );
        if object["kind"] != "Deployment" {
            continue;
        }
        let pod = templated_pod(&object);
        let report = check_report_with(&preset, REPLICASET_CONTROLLER, &pod);
        assert_eq!(report["allowed"], true, "the operator's pod: {report:#}");
        let judged = &report["objects"][0]["pods"][0];
        assert_eq!(
            (&judged["class"], &judged["tenant"]),
            (&json!("dask"), &json!("alice")),
            "{} is not alice's dask pod",
            text(&pod["metadata"]["name"])
        );
    }
    eprintln!(
        "alice's KubeCluster: {} objects from the operator, every pod hers",
        created.len()
    );
}

#[test]
fn kubeclusters_naming_another_tenant_or_reaching_further_are_refused() {
    let hostile: [(&str, &str, Value); 5] = [
        (
            "/metadata/labels",
            "another tenant's label on the cluster",
            json!({"hub.jupyter.org/username": "bob"}),
        ),
        (
            "/spec/worker/metadata",
            "another tenant's record on the workers",
            json!({"labels": {"hubguard.dev/tenant": "bob"}}),
        ),
        (
            "/spec/scheduler/metadata",
            "another tenant's label on the scheduler",
            json!({"labels": {"hub.jupyter.org/username": "bob"}}),
        ),
        (
            "/spec/worker/spec/volumes",
            "another user's home",
            json!([{"name": "home", "persistentVolumeClaim": {"claimName": "claim-bob"}}]),
        ),
        (
            "/spec/scheduler/spec/hostNetwork",
            "the host's network",
            json!(true),
        ),
    ];
    for (path, what, value) in hostile {
        let mut cluster = kubecluster("not-quite-alices");
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": path, "value": value}])).unwrap();
        json_patch::patch(&mut cluster, &patch).unwrap();
        let (allowed, _) = check("tess-private", TENANT_NOTEBOOK, &cluster);
        assert!(
            !allowed,
            "alice's KubeCluster with {what} was allowed: {cluster:#}"
        );
    }
}

#[test]
fn every_hubs_pods_pass_in_every_environment_without_defaults() {
    for deployment in ["tess-public", "tess-private"] {
        for env in ["staging", "prod"] {
            let values = layered_values(deployment, env);
            // hubguard's node agent blocks the metadata endpoint: no privileged init container.
            assert_eq!(
                values["jupyterhub"]["singleuser"]["cloudMetadata"]["blockWithIptables"],
                false
            );
            let mut request = pods_request(&values, deployment);
            request["servers"] = json!([["alice", ""]]);
            let hub = format!("system:serviceaccount:{deployment}:hub");
            let mut pods = vec![(hub, kubespawner(&request)[0]["pod"].clone())];
            if values["dask-gateway"]["enabled"] == true {
                let built = dask(&gateway_request(
                    &values,
                    deployment,
                    vec![json!({})],
                    json!({}),
                ));
                for role in ["scheduler", "worker"] {
                    pods.push((gateway_controller(deployment), built[0][role].clone()));
                }
            }
            for (requester, pod) in pods {
                let (allowed, mutations) = check(deployment, &requester, &pod);
                let name = text(&pod["metadata"]["name"]).to_string()
                    + text(&pod["metadata"]["generateName"]);
                assert!(allowed, "{deployment} {env}: {name} is refused: {pod:#}");
                // /mutate records the identity in the metadata; no default may be needed.
                let defaults = defaults_beyond_metadata(&mutations);
                assert!(
                    defaults.is_empty(),
                    "{deployment} {env}: {name} would be mutated: {defaults:#?}"
                );
            }
        }
    }
}

/// Whether a NetworkPolicy podSelector selects a pod with `labels` (matchLabels and
/// matchExpressions with In / Exists, the operators these values use).
fn selects(selector: &Value, labels: &Value) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &labels[k] == v);
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| match text(&e["operator"]) {
            "In" => e["values"]
                .as_array()
                .is_some_and(|values| values.contains(&labels[text(&e["key"])])),
            "Exists" => !labels[text(&e["key"])].is_null(),
            other => panic!("selector operator {other} is not modelled"),
        });
    by_labels && by_expressions
}

fn port_in(ports: &Value, port: u64) -> bool {
    ports.as_array().into_iter().flatten().any(|p| {
        let first = p["port"].as_u64().unwrap_or(0);
        let last = p["endPort"].as_u64().unwrap_or(first);
        (first..=last).contains(&port) && p["protocol"] != "UDP"
    })
}

#[test]
fn notebooks_reach_dask_pods_only_through_the_gateway() {
    let deployment = "tess-private";
    let preset: Value = serde_norway::from_str(
        &std::fs::read_to_string(crate::support::root().join("policies/tess-private.yaml"))
            .unwrap(),
    )
    .unwrap();
    // Dask pods of both kinds, as their real builders make them: a gateway cluster's scheduler
    // and worker, and the pods the operator would make for a notebook's KubeCluster.
    let cluster = kubecluster("alices-analysis");
    let stored = admitted(
        &cluster,
        &check_report(deployment, TENANT_NOTEBOOK, &cluster),
    );
    let created = dask(&json!({"operator": {"cluster": stored, "workers": 1}}));
    let mut pods: Vec<Value> = created
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .map(templated_pod)
        .collect();
    let values = layered_values(deployment, "prod");
    let gateway = &dask(&gateway_request(
        &values,
        deployment,
        vec![json!({})],
        json!({}),
    ))[0];
    pods.push(gateway["scheduler"].clone());
    pods.push(gateway["worker"].clone());
    for env in ["staging", "prod"] {
        let values = layered_values(deployment, env);
        let egress = &values["jupyterhub"]["singleuser"]["networkPolicy"]["egress"];
        for pod in &pods {
            let labels = &pod["metadata"]["labels"];
            let name =
                text(&pod["metadata"]["name"]).to_string() + text(&pod["metadata"]["generateName"]);
            for number in 8786..=8790 {
                let z2jh = egress.as_array().into_iter().flatten().any(|rule| {
                    port_in(&rule["ports"], number)
                        && rule["to"].as_array().into_iter().flatten().any(|peer| {
                            peer["namespaceSelector"].is_null()
                                && selects(&peer["podSelector"], labels)
                        })
                });
                let agent = preset["spec"]["classes"]["user"]["egress"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|rule| {
                        (rule["to"]["sameTenant"] == true || rule["to"]["namespace"].is_string())
                            && port_in(&rule["ports"], number)
                    });
                assert!(
                    !z2jh,
                    "{env}: z2jh's user NetworkPolicy opens {name}:{number} to notebooks"
                );
                assert!(
                    !agent,
                    "the preset's user egress opens {name}:{number} to notebooks"
                );
            }
        }
    }
}
