//! The dead-letter list, for the operator and the backend: one page of it (oldest first, optionally of one
//! endpoint) and redrive (all, or by ids). The server API routes (`GET /v1/server/webhooks/dead`, `POST
//! .../redrive`) call these on the running server's store; `xindao webhooks dead list|redrive` opens the
//! configured store (running migrations) without serving, calls the same functions, and closes it.

use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{DeadRow, Outbox, Store};

/// Dead deliveries in one page, at most.
pub const PAGE_MAX: usize = 1000;

/// Ids one redrive names, at most.
pub const REDRIVE_IDS_MAX: usize = 1000;

/// A page of the dead-letter list and where the next one starts.
#[derive(Debug, Serialize)]
pub struct DeadPage {
    pub dead: Vec<DeadRow>,
    pub has_more: bool,
    /// The last id of this page: pass it back as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// Up to `limit` (1..=[`PAGE_MAX`]) dead deliveries with ids above `after`, of `endpoint` when given.
pub async fn dead_page(
    store: &dyn Store,
    endpoint: Option<String>,
    after: i64,
    limit: usize,
) -> Result<DeadPage> {
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(Error::InvalidArgs(format!("limit is 1..={PAGE_MAX}")));
    }
    let mut dead = store.webhook_dead(endpoint, after, limit + 1).await?;
    let has_more = dead.len() > limit;
    dead.truncate(limit);
    let next_cursor = has_more.then(|| dead.last().map(|d| d.id)).flatten();
    Ok(DeadPage {
        dead,
        has_more,
        next_cursor,
    })
}

/// Puts dead deliveries (all, or `ids`: at most [`REDRIVE_IDS_MAX`]) back in the outbox, keeping their
/// delivery ids; returns how many moved (ids that are not dead are skipped).
pub async fn redrive_in(store: &dyn Store, ids: Option<Vec<i64>>) -> Result<usize> {
    if ids.as_ref().is_some_and(|ids| ids.len() > REDRIVE_IDS_MAX) {
        return Err(Error::InvalidArgs(format!(
            "at most {REDRIVE_IDS_MAX} ids per redrive"
        )));
    }
    store.webhook_redrive(ids).await
}

async fn open(config: &Config) -> Result<Arc<dyn Store>> {
    let (sink, _commits) = tokio::sync::mpsc::channel(1);
    crate::store::open(config, sink.into(), Arc::new(Outbox::default())).await
}

/// `xindao webhooks dead list`: every dead delivery (of `endpoint` when given), oldest first, page by page.
pub async fn dead_list(config: &Config, endpoint: Option<String>) -> Result<Vec<DeadRow>> {
    let store = open(config).await?;
    let mut all = Vec::new();
    let mut after = 0;
    let outcome = loop {
        match dead_page(store.as_ref(), endpoint.clone(), after, PAGE_MAX).await {
            Ok(page) => {
                all.extend(page.dead);
                match page.next_cursor {
                    Some(next) => after = next,
                    None => break Ok(all),
                }
            }
            Err(error) => break Err(error),
        }
    };
    store.shutdown().await;
    outcome
}

/// `xindao webhooks dead redrive`: puts dead deliveries (all, or `ids`) back in the outbox; returns how many.
pub async fn redrive(config: &Config, ids: Option<Vec<i64>>) -> Result<usize> {
    let store = open(config).await?;
    let moved = redrive_in(store.as_ref(), ids).await;
    store.shutdown().await;
    moved
}
