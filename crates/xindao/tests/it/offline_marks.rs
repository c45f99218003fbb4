//! The offline-notification window is the cluster's, not each node's: the store's coalescing marks claimed
//! with one conditional upsert, on SQLite and PostgreSQL (a claim within the window is refused, another
//! conversation has its own, a passed window is claimed again, forgotten marks free their pair, and two
//! stores racing on the same pairs win each exactly once); and two nodes on one PostgreSQL announcing one
//! offline member of a conversation both commit into: one `user.offline_message` per window, not one per node.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use xindao::model::now_millis;
use xindao::store::postgres::PostgresStore;
use xindao::store::sqlite::{SqliteOptions, SqliteStore};
use xindao::store::{GroupCommit, OfflineCandidate, OutboxEvent, Store, WindowClaim};

use crate::common::{metric, test_config, Client, TestServer};
use crate::services::TestDb;
use crate::webhook_receiver::Receiver;
use crate::webhooks::{endpoint, quick};

const WINDOW_MS: i64 = 60_000;

fn commit() -> GroupCommit {
    GroupCommit {
        batch_max: 64,
        linger: Duration::from_micros(500),
    }
}

fn candidate(user: i64, conversation: i64) -> OfflineCandidate {
    OfflineCandidate {
        user,
        conversation,
        event: OutboxEvent::user("user.offline_message", user, &json!({})),
    }
}

async fn claims(store: &Arc<dyn Store>, pairs: &[(i64, i64)], now: i64) -> Vec<WindowClaim> {
    let candidates = pairs.iter().map(|&(u, c)| candidate(u, c)).collect();
    store
        .offline_enqueue(candidates, now, WINDOW_MS)
        .await
        .unwrap()
}

async fn won(store: &Arc<dyn Store>, pairs: &[(i64, i64)], now: i64) -> Vec<bool> {
    claims(store, pairs, now)
        .await
        .into_iter()
        .map(|c| c == WindowClaim::Won)
        .collect()
}

/// `a` and `b` are two nodes' stores on one database (the same store for SQLite).
async fn marks_suite(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let now = now_millis();
    assert_eq!(
        claims(&a, &[(1, 10), (2, 10), (1, 10)], now).await,
        vec![
            WindowClaim::Won,
            WindowClaim::Won,
            WindowClaim::Held { since: now }
        ],
        "first claims win; a pair named twice is claimed once"
    );
    assert_eq!(
        claims(&b, &[(1, 10)], now + 1000).await,
        vec![WindowClaim::Held { since: now }],
        "held back, with when its window opened"
    );
    assert_eq!(won(&b, &[(1, 11)], now + 1000).await, vec![true]);
    assert_eq!(
        won(&b, &[(1, 10)], now + WINDOW_MS).await,
        vec![true],
        "the window has passed"
    );
    // (2, 10) was claimed at `now`: forgetting marks before `now + 1` deletes it, and only it.
    assert_eq!(a.offline_marks_forget(now + 1, 0).await.unwrap(), 1);
    assert_eq!(won(&a, &[(2, 10)], now + 2000).await, vec![true]);
    assert_eq!(won(&a, &[(1, 11)], now + 2000).await, vec![false]);

    // Two nodes claiming the same pairs at once (in opposite orders): each pair is won exactly once.
    let later = now + 10 * WINDOW_MS;
    let pairs: Vec<(i64, i64)> = (100..160).map(|u| (u, 20 + u % 3)).collect();
    let reversed: Vec<(i64, i64)> = pairs.iter().rev().copied().collect();
    let (won_a, won_b) = tokio::join!(won(&a, &pairs, later), won(&b, &reversed, later));
    let won_b: Vec<bool> = won_b.into_iter().rev().collect();
    for (i, pair) in pairs.iter().enumerate() {
        assert!(
            won_a[i] != won_b[i],
            "{pair:?}: {} and {}",
            won_a[i],
            won_b[i]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_offline_marks_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _committed) = mpsc::channel(1000);
    let options = SqliteOptions {
        synchronous: Default::default(),
        commit: commit(),
        max_db_mb: None,
        cache_mb: 16,
    };
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), options, sink).await.unwrap());
    marks_suite(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_offline_marks_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (sink_a, _a) = mpsc::channel(1000);
    let (sink_b, _b) = mpsc::channel(1000);
    let a = PostgresStore::open(&db.url, 4, commit(), sink_a)
        .await
        .unwrap();
    let b = PostgresStore::open(&db.url, 4, commit(), sink_b)
        .await
        .unwrap();
    marks_suite(Arc::new(a), Arc::new(b)).await;
}

/// The value of `xindao_offline_notifications_total` for the webhook channel and `result` on one node.
async fn webhook_notifications(server: &TestServer, result: &str) -> u64 {
    let name =
        format!(r#"xindao_offline_notifications_total{{channel="webhook",result="{result}"}}"#);
    metric(server.admin, &name)
        .await
        .map_or(0, |v| v.parse().unwrap())
}

/// Alice is connected to both nodes and sends from each into a room with Bob, who is connected nowhere:
/// both nodes find Bob offline, and the cluster announces him once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_announce_an_offline_member_once_per_window() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = test_config(dir.path().to_path_buf());
        config.store = db.url.parse().unwrap();
        config.webhooks = endpoint(receiver.url(), &["user.offline_message"]);
        config.webhook_offline_window_secs = 60;
        quick(&mut config);
        config
    };
    let mut a = TestServer::start_with(config()).await;
    let mut b = TestServer::start_with(config()).await;
    let alice = a.login("om-alice").await;
    let bob = a.login("om-bob").await;
    let mut on_a = Client::connect(a.addr, &alice.token).await;
    let mut on_b = Client::connect(b.addr, &alice.token).await;
    let room = on_a.ok("room_create", json!({"name": "om-room"})).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    on_a.ok(
        "room_add",
        json!({"conversation_id": room, "user_id": bob.user_id}),
    )
    .await;
    for m in 0..5 {
        on_a.say(room, &format!("a{m}"), "from node a").await;
        on_b.say(room, &format!("b{m}"), "from node b").await;
    }
    receiver
        .wait_for(10, "bob's offline event", |d| !d.is_empty())
        .await;
    // Time for a second node's event to show up, were there one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let announced: Vec<(i64, i64)> = receiver
        .delivered()
        .iter()
        .map(|r| {
            let data = &r.body["data"];
            (
                data["user_id"].as_i64().unwrap(),
                data["conversation_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(announced, vec![(bob.user_id, room)], "once for the cluster");
    let sent = webhook_notifications(&a, "sent").await + webhook_notifications(&b, "sent").await;
    let coalesced =
        webhook_notifications(&a, "coalesced").await + webhook_notifications(&b, "coalesced").await;
    assert_eq!(sent, 1);
    assert!(coalesced >= 1, "the other node's claim was refused");
    drop((on_a, on_b));
    a.stop().await;
    b.stop().await;
}
