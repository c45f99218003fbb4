//! Wafer compatibility, standalone mode: mini-programs built on Tencent's Wafer client SDKs
//! (`wafer-client-sdk` 0.8 = "Wafer 1", `wafer2-client-sdk` 2.1 = "Wafer 2") log in, call their user
//! endpoint and open their tunnel against xindao itself, unchanged but for their host (docs/wafer.md).
//!
//! Each configured prefix (`wafer_prefix` for Wafer 2, `wafer1_prefix` for Wafer 1) serves `login`, `user`,
//! `tunnel` (the tunnel URL) and `tunnel/ws` (the tunnel itself), answering in its generation's shapes
//! ([`Generation`]). The two differ only in their JSON; under them is xindao's own WeChat login
//! (`code2Session`), sessions (the Wafer `skey` is a xindao session token), connect tickets (the tunnel
//! URL's authorisation), rooms, store and hub. Files: `packet.rs` the wire format, `userinfo.rs` the
//! encrypted profile, `session.rs` the HTTP endpoints, `room.rs` the live room and its `people`,
//! `tunnel.rs` one tunnel's task.
//!
//! Tunnel-service mode (`wafer_tunnel_key`) serves existing Wafer business servers instead: `service.rs`
//! (their API) and `service_tunnel.rs` (a tunnel and its callbacks to them); `auth_service.rs` replaces the
//! Wafer 1 auth service those servers log their users in with (`wafer_auth`).

mod auth_service;
mod packet;
mod room;
mod service;
mod service_tunnel;
mod session;
mod tunnel;
mod userinfo;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::config::Config;
use crate::model::UserId;

/// Which client SDK a prefix serves: the shapes of its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// wafer-client-sdk 0.x: login answers carry [`MAGIC`]; a later answer carrying it means "session
    /// failure"; the tunnel answer is `{url}`.
    V1,
    /// wafer2-client-sdk 2.x: `{code: 0, data}`; `code: -1` or HTTP 401 means "log in again"; the tunnel
    /// answer is `{code: 0, data: {tunnelId, connectUrl}}`.
    V2,
}

/// The key Wafer 1's SDK looks for in every answer (its "session magic id").
pub const MAGIC: &str = "F2C224D4-2BCE-4C64-AF9F-A6D872000D1A";

pub use crate::config::wafer_prefix_ok as prefix_ok;

/// One configured prefix: its generation, its path and its live room.
pub struct Mount {
    pub generation: Generation,
    /// The prefix without its trailing `/` ("" for the root).
    pub base: String,
    pub room: room::LiveRoom,
}

/// Profiles (the decrypted `wx.getUserInfo`, watermark removed) of users who logged in through Wafer, by
/// user: what `who` says in `people` and `speak`, and what a code-only login answers. Kept in memory and
/// bounded (100,000); a user without one is shown as `{nickName: <display name>}`.
#[derive(Default)]
pub struct Profiles(Mutex<HashMap<UserId, Arc<Value>>>);

/// Most profiles kept; beyond it, an arbitrary one is forgotten (it comes back at that user's next login).
const PROFILES_MAX: usize = 100_000;

impl Profiles {
    pub fn get(&self, user: UserId) -> Option<Arc<Value>> {
        self.0.lock().get(&user).cloned()
    }

    pub fn put(&self, user: UserId, mut profile: Map<String, Value>) -> Arc<Value> {
        profile.remove("watermark");
        self.remember(user, Arc::new(Value::Object(profile)))
    }

    /// Keeps `profile` for `user` (also the stand-in of a user who never logged in through Wafer, so that a
    /// room's messages do not cost a store read per recipient).
    pub fn remember(&self, user: UserId, profile: Arc<Value>) -> Arc<Value> {
        let mut profiles = self.0.lock();
        if profiles.len() >= PROFILES_MAX && !profiles.contains_key(&user) {
            if let Some(&any) = profiles.keys().next() {
                profiles.remove(&any);
            }
        }
        profiles.insert(user, profile.clone());
        profile
    }
}

/// What every Wafer route shares.
pub struct Shared {
    pub profiles: Profiles,
}

/// The tunnel-service routes, when `wafer_tunnel_key` is set.
fn tunnel_service_routes(config: &Config) -> Router<Arc<App>> {
    let Some(key) = &config.wafer_tunnel_key else {
        return Router::new();
    };
    let service = Arc::new(service::TunnelService::new(
        key.as_str().to_string(),
        config.wafer_tunnel_tc_ids.clone(),
    ));
    Router::new()
        .route("/wafer-tunnel/get/wsurl", post(service::get_wsurl))
        .route("/wafer-tunnel/ws/push", post(service::push))
        .route("/wafer-tunnel/ws", get(service_tunnel::upgrade))
        .layer(Extension(service))
}

