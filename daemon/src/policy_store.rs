//! The policy in force, swapped atomically when its file changes. A file that does not load,
//! or that the daemon's own check refuses, is refused: the last good policy stays, and the
//! refusal is reported and logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hubguard_policy::{Policy, PolicyError};

use crate::watch::FileWatch;

/// Where a store reports what it loaded and refused (the daemon's metrics).
pub trait ReloadObserver: Send + Sync {
    /// A policy is in force, as `generation` (1 for the first).
    fn loaded(&self, policy: &str, generation: u64);
    /// A changed file was refused (`error` says why); the last good policy stays.
    fn refused(&self, error: &str);
}

/// A daemon's own check of a policy that parsed: `Err` names what it cannot enforce.
pub type Check = Box<dyn Fn(&Policy) -> Result<(), String> + Send + Sync>;

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
    observer: Arc<dyn ReloadObserver>,
    check: Check,
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
    pub fn open(path: &Path, observer: Arc<dyn ReloadObserver>) -> Result<Self, StoreError> {
        Self::open_checked(path, observer, Box::new(|_| Ok(())))
    }

    /// As [`open`](Self::open), with a check of the daemon's own that a policy must pass too.
    pub fn open_checked(
        path: &Path,
        observer: Arc<dyn ReloadObserver>,
        check: Check,
    ) -> Result<Self, StoreError> {
        let read_error = |error| PolicyError::Read {
            file: path.display().to_string(),
            error,
        };
        let (watch, contents) = FileWatch::new(&[path]).map_err(read_error)?;
        let policy = parse(path, &contents[0])?;
        check(&policy).map_err(|message| StoreError::Refused {
            file: path.display().to_string(),
            message,
        })?;
        observer.loaded(&policy.name, 1);
        Ok(PolicyStore {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(LoadedPolicy {
                policy,
                generation: 1,
            }),
            watch: std::sync::Mutex::new(watch),
            observer,
            check,
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
                return self.refuse(&StoreError::from(PolicyError::Read {
                    file: self.path.display().to_string(),
                    error,
                }))
            }
        };
        let checked = parse(&self.path, &contents).and_then(|policy| {
            (self.check)(&policy)
                .map(|()| policy)
                .map_err(|message| StoreError::Refused {
                    file: self.path.display().to_string(),
                    message,
                })
        });
        match checked {
            Ok(policy) => {
                let generation = self.current.load().generation + 1;
                self.observer.loaded(&policy.name, generation);
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

    fn refuse(&self, error: &StoreError) -> Reload {
        self.observer.refused(&error.to_string());
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

/// Why a policy is not in force.
#[derive(Debug)]
pub enum StoreError {
    Policy(PolicyError),
    /// The policy loads, but the daemon cannot enforce it.
    Refused {
        file: String,
        message: String,
    },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Policy(e) => e.fmt(f),
            StoreError::Refused { file, message } => write!(f, "{file}: {message}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Policy(e) => Some(e),
            StoreError::Refused { .. } => None,
        }
    }
}

impl From<PolicyError> for StoreError {
    fn from(e: PolicyError) -> Self {
        StoreError::Policy(e)
    }
}

fn parse(path: &Path, contents: &[u8]) -> Result<Policy, StoreError> {
    let file = path.display().to_string();
    let text = std::str::from_utf8(contents).map_err(|e| PolicyError::Read {
        file: file.clone(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    Ok(Policy::from_yaml(text, &file)?)
}
