//! Scheduling: where a pod runs and what it may push aside. `nodeName` binds a pod without the
//! scheduler, so past the node agent's not-ready taint and onto control-plane nodes; a
//! toleration of hubguard's taint puts a pod on a node before its egress is filtered; a
//! `system-*` priority class evicts the platform's own pods under pressure.

use serde::{Deserialize, Serialize};

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;
use crate::validate::FieldErrors;

pub const CHECK: Check = Check {
    id: "scheduling",
    summary: "no nodeName, no toleration of protected taints, only listed priority classes",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

/// The node agent's taint, kept on a node until its egress rules are enforced.
pub const AGENT_NOT_READY_TAINT: &str = "hubguard.dev/agent-not-ready";

fn default_forbidden_tolerations() -> Vec<String> {
    [
        AGENT_NOT_READY_TAINT,
        "node-role.kubernetes.io/control-plane",
        "node-role.kubernetes.io/master",
        "node.kubernetes.io/unschedulable",
        "node.cloudprovider.kubernetes.io/uninitialized",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulingRules {
    /// Pods may bind themselves to a node with `nodeName`.
    #[serde(default)]
    pub allow_node_name: bool,
    /// Taint keys pods may not tolerate. A toleration with no key and `operator: Exists`
    /// tolerates every taint, so it is refused too.
    #[serde(default = "default_forbidden_tolerations")]
    pub forbidden_tolerations: Vec<String>,
    /// Priority classes pods may name. Empty: none (the cluster's default applies).
    #[serde(default)]
    pub priority_classes: Vec<String>,
}

impl Default for SchedulingRules {
    fn default() -> Self {
        SchedulingRules {
            allow_node_name: false,
            forbidden_tolerations: default_forbidden_tolerations(),
            priority_classes: Vec::new(),
        }
    }
}

pub fn validate(rules: &SchedulingRules, path: &str, errs: &mut FieldErrors) {
    for (i, key) in rules.forbidden_tolerations.iter().enumerate() {
        if key.is_empty() {
            errs.push(
                format!("{path}.forbiddenTolerations[{i}]"),
                "a taint key may not be empty",
            );
        }
    }
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rules) = &class.scheduling else {
        return;
    };
    let spec = pod.spec;
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if !rules.allow_node_name {
            out.add(
                pod.path("nodeName"),
                format!("the pod binds itself to node {node}, past the scheduler and its taints"),
                "remove nodeName; use a nodeSelector if the pod needs a kind of node",
            );
        }
    }
    for (i, toleration) in spec.tolerations.iter().flatten().enumerate() {
        let key = toleration.key.as_deref().unwrap_or("");
        let everything = key.is_empty() && toleration.operator.as_deref() == Some("Exists");
        let forbidden = rules.forbidden_tolerations.iter().any(|k| k == key);
        if everything && !rules.forbidden_tolerations.is_empty() {
            out.add(
                pod.path(&format!("tolerations[{i}]")),
                "the pod tolerates every taint (no key, operator Exists)".to_string(),
                "tolerate only the taints the pod needs, by key",
            );
        } else if forbidden {
            out.add(
                pod.path(&format!("tolerations[{i}].key")),
                format!("the pod tolerates taint {key}, which keeps such pods off the node"),
                format!("remove the toleration of {key}"),
            );
        }
    }
    if let Some(priority) = spec
        .priority_class_name
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        if !rules.priority_classes.iter().any(|p| p == priority) {
            out.add(
                pod.path("priorityClassName"),
                format!("the pod asks for priority class {priority}"),
                if rules.priority_classes.is_empty() {
                    "remove priorityClassName".to_string()
                } else {
                    format!("use one of: {}", rules.priority_classes.join(", "))
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    const STRICT: &str = "scheduling: {}";
    const PRIORITY: &str = "scheduling: {priorityClasses: [tess-users]}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "scheduled normally",
                    policy: STRICT,
                    pod: "{containers: [{name: a}], nodeSelector: {pool: users}, tolerations: [{key: hub.jupyter.org/dedicated, operator: Equal, value: user, effect: NoSchedule}, {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}]}",
                    ..CASE
                },
                Case {
                    name: "bound to a node",
                    policy: STRICT,
                    pod: "{containers: [{name: a}], nodeName: control-plane-1}",
                    expect: &["spec.nodeName"],
                    ..CASE
                },
                Case {
                    name: "tolerates the agent's taint",
                    policy: STRICT,
                    pod: "{containers: [{name: a}], tolerations: [{key: hubguard.dev/agent-not-ready, operator: Exists}]}",
                    expect: &["spec.tolerations[0].key"],
                    ..CASE
                },
                Case {
                    name: "tolerates the control plane",
                    policy: STRICT,
                    pod: "{containers: [{name: a}], tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]}",
                    expect: &["spec.tolerations[0].key"],
                    ..CASE
                },
                Case {
                    name: "tolerates everything",
                    policy: STRICT,
                    pod: "{containers: [{name: a}], tolerations: [{operator: Exists}]}",
                    expect: &["spec.tolerations[0]"],
                    ..CASE
                },
                Case {
                    name: "system priority",
                    policy: STRICT,
                    pod: "{containers: [{name: a}], priorityClassName: system-node-critical}",
                    expect: &["spec.priorityClassName"],
                    ..CASE
                },
                Case {
                    name: "a listed priority",
                    policy: PRIORITY,
                    pod: "{containers: [{name: a}], priorityClassName: tess-users}",
                    ..CASE
                },
                Case {
                    name: "node name allowed by the policy",
                    policy: "scheduling: {allowNodeName: true}",
                    pod: "{containers: [{name: a}], nodeName: n1}",
                    ..CASE
                },
                Case {
                    name: "not configured",
                    pod: "{containers: [{name: a}], nodeName: n1, priorityClassName: system-node-critical}",
                    ..CASE
                },
            ],
        );
    }
}
