//! The typed settings of the WeChat checks and notifications (content check, its policies, the token API,
//! the subscribe-message field mapping), kept apart from the long key list in `mod.rs`, with their checks.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::Config;

/// Which WeChat API hands out the `access_token`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WeChatTokenApi {
    /// `POST cgi-bin/stable_token`: fetching does not invalidate the token other callers hold.
    #[default]
    Stable,
    /// `GET cgi-bin/token`: the classic API; every fetch replaces the previous token (after 5 minutes).
    Token,
}

/// Whether user text is checked before it commits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ContentCheck {
    #[default]
    Off,
    /// WeChat `wxa/msg_sec_check` v2, for senders who logged in with WeChat.
    Wechat,
}

/// What a send does when WeChat answers `review` (uncertain).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ContentReview {
    /// Sent.
    #[default]
    Allow,
    /// Refused with `content_rejected`.
    Reject,
    /// Sent, and the webhook event `message.flagged` names it.
    Flag,
}

/// What a send does when the check cannot be made (timeout, WeChat down or over quota, local rate limit).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ContentCheckFailure {
    /// Sent unchecked (fail open).
    #[default]
    Allow,
    /// Refused with `unavailable` (fail closed).
    Reject,
}

/// What a subscribe-message field is filled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifySource {
    /// The sender's display name.
    Sender,
    /// The message's text, truncated to `wechat_notify_preview_chars` (`[image]` etc. for media).
    Text,
    /// When it was sent, `YYYY-MM-DD HH:MM` in China time.
    Time,
    /// The room's name, or the sender's name in a direct conversation.
    Conversation,
}

/// Parses `wechat_notify_fields`: `key=source` pairs, comma-separated, e.g. `thing1=sender,time3=time`.
pub fn notify_fields(spec: &str) -> Result<Vec<(String, NotifySource)>, String> {
    let mut fields = Vec::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, source) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=source"))?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("`{key}` is not a template field key"));
        }
        let source = match source.trim() {
            "sender" => NotifySource::Sender,
            "text" => NotifySource::Text,
            "time" => NotifySource::Time,
            "conversation" => NotifySource::Conversation,
            other => {
                return Err(format!(
                    "`{other}` is not sender, text, time or conversation"
                ))
            }
        };
        fields.push((key.to_string(), source));
    }
    Ok(fields)
}

impl Config {
    /// Whether offline users are notified through `subscribeMessage.send`.
    pub fn wechat_notify_enabled(&self) -> bool {
        self.wechat_enabled() && self.wechat_services.wechat_notify_template.is_some()
    }

