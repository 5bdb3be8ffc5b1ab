//! PSP `seLinux`: `MustRunAs` requires (and defaults) the given options; `AllowedTypes` is the
//! Pod Security Standards rule: only listed types, no custom user or role.

use k8s_openapi::api::core::v1::SELinuxOptions;
use serde_json::{Map, Value};

use serde::{Deserialize, Serialize};

use super::{Check, Findings};

use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "seLinux",
    summary: "SELinux options must match the policy",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: Some(level),
    normalise: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SeLinuxStrategy {
    /// PSP: the options set in `seLinuxOptions` are required (and defaulted).
    MustRunAs,
    /// Pod Security Standards: only the listed types; user and role must stay unset.
    AllowedTypes,
    RunAsAny,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeLinuxOptionsSpec {
    pub user: Option<String>,
    pub role: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeLinux {
    pub rule: SeLinuxStrategy,
    pub se_linux_options: Option<SeLinuxOptionsSpec>,
    /// For `AllowedTypes`; the empty string stands for "unset".
    #[serde(default)]
    pub allowed_types: Vec<String>,
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.se_linux else {
        return;
    };
    match rule.rule {
        SeLinuxStrategy::RunAsAny => {}
        SeLinuxStrategy::AllowedTypes => {
            let pod_opts = pod.pod_security().and_then(|p| p.se_linux_options.as_ref());
            if let Some(opts) = pod_opts {
                judge_types(rule, opts, &pod.path("securityContext.seLinuxOptions"), out);
            }
            for c in pod.containers() {
                if let Some(opts) = c.security.and_then(|s| s.se_linux_options.as_ref()) {
                    judge_types(rule, opts, &c.path("securityContext.seLinuxOptions"), out);
                }
            }
        }
        SeLinuxStrategy::MustRunAs => {
            let Some(want) = &rule.se_linux_options else {
                return;
            };
            let pod_sc = pod.pod_security();
            for c in pod.containers() {
                let have = c
                    .effective(
                        pod_sc,
                        |s| s.se_linux_options.clone(),
                        |p| p.se_linux_options.clone(),
                    )
                    .unwrap_or_default();
                let fields = [
                    ("user", &want.user, &have.user),
                    ("role", &want.role, &have.role),
                    ("type", &want.type_, &have.type_),
                    ("level", &want.level, &have.level),
                ];
                for (name, want, have) in fields {
                    if let Some(want) = want {
                        if have.as_ref() != Some(want) {
                            out.add_for(
                                &c,
                                &format!("securityContext.seLinuxOptions.{name}"),
                                format!(
                                    "container '{}' has SELinux {name} {}, the policy requires {want}",
                                    c.name,
                                    have.as_deref().unwrap_or("(unset)")
                                ),
                                format!("set seLinuxOptions.{name}: {want}, or leave it unset for the default"),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn judge_types(rule: &SeLinux, opts: &SELinuxOptions, path: &str, out: &mut Findings) {
    let kind = opts.type_.as_deref().unwrap_or("");
    if !rule.allowed_types.iter().any(|t| t == kind) {
        out.add(
            format!("{path}.type"),
            format!("SELinux type {kind} is not allowed"),
            format!(
                "use one of: {}",
                rule.allowed_types
                    .iter()
                    .map(|t| if t.is_empty() { "(unset)" } else { t.as_str() })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    for (name, value) in [("user", &opts.user), ("role", &opts.role)] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            out.add(
                format!("{path}.{name}"),
                format!("a custom SELinux {name} is not allowed"),
                format!("remove seLinuxOptions.{name}"),
            );
        }
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    let Some(rule) = &class.controls.se_linux else {
        return;
    };
    let (SeLinuxStrategy::MustRunAs, Some(opts)) = (rule.rule, &rule.se_linux_options) else {
        return;
    };
    if let Ok(Value::Object(value)) = serde_json::to_value(opts) {
        let cleaned: Map<String, Value> = value.into_iter().filter(|(_, v)| !v.is_null()).collect();
        out.push(PodDefault::pod(
            &["securityContext", "seLinuxOptions"],
            Rule::Unset(Value::Object(cleaned)),
        ));
    }
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.se_linux = Some(crate::controls::SeLinux {
        rule: SeLinuxStrategy::AllowedTypes,
        se_linux_options: None,
        allowed_types: [
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect(),
    });
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    let Some(se) = &c.se_linux else { return };
    if se.rule == SeLinuxStrategy::MustRunAs && se.se_linux_options.is_none() {
        errs.push(
            format!("{path}.seLinux.seLinuxOptions"),
            "MustRunAs needs seLinuxOptions",
        );
    }
    if se.rule == SeLinuxStrategy::AllowedTypes && se.allowed_types.is_empty() {
        errs.push(
            format!("{path}.seLinux.allowedTypes"),
            "AllowedTypes needs at least one type",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const MUST: &str =
        "controls: {seLinux: {rule: MustRunAs, seLinuxOptions: {type: container_t, level: 's0:c1,c2'}}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case { name: "baseline: unset", policy: "bundle: baseline", ..CASE },
                Case {
                    name: "baseline: container_t",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {seLinuxOptions: {type: container_t}}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "baseline: spc_t on a container",
                    policy: "bundle: baseline",
                    pod: "{containers: [{name: a, securityContext: {seLinuxOptions: {type: spc_t}}}]}",
                    expect: &["spec.containers[0].securityContext.seLinuxOptions.type"],
                    ..CASE
                },
                Case {
                    name: "baseline: custom user and role",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {seLinuxOptions: {user: system_u, role: system_r}}, containers: [{name: a}]}",
                    expect: &[
                        "spec.securityContext.seLinuxOptions.user",
                        "spec.securityContext.seLinuxOptions.role",
                    ],
                    ..CASE
                },
                Case {
                    name: "must: matching pod options",
                    policy: MUST,
                    pod: "{securityContext: {seLinuxOptions: {type: container_t, level: 's0:c1,c2'}}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "must: wrong level",
                    policy: MUST,
                    pod: "{containers: [{name: a, securityContext: {seLinuxOptions: {type: container_t, level: s0}}}]}",
                    expect: &["spec.containers[0].securityContext.seLinuxOptions.level"],
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
                name: "sets the options",
                policy: MUST,
                pod: "{containers: [{name: a}]}",
                want: "{securityContext: {seLinuxOptions: {type: container_t, level: 's0:c1,c2'}}, containers: [{name: a}]}",
            }],
        );
    }
}
