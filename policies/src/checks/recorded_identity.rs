//! One identity per pod: the class and tenant recorded on a pod (or template) by `/mutate`
//! must be what hubguard decides for its requester. Everything downstream reads that record —
//! the node agent above all — so a forged record would be a forged class. Tenant names must
//! also be unambiguous: z2jh names a named server's home `claim-<user>--<server>`, so a tenant
//! called `alice--gpu` could pass for Alice's `gpu` server. KubeSpawner puts `--` in a name only
//! before the hash of a name it had to make safe (`alice-example-org---1a2b3c4d`); such a
//! tenant is fine.

use super::{Check, Findings};
use crate::identity::{is_label_value, parse_class, Recorded, CLASS_LABEL, TENANT_LABEL};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "recordedIdentity",
    summary:
        "the recorded class and tenant are the ones hubguard decides; tenant names are unambiguous",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

/// A recorded class must name a class, the one hubguard decides.
fn judge_class(recorded: Option<&str>, decided: &str, path: String, out: &mut Findings) {
    match recorded {
        Some(recorded) if parse_class(recorded).is_none() => out.add(
            path,
            format!("'{recorded}' is not a pod class"),
            format!("remove the label {CLASS_LABEL}: hubguard records it"),
        ),
        Some(recorded) if recorded != decided => out.add(
            path,
            format!(
                "recorded as a {recorded} pod, but hubguard decides {decided} for this requester"
            ),
            format!("remove the label {CLASS_LABEL}: hubguard records it"),
        ),
        _ => {}
    }
}

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    let tenant_path = || pod.metadata_path(&format!("labels[{TENANT_LABEL}]"));
    let decided = pod.class.as_str();
    if pod.recorded.class.is_some() {
        let path = pod.metadata_path(&format!("labels[{CLASS_LABEL}]"));
        judge_class(pod.recorded.class, decided, path, out);
    }
    // The dask-kubernetes operator copies a Dask resource's own labels onto the pods it makes,
    // under the template's: where /mutate recorded nothing on the template (validate-only),
    // a class written on the resource itself would reach the pods, from a trusted creator.
    if pod.meta_base != "metadata" {
        if let Some(recorded) = Recorded::of(pod.object_labels).class {
            let path = format!("metadata.labels[{CLASS_LABEL}]");
            judge_class(Some(recorded), decided, path, out);
        }
    }
    match (pod.recorded.tenant, pod.tenant()) {
        (Some(recorded), Some(tenant)) if recorded != tenant => out.add(
            tenant_path(),
            format!("recorded for tenant {recorded}, but the pod is tenant {tenant}'s"),
            format!("remove the label {TENANT_LABEL}: hubguard records it"),
        ),
        (Some(recorded), None) => out.add(
            tenant_path(),
            format!("recorded for tenant {recorded}, but the requester may not create pods for a tenant"),
            format!("remove the label {TENANT_LABEL}"),
        ),
        _ => {}
    }
    if let Some(tenant) = pod.tenant() {
        if tenant.contains("--") && !crate::kubespawner::is_hashed_slug(tenant) {
            out.add(
                pod.metadata_path("labels"),
                format!(
                    "tenant name {tenant} contains '--', which z2jh puts between a user and a \
                     server name: it would own another user's named-server home"
                ),
                "give the tenant a name without '--' (its service account or username)",
            );
        } else if !is_label_value(tenant) {
            out.add(
                pod.metadata_path("labels"),
                format!("tenant name {tenant} cannot be recorded as a label value"),
                "give the tenant a name of at most 63 letters, digits, '-', '_' and '.'",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};
    use crate::classify::PodClass;
    use crate::identity::RequesterKind;

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "as recorded by /mutate",
                    labels: "{hubguard.dev/class: user, hubguard.dev/tenant: alice}",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "not recorded (no /mutate)",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "a tenant records another tenant",
                    labels: "{hubguard.dev/class: user, hubguard.dev/tenant: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels[hubguard.dev/tenant]"],
                    ..CASE
                },
                Case {
                    name: "a tenant records the platform class",
                    labels: "{hubguard.dev/class: platform, hubguard.dev/tenant: alice}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels[hubguard.dev/class]"],
                    ..CASE
                },
                Case {
                    name: "a tenant's DaskCluster records the platform class on itself",
                    object: Some(
                        "{kind: DaskCluster, metadata: {labels: {hubguard.dev/class: platform}}}",
                    ),
                    meta_base: "spec.worker.metadata",
                    requester_tenant: Some("alice"),
                    class: PodClass::Dask,
                    expect: &["metadata.labels[hubguard.dev/class]"],
                    ..CASE
                },
                Case {
                    name: "the operator's worker group carries its cluster's record",
                    object: Some(
                        "{kind: DaskWorkerGroup, metadata: {labels: {hubguard.dev/class: dask}}}",
                    ),
                    meta_base: "spec.worker.metadata",
                    labels: "{hubguard.dev/class: dask, hubguard.dev/tenant: alice}",
                    requester: RequesterKind::Trusted,
                    class: PodClass::Dask,
                    ..CASE
                },
                Case {
                    name: "a record that names no class",
                    labels: "{hubguard.dev/class: root}",
                    requester: RequesterKind::Trusted,
                    expect: &["metadata.labels[hubguard.dev/class]"],
                    ..CASE
                },
                Case {
                    name: "an unknown controller records a tenant",
                    labels: "{hubguard.dev/class: other, hubguard.dev/tenant: bob}",
                    requester: RequesterKind::Untrusted,
                    class: PodClass::Other,
                    expect: &["metadata.labels[hubguard.dev/tenant]"],
                    ..CASE
                },
                Case {
                    name: "a trusted controller's pod from a tenant's template",
                    labels: "{hubguard.dev/class: user, hubguard.dev/tenant: alice}",
                    requester: RequesterKind::Trusted,
                    ..CASE
                },
                Case {
                    name: "an ambiguous tenant name",
                    requester_tenant: Some("alice--gpu"),
                    expect: &["metadata.labels"],
                    ..CASE
                },
                Case {
                    name: "a name KubeSpawner made safe with a hash",
                    labels: "{hub.jupyter.org/username: alice-example-org---1a2b3c4d}",
                    requester: RequesterKind::Trusted,
                    ..CASE
                },
                Case {
                    name: "a hash's shape around a '--' name",
                    requester_tenant: Some("alice--gpu---1a2b3c4d"),
                    expect: &["metadata.labels"],
                    ..CASE
                },
            ],
        );
    }
}
