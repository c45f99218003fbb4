//! Gathering a WAL's writes: the frames SQLite writes one by one are kept and written together, in writes of
//! at most [`MAX_WRITE`] bytes, when the commit frame's header arrives (or the next write is not adjacent, or
//! too much is gathered). Safe code only; kept apart from `file.rs`, which holds the raw VFS plumbing.

use std::ffi::c_int;

use rusqlite::ffi;

use super::Inner;
use crate::observe;

/// Most bytes gathered before they are written anyway (a very large transaction).
const MAX_GATHERED: usize = 1 << 20;

/// Most bytes per write: the default VFS takes a write's length modulo 128 KiB.
const MAX_WRITE: usize = 31 * 4096;

/// A WAL frame header's size; bytes 4..8 hold the database size after a commit, zero in other frames.
const FRAME_HEADER: usize = 24;

pub(super) struct Gathered {
    pub(super) bytes: Vec<u8>,
    /// File offset of `bytes[0]`.
    pub(super) start: i64,
    /// The write after a commit frame's header (its page) goes to the file directly.
    pub(super) next_direct: bool,
}

impl Gathered {
    /// One write SQLite makes to the WAL.
    pub(super) fn write(&mut self, inner: &Inner, bytes: &[u8], offset: i64) -> c_int {
        observe::sqlite_wal_write();
        if bytes.is_empty() {
            return pass(inner, bytes, offset);
        }
        if self.next_direct || !observe::gathering() {
            self.next_direct = false;
            let rc = self.flush(inner);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            return pass(inner, bytes, offset);
        }
        let end = self.start + self.bytes.len() as i64;
        if !self.bytes.is_empty() && offset != end {
            let rc = self.flush(inner);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if self.bytes.is_empty() {
            self.start = offset;
        }
        self.bytes.extend_from_slice(bytes);
        let commit_frame_header = bytes.len() == FRAME_HEADER && bytes[4..8] != [0, 0, 0, 0];
        if commit_frame_header {
            let rc = self.flush(inner);
            self.next_direct = rc == ffi::SQLITE_OK;
            return rc;
        }
        if self.bytes.len() >= MAX_GATHERED {
            return self.flush(inner);
        }
        ffi::SQLITE_OK
    }

    /// Writes what is gathered. On failure nothing stays gathered: SQLite gets the error and rolls back.
    pub(super) fn flush(&mut self, inner: &Inner) -> c_int {
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.start;
        for chunk in self.bytes.chunks(MAX_WRITE) {
            rc = pass(inner, chunk, offset);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        self.bytes.clear();
        rc
    }
}

/// A write to the WAL as the default VFS receives it.
fn pass(inner: &Inner, bytes: &[u8], offset: i64) -> c_int {
    observe::inner_wal_write(offset, bytes);
    inner.write(bytes, offset)
}
