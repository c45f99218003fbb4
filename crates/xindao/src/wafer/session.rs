//! The Wafer HTTP endpoints: `login`, `user` and `tunnel` (the tunnel URL), in both generations' shapes.
//!
//! Login takes `X-WX-Code`, and with it either nothing (Wafer 2 `loginWithCode`, or any known user) or
//! `X-WX-Encrypted-Data` + `X-WX-IV` (the profile, checked in `userinfo.rs`; with `X-WX-Raw-Data` +
//! `X-WX-Signature` also the signature). It is xindao's WeChat login underneath: the same rate limits, the
//! same users, and a xindao session whose token is the Wafer `skey` (Wafer 1's `session.id` is the user id,
//! checked against it). The tunnel URL carries a connect ticket (single use, 30 s), because the SDKs open
//! the socket without any header.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};

use super::userinfo::{self, ProfileError};
use super::{Failure, Generation, Mount, Shared, MAGIC};
use crate::app::App;
use crate::auth::Session;
use crate::model::{now_millis, UserId};
use crate::peer::Peer;

pub const CODE: &str = "x-wx-code";
pub const ENCRYPTED: &str = "x-wx-encrypted-data";
pub const IV: &str = "x-wx-iv";
pub const RAW_DATA: &str = "x-wx-raw-data";
pub const SIGNATURE: &str = "x-wx-signature";
pub const ID: &str = "x-wx-id";
pub const SKEY: &str = "x-wx-skey";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn missing(what: &str) -> Failure {
    Failure::Login(
        "ERR_HEADER_MISSED",
        format!("missing header {what}"),
        StatusCode::BAD_REQUEST,
    )
}

fn profile_failure(error: ProfileError) -> Failure {
    Failure::Login(
        "ERR_IN_DECRYPT_DATA",
        error.to_string(),
        StatusCode::BAD_REQUEST,
    )
}

/// `GET|POST <prefix>/login`.
pub async fn login(
    State(app): State<Arc<App>>,
    Extension(mount): Extension<Arc<Mount>>,
    Extension(shared): Extension<Arc<Shared>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    match do_login(&app, &mount, &shared, peer, &headers).await {
        Ok(response) => response,
        Err(failure) => failure.respond(mount.generation),
    }
}

async fn do_login(
    app: &App,
    mount: &Mount,
    shared: &Shared,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    let code = header(headers, CODE).ok_or_else(|| missing("X-WX-Code"))?;
    let encrypted = match (header(headers, ENCRYPTED), header(headers, IV)) {
        (Some(data), Some(iv)) => Some((data, iv)),
        (None, None) => None,
        (Some(_), None) => return Err(missing("X-WX-IV")),
        (None, Some(_)) => return Err(missing("X-WX-Encrypted-Data")),
    };
    let signed = match (header(headers, RAW_DATA), header(headers, SIGNATURE)) {
        (Some(raw), Some(signature)) => Some((raw, signature)),
        (None, None) => None,
        _ => return Err(missing("X-WX-Raw-Data with X-WX-Signature")),
    };
    let client = crate::peer::client_ip(&app.config.trusted_proxies, peer, headers);
    let identity = app
        .auth
        .code2session(client, code)
        .await
        .map_err(|e| Failure::from_error(e, true))?;
    let mut profile = None;
    if encrypted.is_some() || signed.is_some() {
        let key = identity.session_key.as_deref().ok_or_else(|| {
            Failure::Login(
                "ERR_GET_SESSION_KEY",
                "WeChat sent no session_key".into(),
                StatusCode::BAD_GATEWAY,
            )
        })?;
        if let Some((raw, signature)) = signed {
            userinfo::check_signature(raw, signature, key).map_err(profile_failure)?;
        }
        if let Some((data, iv)) = encrypted {
            let appid = app.config.wechat_appid.as_deref().unwrap_or_default();
            profile = Some(userinfo::decrypt(key, data, iv, appid).map_err(profile_failure)?);
        }
    }
    let (login, openid) = app
        .auth
        .login_identity(identity)
        .await
        .map_err(|e| Failure::from_error(e, true))?;
    let userinfo = match profile {
        Some(profile) => shared.profiles.put(login.user.id, profile),
        None => match shared.profiles.get(login.user.id) {
            Some(known) => known,
            None => Arc::new(json!({ "openId": openid, "nickName": login.user.display_name })),
        },
    };
    let body = match mount.generation {
        Generation::V1 => json!({
            MAGIC: 1,
            "session": { "id": login.user.id.to_string(), "skey": login.token },
        }),
        Generation::V2 => json!({
            "code": 0,
            "data": { "skey": login.token, "userinfo": *userinfo, "time": now_millis() / 1000 },
        }),
    };
    Ok(Json(body).into_response())
}

