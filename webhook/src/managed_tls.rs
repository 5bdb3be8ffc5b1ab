//! Self-managed TLS, for clusters without cert-manager: hubguard keeps a CA and a serving
//! certificate in one Secret, renews the serving certificate well before it expires, writes
//! it where the TLS listener reloads it from, and keeps its webhook configurations' caBundle
//! trusting the CA. Every replica runs this; creates and updates are guarded by the API
//! server (AlreadyExists, resourceVersion conflicts), so replicas converge on one Secret.
//!
//! A new CA (the Secret deleted to rotate it, or the CA near its end) is trusted before it is
//! used: the caBundles get the new CA beside the old one, replicas serve a certificate of the
//! new CA only once every bundle trusts it (at their next check), and the old CA leaves the
//! bundles a few checks later, when every replica has switched. No request fails on the way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::metrics::Metrics;

const CA_LIFETIME: Duration = Duration::days(3650);
const SERVING_LIFETIME: Duration = Duration::days(365);
/// Renewed when less than this is left: months of warning, not hours.
const RENEW_BEFORE: Duration = Duration::days(90);

const NOT_AFTER: &str = "hubguard.dev/serving-not-after";
const CA_NOT_AFTER: &str = "hubguard.dev/ca-not-after";
/// Old CAs kept in a bundle beside the current one, at most: a rotation during a rotation.
const OLD_CAS_KEPT: usize = 2;
/// Checks after which an old CA leaves the bundles, counted from when this replica first saw
/// the new CA in all of them: every replica has had more than one check to switch by then.
const CHECKS_BEFORE_PRUNING: u32 = 4;
const NAMES: &str = "hubguard.dev/serving-names";

#[derive(Debug, thiserror::Error)]
pub enum ManagedTlsError {
    #[error("Secret {namespace}/{name}: {error}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        error: kube::Error,
    },
    #[error("webhook configuration {name}: {error}")]
    Configuration {
        name: String,
        #[source]
        error: kube::Error,
    },
    #[error("Secret {0} holds no usable CA (ca.crt, ca.key): {1}")]
    BadCa(String, String),
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {error}")]
    Write {
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("the Secret kept changing under us; will retry")]
    Contention,
}

pub struct ManagedTls {
    pub client: Client,
    pub namespace: String,
    pub secret: String,
    /// DNS names (or IP addresses) the serving certificate is valid for.
    pub names: Vec<String>,
    /// Mutating and validating webhook configurations whose caBundle is kept current.
    pub configurations: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// How often `ensure` runs: old CAs are pruned a few of these after a rotation.
    pub check_interval: std::time::Duration,
    pub rotation: Rotation,
}

