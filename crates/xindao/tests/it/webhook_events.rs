//! Every webhook event docs/webhooks.md lists reaches a real receiver (the list is read from the document,
//! so a documented event that is never emitted fails here), on SQLite and PostgreSQL: `message.deleted` with
//! each reason (recall, the owner's removal, the server API's), and `user.offline_message` coalesced to one
//! per user and conversation per window, for members with no open connection only.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use xindao::Config;

use crate::common::TestServer;
use crate::server_api_client::{new_key, ok};
use crate::services::TestDb;
use crate::webhook_receiver::{signature_valid, Received, Receiver, SECRET};
use crate::webhooks::{endpoint, quick};

/// Documented events that need WeChat's content check to happen; `wechat_checks` proves their delivery against
/// its fake WeChat API.
const NEED_WECHAT: [&str; 1] = ["message.flagged"];

/// The event names in the table of docs/webhooks.md's "Events" section, but [`NEED_WECHAT`].
fn documented_events() -> BTreeSet<String> {
    let doc = include_str!("../../../../docs/webhooks.md");
    let section = doc
        .split("## Events")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/webhooks.md has an Events section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|event| !NEED_WECHAT.contains(event))
        .map(str::to_string)
        .collect()
}

async fn server(db: Option<&TestDb>, url: String, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let store = db.map(|db| db.url.clone());
    TestServer::start(|c| {
        if let Some(store) = store {
            c.store = store.parse().unwrap();
        }
        quick(c);
        c.webhooks = endpoint(url, &["*"]);
        tweak(c);
    })
    .await
}

fn of<'a>(delivered: &'a [Received], event: &str) -> Vec<&'a Value> {
    delivered
        .iter()
        .filter(|r| r.body["event"] == event)
        .map(|r| &r.body["data"])
        .collect()
}

async fn every_documented_event_is_delivered(db: Option<&TestDb>) {
    let receiver = Receiver::start().await;
    let server = server(db, receiver.url(), |_| {}).await;
    let key = new_key(&server, "mod", "messages").await;
    let (alice, bob, carol) = (
        server.login("ev-alice").await,
        server.login("ev-bob").await,
        server.login("ev-carol").await,
    );
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let room = a.ok("room_create", json!({"name": "ev-room"})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    b.ok("room_join", json!({"conversation_id": room})).await;
    a.ok(
        "room_add",
        json!({"conversation_id": room, "user_id": carol.user_id}),
    )
    .await;
    for i in 1..=4 {
        a.say(room, &format!("ev{i}"), &format!("m{i}")).await;
    }
    b.ok("read", json!({"conversation_id": room, "seq": 4}))
        .await;
    // Carol has never connected: the messages were committed for her while offline (the check reads the
    // members after the commit, so she stays a member until it has run).
    receiver
        .wait_for(10, "carol's offline event", |d| {
            !of(d, "user.offline_message").is_empty()
        })
        .await;
    // seq 1 recalled by its sender, 2 removed by the owner, 3 by the server API.
    a.ok("recall", json!({"conversation_id": room, "seq": 1}))
        .await;
    a.ok("message_remove", json!({"conversation_id": room, "seq": 2}))
        .await;
    ok(
        &server,
        &key,
        Method::DELETE,
        &format!("/v1/server/conversations/{room}/messages/3"),
        None,
    )
    .await;
    a.ok(
        "room_remove",
        json!({"conversation_id": room, "user_id": carol.user_id}),
    )
    .await;
    b.ok("room_leave", json!({"conversation_id": room})).await;
    drop(b);

    let wanted = documented_events();
    assert!(wanted.len() >= 11, "the table was read: {wanted:?}");
    receiver
        .wait_for(15, "every documented event", |d| {
            let seen: BTreeSet<String> = d
                .iter()
                .map(|r| r.body["event"].as_str().unwrap_or_default().to_string())
                .collect();
            wanted.is_subset(&seen) && of(d, "message.deleted").len() == 3
        })
        .await;
    let delivered = receiver.delivered();
    assert!(delivered.iter().all(|r| signature_valid(r, SECRET)));
    // The outbox drained many times on the way: a delivery id is never given twice.
    let ids: BTreeSet<&str> = delivered.iter().map(|r| r.delivery.as_str()).collect();
    assert_eq!(ids.len(), delivered.len(), "delivery ids are unique");
    let emitted: BTreeSet<String> = delivered
        .iter()
        .map(|r| r.body["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        emitted, wanted,
        "what is emitted is what docs/webhooks.md lists"
    );

    let deleted = of(&delivered, "message.deleted");
    let shape = |d: &Value| {
        (
            d["seq"].as_i64().unwrap(),
            d["reason"].as_str().unwrap().to_string(),
            d["by"].as_i64(),
        )
    };
    let mut deleted: Vec<_> = deleted.into_iter().map(shape).collect();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            (1, "recalled".to_string(), Some(alice.user_id)),
            (2, "removed_by_owner".to_string(), Some(alice.user_id)),
            (3, "removed_by_server".to_string(), None),
        ]
    );
    let first = of(&delivered, "message.deleted")[0].clone();
    assert_eq!(
        (
            first["conversation_id"].as_i64(),
            first["sender_id"].as_i64()
        ),
        (Some(room), Some(alice.user_id))
    );
    assert!(first["id"].as_i64().is_some());

    // Carol is announced once for the room (the first message), nobody else: alice and bob were connected.
    let offline = of(&delivered, "user.offline_message");
    assert_eq!(offline.len(), 1, "{offline:?}");
    let o = offline[0];
    assert_eq!(
        (
            o["user_id"].as_i64(),
            o["conversation_id"].as_i64(),
            o["seq"].as_i64()
        ),
        (Some(carol.user_id), Some(room), Some(1))
    );
    assert_eq!(
        (o["sender_id"].as_i64(), o["kind"].as_str()),
        (Some(alice.user_id), Some("text"))
    );
    drop(a);
}

