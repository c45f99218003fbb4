//! How each backend's errors become xindao's: `unavailable` for what a retry or another node may get past
//! (disk full, busy, connection lost), `internal` for the rest. Below the backends and the migration runner,
//! which share them.

use crate::error::Error;

/// Maps SQLite failures: a full disk or an I/O problem means "cannot take writes now", anything else is a bug.
pub(crate) fn map_sqlite(error: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::*;
    match error.sqlite_error_code() {
        Some(
            DiskFull | SystemIoFailure | ReadOnly | CannotOpen | DatabaseBusy | DatabaseLocked,
        ) => Error::Unavailable(format!("storage: {error}")),
        _ => Error::Internal(format!("sqlite: {error}")),
    }
}

/// Connection trouble, an operator shutting the database down, resource exhaustion or a rollback mean "cannot
/// take writes now"; anything else (a constraint we did not expect, bad SQL) is a bug.
pub(crate) fn map_pg(error: tokio_postgres::Error) -> Error {
    let unavailable = match error.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "25" | "28" | "3D" | "40" | "53" | "57" | "58")
        }
    };
    if unavailable {
        Error::Unavailable(format!("postgres: {error}"))
    } else {
        Error::Internal(format!("postgres: {error}"))
    }
}
