//! `--manage-mutating-policy`: keeps the MutatingAdmissionPolicy generated from the policy in
//! force installed (Kubernetes 1.36+), so that the API server sets the defaults and records
//! the identity itself and a pod create costs one webhook call. Applied with server-side apply
//! when the policy changes and at every check, which also undoes hand edits and deletions.
//! The chart's binding decides where it applies.

use std::sync::Arc;
use std::time::Duration;

use hubguard_daemon::policy_store::PolicyStore;
use hubguard_policy::mutating_policy::{generate, GenerationError};
use hubguard_policy::Policy;
use k8s_openapi::api::admissionregistration::v1::MutatingAdmissionPolicy;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;

use crate::metrics::Metrics;

const FIELD_MANAGER: &str = "hubguard-webhook";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot generate MutatingAdmissionPolicy {name}: {source}")]
    Generate {
        name: String,
        #[source]
        source: GenerationError,
    },
    #[error("cannot apply MutatingAdmissionPolicy {name}: {source}")]
    Apply {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The check a policy reload must pass while the mutation is managed: a policy whose
/// mutation cannot be generated is refused, and the last good one (and its mutation) stays.
pub fn reload_check(name: String) -> hubguard_daemon::policy_store::Check {
    Box::new(move |policy: &Policy| {
        generate(policy, &name)
            .map(|_| ())
            .map_err(|e| format!("its MutatingAdmissionPolicy cannot be generated: {e}"))
    })
}

pub struct MutatingPolicyKeeper {
    pub client: Client,
    pub name: String,
}

impl MutatingPolicyKeeper {
    pub async fn sync(&self, policy: &Policy) -> Result<(), SyncError> {
        let generated = generate(policy, &self.name).map_err(|source| SyncError::Generate {
            name: self.name.clone(),
            source,
        })?;
        let api: Api<MutatingAdmissionPolicy> = Api::all(self.client.clone());
        api.patch(
            &self.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&generated),
        )
        .await
        .map_err(|source| SyncError::Apply {
            name: self.name.clone(),
            source,
        })?;
        Ok(())
    }

    /// Applies the mutation of the policy in force now, then on every change and every
    /// `interval`.
    pub async fn keep(self, policies: Arc<PolicyStore>, metrics: Arc<Metrics>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut applied_generation = None;
        let mut last_full_check = tokio::time::Instant::now();
        loop {
            ticks.tick().await;
            let current = policies.current();
            // Between the periodic re-applies, only a new policy generation is written.
            let due = applied_generation != Some(current.generation)
                || last_full_check.elapsed() >= interval * 3;
            if !due {
                continue;
            }
            last_full_check = tokio::time::Instant::now();
            match self.sync(&current.policy).await {
                Ok(()) => {
                    if applied_generation != Some(current.generation) {
                        tracing::info!(
                            name = %self.name,
                            policy = %current.policy.name,
                            generation = current.generation,
                            "MutatingAdmissionPolicy applied"
                        );
                    }
                    applied_generation = Some(current.generation);
                    metrics
                        .mutating_policy_syncs
                        .with_label_values(&["applied"])
                        .inc();
                }
                Err(error) => {
                    applied_generation = None;
                    metrics
                        .mutating_policy_syncs
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::error!(%error, "MutatingAdmissionPolicy not applied; will retry");
                }
            }
        }
    }
}
