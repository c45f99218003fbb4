//! Scenario `direct`: M pairs chatting 1:1 (both directions), open-loop: every connection sends on a fixed
//! schedule, each message carries its scheduled send time, so queueing in the server shows up as latency
//! instead of as a lower send rate. A sweep of offered loads runs up to saturation. Every message must be acked
//! (committed) and received by the peer exactly once, in order.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    /// Number of pairs M (2M connections).
    #[arg(long, default_value_t = 1000)]
    pub pairs: usize,
    /// Offered loads to sweep (messages/s, all connections together).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2500,5000,10000,15000,20000,30000,40000,50000,60000"
    )]
    pub loads: Vec<f64>,
    /// Duration of each load step (s).
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    /// Longest wait for outstanding acks and deliveries after a step (s).
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Stop the sweep after a step whose p99 exceeds this (ms) or that misses its offered rate by >10%.
    #[arg(long, default_value_t = 1000.0)]
    pub stop_p99_ms: f64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    stop: bool,
    start_us: u64,
    end_us: u64,
    /// Per-connection send period (µs); 0 = idle.
    period_us: u64,
}

struct Stats {
    sent: u64,
    acked: u64,
    dup_acks: u64,
    errors: u64,
    received: u64,
    dups: u64,
    gaps: u64,
    out_of_order: u64,
    closed: u64,
    last_ack_us: u64,
    ack_hist: Histogram<u64>,
    lat_hist: Histogram<u64>,
    first_error: String,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            sent: 0,
            acked: 0,
            dup_acks: 0,
            errors: 0,
            received: 0,
            dups: 0,
            gaps: 0,
            out_of_order: 0,
            closed: 0,
            last_ack_us: 0,
            ack_hist: stats::new_hist(),
            lat_hist: stats::new_hist(),
            first_error: String::new(),
        }
    }
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
    eprintln!("   {} pairs: logging in", o.pairs);
    let users = client::login_pool(&server.url, &format!("dm-r{run}-"), n, 128).await?;
    let tokens: Vec<&str> = users.iter().map(|u| u.token.as_str()).collect();
    let mut conns = client::connect_all(target, &server.url, &tokens, 500).await?;
    eprintln!("   opening {} direct conversations", o.pairs);
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
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (phase_tx, phase_rx) = watch::channel(Phase::default());
    let st = Rc::new(RefCell::new(Stats::new()));
    let mut handles = Vec::new();
    for (i, c) in conns.into_iter().enumerate() {
        handles.push(tokio::task::spawn_local(conn_task(
            c,
            i,
            n,
            convs[i / 2],
            st.clone(),
            phase_rx.clone(),
        )));
    }

    let mut steps = Vec::new();
    let mut table = Vec::new();
    for &load in &o.loads {
        let period_us = (n as f64 * 1e6 / load).round() as u64;
        let start_us = stats::now_us() + 100_000;
        let end_us = start_us + (o.step_secs * 1e6) as u64;
        *st.borrow_mut() = Stats::new();
        let srv0 = server.sample();
        let gen0 = stats::sample("self");
        let _ = phase_tx.send(Phase {
            stop: false,
            start_us,
            end_us,
            period_us,
        });
        tokio::time::sleep_until(stats::instant_at(end_us).into()).await;
        let drain_deadline = Instant::now() + Duration::from_secs_f64(o.drain_secs);
        let mut drained = false;
        while Instant::now() < drain_deadline {
            {
                let s = st.borrow();
                if s.acked + s.errors >= s.sent && s.received >= s.acked {
                    drained = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let srv1 = server.sample();
        let gen1 = stats::sample("self");
        let saturated = {
            let s = st.borrow();
            let window_s = ((s.last_ack_us.saturating_sub(start_us)) as f64 / 1e6).max(o.step_secs);
            let committed_per_s = s.acked as f64 / window_s;
            let lat = stats::summarize_hist(&s.lat_hist);
            let ack = stats::summarize_hist(&s.ack_hist);
            let cpu = srv1.cpu_s - srv0.cpu_s;
            let lost = s.acked.saturating_sub(s.received);
            let saturated = !drained
                || committed_per_s < 0.9 * load
                || lat.p99_ms > o.stop_p99_ms
                || s.closed > 0;
            steps.push(json!({
                "offered_per_s": load, "sent": s.sent, "acked": s.acked, "errors": s.errors,
                "first_error": s.first_error, "received": s.received, "lost": lost, "dups": s.dups,
                "dup_acks": s.dup_acks, "gaps": s.gaps, "out_of_order": s.out_of_order,
                "closed_by_server": s.closed, "drained": drained, "window_s": window_s,
                "committed_per_s": committed_per_s, "latency": lat, "ack_latency": ack,
                "server_cpu_s": cpu, "server_cpu_pct": 100.0 * cpu / window_s,
                "committed_per_server_cpu_s": if cpu > 0.0 { s.acked as f64 / cpu } else { 0.0 },
                "generator_cpu_pct": 100.0 * (gen1.cpu_s - gen0.cpu_s) / window_s,
                "server_rss_kib": srv1.rss_kib, "saturated": saturated,
            "server_runq_wait_s": srv1.runq_wait_s - srv0.runq_wait_s,
            "generator_runq_wait_s": gen1.runq_wait_s - gen0.runq_wait_s,
            "cpu_pressure_avg10": stats::cpu_pressure(),
            }));
            table.push(vec![
                format!("{load:.0}"),
                format!("{committed_per_s:.0}"),
                format!("{:.2}", lat.p50_ms),
                format!("{:.2}", lat.p99_ms),
                format!("{:.2}", lat.p999_ms),
                format!("{:.2}", ack.p99_ms),
                format!("{}", lost),
                format!("{}", s.dups),
                format!("{}", s.errors),
                format!("{:.0}%", 100.0 * cpu / window_s),
                format!("{:.0}%", 100.0 * (gen1.cpu_s - gen0.cpu_s) / window_s),
            ]);
            eprintln!(
                "   offered {load:.0}/s: committed {committed_per_s:.0}/s p50 {:.2} p99 {:.2} ms \
                 lost {lost} dups {} errors {}{}",
                lat.p50_ms,
                lat.p99_ms,
                s.dups,
                s.errors,
                if saturated { " (saturated)" } else { "" }
            );
            saturated
        };
        if saturated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = phase_tx.send(Phase {
        stop: true,
        ..Phase::default()
    });
    for h in handles {
        let _ = h.await;
    }
    crate::print_table(
        &format!(
            "direct — {} ({} pairs; latency = scheduled send -> peer receives)",
            target.name(),
            o.pairs
        ),
        &[
            "offered/s",
            "committed/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "ack p99",
            "lost",
            "dups",
            "errors",
            "srv CPU",
            "gen CPU",
        ],
        &table,
    );
    Ok(json!({ "pairs": o.pairs, "step_secs": o.step_secs, "steps": steps }))
}

async fn conn_task(
    mut c: Conn,
    idx: usize,
    n: usize,
    conv: u64,
    st: Rc<RefCell<Stats>>,
    mut phase_rx: watch::Receiver<Phase>,
) {
    let mut k = 0u64; // this connection's next message index
    let mut peer_k: Option<u64> = None; // last index received from the peer
    let mut last_push_seq = 0u64; // pushes of one conversation must come in seq order
    let mut phase = Phase::default();
    let mut next_us = u64::MAX;
    loop {
        let sending = phase.period_us > 0 && next_us < phase.end_us;
        tokio::select! {
            ch = phase_rx.changed() => {
                if ch.is_err() { break; }
                phase = *phase_rx.borrow_and_update();
                if phase.stop { break; }
                // Spread the connections' schedules evenly over one period, the two ends of a pair half a
                // period apart: side by side, a pair's messages met in one commit and the ack of one and the
                // push of the other left in one write, which flattered the server.
                let slot = (idx % 2) * (n / 2) + idx / 2;
                next_us = phase.start_us + phase.period_us * slot as u64 / n as u64;
            }
            _ = tokio::time::sleep_until(stats::instant_at(next_us).into()), if sending => {
                let cmid = sdk_cmid(idx, k);
                let args = format!(
                    r#"{{"conversation_id":{conv},"cmid":"{cmid}","kind":"custom","content":{{"t":{next_us},"k":{k}}}}}"#
                );
                let id = c.alloc_id();
                let frame = c.target.request(id, "send", &args);
                st.borrow_mut().sent += 1;
                if c.ws.send(Message::text(frame)).await.is_err() {
                    st.borrow_mut().closed += 1;
                    break;
                }
                k += 1;
                next_us += phase.period_us;
            }
            m = c.ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        let mut s = st.borrow_mut();
                        s.closed += 1;
                        if s.first_error.is_empty() { s.first_error = format!("closed: {f:?}"); }
                        break;
                    }
                    Some(Ok(_)) => continue,
                    _ => { st.borrow_mut().closed += 1; break; }
                };
                let now = stats::now_us();
                match proto::parse(c.target, &text) {
                    Ok(Frame::Reply { ok: true, body: Some(body), .. }) => {
                        let mut s = st.borrow_mut();
                        match proto::send_result(body) {
                            Ok((m, dup)) => {
                                s.acked += 1;
                                if dup { s.dup_acks += 1; }
                                s.last_ack_us = s.last_ack_us.max(now);
                                if let Ok(p) = proto::payload(&m) {
                                    stats::record(&mut s.ack_hist, now.saturating_sub(p.t));
                                }
                            }
                            Err(e) => {
                                s.errors += 1;
                                if s.first_error.is_empty() { s.first_error = format!("bad send result: {e}"); }
                            }
                        }
                    }
                    Ok(Frame::Reply { ok: _, body, .. }) => {
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
                        if m.seq <= last_push_seq { s.out_of_order += 1; }
                        last_push_seq = last_push_seq.max(m.seq);
                        stats::record(&mut s.lat_hist, now.saturating_sub(p.t));
                    }
                    Ok(Frame::EioPing) => { let _ = c.ws.send(Message::text("3")).await; }
                    _ => {}
                }
            }
        }
    }
}

/// A cmid shaped like the ones the JS SDK makes (`newCmid()` in sdk/js/src/xindao.js): `c-`, the wall-clock time in
/// milliseconds in base 36, `-`, 24 hex digits (here the connection and message index instead of random bits,
/// so they are unique). The servers' storage cost depends on the shape: cmids that start with the time sort in
/// the order they are sent.
fn sdk_cmid(idx: usize, k: u64) -> String {
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut base36 = Vec::new();
    while ms > 0 {
        base36.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(ms % 36) as usize]);
        ms /= 36;
    }
    base36.reverse();
    let time = String::from_utf8(base36).unwrap_or_default();
    format!("c-{time}-{idx:06x}{k:018x}")
}
