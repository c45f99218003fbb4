//! The membership caps and the paged reads, against both stores through the `Store` trait: the caps hold
//! under concurrent adds (on PostgreSQL from two nodes at once), leaving is never capped, `conversations_page`
//! pages by activity and `sync_scan` by id. Named `store_suite_*` so that `--test it store_suite` runs them
//! with the rest of the store suite.

use crate::services::TestDb;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use xindao::model::*;
use xindao::rules::Caps;
use xindao::store::postgres::PostgresStore;
use xindao::store::sqlite::{SqliteOptions, SqliteStore};
use xindao::store::{ExternalId, GroupCommit, LoginIdentity, Store};

const CAPS: Caps = Caps {
    memberships_per_user: 5,
    rooms_per_owner: 3,
};

fn commit() -> GroupCommit {
    GroupCommit {
        batch_max: 64,
        linger: Duration::from_micros(500),
    }
}

async fn user(store: &dyn Store, name: &str) -> User {
    store
        .upsert_user(LoginIdentity {
            external_id: ExternalId::Dev {
                display_name: name.into(),
            },
            unionid: None,
        })
        .await
        .unwrap()
}

fn code<T: std::fmt::Debug>(result: xindao::Result<T>) -> &'static str {
    result.expect_err("refused").code()
}

/// Caps and paging on one store (`other` is a second node on the same database, or the same store).
async fn caps_suite(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    let s = store.as_ref();
    let owner = user(s, "owner").await;
    let victim = user(s, "victim").await;
    let peer = user(s, "peer").await;

    // Rooms per owner: 3.
    let owner2 = user(s, "owner2").await;
    let mut rooms = Vec::new();
    for (i, by) in [owner.id, owner.id, owner.id, owner2.id, owner2.id]
        .into_iter()
        .enumerate()
    {
        let room = s
            .create_room(by, &format!("r{i}"), Visibility::Public)
            .await
            .unwrap();
        rooms.push((room, by));
    }
    assert_eq!(
        code(s.create_room(owner.id, "r5", Visibility::Public).await),
        "limit_reached",
        "a fourth room"
    );

    // Concurrent adds of the victim to five rooms, from both nodes, with the victim already in one room of
    // their own: exactly four succeed.
    s.create_room(victim.id, "mine", Visibility::Public)
        .await
        .unwrap();
    let mut racers = Vec::new();
    for (i, &(room, by)) in rooms.iter().enumerate() {
        let node = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let victim = victim.id;
        racers.push(tokio::spawn(async move {
            node.join_room(room, victim, Some(by)).await
        }));
    }
    let mut added = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(true) => added += 1,
            Ok(false) => panic!("not a member before"),
            Err(e) => assert_eq!(e.code(), "limit_reached", "{e}"),
        }
    }
    assert_eq!(added, 4, "the cap holds under concurrent adds");
    let all = s.conversations_page(victim.id, None, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    // At the cap: no room of one's own, no join, no new direct conversation either way; an existing
    // membership is no error.
    assert_eq!(
        code(s.create_room(victim.id, "more", Visibility::Public).await),
        "limit_reached"
    );
    let spare = rooms
        .iter()
        .map(|&(room, _)| room)
        .find(|room| !all.iter().any(|c| c.id == *room))
        .unwrap();
    assert_eq!(
        code(s.join_room(spare, victim.id, None).await),
        "limit_reached"
    );
    assert_eq!(
        code(s.open_direct(victim.id, peer.id).await),
        "limit_reached"
    );
    assert_eq!(
        code(s.open_direct(peer.id, victim.id).await),
        "limit_reached"
    );
    let member_of = all
        .iter()
        .find(|c| c.owner_id != Some(victim.id))
        .unwrap()
        .id;
    assert!(!s.join_room(member_of, victim.id, None).await.unwrap());
    // Leaving is never capped, and frees a place.
    assert!(s.leave_room(member_of, victim.id, None).await.unwrap());
    assert!(s.join_room(spare, victim.id, None).await.unwrap());

    // Paging by activity: newest first, no overlap, no gap.
    let pager = user(s, "pager").await;
    let mut made = Vec::new();
    for i in 0..3 {
        let room = s
            .create_room(pager.id, &format!("p{i}"), Visibility::Public)
            .await
            .unwrap();
        made.push(room);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    s.append(
        NewMessage {
            conversation_id: made[1],
            sender_id: pager.id,
            cmid: "p-1".into(),
            kind: MessageKind::Text,
            content: json!("bump"),
        },
        0,
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.conversations_page(pager.id, cursor, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = Some(ActivityCursor::after(last));
        seen.extend(page.iter().map(|c| c.id));
    }
    assert_eq!(seen, vec![made[1], made[2], made[0]]);

    // The sync scan: ascending ids within (after, until].
    let scan = s.sync_scan(pager.id, 0, None, 100).await.unwrap();
    assert_eq!(scan.iter().map(|&(id, _)| id).collect::<Vec<_>>(), made);
    assert_eq!(scan[1].1, 1, "last seq of the bumped room");
    let slice = s
        .sync_scan(pager.id, made[0], Some(made[1]), 100)
        .await
        .unwrap();
    assert_eq!(slice, vec![(made[1], 1)]);
    assert_eq!(s.sync_scan(pager.id, 0, None, 2).await.unwrap().len(), 2);

    // Who shares a conversation.
    let stranger = user(s, "stranger").await;
    let mut sharing = s
        .sharing_with(victim.id, &[owner.id, stranger.id, victim.id, peer.id])
        .await
        .unwrap();
    sharing.sort();
    let mut expected = vec![owner.id, victim.id];
    expected.sort();
    assert_eq!(sharing, expected);
    assert_eq!(s.direct_between(victim.id, peer.id).await.unwrap(), None);

    store.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_caps_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _committed) = mpsc::channel(100_000);
    let options = SqliteOptions {
        synchronous: Default::default(),
        commit: commit(),
        max_db_mb: None,
        cache_mb: 16,
    };
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path(), options, sink)
            .await
            .unwrap()
            .with_caps(CAPS),
    );
    caps_suite(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_caps_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (sink_a, _a) = mpsc::channel(100_000);
    let (sink_b, _b) = mpsc::channel(100_000);
    let a = PostgresStore::open(&db.url, 8, commit(), sink_a)
        .await
        .unwrap()
        .with_caps(CAPS);
    let b = PostgresStore::open(&db.url, 8, commit(), sink_b)
        .await
        .unwrap()
        .with_caps(CAPS);
    caps_suite(Arc::new(a), Arc::new(b)).await;
}
