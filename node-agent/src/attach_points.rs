//! The cgroups the programs are attached to, kept attached: a cgroup removed and made again
//! (a standalone hub's user slice, or kubelet's pods tree) is a new cgroup, with a new id and
//! no programs on it. Each check compares every attach point's id with the one the programs
//! were attached at, attaches again where they differ, and says which points are unguarded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::cgroups;
use crate::kernel::{AttachReport, Kernel, KernelError};
use crate::metrics::AgentMetrics;

pub struct AttachPoints {
    paths: Vec<PathBuf>,
    /// Attach point → the cgroup id its programs are attached at.
    attached: BTreeMap<PathBuf, u64>,
}

/// What a check found.
pub struct Guard {
    /// Every attach point has the programs.
    pub all_guarded: bool,
    /// Programs were attached at a point since the last check.
    pub attached: bool,
}

impl AttachPoints {
    /// Attaches (or adopts) at every point: the agent's start.
    pub fn attach(
        paths: Vec<PathBuf>,
        kernel: &Mutex<Kernel>,
        metrics: &AgentMetrics,
    ) -> Result<(AttachPoints, AttachReport), KernelError> {
        let report = kernel.lock().expect("kernel lock").attach(&paths)?;
        let mut points = AttachPoints {
            paths,
            attached: BTreeMap::new(),
        };
        for path in &points.paths {
            points
                .attached
                .insert(path.clone(), cgroups::cgroup_id(path)?);
            set_guarded(metrics, path, true);
        }
        Ok((points, report))
    }

    pub fn check(&mut self, kernel: &Mutex<Kernel>, metrics: &AgentMetrics) -> Guard {
        let mut present = Vec::new();
        let mut stale = Vec::new();
        let mut all_guarded = true;
        for path in &self.paths {
            match cgroups::cgroup_id(path) {
                Ok(id) => {
                    if self.attached.get(path) != Some(&id) {
                        stale.push((path.clone(), id));
                    }
                    present.push(path.clone());
                }
                Err(error) => {
                    all_guarded = false;
                    set_guarded(metrics, path, false);
                    if self.attached.remove(path).is_some() {
                        tracing::error!(attach_point = %path.display(), %error, "attach point gone: what runs under it when it is made again is unguarded until the programs are attached again");
                    }
                }
            }
        }
        if stale.is_empty() {
            return Guard {
                all_guarded,
                attached: false,
            };
        }
        // Attaching at the present points also unpins the links of cgroups that are gone.
        match kernel.lock().expect("kernel lock").attach(&present) {
            Ok(report) => {
                for (path, id) in stale {
                    tracing::warn!(attach_point = %path.display(), cgroup_id = id, attached = report.attached, "attach point made anew: programs attached again");
                    metrics.reattached.inc();
                    set_guarded(metrics, &path, true);
                    self.attached.insert(path, id);
                }
                Guard {
                    all_guarded,
                    attached: true,
                }
            }
            Err(error) => {
                for (path, _) in &stale {
                    set_guarded(metrics, path, false);
                }
                tracing::error!(%error, "attaching the programs again failed; retrying");
                Guard {
                    all_guarded: false,
                    attached: false,
                }
            }
        }
    }
}

fn set_guarded(metrics: &AgentMetrics, path: &std::path::Path, guarded: bool) {
    metrics
        .attach_point_guarded
        .with_label_values(&[&path.display().to_string()])
        .set(i64::from(guarded));
}
