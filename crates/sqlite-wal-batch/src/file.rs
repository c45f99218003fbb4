//! The VFS's files and their io methods: the gathering of WAL writes, and forwarding to the default VFS.
//!
//! SQLite allocates `szOsFile` bytes per open file and hands the VFS a pointer to them. This VFS lays them out
//! as a [`File`] (SQLite's `sqlite3_file`, then what was gathered), then, at [`INNER_OFFSET`], the default
//! VFS's own file. Raw pointers are turned into references once, in [`parts`]; the gathering itself is safe
//! code.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

mod gather;
use gather::Gathered;

/// SQLite's default VFS, which every call is forwarded to.
pub(crate) struct DefaultVfs(pub(crate) *mut ffi::sqlite3_vfs);

// SAFETY: the pointer is to a registered VFS, which SQLite never changes or frees while registered (the
// default VFS is a static inside SQLite) and calls from any thread; this crate only reads it.
unsafe impl Send for DefaultVfs {}
// SAFETY: as for `Send`: shared access only reads an immutable struct.
unsafe impl Sync for DefaultVfs {}

pub(crate) static DEFAULT_VFS: OnceLock<DefaultVfs> = OnceLock::new();

/// The start of every file this VFS opens.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// Writes gathered for a WAL file; `None` for other files, which pass straight through.
    gathered: Option<Box<Gathered>>,
}

/// Where the default VFS's file starts, past [`File`] (16-aligned, more than any file struct needs).
pub(crate) const INNER_OFFSET: usize = size_of::<File>().next_multiple_of(16);

/// The default VFS's file inside one of ours (pointer arithmetic only: nothing is read).
fn inner_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    file.cast::<u8>().wrapping_add(INNER_OFFSET).cast()
}

/// The default VFS's open file within one of ours. Only [`parts`] makes one, so holding one means the file is
/// open and its methods are there to call.
struct Inner<'a> {
    file: *mut ffi::sqlite3_file,
    methods: &'a ffi::sqlite3_io_methods,
}

impl Inner<'_> {
    fn write(&self, bytes: &[u8], offset: i64) -> c_int {
        let Some(write) = self.methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let len = c_int::try_from(bytes.len()).unwrap_or(c_int::MAX);
        // SAFETY: the inner file's own xWrite on the inner file, which is open (see `Inner`); the buffer holds
        // `len` readable bytes (a write is at most SQLite's own `c_int` length or MAX_WRITE) for the call.
        unsafe { write(self.file, bytes.as_ptr().cast(), len, offset) }
    }
}

/// Our part of a file SQLite passes to an io method, and the default VFS's open file after it.
///
/// # Safety
/// `file` must be a file SQLite passes to one of [`METHODS`]: [`open`] initialised its [`File`] and installed
/// `METHODS` only once the inner open succeeded, and `close` has not run. No other reference to it may be live
/// for `'a`: SQLite makes one call at a time on a file, from the connection that owns it.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut File, Inner<'a>) {
    let inner = inner_file(file);
    // SAFETY: per the contract `file` starts with the `File` that `open` wrote and nothing else refers to it
    // during this call. The reference covers only that header, not the inner file past INNER_OFFSET.
    let wrapper = unsafe { &mut *file.cast::<File>() };
    // SAFETY: per the contract the inner file is open, so its pMethods points to the default VFS's io
    // methods, which outlive the file.
    let methods = unsafe { &*(*inner).pMethods };
    (
        wrapper,
        Inner {
            file: inner,
            methods,
        },
    )
}

impl File {
    /// Writes what is gathered, before any other operation on the file.
    fn flush(&mut self, inner: &Inner) -> c_int {
        match self.gathered.as_deref_mut() {
            Some(gathered) => gathered.flush(inner),
            None => ffi::SQLITE_OK,
        }
    }
}

/// `xOpen`: opens the default VFS's file inside ours, gathering writes if it is a WAL.
///
/// # Safety
/// SQLite's xOpen contract: `file` points to `szOsFile` writable bytes as this VFS declared them (a [`File`],
/// then the default VFS's file at [`INNER_OFFSET`]), 8-aligned; SQLite makes no other call on it meanwhile.
/// `name`, `flags` and `out_flags` are SQLite's, passed on unchanged.
pub(crate) unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(default) = DEFAULT_VFS.get() else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: DEFAULT_VFS holds a registered VFS, live for the process (see `DefaultVfs`).
    let Some(inner_open) = (unsafe { (*default.0).xOpen }) else {
        return ffi::SQLITE_ERROR;
    };
    let inner = inner_file(file);
    // SAFETY: per the contract `file` has room for a `File` at its start, aligned for it (8, as for a
    // pointer), and nothing refers to it; `write` initialises it without reading or dropping what was there.
    // The inner file's pMethods is in the bytes SQLite sized for it and is nulled so that it reads as "not
    // open" whatever the inner open does.
    let wrapper = unsafe {
        file.cast::<File>().write(File {
            base: ffi::sqlite3_file {
                pMethods: std::ptr::null(),
            },
            gathered: None,
        });
        (*inner).pMethods = std::ptr::null();
        &mut *file.cast::<File>()
    };
    // SAFETY: the default VFS's own xOpen on itself, given the part of `file` it sized (its szOsFile bytes
    // from INNER_OFFSET, 16-aligned) and SQLite's arguments unchanged.
    let rc = unsafe { inner_open(default.0, name, inner, flags, out_flags) };
    // SAFETY: the inner file's header was initialised above and the inner open has returned.
    let inner_open = !unsafe { (*inner).pMethods }.is_null();
    // SQLite's contract: on failure pMethods stays null (and xClose is not called), so the inner open failed
    // with its own pMethods null too.
    if rc != ffi::SQLITE_OK || !inner_open {
        return rc;
    }
    if flags & ffi::SQLITE_OPEN_WAL != 0 {
        wrapper.gathered = Some(Box::new(Gathered {
            bytes: Vec::new(),
            start: 0,
            next_direct: false,
        }));
    }
    wrapper.base.pMethods = &METHODS;
    rc
}

