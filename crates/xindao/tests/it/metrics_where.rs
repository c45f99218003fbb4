//! The "where" metrics: their names and label keys are a stable interface (the dashboards and alerts in
//! deploy/ are built on them; a test there checks they name only metrics listed here), and their series do
//! not grow with the number of users.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use futures_util::{stream, StreamExt};
use serde_json::json;

use crate::common::{http, login, TestServer};

/// Every metric family the server exposes, with the label keys its samples may carry (`le` of histogram
/// buckets aside). Changing this list changes what dashboards and alerts may rely on.
pub const METRICS: &[(&str, &[&str])] = &[
    ("xindao_accepts_refused", &[]),
    ("xindao_bus_connected", &[]),
    ("xindao_bus_publish_seconds", &[]),
    ("xindao_bus_receive_lag_seconds", &["node"]),
    ("xindao_bus_rejected", &["reason"]),
    ("xindao_client_rtt_seconds", &["kind", "network"]),
    ("xindao_commit_batch_size", &[]),
    ("xindao_commit_wait_seconds", &[]),
    ("xindao_connection_closes", &["code"]),
    ("xindao_connections", &[]),
    ("xindao_connections_opened", &[]),
    ("xindao_errors", &["code"]),
    ("xindao_fanout_seconds", &[]),
    ("xindao_messages_committed", &[]),
    ("xindao_pending_connections", &[]),
    ("xindao_push_wait_seconds", &[]),
    ("xindao_pushes", &[]),
    ("xindao_request_queued_seconds", &[]),
    ("xindao_request_seconds", &["op", "outcome"]),
    ("xindao_requests", &["op", "outcome"]),
    ("xindao_slow_consumers", &[]),
    ("xindao_store_pool_wait_seconds", &[]),
    ("xindao_upgrade_seconds", &[]),
    ("xindao_upgrades_refused", &[]),
    ("xindao_webhook_delivered", &[]),
    ("xindao_webhook_failures", &[]),
    ("xindao_webhook_dead", &[]),
    ("xindao_webhook_dropped", &[]),
    ("xindao_webhook_outbox_depth", &[]),
    ("xindao_webhook_lag_seconds", &[]),
    ("xindao_webhook_delivery_seconds", &[]),
    ("xindao_webhook_offline_skipped", &[]),
    ("xindao_before_send_calls", &[]),
    ("xindao_before_send_rejected", &[]),
    ("xindao_before_send_failures", &[]),
    ("xindao_content_checks", &["result"]),
    ("xindao_content_check_seconds", &[]),
    ("xindao_offline_notifications", &["channel", "result"]),
];

/// Families (from `# TYPE` lines) and, per family, the label keys and the number of samples.
struct Exposition {
    families: BTreeMap<String, (BTreeSet<String>, usize)>,
    samples: usize,
}

async fn exposition(admin: SocketAddr) -> Exposition {
    let text = http()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut families: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
    let mut samples = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap().to_string();
            families.entry(name).or_default();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        samples += 1;
        let name_end = line.find(['{', ' ']).unwrap();
        let sample = &line[..name_end];
        let family = families
            .keys()
            .filter(|family| sample.starts_with(family.as_str()))
            .max_by_key(|family| family.len())
            .cloned()
            .unwrap_or_else(|| panic!("sample of no family: {line}"));
        let entry = families.get_mut(&family).unwrap();
        entry.1 += 1;
        if let Some(labels) = line[name_end..].strip_prefix('{') {
            let labels = &labels[..labels.find('}').unwrap()];
            for pair in labels.split(',') {
                let key = pair.split('=').next().unwrap();
                if key != "le" {
                    entry.0.insert(key.to_string());
                }
            }
        }
    }
    Exposition { families, samples }
}

