//! The Pod Security Standards levels as bundles of controls
//! (https://kubernetes.io/docs/concepts/security/pod-security-standards/).

use crate::controls::*;
use crate::model::BundleName;

/// Every volume type except hostPath: baseline forbids only host paths.
pub const NON_HOST_VOLUME_TYPES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// The volume types the restricted level allows (`image` since 1.35, with the `images` rule
/// judging what it mounts).
pub const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Capabilities a baseline pod may add.
pub const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub fn bundle(name: BundleName) -> Controls {
    match name {
        BundleName::None => Controls::default(),
        BundleName::Baseline => baseline(),
        BundleName::Restricted => restricted(),
    }
}

pub fn baseline() -> Controls {
    let confined = ProfileRule {
        allowed_profiles: strings(&["RuntimeDefault", "Localhost/*"]),
        default_profile: None,
        required: false,
    };
    Controls {
        privileged: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        host_network: Some(false),
        host_ports: Some(Vec::new()),
        volumes: Some(strings(NON_HOST_VOLUME_TYPES)),
        allowed_capabilities: Some(strings(BASELINE_CAPABILITIES)),
        se_linux: Some(SeLinux {
            rule: SeLinuxStrategy::AllowedTypes,
            se_linux_options: None,
            allowed_types: strings(&[
                "",
                "container_t",
                "container_init_t",
                "container_kvm_t",
                "container_engine_t",
            ]),
        }),
        allowed_proc_mount_types: Some(strings(&["Default"])),
        allow_unmasked_proc_mount_in_user_namespaces: Some(true),
        host_probes: Some(false),
        allowed_unsafe_sysctls: Some(Vec::new()),
        seccomp: Some(confined.clone()),
        app_armor: Some(confined),
        ..Controls::default()
    }
}

/// Restricted is baseline plus: a short volume list, no privilege escalation, non-root, a
/// seccomp profile, all capabilities dropped. The defaults make a z2jh-default pod pass once
/// mutated.
pub fn restricted() -> Controls {
    Controls {
        volumes: Some(strings(RESTRICTED_VOLUME_TYPES)),
        allow_privilege_escalation: Some(false),
        default_allow_privilege_escalation: Some(false),
        run_as_user: Some(RunAsUser {
            rule: UserRule::MustRunAsNonRoot,
            ranges: Vec::new(),
        }),
        allowed_capabilities: Some(strings(&["NET_BIND_SERVICE"])),
        required_drop_capabilities: Some(strings(&["ALL"])),
        allow_unmasked_proc_mount_in_user_namespaces: Some(false),
        seccomp: Some(ProfileRule {
            allowed_profiles: strings(&["RuntimeDefault", "Localhost/*"]),
            default_profile: Some("RuntimeDefault".to_string()),
            required: true,
        }),
        ..Controls::default()
    }
    .over(baseline())
}
