//! The plain-HTTP operations port: `/metrics`, `/healthz`, `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

/// Ready once a policy is loaded and the TLS listener is up; not ready while draining, so
/// that the Service stops sending new reviews before the listener closes.
#[derive(Default)]
pub struct Health {
    serving: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState { metrics, health })
}

async fn metrics_text(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    if state.health.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
