//! Request ids follow what a request causes: a WebSocket request's id (`<upgrade's X-Request-Id>.<client id>`)
//! is in the body of the webhook deliveries its commits make (SQLite and PostgreSQL), and in the log lines of
//! another node that receives its push over the cluster bus (Redis). Pushes written to a socket are measured
//! in `xindao_push_wait_seconds`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{self, init_logging, login, metric, Client, TestServer};
use crate::services::{self, Node, TestDb, REDIS_URL};
use crate::webhook_receiver::Receiver;
use crate::webhooks::{endpoint, quick};

/// A WebSocket whose upgrade request carries `X-Request-Id: upgrade_id`.
async fn connect_with_id(addr: SocketAddr, token: &str, upgrade_id: &str) -> Client {
    let mut request = format!("ws://{addr}/v1/ws?token={token}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-request-id", upgrade_id.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    Client::from_ws(ws).await
}

fn delivery<'a>(received: &'a [Value], event: &str) -> Option<&'a Value> {
    received.iter().find(|body| body["event"] == event)
}

async fn webhook_bodies_name_the_request(db: Option<&TestDb>) {
    let receiver = Receiver::start().await;
    let url = db.map(|db| db.url.clone());
    let hook = receiver.url();
    let mut server = TestServer::start(|config| {
        if let Some(url) = url {
            config.store = url.parse().unwrap();
        }
        quick(config);
        config.webhooks = endpoint(hook, &["*"]);
    })
    .await;
    let ann = server.login("rid-ann").await;
    let mut a = connect_with_id(server.addr, &ann.token, "edge-up-1").await;
    // Request ids 1 and 2 (the harness numbers requests from 1).
    let room = a.ok("room_create", json!({ "name": "rid" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    a.say(room, "rid-1", "hello").await;
    receiver
        .wait_for(20, "room.created and message.created", |d| {
            let bodies: Vec<Value> = d.iter().map(|r| r.body.clone()).collect();
            delivery(&bodies, "room.created").is_some()
                && delivery(&bodies, "message.created").is_some()
                && delivery(&bodies, "user.connected").is_some()
        })
        .await;
    let bodies: Vec<Value> = receiver.delivered().into_iter().map(|r| r.body).collect();
    let id_of = |event: &str| delivery(&bodies, event).unwrap()["request_id"].clone();
    assert_eq!(id_of("user.connected"), "edge-up-1", "{bodies:?}");
    assert_eq!(id_of("room.created"), "edge-up-1.1", "{bodies:?}");
    assert_eq!(id_of("message.created"), "edge-up-1.2", "{bodies:?}");
    server.stop().await;
}

#[tokio::test]
async fn sqlite_webhook_bodies_name_the_request() {
    webhook_bodies_name_the_request(None).await;
}

#[tokio::test]
async fn postgres_webhook_bodies_name_the_request() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    webhook_bodies_name_the_request(Some(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiving_node_logs_the_request_id_of_a_push() {
    let logs = init_logging();
    let _serial = crate::cluster::SERIAL.lock().await;
    if !services::bus_available(REDIS_URL).await {
        return;
    }
    let Some(db) = TestDb::create().await else {
        return;
    };
    let channel = format!("xindao-test-{:016x}", rand::random::<u64>());
    let mut nodes = Vec::new();
    for i in 0..2 {
        let mut config = common::test_config(PathBuf::from("unused-with-postgres"));
        config.store = db.url.parse().unwrap();
        config.bus = REDIS_URL.parse().unwrap();
        config.bus_channel = channel.clone();
        config.node_id = Some(format!("rid-node{i}"));
        config.cluster_secret = Some(services::CLUSTER_SECRET.into());
        nodes.push(Node::start(config).await);
    }
    let ann = login(nodes[0].addr, "rid-bus-ann").await;
    let bob = login(nodes[1].addr, "rid-bus-bob").await;
    let upgrade_id = format!("bus-{:08x}", rand::random::<u32>());
    let mut a = connect_with_id(nodes[0].addr, &ann.token, &upgrade_id).await;
    let mut b = Client::connect(nodes[1].addr, &bob.token).await;
    // Request 1: a direct message to bob, whose connection is on the other node.
    let sent = a
        .ok(
            "send",
            json!({ "to_user": bob.user_id, "cmid": "rid-bus", "content": "over the bus" }),
        )
        .await;
    let pushed = b.event("message").await;
    assert_eq!(pushed["seq"], sent["message"]["seq"], "{pushed}");
    let wanted = format!("request_id={upgrade_id}.1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let logged = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
        let line = logged
            .lines()
            .find(|line| line.contains(&wanted) && line.contains("bus envelope received"));
        if let Some(line) = line {
            assert!(line.contains("from=rid-node0"), "{line}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no line of the receiving node names {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in &mut nodes {
        node.kill();
    }
}

#[tokio::test]
async fn pushes_are_measured_from_queue_to_socket() {
    let mut server = TestServer::start(|_| {}).await;
    let ann = server.login("pw-ann").await;
    let bob = server.login("pw-bob").await;
    let mut a = server.connect(&ann).await;
    let mut b = server.connect(&bob).await;
    let count =
        |text: Option<String>| -> u64 { text.and_then(|t| t.trim().parse().ok()).unwrap_or(0) };
    let before = count(metric(server.admin, "xindao_push_wait_seconds_count").await);
    // Bob's connection gets 20 pushes: its first and every 16th are sampled.
    for i in 0..20 {
        a.say_to(bob.user_id, &format!("pw{i}"), "x").await;
        b.event("message").await;
    }
    let after = count(metric(server.admin, "xindao_push_wait_seconds_count").await);
    assert!(after >= before + 2, "{before} -> {after}");
    server.stop().await;
}
