//! Scenario `direct-closed`: M pairs chatting 1:1 in closed loop. Each of the 2M connections keeps exactly one
//! message in flight: it sends the next one when the ack of the last arrives. Throughput is then set by the
//! round trip (client -> server -> commit -> ack), which is what a chat user feels; the open-loop `direct`
//! sweep shows queueing and the ceiling instead. Every message must be acked and received by the peer exactly
//! once, in order.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Conn};
use crate::proto::{self, Frame};
use crate::server::Server;
use crate::stats;

#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Number of pairs M (2M connections, each with one message in flight).
    #[arg(long, default_value_t = 100)]
    pub pairs: usize,
    /// Measured window (s), after `warmup_secs` of the same load.
    #[arg(long, default_value_t = 8.0)]
    pub secs: f64,
    /// Load before the measured window starts (s): connections warm, the store's first checkpoint behind.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
}

/// 0 = idle, 1 = sending (warm-up), 2 = sending (measured), 3 = stop sending, 4 = exit.
type Phase = u8;

#[derive(Default)]
struct Stats {
    acked: u64,
    received: u64,
    dups: u64,
    gaps: u64,
    errors: u64,
    closed: u64,
    first_error: String,
    rtt: Option<Histogram<u64>>,
    delivery: Option<Histogram<u64>>,
}

#[derive(Deserialize)]
struct Opened {
    conversation: ConvId,
}
#[derive(Deserialize)]
struct ConvId {
    id: u64,
}

pub async fn run(o: &Opts, server: &Server, run: usize) -> Result<Value> {
    let target = server.target;
    let n = o.pairs * 2;
    let users = client::login_pool(&server.url, &format!("cl-r{run}-"), n, 128).await?;
    let tokens: Vec<&str> = users.iter().map(|u| u.token.as_str()).collect();
    let mut conns = client::connect_all(target, &server.url, &tokens, 200).await?;
    let convs: Vec<u64> = futures_util::future::try_join_all(
        conns.iter_mut().step_by(2).enumerate().map(|(p, c)| {
            let peer = users[2 * p + 1].id;
            async move {
                let body = c
                    .call("direct_open", &json!({ "user_id": peer }).to_string())
                    .await?;
                let o: Opened = serde_json::from_str(body.get())?;
                anyhow::Ok(o.conversation.id)
            }
        }),
    )
    .await
    .context("direct_open")?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (phase_tx, phase_rx) = watch::channel::<Phase>(0);
    let st = Rc::new(RefCell::new(Stats::default()));
    let mut handles = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        handles.push(tokio::task::spawn_local(conn_task(
            c,
            i,
            convs[i / 2],
            st.clone(),
            phase_rx.clone(),
        )));
    }
    let _ = phase_tx.send(1);
    tokio::time::sleep(Duration::from_secs_f64(o.warmup_secs)).await;
    {
        let mut s = st.borrow_mut();
        s.acked = 0;
        s.rtt = Some(stats::new_hist());
        s.delivery = Some(stats::new_hist());
    }
    let srv0 = server.sample();
    let _ = phase_tx.send(2);
    tokio::time::sleep(Duration::from_secs_f64(o.secs)).await;
    let srv1 = server.sample();
    let acked_in_window = st.borrow().acked;
    let _ = phase_tx.send(3);
    // Let the last messages in flight be acked and delivered before the books are checked.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = phase_tx.send(4);
    for h in handles {
        let _ = h.await;
    }
    let s = st.borrow();
    let empty = stats::new_hist();
    let rtt = stats::summarize_hist(s.rtt.as_ref().unwrap_or(&empty));
    let delivery = stats::summarize_hist(s.delivery.as_ref().unwrap_or(&empty));
    let cpu = srv1.cpu_s - srv0.cpu_s;
    let acked_per_s = acked_in_window as f64 / o.secs;
    crate::print_table(
        &format!(
            "direct-closed — {} ({} pairs, one message in flight per connection)",
            target.name(),
            o.pairs
        ),
        &[
            "acked/s",
            "rtt p50 ms",
            "rtt p99 ms",
            "delivery p50 ms",
            "srv CPU",
            "dups",
            "gaps",
            "errors",
        ],
        &[vec![
            format!("{acked_per_s:.0}"),
            format!("{:.2}", rtt.p50_ms),
            format!("{:.2}", rtt.p99_ms),
            format!("{:.2}", delivery.p50_ms),
            format!("{:.0}%", 100.0 * cpu / o.secs),
            format!("{}", s.dups),
            format!("{}", s.gaps),
            format!("{}", s.errors),
        ]],
    );
    Ok(json!({
        "pairs": o.pairs, "secs": o.secs, "acked_per_s": acked_per_s, "rtt": rtt, "delivery": delivery,
        "server_cpu_s": cpu, "server_cpu_pct": 100.0 * cpu / o.secs,
        "acked_per_server_cpu_s": if cpu > 0.0 { acked_in_window as f64 / cpu } else { 0.0 },
        "received": s.received, "dups": s.dups, "gaps": s.gaps, "errors": s.errors,
        "closed_by_server": s.closed, "first_error": s.first_error,
    }))
}

