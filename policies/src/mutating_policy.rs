//! The policy's mutation as a MutatingAdmissionPolicy (admissionregistration.k8s.io/v1, GA in
//! Kubernetes 1.36): the API server records the identity hubguard decides and sets the class
//! defaults itself, in CEL, so that a pod create costs one webhook call (`/validate`) instead
//! of two. `/mutate` stays for older clusters; both are generated from the same data (the
//! requester's standing, [`crate::identity::decide`], [`crate::defaults::PodDefault`]), and a
//! test through a real API server holds them to the same pods.
//!
//! What cannot be written in CEL is refused with the field that needs it, so that the caller
//! keeps `/mutate` rather than installing a mutation that differs from it.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingAdmissionPolicy;
use serde_json::{json, Value};

use crate::classify::PodClass;
use crate::defaults::{PodDefault, Rule, Scope, CONTAINER_LISTS};
use crate::identity::{CLASS_LABEL, TENANT_LABEL};
use crate::objects::{Layout, SpecSite, LAYOUTS};
use crate::policy::Policy;

/// The label-value syntax (as [`crate::identity::is_label_value`] checks it).
const LABEL_VALUE: &str = "^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {message}")]
pub struct GenerationError {
    pub path: String,
    pub message: String,
}

/// The kinds `/mutate` is registered for (the chart's MutatingWebhookConfiguration): not
/// ReplicaSets, whose templates the deployment controller compares.
const MUTATED: &[(&str, &str, &str)] = &[
    ("", "Pod", "pods"),
    ("", "ReplicationController", "replicationcontrollers"),
    ("apps", "Deployment", "deployments"),
    ("apps", "StatefulSet", "statefulsets"),
    ("apps", "DaemonSet", "daemonsets"),
    ("batch", "Job", "jobs"),
    ("batch", "CronJob", "cronjobs"),
    ("kubernetes.dask.org", "DaskCluster", "daskclusters"),
    ("kubernetes.dask.org", "DaskWorkerGroup", "daskworkergroups"),
    ("kubernetes.dask.org", "DaskJob", "daskjobs"),
];

fn quote(s: &str) -> String {
    // A JSON string is a valid CEL string literal.
    serde_json::to_string(s).expect("strings serialise")
}

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

/// The tenant a requester pattern gives, in CEL: patterns of the form
/// `^PREFIX(?P<tenant>BODY)$`, whose tenant is what follows the prefix's match.
fn tenant_of(pattern: &str, path: &str) -> Result<String, GenerationError> {
    let refuse = |message: &str| GenerationError {
        path: path.to_string(),
        message: format!(
            "{message}; a MutatingAdmissionPolicy can only read patterns of the form \
             ^PREFIX(?P<tenant>BODY)$ (keep the /mutate webhook for this policy)"
        ),
    };
    let (prefix, rest) = pattern
        .split_once("(?P<tenant>")
        .ok_or_else(|| refuse("no (?P<tenant>...) group"))?;
    let body = rest
        .strip_suffix(")$")
        .ok_or_else(|| refuse("the tenant group does not end the pattern"))?;
    if !prefix.starts_with('^') || prefix.contains('(') || body.contains(['(', ')', '|']) {
        return Err(refuse(
            "the pattern is not anchored at ^, or has other groups",
        ));
    }
    let whole = format!("{prefix}({body})$");
    let u = "request.userInfo.username";
    let tenant = format!("{u}.substring({u}.find({}).size())", quote(prefix));
    Ok(format!(
        "{u}.matches({}) && {tenant}.matches({}) ? {tenant} : ",
        quote(&whole),
        quote(&format!("^{body}$"))
    ))
}

/// The policy-wide variables: who the requester is to the policy.
fn variables(policy: &Policy) -> Result<Vec<Value>, GenerationError> {
    let trust = &policy.document.spec.trust;
    let trusted = format!(
        "request.userInfo.username in {} || request.userInfo.?groups.orValue([]).exists(g, g in {})",
        list(&trust.requesters),
        list(&trust.groups)
    );
    let mut tenant = String::from("variables.trusted ? '' : ");
    for (i, pattern) in policy
        .document
        .spec
        .tenancy
        .requester_patterns
        .iter()
        .enumerate()
    {
        tenant.push_str(&tenant_of(
            pattern,
            &format!("spec.tenancy.requesterPatterns[{i}]"),
        )?);
    }
    tenant.push_str("''");
    Ok(vec![
        json!({"name": "trusted", "expression": trusted}),
        json!({"name": "tenant", "expression": tenant}),
    ])
}

