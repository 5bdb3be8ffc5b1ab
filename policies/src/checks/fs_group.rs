//! PSP `fsGroup`: the group that owns the pod's volumes.

use serde_json::json;

use super::support::{group_complaint, group_default};
use super::{Check, Findings};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "fsGroup",
    summary: "the pod's fsGroup must lie in the allowed ranges",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.fs_group else {
        return;
    };
    let fs_group = pod.pod_security().and_then(|p| p.fs_group);
    if let Some((message, fix)) = group_complaint(rule, fs_group, "fsGroup") {
        out.add(pod.path("securityContext.fsGroup"), message, fix);
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    if let Some(gid) = class.controls.fs_group.as_ref().and_then(group_default) {
        out.push(PodDefault::pod(
            &["securityContext", "fsGroup"],
            Rule::Unset(json!(gid)),
        ));
    }
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    super::support::validate_group(&c.fs_group, &format!("{path}.fsGroup"), errs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const MUST: &str = "controls: {fsGroup: {rule: MustRunAs, ranges: [{min: 100, max: 100}]}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "z2jh fsGid",
                    policy: MUST,
                    pod: "{securityContext: {fsGroup: 100}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "unset",
                    policy: MUST,
                    expect: &["spec.securityContext.fsGroup"],
                    ..CASE
                },
                Case {
                    name: "root group",
                    policy: MUST,
                    pod: "{securityContext: {fsGroup: 0}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.fsGroup"],
                    ..CASE
                },
                Case {
                    name: "may: unset",
                    policy: "controls: {fsGroup: {rule: MayRunAs, ranges: [{min: 1, max: 65535}]}}",
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
                want: "{securityContext: {fsGroup: 100}, containers: [{name: a}]}",
            }],
        );
    }
}
