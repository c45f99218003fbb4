//! Webhooks from a cluster (PostgreSQL shared by two nodes): each event is delivered once, not once per node;
//! and a node killed while holding claimed, undelivered events has them delivered by the other once its
//! lease runs out, in order.

use std::time::Duration;

use serde_json::json;

use crate::common::{test_config, Client, TestServer};
use crate::services::{Node, TestDb};
use crate::webhook_receiver::{in_order_per_conversation, message_seqs, Receiver, HANG, OK};
use crate::webhooks::{endpoint, quick};

fn node_config(db: &TestDb, url: &str, dir: &tempfile::TempDir) -> xindao::Config {
    let mut config = test_config(dir.path().to_path_buf());
    config.store = db.url.parse().unwrap();
    config.webhooks = endpoint(url.to_string(), &["message.created"]);
    quick(&mut config);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_each_event_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = TestServer::start_with(node_config(&db, &receiver.url(), &dir)).await;
    let mut b = TestServer::start_with(node_config(&db, &receiver.url(), &dir)).await;
    let mut rooms = Vec::new();
    for (i, server) in [&a, &b].into_iter().enumerate() {
        for r in 0..3 {
            let login = server.login(&format!("cl-{i}-{r}")).await;
            let mut client = server.connect(&login).await;
            let room = client
                .ok("room_create", json!({"name": format!("cl-{i}-{r}")}))
                .await["conversation"]["id"]
                .as_i64()
                .unwrap();
            for m in 0..10 {
                client.say(room, &format!("m{m}"), "x").await;
            }
            rooms.push(room);
        }
    }
    receiver
        .wait_for(20, "60 messages", |d| message_seqs(d).len() >= 60)
        .await;
    // Time for any duplicate to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delivered = receiver.delivered();
    let seqs = message_seqs(&delivered);
    assert_eq!(seqs.len(), 60, "each event once: {seqs:?}");
    assert!(in_order_per_conversation(&seqs), "{seqs:?}");
    for room in rooms {
        assert_eq!(seqs.iter().filter(|(c, _)| *c == room).count(), 10);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_claims_are_delivered_by_the_other_after_the_lease() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let receiver = Receiver::start().await;
    // The receiver takes deliveries and never answers: the node that claimed them holds them.
    receiver.set_mode(HANG);
    let dir = tempfile::tempdir().unwrap();
    let mut doomed = Node::start(node_config(&db, &receiver.url(), &dir)).await;
    let login = crate::common::login(doomed.addr, "lease-alice").await;
    let mut client = Client::connect(doomed.addr, &login.token).await;
    let room = client
        .ok("room_create", json!({"name": "lease-room"}))
        .await["conversation"]["id"]
        .as_i64()
        .unwrap();
    for m in 0..5 {
        client.say(room, &format!("m{m}"), &format!("m{m}")).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.received().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed while its claim is in flight; the other node starts and may take it only after the lease.
    drop(client);
    doomed.kill();
    let killed_at = tokio::time::Instant::now();
    receiver.set_mode(OK);
    let mut other = TestServer::start_with(node_config(&db, &receiver.url(), &dir)).await;
    receiver
        .wait_for(20, "all 5 from the other node", |d| {
            message_seqs(d).len() >= 5
        })
        .await;
    let seqs = message_seqs(&receiver.delivered());
    assert_eq!(seqs, (1..=5).map(|s| (room, s)).collect::<Vec<_>>());
    // The lease (2.5 s) was waited out, not broken (less a little for the claim made just before the kill).
    assert!(killed_at.elapsed() >= Duration::from_millis(1500));
    other.stop().await;
}
