//! PSP `readOnlyRootFilesystem`: when true, every container's root filesystem is read-only
//! (defaulted where unset; an explicit false is refused).

use serde_json::json;

use super::{Check, Findings};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "readOnlyRootFilesystem",
    summary: "containers must mount their root filesystem read-only",
    evaluate,
    defaults: Some(defaults),
    validate: None,
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    if class.controls.read_only_root_filesystem != Some(true) {
        return;
    }
    for c in pod.containers() {
        if c.security.and_then(|s| s.read_only_root_filesystem) != Some(true) {
            out.add_for(
                &c,
                "securityContext.readOnlyRootFilesystem",
                format!("container '{}' has a writable root filesystem", c.name),
                "set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where it writes",
            );
        }
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    if class.controls.read_only_root_filesystem == Some(true) {
        out.push(PodDefault::container(
            &["securityContext", "readOnlyRootFilesystem"],
            Rule::Unset(json!(true)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const ON: &str = "controls: {readOnlyRootFilesystem: true}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "unset",
                    policy: ON,
                    expect: &["spec.containers[0].securityContext.readOnlyRootFilesystem"],
                    ..CASE
                },
                Case {
                    name: "set",
                    policy: ON,
                    pod: "{containers: [{name: a, securityContext: {readOnlyRootFilesystem: true}}]}",
                    ..CASE
                },
                Case {
                    name: "explicit false",
                    policy: ON,
                    pod: "{containers: [{name: a, securityContext: {readOnlyRootFilesystem: true}}, {name: b, securityContext: {readOnlyRootFilesystem: false}}]}",
                    expect: &["spec.containers[1].securityContext.readOnlyRootFilesystem"],
                    ..CASE
                },
                Case {
                    name: "not required",
                    policy: "controls: {readOnlyRootFilesystem: false}",
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
                name: "containers and init containers",
                policy: ON,
                pod: "{containers: [{name: a}], initContainers: [{name: i, securityContext: {runAsUser: 1}}]}",
                want: "{containers: [{name: a, securityContext: {readOnlyRootFilesystem: true}}], initContainers: [{name: i, securityContext: {runAsUser: 1, readOnlyRootFilesystem: true}}]}",
            }],
        );
    }
}
