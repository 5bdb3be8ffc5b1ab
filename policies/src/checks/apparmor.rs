//! PSP's AppArmor annotations, as the `appArmorProfile` fields (and the annotations, which the
//! kubelet still honours): allowed profiles and a default.

use super::support::{default_profile, judge_profiles, ProfileSite, Site};
use super::{Check, Findings};
use crate::defaults::PodDefault;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "appArmor",
    summary: "AppArmor profiles must be allowed (and present, where required)",
    evaluate,
    defaults: Some(defaults),
    validate: Some(validate),
    level: Some(level),
    normalise: Some(normalise),
};

const CONTAINER_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rule) = &class.controls.app_armor else {
        return;
    };
    let pod_site = pod
        .pod_security()
        .and_then(|p| p.app_armor_profile.as_ref())
        .map(|p| ProfileSite::field(&p.type_, p.localhost_profile.as_deref(), Site::Pod));
    let containers = pod.containers().map(|c| {
        let own = c
            .security
            .and_then(|s| s.app_armor_profile.as_ref())
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
        "AppArmor",
        "appArmorProfile",
        pod,
        pod_site,
        containers,
        out,
    );
}

fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    if let Some(rule) = &class.controls.app_armor {
        out.extend(default_profile(
            rule,
            &["securityContext", "appArmorProfile"],
        ));
    }
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.app_armor = Some(crate::controls::ProfileRule {
        allowed_profiles: vec!["RuntimeDefault".to_string(), "Localhost/*".to_string()],
        default_profile: None,
        required: false,
    });
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    super::support::validate_profiles(&c.app_armor, &format!("{path}.appArmor"), errs);
}

fn normalise(c: &mut crate::controls::Controls) {
    super::support::normalise_profiles(c.app_armor.as_mut());
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
                    name: "baseline: runtime default",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {appArmorProfile: {type: RuntimeDefault}}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "baseline: unconfined container",
                    policy: "bundle: baseline",
                    pod: "{containers: [{name: a, securityContext: {appArmorProfile: {type: Unconfined}}}]}",
                    expect: &["spec.containers[0].securityContext.appArmorProfile.type"],
                    ..CASE
                },
                Case {
                    name: "required",
                    policy: "controls: {appArmor: {allowedProfiles: [RuntimeDefault], required: true}}",
                    expect: &["spec.containers[0].securityContext.appArmorProfile"],
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
                name: "runtime default",
                policy: "controls: {appArmor: {allowedProfiles: [RuntimeDefault], defaultProfile: RuntimeDefault, required: true}}",
                pod: "{containers: [{name: a}]}",
                want: "{securityContext: {appArmorProfile: {type: RuntimeDefault}}, containers: [{name: a}]}",
            }],
        );
    }
}
