//! PSP `allowedCapabilities`, `requiredDropCapabilities` and `defaultAddCapabilities`.
//! Capabilities a container adds must be allowed (or default-added); the required ones must be
//! dropped (`ALL` covers every one). Defaults append the required drops and the default adds.

use super::support::capability_eq;
use super::{Check, Findings};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "capabilities",
    summary: "containers may add only allowed capabilities and must drop the required ones",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: Some(level),
    normalise: Some(normalise),
};

fn listed(list: &[String], cap: &str) -> bool {
    list.iter().any(|c| c == "*" || capability_eq(c, cap))
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let controls = &class.controls;
    let default_add = controls
        .default_add_capabilities
        .as_deref()
        .unwrap_or_default();
    for c in pod.containers() {
        let caps = c.security.and_then(|s| s.capabilities.as_ref());
        let added = caps.and_then(|k| k.add.as_deref()).unwrap_or_default();
        let dropped = caps.and_then(|k| k.drop.as_deref()).unwrap_or_default();
        if let Some(allowed) = &controls.allowed_capabilities {
            for (k, cap) in added.iter().enumerate() {
                if !listed(allowed, cap) && !listed(default_add, cap) {
                    let fix = if allowed.is_empty() {
                        "remove it: the policy allows no added capabilities".to_string()
                    } else {
                        format!(
                            "remove it; the policy allows adding only {}",
                            allowed.join(", ")
                        )
                    };
                    out.add_for(
                        &c,
                        &format!("securityContext.capabilities.add[{k}]"),
                        format!("container '{}' adds capability {cap}", c.name),
                        fix,
                    );
                }
            }
        }
        if let Some(required) = &controls.required_drop_capabilities {
            let drops_all = dropped.iter().any(|d| d.eq_ignore_ascii_case("ALL"));
            let missing: Vec<&str> = required
                .iter()
                .filter(|r| !drops_all && !dropped.iter().any(|d| capability_eq(d, r)))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                out.add_for(
                    &c,
                    "securityContext.capabilities.drop",
                    format!(
                        "container '{}' does not drop {}",
                        c.name,
                        missing.join(", ")
                    ),
                    format!(
                        "add {} to securityContext.capabilities.drop",
                        missing.join(", ")
                    ),
                );
            }
        }
    }
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    let lists = [
        ("drop", &class.controls.required_drop_capabilities, true),
        ("add", &class.controls.default_add_capabilities, false),
    ];
    for (field, names, all_covers) in lists {
        let names = names.as_deref().unwrap_or_default();
        if names.is_empty() {
            continue;
        }
        let path: &'static [&'static str] = if field == "drop" {
            &["securityContext", "capabilities", "drop"]
        } else {
            &["securityContext", "capabilities", "add"]
        };
        out.push(PodDefault::container(
            path,
            Rule::Capabilities {
                names: names.to_vec(),
                all_covers,
            },
        ));
    }
}

/// Capabilities a baseline pod may add.
pub const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn level(c: &mut crate::controls::Controls, level: super::Level) {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match level {
        super::Level::Baseline => c.allowed_capabilities = Some(names(BASELINE_CAPABILITIES)),
        super::Level::Restricted => {
            c.allowed_capabilities = Some(names(&["NET_BIND_SERVICE"]));
            c.required_drop_capabilities = Some(names(&["ALL"]));
        }
    }
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    for (field, caps) in [
        ("allowedCapabilities", &c.allowed_capabilities),
        ("requiredDropCapabilities", &c.required_drop_capabilities),
        ("defaultAddCapabilities", &c.default_add_capabilities),
    ] {
        for (i, cap) in caps.iter().flatten().enumerate() {
            let well_formed = cap == "*"
                || (!cap.is_empty() && cap.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
            if !well_formed {
                errs.push(
                    format!("{path}.{field}[{i}]"),
                    format!("'{cap}' is not a capability name"),
                );
            }
        }
    }
}

/// Capability names without the `CAP_` prefix, upper case, so the rule compares plain strings.
fn normalise(c: &mut crate::controls::Controls) {
    for caps in [
        c.allowed_capabilities.as_mut(),
        c.required_drop_capabilities.as_mut(),
        c.default_add_capabilities.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for cap in caps.iter_mut() {
            let upper = cap.to_ascii_uppercase();
            *cap = upper
                .strip_prefix("CAP_")
                .map(str::to_string)
                .unwrap_or(upper);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const RESTRICTED: &str = "bundle: restricted";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "restricted: drops all",
                    policy: RESTRICTED,
                    pod: "{containers: [{name: a, securityContext: {capabilities: {drop: [ALL]}}}]}",
                    ..CASE
                },
                Case {
                    name: "restricted: drops nothing",
                    policy: RESTRICTED,
                    expect: &["spec.containers[0].securityContext.capabilities.drop"],
                    ..CASE
                },
                Case {
                    name: "restricted: may add NET_BIND_SERVICE",
                    policy: RESTRICTED,
                    pod: "{containers: [{name: a, securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}}]}",
                    ..CASE
                },
                Case {
                    name: "restricted: adds NET_ADMIN (z2jh metadata blocker)",
                    policy: RESTRICTED,
                    pod: "{containers: [{name: a, securityContext: {capabilities: {drop: [ALL]}}}], initContainers: [{name: block-cloud-metadata, securityContext: {capabilities: {add: [NET_ADMIN], drop: [ALL]}}}]}",
                    expect: &["spec.initContainers[0].securityContext.capabilities.add[0]"],
                    ..CASE
                },
                Case {
                    name: "baseline: CHOWN fine, SYS_ADMIN not, CAP_ prefix and case ignored",
                    policy: "bundle: baseline",
                    pod: "{containers: [{name: a, securityContext: {capabilities: {add: [cap_chown, CAP_SYS_ADMIN]}}}]}",
                    expect: &["spec.containers[0].securityContext.capabilities.add[1]"],
                    ..CASE
                },
                Case {
                    name: "required drop by name",
                    policy: "controls: {requiredDropCapabilities: [NET_RAW]}",
                    pod: "{containers: [{name: a, securityContext: {capabilities: {drop: [CAP_NET_RAW]}}}]}",
                    ..CASE
                },
                Case {
                    name: "default add counts as allowed",
                    policy: "controls: {allowedCapabilities: [], defaultAddCapabilities: [CHOWN]}",
                    pod: "{containers: [{name: a, securityContext: {capabilities: {add: [CHOWN]}}}]}",
                    ..CASE
                },
                Case {
                    name: "wildcard",
                    policy: "controls: {allowedCapabilities: ['*']}",
                    pod: "{containers: [{name: a, securityContext: {capabilities: {add: [SYS_ADMIN]}}}]}",
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
                    name: "drop ALL appended",
                    policy: RESTRICTED,
                    pod: "{containers: [{name: a, securityContext: {capabilities: {drop: [NET_RAW]}}}]}",
                    want: "{containers: [{name: a, securityContext: {capabilities: {drop: [NET_RAW, ALL]}}}]}",
                },
                DefaultCase {
                    name: "already drops ALL",
                    policy: RESTRICTED,
                    pod: "{containers: [{name: a, securityContext: {capabilities: {drop: [all]}}}]}",
                    want: "{containers: [{name: a, securityContext: {capabilities: {drop: [all]}}}]}",
                },
                DefaultCase {
                    name: "default add",
                    policy: "controls: {allowedCapabilities: [], defaultAddCapabilities: [CHOWN]}",
                    pod: "{containers: [{name: a}]}",
                    want: "{containers: [{name: a, securityContext: {capabilities: {add: [CHOWN]}}}]}",
                },
            ],
        );
    }
}
