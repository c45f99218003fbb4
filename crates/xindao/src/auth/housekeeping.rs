//! The login side's periodic chores, in one task per node until shutdown: delete expired sessions and
//! connect tickets, forget idle clients of the login limiter, and repeat the warning of a development login
//! served beyond loopback. Beside them, the store's offline-notification marks older than their window
//! (`crate::store::offline`) are deleted, which bounds those tables.
//!
//! Every node of a cluster deletes expired rows; the deletes are idempotent and batched, so running them on
//! several nodes costs a few empty statements.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Auth;
use crate::config::Config;

/// How often the chores run.
const TICK: Duration = Duration::from_secs(60);
/// Every how many ticks expired sessions are deleted, and the exposed dev login warned about again.
const SLOW_EVERY: u32 = 5;

/// Logs the development login's warning: a warning on loopback, an error-level line when reachable by others.
pub fn warn_dev_login(config: &Config) {
    if !config.dev_login_enabled() {
        return;
    }
    if config.listens_on_loopback() {
        tracing::warn!(
            "development login is on (POST /v1/login/dev): anyone who can reach {} can log in as any display \
             name; it listens on loopback only",
            config.listen
        );
    } else {
        tracing::error!(
            "DEVELOPMENT LOGIN IS ON AND REACHABLE FROM THE NETWORK ({}, dev_login = \"true\"): anyone can log \
             in as any display name and read that user's history; do not run this in production",
            config.listen
        );
    }
}

/// Starts the chores; the task ends when `shutdown` is cancelled.
pub fn spawn_housekeeping(
    auth: Arc<Auth>,
    config: Arc<Config>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            auth.forget_idle_clients();
            // The first tick is at once: a restarted server cleans up before anything else piles up.
            if ticks % SLOW_EVERY == 0 {
                let deleting = auth.delete_expired();
                let deleted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    deleted = deleting => deleted,
                };
                match deleted {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "deleted expired sessions and tickets"),
                    Err(error) => tracing::warn!(%error, "cannot delete expired sessions"),
                }
                forget_offline_marks(&auth, &config).await;
                if ticks > 0 && !config.listens_on_loopback() {
                    warn_dev_login(&config);
                }
            }
            ticks = ticks.wrapping_add(1);
        }
    })
}

/// Deletes the offline-notification marks whose window has passed (they hold nothing back any more).
async fn forget_offline_marks(auth: &Auth, config: &Config) {
    let now = crate::model::now_millis();
    let before = |secs: u64| {
        now.saturating_sub(i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    };
    let forgotten = auth
        .store
        .offline_marks_forget(
            before(config.webhook_offline_window_secs),
            before(config.wechat_services.wechat_notify_window_secs),
        )
        .await;
    match forgotten {
        Ok(0) => {}
        Ok(deleted) => tracing::debug!(deleted, "deleted expired offline-notification marks"),
        Err(error) => tracing::warn!(%error, "cannot delete expired offline-notification marks"),
    }
}
