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
    ("xindao_commit_batch_size", &[]),
    ("xindao_commit_wait_seconds", &[]),
    ("xindao_connection_closes", &["code"]),
    ("xindao_connections", &[]),
    ("xindao_connections_opened", &[]),
    ("xindao_errors", &["code"]),
    ("xindao_fanout_seconds", &[]),
    ("xindao_messages_committed", &[]),
    ("xindao_pending_connections", &[]),
    ("xindao_pushes", &[]),
    ("xindao_request_queued_seconds", &[]),
    ("xindao_request_seconds", &["op", "outcome"]),
    ("xindao_requests", &["op", "outcome"]),
    ("xindao_slow_consumers", &[]),
    ("xindao_store_pool_wait_seconds", &[]),
    ("xindao_upgrade_seconds", &[]),
    ("xindao_upgrades_refused", &[]),
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
    let grown: Vec<_> = large
        .families
        .iter()
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
