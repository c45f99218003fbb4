//! The cost of people search, contacts and the profile fan-out set on both stores with many users: the figures
//! of docs/decisions/profiles-search-recall.md. Measurements, not checks: ignored unless asked for.

use crate::services::TestDb;
use crate::store_profiles::{commit, user};

use std::time::Duration;

use tokio::sync::mpsc;
use xindao::model::*;
use xindao::store::postgres::PostgresStore;
use xindao::store::sqlite::{SqliteOptions, SqliteStore};
use xindao::store::Store;

/// The cost figures of docs/decisions/profiles-search-recall.md: 20,000 users, one of them in 200 rooms of 100
/// members. `cargo test -p xindao --test it store_suite_profiles_cost -- --ignored --nocapture`.
async fn cost(s: &dyn Store, backend: &str) {
    let mut ids = Vec::new();
    for i in 0..20_000 {
        ids.push(user(s, &format!("user{i:05}")).await.id);
    }
    let me = ids[0];
    for r in 0..200 {
        let room = s
            .create_room(me, &format!("room{r}"), Visibility::Public)
            .await
            .unwrap();
        for k in 1..100 {
            s.join_room(room, ids[(r * 97 + k * 13) % ids.len()], None)
                .await
                .unwrap();
        }
    }
    let time = |label: &str, runs: u32, elapsed: Duration| {
        println!(
            "{backend}: {label}: {:.2} ms per call",
            elapsed.as_secs_f64() * 1000.0 / runs as f64
        );
    };
    let started = std::time::Instant::now();
    for i in 0..100 {
        let found = s
            .users_by_prefix(&format!("USER1{}", i % 10), 20)
            .await
            .unwrap();
        assert_eq!(found.len(), 20);
    }
    time("user_search (20 of 1,000 matches)", 100, started.elapsed());
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(s.contacts(me, 0, 51).await.unwrap().len(), 51);
    }
    time("contacts page of 50 (200 rooms)", 20, started.elapsed());
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(s.contacts(me, 0, 1000).await.unwrap().len(), 1000);
    }
    time("profile fan-out set (1,000 contacts)", 5, started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn store_suite_profiles_cost_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _committed) = mpsc::channel(100_000);
    let options = SqliteOptions {
        synchronous: Default::default(),
        commit: commit(),
        max_db_mb: None,
        cache_mb: 16,
    };
    let store = SqliteStore::open(dir.path(), options, sink).await.unwrap();
    cost(&store, "sqlite").await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn store_suite_profiles_cost_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (sink, _committed) = mpsc::channel(100_000);
    let store = PostgresStore::open(&db.url, 8, commit(), sink)
        .await
        .unwrap();
    cost(&store, "postgres").await;
    store.shutdown().await;
}