/// What this replica has seen of a CA rotation.
#[derive(Debug, Default)]
pub struct Rotation {
    /// The CA (PEM) every bundle trusted at a check, and since when this replica knows it.
    trusted_everywhere: Mutex<Option<(Vec<u8>, Instant)>>,
    /// The CA of the certificate this replica wrote for its listener.
    served_ca: Mutex<Option<Vec<u8>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ManagedTls {
    /// Makes sure a valid certificate is in the Secret, on disk and in the caBundles.
    pub async fn ensure(&self, metrics: &Metrics) -> Result<(), ManagedTlsError> {
        let mut secret = None;
        for _ in 0..3 {
            match self.ensure_secret().await {
                Ok(s) => {
                    secret = Some(s);
                    break;
                }
                Err(ManagedTlsError::Contention) => continue,
                Err(e) => return Err(e),
            }
        }
        let secret = secret.ok_or(ManagedTlsError::Contention)?;
        let secret = self.owned_by_configuration(secret).await?;
        let data = secret.data.clone().unwrap_or_default();
        let get = |key: &str| data.get(key).map(|b| b.0.clone()).unwrap_or_default();
        let ca_pem = get("ca.crt");
        let trusted_since_an_earlier_check = self.trust_ca(&ca_pem).await?;
        // A certificate of a CA the API server does not trust yet would fail every call. A new
        // CA's is served once this replica has seen every bundle trust it at two checks, so
        // the API server has had a whole check interval to take the bundles in. A renewed
        // certificate of the same CA, or a first one, is served at once.
        let same_ca = locked(&self.rotation.served_ca).as_deref() == Some(ca_pem.as_slice());
        if same_ca || trusted_since_an_earlier_check || !self.cert_path.exists() {
            write_if_changed(&self.cert_path, &get("tls.crt"))?;
            write_if_changed(&self.key_path, &get("tls.key"))?;
            *locked(&self.rotation.served_ca) = Some(ca_pem.clone());
        } else {
            tracing::info!(secret = %self.secret, "a new CA: trusted beside the old one first, its certificate served at a later check");
        }
        if let Some(not_after) = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NOT_AFTER))
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        {
            metrics
                .certificate_expiry
                .set(not_after.unix_timestamp() as f64);
        }
        Ok(())
    }

    /// Makes every caBundle trust `ca_pem`, keeping the old CAs until every replica serves a
    /// certificate of the new one. Returns whether this replica saw every bundle trust it at
    /// an earlier check already, and still does.
    async fn trust_ca(&self, ca_pem: &[u8]) -> Result<bool, ManagedTlsError> {
        let earlier = locked(&self.rotation.trusted_everywhere)
            .take()
            .filter(|(ca, _)| ca == ca_pem);
        let prune = earlier.as_ref().is_some_and(|(_, since)| {
            since.elapsed() >= self.check_interval * CHECKS_BEFORE_PRUNING
        });
        // Whether every bundle trusted it when read, before this check's patch.
        let trusted_now = self.update_ca_bundles(ca_pem, prune).await?;
        let (state, seen_at_an_earlier_check) = match (trusted_now, earlier) {
            (false, _) => (None, false),
            (true, Some(earlier)) => (Some(earlier), true),
            (true, None) => (Some((ca_pem.to_vec(), Instant::now())), false),
        };
        *locked(&self.rotation.trusted_everywhere) = state;
        Ok(seen_at_an_earlier_check)
    }

    async fn ensure_secret(&self) -> Result<Secret, ManagedTlsError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let api_err = |error| ManagedTlsError::Api {
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
            error,
        };
        let existing = api.get_opt(&self.secret).await.map_err(api_err)?;
        let Some(mut secret) = existing else {
            let authority = new_authority()?;
            let fresh = self.secret_with(ObjectMeta::default(), &authority)?;
            return match api.create(&PostParams::default(), &fresh).await {
                Ok(created) => {
                    tracing::info!(secret = %self.secret, "created the webhook's CA and serving certificate");
                    Ok(created)
                }
                // Another replica created it first: use theirs.
                Err(kube::Error::Api(e)) if e.code == 409 => Err(ManagedTlsError::Contention),
                Err(e) => Err(api_err(e)),
            };
        };
        if !self.needs_renewal(&secret) {
            return Ok(secret);
        }
        let data = secret.data.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        let authority = if ca_expiring(secret.metadata.annotations.as_ref().unwrap_or(&empty)) {
            new_authority()?
        } else {
            load_authority(&self.secret, &data)?
        };
        let renewed = self.secret_with(secret.metadata.clone(), &authority)?;
        secret.data = renewed.data;
        secret.metadata.annotations = renewed.metadata.annotations;
        match api
            .replace(&self.secret, &PostParams::default(), &secret)
            .await
        {
            Ok(updated) => {
                tracing::info!(secret = %self.secret, "renewed the webhook's serving certificate");
                Ok(updated)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Err(ManagedTlsError::Contention),
            Err(e) => Err(api_err(e)),
        }
    }

    /// Makes the webhook configuration the Secret's owner, so that removing hubguard (which
    /// deletes the configuration) removes the Secret too: the chart never made it, so Helm
    /// would leave it behind. A cluster-scoped owner may own a namespaced object.
    async fn owned_by_configuration(&self, mut secret: Secret) -> Result<Secret, ManagedTlsError> {
        let Some(name) = self.configurations.first() else {
            return Ok(secret);
        };
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let configuration =
            validating
                .get_opt(name)
                .await
                .map_err(|error| ManagedTlsError::Configuration {
                    name: name.clone(),
                    error,
                })?;
        let Some(uid) = configuration.and_then(|c| c.metadata.uid) else {
            return Ok(secret);
        };
        if secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid)
        {
            return Ok(secret);
        }
        let unchanged = secret.clone();
        let owners = secret
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new);
        owners.retain(|o| o.kind != "ValidatingWebhookConfiguration");
        owners.push(OwnerReference {
            api_version: "admissionregistration.k8s.io/v1".into(),
            kind: "ValidatingWebhookConfiguration".into(),
            name: name.clone(),
            uid,
            ..OwnerReference::default()
        });
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        match api
            .replace(&self.secret, &PostParams::default(), &secret)
            .await
        {
            Ok(updated) => Ok(updated),
            // Another replica changed it first; the next check sets the owner if still needed.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(unchanged),
            Err(error) => Err(ManagedTlsError::Api {
                namespace: self.namespace.clone(),
                name: self.secret.clone(),
                error,
            }),
        }
    }

    fn needs_renewal(&self, secret: &Secret) -> bool {
        let empty = BTreeMap::new();
        let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
        let expiring = annotations
            .get(NOT_AFTER)
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .is_none_or(|not_after| not_after - OffsetDateTime::now_utc() < RENEW_BEFORE);
        let names_changed = annotations.get(NAMES) != Some(&self.names.join(","));
        // A CA near its end is replaced (and trusted before it is used, see `trust_ca`).
        let ca_expiring = ca_expiring(annotations);
        let incomplete = ["ca.crt", "ca.key", "tls.crt", "tls.key"]
            .iter()
            .any(|k| !secret.data.as_ref().is_some_and(|d| d.contains_key(*k)));
        expiring || names_changed || incomplete || ca_expiring
    }

    fn secret_with(
        &self,
        mut metadata: ObjectMeta,
        authority: &Authority,
    ) -> Result<Secret, ManagedTlsError> {
        let now = OffsetDateTime::now_utc();
        let not_after = now + SERVING_LIFETIME;
        let mut params = CertificateParams::new(self.names.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            self.names.first().map_or("hubguard", String::as_str),
        );
        params.distinguished_name = dn;
        params.not_before = now - Duration::hours(1);
        params.not_after = not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &authority.issuer)?;
        metadata.name = Some(self.secret.clone());
        metadata.namespace = Some(self.namespace.clone());
        let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(
            NOT_AFTER.into(),
            not_after.format(&Rfc3339).unwrap_or_default(),
        );
        annotations.insert(NAMES.into(), self.names.join(","));
        if let Some(ca_not_after) = authority.not_after {
            annotations.insert(
                CA_NOT_AFTER.into(),
                ca_not_after.format(&Rfc3339).unwrap_or_default(),
            );
        }
        metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("app.kubernetes.io/name".into(), "hubguard".into());
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        Ok(Secret {
            metadata,
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                ("ca.crt".into(), bytes(&authority.cert_pem)),
                ("ca.key".into(), bytes(&authority.key_pem)),
                ("tls.crt".into(), bytes(&cert.pem())),
                ("tls.key".into(), bytes(&key.serialize_pem())),
            ])),
            ..Secret::default()
        })
    }

    /// Adds `ca_pem` to every webhook's caBundle (dropping the old CAs when `prune`). Returns
    /// whether every bundle already trusted it.
    async fn update_ca_bundles(&self, ca_pem: &[u8], prune: bool) -> Result<bool, ManagedTlsError> {
        let mut trusted_before = true;
        for name in &self.configurations {
            let config_err = |error| ManagedTlsError::Configuration {
                name: name.clone(),
                error,
            };
            let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
            trusted_before &= keep_bundles_current(&mutating, name, ca_pem, prune, |c| {
                c.webhooks
                    .into_iter()
                    .flatten()
                    .map(|w| w.client_config.ca_bundle)
                    .collect()
            })
            .await
            .map_err(config_err)?;
            let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
            trusted_before &= keep_bundles_current(&validating, name, ca_pem, prune, |c| {
                c.webhooks
                    .into_iter()
                    .flatten()
                    .map(|w| w.client_config.ca_bundle)
                    .collect()
            })
            .await
            .map_err(config_err)?;
        }
        Ok(trusted_before)
    }
}

