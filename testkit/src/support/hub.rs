//! The secured hubs as the test node serves them to users: the platform's real images, and
//! each hub's z2jh (recorded Deployments with the project's model of z2jh's configuration) and,
//! where its values enable it, dask-gateway (the chart's recorded Deployments, with the model
//! of its configuration), over the shipped values and the test layer, behind hubguard. Used by
//! the real-node hub tests and by `hubguard-cluster up --hub` (scripts/run, tess-private).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::Cluster;
use super::controlplane::tools_bin;
use super::upstream::{image_python, kubespawner, node_packages};
use super::{images, root};

/// tess-private's test users' password (its test layer's shared-password authenticator).
pub const PASSWORD: &str = "tess-test-password";

/// One secured hub as the test node installs it.
pub struct SecuredHub {
    /// The deployment's name under charts/deployments, its namespace and its release's name.
    pub namespace: &'static str,
    /// The platform's Deployments the test node runs: z2jh's hub and proxy, then the
    /// gateway's api, controller and traefik where the hub has Dask.
    pub platform: &'static [&'static str],
    /// The upstream charts' rendering of those Deployments (and NetworkPolicies, where
    /// recorded), with how to refresh it.
    recording: &'static str,
    /// The test layer over the shipped values, in place of the secrets layer.
    test_layer: &'static str,
}

/// The authenticated research hub, with dask-gateway.
pub const TESS_PRIVATE: SecuredHub = SecuredHub {
    namespace: "tess-private",
    platform: &[
        "hub",
        "proxy",
        "api-tess-private-dask-gateway",
        "controller-tess-private-dask-gateway",
        "traefik-tess-private-dask-gateway",
    ],
    recording: "tests/fixtures/e2e/tess-private-platform.yaml",
    test_layer: "tests/fixtures/e2e/tess-private-test.values.yaml",
};

/// The unauthenticated outreach hub: tmpauthenticator, no homes, no Dask, the idle culler.
pub const TESS_PUBLIC: SecuredHub = SecuredHub {
    namespace: "tess-public",
    platform: &["hub", "proxy"],
    recording: "tests/fixtures/e2e/tess-public-platform.yaml",
    test_layer: "tests/fixtures/e2e/tess-public-test.values.yaml",
};

