//! The before-send hook through the real server and a real local hook: it accepts, rejects with a reason
//! (the sender gets `rejected`), replaces content (what is stored and pushed is the replacement); when it is
//! down or too slow, the open policy sends the message and the closed one refuses it with `unavailable`; a
//! slow answer for one sender does not hold back another.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};
use xindao::config::BeforeSendFailure;

use crate::common::TestServer;

/// A hook that decides by the text: `spam…` rejected, `replace me` replaced, `slow…` answered after 1.5 s,
/// `garbage` answered with something that is not an answer, the rest accepted.
async fn start_hook() -> SocketAddr {
    async fn decide(Json(ask): Json<Value>) -> axum::response::Response {
        use axum::response::IntoResponse;
        assert_eq!(ask["event"], "message.before_send");
        let text = ask["content"].as_str().unwrap_or_default().to_string();
        if text.starts_with("spam") {
            Json(json!({"action": "reject", "reason": "spam"})).into_response()
        } else if text == "replace me" {
            Json(json!({"action": "replace", "content": "[replaced]"})).into_response()
        } else if text.starts_with("slow") {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Json(json!({"action": "accept"})).into_response()
        } else if text == "garbage" {
            "not an answer".into_response()
        } else {
            Json(json!({"action": "accept"})).into_response()
        }
    }
    serve_hook(axum::Router::new().route("/check", post(decide))).await
}

