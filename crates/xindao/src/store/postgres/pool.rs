//! Opening the PostgreSQL store: the connection pool (with TLS where the URL asks for it), the migrations and
//! the group-commit writer tasks; and the pooled-connection helpers every statement module runs through.
//! Kept apart from `mod.rs`, which maps each [`Store`](super::super::Store) call onto these.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::super::group_commit::{self, AppendQueue};
use super::super::{CommitSink, GroupCommit};
use super::{map_pg, tls, writer, PostgresStore};
use crate::error::{Error, Result};
use crate::rules;

const APPEND_QUEUE: usize = 16 * 1024;
/// Group-commit writers per node, each with its own connection and its share of the conversations: one
/// PostgreSQL backend runs a batch's statements one after another on one core, so a single writer caps a
/// node's appends however many cores the database has. Conversations never share a writer's batch with
/// another writer, so their row locks do not contend within a node.
const WRITERS_MAX: usize = 4;
/// Pool connections per writer: the rest of the pool serves logins, reads and room changes.
const POOL_PER_WRITER: usize = 4;
/// How long a call waits for a connection (or to open one) before answering `unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl PostgresStore {
    /// Connects to `url`, runs the embedded migrations and starts the group-commit task.
    pub async fn open(
        url: &str,
        pool_size: usize,
        commit: GroupCommit,
        sink: impl Into<CommitSink>,
    ) -> Result<Self> {
        Self::open_with_outbox(url, pool_size, commit, sink.into(), Default::default()).await
    }

    /// [`PostgresStore::open`], keeping webhook events for `outbox`'s endpoints (written in the transactions
    /// that commit them).
    pub async fn open_with_outbox(
        url: &str,
        pool_size: usize,
        commit: GroupCommit,
        sink: CommitSink,
        outbox: std::sync::Arc<super::super::Outbox>,
    ) -> Result<Self> {
        let tls::Target {
            config: mut pg,
            tls,
        } = tls::target(url)?;
        pg.connect_timeout(CONNECT_TIMEOUT);
        let manager_config = ManagerConfig {
            // Verified: a connection the server closed is detected before it is handed out.
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(pg, tls, manager_config),
            None => Manager::from_config(pg, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| Error::Internal(format!("postgres pool: {e}")))?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        super::super::migrate::postgres(&mut client).await?;
        drop(client);
        let writers = (pool_size / POOL_PER_WRITER).clamp(1, WRITERS_MAX);
        let (appends, receivers) = AppendQueue::sharded(APPEND_QUEUE, writers);
        let tasks = receivers
            .into_iter()
            .map(|jobs| {
                let backend = writer::PgBatch {
                    pool: pool.clone(),
                    outbox: outbox.clone(),
                };
                tokio::spawn(group_commit::run(backend, jobs, commit, sink.clone()))
            })
            .collect();
        tracing::info!(writers, "opened PostgreSQL store");
        Ok(PostgresStore {
            pool,
            appends,
            writer_tasks: Mutex::new(tasks),
            caps: rules::Caps::default(),
            outbox,
        })
    }

    /// Enforces these membership caps from now on (the default: [`rules::Caps::default`]).
    pub fn with_caps(mut self, caps: rules::Caps) -> Self {
        self.caps = caps;
        self
    }

    pub(super) async fn client(&self) -> Result<Object> {
        let started = std::time::Instant::now();
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| Error::Unavailable(format!("postgres: {e}")));
        let waited = started.elapsed();
        crate::obs::hops::observe(&crate::obs::hops::hops().pool_wait, waited);
        crate::obs::timing::add_db(waited);
        client
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let _timer = crate::obs::timing::DbTimer::start();
        let statement = client.prepare_cached(sql).await.map_err(map_pg)?;
        client.query(&statement, params).await.map_err(map_pg)
    }

    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }
}
