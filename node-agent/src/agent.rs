//! The agent's life: load and attach (or adopt), then keep the maps equal to what the policy
//! and the node's pods (or the standalone cgroups) call for, until told to stop. Stopping
//! leaves the programs attached: their links are pinned.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hubguard_daemon::policy_store::{PolicyStore, Reload, StoreError};
use hubguard_policy::Policy;
use tokio::sync::Notify;

use crate::abi::Reason;
use crate::attach_points::AttachPoints;
use crate::cgroups::{self, CgroupError};
use crate::classes::ClassId;
use crate::cluster::Watches;
use crate::desired::{self, Plan};
use crate::events::{self, DenialSink, Owners};
use crate::kernel::{Desired, Kernel, KernelError};
use crate::metrics::{self, AgentMetrics, Readiness};
use crate::node_taint;
use crate::removal::{DaemonSetRef, Removal};
use crate::rules::{self, CompileError, Compiled, Resolved};

pub enum Source {
    /// This node's pods, from the API server.
    Cluster {
        node_name: String,
        kubeconfig: Option<PathBuf>,
        /// The root of the pods' cgroups; found under the cgroup mount when not given.
        pods_cgroup: Option<PathBuf>,
        /// The DaemonSet running this agent: when it is removed, so are the programs.
        daemonset: Option<DaemonSetRef>,
    },
    /// Cgroups given on the command line, each with its class; no Kubernetes.
    Standalone { cgroups: Vec<(PathBuf, ClassId)> },
}

