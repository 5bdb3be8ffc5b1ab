//! What the agent knows of the cluster: this node's pods (a field-selected watch), Services'
//! cluster IPs, and the pod IPs of the namespaces the policy's rules name. Each watch replaces
//! its part of the inventory on a relist and notifies the sync loop on every change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Inventory {
    /// This node's pods by UID.
    pub node_pods: HashMap<String, NodePod>,
    /// `namespace/name` → cluster IPs.
    pub services: HashMap<String, Vec<IpAddr>>,
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
}

pub type SharedInventory = Arc<Mutex<Inventory>>;

fn peer_pod(pod: &Pod) -> PeerPod {
    PeerPod {
        ips: pod_ips(pod),
        tenant: pod
            .labels()
            .get(hubguard_policy::identity::TENANT_LABEL)
            .cloned(),
    }
}

enum Change<K> {
    Reset(Vec<K>),
    Upsert(K),
    Remove(K),
}

/// Applies a watch stream to the inventory, buffering a relist until it is complete so a
/// restarted watch never shows a half-empty view.
async fn follow<K, S, F>(
    name: &'static str,
    stream: S,
    inventory: SharedInventory,
    notify: Arc<Notify>,
    apply: F,
) where
    K: Resource + Clone + Debug + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    F: Fn(&mut Inventory, Change<K>) + Send,
{
    futures::pin_mut!(stream);
    let mut buffer: Vec<K> = Vec::new();
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(Event::Init) => {
                buffer.clear();
                continue;
            }
            Ok(Event::InitApply(object)) => {
                buffer.push(object);
                continue;
            }
            Ok(Event::InitDone) => Change::Reset(std::mem::take(&mut buffer)),
            Ok(Event::Apply(object)) => Change::Upsert(object),
            Ok(Event::Delete(object)) => Change::Remove(object),
            Err(error) => {
                tracing::warn!(watch = name, %error, "watch failed; retrying with backoff");
                continue;
            }
        };
        apply(&mut inventory.lock().expect("inventory lock"), change);
        notify.notify_one();
    }
}

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

fn node_pod(pod: &Pod) -> NodePod {
    NodePod {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        labels: pod.labels().clone(),
    }
}

/// The watches; dropping it stops them.
pub struct Watches {
    tasks: Vec<JoinHandle<()>>,
    namespace_tasks: HashMap<String, JoinHandle<()>>,
    client: Client,
    inventory: SharedInventory,
    notify: Arc<Notify>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
        self.namespace_tasks.values().for_each(JoinHandle::abort);
    }
}

impl Watches {
    pub fn start(
        client: Client,
        node_name: &str,
        inventory: SharedInventory,
        notify: Arc<Notify>,
    ) -> Watches {
        let pods: Api<Pod> = Api::all(client.clone());
        let node_selector = format!("spec.nodeName={node_name}");
        let node_stream =
            watch_with_backoff(pods, watcher::Config::default().fields(&node_selector));
        let node_task = tokio::spawn(follow(
            "node pods",
            node_stream,
            inventory.clone(),
            notify.clone(),
            |inv: &mut Inventory, change| match change {
                Change::Reset(pods) => {
                    inv.node_pods = pods
                        .iter()
                        .filter_map(|p| Some((p.uid()?, node_pod(p))))
                        .collect();
                    inv.node_pods_listed = true;
                }
                Change::Upsert(pod) => {
                    if let Some(uid) = pod.uid() {
                        inv.node_pods.insert(uid, node_pod(&pod));
                    }
                }
                Change::Remove(pod) => {
                    if let Some(uid) = pod.uid() {
                        inv.node_pods.remove(&uid);
                    }
                }
            },
        ));
        let services: Api<Service> = Api::all(client.clone());
        let service_task = tokio::spawn(follow(
            "services",
            watch_with_backoff(services, watcher::Config::default()),
            inventory.clone(),
            notify.clone(),
            |inv: &mut Inventory, change| {
                let key =
                    |s: &Service| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
                match change {
                    Change::Reset(all) => {
                        inv.services = all.iter().map(|s| (key(s), service_ips(s))).collect();
                        inv.services_listed = true;
                    }
                    Change::Upsert(s) => {
                        inv.services.insert(key(&s), service_ips(&s));
                    }
                    Change::Remove(s) => {
                        inv.services.remove(&key(&s));
                    }
                }
            },
        ));
        Watches {
            tasks: vec![node_task, service_task],
            namespace_tasks: HashMap::new(),
            client,
            inventory,
            notify,
        }
    }

    /// Watches exactly these namespaces' pod IPs (those the policy's rules name).
    pub fn watch_namespaces(&mut self, namespaces: &BTreeSet<String>) {
        self.namespace_tasks.retain(|ns, task| {
            let keep = namespaces.contains(ns);
            if !keep {
                task.abort();
            }
            keep
        });
        self.inventory
            .lock()
            .expect("inventory lock")
            .namespace_pods
            .retain(|ns, _| namespaces.contains(ns));
        for ns in namespaces {
            if self.namespace_tasks.contains_key(ns) {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let namespace = ns.clone();
            let task = tokio::spawn(follow(
                "namespace pods",
                watch_with_backoff(api, watcher::Config::default()),
                self.inventory.clone(),
                self.notify.clone(),
                move |inv: &mut Inventory, change| {
                    let pods = inv.namespace_pods.entry(namespace.clone()).or_default();
                    match change {
                        Change::Reset(all) => {
                            *pods = all
                                .iter()
                                .filter_map(|p| Some((p.uid()?, peer_pod(p))))
                                .collect();
                        }
                        Change::Upsert(p) => {
                            if let Some(uid) = p.uid() {
                                pods.insert(uid, peer_pod(&p));
                            }
                        }
                        Change::Remove(p) => {
                            if let Some(uid) = p.uid() {
                                pods.remove(&uid);
                            }
                        }
                    }
                },
            ));
            self.namespace_tasks.insert(ns.clone(), task);
        }
    }
}

/// A watch that retries with backoff after errors.
fn watch_with_backoff<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + Debug + Send + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Default,
{
    kube::runtime::watcher(api, config).default_backoff()
}
