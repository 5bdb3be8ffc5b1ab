//! The pod a check looks at: its spec, where it sits in the object, whose it is.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, EphemeralContainer, Lifecycle,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, SecurityContext, VolumeMount,
};

use serde_json::Value;

use crate::classify::{PodClass, StringMap};
use crate::identity::{Recorded, RequesterKind};

/// What the webhook (or `hubguard check`) found when it looked up the DaskCluster a
/// DaskWorkerGroup names: the cluster's tenant (`None` for a cluster of no tenant), or why it
/// could not be read.
pub type ClusterLookup = Result<Option<String>, String>;

pub struct PodSubject<'a> {
    pub spec: &'a PodSpec,
    /// Dotted path of the pod spec in the object, e.g. `spec.template.spec`.
    pub base: &'a str,
    /// Dotted path of the metadata the labels come from (`metadata` for a pod and a Dask
    /// resource, `spec.template.metadata` for a workload).
    pub meta_base: &'a str,
    pub labels: StringMap<'a>,
    pub annotations: StringMap<'a>,
    pub class: PodClass,
    /// Who asked, as the policy sees them.
    pub requester: RequesterKind,
    /// The tenant the requester acts for, if any.
    pub requester_tenant: Option<&'a str>,
    /// The tenant hubguard decided (see `identity::decide`).
    pub decided_tenant: Option<&'a str>,
    /// The tenant the object's labels name, if any.
    pub label_tenant: Option<&'a str>,
    /// The label keys that name a tenant, the policy's first.
    pub tenant_label_keys: &'a [String],
    /// The identity recorded on the pod's labels, as written.
    pub recorded: Recorded<'a>,
    /// The whole object and its top-level labels (a Dask resource's own labels differ from
    /// its pod templates').
    pub object: &'a Value,
    pub object_labels: StringMap<'a>,
    /// For a DaskWorkerGroup: the owner of the DaskCluster it joins, as looked up.
    pub cluster_lookup: Option<&'a ClusterLookup>,
}

impl<'a> PodSubject<'a> {
    /// Whose pod this is: the requester's tenant decides; labels and records count only for
    /// trusted requesters (the hub or a controller creating pods for its users).
    pub fn tenant(&self) -> Option<&'a str> {
        self.decided_tenant
    }

    /// The policy's main tenant label key, named in fixes.
    pub fn tenant_label_key(&self) -> &'a str {
        self.tenant_label_keys.first().map_or("", String::as_str)
    }

    pub fn path(&self, rest: &str) -> String {
        format!("{}.{}", self.base, rest)
    }

    pub fn metadata_path(&self, rest: &str) -> String {
        format!("{}.{}", self.meta_base, rest)
    }

    pub fn pod_security(&self) -> Option<&'a PodSecurityContext> {
        self.spec.security_context.as_ref()
    }

    /// Containers, init containers and ephemeral containers, in that order.
    pub fn containers(&self) -> impl Iterator<Item = ContainerView<'a>> + 'a {
        let spec: &'a PodSpec = self.spec;
        let base = self.base;
        let regular = spec
            .containers
            .iter()
            .enumerate()
            .map(move |(i, c)| ContainerView::of_container(base, "containers", i, c));
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(move |(i, c)| ContainerView::of_container(base, "initContainers", i, c));
        let ephemeral = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .enumerate()
            .map(move |(i, c)| ContainerView::of_ephemeral(base, i, c));
        regular.chain(init).chain(ephemeral)
    }
}

/// The fields the checks read, shared by regular and ephemeral containers.
pub struct ContainerView<'a> {
    base: &'a str,
    pub field: &'static str,
    pub index: usize,
    pub name: &'a str,
    pub image: Option<&'a str>,
    pub security: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
    pub resources: Option<&'a ResourceRequirements>,
    pub volume_mounts: &'a [VolumeMount],
    pub env: &'a [EnvVar],
    pub env_from: &'a [EnvFromSource],
    /// Liveness, readiness and startup probes, by those names.
    pub probes: [(&'static str, Option<&'a Probe>); 3],
    pub lifecycle: Option<&'a Lifecycle>,
    /// An init container with `restartPolicy: Always` runs beside the main containers.
    pub sidecar: bool,
}

impl<'a> ContainerView<'a> {
    fn of_container(base: &'a str, field: &'static str, index: usize, c: &'a Container) -> Self {
        ContainerView {
            base,
            field,
            index,
            name: &c.name,
            image: c.image.as_deref(),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            resources: c.resources.as_ref(),
            volume_mounts: c.volume_mounts.as_deref().unwrap_or_default(),
            env: c.env.as_deref().unwrap_or_default(),
            env_from: c.env_from.as_deref().unwrap_or_default(),
            probes: [
                ("livenessProbe", c.liveness_probe.as_ref()),
                ("readinessProbe", c.readiness_probe.as_ref()),
                ("startupProbe", c.startup_probe.as_ref()),
            ],
            lifecycle: c.lifecycle.as_ref(),
            sidecar: field == "initContainers" && c.restart_policy.as_deref() == Some("Always"),
        }
    }

    fn of_ephemeral(base: &'a str, index: usize, c: &'a EphemeralContainer) -> Self {
        ContainerView {
            base,
            field: "ephemeralContainers",
            index,
            name: &c.name,
            image: c.image.as_deref(),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            resources: c.resources.as_ref(),
            volume_mounts: c.volume_mounts.as_deref().unwrap_or_default(),
            env: c.env.as_deref().unwrap_or_default(),
            env_from: c.env_from.as_deref().unwrap_or_default(),
            probes: [
                ("livenessProbe", c.liveness_probe.as_ref()),
                ("readinessProbe", c.readiness_probe.as_ref()),
                ("startupProbe", c.startup_probe.as_ref()),
            ],
            lifecycle: c.lifecycle.as_ref(),
            sidecar: false,
        }
    }

    /// `<base>.<field>[<index>].<rest>`
    pub fn path(&self, rest: &str) -> String {
        format!("{}.{}[{}].{}", self.base, self.field, self.index, rest)
    }

    /// Container-level security field, falling back to the pod level where Kubernetes does.
    pub fn effective<T: Clone>(
        &self,
        pod: Option<&PodSecurityContext>,
        container: impl Fn(&SecurityContext) -> Option<T>,
        pod_level: impl Fn(&PodSecurityContext) -> Option<T>,
    ) -> Option<T> {
        self.security
            .and_then(container)
            .or_else(|| pod.and_then(pod_level))
    }
}
