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

/// A JSON value as CEL; objects as the apply configuration type `type_name`.
fn literal(value: &Value, type_name: &str) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", literal(v, &format!("{type_name}.{k}"))))
                .collect();
            format!("{type_name}{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| literal(v, type_name)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
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

/// The apply configuration that sets `inner` at a dotted path (`Object{spec: Object.spec{...}}`).
fn nested(dotted: &str, inner: &str) -> String {
    let keys: Vec<&str> = dotted.split('.').collect();
    let mut out = inner.to_string();
    for depth in (0..keys.len()).rev() {
        let type_name = format!("Object.{}", keys[..=depth].join("."));
        out = format!("{type_name}{{{out}}}");
        out = format!("{}: {out}", keys[depth]);
    }
    format!("Object{{{out}}}")
}

/// Additions in a tree, as the apply configuration writes them.
#[derive(Default)]
struct Tree {
    fields: BTreeMap<&'static str, Tree>,
    leaf: Option<String>,
}

/// The CEL of one default, as an optional value for `?key:`; `owner` is the CEL of the pod
/// spec or the container.
fn default_value(default: &PodDefault, owner: &str, type_name: &str) -> String {
    let current = chain(owner, &default.path.join("."));
    match &default.rule {
        Rule::Unset(value) => format!(
            "{current}.hasValue() ? optional.none() : optional.of({})",
            literal(value, type_name)
        ),
        Rule::UnsetUnlessPrivileged(value) => format!(
            "({current}.hasValue() || {owner}.?securityContext.?privileged.orValue(false)) \
             ? optional.none() : optional.of({})",
            literal(value, type_name)
        ),
        Rule::UnsetOrEmpty(_) | Rule::Capabilities { .. } => {
            unreachable!("atomic lists are JSON patches")
        }
    }
}

/// Kubernetes refuses apply configurations that write into atomic lists (capabilities,
/// supplementalGroups): those defaults are JSON patches, the others an apply configuration.
fn is_atomic(rule: &Rule) -> bool {
    matches!(rule, Rule::UnsetOrEmpty(_) | Rule::Capabilities { .. })
}

/// JSON patch operations (a CEL list) writing `value` (CEL) at `path` below `owner`, whose
/// JSON pointer is the CEL string `pointer`: one `add` at the first missing parent, as
/// [`crate::defaults::Additions`] writes it.
fn add_at(owner: &str, pointer: &str, path: &[&str], value: &str) -> String {
    let op = |keys: &[&str], value: &str| {
        format!(
            "[JSONPatch{{op: \"add\", path: {pointer} + {}, value: {value}}}]",
            quote(&format!("/{}", keys.join("/")))
        )
    };
    let mut expression = op(path, value);
    for depth in (1..path.len()).rev() {
        let nested_value = path[depth..]
            .iter()
            .rev()
            .fold(value.to_string(), |v, key| {
                format!("{{{}: {v}}}", quote(key))
            });
        expression = format!(
            "!{}.hasValue() ? {} : ({expression})",
            chain(owner, &path[..depth].join(".")),
            op(&path[..depth], &nested_value)
        );
    }
    expression
}

/// The JSON patch operations (a CEL list) of one atomic-list default.
fn atomic_ops(default: &PodDefault, owner: &str, pointer: &str) -> String {
    let current = chain(owner, &default.path.join("."));
    match &default.rule {
        Rule::UnsetOrEmpty(value) => format!(
            "{current}.orValue([]).size() > 0 ? [] : ({})",
            add_at(owner, pointer, default.path, &value.to_string())
        ),
        Rule::Capabilities { names, all_covers } => {
            let have = format!("{current}.orValue([])");
            let bare = "(h.size() > 4 && h.substring(0, 4).upperAscii() == 'CAP_' ? h.substring(4) : h).upperAscii()";
            let all = if *all_covers {
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
            let missing = format!("({})", missing.join(" + "));
            let append = quote(&format!("/{}/-", default.path.join("/")));
            format!(
                "{missing}.size() == 0 ? [] : {current}.hasValue() \
                 ? {missing}.map(n, JSONPatch{{op: \"add\", path: {pointer} + {append}, value: n}}) \
                 : ({})",
                add_at(owner, pointer, default.path, &missing)
            )
        }
        _ => unreachable!("only atomic lists are JSON patches"),
    }
}

/// The JSON patch operations (a CEL list) of a class's atomic-list defaults on a pod.
fn pod_ops(defaults: &[PodDefault]) -> Option<String> {
    let atomic: Vec<&PodDefault> = defaults.iter().filter(|d| is_atomic(&d.rule)).collect();
    if atomic.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = atomic
        .iter()
        .filter(|d| d.scope == Scope::Pod)
        .map(|d| format!("({})", atomic_ops(d, "object.spec", "\"/spec\"")))
        .collect();
    let per_container: Vec<&&PodDefault> = atomic
        .iter()
        .filter(|d| d.scope == Scope::Container)
        .collect();
    if !per_container.is_empty() {
        for list in CONTAINER_LISTS {
            let pointer = format!("\"/spec/{list}/\" + string(i)");
            let ops: Vec<String> = per_container
                .iter()
                .map(|d| format!("({})", atomic_ops(d, "c", &pointer)))
                .collect();
            parts.push(format!(
                "object.spec.?{list}.orValue([]).transformList(i, c, {}).flatten()",
                ops.join(" + ")
            ));
        }
    }
    Some(parts.join(" + "))
}

fn render(tree: &Tree, type_name: &str) -> String {
    let fields: Vec<String> = tree
        .fields
        .iter()
        .map(|(key, child)| match &child.leaf {
            Some(value) => format!("?{key}: {value}"),
            None => {
                let name = format!("{type_name}.{key}");
                format!("{key}: {}", render(child, &name))
            }
        })
        .collect();
    format!("{type_name}{{{}}}", fields.join(", "))
}

fn tree_of<'d>(
    defaults: impl Iterator<Item = &'d PodDefault>,
    owner: &str,
    type_name: &str,
) -> Tree {
    let mut tree = Tree::default();
    for default in defaults {
        let mut node = &mut tree;
        for key in default.path {
            node = node.fields.entry(key).or_default();
        }
        let leaf_type = format!("{type_name}.{}", default.path.join("."));
        node.leaf = Some(default_value(default, owner, &leaf_type));
    }
    tree
}

/// The apply configuration of a pod spec (`Object.spec`) with a class's defaults.
fn pod_spec(defaults: &[PodDefault]) -> String {
    let defaults: Vec<&PodDefault> = defaults.iter().filter(|d| !is_atomic(&d.rule)).collect();
    let pod = tree_of(
        defaults.iter().copied().filter(|d| d.scope == Scope::Pod),
        "object.spec",
        "Object.spec",
    );
    let mut fields: Vec<String> = Vec::new();
    let rendered = render(&pod, "Object.spec");
    let inner = rendered
        .strip_prefix("Object.spec{")
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_default();
    if !inner.is_empty() {
        fields.push(inner.to_string());
    }
    if defaults.iter().any(|d| d.scope == Scope::Container) {
        for list in CONTAINER_LISTS {
            let type_name = format!("Object.spec.{list}");
            let container = tree_of(
                defaults
                    .iter()
                    .copied()
                    .filter(|d| d.scope == Scope::Container),
                "c",
                &type_name,
            );
            let rendered = render(&container, &type_name);
            let body = rendered
                .strip_prefix(&format!("{type_name}{{"))
                .and_then(|s| s.strip_suffix('}'))
                .unwrap_or_default();
            let each = format!("object.spec.{list}.map(c, {type_name}{{name: c.name, {body}}})");
            fields.push(format!(
                "?{list}: object.spec.?{list}.hasValue() ? optional.of({each}) : optional.none()"
            ));
        }
    }
    format!("Object.spec{{{}}}", fields.join(", "))
}

/// One mutation: the identity of one pod spec site of one kind, and for pods the defaults.
/// CEL in the API server has no local bindings, so what the mutation decides is held in
/// variables named after the site (`s<n>...`); variables are evaluated only when used, so a
/// kind's variables cost nothing on the other kinds.
fn site_mutation(
    policy: &Policy,
    layout: &Layout,
    site: &SpecSite,
    n: usize,
    variables: &mut Vec<Value>,
) -> SiteMutation {
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
    let record = format!(
        "{{?{class}: {class} in {l} ? optional.none() : optional.of({cls}), \
          ?{tenant}: ({tenant} in {l} || !{ten}.matches({re})) ? optional.none() : optional.of({ten})}}",
        class = quote(CLASS_LABEL),
        tenant = quote(TENANT_LABEL),
        re = quote(LABEL_VALUE),
    );
    let metadata = format!("labels: {record}");
    let identity_only = nested(site.meta_base, &metadata);
    let body = if layout.kind == "Pod" {
        let mut branches = String::new();
        for class in PodClass::ALL {
            let Some(cp) = policy
                .class(class)
                .filter(|cp| cp.mutate && !cp.defaults.is_empty())
            else {
                continue;
            };
            branches.push_str(&format!(
                "{cls} == {} ? Object{{metadata: Object.metadata{{{metadata}}}, spec: {}}} : ",
                quote(class.as_str()),
                pod_spec(&cp.defaults)
            ));
        }
        format!("{branches}{identity_only}")
    } else {
        identity_only
    };
    let located = format!("{}.hasValue()", chain("object", site.base));
    let mut ops = String::new();
    if layout.kind == "Pod" {
        for class in PodClass::ALL {
            let class_ops = policy
                .class(class)
                .filter(|cp| cp.mutate)
                .and_then(|cp| pod_ops(&cp.defaults));
            if let Some(class_ops) = class_ops {
                ops.push_str(&format!(
                    "{cls} == {} ? ({class_ops}) : ",
                    quote(class.as_str())
                ));
            }
        }
    }
    SiteMutation {
        json_patch: (!ops.is_empty()).then(|| format!("{located} ? ({ops}[]) : []")),
        apply: format!("{located} ? ({body}) : Object{{}}"),
    }
}

/// A site's mutations: the JSON patch of atomic lists (pods only), then the apply
/// configuration of everything else.
struct SiteMutation {
    json_patch: Option<String>,
    apply: String,
}

/// The MutatingAdmissionPolicy `name` for `policy`. Its binding, with the namespaces it
/// applies to, is the chart's: the same selector as the webhooks'.
pub fn generate(policy: &Policy, name: &str) -> Result<MutatingAdmissionPolicy, GenerationError> {
    let mut variables = variables(policy)?;
    let mut rules: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut mutations = Vec::new();
    for (group, kind, resource) in MUTATED {
        rules.entry(group).or_default().push(resource);
        let layout = LAYOUTS
            .iter()
            .find(|l| l.group == *group && l.kind == *kind)
            .expect("every mutated kind has a layout");
        for site in layout.sites {
            let n = mutations.len();
            let is_kind = format!(
                "request.kind.group == {} && request.kind.kind == {}",
                quote(group),
                quote(kind)
            );
            let site_mutation = site_mutation(policy, layout, site, n, &mut variables);
            if let Some(ops) = site_mutation.json_patch {
                mutations.push(json!({
                    "patchType": "JSONPatch",
                    "jsonPatch": {"expression": format!("{is_kind} ? ({ops}) : []")},
                }));
            }
            mutations.push(json!({
                "patchType": "ApplyConfiguration",
                "applyConfiguration": {
                    "expression": format!("{is_kind} ? ({}) : Object{{}}", site_mutation.apply)
                },
            }));
        }
    }
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
            assert!(spec.mutations.unwrap().len() >= 13, "{name}");
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
