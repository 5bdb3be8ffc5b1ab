//! The secured hubs (charts/secured-hub with charts/deployments/*): layered values, sops
//! secrets with a throwaway age key, hubguard's part linted and rendered by the real Helm,
//! the deploy command against the local control plane, the pods the values produce passing
//! their presets unmutated, and the user image definition. The upstream charts (z2jh,
//! dask-gateway) cannot be downloaded here: the deploy command names them as missing.

pub(crate) use crate::support::hub::{layered_values, yaml};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::controlplane::{tool, tools_bin, ControlPlane};
use crate::support::{find_object, root, yaml_documents, TempDir};
use serde_json::{json, Map, Value};

const DEPLOYMENTS: [(&str, &str); 2] = [
    ("tess-public", "tess-public"),
    ("tess-private", "tess-private"),
];

/// A throwaway age key and a sops config that encrypts for it.
struct TestKey {
    dir: TempDir,
    recipient: String,
}

impl TestKey {
    fn new() -> TestKey {
        let dir = TempDir::new("age-key");
        let key = dir.path("key.txt");
        let out = Command::new(tool("age-keygen"))
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&key).unwrap();
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .expect("age-keygen writes the public key")
            .to_string();
        std::fs::write(
            dir.path("sops.yaml"),
            format!("creation_rules:\n  - age: {recipient}\n"),
        )
        .unwrap();
        TestKey { dir, recipient }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path("key.txt")
    }

    fn sops(&self, args: &[&str], input: &Path) -> Output {
        Command::new(tool("sops"))
            .arg("--config")
            .arg(self.dir.path("sops.yaml"))
            .args(args)
            .arg(input)
            .env("SOPS_AGE_KEY_FILE", self.key_file())
            .output()
            .unwrap()
    }

    fn encrypt(&self, plaintext: &str) -> String {
        let plain = self.dir.path("plain.yaml");
        std::fs::write(&plain, plaintext).unwrap();
        let out = self.sops(
            &["--encrypt", "--input-type", "yaml", "--output-type", "yaml"],
            &plain,
        );
        std::fs::remove_file(&plain).unwrap();
        assert!(
            out.status.success(),
            "sops --encrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn decrypt(&self, file: &Path) -> String {
        let out = self.sops(&["--decrypt"], file);
        assert!(
            out.status.success(),
            "sops --decrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn with_tools_path(command: &mut Command) -> &mut Command {
    let path = format!(
        "{}:{}",
        tools_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command.env("PATH", path)
}

/// `scripts/deploy` (or another script) with the tools on PATH: (exit code, stdout, stderr).
fn script(name: &str, args: &[&str], envs: &[(&str, &Path)]) -> (i32, String, String) {
    let mut command = Command::new(root().join("scripts").join(name));
    with_tools_path(&mut command).args(args);
    for (k, v) in envs {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn secrets_round_trip_with_a_test_key() {
    let key = TestKey::new();
    let plaintext = "jupyterhub:\n  proxy:\n    secretToken: do-not-leak-0123456789\n  hub:\n    config:\n      GitHubOAuthenticator:\n        client_secret: oauth-secret-9876543210\n";
    let encrypted = key.encrypt(plaintext);
    assert!(
        !encrypted.contains("do-not-leak") && !encrypted.contains("oauth-secret"),
        "{encrypted}"
    );
    let doc = yaml(&encrypted);
    assert!(doc["jupyterhub"]["proxy"]["secretToken"]
        .as_str()
        .unwrap()
        .starts_with("ENC["));
    assert_eq!(doc["sops"]["age"][0]["recipient"], key.recipient.as_str());
    let file = key.dir.path("enc.yaml");
    std::fs::write(&file, &encrypted).unwrap();
    assert_eq!(yaml(&key.decrypt(&file)), yaml(plaintext));
}

/// Every scalar of a committed secrets file is encrypted, for exactly the recipients that
/// `.sops.yaml` lists for its path.
#[test]
fn committed_secrets_are_encrypted_for_the_listed_recipients() {
    let sops_config = yaml(&std::fs::read_to_string(root().join(".sops.yaml")).unwrap());
    let listed: Vec<String> = sops_config["creation_rules"][0]["age"]
        .as_str()
        .unwrap()
        .split(',')
        .map(|r| r.trim().to_string())
        .collect();
    let mut files = 0;
    for (deployment, _) in DEPLOYMENTS {
        for env in ["staging", "prod"] {
            let path = root().join(format!(
                "charts/deployments/{deployment}/enc-{env}.secret.values.yaml"
            ));
            let doc = yaml(&std::fs::read_to_string(&path).unwrap());
            let mut leaves = Vec::new();
            collect_leaves(&doc, "", &mut leaves);
            assert!(!leaves.is_empty(), "{}", path.display());
            for (at, value) in leaves {
                assert!(
                    value.starts_with("ENC["),
                    "{}: {at} is not encrypted",
                    path.display()
                );
            }
            let mut recipients: Vec<String> = doc["sops"]["age"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["recipient"].as_str().unwrap().to_string())
                .collect();
            recipients.sort();
            let mut want = listed.clone();
            want.sort();
            assert_eq!(recipients, want, "{}", path.display());
            files += 1;
        }
    }
    assert_eq!(files, 4);
}

fn collect_leaves(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if at.is_empty() && k == "sops" {
                    continue;
                }
                collect_leaves(v, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| collect_leaves(v, &format!("{at}[{i}]"), out)),
        other => out.push((
            at.to_string(),
            other.as_str().unwrap_or(&other.to_string()).to_string(),
        )),
    }
}

/// A deployment directory with the given layers and secrets encrypted for `key`.
fn deployment_dir(
    key: &TestKey,
    name: &str,
    common: &str,
    env_values: &str,
    secrets: &str,
) -> TempDir {
    let dir = TempDir::new("deployments");
    let d = dir.path(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("common.values.yaml"), common).unwrap();
    std::fs::write(d.join("staging.values.yaml"), env_values).unwrap();
    std::fs::write(
        d.join("enc-staging.secret.values.yaml"),
        key.encrypt(secrets),
    )
    .unwrap();
    dir
}

fn render(key: &TestKey, deployments: &Path, name: &str, env: &str) -> Vec<Value> {
    let empty_cache = TempDir::new("chart-cache");
    let (code, stdout, stderr) = script(
        "deploy",
        &[
            name,
            env,
            "--render",
            "--allow-missing-dependencies",
            "--deployments-dir",
            deployments.to_str().unwrap(),
            "--chart-cache",
            empty_cache.0.to_str().unwrap(),
        ],
        &[("SOPS_AGE_KEY_FILE", &key.key_file())],
    );
    assert_eq!(
        code, 3,
        "render of {name} {env} (3: without the upstream charts): {stderr}"
    );
    yaml_documents(&stdout)
}

/// One value set at each level; each case removes the later levels: the latest file wins.
#[test]
fn later_values_files_win_at_every_level() {
    let key = TestKey::new();
    let set = |seconds: u32| format!("hubguard:\n  webhook:\n    timeoutSeconds: {seconds}\n");
    let cases: &[(&str, String, String, String, u64)] = &[
        ("4. secrets over the environment", set(4), set(5), set(6), 6),
        (
            "3. the environment over the deployment",
            set(4),
            set(5),
            "{}\n".into(),
            5,
        ),
        (
            "2. the deployment over the chart",
            set(4),
            "{}\n".into(),
            "{}\n".into(),
            4,
        ),
        (
            "1. the chart's values (charts/secured-hub/values.yaml)",
            "{}\n".into(),
            "{}\n".into(),
            "{}\n".into(),
            3,
        ),
    ];
    for (level, common, staging, secrets, want) in cases {
        let dir = deployment_dir(&key, "layers", common, staging, secrets);
        let objects = render(&key, &dir.0, "layers", "staging");
        let webhook = find_object(&objects, "ValidatingWebhookConfiguration", "hubguard");
        assert_eq!(
            webhook["webhooks"][0]["timeoutSeconds"],
            json!(want),
            "level {level}"
        );
    }
}

/// Both hubs, both environments, through scripts/deploy-throwaway (the pull-request path):
/// hubguard's part lints and renders with the hub's preset, scoped to the hub's namespace.
#[test]
fn hubguard_part_lints_and_renders_for_every_hub() {
    let empty_cache = TempDir::new("chart-cache");
    let cache = empty_cache.0.to_str().unwrap();
    for (deployment, preset) in DEPLOYMENTS {
        for env in ["staging", "prod"] {
            let (code, stdout, stderr) = script(
                "deploy-throwaway",
                &[
                    deployment,
                    env,
                    "--lint",
                    "--allow-missing-dependencies",
                    "--chart-cache",
                    cache,
                ],
                &[],
            );
            assert_eq!(code, 3, "lint {deployment} {env}: {stderr}");
            assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
            assert!(
                stderr.contains("dependency missing: jupyterhub 4.4.0: not in the chart cache"),
                "the missing upstream chart is named: {stderr}"
            );
            let (code, stdout, stderr) = script(
                "deploy-throwaway",
                &[
                    deployment,
                    env,
                    "--render",
                    "--allow-missing-dependencies",
                    "--chart-cache",
                    cache,
                ],
                &[],
            );
            assert_eq!(code, 3, "render {deployment} {env}: {stderr}");
            let objects = yaml_documents(&stdout);
            let policy = find_object(&objects, "ConfigMap", "hubguard-policy");
            let policy = yaml(policy["data"]["policy.yaml"].as_str().unwrap());
            assert_eq!(policy["metadata"]["name"], preset);
            assert_eq!(policy["spec"]["namespaces"]["include"], json!([deployment]));
            for kind in [
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ] {
                let webhook = find_object(&objects, kind, &format!("{deployment}-hubguard"));
                assert_eq!(
                    webhook["webhooks"][0]["namespaceSelector"]["matchExpressions"][0],
                    json!({"key": "kubernetes.io/metadata.name", "operator": "In", "values": [deployment]}),
                    "{kind} of {deployment} judges only its namespace"
                );
            }
            let agent = find_object(&objects, "DaemonSet", "hubguard-node-agent");
            let args = agent["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
            assert!(
                args.contains(&format!("--bpffs=/sys/fs/bpf/{deployment}-hubguard")),
                "{args}"
            );
            if deployment == "tess-public" {
                assert!(
                    !objects.iter().any(|o| o["kind"] == "NetworkPolicy"),
                    "no dask NetworkPolicy without dask"
                );
            } else {
                let policy = find_object(&objects, "NetworkPolicy", "-dask");
                let dask = &policy["spec"]["podSelector"];
                assert_eq!(
                    dask["matchLabels"]["gateway.dask.org/instance"],
                    format!("{deployment}-dask-gateway"),
                    "selects this hub's gateway clusters"
                );
                // Every rule that names pods names ports: no pod of the namespace, a Dask pod
                // included, reaches another on every port.
                for direction in ["ingress", "egress"] {
                    for rule in policy["spec"][direction].as_array().unwrap() {
                        let peers = rule["from"].as_array().or(rule["to"].as_array()).unwrap();
                        assert!(
                            rule["ports"].as_array().is_some_and(|p| !p.is_empty()),
                            "{direction} rule without ports: {rule}"
                        );
                        if peers.iter().any(|p| p["podSelector"] == *dask) {
                            assert_eq!(
                                rule["ports"],
                                json!([{"port": 8786, "endPort": 8790, "protocol": "TCP"}]),
                                "Dask to Dask on the ports the hub fixes"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn deploy_installs_hubguards_part_into_the_control_plane_and_names_what_is_missing() {
    let plane = ControlPlane::start();
    let empty_cache = TempDir::new("chart-cache");
    let (code, stdout, stderr) = script(
        "deploy-throwaway",
        &[
            "tess-private",
            "staging",
            "--allow-missing-dependencies",
            "--chart-cache",
            empty_cache.0.to_str().unwrap(),
            "--health-timeout",
            "5",
        ],
        &[("KUBECONFIG", &plane.kubeconfig)],
    );
    // No kubelet here: hubguard's pods never run, so the health check must say so (exit 4).
    assert_eq!(code, 4, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for line in [
        "deployment/tess-private-hubguard-webhook NOT READY",
        "daemonset/tess-private-hubguard-node-agent NOT READY",
        "hub API NOT DEPLOYED (jupyterhub chart missing)",
        "NOT DEPLOYED jupyterhub 4.4.0: not in the chart cache",
        "NOT DEPLOYED dask-gateway 2026.3.0: not in the chart cache",
    ] {
        assert!(
            report.iter().any(|l| l.starts_with(line)),
            "the report says {line:?}:\n{stdout}"
        );
    }
    let release = plane.helm(&["status", "tess-private", "-n", "tess-private", "-o", "json"]);
    assert!(
        release.status.success(),
        "{}",
        String::from_utf8_lossy(&release.stderr)
    );
    let release: Value = serde_json::from_slice(&release.stdout).unwrap();
    assert_eq!(release["info"]["status"], "deployed");
    plane.kubectl(&[
        "get",
        "validatingwebhookconfiguration",
        "tess-private-hubguard",
    ]);
    // hubguard's components run beside the hub's namespace, never in it.
    plane.kubectl(&[
        "get",
        "daemonset",
        "-n",
        "tess-private-hubguard",
        "tess-private-hubguard-node-agent",
    ]);
    let policy = plane.kubectl(&[
        "get",
        "configmap",
        "-n",
        "tess-private-hubguard",
        "tess-private-hubguard-policy",
        "-o",
        "jsonpath={.data.policy\\.yaml}",
    ]);
    assert!(policy.contains("name: tess-private"), "{policy}");

    // Without --allow-missing-dependencies nothing is deployed, and the reason is given.
    let (code, _, stderr) = script(
        "deploy-throwaway",
        &[
            "tess-public",
            "staging",
            "--chart-cache",
            empty_cache.0.to_str().unwrap(),
        ],
        &[("KUBECONFIG", &plane.kubeconfig)],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not deploying: 2 chart dependencies missing"),
        "{stderr}"
    );
    let releases = plane.helm(&["list", "-A", "-q"]);
    assert_eq!(
        String::from_utf8_lossy(&releases.stdout).trim(),
        "tess-private"
    );
}

/// The patches of a `check` report that set defaults, beyond the identity `/mutate` records in
/// the metadata.
pub(crate) fn defaults_beyond_metadata(mutations: &Value) -> Vec<&Value> {
    mutations
        .as_array()
        .into_iter()
        .flatten()
        .filter(|op| !op["path"].as_str().unwrap_or("").starts_with("/metadata"))
        .collect()
}

/// `hubguard check` as the requester that creates the pod: (allowed, mutations).
pub(crate) fn check(policy: &str, requester: &str, pod: &Value) -> (bool, Value) {
    let report = check_report(policy, requester, pod);
    (
        report["allowed"] == true,
        report["objects"][0]["mutations"].clone(),
    )
}

/// `hubguard check -o json`'s whole report on one object, judged as `requester`.
pub(crate) fn check_report(policy: &str, requester: &str, object: &Value) -> Value {
    check_report_with(
        &root().join(format!("policies/{policy}.yaml")),
        requester,
        object,
    )
}

/// `check_report` with the policy file at `policy`.
pub(crate) fn check_report_with(policy: &Path, requester: &str, object: &Value) -> Value {
    let dir = TempDir::new("hub-pod");
    let file = dir.path("pod.json");
    std::fs::write(&file, serde_json::to_string(object).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hubguard"))
        .args(["check", "-o", "json", "--policy"])
        .arg(policy)
        .args(["--as", requester])
        .arg(&file)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// `scheme://host[:port]/...` as (service, namespace, port): a Service named by its short or
/// `<name>.<namespace>` DNS name, in `namespace` unless the name says another.
fn service_address(address: &str, namespace: &str) -> (String, String, u16) {
    let (scheme, rest) = address
        .split_once("://")
        .unwrap_or_else(|| panic!("{address}: no scheme"));
    let authority = rest.split('/').next().unwrap();
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, port.parse().unwrap()),
        None => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    let mut labels = host.split('.');
    let service = labels.next().unwrap().to_string();
    let namespace = labels.next().unwrap_or(namespace).to_string();
    (service, namespace, port)
}

/// Does the preset's user class open `port` of `namespace/service`?
fn user_egress_opens(preset: &Value, namespace: &str, service: &str, port: u16) -> bool {
    let target = format!("{namespace}/{service}");
    preset["spec"]["classes"]["user"]["egress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| rule["to"]["service"] == target.as_str())
        .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
        .any(|p| {
            let low = p["port"].as_u64().unwrap_or(0);
            let high = p["endPort"].as_u64().unwrap_or(low);
            (low..=high).contains(&u64::from(port))
        })
}

/// Notebooks on tess-private reach dask-gateway on one path that every layer opens: the API at
/// the proxy's `/services/dask-gateway` route (which exists only when the hub's service has a
/// url, pointing at the gateway's traefik), the schedulers at traefik itself; hubguard's
/// preset opens both Services, and z2jh's user NetworkPolicy opens traefik's pods (whose
/// container port 8000 serves the Service's port 80 for web and scheduler traffic alike, in
/// dask-gateway 2026.3.0's chart).
#[test]
fn notebooks_reach_dask_gateway_on_a_path_every_layer_opens() {
    let deployment = "tess-private";
    let preset =
        yaml(&std::fs::read_to_string(root().join(format!("policies/{deployment}.yaml"))).unwrap());
    for env in ["staging", "prod"] {
        let values = layered_values(deployment, env);
        let hub = &values["jupyterhub"];
        let env_of = |key: &str| {
            hub["singleuser"]["extraEnv"][key]
                .as_str()
                .unwrap_or_else(|| panic!("{env}: singleuser.extraEnv.{key} is unset"))
                .to_string()
        };
        let traefik = format!("traefik-{deployment}-dask-gateway");

        let api = service_address(&env_of("DASK_GATEWAY__ADDRESS"), deployment);
        assert_eq!(
            (api.0.as_str(), api.1.as_str()),
            ("proxy-public", deployment),
            "{env}: notebooks reach the gateway's API through the proxy"
        );
        let route = hub["hub"]["services"]["dask-gateway"]["url"]
            .as_str()
            .unwrap_or_else(|| {
                panic!("{env}: hub.services.dask-gateway has no url: the proxy has no route")
            });
        let routed = service_address(route, deployment);
        assert_eq!(
            (routed.0.as_str(), routed.1.as_str(), routed.2),
            (traefik.as_str(), deployment, 80),
            "{env}: the proxy's route leads to the gateway's traefik"
        );
        let schedulers = service_address(&env_of("DASK_GATEWAY__PROXY_ADDRESS"), deployment);
        assert_eq!(
            (schedulers.0.as_str(), schedulers.1.as_str(), schedulers.2),
            (traefik.as_str(), deployment, 80),
            "{env}: schedulers are reached through traefik"
        );
        for (service, namespace, port) in [&api, &schedulers] {
            assert!(
                user_egress_opens(&preset, namespace, service, *port),
                "{env}: the {deployment} preset's user egress does not open {namespace}/{service}:{port}"
            );
        }

        let traefik_pods = json!({
            "app.kubernetes.io/name": "dask-gateway",
            "app.kubernetes.io/instance": deployment,
            "app.kubernetes.io/component": "traefik",
        });
        let opened = hub["singleuser"]["networkPolicy"]["egress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| {
                let to_traefik = rule["to"].as_array().into_iter().flatten().any(|peer| {
                    peer["podSelector"]["matchLabels"] == traefik_pods
                        && peer["namespaceSelector"].is_null()
                });
                let on_web = rule["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["port"] == 8000 && p["protocol"] != "UDP");
                to_traefik && on_web
            });
        assert!(
            opened,
            "{env}: z2jh's user NetworkPolicy does not open traefik's pods on 8000"
        );
    }
}

#[test]
fn the_user_image_definition_is_pinned_and_valid() {
    let dir = root().join("images/tess-notebook");
    let env = yaml(&std::fs::read_to_string(dir.join("environment.yml")).unwrap());
    let mut names = Vec::new();
    for dep in env["dependencies"].as_array().unwrap() {
        match dep {
            Value::String(spec) => {
                let (name, version) = spec
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{spec} is not pinned"));
                assert!(
                    !version.is_empty() && !version.contains('*'),
                    "{spec} is not pinned"
                );
                names.push(name.to_string());
            }
            Value::Object(map) => {
                for spec in map["pip"].as_array().unwrap() {
                    let spec = spec.as_str().unwrap();
                    let (name, _) = spec
                        .split_once("==")
                        .unwrap_or_else(|| panic!("{spec} is not pinned"));
                    names.push(name.to_string());
                }
            }
            other => panic!("unexpected dependency {other}"),
        }
    }
    for wanted in [
        "lightkurve",
        "astropy",
        "astroquery",
        "astrocut",
        "tess-point",
        "numpy",
        "matplotlib",
        "bokeh",
        "dask",
        "dask-gateway",
        "nbgitpuller",
        "jupyterlab",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} is not in the image"
        );
    }
    let post_build = dir.join("postBuild");
    use std::os::unix::fs::PermissionsExt;
    assert!(
        std::fs::metadata(&post_build).unwrap().permissions().mode() & 0o111 != 0,
        "postBuild must be executable"
    );
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&post_build)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // The image the values run is the one this directory defines.
    for (deployment, _) in DEPLOYMENTS {
        let values = layered_values(deployment, "prod");
        assert_eq!(
            values["jupyterhub"]["singleuser"]["image"]["name"],
            "ghcr.io/tess-platform/tess-notebook"
        );
        if values["dask-gateway"]["enabled"] == true {
            assert_eq!(
                values["dask-gateway"]["gateway"]["backend"]["image"],
                values["jupyterhub"]["singleuser"]["image"],
                "workers run the users' image"
            );
        }
    }
}

#[test]
fn the_workflow_lints_pull_requests_and_deploys_by_branch() {
    let workflow =
        yaml(&std::fs::read_to_string(root().join(".github/workflows/hubs.yml")).unwrap());
    assert!(
        workflow["on"]
            .as_object()
            .unwrap()
            .contains_key("pull_request"),
        "every pull request runs the workflow"
    );
    assert_eq!(
        workflow["on"]["push"]["branches"],
        json!(["staging", "prod"])
    );
    let lint = workflow["jobs"]["lint"]["steps"].to_string();
    assert!(
        lint.contains("deploy-throwaway") && lint.contains("--lint"),
        "{lint}"
    );
    let deploy = &workflow["jobs"]["deploy"];
    assert!(
        deploy["steps"].to_string().contains(
            "./scripts/deploy \\\"${{ matrix.deployment }}\\\" \\\"${{ github.ref_name }}\\\""
        ),
        "{deploy}"
    );
    let matrix: Map<String, Value> = deploy["strategy"]["matrix"].as_object().unwrap().clone();
    assert_eq!(matrix["deployment"], json!(["tess-public", "tess-private"]));
}
