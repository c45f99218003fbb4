//! Login and sessions. Mini-programs have no cookies, so a login returns an opaque bearer token that
//! authorises both HTTP calls and the WebSocket upgrade. Only the token's SHA-256 is stored.
//!
//! Browsers cannot set a header on a WebSocket: they trade the token for a single-use connect ticket
//! (`POST /v1/ws/ticket`), which goes in the upgrade's URL instead of the token. Logins are rate-limited
//! (`limits.rs`), WeChat's answer is read with bounds (`wechat.rs`), and expired sessions are deleted
//! periodically (`housekeeping.rs`).

mod housekeeping;
pub mod jwt;
mod limits;
pub mod server_api;
mod wechat;

pub use housekeeping::{spawn_housekeeping, warn_dev_login};
pub use limits::LoginLimits;
pub use wechat::WeChatIdentity;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{now_millis, Millis, User, UserId};
use crate::store::{ExternalId, LoginIdentity, SessionExpiry, Store};
use crate::validate;

/// An authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    pub user_id: UserId,
    pub token_hash: [u8; 32],
    /// When the session ends whatever its use (a business JWT's `exp`, ms); `None` for a login's session,
    /// which slides while it is used (an open socket keeps it alive).
    pub expires_at: Option<Millis>,
}

/// What a successful login returns to the client.
#[derive(Debug, Serialize)]
pub struct LoginResult {
    pub token: String,
    pub expires_at: Millis,
    pub user: User,
}

/// How long a connect ticket is valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// Expired sessions and tickets deleted per statement.
const CLEANUP_BATCH: usize = 1000;

/// What `POST /v1/ws/ticket` returns.
#[derive(Debug, Serialize)]
pub struct Ticket {
    pub ticket: String,
    /// Seconds.
    pub expires_in: u64,
}

/// Issues, checks and revokes sessions and connect tickets; talks to WeChat `code2Session`; rate-limits
/// logins.
pub struct Auth {
    store: Arc<dyn Store>,
    limits: LoginLimits,
    http: reqwest::Client,
    config: Arc<Config>,
    /// The keys business JWTs are checked with (`jwt.rs`), if configured.
    jwt: Option<jwt::JwtKeys>,
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

impl Auth {
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>) -> Result<Auth> {
        let http = wechat::client().map_err(|e| Error::Internal(format!("http client: {e}")))?;
        Ok(Auth {
            limits: LoginLimits::new(&config),
            jwt: jwt::JwtKeys::load(&config)?,
            store,
            http,
            config,
        })
    }

    /// WeChat login: exchanges a `wx.login` code for the user's openid, then issues a session.
    pub async fn login_wechat(&self, client: IpAddr, code: &str) -> Result<LoginResult> {
        let identity = self.code2session(client, code).await?;
        self.login_identity(identity).await.map(|(login, _)| login)
    }

    /// The first half of a WeChat login: checks the code, counts the login against `client`'s limits and
    /// calls `code2Session`. The Wafer login (`crate::wafer`) decrypts the user's profile with the answer's
    /// `session_key` before [`Auth::login_identity`] issues the session.
    pub async fn code2session(&self, client: IpAddr, code: &str) -> Result<WeChatIdentity> {
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
        self.limits.check(client)?;
        Ok(wechat::code2session(
            &self.http,
            &self.config.wechat_api_base,
            appid,
            secret.as_str(),
            code,
        )
        .await?)
    }

    /// The second half of a WeChat login: the user of `identity` (created on first login) and a new session.
    /// Also returns the openid (the identity is consumed).
    pub async fn login_identity(&self, identity: WeChatIdentity) -> Result<(LoginResult, String)> {
        let openid = identity.openid.clone();
        let user = self
            .store
            .upsert_user(LoginIdentity {
                external_id: ExternalId::WeChat {
                    openid: identity.openid,
                },
                unionid: identity.unionid,
            })
            .await?;
        tracing::info!(user = user.id, "WeChat login");
        Ok((self.issue(user).await?, openid))
    }

    /// Development login: a display name is a user. Only when enabled by configuration.
    pub async fn login_dev(&self, client: IpAddr, display_name: &str) -> Result<LoginResult> {
        if !self.config.dev_login_enabled() {
            return Err(Error::NotFound(
                "development login is disabled on this server",
            ));
        }
        let display_name = validate::name(display_name, "display_name")?;
        self.limits.check(client)?;
        let user = self
            .store
            .upsert_user(LoginIdentity {
                external_id: ExternalId::Dev { display_name },
                unionid: None,
            })
            .await?;
        self.issue(user).await
    }

