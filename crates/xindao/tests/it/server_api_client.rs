//! The server API's test client: API keys made by the real `xindao apikey` binary against a test server's
//! store, and calls that return the status with the JSON answer (or assert on them).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use reqwest::Method;
use serde_json::Value;
use xindao::Config;

use crate::common::{http, Client, TestServer};
use crate::services::TestDb;

/// A test scenario run against one server (an `async fn(&TestServer)`, boxed).
pub type Scenario = for<'a> fn(&'a TestServer) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Runs `scenario` on a fresh SQLite server, then stops it.
pub async fn on_sqlite(scenario: Scenario) {
    let mut server = TestServer::start(|_| {}).await;
    scenario(&server).await;
    server.stop().await;
}

/// Runs `scenario` on a fresh PostgreSQL database (skipped when PostgreSQL is not reachable), then stops it.
pub async fn on_postgres(scenario: Scenario) {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let mut server = TestServer::start_postgres(&db).await;
    scenario(&server).await;
    server.stop().await;
}

/// Runs `xindao apikey ARGS` (the real binary) against the server's store; its stdout.
pub async fn apikey(server: &TestServer, args: &[&str]) -> (bool, String) {
    apikey_for(&server.config, args).await
}

/// Runs `xindao apikey ARGS` against the store `config` names.
pub async fn apikey_for(config: &Config, args: &[&str]) -> (bool, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_xindao"));
    command
        .arg("apikey")
        .args(args)
        .arg("--data-dir")
        .arg(&config.data_dir)
        .arg("--store")
        .arg(String::from(config.store.clone()))
        .env("RUST_BACKTRACE", "0");
    let output = command.output().await.expect("run xindao apikey");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    )
}

/// A new key with these scopes (`xindao apikey create`).
pub async fn new_key(server: &TestServer, name: &str, scopes: &str) -> String {
    let (ok, key) = apikey(server, &["create", "--name", name, "--scopes", scopes]).await;
    assert!(ok && key.starts_with("xdk_"), "apikey create: {key}");
    key
}

/// One server API call: status and JSON body.
pub async fn call(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_at(server.addr, key, method, path, body).await
}

/// One server API call to the node at `addr`.
pub async fn call_at(
    addr: SocketAddr,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http()
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON answer: {text}"));
    (status, body)
}

/// A call that must answer 200; its body.
pub async fn ok(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (status, answer) = call(server, key, method.clone(), path, body).await;
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer
}

/// A call that must fail with this status and code.
pub async fn fails(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
) {
    let (got, answer) = call(server, key, method.clone(), path, body).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (status, Some(code)),
        "{method} {path}: {answer}"
    );
}

/// The next `member` push about `user`.
pub async fn member_event(ws: &mut Client, user: i64) -> Value {
    loop {
        let event = ws.event("member").await;
        if event["user_id"] == user {
            return event;
        }
    }
}
