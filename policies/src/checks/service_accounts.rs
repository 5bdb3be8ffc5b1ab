//! Service accounts and tokens: whoever may create pods in a namespace may run them as any
//! service account there — the hub's (a trusted requester), another tenant's, hubguard's own —
//! and so act with its API rights. A class names the accounts its pods may use, and which of
//! those may mount an API token (automounted, or a projected `serviceAccountToken` source).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::support::{names_for_tenant, names_listed, validate_name_patterns};
use super::{Check, Findings};
use crate::defaults::{PodDefault, Rule};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;
use crate::validate::FieldErrors;

pub const CHECK: Check = Check {
    id: "serviceAccounts",
    summary: "pods run only as the class's service accounts, with a token only where allowed",
    evaluate,
    defaults: Some(defaults),
    validate: None,
    level: None,
    normalise: None,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountRules {
    /// Accounts the pods may run as; `{tenant}` stands for the pod's tenant. A pod that names
    /// none runs as `default`, which must be listed to be allowed.
    pub names: Vec<String>,
    /// Of those, the accounts whose token the pods may mount. Pods of other accounts must set
    /// `automountServiceAccountToken: false` (the account's own setting is not visible at
    /// admission) and project no token.
    #[serde(default)]
    pub token_names: Vec<String>,
    /// Audiences a projected token may name. A projected token with no audience is an API
    /// token, allowed only where `tokenNames` allows one.
    #[serde(default)]
    pub token_audiences: Vec<String>,
}

pub fn validate(rules: &ServiceAccountRules, path: &str, errs: &mut FieldErrors) {
    validate_name_patterns(&rules.names, &format!("{path}.names"), errs);
    validate_name_patterns(&rules.token_names, &format!("{path}.tokenNames"), errs);
    for (i, name) in rules.token_names.iter().enumerate() {
        if !rules.names.contains(name) {
            errs.push(
                format!("{path}.tokenNames[{i}]"),
                format!("'{name}' is not among names"),
            );
        }
    }
}

/// The account a pod runs as: `serviceAccountName`, the deprecated `serviceAccount`, or the
/// namespace's `default`.
fn account<'a>(pod: &PodSubject<'a>) -> (&'a str, &'static str) {
    let spec = pod.spec;
    match (&spec.service_account_name, &spec.service_account) {
        (Some(name), _) if !name.is_empty() => (name, "serviceAccountName"),
        (_, Some(name)) if !name.is_empty() => (name, "serviceAccount"),
        _ => ("default", "serviceAccountName"),
    }
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rules) = &class.service_accounts else {
        return;
    };
    let tenant = pod.tenant();
    let (name, field) = account(pod);
    if !rules
        .names
        .iter()
        .any(|p| names_for_tenant(p, name, tenant))
    {
        out.add(
            pod.path(field),
            format!("the pod runs as service account {name}, which its class may not use"),
            format!(
                "run as one of: {} (set serviceAccountName)",
                names_listed(&rules.names, tenant)
            ),
        );
        return;
    }
    let token_allowed = rules
        .token_names
        .iter()
        .any(|p| names_for_tenant(p, name, tenant));
    if !token_allowed && pod.spec.automount_service_account_token != Some(false) {
        out.add(
            pod.path("automountServiceAccountToken"),
            format!("the pod would mount service account {name}'s API token"),
            "set automountServiceAccountToken: false",
        );
    }
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let sources = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for (j, source) in sources.enumerate() {
            let Some(token) = &source.service_account_token else {
                continue;
            };
            let path = || {
                pod.path(&format!(
                    "volumes[{i}].projected.sources[{j}].serviceAccountToken"
                ))
            };
            match token.audience.as_deref().filter(|a| !a.is_empty()) {
                None if !token_allowed => out.add(
                    path(),
                    format!(
                        "volume '{}' projects service account {name}'s API token",
                        volume.name
                    ),
                    "remove the serviceAccountToken source",
                ),
                Some(audience) if !rules.token_audiences.iter().any(|a| a == audience) => out.add(
                    format!("{}.audience", path()),
                    format!(
                        "volume '{}' projects a token for audience {audience}",
                        volume.name
                    ),
                    format!(
                        "name one of the allowed audiences ({}) or remove the source",
                        if rules.token_audiences.is_empty() {
                            "none".to_string()
                        } else {
                            rules.token_audiences.join(", ")
                        }
                    ),
                ),
                _ => {}
            }
        }
    }
}

