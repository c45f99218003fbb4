//! Webhooks from a cluster of three nodes (PostgreSQL shared, a Redis or NATS bus), all with the same endpoint:
//! messages sent through every node into shared rooms reach the receiver once each (by delivery id), in commit
//! order per conversation; with the receiver down, a node is killed while the outbox holds undelivered events,
//! and the surviving nodes deliver them once it is back. And `user.offline_message` uses the presence the nodes
//! share: a member connected to another node is not announced. Skipped (SKIPPED printed) without the services.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::cluster::SERIAL;
use crate::common::{self, login, Client};
use crate::services::{self, Node, TestDb, NATS_URL, REDIS_URL};
use crate::webhook_receiver::{in_order_per_conversation, message_seqs, Received, Receiver};
use crate::webhooks::{endpoint, quick};

fn node_config(
    db: &TestDb,
    bus: &str,
    channel: &str,
    i: usize,
    url: &str,
    events: &[&str],
) -> xindao::Config {
    let mut config = common::test_config(PathBuf::from("unused-with-postgres"));
    config.store = db.url.parse().unwrap();
    config.bus = bus.parse().unwrap();
    config.bus_channel = channel.to_string();
    config.node_id = Some(format!("node{i}"));
    config.cluster_secret = Some(services::CLUSTER_SECRET.into());
    config.webhooks = endpoint(url.to_string(), events);
    quick(&mut config);
    config
}

/// Each delivery id once.
fn unique_ids(delivered: &[Received]) -> bool {
    let ids: HashSet<&str> = delivered.iter().map(|r| r.delivery.as_str()).collect();
    ids.len() == delivered.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_once_in_order_and_survive_a_killed_node() {
    let _serial = SERIAL.lock().await;
    if !services::bus_available(REDIS_URL).await {
        return;
    }
    let Some(db) = TestDb::create().await else {
        return;
    };
    let mut receiver = Receiver::start().await;
    let channel = format!("xindao-test-{:016x}", rand::random::<u64>());
    let mut nodes = Vec::new();
    for i in 0..3 {
        let config = node_config(
            &db,
            REDIS_URL,
            &channel,
            i,
            &receiver.url(),
            &["message.created"],
        );
        nodes.push(Node::start(config).await);
    }

    // Three rooms; in each, a member on every node sends 10 messages, all at once.
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for r in 0..3 {
            let user = login(node.addr, &format!("c3-{i}-{r}")).await;
            clients.push((i, r, Client::connect(node.addr, &user.token).await));
        }
    }
    let mut rooms = Vec::new();
    for r in 0..3 {
        let (_, _, owner) = clients
            .iter_mut()
            .find(|(i, rr, _)| *i == 0 && *rr == r)
            .unwrap();
        rooms.push(
            owner
                .ok("room_create", json!({"name": format!("c3-{r}")}))
                .await["conversation"]["id"]
                .as_i64()
                .unwrap(),
        );
    }
    for (i, r, client) in clients.iter_mut() {
        if *i != 0 {
            client
                .ok("room_join", json!({"conversation_id": rooms[*r]}))
                .await;
        }
    }
    let senders: Vec<_> = clients
        .into_iter()
        .map(|(i, r, mut client)| {
            let room = rooms[r];
            tokio::spawn(async move {
                for m in 0..10 {
                    client
                        .say(room, &format!("n{i}-m{m}"), &format!("node {i} #{m}"))
                        .await;
                }
                client
            })
        })
        .collect();
    let mut clients = Vec::new();
    for sender in senders {
        clients.push(sender.await.unwrap());
    }
    receiver
        .wait_for(30, "90 messages", |d| message_seqs(d).len() >= 90)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // time for a duplicate to show up
    let delivered = receiver.delivered();
    assert!(unique_ids(&delivered), "each delivery id once");
    let seqs = message_seqs(&delivered);
    assert_eq!(seqs.len(), 90, "each event once: {seqs:?}");
    assert!(
        in_order_per_conversation(&seqs),
        "commit order per conversation: {seqs:?}"
    );
    for room in &rooms {
        let of_room: Vec<i64> = seqs
            .iter()
            .filter(|(c, _)| c == room)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(of_room, (1..=30).collect::<Vec<_>>());
    }

    // The receiver goes down; node 2's users send 5 more each (committed, undelivered); node 2 is killed.
    receiver.down().await;
    let mut doomed: Vec<Client> = clients.drain(6..).collect();
    for (r, client) in doomed.iter_mut().enumerate() {
        for m in 0..5 {
            client
                .say(rooms[r], &format!("late-{m}"), &format!("late {m}"))
                .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(doomed);
    nodes[2].kill();
    receiver.up().await;
    receiver
        .wait_for(30, "the 15 late ones", |d| message_seqs(d).len() >= 105)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let delivered = receiver.delivered();
    assert!(unique_ids(&delivered), "each delivery id once");
    let seqs = message_seqs(&delivered);
    assert_eq!(seqs.len(), 105, "{seqs:?}");
    assert!(in_order_per_conversation(&seqs), "{seqs:?}");
    for room in &rooms {
        assert_eq!(seqs.iter().filter(|(c, _)| c == room).count(), 35);
    }
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_use_the_presence_the_nodes_share() {
    let _serial = SERIAL.lock().await;
    if !services::bus_available(NATS_URL).await {
        return;
    }
    let Some(db) = TestDb::create().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let channel = format!("xindao-test-{:016x}", rand::random::<u64>());
    let mut nodes = Vec::new();
    for i in 0..3 {
        let config = node_config(
            &db,
            NATS_URL,
            &channel,
            i,
            &receiver.url(),
            &["user.offline_message"],
        );
        nodes.push(Node::start(config).await);
    }
    let alice = login(nodes[0].addr, "p-alice").await;
    let bob = login(nodes[1].addr, "p-bob").await;
    let carol = login(nodes[2].addr, "p-carol").await;
    let mut a = Client::connect(nodes[0].addr, &alice.token).await;
    let room = a
        .ok(
            "room_create",
            json!({"name": "p-room", "visibility": "invite"}),
        )
        .await["conversation"]["id"]
        .as_i64()
        .unwrap();
    for user in [bob.user_id, carol.user_id] {
        a.ok(
            "room_add",
            json!({"conversation_id": room, "user_id": user}),
        )
        .await;
    }
    // Bob is connected to node 1 only; node 0 commits the messages and must see him online.
    let _b = Client::connect(nodes[1].addr, &bob.token).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for m in 0..3 {
        a.say(room, &format!("p{m}"), "hello").await;
    }
    receiver
        .wait_for(10, "carol's offline event", |d| !d.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let announced: Vec<(i64, i64)> = receiver
        .delivered()
        .iter()
        .map(|r| {
            (
                r.body["data"]["user_id"].as_i64().unwrap(),
                r.body["data"]["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        announced,
        vec![(carol.user_id, 1)],
        "bob is online on another node"
    );
}
