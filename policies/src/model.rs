//! The policy document as operators write it. Shaped like a Kubernetes object so it can become a
//! CRD later without a format change. Everything here is plain data; `compile` turns it into the
//! form the checks read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checks::scheduling::SchedulingRules;
use crate::checks::secrets::SecretRules;
use crate::checks::service_accounts::ServiceAccountRules;
use crate::checks::service_names::ServiceRules;
use crate::checks::untrusted_requesters::UntrustedRequesters;
use crate::controls::Controls;
use crate::egress::{EgressRule, NetworkSpec};

pub const API_VERSION: &str = "hubguard.dev/v1alpha1";
pub const KIND: &str = "HubguardPolicy";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    pub api_version: String,
    pub kind: String,
    pub metadata: PolicyMetadata,
    pub spec: PolicySpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyMetadata {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub namespaces: NamespaceScope,
    #[serde(default)]
    pub trust: Trust,
    #[serde(default)]
    pub tenancy: Tenancy,
    #[serde(default)]
    pub network: NetworkSpec,
    /// Judge Services (and the scheduler Services of Dask resources) with the Service rules,
    /// and the names the platform's clients trust. Without it, Services are not judged.
    #[serde(default)]
    pub services: Option<ServiceRules>,
    #[serde(default)]
    pub classes: Classes,
}

/// Which namespaces the policy governs. An empty `include` means every namespace.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceScope {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Requesters whose `platform`-labelled pods are honoured as platform pods. Labels alone never
/// make a pod `platform`: anyone can write a label.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trust {
    /// Exact usernames, e.g. `system:serviceaccount:tess-private:hub`.
    #[serde(default)]
    pub requesters: Vec<String>,
    /// Groups whose members are trusted, e.g. `system:masters`.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// How a requester maps to a tenant, and how objects say which tenant they belong to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenancy {
    /// Regular expressions over the requester's username with a named group `tenant`,
    /// e.g. `^system:serviceaccount:tess-private:user-(?P<tenant>[a-z0-9-]+)$`. The first match wins.
    #[serde(default)]
    pub requester_patterns: Vec<String>,
    /// Label keys that carry an object's tenant (its escaped username), first present wins.
    #[serde(default = "default_tenant_labels")]
    pub tenant_labels: Vec<String>,
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy {
            requester_patterns: Vec::new(),
            tenant_labels: default_tenant_labels(),
        }
    }
}

fn default_tenant_labels() -> Vec<String> {
    // dask-gateway's pods carry no user label (their cluster does, as spec.username):
    // KubeSpawner's is the one label upstream software writes for a user.
    vec!["hub.jupyter.org/username".to_string()]
}

/// One entry per pod class; a class with no entry is not judged.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Classes {
    pub user: Option<ClassSpec>,
    pub dask: Option<ClassSpec>,
    pub platform: Option<ClassSpec>,
    pub other: Option<ClassSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the request.
    Enforce,
    /// Allow, and record the violation in the API server's audit log.
    Audit,
    /// Allow, and return a warning the client prints.
    Warn,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleName {
    #[default]
    None,
    Baseline,
    Restricted,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassSpec {
    /// The mode of every rule of the class unless `modes` names it.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Per-rule mode overrides, keyed by rule id (see docs/policy-reference.md).
    #[serde(default)]
    pub modes: BTreeMap<String, Mode>,
    /// Whether `/mutate` sets the PSP-style defaults of this class's controls on new pods.
    #[serde(default)]
    pub mutate: bool,
    /// A Pod Security Standards level the `controls` start from.
    #[serde(default)]
    pub bundle: BundleName,
    /// PodSecurityPolicy-style controls; each field set here replaces the bundle's.
    #[serde(default)]
    pub controls: Controls,
    pub volumes: Option<TenantVolumes>,
    pub images: Option<ImageRules>,
    pub resources: Option<ResourceCaps>,
    /// Which service accounts the class's pods may run as, and which may mount a token.
    pub service_accounts: Option<ServiceAccountRules>,
    /// Which Secrets the class's pods may reference.
    pub secrets: Option<SecretRules>,
    /// Node choice, tolerations and priority.
    pub scheduling: Option<SchedulingRules>,
    /// Whether requesters that are neither trusted nor tenants may create pods of this class.
    #[serde(default)]
    pub untrusted_requesters: UntrustedRequesters,
    #[serde(default)]
    pub egress: Vec<EgressRule>,
    /// Whether the class's pods may create raw sockets and ICMP echo ("ping") sockets, which
    /// no egress rule can filter. Unset: only classes without egress rules may.
    pub raw_sockets: Option<bool>,
}

fn default_mode() -> Mode {
    Mode::Enforce
}

/// Which persistent volume claims a tenant's pod may mount.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantVolumes {
    /// The tenant's own home claims are allowed, named by `homeClaimTemplate`.
    #[serde(default)]
    pub home_claims: bool,
    /// How the hub names a home claim: KubeSpawner's `pvc_name_template` (z2jh's
    /// `singleuser.storage.dynamic.pvcNameTemplate`), with its fields `{username}`,
    /// `{servername}` and `{user_server}` (and their `safe_` spellings). Unset: KubeSpawner 7's
    /// default, `claim-{user_server}`.
    pub home_claim_template: Option<String>,
    /// Claims every tenant may mount read-only, e.g. a shared data set: the volume and every
    /// mount of it must say `readOnly: true`.
    #[serde(default)]
    pub shared_claims: Vec<String>,
    /// Claims every tenant may mount read-write (a scratch space the platform shares on
    /// purpose).
    #[serde(default)]
    pub writable_claims: Vec<String>,
    /// Storage classes a generic ephemeral volume may ask for (`*` any, `""` the cluster's
    /// default). Unset: no generic ephemeral volumes.
    pub ephemeral_storage_classes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRules {
    /// `registry/repository` (exact) or `registry/prefix/*`. Docker Hub short names are
    /// normalised to `docker.io/...` before matching.
    pub allowed: Vec<String>,
    #[serde(default)]
    pub require_digest: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceCaps {
    /// Every container must set cpu and memory limits.
    #[serde(default)]
    pub require_limits: bool,
    pub max_cpu: Option<String>,
    pub max_memory: Option<String>,
    /// Caps on the whole pod: its pod-level `resources` and the sum over its containers.
    pub max_pod_cpu: Option<String>,
    pub max_pod_memory: Option<String>,
}
