//! A business backend's sends (`POST /v1/server/messages`) and WeChat, through the real server, the fake
//! WeChat (`fake_wechat_api`) and a webhook receiver, on SQLite and PostgreSQL: a send to an offline user
//! notifies them exactly as a client's message would (a subscribe message per grant, coalesced per
//! conversation, and `user.offline_message`); the backend's text is not content-checked unless the request
//! asks (`"content_check": true`), which then runs the same msgSecCheck with the sending user's openid and
//! refuses risky text with `content_rejected`; a check that cannot be made has a defined answer.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use xindao::config::ContentCheck;
use xindao::Config;

use crate::common::{metric, TestServer};
use crate::fake_wechat_api::{wechat_login, FakeWeChat};
use crate::server_api_client::{fails, new_key, ok};
use crate::services::TestDb;
use crate::webhook_receiver::Receiver;
use crate::webhooks::{endpoint, quick};

const TEMPLATE: &str = "tpl-ORDER-1";
const MESSAGES: &str = "/v1/server/messages";

fn configure(fake: &FakeWeChat, receiver: &Receiver, config: &mut Config) {
    fake.configure(config);
    config.wechat_services.content_check = ContentCheck::Wechat;
    config.wechat_services.content_check_timeout_ms = 1000;
    config.wechat_services.wechat_notify_template = Some(TEMPLATE.into());
    config.wechat_services.wechat_notify_fields = "thing1=sender,thing2=text".into();
    config.wechat_services.wechat_notify_window_secs = 60;
    config.webhooks = endpoint(receiver.url(), &["user.offline_message"]);
    config.webhook_offline_window_secs = 60;
    quick(config);
}

/// Waits until the fake has seen `count` subscribe messages (or 5 s), then a little more for an extra one.
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

async fn counter(server: &TestServer, name: &str) -> u64 {
    metric(server.admin, name)
        .await
        .map_or(0, |v| v.parse().unwrap())
}

