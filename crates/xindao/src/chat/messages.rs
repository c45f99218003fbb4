//! Messages: `send` (commit, then ack; the store's commit hook pushes it), `history` (one page either way) and
//! `sync` (everything after the client's cursors), with replies bounded in bytes.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::model::{ConversationId, Message, NewMessage, Page, Range};
use crate::protocol::op::{HistoryArgs, SendArgs, SentKind, SyncArgs};
use crate::validate;

use super::{raw, Caller, Chat};

/// Largest history or sync reply, in bytes of messages: big messages make shorter pages.
const REPLY_BYTES_MAX: usize = 1024 * 1024;

impl Chat {
    pub(super) async fn send(&self, caller: Caller, a: SendArgs) -> Result<Box<RawValue>> {
        validate::cmid(&a.cmid)?;
        let kind = match a.kind {
            SentKind::Known(kind) => kind,
            SentKind::Unknown(name) => {
                return Err(Error::InvalidMessage(format!(
                    "unknown message kind `{name}`: use text or custom"
                )))
            }
        };
        validate::content(
            kind,
            &a.content,
            self.config.max_text_chars,
            self.config.max_custom_bytes,
        )?;
        let conversation_id = match (a.conversation_id, a.to_user) {
            (Some(id), None) => id,
            (None, Some(peer)) => self.open_direct(caller.user_id, peer).await?,
            _ => {
                return Err(Error::InvalidArgs(
                    "give exactly one of conversation_id and to_user".into(),
                ))
            }
        };
        // The store checks membership inside the commit and hands the commit to fan-out (`fanout`), which
        // pushes it to everyone but this connection, in seq order.
        let message = NewMessage {
            conversation_id,
            sender_id: caller.user_id,
            cmid: a.cmid,
            kind,
            content: a.content,
        };
        let appended = self.store.append(message, caller.conn_id).await?;
        // The hot path: serialise the ack straight from the message, without an intermediate JSON tree.
        #[derive(Serialize)]
        struct SendResult<'a> {
            message: &'a Message,
            duplicate: bool,
        }
        raw(&SendResult {
            message: &appended.message,
            duplicate: appended.duplicate,
        })
    }

    pub(super) async fn history(&self, caller: Caller, a: HistoryArgs) -> Result<Box<RawValue>> {
        self.require_member(a.conversation_id, caller.user_id)
            .await?;
        let range = match (a.before_seq, a.after_seq) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgs(
                    "give before_seq or after_seq, not both".into(),
                ))
            }
            (Some(before), None) => Range::Before(before.0),
            (None, Some(after)) => Range::After(after.0),
            (None, None) => Range::Latest,
        };
        let page = self
            .store
            .history(a.conversation_id, range, self.page_limit(a.limit, 50))
            .await?;
        let mut budget = REPLY_BYTES_MAX;
        let page = fit_page(page, !matches!(range, Range::After(_)), &mut budget);
        raw(&json!({ "messages": page.messages, "has_more": page.has_more }))
    }

    pub(super) async fn sync(&self, caller: Caller, a: SyncArgs) -> Result<Box<RawValue>> {
        let mut cursors = HashMap::with_capacity(a.cursors.len());
        for (key, seq) in &a.cursors {
            let id: ConversationId = key.parse().map_err(|_| {
                Error::InvalidArgs(format!("cursor key `{key}` is not a conversation id"))
            })?;
            cursors.insert(id, seq.0);
        }
        let limit = self.page_limit(a.limit, 100);
        let mut budget = REPLY_BYTES_MAX;
        let mut out = Vec::new();
        for conversation in self.store.conversations_of(caller.user_id).await? {
            let cursor = cursors.get(&conversation.id).copied().unwrap_or(0);
            if conversation.last_seq <= cursor {
                continue;
            }
            let page = self
                .store
                .history(conversation.id, Range::After(cursor), limit)
                .await?;
            let page = fit_page(page, false, &mut budget);
            out.push(json!({ "conversation": conversation, "messages": page.messages, "has_more": page.has_more }));
        }
        raw(&json!({ "conversations": out }))
    }

    /// The page size asked for, or `default`, capped at `history_page_max`.
    fn page_limit(&self, asked: Option<NonZeroUsize>, default: usize) -> usize {
        asked
            .map_or(default, NonZeroUsize::get)
            .clamp(1, self.config.history_page_max)
    }
}

/// Trims a page to the reply byte budget, keeping at least one message so that paging always progresses.
/// `keep_newest` keeps the end of the page (paging backwards), otherwise its start. A trimmed page has more.
fn fit_page(mut page: Page, keep_newest: bool, budget: &mut usize) -> Page {
    if keep_newest {
        page.messages.reverse();
    }
    let mut kept = 0;
    for message in &page.messages {
        let size = serde_json::to_string(message).map_or(0, |s| s.len());
        if kept > 0 && size > *budget {
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