/// The window of the coalescing test: long enough for 13 sends on a loaded machine.
const WINDOW: Duration = Duration::from_secs(6);

/// One event per user and conversation per window; a connected member is not announced; the window opens
/// again once it has passed.
async fn offline_messages_are_coalesced(db: Option<&TestDb>) {
    let receiver = Receiver::start().await;
    let url = receiver.url();
    let store = db.map(|db| db.url.clone());
    let server = TestServer::start(|c| {
        if let Some(store) = store {
            c.store = store.parse().unwrap();
        }
        quick(c);
        c.webhooks = endpoint(url, &["user.offline_message"]);
        c.webhook_offline_window_secs = WINDOW.as_secs();
    })
    .await;
    let (alice, bob, dave) = (
        server.login("off-alice").await,
        server.login("off-bob").await,
        server.login("off-dave").await,
    );
    let mut a = server.connect(&alice).await;
    let mut d = server.connect(&dave).await;
    let room = a.ok("room_create", json!({"name": "off-room"})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    d.ok("room_join", json!({"conversation_id": room})).await;
    a.ok(
        "room_add",
        json!({"conversation_id": room, "user_id": bob.user_id}),
    )
    .await;
    let direct = a.ok("direct_open", json!({"user_id": bob.user_id})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    // Sent without waiting for each ack, so that all of them fall in the window even on a slow machine.
    let started = tokio::time::Instant::now();
    a.send_burst(room, "r", 10).await;
    for i in 0..10 {
        assert_eq!(a.reply(100 + i).await["ok"], true);
    }
    a.send_burst(direct, "d", 3).await;
    for i in 0..3 {
        assert_eq!(a.reply(100 + i).await["ok"], true);
    }
    receiver
        .wait_for(10, "two offline events", |d| d.len() >= 2)
        .await;
    // Received after they were announced: their window ends before this + WINDOW.
    let announced = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = |d: &[Received]| -> Vec<(i64, i64, i64)> {
        d.iter()
            .map(|r| {
                let data = &r.body["data"];
                (
                    data["user_id"].as_i64().unwrap(),
                    data["conversation_id"].as_i64().unwrap(),
                    data["seq"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let mut first = seen(&receiver.delivered());
    first.sort();
    let mut expected = vec![(bob.user_id, room, 1), (bob.user_id, direct, 1)];
    expected.sort();
    assert_eq!(
        first, expected,
        "one per conversation, not per message; dave was connected"
    );

    // Within the window: nothing more. After it: the next message is announced.
    a.say(room, "r11", "still in the window").await;
    assert!(
        started.elapsed() < WINDOW,
        "the machine is too slow for this test's window"
    );
    tokio::time::sleep_until(announced + WINDOW + Duration::from_millis(200)).await;
    assert_eq!(receiver.delivered().len(), 2);
    a.say(room, "r12", "after the window").await;
    receiver
        .wait_for(10, "the next window's", |d| d.len() == 3)
        .await;
    assert_eq!(seen(&receiver.delivered())[2], (bob.user_id, room, 12));
    let reopened = tokio::time::Instant::now();

    // Bob connected: not announced (once his connection is registered, the check sees him online).
    let _b = server.connect(&bob).await;
    tokio::time::sleep_until(reopened + WINDOW + Duration::from_millis(200)).await;
    a.say(room, "r13", "bob is here").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        receiver.delivered().len(),
        3,
        "{:?}",
        seen(&receiver.delivered())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_documented_event_is_delivered() {
    every_documented_event_is_delivered(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_documented_event_is_delivered() {
    if let Some(db) = TestDb::create().await {
        every_documented_event_is_delivered(Some(&db)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_offline_messages_are_coalesced() {
    offline_messages_are_coalesced(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_offline_messages_are_coalesced() {
    if let Some(db) = TestDb::create().await {
        offline_messages_are_coalesced(Some(&db)).await;
    }
}
