//! Denial events from the kernel's ring buffer: attributed to a pod (or standalone cgroup),
//! counted in the metrics, and logged with a rate limit so a flood cannot drown the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use crate::abi::Reason;
use crate::kernel::Denial;
use crate::metrics::AgentMetrics;
use crate::rules::{TCP, UDP};

/// Who owns a mapped cgroup, for the `namespace` label and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    /// The pod's name, or the standalone cgroup's path.
    pub name: String,
}

pub type Owners = Arc<RwLock<HashMap<u64, Owner>>>;

/// The `reason` label of `hubguard_egress_denied_total`.
pub fn reason_label(denial: &Denial) -> &'static str {
    if denial.reason == Reason::Socket {
        "socket"
    } else if denial.reason == Reason::Option {
        "option"
    } else if denial.port == 53 {
        "dns"
    } else if denial.reason == Reason::Port {
        "port"
    } else {
        "destination"
    }
}

fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        TCP => "TCP",
        UDP => "UDP",
        1 => "ICMP",
        58 => "ICMPv6",
        _ => "other",
    }
}

/// A token bucket: `per_second` lines on average, bursts up to `burst`.
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimit {
            per_second,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct DenialSink {
    owners: Owners,
    metrics: Arc<AgentMetrics>,
    limit: RateLimit,
    suppressed: u64,
    last_summary: Instant,
}

const SUMMARY_EVERY: Duration = Duration::from_secs(10);

impl DenialSink {
    pub fn new(owners: Owners, metrics: Arc<AgentMetrics>) -> Self {
        DenialSink {
            owners,
            metrics,
            limit: RateLimit::new(20.0, 50.0),
            suppressed: 0,
            last_summary: Instant::now(),
        }
    }

    pub fn record(&mut self, denial: &Denial) {
        let owner = self
            .owners
            .read()
            .expect("owners lock")
            .get(&denial.cgroup_id)
            .cloned()
            .unwrap_or_else(|| Owner {
                namespace: "unknown".into(),
                name: format!("cgroup {}", denial.cgroup_id),
            });
        let class = denial.class.as_str();
        let reason = if denial.reason == Reason::Metadata {
            self.metrics
                .metadata_denied
                .with_label_values(&[owner.namespace.as_str(), class])
                .inc();
            "metadata"
        } else {
            let reason = reason_label(denial);
            self.metrics
                .egress_denied
                .with_label_values(&[owner.namespace.as_str(), class, reason])
                .inc();
            reason
        };
        let now = Instant::now();
        if self.limit.allow(now) {
            log_denial(denial, &owner, reason);
        } else {
            self.suppressed += 1;
            self.metrics.logs_suppressed.inc();
        }
        self.summarise(now);
    }

    fn summarise(&mut self, now: Instant) {
        if self.suppressed > 0 && now.duration_since(self.last_summary) >= SUMMARY_EVERY {
            tracing::warn!(
                suppressed = self.suppressed,
                "denial log lines suppressed by the rate limit; the metrics count every denial"
            );
            self.suppressed = 0;
            self.last_summary = now;
        }
    }
}

fn log_denial(denial: &Denial, owner: &Owner, reason: &str) {
    let destination: IpAddr = denial.destination;
    let message = if denial.dry_run {
        "egress would be denied (dry run)"
    } else {
        "egress denied"
    };
    tracing::warn!(
        namespace = %owner.namespace,
        pod = %owner.name,
        pod_class = denial.class.as_str(),
        destination = %destination,
        port = denial.port,
        protocol = protocol_name(denial.protocol),
        reason,
        pid = denial.pid,
        layer = if denial.packet_layer { "packet" } else { "socket" },
        dry_run = denial.dry_run,
        "{message}"
    );
}

/// Reads the ring buffer until the task is dropped.
pub async fn follow(ring: RingBuf<MapData>, mut sink: DenialSink) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd holds it; nothing else
    // closes it.
    let mut fd = unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match Denial::parse(&item) {
                Some(denial) => sink.record(&denial),
                None => tracing::error!(bytes = item.len(), "malformed denial event"),
            }
        }
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10.0, 5.0);
        let burst = (0..20).filter(|_| limit.allow(start)).count();
        assert_eq!(burst, 5);
        let later = start + Duration::from_millis(500);
        let refilled = (0..20).filter(|_| limit.allow(later)).count();
        assert_eq!(refilled, 5);
    }
}
