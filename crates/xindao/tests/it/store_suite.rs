//! One behavioural suite for the `Store` trait, run against SQLite and against PostgreSQL (a fresh database
//! per test; skipped with a visible message when PostgreSQL is not reachable), plus what only a shared
//! database can show: several nodes appending to one conversation, racing on one cmid, and the database
//! becoming unreachable.

use crate::common;
use crate::services;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use services::TestDb;
use tokio::sync::mpsc;
use xindao::model::*;
use xindao::store::postgres::PostgresStore;
use xindao::store::sqlite::{SqliteOptions, SqliteStore};
use xindao::store::{
    CommitSink, Committed, ExternalId, GroupCommit, LoginIdentity, SessionExpiry, Store,
};
use xindao::Error;

/// The committed batches a store handed over, as (conversation, seq, origin). A batch is handed over before
/// its appends return, so whatever a finished append committed is already in the channel.
struct Recorder {
    batches: Mutex<mpsc::Receiver<Vec<Committed>>>,
    seen: Mutex<Vec<(i64, i64, u64)>>,
}

type Hooked = Arc<Recorder>;

impl Recorder {
    fn seen(&self) -> Vec<(i64, i64, u64)> {
        let mut seen = self.seen.lock();
        while let Ok(batch) = self.batches.lock().try_recv() {
            assert!(!batch.is_empty(), "no empty batches");
            seen.extend(
                batch
                    .iter()
                    .map(|c| (c.message.conversation_id, c.message.seq, c.origin)),
            );
        }
        seen.clone()
    }

    fn clear(&self) {
        self.seen();
        self.seen.lock().clear();
    }
}

/// A sink with room for every batch a test commits (nothing drains it meanwhile).
fn recorder() -> (CommitSink, Hooked) {
    let (sink, batches) = mpsc::channel(100_000);
    let recorder = Recorder {
        batches: Mutex::new(batches),
        seen: Mutex::default(),
    };
    (sink.into(), Arc::new(recorder))
}

