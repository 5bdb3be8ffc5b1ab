//! How a hubguard daemon reaches the cluster.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A client from `kubeconfig` if given, otherwise the in-cluster service account (or the
/// usual kubeconfig search); the reason if there is none.
pub async fn cluster_client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => match Kubeconfig::read_from(path) {
            Ok(kc) => Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) => Err(format!("{}: {e}", path.display())),
        },
        None => Config::infer().await.map_err(|e| e.to_string()),
    };
    config.and_then(|c| Client::try_from(c).map_err(|e| e.to_string()))
}
