//! PSP `allowPrivilegeEscalation` and `defaultAllowPrivilegeEscalation`. Unset means allowed
//! (the kernel's no_new_privs stays off), so a policy that forbids escalation needs an explicit
//! false on every container, which the default supplies.

use serde_json::json;

use super::{Check, Findings};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "allowPrivilegeEscalation",
    summary: "containers must set allowPrivilegeEscalation: false",
    evaluate,
    defaults: Some(defaults),
    validate: None,
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    if class.controls.allow_privilege_escalation != Some(false) {
        return;
    }
    for c in pod.containers() {
        if c.security.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            out.add_for(
                &c,
                "securityContext.allowPrivilegeEscalation",
                format!(
                    "container '{}' may gain privileges (setuid binaries work)",
                    c.name
                ),
                "set securityContext.allowPrivilegeEscalation: false",
            );
        }
    }
}

/// Not on privileged containers: the API server refuses `privileged: true` with
/// `allowPrivilegeEscalation: false` as contradictory, and that error would hide hubguard's
/// own denial, which says what to change (found against the real kube-apiserver).
fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    if let Some(default) = class.controls.default_allow_privilege_escalation {
        out.push(PodDefault::container(
            &["securityContext", "allowPrivilegeEscalation"],
            Rule::UnsetUnlessPrivileged(json!(default)),
        ));
    }
}

fn level(c: &mut crate::controls::Controls, level: super::Level) {
    if level == super::Level::Restricted {
        c.allow_privilege_escalation = Some(false);
        c.default_allow_privilege_escalation = Some(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const DENY: &str =
        "controls: {allowPrivilegeEscalation: false, defaultAllowPrivilegeEscalation: false}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "unset is allowed escalation",
                    policy: DENY,
                    expect: &["spec.containers[0].securityContext.allowPrivilegeEscalation"],
                    ..CASE
                },
                Case {
                    name: "explicit false",
                    policy: DENY,
                    pod: "{containers: [{name: a, securityContext: {allowPrivilegeEscalation: false}}]}",
                    ..CASE
                },
                Case {
                    name: "explicit true in an ephemeral container",
                    policy: DENY,
                    pod: "{containers: [{name: a, securityContext: {allowPrivilegeEscalation: false}}], ephemeralContainers: [{name: dbg, securityContext: {allowPrivilegeEscalation: true}}]}",
                    expect: &["spec.ephemeralContainers[0].securityContext.allowPrivilegeEscalation"],
                    ..CASE
                },
                Case {
                    name: "allowed",
                    policy: "controls: {allowPrivilegeEscalation: true}",
                    pod: "{containers: [{name: a, securityContext: {allowPrivilegeEscalation: true}}]}",
                    ..CASE
                },
            ],
        );
    }

    #[test]
    fn defaults() {
        run_defaults(
            &CHECK,
            &[
                DefaultCase {
                    name: "sets false where unset",
                    policy: DENY,
                    pod: "{containers: [{name: a}, {name: b, securityContext: {allowPrivilegeEscalation: false}}]}",
                    want: "{containers: [{name: a, securityContext: {allowPrivilegeEscalation: false}}, {name: b, securityContext: {allowPrivilegeEscalation: false}}]}",
                },
                DefaultCase {
                    name: "leaves privileged containers for the denial",
                    policy: DENY,
                    pod: "{containers: [{name: a, securityContext: {privileged: true}}]}",
                    want: "{containers: [{name: a, securityContext: {privileged: true}}]}",
                },
            ],
        );
    }
}
