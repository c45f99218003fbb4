//! One call to WeChat's server API and its answer: read with a size cap, a nonzero `errcode` turned into
//! [`CallError::WeChat`]. Below both the token service (`token.rs`) and the calls that need a token (`api.rs`).

use serde_json::Value;

/// Largest answer read from WeChat: real ones are a few hundred bytes.
const ANSWER_MAX: usize = 64 * 1024;

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
