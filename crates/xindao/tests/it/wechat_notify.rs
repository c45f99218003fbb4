//! Offline notification through WeChat `subscribeMessage.send`, through the real server and the fake WeChat
//! (`fake_wechat_api`), on SQLite and PostgreSQL: `notify_grant` records one-time grants (only for this
//! server's template, only for WeChat users); a message for a recipient with no open connection and a grant
//! sends the configured template (fields from the message) and consumes the grant; an online recipient, or
//! one without a grant, gets none; one per conversation per window; 43101 clears the grants.

use std::time::Duration;

use serde_json::{json, Value};
use xindao::Config;

use crate::common::{Client, TestServer};
use crate::fake_wechat_api::{wechat_login, FakeWeChat};
use crate::services::TestDb;

const TEMPLATE: &str = "tpl-NEW-MESSAGE-1";

fn notifying(fake: &FakeWeChat, config: &mut Config) {
    fake.configure(config);
    config.wechat_services.wechat_notify_template = Some(TEMPLATE.into());
    config.wechat_services.wechat_notify_page =
        Some("pages/chat/chat?conversation_id={conversation_id}".into());
    config.wechat_services.wechat_notify_fields = "thing1=sender,thing2=text,time3=time".into();
    config.wechat_services.wechat_notify_preview_chars = 10;
    config.wechat_services.wechat_notify_window_secs = 3;
}

async fn start(fake: &FakeWeChat, db: Option<&TestDb>) -> TestServer {
    let url = db.map(|db| db.url.clone());
    TestServer::start(|c| {
        notifying(fake, c);
        if let Some(url) = url {
            c.store = url.parse().unwrap();
        }
    })
    .await
}

/// The sends after a moment for any in flight to arrive (when none more is expected).
async fn settled(fake: &FakeWeChat) -> Vec<Value> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.sends()
}

/// Waits until the fake has seen `count` sends (or 5 s), then a little more for any extra one.
async fn sends_after(fake: &FakeWeChat, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        if fake.sends().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.sends()
}

async fn grant(client: &mut Client, count: i64) -> i64 {
    client
        .ok(
            "notify_grant",
            json!({"template_id": TEMPLATE, "count": count}),
        )
        .await["grants"]
        .as_i64()
        .unwrap()
}

async fn an_offline_recipient_is_notified_once_per_grant_and_window(db: Option<&TestDb>) {
    let fake = FakeWeChat::start().await;
    let mut server = start(&fake, db).await;
    let alice = wechat_login(server.addr, "alice").await;
    let bob = wechat_login(server.addr, "bob").await;
    let mut a = server.connect(&alice).await;
    let direct = a.ok("direct_open", json!({"user_id": bob.user_id})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    a.ok("profile_set", json!({"display_name": "Alice Wang"}))
        .await;
    // Bob is offline but holds no grant: nothing is sent.
    a.say(direct, "m0", "before any grant").await;
    assert!(settled(&fake).await.is_empty());

    let mut b = server.connect(&bob).await;
    assert_eq!(
        b.err("notify_grant", json!({"template_id": "another"}))
            .await,
        "invalid_args"
    );
    assert_eq!(
        b.err("notify_grant", json!({"template_id": TEMPLATE, "count": 0}))
            .await,
        "invalid_args"
    );
    assert_eq!(
        b.err(
            "notify_grant",
            json!({"template_id": TEMPLATE, "count": 11})
        )
        .await,
        "invalid_args"
    );
    assert_eq!(grant(&mut b, 1).await, 1);
    assert_eq!(grant(&mut b, 1).await, 2);
    // Online: not notified.
    a.say(direct, "m1", "bob is here").await;
    b.event("message").await;
    assert!(settled(&fake).await.is_empty());
    // A development login has no openid: it cannot be granted.
    let carol = server.login("carol").await;
    let mut c = server.connect(&carol).await;
    assert_eq!(
        c.err("notify_grant", json!({"template_id": TEMPLATE}))
            .await,
        "forbidden"
    );

    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = a
        .say(direct, "m2", "Are you coming to dinner tonight?")
        .await;
    let sends = sends_after(&fake, 1).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    let send = &sends[0];
    assert_eq!(send["touser"], "o-bob");
    assert_eq!(send["template_id"], TEMPLATE);
    assert_eq!(
        send["page"],
        format!("pages/chat/chat?conversation_id={direct}")
    );
    assert_eq!(send["miniprogram_state"], "formal");
    assert_eq!(send["data"]["thing1"]["value"], "Alice Wang");
    assert_eq!(send["data"]["thing2"]["value"], "Are you c…");
    let time = send["data"]["time3"]["value"].as_str().unwrap();
    assert!(time.len() == 16 && time.as_bytes()[10] == b' ', "{time}");
    assert!(sent["ts"].is_i64());

    // Within the window: coalesced, the grant kept.
    a.say(direct, "m3", "hello?").await;
    assert_eq!(settled(&fake).await.len(), 1);
    // After it: the second grant is used.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    a.say(direct, "m4", "still there?").await;
    assert_eq!(sends_after(&fake, 2).await.len(), 2);
    // No grant left: nothing more, however long the wait.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    a.say(direct, "m5", "ok bye").await;
    assert_eq!(settled(&fake).await.len(), 2);

    // 43101: WeChat says Bob refused; his grants are cleared.
    let mut b = server.connect(&bob).await;
    assert_eq!(grant(&mut b, 3).await, 3);
    drop(b);
    fake.state.refusing.lock().unwrap().insert("o-bob".into());
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.say(direct, "m6", "refused?").await;
    assert_eq!(sends_after(&fake, 3).await.len(), 3);
    let mut b = server.connect(&bob).await;
    assert_eq!(
        grant(&mut b, 1).await,
        1,
        "the refusal cleared the three grants"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_is_notified_once_per_grant_and_window_sqlite() {
    an_offline_recipient_is_notified_once_per_grant_and_window(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_is_notified_once_per_grant_and_window_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    an_offline_recipient_is_notified_once_per_grant_and_window(Some(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_grant_without_notifications_configured_is_unavailable() {
    let fake = FakeWeChat::start().await;
    let mut server = TestServer::start(|c| fake.configure(c)).await;
    let bob = wechat_login(server.addr, "bob").await;
    let mut b = server.connect(&bob).await;
    assert_eq!(
        b.err("notify_grant", json!({"template_id": TEMPLATE}))
            .await,
        "unavailable"
    );
    assert_eq!(
        b.err("notify_grant", json!({"template": TEMPLATE})).await,
        "invalid_args"
    );
    server.stop().await;
}
