//! One identity per pod: the class and tenant hubguard decides at admission, recorded on the
//! pod (and on every pod template) as labels, so that everything downstream — the node agent
//! above all — reads one truth instead of guessing from component labels.
//!
//! Who may write the record: `/mutate` writes what hubguard decides for the requester, and
//! `/validate` refuses an object whose record differs from that decision. Only a trusted
//! requester's record is taken as it is: trusted controllers copy records from templates that
//! were judged, with their record, when their tenant created them.

use crate::classify::{class_from_labels, classify, PodClass, Standing, StringMap};

/// The class hubguard decided for the pod (`user`, `dask`, `platform`, `other`).
pub const CLASS_LABEL: &str = "hubguard.dev/class";
/// The tenant hubguard decided for the pod; absent when the pod belongs to no tenant.
pub const TENANT_LABEL: &str = "hubguard.dev/tenant";

/// Who the requester is to the policy, as the rules need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequesterKind {
    /// One of the policy's trusted requesters.
    Trusted,
    /// A requester the tenancy patterns map to a tenant.
    Tenant,
    /// Neither trusted nor a tenant: a person or a controller the policy does not know.
    Untrusted,
    /// No requester at all: `hubguard check` without `--as`.
    Unknown,
}

impl RequesterKind {
    pub fn of(standing: &Standing, known: bool) -> Self {
        match (known, standing.trusted, standing.tenant.is_some()) {
            (false, _, _) => RequesterKind::Unknown,
            (true, true, _) => RequesterKind::Trusted,
            (true, false, true) => RequesterKind::Tenant,
            (true, false, false) => RequesterKind::Untrusted,
        }
    }
}

/// The identity recorded on an object's (or template's) labels, as written there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded<'a> {
    pub class: Option<&'a str>,
    pub tenant: Option<&'a str>,
}

impl<'a> Recorded<'a> {
    pub fn of(labels: StringMap<'a>) -> Self {
        Recorded {
            class: labels.get(CLASS_LABEL),
            tenant: labels.get(TENANT_LABEL),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.class.is_none() && self.tenant.is_none()
    }
}

/// What hubguard decides a pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub class: PodClass,
    pub tenant: Option<String>,
}

/// Whether a string can be a label value (at most 63 characters of alphanumerics, `-`, `_`
/// and `.`, beginning and ending with an alphanumeric).
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub fn parse_class(name: &str) -> Option<PodClass> {
    PodClass::ALL.into_iter().find(|c| c.as_str() == name)
}

/// Decides the identity of one pod spec; `object_labels` are the labels of the object that holds
/// it (a Dask resource's own, where the template has its own metadata).
/// - A trusted requester's record stands; without one, its labels are honoured (the
///   template's first, then the object's).
/// - A tenant's pods are that tenant's user pods (dask pods where the object or its labels say
///   dask), whatever they claim.
/// - Anyone else gets the class its labels claim, never `platform`, and no tenant: labels do
///   not make a pod someone's.
pub fn decide(
    labels: StringMap<'_>,
    object_labels: StringMap<'_>,
    fixed_class: Option<PodClass>,
    standing: &Standing,
    tenant_labels: &[String],
) -> Identity {
    let claimed = fixed_class.unwrap_or_else(|| class_from_labels(labels));
    if standing.trusted {
        let recorded = Recorded::of(labels);
        if let Some(class) = recorded.class.and_then(parse_class) {
            return Identity {
                class,
                tenant: recorded.tenant.map(str::to_string),
            };
        }
        let tenant = tenant_labels
            .iter()
            .find_map(|key| labels.get(key))
            .or_else(|| tenant_labels.iter().find_map(|key| object_labels.get(key)));
        return Identity {
            class: claimed,
            tenant: tenant.map(str::to_string),
        };
    }
    Identity {
        class: classify(claimed, standing),
        tenant: standing.tenant.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn decide_for(labels: Value, fixed: Option<PodClass>, standing: &Standing) -> Identity {
        let meta = json!({ "labels": labels });
        let keys = vec!["hub.jupyter.org/username".to_string()];
        let labels = StringMap::of(Some(&meta), "labels");
        decide(labels, StringMap::default(), fixed, standing, &keys)
    }

    #[test]
    fn decision_cases() {
        let trusted = Standing {
            trusted: true,
            tenant: None,
        };
        let alice = Standing {
            trusted: false,
            tenant: Some("alice".into()),
        };
        let nobody = Standing::default();
        let id = |class, tenant: Option<&str>| Identity {
            class,
            tenant: tenant.map(str::to_string),
        };
        let cases = [
            (
                "the hub's user pod: labels honoured",
                json!({"component": "singleuser-server", "hub.jupyter.org/username": "bob"}),
                None,
                &trusted,
                id(PodClass::User, Some("bob")),
            ),
            (
                "a controller's pod from a tenant's template: the record stands",
                json!({"hubguard.dev/class": "user", "hubguard.dev/tenant": "alice"}),
                None,
                &trusted,
                id(PodClass::User, Some("alice")),
            ),
            (
                "a record naming no class is ignored",
                json!({"hubguard.dev/class": "root", "component": "hub"}),
                None,
                &trusted,
                id(PodClass::Platform, None),
            ),
            (
                "a tenant's unlabelled pod is the tenant's user pod",
                json!({}),
                None,
                &alice,
                id(PodClass::User, Some("alice")),
            ),
            (
                "a tenant's record is not taken: the requester decides",
                json!({"hubguard.dev/class": "platform", "hubguard.dev/tenant": "bob"}),
                None,
                &alice,
                id(PodClass::User, Some("alice")),
            ),
            (
                "a tenant's Dask resource makes dask pods",
                json!({}),
                Some(PodClass::Dask),
                &alice,
                id(PodClass::Dask, Some("alice")),
            ),
            (
                "an unknown controller's labels give no tenant",
                json!({"component": "singleuser-server", "hub.jupyter.org/username": "bob"}),
                None,
                &nobody,
                id(PodClass::User, None),
            ),
        ];
        for (name, labels, fixed, standing, want) in cases {
            assert_eq!(decide_for(labels, fixed, standing), want, "{name}");
        }
    }
}
