//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the committing thread,
//! and with `synchronous = NORMAL` it fsyncs the WAL and the database file there: the group-commit thread,
//! and every send waiting on it, waited for the disk. Under a sustained 1:1 load that left the core up to 15%
//! idle in iowait, and past saturation the committed rate fell as the offered load rose (checkpoints came
//! more often the faster the WAL grew).
//!
//! Here the commit thread only notes how many frames the WAL holds. A checkpointer thread with its own
//! connection copies the frames into the database while commits go on. SQLite starts the log over (instead
//! of growing it) only at a write transaction that begins with every frame already in the database, which
//! under a sustained load rarely happens (a transaction is nearly always open when a pass ends): the WAL then
//! grows until the commit thread checkpoints itself past [`WAL_FRAMES_MAX`], and meanwhile every commit
//! nudges the checkpointer into another short pass (at 15,000 1:1 msg/s, ~67 a second, two fsyncs each;
//! docs/decisions/wal-checkpoints.md lists what was tried against both). When a pass could not copy everything (frames committed
//! meanwhile, or held by a reader's snapshot), the checkpointer finishes while holding the writer.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::hooks::Wal;
use rusqlite::Connection;

use super::map_sqlite;
use crate::error::{Error, Result};

/// Frames in the WAL after which a checkpoint is due (~16 MiB; SQLite's own default is 1,000). Each checkpoint
/// fsyncs the WAL and the database and writes every page changed since the last one once, however often it
/// changed: a 1:1 load touches the same index leaves again and again, so 4,000 frames halve the checkpointer's
/// CPU per message against 1,000 (paired runs at 20,000 and 25,000 msg/s, docs/decisions/wal-checkpoints.md).
const CHECKPOINT_FRAMES: c_int = 4000;

/// Frames past which the writing thread checkpoints itself, as SQLite would: the checkpointer is not keeping
/// up (a sustained overload starves it of CPU), and holding off commits is the backpressure that bounds the
/// WAL (~64 MiB, the `journal_size_limit`) instead of letting it grow with the overload.
const WAL_FRAMES_MAX: c_int = 4 * CHECKPOINT_FRAMES;

/// How often the checkpointer looks without being nudged: a WAL left below the threshold when writes stop
/// would otherwise stay out of the database file until the next burst.
const IDLE_CHECK: Duration = Duration::from_secs(1);

thread_local! {
    /// The WAL's size in frames after the last commit made on this thread.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// Installed on the writer connection in place of SQLite's automatic checkpoint.
fn note_wal_size(_wal: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// Turns off the automatic checkpoint of `writer`: from now on the checkpointer thread ([`start`]) does it.
pub(super) fn take_over(writer: &Connection) {
    writer.wal_hook(Some(note_wal_size));
}

/// A handle on the checkpointer; once every one is dropped, the checkpointer stops.
#[derive(Clone)]
pub(super) struct Nudge {
    wake: SyncSender<()>,
    /// The WAL's size in frames after the latest commit, for the checkpointer to tell a nudge sent before
    /// the log started over (nothing to do: it would fsync two files for a handful of frames) from a due one.
    wal_frames: Arc<AtomicI32>,
}

impl Nudge {
    /// Called on the thread that just wrote through `writer`, still holding it: wakes the checkpointer when
    /// the WAL has grown enough (never blocking: a nudge already pending covers this one), or checkpoints
    /// right here when the WAL has outgrown the checkpointer.
    pub fn after_write(&self, writer: &Connection) {
        let frames = WAL_FRAMES.replace(0);
        if frames > 0 {
            self.wal_frames.store(frames, Ordering::Relaxed);
        }
        if frames >= WAL_FRAMES_MAX {
            if let Err(error) = checkpoint(writer) {
                tracing::warn!(%error, frames, "WAL checkpoint failed; will retry");
            }
        } else if frames >= CHECKPOINT_FRAMES {
            let _ = self.wake.try_send(());
        }
    }
}

/// Starts the checkpointer thread on its own connection to `path`. It ends once the [`Nudge`] is dropped.
pub(super) fn start(
    path: &Path,
    writer: Arc<Mutex<Connection>>,
) -> Result<(Nudge, std::thread::JoinHandle<()>)> {
    let conn = super::open_connection(path, rusqlite::OpenFlags::default()).map_err(map_sqlite)?;
    let (wake, nudges) = sync_channel(1);
    let wal_frames = Arc::new(AtomicI32::new(0));
    let nudge = Nudge {
        wake,
        wal_frames: wal_frames.clone(),
    };
    let handle = std::thread::Builder::new()
        .name("xindao-checkpoint".into())
        .spawn(move || run(conn, writer, nudges, &wal_frames))
        .map_err(|e| Error::Internal(format!("cannot start checkpoint thread: {e}")))?;
    Ok((nudge, handle))
}

fn run(
    conn: Connection,
    writer: Arc<Mutex<Connection>>,
    nudges: Receiver<()>,
    wal_frames: &AtomicI32,
) {
    loop {
        match nudges.recv_timeout(IDLE_CHECK) {
            // Commits nudge until the log starts over, so one may still be pending after it did.
            Ok(()) if wal_frames.load(Ordering::Relaxed) < CHECKPOINT_FRAMES => continue,
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        // The bulk of the copying and both fsyncs happen here, beside the commits.
        match checkpoint(&conn) {
            Ok(Progress::Complete) => continue,
            Ok(Progress::Partial) => {}
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint failed; will retry");
                continue;
            }
        }
        // A reader's snapshot held frames back: finish with commits held off, so that the next commit
        // restarts the log. Not done after a complete pass, although a write transaction is nearly always open
        // when one ends (so the log only starts over in a pause between transactions, several times a second
        // under load, and a pass often copies only what was committed since the last): forcing the restart
        // there halved the fsyncs but not the CPU, and stalled commits 2-8 ms several times a second (p99 at
        // 15,000 msg/s 10-14 ms against 6-7).
        let _no_commits = writer.lock();
        if let Err(error) = checkpoint(&conn) {
            tracing::warn!(%error, "WAL checkpoint failed; will retry");
        }
    }
}

enum Progress {
    /// Every frame of the WAL is in the database.
    Complete,
    /// Frames remain (committed during the checkpoint, or held by a reader's snapshot).
    Partial,
}

/// One passive checkpoint: copies what it can without waiting for readers or the writer.
fn checkpoint(conn: &Connection) -> rusqlite::Result<Progress> {
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    Ok(if busy == 0 && done >= log {
        Progress::Complete
    } else {
        Progress::Partial
    })
}
