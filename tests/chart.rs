//! charts/hubguard with the real Helm, offline: lint and template with the default, tess and
//! monitoring values; what the rendered objects promise (fail closed only where hubguard
//! governs, least privilege, hardened pods); the schema refusing bad values.

use crate::support::controlplane::helm_offline;
use crate::support::{find_object as find, root, yaml_documents, TempDir};
use serde_json::Value;

const CHART: &str = "charts/hubguard";

fn helm(dir: &TempDir, args: &[&str]) -> (bool, String, String) {
    let out = helm_offline(&dir.0, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn render(dir: &TempDir, sets: &[&str]) -> Vec<Value> {
    render_for_api(dir, &[], sets)
}

#[test]
fn lints_with_default_tess_and_monitoring_values() {
    let dir = TempDir::new("chart-lint");
    let chart = root().join(CHART);
    let chart = chart.to_str().unwrap();
    for sets in [
        vec![],
        vec!["policy.preset=tess-public"],
        vec!["policy.preset=tess-private", "nodeAgent.dryRun=true"],
        vec![
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "metrics.grafanaDashboard.enabled=true",
        ],
        vec!["tls.mode=cert-manager"],
        vec![
            "tls.mode=external",
            "tls.secretName=my-tls",
            "webhook.caBundle=Zm9v",
        ],
        vec![
            "webhook.url=https://127.0.0.1:8443",
            "nodeAgent.enabled=false",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let (ok, stdout, stderr) = helm(&dir, &args);
        assert!(ok, "helm lint {sets:?}:\n{stdout}\n{stderr}");
    }
}

#[test]
fn webhook_configurations_fail_closed_only_where_hubguard_governs() {
    let dir = TempDir::new("chart-webhooks");
    let objects = render(&dir, &["webhook.excludeNamespaces={monitoring}"]);
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = find(&objects, kind, "hubguard");
        let webhook = &config["webhooks"][0];
        assert_eq!(webhook["failurePolicy"], "Fail");
        assert!(
            webhook["timeoutSeconds"].as_i64().unwrap() <= 5,
            "a short timeout"
        );
        assert_eq!(webhook["sideEffects"], "None");
        let excluded = &webhook["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(excluded["operator"], "NotIn");
        let values: Vec<&str> = excluded["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(values, ["kube-system", "hubguard", "monitoring"]);
        // Exemptions rest on where the request is, never on a label anyone can write.
        let condition = webhook["matchConditions"][0]["expression"]
            .as_str()
            .unwrap();
        assert_eq!(condition, "request.namespace != \"hubguard\"");
        assert!(!webhook.to_string().contains("object.metadata.labels"));
        assert_eq!(
            webhook["clientConfig"]["service"]["name"],
            "hubguard-webhook"
        );
    }
    // The mutating webhook never rewrites a ReplicaSet's template: the deployment controller
    // would not recognise its own ReplicaSet and create new ones without end.
    let mutating = find(&objects, "MutatingWebhookConfiguration", "hubguard");
    let mutated: Vec<&str> = mutating["webhooks"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap().iter())
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        mutated.contains(&"deployments") && mutated.contains(&"pods"),
        "{mutated:?}"
    );
    assert!(!mutated.contains(&"replicasets"), "{mutated:?}");
    let validating = find(&objects, "ValidatingWebhookConfiguration", "hubguard");
    let resources: Vec<String> = validating["webhooks"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
        })
        .collect();
    for wanted in [
        "pods",
        "pods/ephemeralcontainers",
        "pods/resize",
        "pods/exec",
        "pods/attach",
        "deployments",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "daskclusters",
        "daskworkergroups",
        "daskjobs",
        "services",
    ] {
        assert!(
            resources.iter().any(|r| r == wanted),
            "{wanted} not registered: {resources:?}"
        );
    }
    // Deletions and evictions go to their own entry, which the cluster's own machinery never
    // waits on.
    let deletes = &validating["webhooks"][1];
    assert_eq!(deletes["name"], "validate-delete.hubguard.dev");
    let registered: Vec<String> = deletes["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let operation = r["operations"][0].as_str().unwrap().to_string();
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |x| format!("{operation} {}", x.as_str().unwrap()))
        })
        .collect();
    for wanted in [
        "DELETE pods",
        "DELETE services",
        "DELETE persistentvolumeclaims",
        "DELETE deployments",
        "DELETE daskclusters",
        "CREATE pods/eviction",
    ] {
        assert!(
            registered.iter().any(|r| r == wanted),
            "{wanted} not registered: {registered:?}"
        );
    }
    let conditions = deletes["matchConditions"].to_string();
    for spared in [
        "system:node:",
        "system:kube-controller-manager",
        "system:serviceaccounts:kube-system",
        "system:masters",
    ] {
        assert!(
            conditions.contains(spared),
            "{spared} waits on deletions: {conditions}"
        );
    }
    // Cluster-scoped kinds hubguard does not judge are never registered.
    for webhook in validating["webhooks"].as_array().unwrap() {
        for rule in webhook["rules"].as_array().unwrap() {
            assert_eq!(rule["scope"], "Namespaced");
        }
    }
}

