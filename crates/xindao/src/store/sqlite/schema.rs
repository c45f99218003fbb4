//! SQLite schema and migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE users (
        id           INTEGER PRIMARY KEY,
        openid       TEXT UNIQUE,
        unionid      TEXT,
        session_key  TEXT,
        dev_name     TEXT UNIQUE,
        display_name TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  BLOB PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users(id),
        created_at  INTEGER NOT NULL,
        extended_at INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE INDEX users_by_name ON users(display_name);
    CREATE TABLE conversations (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('direct', 'room')),
        name       TEXT,
        visibility TEXT CHECK (visibility IN ('public', 'invite')),
        owner_id   INTEGER REFERENCES users(id),
        direct_lo  INTEGER REFERENCES users(id),
        direct_hi  INTEGER REFERENCES users(id),
        last_seq   INTEGER NOT NULL DEFAULT 0,
        last_ts    INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (direct_lo, direct_hi)
    );
    CREATE INDEX rooms_public ON conversations(visibility, last_ts) WHERE kind = 'room';
    CREATE TABLE members (
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        user_id         INTEGER NOT NULL REFERENCES users(id),
        role            TEXT NOT NULL CHECK (role IN ('owner', 'member')),
        joined_at       INTEGER NOT NULL,
        read_seq        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX members_by_user ON members(user_id, conversation_id);
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        seq             INTEGER NOT NULL,
        sender_id       INTEGER NOT NULL REFERENCES users(id),
        cmid            TEXT NOT NULL,
        kind            TEXT NOT NULL,
        content         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        UNIQUE (conversation_id, seq),
        UNIQUE (sender_id, cmid)
    );
    "#,
    // 2: the idempotency key is indexed as (cmid, sender_id), not (sender_id, cmid). Cmids that begin with the
    // time, as the SDK makes them, then sort in the order they are sent, so a commit's messages land in the same
    // few leaves of that index instead of one leaf per sender: at 15,000 1:1 msg/s the commit thread's WAL
    // writes fell from 4.7 to 2.9 per message (BENCHMARKS.md). SQLite cannot change a table's constraint in
    // place; nothing references `messages`, so the table is rebuilt.
    r#"
    CREATE TABLE messages_v2 (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id),
        seq             INTEGER NOT NULL,
        sender_id       INTEGER NOT NULL REFERENCES users(id),
        cmid            TEXT NOT NULL,
        kind            TEXT NOT NULL,
        content         TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        UNIQUE (conversation_id, seq),
        UNIQUE (cmid, sender_id)
    );
    INSERT INTO messages_v2 (id, conversation_id, seq, sender_id, cmid, kind, content, created_at)
        SELECT id, conversation_id, seq, sender_id, cmid, kind, content, created_at FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v2 RENAME TO messages;
    "#,
];

/// Brings the database schema up to date.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied SQLite migration");
    }
    Ok(())
}
