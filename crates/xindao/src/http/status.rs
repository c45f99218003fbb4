//! `/healthz` for load balancers and `/metrics` for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::App;

/// 503 only when this node cannot serve (shutting down, or the store does not answer). A cluster bus that is
/// down is reported but keeps the node in: its own users still chat, and taking every node out of the load
/// balancer because their shared bus restarts would turn a degraded cluster into an outage.
pub(super) async fn healthz(State(app): State<Arc<App>>) -> Response {
    let bus = if app.bus.connected() {
        "ok"
    } else {
        "disconnected"
    };
    if !app.shutdown.is_cancelled() && app.store.healthy().await {
        Json(json!({ "status": "ok", "store": "ok", "bus": bus })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "bus": bus })),
        )
            .into_response()
    }
}

/// The OpenMetrics text of every counter and gauge.
pub(super) async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics
        .bus_connected
        .set(i64::from(app.bus.connected()));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