/// Serves a hook on 127.0.0.1 (a free port): its address.
async fn serve_hook(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn server(url: String, timeout_ms: u64, failure: BeforeSendFailure) -> TestServer {
    TestServer::start(|config| {
        config.before_send_url = Some(url);
        config.before_send_timeout_ms = timeout_ms;
        config.before_send_failure = failure;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_accepts_rejects_and_replaces() {
    let hook = start_hook().await;
    let server = server(
        format!("http://{hook}/check"),
        3000,
        BeforeSendFailure::Closed,
    )
    .await;
    let alice = server.login("bs-alice").await;
    let bob = server.login("bs-bob").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let direct = a.ok("direct_open", json!({"user_id": bob.user_id})).await["conversation"]["id"]
        .as_i64()
        .unwrap();

    let accepted = a.say(direct, "c1", "hello").await;
    assert_eq!(accepted["content"], "hello");
    assert_eq!(b.event("message").await["content"], "hello");

    let reply = a
        .call(
            "send",
            json!({"conversation_id": direct, "cmid": "c2", "content": "spam spam"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "rejected", "{reply}");
    assert_eq!(reply["error"]["reason"], "spam", "{reply}");

    let replaced = a.say(direct, "c3", "replace me").await;
    assert_eq!(replaced["content"], "[replaced]");
    assert_eq!(replaced["seq"], 2, "the rejected one took no seq");
    assert_eq!(b.event("message").await["content"], "[replaced]");

    // A slow answer for alice holds back alice only.
    let slow = a
        .send_request(
            "send",
            json!({"conversation_id": direct, "cmid": "c4", "content": "slow one"}),
        )
        .await;
    let started = Instant::now();
    b.say(direct, "b1", "quick").await;
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "bob waited {:?} behind alice's slow check",
        started.elapsed()
    );
    assert_eq!(
        a.reply(slow).await["result"]["message"]["content"],
        "slow one"
    );

    // An answer that is not one, under the closed policy: refused, nothing stored.
    let reply = a
        .call(
            "send",
            json!({"conversation_id": direct, "cmid": "c5", "content": "garbage"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_or_slow_hook_follows_the_failure_policy() {
    let hook = start_hook().await;
    // Nothing listens here.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    for (url, what) in [
        (format!("http://{closed_port}/check"), "down"),
        (format!("http://{hook}/check"), "timeout"),
    ] {
        let open = server(url.clone(), 300, BeforeSendFailure::Open).await;
        let alice = open.login("fo-alice").await;
        let mut a = open.connect(&alice).await;
        let room = a.ok("room_create", json!({"name": "fo"})).await["conversation"]["id"]
            .as_i64()
            .unwrap();
        let sent = a.say(room, "o1", "slow but sent").await;
        assert_eq!(sent["content"], "slow but sent", "{what}, open");

        let closed = server(url, 300, BeforeSendFailure::Closed).await;
        let alice = closed.login("fc-alice").await;
        let mut a = closed.connect(&alice).await;
        let room = a.ok("room_create", json!({"name": "fc"})).await["conversation"]["id"]
            .as_i64()
            .unwrap();
        let reply = a
            .call(
                "send",
                json!({"conversation_id": room, "cmid": "c1", "content": "slow, refused"}),
            )
            .await;
        assert_eq!(
            reply["error"]["code"], "unavailable",
            "{what}, closed: {reply}"
        );
        let history = a.ok("history", json!({"conversation_id": room})).await;
        assert_eq!(history["messages"], json!([]), "{what}: nothing stored");
    }
}

/// A hook that replaces each message's content with what the test put under its `cmid` (accepting the rest).
async fn start_replacing_hook(
    replacements: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Value>>>,
) -> SocketAddr {
    let decide = move |Json(ask): Json<Value>| {
        let replacements = replacements.clone();
        async move {
            let cmid = ask["cmid"].as_str().unwrap_or_default();
            match replacements.lock().unwrap().get(cmid) {
                Some(content) => Json(json!({"action": "replace", "content": content})),
                None => Json(json!({"action": "accept"})),
            }
        }
    };
    serve_hook(axum::Router::new().route("/check", post(decide))).await
}

/// A replacement for a media message is checked like a client's `{"media_id"}`: a medium the sender uploaded,
/// of the message's kind, whose stored record (not the hook's figures) is what is committed; anything else
/// refuses the send with `invalid_message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_replacement_must_name_the_senders_medium_of_the_same_kind() {
    use crate::media::{adts, png, uploaded};

    let replacements = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let hook = start_replacing_hook(replacements.clone()).await;
    let server = server(
        format!("http://{hook}/check"),
        3000,
        BeforeSendFailure::Closed,
    )
    .await;
    let alice = server.login("bm-alice").await;
    let bob = server.login("bm-bob").await;
    let mut a = server.connect(&alice).await;
    let upload = |token: String, kind: &'static str, name: &'static str, bytes: Vec<u8>| {
        let server = &server;
        async move {
            uploaded(server, &token, Some(kind), name, bytes).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let image = upload(alice.token.clone(), "image", "a.png", png(4, 3)).await;
    let other_image = upload(alice.token.clone(), "image", "b.png", png(8, 6)).await;
    let voice = upload(alice.token.clone(), "voice", "v.aac", adts(10)).await;
    let bobs_image = upload(bob.token.clone(), "image", "c.png", png(2, 2)).await;

    let cases = [
        ("as-voice", json!({ "media_id": voice })),
        (
            "no-medium",
            json!({ "url": "http://evil.example/x.png", "width": 1 }),
        ),
        ("not-theirs", json!({ "media_id": bobs_image })),
        ("not-an-id", json!({ "media_id": "../../etc/passwd" })),
    ];
    for (cmid, replacement) in &cases {
        replacements
            .lock()
            .unwrap()
            .insert(cmid.to_string(), replacement.clone());
        let code = a
            .err(
                "send",
                json!({ "to_user": bob.user_id, "cmid": cmid, "kind": "image", "content": { "media_id": image } }),
            )
            .await;
        assert_eq!(code, "invalid_message", "replacement {cmid}: {replacement}");
    }

    replacements.lock().unwrap().insert(
        "forged".into(),
        json!({ "media_id": other_image, "width": 99999, "mime": "text/html" }),
    );
    let sent = a
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "forged", "kind": "image", "content": { "media_id": image } }),
        )
        .await;
    let content = &sent["message"]["content"];
    assert_eq!(content["media_id"], json!(other_image));
    assert_eq!(
        (content["width"].clone(), content["height"].clone()),
        (json!(8), json!(6))
    );
    assert_eq!(content["mime"], "image/png");
}
