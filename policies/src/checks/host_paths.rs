//! PSP `allowedHostPaths`: hostPath volumes only under an allowed prefix, read-only where the
//! prefix says so. An empty list restricts nothing beyond `volumes` (PSP's meaning).

use serde::{Deserialize, Serialize};

use super::{Check, Findings};

use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "allowedHostPaths",
    summary: "hostPath volumes must lie under an allowed prefix, read-only where required",
    evaluate,
    defaults: None,
    validate: Some(validate),
    level: None,
    normalise: None,
};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedHostPath {
    pub path_prefix: String,
    #[serde(default)]
    pub read_only: bool,
}

/// Prefixes match whole path elements: `/data` covers `/data/x` but not `/database`.
fn under(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    let path = path.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn matching<'p>(allowed: &'p [AllowedHostPath], path: &str) -> Option<&'p AllowedHostPath> {
    // A writable match wins over a read-only one, as in PSP.
    let mut hits = allowed.iter().filter(|a| under(&a.path_prefix, path));
    let first = hits.next()?;
    Some(if first.read_only {
        hits.find(|a| !a.read_only).unwrap_or(first)
    } else {
        first
    })
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(allowed) = class.controls.allowed_host_paths.as_deref() else {
        return;
    };
    if allowed.is_empty() {
        return;
    }
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let Some(host_path) = &volume.host_path else {
            continue;
        };
        let prefixes: Vec<&str> = allowed.iter().map(|a| a.path_prefix.as_str()).collect();
        match matching(allowed, &host_path.path) {
            None => out.add(
                pod.path(&format!("volumes[{i}].hostPath.path")),
                format!(
                    "volume '{}' mounts host path {}, outside the allowed prefixes",
                    volume.name, host_path.path
                ),
                format!("use a path under {}", prefixes.join(", ")),
            ),
            Some(rule) if rule.read_only => {
                for c in pod.containers() {
                    for (k, mount) in c.volume_mounts.iter().enumerate() {
                        if mount.name == volume.name && mount.read_only != Some(true) {
                            out.add_for(
                                &c,
                                &format!("volumeMounts[{k}].readOnly"),
                                format!(
                                    "container '{}' mounts host path {} writable; the policy allows it read-only",
                                    c.name, host_path.path
                                ),
                                "set readOnly: true on the volume mount",
                            );
                        }
                    }
                }
            }
            Some(_) => {}
        }
    }
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    for (i, p) in c.allowed_host_paths.iter().flatten().enumerate() {
        if !p.path_prefix.starts_with('/') {
            errs.push(
                format!("{path}.allowedHostPaths[{i}].pathPrefix"),
                format!("'{}' is not an absolute path", p.path_prefix),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    #[test]
    fn cases() {
        let policy = "controls: {allowedHostPaths: [{pathPrefix: /data, readOnly: true}, {pathPrefix: /scratch}]}";
        run(
            &CHECK,
            &[
                Case {
                    name: "read-only mount under read-only prefix",
                    policy,
                    pod: "{containers: [{name: a, volumeMounts: [{name: d, mountPath: /d, readOnly: true}]}], volumes: [{name: d, hostPath: {path: /data/tess}}]}",
                    ..CASE
                },
                Case {
                    name: "writable mount under read-only prefix",
                    policy,
                    pod: "{containers: [{name: a, volumeMounts: [{name: d, mountPath: /d}]}], volumes: [{name: d, hostPath: {path: /data}}]}",
                    expect: &["spec.containers[0].volumeMounts[0].readOnly"],
                    ..CASE
                },
                Case {
                    name: "writable prefix",
                    policy,
                    pod: "{containers: [{name: a, volumeMounts: [{name: s, mountPath: /s}]}], volumes: [{name: s, hostPath: {path: /scratch/x}}]}",
                    ..CASE
                },
                Case {
                    name: "prefix is per path element",
                    policy,
                    pod: "{containers: [{name: a}], volumes: [{name: d, hostPath: {path: /database}}]}",
                    expect: &["spec.volumes[0].hostPath.path"],
                    ..CASE
                },
                Case {
                    name: "outside every prefix",
                    policy,
                    pod: "{containers: [{name: a}], volumes: [{name: r, hostPath: {path: /}}]}",
                    expect: &["spec.volumes[0].hostPath.path"],
                    ..CASE
                },
                Case {
                    name: "empty list restricts nothing",
                    policy: "controls: {allowedHostPaths: []}",
                    pod: "{containers: [{name: a}], volumes: [{name: r, hostPath: {path: /}}]}",
                    ..CASE
                },
            ],
        );
    }
}
