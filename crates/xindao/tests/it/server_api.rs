//! The server API (docs/server-api.md) through real HTTP against a real server: the user, room, message and
//! history routes on SQLite and on PostgreSQL (skipped with a visible message when it is not reachable), with
//! keys made by the real `xindao apikey` command against the same store. What a route changes is checked where
//! a client sees it: on its WebSocket (`message`, `member`, `room_updated` pushes). The moderation routes are in
//! `server_api_moderation`, the refusals and limits in `server_api_edges`, a cluster in `server_api_cluster`.

use reqwest::Method;
use serde_json::json;

use crate::common::TestServer;
use crate::server_api_client::{fails, member_event, new_key, ok, on_postgres, on_sqlite};

/// Users, rooms, messages and history, on whichever store `server` runs.
async fn every_route(server: &TestServer) {
    let key = new_key(server, "backend", "messages,rooms,users,sessions,read").await;
    let k = key.as_str();
    let (bob, carol, dave) = (
        server.login("bob").await,
        server.login("carol").await,
        server.login("dave").await,
    );
    let mut bob_ws = server.connect(&bob).await;
    let mut carol_ws = server.connect(&carol).await;

    // Users: create, conflict on external_id, look up both ways, update, unknown ids.
    let alice = ok(server, k, Method::POST, "/v1/server/users",
        Some(json!({ "display_name": "alice", "external_id": "shop-42", "custom": { "tier": "gold" } }))).await;
    let alice_id = alice["user"]["id"].as_i64().unwrap();
    assert_eq!(alice["user"]["custom"]["tier"], "gold");
    assert_eq!(alice["user"]["banned"], false);
    fails(
        server,
        k,
        Method::POST,
        "/v1/server/users",
        Some(json!({ "display_name": "other", "external_id": "shop-42" })),
        409,
        "conflict",
    )
    .await;
    let found = ok(
        server,
        k,
        Method::GET,
        "/v1/server/users?external_id=shop-42",
        None,
    )
    .await;
    assert_eq!(found["user"]["id"], alice_id);
    let got = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/users/{alice_id}"),
        None,
    )
    .await;
    assert_eq!(got["user"]["external_id"], "shop-42");
    let patched = ok(
        server,
        k,
        Method::PATCH,
        &format!("/v1/server/users/{alice_id}"),
        Some(json!({ "display_name": "Alice", "custom": { "tier": "platinum" } })),
    )
    .await;
    assert_eq!(
        (
            patched["user"]["display_name"].as_str(),
            patched["user"]["custom"]["tier"].as_str()
        ),
        (Some("Alice"), Some("platinum"))
    );
    assert_eq!(
        patched["user"]["external_id"], "shop-42",
        "unchanged fields stay"
    );
    fails(
        server,
        k,
        Method::GET,
        "/v1/server/users/999999",
        None,
        404,
        "not_found",
    )
    .await;
    fails(
        server,
        k,
        Method::GET,
        "/v1/server/users?external_id=nobody",
        None,
        404,
        "not_found",
    )
    .await;
    fails(
        server,
        k,
        Method::PATCH,
        "/v1/server/users/999999",
        Some(json!({ "display_name": "x" })),
        404,
        "not_found",
    )
    .await;

    // Rooms: create with members (they get `member` pushes), rename, add, remove, list members in pages.
    let room = ok(server, k, Method::POST, "/v1/server/rooms",
        Some(json!({ "name": "orders", "owner_id": bob.user_id, "visibility": "invite", "members": [carol.user_id, alice_id] }))).await;
    let room_id = room["conversation"]["id"].as_i64().unwrap();
    assert_eq!(room["conversation"]["owner_id"], bob.user_id);
    let added = member_event(&mut carol_ws, carol.user_id).await;
    assert_eq!(
        (
            added["user_id"].as_i64(),
            added["action"].as_str(),
            added["by"].as_i64()
        ),
        (Some(carol.user_id), Some("added"), Some(bob.user_id))
    );
    ok(
        server,
        k,
        Method::PATCH,
        &format!("/v1/server/rooms/{room_id}"),
        Some(json!({ "name": "Orders" })),
    )
    .await;
    let renamed = carol_ws.event("room_updated").await;
    assert_eq!(
        (
            renamed["conversation_id"].as_i64(),
            renamed["name"].as_str()
        ),
        (Some(room_id), Some("Orders"))
    );
    let add = ok(
        server,
        k,
        Method::POST,
        &format!("/v1/server/rooms/{room_id}/members"),
        Some(json!({ "user_id": dave.user_id })),
    )
    .await;
    assert_eq!(add["added"], true);
    let joined = member_event(&mut bob_ws, dave.user_id).await;
    assert_eq!(
        (joined["user_id"].as_i64(), joined["action"].as_str()),
        (Some(dave.user_id), Some("added"))
    );
    let page = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/rooms/{room_id}/members?limit=2"),
        None,
    )
    .await;
    assert_eq!(
        (
            page["members"].as_array().unwrap().len(),
            page["has_more"].as_bool()
        ),
        (2, Some(true))
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/rooms/{room_id}/members?limit=10&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(
        (
            rest["members"].as_array().unwrap().len(),
            rest["has_more"].as_bool()
        ),
        (2, Some(false))
    );
    let removed = ok(
        server,
        k,
        Method::DELETE,
        &format!("/v1/server/rooms/{room_id}/members/{}", dave.user_id),
        None,
    )
    .await;
    assert_eq!(removed["removed"], true);
    let left = member_event(&mut carol_ws, dave.user_id).await;
    let left = match left["action"] == "added" {
        true => member_event(&mut carol_ws, dave.user_id).await,
        false => left,
    };
    assert_eq!(
        (left["user_id"].as_i64(), left["action"].as_str()),
        (Some(dave.user_id), Some("removed"))
    );
    fails(
        server,
        k,
        Method::POST,
        "/v1/server/rooms/999999/members",
        Some(json!({ "user_id": dave.user_id })),
        404,
        "not_found",
    )
    .await;
    fails(
        server,
        k,
        Method::POST,
        &format!("/v1/server/rooms/{room_id}/members"),
        Some(json!({ "user_id": 999999 })),
        404,
        "not_found",
    )
    .await;
    let convs = ok(
        server,
        k,
        Method::GET,
        &format!(
            "/v1/server/users/{carol_id}/conversations?limit=5",
            carol_id = carol.user_id
        ),
        None,
    )
    .await;
    assert!(
        convs["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == room_id),
        "{convs}"
    );

    // Messages: as a member (pushed to the others, idempotent by cmid), as the system account, to a user's
    // direct conversation with the system account; a non-member, unknown ids.
    let sent = ok(server, k, Method::POST, "/v1/server/messages", Some(json!({
        "conversation_id": room_id, "sender_id": bob.user_id, "cmid": "api-1", "content": "order shipped" }))).await;
    assert_eq!(
        (sent["duplicate"].as_bool(), sent["message"]["seq"].as_i64()),
        (Some(false), Some(1))
    );
    let pushed = carol_ws.event("message").await;
    assert_eq!(
        (pushed["seq"].as_i64(), pushed["content"].as_str()),
        (Some(1), Some("order shipped"))
    );
    let own = bob_ws.event("message").await;
    assert_eq!(
        own["cmid"], "api-1",
        "the sender's own connections get it too, with its cmid"
    );
    let again = ok(server, k, Method::POST, "/v1/server/messages", Some(json!({
        "conversation_id": room_id, "sender_id": bob.user_id, "cmid": "api-1", "content": "order shipped" }))).await;
    assert_eq!(
        (again["duplicate"].as_bool(), &again["message"]),
        (Some(true), &sent["message"])
    );
    let system = ok(server, k, Method::POST, "/v1/server/messages", Some(json!({
        "conversation_id": room_id, "cmid": "sys-1", "kind": "custom", "content": { "notice": "maintenance" } }))).await;
    let system_id = system["message"]["sender_id"].as_i64().unwrap();
    assert!(![bob.user_id, carol.user_id].contains(&system_id));
    let pushed = carol_ws.event("message").await;
    assert_eq!(
        (
            pushed["sender_id"].as_i64(),
            pushed["seq"].as_i64(),
            pushed["content"]["notice"].as_str()
        ),
        (Some(system_id), Some(2), Some("maintenance"))
    );
    let direct = ok(
        server,
        k,
        Method::POST,
        "/v1/server/messages",
        Some(json!({
        "to_user": carol.user_id, "cmid": "sys-dm-1", "content": "your order shipped" })),
    )
    .await;
    let pushed = carol_ws.event("message").await;
    assert_eq!(
        (
            pushed["sender_id"].as_i64(),
            pushed["content"].as_str(),
            pushed["seq"].as_i64()
        ),
        (Some(system_id), Some("your order shipped"), Some(1))
    );
    assert_eq!(
        pushed["conversation_id"],
        direct["message"]["conversation_id"]
    );
    let system_user = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/users/{system_id}"),
        None,
    )
    .await;
    assert_eq!(system_user["user"]["system"], true);
    // Refused sends: a sender outside the room, an unknown conversation, sender or recipient.
    let refused = [
        (
            json!({ "conversation_id": room_id, "sender_id": dave.user_id, "cmid": "x-1", "content": "hi" }),
            403,
            "forbidden",
        ),
        (
            json!({ "conversation_id": 999999, "cmid": "x-2", "content": "hi" }),
            404,
            "not_found",
        ),
        (
            json!({ "conversation_id": room_id, "sender_id": 999999, "cmid": "x-3", "content": "hi" }),
            404,
            "not_found",
        ),
        (
            json!({ "to_user": 999999, "cmid": "x-4", "content": "hi" }),
            404,
            "not_found",
        ),
    ];
    for (body, status, code) in refused {
        fails(
            server,
            k,
            Method::POST,
            "/v1/server/messages",
            Some(body),
            status,
            code,
        )
        .await;
    }

    // History by seq range, paged.
    let page = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/conversations/{room_id}/messages?after_seq=0&limit=1"),
        None,
    )
    .await;
    assert_eq!(
        (
            page["messages"][0]["seq"].as_i64(),
            page["has_more"].as_bool()
        ),
        (Some(1), Some(true))
    );
    let page = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/conversations/{room_id}/messages?after_seq=1"),
        None,
    )
    .await;
    assert_eq!(
        (
            page["messages"][0]["seq"].as_i64(),
            page["has_more"].as_bool()
        ),
        (Some(2), Some(false))
    );
    fails(
        server,
        k,
        Method::GET,
        "/v1/server/conversations/999999/messages",
        None,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn users_rooms_messages_and_history_on_sqlite() {
    on_sqlite(|server| Box::pin(every_route(server))).await;
}

#[tokio::test]
async fn users_rooms_messages_and_history_on_postgres() {
    on_postgres(|server| Box::pin(every_route(server))).await;
}
