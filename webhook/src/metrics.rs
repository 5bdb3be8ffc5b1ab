//! The webhook's Prometheus metrics. Names and labels are a contract (docs/metrics.md); no
//! label takes a per-pod or per-user value.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

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
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: Histogram,
    pub violations: IntCounterVec,
    pub reload_errors: IntCounter,
    pub policy_info: IntGaugeVec,
    pub tls_reload_errors: IntCounter,
    pub certificate_expiry: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "hubguard_admission_requests_total",
                "Admission reviews answered, by operation, kind, decision and strongest mode found.",
            ),
            &["operation", "kind", "decision", "mode"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "hubguard_admission_duration_seconds",
                "Time from a review's body arriving to its answer being ready.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let violations = IntCounterVec::new(
            Opts::new(
                "hubguard_policy_violations_total",
                "Policy violations found, by policy, rule, namespace, pod class and mode.",
            ),
            &["policy", "rule", "namespace", "pod_class", "mode"],
        )
        .expect("valid metric");
        let reload_errors = IntCounter::new(
            "hubguard_policy_reload_errors_total",
            "Policy files refused on reload; the last good policy stays in force.",
        )
        .expect("valid metric");
        let policy_info = IntGaugeVec::new(
            Opts::new("hubguard_policy_info", "The policy in force (value 1)."),
            &["policy", "generation"],
        )
        .expect("valid metric");
        let tls_reload_errors = IntCounter::new(
            "hubguard_tls_reload_errors_total",
            "Serving certificate files refused on reload; the last good certificate stays in use.",
        )
        .expect("valid metric");
        let certificate_expiry = Gauge::new(
            "hubguard_tls_certificate_expiry_timestamp_seconds",
            "When the self-managed serving certificate expires (Unix time; 0 when not self-managed).",
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(violations.clone()),
            Box::new(reload_errors.clone()),
            Box::new(policy_info.clone()),
            Box::new(tls_reload_errors.clone()),
            Box::new(certificate_expiry.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            duration,
            violations,
            reload_errors,
            policy_info,
            tls_reload_errors,
            certificate_expiry,
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
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
