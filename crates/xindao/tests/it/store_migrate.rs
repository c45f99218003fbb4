//! Databases created by the hand-written migration runners that came before `migrations/*.sql` (SQLite:
//! `PRAGMA user_version`; PostgreSQL: `xindao_schema`) open with the one runner, keep their data, and are not
//! migrated again.

use crate::services;

use serde_json::json;
use services::TestDb;
use tokio::sync::mpsc;
use xindao::model::*;
use xindao::store::postgres::PostgresStore;
use xindao::store::sqlite::{SqliteOptions, SqliteStore};
use xindao::store::{GroupCommit, Store};

/// The statements the old runners applied, in order (the files hold them unchanged).
const SQLITE_OLD: [&str; 2] = [
    include_str!("../../migrations/sqlite/0001_initial.sql"),
    include_str!("../../migrations/sqlite/0002_messages_cmid_first.sql"),
];
const POSTGRES_OLD: [&str; 1] = [include_str!("../../migrations/postgres/0001_initial.sql")];

/// Rows as a server of that time left them: a user, a room with one message.
const DATA: &str = "
    INSERT INTO users (id, dev_name, display_name, created_at) VALUES (5, 'ann', 'ann', 1);
    INSERT INTO conversations (id, kind, name, visibility, owner_id, last_seq, last_ts, created_at)
        VALUES (9, 'room', 'r', 'public', 5, 1, 1, 1);
    INSERT INTO members (conversation_id, user_id, role, joined_at, read_seq) VALUES (9, 5, 'owner', 1, 1);
    INSERT INTO messages (id, conversation_id, seq, sender_id, cmid, kind, content, created_at)
        VALUES (3, 9, 1, 5, 'c-1', 'text', '\"hi\"', 1);";

/// How many migrations the backend has: the `.sql` files under `migrations/<backend>/`.
pub fn migration_files(backend: &str) -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64
}

/// A group commit that never lingers: the tests' stores commit each append at once.
pub fn commit() -> GroupCommit {
    GroupCommit {
        batch_max: 64,
        linger: std::time::Duration::ZERO,
    }
}

/// A client of `db` whose schema is what the old PostgreSQL runner left after `migrations` (each
/// recorded in `xindao_schema` under its number).
pub async fn postgres_migrated_by_the_old_runner(
    db: &TestDb,
    migrations: &[(i64, String)],
) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS xindao_schema (version BIGINT NOT NULL)")
        .await
        .unwrap();
    for (version, sql) in migrations {
        client.batch_execute(sql).await.unwrap();
        client
            .execute(
                "INSERT INTO xindao_schema (version) VALUES ($1)",
                &[version],
            )
            .await
            .unwrap();
    }
    client
}

/// The old data is there, and appends continue from it.
async fn check_kept(store: &dyn Store) {
    let ann = store.user(5).await.unwrap().expect("user kept");
    assert_eq!(ann.display_name, "ann");
    let page = store.history(9, Range::Latest, 10).await.unwrap();
    let kept: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.id, m.seq, m.cmid.as_str(), m.content.clone()))
        .collect();
    assert_eq!(kept, vec![(3, 1, "c-1", json!("hi"))]);
    let message = |cmid: &str| NewMessage {
        conversation_id: 9,
        sender_id: 5,
        cmid: cmid.into(),
        kind: MessageKind::Text,
        content: json!("again"),
    };
    let again = store.append(message("c-1"), 0).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.id, 3);
    let next = store.append(message("c-2"), 0).await.unwrap();
    assert_eq!((next.message.seq, next.duplicate), (2, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_database_of_the_old_runner_opens_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut db = rusqlite::Connection::open(dir.path().join("xindao.db")).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        for (index, sql) in SQLITE_OLD.iter().enumerate() {
            let tx = db.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", index + 1).unwrap();
            tx.commit().unwrap();
        }
        db.execute_batch(DATA).unwrap();
    }
    let options = SqliteOptions {
        synchronous: Default::default(),
        commit: commit(),
        max_db_mb: None,
        cache_mb: 8,
    };
    let (sink, _committed) = mpsc::channel(64);
    let store = SqliteStore::open(dir.path(), options, sink).await.unwrap();
    check_kept(&store).await;
    store.shutdown().await;
    let db = rusqlite::Connection::open(dir.path().join("xindao.db")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    // The old runner's two, then only the migrations that came after it, once.
    assert_eq!(version, migration_files("sqlite"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_of_the_old_runner_opens_as_it_is() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let old: Vec<(i64, String)> = POSTGRES_OLD
        .iter()
        .enumerate()
        .map(|(index, sql)| (index as i64 + 1, sql.to_string()))
        .collect();
    let client = postgres_migrated_by_the_old_runner(&db, &old).await;
    client.batch_execute(DATA).await.unwrap();
    // The old rows took their ids by hand: move the sequences past them, as the old server's inserts would have.
    client
        .batch_execute(
            "SELECT setval('users_id_seq', 5); SELECT setval('conversations_id_seq', 9);
             SELECT setval('messages_id_seq', 3);",
        )
        .await
        .unwrap();
    let (sink, _committed) = mpsc::channel(64);
    let store = PostgresStore::open(&db.url, 4, commit(), sink)
        .await
        .unwrap();
    check_kept(&store).await;
    store.shutdown().await;
    let versions: Vec<i64> = client
        .query("SELECT version FROM xindao_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    // The old runner's one, then only the migrations that came after it, once.
    let all: Vec<i64> = (1..=migration_files("postgres")).collect();
    assert_eq!(versions, all);
}
