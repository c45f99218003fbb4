//! Recall, remove and delete-for-me through the real WebSocket: the sender recalls within
//! `recall_window_secs` (not after, not someone else), a room's owner removes, a hide is seen by the hider's
//! devices only; `message_state` pushes go where docs/protocol.md says, and `history`, `sync` and
//! `last_message` return tombstones without content, seqs gap-free.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn at(history: &Value, seq: i64) -> Value {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["seq"] == seq)
        .cloned()
        .unwrap_or_else(|| panic!("seq {seq} in {history}"))
}

fn is_tombstone(message: &Value, state: &str) -> bool {
    message["state"] == state && message.get("content").is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_recalls_and_everyone_gets_the_tombstone() {
    let server = TestServer::start(|_| {}).await;
    assert_eq!(server.config.recall_window_secs, 120, "the default");
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a1 = server.connect(&alice).await;
    let mut a2 = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    assert_eq!(a1.hello["limits"]["recall_window_secs"], 120);
    let first = a1.say_to(bob.user_id, "c1", "oops, wrong chat").await;
    let direct = first["conversation_id"].as_i64().unwrap();
    a1.say(direct, "c2", "second").await;
    b.event("message").await;

    let target = json!({ "conversation_id": direct, "seq": 1 });
    assert_eq!(
        b.err("recall", target.clone()).await,
        "forbidden",
        "not the sender"
    );
    assert_eq!(
        a1.err("recall", json!({ "conversation_id": direct, "seq": 9 }))
            .await,
        "not_found"
    );
    assert_eq!(a1.ok("recall", target.clone()).await, json!({}));
    let told =
        json!({ "conversation_id": direct, "seq": 1, "state": "recalled", "by": alice.user_id });
    assert_eq!(b.event("message_state").await, told, "the peer");
    assert_eq!(
        a2.event("message_state").await,
        told,
        "the sender's other device"
    );
    assert_eq!(
        a1.event("message_state").await,
        told,
        "and the one that asked"
    );
    // Again: nothing changes, nothing is told.
    assert_eq!(a1.ok("recall", target).await, json!({}));
    b.no_event("message_state", Duration::from_millis(300))
        .await;

    // History and sync: the tombstone keeps id, seq, sender and time, loses the content; seqs are gap-free.
    for client in [&mut a1, &mut b] {
        let history = client
            .ok("history", json!({ "conversation_id": direct }))
            .await;
        let seqs: Vec<i64> = history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, vec![1, 2]);
        let recalled = at(&history, 1);
        assert!(is_tombstone(&recalled, "recalled"), "{recalled}");
        assert_eq!(
            (&recalled["id"], &recalled["sender_id"], &recalled["ts"]),
            (&first["id"], &first["sender_id"], &first["ts"])
        );
        assert_eq!(at(&history, 2)["content"], "second");
        assert!(at(&history, 2).get("state").is_none());
        let synced = sync_all(client, &mut HashMap::new()).await;
        assert_eq!(synced.len(), 2);
        assert!(is_tombstone(&synced[0], "recalled"), "{}", synced[0]);
    }
    assert!(
        !serde_json::to_string(&b.ok("history", json!({ "conversation_id": direct })).await)
            .unwrap()
            .contains("wrong chat"),
        "the content is gone"
    );

    // The last message recalled: last_message is its tombstone.
    a1.ok("recall", json!({ "conversation_id": direct, "seq": 2 }))
        .await;
    let listed = b.ok("conversations", json!({})).await;
    let last = &listed["conversations"][0]["last_message"];
    assert!(is_tombstone(last, "recalled"), "{last}");
    assert_eq!(last["seq"], 2);
    // A retried send of a recalled message answers with the tombstone, not a new copy.
    let retry = a1
        .ok(
            "send",
            json!({ "conversation_id": direct, "cmid": "c1", "content": "oops, wrong chat" }),
        )
        .await;
    assert_eq!(retry["duplicate"], true);
    assert!(is_tombstone(&retry["message"], "recalled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recall_after_the_window_is_refused() {
    let server = TestServer::start(|c| c.recall_window_secs = 1).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let sent = a.say_to(bob.user_id, "c1", "kept").await;
    let target = json!({ "conversation_id": sent["conversation_id"], "seq": 1 });
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let reply = a.call("recall", target.clone()).await;
    assert_eq!(reply["error"]["code"], "recall_window_passed", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("1 s"));
    b.no_event("message_state", Duration::from_millis(300))
        .await;
    let history = b
        .ok(
            "history",
            json!({ "conversation_id": sent["conversation_id"] }),
        )
        .await;
    assert_eq!(at(&history, 1)["content"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_owner_removes_any_message_and_nobody_else_does() {
    let server = TestServer::start(|_| {}).await;
    let owner = server.login("owner").await;
    let bob = server.login("bob").await;
    let carol = server.login("carol").await;
    let outsider = server.login("outsider").await;
    let mut o = server.connect(&owner).await;
    let mut b = server.connect(&bob).await;
    let mut c = server.connect(&carol).await;
    let mut x = server.connect(&outsider).await;
    let room = o.ok("room_create", json!({ "name": "r" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    b.ok("room_join", json!({ "conversation_id": room })).await;
    c.ok("room_join", json!({ "conversation_id": room })).await;
    b.say(room, "b1", "spam").await;
    let target = json!({ "conversation_id": room, "seq": 1 });
    assert_eq!(c.err("message_remove", target.clone()).await, "forbidden");
    assert_eq!(
        b.err("message_remove", target.clone()).await,
        "forbidden",
        "the sender is not the owner"
    );
    assert_eq!(x.err("message_remove", target.clone()).await, "forbidden");
    assert_eq!(x.err("recall", target.clone()).await, "forbidden");
    // An id that names no conversation reads like one the caller is not in.
    for op in ["recall", "message_remove", "hide"] {
        let nowhere = json!({ "conversation_id": 999_999, "seq": 1 });
        assert_eq!(x.err(op, nowhere).await, "forbidden", "{op}");
    }
    assert_eq!(
        o.err(
            "message_remove",
            json!({ "conversation_id": room, "seq": 2 })
        )
        .await,
        "not_found"
    );
    o.ok("message_remove", target.clone()).await;
    let told =
        json!({ "conversation_id": room, "seq": 1, "state": "removed", "by": owner.user_id });
    assert_eq!(b.event("message_state").await, told);
    assert_eq!(c.event("message_state").await, told);
    x.no_event("message_state", Duration::from_millis(200))
        .await;
    let history = c.ok("history", json!({ "conversation_id": room })).await;
    assert!(is_tombstone(&at(&history, 1), "removed"));
    // A removed message cannot be recalled into another state.
    b.ok("recall", target).await;
    let history = c.ok("history", json!({ "conversation_id": room })).await;
    assert!(is_tombstone(&at(&history, 1), "removed"));

    // Direct conversations have no owner.
    let sent = b.say_to(carol.user_id, "d1", "hi").await;
    assert_eq!(
        b.err(
            "message_remove",
            json!({ "conversation_id": sent["conversation_id"], "seq": 1 })
        )
        .await,
        "forbidden"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hide_is_for_the_hiders_devices_only() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let outsider = server.login("outsider").await;
    let mut a1 = server.connect(&alice).await;
    let mut a2 = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let mut x = server.connect(&outsider).await;
    let sent = b.say_to(alice.user_id, "b1", "for your eyes").await;
    let direct = sent["conversation_id"].as_i64().unwrap();
    let target = json!({ "conversation_id": direct, "seq": 1 });

    assert_eq!(x.err("hide", target.clone()).await, "forbidden");
    assert_eq!(
        a1.err("hide", json!({ "conversation_id": direct, "seq": 2 }))
            .await,
        "not_found"
    );
    assert_eq!(
        a1.err("hide", json!({ "conversation_id": direct, "seq": 0 }))
            .await,
        "not_found"
    );
    a1.ok("hide", target.clone()).await;
    let told =
        json!({ "conversation_id": direct, "seq": 1, "state": "hidden", "by": alice.user_id });
    assert_eq!(a2.event("message_state").await, told);
    assert_eq!(a1.event("message_state").await, told);
    b.no_event("message_state", Duration::from_millis(300))
        .await;
    a1.ok("hide", target).await;
    a2.no_event("message_state", Duration::from_millis(200))
        .await;

    let mine = a2.ok("history", json!({ "conversation_id": direct })).await;
    assert!(is_tombstone(&at(&mine, 1), "hidden"));
    let synced = sync_all(&mut a2, &mut HashMap::new()).await;
    assert!(is_tombstone(&synced[0], "hidden"));
    let listed = a2.ok("conversations", json!({})).await;
    assert!(is_tombstone(
        &listed["conversations"][0]["last_message"],
        "hidden"
    ));
    let theirs = b.ok("history", json!({ "conversation_id": direct })).await;
    assert_eq!(at(&theirs, 1)["content"], "for your eyes");
    let listed = b.ok("conversations", json!({})).await;
    assert_eq!(
        listed["conversations"][0]["last_message"]["content"],
        "for your eyes"
    );
}
