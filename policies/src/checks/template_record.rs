//! `/mutate` records the identity on the pod templates of every kind that makes pods but one:
//! a ReplicaSet's template is left alone, because the deployment controller finds its own
//! ReplicaSet by comparing templates, and a template changed at creation would make it create
//! ReplicaSets without end. A ReplicaSet created directly, by anyone but a trusted requester,
//! would then have the trusted replicaset controller make pods with no record: class `other`,
//! no defaults, no tenant (its pods reached private addresses and SMTP in the node agent). So
//! such a ReplicaSet carries the record in its template itself, or is refused; a Deployment
//! gets it written.

use super::{Check, Findings};
use crate::identity::{RequesterKind, CLASS_LABEL, TENANT_LABEL};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "templateRecord",
    summary:
        "a ReplicaSet no trusted requester creates carries the identity record in its template",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    let is_replicaset = pod.object.get("kind").and_then(|k| k.as_str()) == Some("ReplicaSet");
    if !is_replicaset || pod.requester == RequesterKind::Trusted {
        return;
    }
    // A record that is there but wrong is recordedIdentity's to refuse.
    let tenant_missing = pod.tenant().is_some() && pod.recorded.tenant.is_none();
    if pod.recorded.class.is_some() && !tenant_missing {
        return;
    }
    let mut record = format!("{CLASS_LABEL}: {}", pod.class.as_str());
    if let Some(tenant) = pod.tenant() {
        record.push_str(&format!(", {TENANT_LABEL}: {tenant}"));
    }
    out.add(
        pod.metadata_path("labels"),
        "a ReplicaSet's template carries no identity record, and the mutation does not write \
         one there: its pods would belong to no class and no tenant"
            .to_string(),
        format!("add {record} to spec.template.metadata.labels, or create a Deployment"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};
    use crate::classify::PodClass;

    const REPLICASET: &str = "{kind: ReplicaSet, metadata: {name: mine}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "a tenant's ReplicaSet with the record",
                    object: Some(REPLICASET),
                    meta_base: "spec.template.metadata",
                    labels: "{hubguard.dev/class: user, hubguard.dev/tenant: alice}",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "a tenant's ReplicaSet without it",
                    object: Some(REPLICASET),
                    meta_base: "spec.template.metadata",
                    labels: "{hub.jupyter.org/username: alice}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.template.metadata.labels"],
                    ..CASE
                },
                Case {
                    name: "a class recorded, the tenant not",
                    object: Some(REPLICASET),
                    meta_base: "spec.template.metadata",
                    labels: "{hubguard.dev/class: user}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.template.metadata.labels"],
                    ..CASE
                },
                Case {
                    name: "an unknown requester's, unrecorded",
                    object: Some(REPLICASET),
                    meta_base: "spec.template.metadata",
                    requester: RequesterKind::Untrusted,
                    class: PodClass::Other,
                    expect: &["spec.template.metadata.labels"],
                    ..CASE
                },
                Case {
                    name: "the deployment controller's, from a recorded Deployment",
                    object: Some(REPLICASET),
                    meta_base: "spec.template.metadata",
                    requester: RequesterKind::Trusted,
                    ..CASE
                },
                Case {
                    name: "a Deployment: the mutation records it",
                    object: Some("{kind: Deployment, metadata: {name: mine}}"),
                    meta_base: "spec.template.metadata",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
            ],
        );
    }
}