/// Reads configuration `name` (if it exists) and sets the caBundles that differ. Returns
/// whether every webhook of it trusted `ca_pem` before.
async fn keep_bundles_current<K>(
    api: &Api<K>,
    name: &str,
    ca_pem: &[u8],
    prune: bool,
    bundles_of: impl FnOnce(K) -> Vec<Option<ByteString>>,
) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(found) = api.get_opt(name).await? else {
        return Ok(true);
    };
    let current = bundles_of(found);
    let ca_blocks = certificate_blocks(ca_pem);
    let trusted_before = !ca_blocks.is_empty()
        && current.iter().all(|b| {
            let blocks = b
                .as_ref()
                .map(|b| certificate_blocks(&b.0))
                .unwrap_or_default();
            ca_blocks.iter().all(|ca| blocks.contains(ca))
        });
    patch_bundles(api, name, &current, ca_pem, prune).await?;
    Ok(trusted_before)
}

/// The PEM certificate blocks in `pem`, each as its exact bytes from BEGIN to END.
fn certificate_blocks(pem: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find =
        |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).position(|w| w == needle);
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let Some(end) = find(&rest[start..], END) else {
            break;
        };
        let stop = start + end + END.len();
        blocks.push(rest[start..stop].to_vec());
        rest = &rest[stop..];
    }
    blocks
}

/// The bundle a webhook should carry: the current CA first, then the old CAs it already
/// trusts (unless pruning), at most `OLD_CAS_KEPT` of them.
fn wanted_bundle(current: Option<&[u8]>, ca_pem: &[u8], prune: bool) -> Vec<u8> {
    let ca_blocks = certificate_blocks(ca_pem);
    let mut bundle: Vec<u8> = ca_blocks.join(&b"\n"[..]);
    if !prune {
        for old in certificate_blocks(current.unwrap_or_default())
            .into_iter()
            .filter(|b| !ca_blocks.contains(b))
            .take(OLD_CAS_KEPT)
        {
            bundle.push(b'\n');
            bundle.extend_from_slice(&old);
        }
    }
    bundle.push(b'\n');
    bundle
}

