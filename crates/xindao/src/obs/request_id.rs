//! Request ids: every HTTP request gets one (the middleware is `http::request_id`), echoed in `X-Request-Id`
//! and carried by a tracing span into every log line about the request (and, for `GET /v1/ws`, into every line
//! of the connection it opens).
//!
//! A proxy's `X-Request-Id` is kept when it is sane (1 to [`MAX_LEN`] characters of a URL-safe set), so that
//! one id follows the request from the CDN or nginx to here; anything else (too long, control characters,
//! spaces that could forge a log field) is replaced by a generated id.
//!
//! The id also follows what the request causes: it is task-local while the request is handled ([`scope`],
//! [`current`]), so a store append, a webhook event or a bus envelope made meanwhile takes it along; a
//! WebSocket request's id is its upgrade's id, a dot, and the client's request `id` ([`for_ws_request`]).
//! Here, below the store and the bus, so that they can read it.

use std::future::Future;
use std::sync::Arc;

use axum::http::HeaderName;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being handled (also a request extension, for the WebSocket upgrade's handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

tokio::task_local! {
    static CURRENT: RequestId;
}

/// Runs `future` as the handling of request `id`.
pub fn scope<F: Future>(id: RequestId, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(id, future)
}

/// Runs `f` as part of request `id` (`None`: as part of none), e.g. publishing what a request committed.
pub fn sync_scope<R>(id: Option<RequestId>, f: impl FnOnce() -> R) -> R {
    match id {
        Some(id) => CURRENT.sync_scope(id, f),
        None => f(),
    }
}

/// The id of the request this task is handling, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(RequestId::clone).ok()
}

/// Longest client request id kept in a WebSocket request's id.
const MAX_CLIENT_ID: usize = 32;

/// A WebSocket request's id: `<upgrade's id>.<client's id>`, or `<upgrade's id>.-` when the client's id is
/// a string longer than 32 characters or outside the safe set.
pub fn for_ws_request(upgrade: &str, client: &crate::protocol::RequestId) -> RequestId {
    let id = match client {
        crate::protocol::RequestId::Number(n) => format!("{upgrade}.{n}"),
        crate::protocol::RequestId::Text(text) if text.len() <= MAX_CLIENT_ID && sane(text) => {
            format!("{upgrade}.{text}")
        }
        crate::protocol::RequestId::Text(_) => format!("{upgrade}.-"),
    };
    RequestId(id.into())
}

/// Longest request id taken from a proxy.
pub const MAX_LEN: usize = 128;

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

    #[test]
    fn websocket_request_ids_name_the_upgrade_and_the_client_id() {
        use crate::protocol::RequestId as Client;
        assert_eq!(&*for_ws_request("up", &Client::Number(7)).0, "up.7");
        assert_eq!(
            &*for_ws_request("up", &Client::Text("a-1".into())).0,
            "up.a-1"
        );
        assert_eq!(
            &*for_ws_request("up", &Client::Text("a b".into())).0,
            "up.-"
        );
        assert_eq!(
            &*for_ws_request("up", &Client::Text("x".repeat(33))).0,
            "up.-"
        );
    }
}
