//! PSP `hostNetwork`: the pod does not share the host's network namespace.

use super::{support::host_namespace, Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "hostNetwork",
    summary: "pods must not use the host's network namespace",
    evaluate,
    defaults: None,
    validate: None,
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    host_namespace(
        class.controls.host_network,
        pod.spec.host_network,
        "hostNetwork",
        pod,
        out,
    );
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.host_network = Some(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "unset",
                    policy: "controls: {hostNetwork: false}",
                    ..CASE
                },
                Case {
                    name: "false",
                    policy: "controls: {hostNetwork: false}",
                    pod: "{hostNetwork: false, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "requested",
                    policy: "controls: {hostNetwork: false}",
                    pod: "{hostNetwork: true, containers: [{name: a}]}",
                    expect: &["spec.hostNetwork"],
                    ..CASE
                },
                Case {
                    name: "allowed by policy",
                    policy: "controls: {hostNetwork: true}",
                    pod: "{hostNetwork: true, containers: [{name: a}]}",
                    ..CASE
                },
            ],
        );
    }
}