#[test]
fn webhook_deployment_is_hardened_and_highly_available() {
    let dir = TempDir::new("chart-deployment");
    let objects = render(&dir, &[]);
    let deployment = find(&objects, "Deployment", "hubguard-webhook");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--manage-tls-secret=hubguard/hubguard-webhook-tls"),
        "{args:?}"
    );
    assert!(
        args.contains(&"--manage-webhook-configuration=hubguard"),
        "{args:?}"
    );
    let pdb = find(&objects, "PodDisruptionBudget", "hubguard-webhook");
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    // The policy ConfigMap holds exactly the preset, which hubguard itself accepts.
    let config = find(&objects, "ConfigMap", "hubguard-policy");
    let policy = config["data"]["policy.yaml"].as_str().unwrap();
    let preset = std::fs::read_to_string(root().join("policies/tess-private.yaml")).unwrap();
    assert_eq!(policy.trim_end(), preset.trim_end());
}

#[test]
fn node_agent_gets_only_the_capabilities_it_needs() {
    let dir = TempDir::new("chart-agent");
    let objects = render(&dir, &[]);
    let daemonset = find(&objects, "DaemonSet", "hubguard-node-agent");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert!(pod.get("hostPID").is_none() && pod.get("hostNetwork").is_none());
    assert_eq!(
        pod["tolerations"][0]["operator"], "Exists",
        "runs on every node"
    );
    let sc = &pod["containers"][0]["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let added: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(added, ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"]);
    let mounts: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(mounts, ["/sys/fs/bpf", "/sys/fs/cgroup"]);

    // RBAC: the agent reads pods and services, and takes its not-ready taint off its node.
    let agent_role = find(&objects, "ClusterRole", "hubguard-node-agent");
    assert_eq!(
        agent_role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}
        ])
    );
    // ... and follows its own DaemonSet, by name, in its own namespace.
    let own_daemonset = find(&objects, "Role", "hubguard-node-agent");
    assert_eq!(
        own_daemonset["rules"],
        serde_json::json!([
            {"apiGroups": ["apps"], "resources": ["daemonsets"],
             "resourceNames": ["hubguard-node-agent"], "verbs": ["get", "list", "watch"]}
        ])
    );
    // The webhook: get pods and DaskClusters (the exec and worker-group look-ups), and its
    // own webhook configurations and Secret by name.
    let webhook_role = find(&objects, "ClusterRole", "hubguard-webhook");
    assert_eq!(
        webhook_role["rules"],
        serde_json::json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskclusters"], "verbs": ["get"]},
            {"apiGroups": ["admissionregistration.k8s.io"],
             "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
             "resourceNames": ["hubguard"], "verbs": ["get", "patch"]}
        ])
    );
}