impl SecuredHub {
    /// The recorded documents: each Deployment of `names` and every NetworkPolicy, in the
    /// hub's namespace.
    fn recorded(&self, names: &[&str]) -> Vec<Value> {
        read(self.recording)
            .split("\n---\n")
            .map(|document| serde_norway::from_str::<Value>(document).unwrap())
            .filter(|object| {
                object["kind"] == "NetworkPolicy"
                    || names.contains(&object["metadata"]["name"].as_str().unwrap_or(""))
            })
            .map(|mut object| {
                object["metadata"]["namespace"] = json!(self.namespace);
                object
            })
            .collect()
    }
}

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
fn load_images(cluster: &Cluster, netprobe: &Path) {
    let started = Instant::now();
    let hub = images::probe_with_python(
        netprobe,
        &image_python("images/test/hub/requirements.txt"),
        images::HUB,
    )
    .unwrap_or_else(|e| panic!("the hub image: {e}"))
    .alias(images::GATEWAY);
    let traefik =
        images::traefik(&tools_bin()).unwrap_or_else(|e| panic!("the traefik image: {e}"));
    // repo2docker's images run as jovyan (uid 1000, z2jh's fsGid 100) in this home, theirs
    // in the image, where tess-private mounts the home claim.
    let notebook = images::probe_with_python(
        netprobe,
        &image_python("images/test/notebook/requirements.txt"),
        images::TESS_NOTEBOOK,
    )
    .unwrap_or_else(|e| panic!("the notebook image: {e}"))
    .env("HOME", "/home/jovyan")
    .owned_directory("/home/jovyan", 1000, 100)
    .working_dir("/home/jovyan");
    let proxy = images::proxy(
        netprobe,
        Path::new("/usr/bin/node"),
        &node_packages("images/test/proxy"),
    )
    .unwrap_or_else(|e| panic!("the proxy image: {e}"));
    for image in [&hub, &notebook, &proxy, &traefik] {
        cluster
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
fn install_hub(cluster: &Cluster, hub: &SecuredHub, volumes: &Path, values: &Value) {
    let namespace = hub.namespace;
    apply_json(
        cluster,
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})],
    );
    apply(
        cluster,
        &read("tests/fixtures/e2e/z2jh-hub-objects.yaml").replace("tess-private", namespace),
    );
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "hub", "namespace": namespace},
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
        "metadata": {"name": "hub", "namespace": namespace},
        "stringData": {
            "hub.config.ConfigurableHTTPProxy.auth_token": random_hex(32),
            "hub.config.JupyterHub.cookie_secret": random_hex(32),
            "hub.config.CryptKeeper.keys": random_hex(32),
            "hub.services.dask-gateway.apiToken": random_hex(32),
            "values.yaml": "{}\n",
        },
    });
    // Volumes: the hub's database and, where users have homes, the shared full-frame images
    // and each test user's home as KubeSpawner will claim it (the volume waits, bound in
    // advance to that claim's name).
    let mut objects = vec![config, secret];
    objects.extend(bound_claim(namespace, "hub-db-dir", None, volumes));
    if values["jupyterhub"]["singleuser"]["storage"]["type"] != json!("none") {
        objects.extend(bound_claim(namespace, "tess-ffi", None, volumes));
        let homes = kubespawner(&json!({
            "values": values["jupyterhub"], "namespace": namespace, "release": namespace,
            "servers": [["alice", ""], ["bob", ""]],
        }));
        for home in homes.as_array().unwrap() {
            let claim = home["pvc_name"].as_str().unwrap();
            objects.extend(
                bound_claim(namespace, claim, Some(&home["pvc"]), volumes)
                    .into_iter()
                    .take(1),
            );
        }
    }
    // The volumes are directories of the host: writable by the hub's and the users' uids.
    for entry in std::fs::read_dir(volumes).unwrap().flatten() {
        std::os::unix::fs::chown(entry.path(), Some(1000), Some(100)).unwrap();
    }
    apply_json(cluster, &objects);
    apply_json(cluster, &hub.recorded(&["hub", "proxy"]));
}

/// A hub's values as the test node installs them: the shipped layers (common, prod) and the
/// test layer in place of the secrets.
pub fn test_values(hub: &SecuredHub) -> Value {
    let mut values = layered_values(hub.namespace, "prod");
    merge(&mut values, &yaml(&read(hub.test_layer)));
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
fn install_gateway(cluster: &Cluster, hub: &SecuredHub, values: &Value) {
    assert_eq!(
        hub.namespace, TESS_PRIVATE.namespace,
        "only tess-private has a gateway"
    );
    cluster.kubectl_stdin(&["create", "-f", "-"], Some(&traefik_crds()));
    apply(
        cluster,
        &read("tests/fixtures/e2e/tess-private-gateway.yaml"),
    );
    let chart = json!({"release": hub.namespace, "values": values["dask-gateway"]});
    let config = |name: &str| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": hub.namespace},
            "data": {
                "dask_gateway_config.py": read("tests/upstream/dask_gateway_config.py"),
                "dask_pods.py": read("tests/upstream/dask_pods.py"),
                "chart_values.py": read("tests/upstream/chart_values.py"),
                "values.json": chart.to_string(),
            },
        })
    };
    apply_json(
        cluster,
        &[
            config("api-tess-private-dask-gateway"),
            config("controller-tess-private-dask-gateway"),
        ],
    );
    apply_json(cluster, &hub.recorded(&hub.platform[2..]));
}

