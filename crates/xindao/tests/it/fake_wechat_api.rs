//! A fake of WeChat's server API for the content check and notification tests, a real local HTTP server
//! answering like the real one (JSON labelled text/plain, `errcode`/`errmsg` on errors): `code2Session`
//! (`u:<name>` logs in openid `o-<name>`), both token APIs (counting fetches, each token valid until the test
//! revokes it), `msg_sec_check` v2 (deciding by the text: `risky…`, `review…`, `quota…` answers 45009,
//! `slow…` answers after 3 s) and `subscribeMessage.send` (43101 for openids the test marks as refusing).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use serde_json::{json, Value};

use crate::common::Login;

type Params = Query<std::collections::HashMap<String, String>>;

#[derive(Default)]
pub struct FakeState {
    pub token_fetches: AtomicUsize,
    /// The `force_refresh` of each stable_token call, in order.
    pub forced: Mutex<Vec<bool>>,
    pub valid_tokens: Mutex<HashSet<String>>,
    pub expires_in: AtomicI64,
    pub checks: Mutex<Vec<Value>>,
    pub sends: Mutex<Vec<Value>>,
    pub refusing: Mutex<HashSet<String>>,
}

#[derive(Clone)]
pub struct FakeWeChat {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
}

/// WeChat's answer: JSON text labelled text/plain.
fn answer(body: Value) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "text/plain")], body.to_string())
}

fn invalid_token() -> Value {
    json!({ "errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest rid: 6571b0a0-1b2c3d4e" })
}

async fn code2session(params: Params) -> impl axum::response::IntoResponse {
    let code = params.get("js_code").cloned().unwrap_or_default();
    match code.strip_prefix("u:") {
        Some(name) => {
            answer(json!({ "openid": format!("o-{name}"), "session_key": "c2Vzc2lvbktleQ==" }))
        }
        None => answer(json!({ "errcode": 40029, "errmsg": "invalid code, rid: 1" })),
    }
}

fn issue(state: &FakeState) -> Value {
    let n = state.token_fetches.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("ACCESS-TOKEN-{n}");
    state.valid_tokens.lock().unwrap().insert(token.clone());
    json!({ "access_token": token, "expires_in": state.expires_in.load(Ordering::SeqCst) })
}

async fn stable_token(
    State(state): State<Arc<FakeState>>,
    axum::Json(body): axum::Json<Value>,
) -> impl axum::response::IntoResponse {
    assert_eq!(body["grant_type"], "client_credential");
    if body["appid"] != "wxAPPID" || body["secret"] != "APPSECRET" {
        return answer(json!({ "errcode": 40013, "errmsg": "invalid appid" }));
    }
    state
        .forced
        .lock()
        .unwrap()
        .push(body["force_refresh"].as_bool().unwrap_or(false));
    answer(issue(&state))
}

async fn token(
    State(state): State<Arc<FakeState>>,
    params: Params,
) -> impl axum::response::IntoResponse {
    assert_eq!(
        params.get("grant_type").map(String::as_str),
        Some("client_credential")
    );
    answer(issue(&state))
}

fn token_ok(state: &FakeState, params: &Params) -> bool {
    let token = params.get("access_token").cloned().unwrap_or_default();
    state.valid_tokens.lock().unwrap().contains(&token)
}

async fn msg_sec_check(
    State(state): State<Arc<FakeState>>,
    params: Params,
    axum::Json(body): axum::Json<Value>,
) -> impl axum::response::IntoResponse {
    if !token_ok(&state, &params) {
        return answer(invalid_token());
    }
    state.checks.lock().unwrap().push(body.clone());
    let text = body["content"].as_str().unwrap_or_default().to_string();
    let (suggest, label) = if text.starts_with("risky") {
        ("risky", 20001)
    } else if text.starts_with("review") {
        ("review", 21000)
    } else if text.starts_with("quota") {
        return answer(
            json!({ "errcode": 45009, "errmsg": "reach max api daily quota limit rid: 2" }),
        );
    } else if text.starts_with("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
        ("pass", 100)
    } else {
        ("pass", 100)
    };
    answer(json!({
        "errcode": 0,
        "errmsg": "ok",
        "result": { "suggest": suggest, "label": label },
        "detail": [
            { "strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90 },
            { "strategy": "keyword", "errcode": 0, "suggest": "pass", "label": 100, "level": 20 }
        ],
        "trace_id": "60ae120f-371d5872-7941a05b"
    }))
}

async fn subscribe_send(
    State(state): State<Arc<FakeState>>,
    params: Params,
    axum::Json(body): axum::Json<Value>,
) -> impl axum::response::IntoResponse {
    if !token_ok(&state, &params) {
        return answer(invalid_token());
    }
    state.sends.lock().unwrap().push(body.clone());
    let touser = body["touser"].as_str().unwrap_or_default().to_string();
    if state.refusing.lock().unwrap().contains(&touser) {
        return answer(
            json!({ "errcode": 43101, "errmsg": "user refuse to accept the msg rid: 3" }),
        );
    }
    answer(json!({ "errcode": 0, "errmsg": "ok", "msgid": 1_889_470_862_438_727_680_i64 }))
}

impl FakeWeChat {
    pub async fn start() -> FakeWeChat {
        let state = Arc::new(FakeState {
            expires_in: AtomicI64::new(7200),
            ..FakeState::default()
        });
        let app = axum::Router::new()
            .route("/sns/jscode2session", get(code2session))
            .route("/cgi-bin/stable_token", post(stable_token))
            .route("/cgi-bin/token", get(token))
            .route("/wxa/msg_sec_check", post(msg_sec_check))
            .route("/cgi-bin/message/subscribe/send", post(subscribe_send))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeWeChat { addr, state }
    }

    /// Points a configuration at this fake, with its app's credentials.
    pub fn configure(&self, config: &mut xindao::Config) {
        config.wechat_appid = Some("wxAPPID".into());
        config.wechat_secret = Some("APPSECRET".into());
        config.wechat_api_base = format!("http://{}", self.addr);
    }

    /// Revokes every token handed out so far (WeChat then answers 40001).
    pub fn revoke_tokens(&self) {
        self.state.valid_tokens.lock().unwrap().clear();
    }

    pub fn fetches(&self) -> usize {
        self.state.token_fetches.load(Ordering::SeqCst)
    }

    pub fn checks(&self) -> Vec<Value> {
        self.state.checks.lock().unwrap().clone()
    }

    pub fn sends(&self) -> Vec<Value> {
        self.state.sends.lock().unwrap().clone()
    }
}

/// Logs `name` in with WeChat (openid `o-<name>`) on the server at `addr`.
pub async fn wechat_login(addr: SocketAddr, name: &str) -> Login {
    let response = crate::common::http()
        .post(format!("http://{addr}/v1/login/wechat"))
        .json(&json!({ "code": format!("u:{name}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "WeChat login");
    let body: Value = response.json().await.unwrap();
    Login {
        token: body["token"].as_str().unwrap().to_string(),
        user_id: body["user"]["id"].as_i64().unwrap(),
    }
}
