//! Scenario `reconnect-storm`: N clients in R rooms are connected; they all drop at once (TCP reset), messages
//! are posted to every room while they are away, then all N reconnect at the same moment and `sync` from their
//! cursors. Reported: time until all are back (greeted) and until all have caught up, with every missed message
//! received exactly once, contiguous.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{self, Conn};
use crate::server::Server;
use crate::stats;

#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Clients that drop and reconnect.
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    /// Rooms the clients are spread over.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Messages per room before the drop.
    #[arg(long, default_value_t = 5)]
    pub pre: usize,
    /// Messages per room while the clients are away (what they must resync).
    #[arg(long, default_value_t = 30)]
    pub missed: usize,
    /// Give up after this long (s).
    #[arg(long, default_value_t = 60.0)]
    pub timeout_secs: f64,
}

#[derive(Deserialize)]
struct Created {
    conversation: ConvId,
}
#[derive(Deserialize)]
struct ConvId {
    id: u64,
}
#[derive(Deserialize)]
struct SyncReply {
    conversations: Vec<SyncConv>,
}
#[derive(Deserialize)]
struct SyncConv {
    conversation: ConvId,
    messages: Vec<SeqOnly>,
    has_more: bool,
}
#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

struct Outcome {
    back_us: u64,
    done_us: u64,
    attempts: u32,
    syncs: u32,
    got: u64,
}

