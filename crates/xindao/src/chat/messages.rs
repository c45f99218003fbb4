//! Messages: `send` (commit, then ack; the store's commit hook pushes it), `history` (one page either way) and
//! `sync` (everything after the client's cursors, a bounded slice of conversations per call), with replies
//! bounded in bytes (`paging`).

use std::collections::HashMap;
use std::num::NonZeroUsize;

use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::model::{ConversationId, Message, NewMessage, Range};
use crate::protocol::op::{HistoryArgs, SendArgs, SentKind, SyncArgs};
use crate::validate;

use super::paging::{encoded_len, fit_page, REPLY_BYTES_MAX};
use super::wechat::CheckMode;
use super::{raw, Caller, Chat};

/// Conversations looked at by one `sync` call, and the most it returns: a call's work is bounded however many
/// conversations the caller is in.
const SYNC_SCAN_MAX: usize = 1000;
const SYNC_CONVERSATIONS_MAX: usize = 100;

impl Chat {
    /// A client's `send`: its text goes through the content check when one is configured.
    pub(super) async fn send(&self, caller: Caller, a: SendArgs) -> Result<Box<RawValue>> {
        self.send_checked(caller, a, CheckMode::Sender).await
    }

    /// `send`, with the content check `check` says.
    pub(super) async fn send_checked(
        &self,
        caller: Caller,
        a: SendArgs,
        check: CheckMode,
    ) -> Result<Box<RawValue>> {
        validate::cmid(&a.cmid)?;
        let kind = match a.kind {
            SentKind::Known(kind) => kind,
            SentKind::Unknown(name) => {
                return Err(Error::InvalidMessage(format!(
                    "unknown message kind `{name}`: use text, custom, image, voice or file"
                )))
            }
        };
        validate::content(
            kind,
            &a.content,
            self.config.max_text_chars,
            self.config.max_custom_bytes,
        )?;
        let media = super::media::media_kind(kind);
        let content = match media {
            Some(media) => {
                self.media_content(caller.user_id, media, &a.content)
                    .await?
            }
            None => a.content,
        };
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
        let content = self
            .before_send(conversation_id, caller.user_id, &a.cmid, kind, content)
            .await?;
        let verdict = self
            .content_check(caller.user_id, kind, &content, check)
            .await?;
        let message = NewMessage {
            conversation_id,
            sender_id: caller.user_id,
            cmid: a.cmid,
            kind,
            content,
        };
        let appended = self.store.append(message, caller.conn_id).await?;
        if !appended.duplicate {
            self.after_commit(&appended.message, verdict).await;
        }
        if media.is_some() {
            // After the commit (the store checked membership); a retry with the same cmid repeats it.
            self.media_sent(
                &appended.message.content,
                conversation_id,
                appended.message.seq,
            )
            .await?;
        }
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
            .history_for(
                caller.user_id,
                a.conversation_id,
                range,
                self.page_limit(a.limit, 50),
            )
            .await?;
        let mut budget = REPLY_BYTES_MAX;
        let page = fit_page(page, !matches!(range, Range::After(_)), &mut budget, true);
        raw(&json!({ "messages": page.messages, "has_more": page.has_more }))
    }

    /// The messages after the client's cursors, over the caller's conversations in ascending id order, a
    /// bounded slice per call: at most [`SYNC_SCAN_MAX`] conversations looked at, [`SYNC_CONVERSATIONS_MAX`]
    /// returned and [`REPLY_BYTES_MAX`] bytes. `has_more` says to call again with `after_id = next_after_id`
    /// (and the cursors moved on by what came back): every conversation up to `next_after_id` is complete.
    pub(super) async fn sync(&self, caller: Caller, a: SyncArgs) -> Result<Box<RawValue>> {
        let mut cursors = HashMap::with_capacity(a.cursors.len());
        for (key, seq) in &a.cursors {
            let id: ConversationId = key.parse().map_err(|_| {
                Error::InvalidArgs(format!("cursor key `{key}` is not a conversation id"))
            })?;
            cursors.insert(id, seq.0);
        }
        let limit = self.page_limit(a.limit, 100);
        let after = a.after_id.unwrap_or(0);
        let scanned = self
            .store
            .sync_scan(caller.user_id, after, a.until_id, SYNC_SCAN_MAX + 1)
            .await?;
        let mut budget = REPLY_BYTES_MAX;
        let mut out = Vec::new();
        // Every conversation up to `next_after` is complete for this client; `complete` until one is not.
        let mut next_after = after;
        let mut complete = true;
        let mut stopped = false;
        for &(id, last_seq) in scanned.iter().take(SYNC_SCAN_MAX) {
            let cursor = cursors.get(&id).copied().unwrap_or(0);
            let mut done = last_seq <= cursor;
            if !done {
                if out.len() == SYNC_CONVERSATIONS_MAX {
                    stopped = true;
                    break;
                }
                let conversation = match self.store.conversation_for(id, caller.user_id).await {
                    Ok(conversation) => Some(conversation),
                    // Left since the scan: nothing to deliver.
                    Err(Error::Forbidden(_) | Error::NotFound(_)) => None,
                    Err(e) => return Err(e),
                };
                if let Some(conversation) = conversation {
                    let head = encoded_len(&conversation);
                    if !out.is_empty() && head >= budget {
                        stopped = true;
                        break;
                    }
                    budget = budget.saturating_sub(head);
                    let page = self
                        .store
                        .history_for(caller.user_id, id, Range::After(cursor), limit)
                        .await?;
                    let page = fit_page(page, false, &mut budget, out.is_empty());
                    if page.messages.is_empty() {
                        stopped = true;
                        break;
                    }
                    done = !page.has_more;
                    out.push(json!({ "conversation": conversation, "messages": page.messages, "has_more": page.has_more }));
                } else {
                    done = true;
                }
            }
            complete &= done;
            if complete {
                next_after = id;
            }
        }
        let has_more = stopped || !complete || scanned.len() > SYNC_SCAN_MAX;
        raw(&json!({ "conversations": out, "has_more": has_more, "next_after_id": next_after }))
    }

    /// The page size asked for, or `default`, capped at `history_page_max`.
    pub(super) fn page_limit(&self, asked: Option<NonZeroUsize>, default: usize) -> usize {
        asked
            .map_or(default, NonZeroUsize::get)
            .clamp(1, self.config.history_page_max)
    }
}
