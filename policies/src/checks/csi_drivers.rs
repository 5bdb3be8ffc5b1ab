//! PSP `allowedCSIDrivers`: inline CSI volumes only from listed drivers. For other classes an
//! empty or missing list restricts nothing beyond `volumes`, as in PSP; for the tenant classes
//! (user, dask) it means no driver at all, since an inline CSI volume reaches whatever its
//! driver serves (secret stores, buckets, other tenants' shares).

use serde::{Deserialize, Serialize};

use super::{Check, Findings};
use crate::classify::PodClass;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "allowedCSIDrivers",
    summary: "inline CSI volumes must use a listed driver",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedCsiDriver {
    pub name: String,
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let tenant_class = matches!(class.class, PodClass::User | PodClass::Dask);
    let allowed = class
        .controls
        .allowed_csi_drivers
        .as_deref()
        .unwrap_or_default();
    if allowed.is_empty() && !tenant_class {
        return;
    }
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let Some(csi) = &volume.csi else {
            continue;
        };
        if !allowed.iter().any(|a| a.name == csi.driver) {
            let names: Vec<&str> = allowed.iter().map(|a| a.name.as_str()).collect();
            out.add(
                pod.path(&format!("volumes[{i}].csi.driver")),
                format!("volume '{}' uses CSI driver {}", volume.name, csi.driver),
                if names.is_empty() {
                    "remove the volume: this class may use no inline CSI volumes".to_string()
                } else {
                    format!("use one of the allowed drivers: {}", names.join(", "))
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    #[test]
    fn cases() {
        let policy = "controls: {allowedCSIDrivers: [{name: secrets-store.csi.k8s.io}]}";
        run(
            &CHECK,
            &[
                Case {
                    name: "listed driver",
                    policy,
                    pod: "{containers: [{name: a}], volumes: [{name: s, csi: {driver: secrets-store.csi.k8s.io}}]}",
                    ..CASE
                },
                Case {
                    name: "other driver",
                    policy,
                    pod: "{containers: [{name: a}], volumes: [{name: s, csi: {driver: hostpath.csi.k8s.io}}]}",
                    expect: &["spec.volumes[0].csi.driver"],
                    ..CASE
                },
                Case {
                    name: "empty list, a platform pod: PSP's meaning",
                    policy: "controls: {allowedCSIDrivers: []}",
                    class: PodClass::Platform,
                    pod: "{containers: [{name: a}], volumes: [{name: s, csi: {driver: hostpath.csi.k8s.io}}]}",
                    ..CASE
                },
                Case {
                    name: "empty list, a tenant's pod: no driver",
                    policy: "controls: {allowedCSIDrivers: []}",
                    pod: "{containers: [{name: a}], volumes: [{name: s, csi: {driver: hostpath.csi.k8s.io}}]}",
                    expect: &["spec.volumes[0].csi.driver"],
                    ..CASE
                },
                Case {
                    name: "no list, a dask pod: no driver",
                    class: PodClass::Dask,
                    pod: "{containers: [{name: a}], volumes: [{name: s, csi: {driver: secrets-store.csi.k8s.io}}]}",
                    expect: &["spec.volumes[0].csi.driver"],
                    ..CASE
                },
            ],
        );
    }
}
