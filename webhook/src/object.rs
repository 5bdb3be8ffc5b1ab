//! The object inside an AdmissionReview, kept as the JSON it arrived as.
//!
//! kube's `DynamicObject` flattens two fields, which makes serde buffer every object into an
//! intermediate tree before building it, and the engine then needs a `Value` copy anyway:
//! together a third of the webhook's time per review (measured with perf under load). This
//! type parses straight into a `Value` and implements `Resource` so that kube's
//! `AdmissionReview<T>` can carry it.

use std::borrow::Cow;
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicResourceScope, Resource};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct RawObject {
    pub value: Value,
    /// Built from `value` the first time kube's `Resource::meta` asks for it.
    meta: OnceLock<ObjectMeta>,
}

impl RawObject {
    pub fn new(value: Value) -> Self {
        RawObject {
            value,
            meta: OnceLock::new(),
        }
    }

    pub fn kind(&self) -> Option<&str> {
        self.value.get("kind").and_then(Value::as_str)
    }

    pub fn labels(&self) -> Option<&Value> {
        self.value.pointer("/metadata/labels")
    }

    pub fn spec(&self) -> Option<&Value> {
        self.value.get("spec")
    }

    pub fn is_being_deleted(&self) -> bool {
        self.value
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null())
    }
}

impl PartialEq for RawObject {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(RawObject::new)
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        self.meta.get_or_init(|| {
            self.value
                .get("metadata")
                .and_then(|m| ObjectMeta::deserialize(m).ok())
                .unwrap_or_default()
        })
    }

    /// Changes made here are not written back into `value`.
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.meta();
        self.meta.get_mut().expect("initialised just above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_as_the_value_and_reads_metadata_lazily() {
        let object: RawObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": []}
        }))
        .unwrap();
        assert_eq!(object.kind(), Some("Pod"));
        assert_eq!(object.meta().name.as_deref(), Some("p"));
        assert_eq!(object.labels(), Some(&json!({"a": "b"})));
        assert!(!object.is_being_deleted());
    }
}
