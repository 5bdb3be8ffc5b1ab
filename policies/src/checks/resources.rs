//! Tenancy: resource caps, so one tenant cannot starve a node. Limits must be set where the
//! policy asks; neither a container's limits nor its requests may exceed the class's maxima,
//! and the whole pod — its pod-level `resources`, and the sum over the containers that run
//! together (regular containers and sidecars) — stays within the pod caps. An in-place resize
//! (`pods/resize`) is judged the same way.

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
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
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

/// The pod-level `resources` and the containers' sum, against the pod caps.
fn judge_pod(pod: &PodSubject<'_>, caps: &crate::policy::ResourceLimits, out: &mut Findings) {
    for (resource, cap) in [("cpu", &caps.max_pod_cpu), ("memory", &caps.max_pod_memory)] {
        let Some(cap) = cap else { continue };
        let pod_level = pod.spec.resources.as_ref();
        for (list, values) in [
            ("limits", pod_level.and_then(|r| r.limits.as_ref())),
            ("requests", pod_level.and_then(|r| r.requests.as_ref())),
        ] {
            let Some(Quantity(text)) = values.and_then(|v| v.get(resource)) else {
                continue;
            };
            if parse_quantity(text).is_ok_and(|v| v > cap.value) {
                out.add(
                    pod.path(&format!("resources.{list}.{resource}")),
                    format!(
                        "the pod asks for {resource} {text} in {list}, above the pod cap of {}",
                        cap.text
                    ),
                    format!("set {list}.{resource} to at most {}", cap.text),
                );
            }
        }
        for list in ["limits", "requests"] {
            let (count, total) = pod
                .containers()
                .filter(|c| c.field == "containers" || c.sidecar)
                .filter_map(|c| {
                    let r = c.resources?;
                    let values = if list == "limits" {
                        r.limits.as_ref()
                    } else {
                        r.requests.as_ref()
                    };
                    parse_quantity(&values?.get(resource)?.0).ok()
                })
                .fold((0usize, 0f64), |(n, sum), v| (n + 1, sum + v));
            // One container alone is judged against the container cap above.
            if count > 1 && total > cap.value {
                out.add(
                    pod.path("containers"),
                    format!(
                        "the containers together ask for {total} {resource} in {list}, above the pod cap of {}",
                        cap.text
                    ),
                    format!("keep the sum of the containers' {list}.{resource} within {}", cap.text),
                );
            }
        }
    }
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(caps) = &class.resources else {
        return;
    };
    judge_pod(pod, caps, out);
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
    const POD_CAPS: &str =
        "resources: {maxCpu: '4', maxMemory: 16Gi, maxPodCpu: '4', maxPodMemory: 16Gi}";

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
                    name: "two containers within the pod cap",
                    policy: POD_CAPS,
                    pod: "{containers: [{name: a, resources: {limits: {cpu: '2', memory: 4Gi}}}, {name: b, resources: {limits: {cpu: '2', memory: 4Gi}}}]}",
                    ..CASE
                },
                Case {
                    name: "containers each within their cap, together above the pod's",
                    policy: POD_CAPS,
                    pod: "{containers: [{name: a, resources: {limits: {cpu: '4', memory: 4Gi}}}, {name: b, resources: {limits: {cpu: '4', memory: 4Gi}}}], initContainers: [{name: s, restartPolicy: Always, resources: {limits: {cpu: '1', memory: 1Gi}}}]}",
                    expect: &["spec.containers"],
                    ..CASE
                },
                Case {
                    name: "pod-level resources above the pod cap",
                    policy: POD_CAPS,
                    pod: "{resources: {limits: {cpu: '64', memory: 8Gi}}, containers: [{name: a, resources: {limits: {cpu: '1', memory: 1Gi}}}]}",
                    expect: &["spec.resources.limits.cpu"],
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