/// `class_from_labels` in CEL, over the labels `l`.
fn claimed_class(l: &str) -> String {
    let comp =
        format!("{l}[?'app.kubernetes.io/component'].orValue({l}[?'component'].orValue(''))");
    format!(
        "({comp} == 'singleuser-server' || {l}[?'component'].orValue('') == 'singleuser-server') ? 'user' \
         : ('dask.org/component' in {l} || 'dask.org/cluster-name' in {l}) ? 'dask' \
         : ({l}.exists(k, k.startsWith('gateway.dask.org/')) && {comp} in ['dask-worker', 'dask-scheduler']) ? 'dask' \
         : {comp} in {} ? 'platform' : 'other'",
        list(crate::classify::PLATFORM_COMPONENTS)
    )
}

/// An optional chain to a dotted path below `root` (`object.spec.?template.?metadata`).
fn chain(root: &str, dotted: &str) -> String {
    let mut out = root.to_string();
    for key in dotted.split('.') {
        out.push_str(&format!(".?{key}"));
    }
    out
}

/// A JSON pointer in CEL: a string expression (a container's index) and the fixed rest.
#[derive(Clone)]
struct Pointer {
    dynamic: Option<String>,
    fixed: String,
}

impl Pointer {
    fn root() -> Self {
        Pointer {
            dynamic: None,
            fixed: String::new(),
        }
    }

    fn of(dynamic: String) -> Self {
        Pointer {
            dynamic: Some(dynamic),
            fixed: String::new(),
        }
    }

    fn join(&self, key: &str) -> Self {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        Pointer {
            dynamic: self.dynamic.clone(),
            fixed: format!("{}/{escaped}", self.fixed),
        }
    }

    fn cel(&self) -> String {
        match (&self.dynamic, self.fixed.is_empty()) {
            (Some(d), true) => d.clone(),
            (Some(d), false) => format!("{d} + {}", quote(&self.fixed)),
            (None, _) => quote(&self.fixed),
        }
    }
}

/// `current` below `key`, as an optional: `.?key` where the key is a CEL identifier.
fn below(current: &str, key: &str) -> String {
    let identifier = key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if identifier {
        format!("{current}.?{key}")
    } else {
        format!("{current}[?{}]", quote(key))
    }
}

/// A value for an optional map entry. CEL in the API server wants a map literal's values of
/// one type; `dyn` lets a default's bool sit beside a profile's map.
fn some(value: &str) -> String {
    format!("optional.of(dyn({value}))")
}

fn add_op(pointer: &str, value: &str) -> String {
    format!("JSONPatch{{op: \"add\", path: {pointer}, value: {value}}}")
}

/// What is written at one place, and when.
enum Write<'d> {
    /// A class default; `owner` is the CEL of the pod spec or the container it belongs to.
    Default(&'d PodDefault, String),
    /// An identity label, written when missing and `valid` (CEL, when given) holds.
    Label {
        value: String,
        valid: Option<String>,
    },
}

