//! PSP `allowedCSIDrivers`: inline CSI volumes only from listed drivers (an empty list restricts
//! nothing beyond `volumes`).

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "allowedCSIDrivers",
    summary: "inline CSI volumes must use a listed driver",
    evaluate,
    apply_default: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(allowed) = class.controls.allowed_csi_drivers.as_deref() else {
        return;
    };
    if allowed.is_empty() {
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
                format!("use one of the allowed drivers: {}", names.join(", ")),
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
                    name: "empty list",
                    policy: "controls: {allowedCSIDrivers: []}",
                    pod: "{containers: [{name: a}], volumes: [{name: s, csi: {driver: hostpath.csi.k8s.io}}]}",
                    ..CASE
                },
            ],
        );
    }
}