pub struct Config {
    pub policy: PathBuf,
    pub source: Source,
    pub cgroup_root: Option<PathBuf>,
    pub pin_dir: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    pub dry_run: bool,
    pub reload_interval: Duration,
    /// How often pods whose cgroup is missing are looked for again.
    pub resync_interval: Duration,
    /// Called after loading the programs (which parses the kernel's BTF: about 20 MiB, freed
    /// at once) and after map writes: the binary's allocator may hand freed memory back here.
    pub release_memory: Option<fn()>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Policy(#[from] StoreError),
    #[error("policy {file}: {error}")]
    Rules { file: String, error: CompileError },
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("no cluster credentials: {0} (use --standalone on a host without Kubernetes)")]
    Cluster(String),
    #[error("metrics listener on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// The node agent's own check of a policy: its rules must compile for the kernel.
fn kernel_check(policy: &Policy) -> Result<(), String> {
    rules::compile(policy, &Resolved::default())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

struct Cluster {
    watches: Watches,
    pods_tree: PathBuf,
    own_cgroup: Option<PathBuf>,
    client: kube::Client,
    node_name: String,
    /// Whether the not-ready taint is known to be off this node.
    untainted: bool,
}

pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let metrics = Arc::new(AgentMetrics::new());
    let store = PolicyStore::open_checked(&config.policy, metrics.clone(), Box::new(kernel_check))?;
    let mut policy = store.current();
    let cgroup_root = match &config.cgroup_root {
        Some(root) => root.clone(),
        None => cgroups::find_cgroup2_mount()?,
    };
    let kernel = Arc::new(Mutex::new(Kernel::load(&config.pin_dir)?));
    if let Some(release) = config.release_memory {
        release();
    }
    metrics.dry_run.set(i64::from(config.dry_run));
    let readiness = Arc::new(Readiness::default());
    let owners: Owners = Arc::new(RwLock::new(HashMap::new()));

    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| AgentError::Listen { addr, error })?;
        let before_scrape = kernel_counters_refresher(kernel.clone(), metrics.clone());
        let app = hubguard_daemon::ops::router(Arc::new(metrics::AgentOps {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            before_scrape,
        }));
        tracing::info!(%addr, "metrics and health listening");
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "metrics listener failed");
            }
        });
    }
    if let Some(ring) = kernel.lock().expect("kernel lock").take_events() {
        let sink = DenialSink::new(owners.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(error) = events::follow(ring, sink).await {
                tracing::error!(%error, "reading denial events failed; denials are still counted by the kernel");
            }
        });
    }

    let notify = Arc::new(Notify::new());
    let removal = Removal::default();
    tokio::pin!(shutdown);
    let (attach_points, mut cluster) = match &config.source {
        Source::Standalone { cgroups } => (
            cgroups.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
            None,
        ),
        Source::Cluster {
            node_name,
            kubeconfig,
            pods_cgroup,
            daemonset,
        } => {
            let pods_tree = match pods_cgroup {
                Some(p) => p.clone(),
                None => loop {
                    match cgroups::find_pods_tree(&cgroup_root) {
                        Ok(tree) => break tree,
                        Err(error) => tracing::warn!(%error, "waiting for kubelet's pod cgroups"),
                    }
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                },
            };
            let client = hubguard_daemon::kube_client::cluster_client(kubeconfig.as_deref())
                .await
                .map_err(AgentError::Cluster)?;
            if let Some(daemonset) = daemonset {
                removal.watch(client.clone(), daemonset.clone());
            }
            let mut watches = Watches::start(
                client.clone(),
                node_name,
                notify.clone(),
                metrics.watch_errors.clone(),
            );
            watches.watch_namespaces(&desired::referenced_namespaces(&policy.policy));
            let own_cgroup = desired::own_cgroup(&cgroup_root);
            tracing::info!(node = %node_name, pods_cgroup = %pods_tree.display(), "watching this node's pods");
            (
                vec![pods_tree.clone()],
                Some(Cluster {
                    watches,
                    pods_tree,
                    own_cgroup,
                    client,
                    node_name: node_name.clone(),
                    untainted: false,
                }),
            )
        }
    };

    let mut state = SyncState::default();
    let sync_now = |policy: &Policy, cluster: Option<&Cluster>, state: &mut SyncState| {
        sync(&config, policy, cluster, &kernel, &metrics, &owners, state)
    };
    // Fill the maps before attaching where the view is already complete (standalone); in a
    // cluster, keep what an earlier agent mapped until this one has listed the node's pods.
    sync_now(&policy.policy, cluster.as_ref(), &mut state)?;
    let (mut guarded_points, report) =
        AttachPoints::attach(attach_points.clone(), &kernel, &metrics)?;
    tracing::info!(
        attached = report.attached,
        adopted = report.adopted,
        detached = ?report.detached,
        attach_points = ?attach_points,
        pin_dir = %config.pin_dir.display(),
        dry_run = config.dry_run,
        "programs in place"
    );
    readiness.set(state.complete);

    let mut resync = tokio::time::interval(config.resync_interval);
    let mut reload = tokio::time::interval(config.reload_interval);
    let mut attach_check = tokio::time::interval(ATTACH_CHECK_EVERY);
    let set_readiness = |ready: bool| {
        if ready != readiness.ready() {
            readiness.set(ready);
            if ready {
                tracing::info!(
                    "programs attached everywhere, maps filled from a complete view: ready"
                );
            } else {
                tracing::warn!("an attach point is unguarded: not ready");
            }
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = notify.notified() => tokio::time::sleep(Duration::from_millis(20)).await,
            _ = resync.tick() => {}
            _ = attach_check.tick() => {
                let guard = guarded_points.check(&kernel, &metrics);
                if !guard.attached {
                    set_readiness(guard.all_guarded && state.complete);
                    continue;
                }
            }
            _ = reload.tick() => match store.reload() {
                Reload::Unchanged | Reload::Refused => continue,
                Reload::Accepted { .. } => {
                    policy = store.current();
                    state.policy_generation += 1;
                    if let Some(c) = cluster.as_mut() {
                        c.watches
                            .watch_namespaces(&desired::referenced_namespaces(&policy.policy));
                    }
                }
            },
        }
        match sync_now(&policy.policy, cluster.as_ref(), &mut state) {
            Ok(()) => {
                let guard = guarded_points.check(&kernel, &metrics);
                set_readiness(guard.all_guarded && state.complete);
                if let Some(c) = cluster
                    .as_mut()
                    .filter(|c| readiness.ready() && !c.untainted)
                {
                    match node_taint::remove_not_ready_taint(&c.client, &c.node_name).await {
                        Ok(removed) => {
                            c.untainted = true;
                            if removed {
                                tracing::info!(node = %c.node_name, taint = node_taint::NOT_READY_TAINT, "enforcing: taint removed, pods may be scheduled here");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot remove the not-ready taint yet; retrying")
                        }
                    }
                }
            }
            Err(error) => {
                metrics.sync_errors.inc();
                tracing::error!(%error, "updating the kernel maps failed; retrying");
            }
        }
    }
    if removal.removed() {
        let removed = crate::kernel::uninstall(&config.pin_dir)?;
        tracing::info!(pin_dir = %config.pin_dir.display(), removed = removed.len(), "stopping with the DaemonSet removed: programs detached, maps removed");
    } else {
        tracing::info!("stopping; the programs stay attached through their pinned links");
    }
    Ok(())
}

/// How often the attach points' cgroups are looked at (a stat each): a cgroup made anew is
/// unguarded at most this long.
const ATTACH_CHECK_EVERY: Duration = Duration::from_millis(500);

/// How often the maps are compared with the plan even when nothing changed, in case
/// something else wrote to them.
const FULL_SYNC_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct SyncState {
    complete: bool,
    unresolved_destinations: BTreeSet<String>,
    unresolved_pods: Vec<String>,
    unrecorded_pods: Vec<String>,
    /// Bumped on every policy reload.
    policy_generation: u64,
    /// The last compilation and what it was compiled from: 10,000 rules are compiled once,
    /// not on every resync.
    compiled: Option<(u64, Resolved, Compiled)>,
    /// What the maps were last made equal to, and when.
    applied: Option<(Desired, Instant)>,
}

