//! The server API wired to profiles and tombstones, through real HTTP and live sockets on SQLite and
//! PostgreSQL: a user's `avatar_url` set on create and update (validated as `profile_set`, the `profile`
//! push sent to the user and their contacts only when it changes), and `DELETE .../messages/{seq}` making a
//! message a `removed` tombstone that members are told of (`message_state` without `by`) and that history
//! returns, idempotently.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::TestServer;
use crate::server_api_client::{fails, new_key, ok, on_postgres, on_sqlite};

const AVATAR: &str = "https://cdn.example.com/a/bob.png";

/// Avatars through the users routes.
async fn avatars(server: &TestServer, k: &str) {
    let (bob, carol, dave) = (
        server.login("bob").await,
        server.login("carol").await,
        server.login("dave").await,
    );
    let mut bob_ws = server.connect(&bob).await;
    let mut carol_ws = server.connect(&carol).await;
    let mut dave_ws = server.connect(&dave).await;
    ok(
        server,
        k,
        Method::POST,
        "/v1/server/rooms",
        Some(json!({ "name": "shop", "owner_id": bob.user_id, "members": [carol.user_id] })),
    )
    .await;

    // Create with an avatar; every lookup shows it.
    let created = ok(
        server,
        k,
        Method::POST,
        "/v1/server/users",
        Some(json!({
        "display_name": "erin", "external_id": "ext-erin", "avatar_url": "/v1/media/m-1" })),
    )
    .await;
    assert_eq!(created["user"]["avatar_url"], "/v1/media/m-1");
    let erin = created["user"]["id"].as_i64().unwrap();
    let got = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/users/{erin}"),
        None,
    )
    .await;
    assert_eq!(got["user"]["avatar_url"], "/v1/media/m-1");
    let by_ext = ok(
        server,
        k,
        Method::GET,
        "/v1/server/users?external_id=ext-erin",
        None,
    )
    .await;
    assert_eq!(by_ext["user"]["avatar_url"], "/v1/media/m-1");
    for bad in [
        "http://plain.example.com/a.png",
        "javascript:alert(1)",
        "/v1/media/../x",
    ] {
        fails(
            server,
            k,
            Method::POST,
            "/v1/server/users",
            Some(json!({ "display_name": "frank", "avatar_url": bad })),
            400,
            "invalid_args",
        )
        .await;
    }

    // Update: the user's connections and their contacts get `profile`; a stranger does not.
    let path = format!("/v1/server/users/{}", bob.user_id);
    let updated = ok(
        server,
        k,
        Method::PATCH,
        &path,
        Some(json!({ "avatar_url": AVATAR })),
    )
    .await;
    assert_eq!(updated["user"]["avatar_url"], AVATAR);
    let expected = json!({ "id": bob.user_id, "display_name": updated["user"]["display_name"],
        "avatar_url": AVATAR });
    assert_eq!(
        bob_ws.event("profile").await["user"],
        expected,
        "own socket"
    );
    assert_eq!(
        carol_ws.event("profile").await["user"],
        expected,
        "a contact"
    );
    dave_ws
        .no_event("profile", Duration::from_millis(300))
        .await;
    let got = ok(server, k, Method::GET, &path, None).await;
    assert_eq!(got["user"]["avatar_url"], AVATAR);

    // The same avatar again changes nothing and pushes nothing; a bad one is refused and changes nothing.
    ok(
        server,
        k,
        Method::PATCH,
        &path,
        Some(json!({ "avatar_url": AVATAR })),
    )
    .await;
    bob_ws.no_event("profile", Duration::from_millis(300)).await;
    fails(
        server,
        k,
        Method::PATCH,
        &path,
        Some(json!({ "avatar_url": "https://a b" })),
        400,
        "invalid_args",
    )
    .await;
    assert_eq!(
        ok(server, k, Method::GET, &path, None).await["user"]["avatar_url"],
        AVATAR
    );

    // A rename is a profile change too; "" clears the avatar.
    let renamed = ok(
        server,
        k,
        Method::PATCH,
        &path,
        Some(json!({ "display_name": "Bob B", "avatar_url": "" })),
    )
    .await;
    assert_eq!(renamed["user"]["display_name"], "Bob B");
    assert!(renamed["user"].get("avatar_url").is_none(), "{renamed}");
    let pushed = carol_ws.event("profile").await["user"].clone();
    assert_eq!(
        pushed,
        json!({ "id": bob.user_id, "display_name": "Bob B" })
    );
    fails(
        server,
        k,
        Method::PATCH,
        "/v1/server/users/999999",
        Some(json!({ "avatar_url": AVATAR })),
        404,
        "not_found",
    )
    .await;
}

