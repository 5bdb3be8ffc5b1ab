//! Platform labels: only a trusted requester's pods may carry the labels the platform's
//! Services select on. Admission classes an untrusted requester's pod as a user pod whatever
//! it claims, and the node agent reads the recorded identity, not these labels; but the labels
//! stay on the pod, and the platform's Services, NetworkPolicies and dashboards select by
//! them: a forged `component: hub` would join the hub's Service and receive its traffic.
//! Each label form is judged on its own: z2jh's Services select on the legacy `component`,
//! so a pod whose `app.kubernetes.io/component` says `singleuser-server` while its
//! `component` says `hub` is still the hub to them. dask-gateway's Services select a
//! cluster's scheduler by its `gateway.dask.org/*` labels, which only the gateway's
//! controller writes.

use super::{Check, Findings};
use crate::classify::{PodClass, PLATFORM_COMPONENTS};
use crate::identity::RequesterKind;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "platformLabels",
    summary: "only trusted requesters' pods may carry the labels the platform's Services select on (component forms, gateway.dask.org/*)",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

/// The label prefix dask-gateway's controller writes on its clusters' pods.
const GATEWAY_PREFIX: &str = "gateway.dask.org/";

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    if pod.requester == RequesterKind::Trusted || pod.class == PodClass::Platform {
        return;
    }
    for key in ["app.kubernetes.io/component", "component"] {
        let Some(value) = pod
            .labels
            .get(key)
            .filter(|v| PLATFORM_COMPONENTS.contains(v))
        else {
            continue;
        };
        out.add(
            pod.metadata_path(&format!("labels[{key}]")),
            format!(
                "'{value}' marks a platform pod, but the requester is not trusted to create \
                 platform pods"
            ),
            format!("remove the {key} label or set a non-platform component"),
        );
    }
    if pod.labels.has_key_prefix(GATEWAY_PREFIX) {
        out.add(
            pod.metadata_path("labels"),
            format!(
                "{GATEWAY_PREFIX}* labels mark a dask-gateway cluster's pod, which only the \
                 gateway's controller makes: this pod would join that cluster's Services"
            ),
            "remove the gateway.dask.org/* labels; start clusters with dask_gateway.Gateway()",
        );
    }
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
                Case {
                    name: "the legacy form behind the recommended one",
                    labels: "{app.kubernetes.io/component: singleuser-server, component: hub}",
                    expect: &["metadata.labels[component]"],
                    ..CASE
                },
                Case {
                    name: "a gateway cluster's labels on a tenant's pod",
                    labels: "{app.kubernetes.io/component: dask-scheduler, gateway.dask.org/cluster: 5c0a7e5f, gateway.dask.org/instance: tess-private-dask-gateway}",
                    requester_tenant: Some("alice"),
                    class: PodClass::Dask,
                    expect: &["metadata.labels"],
                    ..CASE
                },
                Case {
                    name: "the gateway's controller labels its pods",
                    labels: "{app.kubernetes.io/component: dask-scheduler, gateway.dask.org/cluster: 5c0a7e5f}",
                    requester: RequesterKind::Trusted,
                    class: PodClass::Dask,
                    ..CASE
                },
                Case {
                    name: "the hub's own pod",
                    labels: "{component: hub}",
                    requester: RequesterKind::Trusted,
                    class: PodClass::Platform,
                    ..CASE
                },
            ],
        );
    }
}
