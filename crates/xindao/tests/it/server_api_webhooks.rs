//! The webhook dead-letter list through the server API (`GET /v1/server/webhooks/dead`, `POST
//! .../dead/redrive`), on SQLite and PostgreSQL: deliveries that a failing receiver never accepted are listed in
//! pages, filtered by endpoint, redriven by id and all at once, and then delivered with their delivery ids kept.
//! The scope (`webhooks`, `read` for the list) and bad requests have defined answers.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use xindao::config::{WebhookEndpoint, Webhooks};

use crate::common::{metric, TestServer};
use crate::server_api_client::{fails, new_key, ok};
use crate::services::TestDb;
use crate::webhook_receiver::{Receiver, FAIL, OK, SECRET};
use crate::webhooks::quick;

/// Two endpoints on the same receiver, `backend` and `crm`, both taking `message.created`.
fn two_endpoints(url: String) -> Webhooks {
    let endpoint = |name: &str| WebhookEndpoint {
        name: name.into(),
        url: url.clone(),
        secret: SECRET.into(),
        events: vec!["message.created".into()],
        batch_max: xindao::config::DEFAULT_BATCH_MAX,
    };
    Webhooks(vec![endpoint("backend"), endpoint("crm")])
}

fn ids(page: &Value) -> Vec<i64> {
    page["dead"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect()
}

async fn dead_letters_are_listed_and_redriven(db: Option<&TestDb>) {
    let receiver = Receiver::start().await;
    receiver.set_mode(FAIL);
    let url = receiver.url();
    let store = db.map(|db| db.url.clone());
    let server = TestServer::start(|c| {
        if let Some(store) = store {
            c.store = store.parse().unwrap();
        }
        quick(c);
        c.webhooks = two_endpoints(url);
        c.webhook_retry_secs = 1;
    })
    .await;
    let key = new_key(&server, "ops", "webhooks").await;
    let reader = new_key(&server, "reader", "read").await;
    let other = new_key(&server, "other", "messages").await;

    let alice = server.login("dl-alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({"name": "dl-room"})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    for i in 0..3 {
        a.say(room, &format!("dl{i}"), &format!("doomed {i}")).await;
    }
    // 3 messages x 2 endpoints.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(server.admin, "xindao_webhook_dead_total")
        .await
        .as_deref()
        != Some("6")
    {
        assert!(tokio::time::Instant::now() < deadline, "never 6 dead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pages, oldest first, and the filter by endpoint.
    let k = key.as_str();
    let first = ok(
        &server,
        k,
        Method::GET,
        "/v1/server/webhooks/dead?limit=4",
        None,
    )
    .await;
    assert_eq!(
        (ids(&first).len(), first["has_more"].as_bool()),
        (4, Some(true))
    );
    let cursor = first["next_cursor"].as_i64().unwrap();
    assert_eq!(cursor, *ids(&first).last().unwrap());
    let second = ok(
        &server,
        k,
        Method::GET,
        &format!("/v1/server/webhooks/dead?limit=4&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(
        (ids(&second).len(), second["has_more"].as_bool()),
        (2, Some(false))
    );
    assert!(second.get("next_cursor").is_none());
    let all: Vec<i64> = ids(&first).into_iter().chain(ids(&second)).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "oldest first: {all:?}");
    let crm = ok(
        &server,
        reader.as_str(),
        Method::GET,
        "/v1/server/webhooks/dead?endpoint=crm",
        None,
    )
    .await;
    let crm_ids = ids(&crm);
    assert_eq!(crm_ids.len(), 3);
    for dead in crm["dead"].as_array().unwrap() {
        assert_eq!(
            (dead["endpoint"].as_str(), dead["event"].as_str()),
            (Some("crm"), Some("message.created"))
        );
        assert!(
            dead["last_error"].as_str().unwrap().contains("500"),
            "{dead}"
        );
        assert!(dead["attempts"].as_i64().unwrap() >= 1);
    }
    let none = ok(
        &server,
        k,
        Method::GET,
        "/v1/server/webhooks/dead?endpoint=nobody",
        None,
    )
    .await;
    assert_eq!(
        (ids(&none).len(), none["has_more"].as_bool()),
        (0, Some(false))
    );

    // Refusals: scope, read-only key, bad queries and bodies.
    fails(
        &server,
        other.as_str(),
        Method::GET,
        "/v1/server/webhooks/dead",
        None,
        403,
        "insufficient_scope",
    )
    .await;
    fails(
        &server,
        reader.as_str(),
        Method::POST,
        "/v1/server/webhooks/dead/redrive",
        Some(json!({"all": true})),
        403,
        "insufficient_scope",
    )
    .await;
    fails(
        &server,
        "xdk_nope",
        Method::GET,
        "/v1/server/webhooks/dead",
        None,
        401,
        "unauthorized",
    )
    .await;
    fails(
        &server,
        k,
        Method::GET,
        "/v1/server/webhooks/dead?limit=0",
        None,
        400,
        "invalid_args",
    )
    .await;
    fails(
        &server,
        k,
        Method::GET,
        "/v1/server/webhooks/dead?limit=1001",
        None,
        400,
        "invalid_args",
    )
    .await;
    fails(
        &server,
        k,
        Method::GET,
        "/v1/server/webhooks/dead?cursor=x",
        None,
        400,
        "invalid_args",
    )
    .await;
    for bad in [
        json!({}),
        json!({"ids": []}),
        json!({"all": true, "ids": [1]}),
        json!({"ids": ["1"]}),
        json!({"all": true, "extra": 1}),
    ] {
        fails(
            &server,
            k,
            Method::POST,
            "/v1/server/webhooks/dead/redrive",
            Some(bad),
            400,
            "invalid_args",
        )
        .await;
    }
    let too_many: Vec<i64> = (1..=1001).collect();
    fails(
        &server,
        k,
        Method::POST,
        "/v1/server/webhooks/dead/redrive",
        Some(json!({"ids": too_many})),
        400,
        "invalid_args",
    )
    .await;

    // Redrive by ids (an unknown id is skipped), then all; the receiver is up by then.
    receiver.set_mode(OK);
    let before = receiver.received().len();
    let moved = ok(
        &server,
        k,
        Method::POST,
        "/v1/server/webhooks/dead/redrive",
        Some(json!({"ids": [crm_ids[0], 999_999_999]})),
    )
    .await;
    assert_eq!(moved["redriven"], 1);
    receiver
        .wait_for(10, "the redriven delivery", |d| d.len() == 1)
        .await;
    assert_eq!(
        receiver.delivered()[0].delivery,
        crm_ids[0].to_string(),
        "the delivery id is kept"
    );
    let left = ok(&server, k, Method::GET, "/v1/server/webhooks/dead", None).await;
    assert_eq!(ids(&left).len(), 5);
    let moved = ok(
        &server,
        k,
        Method::POST,
        "/v1/server/webhooks/dead/redrive",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(moved["redriven"], 5);
    receiver.wait_for(10, "all six", |d| d.len() == 6).await;
    let mut delivered: Vec<i64> = receiver
        .delivered()
        .iter()
        .map(|r| r.delivery.parse().unwrap())
        .collect();
    delivered.sort_unstable();
    assert_eq!(delivered, all, "each dead delivery once, with its id");
    assert!(receiver.received().len() > before);
    let empty = ok(&server, k, Method::GET, "/v1/server/webhooks/dead", None).await;
    assert_eq!(ids(&empty).len(), 0);
    let again = ok(
        &server,
        k,
        Method::POST,
        "/v1/server/webhooks/dead/redrive",
        Some(json!({"all": true})),
    )
    .await;
    assert_eq!(again["redriven"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dead_letters_are_listed_and_redriven() {
    dead_letters_are_listed_and_redriven(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dead_letters_are_listed_and_redriven() {
    if let Some(db) = TestDb::create().await {
        dead_letters_are_listed_and_redriven(Some(&db)).await;
    }
}
