//! The plain-HTTP operations port: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// What a daemon tells its operations port.
pub trait Operations: Send + Sync + 'static {
    /// The Prometheus text exposition of the daemon's metrics, as of now.
    fn metrics_text(&self) -> String;
    /// Whether the daemon should receive work (`/readyz`).
    fn ready(&self) -> bool;
}

pub fn router(ops: Arc<dyn Operations>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ops)
}

async fn metrics_text(State(ops): State<Arc<dyn Operations>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics_text(),
    )
}

async fn readyz(State(ops): State<Arc<dyn Operations>>) -> impl IntoResponse {
    if ops.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
