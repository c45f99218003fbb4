//! The `media_uses` migration on a database of the schema before it: media messages sent earlier get their
//! uses backfilled (and a text that is not JSON does not trip the backfill), so that recalling one of them
//! deletes its medium as it does for messages sent after; on SQLite and PostgreSQL, through the store.

use crate::services::TestDb;
use crate::store_migrate::{commit, postgres_migrated_by_the_old_runner};
use xindao::store::Store;

/// Every migration of `backend` before the one that added `media_uses`, in order.
fn migrations_before_media_uses(backend: &str) -> Vec<(i64, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .take_while(|path| !path.to_string_lossy().contains("media_uses"))
        .enumerate()
        .map(|(index, path)| (index as i64 + 1, std::fs::read_to_string(path).unwrap()))
        .collect()
}

/// A room whose seq 1 is an image message and seq 2 a text, as a server before `media_uses` left them.
const OLD_MEDIA_DATA: &str = "
    INSERT INTO users (id, dev_name, display_name, created_at) VALUES (5, 'ann', 'ann', 1);
    INSERT INTO conversations (id, kind, name, visibility, owner_id, last_seq, last_ts, created_at)
        VALUES (9, 'room', 'r', 'public', 5, 2, 1, 1);
    INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq) VALUES (9, 5, 'owner', 1, 2);
    INSERT INTO media (id, owner_id, kind, mime, size, storage_key, created_at)
        VALUES ('Zf3k1vJm8q0YH2xw7uQ5bA', 5, 'image', 'image/png', 10, 'Z/Zf3k1vJm8q0YH2xw7uQ5bA', 1);
    INSERT INTO media_refs (media_id, conversation_id) VALUES ('Zf3k1vJm8q0YH2xw7uQ5bA', 9);
    INSERT INTO messages (id, conversation_id, seq, sender_id, cmid, kind, content, created_at)
        VALUES (3, 9, 1, 5, 'c-1', 'image', '{\"media_id\":\"Zf3k1vJm8q0YH2xw7uQ5bA\",\"size\":10}', 1),
               (4, 9, 2, 5, 'c-2', 'text', 'not json: the backfill reads only media kinds', 1);";

/// After the migration, the message sent before it still carries its medium: releasing it deletes it.
async fn check_backfilled(store: &dyn Store) {
    let id = "Zf3k1vJm8q0YH2xw7uQ5bA";
    assert!(store.media(id).await.unwrap().is_some());
    assert!(store.media_release(9, 2).await.unwrap().is_none(), "a text");
    let released = store.media_release(9, 1).await.unwrap();
    assert_eq!(released.map(|m| m.id), Some(id.to_string()));
    assert!(store.media(id).await.unwrap().is_none(), "deleted");
    assert!(!store.media_visible(id, 5).await.unwrap());
    assert!(store.media_release(9, 1).await.unwrap().is_none(), "once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_messages_sent_before_the_migration_are_backfilled_on_sqlite() {
    use xindao::store::sqlite::{SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = rusqlite::Connection::open(dir.path().join("xindao.db")).unwrap();
        for (version, sql) in migrations_before_media_uses("sqlite") {
            let tx = db.transaction().unwrap();
            tx.execute_batch(&sql).unwrap();
            tx.pragma_update(None, "user_version", version).unwrap();
            tx.commit().unwrap();
        }
        db.execute_batch(OLD_MEDIA_DATA).unwrap();
    }
    let options = SqliteOptions {
        synchronous: Default::default(),
        commit: commit(),
        max_db_mb: None,
        cache_mb: 8,
    };
    let (sink, _committed) = tokio::sync::mpsc::channel(64);
    let store = SqliteStore::open(dir.path(), options, sink).await.unwrap();
    check_backfilled(&store).await;
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_messages_sent_before_the_migration_are_backfilled_on_postgres() {
    use xindao::store::postgres::PostgresStore;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let client =
        postgres_migrated_by_the_old_runner(&db, &migrations_before_media_uses("postgres")).await;
    client.batch_execute(OLD_MEDIA_DATA).await.unwrap();
    client
        .batch_execute(
            "SELECT setval('users_id_seq', 5); SELECT setval('conversations_id_seq', 9);
             SELECT setval('messages_id_seq', 4);",
        )
        .await
        .unwrap();
    let (sink, _committed) = tokio::sync::mpsc::channel(64);
    let store = PostgresStore::open(&db.url, 4, commit(), sink)
        .await
        .unwrap();
    check_backfilled(&store).await;
    store.shutdown().await;
}
