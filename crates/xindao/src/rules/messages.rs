//! The rules of recalling and removing a message, as plain functions of the facts they depend on. Kept apart
//! from the room rules (rules.rs) because they read the message as well as the room; the stores read these
//! facts inside the transaction that writes the tombstone, so two changes of one message cannot both pass on
//! the same old state.

use super::{not_a_member, RoomFacts};
use crate::error::{Error, Result};
use crate::model::{ConversationKind, MessageState, Millis, UserId};

/// Who changes a message's state, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    /// Its sender takes it back, at most `window_ms` after it was sent (`now` is the server clock).
    Recall {
        by: UserId,
        now: Millis,
        window_ms: i64,
    },
    /// The room's owner removes it.
    Remove { by: UserId },
    /// The business removes it through the server API: no membership or ownership rule.
    RemoveByServer,
}

impl StateChange {
    /// The user the change is made by, if a user makes it.
    pub fn by(&self) -> Option<UserId> {
        match *self {
            StateChange::Recall { by, .. } | StateChange::Remove { by } => Some(by),
            StateChange::RemoveByServer => None,
        }
    }
}

/// What the rule needs to know about one message, read in the writing transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageFacts {
    pub sender_id: UserId,
    pub ts: Millis,
    pub state: Option<MessageState>,
}

/// Whether `change` may be made, and the state it leaves: `Ok(None)` when the message already is a tombstone
/// (recalled or removed: nothing to change, nothing to tell). `room` is `None` for a conversation id that
/// names nothing. Membership is checked first, so that a stranger learns nothing about the conversation (not
/// even whether it exists) or its messages; then a message that does not exist is `not_found`.
pub fn may_change_message(
    room: Option<&RoomFacts>,
    changer_is_member: bool,
    message: Option<&MessageFacts>,
    change: StateChange,
) -> Result<Option<MessageState>> {
    if change.by().is_some() && !changer_is_member {
        return Err(not_a_member());
    }
    let room = room.ok_or_else(super::no_such_conversation)?;
    let message = message.ok_or_else(no_such_message)?;
    let state = match change {
        StateChange::Recall { by, .. } if by != message.sender_id => {
            return Err(Error::Forbidden("only its sender may recall a message"))
        }
        StateChange::Remove { by }
            if room.kind != ConversationKind::Room || room.owner_id != Some(by) =>
        {
            return Err(Error::Forbidden(
                "only the room's owner may remove a message",
            ))
        }
        StateChange::Recall { .. } => MessageState::Recalled,
        StateChange::Remove { .. } | StateChange::RemoveByServer => MessageState::Removed,
    };
    if message.state.is_some() {
        return Ok(None);
    }
    if let StateChange::Recall { now, window_ms, .. } = change {
        if now - message.ts > window_ms {
            return Err(Error::RecallWindowPassed {
                window_secs: window_ms / 1000,
            });
        }
    }
    Ok(Some(state))
}

/// The answer for a seq that names no message of the conversation.
pub fn no_such_message() -> Error {
    Error::NotFound("no such message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Visibility;

    const ROOM: RoomFacts = RoomFacts {
        kind: ConversationKind::Room,
        visibility: Some(Visibility::Public),
        owner_id: Some(1),
    };
    const DIRECT: RoomFacts = RoomFacts {
        kind: ConversationKind::Direct,
        visibility: None,
        owner_id: None,
    };
    const SENT_BY_2: MessageFacts = MessageFacts {
        sender_id: 2,
        ts: 1_000,
        state: None,
    };

    fn recall(by: UserId, now: Millis) -> StateChange {
        StateChange::Recall {
            by,
            now,
            window_ms: 120_000,
        }
    }

    fn code(result: Result<Option<MessageState>>) -> &'static str {
        result.expect_err("refused").code()
    }

    #[test]
    fn the_sender_recalls_within_the_window_only() {
        let m = Some(&SENT_BY_2);
        let ok = may_change_message(Some(&ROOM), true, m, recall(2, 121_000));
        assert_eq!(ok.unwrap(), Some(MessageState::Recalled), "at the edge");
        let late = may_change_message(Some(&ROOM), true, m, recall(2, 121_001));
        assert_eq!(code(late), "recall_window_passed");
        assert_eq!(
            code(may_change_message(Some(&ROOM), true, m, recall(3, 2_000))),
            "forbidden"
        );
        assert_eq!(
            code(may_change_message(Some(&ROOM), false, m, recall(2, 2_000))),
            "forbidden",
            "a sender who left"
        );
    }

    #[test]
    fn only_a_rooms_owner_removes() {
        let m = Some(&SENT_BY_2);
        let by_owner = may_change_message(Some(&ROOM), true, m, StateChange::Remove { by: 1 });
        assert_eq!(by_owner.unwrap(), Some(MessageState::Removed));
        let by_sender = may_change_message(Some(&ROOM), true, m, StateChange::Remove { by: 2 });
        assert_eq!(code(by_sender), "forbidden");
        let in_direct = may_change_message(Some(&DIRECT), true, m, StateChange::Remove { by: 2 });
        assert_eq!(code(in_direct), "forbidden");
        let server = may_change_message(Some(&DIRECT), false, m, StateChange::RemoveByServer);
        assert_eq!(server.unwrap(), Some(MessageState::Removed));
    }

    #[test]
    fn strangers_learn_nothing_and_tombstones_stay() {
        assert_eq!(
            code(may_change_message(None, false, None, recall(2, 0))),
            "forbidden",
            "no such conversation, for a user"
        );
        assert_eq!(
            code(may_change_message(
                None,
                false,
                None,
                StateChange::RemoveByServer
            )),
            "not_found"
        );
        assert_eq!(
            code(may_change_message(Some(&ROOM), false, None, recall(2, 0))),
            "forbidden"
        );
        assert_eq!(
            code(may_change_message(Some(&ROOM), true, None, recall(2, 0))),
            "not_found"
        );
        let gone = MessageFacts {
            state: Some(MessageState::Removed),
            ..SENT_BY_2
        };
        let again = may_change_message(Some(&ROOM), true, Some(&gone), recall(2, 1_000_000));
        assert_eq!(again.unwrap(), None, "already a tombstone, even late");
    }
}
