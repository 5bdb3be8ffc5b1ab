//! PSP `volumes`: only the listed volume types (`*` allows all).

use k8s_openapi::api::core::v1::Volume;

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "volumes",
    summary: "volumes must be of an allowed type",
    evaluate,
    defaults: None,
    validate: Some(validate),
    level: Some(level),
    normalise: None,
};

/// The volume's source type, named as in the pod spec.
pub fn volume_type(v: &Volume) -> &'static str {
    let sources: [(bool, &'static str); 30] = [
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cephfs.is_some(), "cephfs"),
        (v.cinder.is_some(), "cinder"),
        (v.config_map.is_some(), "configMap"),
        (v.csi.is_some(), "csi"),
        (v.downward_api.is_some(), "downwardAPI"),
        (v.empty_dir.is_some(), "emptyDir"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.fc.is_some(), "fc"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.flocker.is_some(), "flocker"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.host_path.is_some(), "hostPath"),
        (v.image.is_some(), "image"),
        (v.iscsi.is_some(), "iscsi"),
        (v.nfs.is_some(), "nfs"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.projected.is_some(), "projected"),
        (v.quobyte.is_some(), "quobyte"),
        (v.rbd.is_some(), "rbd"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.secret.is_some(), "secret"),
        (v.storageos.is_some(), "storageos"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    sources
        .iter()
        .find(|(set, _)| *set)
        // A volume with no source is an emptyDir to the API server.
        .map_or("emptyDir", |(_, name)| name)
}

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(allowed) = &class.controls.volumes else {
        return;
    };
    if allowed.iter().any(|t| t == "*") {
        return;
    }
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let kind = volume_type(volume);
        if !allowed.iter().any(|t| t == kind) {
            out.add(
                pod.path(&format!("volumes[{i}].{kind}")),
                format!(
                    "volume '{}' is of type {kind}, which the policy does not allow",
                    volume.name
                ),
                format!("use one of: {}", allowed.join(", ")),
            );
        }
    }
}

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

fn level(c: &mut crate::controls::Controls, level: super::Level) {
    let types = match level {
        super::Level::Baseline => NON_HOST_VOLUME_TYPES,
        super::Level::Restricted => RESTRICTED_VOLUME_TYPES,
    };
    c.volumes = Some(types.iter().map(|t| t.to_string()).collect());
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    for (i, v) in c.volumes.iter().flatten().enumerate() {
        if v != "*" && v != "hostPath" && !NON_HOST_VOLUME_TYPES.contains(&v.as_str()) {
            errs.push(
                format!("{path}.volumes[{i}]"),
                format!("'{v}' is not a volume type"),
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
        let restricted = "bundle: restricted";
        run(
            &CHECK,
            &[
                Case {
                    name: "pvc and configmap",
                    policy: restricted,
                    pod: "{containers: [{name: a}], volumes: [{name: home, persistentVolumeClaim: {claimName: claim-a}}, {name: c, configMap: {name: x}}]}",
                    ..CASE
                },
                Case {
                    name: "hostPath under restricted",
                    policy: restricted,
                    pod: "{containers: [{name: a}], volumes: [{name: root, hostPath: {path: /}}]}",
                    expect: &["spec.volumes[0].hostPath"],
                    ..CASE
                },
                Case {
                    name: "nfs under restricted, allowed under baseline",
                    policy: restricted,
                    pod: "{containers: [{name: a}], volumes: [{name: ok, emptyDir: {}}, {name: n, nfs: {server: s, path: /x}}]}",
                    expect: &["spec.volumes[1].nfs"],
                    ..CASE
                },
                Case {
                    name: "nfs under baseline",
                    policy: "bundle: baseline",
                    pod: "{containers: [{name: a}], volumes: [{name: n, nfs: {server: s, path: /x}}]}",
                    ..CASE
                },
                Case {
                    name: "hostPath under baseline",
                    policy: "bundle: baseline",
                    pod: "{containers: [{name: a}], volumes: [{name: h, hostPath: {path: /var/run/docker.sock}}]}",
                    expect: &["spec.volumes[0].hostPath"],
                    ..CASE
                },
                Case {
                    name: "wildcard",
                    policy: "controls: {volumes: ['*']}",
                    pod: "{containers: [{name: a}], volumes: [{name: h, hostPath: {path: /}}]}",
                    ..CASE
                },
                Case {
                    name: "no source counts as emptyDir",
                    policy: "controls: {volumes: [emptyDir]}",
                    pod: "{containers: [{name: a}], volumes: [{name: scratch}]}",
                    ..CASE
                },
            ],
        );
    }
}
