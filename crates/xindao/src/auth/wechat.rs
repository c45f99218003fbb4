//! WeChat `code2Session`: exchanges a `wx.login` code for the user's openid.
//!
//! The answer is read with a deadline and a size cap (a slow or huge answer must not hold a login or its
//! memory), and WeChat's own `errmsg` never reaches the client: it is logged, and the client gets one of our
//! error codes. The `session_key` WeChat sends is never stored: only the Wafer login (`crate::wafer`) uses it,
//! in memory, to decrypt the `wx.getUserInfo` payload of the same request; a stored key is one more secret to
//! lose.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, WeChatError};

/// Whole-call deadline (connect, request, answer).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect deadline, within [`CALL_TIMEOUT`].
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read: a real one is about 150 bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// A successful `code2Session`. `session_key` (base64, 16 bytes) lives only as long as the login request.
pub struct WeChatIdentity {
    pub openid: String,
    pub unionid: Option<String>,
    pub session_key: Option<String>,
}

#[derive(Deserialize)]
struct Code2Session {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    openid: Option<String>,
    unionid: Option<String>,
    session_key: Option<String>,
}

/// The HTTP client for WeChat, with its deadlines.
pub(super) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// Logs the detail of a failed call and returns the error the client sees (no detail in it).
fn transport(detail: impl std::fmt::Display) -> WeChatError {
    tracing::warn!(%detail, "WeChat code2Session failed");
    WeChatError::Transport
}

/// Calls `code2Session`. `api_base` is `https://api.weixin.qq.com` (tests: a local fake).
pub(super) async fn code2session(
    http: &reqwest::Client,
    api_base: &str,
    appid: &str,
    secret: &str,
    code: &str,
) -> Result<WeChatIdentity, WeChatError> {
    let url = format!("{}/sns/jscode2session", api_base.trim_end_matches('/'));
    let mut response = http
        .get(url)
        .query(&[
            ("appid", appid),
            ("secret", secret),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .map_err(|e| transport(e.without_url()))?;
    // WeChat answers JSON with a text/plain content type; read bytes (at most MAX_ANSWER_BYTES) and parse.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport(e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(transport(format_args!(
                "answer larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: Code2Session = serde_json::from_slice(&body)
        .map_err(|e| transport(format_args!("unreadable answer: {e}")))?;
    match (answer.errcode, answer.openid) {
        (0, Some(openid)) if !openid.is_empty() => Ok(WeChatIdentity {
            openid,
            unionid: answer.unionid,
            session_key: answer.session_key,
        }),
        (0, _) => Err(transport("answer has no openid")),
        (errcode, _) => {
            tracing::warn!(errcode, errmsg = %answer.errmsg, "WeChat refused a login code");
            Err(match errcode {
                40029 | 40163 => WeChatError::InvalidCode(errcode),
                45011 => WeChatError::RateLimited,
                40226 => WeChatError::UserBlocked,
                -1 => WeChatError::Busy,
                errcode => WeChatError::Other { errcode },
            })
        }
    }
}