    async fn issue(&self, user: User) -> Result<LoginResult> {
        // A user banned through the server API gets no session (and their old ones no longer authenticate).
        if self.store.is_banned(user.id).await? {
            return Err(Error::Banned);
        }
        let token = new_token();
        let expires_at = now_millis() + self.config.session_ttl().as_millis() as i64;
        self.store
            .create_session(
                hash_token(&token),
                user.id,
                expires_at,
                SessionExpiry::Sliding,
            )
            .await?;
        Ok(LoginResult {
            token,
            expires_at,
            user,
        })
    }

    /// Checks a bearer token and slides its expiry.
    pub async fn authenticate(&self, token: &str) -> Result<Session> {
        Ok(self.resolve(token).await?.session)
    }

    /// Checks a bearer token: a session token, or a business JWT (`jwt.rs`), whose room grants come back
    /// on its first use for the caller to apply.
    pub async fn resolve(&self, token: &str) -> Result<jwt::Resolved> {
        if jwt::looks_like_jwt(token) {
            return self.resolve_jwt(token).await;
        }
        let session = self.authenticate_session(token).await?;
        Ok(jwt::Resolved {
            session,
            grants: Vec::new(),
        })
    }

    async fn authenticate_session(&self, token: &str) -> Result<Session> {
        if token.is_empty() || token.len() > 256 {
            return Err(Error::Unauthorized);
        }
        self.check_session(hash_token(token)).await
    }

    /// Checks a session by its token's hash and slides its expiry unless it is fixed (an open WebSocket
    /// re-checks its session this way, which keeps a login's session alive while the socket is).
    pub async fn check_session(&self, token_hash: [u8; 32]) -> Result<Session> {
        let ttl_ms = self.config.session_ttl().as_millis() as i64;
        match self
            .store
            .touch_session(token_hash, now_millis(), ttl_ms)
            .await?
        {
            Some(info) => Ok(Session {
                user_id: info.user_id,
                token_hash,
                expires_at: (info.expiry == SessionExpiry::Fixed).then_some(info.expires_at),
            }),
            None => Err(Error::Unauthorized),
        }
    }

    /// Revokes a session. The caller ends its open sockets.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        self.store.revoke_session(session.token_hash).await
    }

    /// Issues a connect ticket for `session`: a single-use secret, valid for [`TICKET_TTL`], that opens one
    /// WebSocket as this session (`GET /v1/ws?ticket=`) without the token in the URL. Kept in the store, so
    /// any node of a cluster accepts it; one per session (a new one replaces the last), so tickets never
    /// outnumber sessions. Each is a store write: a session gets `TICKETS_PER_MINUTE` (far above what
    /// reconnecting with backoff takes), then `rate_limited`.
    pub async fn issue_ticket(&self, session: &Session) -> Result<Ticket> {
        self.limits.check_ticket(session.token_hash)?;
        let ticket = new_token();
        let expires_at = now_millis() + TICKET_TTL.as_millis() as i64;
        self.store
            .create_ticket(hash_token(&ticket), session.token_hash, expires_at)
            .await?;
        Ok(Ticket {
            ticket,
            expires_in: TICKET_TTL.as_secs(),
        })
    }

    /// Redeems a connect ticket (once): the session it was issued for, if both are still valid.
    pub async fn redeem_ticket(&self, ticket: &str) -> Result<Session> {
        if ticket.is_empty() || ticket.len() > 256 {
            return Err(Error::Unauthorized);
        }
        let token_hash = self
            .store
            .take_ticket(hash_token(ticket), now_millis())
            .await?
            .ok_or(Error::Unauthorized)?;
        self.check_session(token_hash).await
    }

    /// Deletes expired sessions and tickets, in batches; returns how many.
    pub async fn delete_expired(&self) -> Result<usize> {
        let now = now_millis();
        let mut deleted = 0;
        loop {
            let batch = self.store.delete_expired(now, CLEANUP_BATCH).await?;
            deleted += batch;
            if batch < CLEANUP_BATCH {
                return Ok(deleted);
            }
            // Let logins and connects between batches (SQLite has one writer).
            tokio::task::yield_now().await;
        }
    }

    /// Drops idle entries of the per-address login limiter.
    pub fn forget_idle_clients(&self) {
        self.limits.forget_idle();
    }
}

/// The bearer token from `Authorization: Bearer …`, or from `?token=` (kept for older browser clients, which
/// cannot set headers on a WebSocket; it ends up in proxies' access logs, hence connect tickets).
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
