//! Upstream's own pod builders, run from the pinned Python environment `scripts/pyenv` makes
//! (KubeSpawner, dask-gateway-server and dask-kubernetes from PyPI): what the real software
//! makes of the project's values.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::{root, TempDir};

/// The environment's python, made (or found cached) once per test run.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = Command::new(root().join("scripts/pyenv"))
                .stderr(Stdio::inherit())
                .output()
                .expect("running scripts/pyenv");
            assert!(out.status.success(), "scripts/pyenv failed");
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// Runs `tests/upstream/kubespawner_pods.py` on `request` (see the script) and returns its
/// JSON answer.
pub fn kubespawner(request: &Value) -> Value {
    builder("kubespawner_pods.py", request)
}

/// Runs `tests/upstream/dask_pods.py` (dask-gateway-server's kubernetes backend and
/// controller, dask-kubernetes' KubeCluster and operator) on `request` (see the script).
pub fn dask(request: &Value) -> Value {
    builder("dask_pods.py", request)
}

/// Runs one of `tests/upstream/`'s builders on `request`. The Kubernetes clients read a
/// kubeconfig when they are made: they get one naming a loopback port never contacted (the
/// builders make manifests; nothing is sent).
fn builder(script: &str, request: &Value) -> Value {
    let dir = TempDir::new("upstream-builder");
    let kubeconfig = dir.path("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         users: [{name: none, user: {token: none}}]\n\
         contexts: [{name: none, context: {cluster: none, user: none}}]\ncurrent-context: none\n",
    )
    .expect("writing the kubeconfig");
    let mut child = Command::new(python())
        .arg(root().join("tests/upstream").join(script))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {script}: {e}"));
    serde_json::to_writer(child.stdin.take().expect("piped"), request)
        .expect("writing the request");
    let out = child.wait_with_output().expect("the upstream builder");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script}'s answer: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The python of an environment `scripts/pyenv` makes from `requirements` (a path from the
/// repository's root) with Debian's Python, whose files an image can then carry.
pub fn image_python(requirements: &str) -> PathBuf {
    cached_tree("scripts/pyenv", &[requirements, "/usr/bin/python3"])
}

/// The package tree `scripts/npmenv` makes from `dir`'s package-lock.json.
pub fn node_packages(dir: &str) -> PathBuf {
    cached_tree("scripts/npmenv", &[dir])
}

fn cached_tree(script: &str, args: &[&str]) -> PathBuf {
    let out = Command::new(root().join(script))
        .args(args.iter().map(|a| {
            if a.starts_with('/') {
                PathBuf::from(a)
            } else {
                root().join(a)
            }
        }))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(out.status.success(), "{script} {args:?} failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
