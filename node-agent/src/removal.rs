//! Whether this agent's DaemonSet is being removed (`helm uninstall`, `kubectl delete`): then the
//! agent takes its programs and maps with it when it stops. Any other stop (a restart, a rolling
//! upgrade, an eviction) leaves them pinned and enforcing, so the next agent adopts them without
//! a gap.
//!
//! The DaemonSet is watched from the start because by the time the agent is told to stop, the
//! release's RBAC and service account may already be gone and a fresh look-up would fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

/// The DaemonSet that runs this agent, as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSetRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for DaemonSetRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(DaemonSetRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("'{text}' is not NAMESPACE/NAME")),
        }
    }
}

/// Set once the DaemonSet was seen deleted or marked for deletion.
#[derive(Clone, Default)]
pub struct Removal(Arc<AtomicBool>);

impl Removal {
    pub fn removed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Follows the DaemonSet until the process ends.
    pub fn watch(&self, client: Client, daemonset: DaemonSetRef) {
        let flag = self.0.clone();
        tokio::spawn(async move {
            let api: Api<DaemonSet> = Api::namespaced(client, &daemonset.namespace);
            let config =
                watcher::Config::default().fields(&format!("metadata.name={}", daemonset.name));
            let mut seen = false;
            let mut events = watcher::watcher(api, config).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(ds) | Event::InitApply(ds)) => {
                        seen = true;
                        if ds.metadata.deletion_timestamp.is_some() {
                            flag.store(true, Ordering::SeqCst);
                            tracing::info!(daemonset = %daemonset.name, "the DaemonSet is being deleted: the programs go with this agent");
                        }
                    }
                    Ok(Event::Delete(_)) => {
                        flag.store(true, Ordering::SeqCst);
                        tracing::info!(daemonset = %daemonset.name, "the DaemonSet was deleted: the programs go with this agent");
                    }
                    Ok(Event::InitDone) if !seen => {
                        tracing::warn!(daemonset = %daemonset.name, namespace = %daemonset.namespace, "no such DaemonSet: the programs will stay when this agent stops")
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "watching the agent's DaemonSet");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemonset_references() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "hubguard/hubguard-node-agent",
                Some(("hubguard", "hubguard-node-agent")),
            ),
            ("hubguard-node-agent", None),
            ("/name", None),
            ("ns/", None),
            ("a/b/c", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<DaemonSetRef>().ok();
            let want = want.map(|(n, m)| DaemonSetRef {
                namespace: n.into(),
                name: m.into(),
            });
            assert_eq!(got, want, "{text}");
        }
    }
}
