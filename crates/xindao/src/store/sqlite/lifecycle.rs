//! Opening and closing the SQLite store: the connections (writer through the batched-WAL VFS, readers), the
//! migrations, the group-commit and checkpoint threads, and their orderly stop. Kept apart from `mod.rs`,
//! which maps each [`Store`](super::super::Store) call onto the connections.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use super::super::group_commit::AppendQueue;
use super::super::CommitSink;
use super::super::GroupCommit;
use super::{checkpoint, connections, map_sqlite, writer, SqliteStore};
use crate::config::SqliteSync;
use crate::error::{Error, Result};
use crate::rules;

const READERS: usize = 4;
const APPEND_QUEUE: usize = 16 * 1024;

/// How to open the SQLite store.
#[derive(Debug, Clone, Copy)]
pub struct SqliteOptions {
    pub synchronous: SqliteSync,
    /// How message appends are grouped into transactions.
    pub commit: GroupCommit,
    /// Database size quota in MiB; writes beyond it fail like a full disk.
    pub max_db_mb: Option<u64>,
    /// Page cache of the writing connection in MiB.
    pub cache_mb: u64,
}

pub(super) fn open_connection(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    configure(Connection::open_with_flags(path, flags)?)
}

/// The writing connection, through the VFS that writes a commit's WAL frames at once (`sqlite-wal-batch`,
/// docs/decisions/sqlite-wal-batch.md) where it can be used.
fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    if !sqlite_wal_batch::register() {
        tracing::warn!("sqlite: batched WAL writes unavailable, using the default VFS");
        return open_connection(path, OpenFlags::default());
    }
    configure(Connection::open_with_flags_and_vfs(
        path,
        OpenFlags::default(),
        sqlite_wal_batch::NAME,
    )?)
}

fn configure(conn: Connection) -> rusqlite::Result<Connection> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/xindao.db`, migrates it and starts the group-commit thread.
    pub async fn open(
        data_dir: &Path,
        options: SqliteOptions,
        sink: impl Into<CommitSink>,
    ) -> Result<Self> {
        Self::open_with_outbox(data_dir, options, sink.into(), Arc::default()).await
    }

    /// [`SqliteStore::open`], keeping webhook events for `outbox`'s endpoints (written in the transactions
    /// that commit them).
    pub async fn open_with_outbox(
        data_dir: &Path,
        options: SqliteOptions,
        sink: CommitSink,
        outbox: Arc<super::super::Outbox>,
    ) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join("xindao.db");
        let mut writer = open_writer(&path).map_err(map_sqlite)?;
        let sync_mode = connections::set_up_writer(&writer, options.synchronous)?;
        super::super::migrate::sqlite(&mut writer).await?;
        connections::limit_writer(&writer, options.cache_mb, options.max_db_mb)?;
        checkpoint::take_over(&writer);
        let readers = connections::open_readers(&path, READERS)?;
        let writer = Arc::new(Mutex::new(writer));
        let (appends, mut receivers) = AppendQueue::sharded(APPEND_QUEUE, 1);
        let jobs = receivers
            .pop()
            .ok_or_else(|| Error::Internal("no append queue".into()))?;
        let (nudge, checkpointer) = checkpoint::start(&path, writer.clone())?;
        let handle = writer::start(
            writer.clone(),
            jobs,
            options.commit,
            sink,
            nudge.clone(),
            outbox.clone(),
        )?;
        tracing::info!(path = %path.display(), synchronous = sync_mode, "opened SQLite store");
        Ok(SqliteStore {
            writer,
            readers,
            next_reader: AtomicUsize::new(0),
            read_slots: Arc::new(Semaphore::new(READERS)),
            write_slot: Arc::new(Semaphore::new(1)),
            appends,
            checkpoint: Mutex::new(Some(nudge)),
            threads: Mutex::new(vec![handle, checkpointer]),
            caps: rules::Caps::default(),
            outbox,
        })
    }

    /// Enforces these membership caps from now on (the default: [`rules::Caps::default`]).
    pub fn with_caps(mut self, caps: rules::Caps) -> Self {
        self.caps = caps;
        self
    }

    /// Stops the commit and checkpoint threads after the jobs they have, then checkpoints the WAL.
    pub(super) async fn close(&self) {
        // Dropping the last sender lets the commit thread finish the jobs it already has, then exit; the
        // checkpointer follows it.
        self.appends.close();
        drop(self.checkpoint.lock().take());
        let threads = std::mem::take(&mut *self.threads.lock());
        for handle in threads {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let checkpoint = self
            .write(|conn| {
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                    .map_err(map_sqlite)
            })
            .await;
        match checkpoint {
            Ok(()) => tracing::info!("SQLite store closed cleanly"),
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint at shutdown failed; the WAL stays valid")
            }
        }
    }
}
