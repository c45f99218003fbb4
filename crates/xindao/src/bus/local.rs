//! The single-node bus: every delivery is local, so publishing is handing it to the hub.

use std::sync::Arc;

use async_trait::async_trait;

use super::{presence_frame, Bus};
use crate::hub::{Delivery, Hub};
use crate::model::UserId;

/// The single-node bus: delivery is local.
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> LocalBus {
        LocalBus { hub }
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn publish(&self, delivery: Delivery) {
        self.hub.deliver(&delivery);
    }

    fn local_presence(&self, user_id: UserId, online: bool) {
        let frame = presence_frame(user_id, online);
        self.hub.deliver(&Delivery::Watchers { user_id, frame });
    }

    fn is_online(&self, user_id: UserId) -> bool {
        self.hub.is_online(user_id)
    }
}
