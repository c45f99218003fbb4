//! The bus carries deliveries to every node that may hold a recipient. A single node uses [`LocalBus`],
//! which hands them straight to its own hub; a cluster bus (Redis, NATS) also sends them to the other nodes.

use std::sync::Arc;

use crate::hub::{Delivery, Hub};

/// Where the chat service publishes pushes. `publish` must not block.
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, delivery: Delivery);
}

/// The single-node bus: delivery is local.
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> LocalBus {
        LocalBus { hub }
    }
}

impl Bus for LocalBus {
    fn publish(&self, delivery: Delivery) {
        self.hub.deliver(&delivery);
    }
}
