//! AdmissionReview requests as kube-apiserver sends them, for the load generator and tests.

use serde_json::{json, Value};

/// The review the API server sends for `operation` on `object` by `username`.
pub struct ReviewRequest<'a> {
    pub uid: &'a str,
    pub operation: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub username: &'a str,
    pub groups: &'a [&'a str],
    pub namespace: &'a str,
    pub dry_run: bool,
    /// For subresources: (resource, subresource, name), e.g. ("pods", "exec", "jupyter-alice").
    pub subresource: Option<(&'a str, &'a str, &'a str)>,
}

impl ReviewRequest<'_> {
    pub fn to_json(&self) -> Value {
        let object = self.object.or(self.old_object);
        let kind = object
            .and_then(|o| o.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or("Pod");
        let api_version = object
            .and_then(|o| o.get("apiVersion"))
            .and_then(Value::as_str)
            .unwrap_or("v1");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let name = object
            .and_then(|o| o.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = format!("{}s", kind.to_lowercase());
        let (resource, sub, name) = match self.subresource {
            Some((resource, sub, name)) => (resource.to_string(), Some(sub), name),
            None => (plural, None, name),
        };
        // A pod's subresource is a resource of the core group whatever kind it carries (an
        // Eviction is policy/v1), as the API server says it.
        let (resource_group, resource_version) = if sub.is_some() && resource == "pods" {
            ("", "v1")
        } else {
            (group, version)
        };
        let mut request = json!({
            "uid": self.uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": resource_group, "version": resource_version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": resource_group, "version": resource_version, "resource": resource},
            "name": name,
            "namespace": self.namespace,
            "operation": self.operation,
            "userInfo": {
                "username": self.username,
                "groups": self.groups,
            },
            "object": self.object,
            "oldObject": self.old_object,
            "dryRun": self.dry_run,
        });
        if let Some(sub) = sub {
            request["subResource"] = json!(sub);
            request["requestSubResource"] = json!(sub);
        }
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        })
    }
}

impl Default for ReviewRequest<'_> {
    fn default() -> Self {
        ReviewRequest {
            uid: "00000000-0000-0000-0000-000000000000",
            operation: "CREATE",
            object: None,
            old_object: None,
            username: "",
            groups: &["system:authenticated"],
            namespace: "default",
            dry_run: false,
            subresource: None,
        }
    }
}
