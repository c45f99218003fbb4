//! Offline notification through WeChat `subscribeMessage.send`: when a message commits, each recipient with
//! no open connection (the chat service finds them: `chat::offline`), a WeChat openid and an unused one-time
//! grant (`notify_grant`) is sent the configured template, filled from the message. At most one per user per
//! conversation per `wechat_notify_window_secs`: the store takes the grant and marks the window in one
//! transaction, so two nodes cannot both send. WeChat's 43101 (the user refused, or holds no grant) clears
//! the user's grants; any other failure gives the grant back.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::api::{post_with_token, CallError};
use super::openids::OpenIds;
use super::token::Tokens;
use crate::config::{notify_fields, Config, NotifySource};
use crate::metrics::NotifyMetrics;
use crate::model::{ConversationKind, Message, MessageKind, Millis, UserId};
use crate::store::wechat::NotifyTake;
use crate::store::Store;

/// WeChat's "the user refused this template, or has no grant left".
const REFUSED: i64 = 43101;
/// Most grants of one template a user may hold.
pub const GRANTS_MAX: i64 = 50;
/// Notifications sent at once for one message.
const SENDS_AT_ONCE: usize = 8;
/// China Standard Time, UTC+8, in which the `time` field is written.
const CHINA_OFFSET_MS: i64 = 8 * 3600 * 1000;

pub struct Notifier {
    http: reqwest::Client,
    tokens: Arc<Tokens>,
    openids: Arc<OpenIds>,
    store: Arc<dyn Store>,
    template: String,
    page: Option<String>,
    fields: Vec<(String, NotifySource)>,
    preview_chars: usize,
    window_ms: i64,
    state: String,
    metrics: NotifyMetrics,
}

impl Notifier {
    /// The notifier `config` describes, if `wechat_notify_template` is set.
    pub fn from_config(
        config: &Config,
        http: reqwest::Client,
        tokens: Arc<Tokens>,
        openids: Arc<OpenIds>,
        store: Arc<dyn Store>,
        metrics: NotifyMetrics,
    ) -> Option<Notifier> {
        let template = config.wechat_services.wechat_notify_template.clone()?;
        Some(Notifier {
            http,
            tokens,
            openids,
            store,
            template,
            page: config.wechat_services.wechat_notify_page.clone(),
            // Checked at load (`wechat_problem`).
            fields: notify_fields(&config.wechat_services.wechat_notify_fields).unwrap_or_default(),
            preview_chars: config.wechat_services.wechat_notify_preview_chars,
            window_ms: (config.wechat_services.wechat_notify_window_secs as i64)
                .saturating_mul(1000),
            state: config.wechat_services.wechat_notify_state.clone(),
            metrics,
        })
    }

    /// The template grants are for.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Notifies `offline` (recipients of `message` with no open connection) who have a grant.
    pub async fn message_committed(&self, message: &Message, offline: &[UserId]) {
        let sender_name = match self.store.user(message.sender_id).await {
            Ok(Some(user)) => user.display_name,
            _ => String::new(),
        };
        let title = match self
            .store
            .conversation_for(message.conversation_id, message.sender_id)
            .await
        {
            Ok(c) if c.kind == ConversationKind::Room => c.name.unwrap_or_default(),
            _ => sender_name.clone(),
        };
        let data = self.data(message, &sender_name, &title);
        use futures_util::StreamExt;
        futures_util::stream::iter(offline)
            .for_each_concurrent(SENDS_AT_ONCE, |&user| self.notify(user, message, &data))
            .await;
    }

    async fn notify(&self, user: UserId, message: &Message, data: &Value) {
        let openid = match self.openids.get(user).await {
            Ok(Some(openid)) => openid,
            Ok(None) => return,
            Err(error) => return tracing::warn!(%error, user, "notification: no openid"),
        };
        let taken = self
            .store
            .notify_take(
                user,
                message.conversation_id,
                &self.template,
                crate::model::now_millis(),
                self.window_ms,
            )
            .await;
        match taken {
            Ok(NotifyTake::Taken) => {}
            Ok(NotifyTake::InWindow) => return self.counted("coalesced"),
            Ok(NotifyTake::NoGrant) => return self.counted("no_grant"),
            Err(error) => {
                self.counted("error");
                return tracing::warn!(%error, user, "notification: grant not taken");
            }
        }
        let mut body = json!({
            "touser": &*openid,
            "template_id": self.template,
            "data": data,
            "miniprogram_state": self.state,
            "lang": "zh_CN",
        });
        if let Some(page) = &self.page {
            body["page"] = page
                .replace("{conversation_id}", &message.conversation_id.to_string())
                .into();
        }
        let sent = post_with_token(
            &self.http,
            &self.tokens,
            "cgi-bin/message/subscribe/send",
            &body,
        )
        .await;
        let kept = match sent {
            Ok(_) => {
                tracing::debug!(user, conversation = message.conversation_id, "notified");
                self.counted("sent");
                Ok(())
            }
            Err(CallError::WeChat {
                errcode: REFUSED, ..
            }) => {
                tracing::info!(user, "notification refused (43101): grants cleared");
                self.counted("refused");
                self.store.notify_clear(user, &self.template).await
            }
            Err(error) => {
                tracing::warn!(%error, user, "notification not sent: grant given back");
                self.counted("error");
                self.store.notify_give_back(user, &self.template).await
            }
        };
        if let Err(error) = kept {
            tracing::warn!(%error, user, "notification grant not updated");
        }
    }

    fn counted(&self, result: &'static str) {
        self.metrics.notified("wechat", result, 1);
    }

    /// The template's `data`: `{key: {value}}` from the configured mapping.
    fn data(&self, message: &Message, sender_name: &str, title: &str) -> Value {
        let mut data = Map::new();
        for (key, source) in &self.fields {
            let value = match source {
                NotifySource::Sender => truncate(sender_name, self.preview_chars),
                NotifySource::Text => truncate(&preview(message), self.preview_chars),
                NotifySource::Time => china_time(message.ts),
                NotifySource::Conversation => truncate(title, self.preview_chars),
            };
            data.insert(key.clone(), json!({ "value": value }));
        }
        Value::Object(data)
    }
}

/// What a message says, in a line.
fn preview(message: &Message) -> String {
    match message.kind {
        MessageKind::Text => message.content.as_str().unwrap_or_default().to_string(),
        MessageKind::Image => "[图片]".into(),
        MessageKind::Voice => "[语音]".into(),
        MessageKind::File => "[文件]".into(),
        MessageKind::Custom => "[消息]".into(),
    }
}

/// At most `chars` characters, the last one `…` when cut.
fn truncate(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `YYYY-MM-DD HH:MM` in China Standard Time (what a `time` field takes).
fn china_time(ts: Millis) -> String {
    let minutes = (ts + CHINA_OFFSET_MS).div_euclid(60_000);
    let (days, minute_of_day) = (minutes.div_euclid(1440), minutes.rem_euclid(1440));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_china_time() {
        assert_eq!(china_time(0), "1970-01-01 08:00");
        // 2026-12-04 16:00:42 UTC.
        assert_eq!(china_time(1_796_400_042_000), "2026-12-05 00:00");
        assert_eq!(china_time(951_782_400_000), "2000-02-29 08:00");
    }

    #[test]
    fn previews_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello world", 5), "hell…");
        assert_eq!(truncate("信道信道信道", 3), "信道…");
    }
}
