//! Schema migrations: `.sql` files per backend under `crates/xindao/migrations/`, embedded in the binary and
//! applied in version order by one runner at start.
//!
//! Each backend keeps the version marker its earlier, hand-written runner kept, so databases created before
//! the files existed open without a step of their own: SQLite records the applied version in
//! `PRAGMA user_version`, PostgreSQL one row per applied version in `xindao_schema` (and takes an advisory
//! lock, so that of several nodes starting at once exactly one migrates). Each migration runs in one
//! transaction with its marker. (refinery was considered: its releases that accept rusqlite 0.37 need Rust
//! 1.92 against our 1.85, it keeps its own history table, so existing databases would need it seeded, and it
//! does not lock out concurrent nodes.)

use std::future::Future;

use crate::error::Result;

/// One schema change: `migrations/<backend>/NNNN_name.sql`.
pub(crate) struct Migration {
    pub version: i64,
    /// The file's path under `migrations/`.
    pub file: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal) => {
        Migration {
            version: $version,
            file: $file,
            sql: include_str!(concat!("../../migrations/", $file)),
        }
    };
}

/// The SQLite migrations, in order.
pub(crate) const SQLITE: &[Migration] = &[
    migration!(1, "sqlite/0001_initial.sql"),
    migration!(2, "sqlite/0002_messages_cmid_first.sql"),
    migration!(3, "sqlite/0003_login_hardening.sql"),
    migration!(4, "sqlite/0004_rooms_by_owner.sql"),
    migration!(5, "sqlite/0005_server_api.sql"),
    migration!(6, "sqlite/0006_profiles_and_recall.sql"),
    migration!(7, "sqlite/0007_media.sql"),
    migration!(8, "sqlite/0008_webhook_outbox.sql"),
    migration!(9, "sqlite/0009_webhook_ids_never_reused.sql"),
    migration!(10, "sqlite/0010_webhook_request_id.sql"),
    migration!(11, "sqlite/0011_media_uses.sql"),
    migration!(12, "sqlite/0012_wechat.sql"),
    migration!(13, "sqlite/0013_offline_marks.sql"),
];

/// The PostgreSQL migrations, in order.
pub(crate) const POSTGRES: &[Migration] = &[
    migration!(1, "postgres/0001_initial.sql"),
    migration!(2, "postgres/0002_login_hardening.sql"),
    migration!(3, "postgres/0003_rooms_by_owner.sql"),
    migration!(4, "postgres/0004_server_api.sql"),
    migration!(5, "postgres/0005_profiles_and_recall.sql"),
    migration!(6, "postgres/0006_media.sql"),
    migration!(7, "postgres/0007_webhook_outbox.sql"),
    migration!(8, "postgres/0008_webhook_request_id.sql"),
    migration!(9, "postgres/0009_media_uses.sql"),
    migration!(10, "postgres/0010_wechat.sql"),
    migration!(11, "postgres/0011_offline_marks.sql"),
];

/// A database whose schema the runner brings up to date.
pub(crate) trait Schema {
    /// The last version applied (0 for an empty database).
    fn version(&mut self) -> impl Future<Output = Result<i64>> + Send;
    /// Applies one migration and records its version, in one transaction.
    fn apply(&mut self, migration: &Migration) -> impl Future<Output = Result<()>> + Send;
}

/// Applies every migration newer than the database's version, in order. A database newer than this binary
/// is left as it is (an older node of a cluster being upgraded keeps working).
pub(crate) async fn run(schema: &mut impl Schema, migrations: &[Migration]) -> Result<()> {
    let current = schema.version().await?;
    let known = migrations.last().map_or(0, |m| m.version);
    if current > known {
        tracing::warn!(current, known, "database schema is newer than this server");
    }
    for migration in migrations.iter().filter(|m| m.version > current) {
        schema.apply(migration).await?;
        tracing::info!(
            version = migration.version,
            file = migration.file,
            "applied migration"
        );
    }
    Ok(())
}

/// SQLite: the version is `PRAGMA user_version`.
pub(crate) struct Sqlite<'a>(pub &'a mut rusqlite::Connection);

impl Schema for Sqlite<'_> {
    fn version(&mut self) -> impl Future<Output = Result<i64>> + Send {
        let version = self
            .0
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(super::backend_errors::map_sqlite);
        std::future::ready(version)
    }

    fn apply(&mut self, migration: &Migration) -> impl Future<Output = Result<()>> + Send {
        let applied = (|| {
            let tx = self.0.transaction()?;
            tx.execute_batch(migration.sql)?;
            tx.pragma_update(None, "user_version", migration.version)?;
            tx.commit()
        })()
        .map_err(super::backend_errors::map_sqlite);
        std::future::ready(applied)
    }
}

