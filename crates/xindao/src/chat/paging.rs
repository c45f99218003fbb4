//! Bounded replies. Every list a reply carries is cut to a page: by count (`limit`, with a default and a cap)
//! and by bytes ([`REPLY_BYTES_MAX`]), and says how to get the rest (`has_more` and a cursor). Without the
//! byte bound, another user could make a reply as large as they liked (by adding the victim to rooms full of
//! big messages) and push it past what the connection may write.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{ActivityCursor, MemberCursor, Page};

/// Largest `history`, `sync` or `conversations` reply, in bytes of its items: big items make shorter pages. One
/// item is always let through (a page must progress); no single item is near this size.
pub(super) const REPLY_BYTES_MAX: usize = 1024 * 1024;

/// The size of `value` encoded as JSON.
pub(super) fn encoded_len(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len())
}

/// Trims a page to `budget` bytes (and takes them from it). `keep_newest` keeps the end of the page (paging
/// backwards), otherwise its start. With `at_least_one`, the first message is kept whatever its size, so that
/// paging always progresses; otherwise a page may come back empty. A trimmed page has more.
pub(super) fn fit_page(
    mut page: Page,
    keep_newest: bool,
    budget: &mut usize,
    at_least_one: bool,
) -> Page {
    if keep_newest {
        page.messages.reverse();
    }
    let mut kept = 0;
    for message in &page.messages {
        let size = encoded_len(message);
        if (kept > 0 || !at_least_one) && size > *budget {
            break;
        }
        *budget = budget.saturating_sub(size);
        kept += 1;
    }
    if kept < page.messages.len() {
        page.messages.truncate(kept);
        page.has_more = true;
    }
    if keep_newest {
        page.messages.reverse();
    }
    page
}

/// How many of `items` fit in `budget` bytes (at least one, when there is one).
pub(super) fn fitting<T: Serialize>(items: &[T], mut budget: usize) -> usize {
    let mut kept = 0;
    for item in items {
        let size = encoded_len(item);
        if kept > 0 && size > budget {
            break;
        }
        budget = budget.saturating_sub(size);
        kept += 1;
    }
    kept
}

/// A `next_cursor`: the two numbers that order a list (a time, then an id) of its last item, as `"<time>.<id>"`.
/// Clients treat it as opaque.
fn encode_pair(time: i64, id: i64) -> String {
    format!("{time}.{id}")
}

/// Reads a `cursor` argument; `invalid_args` when it is not one we gave.
fn decode_pair(cursor: &str) -> Result<(i64, i64)> {
    let invalid = || Error::InvalidArgs("`cursor` is not a cursor this server gave".into());
    let (time, id) = cursor.split_once('.').ok_or_else(invalid)?;
    Ok((
        time.parse().map_err(|_| invalid())?,
        id.parse().map_err(|_| invalid())?,
    ))
}

/// The `next_cursor` of a `conversations` page.
pub(super) fn encode_activity(cursor: ActivityCursor) -> String {
    encode_pair(cursor.last_ts, cursor.id)
}

pub(super) fn decode_activity(cursor: &str) -> Result<ActivityCursor> {
    decode_pair(cursor).map(|(last_ts, id)| ActivityCursor { last_ts, id })
}

/// The `next_cursor` of a `room_members` page.
pub(super) fn encode_member(cursor: MemberCursor) -> String {
    encode_pair(cursor.joined_at, cursor.user_id)
}

pub(super) fn decode_member(cursor: &str) -> Result<MemberCursor> {
    decode_pair(cursor).map(|(joined_at, user_id)| MemberCursor { joined_at, user_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_cursors_round_trip_and_reject_garbage() {
        let cursor = ActivityCursor {
            last_ts: 1_763_900_000_000,
            id: 42,
        };
        assert_eq!(decode_activity(&encode_activity(cursor)).unwrap(), cursor);
        for bad in ["", "5", "a.b", "1.", ".1", "1.2.3"] {
            assert_eq!(
                decode_activity(bad).unwrap_err().code(),
                "invalid_args",
                "{bad}"
            );
        }
    }

    #[test]
    fn at_least_one_item_fits() {
        let items = vec!["x".repeat(100), "y".repeat(100)];
        assert_eq!(fitting(&items, 10), 1);
        assert_eq!(fitting(&items, 204), 2);
        assert_eq!(fitting::<String>(&[], 10), 0);
    }
}
