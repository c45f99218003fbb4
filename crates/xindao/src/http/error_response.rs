//! How an [`Error`] answers an HTTP request: its status, `{"error": {...}}` body and `Retry-After`, counted in
//! the per-code error metric. Here rather than in `error.rs` so that the error type stays below everything
//! that uses it.

use crate::error::Error;

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        if let Error::Internal(detail) = &self {
            tracing::error!(%detail, "internal error on HTTP API");
        }
        crate::obs::hops::error(self.code());
        let body = serde_json::json!({ "error": self.to_json() });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Error::RateLimited { retry_after_ms } = self {
            // Retry-After is in whole seconds: round up, so that a retry at that time is allowed.
            let seconds = retry_after_ms.div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
