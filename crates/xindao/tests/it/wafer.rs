//! Wafer standalone mode through its real interface: the Wafer login with AES-encrypted user data from a fake
//! WeChat whose 16-byte session keys are real, the tunnel URL and the Wafer wire format on a real WebSocket,
//! and the live room seen from xindao's own protocol (speak stored with its seq, history, both directions).
//! The helpers here are shared with `wafer_bad_input.rs`.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use axum::extract::{Query, State};
use axum::routing::get;
use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

pub const APPID: &str = "wxWAFERTEST";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The session key the fake WeChat gives `openid`: 16 bytes, base64, derived so tests can encrypt with it.
pub fn session_key(openid: &str) -> String {
    B64.encode(&Sha256::digest(openid.as_bytes())[..16])
}

/// `wx.getUserInfo`'s `encryptedData` and `iv` for `profile`, under `key` (base64).
pub fn encrypt(key: &str, profile: &Value) -> (String, String) {
    let key = B64.decode(key).unwrap();
    let iv = [7u8; 16];
    let data = cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, &iv)
        .unwrap()
        .encrypt_padded_vec_mut::<Pkcs7>(profile.to_string().as_bytes());
    (B64.encode(data), B64.encode(iv))
}

/// A profile of this app (watermark appid = [`APPID`]).
pub fn profile(openid: &str, nick: &str) -> Value {
    json!({ "openId": openid, "nickName": nick, "avatarUrl": "https://x.invalid/a.png", "watermark": { "appid": APPID, "timestamp": 1 } })
}

/// A fake code2Session: code `c:<openid>:<anything>` is valid once, for that openid; anything else is 40029.
pub async fn fake_wechat() -> SocketAddr {
    let used = Arc::new(Mutex::new(std::collections::HashSet::new()));
    async fn jscode2session(
        State(used): State<Arc<Mutex<std::collections::HashSet<String>>>>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> String {
        let code = q.get("js_code").cloned().unwrap_or_default();
        let body = match code.split(':').collect::<Vec<_>>()[..] {
            ["c", openid, _] => {
                if used.lock().unwrap().insert(code.clone()) {
                    json!({ "openid": openid, "session_key": session_key(openid) })
                } else {
                    json!({ "errcode": 40163, "errmsg": "code been used" })
                }
            }
            _ => json!({ "errcode": 40029, "errmsg": "invalid code" }),
        };
        body.to_string()
    }
    let app = axum::Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .with_state(used);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A server with both Wafer prefixes: Wafer 2 on /weapp, Wafer 1 on /wafer1.
pub async fn wafer_server(tweak: impl FnOnce(&mut xindao::Config)) -> TestServer {
    let wechat = fake_wechat().await;
    TestServer::start(|c| {
        c.wechat_appid = Some(APPID.into());
        c.wechat_secret = Some("SECRET".into());
        c.wechat_api_base = format!("http://{wechat}");
        c.wafer_prefix = Some("/weapp".into());
        c.wafer1_prefix = Some("/wafer1".into());
        tweak(c);
    })
    .await
}

static CODES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh code for `openid`.
pub fn code(openid: &str) -> String {
    let n = CODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("c:{openid}:{n}")
}

/// GET `path` with `headers`: (status, JSON body).
pub async fn get_with(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = http().get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A full Wafer 2 login: the skey and the userinfo.
pub async fn login_v2(server: &TestServer, openid: &str, nick: &str) -> (String, Value) {
    let (data, iv) = encrypt(&session_key(openid), &profile(openid, nick));
    let code = code(openid);
    let headers = [
        ("X-WX-Code", code.as_str()),
        ("X-WX-Encrypted-Data", &data),
        ("X-WX-IV", &iv),
    ];
    let (status, body) = get_with(server, "/weapp/login", &headers).await;
    assert_eq!((status, &body["code"]), (200, &json!(0)), "{body}");
    let skey = body["data"]["skey"].as_str().unwrap().to_string();
    (skey, body["data"]["userinfo"].clone())
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a Wafer 2 tunnel for `skey`: the socket, after its `timeout:N`.
pub async fn open_tunnel(server: &TestServer, skey: &str) -> Ws {
    let (status, body) = get_with(server, "/weapp/tunnel", &[("X-WX-Skey", skey)]).await;
    assert_eq!(status, 200, "{body}");
    let url = body["data"]["connectUrl"].as_str().unwrap();
    assert!(url.contains(body["data"]["tunnelId"].as_str().unwrap()));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("timeout:15"));
    ws
}

/// The next text frame (None once closed); panics on a binary frame, which a Wafer client cannot take.
pub async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("a frame in time")?
        {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Binary(_)) => panic!("a binary frame reached a Wafer client"),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// The next `message:` packet's `{type, content}`.
pub async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let text = next_text(ws).await.expect("socket open");
        if let Some(payload) = text.strip_prefix("message:") {
            let message: Value = serde_json::from_str(payload).unwrap();
            assert!(message.is_object());
            return message;
        }
    }
}

/// How the socket ends: the packets before the close, and the close code.
pub async fn ending(ws: &mut Ws) -> (Vec<String>, Option<u16>) {
    let mut packets = Vec::new();
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Text(text))) => packets.push(text.to_string()),
            Some(Ok(Message::Close(frame))) => return (packets, frame.map(|f| f.code.into())),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (packets, None),
        }
    }
}