/// Waits for Deployment `name` of `namespace` to have its replica available; says why not on
/// timeout.
pub fn wait_available(cluster: &Cluster, namespace: &str, name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while cluster.kubectl(&[
        "get",
        "deployment",
        name,
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.availableReplicas}",
    ]) != "1"
    {
        assert!(
            Instant::now() < deadline,
            "Deployment {name} is not available after {timeout:?}: {}",
            logs(
                cluster,
                namespace,
                "app.kubernetes.io/name in (jupyterhub, dask-gateway)"
            )
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The pods and events of `namespace`, and the last lines of the logs of the pods `selector`
/// picks, without the lines a client polling the hub's API adds every second.
pub fn logs(cluster: &Cluster, namespace: &str, selector: &str) -> String {
    let run = |args: &[&str]| {
        cluster
            .kubectl_output(args)
            .map(|out| {
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            })
            .unwrap_or_default()
    };
    let logs = run(&[
        "logs",
        "-n",
        namespace,
        "-l",
        selector,
        "--tail=400",
        "--prefix",
    ]);
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| {
            !line.contains("Skipping XSRF check") && !line.contains("200 GET /hub/api/users/")
        })
        .collect();
    format!(
        "{}\n{}\n{}",
        run(&["get", "pods", "-n", namespace, "-o", "wide"]),
        run(&["get", "events", "-n", namespace]),
        lines[lines.len().saturating_sub(60)..].join("\n")
    )
}

/// Serves `hub` on the node: its images loaded, the gateway's (where it has one) and the
/// hub's objects applied at once (as one helm install would: the hub looks the gateway's
/// Service up when it starts, and a name looked up before it exists is remembered as
/// missing), every platform Deployment available. The images carry the probe (`netprobe`);
/// `volumes` holds the claims' directories. Returns the address of the proxy's public
/// Service, which the node's own processes reach.
pub fn serve(cluster: &mut Cluster, hub: &SecuredHub, netprobe: &Path, volumes: &Path) -> String {
    load_images(cluster, netprobe);
    cluster
        .wait_dns_ready(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let values = test_values(hub);
    if values["dask-gateway"]["enabled"] == json!(true) {
        install_gateway(cluster, hub, &values);
    }
    install_hub(cluster, hub, volumes, &values);
    for name in hub.platform {
        wait_available(cluster, hub.namespace, name, Duration::from_secs(180));
    }
    eprintln!(
        "{}'s platform ({}) served in {:.1}s",
        hub.namespace,
        hub.platform.join(", "),
        started.elapsed().as_secs_f64()
    );
    cluster
        .kubectl(&[
            "get",
            "service",
            "proxy-public",
            "-n",
            hub.namespace,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .trim()
        .to_string()
}

/// kubectl apply of `yaml` as the cluster's admin.
pub fn apply(cluster: &Cluster, yaml: &str) {
    cluster.kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
}

pub fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).unwrap()
}

/// Helm's coalescing for values files: maps merge, anything else is replaced.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

pub fn layered_values(deployment: &str, env: &str) -> Value {
    let mut values =
        yaml(&std::fs::read_to_string(root().join("charts/secured-hub/values.yaml")).unwrap());
    for file in [
        "common.values.yaml".to_string(),
        format!("{env}.values.yaml"),
    ] {
        let layer =
            std::fs::read_to_string(root().join(format!("charts/deployments/{deployment}/{file}")))
                .unwrap();
        merge(&mut values, &yaml(&layer));
    }
    values
}

/// A claim bound to a volume of its own on the node (a directory of `dir`): `claim` as given
/// (KubeSpawner's own), or a plain one an administrator makes.
pub fn bound_claim(
    namespace: &str,
    name: &str,
    claim: Option<&serde_json::Value>,
    volumes: &Path,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let path = volumes.join(format!("volume-{namespace}-{name}"));
    std::fs::create_dir_all(&path).unwrap();
    let claim = claim.cloned().unwrap_or_else(|| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    });
    let volume = json!({"apiVersion": "v1", "kind": "PersistentVolume",
    "metadata": {"name": format!("{namespace}-{name}")},
    "spec": {
        "capacity": {"storage": "100Gi"},
        "accessModes": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"],
        "storageClassName": claim["spec"]["storageClassName"].as_str().unwrap_or(""),
        "hostPath": {"path": path.display().to_string(), "type": "Directory"},
        "claimRef": {"namespace": namespace, "name": name},
    }});
    vec![volume, claim]
}

pub fn apply_json(cluster: &Cluster, objects: &[serde_json::Value]) {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    apply(cluster, &list.to_string());
}
