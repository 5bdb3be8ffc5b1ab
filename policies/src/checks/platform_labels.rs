//! Platform labels: only a trusted requester's pods may carry the labels of the hub's own
//! components. Admission classes an untrusted requester's pod as a user pod whatever it
//! claims, and the node agent reads the recorded identity, not these labels; but the labels
//! stay on the pod, and the hub's Services, NetworkPolicies and dashboards select by them: a
//! forged `component: hub` would receive the hub's traffic and pass its network policies.

use super::{Check, Findings};
use crate::classify::{class_from_labels, PodClass};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "platformLabels",
    summary: "only trusted requesters' pods may carry the hub's platform component labels",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    if pod.class == PodClass::Platform || class_from_labels(pod.labels) != PodClass::Platform {
        return;
    }
    let key = if pod.labels.get("app.kubernetes.io/component").is_some() {
        "app.kubernetes.io/component"
    } else {
        "component"
    };
    out.add(
        pod.metadata_path(&format!("labels[{key}]")),
        format!(
            "'{}' marks a platform pod, but the requester is not trusted to create platform pods",
            pod.labels.get(key).unwrap_or_default()
        ),
        format!("remove the {key} label or set a non-platform component"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "user pod",
                    labels: "{component: singleuser-server}",
                    ..CASE
                },
                Case {
                    name: "no labels",
                    ..CASE
                },
                Case {
                    name: "forged hub label",
                    labels: "{component: hub}",
                    expect: &["metadata.labels[component]"],
                    ..CASE
                },
                Case {
                    name: "forged proxy label, recommended key",
                    labels: "{app.kubernetes.io/component: proxy}",
                    expect: &["metadata.labels[app.kubernetes.io/component]"],
                    ..CASE
                },
                Case {
                    name: "dask worker",
                    labels: "{dask.org/component: worker}",
                    ..CASE
                },
            ],
        );
    }
}
