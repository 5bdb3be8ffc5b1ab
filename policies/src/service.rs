//! A Service as the Service rules see it. A Service routes traffic to pods and gives them a
//! name the cluster's DNS answers for, so what a tenant's Service claims (its type, its
//! addresses, the pods it selects, its name) reaches beyond the tenant's own pods. The Service
//! specs judged are a Service's own and those a Dask resource hands the trusted
//! dask-kubernetes operator to create unchanged.

use regex::Regex;
use serde_json::Value;

use crate::identity::RequesterKind;
use crate::objects::api_group;

/// Where a kind carries a Service spec: its API group, kind, and the spec's dotted path.
pub struct ServiceSite {
    pub group: &'static str,
    pub kind: &'static str,
    pub base: &'static str,
}

pub static SERVICE_SITES: &[ServiceSite] = &[
    ServiceSite {
        group: "",
        kind: "Service",
        base: "spec",
    },
    ServiceSite {
        group: "kubernetes.dask.org",
        kind: "DaskCluster",
        base: "spec.scheduler.service",
    },
    ServiceSite {
        group: "kubernetes.dask.org",
        kind: "DaskJob",
        base: "spec.cluster.spec.scheduler.service",
    },
];

/// The Service site of an object of `api_version` and `kind`, if it has one.
pub fn service_site(api_version: &str, kind: &str) -> Option<&'static ServiceSite> {
    let group = api_group(api_version);
    SERVICE_SITES
        .iter()
        .find(|site| site.kind == kind && site.group == group)
}

/// The Services the platform's clients reach by name, which no tenant may create: names that
/// the policy's `spec.services.reservedNames` patterns match in any governed namespace, and
/// every Service an egress rule points at (`to: {service: namespace/name}`).
#[derive(Debug, Clone, Default)]
pub struct ReservedServices {
    pub patterns: Vec<Regex>,
    /// `(namespace, name)` of every egress rule's Service.
    pub egress_targets: Vec<(String, String)>,
}

impl ReservedServices {
    /// Why `name` in `namespace` is reserved, or `None` when a tenant may take it.
    pub fn reason(&self, namespace: &str, name: &str) -> Option<String> {
        if self
            .egress_targets
            .iter()
            .any(|(ns, n)| ns == namespace && n == name)
        {
            return Some(format!(
                "the policy's egress rules send pods to Service {namespace}/{name}"
            ));
        }
        self.patterns
            .iter()
            .find(|re| re.is_match(name))
            .map(|re| format!("the policy reserves names matching '{}'", re.as_str()))
    }
}

/// One Service spec of an object, with who asks for it.
pub struct ServiceSubject<'a> {
    /// The Service spec; `Value::Null` where the object leaves it out.
    pub spec: &'a Value,
    /// The spec's dotted path in the object.
    pub base: &'static str,
    /// The Service's own name, when the object is a Service (a Dask resource's Service is
    /// named by the operator).
    pub name: Option<&'a str>,
    pub namespace: &'a str,
    pub requester: RequesterKind,
    /// The tenant the requester acts for.
    pub requester_tenant: Option<&'a str>,
    pub reserved: &'a ReservedServices,
}

impl ServiceSubject<'_> {
    /// The spec's field `key` (a top-level field of the Service spec).
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.spec.get(key).filter(|v| !v.is_null())
    }

    /// The path of the spec's field `key`, for findings.
    pub fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.base)
    }
}
