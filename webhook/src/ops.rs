//! The webhook's side of the operations port (`hubguard_daemon::ops`): ready once a policy is
//! loaded and the TLS listener is up; not ready while draining, so that the Service stops
//! sending new reviews before the listener closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hubguard_daemon::ops::Operations;
use hubguard_daemon::policy_store::ReloadObserver;

use crate::metrics::Metrics;

#[derive(Default)]
pub struct Health {
    serving: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }
}

/// What the operations port serves for the webhook.
pub struct WebhookOps {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Operations for WebhookOps {
    fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    fn ready(&self) -> bool {
        self.health.ready()
    }
}

impl ReloadObserver for Metrics {
    fn loaded(&self, policy: &str, generation: u64) {
        self.set_policy(policy, generation);
    }

    fn refused(&self, _error: &str) {
        self.reload_errors.inc();
    }
}
