//! Login and sessions. Mini-programs have no cookies, so a login returns an opaque bearer token that
//! authorises both HTTP calls and the WebSocket upgrade. Only the token's SHA-256 is stored.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result, WeChatError};
use crate::model::{now_millis, Millis, User, UserId};
use crate::store::{ExternalId, LoginIdentity, Store};
use crate::validate;

/// An authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub user_id: UserId,
    pub token_hash: [u8; 32],
}

/// What a successful login returns to the client.
#[derive(Debug, Serialize)]
pub struct LoginResult {
    pub token: String,
    pub expires_at: Millis,
    pub user: User,
}

/// Issues, checks and revokes sessions; talks to WeChat `code2Session`.
pub struct Auth {
    store: Arc<dyn Store>,
    http: reqwest::Client,
    config: Arc<Config>,
}

/// SHA-256 of a token: what the store keeps instead of the token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Deserialize)]
struct Code2Session {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    openid: Option<String>,
    session_key: Option<String>,
    unionid: Option<String>,
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>) -> Result<Auth> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        Ok(Auth {
            store,
            http,
            config,
        })
    }

    /// WeChat login: exchanges a `wx.login` code for the user's openid, then issues a session.
    pub async fn login_wechat(&self, code: &str) -> Result<LoginResult> {
        let (Some(appid), Some(secret)) = (&self.config.wechat_appid, &self.config.wechat_secret)
        else {
            return Err(Error::NotFound(
                "WeChat login is not configured on this server",
            ));
        };
        if code.is_empty() || code.len() > 256 || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidArgs(
                "`code` must be the string from wx.login".into(),
            ));
        }
        let url = format!(
            "{}/sns/jscode2session",
            self.config.wechat_api_base.trim_end_matches('/')
        );
        let response = self
            .http
            .get(url)
            .query(&[
                ("appid", appid.as_str()),
                ("secret", secret.as_str()),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .map_err(|e| WeChatError::Transport(e.without_url().to_string()))?;
        // WeChat answers JSON with a text/plain content type; read bytes and parse them ourselves.
        let body = response
            .bytes()
            .await
            .map_err(|e| WeChatError::Transport(e.without_url().to_string()))?;
        let answer: Code2Session = serde_json::from_slice(&body)
            .map_err(|e| WeChatError::Transport(format!("unreadable answer: {e}")))?;
        let openid = match (answer.errcode, answer.openid) {
            (0, Some(openid)) if !openid.is_empty() => openid,
            (0, _) => return Err(WeChatError::Transport("answer has no openid".into()).into()),
            (40029 | 40163, _) => return Err(WeChatError::InvalidCode(answer.errcode).into()),
            (45011, _) => return Err(WeChatError::RateLimited.into()),
            (40226, _) => return Err(WeChatError::UserBlocked.into()),
            (-1, _) => return Err(WeChatError::Busy.into()),
            (errcode, _) => {
                return Err(WeChatError::Other {
                    errcode,
                    errmsg: answer.errmsg,
                }
                .into())
            }
        };
        let user = self
            .store
            .upsert_user(LoginIdentity {
                external_id: ExternalId::WeChat { openid },
                unionid: answer.unionid,
                session_key: answer.session_key,
            })
            .await?;
        tracing::info!(user = user.id, "WeChat login");
        self.issue(user).await
    }

    /// Development login: a display name is a user. Only when enabled by configuration.
    pub async fn login_dev(&self, display_name: &str) -> Result<LoginResult> {
        if !self.config.dev_login_enabled() {
            return Err(Error::NotFound(
                "development login is disabled on this server",
            ));
        }
        let display_name = validate::name(display_name, "display_name")?;
        let user = self
            .store
            .upsert_user(LoginIdentity {
                external_id: ExternalId::Dev { display_name },
                unionid: None,
                session_key: None,
            })
            .await?;
        self.issue(user).await
    }

    async fn issue(&self, user: User) -> Result<LoginResult> {
        let token = new_token();
        let expires_at = now_millis() + self.config.session_ttl().as_millis() as i64;
        self.store
            .create_session(hash_token(&token), user.id, expires_at)
            .await?;
        Ok(LoginResult {
            token,
            expires_at,
            user,
        })
    }

    /// Checks a bearer token and slides its expiry.
    pub async fn authenticate(&self, token: &str) -> Result<Session> {
        if token.is_empty() || token.len() > 256 {
            return Err(Error::Unauthorized);
        }
        let token_hash = hash_token(token);
        let ttl_ms = self.config.session_ttl().as_millis() as i64;
        match self
            .store
            .touch_session(token_hash, now_millis(), ttl_ms)
            .await?
        {
            Some(info) => Ok(Session {
                user_id: info.user_id,
                token_hash,
            }),
            None => Err(Error::Unauthorized),
        }
    }

    /// Revokes a session. The caller ends its open sockets.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        self.store.revoke_session(session.token_hash).await
    }
}

/// The bearer token from `Authorization: Bearer …`, or from `?token=` for browsers (which cannot set headers
/// on a WebSocket).
pub fn bearer(headers: &axum::http::HeaderMap, query_token: Option<&str>) -> Option<String> {
    let from_header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    from_header.or_else(|| query_token.map(str::to_string))
}
