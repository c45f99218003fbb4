//! Membership at scale (docs/protocol.md, `members_changed` and `room_members`): above
//! `room_member_events_max` members a room's joins and leaves reach its members as at most one summary per
//! second, while the user who joined or left still gets their own `member` push; below it every change is a
//! `member` push; the member list comes in pages.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common;
use common::*;

/// Reads `client`'s pushes for `wait`, each with the time it arrived.
async fn pushes_for(client: &mut Client, wait: Duration) -> Vec<(Instant, Value)> {
    let deadline = Instant::now() + wait;
    let mut pushes = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, client.next_frame()).await {
        if frame.get("event").is_some() {
            pushes.push((Instant::now(), frame));
        }
    }
    pushes
}

#[tokio::test]
async fn big_room_changes_come_as_one_summary_per_second() {
    const JOINERS: usize = 20;
    let server = TestServer::start(|c| c.room_member_events_max = 3).await;
    let owner = server.login("owner").await;
    let watcher = server.login("watcher").await;
    let mut o = server.connect(&owner).await;
    let mut w = server.connect(&watcher).await;
    let room = o.ok("room_create", json!({ "name": "big" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    w.ok("room_join", json!({ "conversation_id": room })).await;
    assert_eq!(w.event("member").await["user_id"], watcher.user_id);

    // Up to the threshold (3 members), a change is a `member` push to every member.
    let mut joiners = Vec::new();
    let started = Instant::now();
    for i in 0..JOINERS {
        let login = server.login(&format!("joiner{i}")).await;
        let mut client = server.connect(&login).await;
        client
            .ok("room_join", json!({ "conversation_id": room }))
            .await;
        // Each joiner's own connection hears of its join, small room or big.
        let own = client.event("member").await;
        assert_eq!(
            own,
            json!({ "conversation_id": room, "user_id": login.user_id, "action": "joined", "by": login.user_id })
        );
        joiners.push((login, client));
    }
    let joins_took = started.elapsed();
    let first = w.event("member").await;
    assert_eq!(first["user_id"], joiners[0].0.user_id);

    // Above it, the watcher gets no `member` push, only summaries, at least a second apart.
    let pushes = pushes_for(&mut w, joins_took + Duration::from_millis(2500)).await;
    let mut joined = 0;
    let mut last_at: Option<Instant> = None;
    let mut last = Value::Null;
    for (at, frame) in &pushes {
        assert_ne!(
            frame["event"], "member",
            "a member push in a big room: {frame}"
        );
        if frame["event"] == "members_changed" {
            if let Some(previous) = last_at {
                assert!(
                    *at - previous >= Duration::from_millis(900),
                    "two summaries {:?} apart",
                    *at - previous
                );
            }
            last_at = Some(*at);
            assert_eq!(frame["data"]["conversation_id"], room);
            assert_eq!(frame["data"]["left"], 0);
            joined += frame["data"]["joined"].as_i64().unwrap();
            last = frame["data"].clone();
        }
    }
    let summaries = pushes
        .iter()
        .filter(|(_, f)| f["event"] == "members_changed")
        .count();
    assert_eq!(
        joined,
        JOINERS as i64 - 1,
        "every join above the threshold is counted once"
    );
    assert!(
        summaries as u64 <= joins_took.as_secs() + 2,
        "{summaries} summaries for joins over {joins_took:?}"
    );
    assert_eq!(last["members"], JOINERS as i64 + 2);
    let recent = last["recent"].as_array().unwrap();
    assert!(!recent.is_empty() && recent.len() <= 10);
    assert_eq!(
        recent.last().unwrap(),
        &json!({ "user_id": joiners[JOINERS - 1].0.user_id, "action": "joined", "by": joiners[JOINERS - 1].0.user_id })
    );

    // A leave: the leaver is told at once; the others in the next summary.
    let (leaver, mut l) = joiners.pop().unwrap();
    l.ok("room_leave", json!({ "conversation_id": room })).await;
    assert_eq!(l.event("member").await["action"], "left");
    let pushes = pushes_for(&mut w, Duration::from_millis(1500)).await;
    let summary: Vec<&Value> = pushes
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f["event"] != "presence")
        .collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["event"], "members_changed");
    let data = &summary[0]["data"];
    assert_eq!(
        (data["joined"].clone(), data["left"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(data["members"], JOINERS as i64 + 1);
    assert_eq!(data["recent"][0]["user_id"], leaver.user_id);

    // Messages still reach everyone.
    let sent = o.say(room, "hi-all", "hello everyone").await;
    assert_eq!(w.event("message").await, pushed_as(&sent, false));
    for (_, client) in &mut joiners {
        assert_eq!(client.event("message").await, pushed_as(&sent, false));
    }
}

#[tokio::test]
async fn room_members_come_in_pages() {
    let server = TestServer::start(|_| {}).await;
    let owner = server.login("owner").await;
    let mut o = server.connect(&owner).await;
    let room = o.ok("room_create", json!({ "name": "paged" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let mut everyone = vec![owner.user_id];
    for i in 0..6 {
        let login = server.login(&format!("m{i}")).await;
        o.ok(
            "room_add",
            json!({ "conversation_id": room, "user_id": login.user_id }),
        )
        .await;
        everyone.push(login.user_id);
    }
    let ids = |page: &Value| -> Vec<i64> {
        page["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user"]["id"].as_i64().unwrap())
            .collect()
    };
    // Without a limit, a room this small is one page, without a cursor.
    let all = o
        .ok("room_members", json!({ "conversation_id": room }))
        .await;
    assert_eq!(ids(&all), everyone, "longest-standing first");
    assert_eq!(all["has_more"], false);
    assert!(all["next_cursor"].is_null());
    assert_eq!(all["members"][0]["role"], "owner");

    let first = o
        .ok(
            "room_members",
            json!({ "conversation_id": room, "limit": 4 }),
        )
        .await;
    assert_eq!(ids(&first), everyone[..4]);
    assert_eq!(first["has_more"], true);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = o
        .ok(
            "room_members",
            json!({ "conversation_id": room, "limit": 4, "cursor": cursor }),
        )
        .await;
    assert_eq!(ids(&second), everyone[4..]);
    assert_eq!(second["has_more"], false);
    assert!(
        second["next_cursor"].is_null(),
        "the last page has no cursor"
    );
    // A page that ends exactly at the end has no cursor either.
    let exact = o
        .ok(
            "room_members",
            json!({ "conversation_id": room, "limit": 7 }),
        )
        .await;
    assert_eq!(ids(&exact), everyone);
    assert_eq!(exact["has_more"], false);
    assert!(exact["next_cursor"].is_null());

    for bad in [json!("nope"), json!("1.x"), json!(5)] {
        assert_eq!(
            o.err(
                "room_members",
                json!({ "conversation_id": room, "cursor": bad })
            )
            .await,
            "invalid_args"
        );
    }
    assert_eq!(
        o.err(
            "room_members",
            json!({ "conversation_id": room, "limit": 0 })
        )
        .await,
        "invalid_args"
    );
}