/// The caller's session from the generation's headers: `X-WX-Skey` (Wafer 2), or `X-WX-Id` + `X-WX-Skey`
/// where the id must be the session's user (Wafer 1).
pub async fn authenticate(
    app: &App,
    generation: Generation,
    headers: &HeaderMap,
) -> Result<Session, Failure> {
    let skey = header(headers, SKEY).ok_or(Failure::Session)?;
    let session = app
        .auth
        .authenticate(skey)
        .await
        .map_err(|e| Failure::from_error(e, false))?;
    if generation == Generation::V1 {
        let id: Option<UserId> = header(headers, ID).and_then(|id| id.parse().ok());
        if id != Some(session.user_id) {
            return Err(Failure::Session);
        }
    }
    Ok(session)
}

/// The profile shown for `user`: the one from their Wafer login, else their display name.
pub async fn who(app: &App, shared: &Shared, user: UserId) -> Arc<Value> {
    if let Some(profile) = shared.profiles.get(user) {
        return profile;
    }
    match app.store.user(user).await {
        Ok(Some(found)) => shared
            .profiles
            .remember(user, Arc::new(json!({ "nickName": found.display_name }))),
        _ => Arc::new(json!({ "nickName": format!("user {user}") })),
    }
}

/// `GET|POST <prefix>/user`: the caller's profile (Wafer 2 `{code: 0, data: userinfo}`, Wafer 1
/// `{code: 0, message: "ok", data: {userInfo}}` as its demo server answered).
pub async fn user(
    State(app): State<Arc<App>>,
    Extension(mount): Extension<Arc<Mount>>,
    Extension(shared): Extension<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let session = match authenticate(&app, mount.generation, &headers).await {
        Ok(session) => session,
        Err(failure) => return failure.respond(mount.generation),
    };
    let userinfo = who(&app, &shared, session.user_id).await;
    let body = match mount.generation {
        Generation::V1 => json!({ "code": 0, "message": "ok", "data": { "userInfo": *userinfo } }),
        Generation::V2 => json!({ "code": 0, "data": *userinfo }),
    };
    Json(body).into_response()
}

/// A tunnel id: 16 random bytes, URL-safe.
pub fn new_tunnel_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `GET <prefix>/tunnel`: a tunnel URL for the caller, valid for one connect within the ticket's lifetime.
pub async fn tunnel_url(
    State(app): State<Arc<App>>,
    Extension(mount): Extension<Arc<Mount>>,
    headers: HeaderMap,
) -> Response {
    let generation = mount.generation;
    let session = match authenticate(&app, generation, &headers).await {
        Ok(session) => session,
        Err(failure) => return failure.respond(generation),
    };
    let ticket = match app.auth.issue_ticket(&session).await {
        Ok(ticket) => ticket,
        Err(error) => return Failure::from_error(error, false).respond(generation),
    };
    let base = match &app.config.wafer_public_url {
        Some(base) => base.clone(),
        None => match header(&headers, "host") {
            Some(host) => format!("ws://{host}"),
            None => {
                return Failure::Other(
                    "ERR_REQUEST_FAILED",
                    "no Host header".into(),
                    StatusCode::BAD_REQUEST,
                )
                .respond(generation)
            }
        },
    };
    let tunnel_id = new_tunnel_id();
    let url = format!(
        "{base}{}/tunnel/ws?tunnelId={tunnel_id}&ticket={}",
        mount.base, ticket.ticket
    );
    let body = match generation {
        Generation::V1 => json!({ "url": url }),
        Generation::V2 => {
            json!({ "code": 0, "data": { "tunnelId": tunnel_id, "connectUrl": url } })
        }
    };
    Json(body).into_response()
}
