//! PSP `runAsGroup`: the primary group id, per container (falling back to the pod).

use serde_json::json;

use super::support::{group_complaint, group_default};
use super::{Check, Findings};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "runAsGroup",
    summary: "containers must run with a group id in the allowed ranges",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.run_as_group else {
        return;
    };
    let pod_sc = pod.pod_security();
    for c in pod.containers() {
        let gid = c.effective(pod_sc, |s| s.run_as_group, |p| p.run_as_group);
        if let Some((message, fix)) = group_complaint(rule, gid, "runAsGroup") {
            let message = format!("container '{}': {message}", c.name);
            if pod_sc.and_then(|p| p.run_as_group).is_some()
                && c.security.and_then(|s| s.run_as_group).is_none()
            {
                out.add(pod.path("securityContext.runAsGroup"), message, fix);
            } else {
                out.add_for(&c, "securityContext.runAsGroup", message, fix);
            }
        }
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    if let Some(gid) = class.controls.run_as_group.as_ref().and_then(group_default) {
        out.push(PodDefault::pod(
            &["securityContext", "runAsGroup"],
            Rule::Unset(json!(gid)),
        ));
    }
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    super::support::validate_group(&c.run_as_group, &format!("{path}.runAsGroup"), errs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const MUST: &str = "controls: {runAsGroup: {rule: MustRunAs, ranges: [{min: 100, max: 100}]}}";
    const MAY: &str = "controls: {runAsGroup: {rule: MayRunAs, ranges: [{min: 100, max: 200}]}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "must: unset",
                    policy: MUST,
                    expect: &["spec.containers[0].securityContext.runAsGroup"],
                    ..CASE
                },
                Case {
                    name: "must: pod-level in range",
                    policy: MUST,
                    pod: "{securityContext: {runAsGroup: 100}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "must: root group on the pod",
                    policy: MUST,
                    pod: "{securityContext: {runAsGroup: 0}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.runAsGroup"],
                    ..CASE
                },
                Case {
                    name: "may: unset",
                    policy: MAY,
                    ..CASE
                },
                Case {
                    name: "may: out of range",
                    policy: MAY,
                    pod: "{containers: [{name: a, securityContext: {runAsGroup: 0}}]}",
                    expect: &["spec.containers[0].securityContext.runAsGroup"],
                    ..CASE
                },
            ],
        );
    }

    #[test]
    fn defaults() {
        run_defaults(
            &CHECK,
            &[DefaultCase {
                name: "first minimum",
                policy: MUST,
                pod: "{containers: [{name: a}]}",
                want: "{securityContext: {runAsGroup: 100}, containers: [{name: a}]}",
            }],
        );
    }
}