/// The message `seq` of a history answer.
fn at(history: &Value, seq: i64) -> Value {
    history["messages"]
        .as_array()
        .and_then(|messages| messages.iter().find(|m| m["seq"] == seq))
        .cloned()
        .unwrap_or_else(|| panic!("seq {seq} in {history}"))
}

/// Server removal of messages.
async fn removal(server: &TestServer, k: &str) {
    let users_only = new_key(server, "users-only", "users,read").await;
    let (owner, member, outsider) = (
        server.login("olga").await,
        server.login("mia").await,
        server.login("xavier").await,
    );
    let mut owner_ws = server.connect(&owner).await;
    let mut member_ws = server.connect(&member).await;
    let mut outsider_ws = server.connect(&outsider).await;
    let room = ok(
        server,
        k,
        Method::POST,
        "/v1/server/rooms",
        Some(json!({ "name": "orders", "owner_id": owner.user_id, "members": [member.user_id] })),
    )
    .await["conversation"]["id"]
        .as_i64()
        .unwrap();
    let mut seqs = Vec::new();
    for (cmid, content) in [("m-1", "card 4111 1111"), ("m-2", "kept")] {
        let sent = ok(server, k, Method::POST, "/v1/server/messages", Some(json!({
            "conversation_id": room, "sender_id": member.user_id, "cmid": cmid, "content": content }))).await;
        seqs.push(sent["message"]["seq"].as_i64().unwrap());
    }
    let (removed, kept) = (seqs[0], seqs[1]);
    let path = format!("/v1/server/conversations/{room}/messages/{removed}");

    fails(
        server,
        &users_only,
        Method::DELETE,
        &path,
        None,
        403,
        "insufficient_scope",
    )
    .await;
    let answer = ok(server, k, Method::DELETE, &path, None).await;
    assert_eq!(answer, json!({ "changed": true }));
    let told = json!({ "conversation_id": room, "seq": removed, "state": "removed" });
    assert_eq!(owner_ws.event("message_state").await, told, "the owner");
    assert_eq!(member_ws.event("message_state").await, told, "the sender");
    outsider_ws
        .no_event("message_state", Duration::from_millis(200))
        .await;

    // Idempotent: removing again answers `changed: false` and tells nobody.
    let again = ok(server, k, Method::DELETE, &path, None).await;
    assert_eq!(again, json!({ "changed": false }));
    member_ws
        .no_event("message_state", Duration::from_millis(300))
        .await;

    // History, through the API and the client's op, has the tombstone in its place.
    let history = ok(
        server,
        k,
        Method::GET,
        &format!("/v1/server/conversations/{room}/messages"),
        None,
    )
    .await;
    let tombstone = at(&history, removed);
    assert_eq!(tombstone["state"], "removed");
    assert!(tombstone.get("content").is_none(), "{tombstone}");
    assert_eq!(at(&history, kept)["content"], "kept");
    let client = member_ws
        .ok("history", json!({ "conversation_id": room }))
        .await;
    assert_eq!(at(&client, removed)["state"], "removed");

    // Unknown conversation or seq: 404; ids that are not ids: 400.
    for (path, status, code) in [
        (
            format!("/v1/server/conversations/{room}/messages/999"),
            404,
            "not_found",
        ),
        (
            "/v1/server/conversations/999999/messages/1".to_string(),
            404,
            "not_found",
        ),
        (
            format!("/v1/server/conversations/{room}/messages/0"),
            400,
            "invalid_args",
        ),
        (
            format!("/v1/server/conversations/{room}/messages/x"),
            400,
            "invalid_args",
        ),
    ] {
        fails(server, k, Method::DELETE, &path, None, status, code).await;
    }
}

async fn both(server: &TestServer) {
    let key = new_key(server, "backend", "messages,rooms,users,read").await;
    avatars(server, &key).await;
    removal(server, &key).await;
}

#[tokio::test]
async fn avatars_and_server_removal_on_sqlite() {
    on_sqlite(|server| Box::pin(both(server))).await;
}

#[tokio::test]
async fn avatars_and_server_removal_on_postgres() {
    on_postgres(|server| Box::pin(both(server))).await;
}
