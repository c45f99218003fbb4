//! Every bad input has a defined outcome: an error reply (the connection stays usable) or a documented
//! close code. Also the limits: flooding, slow readers, heartbeat timeout, too many connections.

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_error_replies_and_the_connection_stays_usable() {
    let server = TestServer::start(|c| c.max_text_chars = 20).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;

    a.send_raw(Message::text("this is not json")).await;
    let reply = a.next_frame().await.unwrap();
    assert_eq!(reply["id"], serde_json::Value::Null);
    assert_eq!(reply["error"]["code"], "bad_request");

    a.send_raw(Message::text(r#"{"op":"ping"}"#)).await;
    assert_eq!(
        a.next_frame().await.unwrap()["error"]["code"],
        "bad_request",
        "no id"
    );
    a.send_raw(Message::text(r#"{"id":{"x":1},"op":"ping"}"#))
        .await;
    assert_eq!(
        a.next_frame().await.unwrap()["error"]["code"],
        "bad_request",
        "id of the wrong type"
    );
    a.send_raw(Message::text(r#"[1,2,3]"#)).await;
    assert_eq!(
        a.next_frame().await.unwrap()["error"]["code"],
        "bad_request",
        "not an object"
    );
    a.send_raw(Message::text(r#"{"id":5}"#)).await;
    let reply = a.next_frame().await.unwrap();
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(5), json!("bad_request"))
    );

    assert_eq!(a.err("fly_to_the_moon", json!({})).await, "unknown_op");
    assert_eq!(
        a.err("send", json!({ "to_user": bob.user_id })).await,
        "invalid_args",
        "missing cmid"
    );
    assert_eq!(
        a.err("history", json!({ "conversation_id": "five" })).await,
        "invalid_args"
    );
    assert_eq!(
        a.err("room_create", json!({ "name": "x", "color": "red" }))
            .await,
        "invalid_args",
        "unknown field"
    );
    assert_eq!(
        a.err("send", json!({ "cmid": "c", "content": "hi" })).await,
        "invalid_args",
        "no target"
    );

    let send = |cmid: &str, content: serde_json::Value| json!({ "to_user": bob.user_id, "cmid": cmid, "content": content });
    assert_eq!(
        a.err("send", send("e1", json!(""))).await,
        "invalid_message",
        "empty"
    );
    assert_eq!(
        a.err("send", send("e2", json!("   \n "))).await,
        "invalid_message",
        "blank"
    );
    assert_eq!(
        a.err("send", send("e3", json!("x".repeat(21)))).await,
        "message_too_long"
    );
    assert_eq!(
        a.err("send", send("e4", json!("evil\u{202E}txt.exe")))
            .await,
        "invalid_message",
        "bidi override"
    );
    assert_eq!(
        a.err("send", send("e5", json!("bell\u{0007}"))).await,
        "invalid_message",
        "control char"
    );
    assert_eq!(
        a.err("send", send("e6", json!(42))).await,
        "invalid_message",
        "text must be a string"
    );
    assert_eq!(
        a.err("send", send("bad cmid!", json!("hi"))).await,
        "invalid_message"
    );
    assert_eq!(
        a.err("room_create", json!({ "name": "\u{2066}room" }))
            .await,
        "invalid_args"
    );
    let custom = a
        .ok("send", json!({ "to_user": bob.user_id, "cmid": "c1", "kind": "custom", "content": { "type": "card", "n": 1 } }))
        .await;
    assert_eq!(
        custom["message"]["content"],
        json!({ "type": "card", "n": 1 })
    );

    // Binary frames are read as UTF-8 JSON; invalid UTF-8 there is an error reply, not a close.
    a.send_raw(Message::binary(vec![0xff, 0xfe, 0x00])).await;
    assert_eq!(
        a.next_frame().await.unwrap()["error"]["code"],
        "bad_request"
    );
    a.send_raw(Message::binary(br#"{"id":9,"op":"ping"}"#.to_vec()))
        .await;
    assert_eq!(a.next_frame().await.unwrap()["ok"], true);

    // After all that, the connection still works.
    assert_eq!(
        a.ok("send", send("fine", json!("still here"))).await["message"]["seq"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_frame_closes_with_1007() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    // tungstenite's client refuses to build an invalid text frame, so write the frame bytes ourselves.
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![b'{', 0xc3, 0x28, b'}'],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    a.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(a.closed().await, Closed::Code(1007));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_closes_with_1009() {
    let server = TestServer::start(|c| c.max_frame_bytes = 4096).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    a.send_raw(Message::text(format!(
        r#"{{"id":1,"op":"ping","args":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    )))
    .await;
    assert_eq!(a.closed().await, Closed::Code(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_is_refused_then_disconnected() {
    let server = TestServer::start(|c| {
        c.rate_per_sec = 5;
        c.rate_burst = 5;
    })
    .await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    for _ in 0..5 {
        assert_eq!(a.call("ping", json!({})).await["ok"], true);
    }
    let reply = a.call("ping", json!({})).await;
    assert_eq!(reply["error"]["code"], "rate_limited");
    assert!(reply["error"]["retry_after_ms"].as_u64().unwrap() >= 1);
    // Waiting as told makes the connection usable again.
    tokio::time::sleep(Duration::from_millis(
        reply["error"]["retry_after_ms"].as_u64().unwrap() + 50,
    ))
    .await;
    assert_eq!(a.call("ping", json!({})).await["ok"], true);
    // Ignoring the refusals gets the connection closed with 4008.
    for i in 0..50 {
        a.send_request("ping", json!({ "n": i })).await;
    }
    assert_eq!(a.closed().await, Closed::Code(4008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_dropped_with_4009_and_others_do_not_wait() {
    let server = TestServer::start(|c| {
        c.outbound_queue = 8;
        c.write_timeout_ms = 60_000;
    })
    .await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    let mut slow = connect_small_buffer(server.addr, &bob.token).await; // never reads until the end
    let mut fast = server.connect(&bob).await; // Bob's other device keeps up
    let big = "字".repeat(4000); // 12 KB per push
    let started = std::time::Instant::now();
    let mut fast_seen = 0;
    for i in 0..3000 {
        let acked = a
            .ok(
                "send",
                json!({ "to_user": bob.user_id, "cmid": format!("b{i}"), "content": big }),
            )
            .await;
        assert_eq!(acked["message"]["cmid"], format!("b{i}"));
        let message = fast.event("message").await;
        assert_eq!(message, pushed_as(&acked["message"], false));
        fast_seen += 1;
        if i % 25 == 0 && server_dropped(&server).await {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the sender was never held up"
    );
    assert!(fast_seen > 0);
    assert!(server_dropped(&server).await, "the slow reader was dropped");
    assert_eq!(slow.closed().await, Closed::Code(4009));
}

/// Reads the server's metrics to see whether a slow consumer was dropped.
async fn server_dropped(server: &TestServer) -> bool {
    metric(server.admin, "xindao_slow_consumers_total")
        .await
        .is_some_and(|count| count != "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_closed_after_idle_timeout_and_live_one_is_kept() {
    let server = TestServer::start(|c| {
        c.heartbeat_ms = 200;
        c.idle_timeout_ms = 600;
    })
    .await;
    let alice = server.login("alice").await;
    let mut live = server.connect(&alice).await;
    let mut silent = server.connect(&alice).await;
    // The live client keeps reading, so its library answers the server's pings.
    live.no_event("nothing", Duration::from_millis(1500)).await;
    assert_eq!(
        live.call("ping", json!({})).await["ok"],
        true,
        "a client that answers pings stays"
    );
    // The silent one read nothing (so it answered no ping) and was closed.
    assert_eq!(silent.closed().await, Closed::Code(4010));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_refuse_before_upgrade() {
    let server = TestServer::start(|c| {
        c.max_connections_per_user = 2;
        c.max_connections = 3;
    })
    .await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let _a1 = server.connect(&alice).await;
    let _a2 = server.connect(&alice).await;
    assert_eq!(upgrade_status(&server, Some(&alice.token)).await, 429);
    let _b1 = server.connect(&bob).await;
    assert_eq!(upgrade_status(&server, Some(&bob.token)).await, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_upgrade_gets_401_before_upgrading() {
    let server = TestServer::start(|_| {}).await;
    assert_eq!(upgrade_status(&server, None).await, 401);
    assert_eq!(upgrade_status(&server, Some("not-a-token")).await, 401);
    // The header form works too.
    let alice = server.login("alice").await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/v1/ws",
            server.addr
        ))
        .unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", alice.token).parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.close(None).await.unwrap();
}

/// Attempts an upgrade and returns the HTTP status the server answered with.
async fn upgrade_status(server: &TestServer, token: Option<&str>) -> u16 {
    let url = match token {
        Some(token) => format!("ws://{}/v1/ws?token={token}", server.addr),
        None => format!("ws://{}/v1/ws", server.addr),
    };
    match tokio_tungstenite::connect_async(url).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_is_echoed() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    // The server answers the close handshake instead of dropping the TCP connection.
    let mut b = server.connect(&alice).await;
    b.ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(b.closed().await, Closed::Code(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_storage_refuses_sends_with_unavailable_and_loses_nothing_acked() {
    // A 1 MiB quota makes SQLite answer SQLITE_FULL exactly as a full disk would.
    let mut server = TestServer::start(|c| c.sqlite_max_db_mb = Some(1)).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({ "name": "full" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let text = "字".repeat(4000);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let reply = a
            .call(
                "send",
                json!({ "conversation_id": room, "cmid": format!("f{i}"), "content": text }),
            )
            .await;
        if reply["ok"] == true {
            acked.push(reply["result"]["message"]["seq"].as_i64().unwrap());
        } else {
            refused = Some(reply["error"]["code"].as_str().unwrap().to_string());
            break;
        }
    }
    assert_eq!(
        refused.as_deref(),
        Some("unavailable"),
        "the store said it is full"
    );
    assert!(!acked.is_empty());
    // The connection stays usable for everything that needs no new space.
    assert_eq!(a.call("ping", json!({})).await["ok"], true);
    let history = a
        .ok("history", json!({ "conversation_id": room, "limit": 200 }))
        .await;
    let stored: Vec<i64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(stored, acked, "everything acked is there, nothing else");
    // After a restart without the quota, the same cmid goes through once.
    server.stop().await;
    server.config.sqlite_max_db_mb = None;
    server.restart().await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let n = acked.len();
    let retry = a
        .ok(
            "send",
            json!({ "conversation_id": room, "cmid": format!("f{n}"), "content": text }),
        )
        .await;
    assert_eq!(retry["duplicate"], false);
    assert_eq!(
        retry["message"]["seq"],
        n as i64 + 1,
        "no seq was burnt by the failed attempt"
    );
}
