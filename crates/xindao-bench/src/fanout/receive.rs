//! The members' side of `fanout`: reading every frame or packet a member gets, and counting deliveries,
//! duplicates, gaps and closed connections. Kept apart from `fanout.rs`, which sets the rooms up and reports.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{Member, Recv};
use crate::mqtt;
use crate::proto::{self, Frame};
use crate::stats;

/// Counts every message a member receives until `stop`, whatever protocol it speaks.
pub(super) async fn receiver(
    mut member: Member,
    recv: Rc<RefCell<Recv>>,
    hist: Rc<RefCell<Histogram<u64>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_seq = 0u64;
    loop {
        let received = tokio::select! {
            _ = stop.changed() => break,
            received = next_message(&mut member) => received,
        };
        match received {
            Ok(Some(Received { at, t, seq, bytes })) => {
                note_delivery(&recv, &hist, at, t, seq, bytes, &mut last_seq)
            }
            Ok(None) => {}
            Err(why) => {
                note_closed(&recv, why);
                break;
            }
        }
    }
}

/// One room message as a member saw it: when it arrived, when it was scheduled, its number in the room (1, 2, ...)
/// and its size: the WebSocket text payload (xindao, Socket.IO) or the whole MQTT PUBLISH packet (Mosquitto).
pub(super) struct Received {
    at: u64,
    t: u64,
    seq: u64,
    bytes: u64,
}

/// Reads the member's next frame or packet: `Ok(None)` for anything but a room message, `Err` once the connection
/// has ended. Cancel-safe: both reads take a frame or packet only once it is whole.
pub(super) async fn next_message(member: &mut Member) -> Result<Option<Received>, String> {
    match member {
        Member::Ws(c) => {
            let text = match c.ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
                Some(Ok(_)) => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("end of stream".into()),
            };
            let at = stats::now_us();
            match proto::parse(c.target, &text) {
                Ok(Frame::Push {
                    event: "message",
                    data,
                }) => {
                    let Ok(m) = serde_json::from_str::<proto::MsgLite>(data.get()) else {
                        return Ok(None);
                    };
                    Ok(proto::payload(&m).ok().map(|p| Received {
                        at,
                        t: p.t,
                        seq: m.seq,
                        bytes: text.len() as u64,
                    }))
                }
                Ok(Frame::EioPing) => {
                    let _ = c.ws.send(Message::text("3")).await;
                    Ok(None)
                }
                _ => Ok(None),
            }
        }
        Member::Mqtt(c) => {
            let packet = c.next().await.map_err(|e| e.to_string())?;
            if packet.kind != mqtt::PUBLISH {
                return Ok(None);
            }
            let at = stats::now_us();
            let payload = mqtt::publish_payload(&packet)
                .ok()
                .and_then(|body| serde_json::from_slice::<proto::Payload>(body).ok());
            // MQTT carries no sequence number: the publisher numbers the room's messages from 0 in `k`.
            Ok(payload.map(|p| Received {
                at,
                t: p.t,
                seq: p.k + 1,
                bytes: packet.wire_len() as u64,
            }))
        }
    }
}

/// Counts one delivery of the message numbered `seq` (1, 2, ... per room) scheduled at `t`, `bytes` long.
pub(super) fn note_delivery(
    recv: &RefCell<Recv>,
    hist: &RefCell<Histogram<u64>>,
    now: u64,
    t: u64,
    seq: u64,
    bytes: u64,
    last_seq: &mut u64,
) {
    let mut r = recv.borrow_mut();
    r.delivered += 1;
    r.delivered_bytes += bytes;
    r.last_delivery_us = r.last_delivery_us.max(now);
    if seq <= *last_seq {
        r.dups += 1;
    } else if seq != *last_seq + 1 {
        r.gaps += 1;
    }
    *last_seq = (*last_seq).max(seq);
    stats::record(&mut hist.borrow_mut(), now.saturating_sub(t));
}

pub(super) fn note_closed(recv: &RefCell<Recv>, why: String) {
    let mut r = recv.borrow_mut();
    r.closed += 1;
    if r.first_error.is_empty() {
        r.first_error = why;
    }
}
