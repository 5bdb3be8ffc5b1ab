//! The case-table harness every check's tests use. Cases go through the same policy compiler
//! and pod view as the webhook.

use serde_json::Value;

use super::{Check, Findings};
use crate::classify::{PodClass, StringMap};
use crate::model::ClassSpec;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub struct Case {
    pub name: &'static str,
    /// YAML of a class spec, e.g. `controls: {privileged: false}`.
    pub policy: &'static str,
    /// YAML of a pod spec.
    pub pod: &'static str,
    /// YAML of the pod's labels.
    pub labels: &'static str,
    /// The tenant the requester acts for.
    pub requester_tenant: Option<&'static str>,
    /// The paths of the expected findings, in order.
    pub expect: &'static [&'static str],
}

pub const CASE: Case = Case {
    name: "",
    policy: "{}",
    pod: "{containers: [{name: main}]}",
    labels: "{}",
    requester_tenant: None,
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
    evaluate(
        check,
        case.policy,
        yaml_json(case.pod),
        case.labels,
        case.requester_tenant,
    )
}

fn evaluate(
    check: &Check,
    policy: &str,
    spec_json: Value,
    labels: &str,
    requester_tenant: Option<&str>,
) -> Vec<super::Finding> {
    let class = class_policy(policy);
    let spec = serde_json::from_value(spec_json).expect("case pod spec parses");
    let meta = serde_json::json!({ "labels": yaml_json(labels) });
    let labels = StringMap::of(Some(&meta), "labels");
    let pod = PodSubject {
        spec: &spec,
        base: "spec",
        meta_base: "metadata",
        labels,
        annotations: StringMap::of(Some(&meta), "annotations"),
        class: PodClass::User,
        requester_tenant,
        label_tenant: labels.get("hub.jupyter.org/username"),
        tenant_label_key: "hub.jupyter.org/username",
    };
    let mut out = Findings::default();
    out.start(check.id);
    (check.evaluate)(&pod, &class, &mut out);
    out.into_vec()
}

pub fn run(check: &Check, cases: &[Case]) {
    for case in cases {
        let found = findings(check, case);
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, case.expect, "{}: case '{}'", check.id, case.name);
        for f in &found {
            assert!(
                !f.message.is_empty() && !f.fix.is_empty(),
                "{}: case '{}': every finding says what is wrong and how to fix it",
                check.id,
                case.name
            );
            assert_eq!(f.rule, check.id);
        }
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
    let apply = check.apply_default.expect("check has a default");
    for case in cases {
        let class = class_policy(case.policy);
        let mut spec = yaml_json(case.pod);
        let original = spec.clone();
        apply(spec.as_object_mut().expect("pod spec is a map"), &class);
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
        assert!(
            evaluate(check, case.policy, spec, "{}", None).is_empty(),
            "{}: default case '{}' still fails after its default",
            check.id,
            case.name
        );
    }
}
