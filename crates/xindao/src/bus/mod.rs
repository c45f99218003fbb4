//! The bus carries deliveries to every node that may hold a recipient, and answers who is online. A single
//! node uses [`LocalBus`], which hands them straight to its own hub; a cluster bus ([`cluster`], on Redis or
//! NATS) also sends them to the other nodes and keeps cluster-wide presence.

pub mod cluster;
mod local;

pub use local::LocalBus;

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use serde_json::json;

use crate::config::{BusConfig, Config};
use crate::error::Result;
use crate::hub::{Delivery, Hub};
use crate::model::UserId;
use crate::protocol;

/// Where the chat service and fan-out publish pushes. Nothing here may block.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Delivers on this node at once and, on a cluster bus, on every other node.
    fn publish(&self, delivery: Delivery);
    /// The user's first connection on this node opened (`online`), or their last one here closed.
    /// Watchers hear about it when this changes whether the user is online anywhere.
    fn local_presence(&self, user_id: UserId, online: bool);
    /// Whether the user has a connection on any node.
    fn is_online(&self, user_id: UserId) -> bool;
    /// Whether deliveries reach the other nodes now: a cluster bus is subscribed to its channel. A node whose
    /// bus is down still serves its own users (and the others catch up by `sync` once it is back).
    fn connected(&self) -> bool {
        true
    }
    /// Leaves the cluster (graceful shutdown).
    async fn shutdown(&self) {}
}

/// The `presence` push for one user.
pub fn presence_frame(user_id: UserId, online: bool) -> Utf8Bytes {
    protocol::event("presence", &json!({ "user_id": user_id, "online": online }))
}

/// Opens the bus `config.bus` names: `local`, `redis://...` or `nats://...`.
pub async fn open(config: &Config, hub: Arc<Hub>) -> Result<Arc<dyn Bus>> {
    match config.bus {
        BusConfig::Local => Ok(Arc::new(LocalBus::new(hub))),
        BusConfig::Redis { .. } | BusConfig::Nats { .. } => cluster::open(config, hub).await,
    }
}
