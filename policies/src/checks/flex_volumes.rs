//! PSP `allowedFlexVolumes`: flexVolume drivers from the list only (an empty list restricts
//! nothing beyond `volumes`).

use serde::{Deserialize, Serialize};

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "allowedFlexVolumes",
    summary: "flexVolume drivers must be listed",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedFlexVolume {
    pub driver: String,
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(allowed) = class.controls.allowed_flex_volumes.as_deref() else {
        return;
    };
    if allowed.is_empty() {
        return;
    }
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let Some(flex) = &volume.flex_volume else {
            continue;
        };
        if !allowed.iter().any(|a| a.driver == flex.driver) {
            let drivers: Vec<&str> = allowed.iter().map(|a| a.driver.as_str()).collect();
            out.add(
                pod.path(&format!("volumes[{i}].flexVolume.driver")),
                format!(
                    "volume '{}' uses flexVolume driver {}",
                    volume.name, flex.driver
                ),
                format!("use one of the allowed drivers: {}", drivers.join(", ")),
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
        let policy = "controls: {allowedFlexVolumes: [{driver: example/lvm}]}";
        run(
            &CHECK,
            &[
                Case {
                    name: "listed driver",
                    policy,
                    pod: "{containers: [{name: a}], volumes: [{name: f, flexVolume: {driver: example/lvm}}]}",
                    ..CASE
                },
                Case {
                    name: "other driver",
                    policy,
                    pod: "{containers: [{name: a}], volumes: [{name: f, flexVolume: {driver: evil/root}}]}",
                    expect: &["spec.volumes[0].flexVolume.driver"],
                    ..CASE
                },
                Case {
                    name: "not a flex volume",
                    policy,
                    pod: "{containers: [{name: a}], volumes: [{name: e, emptyDir: {}}]}",
                    ..CASE
                },
            ],
        );
    }
}
