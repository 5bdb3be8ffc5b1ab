//! PSP `hostPID`: the pod does not share the host's PID namespace.

use super::{support::host_namespace, Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "hostPID",
    summary: "pods must not use the host's PID namespace",
    evaluate,
    defaults: None,
    validate: None,
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    host_namespace(
        class.controls.host_pid,
        pod.spec.host_pid,
        "hostPID",
        pod,
        out,
    );
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.host_pid = Some(false);
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
                    policy: "controls: {hostPID: false}",
                    ..CASE
                },
                Case {
                    name: "false",
                    policy: "controls: {hostPID: false}",
                    pod: "{hostPID: false, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "requested",
                    policy: "controls: {hostPID: false}",
                    pod: "{hostPID: true, containers: [{name: a}]}",
                    expect: &["spec.hostPID"],
                    ..CASE
                },
                Case {
                    name: "allowed by policy",
                    policy: "controls: {hostPID: true}",
                    pod: "{hostPID: true, containers: [{name: a}]}",
                    ..CASE
                },
            ],
        );
    }
}
