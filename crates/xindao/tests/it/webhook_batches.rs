//! Webhook batches through the real server and a real receiver: one POST carries the waiting events of
//! several conversations, in commit order, signed over the whole body; a receiver that fails batches and then
//! recovers gets every event, in order per conversation, none skipped; `batch_max` bounds a POST and a bad
//! `batch_max` is refused at start. On SQLite and PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use xindao::config::{WebhookEndpoint, Webhooks};
use xindao::Config;

use crate::common::{metric, TestServer};
use crate::services::TestDb;
use crate::webhook_receiver::{
    in_order_per_conversation, message_seqs, signature_valid, Receiver, FAIL, HANG, OK, SECRET,
};

fn endpoint(url: String, batch_max: usize) -> Webhooks {
    Webhooks(vec![WebhookEndpoint {
        name: "backend".into(),
        url,
        secret: SECRET.into(),
        events: vec!["message.created".into()],
        batch_max,
    }])
}

async fn server(db: Option<&TestDb>, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let url = db.map(|db| db.url.clone());
    TestServer::start(|config| {
        if let Some(url) = url {
            config.store = url.parse().unwrap();
        }
        crate::webhooks::quick(config);
        tweak(config);
    })
    .await
}

/// Two direct conversations of one sender: (client, [a, b]).
async fn two_conversations(server: &TestServer, name: &str) -> (crate::common::Client, [i64; 2]) {
    let sender = server.login(&format!("{name}-s")).await;
    let mut client = server.connect(&sender).await;
    let mut ids = [0; 2];
    for (i, id) in ids.iter_mut().enumerate() {
        let peer = server.login(&format!("{name}-p{i}")).await;
        *id = client
            .ok("direct_open", json!({"user_id": peer.user_id}))
            .await["conversation"]["id"]
            .as_i64()
            .unwrap();
    }
    (client, ids)
}