/// One connection: sends its next message when the last one's ack arrives, and checks its peer's messages.
async fn conn_task(
    mut c: Conn,
    idx: usize,
    conv: u64,
    st: Rc<RefCell<Stats>>,
    mut phase_rx: watch::Receiver<Phase>,
) {
    let mut k = 0u64;
    let mut peer_k: Option<u64> = None;
    let mut in_flight = false;
    let mut phase: Phase = 0;
    loop {
        if phase == 4 {
            break;
        }
        if (phase == 1 || phase == 2) && !in_flight {
            let t = stats::now_us();
            let args = format!(
                r#"{{"conversation_id":{conv},"cmid":"cl-{idx:06x}-{k:012x}","kind":"custom","content":{{"t":{t},"k":{k}}}}}"#
            );
            let id = c.alloc_id();
            let frame = c.target.request(id, "send", &args);
            if c.ws.send(Message::text(frame)).await.is_err() {
                st.borrow_mut().closed += 1;
                break;
            }
            k += 1;
            in_flight = true;
        }
        tokio::select! {
            ch = phase_rx.changed() => {
                if ch.is_err() { break; }
                phase = *phase_rx.borrow_and_update();
            }
            m = c.ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => { st.borrow_mut().closed += 1; break; }
                };
                let now = stats::now_us();
                match proto::parse(c.target, &text) {
                    Ok(Frame::Reply { ok: true, body: Some(body), .. }) => {
                        in_flight = false;
                        let mut s = st.borrow_mut();
                        match proto::send_result(body).and_then(|(m, _)| proto::payload(&m)) {
                            Ok(p) => {
                                s.acked += 1;
                                if let Some(h) = s.rtt.as_mut() { stats::record(h, now.saturating_sub(p.t)); }
                            }
                            Err(e) => {
                                s.errors += 1;
                                if s.first_error.is_empty() { s.first_error = format!("bad send result: {e}"); }
                            }
                        }
                    }
                    Ok(Frame::Reply { body, .. }) => {
                        in_flight = false;
                        let mut s = st.borrow_mut();
                        s.errors += 1;
                        if s.first_error.is_empty() {
                            s.first_error = body.map(|b| b.get().to_string()).unwrap_or_default();
                        }
                    }
                    Ok(Frame::Push { event: "message", data }) => {
                        let Ok(m) = serde_json::from_str::<proto::MsgLite>(data.get()) else { continue };
                        if m.conversation_id != conv { continue; }
                        let Ok(p) = proto::payload(&m) else { continue };
                        let mut s = st.borrow_mut();
                        match proto::peer_order(peer_k, p.k) {
                            proto::PeerOrder::Repeat => { s.dups += 1; continue; }
                            proto::PeerOrder::Gap => s.gaps += 1,
                            proto::PeerOrder::Next => {}
                        }
                        peer_k = Some(p.k);
                        s.received += 1;
                        if let Some(h) = s.delivery.as_mut() { stats::record(h, now.saturating_sub(p.t)); }
                    }
                    Ok(Frame::EioPing) => { let _ = c.ws.send(Message::text("3")).await; }
                    _ => {}
                }
            }
        }
    }
}