#[test]
fn components_never_live_in_the_namespace_they_guard() {
    let dir = TempDir::new("chart-components-namespace");
    let chart = root().join(CHART);
    let template = |sets: &[&str]| {
        let mut args = vec![
            "template",
            "tess",
            chart.to_str().unwrap(),
            "--namespace",
            "tess-private",
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        helm(&dir, &args)
    };
    // A hub's own hubguard guards the hub's namespace and runs beside it, in a namespace of its
    // own that the chart creates.
    let (ok, stdout, stderr) = template(&["scope=releaseNamespace"]);
    assert!(ok, "{stderr}");
    let objects = yaml_documents(&stdout);
    let namespace = find(&objects, "Namespace", "tess-private-hubguard");
    assert_eq!(namespace["metadata"]["name"], "tess-private-hubguard");
    for o in &objects {
        let ns = o["metadata"]["namespace"].as_str();
        assert!(
            ns.is_none() || ns == Some("tess-private-hubguard"),
            "{} {} in {ns:?}",
            o["kind"],
            o["metadata"]["name"]
        );
    }
    let webhook = &find(&objects, "ValidatingWebhookConfiguration", "tess-hubguard")["webhooks"][0];
    assert_eq!(
        webhook["namespaceSelector"]["matchExpressions"][0]["values"],
        serde_json::json!(["tess-private"])
    );
    assert_eq!(
        webhook["matchConditions"][0]["expression"],
        "request.namespace != \"tess-private-hubguard\""
    );
    // Putting the components in the guarded namespace is refused, saying why.
    let (ok, _, stderr) = template(&["scope=releaseNamespace", "componentsNamespace=tess-private"]);
    assert!(!ok);
    assert!(
        stderr.contains("hubguard's components must live where tenants cannot create pods"),
        "{stderr}"
    );
}

#[test]
fn monitoring_objects_use_the_contract_metric_names() {
    let dir = TempDir::new("chart-monitoring");
    let objects = render(
        &dir,
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "metrics.grafanaDashboard.enabled=true",
        ],
    );
    let rules = find(&objects, "PrometheusRule", "hubguard");
    let alerts: Vec<&str> = rules["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    for wanted in [
        "HubguardWebhookErrors",
        "HubguardWebhookLatencyHigh",
        "HubguardViolationSpike",
        "HubguardNodeAgentNotReady",
        "HubguardNodeAgentUnguarded",
        "HubguardNodeAgentSyncFailing",
        "HubguardPolicyReloadErrors",
    ] {
        assert!(alerts.contains(&wanted), "{wanted}: {alerts:?}");
    }
    let dashboard = find(&objects, "ConfigMap", "hubguard-dashboard");
    let json: Value =
        serde_json::from_str(dashboard["data"]["hubguard.json"].as_str().unwrap()).unwrap();
    let metrics_doc = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let everything = format!("{}{}", serde_json::to_string(&rules).unwrap(), json);
    for name in regex_names(&everything) {
        assert!(
            metrics_doc.contains(&format!("`{name}`")),
            "{name} is not in docs/metrics.md"
        );
    }
    find(&objects, "ServiceMonitor", "hubguard-webhook");
}

/// Every `hubguard_*` metric name used (histogram suffixes folded into the histogram).
fn regex_names(text: &str) -> std::collections::BTreeSet<String> {
    let re = regex::Regex::new(r"hubguard_[a-z_]+").unwrap();
    re.find_iter(text)
        .map(|m| {
            let name = m.as_str();
            name.strip_suffix("_bucket").unwrap_or(name).to_string()
        })
        .collect()
}

#[test]
fn schema_refuses_bad_values_naming_them() {
    let dir = TempDir::new("chart-schema");
    let chart = root().join(CHART);
    for (set, mentions) in [
        ("webhook.timeoutSeconds=60", "timeoutSeconds"),
        ("policy.preset=nope", "preset"),
        ("tls.mode=sometimes", "mode"),
        ("webhook.failurePolicy=Maybe", "failurePolicy"),
        ("webhook.replicass=2", "replicass"),
    ] {
        let (ok, _, stderr) = helm(
            &dir,
            &["template", "x", chart.to_str().unwrap(), "--set", set],
        );
        assert!(!ok, "{set} was accepted");
        assert!(stderr.contains(mentions), "{set}: {stderr}");
    }
}

#[test]
fn shipped_presets_in_the_chart_match_policies() {
    for preset in ["baseline", "restricted", "tess-public", "tess-private"] {
        let original =
            std::fs::read_to_string(root().join(format!("policies/{preset}.yaml"))).unwrap();
        let copy =
            std::fs::read_to_string(root().join(format!("{CHART}/files/policies/{preset}.yaml")))
                .unwrap();
        assert_eq!(
            original, copy,
            "{CHART}/files/policies/{preset}.yaml differs from policies/{preset}.yaml: \
             cp policies/{preset}.yaml {CHART}/files/policies/"
        );
    }
}

