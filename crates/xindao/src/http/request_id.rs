//! Request ids: every HTTP request gets one, echoed in `X-Request-Id` and carried by a tracing span into every
//! log line about the request (and, for `GET /v1/ws`, into every line of the connection it opens).
//!
//! A proxy's `X-Request-Id` is kept when it is sane (1 to [`MAX_LEN`] characters of a URL-safe set), so that
//! one id follows the request from the CDN or nginx to here; anything else (too long, control characters,
//! spaces that could forge a log field) is replaced by a generated id. The same middleware sets
//! `Server-Timing` ([`crate::obs::timing`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::app::App;
use crate::obs::timing::{self, Spent};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a proxy.
pub const MAX_LEN: usize = 128;

/// Longest request path written to the logs.
const MAX_LOGGED_PATH: usize = 256;

/// Whether a proxy's request id may be used as is.
pub fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// A fresh request id: 16 hex digits.
pub fn generate() -> String {
    format!("{:016x}", rand::random::<u64>())
}

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
pub async fn layer(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = id_of(&request);
    let path: String = request.uri().path().chars().take(MAX_LOGGED_PATH).collect();
    let span =
        tracing::info_span!("http", request_id = %id, method = %request.method(), path = %path);
    let spent = Spent::new();
    let mut response = timing::scope(spent.clone(), next.run(request))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        assert!(sane("abc-123_x.y:z/+=@"));
        assert!(sane(&"a".repeat(MAX_LEN)));
        assert!(!sane(""));
        assert!(!sane(&"a".repeat(MAX_LEN + 1)));
        assert!(!sane("a b"));
        assert!(!sane("a\"b"));
        assert!(!sane("a\nrequest_id=forged"));
        assert!(!sane("é"));
        let id = generate();
        assert!(sane(&id) && id.len() == 16);
    }
}
