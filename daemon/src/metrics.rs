//! The one way hubguard's processes define metrics. The recorder owns the rules of
//! docs/metrics.md, so a metric that breaks them is refused where it is defined rather than
//! found on a dashboard: every name starts with `hubguard_`; counters, and only counters, end
//! in `_total`; histograms measure durations and end in `_seconds`; labels come from a fixed
//! list of bounded dimensions, none of which names a pod, a user or an address.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The labels a hubguard metric may carry. Each has few values: an admission operation, a kind,
/// a decision, a mode, a policy and its generation, a rule, a namespace (one per hub), a pod
/// class, a denial reason, a kernel map's name.
pub const LABELS: &[&str] = &[
    "operation",
    "kind",
    "decision",
    "mode",
    "policy",
    "generation",
    "rule",
    "namespace",
    "pod_class",
    "reason",
    "map",
    // the outcome of a write the daemon makes to the cluster (applied, failed)
    "result",
    // one of the agent's fixed watches of the API server (node_pods, services, namespace_pods)
    "watch",
    // a cgroup the node agent attaches its programs to, as configured: the pods' tree, or a
    // standalone hub's listed cgroups (never a pod's own)
    "attach_point",
];

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    #[error("metric {name}: {problem} (docs/metrics.md)")]
    Rule { name: String, problem: String },
    #[error("metric {name}: {source}")]
    Prometheus {
        name: String,
        #[source]
        source: prometheus::Error,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn check(name: &str, kind: Kind, labels: &[&str]) -> Result<(), MetricError> {
    let problem = |problem: String| {
        Err(MetricError::Rule {
            name: name.to_string(),
            problem,
        })
    };
    if !name.starts_with("hubguard_") {
        return problem("the name must start with hubguard_".into());
    }
    match kind {
        Kind::Counter if !name.ends_with("_total") => {
            return problem("a counter's name must end in _total".into())
        }
        Kind::Gauge | Kind::Histogram if name.ends_with("_total") => {
            return problem("only a counter's name ends in _total".into())
        }
        Kind::Histogram if !name.ends_with("_seconds") => {
            return problem("a histogram measures a duration: its name ends in _seconds".into())
        }
        _ => {}
    }
    for (i, label) in labels.iter().enumerate() {
        if !LABELS.contains(label) {
            return problem(format!(
                "label '{label}' is not one of the bounded labels {LABELS:?}"
            ));
        }
        if labels[..i].contains(label) {
            return problem(format!("label '{label}' is given twice"));
        }
    }
    Ok(())
}

/// A registry that only takes metrics following the rules.
#[derive(Default)]
pub struct Recorder {
    registry: Registry,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    fn register<C: Collector + Clone + 'static>(
        &self,
        name: &str,
        metric: Result<C, prometheus::Error>,
    ) -> Result<C, MetricError> {
        let prometheus = |source| MetricError::Prometheus {
            name: name.to_string(),
            source,
        };
        let metric = metric.map_err(prometheus)?;
        self.registry
            .register(Box::new(metric.clone()))
            .map_err(prometheus)?;
        Ok(metric)
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricError> {
        check(name, Kind::Counter, &[])?;
        self.register(name, IntCounter::new(name, help))
    }

    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricError> {
        check(name, Kind::Counter, labels)?;
        self.register(name, IntCounterVec::new(Opts::new(name, help), labels))
    }

    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricError> {
        check(name, Kind::Gauge, &[])?;
        self.register(name, IntGauge::new(name, help))
    }

    /// A gauge with a fractional value (a timestamp, a ratio).
    pub fn float_gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricError> {
        check(name, Kind::Gauge, &[])?;
        self.register(name, Gauge::new(name, help))
    }

    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricError> {
        check(name, Kind::Gauge, labels)?;
        self.register(name, IntGaugeVec::new(Opts::new(name, help), labels))
    }

    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricError> {
        check(name, Kind::Histogram, &[])?;
        self.register(
            name,
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_hold_at_definition() {
        // (name, kind, labels, refused because)
        let cases: &[(&str, Kind, &[&str], Option<&str>)] = &[
            (
                "hubguard_admission_requests_total",
                Kind::Counter,
                &["operation", "kind"],
                None,
            ),
            (
                "hubguard_node_agent_unresolved_pods",
                Kind::Gauge,
                &[],
                None,
            ),
            (
                "hubguard_admission_duration_seconds",
                Kind::Histogram,
                &[],
                None,
            ),
            (
                "admission_requests_total",
                Kind::Counter,
                &[],
                Some("start with hubguard_"),
            ),
            (
                "hubguard_requests",
                Kind::Counter,
                &[],
                Some("must end in _total"),
            ),
            (
                "hubguard_pods_total",
                Kind::Gauge,
                &[],
                Some("only a counter"),
            ),
            ("hubguard_latency", Kind::Histogram, &[], Some("_seconds")),
            (
                "hubguard_denied_total",
                Kind::Counter,
                &["pod"],
                Some("label 'pod'"),
            ),
            (
                "hubguard_denied_total",
                Kind::Counter,
                &["user"],
                Some("label 'user'"),
            ),
            (
                "hubguard_denied_total",
                Kind::Counter,
                &["destination"],
                Some("label 'destination'"),
            ),
            (
                "hubguard_denied_total",
                Kind::Counter,
                &["reason", "reason"],
                Some("twice"),
            ),
        ];
        for (name, kind, labels, refused) in cases {
            let got = check(name, *kind, labels);
            match refused {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(because) => {
                    let error = got.expect_err(name).to_string();
                    assert!(error.contains(because), "{name}: {error}");
                }
            }
        }
    }

    #[test]
    fn a_name_is_registered_once() {
        let recorder = Recorder::new();
        recorder.counter("hubguard_x_total", "x").unwrap();
        let again = recorder.counter("hubguard_x_total", "x").unwrap_err();
        assert!(again.to_string().contains("hubguard_x_total"), "{again}");
    }
}
