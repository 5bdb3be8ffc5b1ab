//! Tenancy: a tenant's pod mounts only its own home claims and the shared claims the policy
//! lists, and shared claims read-only (the volume and every mount of it) unless the policy
//! lists a claim as writable. Home claims are named as z2jh 4's KubeSpawner names them
//! (`claim-{user_server}`, see `kubespawner`), computed from the user and server names the hub
//! records in the pod's annotations when its labels were made from them, else from the labels:
//! the claim of the pod's server, and the user's default server's.

use super::{Check, Findings};
use crate::kubespawner;
use crate::model::TenantVolumes;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;
use crate::validate::FieldErrors;

pub const CHECK: Check = Check {
    id: "tenantVolumes",
    summary: "pods may mount only their tenant's home claim and the shared claims",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

pub(crate) const SERVER_NAME_LABEL: &str = "hub.jupyter.org/servername";
/// KubeSpawner records the user's and the server's names as they are in these annotations;
/// the labels hold them made safe as label values.
const USERNAME_ANNOTATION: &str = "hub.jupyter.org/username";
const SERVER_NAME_ANNOTATION: &str = "hub.jupyter.org/servername";

/// The home claims a pod of `tenant` may mount, its own server's first. The annotations count
/// only when they are the names the pod's tenant and server label were made from, so an
/// annotation cannot point a pod at another user's home.
pub(crate) fn home_claims(
    rules: &TenantVolumes,
    pod: &PodSubject<'_>,
    tenant: &str,
) -> Vec<String> {
    let server_label = pod.labels.get(SERVER_NAME_LABEL).unwrap_or("");
    let (user, server) = match pod.annotations.get(USERNAME_ANNOTATION) {
        Some(user) => {
            let server = pod.annotations.get(SERVER_NAME_ANNOTATION).unwrap_or("");
            if kubespawner::username_label(user) == tenant
                && kubespawner::servername_label(server) == server_label
            {
                (user, server)
            } else {
                (tenant, server_label)
            }
        }
        None => (tenant, server_label),
    };
    let template = rules
        .home_claim_template
        .as_deref()
        .unwrap_or(kubespawner::DEFAULT_CLAIM_TEMPLATE);
    let mut claims = vec![kubespawner::expand(template, user, server)];
    if !server.is_empty() {
        let default_server = kubespawner::expand(template, user, "");
        if default_server != claims[0] {
            claims.push(default_server);
        }
    }
    claims
}

pub fn validate(rules: &TenantVolumes, path: &str, errs: &mut FieldErrors) {
    if let Some(error) = rules
        .home_claim_template
        .as_deref()
        .and_then(kubespawner::template_error)
    {
        errs.push(format!("{path}.homeClaimTemplate"), error);
    }
}

/// Whether a pod may read `claim` (its tenant's home, or a shared or writable claim).
pub(crate) fn claim_allowed(rules: &TenantVolumes, claim: &str, pod: &PodSubject<'_>) -> bool {
    rules.shared_claims.iter().any(|c| c == claim)
        || rules.writable_claims.iter().any(|c| c == claim)
        || (rules.home_claims
            && pod
                .tenant()
                .is_some_and(|t| home_claims(rules, pod, t).iter().any(|h| h == claim)))
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
        if claim_allowed(rules, claim, pod) {
            continue;
        }
        let message = match tenant {
            Some(t) => format!("claim {claim} is neither tenant {t}'s home nor a shared claim"),
            None => {
                format!("claim {claim} is not a shared claim, and the pod belongs to no tenant")
            }
        };
        let fix = match (rules.home_claims, tenant) {
            (true, Some(t)) => format!(
                "mount {} (the tenant's home) or a shared claim",
                home_claims(rules, pod, t).remove(0)
            ),
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
                    name: "digits first: the claim KubeSpawner makes, not the label's",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: 1337coder}",
                    annotations: "{hub.jupyter.org/username: 1337coder}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-x-1337coder---6640c2da}}]}",
                    ..CASE
                },
                Case {
                    name: "digits first, without the annotation",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: 1337coder}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-x-1337coder---6640c2da}}]}",
                    ..CASE
                },
                Case {
                    name: "digits first: the label's claim is no home",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: 1337coder}",
                    annotations: "{hub.jupyter.org/username: 1337coder}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-1337coder}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "an e-mail login, hashed in the label",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice-smith-example-o---323a0b32, hub.jupyter.org/servername: gpu}",
                    annotations: "{hub.jupyter.org/username: Alice.Smith@example.org, hub.jupyter.org/servername: gpu}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice-smith-example-org---323a0b32--gpu}}]}",
                    ..CASE
                },
                Case {
                    name: "an annotation naming another user counts for nothing",
                    policy: PRIVATE,
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice}",
                    annotations: "{hub.jupyter.org/username: bob}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-bob}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "a tenant's own annotation for another user counts for nothing",
                    policy: PRIVATE,
                    requester_tenant: Some("alice"),
                    annotations: "{hub.jupyter.org/username: bob}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-bob}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "the hub's template: one home for every server",
                    policy: "volumes: {homeClaims: true, homeClaimTemplate: 'claim-{username}'}",
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice, hub.jupyter.org/servername: gpu}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice}}]}",
                    ..CASE
                },
                Case {
                    name: "the hub's template names no per-server home",
                    policy: "volumes: {homeClaims: true, homeClaimTemplate: 'claim-{username}'}",
                    requester: RequesterKind::Trusted,
                    labels: "{hub.jupyter.org/username: alice, hub.jupyter.org/servername: gpu}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice--gpu}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
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

    #[test]
    fn the_fix_names_the_claim_kubespawner_makes() {
        let case = Case {
            policy: PRIVATE,
            requester: RequesterKind::Trusted,
            labels: "{hub.jupyter.org/username: 1337coder}",
            annotations: "{hub.jupyter.org/username: 1337coder}",
            pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-1337coder}}]}",
            ..CASE
        };
        let found = crate::checks::testing::findings(&CHECK, &case);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].fix.contains("claim-x-1337coder---6640c2da"),
            "{}",
            found[0].fix
        );
    }
}
