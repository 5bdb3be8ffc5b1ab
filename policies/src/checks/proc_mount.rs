//! PSP `allowedProcMountTypes`: `Default` masks /proc; `Unmasked` only where listed. As in the
//! Pod Security Standards' baseline (1.35+), a pod in a user namespace (`hostUsers: false`)
//! may unmask where the class allows it: its /proc belongs to its own user namespace.

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "procMount",
    summary: "containers must use an allowed /proc mount type",
    evaluate,
    defaults: None,
    validate: Some(validate),
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(allowed) = &class.controls.allowed_proc_mount_types else {
        return;
    };
    let in_user_namespace = pod.spec.host_users == Some(false);
    if in_user_namespace
        && class.controls.allow_unmasked_proc_mount_in_user_namespaces == Some(true)
    {
        return;
    }
    for c in pod.containers() {
        let kind = c
            .security
            .and_then(|s| s.proc_mount.as_deref())
            .unwrap_or("Default");
        if !allowed.iter().any(|a| a == kind) {
            out.add_for(
                &c,
                "securityContext.procMount",
                format!("container '{}' asks for procMount {kind}", c.name),
                format!("remove procMount or use {}", allowed.join(", ")),
            );
        }
    }
}

fn level(c: &mut crate::controls::Controls, level: super::Level) {
    c.allowed_proc_mount_types = Some(vec!["Default".to_string()]);
    c.allow_unmasked_proc_mount_in_user_namespaces = Some(level == super::Level::Baseline);
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    for (i, t) in c.allowed_proc_mount_types.iter().flatten().enumerate() {
        if t != "Default" && t != "Unmasked" {
            errs.push(
                format!("{path}.allowedProcMountTypes[{i}]"),
                format!("'{t}' is neither Default nor Unmasked"),
            );
        }
    }
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
                    name: "Default",
                    policy: "bundle: baseline",
                    pod: "{containers: [{name: a, securityContext: {procMount: Default}}]}",
                    ..CASE
                },
                Case {
                    name: "Unmasked",
                    policy: "bundle: baseline",
                    pod: "{containers: [{name: a, securityContext: {procMount: Unmasked}}]}",
                    expect: &["spec.containers[0].securityContext.procMount"],
                    ..CASE
                },
                Case {
                    name: "Unmasked in a user namespace, baseline",
                    policy: "bundle: baseline",
                    pod: "{hostUsers: false, containers: [{name: a, securityContext: {procMount: Unmasked}}]}",
                    ..CASE
                },
                Case {
                    name: "Unmasked in a user namespace, restricted keeps the mask",
                    policy: "bundle: restricted",
                    pod: "{hostUsers: false, containers: [{name: a, securityContext: {procMount: Unmasked}}]}",
                    expect: &["spec.containers[0].securityContext.procMount"],
                    ..CASE
                },
                Case {
                    name: "Unmasked allowed",
                    policy: "controls: {allowedProcMountTypes: [Default, Unmasked]}",
                    pod: "{containers: [{name: a, securityContext: {procMount: Unmasked}}]}",
                    ..CASE
                },
            ],
        );
    }
}
