//! Tenancy: a tenant's pod mounts only its own home claim and the shared claims the policy
//! lists. Home claims follow z2jh: `claim-<tenant>`, and `claim-<tenant>--<server>` for the
//! named server in the pod's `hub.jupyter.org/servername` label. `--` cannot occur inside an
//! escaped username, so no tenant's name can reach another's claim.

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "tenantVolumes",
    summary: "pods may mount only their tenant's home claim and the shared claims",
    evaluate,
    apply_default: None,
};

const SERVER_NAME_LABEL: &str = "hub.jupyter.org/servername";

fn is_home_claim(claim: &str, tenant: &str, server: Option<&str>) -> bool {
    let Some(rest) = claim
        .strip_prefix("claim-")
        .and_then(|c| c.strip_prefix(tenant))
    else {
        return false;
    };
    rest.is_empty() || server.is_some_and(|s| !s.is_empty() && rest.strip_prefix("--") == Some(s))
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
        if rules.shared_claims.iter().any(|c| c == claim) {
            continue;
        }
        let home_ok = rules.home_claims && tenant.is_some_and(|t| is_home_claim(claim, t, server));
        if home_ok {
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

    const PRIVATE: &str = "volumes: {homeClaims: true, sharedClaims: [tess-ffi]}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "own home by label",
                    policy: PRIVATE,
                    labels: "{hub.jupyter.org/username: alice}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice}}]}",
                    ..CASE
                },
                Case {
                    name: "own named server",
                    policy: PRIVATE,
                    labels: "{hub.jupyter.org/username: alice, hub.jupyter.org/servername: gpu}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice--gpu}}]}",
                    ..CASE
                },
                Case {
                    name: "someone else's home",
                    policy: PRIVATE,
                    labels: "{hub.jupyter.org/username: alice}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-bob}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
                Case {
                    name: "prefix of a longer name is not a home",
                    policy: PRIVATE,
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
                },
                Case {
                    name: "shared claim",
                    policy: PRIVATE,
                    pod: "{containers: [{name: a}], volumes: [{name: ffi, persistentVolumeClaim: {claimName: tess-ffi, readOnly: true}}]}",
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
                    labels: "{hub.jupyter.org/username: alice}",
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-alice}}]}",
                    expect: &["spec.volumes[0].persistentVolumeClaim.claimName"],
                    ..CASE
                },
            ],
        );
    }
}
