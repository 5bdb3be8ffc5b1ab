//! PSP `runtimeClass`: a pod's runtime class must be listed (`*` allows any); the default is
//! set on pods that name none.

use serde_json::json;

use serde::{Deserialize, Serialize};

use super::{Check, Findings};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "runtimeClass",
    summary: "the pod's runtime class must be allowed",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: None,
    normalise: None,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeClassRule {
    /// `*` allows any; an empty list allows only pods with no runtime class.
    pub allowed_runtime_class_names: Vec<String>,
    pub default_runtime_class_name: Option<String>,
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.runtime_class else {
        return;
    };
    let Some(name) = pod.spec.runtime_class_name.as_deref() else {
        return;
    };
    let allowed = &rule.allowed_runtime_class_names;
    if !allowed.iter().any(|a| a == "*" || a == name) {
        out.add(
            pod.path("runtimeClassName"),
            format!("runtime class {name} is not allowed"),
            if allowed.is_empty() {
                "remove runtimeClassName".to_string()
            } else {
                format!("use one of: {}", allowed.join(", "))
            },
        );
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    let default = class
        .controls
        .runtime_class
        .as_ref()
        .and_then(|r| r.default_runtime_class_name.as_ref());
    if let Some(name) = default {
        out.push(PodDefault::pod(
            &["runtimeClassName"],
            Rule::Unset(json!(name)),
        ));
    }
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    let Some(rc) = &c.runtime_class else { return };
    if let Some(default) = &rc.default_runtime_class_name {
        let allowed = &rc.allowed_runtime_class_names;
        if !allowed.iter().any(|a| a == "*" || a == default) {
            errs.push(
                format!("{path}.runtimeClass.defaultRuntimeClassName"),
                format!("'{default}' is not among allowedRuntimeClassNames"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const GVISOR: &str =
        "controls: {runtimeClass: {allowedRuntimeClassNames: [gvisor], defaultRuntimeClassName: gvisor}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "unset",
                    policy: GVISOR,
                    ..CASE
                },
                Case {
                    name: "listed",
                    policy: GVISOR,
                    pod: "{runtimeClassName: gvisor, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "other",
                    policy: GVISOR,
                    pod: "{runtimeClassName: runc-privileged, containers: [{name: a}]}",
                    expect: &["spec.runtimeClassName"],
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
                name: "sets the default",
                policy: GVISOR,
                pod: "{containers: [{name: a}]}",
                want: "{runtimeClassName: gvisor, containers: [{name: a}]}",
            }],
        );
    }
}