#[test]
fn admin_groups_join_the_presets_trusted_groups() {
    let dir = TempDir::new("chart-admin-groups");
    // kubeadm's admin.conf is in kubeadm:cluster-admins, not system:masters, since 1.29.
    let objects = render(&dir, &["policy.adminGroups={kubeadm:cluster-admins}"]);
    let config = find(&objects, "ConfigMap", "hubguard-policy");
    let text = config["data"]["policy.yaml"].as_str().unwrap();
    let policy: Value = serde_norway::from_str(text).unwrap();
    assert_eq!(
        policy["spec"]["trust"]["groups"],
        serde_json::json!([
            "system:masters",
            "system:serviceaccounts:kube-system",
            "kubeadm:cluster-admins"
        ])
    );
    // Everything else of the preset is kept, and hubguard accepts the result.
    assert!(policy["spec"]["trust"]["requesters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "system:kube-controller-manager"));
    let file = dir.path("policy.yaml");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(crate::support::binary("hubguard"))
        .args(["policy", "validate"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn render_for_api(dir: &TempDir, api_versions: &[&str], sets: &[&str]) -> Vec<Value> {
    let chart = root().join(CHART);
    let mut args = vec![
        "template",
        "hubguard",
        chart.to_str().unwrap(),
        "--namespace",
        "hubguard",
    ];
    for version in api_versions {
        args.extend(["--api-versions", version]);
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, stdout, stderr) = helm(dir, &args);
    assert!(ok, "helm template {api_versions:?} {sets:?}: {stderr}");
    yaml_documents(&stdout)
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    objects.iter().filter_map(|o| o["kind"].as_str()).collect()
}

fn webhook_args(objects: &[Value]) -> Vec<String> {
    let deployment = find(objects, "Deployment", "hubguard-webhook");
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// With `webhook.mutation=auto`, where the API server has MutatingAdmissionPolicy (Kubernetes
/// 1.36+) the defaults are set in process by the policy the webhook generates, bound where the
/// webhooks apply; older clusters, and `webhook.mutation=webhook` (the default), keep the
/// `/mutate` webhook.
#[test]
fn defaults_come_from_a_mutating_admission_policy_where_the_api_server_has_it() {
    const MAP: &str = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy";
    let dir = TempDir::new("chart-mutation");
    // The default stays /mutate, which costs the API server less (docs/webhook.md).
    let default = render_for_api(&dir, &[MAP], &[]);
    assert!(kinds(&default).contains(&"MutatingWebhookConfiguration"));
    let with_map = render_for_api(
        &dir,
        &[MAP],
        &[
            "webhook.mutation=auto",
            "webhook.excludeNamespaces={monitoring}",
        ],
    );
    let kinds_with_map = kinds(&with_map);
    assert!(!kinds_with_map.contains(&"MutatingWebhookConfiguration"));
    let binding = find(&with_map, "MutatingAdmissionPolicyBinding", "hubguard");
    assert_eq!(binding["spec"]["policyName"], "hubguard");
    let validating = find(&with_map, "ValidatingWebhookConfiguration", "hubguard");
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"],
        validating["webhooks"][0]["namespaceSelector"],
        "the defaults apply exactly where the judgement does"
    );
    let args = webhook_args(&with_map);
    assert!(
        args.iter()
            .any(|a| a == "--manage-mutating-policy=hubguard"),
        "{args:?}"
    );
    let role = find(&with_map, "ClusterRole", "hubguard-webhook");
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"][0] == "mutatingadmissionpolicies"
                && r["resourceNames"][0] == "hubguard"),
        "{role}"
    );

    // The generated policy mutates exactly what the /mutate webhook would be sent.
    let older = render_for_api(&dir, &[], &["webhook.mutation=auto"]);
    let mutating = find(&older, "MutatingWebhookConfiguration", "hubguard");
    assert!(!kinds(&older).contains(&"MutatingAdmissionPolicyBinding"));
    assert!(!webhook_args(&older)
        .iter()
        .any(|a| a.starts_with("--manage-mutating-policy")));
    let generated = crate::cli::hubguard(
        &["policy", "mutating-policy", "policies/tess-private.yaml"],
        None,
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let generated = &yaml_documents(&String::from_utf8_lossy(&generated.stdout))[0];
    let resources = |rules: &Value| -> Vec<String> {
        let mut all: Vec<String> = rules
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                let group = r["apiGroups"][0].as_str().unwrap().to_string();
                r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |x| format!("{group}/{}", x.as_str().unwrap()))
            })
            .collect();
        all.sort();
        all
    };
    assert_eq!(
        resources(&generated["spec"]["matchConstraints"]["resourceRules"]),
        resources(&mutating["webhooks"][0]["rules"])
    );

    let forced = render_for_api(&dir, &[MAP], &["webhook.mutation=webhook"]);
    assert!(kinds(&forced).contains(&"MutatingWebhookConfiguration"));
    assert!(!kinds(&forced).contains(&"MutatingAdmissionPolicyBinding"));
}
