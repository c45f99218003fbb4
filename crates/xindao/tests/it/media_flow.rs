//! Media from upload to download, through the real interfaces: an image message whose push carries the
//! stored metadata, signed URLs only for members (`media_url`), the download itself (ETag, Cache-Control,
//! ranges, thumbnails), altered and expired URLs refused; on SQLite and PostgreSQL for the metadata, and
//! against S3-compatible storage (moto's standalone server, skipped with a visible line when it is not
//! installed). Plus the memory a 20 MB upload takes in the real binary.

use serde_json::{json, Value};
use xindao::Config;

use crate::common::{http, pushed_as, TestServer};
use crate::media::{adts, png, uploaded};
use crate::services::TestDb;

pub const SECRET: &str = "media-test-secret-of-at-least-32-bytes";

pub fn with_secret(c: &mut Config) {
    c.media.media_secret = Some(SECRET.into());
}

/// The image flow on `server`: upload, send, push, URLs for members only, download with its headers.
pub async fn image_message_and_download(server: &TestServer) {
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let carol = server.login("carol").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let mut c = server.connect(&carol).await;

    let original = png(640, 480);
    let media = uploaded(
        server,
        &alice.token,
        Some("image"),
        "cat.png",
        original.clone(),
    )
    .await;
    let id = media["id"].as_str().unwrap().to_string();
    // Nobody else may see it yet; the owner may.
    assert_eq!(
        b.err("media_url", json!({ "media_id": id })).await,
        "forbidden"
    );
    assert!(a.ok("media_url", json!({ "media_id": id })).await["url"].is_string());

    let sent = a
        .ok("send", json!({ "to_user": bob.user_id, "cmid": "img1", "kind": "image", "content": { "media_id": id } }))
        .await;
    let message = &sent["message"];
    assert_eq!(message["kind"], "image");
    assert_eq!(
        message["content"],
        json!({ "media_id": id, "mime": "image/png", "size": original.len(), "width": 640, "height": 480, "thumb": true })
    );
    assert_eq!(
        b.event("message").await,
        pushed_as(message, false),
        "bob's push carries the metadata"
    );
    let conversation = message["conversation_id"].as_i64().unwrap();
    let history = b
        .ok("history", json!({ "conversation_id": conversation }))
        .await;
    assert_eq!(history["messages"][0]["content"], message["content"]);

    // Media messages name only one's own uploads, of the message's kind.
    let carols = uploaded(server, &carol.token, Some("voice"), "v.aac", adts(10)).await;
    let carol_id = carols["id"].as_str().unwrap();
    for (kind, content, why) in [
        (
            "image",
            json!({ "media_id": carol_id }),
            "someone else's upload",
        ),
        (
            "image",
            json!({ "media_id": "AAAAAAAAAAAAAAAAAAAAAA" }),
            "an id nobody uploaded",
        ),
        ("voice", json!({ "media_id": id }), "an image sent as voice"),
        (
            "image",
            json!({ "media_id": id, "width": 1 }),
            "fields the server fills in",
        ),
        ("file", json!("just text"), "not an object"),
    ] {
        let code = a.err("send", json!({ "to_user": bob.user_id, "cmid": format!("bad-{kind}"), "kind": kind, "content": content })).await;
        assert_eq!(code, "invalid_message", "{why}");
    }

    // A page of history at once: the URLs of those the caller may see, keyed by id.
    let batch = b
        .ok(
            "media_url",
            json!({ "media_ids": [id, carol_id, "AAAAAAAAAAAAAAAAAAAAAA"] }),
        )
        .await;
    let keys: Vec<&String> = batch["urls"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec![&id], "{batch}");
    assert!(batch["urls"][&id]["thumb_url"].is_string());
    assert_eq!(
        b.err("media_url", json!({ "media_ids": vec![id.clone(); 101] }))
            .await,
        "invalid_args"
    );
    assert_eq!(
        b.err("media_url", json!({ "media_id": id, "media_ids": [] }))
            .await,
        "invalid_args"
    );

    // URLs: members of the conversation yes, others no.
    assert_eq!(
        c.err("media_url", json!({ "media_id": id })).await,
        "forbidden"
    );
    assert_eq!(
        c.err("media_url", json!({ "media_id": "../../etc/passwd" }))
            .await,
        "invalid_args"
    );
    let urls = b.ok("media_url", json!({ "media_id": id })).await;
    let url = urls["url"].as_str().unwrap();
    let thumb_url = urls["thumb_url"].as_str().unwrap();
    assert!(urls["expires_at"].as_i64().unwrap() > xindao::model::now_millis() + 3_000_000);

    let full = http().get(server.url(url)).send().await.unwrap();
    assert_eq!(full.status(), 200);
    let headers = full.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("private, max-age="));
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert_eq!(full.bytes().await.unwrap().to_vec(), original);
    let head = http().head(server.url(url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], original.len().to_string());
    let again = http()
        .get(server.url(url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let part = http()
        .get(server.url(url))
        .header("range", "bytes=8-23")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 8-23/{}", original.len())
    );
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        original[8..24].to_vec()
    );
    let tail = http()
        .get(server.url(url))
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        tail.bytes().await.unwrap().to_vec(),
        original[original.len() - 5..].to_vec()
    );
    let beyond = http()
        .get(server.url(url))
        .header("range", format!("bytes={}-", original.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);

    let thumb = http().get(server.url(thumb_url)).send().await.unwrap();
    assert_eq!(thumb.status(), 200);
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let thumb = image::load_from_memory(&thumb.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    // Altered, unsigned, expired: refused.
    let altered = url.replace("sig=", "sig=A");
    assert_eq!(
        http()
            .get(server.url(&altered))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let unsigned = format!("/v1/media/{id}");
    assert_eq!(
        http()
            .get(server.url(&unsigned))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let thumb_as_full = thumb_url.replace("&thumb=1", "");
    assert_eq!(
        http()
            .get(server.url(&thumb_as_full))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let signer = xindao::media::Signer::new(SECRET.as_bytes(), 60).unwrap();
    let now = (xindao::model::now_millis() / 1000) as u64;
    let expired = signer.sign(&id, false, now - 3600);
    let response = http().get(server.url(&expired.url)).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // The same key signing a fresh URL: accepted (the URL is the capability, not the session).
    let fresh = signer.sign(&id, false, now);
    assert_eq!(
        http()
            .get(server.url(&fresh.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn image_messages_and_member_only_downloads_on_sqlite() {
    let mut server = TestServer::start(with_secret).await;
    image_message_and_download(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn image_messages_and_member_only_downloads_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let mut server = TestServer::start(move |c| {
        with_secret(c);
        c.store = url.parse().unwrap();
    })
    .await;
    image_message_and_download(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn files_download_as_attachments_and_a_generated_key_survives_a_restart() {
    let mut server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let media = uploaded(
        &server,
        &alice.token,
        Some("file"),
        "报告 1.html",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    let id = media["id"].as_str().unwrap();
    let url = a.ok("media_url", json!({ "media_id": id })).await["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(a
        .ok("media_url", json!({ "media_id": id }))
        .await
        .get("thumb_url")
        .is_none());
    let response = http().get(server.url(&url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A%201.html"
    );
    // Typed by its content; served as an attachment, never rendered on our origin.
    assert_eq!(response.headers()["content-type"], "text/html");
    assert!(response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    // The key generated into data_dir on first start is used again after a restart: old URLs still work.
    assert!(server.config.data_dir.join("media.secret").exists());
    server.restart().await;
    assert_eq!(
        http().get(server.url(&url)).send().await.unwrap().status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn public_images_are_served_without_a_signature_for_avatars() {
    let mut server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let avatar = uploaded(
        &server,
        &alice.token,
        Some("image&public=1"),
        "me.png",
        png(200, 100),
    )
    .await;
    assert_eq!(avatar["public"], true);
    let id = avatar["id"].as_str().unwrap();
    assert_eq!(avatar["url"], format!("/v1/media/{id}"));
    let response = http()
        .get(server.url(avatar["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(response.headers()["content-type"], "image/png");
    let thumb = http()
        .get(server.url(avatar["thumb_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.status(), 200);

    // Only images may be public; other media and unknown ids need a signed URL.
    let (status, _) = crate::media::upload(
        &server,
        Some(&alice.token),
        Some("file&public=1"),
        "a.txt",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let private = uploaded(&server, &alice.token, Some("image"), "p.png", png(10, 10)).await;
    assert!(private.get("url").is_none() && private.get("public").is_none());
    for id in [private["id"].as_str().unwrap(), "AAAAAAAAAAAAAAAAAAAAAA"] {
        let response = http()
            .get(server.url(&format!("/v1/media/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{id}");
    }
    server.stop().await;
}