    /// The first WeChat setting that does not hold, if any.
    pub(super) fn wechat_problem(&self) -> Option<String> {
        if self.wechat_services.content_check == ContentCheck::Wechat && !self.wechat_enabled() {
            return Some("content_check = \"wechat\" needs wechat_appid and wechat_secret".into());
        }
        if !(1..=4).contains(&self.wechat_services.content_check_scene) {
            return Some("content_check_scene must be 1, 2, 3 or 4".into());
        }
        if self.wechat_services.content_check_timeout_ms < 50
            || self.wechat_services.content_check_per_min < 1
        {
            return Some(
                "content_check_timeout_ms must be >= 50 and content_check_per_min >= 1".into(),
            );
        }
        if self.wechat_services.wechat_notify_template.is_some() && !self.wechat_enabled() {
            return Some("wechat_notify_template needs wechat_appid and wechat_secret".into());
        }
        match notify_fields(&self.wechat_services.wechat_notify_fields) {
            Err(why) => return Some(format!("wechat_notify_fields: {why}")),
            Ok(fields)
                if fields.is_empty() && self.wechat_services.wechat_notify_template.is_some() =>
            {
                return Some("wechat_notify_template needs wechat_notify_fields".into())
            }
            Ok(_) => {}
        }
        if !["developer", "trial", "formal"]
            .contains(&self.wechat_services.wechat_notify_state.as_str())
        {
            return Some("wechat_notify_state must be developer, trial or formal".into());
        }
        if self.wechat_services.wechat_notify_preview_chars < 1 {
            return Some("wechat_notify_preview_chars must be >= 1".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_mappings_parse_or_say_why() {
        assert_eq!(
            notify_fields("thing1=sender, thing2=text,time3=time").unwrap(),
            vec![
                ("thing1".into(), NotifySource::Sender),
                ("thing2".into(), NotifySource::Text),
                ("time3".into(), NotifySource::Time)
            ]
        );
        assert!(notify_fields("").unwrap().is_empty());
        assert!(notify_fields("thing1").is_err());
        assert!(notify_fields("thing1=body").is_err());
        assert!(notify_fields("a b=text").is_err());
    }

    #[test]
    fn the_checks_and_notifications_need_wechat_and_sane_values() {
        let mut config = Config::default();
        config.wechat_services.content_check = ContentCheck::Wechat;
        assert!(config.wechat_problem().unwrap().contains("wechat_appid"));
        config.wechat_appid = Some("wx".into());
        config.wechat_secret = Some("secret".into());
        assert_eq!(config.wechat_problem(), None);
        config.wechat_services.content_check_scene = 5;
        assert!(config.wechat_problem().unwrap().contains("scene"));
        config.wechat_services.content_check_scene = 2;
        config.wechat_services.wechat_notify_template = Some("tpl".into());
        assert!(config
            .wechat_problem()
            .unwrap()
            .contains("wechat_notify_fields"));
        config.wechat_services.wechat_notify_fields = "thing1=sender".into();
        assert_eq!(config.wechat_problem(), None);
        assert!(config.wechat_notify_enabled());
        config.wechat_services.wechat_notify_state = "prod".into();
        assert!(config
            .wechat_problem()
            .unwrap()
            .contains("wechat_notify_state"));
    }
}

/// WeChat's server-side services (flattened into [`super::Config`]: the keys stay top-level).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(default)]
pub struct WeChatServices {
    /// Where the WeChat `access_token` comes from: "stable" (`cgi-bin/stable_token`) or "token"
    /// (`cgi-bin/token`). One token serves every node: it is kept in the store and refreshed by one node.
    #[arg(long, value_enum, default_value_t = WeChatTokenApi::default())]
    pub wechat_token_api: WeChatTokenApi,
    /// Content check of user text before it commits: "off" or "wechat" (`wxa/msg_sec_check` v2, for
    /// senders who logged in with WeChat; needs wechat_appid, wechat_secret). WeChat's "risky" refuses the
    /// send with `content_rejected`.
    #[arg(long, value_enum, default_value_t = ContentCheck::default())]
    pub content_check: ContentCheck,
    /// The `scene` of the content check: 1 profile, 2 comment, 3 forum, 4 social log.
    #[arg(long, default_value_t = 2)]
    pub content_check_scene: u8,
    /// What a send does when WeChat answers "review": "allow", "reject" (`content_rejected`) or "flag"
    /// (sent, and the webhook event `message.flagged` names it).
    #[arg(long, value_enum, default_value_t = ContentReview::default())]
    pub content_review: ContentReview,
    /// What a send does when the check cannot be made (timeout, WeChat errors such as 45009 over quota,
    /// the local rate limit): "allow" (sent unchecked) or "reject" (refused with `unavailable`).
    #[arg(long, value_enum, default_value_t = ContentCheckFailure::default())]
    pub content_check_failure: ContentCheckFailure,
    /// Milliseconds WeChat has to answer one content check (token fetch included).
    #[arg(long, default_value_t = 1000)]
    pub content_check_timeout_ms: u64,
    /// Content checks per minute this node makes (also the burst); beyond it content_check_failure decides.
    /// WeChat allows 4000 a minute per app: split it between the nodes.
    #[arg(long, default_value_t = 4000)]
    pub content_check_per_min: u32,
    /// Template id of the subscribe message (`subscribeMessage.send`) sent to a WeChat user who has no open
    /// connection when a message arrives, one per one-time grant (`notify_grant`). Unset: no notification.
    #[arg(long)]
    pub wechat_notify_template: Option<String>,
    /// Page the notification opens, e.g. "pages/chat/chat?conversation_id={conversation_id}" (the braces
    /// are filled in). Unset: the mini-program's home page.
    #[arg(long)]
    pub wechat_notify_page: Option<String>,
    /// The template's fields: `key=source` pairs, comma-separated, sources sender, text, time, conversation;
    /// e.g. "thing1=sender,thing2=text,time3=time".
    #[arg(long, default_value = "")]
    pub wechat_notify_fields: String,
    /// Characters of a message's text in the notification (WeChat's `thing` fields hold 20).
    #[arg(long, default_value_t = 20)]
    pub wechat_notify_preview_chars: usize,
    /// Seconds during which a user gets at most one notification per conversation.
    #[arg(long, default_value_t = 300)]
    pub wechat_notify_window_secs: u64,
    /// The `miniprogram_state` of notifications: "developer", "trial" or "formal".
    #[arg(long, default_value = "formal")]
    pub wechat_notify_state: String,
}

impl Default for WeChatServices {
    /// The defaults in the clap attributes (a TOML file that names none of these keys gets them).
    fn default() -> Self {
        super::Config::default().wechat_services
    }
}
