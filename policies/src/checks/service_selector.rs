//! A Service sends its traffic to every pod its selector matches, whoever made the pod: a
//! tenant's Service that selects on labels alone (`app: jupyterhub`, `component: hub`) pulls
//! the platform's pods or another tenant's into it, and with them traffic meant for her
//! pods, or hers into theirs. Every pod carries the tenant hubguard recorded for it
//! (`hubguard.dev/tenant`, which no other tenant can write), so a tenant's Service selects on
//! that record with her own tenant, and then matches her pods only.

use super::{Findings, ServiceCheck};
use crate::identity::{RequesterKind, TENANT_LABEL};
use crate::service::ServiceSubject;

pub const CHECK: ServiceCheck = ServiceCheck {
    id: "serviceSelector",
    summary: "a tenant's Service selects only that tenant's pods (on hubguard.dev/tenant)",
    evaluate,
};

fn evaluate(service: &ServiceSubject<'_>, out: &mut Findings) {
    // A Dask resource's scheduler Service selects the pods the operator makes for that
    // cluster; only a Service's own selector is the requester's word.
    if service.requester == RequesterKind::Trusted || service.name.is_none() {
        return;
    }
    let Some(selector) = service
        .field("selector")
        .and_then(|s| s.as_object())
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    let pinned = selector.get(TENANT_LABEL).and_then(|v| v.as_str());
    let path = service.path("selector");
    match (service.requester_tenant, pinned) {
        (Some(tenant), Some(value)) if value == tenant => {}
        (Some(tenant), Some(value)) => out.add(
            path,
            format!("the selector picks tenant {value}'s pods, not {tenant}'s"),
            format!("select {TENANT_LABEL}: {tenant}"),
        ),
        (Some(tenant), None) => out.add(
            path,
            "the selector picks pods by labels anyone can write: the platform's pods and \
             other tenants' would join this Service"
                .to_string(),
            format!("add {TENANT_LABEL}: {tenant} to spec.selector"),
        ),
        (None, _) if service.requester == RequesterKind::Unknown => out.add(
            path,
            "whether this selector is allowed depends on who creates the Service: a tenant \
             may select only pods recorded as hers"
                .to_string(),
            "check again with --as the requester (e.g. --as system:serviceaccount:NS:user-NAME)",
        ),
        (None, _) => out.add(
            path,
            "a requester of no tenant may not route a Service to pods: it cannot be confined \
             to pods of its own"
                .to_string(),
            "leave the Service to the platform's administrators, or create it as a tenant",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run_service, ServiceCase, SERVICE_CASE};

    #[test]
    fn cases() {
        run_service(
            &CHECK,
            &[
                ServiceCase {
                    name: "selects her own pods by the record",
                    spec: "{selector: {app: viewer, hubguard.dev/tenant: alice}}",
                    requester_tenant: Some("alice"),
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "no selector: no pods",
                    spec: "{ports: [{port: 80}]}",
                    requester_tenant: Some("alice"),
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "z2jh's hub labels",
                    spec: "{selector: {app: jupyterhub, component: hub, release: tess-private}}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.selector"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "another tenant's pods",
                    spec: "{selector: {hubguard.dev/tenant: bob}}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.selector"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "a requester of no tenant",
                    spec: "{selector: {hubguard.dev/tenant: bob}}",
                    requester: RequesterKind::Untrusted,
                    expect: &["spec.selector"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "offline: depends on the requester",
                    spec: "{selector: {app: viewer}}",
                    expect: &["spec.selector"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "the hub's own Service",
                    spec: "{selector: {app: jupyterhub, component: hub}}",
                    requester: RequesterKind::Trusted,
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "a Dask resource's scheduler Service is the operator's",
                    base: "spec.scheduler.service",
                    name_of_service: None,
                    spec: "{selector: {dask.org/cluster-name: mine}}",
                    requester_tenant: Some("alice"),
                    ..SERVICE_CASE
                },
            ],
        );
    }
}
