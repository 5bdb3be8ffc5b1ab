//! The case-table harness every check's tests use. Cases go through the same policy compiler
//! and pod view as the webhook.

use serde_json::Value;

use super::{Check, Findings};
use crate::classify::{PodClass, StringMap};
use crate::identity::{Recorded, RequesterKind};
use crate::model::ClassSpec;
use crate::pod::{ClusterLookup, PodSubject};
use crate::policy::ClassPolicy;

pub struct Case {
    pub name: &'static str,
    /// YAML of a class spec, e.g. `controls: {privileged: false}`.
    pub policy: &'static str,
    /// YAML of a pod spec.
    pub pod: &'static str,
    /// YAML of the pod's labels.
    pub labels: &'static str,
    /// YAML of the pod's annotations.
    pub annotations: &'static str,
    /// The tenant the requester acts for (which makes the requester a tenant).
    pub requester_tenant: Option<&'static str>,
    /// Who asks, when not a tenant (`Unknown` is `hubguard check` without `--as`).
    pub requester: RequesterKind,
    /// The class the pod is judged as.
    pub class: PodClass,
    /// YAML of the whole object, when the rule reads more than the pod (a Dask resource).
    pub object: Option<&'static str>,
    /// Where the pod's metadata is in the object: `metadata` for a pod, a template's path
    /// (`spec.worker.metadata`) for a workload or Dask resource.
    pub meta_base: &'static str,
    /// For a DaskWorkerGroup: the looked-up owner of its cluster, or why the look-up failed.
    pub cluster: Option<Result<Option<&'static str>, &'static str>>,
    /// The paths of the expected findings, in order.
    pub expect: &'static [&'static str],
}

pub const CASE: Case = Case {
    name: "",
    policy: "{}",
    pod: "{containers: [{name: main}]}",
    labels: "{}",
    annotations: "{}",
    requester_tenant: None,
    requester: RequesterKind::Unknown,
    class: PodClass::User,
    object: None,
    meta_base: "metadata",
    cluster: None,
    expect: &[],
};

pub fn class_policy(yaml: &str) -> ClassPolicy {
    let spec: ClassSpec = serde_norway::from_str(yaml).expect("case policy parses");
    ClassPolicy::compile(PodClass::User, spec, "case").expect("case policy is valid")
}

fn yaml_json(yaml: &str) -> Value {
    serde_norway::from_str(yaml).expect("case YAML parses")
}

pub fn findings(check: &Check, case: &Case) -> Vec<super::Finding> {
    evaluate(check, case, yaml_json(case.pod))
}

fn evaluate(check: &Check, case: &Case, spec_json: Value) -> Vec<super::Finding> {
    let mut class = class_policy(case.policy);
    class.class = case.class;
    let spec = serde_json::from_value(spec_json).expect("case pod spec parses");
    let meta = serde_json::json!({
        "labels": yaml_json(case.labels),
        "annotations": yaml_json(case.annotations),
    });
    let object = match case.object {
        Some(yaml) => yaml_json(yaml),
        None => serde_json::json!({ "metadata": meta }),
    };
    let labels = StringMap::of(Some(&meta), "labels");
    let tenant_label_keys = [
        "hub.jupyter.org/username".to_string(),
        crate::identity::TENANT_LABEL.to_string(),
    ];
    let label_tenant = tenant_label_keys.iter().find_map(|k| labels.get(k));
    let requester = match (case.requester_tenant, case.requester) {
        (Some(_), _) => RequesterKind::Tenant,
        (None, kind) => kind,
    };
    let recorded = Recorded::of(labels);
    let decided_tenant = match requester {
        RequesterKind::Tenant => case.requester_tenant,
        RequesterKind::Trusted => recorded.tenant.or(label_tenant),
        _ => None,
    };
    let cluster: Option<ClusterLookup> = case.cluster.map(|c| {
        c.map(|owner| owner.map(str::to_string))
            .map_err(str::to_string)
    });
    let pod = PodSubject {
        spec: &spec,
        base: "spec",
        meta_base: case.meta_base,
        labels,
        annotations: StringMap::of(Some(&meta), "annotations"),
        class: case.class,
        requester,
        requester_tenant: case.requester_tenant,
        decided_tenant,
        label_tenant,
        tenant_label_keys: &tenant_label_keys,
        recorded,
        object: &object,
        object_labels: StringMap::of(object.get("metadata"), "labels"),
        cluster_lookup: cluster.as_ref(),
    };
    let mut out = Findings::default();
    out.start(check.id);
    (check.evaluate)(&pod, &class, &mut out);
    out.into_vec()
}

pub fn run(check: &Check, cases: &[Case]) {
    for case in cases {
        assert_found(check.id, case.name, &findings(check, case), case.expect);
    }
}

/// The findings are at the expected paths, each says what and how to fix it, and each is the
/// rule's own.
fn assert_found(rule: &str, case: &str, found: &[super::Finding], expect: &[&str]) {
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, expect, "{rule}: case '{case}'");
    for f in found {
        assert!(
            !f.message.is_empty() && !f.fix.is_empty(),
            "{rule}: case '{case}': every finding says what is wrong and how to fix it"
        );
        assert_eq!(f.rule, rule);
    }
}

