//! What the agent knows of the cluster: this node's pods (a field-selected watch), Services'
//! cluster IPs and selectors, and the pods (IPs, labels, recorded tenant) of the namespaces the
//! policy's rules name. Each is a kube reflector store, which swaps in a relist only once it is
//! complete (a restarted watch never shows a half-empty view); every change wakes the sync
//! loop, which reads a snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A snapshot of what the watches hold, for one sync.
#[derive(Debug, Default)]
pub struct Inventory {
    /// This node's pods by UID.
    pub node_pods: HashMap<String, NodePod>,
    /// `namespace/name` → cluster IPs.
    pub services: HashMap<String, Vec<IpAddr>>,
    /// `namespace/name` → the Service's pod selector, for Services that have one (the others
    /// route wherever their hand-made endpoints say, so they stand for no pods).
    pub service_selectors: HashMap<String, BTreeMap<String, String>>,
    /// namespace → pod UID → its IPs and recorded tenant.
    pub namespace_pods: HashMap<String, HashMap<String, PeerPod>>,
    pub node_pods_listed: bool,
    pub services_listed: bool,
}

/// A pod of a namespace the rules name: where it is, and whose (as admission recorded it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPod {
    pub ips: Vec<IpAddr>,
    pub tenant: Option<String>,
    /// What Services select it by.
    pub labels: BTreeMap<String, String>,
}

fn peer_pod(pod: &Pod) -> PeerPod {
    PeerPod {
        ips: pod_ips(pod),
        tenant: pod
            .labels()
            .get(hubguard_policy::identity::TENANT_LABEL)
            .cloned(),
        labels: pod.labels().clone(),
    }
}

/// One watched kind: its store, whether its first list is in, and the task feeding it.
struct Reflected<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    listed: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl<K> Reflected<K>
where
    K: Resource + Clone + Debug + Send + Sync + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    fn start(
        name: &'static str,
        api: Api<K>,
        config: watcher::Config,
        backoff: impl Backoff + 'static,
        notify: Arc<Notify>,
        errors: IntCounterVec,
    ) -> Self {
        let (store, writer) = reflector::store();
        let listed = Arc::new(AtomicBool::new(false));
        let events = reflector::reflector(writer, watcher::watcher(api, config).backoff(backoff));
        let first_list = listed.clone();
        let task = tokio::spawn(async move {
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::InitDone) => {
                        first_list.store(true, Ordering::SeqCst);
                        notify.notify_one();
                    }
                    // The store takes a relist in whole at InitDone.
                    Ok(Event::Init | Event::InitApply(_)) => {}
                    Ok(Event::Apply(_) | Event::Delete(_)) => notify.notify_one(),
                    Err(error) => {
                        errors.with_label_values(&[name]).inc();
                        tracing::warn!(watch = name, %error, "watch failed; retrying with backoff")
                    }
                }
            }
        });
        Reflected {
            store,
            listed,
            task,
        }
    }

    fn listed(&self) -> bool {
        self.listed.load(Ordering::SeqCst)
    }
}

/// How long a failed watch waits before it tries again: client-go's steps (0.8 s doubling, with
/// jitter, back to the start after two quiet minutes) up to `ceiling`.
fn watch_backoff(ceiling: Duration) -> impl Backoff {
    let steps = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(ceiling)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(
        watcher::ExponentialBackoff::from(steps),
        Duration::from_secs(120),
    )
}

/// This node's pods: until the agent sees a new pod, the pod has no class and so no egress at all
/// (it fails closed), so after an API server outage every second of stale view is an outage for
/// a user; the watch is field-selected to one node, cheap to retry. client-go's 30 s ceiling
/// left pods created just after an API server restart without egress for up to half a minute.
const NODE_PODS_BACKOFF_CEILING: Duration = Duration::from_secs(4);
/// The cluster-wide watches every node runs keep client-go's ceiling, kind to an API server
/// that is struggling: a stale view there delays only a new Service or peer.
const CLUSTER_WIDE_BACKOFF_CEILING: Duration = Duration::from_secs(30);

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect()
}

fn service_ips(service: &Service) -> Vec<IpAddr> {
    let spec = service.spec.as_ref();
    let mut ips: Vec<IpAddr> = spec
        .and_then(|s| s.cluster_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            spec.and_then(|s| s.cluster_ip.as_ref())
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    ips
}

fn service_selector(service: &Service) -> Option<BTreeMap<String, String>> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|selector| !selector.is_empty())
}

fn node_pod(pod: &Pod) -> NodePod {
    NodePod {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        labels: pod.labels().clone(),
    }
}

/// The watches; dropping it stops them.
pub struct Watches {
    node_pods: Reflected<Pod>,
    services: Reflected<Service>,
    namespaces: HashMap<String, Reflected<Pod>>,
    client: Client,
    notify: Arc<Notify>,
    errors: IntCounterVec,
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.node_pods.task.abort();
        self.services.task.abort();
        self.namespaces.values().for_each(|r| r.task.abort());
    }
}

impl Watches {
    pub fn start(
        client: Client,
        node_name: &str,
        notify: Arc<Notify>,
        errors: IntCounterVec,
    ) -> Watches {
        let node_selector = format!("spec.nodeName={node_name}");
        Watches {
            node_pods: Reflected::start(
                "node_pods",
                Api::all(client.clone()),
                watcher::Config::default().fields(&node_selector),
                watch_backoff(NODE_PODS_BACKOFF_CEILING),
                notify.clone(),
                errors.clone(),
            ),
            services: Reflected::start(
                "services",
                Api::all(client.clone()),
                watcher::Config::default(),
                watch_backoff(CLUSTER_WIDE_BACKOFF_CEILING),
                notify.clone(),
                errors.clone(),
            ),
            namespaces: HashMap::new(),
            client,
            notify,
            errors,
        }
    }

    /// Watches exactly these namespaces' pod IPs (those the policy's rules name).
    pub fn watch_namespaces(&mut self, namespaces: &BTreeSet<String>) {
        self.namespaces.retain(|ns, reflected| {
            let keep = namespaces.contains(ns);
            if !keep {
                reflected.task.abort();
            }
            keep
        });
        for ns in namespaces {
            if !self.namespaces.contains_key(ns) {
                let reflected = Reflected::start(
                    "namespace_pods",
                    Api::namespaced(self.client.clone(), ns),
                    watcher::Config::default(),
                    watch_backoff(CLUSTER_WIDE_BACKOFF_CEILING),
                    self.notify.clone(),
                    self.errors.clone(),
                );
                self.namespaces.insert(ns.clone(), reflected);
            }
        }
    }

    /// What the stores hold now.
    pub fn inventory(&self) -> Inventory {
        let service_key =
            |s: &Service| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
        // One snapshot for both: a Service's addresses and selector from the same version.
        let services = self.services.store.state();
        Inventory {
            node_pods: self
                .node_pods
                .store
                .state()
                .iter()
                .filter_map(|p| Some((p.uid()?, node_pod(p))))
                .collect(),
            services: services
                .iter()
                .map(|s| (service_key(s), service_ips(s)))
                .collect(),
            service_selectors: services
                .iter()
                .filter_map(|s| Some((service_key(s), service_selector(s)?)))
                .collect(),
            namespace_pods: self
                .namespaces
                .iter()
                .map(|(ns, reflected)| {
                    let pods = reflected
                        .store
                        .state()
                        .iter()
                        .filter_map(|p| Some((p.uid()?, peer_pod(p))))
                        .collect();
                    (ns.clone(), pods)
                })
                .collect(),
            node_pods_listed: self.node_pods.listed(),
            services_listed: self.services.listed(),
        }
    }
}
