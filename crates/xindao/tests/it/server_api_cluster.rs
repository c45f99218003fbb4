//! The server API on a cluster (two nodes sharing PostgreSQL and a Redis bus): a call on one node reaches
//! clients on the other, as a client's own operation would: a system message arrives as a `message` push and a
//! ban closes the user's socket with 4003 wherever it is open. Skipped (SKIPPED printed) without the services.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::json;

use crate::cluster::SERIAL;
use crate::common::{self, login, Client, Closed};
use crate::server_api_client::{apikey_for, call_at};
use crate::services::{self, Node, TestDb, REDIS_URL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_one_node_reaches_clients_on_another() {
    let _serial = SERIAL.lock().await;
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
        config.node_id = Some(format!("node{i}"));
        config.cluster_secret = Some(services::CLUSTER_SECRET.into());
        nodes.push((Node::start(config.clone()).await, config));
    }
    let (api_node, other) = (nodes[0].0.addr, nodes[1].0.addr);
    let (ok, key) = apikey_for(
        &nodes[0].1,
        &[
            "create",
            "--name",
            "cluster",
            "--scopes",
            "messages,users,sessions",
        ],
    )
    .await;
    assert!(ok, "{key}");

    let carol = login(other, "carol").await;
    let mut carol_ws = Client::connect(other, &carol.token).await;
    let (status, sent) = call_at(
        api_node,
        &key,
        Method::POST,
        "/v1/server/messages",
        Some(json!({ "to_user": carol.user_id, "cmid": "sys-1", "content": "shipped" })),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let pushed = carol_ws.event("message").await;
    assert_eq!(
        (pushed["content"].as_str(), pushed["sender_id"].clone()),
        (Some("shipped"), sent["message"]["sender_id"].clone())
    );

    // Sessions are per node: the API node has none of carol's; the other lists hers.
    let (_, here) = call_at(
        api_node,
        &key,
        Method::GET,
        &format!("/v1/server/users/{}/sessions", carol.user_id),
        None,
    )
    .await;
    assert_eq!(here["sessions"].as_array().map(Vec::len), Some(0));
    let (_, there) = call_at(
        other,
        &key,
        Method::GET,
        &format!("/v1/server/users/{}/sessions", carol.user_id),
        None,
    )
    .await;
    assert_eq!(
        (
            there["sessions"].as_array().map(Vec::len),
            there["node"].as_str()
        ),
        (Some(1), Some("node1"))
    );

    let (status, _) = call_at(
        api_node,
        &key,
        Method::POST,
        &format!("/v1/server/users/{}/ban", carol.user_id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(carol_ws.closed().await, Closed::Code(4003));
    let response = common::http()
        .post(format!("http://{other}/v1/login/dev"))
        .json(&json!({ "display_name": "carol" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        403,
        "the other node refuses the banned user's login too"
    );
    drop(nodes);
}
