//! Tenancy: a tenant's pod mounts only its own home claim and the shared claims the policy
//! lists, and shared claims read-only (the volume and every mount of it) unless the policy
//! lists a claim as writable. Home claims follow z2jh: `claim-<tenant>`, and
//! `claim-<tenant>--<server>` for the named server in the pod's `hub.jupyter.org/servername`
//! label. Tenant names with `--` are refused (`recordedIdentity`), so no tenant's name can
//! reach another's claim.

use super::{Check, Findings};
use crate::model::TenantVolumes;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "tenantVolumes",
    summary: "pods may mount only their tenant's home claim and the shared claims",
    evaluate,
    apply_default: None,
    validate: None,
    level: None,
    normalise: None,
};

pub(crate) const SERVER_NAME_LABEL: &str = "hub.jupyter.org/servername";

fn is_home_claim(claim: &str, tenant: &str, server: Option<&str>) -> bool {
    let Some(rest) = claim
        .strip_prefix("claim-")
        .and_then(|c| c.strip_prefix(tenant))
    else {
        return false;
    };
    rest.is_empty() || server.is_some_and(|s| !s.is_empty() && rest.strip_prefix("--") == Some(s))
}

/// Whether a pod of `tenant` may read `claim` (its home, or a shared or writable claim).
pub(crate) fn claim_allowed(
    rules: &TenantVolumes,
    claim: &str,
    tenant: Option<&str>,
    server: Option<&str>,
) -> bool {
    rules.shared_claims.iter().any(|c| c == claim)
        || rules.writable_claims.iter().any(|c| c == claim)
        || (rules.home_claims && tenant.is_some_and(|t| is_home_claim(claim, t, server)))
}

/// A shared claim must be read-only in the volume and in every mount of it.
fn judge_read_only(pod: &PodSubject<'_>, i: usize, read_only: bool, out: &mut Findings) {
    let Some(volume) = pod.spec.volumes.as_ref().and_then(|v| v.get(i)) else {
        return;
    };
    let claim = volume
        .persistent_volume_claim
        .as_ref()
        .map_or("", |p| p.claim_name.as_str());
    if !read_only {
        out.add(
            pod.path(&format!("volumes[{i}].persistentVolumeClaim.readOnly")),
            format!("shared claim {claim} is mounted writable"),
            "set readOnly: true on the volume's persistentVolumeClaim",
        );
    }
    for c in pod.containers() {
        for (m, mount) in c.volume_mounts.iter().enumerate() {
            if mount.name == volume.name && mount.read_only != Some(true) {
                out.add_for(
                    &c,
                    &format!("volumeMounts[{m}].readOnly"),
                    format!(
                        "container '{}' mounts shared claim {claim} writable",
                        c.name
                    ),
                    "set readOnly: true on the mount",
                );
            }
        }
    }
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rules) = &class.volumes else {
        return;
    };
    let tenant = pod.tenant();
    let server = pod.labels.get(SERVER_NAME_LABEL);
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let Some(pvc) = &volume.persistent_volume_claim else {
            continue;
        };
        let claim = pvc.claim_name.as_str();
        if rules.writable_claims.iter().any(|c| c == claim) {
            continue;
        }
        if rules.shared_claims.iter().any(|c| c == claim) {
            judge_read_only(pod, i, pvc.read_only == Some(true), out);
            continue;
        }
        if claim_allowed(rules, claim, tenant, server) {
            continue;
        }
        let message = match tenant {
            Some(t) => format!("claim {claim} is neither tenant {t}'s home nor a shared claim"),
            None => {
                format!("claim {claim} is not a shared claim, and the pod belongs to no tenant")
            }
        };
        let fix = match (rules.home_claims, tenant) {
            (true, Some(t)) => format!("mount claim-{t} or a shared claim"),
            _ if rules.shared_claims.is_empty() => {
                "remove the volume: this class may mount no persistent claims".to_string()
            }
            _ => format!(
                "mount one of the shared claims: {}",
                rules.shared_claims.join(", ")
            ),
        };
        out.add(
            pod.path(&format!("volumes[{i}].persistentVolumeClaim.claimName")),
            message,
            fix,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};
    use crate::identity::RequesterKind;

    const PRIVATE: &str = "volumes: {homeClaims: true, sharedClaims: [tess-ffi]}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "own home by label, the hub asking",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice}}]}",
                    ..CASE
                },
                Case {
                    name: "own named server",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice, hub.jupyter.org/servername: gpu}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice--gpu}}]}",
                    ..CASE
                },
                Case {
                    name: "someone else's home",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-bob}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "prefix of a longer name is not a home",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice-2dbob}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "the requester decides, not the label",
                    policy: PRIVATE,
                    labels: "{hub.jupyter.org/username: bob}",
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-bob}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "an unknown controller's labels give no home",
                    policy: PRIVATE,
                    labels: "{hub.jupyter.org/username: bob}",
                    requester: RequesterKind::Untrusted,
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-bob}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "shared claim",
                    policy: PRIVATE,
                    pod: "{containers: [{name: a, volumeMounts: [{name: ffi, mountPath: /ffi, readOnly: true}]}], volumes: [{name: ffi, persistentVolumeClaim: {claimName: tess-ffi, readOnly: true}}]}",
                    ..CASE
                },
                Case {
                    name: "shared claim, writable volume",
                    policy: PRIVATE,
                    pod: "{containers: [{name: a}], volumes: [{name: ffi, persistentVolumeClaim: {claimName: tess-ffi}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.readOnly"],
                    ..CASE
                },
                Case {
                    name: "shared claim, read-only volume, writable mount",
                    policy: PRIVATE,
                    pod: "{containers: [{name: a, volumeMounts: [{name: ffi, mountPath: /ffi}]}], volumes: [{name: ffi, persistentVolumeClaim: {claimName: tess-ffi, readOnly: true}}]}",
                    expect: &["spec.containers[0].volumeMounts[0].readOnly"],
                    ..CASE
                },
                Case {
                    name: "a claim the policy makes writable",
                    policy: "volumes: {writableClaims: [scratch]}",
                    pod: "{containers: [{name: a, volumeMounts: [{name: s, mountPath: /s}]}], volumes: [{name: s, persistentVolumeClaim: {claimName: scratch}}]}",
                    ..CASE
                },
                Case {
                    name: "no tenant, no home",
                    policy: PRIVATE,
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "public hub: no homes at all",
                    policy: "volumes: {homeClaims: false}",
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
            ],
        );
    }
}
