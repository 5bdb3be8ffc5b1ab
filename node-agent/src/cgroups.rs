//! Finding cgroups: the cgroup v2 mount, the root of the pods' tree, and a pod's own cgroup
//! as kubelet lays it out. A cgroup's id (what the kernel programs see) is the inode number
//! of its directory.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 filesystem in {mounts}: the node agent needs cgroup v2 (mounted as 'cgroup2')")]
    NoCgroup2 { mounts: String },
    #[error("reading {path}: {error}")]
    Read { path: String, error: io::Error },
    #[error("no pods' cgroup tree under {root}: looked for kubepods.slice and kubepods (set --pods-cgroup)")]
    NoPodsTree { root: String },
}

/// The cgroup v2 mount point named in a /proc/mounts text.
pub fn cgroup2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let _source = fields.next()?;
        let target = fields.next()?;
        (fields.next()? == "cgroup2").then(|| PathBuf::from(unescape_mount_path(target)))
    })
}

/// /proc/mounts escapes spaces and a few other bytes as octal (`\040`).
fn unescape_mount_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn find_cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let mounts = "/proc/mounts";
    let text = std::fs::read_to_string(mounts).map_err(|error| CgroupError::Read {
        path: mounts.into(),
        error,
    })?;
    cgroup2_mount_in(&text).ok_or_else(|| CgroupError::NoCgroup2 {
        mounts: mounts.into(),
    })
}

/// The root of kubelet's pod cgroups: `kubepods.slice` (systemd driver) or `kubepods` (cgroupfs).
pub fn find_pods_tree(cgroup_root: &Path) -> Result<PathBuf, CgroupError> {
    ["kubepods.slice", "kubepods"]
        .iter()
        .map(|name| cgroup_root.join(name))
        .find(|p| p.is_dir())
        .ok_or_else(|| CgroupError::NoPodsTree {
            root: cgroup_root.display().to_string(),
        })
}

/// Where kubelet puts a pod's cgroup under the pods' tree, for both cgroup drivers and every
/// QoS class (Guaranteed pods sit directly under the root).
pub fn pod_cgroup_candidates(pods_tree: &Path, uid: &str) -> Vec<PathBuf> {
    let systemd_uid = uid.replace('-', "_");
    let mut candidates = vec![
        pods_tree.join(format!("pod{uid}")),
        pods_tree.join("burstable").join(format!("pod{uid}")),
        pods_tree.join("besteffort").join(format!("pod{uid}")),
        pods_tree.join(format!("kubepods-pod{systemd_uid}.slice")),
    ];
    for qos in ["burstable", "besteffort"] {
        candidates.push(
            pods_tree
                .join(format!("kubepods-{qos}.slice"))
                .join(format!("kubepods-{qos}-pod{systemd_uid}.slice")),
        );
    }
    candidates
}

/// The pod's cgroup directory, once kubelet has created it.
pub fn find_pod_cgroup(pods_tree: &Path, uid: &str) -> Option<PathBuf> {
    pod_cgroup_candidates(pods_tree, uid)
        .into_iter()
        .find(|p| p.is_dir())
}

pub fn cgroup_id(path: &Path) -> Result<u64, CgroupError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|error| CgroupError::Read {
            path: path.display().to_string(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_cases() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "most nodes",
                "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n",
                Some("/sys/fs/cgroup"),
            ),
            (
                "hybrid",
                "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n",
                Some("/sys/fs/cgroup/unified"),
            ),
            (
                "escaped path",
                "none /mnt/my\\040cgroups cgroup2 rw 0 0\n",
                Some("/mnt/my cgroups"),
            ),
            ("cgroup v1 only", "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n", None),
        ];
        for (name, mounts, want) in cases {
            assert_eq!(
                cgroup2_mount_in(mounts),
                want.map(PathBuf::from),
                "case {name}"
            );
        }
    }

    #[test]
    fn pod_path_cases() {
        let uid = "6f1c2a44-0b1e-4bb0-9a3e-1d2c3b4a5f60";
        let cases: &[(&str, &str, &str)] = &[
            ("cgroupfs guaranteed", "kubepods", "kubepods/pod6f1c2a44-0b1e-4bb0-9a3e-1d2c3b4a5f60"),
            ("cgroupfs burstable", "kubepods", "kubepods/burstable/pod6f1c2a44-0b1e-4bb0-9a3e-1d2c3b4a5f60"),
            ("cgroupfs besteffort", "kubepods", "kubepods/besteffort/pod6f1c2a44-0b1e-4bb0-9a3e-1d2c3b4a5f60"),
            ("systemd guaranteed", "kubepods.slice", "kubepods.slice/kubepods-pod6f1c2a44_0b1e_4bb0_9a3e_1d2c3b4a5f60.slice"),
            ("systemd burstable", "kubepods.slice", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c2a44_0b1e_4bb0_9a3e_1d2c3b4a5f60.slice"),
            ("systemd besteffort", "kubepods.slice", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6f1c2a44_0b1e_4bb0_9a3e_1d2c3b4a5f60.slice"),
        ];
        for (name, tree, path) in cases {
            let root = Path::new("/cg");
            let candidates = pod_cgroup_candidates(&root.join(tree), uid);
            assert!(
                candidates.contains(&root.join(path)),
                "case {name}: {candidates:?}"
            );
        }
    }
}
