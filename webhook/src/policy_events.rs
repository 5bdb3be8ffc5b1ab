//! A refused policy reload as a Kubernetes Event on the policy's ConfigMap, so that whoever
//! pushed the broken policy sees the refusal where they pushed it (`kubectl describe configmap`,
//! `kubectl get events`), not only in the webhook's log and metrics.

use std::sync::Arc;

use hubguard_daemon::policy_store::ReloadObserver;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// An Event's note is limited to 1 kB by the API server.
const NOTE_LIMIT: usize = 1000;

/// The ConfigMap the policy file is mounted from, as `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfigMap {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for PolicyConfigMap {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(PolicyConfigMap {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("'{text}' is not NAMESPACE/NAME")),
        }
    }
}

/// What the webhook's policy store reports to: its metrics, and (with cluster credentials and a
/// ConfigMap to name) an Event per refusal.
pub struct Reloads {
    pub metrics: Arc<Metrics>,
    events: Option<mpsc::UnboundedSender<String>>,
}

impl Reloads {
    pub fn metrics_only(metrics: Arc<Metrics>) -> Reloads {
        Reloads {
            metrics,
            events: None,
        }
    }

    /// Events are sent from a task of their own: a reload never waits on the API server.
    pub fn with_events(
        metrics: Arc<Metrics>,
        client: Client,
        configmap: PolicyConfigMap,
        instance: String,
    ) -> Reloads {
        let (sender, mut refusals) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let recorder = Recorder::new(
                client,
                Reporter {
                    controller: "hubguard-webhook".into(),
                    instance: Some(instance),
                },
            );
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
                namespace: Some(configmap.namespace.clone()),
                name: Some(configmap.name.clone()),
                ..ObjectReference::default()
            };
            while let Some(error) = refusals.recv().await {
                let mut note = format!("refused; the last good policy stays in force: {error}");
                if note.len() > NOTE_LIMIT {
                    let mut end = NOTE_LIMIT;
                    while !note.is_char_boundary(end) {
                        end -= 1;
                    }
                    note.truncate(end);
                }
                let event = Event {
                    type_: EventType::Warning,
                    reason: "PolicyRefused".into(),
                    note: Some(note),
                    action: "Reload".into(),
                    secondary: None,
                };
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, configmap = %configmap.name, "could not record the refusal as an Event");
                }
            }
        });
        Reloads {
            metrics,
            events: Some(sender),
        }
    }
}

impl ReloadObserver for Reloads {
    fn loaded(&self, policy: &str, generation: u64) {
        self.metrics.loaded(policy, generation);
    }

    fn refused(&self, error: &str) {
        self.metrics.refused(error);
        if let Some(events) = &self.events {
            let _ = events.send(error.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_references() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "hubguard/hubguard-policy",
                Some(("hubguard", "hubguard-policy")),
            ),
            ("hubguard-policy", None),
            ("/x", None),
            ("x/", None),
            ("a/b/c", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<PolicyConfigMap>().ok();
            let want = want.map(|(n, m)| PolicyConfigMap {
                namespace: n.into(),
                name: m.into(),
            });
            assert_eq!(got, want, "{text}");
        }
    }
}
