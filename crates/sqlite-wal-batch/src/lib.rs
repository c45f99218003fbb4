//! A SQLite VFS that hands each commit's WAL frames to the kernel in one write.
//!
//! # Why
//!
//! SQLite appends a frame to the write-ahead log with two `pwrite` calls: the 24-byte frame header, then the
//! page. A commit of 40 frames costs 80 system calls, and as a 4,120-byte frame straddles two pages of the
//! file, the kernel visits each file page about three times. In xindao's group-commit thread at 15,000 msg/s
//! this VFS took `pwrite64` from 2.23 to 0.22 calls per message (docs/decisions/sqlite-wal-batch.md).
//!
//! # What it does
//!
//! It wraps SQLite's default VFS. Files other than a WAL pass straight through. For a WAL file it gathers
//! writes that follow each other in the file and hands them over in one write (split under 128 KiB, as the
//! default VFS takes a write's length modulo 128 KiB) when:
//! - the commit frame's header arrives (a header whose database-size field, bytes 4..8, is non-zero): it is
//!   written with everything before it, and the next write, the commit frame's page, goes straight through;
//! - any other operation reaches the WAL file (read, sync, lock, truncate, file control, shared memory...);
//! - a write does not follow the gathered bytes; or more than 1 MiB is gathered.
//!
//! # What it relies on
//!
//! Another connection (a reader, the checkpointer) sees frames only once the writer publishes the new WAL
//! index header in shared memory, which SQLite does after the last write of a commit. That last write is
//! either the commit frame's page, written right after its header, or, when a transaction overwrote frames of
//! its own and SQLite rewrites their checksums, the commit frame's header again (flushed on arrival). So by
//! the time a commit is published, and before `sqlite3_step` returns, every frame is in the kernel, exactly
//! as without this VFS; a process crash loses nothing more. A failed write is reported by the write that
//! makes it (at the latest the commit frame's header), so SQLite rolls the transaction back as it would.
//!
//! This holds only while SQLite writes each frame as a separate header write followed by a page write and
//! marks the commit frame in its header. Were SQLite to write whole frames at once, the commit frame would be
//! held back after the commit returned. The tests guard it: one records what the default VFS receives with
//! gathering off and fails unless every frame arrives as a 24-byte header then its page, the last header
//! alone marking the commit; another copies the database and WAL after every commit, as a crash would leave
//! them, and checks the copy recovers every committed row with `integrity_check` "ok".
//!
//! # Use
//!
//! Call [`register`] once, then open the writing connection with the VFS [`NAME`] (rusqlite:
//! `Connection::open_with_flags_and_vfs(path, flags, sqlite_wal_batch::NAME)`). Other connections need not use
//! it. The VFS is registered beside the default one, never as the default.
//!
//! All of the crate's unsafe code is the C interface of a VFS: each block says why it is sound.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

use std::ffi::{c_int, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

mod file;

#[cfg(test)]
mod tests;

/// The VFS name to open the writing connection with.
pub const NAME: &CStr = c"sqlite-wal-batch";

/// Registers the VFS (once per process, not as the default). Returns whether connections can open with
/// [`NAME`]; if not, open them with the default VFS, which is only slower.
pub fn register() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: a null name asks for the default VFS; SQLite initialises itself if needed and returns a
        // registered VFS or null.
        let inner = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if inner.is_null() || file::DEFAULT_VFS.set(file::DefaultVfs(inner)).is_err() {
            return false;
        }
        // SAFETY: `inner` is non-null and points to a registered VFS, which SQLite keeps alive (the default
        // VFS is a static inside SQLite); copying the struct reads it only.
        let mut vfs = unsafe { *inner };
        // Every method but xOpen stays the default VFS's own: it is called with this copy, which carries the
        // same pAppData, mxPathname and the like it reads. Version 3 is the newest layout this struct has.
        vfs.iVersion = vfs.iVersion.min(3);
        vfs.szOsFile = (file::INNER_OFFSET + vfs.szOsFile as usize) as c_int;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.xOpen = Some(file::open);
        let vfs = Box::leak(Box::new(vfs));
        // SAFETY: `vfs` is a complete sqlite3_vfs, leaked so that it lives for the rest of the process as
        // SQLite requires of a registered VFS, and `zName` points to a static C string.
        unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
    })
}

/// What the tests observe: with gathering switched off, and every write the default VFS receives. Without
/// `cfg(test)` these compile to nothing.
#[cfg(not(test))]
mod observe {
    #[inline(always)]
    pub(crate) fn gathering() -> bool {
        true
    }

    #[inline(always)]
    pub(crate) fn inner_wal_write(_offset: i64, _bytes: &[u8]) {}

    #[inline(always)]
    pub(crate) fn sqlite_wal_write() {}
}

#[cfg(test)]
use tests::observe;
