//! The edges of docs/protocol.md that an outside client written from the document runs into: what is a
//! request at all, which error code each kind of bad input gets, and what an unknown conversation id answers.
//! Every case goes through a real server, over a real WebSocket or HTTP.

use crate::common;

use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Sends a raw frame and returns the reply.
async fn raw_reply(client: &mut Client, frame: &str) -> Value {
    client.send_raw(Message::text(frame.to_string())).await;
    client.next_frame().await.expect("a reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_json_object_is_a_request() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    for frame in [
        r#"[5,"ping"]"#,
        r#"[5,"ping",{}]"#,
        r#"[{"id":5,"op":"ping"}]"#,
        r#""ping""#,
        "5",
        "null",
    ] {
        let reply = raw_reply(&mut a, frame).await;
        assert_eq!(reply["ok"], false, "{frame}: {reply}");
        assert_eq!(reply["id"], Value::Null, "{frame}: no id can be read");
        assert_eq!(reply["error"]["code"], "bad_request", "{frame}: {reply}");
    }
    // A readable id is echoed even when the rest is unusable.
    let reply = raw_reply(&mut a, r#"{"id":"x1","op":["ping"]}"#).await;
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!("x1"), json!("bad_request"))
    );
    // Unknown envelope fields are ignored; the connection is still usable.
    let reply = raw_reply(&mut a, r#"{"id":6,"op":"ping","trace":"t-1"}"#).await;
    assert_eq!(
        (reply["id"].clone(), reply["ok"].clone()),
        (json!(6), json!(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_must_be_an_object_or_omitted() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({ "name": "r" })).await["conversation"]["id"].clone();
    for args in [json!([]), json!([room]), json!(5), json!("x"), json!(true)] {
        for op in ["ping", "typing", "conversations"] {
            let reply = a.call(op, args.clone()).await;
            assert_eq!(
                reply["error"]["code"], "invalid_args",
                "{op} {args}: {reply}"
            );
            assert!(
                reply["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("must be a JSON object"),
                "{reply}"
            );
        }
    }
    // Omitted and null args read as {}.
    let reply = raw_reply(&mut a, r#"{"id":1,"op":"ping"}"#).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = raw_reply(&mut a, r#"{"id":2,"op":"conversations","args":null}"#).await;
    assert_eq!(reply["ok"], true, "{reply}");
    // An unknown op is unknown_op whatever its args.
    assert_eq!(a.err("fly_to_the_moon", json!([])).await, "unknown_op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_seqs_and_a_zero_limit_are_invalid_args() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({ "name": "r" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    a.say(room, "m1", "one").await;
    let cases = [
        (
            "history",
            json!({ "conversation_id": room, "before_seq": -1 }),
            "seq >= 0",
        ),
        (
            "history",
            json!({ "conversation_id": room, "after_seq": -1 }),
            "seq >= 0",
        ),
        (
            "history",
            json!({ "conversation_id": room, "limit": 0 }),
            "nonzero",
        ),
        (
            "history",
            json!({ "conversation_id": room, "limit": -3 }),
            "nonzero",
        ),
        (
            "read",
            json!({ "conversation_id": room, "seq": -1 }),
            "seq >= 0",
        ),
        (
            "sync",
            json!({ "cursors": { room.to_string(): -1 } }),
            "seq >= 0",
        ),
        ("sync", json!({ "cursors": {}, "limit": 0 }), "nonzero"),
        ("rooms_public", json!({ "limit": 0 }), "nonzero"),
    ];
    for (op, args, says) in cases {
        let reply = a.call(op, args.clone()).await;
        assert_eq!(
            reply["error"]["code"], "invalid_args",
            "{op} {args}: {reply}"
        );
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{op} {args}: {message}");
    }
    // The smallest valid values work.
    let page = a
        .ok(
            "history",
            json!({ "conversation_id": room, "after_seq": 0, "limit": 1 }),
        )
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0]["seq"], 1);
    let page = a
        .ok(
            "history",
            json!({ "conversation_id": room, "before_seq": 0 }),
        )
        .await;
    assert_eq!(page["messages"], json!([]));
    assert_eq!(
        a.ok("read", json!({ "conversation_id": room, "seq": 0 }))
            .await["read_seq"],
        1,
        "a read mark never goes back"
    );
    let synced = a
        .ok(
            "sync",
            json!({ "cursors": { room.to_string(): 0 }, "limit": 1 }),
        )
        .await;
    assert_eq!(synced["conversations"][0]["messages"][0]["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_kind_is_invalid_message() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({ "name": "r" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let reply = a
        .call(
            "send",
            json!({ "conversation_id": room, "cmid": "k1", "kind": "video", "content": "x" }),
        )
        .await;
    assert_eq!(reply["error"]["code"], "invalid_message", "{reply}");
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("video"));
    // A kind that is not even a string is a wrong type: invalid_args.
    assert_eq!(
        a.err(
            "send",
            json!({ "conversation_id": room, "cmid": "k2", "kind": 1, "content": "x" })
        )
        .await,
        "invalid_args"
    );
    // Nothing was stored, and the cmid is still free.
    let sent = a
        .ok(
            "send",
            json!({ "conversation_id": room, "cmid": "k1", "kind": "text", "content": "x" }),
        )
        .await;
    assert_eq!(
        (sent["message"]["seq"].clone(), sent["duplicate"].clone()),
        (json!(1), json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_that_are_not_json_objects_are_bad_request() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    for path in ["/v1/login/dev", "/v1/login/wechat"] {
        for body in [
            "",
            "not json",
            "[]",
            r#"["alice"]"#,
            r#""alice""#,
            "5",
            "null",
        ] {
            let response = client
                .post(server.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(
                (status, answer["error"]["code"].clone()),
                (400, json!("bad_request")),
                "{path} {body:?}: {answer}"
            );
        }
    }
    // An object with the wrong fields is still invalid_args.
    let response = client
        .post(server.url("/v1/login/dev"))
        .json(&json!({ "name": "alice" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "invalid_args");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_conversation_looks_like_someone_elses() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let private = b
        .ok(
            "room_create",
            json!({ "name": "bob's", "visibility": "invite" }),
        )
        .await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let unknown = private + 1000;
    let calls = |id: i64| {
        [
            (
                "send",
                json!({ "conversation_id": id, "cmid": format!("u{id}"), "content": "hi" }),
            ),
            ("history", json!({ "conversation_id": id })),
            ("read", json!({ "conversation_id": id, "seq": 1 })),
            ("typing", json!({ "conversation_id": id })),
            ("room_members", json!({ "conversation_id": id })),
        ]
    };
    for ((op, theirs), (_, absent)) in calls(private).into_iter().zip(calls(unknown)) {
        let theirs = a.call(op, theirs).await;
        let absent = a.call(op, absent).await;
        assert_eq!(theirs["error"]["code"], "forbidden", "{op}: {theirs}");
        assert_eq!(
            theirs["error"], absent["error"],
            "{op}: an unknown id answers exactly like a conversation of others"
        );
    }
    // The room membership operations name a room, and say when there is none.
    for (op, args) in [
        ("room_join", json!({ "conversation_id": unknown })),
        ("room_leave", json!({ "conversation_id": unknown })),
        (
            "room_add",
            json!({ "conversation_id": unknown, "user_id": bob.user_id }),
        ),
        (
            "room_remove",
            json!({ "conversation_id": unknown, "user_id": bob.user_id }),
        ),
    ] {
        assert_eq!(a.err(op, args).await, "not_found", "{op}");
    }
}