/// Sets every webhook's caBundle that differs from the wanted one, by index, in one JSON
/// patch.
async fn patch_bundles<K>(
    api: &Api<K>,
    name: &str,
    current: &[Option<ByteString>],
    ca_pem: &[u8],
    prune: bool,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let ops: Vec<serde_json::Value> = current
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let have = b.as_ref().map(|b| b.0.as_slice());
            let want = wanted_bundle(have, ca_pem, prune);
            (have != Some(want.as_slice())).then(|| {
                let value = base64::engine::general_purpose::STANDARD.encode(&want);
                serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": value})
            })
        })
        .collect();
    if ops.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .expect("well-formed JSON patch operations");
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?;
    tracing::info!(
        configuration = name,
        "set the webhook configuration's caBundle"
    );
    Ok(())
}

struct Authority {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// Known for a CA made here; a CA read back keeps the annotation it has.
    not_after: Option<OffsetDateTime>,
}

fn ca_expiring(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(CA_NOT_AFTER)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .is_some_and(|not_after| not_after - OffsetDateTime::now_utc() < RENEW_BEFORE)
}

/// The CA's name and constraints. Signing needs only these and the key, so a CA read back
/// from the Secret is rebuilt from them without parsing its certificate.
fn authority_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hubguard webhook CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn new_authority() -> Result<Authority, ManagedTlsError> {
    let now = OffsetDateTime::now_utc();
    let mut params = authority_params()?;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_LIFETIME;
    let key = KeyPair::generate()?;
    let cert_pem = params.self_signed(&key)?.pem();
    Ok(Authority {
        cert_pem,
        key_pem: key.serialize_pem(),
        issuer: Issuer::new(params, key),
        not_after: Some(now + CA_LIFETIME),
    })
}

fn load_authority(
    secret: &str,
    data: &BTreeMap<String, ByteString>,
) -> Result<Authority, ManagedTlsError> {
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or_else(|| ManagedTlsError::BadCa(secret.into(), format!("{key} missing")))
    };
    let (cert_pem, key_pem) = match (text("ca.crt"), text("ca.key")) {
        (Ok(c), Ok(k)) => (c, k),
        // A Secret someone emptied: start over with a new CA (the caBundles follow).
        _ => return new_authority(),
    };
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| ManagedTlsError::BadCa(secret.into(), e.to_string()))?;
    let issuer = Issuer::new(authority_params()?, key);
    Ok(Authority {
        cert_pem,
        key_pem,
        issuer,
        not_after: None,
    })
}

fn write_if_changed(path: &Path, contents: &[u8]) -> Result<(), ManagedTlsError> {
    if std::fs::read(path).is_ok_and(|c| c == contents) {
        return Ok(());
    }
    let write_err = |error| ManagedTlsError::Write {
        path: path.display().to_string(),
        error,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(name: &str) -> String {
        format!("-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n")
    }

    #[test]
    fn bundles_trust_the_new_ca_beside_the_old_until_pruned() {
        let (old, older, oldest, new) = (pem("old"), pem("older"), pem("oldest"), pem("new"));
        let both = format!("{new}{old}");
        let cases: &[(&str, Option<String>, bool, String)] = &[
            ("first install: nothing yet", None, false, new.clone()),
            (
                "a placeholder is not a CA",
                Some("Cg==".into()),
                false,
                new.clone(),
            ),
            ("already current", Some(new.clone()), false, new.clone()),
            (
                "rotation: the old one stays",
                Some(old.clone()),
                false,
                both.clone(),
            ),
            (
                "during rotation: unchanged",
                Some(both.clone()),
                false,
                both.clone(),
            ),
            (
                "pruned after the switch",
                Some(both.clone()),
                true,
                new.clone(),
            ),
            (
                "at most two old CAs",
                Some(format!("{old}{older}{oldest}")),
                false,
                format!("{new}{old}{older}"),
            ),
        ];
        for (case, current, prune, want) in cases {
            let got = wanted_bundle(
                current.as_deref().map(str::as_bytes),
                new.as_bytes(),
                *prune,
            );
            assert_eq!(String::from_utf8(got).unwrap(), *want, "{case}");
        }
    }

    #[test]
    fn certificate_blocks_are_found_whatever_surrounds_them() {
        let text = format!("junk\n{}between{}", pem("a"), pem("b").trim_end());
        let blocks = certificate_blocks(text.as_bytes());
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].ends_with(b"-----END CERTIFICATE-----"));
        assert!(certificate_blocks(b"-----BEGIN CERTIFICATE-----\nno end").is_empty());
    }
}
