//! The HTTP side of admission: `/validate` and `/mutate` take an AdmissionReview and answer
//! one, and every answer is counted. Bad bodies get a 4xx saying what is wrong.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hubguard_policy::objects::layout_kinds;
use hubguard_policy::Policy;
use kube::core::admission::{AdmissionRequest, AdmissionReview};

use crate::admission::{self, Decision, Outcome, Subject};
use crate::metrics::{Metrics, DRY_RUN_MODE};
use crate::object::RawObject;
use crate::pods::PodDirectory;
use hubguard_daemon::policy_store::PolicyStore;

/// Larger than any object etcd stores (1.5 MiB by default) with its old version beside it.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Distinct namespaces kept as label values; beyond this they count as "_other", so that
/// reviews sent straight to the webhook cannot grow the metrics without bound.
const MAX_NAMESPACE_LABELS: usize = 512;

pub struct AppState {
    pub policies: Arc<PolicyStore>,
    pub metrics: Arc<Metrics>,
    pub pods: PodDirectory,
    /// Benchmark baseline: parse and answer "allowed" without judging anything.
    pub allow_all: bool,
    namespaces: Mutex<HashSet<String>>,
}

impl AppState {
    pub fn new(
        policies: Arc<PolicyStore>,
        metrics: Arc<Metrics>,
        pods: PodDirectory,
        allow_all: bool,
    ) -> Self {
        AppState {
            policies,
            metrics,
            pods,
            allow_all,
            namespaces: Mutex::new(HashSet::new()),
        }
    }

    fn namespace_label<'a>(&self, namespace: &'a str) -> &'a str {
        let mut seen = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(namespace) {
            return namespace;
        }
        if seen.len() < MAX_NAMESPACE_LABELS {
            seen.insert(namespace.to_string());
            return namespace;
        }
        "_other"
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Validate,
    Mutate,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn validate(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(&state, Endpoint::Validate, body).await
}

async fn mutate(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(&state, Endpoint::Mutate, body).await
}

async fn handle(state: &AppState, endpoint: Endpoint, body: Bytes) -> Response {
    let started = Instant::now();
    let request = match read_review(&body) {
        Ok(request) => request,
        Err(message) => {
            state
                .metrics
                .requests
                .with_label_values(&["unknown", "unknown", "error", "none"])
                .inc();
            tracing::warn!(error = %message, "malformed admission request");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let loaded = state.policies.current();
    let outcome = if state.allow_all {
        Ok(Outcome::allow(&request))
    } else {
        decide(state, &loaded.policy, endpoint, &request).await
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(()) => {
            count(state, &request, "error", "none");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "hubguard failed while judging this request; see its log",
            )
                .into_response();
        }
    };
    record(state, &loaded.policy.name, &request, &outcome);
    let body = serde_json::to_vec(&outcome.response.into_review());
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot serialise the admission response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialise the response",
            )
                .into_response()
        }
    }
}

/// Reads an AdmissionReview body as the webhook receives it: a clear error, never a panic.
pub fn read_review(body: &[u8]) -> Result<AdmissionRequest<RawObject>, String> {
    let review: AdmissionReview<RawObject> = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an admission.k8s.io AdmissionReview: {e}"))?;
    review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_string())
}

/// Judges the request. A panic in the engine becomes an error answer for this request only.
async fn decide(
    state: &AppState,
    policy: &Policy,
    endpoint: Endpoint,
    request: &AdmissionRequest<RawObject>,
) -> Result<Outcome, ()> {
    let guarded = |f: Box<dyn FnOnce() -> Outcome + '_>| {
        catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
            tracing::error!(uid = %request.uid, "the policy engine panicked on this request");
        })
    };
    match endpoint {
        Endpoint::Mutate => guarded(Box::new(|| admission::mutate(policy, request))),
        Endpoint::Validate => match admission::subject(request) {
            Subject::Pass => Ok(Outcome::allow(request)),
            Subject::Object => {
                // A tenant's DaskWorkerGroup is judged with the owner of the cluster it joins.
                let cluster = match admission::cluster_to_look_up(policy, request) {
                    Some(name) => {
                        let namespace = request.namespace.as_deref().unwrap_or("");
                        Some(
                            state
                                .pods
                                .dask_cluster_tenant(policy, namespace, &name)
                                .await,
                        )
                    }
                    None => None,
                };
                guarded(Box::new(|| {
                    admission::validate_object(policy, request, cluster.as_ref())
                }))
            }
            Subject::PodAction { pod, action } => {
                // Only a tenant's request needs the pod; everyone else is decided without it.
                if !admission::action_needs_target(policy, request) {
                    return Ok(Outcome::allow(request));
                }
                let namespace = request.namespace.as_deref().unwrap_or("");
                let target = state
                    .pods
                    .labels(namespace, &pod)
                    .await
                    .map(admission::pod_metadata);
                guarded(Box::new(|| {
                    let target = target.as_ref().map_err(String::as_str);
                    admission::validate_action(policy, request, action, "Pod", target)
                }))
            }
            Subject::Delete => guarded(Box::new(|| admission::validate_delete(policy, request))),
        },
    }
}

fn operation(request: &AdmissionRequest<RawObject>) -> &'static str {
    use kube::core::admission::Operation;
    match request.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The kind label: a kind hubguard knows, or "other", so that forged reviews cannot add
/// label values.
fn kind_label(request: &AdmissionRequest<RawObject>) -> &'static str {
    const OTHER_KINDS: &[&str] = &[
        "PodExecOptions",
        "PodAttachOptions",
        "PodPortForwardOptions",
        "Eviction",
        "Service",
        "PersistentVolumeClaim",
    ];
    let kind = request.kind.kind.as_str();
    layout_kinds()
        .chain(OTHER_KINDS.iter().copied())
        .find(|k| *k == kind)
        .unwrap_or("other")
}

fn count(state: &AppState, request: &AdmissionRequest<RawObject>, decision: &str, mode: &str) {
    state
        .metrics
        .requests
        .with_label_values(&[operation(request), kind_label(request), decision, mode])
        .inc();
}

fn record(
    state: &AppState,
    policy: &str,
    request: &AdmissionRequest<RawObject>,
    outcome: &Outcome,
) {
    count(state, request, outcome.decision.as_str(), outcome.mode());
    if outcome.violations.is_empty() {
        return;
    }
    let namespace = state.namespace_label(request.namespace.as_deref().unwrap_or(""));
    for v in &outcome.violations {
        let mode = if outcome.dry_run {
            DRY_RUN_MODE
        } else {
            v.mode.as_str()
        };
        state
            .metrics
            .violations
            .with_label_values(&[policy, v.rule, namespace, v.pod_class.as_str(), mode])
            .inc();
    }
    if outcome.decision == Decision::Denied {
        tracing::info!(
            uid = %request.uid,
            namespace,
            name = %request.name,
            kind = kind_label(request),
            user = request.user_info.username.as_deref().unwrap_or(""),
            violations = outcome.violations.len(),
            dry_run = outcome.dry_run,
            "denied"
        );
    }
}