async fn dev_user(store: &dyn Store, name: &str) -> User {
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

fn new_message(conversation_id: i64, sender_id: i64, cmid: &str) -> NewMessage {
    NewMessage {
        conversation_id,
        sender_id,
        cmid: cmid.into(),
        kind: MessageKind::Text,
        content: json!(format!("text of {cmid}")),
    }
}

/// The whole suite, against any store.
async fn suite(store: Arc<dyn Store>, hooked: Hooked) {
    let s = store.as_ref();
    assert!(s.healthy().await);

    // Users: one per identity.
    let alice = dev_user(s, "alice").await;
    assert_eq!(dev_user(s, "alice").await, alice);
    let bob = dev_user(s, "bob").await;
    let carol = dev_user(s, "carol").await;
    let wx = LoginIdentity {
        external_id: ExternalId::WeChat {
            openid: "o-1".into(),
        },
        unionid: Some("u-1".into()),
    };
    let w1 = s.upsert_user(wx.clone()).await.unwrap();
    assert_eq!(s.upsert_user(wx).await.unwrap().id, w1.id);
    assert!(w1.display_name.starts_with("wx_"));
    assert_eq!(s.user(bob.id).await.unwrap(), Some(bob.clone()));
    assert_eq!(s.user(999_999).await.unwrap(), None);
    assert_eq!(
        s.users_named("carol", 5).await.unwrap(),
        vec![carol.clone()]
    );

    // Sessions: sliding expiry, expiry, revocation.
    let token = [3u8; 32];
    let t0 = now_millis();
    s.create_session(token, alice.id, t0 + 1_000_000, SessionExpiry::Sliding)
        .await
        .unwrap();
    let info = s
        .touch_session(token, t0 + 1_000, 1_000_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.user_id, info.expires_at), (alice.id, t0 + 1_000_000));
    let extended = s
        .touch_session(token, t0 + 500_000, 1_000_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(extended.expires_at, t0 + 1_500_000);
    assert!(s
        .touch_session(token, t0 + 1_600_000, 1_000_000)
        .await
        .unwrap()
        .is_none());
    s.revoke_session(token).await.unwrap();
    assert!(s
        .touch_session(token, t0 + 1_000, 1_000_000)
        .await
        .unwrap()
        .is_none());

    // A fixed session (a JWT's) is never extended, and says so.
    let fixed = [5u8; 32];
    s.create_session(fixed, alice.id, t0 + 1_000_000, SessionExpiry::Fixed)
        .await
        .unwrap();
    for at in [t0 + 1_000, t0 + 500_000, t0 + 999_999] {
        let info = s.touch_session(fixed, at, 100_000).await.unwrap().unwrap();
        assert_eq!(
            (info.expires_at, info.expiry),
            (t0 + 1_000_000, SessionExpiry::Fixed),
            "at {at}"
        );
    }
    assert!(s
        .touch_session(fixed, t0 + 1_000_000, 100_000)
        .await
        .unwrap()
        .is_none());
    assert_eq!(extended.expiry, SessionExpiry::Sliding);

    // Connect tickets: one per session, redeemed once, not after expiry.
    let session = [4u8; 32];
    s.create_session(session, alice.id, t0 + 1_000_000, SessionExpiry::Sliding)
        .await
        .unwrap();
    s.create_ticket([10u8; 32], session, t0 + 30_000)
        .await
        .unwrap();
    s.create_ticket([11u8; 32], session, t0 + 30_000)
        .await
        .unwrap();
    assert_eq!(
        s.take_ticket([10u8; 32], t0).await.unwrap(),
        None,
        "a new ticket replaces the session's last"
    );
    assert_eq!(s.take_ticket([11u8; 32], t0).await.unwrap(), Some(session));
    assert_eq!(s.take_ticket([11u8; 32], t0).await.unwrap(), None, "once");
    s.create_ticket([12u8; 32], session, t0 + 30_000)
        .await
        .unwrap();
    assert_eq!(s.take_ticket([12u8; 32], t0 + 30_000).await.unwrap(), None);

    // Expired sessions and tickets are deleted, in batches; live ones stay.
    for i in 0..5u8 {
        s.create_session([100 + i; 32], alice.id, t0 + 10, SessionExpiry::Sliding)
            .await
            .unwrap();
    }
    s.create_ticket([13u8; 32], [100; 32], t0 + 10)
        .await
        .unwrap();
    assert_eq!(s.delete_expired(t0 + 10, 3).await.unwrap(), 3 + 1);
    assert_eq!(s.delete_expired(t0 + 10, 3).await.unwrap(), 2);
    assert_eq!(s.delete_expired(t0 + 10, 3).await.unwrap(), 0);
    assert!(s
        .touch_session(session, t0 + 10, 1_000_000)
        .await
        .unwrap()
        .is_some());

    // Direct conversations: one per pair.
    assert!(matches!(
        s.open_direct(alice.id, alice.id).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.open_direct(alice.id, 999_999).await,
        Err(Error::NotFound(_))
    ));
    let (direct, created) = s.open_direct(alice.id, bob.id).await.unwrap();
    assert!(created);
    assert_eq!(
        s.open_direct(bob.id, alice.id).await.unwrap(),
        (direct, false)
    );
    let seen_by_alice = s.conversation_for(direct, alice.id).await.unwrap();
    assert_eq!(seen_by_alice.kind, ConversationKind::Direct);
    assert_eq!(seen_by_alice.peer, Some(bob.clone()));
    assert!(matches!(
        s.conversation_for(direct, carol.id).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.conversation_for(999_999, carol.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.join_room(direct, carol.id, None).await,
        Err(Error::Forbidden(_))
    ));

    // Rooms: joining, adding, invite-only, leaving, ownership.
    let public = s
        .create_room(alice.id, "lobby", Visibility::Public)
        .await
        .unwrap();
    let invite = s
        .create_room(alice.id, "secret", Visibility::Invite)
        .await
        .unwrap();
    assert!(s.join_room(public, bob.id, None).await.unwrap());
    assert!(!s.join_room(public, bob.id, None).await.unwrap());
    assert!(matches!(
        s.join_room(invite, bob.id, None).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.join_room(invite, bob.id, Some(carol.id)).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.join_room(invite, 999_999, Some(alice.id)).await,
        Err(Error::NotFound(_))
    ));
    assert!(s.join_room(invite, bob.id, Some(alice.id)).await.unwrap());
    assert!(matches!(
        s.join_room(invite, carol.id, Some(bob.id)).await,
        Err(Error::Forbidden(_))
    ));
    assert!(s.join_room(public, carol.id, Some(bob.id)).await.unwrap());
    assert!(s.is_member(public, carol.id).await.unwrap());
    let rooms = s.public_rooms(10).await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!((rooms[0].id, rooms[0].members), (public, 3));
    assert!(matches!(
        s.leave_room(public, carol.id, Some(bob.id)).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.leave_room(public, alice.id, Some(alice.id)).await,
        Err(Error::Conflict(_))
    ));
    assert!(s
        .leave_room(public, carol.id, Some(alice.id))
        .await
        .unwrap());
    assert!(!s.leave_room(public, carol.id, None).await.unwrap());
    assert!(s.leave_room(invite, alice.id, None).await.unwrap());
    let members = s.members(invite, None, 1000).await.unwrap();
    assert_eq!(s.member_count(invite).await.unwrap(), 1);
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].user.id, members[0].role), (bob.id, Role::Owner));
    assert_eq!(
        s.conversation_for(invite, bob.id).await.unwrap().owner_id,
        Some(bob.id)
    );

    // Appends: gap-free seq, idempotent cmid, membership checked, hook after commit, own messages read.
    hooked.clear();
    let first = s
        .append(new_message(public, alice.id, "a-1"), 7)
        .await
        .unwrap();
    assert_eq!((first.message.seq, first.duplicate), (1, false));
    let second = s
        .append(new_message(public, bob.id, "b-1"), 7)
        .await
        .unwrap();
    assert_eq!(second.message.seq, 2);
    let again = s
        .append(new_message(public, alice.id, "a-1"), 7)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message, first.message);
    assert!(matches!(
        s.append(new_message(public, carol.id, "c-1"), 7).await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(hooked.seen(), vec![(public, 1, 7), (public, 2, 7)]);
    let lobby = s.conversation_for(public, bob.id).await.unwrap();
    assert_eq!((lobby.last_seq, lobby.read_seq, lobby.unread), (2, 2, 0));
    assert_eq!(
        lobby.last_message.as_ref().map(|m| m.cmid.as_str()),
        Some("b-1")
    );
    let of_alice = s.conversation_for(public, alice.id).await.unwrap();
    assert_eq!((of_alice.read_seq, of_alice.unread), (1, 1));
    // Activity is ordered by millisecond timestamps: make this one strictly the latest.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.append(new_message(direct, bob.id, "b-d1"), 7)
        .await
        .unwrap();
    let ordered: Vec<i64> = s
        .conversations_page(alice.id, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        ordered[0], direct,
        "most recent activity first: {ordered:?}"
    );
    assert_eq!(ordered.len(), 2);
    let (user, mut ids) = s.connection_state(alice.id).await.unwrap().unwrap();
    assert_eq!(user, alice);
    ids.sort();
    assert_eq!(ids, vec![direct, public]);
    assert!(s.connection_state(999_999).await.unwrap().is_none());
    let loner = dev_user(s, "loner").await;
    let (_, none) = s.connection_state(loner.id).await.unwrap().unwrap();
    assert!(none.is_empty(), "a user in no conversation: {none:?}");

    // Concurrent appends into one room: one total order, hooks in seq order.
    hooked.clear();
    let mut tasks = Vec::new();
    for (t, sender) in [alice.id, bob.id, alice.id, bob.id].into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                store
                    .append(new_message(public, sender, &format!("c{t}-{i}")), 7)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seqs: Vec<i64> = hooked.seen().iter().map(|&(_, seq, _)| seq).collect();
    assert_eq!(seqs, (3..=102).collect::<Vec<_>>(), "hooks in seq order");

    // History pages both ways.
    let latest = s.history(public, Range::Latest, 10).await.unwrap();
    assert_eq!(latest.messages.first().map(|m| m.seq), Some(93));
    assert!(latest.has_more);
    let before = s.history(public, Range::Before(3), 10).await.unwrap();
    assert_eq!(
        before.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(!before.has_more);
    let after = s.history(public, Range::After(95), 10).await.unwrap();
    assert_eq!(
        after.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (96..=102).collect::<Vec<_>>()
    );
    assert!(!after.has_more);

    // Read markers: forward only, capped at last_seq, members only.
    assert_eq!(s.mark_read(public, carol.id, 1).await.ok(), None);
    let fresh = dev_user(s, "dave").await;
    assert!(s.join_room(public, fresh.id, None).await.unwrap());
    assert_eq!(s.mark_read(public, fresh.id, 50).await.unwrap(), 50);
    assert_eq!(s.mark_read(public, fresh.id, 10).await.unwrap(), 50);
    assert_eq!(s.mark_read(public, fresh.id, 10_000).await.unwrap(), 102);

    store.shutdown().await;
}

fn commit() -> GroupCommit {
    GroupCommit {
        batch_max: 64,
        linger: Duration::from_micros(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, hooked) = recorder();
    let store = SqliteStore::open(dir.path(), sqlite_options(), hook)
        .await
        .unwrap();
    suite(Arc::new(store), hooked).await;
}

fn sqlite_options() -> SqliteOptions {
    SqliteOptions {
        synchronous: Default::default(),
        commit: commit(),
        max_db_mb: None,
        cache_mb: 64,
    }
}

/// Two users, their direct conversation, and one message from each under the same cmid (a cmid is unique per
/// sender): the data the migration-2 test carries across the upgrade.
async fn before_migration_2(store: &dyn Store) -> (ConversationId, Message, Message) {
    let alice = dev_user(store, "alice").await;
    let bob = dev_user(store, "bob").await;
    let (direct, _) = store.open_direct(alice.id, bob.id).await.unwrap();
    let first = store.append(new_message(direct, alice.id, "c-1"), 7).await;
    let second = store.append(new_message(direct, bob.id, "c-1"), 7).await;
    (direct, first.unwrap().message, second.unwrap().message)
}

/// After migration 2 the messages keep their ids and seqs, and a cmid is still deduplicated per sender.
async fn check_after_migration_2(
    store: &dyn Store,
    direct: ConversationId,
    first: &Message,
    second: &Message,
) {
    let page = store.history(direct, Range::Latest, 10).await.unwrap();
    let kept: Vec<(i64, i64, String)> = page
        .messages
        .iter()
        .map(|m| (m.id, m.seq, m.cmid.clone()))
        .collect();
    assert_eq!(
        kept,
        vec![
            (first.id, first.seq, "c-1".to_string()),
            (second.id, second.seq, "c-1".to_string())
        ]
    );
    let again = store
        .append(new_message(direct, first.sender_id, "c-1"), 7)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.id, first.id);
    let next = store
        .append(new_message(direct, first.sender_id, "c-2"), 7)
        .await
        .unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.message.seq, second.seq + 1);
}

/// A database written before migration 2 (idempotency key indexed as `(sender_id, cmid)`) keeps its messages,
/// their ids and seqs, and its dedupe when a newer server opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migration_2_keeps_messages_and_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let (direct, first, second) = {
        let store = SqliteStore::open(dir.path(), sqlite_options(), recorder().0)
            .await
            .unwrap();
        let before = before_migration_2(&store).await;
        store.shutdown().await;
        before
    };
    // Put the file back the way version 1 left it: the old constraint, user_version 1.
    {
        let db = rusqlite::Connection::open(dir.path().join("xindao.db")).unwrap();
        db.execute_batch(
            "BEGIN;
             CREATE TABLE old (id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                 sender_id INTEGER NOT NULL, cmid TEXT NOT NULL, kind TEXT NOT NULL, content TEXT NOT NULL,
                 created_at INTEGER NOT NULL, UNIQUE (conversation_id, seq), UNIQUE (sender_id, cmid));
             INSERT INTO old SELECT id, conversation_id, seq, sender_id, cmid, kind, content, created_at
                 FROM messages;
             DROP TABLE messages;
             ALTER TABLE old RENAME TO messages;
             DROP INDEX users_by_name_nocase;
             ALTER TABLE users DROP COLUMN avatar_url;
             DROP TABLE hidden_messages;
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .unwrap();
        // What later migrations added without `IF NOT EXISTS` (SQLite has none for columns) goes too.
        db.execute_batch(
            "DROP TABLE api_keys;
             DROP INDEX users_by_external_id;
             DROP INDEX users_by_system_name;
             ALTER TABLE users DROP COLUMN external_id;
             ALTER TABLE users DROP COLUMN custom;
             ALTER TABLE users DROP COLUMN banned_at;
             ALTER TABLE users DROP COLUMN system_name;
             ALTER TABLE members DROP COLUMN muted_until;
             ALTER TABLE conversations DROP COLUMN archived_at;
             ALTER TABLE webhook_outbox DROP COLUMN request_id;
             ALTER TABLE webhook_dead DROP COLUMN request_id;
             DROP TABLE media_uses;
             ALTER TABLE media DROP COLUMN deleted_at;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), sqlite_options(), recorder().0)
        .await
        .unwrap();
    check_after_migration_2(&store, direct, &first, &second).await;
    store.shutdown().await;
    let db = rusqlite::Connection::open(dir.path().join("xindao.db")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    // Migration 2, then the ones after it.
    assert_eq!(version, crate::store_migrate::migration_files("sqlite"));
    let key: Vec<String> = db
        .prepare(
            "SELECT ii.name FROM pragma_index_list('messages') il, pragma_index_info(il.name) ii
             WHERE il.[unique] AND ii.name IN ('cmid', 'sender_id') ORDER BY ii.seqno",
        )
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(key, vec!["cmid", "sender_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_suite_on_postgres() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (hook, hooked) = recorder();
    let store = PostgresStore::open(&db.url, 8, commit(), hook)
        .await
        .unwrap();
    suite(Arc::new(store), hooked).await;
}

/// Two nodes on one database, appending to one room at once and racing on the same cmids: seqs stay
/// gap-free and unique, and each cmid is stored once, both racers answering with the winner's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_one_order_and_one_copy_per_cmid() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let (hook_a, hooked_a) = recorder();
    let (hook_b, hooked_b) = recorder();
    let a: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&db.url, 8, commit(), hook_a)
            .await
            .unwrap(),
    );
    let b: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&db.url, 8, commit(), hook_b)
            .await
            .unwrap(),
    );
    let owner = dev_user(a.as_ref(), "owner").await;
    let room = a
        .create_room(owner.id, "race", Visibility::Public)
        .await
        .unwrap();
    const EACH: usize = 40;
    let mut tasks = Vec::new();
    for (node, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..EACH {
                // Tasks 0/1 and 2/3 race on the same cmids from different nodes.
                let cmid = format!("k{}-{i}", node / 2);
                let appended = store
                    .append(new_message(room, owner.id, &cmid), 7)
                    .await
                    .unwrap();
                out.push((
                    cmid,
                    appended.message.id,
                    appended.message.seq,
                    appended.duplicate,
                ));
            }
            out
        }));
    }
    let mut by_cmid = std::collections::HashMap::new();
    let mut originals = 0;
    for task in tasks {
        for (cmid, id, seq, duplicate) in task.await.unwrap() {
            originals += usize::from(!duplicate);
            let previous = by_cmid.insert(cmid.clone(), (id, seq));
            if let Some(previous) = previous {
                assert_eq!(
                    previous,
                    (id, seq),
                    "both racers see the same message for {cmid}"
                );
            }
        }
    }
    assert_eq!(by_cmid.len(), 2 * EACH);
    assert_eq!(originals, 2 * EACH, "exactly one original per cmid");
    let seqs: HashSet<i64> = by_cmid.values().map(|&(_, seq)| seq).collect();
    assert_eq!(
        seqs,
        (1..=(2 * EACH) as i64).collect(),
        "gap-free, unique seqs"
    );
    let last = a.conversation_for(room, owner.id).await.unwrap().last_seq;
    assert_eq!(last, (2 * EACH) as i64);
    let hooks = hooked_a.seen().len() + hooked_b.seen().len();
    assert_eq!(
        hooks,
        2 * EACH,
        "one hook call per stored message, on the node that stored it"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// PostgreSQL goes away under a running node: `send` answers `unavailable` (nothing acked), the
/// connection stays usable, and sends work again once the database is back.
/// The same sender and cmid sent to two rooms from two nodes at once: the rooms are locked separately, so both
/// batches take a seq and one insert waits for the other's. The loser gives its seq back and answers with the
/// winner's message (a batch sent pipelined is rolled back and run one message at a time); either way each room
/// stays gap-free while other messages share the batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cmid_raced_across_rooms_leaves_no_gap() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let a: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&db.url, 8, commit(), recorder().0)
            .await
            .unwrap(),
    );
    let b: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&db.url, 8, commit(), recorder().0)
            .await
            .unwrap(),
    );
    let owner = dev_user(a.as_ref(), "owner").await;
    let rooms = [
        a.create_room(owner.id, "r0", Visibility::Public)
            .await
            .unwrap(),
        a.create_room(owner.id, "r1", Visibility::Public)
            .await
            .unwrap(),
    ];
    const EACH: usize = 100;
    let mut tasks = Vec::new();
    for (node, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        let room = rooms[node];
        // The racer: cmid r{i} goes to room 0 through node a and to room 1 through node b.
        let racer = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..EACH {
                let appended = racer
                    .append(new_message(room, owner.id, &format!("r{i}")), 7)
                    .await
                    .unwrap();
                out.push((format!("r{i}"), appended.message.id, appended.duplicate));
            }
            out
        }));
        // Fillers with their own cmids share the racers' batches.
        for filler in 0..3 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let cmid = format!("f{node}-{filler}-{i}");
                    let appended = store
                        .append(new_message(room, owner.id, &cmid), 7)
                        .await
                        .unwrap();
                    assert!(!appended.duplicate);
                }
                Vec::new()
            }));
        }
    }
    let mut by_cmid: std::collections::HashMap<String, Vec<(i64, bool)>> = Default::default();
    for task in tasks {
        for (cmid, id, duplicate) in task.await.unwrap() {
            by_cmid.entry(cmid).or_default().push((id, duplicate));
        }
    }
    for (cmid, answers) in &by_cmid {
        assert_eq!(answers.len(), 2, "{cmid}");
        assert_eq!(
            answers[0].0, answers[1].0,
            "both nodes answer {cmid} with one message"
        );
        assert_eq!(
            answers.iter().filter(|(_, duplicate)| !duplicate).count(),
            1,
            "one original for {cmid}"
        );
    }
    for room in rooms {
        let last = a.conversation_for(room, owner.id).await.unwrap().last_seq;
        let page = a.history(room, Range::After(0), 1000).await.unwrap();
        let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=last).collect::<Vec<_>>(),
            "room {room} is gap-free"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_send_is_unavailable() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let mut server = common::TestServer::start(move |c| c.store = url.parse().unwrap()).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let room = a.ok("room_create", json!({ "name": "r" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    a.say(room, "m1", "before").await;
    db.cut_off().await;
    let reply = a
        .call(
            "send",
            json!({ "conversation_id": room, "cmid": "m2", "content": "during" }),
        )
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
    a.ok("ping", json!({})).await;
    db.restore().await;
    let message = a.say(room, "m2", "after").await;
    assert_eq!(message["seq"], 2, "nothing was committed while unavailable");
    server.stop().await;
}
