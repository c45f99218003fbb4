//! The operator's view of the dead-letter list, for `xindao webhooks dead list|redrive`: opens the configured
//! store (running migrations) without serving, and closes it after.

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::store::{DeadRow, Outbox, Store};

/// Dead deliveries listed at most.
pub const LIST_MAX: usize = 1000;

async fn open(config: &Config) -> Result<Arc<dyn Store>> {
    let (sink, _commits) = tokio::sync::mpsc::channel(1);
    crate::store::open(config, sink.into(), Arc::new(Outbox::default())).await
}

/// The dead-letter list, oldest first.
pub async fn dead_list(config: &Config) -> Result<Vec<DeadRow>> {
    let store = open(config).await?;
    let dead = store.webhook_dead(LIST_MAX).await;
    store.shutdown().await;
    dead
}

/// Puts dead deliveries (all, or `ids`) back in the outbox; returns how many.
pub async fn redrive(config: &Config, ids: Option<Vec<i64>>) -> Result<usize> {
    let store = open(config).await?;
    let moved = store.webhook_redrive(ids).await;
    store.shutdown().await;
    moved
}
