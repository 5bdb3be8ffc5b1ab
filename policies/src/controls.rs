//! The PodSecurityPolicy fields, one per control. `None` means the control is not configured
//! (anything goes); a value follows PSP's meaning of the field, documented per field in
//! docs/policy-reference.md.

use serde::{Deserialize, Serialize};

// Each rule's own configuration types live in its file; the policy names them here.
pub use crate::checks::csi_drivers::AllowedCsiDriver;
pub use crate::checks::flex_volumes::AllowedFlexVolume;
pub use crate::checks::host_paths::AllowedHostPath;
pub use crate::checks::run_as_user::{RunAsUser, UserRule};
pub use crate::checks::runtime_class::RuntimeClassRule;
pub use crate::checks::selinux::{SeLinux, SeLinuxOptionsSpec, SeLinuxStrategy};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Controls {
    pub privileged: Option<bool>,
    #[serde(rename = "hostPID")]
    pub host_pid: Option<bool>,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<bool>,
    pub host_network: Option<bool>,
    pub host_ports: Option<Vec<IdRange>>,
    pub volumes: Option<Vec<String>>,
    pub allowed_host_paths: Option<Vec<AllowedHostPath>>,
    pub allowed_flex_volumes: Option<Vec<AllowedFlexVolume>>,
    #[serde(rename = "allowedCSIDrivers")]
    pub allowed_csi_drivers: Option<Vec<AllowedCsiDriver>>,
    pub run_as_user: Option<RunAsUser>,
    pub run_as_group: Option<GroupRule>,
    pub supplemental_groups: Option<GroupRule>,
    pub fs_group: Option<GroupRule>,
    pub se_linux: Option<SeLinux>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub default_allow_privilege_escalation: Option<bool>,
    pub allowed_capabilities: Option<Vec<String>>,
    pub required_drop_capabilities: Option<Vec<String>>,
    pub default_add_capabilities: Option<Vec<String>>,
    pub allowed_proc_mount_types: Option<Vec<String>>,
    /// Pods in a user namespace (`hostUsers: false`) may use any procMount (PSS baseline
    /// 1.35+; restricted keeps the mask).
    pub allow_unmasked_proc_mount_in_user_namespaces: Option<bool>,
    /// `false`: probes and lifecycle handlers may not name a `host` (PSS baseline 1.34+).
    pub host_probes: Option<bool>,
    /// `false`: no Windows HostProcess containers (PSS baseline).
    pub host_process: Option<bool>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    pub forbidden_sysctls: Option<Vec<String>>,
    pub seccomp: Option<ProfileRule>,
    pub app_armor: Option<ProfileRule>,
    pub runtime_class: Option<RuntimeClassRule>,
}

impl Controls {
    /// Fields set in `self` win; the rest come from `base` (a bundle).
    pub fn over(self, base: Controls) -> Controls {
        Controls {
            privileged: self.privileged.or(base.privileged),
            host_pid: self.host_pid.or(base.host_pid),
            host_ipc: self.host_ipc.or(base.host_ipc),
            host_network: self.host_network.or(base.host_network),
            host_ports: self.host_ports.or(base.host_ports),
            volumes: self.volumes.or(base.volumes),
            allowed_host_paths: self.allowed_host_paths.or(base.allowed_host_paths),
            allowed_flex_volumes: self.allowed_flex_volumes.or(base.allowed_flex_volumes),
            allowed_csi_drivers: self.allowed_csi_drivers.or(base.allowed_csi_drivers),
            run_as_user: self.run_as_user.or(base.run_as_user),
            run_as_group: self.run_as_group.or(base.run_as_group),
            supplemental_groups: self.supplemental_groups.or(base.supplemental_groups),
            fs_group: self.fs_group.or(base.fs_group),
            se_linux: self.se_linux.or(base.se_linux),
            read_only_root_filesystem: self
                .read_only_root_filesystem
                .or(base.read_only_root_filesystem),
            allow_privilege_escalation: self
                .allow_privilege_escalation
                .or(base.allow_privilege_escalation),
            default_allow_privilege_escalation: self
                .default_allow_privilege_escalation
                .or(base.default_allow_privilege_escalation),
            allowed_capabilities: self.allowed_capabilities.or(base.allowed_capabilities),
            required_drop_capabilities: self
                .required_drop_capabilities
                .or(base.required_drop_capabilities),
            default_add_capabilities: self
                .default_add_capabilities
                .or(base.default_add_capabilities),
            allowed_proc_mount_types: self
                .allowed_proc_mount_types
                .or(base.allowed_proc_mount_types),
            allow_unmasked_proc_mount_in_user_namespaces: self
                .allow_unmasked_proc_mount_in_user_namespaces
                .or(base.allow_unmasked_proc_mount_in_user_namespaces),
            host_probes: self.host_probes.or(base.host_probes),
            host_process: self.host_process.or(base.host_process),
            allowed_unsafe_sysctls: self.allowed_unsafe_sysctls.or(base.allowed_unsafe_sysctls),
            forbidden_sysctls: self.forbidden_sysctls.or(base.forbidden_sysctls),
            seccomp: self.seccomp.or(base.seccomp),
            app_armor: self.app_armor.or(base.app_armor),
            runtime_class: self.runtime_class.or(base.runtime_class),
        }
    }
}

/// An inclusive range of ids or ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdRange {
    pub min: i64,
    pub max: i64,
}

impl IdRange {
    pub fn contains(&self, v: i64) -> bool {
        self.min <= v && v <= self.max
    }
}

pub fn in_ranges(ranges: &[IdRange], v: i64) -> bool {
    ranges.iter().any(|r| r.contains(v))
}

pub fn describe_ranges(ranges: &[IdRange]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.min == r.max {
                r.min.to_string()
            } else {
                format!("{}-{}", r.min, r.max)
            }
        })
        .collect();
    parts.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum GroupStrategy {
    /// The id must be set and inside the ranges; the default is the first range's minimum.
    MustRunAs,
    /// When set, the id must be inside the ranges; unset is fine.
    MayRunAs,
    RunAsAny,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    pub rule: GroupStrategy,
    #[serde(default)]
    pub ranges: Vec<IdRange>,
}

/// Seccomp or AppArmor: profiles are `RuntimeDefault`, `Unconfined` or `Localhost/<name>`
/// (`Localhost/*` for any local profile).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileRule {
    pub allowed_profiles: Vec<String>,
    /// Set on pods that name no profile when the class mutates.
    pub default_profile: Option<String>,
    /// A pod must name a profile (PSS restricted for seccomp); otherwise unset is fine.
    #[serde(default)]
    pub required: bool,
}
