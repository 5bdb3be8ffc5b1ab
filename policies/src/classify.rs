//! Which class a pod belongs to, and whose it is. Labels suggest a class; the requester decides
//! whether the suggestion is honoured.

use serde_json::{Map, Value};

/// A read-only view of a label or annotation map inside a JSON object.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringMap<'a>(Option<&'a Map<String, Value>>);

impl<'a> StringMap<'a> {
    /// `metadata.<field>` of a JSON object's metadata.
    pub fn of(metadata: Option<&'a Value>, field: &str) -> Self {
        StringMap(
            metadata
                .and_then(|m| m.get(field))
                .and_then(Value::as_object),
        )
    }

    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0?.get(key)?.as_str()
    }

    /// The value at `<prefix><name>`, found without building the key.
    pub fn get_prefixed(&self, prefix: &str, name: &str) -> Option<(&'a str, &'a str)> {
        self.0?.iter().find_map(|(k, v)| {
            let rest = k.strip_prefix(prefix)?;
            (rest == name).then_some((k.as_str(), v.as_str()?))
        })
    }

    pub fn has_key_prefix(&self, prefix: &str) -> bool {
        self.0
            .is_some_and(|m| m.keys().any(|k| k.starts_with(prefix)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodClass {
    User,
    Dask,
    Platform,
    Other,
}

impl PodClass {
    pub const ALL: [PodClass; 4] = [
        PodClass::User,
        PodClass::Dask,
        PodClass::Platform,
        PodClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PodClass::User => "user",
            PodClass::Dask => "dask",
            PodClass::Platform => "platform",
            PodClass::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The `component` values of z2jh's and dask-gateway's own pods.
pub(crate) const PLATFORM_COMPONENTS: &[&str] = &[
    "hub",
    "proxy",
    "autohttps",
    "image-puller",
    "continuous-image-puller",
    "hook-image-puller",
    "hook-image-awaiter",
    "user-scheduler",
    "user-placeholder",
    "gateway",
    "controller",
    "traefik",
];

/// The class the labels claim. Not to be trusted on its own: see [`classify`].
pub fn class_from_labels(labels: StringMap<'_>) -> PodClass {
    let component = labels
        .get("app.kubernetes.io/component")
        .or_else(|| labels.get("component"));
    let legacy_component = labels.get("component");
    if component == Some("singleuser-server") || legacy_component == Some("singleuser-server") {
        return PodClass::User;
    }
    if labels.get("dask.org/component").is_some() || labels.get("dask.org/cluster-name").is_some() {
        return PodClass::Dask;
    }
    if labels.has_key_prefix("gateway.dask.org/")
        && matches!(component, Some("dask-worker" | "dask-scheduler"))
    {
        return PodClass::Dask;
    }
    if component.is_some_and(|c| PLATFORM_COMPONENTS.contains(&c)) {
        return PodClass::Platform;
    }
    PodClass::Other
}

/// What the policy makes of the requester.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// One of the policy's trusted requesters: its platform-labelled pods are platform pods.
    pub trusted: bool,
    /// The tenant the requester acts for, from the policy's tenancy patterns.
    pub tenant: Option<String>,
}

/// The class a pod is judged as. A tenant's pods are user workloads (or dask, when labelled so)
/// whatever else they claim; `platform` is honoured only for trusted requesters.
pub fn classify(claimed: PodClass, standing: &Standing) -> PodClass {
    if standing.trusted {
        return claimed;
    }
    match claimed {
        PodClass::Dask => PodClass::Dask,
        _ if standing.tenant.is_some() => PodClass::User,
        PodClass::Platform => PodClass::User,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels_class(labels: Value) -> PodClass {
        let meta = json!({ "labels": labels });
        class_from_labels(StringMap::of(Some(&meta), "labels"))
    }

    #[test]
    fn label_cases() {
        let cases = [
            (json!({"component": "singleuser-server"}), PodClass::User),
            (
                json!({"app.kubernetes.io/component": "singleuser-server"}),
                PodClass::User,
            ),
            (
                json!({"gateway.dask.org/instance": "x", "app.kubernetes.io/component": "dask-worker"}),
                PodClass::Dask,
            ),
            (json!({"dask.org/component": "scheduler"}), PodClass::Dask),
            (json!({"component": "hub"}), PodClass::Platform),
            (
                json!({"app.kubernetes.io/component": "traefik"}),
                PodClass::Platform,
            ),
            (json!({"app": "nginx"}), PodClass::Other),
            (json!({}), PodClass::Other),
        ];
        for (labels, want) in cases {
            assert_eq!(labels_class(labels.clone()), want, "{labels}");
        }
    }

    #[test]
    fn requester_cases() {
        let trusted = Standing {
            trusted: true,
            tenant: None,
        };
        let tenant = Standing {
            trusted: false,
            tenant: Some("alice".into()),
        };
        let nobody = Standing::default();
        let cases = [
            (PodClass::Platform, &trusted, PodClass::Platform),
            (PodClass::Platform, &nobody, PodClass::User),
            (PodClass::Platform, &tenant, PodClass::User),
            (PodClass::Other, &tenant, PodClass::User),
            (PodClass::Other, &nobody, PodClass::Other),
            (PodClass::Dask, &tenant, PodClass::Dask),
            (PodClass::User, &trusted, PodClass::User),
        ];
        for (claimed, standing, want) in cases {
            assert_eq!(
                classify(claimed, standing),
                want,
                "{claimed:?} {standing:?}"
            );
        }
    }
}
