//! WeChat's server API beyond login: the content check of user text before it commits ([`check`]), and the
//! subscribe-message notification of users who are offline when a message arrives ([`notify`]). Both need
//! the app's `access_token`, fetched once for a whole cluster and shared through the store ([`token`]).
//!
//! The chat service calls them from `send` (`chat::wechat`): the check before the commit, the notification
//! after it, on a task of its own. Enabling them: docs/deploy.md, "WeChat content check and notifications".

mod answer;
pub mod api;
pub mod check;
pub mod notify;
mod openids;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ContentCheck};
use crate::error::{Error, Result};
use crate::metrics::NotifyMetrics;
use crate::store::Store;

/// Connect deadline of every WeChat call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Whole-call deadline of calls no sender waits for (token fetches, notifications). Content checks are
/// bounded by `content_check_timeout_ms` as well.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The WeChat services a configuration turns on.
pub struct WeChat {
    pub checker: Option<check::ContentChecker>,
    pub notifier: Option<Arc<notify::Notifier>>,
}

impl WeChat {
    /// `None` unless `content_check = "wechat"` or `wechat_notify_template` is set (both need WeChat login).
    pub fn from_config(
        config: &Config,
        store: Arc<dyn Store>,
        metrics: NotifyMetrics,
    ) -> Result<Option<WeChat>> {
        let checking = config.wechat_services.content_check == ContentCheck::Wechat;
        if !checking && !config.wechat_notify_enabled() {
            return Ok(None);
        }
        let (Some(appid), Some(secret)) = (&config.wechat_appid, &config.wechat_secret) else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Internal(format!("WeChat http client: {e}")))?;
        let tokens = Arc::new(token::Tokens::new(
            token::Credentials {
                api_base: config.wechat_api_base.clone(),
                appid: appid.clone(),
                secret: secret.as_str().to_string(),
                api: config.wechat_services.wechat_token_api,
            },
            http.clone(),
            store.clone(),
        ));
        let openids = Arc::new(openids::OpenIds::new(store.clone()));
        let checker = checking.then(|| {
            check::ContentChecker::new(
                config,
                http.clone(),
                tokens.clone(),
                openids.clone(),
                metrics.clone(),
            )
        });
        let notifier = notify::Notifier::from_config(config, http, tokens, openids, store, metrics)
            .map(Arc::new);
        Ok(Some(WeChat { checker, notifier }))
    }
}
