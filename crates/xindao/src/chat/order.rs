//! Keeps the chat service's pushes behind the committed messages handed to fan-out before them.
//!
//! A message's push leaves from the fan-out task; a push that a later request causes (`read`, `typing`, a
//! membership change) is published by the requesting connection's task. Without this, such a push could reach
//! a third connection before the push of a message whose ack its sender already held (the message still in
//! the fan-out channel). [`OrderedBus`] is the bus the chat service publishes on: while fan-out has batches
//! handed over and not yet delivered, a publish waits in a backlog tagged with the number of batches handed
//! over so far, and fan-out delivers it right after the batch with that number (`Order::delivered`). When
//! fan-out is idle (the common case) the publish goes straight to the bus, as before.
//!
//! Why a count is enough: every batch a request can depend on was counted ([`crate::store::CommitSink`]
//! counts before sending, the store acks after), and a batch's place in the channel is never beyond the count
//! at the time it was sent, so "after batch number `tag`" is after every batch the publish may depend on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::bus::Bus;
use crate::hub::Delivery;
use crate::model::UserId;

/// The order shared by the commit sink (which counts batches handed over), fan-out (which counts batches
/// delivered) and the chat service's publishes.
#[derive(Default)]
pub struct Order {
    /// Batches handed to fan-out, counted by the store's [`crate::store::CommitSink`].
    pub(crate) handed: Arc<AtomicU64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Batches fan-out has delivered, with every backlog entry due after them.
    delivered: u64,
    /// Fan-out has ended: publishes go straight to the bus.
    closed: bool,
    /// Publishes waiting for the batch count they carry to be delivered; tags never decrease.
    backlog: VecDeque<(u64, Delivery)>,
}

impl Order {
    /// Publishes `delivery` on `bus` now, or queues it behind the batches handed over and not yet delivered.
    fn publish(&self, bus: &dyn Bus, delivery: Delivery) {
        {
            let mut state = self.state.lock();
            let handed = self.handed.load(Ordering::SeqCst);
            if !state.closed && (handed != state.delivered || !state.backlog.is_empty()) {
                state.backlog.push_back((handed, delivery));
                return;
            }
        }
        bus.publish(delivery);
    }

    /// Called by fan-out once it has delivered batch number `count` (counting from 1): publishes what waited
    /// for it, in order.
    pub(crate) fn delivered(&self, bus: &dyn Bus, count: u64) {
        loop {
            let next = {
                let mut state = self.state.lock();
                match state.backlog.front() {
                    Some((tag, _)) if *tag <= count => state.backlog.pop_front().map(|(_, d)| d),
                    _ => {
                        state.delivered = count;
                        None
                    }
                }
            };
            match next {
                Some(delivery) => bus.publish(delivery),
                None => return,
            }
        }
    }

    /// Called by fan-out when it ends: publishes the whole backlog; later publishes go straight to the bus.
    pub(crate) fn close(&self, bus: &dyn Bus) {
        loop {
            let next = {
                let mut state = self.state.lock();
                let next = state.backlog.pop_front().map(|(_, d)| d);
                if next.is_none() {
                    state.closed = true;
                }
                next
            };
            match next {
                Some(delivery) => bus.publish(delivery),
                None => return,
            }
        }
    }
}

/// The bus the chat service publishes on: the node's bus, with publishes kept behind pending fan-out.
pub struct OrderedBus {
    inner: Arc<dyn Bus>,
    order: Arc<Order>,
}

impl OrderedBus {
    pub fn new(inner: Arc<dyn Bus>, order: Arc<Order>) -> OrderedBus {
        OrderedBus { inner, order }
    }
}

#[async_trait]
impl Bus for OrderedBus {
    fn publish(&self, delivery: Delivery) {
        self.order.publish(&*self.inner, delivery);
    }

    fn local_presence(&self, user_id: UserId, online: bool) {
        self.inner.local_presence(user_id, online);
    }

    fn is_online(&self, user_id: UserId) -> bool {
        self.inner.is_online(user_id)
    }

    fn connected(&self) -> bool {
        self.inner.connected()
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}