/// The Wafer routes of the configured prefixes (none when neither is set).
pub fn routes(config: &Config) -> Router<Arc<App>> {
    let shared = Arc::new(Shared {
        profiles: Profiles::default(),
    });
    let mounts = [
        (Generation::V2, &config.wafer_prefix),
        (Generation::V1, &config.wafer1_prefix),
    ];
    let mut router = tunnel_service_routes(config);
    if config.wafer_auth {
        router = router.merge(auth_service::routes(shared.clone()));
    }
    for (generation, prefix) in mounts {
        let Some(prefix) = prefix else { continue };
        let base = prefix.trim_end_matches('/').to_string();
        let mount = Arc::new(Mount {
            generation,
            room: room::LiveRoom::new(format!(
                "Wafer {}",
                if base.is_empty() { "/" } else { &base }
            )),
            base: base.clone(),
        });
        router = router.merge(
            Router::new()
                .route(
                    &format!("{base}/login"),
                    get(session::login).post(session::login),
                )
                .route(
                    &format!("{base}/user"),
                    get(session::user).post(session::user),
                )
                .route(&format!("{base}/tunnel"), get(session::tunnel_url))
                .route(&format!("{base}/tunnel/ws"), get(tunnel::upgrade))
                .layer(Extension(mount))
                .layer(Extension(shared.clone())),
        );
    }
    router
}

/// A Wafer endpoint's failure, answered in the shape its generation's SDK acts on.
#[derive(Debug)]
pub enum Failure {
    /// No valid session: Wafer 1 gets `ERR_INVALID_SESSION` with [`MAGIC`], Wafer 2 HTTP 401 with
    /// `code: -1`; both SDKs log in again once and retry.
    Session,
    /// A login refused: both SDKs report it to the app and do not retry.
    Login(&'static str, String, StatusCode),
    /// Anything else (rate limits, server trouble): no session-failure marker, so no re-login loop.
    Other(&'static str, String, StatusCode),
}

impl Failure {
    /// The failure for a xindao error met while serving a Wafer request.
    pub fn from_error(error: crate::Error, during_login: bool) -> Failure {
        use crate::Error;
        let status = error.status();
        let message = error.to_string();
        match error {
            Error::Unauthorized if !during_login => Failure::Session,
            Error::Internal(detail) => {
                tracing::warn!(%detail, "wafer request failed");
                Failure::Other("ERR_SERVER", "internal error".into(), status)
            }
            Error::WeChat(_) | Error::InvalidArgs(_) if during_login => {
                Failure::Login("ERR_GET_SESSION_KEY", message, status)
            }
            Error::NotFound(_) if during_login => {
                Failure::Login("ERR_LOGIN_FAILED", message, status)
            }
            Error::RateLimited { .. } => Failure::Other("ERR_RATE_LIMITED", message, status),
            _ if during_login => Failure::Login("ERR_LOGIN_FAILED", message, status),
            _ => Failure::Other("ERR_REQUEST_FAILED", message, status),
        }
    }

    pub fn respond(self, generation: Generation) -> Response {
        let (status, body) = match (generation, self) {
            (Generation::V1, Failure::Session) => (
                StatusCode::UNAUTHORIZED,
                json!({ MAGIC: 1, "error": "ERR_INVALID_SESSION", "message": "missing, invalid or expired session" }),
            ),
            (Generation::V2, Failure::Session) => (
                StatusCode::UNAUTHORIZED,
                json!({ "code": -1, "error": "ERR_SKEY_INVALID", "message": "missing, invalid or expired session" }),
            ),
            (Generation::V1, Failure::Login(error, message, status)) => (
                status,
                json!({ MAGIC: 1, "error": error, "message": message }),
            ),
            (Generation::V2, Failure::Login(error, message, status)) => (
                status,
                json!({ "code": -1, "error": error, "message": message }),
            ),
            (Generation::V1, Failure::Other(error, message, status)) => {
                (status, json!({ "error": error, "message": message }))
            }
            // Not -1: that would make the SDK log in again for nothing.
            (Generation::V2, Failure::Other(error, message, status)) => (
                status,
                json!({ "code": status.as_u16(), "error": error, "message": message }),
            ),
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for ok in ["/", "/weapp", "/a/b-c_d", "/v2"] {
            assert!(prefix_ok(ok), "{ok}");
        }
        for bad in [
            "", "weapp", "/weapp/", "//", "/v1", "/v1/x", "/a b", "/a?b", "/ü",
        ] {
            assert!(!prefix_ok(bad), "{bad}");
        }
    }
}
