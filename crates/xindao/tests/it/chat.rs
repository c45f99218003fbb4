//! Chat behaviour through the real WebSocket: 1:1, rooms, multi-device, idempotency, read state, presence.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_message_reaches_peer_and_senders_other_devices() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut alice_phone = server.connect(&alice).await;
    let mut alice_web = server.connect(&alice).await;
    let mut bob_phone = server.connect(&bob).await;

    let ack = alice_phone
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "m1", "content": "hi bob" }),
        )
        .await;
    let message = &ack["message"];
    assert_eq!(message["seq"], 1);
    assert_eq!(message["sender_id"], alice.user_id);
    assert_eq!(ack["duplicate"], false);

    let pushed = bob_phone.event("message").await;
    assert_eq!(
        pushed,
        pushed_as(message, false),
        "bob gets exactly the acked message, without what only alice needs"
    );
    assert!(pushed.get("cmid").is_none() && pushed.get("kind").is_none());
    assert_eq!(
        alice_web.event("message").await,
        pushed_as(message, true),
        "alice's other device gets it, with its cmid"
    );
    assert_eq!(pushed_as(message, true)["cmid"], "m1");
    alice_phone
        .no_event("message", Duration::from_millis(200))
        .await;

    // The pair has exactly one direct conversation, whoever opens it.
    let opened = bob_phone
        .ok("direct_open", json!({ "user_id": alice.user_id }))
        .await;
    assert_eq!(opened["conversation"]["id"], message["conversation_id"]);
    assert_eq!(opened["conversation"]["peer"]["id"], alice.user_id);
    assert_eq!(opened["conversation"]["unread"], 1);
    assert_eq!(
        bob_phone
            .err("direct_open", json!({ "user_id": bob.user_id }))
            .await,
        "conflict"
    );
    assert_eq!(
        bob_phone
            .err("direct_open", json!({ "user_id": 999_999 }))
            .await,
        "not_found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_fan_out_membership_and_permissions() {
    let server = TestServer::start(|_| {}).await;
    let owner = server.login("owner").await;
    let member = server.login("member").await;
    let outsider = server.login("outsider").await;
    let mut o = server.connect(&owner).await;
    let mut m = server.connect(&member).await;
    let mut x = server.connect(&outsider).await;

    let room = o.ok("room_create", json!({ "name": "general" })).await["conversation"].clone();
    let room_id = room["id"].as_i64().unwrap();
    assert_eq!(room["owner_id"], owner.user_id);
    assert_eq!(room["visibility"], "public");

    let joined = m
        .ok("room_join", json!({ "conversation_id": room_id }))
        .await;
    assert_eq!(joined["conversation"]["id"], room_id);
    let event = o.event("member").await;
    assert_eq!(
        event,
        json!({ "conversation_id": room_id, "user_id": member.user_id, "action": "joined", "by": member.user_id })
    );

    // Outsiders can neither read nor post.
    assert_eq!(
        x.err(
            "send",
            json!({ "conversation_id": room_id, "cmid": "x1", "content": "hi" })
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        x.err("history", json!({ "conversation_id": room_id }))
            .await,
        "forbidden"
    );
    assert_eq!(
        x.err("room_members", json!({ "conversation_id": room_id }))
            .await,
        "forbidden"
    );
    assert_eq!(
        x.err("typing", json!({ "conversation_id": room_id })).await,
        "forbidden"
    );
    assert_eq!(
        x.err("read", json!({ "conversation_id": room_id, "seq": 1 }))
            .await,
        "forbidden"
    );

    let sent = o.say(room_id, "r1", "welcome").await;
    assert_eq!(m.event("message").await, pushed_as(&sent, false));
    x.no_event("message", Duration::from_millis(200)).await;

    let members = m
        .ok("room_members", json!({ "conversation_id": room_id }))
        .await["members"]
        .clone();
    let members = members.as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["user"]["id"], owner.user_id);
    assert_eq!(members[0]["role"], "owner");
    assert_eq!(members[1]["online"], true);

    // Invite-only rooms: no self-join, only the owner adds.
    let secret = o
        .ok(
            "room_create",
            json!({ "name": "secret", "visibility": "invite" }),
        )
        .await["conversation"]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        x.err("room_join", json!({ "conversation_id": secret }))
            .await,
        "forbidden"
    );
    o.ok(
        "room_add",
        json!({ "conversation_id": secret, "user_id": member.user_id }),
    )
    .await;
    assert_eq!(m.event("member").await["action"], "added");
    assert_eq!(
        m.err(
            "room_add",
            json!({ "conversation_id": secret, "user_id": outsider.user_id })
        )
        .await,
        "forbidden",
        "a plain member cannot add to an invite-only room"
    );
    let rooms = x.ok("rooms_public", json!({})).await["rooms"].clone();
    assert!(
        rooms.as_array().unwrap().iter().all(|r| r["id"] != secret),
        "invite-only rooms are not listed"
    );

    // Removal stops delivery to the removed member, who is told.
    o.ok(
        "room_remove",
        json!({ "conversation_id": room_id, "user_id": member.user_id }),
    )
    .await;
    assert_eq!(m.event("member").await["action"], "removed");
    o.say(room_id, "r2", "after removal").await;
    m.no_event("message", Duration::from_millis(200)).await;
    assert_eq!(
        m.err(
            "send",
            json!({ "conversation_id": room_id, "cmid": "m9", "content": "hey" })
        )
        .await,
        "forbidden"
    );

    // The owner leaving hands the room to the longest-standing member.
    m.ok("room_join", json!({ "conversation_id": room_id }))
        .await;
    o.ok("room_leave", json!({ "conversation_id": room_id }))
        .await;
    let conversation = m.ok("conversations", json!({})).await["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == room_id)
        .cloned()
        .unwrap();
    assert_eq!(conversation["owner_id"], member.user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_with_same_cmid_is_idempotent() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let first = a
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "same", "content": "once" }),
        )
        .await;
    assert_eq!(
        b.event("message").await,
        pushed_as(&first["message"], false)
    );
    // A retry from another device of the same user, even after reconnecting, returns the original ack.
    let mut a2 = server.connect(&alice).await;
    let again = a2
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "same", "content": "once" }),
        )
        .await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message"], first["message"]);
    b.no_event("message", Duration::from_millis(200)).await;
    let conversation_id = first["message"]["conversation_id"].as_i64().unwrap();
    let history = b
        .ok("history", json!({ "conversation_id": conversation_id }))
        .await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        1,
        "stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_state_moves_forward_only_and_is_pushed() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let mut b2 = server.connect(&bob).await;
    let mut conversation_id = 0;
    for i in 1..=5 {
        let ack = a.ok("send", json!({ "to_user": bob.user_id, "cmid": format!("m{i}"), "content": format!("n{i}") })).await;
        conversation_id = ack["message"]["conversation_id"].as_i64().unwrap();
    }
    let mine = a.ok("conversations", json!({})).await["conversations"][0].clone();
    assert_eq!(
        (mine["unread"].clone(), mine["read_seq"].clone()),
        (json!(0), json!(5)),
        "own messages are read"
    );
    let list = b.ok("conversations", json!({})).await["conversations"][0].clone();
    assert_eq!(list["unread"], 5);
    assert_eq!(list["last_seq"], 5);
    assert_eq!(list["last_message"]["content"], "n5");

    assert_eq!(
        b.ok(
            "read",
            json!({ "conversation_id": conversation_id, "seq": 3 })
        )
        .await["read_seq"],
        3
    );
    let seen = a.event("read").await;
    assert_eq!(
        seen,
        json!({ "conversation_id": conversation_id, "user_id": bob.user_id, "seq": 3 })
    );
    assert_eq!(
        b2.event("read").await["seq"],
        3,
        "the reader's other devices clear their badge"
    );
    // Never backwards, never beyond the last message.
    assert_eq!(
        b.ok(
            "read",
            json!({ "conversation_id": conversation_id, "seq": 1 })
        )
        .await["read_seq"],
        3
    );
    assert_eq!(
        b.ok(
            "read",
            json!({ "conversation_id": conversation_id, "seq": 99 })
        )
        .await["read_seq"],
        5
    );
    let list = b.ok("conversations", json!({})).await["conversations"][0].clone();
    assert_eq!(list["unread"], 0);
    assert_eq!(list["read_seq"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    // Presence is told only about users who share a conversation with the watcher.
    a.ok("direct_open", json!({ "user_id": bob.user_id })).await;
    let status = a.ok("presence", json!({ "user_ids": [bob.user_id] })).await;
    assert_eq!(
        status["presence"],
        json!([{ "user_id": bob.user_id, "online": false }])
    );

    let mut b1 = server.connect(&bob).await;
    assert_eq!(
        a.event("presence").await,
        json!({ "user_id": bob.user_id, "online": true })
    );
    let b2 = server.connect(&bob).await;
    drop(b2);
    // Bob still has a connection: no offline event for the second device going away.
    a.no_event("presence", Duration::from_millis(300)).await;

    let conversation = b1
        .ok("direct_open", json!({ "user_id": alice.user_id }))
        .await["conversation"]["id"]
        .clone();
    b1.ok("typing", json!({ "conversation_id": conversation }))
        .await;
    assert_eq!(
        a.event("typing").await,
        json!({ "conversation_id": conversation, "user_id": bob.user_id })
    );
    b1.no_event("typing", Duration::from_millis(100)).await;

    b1.ws.close(None).await.unwrap();
    assert_eq!(
        a.event("presence").await,
        json!({ "user_id": bob.user_id, "online": false })
    );
    let too_many: Vec<i64> = (0..501).collect();
    assert_eq!(
        a.err("presence", json!({ "user_ids": too_many })).await,
        "invalid_args"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_both_ways() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({ "name": "log" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    for i in 1..=25 {
        a.say(room, &format!("h{i}"), &format!("line {i}")).await;
    }
    let seqs = |page: &serde_json::Value| -> Vec<i64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let latest = a
        .ok("history", json!({ "conversation_id": room, "limit": 10 }))
        .await;
    assert_eq!(seqs(&latest), (16..=25).collect::<Vec<_>>());
    assert_eq!(latest["has_more"], true);
    let older = a
        .ok(
            "history",
            json!({ "conversation_id": room, "before_seq": 16, "limit": 10 }),
        )
        .await;
    assert_eq!(seqs(&older), (6..=15).collect::<Vec<_>>());
    let oldest = a
        .ok(
            "history",
            json!({ "conversation_id": room, "before_seq": 6, "limit": 10 }),
        )
        .await;
    assert_eq!(seqs(&oldest), (1..=5).collect::<Vec<_>>());
    assert_eq!(oldest["has_more"], false);
    let newer = a
        .ok(
            "history",
            json!({ "conversation_id": room, "after_seq": 20, "limit": 10 }),
        )
        .await;
    assert_eq!(seqs(&newer), (21..=25).collect::<Vec<_>>());
    assert_eq!(newer["has_more"], false);
    // Page size is bounded by the server.
    let capped = a
        .ok(
            "history",
            json!({ "conversation_id": room, "after_seq": 0, "limit": 100000 }),
        )
        .await;
    assert_eq!(seqs(&capped).len(), 25);
    assert_eq!(
        a.err(
            "history",
            json!({ "conversation_id": room, "after_seq": 1, "before_seq": 5 })
        )
        .await,
        "invalid_args"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_messages_make_shorter_pages_that_still_page_through_everything() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({ "name": "big" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let text = "字".repeat(4000); // 12 KB each: 120 of them exceed one 1 MiB reply
    for i in 1..=120 {
        a.say(room, &format!("b{i}"), &text).await;
    }
    let latest = a
        .ok("history", json!({ "conversation_id": room, "limit": 200 }))
        .await;
    let latest_seqs: Vec<i64> = latest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert!(
        latest_seqs.len() < 120 && latest_seqs.last() == Some(&120),
        "newest kept"
    );
    assert_eq!(latest["has_more"], true);
    let older = a
        .ok(
            "history",
            json!({ "conversation_id": room, "before_seq": latest_seqs[0], "limit": 200 }),
        )
        .await;
    let older_len = older["messages"].as_array().unwrap().len();
    assert_eq!(
        older_len + latest_seqs.len(),
        120,
        "the rest on the next page"
    );
    let mut cursors = std::collections::HashMap::new();
    let all = sync_all(&mut a, &mut cursors).await;
    assert_eq!(all.len(), 120, "sync pages through too");
}
