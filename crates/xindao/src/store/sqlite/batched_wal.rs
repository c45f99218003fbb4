//! A VFS for the writing connection that hands a commit's WAL frames to the kernel in one write.
//!
//! SQLite writes each WAL frame with two `pwrite` calls (a 24-byte header, then the page), so a commit of 40
//! frames costs 80 system calls, and as a 4,120-byte frame straddles two pages of the file, the kernel visits
//! each file page about three times. This VFS wraps SQLite's default one and gathers the WAL writes that
//! follow each other in the file, handing them over when the commit frame arrives (or earlier, before any
//! other operation on the WAL file, a non-contiguous write, or past [`MAX_GATHERED`] bytes). Everything else
//! passes through.
//!
//! What keeps it safe: another connection (a reader, the checkpointer) can only see frames once the writer
//! publishes the new WAL header in shared memory, which SQLite does after the last write of a commit. The
//! last write of a commit is either the commit frame's page, right after its header (the header, which marks
//! the commit with a non-zero database size, flushes everything gathered and lets the page through
//! directly), or the commit frame's header again when SQLite recomputes checksums after overwriting frames (it
//! is flushed on arrival). So by the time a commit is published, and before `sqlite3_step` returns, every
//! frame is in the kernel, exactly as without this VFS; a process crash loses nothing more. A failed write
//! is reported by the write that makes it (the commit frame), so SQLite rolls back as it would.

use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections pass to open through this VFS.
pub(super) const NAME: &CStr = c"xindao-batched-wal";

/// Most bytes gathered before they are written anyway (a very large transaction).
const MAX_GATHERED: usize = 1 << 20;

/// Most bytes per write: the default VFS takes a write's length modulo 128 KiB.
const MAX_WRITE: usize = 31 * 4096;

/// A WAL frame header's size; bytes 4..8 hold the database size after a commit, zero in other frames.
const FRAME_HEADER: usize = 24;

/// SQLite's default VFS, which every call is forwarded to.
struct Inner(*mut ffi::sqlite3_vfs);

// SAFETY: a registered VFS is immutable and lives as long as the process; SQLite calls it from any thread.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();

/// Registers the VFS (once; not as the default). Returns whether it can be used.
pub(super) fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS or null; the struct given to
        // `sqlite3_vfs_register` is leaked, as SQLite keeps the pointer for the life of the process.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(std::ptr::null());
            if inner.is_null() || INNER.set(Inner(inner)).is_err() {
                return false;
            }
            let mut vfs = *inner;
            vfs.iVersion = vfs.iVersion.min(3);
            vfs.szOsFile = (INNER_OFFSET + (*inner).szOsFile as usize) as c_int;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.xOpen = Some(open);
            let vfs = Box::leak(Box::new(vfs));
            ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
        }
    })
}

/// What SQLite allocates per open file (`szOsFile` bytes): this header, then the default VFS's file.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// Writes gathered for a WAL file; null for other files, which pass straight through.
    gathered: *mut Gathered,
}

const INNER_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

struct Gathered {
    bytes: Vec<u8>,
    /// File offset of `bytes[0]`.
    start: i64,
    /// The write after a commit frame's header (its page) goes to the file directly.
    next_direct: bool,
}

/// # Safety
/// `file` must be a `File` opened by [`open`].
unsafe fn inner_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    (file as *mut u8).add(INNER_OFFSET) as *mut ffi::sqlite3_file
}

/// # Safety
/// As [`inner_file`]; the inner file must be open.
unsafe fn inner_methods<'a>(file: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    &*(*inner_file(file)).pMethods
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(inner_vfs) = INNER.get().map(|inner| inner.0) else {
        return ffi::SQLITE_ERROR;
    };
    let Some(inner_open) = (*inner_vfs).xOpen else {
        return ffi::SQLITE_ERROR;
    };
    let wrapper = file as *mut File;
    (*wrapper).base.pMethods = std::ptr::null();
    (*wrapper).gathered = std::ptr::null_mut();
    let rc = inner_open(inner_vfs, name, inner_file(file), flags, out_flags);
    if rc != ffi::SQLITE_OK || (*inner_file(file)).pMethods.is_null() {
        return rc;
    }
    if flags & ffi::SQLITE_OPEN_WAL != 0 {
        (*wrapper).gathered = Box::into_raw(Box::new(Gathered {
            bytes: Vec::new(),
            start: 0,
            next_direct: false,
        }));
    }
    (*wrapper).base.pMethods = &METHODS;
    rc
}

