//! The request-id middleware of every HTTP route: takes the proxy's `X-Request-Id` when sane or makes one
//! ([`crate::obs::request_id`]), opens the span every log line about the request carries, writes the access log
//! line, and answers with `X-Request-Id` and `Server-Timing` ([`crate::obs::timing`]). When traces are
//! exported ([`crate::obs::otel`]) the span continues the caller's `traceparent` and names its route.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::App;
use crate::obs::request_id::{self, generate, sane, RequestId, HEADER};
use crate::obs::timing::{self, Spent};

/// Longest request path written to the logs.
const MAX_LOGGED_PATH: usize = 256;

/// The request's id: the proxy's when sane, else a fresh one.
fn id_of(request: &Request) -> String {
    request
        .headers()
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| sane(id))
        .map_or_else(generate, str::to_string)
}

/// The middleware of every HTTP route: id, span, access log line, `X-Request-Id` and `Server-Timing`.
pub async fn layer(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = id_of(&request);
    let path: String = request.uri().path().chars().take(MAX_LOGGED_PATH).collect();
    let span =
        tracing::info_span!("http", request_id = %id, method = %request.method(), path = %path);
    // A caller's W3C `traceparent` makes this span its child (when traces are exported).
    crate::obs::otel::adopt_headers(&span, request.headers());
    let spent = Spent::new();
    let request_id = RequestId(Arc::from(id.as_str()));
    request.extensions_mut().insert(request_id.clone());
    let mut response =
        request_id::scope(request_id, timing::scope(spent.clone(), next.run(request)))
            .instrument(span.clone())
            .await;
    let handle = started.elapsed();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HEADER, value);
    }
    let node = crate::obs::node_name(&app.config);
    if let Ok(value) = HeaderValue::from_str(&timing::server_timing(handle, &spent, node)) {
        headers.insert(HeaderName::from_static("server-timing"), value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            dur_us = handle.as_micros() as u64,
            db_us = spent.db().as_micros() as u64,
            "http request"
        );
    });
    response
}

/// After routing: names the matched route (`/v1/server/users/{id}`) on the request's span, for trace export.
pub async fn route(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    if let Some(matched) = matched {
        crate::obs::otel::attribute(&tracing::Span::current(), "http.route", || {
            matched.as_str().to_string()
        });
    }
    next.run(request).await
}