fn sync(
    config: &Config,
    policy: &Policy,
    cluster: Option<&Cluster>,
    kernel: &Mutex<Kernel>,
    metrics: &AgentMetrics,
    owners: &Owners,
    state: &mut SyncState,
) -> Result<(), AgentError> {
    let (cgroups, resolved, complete) = match (cluster, &config.source) {
        (Some(c), _) => {
            let inventory = c.watches.inventory();
            let cgroups =
                desired::cluster_cgroups(policy, &inventory, &c.pods_tree, c.own_cgroup.as_deref());
            let resolved = desired::cluster_resolved(policy, &inventory);
            let complete = inventory.node_pods_listed && inventory.services_listed;
            (cgroups, resolved, complete)
        }
        (None, Source::Standalone { cgroups }) => {
            let cgroups = desired::standalone_cgroups(cgroups);
            let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let resolved = desired::standalone_resolved(policy, &resolv_conf);
            (cgroups, resolved, true)
        }
        (None, Source::Cluster { .. }) => unreachable!("a cluster source has its inventory"),
    };
    let fresh = matches!(&state.compiled, Some((generation, from, _)) if *generation == state.policy_generation && *from == resolved);
    if !fresh {
        let compiled = rules::compile(policy, &resolved).map_err(|error| AgentError::Rules {
            file: config.policy.display().to_string(),
            error,
        })?;
        state.compiled = Some((state.policy_generation, resolved, compiled));
    }
    let (_, _, compiled) = state.compiled.as_ref().expect("compiled above");
    let plan: Plan = desired::plan(compiled, cgroups, config.dry_run);

    let unchanged = matches!(&state.applied, Some((desired, at)) if *desired == plan.desired && at.elapsed() < FULL_SYNC_EVERY);
    if !unchanged || !complete {
        let report = kernel
            .lock()
            .expect("kernel lock")
            .sync(&plan.desired, complete)?;
        if report.written + report.removed > 0 {
            tracing::debug!(
                written = report.written,
                removed = report.removed,
                complete,
                "maps updated"
            );
            if let Some(release) = config.release_memory {
                release();
            }
        }
        for (map, entries) in report.entries.by_map() {
            metrics
                .map_entries
                .with_label_values(&[map])
                .set(entries as i64);
        }
        if report.swapped {
            metrics.rule_swaps.inc();
        }
        state.applied = complete.then(|| (plan.desired.clone(), Instant::now()));
    }
    for class in ClassId::ALL {
        let pods = plan.pods_per_class.get(&class).copied().unwrap_or(0);
        metrics
            .policy_pods
            .with_label_values(&[class.as_str()])
            .set(pods);
    }
    metrics
        .unresolved_pods
        .set(plan.unresolved_pods.len() as i64);
    metrics
        .unrecorded_pods
        .set(plan.unrecorded_pods.len() as i64);
    if complete && plan.unrecorded_pods != state.unrecorded_pods {
        if !plan.unrecorded_pods.is_empty() {
            tracing::warn!(pods = ?plan.unrecorded_pods, "pods with no identity recorded at admission (created before hubguard, or past its webhook): strictest class");
        }
        state.unrecorded_pods = plan.unrecorded_pods.clone();
    }
    metrics
        .unresolved_destinations
        .set(plan.unresolved_destinations.len() as i64);
    if complete && plan.unresolved_destinations != state.unresolved_destinations {
        if !plan.unresolved_destinations.is_empty() {
            tracing::warn!(names = ?plan.unresolved_destinations, "egress rules name destinations with no address yet: they open nothing");
        }
        state.unresolved_destinations = plan.unresolved_destinations.clone();
    }
    if complete && plan.unresolved_pods != state.unresolved_pods {
        if !plan.unresolved_pods.is_empty() {
            tracing::info!(pods = ?plan.unresolved_pods, "pods without a cgroup yet: strictest class until found");
        }
        state.unresolved_pods = plan.unresolved_pods.clone();
    }
    *owners.write().expect("owners lock") = plan.owners;
    state.complete = complete;
    Ok(())
}

/// Before each scrape: the kernel's exact counters into their metrics.
fn kernel_counters_refresher(
    kernel: Arc<Mutex<Kernel>>,
    metrics: Arc<AgentMetrics>,
) -> Arc<dyn Fn() + Send + Sync> {
    let seen: Mutex<HashMap<(ClassId, Reason), u64>> = Mutex::new(HashMap::new());
    Arc::new(move || {
        let counts = match kernel.lock().expect("kernel lock").denial_counts() {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(%error, "reading the kernel's counters failed");
                return;
            }
        };
        let mut seen = seen.lock().expect("counter lock");
        for (class, reason, total) in counts {
            let last = seen.insert((class, reason), total).unwrap_or(0);
            let delta = total.saturating_sub(last);
            if delta == 0 {
                continue;
            }
            let label = match reason {
                Reason::EventLost => {
                    metrics.events_lost.inc_by(delta);
                    continue;
                }
                Reason::GrantUsed => {
                    metrics
                        .credential_grant_uses
                        .with_label_values(&[class.as_str()])
                        .inc_by(delta);
                    continue;
                }
                Reason::Metadata => "metadata",
                Reason::Destination => "destination",
                Reason::Socket => "socket",
                Reason::Option => "option",
                Reason::Port => "port",
            };
            metrics
                .kernel_denials
                .with_label_values(&[class.as_str(), label])
                .inc_by(delta);
        }
    })
}
