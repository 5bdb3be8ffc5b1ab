//! Tenancy: an object names at most one tenant, and a tenant's objects name that tenant.
//! Otherwise a notebook's service account could create pods that the hub, the culler, the
//! dashboards, the exec check and the node agent attribute to someone else. Every tenant label
//! counts: the pod's (or template's) and, for a Dask resource, the resource's own.

use super::{Check, Findings};
use crate::classify::StringMap;
use crate::identity::RequesterKind;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "tenantLabel",
    summary: "every tenant label names the same tenant: the requester's own for a tenant",
    evaluate,
    apply_default: None,
};

/// Every (path, key, tenant) the object's tenant labels name.
fn named_tenants<'a>(pod: &PodSubject<'a>) -> Vec<(String, &'a str, &'a str)> {
    let mut found = Vec::new();
    let mut collect = |labels: StringMap<'a>, meta_base: &str| {
        for key in pod.tenant_label_keys {
            if let Some(value) = labels.get(key) {
                found.push((format!("{meta_base}.labels[{key}]"), key.as_str(), value));
            }
        }
    };
    collect(pod.labels, pod.meta_base);
    if pod.meta_base != "metadata" {
        collect(pod.object_labels, "metadata");
    }
    found
}

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    let named = named_tenants(pod);
    match (pod.requester, pod.requester_tenant) {
        (RequesterKind::Tenant, Some(tenant)) => {
            if !named
                .iter()
                .any(|(path, ..)| path.starts_with(pod.meta_base))
            {
                let key = pod.tenant_label_key();
                out.add(
                    pod.metadata_path(&format!("labels[{key}]")),
                    format!("requested by tenant {tenant} but carries no tenant label"),
                    format!("set the label {key}: {tenant}"),
                );
            }
            for (path, key, other) in named.iter().filter(|(_, _, t)| *t != tenant) {
                out.add(
                    path.clone(),
                    format!("requested by tenant {tenant} but labelled for tenant {other}"),
                    format!("set the label {key}: {tenant}"),
                );
            }
        }
        (RequesterKind::Untrusted, _) => {
            for (path, key, other) in &named {
                out.add(
                    path.clone(),
                    format!(
                        "labelled for tenant {other}, but the requester is neither that tenant \
                         nor trusted to create pods for tenants"
                    ),
                    format!("remove the label {key}"),
                );
            }
        }
        _ => {
            let Some((_, _, first)) = named.first() else {
                return;
            };
            for (path, key, other) in named.iter().filter(|(_, _, t)| t != first) {
                out.add(
                    path.clone(),
                    format!("labelled for tenant {other} and for tenant {first}"),
                    format!("set the label {key}: {first}, or remove it"),
                );
            }
        }
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
                    name: "labelled for the requester",
                    labels: "{hub.jupyter.org/username: alice}",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "recorded for the requester",
                    labels: "{hubguard.dev/tenant: alice}",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "labelled for someone else",
                    labels: "{hub.jupyter.org/username: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels[hub.jupyter.org/username]"],
                    ..CASE
                },
                Case {
                    name: "one label for the requester, another for someone else",
                    labels: "{hub.jupyter.org/username: alice, gateway.dask.org/user: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels[gateway.dask.org/user]"],
                    ..CASE
                },
                Case {
                    name: "no label",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels[hub.jupyter.org/username]"],
                    ..CASE
                },
                Case {
                    name: "a trusted requester's pod names one tenant",
                    labels: "{hub.jupyter.org/username: bob, hubguard.dev/tenant: bob}",
                    requester: RequesterKind::Trusted,
                    ..CASE
                },
                Case {
                    name: "a trusted requester's pod names two tenants",
                    labels: "{hub.jupyter.org/username: bob, hubguard.dev/tenant: carol}",
                    requester: RequesterKind::Trusted,
                    expect: &["metadata.labels[hubguard.dev/tenant]"],
                    ..CASE
                },
                Case {
                    name: "an unknown controller labels a pod for a tenant",
                    labels: "{hub.jupyter.org/username: bob}",
                    requester: RequesterKind::Untrusted,
                    expect: &["metadata.labels[hub.jupyter.org/username]"],
                    ..CASE
                },
                Case {
                    name: "an unknown controller's unlabelled pod",
                    requester: RequesterKind::Untrusted,
                    ..CASE
                },
            ],
        );
    }
}