pub async fn run(o: &Opts, server: &Server, run: usize) -> Result<Value> {
    let target = server.target;
    let n = o.n;
    let rooms = o.rooms.min(n).max(1);
    eprintln!("   {n} clients in {rooms} rooms: logging in");
    let users = client::login_pool(&server.url, &format!("storm-r{run}-"), n + 1, 128).await?;
    let writer_user = &users[n];
    let addr = client::server_addr(&server.url)?;
    let mut writer = Conn::connect(target, &server.url, addr, &writer_user.token).await?;
    let mut convs = Vec::new();
    for r in 0..rooms {
        let body = writer
            .call(
                "room_create",
                &json!({"name": format!("storm-{run}-{r}"), "visibility": "public"}).to_string(),
            )
            .await?;
        convs.push(serde_json::from_str::<Created>(body.get())?.conversation.id);
    }
    let adds: Vec<String> = (0..n)
        .map(|i| json!({"conversation_id": convs[i % rooms], "user_id": users[i].id}).to_string())
        .collect();
    writer.call_many("room_add", &adds, 64).await?;
    eprintln!("   connecting {n} clients");
    let tokens: Vec<&str> = users[..n].iter().map(|u| u.token.as_str()).collect();
    let conns = client::connect_all(target, &server.url, &tokens, 500).await?;
    let send = |tag: &str, per_room: usize| -> Vec<String> {
        (0..per_room)
            .flat_map(|m| convs.iter().map(move |c| (m, *c)))
            .map(|(m, c)| {
                json!({"conversation_id": c, "cmid": format!("{tag}-{c}-{m}"), "kind": "text",
                       "content": format!("{tag} {m}")})
                .to_string()
            })
            .collect()
    };
    writer.call_many("send", &send("pre", o.pre), 64).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every client has seen seq 1..=pre in its room (fresh rooms): that is its cursor.
    let cursor = o.pre as u64;
    let last = (o.pre + o.missed) as u64;
    eprintln!("   dropping {n} clients at once");
    drop(conns);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    writer
        .call_many("send", &send("missed", o.missed), 64)
        .await?;
    eprintln!("   storm: {n} reconnects at once");

    let srv0 = server.sample();
    let ovf0 = stats::tcp_ext("ListenOverflows");
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(o.timeout_secs);
    let base = server.url.clone();
    let results: Vec<Result<Outcome>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let token = users[i].token.clone();
            let conv = convs[i % rooms];
            let base = base.clone();
            async move {
                let mut attempts = 0u32;
                let mut c = loop {
                    attempts += 1;
                    match Conn::connect(target, &base, addr, &token).await {
                        Ok(c) => break c,
                        Err(e) => {
                            if Instant::now() > deadline {
                                return Err(e.context("reconnect deadline"));
                            }
                            // client backoff: 100 ms doubling to 2 s, with jitter
                            let backoff = (100u64 << attempts.min(5)).min(2000);
                            let jitter = (i as u64 * 7919) % (backoff / 2 + 1);
                            tokio::time::sleep(Duration::from_millis(backoff / 2 + jitter)).await;
                        }
                    }
                };
                let back_us = t0.elapsed().as_micros() as u64;
                let mut cur = cursor;
                let mut syncs = 0u32;
                let mut got = 0u64;
                loop {
                    syncs += 1;
                    let mut cursors = HashMap::new();
                    cursors.insert(conv.to_string(), cur);
                    let body = c
                        .call("sync", &json!({ "cursors": cursors }).to_string())
                        .await?;
                    let r: SyncReply = serde_json::from_str(body.get())?;
                    let mut more = false;
                    for sc in r.conversations {
                        if sc.conversation.id != conv {
                            continue;
                        }
                        for m in sc.messages {
                            if m.seq != cur + 1 {
                                bail!("client {i}: sync gave seq {} after {cur}", m.seq);
                            }
                            cur = m.seq;
                            got += 1;
                        }
                        more |= sc.has_more;
                    }
                    if !more {
                        break;
                    }
                }
                if cur != last {
                    bail!("client {i}: caught up to seq {cur}, expected {last}");
                }
                let done_us = t0.elapsed().as_micros() as u64;
                drop(c);
                Ok(Outcome {
                    back_us,
                    done_us,
                    attempts,
                    syncs,
                    got,
                })
            }
        })
        .buffer_unordered(n)
        .collect()
        .await;
    let total_s = t0.elapsed().as_secs_f64();
    let srv1 = server.sample();
    let listen_overflows = stats::tcp_ext("ListenOverflows") - ovf0;
    let mut back = stats::new_hist();
    let mut done = stats::new_hist();
    let (mut failed, mut retries, mut syncs, mut got) = (0u64, 0u64, 0u64, 0u64);
    let mut first_error = String::new();
    for r in &results {
        match r {
            Ok(o) => {
                stats::record(&mut back, o.back_us);
                stats::record(&mut done, o.done_us);
                retries += (o.attempts - 1) as u64;
                syncs += o.syncs as u64;
                got += o.got;
            }
            Err(e) => {
                failed += 1;
                if first_error.is_empty() {
                    first_error = format!("{e:#}");
                }
            }
        }
    }
    let back_s = stats::summarize_hist(&back);
    let done_s = stats::summarize_hist(&done);
    let cpu = srv1.cpu_s - srv0.cpu_s;
    let expected = n as u64 * o.missed as u64;
    crate::print_table(
        &format!(
            "reconnect-storm — {} ({n} clients, {rooms} rooms, {} missed msgs each)",
            target.name(),
            o.missed
        ),
        &[
            "all back ms",
            "all caught up ms",
            "p50 ms",
            "p99 ms",
            "failed",
            "retries",
            "syncs",
            "msgs resynced",
            "srv CPU s",
        ],
        &[vec![
            format!("{:.0}", back_s.max_ms),
            format!("{:.0}", done_s.max_ms),
            format!("{:.0}", done_s.p50_ms),
            format!("{:.0}", done_s.p99_ms),
            failed.to_string(),
            retries.to_string(),
            syncs.to_string(),
            format!("{got}/{expected}"),
            format!("{cpu:.2}"),
        ]],
    );
    Ok(json!({
        "n": n, "rooms": rooms, "pre": o.pre, "missed": o.missed,
        "all_back_ms": back_s.max_ms, "all_caught_up_ms": done_s.max_ms, "elapsed_s": total_s,
        "back": back_s, "caught_up": done_s, "failed": failed, "first_error": first_error,
        "connect_retries": retries, "sync_calls": syncs, "messages_resynced": got,
        "messages_expected": expected, "server_cpu_s": cpu, "server_rss_kib": srv1.rss_kib,
        "listen_overflows_system_wide": listen_overflows,
    }))
}