/// Writes what is gathered. On failure nothing stays gathered: SQLite gets the error and rolls back.
///
/// # Safety
/// `file` must be a `File` opened by [`open`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let gathered = (*(file as *mut File)).gathered;
    if gathered.is_null() || (*gathered).bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let gathered = &mut *gathered;
    let mut rc = ffi::SQLITE_OK;
    let mut offset = gathered.start;
    for chunk in gathered.bytes.chunks(MAX_WRITE) {
        rc = write_through(
            file,
            chunk.as_ptr() as *const c_void,
            chunk.len() as c_int,
            offset,
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    gathered.bytes.clear();
    #[cfg(test)]
    tests::FLUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    rc
}

unsafe fn write_through(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    match inner_methods(file).xWrite {
        Some(write) => write(inner_file(file), data, len, offset),
        None => ffi::SQLITE_IOERR_WRITE,
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    let gathered_ptr = (*(file as *mut File)).gathered;
    if gathered_ptr.is_null() || len <= 0 || data.is_null() {
        return write_through(file, data, len, offset);
    }
    let gathered = &mut *gathered_ptr;
    if gathered.next_direct {
        gathered.next_direct = false;
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        return write_through(file, data, len, offset);
    }
    let end = gathered.start + gathered.bytes.len() as i64;
    if !gathered.bytes.is_empty() && offset != end {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if gathered.bytes.is_empty() {
        gathered.start = offset;
    }
    let bytes = std::slice::from_raw_parts(data as *const u8, len as usize);
    #[cfg(test)]
    tests::GATHERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    gathered.bytes.extend_from_slice(bytes);
    let commit_frame_header = bytes.len() == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
    if commit_frame_header {
        let rc = flush(file);
        gathered.next_direct = rc == ffi::SQLITE_OK;
        return rc;
    }
    if gathered.bytes.len() >= MAX_GATHERED {
        return flush(file);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let flushed = flush(file);
    let wrapper = file as *mut File;
    if !(*wrapper).gathered.is_null() {
        drop(Box::from_raw((*wrapper).gathered));
        (*wrapper).gathered = std::ptr::null_mut();
    }
    let closed = match inner_methods(file).xClose {
        Some(close) => close(inner_file(file)),
        None => ffi::SQLITE_OK,
    };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// Forwards an io method to the default VFS's file, writing what is gathered first. `$since` is the io-methods
/// version that added the method: a file whose methods are older does not have the field at all.
macro_rules! forward {
    ($name:ident, $method:ident, $since:literal, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let methods = inner_methods(file);
            match if methods.iVersion >= $since { methods.$method } else { None } {
                Some(method) => method(inner_file(file) $(, $arg)*),
                None => $missing,
            }
        }
    };
}

forward!(read, xRead, 1, (data: *mut c_void, len: c_int, offset: i64), ffi::SQLITE_IOERR_READ);
forward!(truncate, xTruncate, 1, (size: i64), ffi::SQLITE_IOERR_TRUNCATE);
forward!(sync, xSync, 1, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
forward!(file_size, xFileSize, 1, (size: *mut i64), ffi::SQLITE_IOERR_FSTAT);
forward!(lock, xLock, 1, (level: c_int), ffi::SQLITE_OK);
forward!(unlock, xUnlock, 1, (level: c_int), ffi::SQLITE_OK);
forward!(check_reserved_lock, xCheckReservedLock, 1, (out: *mut c_int), ffi::SQLITE_OK);
forward!(file_control, xFileControl, 1, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
forward!(shm_map, xShmMap, 2, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_SHMMAP);
forward!(shm_lock, xShmLock, 2, (offset: c_int, n: c_int, flags: c_int), ffi::SQLITE_IOERR_SHMLOCK);
forward!(shm_unmap, xShmUnmap, 2, (delete: c_int), ffi::SQLITE_OK);
// Without memory-mapped reads SQLite expects no page and reads the file instead.
forward!(fetch, xFetch, 3, (offset: i64, len: c_int, out: *mut *mut c_void), {
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
forward!(unfetch, xUnfetch, 3, (offset: i64, page: *mut c_void), ffi::SQLITE_OK);

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    match inner_methods(file).xSectorSize {
        Some(method) => method(inner_file(file)),
        None => 4096,
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    match inner_methods(file).xDeviceCharacteristics {
        Some(method) => method(inner_file(file)),
        None => 0,
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    let methods = inner_methods(file);
    if methods.iVersion >= 2 {
        if let Some(method) = methods.xShmBarrier {
            method(inner_file(file))
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rusqlite::{params, Connection, OpenFlags};

    /// WAL writes gathered, and the writes that handed them to the kernel.
    pub(super) static GATHERED: AtomicUsize = AtomicUsize::new(0);
    pub(super) static FLUSHES: AtomicUsize = AtomicUsize::new(0);

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count")
    }

    /// What a crash would leave: the database and WAL files as the kernel has them, opened elsewhere (SQLite
    /// recovers the WAL from the file alone, checking every frame's checksum).
    fn copy_as_after_a_crash(from: &Path, to: &Path) -> Connection {
        std::fs::create_dir_all(to).expect("dir");
        for suffix in ["", "-wal"] {
            let source = format!("{}{suffix}", from.display());
            let target = format!("{}{suffix}", to.join("copy.db").display());
            std::fs::copy(source, target).expect("copy");
        }
        Connection::open(to.join("copy.db")).expect("open copy")
    }

    /// After every commit, before the writer does anything else, the committed rows are visible to another
    /// connection and are in the files (a copy recovers them with valid checksums), including commits that
    /// overwrote frames of their own (a tiny cache spills pages mid-transaction, then SQLite rewrites them
    /// and recomputes checksums); and the frames did go out gathered.
    #[test]
    fn every_commit_is_in_the_files_when_it_returns() {
        assert!(super::super::prepare_sqlite());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.db");
        let writer = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), super::NAME)
            .expect("open");
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .expect("sync");
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no checkpoints");
        writer
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB NOT NULL);",
            )
            .expect("schema");
        let reader = Connection::open(&path).expect("reader");
        let mut expected = 0i64;
        let mut key: u64 = 7;
        for round in 0..12usize {
            // Rounds 4..8 run with a 5-page cache: pages spill to the WAL before the commit and are
            // written again, so SQLite overwrites frames and rewrites their checksums at the commit.
            let cache = if (4..8).contains(&round) { 5 } else { 2000 };
            writer
                .pragma_update(None, "cache_size", cache)
                .expect("cache");
            let rows = 1 + round * 150;
            writer.execute_batch("BEGIN").expect("begin");
            for _ in 0..rows {
                key = key
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                writer
                    .execute(
                        "INSERT INTO t (k, v) VALUES (?1, randomblob(200))",
                        params![format!("{key:016x}")],
                    )
                    .expect("insert");
            }
            if round % 5 == 3 {
                writer.execute_batch("ROLLBACK").expect("rollback");
            } else {
                writer.execute_batch("COMMIT").expect("commit");
                expected += rows as i64;
            }
            assert_eq!(count(&reader), expected, "reader, round {round}");
            let copy = copy_as_after_a_crash(&path, &dir.path().join(format!("crash{round}")));
            assert_eq!(count(&copy), expected, "copy, round {round}");
            let check: String = copy
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("check");
            assert_eq!(check, "ok", "copy, round {round}");
        }
        let gathered = GATHERED.load(Ordering::Relaxed);
        let flushes = FLUSHES.load(Ordering::Relaxed);
        assert!(
            flushes * 4 < gathered,
            "{gathered} WAL writes went out in {flushes} writes: not gathered"
        );
    }
}
