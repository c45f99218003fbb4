//! The before-send hook: when `before_send_url` is set, each user message is POSTed to it before it enters
//! the group commit, and the answer accepts it, rejects it (the sender gets `rejected` with the hook's reason
//! code) or replaces its content (checked again like a client's). Each send awaits its own call on its own
//! connection's task, so a slow answer holds back that sender only, not the others (the HTTP client keeps a
//! connection per call in flight). When the hook cannot answer (down, past `before_send_timeout_ms`, an answer
//! that is not one of the three) `before_send_failure` decides: "open" sends the message as it is, "closed"
//! refuses it with `unavailable`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::WebhookMetrics;
use crate::config::{BeforeSendFailure, Config};
use crate::error::{Error, Result};
use crate::model::{ConversationId, MessageKind, UserId};

/// Largest answer read from the hook.
const ANSWER_MAX: usize = 256 * 1024;
/// Longest reason code passed on to the client.
const REASON_MAX: usize = 64;

/// What the hook is told.
#[derive(Serialize)]
struct Ask<'a> {
    event: &'static str,
    conversation_id: ConversationId,
    sender_id: UserId,
    cmid: &'a str,
    kind: MessageKind,
    content: &'a serde_json::Value,
}

/// What the hook answers.
#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
enum Answer {
    Accept,
    Reject {
        #[serde(default)]
        reason: Option<String>,
    },
    Replace {
        content: serde_json::Value,
    },
}

/// The hook's client, when one is configured.
pub struct BeforeSend {
    url: String,
    http: reqwest::Client,
    failure: BeforeSendFailure,
    secret: Option<crate::config::Secret>,
    metrics: WebhookMetrics,
}

impl BeforeSend {
    pub fn from_config(config: &Config, metrics: WebhookMetrics) -> Result<Option<BeforeSend>> {
        let Some(url) = &config.before_send_url else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.before_send_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Internal(format!("before-send http client: {e}")))?;
        Ok(Some(BeforeSend {
            url: url.clone(),
            http,
            failure: config.before_send_failure,
            secret: config.before_send_secret.clone(),
            metrics,
        }))
    }

    /// Asks the hook about one message: `Ok(None)` to send it as it is, `Ok(Some(content))` to send this
    /// content instead, `Err(Rejected)` when the hook refused it, `Err(Unavailable)` when it could not answer
    /// and the policy is closed.
    pub async fn check(
        &self,
        conversation_id: ConversationId,
        sender_id: UserId,
        cmid: &str,
        kind: MessageKind,
        content: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>> {
        self.metrics.before_send_calls.inc();
        let ask = Ask {
            event: "message.before_send",
            conversation_id,
            sender_id,
            cmid,
            kind,
            content,
        };
        match self.ask(&ask).await {
            Ok(Answer::Accept) => Ok(None),
            Ok(Answer::Replace { content }) => Ok(Some(content)),
            Ok(Answer::Reject { reason }) => {
                self.metrics.before_send_rejected.inc();
                Err(Error::Rejected(reason_code(reason.as_deref())))
            }
            Err(why) => {
                self.metrics.before_send_failures.inc();
                tracing::warn!(%why, policy = ?self.failure, "before-send hook failed");
                match self.failure {
                    BeforeSendFailure::Open => Ok(None),
                    BeforeSendFailure::Closed => Err(Error::Unavailable(
                        "the before-send check cannot be made now".into(),
                    )),
                }
            }
        }
    }

    async fn ask(&self, ask: &Ask<'_>) -> std::result::Result<Answer, String> {
        let body = serde_json::to_vec(ask).map_err(|e| e.to_string())?;
        let mut request = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(secret) = &self.secret {
            let t = (crate::model::now_millis() / 1000) as u64;
            let signature = super::batch::signature(secret.as_str().as_bytes(), t, &body);
            request = request.header("X-Xindao-Signature", signature);
        }
        let mut response = request.body(body).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            answer.extend_from_slice(&chunk);
            if answer.len() > ANSWER_MAX {
                return Err("answer too large".into());
            }
        }
        serde_json::from_slice(&answer).map_err(|e| format!("unreadable answer: {e}"))
    }
}

/// The hook's reason as a code a client can switch on: up to 64 of `[A-Za-z0-9_.-]`, else `rejected`.
fn reason_code(reason: Option<&str>) -> String {
    match reason {
        Some(r)
            if !r.is_empty()
                && r.len() <= REASON_MAX
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) =>
        {
            r.to_string()
        }
        _ => "rejected".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_codes_or_rejected() {
        assert_eq!(reason_code(Some("spam")), "spam");
        assert_eq!(reason_code(Some("policy.ads-1")), "policy.ads-1");
        assert_eq!(reason_code(Some("has space")), "rejected");
        assert_eq!(reason_code(Some(&"x".repeat(65))), "rejected");
        assert_eq!(reason_code(None), "rejected");
    }
}
