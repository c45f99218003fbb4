//! The shard's side of a parked connection's queue (`hub::direct`): its pushes written to the socket with one
//! `send` each, and what the socket did not take left at the front of the queue for the connection.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::{Budget, Outbound, Shared};
use crate::hub::direct::{DirectWrites, ParkedQueue};
use crate::obs::hops;

/// What a queue needs to be written by its shard.
#[derive(Debug)]
pub(super) struct Direct {
    pub(super) socket: Arc<TcpStream>,
    pub(super) shard: Arc<DirectWrites>,
    pub(super) budget: Arc<Budget>,
}

/// The shard's side of a parked connection's queue (`direct.rs`): its pushes written with one `send` each,
/// the rest left for the connection.
impl ParkedQueue for Mutex<Shared> {
    fn write_parked(&self) {
        let mut shared = self.lock();
        shared.listed = false;
        if !shared.parked {
            // The connection runs, and writes its queue itself.
            return;
        }
        let Some(direct) = shared.direct.as_ref() else {
            return;
        };
        let (socket, budget) = (direct.socket.clone(), direct.budget.clone());
        while let Some(outbound) = shared.pop() {
            let (push, queued_at) = match outbound {
                Outbound::Frame(push) => (push, None),
                Outbound::Timed(push, queued_at) => (push, Some(queued_at)),
                other => {
                    shared.items.push_front(other);
                    break;
                }
            };
            match socket.try_write(&push.framed) {
                Ok(written) if written == push.framed.len() => {
                    budget.release(push.text.len());
                    if let Some(queued_at) = queued_at {
                        hops::observe(&hops::hops().push_wait, queued_at.elapsed());
                    }
                }
                Ok(written) => {
                    // The socket took part of the frame: its rest goes first, written by the connection.
                    let rest = push.framed.slice(written..);
                    budget.release(push.text.len());
                    budget.add(rest.len());
                    shared.items.push_front(Outbound::Raw(rest));
                    break;
                }
                // Full (or failing): the connection writes it, waiting on the socket as usual.
                Err(_) => {
                    shared.items.push_front(match queued_at {
                        Some(queued_at) => Outbound::Timed(push, queued_at),
                        None => Outbound::Frame(push),
                    });
                    break;
                }
            }
        }
        if shared.items.is_empty() {
            return;
        }
        shared.parked = false;
        let waker = shared.waker.take();
        drop(shared);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
