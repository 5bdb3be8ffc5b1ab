//! The PSP-style defaults of a class, as data. Each rule says what it defaults
//! ([`crate::checks::Check::defaults`]); this module turns that into the JSON patch `/mutate`
//! returns, and [`crate::mutating_policy`] into the CEL of a MutatingAdmissionPolicy, so the
//! two paths cannot set different things.
//!
//! The patch is computed from the object as it is, without copying it: the additions are
//! gathered into a tree first, so that several defaults under one missing parent (fsGroup and
//! seccompProfile under an absent `securityContext`) become one `add`.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;

use crate::checks::support::capability_eq;

/// Where a default applies: the pod spec, or each container and init container (ephemeral
/// containers are never part of a create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Pod,
    Container,
}

/// When a default is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// When the field is unset (missing or null).
    Unset(Value),
    /// When the field is unset or an empty list.
    UnsetOrEmpty(Value),
    /// When unset, on containers that are not privileged.
    UnsetUnlessPrivileged(Value),
    /// The capability names a list lacks are appended (compared as capabilities: case and a
    /// `CAP_` prefix do not matter); with `all_covers`, `ALL` in the list covers every name.
    Capabilities {
        names: Vec<String>,
        all_covers: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodDefault {
    pub scope: Scope,
    /// The field, as keys below the pod spec or the container.
    pub path: &'static [&'static str],
    pub rule: Rule,
}

impl PodDefault {
    pub fn pod(path: &'static [&'static str], rule: Rule) -> Self {
        PodDefault {
            scope: Scope::Pod,
            path,
            rule,
        }
    }

    pub fn container(path: &'static [&'static str], rule: Rule) -> Self {
        PodDefault {
            scope: Scope::Container,
            path,
            rule,
        }
    }
}

/// The container lists defaults of [`Scope::Container`] apply to.
pub const CONTAINER_LISTS: [&str; 2] = ["containers", "initContainers"];

/// Additions to an object, before they become patch operations.
#[derive(Debug, Default)]
pub struct Additions {
    root: Node,
}

#[derive(Debug)]
enum Node {
    /// The value to write at this place (added, or replacing what is there).
    Set(Value),
    /// Items to append to the list at this place (which is created when missing).
    Append(Vec<Value>),
    /// Additions below this place, by key (or list index).
    Below(BTreeMap<String, Node>),
}

impl Default for Node {
    fn default() -> Self {
        Node::Below(BTreeMap::new())
    }
}

fn get<'v>(value: Option<&'v Value>, key: &str) -> Option<&'v Value> {
    match value? {
        Value::Object(map) => map.get(key),
        Value::Array(list) => key.parse::<usize>().ok().and_then(|i| list.get(i)),
        _ => None,
    }
    .filter(|v| !v.is_null())
}

fn at<'v>(value: Option<&'v Value>, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value?, |v, key| get(Some(v), key))
}

impl Additions {
    fn insert(&mut self, path: Vec<String>, leaf: Node) {
        let mut node = &mut self.root;
        for key in path {
            if !matches!(node, Node::Below(_)) {
                // A value is already written here; nothing is added inside it.
                return;
            }
            let Node::Below(children) = node else {
                unreachable!()
            };
            node = children.entry(key).or_default();
        }
        *node = leaf;
    }

    /// Writes `value` at `path` (keys from the object's root) where it is missing.
    pub fn set_if_missing(&mut self, object: &Value, path: Vec<String>, value: Value) {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        if at(Some(object), &keys).is_none() {
            self.insert(path, Node::Set(value));
        }
    }

