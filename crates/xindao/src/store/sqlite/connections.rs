//! The SQLite store's connections: how the writer is set up, the readers opened, and how calls take a
//! connection (a permit first, so that waiting calls are tasks rather than parked blocking-pool threads).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{map_sqlite, open_connection, SqliteStore};
use crate::config::SqliteSync;
use crate::error::{Error, Result};

/// Bytes the WAL file is cut back to when the log starts over.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// WAL mode and durability, before the schema is migrated. Returns the `synchronous` mode set.
pub(super) fn set_up_writer(writer: &Connection, synchronous: SqliteSync) -> Result<&'static str> {
    writer
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(map_sqlite)?;
    // A load burst can outrun the checkpointer and grow the WAL; the file shrinks back when it restarts.
    writer
        .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(map_sqlite)?;
    let sync_mode = match synchronous {
        SqliteSync::Normal => "NORMAL",
        SqliteSync::Full => "FULL",
    };
    writer
        .pragma_update(None, "synchronous", sync_mode)
        .map_err(map_sqlite)?;
    Ok(sync_mode)
}

/// The writer's page cache and the database size quota.
pub(super) fn limit_writer(
    writer: &Connection,
    cache_mb: u64,
    max_db_mb: Option<u64>,
) -> Result<()> {
    // Negative: a size in KiB rather than in pages. SQLite allocates the cache as it fills.
    writer
        .pragma_update(None, "cache_size", -((cache_mb * 1024) as i64))
        .map_err(map_sqlite)?;
    if let Some(mb) = max_db_mb {
        let page_size: u64 = writer
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(map_sqlite)?;
        let pages = (mb * 1024 * 1024 / page_size.max(512)).max(1);
        writer
            .pragma_update(None, "max_page_count", pages)
            .map_err(map_sqlite)?;
    }
    Ok(())
}

/// The read-only connections.
pub(super) fn open_readers(path: &Path, count: usize) -> Result<Arc<[Mutex<Connection>]>> {
    let readers: Arc<[Mutex<Connection>]> = (0..count)
        .map(|_| {
            open_connection(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map(Mutex::new)
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map_sqlite)?
        .into();
    Ok(readers)
}

/// A permit of `slots`, for a blocking call to hold until its work is done.
async fn take_slot(slots: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit> {
    slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Unavailable("store closed".into()))
}

impl SqliteStore {
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let _timer = crate::obs::timing::DbTimer::start();
        let slot = take_slot(&self.read_slots).await?;
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // A quick read may hold one reader on an async thread for a moment: take whichever is free.
            match readers.iter().find_map(|reader| reader.try_lock()) {
                Some(reader) => f(&reader),
                None => f(&readers[index].lock()),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
        .map_err(map_sqlite)
    }

    /// For point lookups (microseconds): runs on the calling thread when a reader is free, saving the two
    /// thread hand-offs of the blocking pool on hot paths (every upgrade, every `to_user` send).
    pub(super) async fn read_quick<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        if let Some(reader) = self.readers.iter().find_map(|reader| reader.try_lock()) {
            let _timer = crate::obs::timing::DbTimer::start();
            return f(&reader).map_err(map_sqlite);
        }
        self.read(f).await
    }

    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _timer = crate::obs::timing::DbTimer::start();
        let slot = take_slot(&self.write_slot).await?;
        let writer = self.writer.clone();
        let checkpoint = self.checkpoint.lock().clone();
        tokio::task::spawn_blocking(move || {
            // Held until the work is done, even if the caller stops waiting for it.
            let _slot = slot;
            let mut writer = writer.lock();
            let outcome = f(&mut writer);
            if let Some(checkpoint) = checkpoint {
                checkpoint.after_write(&writer);
            }
            outcome
        })
        .await
        .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
    }
}