/// PostgreSQL: the versions are rows of `xindao_schema`.
pub(crate) struct Postgres<'a>(pub &'a mut tokio_postgres::Client);

impl Schema for Postgres<'_> {
    async fn version(&mut self) -> Result<i64> {
        let client = &mut *self.0;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS xindao_schema (version BIGINT NOT NULL)")
            .await
            .map_err(super::backend_errors::map_pg)?;
        let row = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM xindao_schema", &[])
            .await
            .map_err(super::backend_errors::map_pg)?;
        row.try_get(0).map_err(super::backend_errors::map_pg)
    }

    async fn apply(&mut self, migration: &Migration) -> Result<()> {
        let tx = self
            .0
            .transaction()
            .await
            .map_err(super::backend_errors::map_pg)?;
        tx.batch_execute(migration.sql)
            .await
            .map_err(super::backend_errors::map_pg)?;
        tx.execute(
            "INSERT INTO xindao_schema (version) VALUES ($1)",
            &[&migration.version],
        )
        .await
        .map_err(super::backend_errors::map_pg)?;
        tx.commit().await.map_err(super::backend_errors::map_pg)
    }
}

/// Arbitrary constant naming xindao's migration lock on PostgreSQL.
const POSTGRES_LOCK: i64 = 0x7869_6e64_616f;

/// Migrates a PostgreSQL database, holding the advisory lock that makes concurrent nodes take turns.
pub(crate) async fn postgres(client: &mut tokio_postgres::Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&POSTGRES_LOCK])
        .await
        .map_err(super::backend_errors::map_pg)?;
    let outcome = run(&mut Postgres(client), POSTGRES).await;
    // Unlock even after a failure; the session ends with the connection anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&POSTGRES_LOCK])
        .await
        .map_err(super::backend_errors::map_pg);
    outcome.and(unlocked.map(|_| ()))
}

/// Migrates a SQLite database.
pub(crate) async fn sqlite(conn: &mut rusqlite::Connection) -> Result<()> {
    run(&mut Sqlite(conn), SQLITE).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn versions_follow_one_another_from_one() {
        for migrations in [SQLITE, POSTGRES] {
            for (index, migration) in migrations.iter().enumerate() {
                assert_eq!(migration.version, index as i64 + 1, "{}", migration.file);
                let number = format!("{:04}_", migration.version);
                assert!(migration.file.contains(&number), "{}", migration.file);
                assert!(!migration.sql.trim().is_empty());
            }
        }
    }

    /// A database that only records what was applied, failing at `fail_at`.
    struct Fake {
        version: i64,
        applied: Vec<i64>,
        fail_at: Option<i64>,
    }

    impl Schema for Fake {
        async fn version(&mut self) -> Result<i64> {
            Ok(self.version)
        }
        async fn apply(&mut self, migration: &Migration) -> Result<()> {
            if self.fail_at == Some(migration.version) {
                return Err(Error::Internal("broken".into()));
            }
            self.applied.push(migration.version);
            self.version = migration.version;
            Ok(())
        }
    }

    fn fake(version: i64, fail_at: Option<i64>) -> Fake {
        Fake {
            version,
            applied: Vec::new(),
            fail_at,
        }
    }

    fn run_now(schema: &mut Fake) -> Result<()> {
        futures_util::FutureExt::now_or_never(run(schema, SQLITE)).expect("no waiting")
    }

    #[test]
    fn applies_what_is_newer_than_the_marker_in_order() {
        let mut empty = fake(0, None);
        let all: Vec<i64> = (1..=SQLITE.len() as i64).collect();
        run_now(&mut empty).unwrap();
        assert_eq!(empty.applied, all);
        run_now(&mut empty).unwrap();
        assert_eq!(empty.applied, all, "nothing twice");
        let mut at_one = fake(1, None);
        run_now(&mut at_one).unwrap();
        assert_eq!(at_one.applied, all[1..]);
        let mut newer = fake(all.len() as i64 + 1, None);
        run_now(&mut newer).unwrap();
        assert!(newer.applied.is_empty());
    }

    #[test]
    fn stops_at_a_failing_migration() {
        let mut schema = fake(0, Some(2));
        assert!(matches!(run_now(&mut schema), Err(Error::Internal(_))));
        assert_eq!((schema.applied, schema.version), (vec![1], 1));
    }
}
