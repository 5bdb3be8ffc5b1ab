//! The kernel programs load, attach and detach (as root; CI runs as root, a skip is a failure).

use std::path::PathBuf;

use hubguard_node_agent::cgroups;
use hubguard_node_agent::kernel::{self, Kernel};

/// Removes the test's pins and cgroup even when the test fails.
struct Cleanup {
    pin_dir: PathBuf,
    cgroup: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kernel::uninstall(&self.pin_dir);
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

#[test]
fn loads_attaches_adopts_and_uninstalls() {
    let mount = cgroups::find_cgroup2_mount().expect("cgroup v2 mount");
    let cgroup = mount.join(format!("hubguard-kernel-load-{}", std::process::id()));
    std::fs::create_dir_all(&cgroup).expect("create cgroup");
    let pin_dir = PathBuf::from(format!(
        "/sys/fs/bpf/hubguard-test-load-{}",
        std::process::id()
    ));
    let _cleanup = Cleanup {
        pin_dir: pin_dir.clone(),
        cgroup: cgroup.clone(),
    };

    let mut first = Kernel::load(&pin_dir).expect("load");
    let report = first.attach(std::slice::from_ref(&cgroup)).expect("attach");
    assert_eq!(report.attached, kernel::PROGRAMS.len());
    drop(first);

    let mut second = Kernel::load(&pin_dir).expect("load again");
    let report = second.attach(std::slice::from_ref(&cgroup)).expect("adopt");
    assert_eq!(
        (report.attached, report.adopted),
        (0, kernel::PROGRAMS.len())
    );
    drop(second);

    let removed = kernel::uninstall(&pin_dir).expect("uninstall");
    assert!(removed.iter().any(|p| p.contains("links")), "{removed:?}");
    assert!(!pin_dir.exists());
    drop(_cleanup);
    assert!(!cgroup.exists(), "the test cgroup is removed");
}
