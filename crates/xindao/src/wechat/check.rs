//! WeChat's content check (`wxa/msg_sec_check` v2) of user text before it commits. Only senders with an
//! openid (WeChat logins) are checked: WeChat judges text by who sends it. Text longer than WeChat's 2500
//! characters is checked in parts, at once. Each send awaits its own calls on its own connection's task
//! (the same place in the flow as the before-send hook), so one slow answer holds back that sender only.
//!
//! `risky` refuses the send with `content_rejected`; `review` follows `content_review`. When no verdict
//! can be had (past `content_check_timeout_ms`, over this node's `content_check_per_min`, WeChat's 45009
//! quota or any other error) `content_check_failure` decides: send unchecked, or refuse with `unavailable`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{json, Value};

use super::api::{post_with_token, CallError};
use super::openids::OpenIds;
use super::token::Tokens;
use crate::config::{Config, ContentCheckFailure, ContentReview};
use crate::error::{Error, Result};
use crate::metrics::NotifyMetrics;
use crate::model::UserId;

/// Longest content WeChat checks in one call, in characters.
const PART_CHARS: usize = 2500;

/// What a send learns from the check when it may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Pass,
    /// Send it and emit `message.flagged` (WeChat said `review`, and `content_review = "flag"`).
    Flag { label: i64, trace_id: String },
}

/// WeChat's judgement of one part.
enum Suggest {
    Pass,
    Review { label: i64, trace_id: String },
    Risky { label: i64, trace_id: String },
}

pub struct ContentChecker {
    http: reqwest::Client,
    tokens: Arc<Tokens>,
    openids: Arc<OpenIds>,
    scene: u8,
    review: ContentReview,
    failure: ContentCheckFailure,
    timeout: Duration,
    quota: DefaultDirectRateLimiter,
    metrics: NotifyMetrics,
}

impl ContentChecker {
    pub fn new(
        config: &Config,
        http: reqwest::Client,
        tokens: Arc<Tokens>,
        openids: Arc<OpenIds>,
        metrics: NotifyMetrics,
    ) -> ContentChecker {
        let per_min = NonZeroU32::new(config.wechat_services.content_check_per_min)
            .unwrap_or(NonZeroU32::MIN);
        ContentChecker {
            http,
            tokens,
            openids,
            scene: config.wechat_services.content_check_scene,
            review: config.wechat_services.content_review,
            failure: config.wechat_services.content_check_failure,
            timeout: Duration::from_millis(config.wechat_services.content_check_timeout_ms),
            quota: RateLimiter::direct(Quota::per_minute(per_min)),
            metrics,
        }
    }

    /// Checks `text` sent by `sender`: `Ok` to send (flagged or not), `content_rejected` or `unavailable`.
    pub async fn check(&self, sender: UserId, text: &str) -> Result<Verdict> {
        let Some(openid) = self.openids.get(sender).await? else {
            return Ok(Verdict::Pass);
        };
        let started = Instant::now();
        let parts = split(text, PART_CHARS);
        let calls = parts.iter().map(|part| self.ask(&openid, part));
        let answers =
            match tokio::time::timeout(self.timeout, futures_util::future::join_all(calls)).await {
                Ok(answers) => answers,
                Err(_) => vec![Err(format!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                ))],
            };
        self.metrics
            .content_check_seconds
            .observe(started.elapsed().as_secs_f64());
        let (decision, result) = self.decide(sender, answers);
        self.metrics.checked(result);
        decision
    }

    /// The send's fate from WeChat's answers, and the check's result for the metrics (`pass`, `risky`,
    /// `review` or `error`).
    fn decide(
        &self,
        sender: UserId,
        answers: Vec<std::result::Result<Suggest, String>>,
    ) -> (Result<Verdict>, &'static str) {
        let mut verdict = Verdict::Pass;
        let mut result = "pass";
        for answer in answers {
            match answer {
                Ok(Suggest::Pass) => {}
                Ok(Suggest::Risky { label, trace_id }) => {
                    tracing::info!(sender, label, %trace_id, "WeChat content check: risky");
                    return (Err(Error::ContentRejected), "risky");
                }
                Ok(Suggest::Review { label, trace_id }) => {
                    result = "review";
                    match self.review {
                        ContentReview::Allow => {}
                        ContentReview::Reject => {
                            tracing::info!(sender, label, %trace_id, "WeChat content check: review, refused");
                            return (Err(Error::ContentRejected), result);
                        }
                        ContentReview::Flag => verdict = Verdict::Flag { label, trace_id },
                    }
                }
                Err(why) => {
                    tracing::warn!(%why, policy = ?self.failure, "WeChat content check failed");
                    return match self.failure {
                        ContentCheckFailure::Allow => (Ok(verdict), "error"),
                        ContentCheckFailure::Reject => (
                            Err(Error::Unavailable(
                                "the content check cannot be made now".into(),
                            )),
                            "error",
                        ),
                    };
                }
            }
        }
        (Ok(verdict), result)
    }

    /// One call for one part.
    async fn ask(&self, openid: &str, part: &str) -> std::result::Result<Suggest, String> {
        if self.quota.check().is_err() {
            return Err("over content_check_per_min on this node".into());
        }
        let body = json!({ "version": 2, "openid": openid, "scene": self.scene, "content": part });
        let answer = post_with_token(&self.http, &self.tokens, "wxa/msg_sec_check", &body)
            .await
            .map_err(|e| match e {
                CallError::WeChat { errcode: 45009, .. } => {
                    "WeChat's daily quota is used up (45009)".into()
                }
                other => other.to_string(),
            })?;
        let result = &answer["result"];
        let label = result["label"].as_i64().unwrap_or(0);
        let trace_id = answer["trace_id"].as_str().unwrap_or_default().to_string();
        match result["suggest"].as_str() {
            Some("pass") => Ok(Suggest::Pass),
            Some("review") => Ok(Suggest::Review { label, trace_id }),
            Some("risky") => Ok(Suggest::Risky { label, trace_id }),
            _ => Err(format!("answer without a suggestion: {}", short(&answer))),
        }
    }
}

/// `text` in parts of at most `chars` characters.
fn split(text: &str, chars: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .char_indices()
            .nth(chars)
            .map_or(rest.len(), |(index, _)| index);
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    if parts.is_empty() {
        parts.push(text);
    }
    parts
}

fn short(value: &Value) -> String {
    value.to_string().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_checked_in_parts_on_character_boundaries() {
        assert_eq!(split("", 3), vec![""]);
        assert_eq!(split("abc", 3), vec!["abc"]);
        assert_eq!(split("abcd", 3), vec!["abc", "d"]);
        assert_eq!(split("信道信道信", 2), vec!["信道", "信道", "信"]);
    }
}