pub async fn speak(ws: &mut Ws, word: &str) {
    let packet = format!(
        "message:{}",
        json!({ "type": "speak", "content": { "word": word } })
    );
    ws.send(Message::text(packet)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speak_is_a_stored_room_message_that_xindao_clients_see_both_ways() {
    let mut server = wafer_server(|_| {}).await;
    let (skey, userinfo) = login_v2(&server, "oAlice", "Alice").await;
    assert_eq!(userinfo["nickName"], "Alice");
    assert!(
        userinfo.get("watermark").is_none(),
        "the watermark stays on the server"
    );
    let mut alice = open_tunnel(&server, &skey).await;
    let people = next_message(&mut alice).await;
    assert_eq!(people["type"], "people");
    assert_eq!(people["content"]["total"], 1);
    assert_eq!(people["content"]["enter"]["nickName"], "Alice");

    speak(&mut alice, "hello, 信道").await;
    let echo = next_message(&mut alice).await;
    assert_eq!(
        echo,
        json!({ "type": "speak", "content": { "who": userinfo, "word": "hello, 信道" } })
    );

    // The live room is a public xindao room with history.
    let bob = server.login("bob").await;
    let mut client = server.connect(&bob).await;
    let rooms = client.ok("rooms_public", json!({})).await;
    let room = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Wafer /weapp")
        .unwrap_or_else(|| panic!("no Wafer room in {rooms}"))["id"]
        .as_i64()
        .unwrap();
    client
        .ok("room_join", json!({ "conversation_id": room }))
        .await;
    let history = client
        .ok("history", json!({ "conversation_id": room }))
        .await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["content"], "hello, 信道");
    assert_eq!(messages[0]["seq"], 1);

    // A xindao client's message reaches the Wafer client as speak, with the sender's name as `who`.
    client.say(room, "x-1", "hi from xindao").await;
    let heard = next_message(&mut alice).await;
    assert_eq!(heard["type"], "speak");
    assert_eq!(heard["content"]["word"], "hi from xindao");
    assert_eq!(heard["content"]["who"]["nickName"], "bob");

    // A xindao client's custom `{type, content}` arrives as that Wafer message type.
    let custom = json!({ "conversation_id": room, "cmid": "x-2", "kind": "custom", "content": { "type": "notice", "content": { "n": 1 } } });
    client.ok("send", custom).await;
    assert_eq!(
        next_message(&mut alice).await,
        json!({ "type": "notice", "content": { "n": 1 } })
    );

    // Alice speaking reaches bob's xindao connection as a plain text message.
    speak(&mut alice, "second").await;
    let pushed = client.event("message").await;
    assert_eq!(pushed["content"], "second");
    assert_eq!(pushed["seq"], 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong_and_a_logout_kicks_with_a_close_packet_first() {
    let mut server = wafer_server(|_| {}).await;
    let (skey, _) = login_v2(&server, "oKick", "Kick").await;
    let mut ws = open_tunnel(&server, &skey).await;
    next_message(&mut ws).await; // people
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("pong"));
    // The skey is a xindao session token: logging it out ends the tunnel the way the SDK must see a kick.
    let response = http()
        .post(server.url("/v1/logout"))
        .bearer_auth(&skey)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (packets, code) = ending(&mut ws).await;
    assert_eq!(packets, vec!["close".to_string()]);
    assert_eq!(code, Some(4001));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tunnel_of_a_session_replaces_the_first_leave_before_enter() {
    let mut server = wafer_server(|_| {}).await;
    let (watcher_skey, _) = login_v2(&server, "oWatch", "Watch").await;
    let mut watcher = open_tunnel(&server, &watcher_skey).await;
    next_message(&mut watcher).await; // own enter
    let (skey, _) = login_v2(&server, "oPhone", "Phone").await;
    let mut old = open_tunnel(&server, &skey).await;
    assert_eq!(next_message(&mut watcher).await["content"]["total"], 2);
    // The phone's network dropped without a FIN; its SDK reconnects with a new tunnel of the same session.
    let mut new = open_tunnel(&server, &skey).await;
    let leave = next_message(&mut watcher).await;
    assert_eq!(leave["content"]["leave"]["nickName"], "Phone");
    assert_eq!(leave["content"]["total"], 1);
    let enter = next_message(&mut watcher).await;
    assert_eq!(enter["content"]["enter"]["nickName"], "Phone");
    assert_eq!(enter["content"]["total"], 2);
    // The stale tunnel was told to stop (close packet first), the new one works.
    let (packets, _) = ending(&mut old).await;
    assert_eq!(packets.last().map(String::as_str), Some("close"));
    assert_eq!(
        next_message(&mut new).await["content"]["enter"]["nickName"],
        "Phone"
    );
    speak(&mut new, "still here").await;
    let heard = next_message(&mut watcher).await;
    assert_eq!(heard["content"]["word"], "still here");
    // A tunnel silent for 3 heartbeats is a dead peer: wafer_heartbeat_secs is 15 here, covered by the
    // Node test with 2 s; closing one is enough here.
    drop(tokio::time::timeout(Duration::from_millis(10), new.close(None)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wafer_1_shapes_login_user_and_tunnel() {
    let mut server = wafer_server(|_| {}).await;
    let (data, iv) = encrypt(&session_key("oOne"), &profile("oOne", "One"));
    let code = code("oOne");
    let headers = [
        ("X-WX-Code", code.as_str()),
        ("X-WX-Encrypted-Data", &data),
        ("X-WX-IV", &iv),
    ];
    let (status, body) = get_with(&server, "/wafer1/login", &headers).await;
    assert_eq!(status, 200);
    assert_eq!(body["F2C224D4-2BCE-4C64-AF9F-A6D872000D1A"], 1, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_string();
    let skey = body["session"]["skey"].as_str().unwrap().to_string();
    let session = [("X-WX-Id", id.as_str()), ("X-WX-Skey", skey.as_str())];
    let (status, body) = get_with(&server, "/wafer1/user", &session).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["userInfo"]["nickName"], "One");
    let (_, body) = get_with(&server, "/wafer1/tunnel", &session).await;
    let url = body["url"].as_str().unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("timeout:15"));
    let people = next_message(&mut ws).await;
    assert_eq!(people["content"]["enter"]["nickName"], "One");
    // The client's own `close` packet ends the tunnel without the server sending one back.
    ws.send(Message::text("close")).await.unwrap();
    let (packets, _) = ending(&mut ws).await;
    assert!(packets.is_empty(), "{packets:?}");
    server.stop().await;
}
