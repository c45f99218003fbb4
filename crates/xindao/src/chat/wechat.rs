//! Where the chat service meets WeChat (`crate::wechat`): the content check of a user's text before it
//! commits, the notification of offline recipients after it commits, and `notify_grant`, which records the
//! one-time subscribe-message grants a mini-program obtained with `wx.requestSubscribeMessage`.

use serde_json::json;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::model::{Message, MessageKind, UserId};
use crate::protocol::op::NotifyGrantArgs;
use crate::store::OutboxEvent;
use crate::webhooks;
use crate::wechat::check::Verdict;
use crate::wechat::notify::GRANTS_MAX;

use super::{offline, raw, Caller, Chat};

/// Members scanned for offline recipients of one message: bigger rooms are not notified.
const NOTIFY_SCAN_MAX: usize = 500;
/// Grants one `notify_grant` may add.
const GRANTS_PER_CALL_MAX: u32 = 10;

/// Whether a send's text goes through WeChat's content check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// A client's send: checked when the check is configured and the sender has an openid.
    Sender,
    /// A business backend's send (the server API): trusted, not checked.
    Trusted,
    /// A backend relaying user-generated content asked for the check (`"content_check": true`): it must be
    /// configured (`unavailable` otherwise) and the sender must be a WeChat user (`invalid_args` otherwise),
    /// since WeChat judges text by its sender's openid.
    Requested,
}

impl Chat {
    /// WeChat's content check of a user's text as `mode` says (other kinds, and in `Sender` mode senders
    /// without an openid, pass): `content_rejected` when refused; `Verdict::Flag` when it is sent and flagged.
    pub(super) async fn content_check(
        &self,
        sender: UserId,
        kind: MessageKind,
        content: &serde_json::Value,
        mode: CheckMode,
    ) -> Result<Verdict> {
        let checker = self.hooks.wechat.as_ref().and_then(|w| w.checker.as_ref());
        let checker = match (mode, checker) {
            (CheckMode::Trusted, _) | (CheckMode::Sender, None) => return Ok(Verdict::Pass),
            (CheckMode::Requested, None) => {
                return Err(Error::Unavailable(
                    "content_check: the content check is not configured on this server".into(),
                ))
            }
            (CheckMode::Requested, Some(checker)) => {
                if self.store.user_openid(sender).await?.is_none() {
                    return Err(Error::InvalidArgs(
                        "content_check needs a sender_id of a user who logged in with WeChat"
                            .into(),
                    ));
                }
                checker
            }
            (CheckMode::Sender, Some(checker)) => checker,
        };
        match (kind, content.as_str()) {
            (MessageKind::Text, Some(text)) => checker.check(sender, text).await,
            _ => Ok(Verdict::Pass),
        }
    }

    /// After a new message committed: `message.flagged` if the check said so, and the notification of its
    /// offline recipients.
    pub(super) async fn after_commit(&self, message: &Message, verdict: Verdict) {
        if let Verdict::Flag { label, trace_id } = verdict {
            self.emit(webhooks::MESSAGE_FLAGGED, || {
                let data = json!({
                    "id": message.id,
                    "conversation_id": message.conversation_id,
                    "seq": message.seq,
                    "sender_id": message.sender_id,
                    "label": label,
                    "trace_id": trace_id,
                });
                OutboxEvent::conversation(webhooks::MESSAGE_FLAGGED, message.conversation_id, &data)
            })
            .await;
        }
        self.notify_offline(message);
    }

    /// Notifies the offline recipients of a new message, on a task of its own.
    fn notify_offline(&self, message: &Message) {
        let Some(notifier) = self.hooks.wechat.as_ref().and_then(|w| w.notifier.clone()) else {
            return;
        };
        let (store, bus, message) = (self.store.clone(), self.bus.clone(), message.clone());
        tokio::spawn(async move {
            let offline = offline::offline_members(
                &*store,
                &*bus,
                message.conversation_id,
                message.sender_id,
                NOTIFY_SCAN_MAX,
            )
            .await;
            match offline {
                Ok(users) if !users.is_empty() => {
                    notifier.message_committed(&message, &users).await
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "offline recipients not found"),
            }
        });
    }

    /// `notify_grant`: the caller accepted `count` (default 1) one-time subscribe messages of the template.
    pub(super) async fn notify_grant(
        &self,
        caller: Caller,
        a: NotifyGrantArgs,
    ) -> Result<Box<RawValue>> {
        let Some(notifier) = self.hooks.wechat.as_ref().and_then(|w| w.notifier.as_ref()) else {
            return Err(Error::Unavailable(
                "offline notification is not configured on this server".into(),
            ));
        };
        if a.template_id != notifier.template() {
            return Err(Error::InvalidArgs(
                "template_id is not this server's notification template".into(),
            ));
        }
        let count = a.count.unwrap_or(1);
        if !(1..=GRANTS_PER_CALL_MAX).contains(&count) {
            return Err(Error::InvalidArgs(format!(
                "count must be between 1 and {GRANTS_PER_CALL_MAX}"
            )));
        }
        if self.store.user_openid(caller.user_id).await?.is_none() {
            return Err(Error::Forbidden(
                "only users who logged in with WeChat can be notified",
            ));
        }
        let grants = self
            .store
            .notify_grant(caller.user_id, &a.template_id, count.into(), GRANTS_MAX)
            .await?;
        raw(&json!({ "grants": grants }))
    }
}
