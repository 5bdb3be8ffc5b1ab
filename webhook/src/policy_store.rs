//! The policy in force, swapped atomically when its file changes. A file that does not load
//! is refused: the last good policy stays, and the refusal is counted and logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hubguard_policy::{Policy, PolicyError};

use crate::metrics::Metrics;
use crate::watch::FileWatch;

/// A policy with the generation it was loaded as (1 for the first, +1 per accepted reload).
#[derive(Debug)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub generation: u64,
}

pub struct PolicyStore {
    path: PathBuf,
    current: ArcSwap<LoadedPolicy>,
    watch: std::sync::Mutex<FileWatch>,
    metrics: Arc<Metrics>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Accepted { generation: u64 },
    Refused,
}

impl PolicyStore {
    /// Loads the policy; at startup a broken file is fatal, since there is nothing to keep.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<Self, PolicyError> {
        let read_error = |error| PolicyError::Read {
            file: path.display().to_string(),
            error,
        };
        let (watch, contents) = FileWatch::new(&[path]).map_err(read_error)?;
        let policy = parse(path, &contents[0])?;
        metrics.set_policy(&policy.name, 1);
        Ok(PolicyStore {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(LoadedPolicy {
                policy,
                generation: 1,
            }),
            watch: std::sync::Mutex::new(watch),
            metrics,
        })
    }

    /// The policy in force; held for a whole request, across its `.await`s.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Re-reads the file if it changed, and swaps in the new policy if it is valid.
    pub fn reload(&self) -> Reload {
        let changed = {
            let mut watch = self.watch.lock().unwrap_or_else(|p| p.into_inner());
            watch.changed()
        };
        let contents = match changed {
            Ok(None) => return Reload::Unchanged,
            Ok(Some(mut contents)) => contents.remove(0),
            Err(error) => {
                return self.refuse(&PolicyError::Read {
                    file: self.path.display().to_string(),
                    error,
                })
            }
        };
        match parse(&self.path, &contents) {
            Ok(policy) => {
                let generation = self.current.load().generation + 1;
                self.metrics.set_policy(&policy.name, generation);
                tracing::info!(
                    policy = %policy.name,
                    generation,
                    file = %self.path.display(),
                    "policy reloaded"
                );
                self.current
                    .store(Arc::new(LoadedPolicy { policy, generation }));
                Reload::Accepted { generation }
            }
            Err(error) => self.refuse(&error),
        }
    }

    fn refuse(&self, error: &PolicyError) -> Reload {
        self.metrics.reload_errors.inc();
        let current = self.current.load();
        tracing::error!(
            error = %error,
            file = %self.path.display(),
            policy = %current.policy.name,
            generation = current.generation,
            "policy reload refused; the last good policy stays in force"
        );
        Reload::Refused
    }
}

fn parse(path: &Path, contents: &[u8]) -> Result<Policy, PolicyError> {
    let file = path.display().to_string();
    let text = std::str::from_utf8(contents).map_err(|e| PolicyError::Read {
        file: file.clone(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    Policy::from_yaml(text, &file)
}
