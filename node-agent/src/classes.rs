//! The class ids the kernel programs know. The policy's four pod classes, plus the class of a
//! cgroup the agent has not mapped yet and the class of pods in namespaces the policy exempts.

use hubguard_policy::classify::PodClass;

pub use crate::abi::MAX_CLASSES;

const _: () = assert!(ClassId::Unmapped as u32 == crate::abi::CLASS_UNMAPPED);
const _: () = assert!((ClassId::Exempt as u32) < MAX_CLASSES);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClassId {
    /// A cgroup under the attach point that the agent has not mapped (yet): the strictest
    /// rules, cluster DNS only.
    Unmapped = 0,
    User = 1,
    Dask = 2,
    Platform = 3,
    Other = 4,
    /// Pods in namespaces the policy does not govern (kube-system, hubguard's own): node
    /// daemons such as CSI drivers may need the metadata endpoint.
    Exempt = 5,
}

impl ClassId {
    pub const ALL: [ClassId; 6] = [
        ClassId::Unmapped,
        ClassId::User,
        ClassId::Dask,
        ClassId::Platform,
        ClassId::Other,
        ClassId::Exempt,
    ];

    pub fn from_pod_class(class: PodClass) -> ClassId {
        match class {
            PodClass::User => ClassId::User,
            PodClass::Dask => ClassId::Dask,
            PodClass::Platform => ClassId::Platform,
            PodClass::Other => ClassId::Other,
        }
    }

    pub fn pod_class(self) -> Option<PodClass> {
        match self {
            ClassId::User => Some(PodClass::User),
            ClassId::Dask => Some(PodClass::Dask),
            ClassId::Platform => Some(PodClass::Platform),
            ClassId::Other => Some(PodClass::Other),
            ClassId::Unmapped | ClassId::Exempt => None,
        }
    }

    pub fn from_raw(raw: u32) -> ClassId {
        ClassId::ALL
            .into_iter()
            .find(|c| *c as u32 == raw)
            .unwrap_or(ClassId::Unmapped)
    }

    /// The `pod_class` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassId::Unmapped => "unmapped",
            ClassId::Exempt => "exempt",
            other => other.pod_class().map_or("unmapped", PodClass::as_str),
        }
    }

    pub fn parse(name: &str) -> Option<ClassId> {
        ClassId::ALL.into_iter().find(|c| c.as_str() == name)
    }
}
