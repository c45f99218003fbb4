//! Calls to WeChat's server API that need an `access_token`: the answer read with a size cap, WeChat's
//! `errcode` turned into [`CallError::WeChat`], and one retry with a new token when WeChat says the token is
//! invalid or expired (40001, 42001, 40014).

use serde_json::Value;

use super::answer::answer;
pub use super::answer::CallError;
use super::token::Tokens;

/// WeChat's answers meaning "this access_token is not (or no longer) valid".
const TOKEN_REFUSED: [i64; 3] = [40001, 42001, 40014];

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
