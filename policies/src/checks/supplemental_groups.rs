//! PSP `supplementalGroups`: the pod's extra group ids.

use serde_json::json;

use super::support::{group_complaint, group_default};
use super::{Check, Findings};
use crate::controls::GroupStrategy;
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "supplementalGroups",
    summary: "supplemental group ids must lie in the allowed ranges",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.supplemental_groups else {
        return;
    };
    let groups = pod
        .pod_security()
        .and_then(|p| p.supplemental_groups.as_deref())
        .unwrap_or_default();
    if groups.is_empty() {
        if let Some((message, fix)) = group_complaint(rule, None, "supplementalGroups") {
            out.add(pod.path("securityContext.supplementalGroups"), message, fix);
        }
        return;
    }
    for (i, gid) in groups.iter().enumerate() {
        if let Some((message, fix)) = group_complaint(rule, Some(*gid), "supplemental group") {
            out.add(
                pod.path(&format!("securityContext.supplementalGroups[{i}]")),
                message,
                fix,
            );
        }
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    let Some(rule) = &class.controls.supplemental_groups else {
        return;
    };
    if rule.rule != GroupStrategy::MustRunAs {
        return;
    }
    if let Some(gid) = group_default(rule) {
        out.push(PodDefault::pod(
            &["securityContext", "supplementalGroups"],
            Rule::UnsetOrEmpty(json!([gid])),
        ));
    }
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    super::support::validate_group(
        &c.supplemental_groups,
        &format!("{path}.supplementalGroups"),
        errs,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const MUST: &str =
        "controls: {supplementalGroups: {rule: MustRunAs, ranges: [{min: 100, max: 200}]}}";
    const MAY: &str =
        "controls: {supplementalGroups: {rule: MayRunAs, ranges: [{min: 100, max: 200}]}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "must: none",
                    policy: MUST,
                    expect: &["spec.securityContext.supplementalGroups"],
                    ..CASE
                },
                Case {
                    name: "must: inside",
                    policy: MUST,
                    pod: "{securityContext: {supplementalGroups: [100, 150]}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "must: one outside",
                    policy: MUST,
                    pod: "{securityContext: {supplementalGroups: [100, 0]}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.supplementalGroups[1]"],
                    ..CASE
                },
                Case { name: "may: none", policy: MAY, ..CASE },
                Case {
                    name: "may: outside",
                    policy: MAY,
                    pod: "{securityContext: {supplementalGroups: [4]}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.supplementalGroups[0]"],
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
                want: "{securityContext: {supplementalGroups: [100]}, containers: [{name: a}]}",
            }],
        );
    }
}
