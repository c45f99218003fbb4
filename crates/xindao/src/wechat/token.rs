//! The WeChat `access_token`: one per app, shared by every node through the store (`wechat_tokens`), so that
//! a cluster fetches one token, not one per node (with `cgi-bin/token` each fetch would also cut short the
//! token the other nodes hold).
//!
//! A node uses its memory copy until `use_until` (WeChat's expiry less a margin of 5 minutes, or half the
//! lifetime when shorter); then it reads the store, and when the stored token is also due, claims the refresh
//! (compare-and-set on the `use_until` it saw, with a lease so that a node dying mid-fetch does not block
//! the others for long), fetches, and stores the new one. Nodes that lose the claim wait for the winner's
//! token. When WeChat refuses a token (40001/42001), [`Tokens::replace`] does the same once, asking the stable
//! API for a forced refresh, unless another node has already replaced it. The fetch runs on a task of its
//! own: a caller that gives up (its check timed out) does not leave the claim unfinished.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use super::answer::{answer, CallError};
use crate::config::WeChatTokenApi;
use crate::model::{now_millis, Millis};
use crate::store::Store;

/// How long a claim on the refresh lasts: a fetch's deadline and then some.
const LEASE_MS: i64 = 10_000;
/// How often a node that lost the claim looks for the winner's token.
const POLL: Duration = Duration::from_millis(50);
/// A token is replaced this long before WeChat's expiry (at most half its lifetime).
const MARGIN_MS: i64 = 5 * 60 * 1000;

/// The app's credentials and where to ask.
pub struct Credentials {
    pub api_base: String,
    pub appid: String,
    pub secret: String,
    pub api: WeChatTokenApi,
}

/// The token service of one node.
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    credentials: Credentials,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    /// This node's copy: the token and its `use_until`.
    cached: Mutex<Option<(String, Millis)>>,
    /// One refresh at a time on this node.
    refreshing: tokio::sync::Mutex<()>,
}

impl Tokens {
    pub fn new(credentials: Credentials, http: reqwest::Client, store: Arc<dyn Store>) -> Tokens {
        Tokens {
            inner: Arc::new(Inner {
                credentials,
                http,
                store,
                cached: Mutex::new(None),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub(super) fn api_base(&self) -> &str {
        self.inner.credentials.api_base.trim_end_matches('/')
    }

    /// A token to use now.
    pub async fn get(&self) -> Result<String, CallError> {
        if let Some(token) = self.inner.cached_token(None) {
            return Ok(token);
        }
        self.refresh(None).await
    }

    /// A token other than `refused`, which WeChat called invalid or expired.
    pub async fn replace(&self, refused: &str) -> Result<String, CallError> {
        if let Some(token) = self.inner.cached_token(Some(refused)) {
            return Ok(token);
        }
        self.refresh(Some(refused.to_string())).await
    }

    async fn refresh(&self, refused: Option<String>) -> Result<String, CallError> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.refresh(refused.as_deref()).await })
            .await
            .map_err(|e| CallError::Transport(format!("token refresh task: {e}")))?
    }
}

impl Inner {
    fn cached_token(&self, refused: Option<&str>) -> Option<String> {
        let cached = self.cached.lock();
        cached
            .as_ref()
            .filter(|(token, use_until)| {
                *use_until > now_millis() && Some(token.as_str()) != refused
            })
            .map(|(token, _)| token.clone())
    }

    async fn refresh(&self, refused: Option<&str>) -> Result<String, CallError> {
        let _one = self.refreshing.lock().await;
        if let Some(token) = self.cached_token(refused) {
            return Ok(token);
        }
        let store_error = |e: crate::Error| CallError::Transport(format!("token store: {e}"));
        let appid = &self.credentials.appid;
        let deadline = now_millis() + LEASE_MS;
        loop {
            let now = now_millis();
            let stored = self.store.wechat_token(appid).await.map_err(store_error)?;
            if let Some(row) = &stored {
                if !row.token.is_empty()
                    && row.use_until > now
                    && Some(row.token.as_str()) != refused
                {
                    *self.cached.lock() = Some((row.token.clone(), row.use_until));
                    return Ok(row.token.clone());
                }
            }
            let seen = stored.as_ref().map_or(0, |row| row.use_until);
            if self
                .store
                .wechat_token_claim(appid, seen, now, now + LEASE_MS)
                .await
                .map_err(store_error)?
            {
                let (token, use_until) = match self.fetch(refused.is_some()).await {
                    Ok(fetched) => fetched,
                    Err(error) => {
                        // Give the claim up (the row as it was), so that the next caller tries at once.
                        let (old, until) =
                            stored.map_or((String::new(), 0), |r| (r.token, r.use_until));
                        if let Err(e) = self.store.wechat_token_put(appid, &old, until).await {
                            tracing::warn!(error = %e, "token claim not given up");
                        }
                        return Err(error);
                    }
                };
                self.store
                    .wechat_token_put(appid, &token, use_until)
                    .await
                    .map_err(store_error)?;
                *self.cached.lock() = Some((token.clone(), use_until));
                return Ok(token);
            }
            if now > deadline {
                return Err(CallError::Transport(
                    "another node holds the token refresh".into(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Asks WeChat for a token; returns it with its `use_until`.
    async fn fetch(&self, force: bool) -> Result<(String, Millis), CallError> {
        let c = &self.credentials;
        let base = c.api_base.trim_end_matches('/');
        let request = match c.api {
            WeChatTokenApi::Stable => {
                self.http
                    .post(format!("{base}/cgi-bin/stable_token"))
                    .json(&json!({
                        "grant_type": "client_credential",
                        "appid": c.appid,
                        "secret": c.secret,
                        "force_refresh": force,
                    }))
            }
            WeChatTokenApi::Token => self.http.get(format!("{base}/cgi-bin/token")).query(&[
                ("grant_type", "client_credential"),
                ("appid", c.appid.as_str()),
                ("secret", c.secret.as_str()),
            ]),
        };
        let answer = answer(request).await.inspect_err(|e| {
            tracing::warn!(error = %e, "WeChat access_token fetch failed");
        })?;
        let token = answer
            .get("access_token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CallError::Transport("token answer without access_token".into()))?;
        let lifetime_ms = answer
            .get("expires_in")
            .and_then(|v| v.as_i64())
            .unwrap_or(7200)
            .clamp(1, 86_400)
            * 1000;
        let use_until = now_millis() + lifetime_ms - MARGIN_MS.min(lifetime_ms / 2);
        tracing::info!(lifetime_ms, "fetched a WeChat access_token");
        Ok((token.to_string(), use_until))
    }
}
