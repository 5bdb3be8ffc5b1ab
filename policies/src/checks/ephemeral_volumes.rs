//! Generic ephemeral volumes: a pod's own claim template, which the API server turns into a
//! PersistentVolumeClaim. Its `dataSource` / `dataSourceRef` clones an existing claim or
//! snapshot — another tenant's home, copied into a fresh writable volume — and its storage
//! class may be one the platform keeps for itself. A tenant class clones only claims its pods
//! may mount, restores no snapshots, and asks only for listed storage classes.

use super::tenant_volumes::claim_allowed;
use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "ephemeralVolumes",
    summary: "generic ephemeral volumes use listed storage classes and clone only mountable claims",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rules) = &class.volumes else {
        return;
    };
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let Some(ephemeral) = &volume.ephemeral else {
            continue;
        };
        let at = |rest: &str| pod.path(&format!("volumes[{i}].ephemeral.{rest}"));
        let Some(classes) = &rules.ephemeral_storage_classes else {
            out.add(
                at("volumeClaimTemplate"),
                format!(
                    "volume '{}' is a generic ephemeral volume, which this class may not use",
                    volume.name
                ),
                "use an emptyDir volume",
            );
            continue;
        };
        let Some(template) = &ephemeral.volume_claim_template else {
            continue;
        };
        let spec = &template.spec;
        let storage_class = spec.storage_class_name.as_deref().unwrap_or("");
        if !classes.iter().any(|c| c == "*" || c == storage_class) {
            out.add(
                at("volumeClaimTemplate.spec.storageClassName"),
                format!(
                    "volume '{}' asks for storage class '{storage_class}'",
                    volume.name
                ),
                format!(
                    "use one of the storage classes: {}",
                    classes
                        .iter()
                        .map(|c| format!("'{c}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let sources = [
            (
                "dataSource",
                spec.data_source
                    .as_ref()
                    .map(|s| (s.api_group.as_deref(), s.kind.as_str(), s.name.as_str())),
            ),
            (
                "dataSourceRef",
                spec.data_source_ref
                    .as_ref()
                    .map(|s| (s.api_group.as_deref(), s.kind.as_str(), s.name.as_str())),
            ),
        ];
        for (field, source) in sources {
            let Some((group, kind, name)) = source else {
                continue;
            };
            let is_claim = group.unwrap_or("").is_empty() && kind == "PersistentVolumeClaim";
            if is_claim && claim_allowed(rules, name, pod) {
                continue;
            }
            out.add(
                at(&format!("volumeClaimTemplate.spec.{field}")),
                format!(
                    "volume '{}' is filled from {kind} {name}, which this pod may not read",
                    volume.name
                ),
                format!("remove {field}, or clone a claim the pod may mount"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    const POLICY: &str =
        "volumes: {homeClaims: true, sharedClaims: [tess-ffi], ephemeralStorageClasses: [scratch]}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "scratch space of a listed class",
                    policy: POLICY,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: s, ephemeral: {volumeClaimTemplate: {spec: {storageClassName: scratch, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}]}",
                    ..CASE
                },
                Case {
                    name: "a clone of another tenant's home",
                    policy: POLICY,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: s, ephemeral: {volumeClaimTemplate: {spec: {storageClassName: scratch, dataSource: {kind: PersistentVolumeClaim, name: claim-bob}, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}]}",
                    expect: &["spec.volumes[0].ephemeral.volumeClaimTemplate.spec.dataSource"],
                    ..CASE
                },
                Case {
                    name: "a clone of one's own home",
                    policy: POLICY,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: s, ephemeral: {volumeClaimTemplate: {spec: {storageClassName: scratch, dataSourceRef: {kind: PersistentVolumeClaim, name: claim-alice}, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}]}",
                    ..CASE
                },
                Case {
                    name: "a snapshot restored",
                    policy: POLICY,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: s, ephemeral: {volumeClaimTemplate: {spec: {storageClassName: scratch, dataSourceRef: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: hub-db}, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}]}",
                    expect: &["spec.volumes[0].ephemeral.volumeClaimTemplate.spec.dataSourceRef"],
                    ..CASE
                },
                Case {
                    name: "an unlisted storage class",
                    policy: POLICY,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: s, ephemeral: {volumeClaimTemplate: {spec: {storageClassName: hub-db-ssd, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}]}",
                    expect: &["spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName"],
                    ..CASE
                },
                Case {
                    name: "no ephemeral volumes for the class",
                    policy: "volumes: {homeClaims: true}",
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: s, ephemeral: {volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}}}]}",
                    expect: &["spec.volumes[0].ephemeral.volumeClaimTemplate"],
                    ..CASE
                },
            ],
        );
    }
}
