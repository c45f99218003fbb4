//! Tunnel-service mode through its real interface, the paths the Node test with wafer-node-sdk does not
//! reach: every refusal of the signed API, pushes that must not reach a client, signed and ordered callbacks,
//! a refused `connect` and a business server that never answers (the tunnel closes with a `close` packet,
//! nothing dropped silently), and tunnel ids that are unknown or used (upgraded, then 4001 without a packet).

use crate::common;
use crate::wafer::{ending, next_text, Ws};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Json;
use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "service-key";

fn sign(data: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("{data}{KEY}").as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn service(tweak: impl FnOnce(&mut xindao::Config)) -> TestServer {
    TestServer::start(|c| {
        c.wafer_tunnel_key = Some(KEY.into());
        tweak(c);
    })
    .await
}

async fn call(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = http()
        .post(server.url(&format!("/wafer-tunnel{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn signed(data: &Value) -> Value {
    let data = data.to_string();
    json!({ "signature": sign(&data), "tcId": "tc", "tcKey": KEY, "data": data })
}

/// A business server answering every callback with `status`, recording the verified ones.
async fn business(status: StatusCode) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    async fn receive(
        State((seen, status)): State<(Arc<Mutex<Vec<Value>>>, StatusCode)>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let data = body["data"].as_str().unwrap();
        assert_eq!(
            body["signature"],
            sign(data),
            "callbacks are signed sha1(data + key)"
        );
        seen.lock()
            .unwrap()
            .push(serde_json::from_str(data).unwrap());
        (status, Json(json!({ "code": 0, "data": {} })))
    }
    let app = axum::Router::new()
        .route("/tunnel", post(receive))
        .with_state((seen.clone(), status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// Asks for a tunnel whose callbacks go to `receive_url`, and opens it: (tunnel id, socket after timeout:N).
async fn open(server: &TestServer, receive_url: &str) -> (String, Ws) {
    let (status, body) = call(
        server,
        "/get/wsurl",
        signed(&json!({ "receiveUrl": receive_url, "protocolType": "wss" })),
    )
    .await;
    assert_eq!((status, &body["code"]), (200, &json!(0)), "{body}");
    let data = body["data"].as_str().expect("data is a JSON string");
    assert_eq!(body["signature"], sign(data), "the answer is signed");
    let data: Value = serde_json::from_str(data).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(data["connectUrl"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("timeout:15"));
    (data["tunnelId"].as_str().unwrap().to_string(), ws)
}

async fn wait_for(seen: &Arc<Mutex<Vec<Value>>>, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        if seen.lock().unwrap().len() >= count {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_api_refuses_what_is_not_signed_allowed_or_well_formed() {
    let mut server = service(|c| c.wafer_tunnel_tc_ids = vec!["tc".into()]).await;
    let good = json!({ "receiveUrl": "http://127.0.0.1:9/tunnel", "protocolType": "wss" });
    let mut bad_sig = signed(&good);
    bad_sig["signature"] = json!("0".repeat(40));
    let mut other_tc = signed(&good);
    other_tc["tcId"] = json!("someone-else");
    let cases = [
        ("/get/wsurl", json!("not an object"), 400, 9001),
        ("/get/wsurl", json!({ "data": "{}" }), 400, 9001),
        ("/get/wsurl", bad_sig.clone(), 401, 9003),
        ("/ws/push", bad_sig, 401, 9003),
        ("/get/wsurl", other_tc, 403, 9002),
        (
            "/get/wsurl",
            signed(&json!({ "receiveUrl": "ftp://x/y" })),
            400,
            9001,
        ),
        (
            "/get/wsurl",
            signed(&json!({ "receiveUrl": format!("http://x/{}", "a".repeat(3000)) })),
            400,
            9001,
        ),
        ("/get/wsurl", signed(&json!([1])), 400, 9001),
        ("/ws/push", signed(&json!({ "tunnelIds": [] })), 400, 9001),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = call(&server, path, body.clone()).await;
        assert_eq!(
            (got, &answer["code"]),
            (status, &json!(code)),
            "{path} {body}: {answer}"
        );
    }
    // A body over the HTTP limit is refused before it is read whole.
    let response = http()
        .post(server.url("/wafer-tunnel/ws/push"))
        .body(vec![b'{'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_signed_and_ordered_and_bad_pushes_never_reach_the_client() {
    let mut server = service(|_| {}).await;
    let (business, seen) = business(StatusCode::OK).await;
    let (id, mut ws) = open(&server, &format!("http://{business}/tunnel")).await;
    for n in 0..5 {
        ws.send(Message::text(format!(
            r#"message:{{"type":"n","content":{n}}}"#
        )))
        .await
        .unwrap();
    }
    ws.send(Message::text("message:not json")).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2])).await.unwrap();
    let got = wait_for(&seen, 6).await;
    assert_eq!(got[0], json!({ "tunnelId": id, "type": "connect" }));
    for n in 0..5 {
        assert_eq!(got[n + 1]["type"], "message");
        assert_eq!(
            got[n + 1]["content"],
            format!(r#"{{"type":"n","content":{n}}}"#),
            "exactly as sent, in order"
        );
    }
    // Pushes: an object payload is delivered; a non-object one and an unknown type are not, and say so.
    let push = json!([
        { "tunnelIds": [id], "type": "message", "content": "[1,2]" },
        { "tunnelIds": [id], "type": "message", "content": "not json" },
        { "tunnelIds": [id], "type": "explode" },
        { "tunnelIds": [id, "dead"], "type": "message", "content": r#"{"type":"hi","content":{"a":1}}"# },
    ]);
    let (status, answer) = call(&server, "/ws/push", signed(&push)).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({ "code": 0, "data": { "invalidTunnelIds": [id, id, id, "dead"] } })
    );
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some(r#"message:{"type":"hi","content":{"a":1}}"#)
    );
    // closeTunnel: the close packet first, then exactly one close callback.
    let (_, answer) = call(
        &server,
        "/ws/push",
        signed(&json!([{ "tunnelIds": [id], "type": "close" }])),
    )
    .await;
    assert_eq!(answer["code"], 0);
    let (packets, _) = ending(&mut ws).await;
    assert_eq!(packets, vec!["close".to_string()]);
    let got = wait_for(&seen, 7).await;
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(got[6], json!({ "tunnelId": id, "type": "close" }));
    // The id is spent: upgraded, then closed with 4001 and no packet.
    let url = format!("ws://{}/wafer-tunnel/ws?tunnelId={id}", server.addr);
    for url in [
        url,
        format!("ws://{}/wafer-tunnel/ws?tunnelId=nope", server.addr),
    ] {
        let (mut again, response) = tokio_tungstenite::connect_async(&url).await.unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(ending(&mut again).await, (vec![], Some(4001)));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_and_an_unreachable_business_server_close_the_tunnel_with_a_packet() {
    let mut server = service(|_| {}).await;
    let (refusing, seen) = business(StatusCode::FORBIDDEN).await;
    let (_, mut ws) = open(&server, &format!("http://{refusing}/tunnel")).await;
    let (packets, _) = ending(&mut ws).await;
    assert_eq!(packets, vec!["close".to_string()]);
    let got = wait_for(&seen, 2).await;
    assert_eq!(
        got.iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["connect", "close"]
    );
    // Nobody listens on port 9: retried about 6 s, then the tunnel is closed, never left half-working.
    let started = std::time::Instant::now();
    let (_, mut ws) = open(&server, "http://127.0.0.1:9/tunnel").await;
    let (packets, _) = tokio::time::timeout(std::time::Duration::from_secs(20), ending(&mut ws))
        .await
        .unwrap();
    assert_eq!(packets, vec!["close".to_string()]);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}
