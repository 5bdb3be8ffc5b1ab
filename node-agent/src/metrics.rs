//! The node agent's Prometheus metrics (docs/metrics.md). Labels take namespaces, classes and
//! reasons only: never a pod, a user or an address.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hubguard_daemon::metrics::Recorder;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

pub struct AgentMetrics {
    recorder: Recorder,
    pub metadata_denied: IntCounterVec,
    pub egress_denied: IntCounterVec,
    pub policy_pods: IntGaugeVec,
    pub kernel_denials: IntCounterVec,
    pub credential_grant_uses: IntCounterVec,
    pub events_lost: IntCounter,
    pub logs_suppressed: IntCounter,
    pub reload_errors: IntCounter,
    pub sync_errors: IntCounter,
    pub watch_errors: IntCounterVec,
    pub unresolved_pods: IntGauge,
    pub unrecorded_pods: IntGauge,
    pub unresolved_destinations: IntGauge,
    pub dry_run: IntGauge,
    pub map_entries: IntGaugeVec,
    pub rule_swaps: IntCounter,
    pub attach_point_guarded: IntGaugeVec,
    pub reattached: IntCounter,
}

/// The definitions are fixed and covered by this crate's tests: a rule they broke would fail
/// every test, never a running agent.
const DEFINED: &str = "the agent's metric definitions follow the recorder's rules";

impl AgentMetrics {
    pub fn new() -> Self {
        let recorder = Recorder::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            recorder.counter_vec(name, help, labels).expect(DEFINED)
        };
        let counter = |name: &str, help: &str| recorder.counter(name, help).expect(DEFINED);
        let gauge = |name: &str, help: &str| recorder.gauge(name, help).expect(DEFINED);
        AgentMetrics {
            policy_pods: recorder
                .gauge_vec(
                    "hubguard_egress_policy_pods",
                    "Pods (standalone: cgroups) on this node mapped to each class's egress rules.",
                    &["pod_class"],
                )
                .expect(DEFINED),
            metadata_denied: counter_vec(
                "hubguard_metadata_denied_total",
                "Connections and datagrams to a cloud metadata endpoint denied (or, in dry run, that would be).",
                &["namespace", "pod_class"],
            ),
            egress_denied: counter_vec(
                "hubguard_egress_denied_total",
                "Other egress denied (or, in dry run, that would be), by reason: destination, port, dns, socket (a raw or ICMP echo socket refused at creation) or option (IPv4 options or an IPv6 extension header refused at setsockopt).",
                &["namespace", "pod_class", "reason"],
            ),
            kernel_denials: counter_vec(
                "hubguard_node_agent_kernel_denials_total",
                "Denials the kernel counted since its maps were created, by class and reason; exact even when events are lost.",
                &["pod_class", "reason"],
            ),
            credential_grant_uses: counter_vec(
                "hubguard_node_agent_credential_grant_connects_total",
                "Connections and datagrams to a credential endpoint that the policy grants the class (network.credentialGrants).",
                &["pod_class"],
            ),
            events_lost: counter(
                "hubguard_node_agent_events_lost_total",
                "Denial events the kernel could not queue (ring buffer full): counted, not logged.",
            ),
            logs_suppressed: counter(
                "hubguard_node_agent_denial_logs_suppressed_total",
                "Denial log lines dropped by the rate limit (the metrics still count them).",
            ),
            reload_errors: counter(
                "hubguard_policy_reload_errors_total",
                "Policy files refused on reload; the last good policy stays in force.",
            ),
            sync_errors: counter(
                "hubguard_node_agent_sync_errors_total",
                "Failed attempts to bring the kernel maps up to date (retried).",
            ),
            watch_errors: counter_vec(
                "hubguard_node_agent_watch_errors_total",
                "Failed lists and watches of the API server, by watch (node_pods, services, namespace_pods); each is retried with backoff, and until node_pods is back new pods on this node have no egress.",
                &["watch"],
            ),
            unresolved_pods: gauge(
                "hubguard_node_agent_unresolved_pods",
                "Pods on this node whose cgroup was not found yet: they get the strictest class.",
            ),
            unrecorded_pods: gauge(
                "hubguard_node_agent_unrecorded_pods",
                "Pods on this node in governed namespaces with no identity recorded at admission (created before hubguard, or past its webhook): they get the strictest class.",
            ),
            unresolved_destinations: gauge(
                "hubguard_node_agent_unresolved_destinations",
                "Services and namespaces named by egress rules that resolve to no address.",
            ),
            dry_run: gauge(
                "hubguard_node_agent_dry_run",
                "1 when the agent only counts and logs what it would deny.",
            ),
            map_entries: recorder
                .gauge_vec(
                    "hubguard_node_agent_map_entries",
                    "Entries in each kernel map that grows with pods and policy, after the last sync (the policy's maps: in the live rule set): flat while pods come and go.",
                    &["map"],
                )
                .expect(DEFINED),
            rule_swaps: counter(
                "hubguard_node_agent_rule_swaps_total",
                "New rule sets made live in the kernel (a policy reload, or new addresses for the names its rules use), each in one atomic step.",
            ),
            attach_point_guarded: recorder
                .gauge_vec(
                    "hubguard_node_agent_attach_point_guarded",
                    "1 when the programs are attached at this configured cgroup, 0 when it is missing or could not be attached: what runs under it is not guarded, and the agent is not ready.",
                    &["attach_point"],
                )
                .expect(DEFINED),
            reattached: counter(
                "hubguard_node_agent_reattached_total",
                "Attach points the programs were attached to again after their cgroup was removed and made anew.",
            ),
            recorder,
        }
    }

    pub fn render(&self) -> String {
        self.recorder.render()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Ready while the programs are attached at every attach point and the maps are filled from a
/// complete view.
#[derive(Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the operations port serves for the agent; `before_scrape` refreshes what is read
/// from the kernel.
pub struct AgentOps {
    pub metrics: Arc<AgentMetrics>,
    pub readiness: Arc<Readiness>,
    pub before_scrape: Arc<dyn Fn() + Send + Sync>,
}

impl hubguard_daemon::ops::Operations for AgentOps {
    fn metrics_text(&self) -> String {
        (self.before_scrape)();
        self.metrics.render()
    }

    fn ready(&self) -> bool {
        self.readiness.ready()
    }
}

impl hubguard_daemon::policy_store::ReloadObserver for AgentMetrics {
    fn loaded(&self, _policy: &str, _generation: u64) {}

    fn refused(&self, _error: &str) {
        self.reload_errors.inc();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_follows_the_recorders_rules() {
        // Defining them all panics on the first that breaks a rule.
        let metrics = super::AgentMetrics::new();
        assert!(metrics.render().contains("hubguard_"));
    }
}
