//! Issue 16, finding 2 and part of 7: one user must not be able to make another's account unusable, nor
//! probe who exists and who is online. Through the real server: every list reply is paged and bounded in bytes
//! (`conversations` by activity cursor, `sync` by conversation id), memberships and owned rooms are capped
//! (`limit_reached`), `room_add` and user lookups are rate-limited per user (`rate_limited`), leaving by id
//! always works, and presence is told only about users who share a conversation.
//!
//! Before: 130 rooms with one 16 KiB message each broke the victim's `sync` (the reply passed the 4 MiB write
//! buffer and the connection dropped with no close code), 300 broke `conversations`, and the SDK reconnected
//! forever. After: a user in 10,000 conversations connects, lists and syncs, every reply under the budget.

use crate::common::{Client, TestServer};

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The reply budget (`chat::paging::REPLY_BYTES_MAX`) and what a reply may carry beyond it: the envelope and one
/// conversation head.
const BUDGET: usize = 1024 * 1024;
const SLACK: usize = 40 * 1024;

/// Calls `op` and returns its result and the size of the whole reply frame.
async fn sized(client: &mut Client, op: &str, args: Value) -> (Value, usize) {
    let reply = client.call(op, args).await;
    assert_eq!(reply["ok"], true, "{op} failed: {reply}");
    let size = reply.to_string().len();
    (reply["result"].clone(), size)
}

/// Lists every conversation page by page; returns the ids in order, the number of pages and the largest reply.
async fn list_all(client: &mut Client, limit: usize) -> (Vec<i64>, usize, usize) {
    let (mut ids, mut pages, mut largest) = (Vec::new(), 0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({ "limit": limit });
        if let Some(cursor) = &cursor {
            args["cursor"] = json!(cursor);
        }
        let (result, size) = sized(client, "conversations", args).await;
        pages += 1;
        largest = largest.max(size);
        let page = result["conversations"].as_array().unwrap();
        assert!(page.len() <= limit.min(200), "limit honoured and capped");
        ids.extend(page.iter().map(|c| c["id"].as_i64().unwrap()));
        if result["has_more"] == false {
            assert!(result["next_cursor"].is_null());
            return (ids, pages, largest);
        }
        assert!(!page.is_empty(), "a page with more is never empty");
        cursor = Some(result["next_cursor"].as_str().unwrap().to_string());
    }
}

/// Syncs `(after, until]` from `cursors` to the end, following `next_after_id`; checks that messages come
/// contiguous. Returns the messages received, the number of calls and the largest reply.
async fn sync_range(
    client: &mut Client,
    cursors: &mut HashMap<i64, i64>,
    after: i64,
    until: Option<i64>,
) -> (usize, usize, usize) {
    let (mut received, mut calls, mut largest) = (0, 0, 0);
    let mut after = after;
    loop {
        let sent: serde_json::Map<String, Value> = cursors
            .iter()
            .filter(|(id, _)| **id > after && until.is_none_or(|until| **id <= until))
            .map(|(id, seq)| (id.to_string(), json!(seq)))
            .collect();
        let mut args = json!({ "cursors": sent, "limit": 100, "after_id": after });
        if let Some(until) = until {
            args["until_id"] = json!(until);
        }
        let (result, size) = sized(client, "sync", args).await;
        calls += 1;
        largest = largest.max(size);
        for entry in result["conversations"].as_array().unwrap() {
            let id = entry["conversation"]["id"].as_i64().unwrap();
            assert!(id > after && until.is_none_or(|until| id <= until));
            for message in entry["messages"].as_array().unwrap() {
                let cursor = cursors.entry(id).or_insert(0);
                assert_eq!(message["seq"].as_i64().unwrap(), *cursor + 1, "contiguous");
                *cursor += 1;
                received += 1;
            }
        }
        if result["has_more"] == false {
            return (received, calls, largest);
        }
        after = result["next_after_id"].as_i64().unwrap();
        assert!(calls < 10_000, "sync progresses");
    }
}