impl Write<'_> {
    /// The operations (a CEL list) when the place's parent exists; `current` is the optional
    /// value there.
    fn operations(&self, current: &str, pointer: &Pointer) -> String {
        let at = pointer.cel();
        let add = |value: &str| format!("[{}]", add_op(&at, value));
        match self {
            Write::Label { value, valid } => {
                let invalid = valid
                    .as_ref()
                    .map(|v| format!(" || !{v}"))
                    .unwrap_or_default();
                format!("{current}.hasValue(){invalid} ? [] : {}", add(value))
            }
            Write::Default(default, owner) => match &default.rule {
                Rule::Unset(value) => {
                    format!("{current}.hasValue() ? [] : {}", add(&value.to_string()))
                }
                Rule::UnsetOrEmpty(value) => format!(
                    "{current}.orValue([]).size() > 0 ? [] : {}",
                    add(&value.to_string())
                ),
                Rule::UnsetUnlessPrivileged(value) => format!(
                    "{current}.hasValue() || {owner}.?securityContext.?privileged.orValue(false) \
                     ? [] : {}",
                    add(&value.to_string())
                ),
                Rule::Capabilities { names, all_covers } => {
                    // `[x].map(m, ...)[0]`: the missing names are worked out once.
                    let missing = missing_capabilities(current, names, *all_covers);
                    let append = add_op(&pointer.join("-").cel(), "n");
                    format!(
                        "[{missing}].map(m, m.size() == 0 ? [] : {current}.hasValue() \
                         ? m.map(n, {append}) : {})[0]",
                        add("m")
                    )
                }
            },
        }
    }

    /// The value written (a CEL optional) when the place's parent is missing.
    fn when_missing(&self) -> String {
        match self {
            Write::Label { value, valid } => match valid {
                Some(valid) => format!("{valid} ? {} : optional.none()", some(value)),
                None => some(value),
            },
            Write::Default(default, owner) => match &default.rule {
                Rule::Unset(value) | Rule::UnsetOrEmpty(value) => some(&value.to_string()),
                Rule::UnsetUnlessPrivileged(value) => format!(
                    "{owner}.?securityContext.?privileged.orValue(false) \
                     ? optional.none() : {}",
                    some(&value.to_string())
                ),
                Rule::Capabilities { names, .. } if names.is_empty() => "optional.none()".into(),
                Rule::Capabilities { names, .. } => some(&list(names)),
            },
        }
    }
}

/// The capability names (a CEL list) that the list at `current` lacks, compared as
/// [`crate::checks::support::capability_eq`] does.
fn missing_capabilities(current: &str, names: &[String], all_covers: bool) -> String {
    let have = format!("{current}.orValue([])");
    let bare = "(h.size() > 4 && h.substring(0, 4).upperAscii() == 'CAP_' ? h.substring(4) : h).upperAscii()";
    let all = if all_covers {
        " || h.upperAscii() == 'ALL'"
    } else {
        ""
    };
    let missing: Vec<String> = names
        .iter()
        .map(|name| {
            let upper = crate::checks::support::bare_capability(name).to_ascii_uppercase();
            format!(
                "({have}.exists(h, {bare} == {}{all}) ? [] : [{}])",
                quote(&upper),
                quote(name)
            )
        })
        .collect();
    format!("({})", missing.join(" + "))
}

/// What the mutation writes below one place, by key: the JSON patch is one `add` at the first
/// missing place, as [`crate::defaults::Additions`] writes it, and everything is decided
/// against the object as it arrives (the operations of one patch do not see each other).
#[derive(Default)]
struct Place<'d> {
    below: BTreeMap<String, Place<'d>>,
    write: Option<Write<'d>>,
}

impl<'d> Place<'d> {
    fn insert(&mut self, path: impl IntoIterator<Item = String>, write: Write<'d>) {
        let mut place = self;
        for key in path {
            place = place.below.entry(key).or_default();
        }
        place.write = Some(write);
    }

    /// The operations (a CEL list) below this place, which exists and is `current`.
    fn operations_inside(&self, current: &str, pointer: &Pointer) -> Vec<String> {
        self.below
            .iter()
            .map(|(key, place)| {
                format!(
                    "({})",
                    place.operations(&below(current, key), &pointer.join(key))
                )
            })
            .collect()
    }

    /// The operations (a CEL list) at this place, whose parent exists; `current` is the
    /// optional value here.
    fn operations(&self, current: &str, pointer: &Pointer) -> String {
        if let Some(write) = &self.write {
            return write.operations(current, pointer);
        }
        let inside = self.operations_inside(&format!("{current}.value()"), pointer);
        format!(
            "{current}.hasValue() ? ({}) : [{}].filter(m, size(m) > 0).map(m, {})",
            inside.join(" + "),
            self.when_missing(),
            add_op(&pointer.cel(), "m")
        )
    }

    /// The value written here (a CEL map) when this place is missing.
    fn when_missing(&self) -> String {
        let entries: Vec<String> = self
            .below
            .iter()
            .map(|(key, place)| {
                let value = match &place.write {
                    Some(write) => write.when_missing(),
                    None => some(&place.when_missing()),
                };
                format!("?{}: {value}", quote(key))
            })
            .collect();
        format!("{{{}}}", entries.join(", "))
    }
}