pub struct DefaultCase {
    pub name: &'static str,
    pub policy: &'static str,
    pub pod: &'static str,
    /// YAML of the pod spec after the default.
    pub want: &'static str,
}

/// Applies the check's default and compares; a pod the default changed must then pass the
/// check (one it deliberately leaves alone is left for the check to deny).
pub fn run_defaults(check: &Check, cases: &[DefaultCase]) {
    let rule_defaults = check.defaults.expect("check has a default");
    for case in cases {
        let class = class_policy(case.policy);
        let mut defaults = Vec::new();
        rule_defaults(&class, &mut defaults);
        let original = yaml_json(case.pod);
        let spec = crate::defaults::applied(&original, &defaults);
        assert_eq!(
            spec,
            yaml_json(case.want),
            "{}: default case '{}'",
            check.id,
            case.name
        );
        if spec == original {
            continue;
        }
        let after = Case {
            policy: case.policy,
            ..CASE
        };
        assert!(
            evaluate(check, &after, spec).is_empty(),
            "{}: default case '{}' still fails after its default",
            check.id,
            case.name
        );
    }
}

pub struct ServiceCase {
    pub name: &'static str,
    /// YAML of the Service spec.
    pub spec: &'static str,
    /// Where the spec is: `spec` for a Service, `spec.scheduler.service` for a DaskCluster.
    pub base: &'static str,
    /// The Service's own name (`None` for a Dask resource's scheduler Service).
    pub name_of_service: Option<&'static str>,
    pub namespace: &'static str,
    /// The tenant the requester acts for (which makes the requester a tenant).
    pub requester_tenant: Option<&'static str>,
    /// Who asks, when not a tenant (`Unknown` is `hubguard check` without `--as`).
    pub requester: RequesterKind,
    /// The paths of the expected findings, in order.
    pub expect: &'static [&'static str],
}

/// The cases' policy reserves what tess-private's does: the hub's API by an egress rule, the
/// proxy's and the gateway's names by pattern.
pub const SERVICE_CASE: ServiceCase = ServiceCase {
    name: "",
    spec: "{}",
    base: "spec",
    name_of_service: Some("viewer"),
    namespace: "tess-private",
    requester_tenant: None,
    requester: RequesterKind::Unknown,
    expect: &[],
};

pub fn run_service(check: &super::ServiceCheck, cases: &[ServiceCase]) {
    let reserved = crate::service::ReservedServices {
        patterns: vec![
            regex::Regex::new("^(proxy-api|proxy-public)$").unwrap(),
            regex::Regex::new("-dask-gateway$").unwrap(),
        ],
        egress_targets: vec![("tess-private".into(), "hub".into())],
    };
    for case in cases {
        let spec = yaml_json(case.spec);
        let requester = match (case.requester_tenant, case.requester) {
            (Some(_), _) => RequesterKind::Tenant,
            (None, kind) => kind,
        };
        let service = crate::service::ServiceSubject {
            spec: &spec,
            base: case.base,
            name: case.name_of_service,
            namespace: case.namespace,
            requester,
            requester_tenant: case.requester_tenant,
            reserved: &reserved,
        };
        let mut out = Findings::default();
        out.start(check.id);
        (check.evaluate)(&service, &mut out);
        assert_found(check.id, case.name, &out.into_vec(), case.expect);
    }
}

pub struct ActionCase {
    pub name: &'static str,
    pub action: crate::action::Action,
    pub kind: &'static str,
    /// YAML of the target's labels.
    pub labels: &'static str,
    /// YAML of the target's `spec.selector` (a Service's).
    pub selector: &'static str,
    /// Why the target could not be read, instead of its labels.
    pub unreadable: Option<&'static str>,
    pub requester_tenant: Option<&'static str>,
    pub requester: RequesterKind,
    pub expect: &'static [&'static str],
}

pub const ACTION_CASE: ActionCase = ActionCase {
    name: "",
    action: crate::action::Action::Delete,
    kind: "Pod",
    labels: "{}",
    selector: "null",
    unreadable: None,
    requester_tenant: None,
    requester: RequesterKind::Unknown,
    expect: &[],
};

pub fn run_action(check: &super::ActionCheck, cases: &[ActionCase]) {
    let keys = [
        "hub.jupyter.org/username".to_string(),
        crate::identity::TENANT_LABEL.to_string(),
    ];
    for case in cases {
        let object = serde_json::json!({
            "metadata": {"labels": yaml_json(case.labels)},
            "spec": {"selector": yaml_json(case.selector)},
        });
        let requester = match (case.requester_tenant, case.requester) {
            (Some(_), _) => RequesterKind::Tenant,
            (None, kind) => kind,
        };
        let subject = crate::action::ActionSubject {
            action: case.action,
            kind: case.kind,
            name: "target",
            namespace: "tess-private",
            target: case.unreadable.map_or(Ok(&object), Err),
            requester,
            requester_tenant: case.requester_tenant,
            tenant_label_keys: &keys,
        };
        let mut out = Findings::default();
        out.start(check.id);
        (check.evaluate)(&subject, &mut out);
        assert_found(check.id, case.name, &out.into_vec(), case.expect);
    }
}
