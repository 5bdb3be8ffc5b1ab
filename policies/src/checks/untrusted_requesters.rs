//! Requesters that are neither trusted nor tenants — an Argo, KubeRay or Spark operator, a
//! person with edit rights — get no tenancy: their pods belong to nobody, and a class may
//! refuse them altogether, so that such a controller cannot become a way around the tenants'
//! rules (or a way to pods labelled for a tenant) in a tenant namespace.

use serde::{Deserialize, Serialize};

use super::{Check, Findings};
use crate::identity::RequesterKind;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "untrustedRequesters",
    summary: "requesters neither trusted nor tenants may create pods only where the class allows",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UntrustedRequesters {
    /// Judged by the class's rules, with no tenant.
    #[default]
    Allow,
    /// Refused.
    Deny,
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    if class.untrusted_requesters != UntrustedRequesters::Deny
        || pod.requester != RequesterKind::Untrusted
    {
        return;
    }
    out.add(
        pod.base.to_string(),
        format!(
            "the requester is neither trusted nor a tenant, and {} pods may not be created by \
             such requesters here",
            pod.class.as_str()
        ),
        "create it as the tenant it is for, or add the controller to the policy's trust \
         (spec.trust) if it is part of the platform",
    );
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
                    name: "an unknown controller, refused",
                    policy: "untrustedRequesters: deny",
                    requester: RequesterKind::Untrusted,
                    expect: &["spec"],
                    ..CASE
                },
                Case {
                    name: "an unknown controller, allowed by the class",
                    requester: RequesterKind::Untrusted,
                    ..CASE
                },
                Case {
                    name: "a tenant",
                    policy: "untrustedRequesters: deny",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "a trusted requester",
                    policy: "untrustedRequesters: deny",
                    requester: RequesterKind::Trusted,
                    ..CASE
                },
                Case {
                    name: "offline, nobody named",
                    policy: "untrustedRequesters: deny",
                    ..CASE
                },
            ],
        );
    }
}