/// The operations (a CEL list) of a class's defaults on a pod: the pod spec's, then each
/// container's.
fn pod_defaults(defaults: &[PodDefault]) -> Vec<String> {
    let mut spec = Place::default();
    for default in defaults.iter().filter(|d| d.scope == Scope::Pod) {
        spec.insert(
            default.path.iter().map(|k| k.to_string()),
            Write::Default(default, "object.spec".into()),
        );
    }
    let mut ops = spec.operations_inside("object.spec", &Pointer::root().join("spec"));
    let mut container = Place::default();
    for default in defaults.iter().filter(|d| d.scope == Scope::Container) {
        container.insert(
            default.path.iter().map(|k| k.to_string()),
            Write::Default(default, "c".into()),
        );
    }
    if !container.below.is_empty() {
        for list in CONTAINER_LISTS {
            let pointer = Pointer::of(format!("{} + string(i)", quote(&format!("/spec/{list}/"))));
            let inside = container.operations_inside("c", &pointer);
            ops.push(format!(
                "object.spec.?{list}.orValue([]).transformList(i, c, {}).flatten()",
                inside.join(" + ")
            ));
        }
    }
    ops
}

/// The operations of one pod spec site of one kind: the identity, and for pods the defaults.
/// CEL in the API server has no local bindings, so what the mutation decides is held in
/// variables named after the site (`s<n>...`); variables are evaluated only when used, so a
/// kind's variables cost nothing on the other kinds.
fn site_operations(
    policy: &Policy,
    layout: &Layout,
    site: &SpecSite,
    n: usize,
    variables: &mut Vec<Value>,
) -> String {
    let (l, claimed, cls, ten) = (
        format!("variables.s{n}Labels"),
        format!("variables.s{n}Claimed"),
        format!("variables.s{n}Class"),
        format!("variables.s{n}Tenant"),
    );
    let labels = format!(
        "{}.orValue({{}})",
        chain("object", &format!("{}.labels", site.meta_base))
    );
    let claimed_expression = match layout.class {
        Some(class) => quote(class.as_str()),
        None => claimed_class(&l),
    };
    let classes = list(PodClass::ALL.map(PodClass::as_str));
    let recorded_class = format!("{l}[?{}].orValue('') in {classes}", quote(CLASS_LABEL));
    let tenant_label = |labels: &str| {
        let mut out = String::new();
        for key in &policy.tenant_labels {
            out.push_str(&format!(
                "{} in {labels} ? {labels}[{}] : ",
                quote(key),
                quote(key)
            ));
        }
        out
    };
    let trusted_tenant = format!(
        "{}{}''",
        tenant_label(&l),
        tenant_label("object.metadata.?labels.orValue({})")
    );
    let class_expression = format!(
        "variables.trusted ? ({recorded_class} ? {l}[{}] : {claimed}) \
         : ({claimed} == 'dask' ? 'dask' : (variables.tenant != '' || {claimed} == 'platform') ? 'user' : {claimed})",
        quote(CLASS_LABEL)
    );
    let tenant_expression = format!(
        "variables.trusted ? ({recorded_class} ? '' : {trusted_tenant}) : variables.tenant"
    );
    for (name, expression) in [
        ("Labels", labels),
        ("Claimed", claimed_expression),
        ("Class", class_expression),
        ("Tenant", tenant_expression),
    ] {
        variables.push(json!({"name": format!("s{n}{name}"), "expression": expression}));
    }
    // Where the spec and the labels part, the object is known to exist: the site is located.
    let base: Vec<&str> = site.base.split('.').collect();
    let meta: Vec<&str> = site.meta_base.split('.').collect();
    let shared = base.iter().zip(&meta).take_while(|(a, b)| a == b).count();
    let (mut known, mut known_pointer) = ("object".to_string(), Pointer::root());
    for key in &meta[..shared] {
        known.push_str(&format!(".{key}"));
        known_pointer = known_pointer.join(key);
    }
    let mut identity = Place::default();
    let label_path = |key: &str| {
        meta[shared..]
            .iter()
            .map(|k| k.to_string())
            .chain(["labels".to_string(), key.into()])
    };
    identity.insert(
        label_path(CLASS_LABEL),
        Write::Label {
            value: cls.clone(),
            valid: None,
        },
    );
    identity.insert(
        label_path(TENANT_LABEL),
        Write::Label {
            value: ten.clone(),
            valid: Some(format!("{ten}.matches({})", quote(LABEL_VALUE))),
        },
    );
    let identity_ops = identity
        .operations_inside(&known, &known_pointer)
        .join(" + ");
    let mut defaults = String::new();
    if layout.kind == "Pod" {
        for class in PodClass::ALL {
            let Some(cp) = policy
                .class(class)
                .filter(|cp| cp.mutate && !cp.defaults.is_empty())
            else {
                continue;
            };
            defaults.push_str(&format!(
                "{cls} == {} ? ({}) : ",
                quote(class.as_str()),
                pod_defaults(&cp.defaults).join(" + ")
            ));
        }
    }
    // The identity is written under the metadata, the defaults under the spec: apart.
    let body = if defaults.is_empty() {
        identity_ops
    } else {
        format!("{identity_ops} + ({defaults}[])")
    };
    format!("{}.hasValue() ? ({body}) : []", chain("object", site.base))
}

