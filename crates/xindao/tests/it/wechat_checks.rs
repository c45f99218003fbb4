//! WeChat's content check through the real server and a local fake WeChat (`fake_wechat_api`): risky text is
//! refused with `content_rejected` and never stored, "review" follows each `content_review` policy (flag:
//! sent, and a `message.flagged` webhook), senders without an openid are not checked; one access token is
//! fetched and reused (also by two nodes sharing PostgreSQL), replaced once on 40001 and before it expires;
//! 45009, a timeout and the local rate limit follow `content_check_failure`; a slow check holds back its
//! own sender only.

use std::time::{Duration, Instant};

use serde_json::json;
use xindao::config::{ContentCheck, ContentCheckFailure, ContentReview};
use xindao::Config;

use crate::common::{test_config, Client, TestServer};
use crate::fake_wechat_api::{wechat_login, FakeWeChat};
use crate::services::TestDb;
use crate::webhook_receiver::Receiver;
use crate::webhooks::{endpoint, quick};

fn checking(fake: &FakeWeChat, config: &mut Config) {
    fake.configure(config);
    config.wechat_services.content_check = ContentCheck::Wechat;
    config.wechat_services.content_check_timeout_ms = 1000;
}

/// `send` of `text` into `conversation`: the message, or the error code.
async fn send(
    client: &mut Client,
    conversation: i64,
    cmid: &str,
    text: &str,
) -> Result<serde_json::Value, String> {
    let reply = client
        .call(
            "send",
            json!({"conversation_id": conversation, "cmid": cmid, "content": text}),
        )
        .await;
    match reply["ok"].as_bool() {
        Some(true) => Ok(reply["result"]["message"].clone()),
        _ => Err(reply["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()),
    }
}

/// Alice (a WeChat user) and Bob connected, with their direct conversation.
async fn pair(server: &TestServer) -> (Client, Client, i64) {
    let alice = wechat_login(server.addr, "alice").await;
    let bob = wechat_login(server.addr, "bob").await;
    let mut a = server.connect(&alice).await;
    let b = server.connect(&bob).await;
    let direct = a.ok("direct_open", json!({"user_id": bob.user_id})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    (a, b, direct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risky_text_is_refused_and_review_follows_each_policy() {
    let fake = FakeWeChat::start().await;
    let receiver = Receiver::start().await;
    for review in [
        ContentReview::Allow,
        ContentReview::Reject,
        ContentReview::Flag,
    ] {
        let mut server = TestServer::start(|c| {
            checking(&fake, c);
            c.wechat_services.content_review = review;
            c.webhooks = endpoint(receiver.url(), &["message.flagged"]);
            quick(c);
        })
        .await;
        let (mut a, mut b, direct) = pair(&server).await;
        assert_eq!(
            send(&mut a, direct, "r1", "risky words").await.unwrap_err(),
            "content_rejected"
        );
        let ok = send(&mut a, direct, "p1", "hello").await.unwrap();
        // Bob's first push is the passed message: the risky one was never stored.
        assert_eq!(b.event("message").await["content"], "hello");
        assert_eq!(ok["seq"], 1);
        let reviewed = send(&mut a, direct, "v1", "review me").await;
        match review {
            ContentReview::Allow => assert_eq!(reviewed.unwrap()["seq"], 2),
            ContentReview::Reject => assert_eq!(reviewed.unwrap_err(), "content_rejected"),
            ContentReview::Flag => {
                let message = reviewed.unwrap();
                receiver
                    .wait_for(10, "message.flagged", |d| !d.is_empty())
                    .await;
                let flagged = &receiver.delivered()[0].body;
                assert_eq!(flagged["event"], "message.flagged");
                assert_eq!(flagged["data"]["id"], message["id"]);
                assert_eq!(flagged["data"]["seq"], 2);
                assert_eq!(flagged["data"]["label"], 21000);
                assert_eq!(flagged["data"]["trace_id"], "60ae120f-371d5872-7941a05b");
            }
        }
        // A sender without an openid (development login) is not checked.
        let carol = server.login("carol").await;
        let mut c = server.connect(&carol).await;
        let room = c.ok("room_create", json!({"name": "r"})).await["conversation"]["id"]
            .as_i64()
            .unwrap();
        assert!(send(&mut c, room, "c1", "risky but unchecked")
            .await
            .is_ok());
        server.stop().await;
    }
    let checks = fake.checks();
    assert_eq!(
        checks.len(),
        9,
        "three per server, none for carol: {checks:?}"
    );
    assert_eq!(checks[0]["version"], 2);
    assert_eq!(checks[0]["openid"], "o-alice");
    assert_eq!(checks[0]["scene"], 2);
    assert_eq!(checks[0]["content"], "risky words");
    // Three servers with a store each: one token each, reused for all of that server's checks.
    assert_eq!(fake.fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_reused_replaced_on_40001_and_refreshed_before_expiry() {
    let fake = FakeWeChat::start().await;
    let mut server = TestServer::start(|c| checking(&fake, c)).await;
    let (mut a, _b, direct) = pair(&server).await;
    for i in 0..5 {
        send(&mut a, direct, &format!("m{i}"), "hello")
            .await
            .unwrap();
    }
    assert_eq!(fake.fetches(), 1, "one token for five checks");
    // WeChat invalidates it: the next check gets 40001, fetches a new token (forced) and tries once more.
    fake.revoke_tokens();
    send(&mut a, direct, "after-revoke", "hello").await.unwrap();
    assert_eq!(fake.fetches(), 2);
    assert_eq!(*fake.state.forced.lock().unwrap(), vec![false, true]);
    assert_eq!(
        fake.checks().len(),
        6,
        "the refused call is not counted by WeChat"
    );
    // A token living 2 s is used for 1 s (half its life), then replaced before WeChat expires it.
    fake.state
        .expires_in
        .store(2, std::sync::atomic::Ordering::SeqCst);
    fake.revoke_tokens();
    send(&mut a, direct, "short-1", "hello").await.unwrap();
    assert_eq!(fake.fetches(), 3);
    send(&mut a, direct, "short-2", "hello").await.unwrap();
    assert_eq!(fake.fetches(), 3, "still fresh");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(&mut a, direct, "short-3", "hello").await.unwrap();
    assert_eq!(fake.fetches(), 4, "refreshed before expiry");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_postgresql_fetch_one_token() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let fake = FakeWeChat::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = || {
        let mut config = test_config(dir.path().to_path_buf());
        config.store = db.url.parse().unwrap();
        checking(&fake, &mut config);
        config
    };
    let mut first = TestServer::start_with(node()).await;
    let mut second = TestServer::start_with(node()).await;
    let (mut a, _b, direct) = pair(&first).await;
    send(&mut a, direct, "n1", "hello").await.unwrap();
    let carol = wechat_login(second.addr, "carol").await;
    let mut c = second.connect(&carol).await;
    let room = c.ok("room_create", json!({"name": "pg"})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    // Several checks on the second node at once: they all wait for the one token in the store.
    for i in 0..3 {
        send(&mut c, room, &format!("n2-{i}"), "hello")
            .await
            .unwrap();
    }
    assert_eq!(fake.checks().len(), 4);
    assert_eq!(
        fake.fetches(),
        1,
        "the second node used the first node's token"
    );
    // WeChat revokes it: one node replaces it, the other takes the replacement from the store.
    fake.revoke_tokens();
    send(&mut c, room, "n2-after", "hello").await.unwrap();
    send(&mut a, direct, "n1-after", "hello").await.unwrap();
    assert_eq!(fake.fetches(), 2);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_timeouts_and_the_local_rate_limit_follow_the_failure_policy() {
    let fake = FakeWeChat::start().await;
    // Fail open: a check that cannot be made lets the message through, after at most the timeout.
    let mut open = TestServer::start(|c| {
        checking(&fake, c);
        c.wechat_services.content_check_timeout_ms = 500;
        c.wechat_services.content_check_failure = ContentCheckFailure::Allow;
    })
    .await;
    let (mut a, _b, direct) = pair(&open).await;
    send(&mut a, direct, "q", "quota words").await.unwrap();
    let started = Instant::now();
    send(&mut a, direct, "s", "slow words").await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    open.stop().await;

    // Fail closed, and a budget of 4 checks a minute on this node.
    let before = fake.checks().len();
    let mut closed = TestServer::start(|c| {
        checking(&fake, c);
        c.wechat_services.content_check_timeout_ms = 1500;
        c.wechat_services.content_check_failure = ContentCheckFailure::Reject;
        c.wechat_services.content_check_per_min = 4;
    })
    .await;
    let (mut a, mut b, direct) = pair(&closed).await;
    assert_eq!(
        send(&mut a, direct, "q", "quota words").await.unwrap_err(),
        "unavailable"
    );
    // A slow check holds back its own sender only: Bob's send meanwhile is answered at once.
    let slow = a
        .send_request(
            "send",
            json!({"conversation_id": direct, "cmid": "s", "content": "slow words"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    send(&mut b, direct, "b1", "quick").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(a.reply(slow).await["error"]["code"], "unavailable");
    send(&mut a, direct, "ok", "fine").await.unwrap();
    // The fifth check this minute is not made: refused here, WeChat never asked.
    assert_eq!(
        send(&mut a, direct, "over", "fine").await.unwrap_err(),
        "unavailable"
    );
    assert_eq!(
        fake.checks().len() - before,
        4,
        "quota, slow, b1 and ok reached WeChat"
    );
    closed.stop().await;
}