/// `xWrite`: gathered for a WAL, passed through for other files.
///
/// # Safety
/// As [`parts`]; `data` points to `len` readable bytes (SQLite's xWrite contract).
unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: this function's contract includes `parts`'s.
    let (wrapper, inner) = unsafe { parts(file) };
    let bytes: &[u8] = if data.is_null() || len <= 0 {
        &[]
    } else {
        // SAFETY: per the contract `data` holds `len` readable bytes, unchanged during the call.
        unsafe { std::slice::from_raw_parts(data.cast(), len as usize) }
    };
    match wrapper.gathered.as_deref_mut() {
        Some(gathered) => gathered.write(&inner, bytes, offset),
        None => inner.write(bytes, offset),
    }
}

/// `xClose`: writes what is gathered, then closes the default VFS's file.
///
/// # Safety
/// As [`parts`]. SQLite makes no call on the file after this one.
unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: this function's contract is `parts`'s.
    let (wrapper, inner) = unsafe { parts(file) };
    let flushed = wrapper.flush(&inner);
    wrapper.gathered = None;
    let closed = match inner.methods.xClose {
        // SAFETY: the inner file's own xClose on the inner file, which is open; SQLite frees the memory after
        // this call returns, and nothing here touches it afterwards.
        Some(close) => unsafe { close(inner.file) },
        None => ffi::SQLITE_OK,
    };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// An io method forwarded to the default VFS's file, writing what is gathered first. `$since` is the
/// io-methods version that added the method: a file whose methods are older has no such field.
macro_rules! forward {
    ($name:ident, $method:ident, $since:literal, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        #[doc = concat!("`", stringify!($method), "`, forwarded after writing what is gathered.")]
        ///
        /// # Safety
        /// As [`parts`]; the other arguments are SQLite's for this method, passed on unchanged.
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: this function's contract is `parts`'s.
            let (wrapper, inner) = unsafe { parts(file) };
            let rc = wrapper.flush(&inner);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match if inner.methods.iVersion >= $since { inner.methods.$method } else { None } {
                // SAFETY: the inner file's own method on the inner file, which is open, with SQLite's
                // arguments for this method unchanged; the version check above shows the field exists.
                Some(method) => unsafe { method(inner.file $(, $arg)*) },
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
forward!(unfetch, xUnfetch, 3, (offset: i64, page: *mut c_void), ffi::SQLITE_OK);

/// `xFetch`, forwarded after writing what is gathered.
///
/// # Safety
/// As [`parts`]; `out` is writable (SQLite's xFetch contract), the other arguments are passed on unchanged.
unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    len: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: this function's contract includes `parts`'s.
    let (wrapper, inner) = unsafe { parts(file) };
    let rc = wrapper.flush(&inner);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    match if inner.methods.iVersion >= 3 {
        inner.methods.xFetch
    } else {
        None
    } {
        // SAFETY: the inner file's own xFetch on the inner file, which is open, with SQLite's arguments.
        Some(method) => unsafe { method(inner.file, offset, len, out) },
        None => {
            // SAFETY: per the contract `out` is writable. Given no page, SQLite reads the file instead.
            unsafe { *out = std::ptr::null_mut() };
            ffi::SQLITE_OK
        }
    }
}

/// `xSectorSize`, forwarded.
///
/// # Safety
/// As [`parts`].
unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: this function's contract is `parts`'s.
    let (_, inner) = unsafe { parts(file) };
    match inner.methods.xSectorSize {
        // SAFETY: the inner file's own method on the inner file, which is open.
        Some(method) => unsafe { method(inner.file) },
        None => 4096,
    }
}

/// `xDeviceCharacteristics`, forwarded.
///
/// # Safety
/// As [`parts`].
unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: this function's contract is `parts`'s.
    let (_, inner) = unsafe { parts(file) };
    match inner.methods.xDeviceCharacteristics {
        // SAFETY: the inner file's own method on the inner file, which is open.
        Some(method) => unsafe { method(inner.file) },
        None => 0,
    }
}

/// `xShmBarrier`, forwarded (a memory barrier: nothing gathered is involved).
///
/// # Safety
/// As [`parts`].
unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: this function's contract is `parts`'s.
    let (_, inner) = unsafe { parts(file) };
    if inner.methods.iVersion >= 2 {
        if let Some(method) = inner.methods.xShmBarrier {
            // SAFETY: the inner file's own method on the inner file, which is open; version 2 has the field.
            unsafe { method(inner.file) }
        }
    }
}

/// The io methods of every file this VFS opens.
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
