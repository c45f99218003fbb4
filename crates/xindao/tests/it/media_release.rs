//! A medium lives as long as a message carries it: recalling or removing (owner or server API) the last
//! message that carries it deletes it (URLs handed out before answer 404, its bytes and thumbnail leave
//! media storage), while a medium sent again elsewhere stays, and a hide (delete-for-me) deletes nothing.
//! On SQLite and PostgreSQL with local files, and against S3-compatible storage (moto, skipped without it).

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{http, TestServer};
use crate::media::{adts, png, uploaded};
use crate::media_flow::with_secret;
use crate::media_storage::Moto;
use crate::server_api_client::{new_key, ok};
use crate::services::TestDb;

async fn status(server: &TestServer, url: &str) -> u16 {
    http()
        .get(server.url(url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn id_of(media: &Value) -> String {
    media["id"].as_str().unwrap().to_string()
}

/// The media a scenario deleted and kept, for the caller to check its storage.
struct Outcome {
    deleted: Vec<String>,
    kept: Vec<String>,
}

async fn release_scenario(server: &TestServer) -> Outcome {
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let carol = server.login("carol").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let mut c = server.connect(&carol).await;
    let send = |target: Value, cmid: &str, kind: &str, id: &str| {
        let mut args = json!({ "cmid": cmid, "kind": kind, "content": { "media_id": id } });
        args.as_object_mut()
            .unwrap()
            .extend(target.as_object().unwrap().clone());
        args
    };

    // An image to bob: bob's URLs work, then alice recalls it and they stop working.
    let image = id_of(&uploaded(server, &alice.token, Some("image"), "cat.png", png(64, 48)).await);
    let sent = a
        .ok(
            "send",
            send(json!({ "to_user": bob.user_id }), "img-1", "image", &image),
        )
        .await;
    let direct = sent["message"]["conversation_id"].as_i64().unwrap();
    let seq = sent["message"]["seq"].as_i64().unwrap();
    let urls = b.ok("media_url", json!({ "media_id": image })).await;
    let (url, thumb) = (
        urls["url"].as_str().unwrap().to_string(),
        urls["thumb_url"].as_str().unwrap().to_string(),
    );
    assert_eq!(status(server, &url).await, 200);
    assert_eq!(status(server, &thumb).await, 200);
    a.ok("recall", json!({ "conversation_id": direct, "seq": seq }))
        .await;
    assert_eq!(status(server, &url).await, 404, "the recalled image's URL");
    assert_eq!(status(server, &thumb).await, 404, "its thumbnail's URL");
    for who in [&mut a, &mut b] {
        assert_eq!(
            who.err("media_url", json!({ "media_id": image })).await,
            "forbidden",
            "no new URL for the uploader or the peer"
        );
    }
    assert_eq!(
        a.err(
            "send",
            send(json!({ "to_user": bob.user_id }), "img-1b", "image", &image)
        )
        .await,
        "invalid_message",
        "a deleted medium cannot be sent again"
    );

    // A voice message sent to bob and to carol: recalling bob's copy keeps it for carol, and the URL alive.
    let voice = id_of(&uploaded(server, &alice.token, Some("voice"), "v.aac", adts(20)).await);
    let to_bob = a
        .ok(
            "send",
            send(json!({ "to_user": bob.user_id }), "v-1", "voice", &voice),
        )
        .await;
    a.ok(
        "send",
        send(json!({ "to_user": carol.user_id }), "v-2", "voice", &voice),
    )
    .await;
    let voice_url = b.ok("media_url", json!({ "media_id": voice })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    a.ok(
        "recall",
        json!({ "conversation_id": direct, "seq": to_bob["message"]["seq"] }),
    )
    .await;
    assert_eq!(
        status(server, &voice_url).await,
        200,
        "still carried by carol's message"
    );
    assert_eq!(
        b.err("media_url", json!({ "media_id": voice })).await,
        "forbidden",
        "bob's conversation no longer carries it"
    );
    assert!(c.ok("media_url", json!({ "media_id": voice })).await["url"].is_string());

    // Delete-for-me deletes nothing.
    let hidden = id_of(&uploaded(server, &alice.token, Some("image"), "h.png", png(8, 8)).await);
    let sent = a
        .ok(
            "send",
            send(json!({ "to_user": bob.user_id }), "img-2", "image", &hidden),
        )
        .await;
    b.ok(
        "hide",
        json!({ "conversation_id": direct, "seq": sent["message"]["seq"] }),
    )
    .await;
    let hidden_url = a.ok("media_url", json!({ "media_id": hidden })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(server, &hidden_url).await, 200);

    // In a room: the owner's message_remove and the server API's removal delete too.
    let room = b.ok("room_create", json!({ "name": "media-room" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    b.ok(
        "room_add",
        json!({ "conversation_id": room, "user_id": alice.user_id }),
    )
    .await;
    let file = id_of(
        &uploaded(
            server,
            &alice.token,
            Some("file"),
            "a.txt",
            b"minutes".to_vec(),
        )
        .await,
    );
    let removed_by_owner = a
        .ok(
            "send",
            send(json!({ "conversation_id": room }), "f-1", "file", &file),
        )
        .await;
    let file_url = b.ok("media_url", json!({ "media_id": file })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    b.ok(
        "message_remove",
        json!({ "conversation_id": room, "seq": removed_by_owner["message"]["seq"] }),
    )
    .await;
    assert_eq!(status(server, &file_url).await, 404, "removed by the owner");

    let by_api = id_of(&uploaded(server, &alice.token, Some("image"), "api.png", png(8, 8)).await);
    let sent = a
        .ok(
            "send",
            send(
                json!({ "conversation_id": room }),
                "img-3",
                "image",
                &by_api,
            ),
        )
        .await;
    let api_url = b.ok("media_url", json!({ "media_id": by_api })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let key = new_key(server, "moderator", "messages").await;
    let seq = sent["message"]["seq"].as_i64().unwrap();
    ok(
        server,
        &key,
        Method::DELETE,
        &format!("/v1/server/conversations/{room}/messages/{seq}"),
        None,
    )
    .await;
    assert_eq!(
        status(server, &api_url).await,
        404,
        "removed by the server API"
    );

    Outcome {
        deleted: vec![image, file, by_api],
        kept: vec![voice, hidden],
    }
}

/// With local storage: the deleted media's files (and thumbnails) are gone, the kept ones are there.
fn check_local_files(server: &TestServer, outcome: &Outcome) {
    let objects = server.config.data_dir.join("media").join("objects");
    let path = |key: String| objects.join(key);
    for id in &outcome.deleted {
        assert!(
            !path(xindao::media::storage_key(id, false)).exists(),
            "{id}"
        );
        assert!(!path(xindao::media::storage_key(id, true)).exists(), "{id}");
    }
    for id in &outcome.kept {
        assert!(path(xindao::media::storage_key(id, false)).exists(), "{id}");
    }
}

#[tokio::test]
async fn recalled_and_removed_media_are_deleted_on_sqlite() {
    let mut server = TestServer::start(with_secret).await;
    let outcome = release_scenario(&server).await;
    check_local_files(&server, &outcome);
    server.stop().await;
}

#[tokio::test]
async fn recalled_and_removed_media_are_deleted_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let mut server = TestServer::start(move |c| {
        with_secret(c);
        c.store = url.parse().unwrap();
    })
    .await;
    let outcome = release_scenario(&server).await;
    check_local_files(&server, &outcome);
    server.stop().await;
}

#[tokio::test]
async fn recalled_media_leave_s3_compatible_storage() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let endpoint = moto.endpoint();
    let mut server = TestServer::start(moto.bucket("xindao-release").await).await;
    let outcome = release_scenario(&server).await;
    let listing = http()
        .get(format!(
            "{endpoint}/xindao-release?list-type=2&prefix=chat/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for id in &outcome.deleted {
        assert!(!listing.contains(id.as_str()), "{id} left: {listing}");
    }
    for id in &outcome.kept {
        assert!(listing.contains(&format!("{id}</Key>")), "{id}: {listing}");
    }
    server.stop().await;
}
