//! Calls to WeChat's server API that need an `access_token`: the answer read with a size cap, WeChat's
//! `errcode` turned into [`CallError::WeChat`], and one retry with a new token when WeChat says the token is
//! invalid or expired (40001, 42001, 40014).

use serde_json::Value;

use super::token::Tokens;

/// Largest answer read from WeChat: real ones are a few hundred bytes.
const ANSWER_MAX: usize = 64 * 1024;

/// WeChat's answers meaning "this access_token is not (or no longer) valid".
const TOKEN_REFUSED: [i64; 3] = [40001, 42001, 40014];

/// Why a call to WeChat gave no answer to act on.
#[derive(Debug)]
pub enum CallError {
    /// Unreachable, too slow, or an unreadable answer (the detail is for the log).
    Transport(String),
    /// WeChat answered with a nonzero `errcode`.
    WeChat { errcode: i64, errmsg: String },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(detail) => write!(f, "WeChat unreachable: {detail}"),
            CallError::WeChat { errcode, errmsg } => {
                write!(f, "WeChat errcode {errcode}: {errmsg}")
            }
        }
    }
}

/// Sends `request` and reads its JSON answer; a nonzero `errcode` is an error.
pub(super) async fn answer(request: reqwest::RequestBuilder) -> Result<Value, CallError> {
    let transport = |e: reqwest::Error| CallError::Transport(e.without_url().to_string());
    let mut response = request.send().await.map_err(transport)?;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > ANSWER_MAX {
            return Err(CallError::Transport(format!(
                "answer larger than {ANSWER_MAX} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| CallError::Transport(format!("unreadable answer: {e}")))?;
    match value.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
        0 => Ok(value),
        errcode => Err(CallError::WeChat {
            errcode,
            errmsg: value
                .get("errmsg")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        }),
    }
}

/// POSTs `body` to `{api_base}/{path}?access_token=...`; when WeChat refuses the token, gets a new one
/// (once) and tries again.
pub(super) async fn post_with_token(
    http: &reqwest::Client,
    tokens: &Tokens,
    path: &str,
    body: &Value,
) -> Result<Value, CallError> {
    let url = format!("{}/{path}", tokens.api_base());
    let token = tokens.get().await?;
    let first = answer(
        http.post(&url)
            .query(&[("access_token", &token)])
            .json(body),
    )
    .await;
    match first {
        Err(CallError::WeChat { errcode, .. }) if TOKEN_REFUSED.contains(&errcode) => {
            tracing::info!(
                errcode,
                "WeChat refused the access_token: fetching a new one"
            );
            let token = tokens.replace(&token).await?;
            answer(
                http.post(&url)
                    .query(&[("access_token", &token)])
                    .json(body),
            )
            .await
        }
        other => other,
    }
}