/// Puts `user` into `count` rooms owned by `owner`, one message each (every `big_every`th a 16 KiB custom
/// one), straight into the server's SQLite database: 10,000 WebSocket operations would take minutes.
fn bulk_rooms(server: &TestServer, owner: i64, user: i64, count: i64, big_every: i64) {
    let mut db = rusqlite::Connection::open(server.config.data_dir.join("xindao.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = db.transaction().unwrap();
    let base = xindao::model::now_millis() - 3_600_000;
    let big = serde_json::to_string(&"x".repeat(16_000)).unwrap();
    for i in 0..count {
        let ts = base + i;
        tx.execute(
            "INSERT INTO conversations (kind, name, visibility, owner_id, last_seq, last_ts, created_at)
             VALUES ('room', ?1, 'public', ?2, 1, ?3, ?3)",
            rusqlite::params![format!("bulk {i}"), owner, ts],
        )
        .unwrap();
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO members (conversation_id, user_id, role, joined_at) VALUES (?1, ?2, 'member', ?3)",
            rusqlite::params![id, user, ts],
        )
        .unwrap();
        let (kind, content) = if i % big_every == 0 {
            ("custom", big.clone())
        } else {
            (
                "text",
                serde_json::to_string(&format!("hello {i}")).unwrap(),
            )
        };
        tx.execute(
            "INSERT INTO messages (conversation_id, seq, sender_id, cmid, kind, content, created_at)
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![id, owner, format!("bulk-{i}"), kind, content, ts],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_in_ten_thousand_conversations_connects_lists_and_syncs() {
    let mut server = TestServer::start(|_| {}).await;
    let mallory = server.login("mallory").await;
    let victim = server.login("victim").await;
    bulk_rooms(&server, mallory.user_id, victim.user_id, 10_000, 50);

    let started = Instant::now();
    let mut client = server.connect(&victim).await;
    let hello = started.elapsed();
    assert!(hello < Duration::from_secs(3), "hello after {hello:?}");

    // Listing: every conversation once, most recent first, every page under the budget; a limit above the
    // maximum is capped.
    let started = Instant::now();
    let (ids, pages, largest) = list_all(&mut client, 1000).await;
    assert_eq!(ids.len(), 10_000);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        10_000,
        "no repeats"
    );
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "most recent first");
    assert!(largest <= BUDGET + SLACK, "largest page {largest} bytes");
    eprintln!(
        "conversations: {pages} pages, largest {largest} bytes, {:?}",
        started.elapsed()
    );

    // Syncing from nothing: every message once, every reply under the budget.
    let started = Instant::now();
    let mut cursors = HashMap::new();
    let (received, calls, largest) = sync_range(&mut client, &mut cursors, 0, None).await;
    assert_eq!(received, 10_000);
    assert!(
        largest <= BUDGET + SLACK,
        "largest sync reply {largest} bytes"
    );
    eprintln!(
        "sync: {calls} calls, largest {largest} bytes, {:?}",
        started.elapsed()
    );

    // Syncing with every cursor, sent in slices of 2,000 (all at once would pass max_frame_bytes): nothing new.
    let mut sorted: Vec<i64> = cursors.keys().copied().collect();
    sorted.sort();
    let mut after = 0;
    for chunk in sorted.chunks(2000) {
        let until = Some(*chunk.last().unwrap()).filter(|_| chunk.len() == 2000);
        let (received, _, _) = sync_range(&mut client, &mut cursors, after, until).await;
        assert_eq!(received, 0);
        after = chunk.last().copied().unwrap();
    }

    // Over the cap after an operator lowered it: still connects, still leaves by id, cannot join more.
    let dave = server.login("dave").await;
    let mut owner = server.connect(&dave).await;
    let room = owner.ok("room_create", json!({ "name": "one more" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    drop(owner);
    drop(client);
    server.config.max_memberships_per_user = 5_000;
    server.restart().await;
    let mut client = server.connect(&victim).await;
    assert_eq!(
        client
            .err("room_join", json!({ "conversation_id": room }))
            .await,
        "limit_reached"
    );
    client
        .ok("room_leave", json!({ "conversation_id": ids[0] }))
        .await;
    let (result, _) = sized(&mut client, "conversations", json!({ "limit": 1 })).await;
    assert_eq!(result["conversations"][0]["id"], ids[1]);
    server.stop().await;
}

/// The attack as measured: 130 rooms, each with one 16 KiB message, made through the real interface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_full_of_big_messages_no_longer_break_sync_or_the_list() {
    let mut server = TestServer::start(|config| config.room_adds_per_min = 1000).await;
    let mallory = server.login("mallory").await;
    let victim = server.login("victim").await;
    let mut attacker = server.connect(&mallory).await;
    let big = "x".repeat(16_000);
    for i in 0..130 {
        let room = attacker
            .ok("room_create", json!({ "name": format!("spam {i}") }))
            .await["conversation"]["id"]
            .as_i64()
            .unwrap();
        attacker
            .ok(
                "room_add",
                json!({ "conversation_id": room, "user_id": victim.user_id }),
            )
            .await;
        attacker
            .ok(
                "send",
                json!({ "conversation_id": room, "cmid": format!("big-{i}"), "kind": "custom", "content": big }),
            )
            .await;
    }
    let mut client = server.connect(&victim).await;
    let mut cursors = HashMap::new();
    let (received, calls, largest) = sync_range(&mut client, &mut cursors, 0, None).await;
    assert_eq!(received, 130);
    eprintln!("sync of 130 x 16 KiB: {calls} calls, largest reply {largest} bytes");
    assert!(calls >= 3, "the budget splits it: {calls} calls");
    assert!(
        largest <= BUDGET + SLACK,
        "largest sync reply {largest} bytes"
    );
    let (ids, pages, largest) = list_all(&mut client, 200).await;
    assert_eq!(ids.len(), 130);
    eprintln!("conversations of 130 x 16 KiB: {pages} pages, largest {largest} bytes");
    assert!(pages >= 2, "the budget splits the list");
    assert!(largest <= BUDGET + SLACK, "largest page {largest} bytes");
    client.ok("ping", json!({})).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_cursors() {
    let mut server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut client = server.connect(&alice).await;
    let mut rooms = Vec::new();
    for i in 0..5 {
        let room = client
            .ok("room_create", json!({ "name": format!("r{i}") }))
            .await["conversation"]["id"]
            .as_i64()
            .unwrap();
        client.say(room, &format!("m{i}"), "hello").await;
        rooms.push(room);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // conversations: pages of 2, newest first, then a cursor that says there is no more.
    let first = client.ok("conversations", json!({ "limit": 2 })).await;
    assert_eq!(first["has_more"], true);
    let ids = |page: &Value| -> Vec<i64> {
        page["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&first), vec![rooms[4], rooms[3]]);
    assert!(first["conversations"][0]["last_ts"].as_i64().unwrap() > 0);
    let second = client
        .ok(
            "conversations",
            json!({ "limit": 2, "cursor": first["next_cursor"] }),
        )
        .await;
    assert_eq!(ids(&second), vec![rooms[2], rooms[1]]);
    let third = client
        .ok(
            "conversations",
            json!({ "limit": 2, "cursor": second["next_cursor"] }),
        )
        .await;
    assert_eq!(ids(&third), vec![rooms[0]]);
    assert_eq!(third["has_more"], false);
    assert!(third["next_cursor"].is_null());
    let all = client.ok("conversations", json!({})).await;
    assert_eq!(ids(&all).len(), 5, "default limit 50");
    assert_eq!(
        client
            .err("conversations", json!({ "cursor": "not a cursor" }))
            .await,
        "invalid_args"
    );

    // sync: a slice of ids, then the rest; a caught-up slice answers nothing.
    let sliced = client
        .ok("sync", json!({ "cursors": {}, "until_id": rooms[1] }))
        .await;
    let got: Vec<i64> = sliced["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["conversation"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, rooms[..2]);
    assert_eq!(sliced["has_more"], false);
    assert_eq!(sliced["next_after_id"], rooms[1]);
    let rest = client
        .ok("sync", json!({ "cursors": {}, "after_id": rooms[1] }))
        .await;
    assert_eq!(rest["conversations"].as_array().unwrap().len(), 3);
    let caught_up: serde_json::Map<String, Value> =
        rooms.iter().map(|id| (id.to_string(), json!(1))).collect();
    let none = client.ok("sync", json!({ "cursors": caught_up })).await;
    assert_eq!(none["conversations"], json!([]));
    assert_eq!(none["has_more"], false);
    // A conversation cut by `limit` is not complete: next_after_id stops before it.
    for i in 0..3 {
        client.say(rooms[1], &format!("more-{i}"), "more").await;
    }
    let cut = client
        .ok("sync", json!({ "cursors": caught_up, "limit": 2 }))
        .await;
    assert_eq!(cut["has_more"], true);
    assert_eq!(cut["next_after_id"], rooms[0]);
    assert_eq!(cut["conversations"][0]["has_more"], true);

    // room_members: pages of 2, longest-standing first.
    let mut members = vec![alice.user_id];
    for i in 0..4 {
        let login = server.login(&format!("member{i}")).await;
        client
            .ok(
                "room_add",
                json!({ "conversation_id": rooms[0], "user_id": login.user_id }),
            )
            .await;
        members.push(login.user_id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut listed = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut args = json!({ "conversation_id": rooms[0], "limit": 2 });
        if !cursor.is_null() {
            args["cursor"] = cursor.clone();
        }
        let page = client.ok("room_members", args).await;
        let got = page["members"].as_array().unwrap();
        assert!(got.len() <= 2);
        listed.extend(got.iter().map(|m| m["user"]["id"].as_i64().unwrap()));
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        cursor = page["next_cursor"].clone();
    }
    assert_eq!(listed, members);
    assert_eq!(
        client
            .err(
                "room_members",
                json!({ "conversation_id": rooms[0], "cursor": "x.y" })
            )
            .await,
        "invalid_args"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_answer_limit_reached_and_leaving_always_works() {
    let mut server = TestServer::start(|config| {
        config.max_memberships_per_user = 3;
        config.max_rooms_per_owner = 2;
    })
    .await;
    let mallory = server.login("mallory").await;
    let victim = server.login("victim").await;
    let dave = server.login("dave").await;
    let mut attacker = server.connect(&mallory).await;
    let mut client = server.connect(&victim).await;
    let mut other = server.connect(&dave).await;
    let create = |name: &str| json!({ "name": name });
    let a = attacker.ok("room_create", create("a")).await["conversation"]["id"].clone();
    let b = attacker.ok("room_create", create("b")).await["conversation"]["id"].clone();
    let refused = attacker.call("room_create", create("c")).await;
    assert_eq!(refused["error"]["code"], "limit_reached");
    assert_eq!(
        refused["error"]["message"],
        "you own the maximum number of rooms"
    );
    let mine = client.ok("room_create", create("mine")).await["conversation"]["id"].clone();
    for room in [&a, &b] {
        attacker
            .ok(
                "room_add",
                json!({ "conversation_id": room, "user_id": victim.user_id }),
            )
            .await;
    }
    let c = other.ok("room_create", create("c")).await["conversation"]["id"].clone();
    let refused = other
        .call(
            "room_add",
            json!({ "conversation_id": c, "user_id": victim.user_id }),
        )
        .await;
    assert_eq!(refused["error"]["code"], "limit_reached");
    assert_eq!(
        refused["error"]["message"],
        "that user is in the maximum number of conversations"
    );
    assert_eq!(
        client
            .err("room_join", json!({ "conversation_id": c }))
            .await,
        "limit_reached"
    );
    assert_eq!(
        client
            .err("direct_open", json!({ "user_id": dave.user_id }))
            .await,
        "limit_reached"
    );
    assert_eq!(
        other
            .err(
                "send",
                json!({ "to_user": victim.user_id, "cmid": "d-1", "content": "hi" })
            )
            .await,
        "limit_reached"
    );
    // Leaving by id frees a place.
    client
        .ok("room_leave", json!({ "conversation_id": a }))
        .await;
    client
        .ok("room_join", json!({ "conversation_id": c }))
        .await;

    // An operator lowers the cap below what the user has: they still connect and leave.
    server.config.max_memberships_per_user = 1;
    drop((attacker, client, other));
    server.restart().await;
    let mut client = server.connect(&victim).await;
    for room in [&b, &c] {
        client
            .ok("room_leave", json!({ "conversation_id": room }))
            .await;
    }
    assert_eq!(
        client
            .err("room_join", json!({ "conversation_id": a }))
            .await,
        "limit_reached",
        "still at the cap of 1 (their own room)"
    );
    client
        .ok("room_leave", json!({ "conversation_id": mine }))
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_add_is_rate_limited_per_user() {
    let mut server = TestServer::start(|config| config.room_adds_per_min = 3).await;
    let mallory = server.login("mallory").await;
    let dave = server.login("dave").await;
    let mut attacker = server.connect(&mallory).await;
    let mut other = server.connect(&dave).await;
    let room =
        attacker.ok("room_create", json!({ "name": "r" })).await["conversation"]["id"].clone();
    let mut targets = Vec::new();
    for i in 0..4 {
        targets.push(server.login(&format!("target{i}")).await.user_id);
    }
    for target in &targets[..3] {
        attacker
            .ok(
                "room_add",
                json!({ "conversation_id": room, "user_id": target }),
            )
            .await;
    }
    let refused = attacker
        .call(
            "room_add",
            json!({ "conversation_id": room, "user_id": targets[3] }),
        )
        .await;
    assert_eq!(refused["error"]["code"], "rate_limited");
    assert!(refused["error"]["retry_after_ms"].as_u64().unwrap() > 1000);
    // Another user's adds are their own.
    other
        .ok("room_join", json!({ "conversation_id": room }))
        .await;
    other
        .ok(
            "room_add",
            json!({ "conversation_id": room, "user_id": targets[3] }),
        )
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lookups_are_rate_limited_per_user() {
    let mut server = TestServer::start(|config| config.lookups_per_min = 3).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let carol = server.login("carol").await;
    let mut client = server.connect(&alice).await;
    client
        .ok("user_find", json!({ "display_name": "bob" }))
        .await;
    client
        .ok("direct_open", json!({ "user_id": bob.user_id }))
        .await;
    // A direct conversation that exists is no lookup.
    for i in 0..5 {
        client
            .ok("direct_open", json!({ "user_id": bob.user_id }))
            .await;
        client
            .ok(
                "send",
                json!({ "to_user": bob.user_id, "cmid": format!("a-{i}"), "content": "hi" }),
            )
            .await;
    }
    assert_eq!(
        client
            .err("direct_open", json!({ "user_id": 999_999 }))
            .await,
        "not_found"
    );
    // Probing further ids, by any of the three ways, is refused without telling whether they exist.
    for args in [
        ("direct_open", json!({ "user_id": carol.user_id })),
        ("direct_open", json!({ "user_id": 999_998 })),
        (
            "send",
            json!({ "to_user": 999_997, "cmid": "probe", "content": "hi" }),
        ),
        ("user_find", json!({ "display_name": "carol" })),
    ] {
        let refused = client.call(args.0, args.1).await;
        assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    }
    let mut other = server.connect(&carol).await;
    other
        .ok("user_find", json!({ "display_name": "alice" }))
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_only_for_users_who_share_a_conversation() {
    let mut server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let stranger = server.login("stranger").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let mut s = server.connect(&stranger).await;
    a.ok("direct_open", json!({ "user_id": bob.user_id })).await;

    let seen = b
        .ok("presence", json!({ "user_ids": [alice.user_id] }))
        .await;
    assert_eq!(
        seen["presence"],
        json!([{ "user_id": alice.user_id, "online": true }])
    );
    let hidden = s
        .ok(
            "presence",
            json!({ "user_ids": [alice.user_id, stranger.user_id] }),
        )
        .await;
    assert_eq!(
        hidden["presence"],
        json!([
            { "user_id": alice.user_id, "online": false },
            { "user_id": stranger.user_id, "online": true },
        ]),
        "a stranger reads as offline"
    );
    // Alice goes offline and comes back: bob hears it, the stranger does not.
    drop(a);
    let gone = b.event("presence").await;
    assert_eq!(gone, json!({ "user_id": alice.user_id, "online": false }));
    let _a = server.connect(&alice).await;
    let back = b.event("presence").await;
    assert_eq!(back, json!({ "user_id": alice.user_id, "online": true }));
    s.no_event("presence", Duration::from_millis(300)).await;
    server.stop().await;
}
