//! The admin page, on the admin listener only (`admin_listen`, loopback by default): live connections, nodes,
//! message rate and per-hop latency, read by the page from the same `/metrics` Prometheus scrapes, and a
//! "probe from the server" button that runs `xindao probe`'s checks from this node towards a URL.
//!
//! The probe button makes this node open connections to a URL an operator types: the admin listener is for
//! operators only (never expose it), one probe runs at a time, with 3 round trips and a 20 s limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::error::Error;
use crate::probe::{self, ProbeArgs};

const PAGE: &str = include_str!("admin.html");
const SCRIPT: &str = include_str!("admin.js");

/// Longest a probe from the server may take.
const PROBE_TIMEOUT_SECS: u64 = 20;

/// Longest URL or token accepted by the probe button.
const MAX_FIELD: usize = 2048;

/// The admin page's routes (merged into the admin router).
pub fn routes() -> Router<Arc<App>> {
    static PROBES: Semaphore = Semaphore::const_new(1);
    Router::new()
        .route("/admin", get(page))
        .route("/admin/app.js", get(script))
        .route("/admin/status", get(status))
        .route(
            "/admin/probe",
            post(
                |State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes| async move {
                    if !same_origin_json(&headers) {
                        return Error::Forbidden(
                            "the probe takes a JSON POST from the admin page itself",
                        )
                        .into_response();
                    }
                    let Ok(_running) = PROBES.try_acquire() else {
                        return Error::RateLimited {
                            retry_after_ms: 1000,
                        }
                        .into_response();
                    };
                    run_probe(&app, &body).await
                },
            ),
        )
}

/// Whether a probe request comes from the admin page: a JSON body (a cross-site form or `fetch` without CORS
/// cannot send one without a preflight, which this listener never grants) and, when the browser names an
/// origin, this listener's own. A page on another site cannot make this node probe for it.
fn same_origin_json(headers: &HeaderMap) -> bool {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
    let origin_ok = match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .map(|(_, a)| a);
            matches!((origin, host), (Some(origin), Some(host)) if origin.eq_ignore_ascii_case(host))
        }
    };
    json && origin_ok
}

fn secured(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    secured("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    secured("text/javascript; charset=utf-8", SCRIPT)
}

/// What the page cannot read from /metrics: this node's name and the nodes heard on the bus.
async fn status(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "node": crate::obs::node_name(&app.config),
        "bus_connected": app.bus.connected(),
        "nodes_heard": crate::obs::hops::nodes_heard(),
        "connections": app.hub.connection_count(),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeRequest {
    url: String,
    token: Option<String>,
}

async fn run_probe(app: &App, body: &Bytes) -> Response {
    let request: ProbeRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return Error::InvalidArgs(format!("invalid body: {e}")).into_response(),
    };
    if request.url.len() > MAX_FIELD || request.token.as_ref().is_some_and(|t| t.len() > MAX_FIELD)
    {
        return Error::InvalidArgs("url or token too long".into()).into_response();
    }
    if let Err(error) = probe::Target::parse(&request.url) {
        return Error::InvalidArgs(error.to_string()).into_response();
    }
    let args = ProbeArgs {
        url: request.url,
        token: request.token,
        name: format!("xindao-probe-{}", crate::obs::node_name(&app.config)),
        rounds: 3,
        proxy: None,
        ca_file: None,
        timeout: PROBE_TIMEOUT_SECS,
        json: true,
    };
    // The probe's own timeout bounds it; this one is the backstop.
    match tokio::time::timeout(
        Duration::from_secs(PROBE_TIMEOUT_SECS + 5),
        probe::run(&args),
    )
    .await
    {
        Ok(report) => {
            let mut value = serde_json::to_value(&report).unwrap_or_default();
            value["text"] = json!(report.text());
            (StatusCode::OK, Json(value)).into_response()
        }
        Err(_) => Error::Unavailable("the probe did not finish".into()).into_response(),
    }
}
