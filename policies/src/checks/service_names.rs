//! The platform's clients reach its Services by name: notebooks send every hub API call, with
//! their user's token, to Service `hub`; the hub sends the proxy's auth token to `proxy-api`;
//! browsers reach `proxy-public`; the gateway's clients its api and traefik Services. A tenant
//! who can create Services in the namespace, once such a Service is gone (deleted, or between
//! an uninstall and an install), takes its name and receives that traffic. No tenant may
//! create a Service under a name the policy reserves: every Service its egress rules point
//! at, and the names `spec.services.reservedNames` matches.

use serde::{Deserialize, Serialize};

use super::{Findings, ServiceCheck};
use crate::identity::RequesterKind;
use crate::service::ServiceSubject;
use crate::validate::FieldErrors;

pub const CHECK: ServiceCheck = ServiceCheck {
    id: "serviceNames",
    summary: "no tenant takes the name of a Service the platform's clients trust",
    evaluate,
};

/// `spec.services`: the Service names the platform's clients trust, beyond those the egress
/// rules name.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRules {
    /// Regular expressions over a Service's name, in every governed namespace, e.g.
    /// `^(hub|proxy-api|proxy-public)$`.
    #[serde(default)]
    pub reserved_names: Vec<String>,
}

/// The patterns compiled; each one that is no regular expression is refused by its path.
pub fn compile(rules: &ServiceRules, path: &str, errs: &mut FieldErrors) -> Vec<regex::Regex> {
    let mut patterns = Vec::new();
    for (i, pattern) in rules.reserved_names.iter().enumerate() {
        match regex::Regex::new(pattern) {
            Ok(re) => patterns.push(re),
            Err(e) => errs.push(
                format!("{path}.reservedNames[{i}]"),
                format!("not a regular expression: {e}"),
            ),
        }
    }
    patterns
}

fn evaluate(service: &ServiceSubject<'_>, out: &mut Findings) {
    if service.requester == RequesterKind::Trusted {
        return;
    }
    let Some(name) = service.name else {
        return;
    };
    if let Some(why) = service.reserved.reason(service.namespace, name) {
        out.add(
            "metadata.name".to_string(),
            format!("Service name '{name}' is the platform's: {why}"),
            match service.requester_tenant {
                Some(tenant) => {
                    format!("give the Service a name of your own, e.g. {tenant}-{name}")
                }
                None => "give the Service a name the policy does not reserve".to_string(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run_service, ServiceCase, SERVICE_CASE};

    #[test]
    fn cases() {
        run_service(
            &CHECK,
            &[
                ServiceCase {
                    name: "a name of her own",
                    name_of_service: Some("alice-viewer"),
                    requester_tenant: Some("alice"),
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "the hub's API, named by an egress rule",
                    name_of_service: Some("hub"),
                    requester_tenant: Some("alice"),
                    expect: &["metadata.name"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "the proxy's API, a reserved pattern",
                    name_of_service: Some("proxy-api"),
                    requester: RequesterKind::Untrusted,
                    expect: &["metadata.name"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "the gateway's api",
                    name_of_service: Some("api-tess-private-dask-gateway"),
                    requester_tenant: Some("alice"),
                    expect: &["metadata.name"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "an egress target's name in another namespace",
                    name_of_service: Some("hub"),
                    namespace: "elsewhere",
                    requester_tenant: Some("alice"),
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "the hub recreating its own",
                    name_of_service: Some("hub"),
                    requester: RequesterKind::Trusted,
                    ..SERVICE_CASE
                },
            ],
        );
    }

    #[test]
    fn patterns_that_are_no_regular_expressions_are_refused_by_path() {
        let mut errs = FieldErrors::default();
        let rules = ServiceRules {
            reserved_names: vec!["^hub$".into(), "(".into()],
        };
        assert_eq!(compile(&rules, "spec.services", &mut errs).len(), 1);
        let errors = errs.into_vec();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.services.reservedNames[1]");
    }
}