    /// Adds `defaults` for the pod spec at `base` (keys from the object's root).
    pub fn pod_defaults(&mut self, object: &Value, base: &[&str], defaults: &[PodDefault]) {
        let spec = at(Some(object), base);
        let prefix = |rest: &[&str]| -> Vec<String> {
            base.iter().chain(rest).map(|s| s.to_string()).collect()
        };
        for default in defaults {
            match default.scope {
                Scope::Pod => {
                    if let Some(leaf) = leaf_for(spec, None, default) {
                        self.insert(prefix(default.path), leaf);
                    }
                }
                Scope::Container => {
                    for list in CONTAINER_LISTS {
                        let Some(Value::Array(containers)) = get(spec, list) else {
                            continue;
                        };
                        for (i, container) in containers.iter().enumerate() {
                            if !container.is_object() {
                                continue;
                            }
                            if let Some(leaf) = leaf_for(Some(container), Some(container), default)
                            {
                                let index = i.to_string();
                                let mut path = prefix(&[list, &index]);
                                path.extend(default.path.iter().map(|s| s.to_string()));
                                self.insert(path, leaf);
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(&self.root, Node::Below(c) if c.is_empty())
    }

    /// The additions as JSON patch operations against `object`.
    pub fn operations(self, object: &Value) -> Vec<PatchOperation> {
        let mut ops = Vec::new();
        emit(self.root, Some(object), &mut PointerBuf::root(), &mut ops);
        ops
    }
}

/// What `default` adds to `owner` (the pod spec or one container), if anything.
fn leaf_for(
    owner: Option<&Value>,
    container: Option<&Value>,
    default: &PodDefault,
) -> Option<Node> {
    let current = at(owner, default.path);
    match &default.rule {
        Rule::Unset(value) => current.is_none().then(|| Node::Set(value.clone())),
        Rule::UnsetOrEmpty(value) => {
            let empty = current.is_none_or(|v| v.as_array().is_some_and(Vec::is_empty));
            empty.then(|| Node::Set(value.clone()))
        }
        Rule::UnsetUnlessPrivileged(value) => {
            let privileged = at(container, &["securityContext", "privileged"])
                .and_then(Value::as_bool)
                == Some(true);
            (current.is_none() && !privileged).then(|| Node::Set(value.clone()))
        }
        Rule::Capabilities { names, all_covers } => {
            let have: Vec<&str> = current
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let covered = |name: &str| {
                have.iter().any(|c| {
                    capability_eq(c, name) || (*all_covers && c.eq_ignore_ascii_case("ALL"))
                })
            };
            let missing: Vec<Value> = names
                .iter()
                .filter(|n| !covered(n))
                .map(|n| Value::String(n.clone()))
                .collect();
            match (missing.is_empty(), current.is_some_and(Value::is_array)) {
                (true, _) => None,
                (false, true) => Some(Node::Append(missing)),
                (false, false) => Some(Node::Set(Value::Array(missing))),
            }
        }
    }
}

fn materialise(node: Node) -> Value {
    match node {
        Node::Set(value) => value,
        Node::Append(items) => Value::Array(items),
        Node::Below(children) => Value::Object(
            children
                .into_iter()
                .map(|(k, n)| (k, materialise(n)))
                .collect(),
        ),
    }
}

fn add(path: &PointerBuf, value: Value, ops: &mut Vec<PatchOperation>) {
    ops.push(PatchOperation::Add(AddOperation {
        path: path.clone(),
        value,
    }));
}

fn emit(node: Node, current: Option<&Value>, path: &mut PointerBuf, ops: &mut Vec<PatchOperation>) {
    match node {
        Node::Set(value) => add(path, value, ops),
        Node::Append(items) => match current {
            Some(Value::Array(_)) => {
                path.push_back("-");
                for item in items {
                    add(path, item, ops);
                }
                path.pop_back();
            }
            _ => add(path, Value::Array(items), ops),
        },
        Node::Below(children) => {
            let container = current.filter(|v| v.is_object() || v.is_array());
            if container.is_none() {
                if !children.is_empty() {
                    add(path, materialise(Node::Below(children)), ops);
                }
                return;
            }
            for (key, child) in children {
                path.push_back(key.as_str());
                emit(child, get(container, &key), path, ops);
                path.pop_back();
            }
        }
    }
}

/// A copy of the pod spec with `defaults` applied (workloads are judged as the pods they
/// will create).
pub fn applied(spec: &Value, defaults: &[PodDefault]) -> Value {
    let mut additions = Additions::default();
    additions.pod_defaults(spec, &[], defaults);
    let mut copy = spec.clone();
    if !additions.is_empty() {
        let ops = additions.operations(spec);
        // The operations were made against this very value: they apply.
        let _ = json_patch::patch(&mut copy, &ops);
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(object: Value, defaults: &[PodDefault]) -> Value {
        let mut additions = Additions::default();
        additions.pod_defaults(&object, &["spec"], defaults);
        serde_json::to_value(additions.operations(&object)).unwrap()
    }

    #[test]
    fn patch_cases() {
        let unset = |v: Value| Rule::Unset(v);
        let fs = PodDefault::pod(&["securityContext", "fsGroup"], unset(json!(100)));
        let seccomp = PodDefault::pod(
            &["securityContext", "seccompProfile"],
            unset(json!({"type": "RuntimeDefault"})),
        );
        let ape = PodDefault::container(
            &["securityContext", "allowPrivilegeEscalation"],
            Rule::UnsetUnlessPrivileged(json!(false)),
        );
        let drop = PodDefault::container(
            &["securityContext", "capabilities", "drop"],
            Rule::Capabilities {
                names: vec!["ALL".into()],
                all_covers: true,
            },
        );
        let groups = PodDefault::pod(
            &["securityContext", "supplementalGroups"],
            Rule::UnsetOrEmpty(json!([100])),
        );
        let cases = [
            (
                "two defaults under one missing parent are one add",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                vec![fs.clone(), seccomp.clone()],
                json!([{"op": "add", "path": "/spec/securityContext",
                        "value": {"fsGroup": 100, "seccompProfile": {"type": "RuntimeDefault"}}}]),
            ),
            (
                "a set field is left alone",
                json!({"spec": {"securityContext": {"fsGroup": 0}, "containers": []}}),
                vec![fs.clone(), seccomp],
                json!([{"op": "add", "path": "/spec/securityContext/seccompProfile",
                        "value": {"type": "RuntimeDefault"}}]),
            ),
            (
                "containers by index; privileged ones keep escalation",
                json!({"spec": {"containers": [{"name": "a"},
                    {"name": "b", "securityContext": {"privileged": true}}]}}),
                vec![ape],
                json!([{"op": "add", "path": "/spec/containers/0/securityContext",
                        "value": {"allowPrivilegeEscalation": false}}]),
            ),
            (
                "capabilities appended to an existing list; ALL covers",
                json!({"spec": {"containers": [
                    {"name": "a", "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
                    {"name": "b", "securityContext": {"capabilities": {"drop": ["all"]}}}],
                    "initContainers": [{"name": "i"}]}}),
                vec![drop],
                json!([
                    {"op": "add", "path": "/spec/containers/0/securityContext/capabilities/drop/-", "value": "ALL"},
                    {"op": "add", "path": "/spec/initContainers/0/securityContext", "value": {"capabilities": {"drop": ["ALL"]}}}]),
            ),
            (
                "an empty list is replaced",
                json!({"spec": {"securityContext": {"supplementalGroups": []}, "containers": []}}),
                vec![groups],
                json!([{"op": "add", "path": "/spec/securityContext/supplementalGroups", "value": [100]}]),
            ),
            (
                "nothing to add",
                json!({"spec": {"securityContext": {"fsGroup": 5}, "containers": []}}),
                vec![fs],
                json!([]),
            ),
        ];
        for (name, object, defaults, want) in cases {
            assert_eq!(ops(object, &defaults), want, "{name}");
        }
    }

    #[test]
    fn labels_under_a_missing_parent() {
        let object = json!({"spec": {"template": {"spec": {}}}});
        let mut additions = Additions::default();
        for (key, value) in [
            ("hubguard.dev/class", "user"),
            ("hubguard.dev/tenant", "alice"),
        ] {
            additions.set_if_missing(
                &object,
                ["spec", "template", "metadata", "labels", key]
                    .map(String::from)
                    .to_vec(),
                json!(value),
            );
        }
        assert_eq!(
            serde_json::to_value(additions.operations(&object)).unwrap(),
            json!([{"op": "add", "path": "/spec/template/metadata",
                    "value": {"labels": {"hubguard.dev/class": "user", "hubguard.dev/tenant": "alice"}}}])
        );
    }
}
