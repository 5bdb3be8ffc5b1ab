//! Pieces several checks share: group-id rules, capability names and profile (seccomp/AppArmor)
//! matching and defaults.

use crate::controls::{describe_ranges, in_ranges, GroupRule, GroupStrategy, IdRange, ProfileRule};
use crate::validate::FieldErrors;

/// Judges one group id under a MustRunAs / MayRunAs rule; returns the complaint, if any.
pub fn group_complaint(
    rule: &GroupRule,
    value: Option<i64>,
    what: &str,
) -> Option<(String, String)> {
    let ranges = || describe_ranges(&rule.ranges);
    match (rule.rule, value) {
        (GroupStrategy::RunAsAny, _) => None,
        (GroupStrategy::MustRunAs, None) => Some((
            format!("{what} is not set; the policy requires one in {}", ranges()),
            format!("set {what} to a value in {}", ranges()),
        )),
        (_, Some(id)) if !in_ranges(&rule.ranges, id) => Some((
            format!("{what} {id} is outside the allowed range {}", ranges()),
            format!("set {what} to a value in {}", ranges()),
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

/// A profile as a pod names it: the type (`RuntimeDefault`, `Unconfined`, `Localhost`) and,
/// for `Localhost`, the profile's name. Borrowed from the pod: nothing is allocated unless a
/// finding is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile<'a> {
    pub kind: &'a str,
    pub localhost: Option<&'a str>,
}

impl<'a> Profile<'a> {
    /// A legacy annotation value (`runtime/default`, `localhost/x`, `unconfined`).
    pub fn from_annotation(value: &'a str) -> Self {
        match value {
            "runtime/default" | "docker/default" => Profile {
                kind: "RuntimeDefault",
                localhost: None,
            },
            "unconfined" => Profile {
                kind: "Unconfined",
                localhost: None,
            },
            other => match other.strip_prefix("localhost/") {
                Some(name) => Profile {
                    kind: "Localhost",
                    localhost: Some(name),
                },
                None => Profile {
                    kind: other,
                    localhost: None,
                },
            },
        }
    }

    pub fn name(&self) -> String {
        match self.kind {
            "Localhost" => format!("Localhost/{}", self.localhost.unwrap_or("")),
            other => other.to_string(),
        }
    }

    /// Whether `pattern` (`RuntimeDefault`, `Unconfined`, `Localhost/*`, `Localhost/<name>`)
    /// covers this profile.
    pub fn matches(&self, pattern: &str) -> bool {
        match pattern.strip_prefix("Localhost/") {
            Some("*") => self.kind == "Localhost",
            Some(name) => self.kind == "Localhost" && self.localhost == Some(name),
            None => self.kind == pattern,
        }
    }
}

/// Whether a profile written as a policy names it (`Localhost/<name>` or a type) is covered by
/// the allowed list.
pub fn profile_allowed(allowed: &[String], profile: &str) -> bool {
    let parsed = match profile.strip_prefix("Localhost/") {
        Some(name) => Profile {
            kind: "Localhost",
            localhost: Some(name),
        },
        None => Profile {
            kind: profile,
            localhost: None,
        },
    };
    allowed.iter().any(|p| parsed.matches(p) || p == profile)
}

/// Capability names compare without case and without a `CAP_` prefix, as container runtimes
/// accept both.
pub fn capability_eq(a: &str, b: &str) -> bool {
    bare_capability(a).eq_ignore_ascii_case(bare_capability(b))
}

/// A capability name without its `CAP_` prefix.
pub fn bare_capability(s: &str) -> &str {
    if s.len() > 4 && s[..4].eq_ignore_ascii_case("CAP_") {
        &s[4..]
    } else {
        s
    }
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
pub enum Site<'a> {
    /// `securityContext.<field>.type` of the pod.
    Pod,
    /// `securityContext.<field>.type` of the container.
    Container,
    /// A legacy annotation with this key.
    Annotation(&'a str),
}

pub struct ProfileSite<'a> {
    pub profile: Profile<'a>,
    pub site: Site<'a>,
}

impl<'a> ProfileSite<'a> {
    /// A profile named by a `securityContext` field (`type`, `localhostProfile`).
    pub fn field(kind: &'a str, localhost: Option<&'a str>, site: Site<'a>) -> Self {
        ProfileSite {
            profile: Profile { kind, localhost },
            site,
        }
    }

    pub fn annotation(key: &'a str, value: &'a str) -> Self {
        ProfileSite {
            profile: Profile::from_annotation(value),
            site: Site::Annotation(key),
        }
    }

    /// A container's profile from its per-container annotation `<prefix><container name>`.
    pub fn container_annotation(
        annotations: crate::classify::StringMap<'a>,
        prefix: &str,
        container: &str,
    ) -> Option<Self> {
        let (key, value) = annotations.get_prefixed(prefix, container)?;
        Some(ProfileSite::annotation(key, value))
    }
}

/// Judges profiles for seccomp or AppArmor: every named profile must be allowed, and with
/// `required` each container must end up with one (its own or the pod's).
pub fn judge_profiles<'a>(
    rule: &crate::controls::ProfileRule,
    what: &str,
    field: &str,
    pod: &crate::pod::PodSubject<'a>,
    pod_site: Option<ProfileSite<'a>>,
    containers: impl Iterator<Item = (crate::pod::ContainerView<'a>, Option<ProfileSite<'a>>)>,
    out: &mut super::Findings,
) {
    let allowed = |p: &Profile<'_>| {
        rule.allowed_profiles
            .iter()
            .any(|pattern| p.matches(pattern))
    };
    let refuse = |site: &ProfileSite<'_>,
                  container: Option<&crate::pod::ContainerView<'_>>,
                  out: &mut super::Findings| {
        let who = container.map_or("the pod".to_string(), |c| format!("container '{}'", c.name));
        let message = format!(
            "{who} uses {what} profile {}, which is not allowed",
            site.profile.name()
        );
        let fix = format!("use one of: {}", rule.allowed_profiles.join(", "));
        match (&site.site, container) {
            (Site::Annotation(key), _) => out.add(
                pod.metadata_path(&format!("annotations[{key}]")),
                message,
                fix,
            ),
            (Site::Container, Some(c)) => {
                out.add_for(c, &format!("securityContext.{field}.type"), message, fix)
            }
            _ => out.add(
                pod.path(&format!("securityContext.{field}.type")),
                message,
                fix,
            ),
        }
    };
    if let Some(site) = &pod_site {
        if !allowed(&site.profile) {
            refuse(site, None, out);
        }
    }
    for (c, site) in containers {
        match site {
            Some(site) if !allowed(&site.profile) => refuse(&site, Some(&c), out),
            Some(_) => {}
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

/// The rule's default profile, written at `path` of the pod where unset.
pub fn default_profile(
    rule: &crate::controls::ProfileRule,
    path: &'static [&'static str],
) -> Option<crate::defaults::PodDefault> {
    let profile = rule.default_profile.as_ref()?;
    let value = match profile.strip_prefix("Localhost/") {
        Some(name) => serde_json::json!({"type": "Localhost", "localhostProfile": name}),
        None => serde_json::json!({ "type": profile }),
    };
    Some(crate::defaults::PodDefault::pod(
        path,
        crate::defaults::Rule::Unset(value),
    ))
}

/// The placeholder a policy writes for the pod's tenant in a name, e.g. `user-{tenant}`.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

/// Whether `name` is the one `pattern` names for `tenant`. A pattern with the placeholder names
/// nothing for a pod of no tenant.
pub fn names_for_tenant(pattern: &str, name: &str, tenant: Option<&str>) -> bool {
    match pattern.split_once(TENANT_PLACEHOLDER) {
        None => pattern == name,
        Some((before, after)) => tenant.is_some_and(|t| {
            name.len() == before.len() + t.len() + after.len()
                && name.starts_with(before)
                && name.ends_with(after)
                && &name[before.len()..name.len() - after.len()] == t
        }),
    }
}

/// The names a list of patterns gives for `tenant`, for fixes.
pub fn names_listed(patterns: &[String], tenant: Option<&str>) -> String {
    let names: Vec<String> = patterns
        .iter()
        .filter_map(|p| match (p.contains(TENANT_PLACEHOLDER), tenant) {
            (false, _) => Some(p.clone()),
            (true, Some(t)) => Some(p.replace(TENANT_PLACEHOLDER, t)),
            (true, None) => None,
        })
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Refuses a name pattern with more than one placeholder or stray braces.
pub fn validate_name_patterns(
    patterns: &[String],
    path: &str,
    errs: &mut crate::validate::FieldErrors,
) {
    for (i, p) in patterns.iter().enumerate() {
        let rest = p.replacen(TENANT_PLACEHOLDER, "", 1);
        if rest.contains('{') || rest.contains('}') || p.is_empty() {
            errs.push(
                format!("{path}[{i}]"),
                format!("'{p}' is not a name, or a name with one {TENANT_PLACEHOLDER}"),
            );
        }
    }
}

/// Refuses ranges that are upside down or outside `bounds`.
pub fn validate_ranges(ranges: &[IdRange], path: &str, bounds: (i64, i64), errs: &mut FieldErrors) {
    for (i, r) in ranges.iter().enumerate() {
        if r.min > r.max {
            errs.push(
                format!("{path}[{i}]"),
                format!("min {} is above max {}", r.min, r.max),
            );
        }
        if r.min < bounds.0 || r.max > bounds.1 {
            errs.push(
                format!("{path}[{i}]"),
                format!("must lie within {}-{}", bounds.0, bounds.1),
            );
        }
    }
}

/// User and group ids: what Linux accepts.
pub const ID_BOUNDS: (i64, i64) = (0, u32::MAX as i64);

/// A group rule (runAsGroup, supplementalGroups, fsGroup) that can be enforced.
pub fn validate_group(rule: &Option<GroupRule>, path: &str, errs: &mut FieldErrors) {
    if let Some(rule) = rule {
        if rule.rule != GroupStrategy::RunAsAny && rule.ranges.is_empty() {
            errs.push(
                format!("{path}.ranges"),
                format!("{:?} needs at least one range", rule.rule),
            );
        }
        validate_ranges(&rule.ranges, &format!("{path}.ranges"), ID_BOUNDS, errs);
    }
}

/// A profile rule (seccomp, AppArmor) naming real profiles, its default among them.
pub fn validate_profiles(rule: &Option<ProfileRule>, path: &str, errs: &mut FieldErrors) {
    let Some(rule) = rule else { return };
    let valid = |p: &str| {
        matches!(p, "RuntimeDefault" | "Unconfined")
            || p.strip_prefix("Localhost/")
                .is_some_and(|rest| !rest.is_empty())
    };
    for (i, p) in rule.allowed_profiles.iter().enumerate() {
        if !valid(p) {
            errs.push(
                format!("{path}.allowedProfiles[{i}]"),
                format!("'{p}' is not RuntimeDefault, Unconfined or Localhost/<name>"),
            );
        }
    }
    if let Some(default) = &rule.default_profile {
        if !profile_allowed(&rule.allowed_profiles, default) {
            errs.push(
                format!("{path}.defaultProfile"),
                format!("'{default}' is not among the allowed profiles"),
            );
        }
    }
}

/// Profile names in one spelling: legacy PSP annotation values (`runtime/default`,
/// `localhost/x`) become `RuntimeDefault`, `Localhost/x`.
pub fn normalise_profiles(rule: Option<&mut ProfileRule>) {
    fn profile(name: &mut String) {
        let canonical = match name.as_str() {
            "runtime/default" | "docker/default" => "RuntimeDefault".to_string(),
            "unconfined" => "Unconfined".to_string(),
            "localhost/*" => "Localhost/*".to_string(),
            other => match other.strip_prefix("localhost/") {
                Some(rest) => format!("Localhost/{rest}"),
                None => return,
            },
        };
        *name = canonical;
    }
    if let Some(rule) = rule {
        rule.allowed_profiles.iter_mut().for_each(profile);
        rule.default_profile.iter_mut().for_each(profile);
    }
}
