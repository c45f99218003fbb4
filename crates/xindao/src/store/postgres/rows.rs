//! Mapping between PostgreSQL rows and errors and the domain types.

use sha2::{Digest, Sha256};
use tokio_postgres::Row;

use crate::error::Error;
use crate::model::*;

pub(crate) const MESSAGE_COLUMNS: &str =
    "id, conversation_id, seq, sender_id, cmid, kind, content, created_at";

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

pub(crate) fn message_from_row(row: &Row) -> Message {
    message_at(row, 0)
}

/// Reads the eight message columns starting at `at`.
pub(super) fn message_at(row: &Row, at: usize) -> Message {
    let kind: String = row.get(at + 5);
    let raw: String = row.get(at + 6);
    Message {
        id: row.get(at),
        conversation_id: row.get(at + 1),
        seq: row.get(at + 2),
        sender_id: row.get(at + 3),
        cmid: row.get(at + 4),
        kind: MessageKind::from_stored(&kind),
        content: serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null),
        ts: row.get(at + 7),
    }
}

pub(super) fn user_from_row(row: &Row) -> User {
    User {
        id: row.get(0),
        display_name: row.get(1),
    }
}

/// One conversation as a member sees it, with its peer and last message, in one query.
pub(super) const CONVERSATION_SELECT: &str =
    "SELECT c.id, c.kind, c.name, c.visibility, c.owner_id, c.last_seq,
        m.read_seq, p.id, p.display_name,
        lm.id, lm.conversation_id, lm.seq, lm.sender_id, lm.cmid, lm.kind, lm.content, lm.created_at
    FROM members m JOIN conversations c ON c.id = m.conversation_id
    LEFT JOIN users p ON c.kind = 'direct'
        AND p.id = CASE WHEN c.direct_lo = m.user_id THEN c.direct_hi ELSE c.direct_lo END
    LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq";

pub(super) fn conversation_from_row(row: &Row) -> Conversation {
    let kind: String = row.get(1);
    let visibility: Option<String> = row.get(3);
    let last_seq: i64 = row.get(5);
    let read_seq: i64 = row.get(6);
    let peer_id: Option<i64> = row.get(7);
    let last_id: Option<i64> = row.get(9);
    Conversation {
        id: row.get(0),
        kind: if kind == "direct" {
            ConversationKind::Direct
        } else {
            ConversationKind::Room
        },
        name: row.get(2),
        visibility: visibility.map(|v| {
            if v == "invite" {
                Visibility::Invite
            } else {
                Visibility::Public
            }
        }),
        owner_id: row.get(4),
        peer: peer_id.map(|id| User {
            id,
            display_name: row.get(8),
        }),
        last_seq,
        read_seq,
        unread: (last_seq - read_seq).max(0),
        last_message: last_id.map(|_| message_at(row, 9)),
    }
}

pub(super) fn display_name_for_openid(openid: &str) -> String {
    let digest = Sha256::digest(openid.as_bytes());
    format!("wx_{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2])
}