async fn backend_sends_notify_and_are_checked_on_request(db: Option<&TestDb>) {
    let fake = FakeWeChat::start().await;
    let receiver = Receiver::start().await;
    let store = db.map(|db| db.url.clone());
    let mut server = TestServer::start(|c| {
        configure(&fake, &receiver, c);
        if let Some(store) = store {
            c.store = store.parse().unwrap();
        }
    })
    .await;
    let key = new_key(&server, "shop", "messages").await;
    let alice = wechat_login(server.addr, "alice").await;
    let bob = wechat_login(server.addr, "bob").await;
    let mut b = server.connect(&bob).await;
    b.ok("notify_grant", json!({"template_id": TEMPLATE, "count": 3}))
        .await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The system account tells offline Bob his order shipped: a subscribe message and a webhook event.
    let shipped = ok(
        &server,
        &key,
        Method::POST,
        MESSAGES,
        Some(json!({"to_user": bob.user_id, "cmid": "order-1", "content": "Your order shipped"})),
    )
    .await;
    let system_direct = shipped["message"]["conversation_id"].as_i64().unwrap();
    let sends = sends_after(&fake, 1).await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["touser"], "o-bob");
    assert_eq!(sends[0]["data"]["thing2"]["value"], "Your order shipped");
    receiver
        .wait_for(10, "bob's offline event", |d| !d.is_empty())
        .await;
    let event = &receiver.delivered()[0].body;
    assert_eq!(event["event"], "user.offline_message");
    assert_eq!(event["data"]["user_id"], bob.user_id);
    assert_eq!(event["data"]["conversation_id"], system_direct);
    // Coalesced as a client's would be: a second message in the window notifies no one again.
    ok(
        &server,
        &key,
        Method::POST,
        MESSAGES,
        Some(json!({"to_user": bob.user_id, "cmid": "order-2", "content": "It arrives tomorrow"})),
    )
    .await;
    assert_eq!(sends_after(&fake, 2).await.len(), 1);
    assert_eq!(receiver.delivered().len(), 1);

    // Sent as Alice (a WeChat user): trusted, so not checked, even risky text; Bob is notified of her
    // conversation (its own window).
    ok(
        &server,
        &key,
        Method::POST,
        MESSAGES,
        Some(
            json!({"sender_id": alice.user_id, "to_user": bob.user_id, "cmid": "relay-1",
                    "content": "risky but trusted"}),
        ),
    )
    .await;
    assert_eq!(sends_after(&fake, 2).await.len(), 2);
    assert!(
        fake.checks().is_empty(),
        "a backend's send is not checked by default"
    );

    // Asked for: the same msgSecCheck, with Alice's openid.
    let relay = |cmid: &str, text: &str| {
        json!({"sender_id": alice.user_id, "to_user": bob.user_id,
        "cmid": cmid, "content": text, "content_check": true})
    };
    fails(
        &server,
        &key,
        Method::POST,
        MESSAGES,
        Some(relay("relay-2", "risky words")),
        422,
        "content_rejected",
    )
    .await;
    let checks = fake.checks();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["openid"], "o-alice");
    assert_eq!(checks[0]["content"], "risky words");
    let passed = ok(
        &server,
        &key,
        Method::POST,
        MESSAGES,
        Some(relay("relay-3", "fine words")),
    )
    .await;
    assert_eq!(passed["message"]["content"], "fine words");
    assert_eq!(fake.checks().len(), 2);

    // A check that cannot be made: the system account has no openid; a flag that is not a boolean.
    fails(&server, &key, Method::POST, MESSAGES,
        Some(json!({"to_user": bob.user_id, "cmid": "sys-checked", "content": "hi", "content_check": true})),
        400, "invalid_args").await;
    fails(
        &server,
        &key,
        Method::POST,
        MESSAGES,
        Some(
            json!({"sender_id": alice.user_id, "to_user": bob.user_id, "cmid": "bad-flag",
                    "content": "hi", "content_check": "yes"}),
        ),
        400,
        "invalid_args",
    )
    .await;
    assert_eq!(fake.checks().len(), 2);

    // What the metrics say.
    let m = |s: &str| s.to_string();
    assert_eq!(
        counter(
            &server,
            &m(r#"xindao_content_checks_total{result="risky"}"#)
        )
        .await,
        1
    );
    assert_eq!(
        counter(&server, &m(r#"xindao_content_checks_total{result="pass"}"#)).await,
        1
    );
    assert_eq!(
        counter(&server, "xindao_content_check_seconds_count").await,
        2
    );
    let notified = |channel: &str, result: &str| {
        format!(r#"xindao_offline_notifications_total{{channel="{channel}",result="{result}"}}"#)
    };
    assert_eq!(counter(&server, &notified("wechat", "sent")).await, 2);
    assert!(counter(&server, &notified("wechat", "coalesced")).await >= 1);
    assert!(counter(&server, &notified("webhook", "sent")).await >= 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sends_notify_and_are_checked_on_request_sqlite() {
    backend_sends_notify_and_are_checked_on_request(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sends_notify_and_are_checked_on_request_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    backend_sends_notify_and_are_checked_on_request(Some(&db)).await;
}

/// `"content_check": true` on a server without the content check: `unavailable`, nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_check_without_the_check_configured_is_unavailable() {
    let fake = FakeWeChat::start().await;
    let mut server = TestServer::start(|c| fake.configure(c)).await;
    let key = new_key(&server, "shop", "messages").await;
    let alice = wechat_login(server.addr, "alice").await;
    let bob = wechat_login(server.addr, "bob").await;
    fails(&server, &key, Method::POST, MESSAGES,
        Some(json!({"sender_id": alice.user_id, "to_user": bob.user_id, "cmid": "c1", "content": "hi",
                    "content_check": true})),
        503, "unavailable").await;
    let sent = ok(&server, &key, Method::POST, MESSAGES,
        Some(json!({"sender_id": alice.user_id, "to_user": bob.user_id, "cmid": "c1", "content": "hi"}))).await;
    assert_eq!(
        sent["duplicate"], false,
        "the refused send committed nothing"
    );
    server.stop().await;
}