/// The MutatingAdmissionPolicy `name` for `policy`. Its binding, with the namespaces it
/// applies to, is the chart's: the same selector as the webhooks'.
pub fn generate(policy: &Policy, name: &str) -> Result<MutatingAdmissionPolicy, GenerationError> {
    let mut variables = variables(policy)?;
    let mut rules: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut by_kind = String::new();
    let mut sites = 0;
    for (group, kind, resource) in MUTATED {
        rules.entry(group).or_default().push(resource);
        let layout = LAYOUTS
            .iter()
            .find(|l| l.group == *group && l.kind == *kind)
            .expect("every mutated kind has a layout");
        let mut operations = Vec::new();
        for site in layout.sites {
            operations.push(format!(
                "({})",
                site_operations(policy, layout, site, sites, &mut variables)
            ));
            sites += 1;
        }
        by_kind.push_str(&format!(
            "request.kind.group == {} && request.kind.kind == {} ? ({}) : ",
            quote(group),
            quote(kind),
            operations.join(" + ")
        ));
    }
    // One mutation, and a JSON patch: in kube-apiserver 1.37 every mutation costs a create
    // about as much as a webhook call, even one that changes nothing, and an apply
    // configuration more (structured-merge-diff's typed conversion of the whole pod).
    let mutations = vec![json!({
        "patchType": "JSONPatch",
        "jsonPatch": {"expression": format!("{by_kind}[]")},
    })];
    let resource_rules: Vec<Value> = rules
        .iter()
        .map(|(group, resources)| {
            json!({
                "apiGroups": [group],
                "apiVersions": [if group.is_empty() || *group == "apps" || *group == "batch" { "v1" } else { "*" }],
                "operations": ["CREATE"],
                "resources": resources,
                "scope": "Namespaced",
            })
        })
        .collect();
    let namespaces = &policy.document.spec.namespaces;
    let mut governed = format!("!(request.namespace in {})", list(&namespaces.exclude));
    if !namespaces.include.is_empty() {
        governed.push_str(&format!(
            " && request.namespace in {}",
            list(&namespaces.include)
        ));
    }
    let document = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "hubguard"},
            "annotations": {"hubguard.dev/policy": policy.name},
        },
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {"resourceRules": resource_rules},
            "matchConditions": [{"name": "governed-namespace", "expression": governed}],
            "variables": variables,
            "mutations": mutations,
        },
    });
    Ok(serde_json::from_value(document).expect("the generated policy has the API's shape"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_generates() {
        for (name, text) in crate::PRESETS {
            let policy = Policy::from_yaml(text, name).unwrap();
            let generated = generate(&policy, "hubguard").unwrap_or_else(|e| panic!("{name}: {e}"));
            let spec = generated.spec.unwrap();
            assert_eq!(spec.mutations.unwrap().len(), 1, "{name}");
        }
    }

    #[test]
    fn tenant_pattern_cases() {
        let path = "spec.tenancy.requesterPatterns[0]";
        assert!(tenant_of(
            "^system:serviceaccount:[^:]+:user-(?P<tenant>[a-z0-9-]+)$",
            path
        )
        .is_ok());
        for refused in [
            "user-(?P<tenant>[a-z]+)$",
            "^user-(?P<tenant>[a-z]+)-x$",
            "^(a|b)-(?P<tenant>[a-z]+)$",
            "^user-(?P<tenant>[a-z]+|x)$",
            "^user-[a-z]+$",
        ] {
            let error = tenant_of(refused, path).unwrap_err();
            assert_eq!(error.path, path, "{refused}");
        }
    }
}