/// `count` users log in, connect, send to a shared room and to one another, and make a few errors.
async fn workload(server: &TestServer, from: usize, count: usize) {
    let addr = server.addr;
    let users: Vec<_> = stream::iter(from..from + count)
        .map(|i| async move { login(addr, &format!("user{i}")).await })
        .buffer_unordered(16)
        .collect()
        .await;
    // Connected after the logins: a socket left unread through them would miss the heartbeat's pings.
    let owner = server.login("owner").await;
    let mut o = server.connect(&owner).await;
    let room = o.ok("room_create", json!({ "name": "load" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    for user in users.iter().step_by((count / 50).max(1)) {
        o.ok(
            "room_add",
            json!({ "conversation_id": room, "user_id": user.user_id }),
        )
        .await;
        let mut c = server.connect(user).await;
        c.ok("send", json!({ "conversation_id": room, "cmid": format!("c{}", user.user_id), "content": "hi" }))
            .await;
        c.ok("send", json!({ "to_user": owner.user_id, "cmid": format!("d{}", user.user_id), "content": "hi" }))
            .await;
        c.err("history", json!({ "conversation_id": -user.user_id }))
            .await;
        c.call("no_such_op", json!({})).await;
        c.ok(
            "client_stats",
            json!({ "kind": "browser", "buckets": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] }),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_names_and_labels_are_stable_and_bounded_under_many_users() {
    let users: usize = std::env::var("XINDAO_METRICS_USERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let mut server = TestServer::start(|config| {
        config.node_id = Some("m1".into());
        // One owner adds every connected user to a room, and each opens a direct chat.
        config.room_adds_per_min = 100_000;
        config.lookups_per_min = 100_000;
    })
    .await;
    workload(&server, 0, 20).await;
    let small = exposition(server.admin).await;
    let listed: BTreeMap<String, BTreeSet<String>> = METRICS
        .iter()
        .map(|(name, labels)| {
            (
                name.to_string(),
                labels.iter().map(|l| l.to_string()).collect(),
            )
        })
        .collect();
    let exposed: BTreeMap<String, BTreeSet<String>> = small
        .families
        .iter()
        .map(|(name, (labels, _))| (name.clone(), labels.clone()))
        .collect();
    // A labelled family shows only once it has a sample (bus lag needs a second node): every exposed name
    // is listed, and every listed name without labels is exposed.
    for name in exposed.keys() {
        assert!(
            listed.contains_key(name),
            "{name} is not listed: update METRICS (and deploy/)"
        );
    }
    for (name, labels) in &listed {
        assert!(
            !labels.is_empty() || exposed.contains_key(name),
            "{name} is listed but not exposed"
        );
    }
    for (name, labels) in &exposed {
        assert!(
            labels.is_subset(&listed[name]),
            "{name} has labels {labels:?}, listed {:?}",
            listed[name]
        );
    }

    workload(&server, 20, users).await;
    let large = exposition(server.admin).await;
    // The hop families are process-wide (docs/decisions/hop-timing.md): tests running beside this one add
    // their own error codes and nodes. Those are bounded by their vocabularies, checked apart.
    const PROCESS_WIDE: &[&str] = &["xindao_errors", "xindao_bus_receive_lag_seconds"];
    let errors = large.families.get("xindao_errors").map_or(0, |f| f.1);
    assert!(
        errors <= 40,
        "{errors} error-code series: codes are a closed set"
    );
    let grown: Vec<_> = large
        .families
        .iter()
        .filter(|(name, _)| !PROCESS_WIDE.contains(&name.as_str()))
        .filter(|(name, (_, samples))| small.families[*name].1 != *samples)
        .map(|(name, (_, samples))| (name.clone(), small.families[name].1, *samples))
        .collect();
    assert!(
        grown.is_empty(),
        "series grew with users ({} -> {} samples, {users} users): {grown:?}",
        small.samples,
        large.samples
    );
    server.stop().await;
}

/// Two nodes on PostgreSQL and Redis: a message from one node to a user on the other fills the bus and
/// PostgreSQL hops (publish, receive lag labelled by the sending node, pool wait, commit), and a reply's
/// timing on PostgreSQL reports its commit wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_and_postgres_hops_are_measured_across_two_nodes() {
    use crate::services::{Node, TestDb, REDIS_URL};
    let _serial = crate::cluster::SERIAL.lock().await;
    if !crate::services::bus_available(REDIS_URL).await {
        return;
    }
    let Some(db) = TestDb::create().await else {
        return;
    };
    let channel = format!("xindao-test-{:016x}", rand::random::<u64>());
    let mut nodes = Vec::new();
    for i in 0..2 {
        let mut config = crate::common::test_config("unused-with-postgres".into());
        config.store = db.url.parse().unwrap();
        config.bus = REDIS_URL.parse().unwrap();
        config.bus_channel = channel.clone();
        config.node_id = Some(format!("hop-node{i}"));
        config.cluster_secret = Some(crate::services::CLUSTER_SECRET.into());
        nodes.push(Node::start(config).await);
    }
    let ann = login(nodes[0].addr, "ann").await;
    let bob = login(nodes[1].addr, "bob").await;
    let mut a = crate::common::Client::connect(nodes[0].addr, &ann.token).await;
    let mut b = crate::common::Client::connect(nodes[1].addr, &bob.token).await;
    let room = a.ok("room_create", json!({ "name": "hops" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    a.ok(
        "room_add",
        json!({ "conversation_id": room, "user_id": bob.user_id }),
    )
    .await;
    a.send_raw(tokio_tungstenite::tungstenite::Message::text(
        json!({ "id": 900, "op": "send", "timing": true,
            "args": { "conversation_id": room, "cmid": "h2", "content": "timed" } })
        .to_string(),
    ))
    .await;
    let reply = loop {
        let frame = a.next_frame().await.expect("replies");
        if frame["id"] == 900 {
            break frame;
        }
    };
    assert_eq!(reply["timing"]["node"], "hop-node0", "{reply}");
    assert!(
        reply["timing"]["commit_us"].as_u64().unwrap() > 0,
        "{reply}"
    );
    let pushed = b.event("message").await;
    assert_eq!(pushed["conversation_id"], room);

    let text = http()
        .get(format!("http://{}/metrics", nodes[1].admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |prefix: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        count("xindao_bus_receive_lag_seconds_count{node=\"hop-node0\"}") >= 1.0,
        "{text}"
    );
    assert!(count("xindao_bus_publish_seconds_count") >= 1.0);
    assert!(count("xindao_store_pool_wait_seconds_count") >= 1.0);
    assert!(count("xindao_commit_batch_size_count") >= 1.0);
    drop(nodes);
}
