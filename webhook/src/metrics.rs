//! The webhook's Prometheus metrics. Names and labels are a contract (docs/metrics.md); no
//! label takes a per-pod or per-user value.

use hubguard_daemon::metrics::Recorder;
use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGaugeVec};

/// Admission latency is expected well under a millisecond; the buckets resolve that range
/// and still show the API server's timeout region.
const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    2.5,
];

/// The `mode` label of violations found in `dryRun` requests, so that server-side dry runs
/// do not look like attacks on the dashboards.
pub const DRY_RUN_MODE: &str = "dry_run";

pub struct Metrics {
    recorder: Recorder,
    pub requests: IntCounterVec,
    pub duration: Histogram,
    pub violations: IntCounterVec,
    pub reload_errors: IntCounter,
    pub policy_info: IntGaugeVec,
    pub tls_reload_errors: IntCounter,
    pub tls_reloads: IntCounter,
    pub certificate_expiry: Gauge,
    pub mutating_policy_syncs: IntCounterVec,
}

/// The definitions are fixed and covered by this crate's tests: a rule they broke would fail
/// every test, never a running webhook.
const DEFINED: &str = "the webhook's metric definitions follow the recorder's rules";

impl Metrics {
    pub fn new() -> Self {
        let recorder = Recorder::new();
        Metrics {
            requests: recorder
                .counter_vec(
                    "hubguard_admission_requests_total",
                    "Admission reviews answered, by operation, kind, decision and strongest mode found.",
                    &["operation", "kind", "decision", "mode"],
                )
                .expect(DEFINED),
            duration: recorder
                .histogram(
                    "hubguard_admission_duration_seconds",
                    "Time from a review's body arriving to its answer being ready.",
                    DURATION_BUCKETS,
                )
                .expect(DEFINED),
            violations: recorder
                .counter_vec(
                    "hubguard_policy_violations_total",
                    "Policy violations found, by policy, rule, namespace, pod class and mode.",
                    &["policy", "rule", "namespace", "pod_class", "mode"],
                )
                .expect(DEFINED),
            reload_errors: recorder
                .counter(
                    "hubguard_policy_reload_errors_total",
                    "Policy files refused on reload; the last good policy stays in force.",
                )
                .expect(DEFINED),
            policy_info: recorder
                .gauge_vec(
                    "hubguard_policy_info",
                    "The policy in force (value 1).",
                    &["policy", "generation"],
                )
                .expect(DEFINED),
            tls_reload_errors: recorder
                .counter(
                    "hubguard_tls_reload_errors_total",
                    "Serving certificate files refused on reload; the last good certificate stays in use.",
                )
                .expect(DEFINED),
            tls_reloads: recorder
                .counter(
                    "hubguard_tls_reloads_total",
                    "Serving certificates taken into use after their files changed (a rotation).",
                )
                .expect(DEFINED),
            certificate_expiry: recorder
                .float_gauge(
                    "hubguard_tls_certificate_expiry_timestamp_seconds",
                    "When the self-managed serving certificate expires (Unix time; 0 when not self-managed).",
                )
                .expect(DEFINED),
            mutating_policy_syncs: recorder
                .counter_vec(
                    "hubguard_mutating_policy_syncs_total",
                    "Writes of the generated MutatingAdmissionPolicy (--manage-mutating-policy), by result (applied, failed).",
                    &["result"],
                )
                .expect(DEFINED),
            recorder,
        }
    }

    /// Marks `generation` of `policy` as the one in force, dropping the previous series.
    pub fn set_policy(&self, policy: &str, generation: u64) {
        self.policy_info.reset();
        self.policy_info
            .with_label_values(&[policy, &generation.to_string()])
            .set(1);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.recorder.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_follows_the_recorders_rules() {
        // Defining them all panics on the first that breaks a rule.
        let metrics = super::Metrics::new();
        assert!(metrics.render().contains("hubguard_"));
    }
}
