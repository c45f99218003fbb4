//! The server API's refusals and limits, through real HTTP: no key, an unknown or revoked key, a missing
//! scope, oversize and malformed bodies, bad ids; the per-key rate limit; the log line of every call (the
//! key's name, never the key); and an API send racing a client send on the same cmid (SQLite and
//! PostgreSQL), which must make one message.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{self, http, TestServer};
use crate::server_api_client::{apikey, call, new_key, on_postgres, on_sqlite};

async fn code(
    server: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let (status, answer) = call(server, key, method, path, body).await;
    (
        status,
        answer["error"]["code"].as_str().unwrap_or("-").to_string(),
    )
}

/// A raw body (not JSON-encoded by the client).
async fn raw(server: &TestServer, key: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let response = http()
        .post(server.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn keys_scopes_and_bad_input_are_refused_in_json() {
    let mut server = TestServer::start(|_| {}).await;
    let bob = server.login("bob").await;
    let users = new_key(&server, "users-only", "users").await;
    let reader = new_key(&server, "reader", "read").await;
    let path = format!("/v1/server/users/{}", bob.user_id);

    // No key, an unknown key, a session token: 401 in the API's JSON.
    let response = http().get(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    assert_eq!(
        code(&server, "xdk_unknown", Method::GET, &path, None).await,
        (401, "unauthorized".into())
    );
    let well_shaped = format!("xdk_{}", "A".repeat(43));
    assert_eq!(
        code(&server, &well_shaped, Method::GET, &path, None).await,
        (401, "unauthorized".into())
    );
    assert_eq!(
        code(&server, &bob.token, Method::GET, &path, None).await,
        (401, "unauthorized".into())
    );

    // Scopes: `users` may not send; `read` may read any resource but change nothing.
    let send = json!({ "to_user": bob.user_id, "cmid": "s-1", "content": "hi" });
    assert_eq!(
        code(
            &server,
            &users,
            Method::POST,
            "/v1/server/messages",
            Some(send.clone())
        )
        .await,
        (403, "insufficient_scope".into())
    );
    assert_eq!(call(&server, &users, Method::GET, &path, None).await.0, 200);
    assert_eq!(
        call(&server, &reader, Method::GET, &path, None).await.0,
        200
    );
    assert_eq!(
        call(
            &server,
            &reader,
            Method::GET,
            &format!("{path}/sessions"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        code(&server, &reader, Method::POST, &format!("{path}/ban"), None).await,
        (403, "insufficient_scope".into())
    );

    // Bodies: oversize (413), not JSON or not an object (invalid_json), wrong fields (invalid_args).
    let (status, answer) = raw(&server, &users, "/v1/server/users", vec![b' '; 70 * 1024]).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    for bad in [
        &b"{not json"[..],
        b"[1,2]",
        b"\"alice\"",
        b"null",
        b"",
        b"\xff\xfe",
    ] {
        let (status, answer) = raw(&server, &users, "/v1/server/users", bad.to_vec()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_json")),
            "{bad:?}"
        );
    }
    let (status, answer) = raw(
        &server,
        &users,
        "/v1/server/users",
        br#"{"display_name":"x","admin":true}"#.to_vec(),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_args"))
    );
    let big = "x".repeat(20 * 1024);
    assert_eq!(
        code(
            &server,
            &users,
            Method::POST,
            "/v1/server/users",
            Some(json!({ "display_name": "x", "custom": { "big": big } }))
        )
        .await,
        (413, "message_too_long".into())
    );
    assert_eq!(
        code(
            &server,
            &users,
            Method::POST,
            "/v1/server/users",
            Some(json!({ "display_name": "x", "external_id": "" }))
        )
        .await,
        (400, "invalid_args".into())
    );

    // Ids: not a number (400), unknown (404), unknown route (404).
    assert_eq!(
        code(&server, &users, Method::GET, "/v1/server/users/abc", None).await,
        (400, "invalid_args".into())
    );
    assert_eq!(
        code(&server, &users, Method::GET, "/v1/server/users/0", None).await,
        (400, "invalid_args".into())
    );
    assert_eq!(
        code(
            &server,
            &users,
            Method::GET,
            "/v1/server/users/424242",
            None
        )
        .await,
        (404, "not_found".into())
    );
    assert_eq!(
        code(
            &server,
            &reader,
            Method::GET,
            "/v1/server/conversations/1/messages?limit=0",
            None
        )
        .await,
        (400, "invalid_args".into())
    );
    assert_eq!(
        code(&server, &users, Method::GET, "/v1/server/nothing", None).await,
        (404, "not_found".into())
    );

    assert_eq!(
        code(&server, &users, Method::PUT, "/v1/server/users", None).await,
        (405, "method_not_allowed".into())
    );

    // Revoked: the next call is 401; the listing shows the key as revoked, never the key.
    let (ok, _) = apikey(&server, &["revoke", "--name", "users-only"]).await;
    assert!(ok);
    assert_eq!(
        code(&server, &users, Method::GET, &path, None).await,
        (401, "unauthorized".into())
    );
    let (ok, listing) = apikey(&server, &["list"]).await;
    assert!(
        ok && listing.contains("users-only")
            && listing.contains("revoked_at=")
            && !listing.contains("xdk_"),
        "{listing}"
    );
    let (ok, _) = apikey(&server, &["revoke", "--name", "users-only"]).await;
    assert!(!ok, "revoking twice fails");
    let (ok, _) = apikey(&server, &["create", "--name", "reader", "--scopes", "read"]).await;
    assert!(!ok, "a taken name is refused");
    let (ok, _) = apikey(&server, &["create", "--name", "bad", "--scopes", "admin"]).await;
    assert!(!ok, "an unknown scope is refused");
    server.stop().await;
}

#[tokio::test]
async fn each_key_is_rate_limited_and_every_call_is_logged_by_name() {
    let logs = common::init_logging();
    let mut server = TestServer::start(|config| {
        config.server_api_rate_per_sec = 1;
        config.server_api_burst = 3;
    })
    .await;
    let name = format!("limited-{:08x}", rand::random::<u32>());
    let key = new_key(&server, &name, "read").await;
    let other = new_key(&server, "other", "read").await;
    let bob = server.login("bob").await;
    let path = format!("/v1/server/users/{}", bob.user_id);
    for _ in 0..3 {
        assert_eq!(call(&server, &key, Method::GET, &path, None).await.0, 200);
    }
    let response = http()
        .get(server.url(&path))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        call(&server, &other, Method::GET, &path, None).await.0,
        200,
        "another key has its own bucket"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        call(&server, &key, Method::GET, &path, None).await.0,
        200,
        "the bucket refills"
    );

    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    let lines: Vec<&str> = logged.lines().filter(|line| line.contains(&name)).collect();
    assert!(
        lines.len() >= 5,
        "every call is logged with the key's name: {lines:?}"
    );
    assert!(lines.iter().any(|line| line.contains("status=429")));
    assert!(!logged.contains(&key), "the key itself is never logged");
    server.stop().await;
}

/// A client send and a server-API send of the same user with the same cmid, at once, many times: each pair
/// makes one message, both answers carry it, exactly one of them is new.
async fn cmid_race(server: &TestServer) {
    let key = new_key(server, "racer", "messages").await;
    let (bob, carol) = (server.login("bob").await, server.login("carol").await);
    let mut bob_ws = server.connect(&bob).await;
    let direct = bob_ws
        .ok("direct_open", json!({ "user_id": carol.user_id }))
        .await;
    let conversation = direct["conversation"]["id"].as_i64().unwrap();
    for round in 0..20 {
        let cmid = format!("race-{round}");
        let args = json!({ "conversation_id": conversation, "cmid": cmid, "content": "same" });
        let mut api_args = args.clone();
        api_args["sender_id"] = json!(bob.user_id);
        let api = call(
            server,
            &key,
            Method::POST,
            "/v1/server/messages",
            Some(api_args),
        );
        let client = bob_ws.ok("send", args);
        let ((status, api), client) = tokio::join!(api, client);
        assert_eq!(status, 200, "{api}");
        assert_eq!(
            api["message"], client["message"],
            "one message for one cmid"
        );
        let new = [&api, &client]
            .iter()
            .filter(|a| a["duplicate"] == false)
            .count();
        assert_eq!(
            new, 1,
            "exactly one answer is the new message: {api} {client}"
        );
        assert_eq!(
            api["message"]["seq"],
            round + 1,
            "no seq is used twice or skipped"
        );
    }
    let history = bob_ws
        .ok(
            "history",
            json!({ "conversation_id": conversation, "limit": 100 }),
        )
        .await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn an_api_send_racing_a_client_send_on_one_cmid_makes_one_message_on_sqlite() {
    on_sqlite(|server| Box::pin(cmid_race(server))).await;
}

#[tokio::test]
async fn an_api_send_racing_a_client_send_on_one_cmid_makes_one_message_on_postgres() {
    on_postgres(|server| Box::pin(cmid_race(server))).await;
}
