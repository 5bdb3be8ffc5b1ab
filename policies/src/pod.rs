//! The pod a check looks at: its spec, where it sits in the object, whose it is.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, PodSecurityContext, PodSpec,
    ResourceRequirements, SecurityContext, VolumeMount,
};

use crate::classify::{PodClass, StringMap};

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
    /// The tenant the requester acts for, if any.
    pub requester_tenant: Option<&'a str>,
    /// The tenant the object's labels name, if any.
    pub label_tenant: Option<&'a str>,
    /// The label key that names the tenant (the policy's first tenancy label).
    pub tenant_label_key: &'a str,
}

impl<'a> PodSubject<'a> {
    /// Whose pod this is: the requester's tenant decides; labels count only when the requester is
    /// not a tenant (the hub or a controller creating pods for its users).
    pub fn tenant(&self) -> Option<&'a str> {
        self.requester_tenant.or(self.label_tenant)
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
