//! PSP `privileged`: no container runs privileged.

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "privileged",
    summary: "containers must not run privileged",
    evaluate,
    defaults: None,
    validate: None,
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    if class.controls.privileged != Some(false) {
        return;
    }
    for c in pod.containers() {
        if c.security.and_then(|s| s.privileged) == Some(true) {
            out.add_for(
                &c,
                "securityContext.privileged",
                format!("container '{}' is privileged", c.name),
                "remove securityContext.privileged (or set it to false)",
            );
        }
    }
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.privileged = Some(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    #[test]
    fn cases() {
        let deny = "controls: {privileged: false}";
        run(
            &CHECK,
            &[
                Case { name: "unset", policy: deny, ..CASE },
                Case {
                    name: "false",
                    policy: deny,
                    pod: "{containers: [{name: a, securityContext: {privileged: false}}]}",
                    ..CASE
                },
                Case {
                    name: "privileged container",
                    policy: deny,
                    pod: "{containers: [{name: a, securityContext: {privileged: true}}]}",
                    expect: &["spec.containers[0].securityContext.privileged"],
                    ..CASE
                },
                Case {
                    name: "privileged init and ephemeral containers",
                    policy: deny,
                    pod: "{containers: [{name: a}], initContainers: [{name: i, securityContext: {privileged: true}}], ephemeralContainers: [{name: e, securityContext: {privileged: true}}]}",
                    expect: &[
                        "spec.initContainers[0].securityContext.privileged",
                        "spec.ephemeralContainers[0].securityContext.privileged",
                    ],
                    ..CASE
                },
                Case {
                    name: "allowed by policy",
                    policy: "controls: {privileged: true}",
                    pod: "{containers: [{name: a, securityContext: {privileged: true}}]}",
                    ..CASE
                },
                Case {
                    name: "not configured",
                    pod: "{containers: [{name: a, securityContext: {privileged: true}}]}",
                    ..CASE
                },
            ],
        );
    }

    #[test]
    fn z2jh_metadata_blocker_gets_the_node_agent_fix() {
        let case = Case {
            name: "z2jh blocker",
            policy: "controls: {privileged: false}",
            pod: "{containers: [{name: notebook}], initContainers: [{name: block-cloud-metadata, securityContext: {privileged: true}}]}",
            ..CASE
        };
        let found = crate::checks::testing::findings(&CHECK, &case);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].fix.contains("blockWithIptables: false"),
            "{}",
            found[0].fix
        );
    }
}
