//! Pieces several checks share: the JSON helpers defaults are written with, group-id rules and
//! profile (seccomp/AppArmor) matching.

use serde_json::{Map, Value};

use crate::controls::{describe_ranges, in_ranges, GroupRule, GroupStrategy};

/// `map[key]` as an object, created (or replacing a null) when missing.
pub fn object_at<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// `map[key]` as an array, created when missing.
pub fn array_at<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Vec<Value> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("just made an array")
}

pub fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

/// Sets `map[key]` when the pod leaves it unset.
pub fn default_field(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(map, key) {
        map.insert(key.to_string(), value);
    }
}

/// The pod's `securityContext`.
pub fn pod_security(spec: &mut Map<String, Value>) -> &mut Map<String, Value> {
    object_at(spec, "securityContext")
}

/// Calls `f` with each container's and init container's JSON object. Ephemeral containers are
/// never part of a create, so defaults do not touch them.
pub fn for_each_container(
    spec: &mut Map<String, Value>,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    for field in ["containers", "initContainers"] {
        if let Some(Value::Array(list)) = spec.get_mut(field) {
            for container in list.iter_mut().filter_map(Value::as_object_mut) {
                f(container);
            }
        }
    }
}

/// Judges one group id under a MustRunAs / MayRunAs rule; returns the complaint, if any.
pub fn group_complaint(
    rule: &GroupRule,
    value: Option<i64>,
    what: &str,
) -> Option<(String, String)> {
    let ranges = describe_ranges(&rule.ranges);
    match (rule.rule, value) {
        (GroupStrategy::RunAsAny, _) => None,
        (GroupStrategy::MustRunAs, None) => Some((
            format!("{what} is not set; the policy requires one in {ranges}"),
            format!("set {what} to a value in {ranges}"),
        )),
        (_, Some(id)) if !in_ranges(&rule.ranges, id) => Some((
            format!("{what} {id} is outside the allowed range {ranges}"),
            format!("set {what} to a value in {ranges}"),
        )),
        _ => None,
    }
}

/// The default a MustRunAs group rule sets: the first range's minimum, as PSP did.
pub fn group_default(rule: &GroupRule) -> Option<i64> {
    match rule.rule {
        GroupStrategy::MustRunAs => rule.ranges.first().map(|r| r.min),
        _ => None,
    }
}

/// A profile as a pod names it: `RuntimeDefault`, `Unconfined` or `Localhost/<name>`.
pub fn profile_name(kind: &str, localhost: Option<&str>) -> String {
    match kind {
        "Localhost" => format!("Localhost/{}", localhost.unwrap_or("")),
        other => other.to_string(),
    }
}

/// Legacy annotation values (`runtime/default`, `localhost/x`, `unconfined`) as profile names.
pub fn profile_from_annotation(value: &str) -> String {
    match value {
        "runtime/default" | "docker/default" => "RuntimeDefault".to_string(),
        "unconfined" => "Unconfined".to_string(),
        other => match other.strip_prefix("localhost/") {
            Some(name) => format!("Localhost/{name}"),
            None => other.to_string(),
        },
    }
}

pub fn profile_allowed(allowed: &[String], profile: &str) -> bool {
    allowed.iter().any(|pattern| {
        pattern == profile || (pattern == "Localhost/*" && profile.starts_with("Localhost/"))
    })
}

/// Capability names compare without case and without a `CAP_` prefix, as container runtimes
/// accept both.
pub fn capability_eq(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        if s.len() > 4 && s[..4].eq_ignore_ascii_case("CAP_") {
            &s[4..]
        } else {
            s
        }
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

/// `name` matches `pattern`, where a trailing `*` matches any rest (sysctl-style globs).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Judges a pod-level host-namespace flag (`hostPID`, `hostIPC`, `hostNetwork`).
pub fn host_namespace(
    allowed: Option<bool>,
    requested: Option<bool>,
    field: &str,
    pod: &crate::pod::PodSubject<'_>,
    out: &mut super::Findings,
) {
    if allowed == Some(false) && requested == Some(true) {
        out.add(
            pod.path(field),
            format!("the pod shares the host's namespace through {field}"),
            format!("remove {field} from the pod spec"),
        );
    }
}

/// Where a pod or container names its seccomp or AppArmor profile.
pub struct ProfileSite {
    pub profile: String,
    pub path: String,
}

/// Judges profiles for seccomp or AppArmor: every named profile must be allowed, and with
/// `required` each container must end up with one (its own or the pod's).
pub fn judge_profiles<'a>(
    rule: &crate::controls::ProfileRule,
    what: &str,
    field: &str,
    pod_site: Option<ProfileSite>,
    containers: impl Iterator<Item = (crate::pod::ContainerView<'a>, Option<ProfileSite>)>,
    out: &mut super::Findings,
) {
    let allowed = rule.allowed_profiles.join(", ");
    let refuse = |site: &ProfileSite, who: &str, out: &mut super::Findings| {
        out.add(
            site.path.clone(),
            format!(
                "{who} uses {what} profile {}, which is not allowed",
                site.profile
            ),
            format!("use one of: {allowed}"),
        );
    };
    if let Some(site) = &pod_site {
        if !profile_allowed(&rule.allowed_profiles, &site.profile) {
            refuse(site, "the pod", out);
        }
    }
    for (c, site) in containers {
        match site {
            Some(site) => {
                if !profile_allowed(&rule.allowed_profiles, &site.profile) {
                    refuse(&site, &format!("container '{}'", c.name), out);
                }
            }
            None if rule.required && pod_site.is_none() => out.add_for(
                &c,
                &format!("securityContext.{field}"),
                format!("container '{}' names no {what} profile", c.name),
                format!("set securityContext.{field}.type: RuntimeDefault on the pod"),
            ),
            None => {}
        }
    }
}

/// Sets `securityContext.<field>` on the pod to the rule's default profile where unset.
pub fn default_profile(
    spec: &mut Map<String, Value>,
    rule: &crate::controls::ProfileRule,
    field: &str,
) {
    let Some(profile) = &rule.default_profile else {
        return;
    };
    let value = match profile.strip_prefix("Localhost/") {
        Some(name) => serde_json::json!({"type": "Localhost", "localhostProfile": name}),
        None => serde_json::json!({ "type": profile }),
    };
    default_field(pod_security(spec), field, value);
}
