//! An action on an object that already exists: deleting it (or evicting a pod, which deletes
//! it), or reaching into a running pod (exec, attach, port-forward). RBAC grants these per namespace and cannot tell tenants apart
//! inside one; the action rules judge them by the tenant recorded on the object.

use serde_json::Value;

use crate::identity::RequesterKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    Evict,
    Exec,
    Attach,
    PortForward,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Evict => "evict",
            Action::Exec => "exec",
            Action::Attach => "attach",
            Action::PortForward => "port-forward",
        }
    }

    /// The action as a noun, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Action::Delete => "deletion",
            Action::Evict => "eviction",
            Action::Exec => "exec",
            Action::Attach => "attach",
            Action::PortForward => "port-forward",
        }
    }

    /// The action of a pod subresource: `eviction` (created), or one a requester connects to.
    pub fn of_subresource(subresource: &str) -> Option<Action> {
        match subresource {
            "eviction" => Some(Action::Evict),
            "exec" => Some(Action::Exec),
            "attach" => Some(Action::Attach),
            "portforward" => Some(Action::PortForward),
            _ => None,
        }
    }
}

/// One action on one object, with who asks.
pub struct ActionSubject<'a> {
    pub action: Action,
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    /// The target object (for a pod looked up for exec, its metadata only), or why it
    /// could not be read.
    pub target: Result<&'a Value, &'a str>,
    pub requester: RequesterKind,
    /// The tenant the requester acts for.
    pub requester_tenant: Option<&'a str>,
    /// The label keys that name an object's tenant, the policy's and hubguard's record.
    pub tenant_label_keys: &'a [String],
}
