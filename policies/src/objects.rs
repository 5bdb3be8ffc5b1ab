//! Where each judged kind keeps its pod specs. Workloads are judged as the pods they will
//! create; Dask custom resources as the pods the operator will create for them.

use serde_json::Value;

use crate::classify::PodClass;

/// One pod spec inside an object.
pub struct SpecSite {
    /// Dotted path of the pod spec, e.g. `spec.template.spec`.
    pub base: &'static str,
    /// Dotted path of the metadata whose labels and annotations go with it.
    pub meta_base: &'static str,
    /// A missing spec is malformed input for built-in kinds, optional for Dask resources.
    pub required: bool,
}

impl SpecSite {
    pub fn locate<'v>(&self, object: &'v Value) -> Option<&'v Value> {
        walk(object, self.base).filter(|v| !v.is_null())
    }

    pub fn metadata<'v>(&self, object: &'v Value) -> Option<&'v Value> {
        walk(object, self.meta_base)
    }
}

pub fn walk<'v>(object: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(object, |v, key| v.get(key))
}

pub fn walk_mut<'v>(object: &'v mut Value, dotted: &str) -> Option<&'v mut Value> {
    dotted.split('.').try_fold(object, |v, key| v.get_mut(key))
}

pub struct Layout {
    /// The API group (empty for the core group).
    pub group: &'static str,
    pub kind: &'static str,
    pub sites: &'static [SpecSite],
    /// Pods made from it are always dask pods, whatever labels the resource carries.
    pub class: Option<PodClass>,
}

const fn site(base: &'static str, meta_base: &'static str) -> SpecSite {
    SpecSite {
        base,
        meta_base,
        required: true,
    }
}

/// A Dask resource's pod template: the operator copies the template's metadata onto the pods
/// it makes, so those labels are the future pods' labels.
const fn optional(base: &'static str, meta_base: &'static str) -> SpecSite {
    SpecSite {
        base,
        meta_base,
        required: false,
    }
}

const TEMPLATE: &[SpecSite] = &[site("spec.template.spec", "spec.template.metadata")];

pub const DASK_GROUP: &str = "kubernetes.dask.org";

pub static LAYOUTS: &[Layout] = &[
    Layout {
        group: "",
        kind: "Pod",
        sites: &[site("spec", "metadata")],
        class: None,
    },
    Layout {
        group: "apps",
        kind: "Deployment",
        sites: TEMPLATE,
        class: None,
    },
    Layout {
        group: "apps",
        kind: "ReplicaSet",
        sites: TEMPLATE,
        class: None,
    },
    Layout {
        group: "apps",
        kind: "StatefulSet",
        sites: TEMPLATE,
        class: None,
    },
    Layout {
        group: "apps",
        kind: "DaemonSet",
        sites: TEMPLATE,
        class: None,
    },
    Layout {
        group: "",
        kind: "ReplicationController",
        sites: TEMPLATE,
        class: None,
    },
    Layout {
        group: "batch",
        kind: "Job",
        sites: TEMPLATE,
        class: None,
    },
    Layout {
        group: "batch",
        kind: "CronJob",
        sites: &[site(
            "spec.jobTemplate.spec.template.spec",
            "spec.jobTemplate.spec.template.metadata",
        )],
        class: None,
    },
    Layout {
        group: DASK_GROUP,
        kind: "DaskCluster",
        sites: &[
            optional("spec.worker.spec", "spec.worker.metadata"),
            optional("spec.scheduler.spec", "spec.scheduler.metadata"),
        ],
        class: Some(PodClass::Dask),
    },
    Layout {
        group: DASK_GROUP,
        kind: "DaskWorkerGroup",
        sites: &[optional("spec.worker.spec", "spec.worker.metadata")],
        class: Some(PodClass::Dask),
    },
    Layout {
        group: DASK_GROUP,
        kind: "DaskJob",
        sites: &[
            optional("spec.job.spec", "spec.job.metadata"),
            optional(
                "spec.cluster.spec.worker.spec",
                "spec.cluster.spec.worker.metadata",
            ),
            optional(
                "spec.cluster.spec.scheduler.spec",
                "spec.cluster.spec.scheduler.metadata",
            ),
        ],
        class: Some(PodClass::Dask),
    },
];

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → core).
pub fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// The kinds hubguard judges.
pub fn layout_kinds() -> impl Iterator<Item = &'static str> {
    LAYOUTS.iter().map(|l| l.kind)
}

pub fn layout(api_version: &str, kind: &str) -> Option<&'static Layout> {
    let group = api_group(api_version);
    LAYOUTS.iter().find(|l| l.kind == kind && l.group == group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_cases() {
        let cases = [
            ("v1", "Pod", Some("spec")),
            ("apps/v1", "Deployment", Some("spec.template.spec")),
            (
                "batch/v1",
                "CronJob",
                Some("spec.jobTemplate.spec.template.spec"),
            ),
            (
                "kubernetes.dask.org/v1",
                "DaskCluster",
                Some("spec.worker.spec"),
            ),
            ("v1", "ConfigMap", None),
            ("example.com/v1", "Deployment", None),
        ];
        for (api_version, kind, first) in cases {
            let got = layout(api_version, kind).map(|l| l.sites[0].base);
            assert_eq!(got, first, "{api_version} {kind}");
        }
    }
}
