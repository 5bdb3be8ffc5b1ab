//! PSP `hostIPC`: the pod does not share the host's IPC namespace.

use super::{support::host_namespace, Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "hostIPC",
    summary: "pods must not use the host's IPC namespace",
    evaluate,
    defaults: None,
    validate: None,
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    host_namespace(
        class.controls.host_ipc,
        pod.spec.host_ipc,
        "hostIPC",
        pod,
        out,
    );
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.host_ipc = Some(false);
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
                    policy: "controls: {hostIPC: false}",
                    ..CASE
                },
                Case {
                    name: "false",
                    policy: "controls: {hostIPC: false}",
                    pod: "{hostIPC: false, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "requested",
                    policy: "controls: {hostIPC: false}",
                    pod: "{hostIPC: true, containers: [{name: a}]}",
                    expect: &["spec.hostIPC"],
                    ..CASE
                },
                Case {
                    name: "allowed by policy",
                    policy: "controls: {hostIPC: true}",
                    pod: "{hostIPC: true, containers: [{name: a}]}",
                    ..CASE
                },
            ],
        );
    }
}
