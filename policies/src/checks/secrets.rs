//! Secrets: a pod may mount or read any Secret of its namespace by name — z2jh's `hub` Secret
//! holds the proxy token, the cookie secret, the OAuth secret and dask-gateway's token. A class
//! names the Secrets its pods may reference, wherever a pod can reference one: volumes,
//! projected sources, environment variables, image pull secrets and volume drivers' secret
//! references.

use serde::{Deserialize, Serialize};

use super::support::{glob_match, names_for_tenant, names_listed, validate_name_patterns};
use super::{Check, Findings};
use crate::identity::RequesterKind;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;
use crate::validate::FieldErrors;

pub const CHECK: Check = Check {
    id: "secrets",
    summary: "pods may reference only the class's Secrets",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRules {
    /// Secret names the pods may reference; `{tenant}` stands for the pod's tenant. Empty:
    /// none.
    #[serde(default)]
    pub names: Vec<String>,
    /// Further names, for pods a trusted requester creates only; a trailing `*` matches any
    /// rest (dask-gateway's controller mounts each cluster's `dask-credentials-<id>`, which no
    /// tenant may name itself: it is another cluster's key).
    #[serde(default)]
    pub trusted_requester_names: Vec<String>,
}

pub fn validate(rules: &SecretRules, path: &str, errs: &mut FieldErrors) {
    validate_name_patterns(&rules.names, &format!("{path}.names"), errs);
}

/// Every Secret the pod names, with the path of the field that names it.
fn references<'a>(pod: &PodSubject<'a>) -> Vec<(String, &'a str)> {
    let spec = pod.spec;
    let mut found: Vec<(String, &'a str)> = Vec::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let at = |rest: &str| pod.path(&format!("volumes[{i}].{rest}"));
        if let Some(name) = volume
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
        {
            found.push((at("secret.secretName"), name));
        }
        let sources = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for (j, source) in sources.enumerate() {
            if let Some(secret) = &source.secret {
                found.push((
                    at(&format!("projected.sources[{j}].secret.name")),
                    &secret.name,
                ));
            }
        }
        let driver_refs = [
            (
                "csi.nodePublishSecretRef.name",
                volume
                    .csi
                    .as_ref()
                    .and_then(|v| v.node_publish_secret_ref.as_ref())
                    .map(|r| r.name.as_str()),
            ),
            (
                "cephfs.secretRef.name",
                volume
                    .cephfs
                    .as_ref()
                    .and_then(|v| v.secret_ref.as_ref())
                    .map(|r| r.name.as_str()),
            ),
            (
                "flexVolume.secretRef.name",
                volume
                    .flex_volume
                    .as_ref()
                    .and_then(|v| v.secret_ref.as_ref())
                    .map(|r| r.name.as_str()),
            ),
            (
                "rbd.secretRef.name",
                volume
                    .rbd
                    .as_ref()
                    .and_then(|v| v.secret_ref.as_ref())
                    .map(|r| r.name.as_str()),
            ),
            (
                "iscsi.secretRef.name",
                volume
                    .iscsi
                    .as_ref()
                    .and_then(|v| v.secret_ref.as_ref())
                    .map(|r| r.name.as_str()),
            ),
            (
                "scaleIO.secretRef.name",
                volume.scale_io.as_ref().map(|v| v.secret_ref.name.as_str()),
            ),
            (
                "storageos.secretRef.name",
                volume
                    .storageos
                    .as_ref()
                    .and_then(|v| v.secret_ref.as_ref())
                    .map(|r| r.name.as_str()),
            ),
            (
                "azureFile.secretName",
                volume.azure_file.as_ref().map(|v| v.secret_name.as_str()),
            ),
        ];
        for (field, name) in driver_refs {
            if let Some(name) = name {
                found.push((at(field), name));
            }
        }
    }
    for c in pod.containers() {
        for (k, env) in c.env.iter().enumerate() {
            if let Some(key) = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                found.push((
                    c.path(&format!("env[{k}].valueFrom.secretKeyRef.name")),
                    &key.name,
                ));
            }
        }
        for (k, from) in c.env_from.iter().enumerate() {
            if let Some(secret) = &from.secret_ref {
                found.push((
                    c.path(&format!("envFrom[{k}].secretRef.name")),
                    &secret.name,
                ));
            }
        }
    }
    for (i, pull) in spec.image_pull_secrets.iter().flatten().enumerate() {
        found.push((pod.path(&format!("imagePullSecrets[{i}].name")), &pull.name));
    }
    found
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rules) = &class.secrets else {
        return;
    };
    let tenant = pod.tenant();
    let trusted = pod.requester == RequesterKind::Trusted;
    for (path, name) in references(pod) {
        if rules
            .names
            .iter()
            .any(|p| names_for_tenant(p, name, tenant))
        {
            continue;
        }
        if trusted
            && rules
                .trusted_requester_names
                .iter()
                .any(|p| glob_match(p, name))
        {
            continue;
        }
        out.add(
            path,
            format!("the pod references Secret {name}, which its class may not read"),
            format!(
                "reference only these Secrets: {}",
                names_listed(&rules.names, tenant)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    const NONE: &str = "secrets: {names: []}";
    const OWN: &str = "secrets: {names: ['{tenant}-s3', registry-pull]}";
    const GATEWAY: &str = "secrets: {trustedRequesterNames: ['dask-credentials-*']}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "no secrets",
                    policy: NONE,
                    ..CASE
                },
                Case {
                    name: "the hub's secret as a volume",
                    policy: NONE,
                    pod: "{containers: [{name: a}], volumes: [{name: s, secret: {secretName: hub}}]}",
                    expect: &["spec.volumes[0].secret.secretName"],
                    ..CASE
                },
                Case {
                    name: "the hub's secret through a projected volume",
                    policy: NONE,
                    pod: "{containers: [{name: a}], volumes: [{name: s, projected: {sources: [{configMap: {name: c}}, {secret: {name: hub}}]}}]}",
                    expect: &["spec.volumes[0].projected.sources[1].secret.name"],
                    ..CASE
                },
                Case {
                    name: "the proxy token as an environment variable",
                    policy: NONE,
                    pod: "{containers: [{name: a, env: [{name: T, valueFrom: {secretKeyRef: {name: hub, key: hub.config.ConfigurableHTTPProxy.auth_token}}}]}]}",
                    expect: &["spec.containers[0].env[0].valueFrom.secretKeyRef.name"],
                    ..CASE
                },
                Case {
                    name: "every key of a secret through envFrom, in an init container",
                    policy: NONE,
                    pod: "{containers: [{name: a}], initContainers: [{name: i, envFrom: [{secretRef: {name: hub}}]}]}",
                    expect: &["spec.initContainers[0].envFrom[0].secretRef.name"],
                    ..CASE
                },
                Case {
                    name: "a CSI driver's publish secret",
                    policy: NONE,
                    pod: "{containers: [{name: a}], volumes: [{name: s, csi: {driver: x, nodePublishSecretRef: {name: hub}}}]}",
                    expect: &["spec.volumes[0].csi.nodePublishSecretRef.name"],
                    ..CASE
                },
                Case {
                    name: "someone's registry credentials",
                    policy: NONE,
                    pod: "{containers: [{name: a}], imagePullSecrets: [{name: platform-registry}]}",
                    expect: &["spec.imagePullSecrets[0].name"],
                    ..CASE
                },
                Case {
                    name: "the tenant's own secret and a listed one",
                    policy: OWN,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a, envFrom: [{secretRef: {name: alice-s3}}]}], imagePullSecrets: [{name: registry-pull}]}",
                    ..CASE
                },
                Case {
                    name: "another tenant's secret",
                    policy: OWN,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a, envFrom: [{secretRef: {name: bob-s3}}]}]}",
                    expect: &["spec.containers[0].envFrom[0].secretRef.name"],
                    ..CASE
                },
                Case {
                    name: "dask-gateway's controller mounts a cluster's credentials",
                    policy: GATEWAY,
                    requester: RequesterKind::Trusted,
                    pod: "{containers: [{name: a}], volumes: [{name: s, secret: {secretName: dask-credentials-5c0a7e}}]}",
                    ..CASE
                },
                Case {
                    name: "a tenant mounts a gateway cluster's credentials",
                    policy: GATEWAY,
                    requester_tenant: Some("alice"),
                    pod: "{containers: [{name: a}], volumes: [{name: s, secret: {secretName: dask-credentials-5c0a7e}}]}",
                    expect: &["spec.volumes[0].secret.secretName"],
                    ..CASE
                },
                Case {
                    name: "not configured",
                    pod: "{containers: [{name: a}], volumes: [{name: s, secret: {secretName: hub}}]}",
                    ..CASE
                },
            ],
        );
    }
}
