//! Login and sessions: WeChat code2Session against a local fake with real-shaped answers, the development
//! login switch, logout, and bearer tokens on HTTP and WebSocket.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::get;
use common::*;
use serde_json::{json, Value};
use xindao::config::DevLogin;

/// A fake WeChat API: the code decides the answer, like the real one's success and error payloads (and, for
/// the bounds on reading it, a huge and a slow one).
pub(crate) async fn fake_wechat() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    async fn jscode2session(
        State(seen): State<Arc<Mutex<Vec<Value>>>>,
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> (axum::http::HeaderMap, String) {
        seen.lock().unwrap().push(json!(query));
        let code = query.get("js_code").cloned().unwrap_or_default();
        let body = match code.as_str() {
            "good-code" => {
                json!({ "openid": "oABC123", "session_key": "SECRET-SESSION-KEY==", "unionid": "uXYZ" })
            }
            "good-code-2" => json!({ "openid": "oABC123", "session_key": "ANOTHER-KEY==" }),
            "other-user" => json!({ "openid": "oDEF456", "session_key": "K3Y==" }),
            "used" => json!({ "errcode": 40163, "errmsg": "code been used, rid: 1" }),
            "limited" => {
                json!({ "errcode": 45011, "errmsg": "api minute-quota reach limit, rid: 2" })
            }
            "busy" => json!({ "errcode": -1, "errmsg": "system error, rid: 3" }),
            "risky" => json!({ "errcode": 40226, "errmsg": "invalid user, rid: 4" }),
            "weird" => json!({ "errcode": 40013, "errmsg": "invalid appid" }),
            "garbage" => return (Default::default(), "<html>502 Bad Gateway</html>".into()),
            "huge" => return (Default::default(), " ".repeat(8 << 20) + "{}"),
            "slow" => {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                json!({ "openid": "oSLOW" })
            }
            _ => json!({ "errcode": 40029, "errmsg": "invalid code, rid: 5" }),
        };
        // WeChat labels its JSON as text/plain.
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("content-type", "text/plain".parse().unwrap());
        (headers, body.to_string())
    }
    let app = axum::Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

pub(crate) async fn wechat_server() -> (TestServer, Arc<Mutex<Vec<Value>>>) {
    let (wechat, seen) = fake_wechat().await;
    let server = TestServer::start(|c| {
        c.wechat_appid = Some("wxAPPID".into());
        c.wechat_secret = Some("APPSECRET".into());
        c.wechat_api_base = format!("http://{wechat}");
        c.dev_login = DevLogin::Auto;
    })
    .await;
    (server, seen)
}

pub(crate) async fn post(
    server: &TestServer,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(server.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_login_issues_a_session_and_never_leaks_the_session_key() {
    let (server, seen) = wechat_server().await;
    let (status, body) = post(
        &server,
        "/v1/login/wechat",
        json!({ "code": "good-code" }),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("SECRET-SESSION-KEY") && !text.contains("session_key"),
        "{text}"
    );
    assert!(
        !text.contains("oABC123"),
        "the openid stays server-side too"
    );
    let token = body["token"].as_str().unwrap();
    assert!(token.len() >= 43, "256-bit token");
    let user_id = body["user"]["id"].as_i64().unwrap();

    let call = seen.lock().unwrap()[0].clone();
    assert_eq!(call["appid"], "wxAPPID");
    assert_eq!(call["secret"], "APPSECRET");
    assert_eq!(call["js_code"], "good-code");
    assert_eq!(call["grant_type"], "authorization_code");

    // The same openid is the same user; a different one is another user.
    let (_, again) = post(
        &server,
        "/v1/login/wechat",
        json!({ "code": "good-code-2" }),
        None,
    )
    .await;
    assert_eq!(again["user"]["id"], user_id);
    assert_ne!(
        again["token"], body["token"],
        "every login gets its own token"
    );
    let (_, other) = post(
        &server,
        "/v1/login/wechat",
        json!({ "code": "other-user" }),
        None,
    )
    .await;
    assert_ne!(other["user"]["id"], user_id);

    // The token works for HTTP and for the WebSocket.
    let me: Value = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["id"], user_id);
    let client = Client::connect(server.addr, token).await;
    assert_eq!(client.hello["user"]["id"], user_id);
    assert_eq!(client.hello["protocol"], 1);

    // With WeChat configured, the development login is off unless asked for.
    let (status, body) = post(
        &server,
        "/v1/login/dev",
        json!({ "display_name": "mallory" }),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_errors_map_to_clear_codes() {
    let (server, _) = wechat_server().await;
    for (code, status, error) in [
        ("bad-code", 400, "invalid_code"),
        ("used", 400, "invalid_code"),
        ("limited", 429, "wechat_rate_limited"),
        ("busy", 503, "wechat_busy"),
        ("risky", 403, "wechat_user_blocked"),
        ("weird", 502, "wechat_error"),
        ("garbage", 502, "wechat_error"),
    ] {
        let (got_status, body) =
            post(&server, "/v1/login/wechat", json!({ "code": code }), None).await;
        assert_eq!(
            (got_status, body["error"]["code"].as_str().unwrap()),
            (status, error),
            "code {code}: {body}"
        );
        assert!(!body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("APPSECRET"));
    }
    let (status, body) = post(&server, "/v1/login/wechat", json!({ "nope": 1 }), None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_args"))
    );
    let (status, _) = post(&server, "/v1/login/wechat", json!({ "code": "" }), None).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechat_unreachable_is_a_clear_error() {
    // Nothing listens on this port once the listener is dropped.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let server = TestServer::start(|c| {
        c.wechat_appid = Some("wxAPPID".into());
        c.wechat_secret = Some("APPSECRET".into());
        c.wechat_api_base = format!("http://{dead}");
    })
    .await;
    let (status, body) = post(
        &server,
        "/v1/login/wechat",
        json!({ "code": "good-code" }),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (502, json!("wechat_error"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_token_and_closes_its_sockets() {
    let server = TestServer::start(|_| {}).await;
    let phone = server.login("alice").await;
    let web = server.login("alice").await;
    assert_eq!(phone.user_id, web.user_id, "one display name, one user");
    let mut phone_socket = server.connect(&phone).await;
    let mut web_socket = server.connect(&web).await;

    let (status, _) = post(&server, "/v1/logout", json!({}), Some(&phone.token)).await;
    assert_eq!(status, 200);
    assert_eq!(phone_socket.closed().await, Closed::Code(4001));
    // Only that session ends: the web session of the same user goes on.
    assert_eq!(web_socket.call("ping", json!({})).await["ok"], true);

    let (status, body) = post(&server, "/v1/logout", json!({}), Some(&phone.token)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    let me = reqwest::Client::new()
        .get(server.url("/v1/me"))
        .bearer_auth(&phone.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/ws?token={}",
        server.addr, phone.token
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_login_validates_names_and_sessions_survive_restart() {
    let mut server = TestServer::start(|_| {}).await;
    for bad in [
        json!({ "display_name": "" }),
        json!({ "display_name": "a\u{202E}b" }),
        json!({ "name": "x" }),
    ] {
        let (status, body) = post(&server, "/v1/login/dev", bad.clone(), None).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("invalid_args")),
            "{bad}"
        );
    }
    let alice = server.login("alice").await;
    server.restart().await;
    let client = server.connect(&alice).await;
    assert_eq!(
        client.hello["user"]["display_name"], "alice",
        "tokens are persisted, not in memory"
    );
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("http://{}/metrics", server.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("xindao_connections"), "{metrics}");
}
