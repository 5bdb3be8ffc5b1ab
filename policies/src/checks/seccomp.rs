//! PSP's seccomp annotations, as fields: allowed profiles, a default, and (restricted) a
//! profile required on every container. The legacy annotations are judged too.

use super::support::{default_profile, judge_profiles, ProfileSite, Site};
use super::{Check, Findings};
use crate::defaults::PodDefault;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "seccomp",
    summary: "seccomp profiles must be allowed (and present, where required)",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: Some(level),
    normalise: Some(normalise),
};

const POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.seccomp else {
        return;
    };
    let pod_site = pod
        .pod_security()
        .and_then(|p| p.seccomp_profile.as_ref())
        .map(|p| ProfileSite::field(&p.type_, p.localhost_profile.as_deref(), Site::Pod))
        .or_else(|| {
            pod.annotations
                .get(POD_ANNOTATION)
                .map(|v| ProfileSite::annotation(POD_ANNOTATION, v))
        });
    let containers = pod.containers().map(|c| {
        let own = c
            .security
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| ProfileSite::field(&p.type_, p.localhost_profile.as_deref(), Site::Container))
            .or_else(|| {
                ProfileSite::container_annotation(
                    pod.annotations,
                    CONTAINER_ANNOTATION_PREFIX,
                    c.name,
                )
            });
        (c, own)
    });
    judge_profiles(
        rule,
        "seccomp",
        "seccompProfile",
        pod,
        pod_site,
        containers,
        out,
    );
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    if let Some(rule) = &class.controls.seccomp {
        out.extend(default_profile(
            rule,
            &["securityContext", "seccompProfile"],
        ));
    }
}

fn level(c: &mut crate::controls::Controls, level: super::Level) {
    let restricted = level == super::Level::Restricted;
    c.seccomp = Some(crate::controls::ProfileRule {
        allowed_profiles: vec!["RuntimeDefault".to_string(), "Localhost/*".to_string()],
        default_profile: restricted.then(|| "RuntimeDefault".to_string()),
        required: restricted,
    });
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    super::support::validate_profiles(&c.seccomp, &format!("{path}.seccomp"), errs);
}

fn normalise(c: &mut crate::controls::Controls) {
    super::support::normalise_profiles(c.seccomp.as_mut());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case { name: "baseline: unset", policy: "bundle: baseline", ..CASE },
                Case {
                    name: "baseline: Unconfined pod",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {seccompProfile: {type: Unconfined}}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.seccompProfile.type"],
                    ..CASE
                },
                Case {
                    name: "restricted: unset",
                    policy: "bundle: restricted",
                    expect: &["spec.containers[0].securityContext.seccompProfile"],
                    ..CASE
                },
                Case {
                    name: "restricted: pod RuntimeDefault",
                    policy: "bundle: restricted",
                    pod: "{securityContext: {seccompProfile: {type: RuntimeDefault}}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "restricted: per-container Localhost",
                    policy: "bundle: restricted",
                    pod: "{containers: [{name: a, securityContext: {seccompProfile: {type: Localhost, localhostProfile: p.json}}}]}",
                    ..CASE
                },
                Case {
                    name: "restricted: container Unconfined beats pod default",
                    policy: "bundle: restricted",
                    pod: "{securityContext: {seccompProfile: {type: RuntimeDefault}}, containers: [{name: a, securityContext: {seccompProfile: {type: Unconfined}}}]}",
                    expect: &["spec.containers[0].securityContext.seccompProfile.type"],
                    ..CASE
                },
                Case {
                    name: "only a named local profile",
                    policy: "controls: {seccomp: {allowedProfiles: [Localhost/tess.json]}}",
                    pod: "{containers: [{name: a, securityContext: {seccompProfile: {type: Localhost, localhostProfile: other.json}}}]}",
                    expect: &["spec.containers[0].securityContext.seccompProfile.type"],
                    ..CASE
                },
                Case {
                    name: "the legacy pod annotation is judged",
                    policy: "bundle: baseline",
                    annotations: "{seccomp.security.alpha.kubernetes.io/pod: unconfined}",
                    expect: &["metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]"],
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
                name: "RuntimeDefault on the pod",
                policy: "bundle: restricted",
                pod: "{securityContext: {fsGroup: 100}, containers: [{name: a}]}",
                want: "{securityContext: {fsGroup: 100, seccompProfile: {type: RuntimeDefault}}, containers: [{name: a}]}",
            }],
        );
    }
}
