//! tess-private as the test node serves it to users: the platform's real images, and its
//! hub (z2jh's recorded Deployments with the project's model of z2jh's configuration) and
//! dask-gateway (the chart's recorded Deployments, with the model of its configuration), over
//! the shipped values and the test layer, behind hubguard. Used by the real-node hub test and
//! by `hubguard-cluster up --hub` (scripts/run).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::Cluster;
use super::controlplane::tools_bin;
use super::upstream::{image_python, kubespawner, node_packages};
use super::{images, root};

pub const NAMESPACE: &str = "tess-private";
pub const PASSWORD: &str = "tess-test-password";
/// The platform's Deployments the test node runs: z2jh's hub and proxy, then the gateway's
/// api, controller and traefik.
pub const PLATFORM: [&str; 5] = [
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
    // repo2docker's images run as jovyan in this home, where the home claim is mounted.
    let notebook = images::probe_with_python(
        netprobe,
        &image_python("images/test/notebook/requirements.txt"),
        images::TESS_NOTEBOOK,
    )
    .unwrap_or_else(|e| panic!("the notebook image: {e}"))
    .env("HOME", "/home/jovyan")
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
fn install_hub(cluster: &Cluster, volumes: &Path, values: &Value) {
    apply(cluster, &read("tests/fixtures/e2e/tess-private-hub.yaml"));
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
    objects.extend(bound_claim(NAMESPACE, "hub-db-dir", None, volumes));
    objects.extend(bound_claim(NAMESPACE, "tess-ffi", None, volumes));
    for home in homes.as_array().unwrap() {
        let claim = home["pvc_name"].as_str().unwrap();
        objects.extend(
            bound_claim(NAMESPACE, claim, Some(&home["pvc"]), volumes)
                .into_iter()
                .take(1),
        );
    }
    // The volumes are directories of the host: writable by the hub's and the users' uids.
    for entry in std::fs::read_dir(volumes).unwrap().flatten() {
        std::os::unix::fs::chown(entry.path(), Some(1000), Some(100)).unwrap();
    }
    apply_json(cluster, &objects);
    let recorded = read("tests/fixtures/e2e/tess-private-platform.yaml");
    for document in recorded.split("\n---\n") {
        let mut deployment: Value = serde_norway::from_str(document).unwrap();
        let name = deployment["metadata"]["name"].as_str().unwrap().to_string();
        if !PLATFORM[..2].contains(&name.as_str()) {
            continue;
        }
        deployment["metadata"]["namespace"] = json!(NAMESPACE);
        apply_json(cluster, &[deployment]);
    }
}

/// tess-private's values as the test node installs them: the shipped layers (common, prod)
/// and the test layer in place of the secrets.
pub fn test_values() -> Value {
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
fn install_gateway(cluster: &Cluster, values: &Value) {
    cluster.kubectl_stdin(&["create", "-f", "-"], Some(&traefik_crds()));
    apply(
        cluster,
        &read("tests/fixtures/e2e/tess-private-gateway.yaml"),
    );
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
        cluster,
        &[
            config("api-tess-private-dask-gateway"),
            config("controller-tess-private-dask-gateway"),
        ],
    );
    for document in read("tests/fixtures/e2e/tess-private-platform.yaml").split("\n---\n") {
        let mut deployment: Value = serde_norway::from_str(document).unwrap();
        if PLATFORM[2..].contains(&deployment["metadata"]["name"].as_str().unwrap()) {
            deployment["metadata"]["namespace"] = json!(NAMESPACE);
            apply_json(cluster, &[deployment]);
        }
    }
}

/// Waits for Deployment `name` to have its replica available; says why not on timeout.
pub fn wait_available(cluster: &Cluster, name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while cluster.kubectl(&[
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
            logs(
                cluster,
                "app.kubernetes.io/name in (jupyterhub, dask-gateway)"
            )
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The namespace's pods, and the last lines of the logs of those `selector` picks.
pub fn logs(cluster: &Cluster, selector: &str) -> String {
    let run = |args: &[&str]| {
        cluster
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

/// Serves tess-private on the node: its images loaded, the gateway's and the hub's objects
/// applied at once (as one helm install would: the hub looks the gateway's Service up when it
/// starts, and a name looked up before it exists is remembered as missing), every platform
/// Deployment available. The images carry the probe (`netprobe`); `volumes` holds the claims' directories. Returns the address of the
/// proxy's public Service, which the node's own processes reach.
pub fn serve(cluster: &mut Cluster, netprobe: &Path, volumes: &Path) -> String {
    load_images(cluster, netprobe);
    cluster
        .wait_dns_ready(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let values = test_values();
    install_gateway(cluster, &values);
    install_hub(cluster, volumes, &values);
    for name in PLATFORM {
        wait_available(cluster, name, Duration::from_secs(180));
    }
    eprintln!(
        "the hub, proxy and gateway served in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    cluster
        .kubectl(&[
            "get",
            "service",
            "proxy-public",
            "-n",
            NAMESPACE,
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
