//! A tenant's account may delete pods, Services and workloads, evict pods (a deletion), and
//! exec, attach and port-forward into pods, in the namespace all tenants share: RBAC cannot tell whose an
//! object is. A tenant could stop another user's notebook or Dask cluster, delete the hub's
//! Service to take its name, or run commands in another user's server with that user's files
//! and tokens. A tenant acts only on objects recorded as hers: the tenant label (hubguard's
//! record, or the policy's tenant label) names her; for a Service, else its selector's
//! `hubguard.dev/tenant` (which `serviceSelector` makes every tenant's Service pin to her own).
//! Trusted requesters and requesters of no tenant are left to RBAC.

use super::{ActionCheck, Findings};
use crate::action::ActionSubject;
use crate::classify::StringMap;
use crate::identity::{RequesterKind, TENANT_LABEL};

pub const CHECK: ActionCheck = ActionCheck {
    id: "tenantActions",
    summary:
        "a tenant deletes, evicts, execs, attaches and port-forwards only objects recorded as hers",
    evaluate,
};

fn evaluate(subject: &ActionSubject<'_>, out: &mut Findings) {
    let (RequesterKind::Tenant, Some(tenant)) = (subject.requester, subject.requester_tenant)
    else {
        return;
    };
    let (action, kind, namespace, name) = (
        subject.action.noun(),
        subject.kind,
        subject.namespace,
        subject.name,
    );
    let object = match subject.target {
        Ok(object) => object,
        Err(why) => {
            out.add(
                "metadata.labels".to_string(),
                format!(
                    "hubguard cannot confirm that {kind} {namespace}/{name} belongs to tenant \
                     {tenant} ({why}), so {action} is refused"
                ),
                "try again; if it keeps failing, the webhook cannot read the cluster",
            );
            return;
        }
    };
    let labels = StringMap::of(object.get("metadata"), "labels");
    let selector_owner = || {
        let selector = object
            .pointer("/spec/selector")
            .filter(|_| kind == "Service")?;
        let owner = selector.get(TENANT_LABEL)?.as_str()?;
        Some(("its selector's hubguard.dev/tenant", owner))
    };
    let owner = subject
        .tenant_label_keys
        .iter()
        .find_map(|key| labels.get(key).map(|owner| (key.as_str(), owner)))
        .or_else(selector_owner);
    match owner {
        Some((_, owner)) if owner == tenant => {}
        Some((key, owner)) => out.add(
            "metadata.labels".to_string(),
            format!(
                "{action} of {kind} {namespace}/{name}: it belongs to tenant {owner} ({key}), \
                 not to {tenant}"
            ),
            format!("act only on your own objects (labelled for tenant {tenant})"),
        ),
        None => out.add(
            "metadata.labels".to_string(),
            format!(
                "{action} of {kind} {namespace}/{name}: it carries no tenant label, and tenant \
                 {tenant} acts only on its own objects"
            ),
            "ask the platform's administrators: the object is the platform's",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::checks::testing::{run_action, ActionCase, ACTION_CASE};

    #[test]
    fn cases() {
        run_action(
            &CHECK,
            &[
                ActionCase {
                    name: "deletes her own notebook",
                    labels: "{hub.jupyter.org/username: alice}",
                    requester_tenant: Some("alice"),
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "deletes her own Service, by hubguard's record",
                    kind: "Service",
                    labels: "{hubguard.dev/tenant: alice}",
                    requester_tenant: Some("alice"),
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "deletes her own Service, by its selector",
                    kind: "Service",
                    selector: "{app: viewer, hubguard.dev/tenant: alice}",
                    requester_tenant: Some("alice"),
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "deletes another's Service, by its selector",
                    kind: "Service",
                    selector: "{hubguard.dev/tenant: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels"],
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "a pod's selector-like field is no owner",
                    selector: "{hubguard.dev/tenant: alice}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels"],
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "deletes another user's notebook",
                    labels: "{hub.jupyter.org/username: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels"],
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "execs into another user's server",
                    action: Action::Exec,
                    labels: "{hubguard.dev/tenant: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels"],
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "deletes the hub's Service",
                    kind: "Service",
                    labels: "{component: hub, app: jupyterhub}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels"],
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "evicts another user's server",
                    action: Action::Evict,
                    labels: "{hub.jupyter.org/username: bob}",
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels"],
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "the pod could not be looked up",
                    action: Action::PortForward,
                    unreadable: Some("reading the pod took longer than 2s"),
                    requester_tenant: Some("alice"),
                    expect: &["metadata.labels"],
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "the hub stops a server",
                    labels: "{hub.jupyter.org/username: bob}",
                    requester: RequesterKind::Trusted,
                    ..ACTION_CASE
                },
                ActionCase {
                    name: "a person of no tenant is left to RBAC",
                    labels: "{hub.jupyter.org/username: bob}",
                    requester: RequesterKind::Untrusted,
                    ..ACTION_CASE
                },
            ],
        );
    }
}
