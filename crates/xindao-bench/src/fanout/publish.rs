//! The publishers' side of `fanout`: sending each room's messages on a fixed schedule over xindao's protocol
//! or MQTT QoS 1, the server's reply or PUBACK counting as the ack. Kept apart from `fanout.rs`, which sets the
//! rooms up and reports.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{Pub, Publisher};
use crate::client::Conn;
use crate::mqtt;
use crate::proto::{self, Frame};
use crate::stats;

/// When a room's publisher sends: every `period_us` from `start_us` until `end_us` (µs on the stats clock).
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub(super) start_us: u64,
    pub(super) period_us: u64,
    pub(super) end_us: u64,
}

/// Sends `custom` messages on the schedule; the server's reply counts as the ack. Returns the publisher for the
/// next rate, unless its connection ended.
pub(super) async fn publisher(
    mut c: Box<Conn>,
    conv: u64,
    tag: String,
    schedule: Schedule,
    ps: Rc<RefCell<Pub>>,
    mut stop: watch::Receiver<bool>,
) -> Option<Publisher> {
    let mut i = 0u64;
    let mut next = schedule.start_us;
    loop {
        let sending = next < schedule.end_us;
        tokio::select! {
            _ = stop.changed() => return Some(Publisher::Ws { conn: c, conversation: conv }),
            _ = tokio::time::sleep_until(stats::instant_at(next).into()), if sending => {
                let t = next;
                let args = format!(
                    r#"{{"conversation_id":{conv},"cmid":"{tag}-{i}","kind":"custom","content":{{"t":{t},"k":{i}}}}}"#
                );
                let id = c.alloc_id();
                let frame = c.target.request(id, "send", &args);
                ps.borrow_mut().sent += 1;
                if c.ws.send(Message::text(frame)).await.is_err() {
                    break;
                }
                i += 1;
                next += schedule.period_us;
            }
            m = c.ws.next() => {
                let Some(Ok(Message::Text(text))) = m else {
                    if matches!(m, Some(Ok(_))) { continue; }
                    break;
                };
                match proto::parse(c.target, &text) {
                    Ok(Frame::Reply { ok: true, body: Some(body), .. }) => {
                        let now = stats::now_us();
                        let mut p = ps.borrow_mut();
                        p.acked += 1;
                        if let Ok((m, _)) = proto::send_result(body) {
                            if let Ok(pl) = proto::payload(&m) {
                                stats::record(&mut p.ack_hist, now.saturating_sub(pl.t));
                            }
                        }
                    }
                    Ok(Frame::Reply { ok: false, body, .. }) => {
                        let mut p = ps.borrow_mut();
                        p.errors += 1;
                        if p.first_error.is_empty() {
                            p.first_error = body.map(|b| b.get().to_string()).unwrap_or_default();
                        }
                    }
                    Ok(Frame::EioPing) => { let _ = c.ws.send(Message::text("3")).await; }
                    _ => {}
                }
            }
        }
    }
    None
}

/// Publishes `{"t", "k"}` at QoS 1 on the schedule; the broker's PUBACK counts as the ack.
pub(super) async fn mqtt_publisher(
    mut c: mqtt::Conn,
    topic: String,
    mut next_k: u64,
    schedule: Schedule,
    ps: Rc<RefCell<Pub>>,
    mut stop: watch::Receiver<bool>,
) -> Option<Publisher> {
    let mut scheduled_at: HashMap<u16, u64> = HashMap::new();
    let mut next = schedule.start_us;
    loop {
        let sending = next < schedule.end_us;
        tokio::select! {
            _ = stop.changed() => return Some(Publisher::Mqtt { conn: c, topic, next_k }),
            _ = tokio::time::sleep_until(stats::instant_at(next).into()), if sending => {
                let payload = format!(r#"{{"t":{next},"k":{next_k}}}"#);
                ps.borrow_mut().sent += 1;
                match c.publish_qos1(&topic, payload.as_bytes()).await {
                    Ok(id) => { scheduled_at.insert(id, next); }
                    Err(_) => break,
                }
                next_k += 1;
                next += schedule.period_us;
            }
            packet = c.next() => {
                let Ok(packet) = packet else { break };
                if packet.kind != mqtt::PUBACK || packet.body.len() != 2 { continue; }
                let id = u16::from_be_bytes([packet.body[0], packet.body[1]]);
                let now = stats::now_us();
                let mut p = ps.borrow_mut();
                p.acked += 1;
                if let Some(t) = scheduled_at.remove(&id) {
                    stats::record(&mut p.ack_hist, now.saturating_sub(t));
                }
            }
        }
    }
    None
}
