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
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

/// A tenant label found: where (its metadata's path), its key, the tenant it names.
struct Named<'a> {
    meta_base: &'a str,
    key: &'a str,
    tenant: &'a str,
}

impl Named<'_> {
    /// Formatted only for a finding: a compliant pod allocates nothing here.
    fn path(&self) -> String {
        format!("{}.labels[{}]", self.meta_base, self.key)
    }
}

/// Every tenant label of the object: the pod's (or template's), then a Dask resource's own.
fn named_tenants<'a>(pod: &PodSubject<'a>) -> impl Iterator<Item = Named<'a>> + 'a {
    let own = std::iter::once((pod.labels, pod.meta_base));
    let object = (pod.meta_base != "metadata").then_some((pod.object_labels, "metadata"));
    let keys = pod.tenant_label_keys;
    own.chain(object)
        .flat_map(move |(labels, meta_base): (StringMap<'a>, &'a str)| {
            keys.iter().filter_map(move |key| {
                labels.get(key).map(|tenant| Named {
                    meta_base,
                    key,
                    tenant,
                })
            })
        })
}

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    match (pod.requester, pod.requester_tenant) {
        (RequesterKind::Tenant, Some(tenant)) => {
            if !named_tenants(pod).any(|n| n.meta_base == pod.meta_base) {
                let key = pod.tenant_label_key();
                out.add(
                    pod.metadata_path(&format!("labels[{key}]")),
                    format!("requested by tenant {tenant} but carries no tenant label"),
                    format!("set the label {key}: {tenant}"),
                );
            }
            for n in named_tenants(pod).filter(|n| n.tenant != tenant) {
                out.add(
                    n.path(),
                    format!(
                        "requested by tenant {tenant} but labelled for tenant {}",
                        n.tenant
                    ),
                    format!("set the label {}: {tenant}", n.key),
                );
            }
        }
        (RequesterKind::Untrusted, _) => {
            for n in named_tenants(pod) {
                out.add(
                    n.path(),
                    format!(
                        "labelled for tenant {}, but the requester is neither that tenant \
                         nor trusted to create pods for tenants",
                        n.tenant
                    ),
                    format!("remove the label {}", n.key),
                );
            }
        }
        _ => {
            let Some(first) = named_tenants(pod).next().map(|n| n.tenant) else {
                return;
            };
            for n in named_tenants(pod).filter(|n| n.tenant != first) {
                out.add(
                    n.path(),
                    format!("labelled for tenant {} and for tenant {first}", n.tenant),
                    format!("set the label {}: {first}, or remove it", n.key),
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
                    labels: "{hub.jupyter.org/username: alice, hubguard.dev/tenant: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels[hubguard.dev/tenant]"],
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
