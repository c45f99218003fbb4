//! SQLite's own page cache, less one needless scan per commit.
//!
//! When SQLite splits a b-tree page it sorts the new pages by number, parking one of them for a moment under
//! the number of the lock page (page 262,145 at 4 KiB pages, a page the database never uses). Its page cache
//! then believes it holds a page that far out, and at the end of the transaction, asked to drop every page past
//! the end of the database, it walks its whole hash table instead of the few slots past the end. With the
//! writer's 64 MiB cache that is 16,384 slots, after nearly every commit under a 1:1 load: 3.6% of the
//! server's CPU at 20,000 msg/s (`perf`, BENCHMARKS.md).
//!
//! This wrapper keeps SQLite's cache and forwards every call to it, tracking the highest page number the cache
//! can hold (a page parked under the lock page's number is moved back before anything else happens). A
//! truncation that cannot drop anything is not forwarded.

use std::os::raw::{c_int, c_uint, c_void};
use std::sync::{Once, OnceLock};

use rusqlite::ffi;

/// SQLite's lock-byte offset (`PENDING_BYTE`, 1 GiB); the page holding it is never used by a database.
const PENDING_BYTE: c_uint = 0x4000_0000;

/// SQLite's default page cache, which every call is forwarded to.
struct Default(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods are plain function pointers and SQLite's own `pArg` (null for the default cache); SQLite
// calls them from any thread.
unsafe impl Send for Default {}
unsafe impl Sync for Default {}

static DEFAULT: OnceLock<Default> = OnceLock::new();

fn default() -> &'static ffi::sqlite3_pcache_methods2 {
    // Only reachable through methods installed after DEFAULT was set.
    &DEFAULT.get().expect("page cache wrapper installed").0
}

/// One cache (one per connection and database), as handed to SQLite.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The lock page's number at this cache's page size.
    lock_page: c_uint,
    /// No page in the cache has a higher number, pages parked under `lock_page` aside.
    max_key: c_uint,
    /// Pages parked under `lock_page` right now.
    parked: u32,
}

/// Installs the wrapper as SQLite's page cache. It must run before SQLite initialises (before the process's
/// first connection opens); later, SQLite refuses the change and keeps its default, which is only slower.
pub(super) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: both calls pass a pointer to a struct of the type the option takes; SQLite copies the
        // methods it is given. Before initialisation, GETPCACHE2 yields the default cache's methods.
        unsafe {
            let mut methods = std::mem::zeroed::<ffi::sqlite3_pcache_methods2>();
            let got = ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_GETPCACHE2,
                &mut methods as *mut ffi::sqlite3_pcache_methods2,
            );
            if got != ffi::SQLITE_OK || methods.xCreate.is_none() {
                tracing::debug!(code = got, "sqlite page cache: default not available");
                return;
            }
            if DEFAULT.set(Default(methods)).is_err() {
                return;
            }
            let wrapper = ffi::sqlite3_pcache_methods2 {
                iVersion: 1,
                pArg: std::ptr::null_mut(),
                xInit: Some(init),
                xShutdown: Some(shutdown),
                xCreate: Some(create),
                xCachesize: Some(cachesize),
                xPagecount: Some(pagecount),
                xFetch: Some(fetch),
                xUnpin: Some(unpin),
                xRekey: Some(rekey),
                xTruncate: Some(truncate),
                xDestroy: Some(destroy),
                xShrink: Some(shrink),
            };
            let set = ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PCACHE2,
                &wrapper as *const ffi::sqlite3_pcache_methods2,
            );
            if set != ffi::SQLITE_OK {
                tracing::debug!(code = set, "sqlite page cache: wrapper refused");
            }
        }
    });
}

/// The wrapper behind a cache pointer SQLite hands back.
///
/// # Safety
/// `cache` must come from [`create`] and not yet be destroyed; SQLite uses one cache from one thread at a time.
unsafe fn cache<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    &mut *(cache as *mut Cache)
}

