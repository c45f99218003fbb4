//! Bad input on every Wafer endpoint: each gets a clear error in the shape its SDK acts on (a login failure
//! it reports, a session failure it re-logs in once for, never a re-login for anything else), and no tunnel
//! is left stuck: a bad ticket is upgraded and then closed without a `close` packet, so the SDK fetches a new
//! URL; bad frames are dropped without harming the tunnel or reaching anyone.

use crate::common;
use crate::wafer::*;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const MAGIC: &str = "F2C224D4-2BCE-4C64-AF9F-A6D872000D1A";

/// Wafer 2's login failure: `code: -1` and the error name. Wafer 1's: the magic key, the error, no session.
async fn login_fails(server: &TestServer, headers: &[(&str, &str)], error: &str) {
    let (status, v2) = get_with(server, "/weapp/login", headers).await;
    assert!(status >= 400, "{status} {v2}");
    assert_eq!(
        (&v2["code"], &v2["error"]),
        (&json!(-1), &json!(error)),
        "{v2}"
    );
    assert!(v2.get("data").is_none());
    let (_, v1) = get_with(server, "/wafer1/login", headers).await;
    assert_eq!(v1[MAGIC], 1, "{v1}");
    assert_eq!(v1["error"], error);
    assert!(v1.get("session").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_get_the_login_failure_shape() {
    let mut server = wafer_server(|_| {}).await;
    let key = session_key("oBad");
    let (data, iv) = encrypt(&key, &profile("oBad", "Bad"));
    login_fails(&server, &[], "ERR_HEADER_MISSED").await;
    let c = code("oBad");
    login_fails(
        &server,
        &[("X-WX-Code", &c), ("X-WX-Encrypted-Data", &data)],
        "ERR_HEADER_MISSED",
    )
    .await;
    login_fails(
        &server,
        &[("X-WX-Code", &c), ("X-WX-IV", &iv)],
        "ERR_HEADER_MISSED",
    )
    .await;
    // Unknown and replayed codes: WeChat refuses them.
    login_fails(
        &server,
        &[("X-WX-Code", "not-a-code")],
        "ERR_GET_SESSION_KEY",
    )
    .await;
    let once = code("oBad");
    get_with(&server, "/weapp/login", &[("X-WX-Code", &once)]).await;
    login_fails(&server, &[("X-WX-Code", &once)], "ERR_GET_SESSION_KEY").await;
    // Each of these spends a fresh code, as a client would.
    let cases: Vec<(String, String, &str)> = vec![
        ("%%%not base64".into(), iv.clone(), "bad base64"),
        (data.clone(), "c2hvcnQ=".into(), "short iv"),
        (
            encrypt(&session_key("oSomeoneElse"), &profile("oBad", "Bad")).0,
            iv.clone(),
            "wrong key",
        ),
        (
            encrypt(
                &key,
                &json!({ "nickName": "x", "watermark": { "appid": "wxOTHER" } }),
            )
            .0,
            iv.clone(),
            "other app",
        ),
        (encrypt(&key, &json!([1, 2])).0, iv.clone(), "not an object"),
        ("A".repeat(9000), iv.clone(), "oversize"),
    ];
    for (data, iv, why) in cases {
        let (c1, c2) = (code("oBad"), code("oBad"));
        let (status, v2) = get_with(
            &server,
            "/weapp/login",
            &[
                ("X-WX-Code", &c1),
                ("X-WX-Encrypted-Data", &data),
                ("X-WX-IV", &iv),
            ],
        )
        .await;
        assert_eq!(
            (status, &v2["code"], &v2["error"]),
            (400, &json!(-1), &json!("ERR_IN_DECRYPT_DATA")),
            "{why}: {v2}"
        );
        let (_, v1) = get_with(
            &server,
            "/wafer1/login",
            &[
                ("X-WX-Code", &c2),
                ("X-WX-Encrypted-Data", &data),
                ("X-WX-IV", &iv),
            ],
        )
        .await;
        assert_eq!(
            (&v1[MAGIC], &v1["error"]),
            (&json!(1), &json!("ERR_IN_DECRYPT_DATA")),
            "{why}: {v1}"
        );
    }
    // A signature that does not match the raw data.
    let c = code("oBad");
    let headers = [
        ("X-WX-Code", c.as_str()),
        ("X-WX-Raw-Data", "{}"),
        ("X-WX-Signature", "0000"),
    ];
    let (_, v2) = get_with(&server, "/weapp/login", &headers).await;
    assert_eq!(v2["error"], "ERR_IN_DECRYPT_DATA", "{v2}");
    // A body far over the HTTP limit on a POST login: answered from the headers, the body never read.
    let response = http()
        .post(server.url("/weapp/login"))
        .body(vec![b'x'; 1 << 20])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "ERR_HEADER_MISSED");
    // Headers over max_header_bytes are refused at the edge (431), before any Wafer code.
    let huge = "A".repeat(20_000);
    let response = http()
        .get(server.url("/weapp/login"))
        .header("X-WX-Code", "c")
        .header("X-WX-Encrypted-Data", &huge)
        .send()
        .await;
    assert!(response.map_or(true, |r| r.status() == 431));
    // A code-only login of a user never seen before works (a minimal profile), and so does a good one.
    let c = code("oNew");
    let (_, v2) = get_with(&server, "/weapp/login", &[("X-WX-Code", &c)]).await;
    assert_eq!(v2["code"], 0, "{v2}");
    assert_eq!(v2["data"]["userinfo"]["openId"], "oNew");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_failures_and_other_failures_differ() {
    let mut server = wafer_server(|c| c.login_per_ip_per_minute = 1_000).await;
    let (skey, _) = login_v2(&server, "oSess", "Sess").await;
    for path in ["/weapp/user", "/weapp/tunnel"] {
        for headers in [
            vec![],
            vec![("X-WX-Skey", "forged")],
            vec![("X-WX-Skey", &*"k".repeat(300))],
        ] {
            let (status, body) = get_with(&server, path, &headers).await;
            assert_eq!(
                (status, &body["code"], &body["error"]),
                (401, &json!(-1), &json!("ERR_SKEY_INVALID")),
                "{path}: {body}"
            );
        }
        let (status, body) = get_with(&server, path, &[("X-WX-Skey", &skey)]).await;
        assert_eq!((status, &body["code"]), (200, &json!(0)), "{body}");
    }
    // Wafer 1: the magic key with ERR_INVALID_SESSION (re-login), also for a valid skey of another id.
    let (data, iv) = encrypt(&session_key("oOne"), &profile("oOne", "One"));
    let c = code("oOne");
    let (_, body) = get_with(
        &server,
        "/wafer1/login",
        &[
            ("X-WX-Code", &c),
            ("X-WX-Encrypted-Data", &data),
            ("X-WX-IV", &iv),
        ],
    )
    .await;
    let (id, skey1) = (
        body["session"]["id"].as_str().unwrap().to_string(),
        body["session"]["skey"].as_str().unwrap().to_string(),
    );
    for headers in [
        vec![],
        vec![("X-WX-Id", id.as_str())],
        vec![("X-WX-Id", "999999"), ("X-WX-Skey", &skey1)],
        vec![("X-WX-Id", "x"), ("X-WX-Skey", &skey1)],
    ] {
        for path in ["/wafer1/user", "/wafer1/tunnel"] {
            let (_, body) = get_with(&server, path, &headers).await;
            assert_eq!(
                (&body[MAGIC], &body["error"]),
                (&json!(1), &json!("ERR_INVALID_SESSION")),
                "{path} {headers:?}: {body}"
            );
        }
    }
    let (_, body) = get_with(
        &server,
        "/wafer1/user",
        &[("X-WX-Id", &id), ("X-WX-Skey", &skey1)],
    )
    .await;
    assert!(
        body.get(MAGIC).is_none(),
        "a good answer never carries the magic key: {body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_are_upgraded_then_closed_without_a_close_packet() {
    let mut server = wafer_server(|_| {}).await;
    let (skey, _) = login_v2(&server, "oTicket", "Ticket").await;
    let (_, body) = get_with(&server, "/weapp/tunnel", &[("X-WX-Skey", &skey)]).await;
    let url = body["data"]["connectUrl"].as_str().unwrap().to_string();
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(next_text(&mut first).await.as_deref(), Some("timeout:15"));
    let base = url.split('?').next().unwrap().to_string();
    for bad in [
        url.clone(),
        format!("{base}?ticket=forged"),
        base.clone(),
        format!("{base}?ticket={}", "t".repeat(5000)),
    ] {
        // The upgrade succeeds (a refused one would leave the SDK stuck for good)...
        let (mut ws, response) = tokio_tungstenite::connect_async(&bad)
            .await
            .expect("upgraded");
        assert_eq!(response.status(), 101);
        // ...then the socket closes with 4001 and no `close` packet: the SDK reconnects with a new URL.
        let (packets, code) = ending(&mut ws).await;
        assert!(packets.is_empty(), "{bad}: {packets:?}");
        assert_eq!(code, Some(4001), "{bad}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_dropped_and_the_tunnel_lives_on() {
    let mut server = wafer_server(|c| c.max_frame_bytes = 4096).await;
    let (skey_a, _) = login_v2(&server, "oFrameA", "A").await;
    let (skey_b, _) = login_v2(&server, "oFrameB", "B").await;
    let mut a = open_tunnel(&server, &skey_a).await;
    let mut b = open_tunnel(&server, &skey_b).await;
    next_message(&mut a).await;
    next_message(&mut a).await;
    next_message(&mut b).await;
    for bad in [
        Message::text("message:{not json"),
        Message::text("message:[1,2,3]"),
        Message::text("message:\"speak\""),
        Message::text("message:{\"type\":\"speak\",\"content\":{\"word\":42}}"),
        Message::text("message:{\"type\":\"speak\",\"content\":\"hello\"}"),
        Message::text("message:{\"content\":1}"),
        Message::text("message"),
        Message::text("pong"),
        Message::text("whatever:1"),
        Message::text(""),
        Message::binary(vec![0u8, 159, 146, 150]),
    ] {
        a.send(bad).await.unwrap();
    }
    // Still alive, and nothing of that reached b: the next thing b gets is this speak.
    a.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut a).await.as_deref(), Some("pong"));
    speak(&mut a, "after the junk").await;
    let heard = next_message(&mut b).await;
    assert_eq!(heard["content"]["word"], "after the junk", "{heard}");
    // A frame over max_frame_bytes closes with 1009, without a `close` packet (the SDK reconnects).
    speak(&mut a, &"x".repeat(5000)).await;
    let (packets, code) = ending(&mut a).await;
    assert!(!packets.contains(&"close".to_string()), "{packets:?}");
    assert_eq!(code, Some(1009));
    let leave = next_message(&mut b).await;
    assert_eq!(leave["content"]["leave"]["nickName"], "A");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_a_tunnel_is_a_kick_close_packet_first() {
    let mut server = wafer_server(|c| {
        c.rate_per_sec = 5;
        c.rate_burst = 5;
    })
    .await;
    let (skey, _) = login_v2(&server, "oFlood", "Flood").await;
    let mut ws = open_tunnel(&server, &skey).await;
    for _ in 0..50 {
        if ws.send(Message::text("ping")).await.is_err() {
            break;
        }
    }
    let (packets, code) = ending(&mut ws).await;
    assert_eq!(
        packets.last().map(String::as_str),
        Some("close"),
        "{packets:?}"
    );
    assert_eq!(code, Some(4008));
    server.stop().await;
}
