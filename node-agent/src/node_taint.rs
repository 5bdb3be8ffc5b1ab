//! The taint that keeps pods off a node until its agent is ready. Nodes registered with it
//! (kubelet `--register-with-taints=hubguard.dev/agent-not-ready=true:NoSchedule`, or the
//! node pool's taints) get no pods scheduled before the agent has attached and filled its
//! maps; the agent (which tolerates every taint) removes it then. This closes the window after
//! a node boots, when bpffs is empty and nothing is attached yet.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

pub const NOT_READY_TAINT: &str = "hubguard.dev/agent-not-ready";

/// Removes the taint from `node` if it is there: `Ok(true)` when it was removed. The patch
/// tests the taint list it replaces, so a concurrent change to the node's taints makes it fail
/// (and the caller retries) rather than be overwritten.
pub async fn remove_not_ready_taint(client: &Client, node: &str) -> Result<bool, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes
        .get(node)
        .await
        .map_err(|e| format!("reading node {node}: {e}"))?;
    let taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
    if !taints.iter().any(|t| t.key == NOT_READY_TAINT) {
        return Ok(false);
    }
    let kept: Vec<_> = taints
        .iter()
        .filter(|t| t.key != NOT_READY_TAINT)
        .cloned()
        .collect();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/taints", "value": taints},
        {"op": "replace", "path": "/spec/taints", "value": kept},
    ]))
    .map_err(|e| format!("building the taint patch: {e}"))?;
    nodes
        .patch(node, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| format!("removing taint {NOT_READY_TAINT} from node {node}: {e}"))?;
    Ok(true)
}