/// Where no account of the class may mount a token, pods that leave automounting unset stop
/// mounting one.
fn defaults(class: &ClassPolicy, out: &mut Vec<PodDefault>) {
    if class
        .service_accounts
        .as_ref()
        .is_some_and(|r| r.token_names.is_empty())
    {
        out.push(PodDefault::pod(
            &["automountServiceAccountToken"],
            Rule::Unset(Value::Bool(false)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, run_defaults, Case, DefaultCase, CASE};

    const USER: &str =
        "serviceAccounts: {names: [default, 'user-{tenant}'], tokenNames: ['user-{tenant}']}";
    const DASK: &str = "serviceAccounts: {names: [default], tokenAudiences: [sts.amazonaws.com]}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "default account, no token",
                    policy: USER,
                    pod: "{automountServiceAccountToken: false, containers: [{name: a}]}",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "default account mounting its token",
                    policy: USER,
                    requester_tenant: Some("alice"),
                    expect: &["spec.automountServiceAccountToken"],
                    ..CASE
                },
                Case {
                    name: "own account with its token (dask-kubernetes)",
                    policy: USER,
                    pod: "{serviceAccountName: user-alice, containers: [{name: a}]}",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
                Case {
                    name: "another tenant's account",
                    policy: USER,
                    pod: "{serviceAccountName: user-bob, automountServiceAccountToken: false, containers: [{name: a}]}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.serviceAccountName"],
                    ..CASE
                },
                Case {
                    name: "the hub's account",
                    policy: USER,
                    pod: "{serviceAccountName: hub, containers: [{name: a}]}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.serviceAccountName"],
                    ..CASE
                },
                Case {
                    name: "the deprecated field counts too",
                    policy: USER,
                    pod: "{serviceAccount: hubguard-webhook, containers: [{name: a}]}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.serviceAccount"],
                    ..CASE
                },
                Case {
                    name: "a pod of no tenant cannot use a tenant's account",
                    policy: USER,
                    pod: "{serviceAccountName: user-alice, containers: [{name: a}]}",
                    expect: &["spec.serviceAccountName"],
                    ..CASE
                },
                Case {
                    name: "projected API token without a token right",
                    policy: DASK,
                    pod: "{automountServiceAccountToken: false, containers: [{name: a}], volumes: [{name: t, projected: {sources: [{serviceAccountToken: {path: token}}]}}]}",
                    expect: &["spec.volumes[0].projected.sources[0].serviceAccountToken"],
                    ..CASE
                },
                Case {
                    name: "projected token for a listed audience",
                    policy: DASK,
                    pod: "{automountServiceAccountToken: false, containers: [{name: a}], volumes: [{name: t, projected: {sources: [{serviceAccountToken: {path: token, audience: sts.amazonaws.com}}]}}]}",
                    ..CASE
                },
                Case {
                    name: "projected token for another audience",
                    policy: DASK,
                    pod: "{automountServiceAccountToken: false, containers: [{name: a}], volumes: [{name: t, projected: {sources: [{configMap: {name: x}}, {serviceAccountToken: {path: token, audience: vault}}]}}]}",
                    expect: &["spec.volumes[0].projected.sources[1].serviceAccountToken.audience"],
                    ..CASE
                },
                Case {
                    name: "not configured",
                    pod: "{serviceAccountName: hub, containers: [{name: a}]}",
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
                    name: "no account may mount a token: automounting off",
                    policy: DASK,
                    pod: "{containers: [{name: a}]}",
                    want: "{automountServiceAccountToken: false, containers: [{name: a}]}",
                },
                DefaultCase {
                    name: "an explicit choice stays for the check to judge",
                    policy: DASK,
                    pod: "{automountServiceAccountToken: true, containers: [{name: a}]}",
                    want: "{automountServiceAccountToken: true, containers: [{name: a}]}",
                },
                DefaultCase {
                    name: "accounts with tokens exist: nothing is assumed",
                    policy: USER,
                    pod: "{containers: [{name: a}]}",
                    want: "{containers: [{name: a}]}",
                },
            ],
        );
    }
}