/// With the only delivery slot held by a hanging POST, the events of two conversations wait; the next claim
/// takes them all and one POST carries both, in commit order.
async fn one_post_carries_two_conversations(db: Option<&TestDb>) {
    let receiver = Receiver::start().await;
    receiver.set_mode(HANG);
    let url = receiver.url();
    let server = server(db, |c| {
        c.webhooks = endpoint(url, 100);
        c.webhook_concurrency = 1;
        c.webhook_timeout_ms = 2000;
        c.webhook_lease_ms = 3500;
    })
    .await;
    let (mut client, [a, b]) = two_conversations(&server, "batch").await;
    let blocker = {
        let peer = server.login("batch-blocker").await;
        client
            .ok("direct_open", json!({"user_id": peer.user_id}))
            .await["conversation"]["id"]
            .as_i64()
            .unwrap()
    };
    client.say(blocker, "x", "holds the slot").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while receiver.posts() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no first POST");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..3 {
        client.say(a, &format!("a{i}"), &format!("a {i}")).await;
        client.say(b, &format!("b{i}"), &format!("b {i}")).await;
    }
    receiver.set_mode(OK);
    receiver
        .wait_for(15, "all 7", |d| message_seqs(d).len() == 7)
        .await;
    let delivered = receiver.delivered();
    assert!(delivered.iter().all(|r| signature_valid(r, SECRET)));
    let post = delivered
        .iter()
        .find(|r| r.body["data"]["conversation_id"] == a)
        .unwrap()
        .post;
    let in_post: Vec<_> = delivered.iter().filter(|r| r.post == post).collect();
    let seqs = message_seqs(&in_post.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
    assert_eq!(
        seqs,
        vec![(a, 1), (b, 1), (a, 2), (b, 2), (a, 3), (b, 3)],
        "one POST, in commit order"
    );
    let ids: Vec<i64> = in_post
        .iter()
        .map(|r| r.delivery.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
}

/// A receiver answering 500 to batches of two conversations, then 200: every event arrives once it
/// recovers, each conversation in order from its first message (nothing skipped), nothing dead-lettered,
/// and every POST (failed ones too) is signed over its whole body.
async fn a_failed_batch_is_retried_whole(db: Option<&TestDb>) {
    let receiver = Receiver::start().await;
    receiver.set_mode(FAIL);
    let url = receiver.url();
    let server = server(db, |c| c.webhooks = endpoint(url, 100)).await;
    let (mut client, [a, b]) = two_conversations(&server, "retry").await;
    for i in 0..5 {
        client.say(a, &format!("a{i}"), &format!("a {i}")).await;
        client.say(b, &format!("b{i}"), &format!("b {i}")).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.posts() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no failing POSTs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.set_mode(OK);
    receiver
        .wait_for(20, "all 10", |d| message_seqs(d).len() >= 10)
        .await;
    let received = receiver.received();
    assert!(received.iter().all(|r| signature_valid(r, SECRET)));
    assert!(received.iter().any(|r| r.answered == FAIL));
    let seqs = message_seqs(&receiver.delivered());
    assert!(in_order_per_conversation(&seqs), "{seqs:?}");
    let mut per_conversation: HashMap<i64, Vec<i64>> = HashMap::new();
    for (c, s) in seqs {
        per_conversation.entry(c).or_default().push(s);
    }
    assert_eq!(per_conversation[&a], vec![1, 2, 3, 4, 5]);
    assert_eq!(per_conversation[&b], vec![1, 2, 3, 4, 5]);
    assert!(metric(server.admin, "xindao_webhook_failures_total")
        .await
        .is_some_and(|f| f.parse::<f64>().unwrap() >= 1.0));
    assert_eq!(
        metric(server.admin, "xindao_webhook_dead_total")
            .await
            .as_deref(),
        Some("0")
    );
}

/// `batch_max = 1`: every POST carries exactly one event.
async fn batch_max_bounds_a_post(db: Option<&TestDb>) {
    let receiver = Receiver::start().await;
    let url = receiver.url();
    let server = server(db, |c| c.webhooks = endpoint(url, 1)).await;
    let (mut client, [a, b]) = two_conversations(&server, "one").await;
    for i in 0..4 {
        client.say(a, &format!("a{i}"), "a").await;
        client.say(b, &format!("b{i}"), "b").await;
    }
    receiver
        .wait_for(15, "all 8", |d| message_seqs(d).len() == 8)
        .await;
    let delivered = receiver.delivered();
    let mut posts: Vec<usize> = delivered.iter().map(|r| r.post).collect();
    posts.sort_unstable();
    posts.dedup();
    assert_eq!(posts.len(), delivered.len(), "one event per POST");
    assert!(in_order_per_conversation(&message_seqs(&delivered)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_post_carries_two_conversations() {
    one_post_carries_two_conversations(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_one_post_carries_two_conversations() {
    if let Some(db) = TestDb::create().await {
        one_post_carries_two_conversations(Some(&db)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failed_batch_is_retried_whole() {
    a_failed_batch_is_retried_whole(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failed_batch_is_retried_whole() {
    if let Some(db) = TestDb::create().await {
        a_failed_batch_is_retried_whole(Some(&db)).await;
    }
}

#[tokio::test]
async fn sqlite_batch_max_bounds_a_post() {
    batch_max_bounds_a_post(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_max_bounds_a_post() {
    if let Some(db) = TestDb::create().await {
        batch_max_bounds_a_post(Some(&db)).await;
    }
}

/// A `batch_max` outside 1..=1000 is refused at start, naming the endpoint.
#[test]
fn a_bad_batch_max_is_refused() {
    for bad in ["0", "1001"] {
        let hooks = format!(
            r#"[{{"name":"crm","url":"http://127.0.0.1:1/","secret":"{SECRET}","batch_max":{bad}}}]"#
        );
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xindao"))
            .args(["config", "--webhooks", &hooks])
            .output()
            .unwrap();
        assert!(!output.status.success(), "batch_max {bad} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("batch_max of endpoint crm"), "{stderr}");
    }
}
