//! Pod Security Standards baseline "HostProcess": a Windows HostProcess container runs as a
//! process on the node, outside any container isolation. PSP never had the field; mixed
//! clusters with Windows nodes exist, and a pod asking for it is judged wherever it lands.

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "hostProcess",
    summary: "pods and containers must not be Windows HostProcess containers",
    evaluate,
    defaults: None,
    validate: None,
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    if class.controls.host_process != Some(false) {
        return;
    }
    let pod_wide = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.host_process);
    if pod_wide == Some(true) {
        out.add(
            pod.path("securityContext.windowsOptions.hostProcess"),
            "the pod asks to run as HostProcess containers on a Windows node".into(),
            "remove securityContext.windowsOptions.hostProcess from the pod spec",
        );
    }
    for c in pod.containers() {
        let asked = c
            .security
            .and_then(|s| s.windows_options.as_ref())
            .and_then(|w| w.host_process);
        if asked == Some(true) {
            out.add_for(
                &c,
                "securityContext.windowsOptions.hostProcess",
                format!(
                    "container '{}' asks to run as a HostProcess container",
                    c.name
                ),
                "remove securityContext.windowsOptions.hostProcess",
            );
        }
    }
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.host_process = Some(false);
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
                    policy: "bundle: baseline",
                    ..CASE
                },
                Case {
                    name: "false, pod and container",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {windowsOptions: {hostProcess: false}}, containers: [{name: a, securityContext: {windowsOptions: {hostProcess: false}}}]}",
                    ..CASE
                },
                Case {
                    name: "the pod",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.windowsOptions.hostProcess"],
                    ..CASE
                },
                Case {
                    name: "an init container and an ephemeral one",
                    policy: "bundle: restricted",
                    pod: "{initContainers: [{name: i, securityContext: {windowsOptions: {hostProcess: true}}}], containers: [{name: a}], ephemeralContainers: [{name: e, securityContext: {windowsOptions: {hostProcess: true}}}]}",
                    expect: &[
                        "spec.initContainers[0].securityContext.windowsOptions.hostProcess",
                        "spec.ephemeralContainers[0].securityContext.windowsOptions.hostProcess",
                    ],
                    ..CASE
                },
                Case {
                    name: "allowed by the class",
                    policy: "controls: {hostProcess: true}",
                    pod: "{securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "not configured",
                    policy: "controls: {}",
                    pod: "{securityContext: {windowsOptions: {hostProcess: true}}, containers: [{name: a}]}",
                    ..CASE
                },
            ],
        );
    }
}
