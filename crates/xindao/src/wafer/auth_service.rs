//! The Wafer 1 auth service, replaced: `qcloud-weapp-server-sdk` 0.8 never calls WeChat itself, it POSTs
//! every login and every session check to its `AuthServerUrl` (Tencent's hosted service, now gone). With
//! `wafer_auth = true`, `POST /wafer-auth` is that service, backed by xindao's WeChat login and sessions:
//!
//! - `qcloud.cam.id_skey` `{code, encrypt_data, iv}` -> `{id, skey, user_info}`: `code2Session`, the
//!   profile decrypted and checked as for a Wafer client login (`userinfo.rs`), a xindao session (`skey` is
//!   its token, `id` the user id);
//! - `qcloud.cam.auth` `{id, skey}` -> `{user_info}`, or `returnCode` 60011 (invalid or expired session), which
//!   the SDK answers to its client as `ERR_INVALID_SESSION` (a re-login).
//!
//! Every answer is HTTP 200 `{returnCode, returnMessage, returnData}`, the envelope the SDK reads; other
//! failures use codes the SDK reports as login or check failures without a re-login loop.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{userinfo, Shared};
use crate::app::App;
use crate::model::UserId;
use crate::peer::Peer;

/// The session is invalid or expired: the SDK turns this into `ERR_INVALID_SESSION`.
const SESSION_INVALID: i64 = 60011;
/// The request is not one this service understands.
const BAD_REQUEST: i64 = 60001;
/// WeChat refused the code, or the user data did not check out.
const LOGIN_FAILED: i64 = 60002;
/// Anything else (rate limits, store trouble).
const SERVICE_FAILED: i64 = 60003;

#[derive(Deserialize)]
struct Envelope {
    interface: Interface,
}

#[derive(Deserialize)]
struct Interface {
    #[serde(rename = "interfaceName")]
    name: String,
    #[serde(default)]
    para: Value,
}

fn answer(code: i64, message: &str, data: Value) -> Response {
    Json(json!({ "returnCode": code, "returnMessage": message, "returnData": data }))
        .into_response()
}

fn fail(code: i64, message: impl std::fmt::Display) -> Response {
    answer(code, &message.to_string(), json!({}))
}

pub fn routes(shared: Arc<Shared>) -> Router<Arc<App>> {
    Router::new()
        .route("/wafer-auth", post(handle))
        .layer(Extension(shared))
}

async fn handle(
    State(app): State<Arc<App>>,
    Extension(shared): Extension<Arc<Shared>>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return fail(
            BAD_REQUEST,
            "body must be {version, componentName, interface: {interfaceName, para}}",
        );
    };
    let para = &envelope.interface.para;
    let text = |key: &str| para.get(key).and_then(Value::as_str).unwrap_or_default();
    match envelope.interface.name.as_str() {
        "qcloud.cam.id_skey" => {
            let client = crate::peer::client_ip(&app.config.trusted_proxies, peer, &headers);
            login(
                &app,
                &shared,
                client,
                text("code"),
                text("encrypt_data"),
                text("iv"),
            )
            .await
        }
        "qcloud.cam.auth" => check(&app, &shared, text("id"), text("skey")).await,
        _ => fail(BAD_REQUEST, "unknown interfaceName"),
    }
}

async fn login(
    app: &App,
    shared: &Shared,
    client: std::net::IpAddr,
    code: &str,
    encrypted: &str,
    iv: &str,
) -> Response {
    if code.is_empty() || encrypted.is_empty() || iv.is_empty() {
        return fail(BAD_REQUEST, "para needs code, encrypt_data and iv");
    }
    let identity = match app.auth.code2session(client, code).await {
        Ok(identity) => identity,
        Err(crate::Error::RateLimited { .. }) => return fail(SERVICE_FAILED, "rate limited"),
        Err(error) => return fail(LOGIN_FAILED, error),
    };
    let Some(key) = identity.session_key.clone() else {
        return fail(LOGIN_FAILED, "WeChat sent no session_key");
    };
    let appid = app.config.wechat_appid.as_deref().unwrap_or_default();
    let profile = match userinfo::decrypt(&key, encrypted, iv, appid) {
        Ok(profile) => profile,
        Err(error) => return fail(LOGIN_FAILED, error),
    };
    let (login, _) = match app.auth.login_identity(identity).await {
        Ok(login) => login,
        Err(error) => return fail(SERVICE_FAILED, error),
    };
    let user_info = shared.profiles.put(login.user.id, profile);
    answer(
        0,
        "OK",
        json!({ "id": login.user.id.to_string(), "skey": login.token, "user_info": *user_info }),
    )
}

async fn check(app: &App, shared: &Shared, id: &str, skey: &str) -> Response {
    let id: Option<UserId> = id.parse().ok();
    let session = match app.auth.authenticate(skey).await {
        Ok(session) if Some(session.user_id) == id => session,
        Ok(_) | Err(crate::Error::Unauthorized) => {
            return fail(SESSION_INVALID, "invalid or expired session")
        }
        Err(error) => return fail(SERVICE_FAILED, error),
    };
    let user_info = super::session::who(app, shared, session.user_id).await;
    answer(0, "OK", json!({ "user_info": *user_info }))
}
