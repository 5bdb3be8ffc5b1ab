//! Tenancy: what a tenant creates must be labelled for that tenant. Otherwise a notebook's
//! service account could create pods that the hub, the culler and the dashboards attribute to
//! someone else.

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "tenantLabel",
    summary: "objects a tenant creates must carry that tenant's label",
    evaluate,
    apply_default: None,
};

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    let Some(tenant) = pod.requester_tenant else {
        return;
    };
    if pod.label_tenant == Some(tenant) {
        return;
    }
    let key = pod.tenant_label_key;
    let message = match pod.label_tenant {
        Some(other) => format!("requested by tenant {tenant} but labelled for tenant {other}"),
        None => format!("requested by tenant {tenant} but carries no tenant label"),
    };
    out.add(
        pod.metadata_path(&format!("labels[{key}]")),
        message,
        format!("set the label {key}: {tenant}"),
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
                    name: "labelled for the requester",
                    labels: "{hub.jupyter.org/username: alice}",
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
                    name: "no label",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels[hub.jupyter.org/username]"],
                    ..CASE
                },
                Case {
                    name: "requester is not a tenant",
                    labels: "{hub.jupyter.org/username: bob}",
                    ..CASE
                },
            ],
        );
    }
}
