//! Tenancy: per-container resource caps, so one tenant cannot starve a node. Limits must be set
//! where the policy asks, and neither limits nor requests may exceed the class's maxima.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

use super::{Check, Findings};
use crate::pod::{ContainerView, PodSubject};
use crate::policy::{Cap, ClassPolicy};
use crate::quantity::parse_quantity;

pub const CHECK: Check = Check {
    id: "resources",
    summary: "containers must set limits within the class's cpu and memory caps",
    evaluate,
    apply_default: None,
};

fn judge_cap(
    c: &ContainerView<'_>,
    resource: &str,
    cap: &Cap,
    lists: [(&str, Option<&BTreeMap<String, Quantity>>); 2],
    out: &mut Findings,
) {
    for (list, values) in lists {
        let Some(Quantity(text)) = values.and_then(|v| v.get(resource)) else {
            continue;
        };
        let path = || format!("resources.{list}.{resource}");
        match parse_quantity(text) {
            Ok(value) if value <= cap.value => {}
            Ok(_) => out.add_for(
                c,
                &path(),
                format!(
                    "container '{}' asks for {resource} {text} in {list}, above the cap of {}",
                    c.name, cap.text
                ),
                format!("set {list}.{resource} to at most {}", cap.text),
            ),
            Err(e) => out.add_for(
                c,
                &path(),
                format!("container '{}': {e}", c.name),
                "write a Kubernetes quantity such as 500m or 4Gi",
            ),
        }
    }
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(caps) = &class.resources else {
        return;
    };
    // Ephemeral containers cannot carry resources; the API server refuses them.
    for c in pod
        .containers()
        .filter(|c| c.field != "ephemeralContainers")
    {
        let limits = c.resources.and_then(|r| r.limits.as_ref());
        let requests = c.resources.and_then(|r| r.requests.as_ref());
        if caps.require_limits {
            for resource in ["cpu", "memory"] {
                if limits.is_none_or(|l| !l.contains_key(resource)) {
                    out.add_for(
                        &c,
                        &format!("resources.limits.{resource}"),
                        format!("container '{}' sets no {resource} limit", c.name),
                        format!("set resources.limits.{resource}"),
                    );
                }
            }
        }
        for (resource, cap) in [("cpu", &caps.max_cpu), ("memory", &caps.max_memory)] {
            if let Some(cap) = cap {
                judge_cap(
                    &c,
                    resource,
                    cap,
                    [("limits", limits), ("requests", requests)],
                    out,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    const CAPS: &str = "resources: {requireLimits: true, maxCpu: '4', maxMemory: 16Gi}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "within caps",
                    policy: CAPS,
                    pod: "{containers: [{name: a, resources: {limits: {cpu: '2', memory: 8Gi}, requests: {cpu: 500m, memory: 1Gi}}}]}",
                    ..CASE
                },
                Case {
                    name: "no limits",
                    policy: CAPS,
                    expect: &[
                        "spec.containers[0].resources.limits.cpu",
                        "spec.containers[0].resources.limits.memory",
                    ],
                    ..CASE
                },
                Case {
                    name: "above the memory cap",
                    policy: CAPS,
                    pod: "{containers: [{name: a, resources: {limits: {cpu: 4000m, memory: 64Gi}}}]}",
                    expect: &["spec.containers[0].resources.limits.memory"],
                    ..CASE
                },
                Case {
                    name: "request above the cpu cap",
                    policy: CAPS,
                    pod: "{containers: [{name: a, resources: {limits: {cpu: '4', memory: 1Gi}, requests: {cpu: '8'}}}]}",
                    expect: &["spec.containers[0].resources.requests.cpu"],
                    ..CASE
                },
                Case {
                    name: "caps without required limits",
                    policy: "resources: {maxCpu: '1'}",
                    ..CASE
                },
            ],
        );
    }
}
