//! The webhook's two reads of the cluster: a pod's labels for exec, attach and port-forward
//! requests (whose object is only the options of the call; RBAC: get pods), and the DaskCluster
//! a tenant's DaskWorkerGroup names (RBAC: get daskclusters).

use std::collections::BTreeMap;
use std::time::Duration;

use hubguard_policy::pod::ClusterLookup;
use hubguard_policy::Policy;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::Client;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

pub enum PodDirectory {
    Cluster(Client),
    /// No cluster credentials: tenants' exec requests are refused, saying why.
    Unavailable(String),
}

impl PodDirectory {
    pub fn new(client: Result<Client, String>) -> Self {
        match client {
            Ok(client) => PodDirectory::Cluster(client),
            Err(why) => {
                tracing::warn!(
                    reason = %why,
                    "no cluster credentials: exec, attach and port-forward by tenants will be refused"
                );
                PodDirectory::Unavailable(format!("the webhook cannot read pods: {why}"))
            }
        }
    }

    pub async fn labels(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        let client = match self {
            PodDirectory::Cluster(client) => client.clone(),
            PodDirectory::Unavailable(why) => return Err(why.clone()),
        };
        let api: Api<Pod> = Api::namespaced(client, namespace);
        match tokio::time::timeout(LOOKUP_TIMEOUT, api.get_metadata(name)).await {
            Ok(Ok(meta)) => Ok(meta.metadata.labels.unwrap_or_default()),
            Ok(Err(error)) => Err(format!("reading the pod failed: {error}")),
            Err(_) => Err(format!(
                "reading the pod took longer than {LOOKUP_TIMEOUT:?}"
            )),
        }
    }
}

impl PodDirectory {
    /// The tenant recorded on DaskCluster `namespace/name`, or why it could not be read.
    pub async fn dask_cluster_tenant(
        &self,
        policy: &Policy,
        namespace: &str,
        name: &str,
    ) -> ClusterLookup {
        let client = match self {
            PodDirectory::Cluster(client) => client.clone(),
            PodDirectory::Unavailable(why) => {
                return Err(why.replace("cannot read pods", "cannot read DaskClusters"))
            }
        };
        let gvk = GroupVersionKind::gvk("kubernetes.dask.org", "v1", "DaskCluster");
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, namespace, &ApiResource::from_gvk(&gvk));
        match tokio::time::timeout(LOOKUP_TIMEOUT, api.get(name)).await {
            Ok(Ok(cluster)) => {
                let value = serde_json::to_value(&cluster)
                    .map_err(|e| format!("reading the DaskCluster failed: {e}"))?;
                Ok(policy.cluster_tenant(&value))
            }
            Ok(Err(error)) => Err(format!("reading the DaskCluster failed: {error}")),
            Err(_) => Err(format!(
                "reading the DaskCluster took longer than {LOOKUP_TIMEOUT:?}"
            )),
        }
    }
}
