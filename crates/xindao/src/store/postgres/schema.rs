//! PostgreSQL schema and migrations, applied in order at start and recorded in `xindao_schema`.
//!
//! Several nodes may start at once against one database: an advisory lock makes exactly one of them migrate
//! while the others wait and then find nothing left to do.

use tokio_postgres::Client;

/// Arbitrary constant naming xindao's migration lock.
const MIGRATION_LOCK: i64 = 0x7869_6e64_616f;

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema, the same shape as SQLite's.
    r#"
    CREATE TABLE users (
        id           BIGSERIAL PRIMARY KEY,
        openid       TEXT UNIQUE,
        unionid      TEXT,
        session_key  TEXT,
        dev_name     TEXT UNIQUE,
        display_name TEXT NOT NULL,
        created_at   BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        token_hash  BYTEA PRIMARY KEY,
        user_id     BIGINT NOT NULL REFERENCES users(id),
        created_at  BIGINT NOT NULL,
        extended_at BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE INDEX users_by_name ON users(display_name);
    CREATE TABLE conversations (
        id         BIGSERIAL PRIMARY KEY,
        kind       TEXT NOT NULL CHECK (kind IN ('direct', 'room')),
        name       TEXT,
        visibility TEXT CHECK (visibility IN ('public', 'invite')),
        owner_id   BIGINT REFERENCES users(id),
        direct_lo  BIGINT REFERENCES users(id),
        direct_hi  BIGINT REFERENCES users(id),
        last_seq   BIGINT NOT NULL DEFAULT 0,
        last_ts    BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (direct_lo, direct_hi)
    );
    CREATE INDEX rooms_public ON conversations(visibility, last_ts) WHERE kind = 'room';
    CREATE TABLE members (
        conversation_id BIGINT NOT NULL REFERENCES conversations(id),
        user_id         BIGINT NOT NULL REFERENCES users(id),
        role            TEXT NOT NULL CHECK (role IN ('owner', 'member')),
        joined_at       BIGINT NOT NULL,
        read_seq        BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation_id, user_id)
    );
    CREATE INDEX members_by_user ON members(user_id, conversation_id);
    CREATE TABLE messages (
        id              BIGSERIAL PRIMARY KEY,
        conversation_id BIGINT NOT NULL REFERENCES conversations(id),
        seq             BIGINT NOT NULL,
        sender_id       BIGINT NOT NULL REFERENCES users(id),
        cmid            TEXT NOT NULL,
        kind            TEXT NOT NULL,
        content         TEXT NOT NULL,
        created_at      BIGINT NOT NULL,
        UNIQUE (conversation_id, seq),
        UNIQUE (sender_id, cmid)
    );
    "#,
];

/// Brings the database schema up to date.
pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = apply(client).await;
    // Unlock even after a failure; the session ends with the connection anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    outcome.and(unlocked.map(|_| ()))
}

async fn apply(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS xindao_schema (version BIGINT NOT NULL)")
        .await?;
    let current: i64 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM xindao_schema", &[])
        .await?
        .get(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO xindao_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    Ok(())
}