unsafe extern "C" fn init(_arg: *mut c_void) -> c_int {
    let d = default();
    match d.xInit {
        Some(f) => f(d.pArg),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn shutdown(_arg: *mut c_void) {
    let d = default();
    if let Some(f) = d.xShutdown {
        f(d.pArg)
    }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(create) = default().xCreate else {
        return std::ptr::null_mut();
    };
    let inner = create(page_size, extra, purgeable);
    if inner.is_null() {
        return inner;
    }
    let lock_page = PENDING_BYTE / (page_size.max(512) as c_uint) + 1;
    let wrapped = Box::new(Cache {
        inner,
        lock_page,
        max_key: 0,
        parked: 0,
    });
    Box::into_raw(wrapped) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(c: *mut ffi::sqlite3_pcache, pages: c_int) {
    if let Some(f) = default().xCachesize {
        f(cache(c).inner, pages)
    }
}

unsafe extern "C" fn pagecount(c: *mut ffi::sqlite3_pcache) -> c_int {
    match default().xPagecount {
        Some(f) => f(cache(c).inner),
        None => 0,
    }
}

unsafe extern "C" fn fetch(
    c: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let Some(f) = default().xFetch else {
        return std::ptr::null_mut();
    };
    let wrapped = cache(c);
    let page = f(wrapped.inner, key, create);
    if !page.is_null() && create != 0 {
        wrapped.max_key = wrapped.max_key.max(key);
    }
    page
}

unsafe extern "C" fn unpin(
    c: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    if let Some(f) = default().xUnpin {
        f(cache(c).inner, page, discard)
    }
}

unsafe extern "C" fn rekey(
    c: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let wrapped = cache(c);
    if old == wrapped.lock_page {
        wrapped.parked = wrapped.parked.saturating_sub(1);
    }
    if new == wrapped.lock_page {
        wrapped.parked += 1;
    } else {
        wrapped.max_key = wrapped.max_key.max(new);
    }
    if let Some(f) = default().xRekey {
        f(wrapped.inner, page, old, new)
    }
}

unsafe extern "C" fn truncate(c: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let wrapped = cache(c);
    // Nothing at or past `limit`: SQLite's cache would find nothing either, after scanning for it.
    if limit > wrapped.max_key && wrapped.parked == 0 {
        #[cfg(test)]
        tests::SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    if let Some(f) = default().xTruncate {
        f(wrapped.inner, limit)
    }
    wrapped.max_key = wrapped.max_key.min(limit.saturating_sub(1));
    if limit <= wrapped.lock_page {
        wrapped.parked = 0;
    }
}

unsafe extern "C" fn destroy(c: *mut ffi::sqlite3_pcache) {
    let wrapped = Box::from_raw(c as *mut Cache);
    if let Some(f) = default().xDestroy {
        f(wrapped.inner)
    }
}

unsafe extern "C" fn shrink(c: *mut ffi::sqlite3_pcache) {
    if let Some(f) = default().xShrink {
        f(cache(c).inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rusqlite::{params, Connection};

    /// Truncations the wrapper did not forward.
    pub(super) static SKIPPED: AtomicUsize = AtomicUsize::new(0);

    /// Page splits (which park pages) in transactions that commit, transactions that grow the database and
    /// then roll back, and a VACUUM that shrinks it: every count stays right, as seen by the writing connection
    /// and a fresh one, the database stays sound, and the needless truncations were skipped.
    #[test]
    fn splits_and_rollbacks_keep_the_database_sound() {
        assert!(super::super::prepare_sqlite());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pcache.db");
        let writer = Connection::open(&path).expect("open");
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        writer
            .pragma_update(None, "cache_size", -65536)
            .expect("cache");
        writer
            .execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB NOT NULL);",
            )
            .expect("schema");
        let mut key: u64 = 1;
        let mut expected = 0i64;
        for round in 0..24 {
            writer.execute_batch("BEGIN").expect("begin");
            for _ in 0..1500 {
                // Keys in no particular order, so the unique index splits pages in its middle.
                key = key
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                writer
                    .execute(
                        "INSERT INTO t (k, v) VALUES (?1, zeroblob(300))",
                        params![format!("{:016x}", key)],
                    )
                    .expect("insert");
            }
            if round % 3 == 1 {
                writer.execute_batch("ROLLBACK").expect("rollback");
            } else {
                writer.execute_batch("COMMIT").expect("commit");
                expected += 1500;
            }
            if round == 12 {
                writer
                    .execute("DELETE FROM t WHERE id % 2 = 0", [])
                    .expect("delete");
                writer.execute_batch("VACUUM").expect("vacuum");
                expected = writer
                    .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .expect("count");
            }
            let reader = Connection::open(&path).expect("reader");
            for conn in [&writer, &reader] {
                let count: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM t INDEXED BY sqlite_autoindex_t_1",
                        [],
                        |r| r.get(0),
                    )
                    .expect("count by index");
                assert_eq!(count, expected, "round {round}");
                let rows: i64 = conn
                    .query_row("SELECT count(*) FROM t NOT INDEXED", [], |r| r.get(0))
                    .expect("count by table");
                assert_eq!(rows, expected, "round {round}");
            }
        }
        let check: String = writer
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity check");
        assert_eq!(check, "ok");
        assert!(
            SKIPPED.load(Ordering::Relaxed) > 0,
            "the wrapper is not in place"
        );
    }
}
