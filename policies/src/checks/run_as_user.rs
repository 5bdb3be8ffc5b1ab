//! PSP `runAsUser`: `MustRunAsNonRoot` (runAsNonRoot: true or a non-zero uid, never uid 0) or
//! `MustRunAs` (a uid in the ranges). Defaults: `runAsNonRoot: true`, or the first range's
//! minimum.

use serde_json::json;

use serde::{Deserialize, Serialize};

use super::{Check, Findings};
use crate::controls::{describe_ranges, in_ranges, IdRange};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "runAsUser",
    summary: "containers must run as a non-root (or an allowed) user id",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: Some(level),
    normalise: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum UserRule {
    MustRunAs,
    MustRunAsNonRoot,
    RunAsAny,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunAsUser {
    pub rule: UserRule,
    #[serde(default)]
    pub ranges: Vec<IdRange>,
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.run_as_user else {
        return;
    };
    let pod_sc = pod.pod_security();
    for c in pod.containers() {
        let uid = c.effective(pod_sc, |s| s.run_as_user, |p| p.run_as_user);
        let own_uid = c.security.and_then(|s| s.run_as_user).is_some();
        // Point at the field that set the value: the container's own, else the pod's.
        let complain = |out: &mut Findings, message: String, fix: String| {
            if own_uid {
                out.add_for(&c, "securityContext.runAsUser", message, fix);
            } else {
                out.add(pod.path("securityContext.runAsUser"), message, fix);
            }
        };
        match rule.rule {
            UserRule::RunAsAny => {}
            // The Pod Security Standards relax non-root for pods in a user namespace: uid 0
            // there is an unprivileged uid on the node.
            UserRule::MustRunAsNonRoot if pod.spec.host_users == Some(false) => {}
            UserRule::MustRunAsNonRoot => {
                let non_root = c.effective(pod_sc, |s| s.run_as_non_root, |p| p.run_as_non_root);
                if uid == Some(0) {
                    complain(
                        out,
                        format!("container '{}' runs as uid 0 (root)", c.name),
                        "set runAsUser to a non-zero uid (z2jh: singleuser.uid: 1000)".into(),
                    );
                } else if non_root != Some(true) && uid.is_none() {
                    out.add_for(
                        &c,
                        "securityContext.runAsNonRoot",
                        format!(
                            "container '{}' may run as root: no runAsNonRoot and no uid",
                            c.name
                        ),
                        "set securityContext.runAsNonRoot: true on the pod or container",
                    );
                }
            }
            UserRule::MustRunAs => {
                let ranges = || describe_ranges(&rule.ranges);
                match uid {
                    Some(id) if in_ranges(&rule.ranges, id) => {}
                    Some(id) => complain(
                        out,
                        format!(
                            "container '{}' runs as uid {id}, outside {}",
                            c.name,
                            ranges()
                        ),
                        format!("set runAsUser to a uid in {}", ranges()),
                    ),
                    None => out.add_for(
                        &c,
                        "securityContext.runAsUser",
                        format!(
                            "container '{}' sets no uid; the policy requires one in {}",
                            c.name,
                            ranges()
                        ),
                        format!("set runAsUser to a uid in {}", ranges()),
                    ),
                }
            }
        }
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    let Some(rule) = &class.controls.run_as_user else {
        return;
    };
    match rule.rule {
        UserRule::MustRunAsNonRoot => out.push(PodDefault::pod(
            &["securityContext", "runAsNonRoot"],
            Rule::Unset(json!(true)),
        )),
        UserRule::MustRunAs => {
            if let Some(first) = rule.ranges.first() {
                out.push(PodDefault::pod(
                    &["securityContext", "runAsUser"],
                    Rule::Unset(json!(first.min)),
                ));
            }
        }
        UserRule::RunAsAny => {}
    }
}

fn level(c: &mut crate::controls::Controls, level: super::Level) {
    if level == super::Level::Restricted {
        c.run_as_user = Some(crate::controls::RunAsUser {
            rule: UserRule::MustRunAsNonRoot,
            ranges: Vec::new(),
        });
    }
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    let Some(rule) = &c.run_as_user else { return };
    if rule.rule == UserRule::MustRunAs && rule.ranges.is_empty() {
        errs.push(
            format!("{path}.runAsUser.ranges"),
            "MustRunAs needs at least one range",
        );
    }
    super::support::validate_ranges(
        &rule.ranges,
        &format!("{path}.runAsUser.ranges"),
        super::support::ID_BOUNDS,
        errs,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const NON_ROOT: &str = "controls: {runAsUser: {rule: MustRunAsNonRoot}}";
    const RANGE: &str =
        "controls: {runAsUser: {rule: MustRunAs, ranges: [{min: 1000, max: 2000}]}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "unset may be root",
                    policy: NON_ROOT,
                    expect: &["spec.containers[0].securityContext.runAsNonRoot"],
                    ..CASE
                },
                Case {
                    name: "uid 0 in a user namespace (PSS relaxation)",
                    policy: NON_ROOT,
                    pod: "{hostUsers: false, containers: [{name: a, securityContext: {runAsUser: 0}}]}",
                    ..CASE
                },
                Case {
                    name: "pod-level runAsNonRoot",
                    policy: NON_ROOT,
                    pod: "{securityContext: {runAsNonRoot: true}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "non-zero uid (PSP accepts it)",
                    policy: NON_ROOT,
                    pod: "{containers: [{name: a, securityContext: {runAsUser: 1000}}]}",
                    ..CASE
                },
                Case {
                    name: "uid 0 in the container beats pod runAsNonRoot",
                    policy: NON_ROOT,
                    pod: "{securityContext: {runAsNonRoot: true}, containers: [{name: a, securityContext: {runAsUser: 0}}]}",
                    expect: &["spec.containers[0].securityContext.runAsUser"],
                    ..CASE
                },
                Case {
                    name: "pod uid 0 points at the pod",
                    policy: NON_ROOT,
                    pod: "{securityContext: {runAsUser: 0}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.runAsUser"],
                    ..CASE
                },
                Case {
                    name: "root init container",
                    policy: NON_ROOT,
                    pod: "{securityContext: {runAsNonRoot: true}, containers: [{name: a}], initContainers: [{name: i, securityContext: {runAsUser: 0}}]}",
                    expect: &["spec.initContainers[0].securityContext.runAsUser"],
                    ..CASE
                },
                Case {
                    name: "explicit runAsNonRoot false",
                    policy: NON_ROOT,
                    pod: "{containers: [{name: a, securityContext: {runAsNonRoot: false}}]}",
                    expect: &["spec.containers[0].securityContext.runAsNonRoot"],
                    ..CASE
                },
                Case {
                    name: "in range",
                    policy: RANGE,
                    pod: "{securityContext: {runAsUser: 1000}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "out of range",
                    policy: RANGE,
                    pod: "{containers: [{name: a, securityContext: {runAsUser: 5}}]}",
                    expect: &["spec.containers[0].securityContext.runAsUser"],
                    ..CASE
                },
                Case {
                    name: "range needs a uid",
                    policy: RANGE,
                    expect: &["spec.containers[0].securityContext.runAsUser"],
                    ..CASE
                },
                Case {
                    name: "RunAsAny",
                    policy: "controls: {runAsUser: {rule: RunAsAny}}",
                    pod: "{containers: [{name: a, securityContext: {runAsUser: 0}}]}",
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
                    name: "non-root",
                    policy: NON_ROOT,
                    pod: "{containers: [{name: a}]}",
                    want: "{securityContext: {runAsNonRoot: true}, containers: [{name: a}]}",
                },
                DefaultCase {
                    name: "keeps an existing pod setting",
                    policy: NON_ROOT,
                    pod: "{securityContext: {runAsNonRoot: true, fsGroup: 100}, containers: [{name: a}]}",
                    want: "{securityContext: {runAsNonRoot: true, fsGroup: 100}, containers: [{name: a}]}",
                },
                DefaultCase {
                    name: "first range minimum",
                    policy: RANGE,
                    pod: "{containers: [{name: a}]}",
                    want: "{securityContext: {runAsUser: 1000}, containers: [{name: a}]}",
                },
            ],
        );
    }
}
