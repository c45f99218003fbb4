//! Scenario `fanout`: rooms of K members; one publisher per room sends `custom` messages carrying their
//! scheduled send time at a fixed rate; every other member must receive every message (loss and gaps are
//! counted); deliveries per second and per server CPU-second, delivery latency percentiles. Against Mosquitto a room
//! is an MQTT topic, the publisher's QoS 1 PUBACK is the ack and the payload's `k` numbers the room's messages.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::client::{self, Conn};
use crate::mqtt;
use crate::proto::Target;
use crate::server::Server;
use crate::stats;

mod publish;
mod receive;
use publish::{mqtt_publisher, publisher, Schedule};
use receive::receiver;

#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Room sizes K.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    pub sizes: Vec<usize>,
    /// Connected members in total for each size (rooms = total / K, at least one).
    #[arg(long, default_value_t = 10_000)]
    pub total: usize,
    /// Messages per second per room (one publisher per room); each rate runs in turn on the same rooms.
    #[arg(long, value_delimiter = ',', default_value = "2,10")]
    pub rates: Vec<f64>,
    /// Publishing time per size (s).
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Longest wait for stragglers after publishing stops (s).
    #[arg(long, default_value_t = 15.0)]
    pub drain_secs: f64,
}

#[derive(Default)]
struct Recv {
    delivered: u64,
    /// The deliveries' frames or packets, summed: see `receive::Received`.
    delivered_bytes: u64,
    gaps: u64,
    dups: u64,
    closed: u64,
    last_delivery_us: u64,
    first_error: String,
}

struct Pub {
    sent: u64,
    acked: u64,
    errors: u64,
    ack_hist: Histogram<u64>,
    first_error: String,
}

#[derive(Deserialize)]
struct Created {
    conversation: ConvId,
}
#[derive(Deserialize)]
struct ConvId {
    id: u64,
}

pub async fn run(o: &Opts, server: &Server, run: usize) -> Result<Value> {
    let mut results = Vec::new();
    let mut table = Vec::new();
    for &k in &o.sizes {
        let rs = one_size(o, server, run, k)
            .await
            .with_context(|| format!("fanout K={k}"))?;
        for r in rs {
            table.push(vec![
                k.to_string(),
                r["rooms"].to_string(),
                r["rate_per_room"].to_string(),
                format!(
                    "{:.0}",
                    r["offered_deliveries_per_s"].as_f64().unwrap_or(0.0)
                ),
                format!("{:.0}", r["deliveries_per_s"].as_f64().unwrap_or(0.0)),
                format!("{:.2}", r["server_cpu_s"].as_f64().unwrap_or(0.0)),
                format!(
                    "{:.0}",
                    r["deliveries_per_server_cpu_s"].as_f64().unwrap_or(0.0)
                ),
                format!("{:.2}", r["latency"]["p50_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.2}", r["latency"]["p99_ms"].as_f64().unwrap_or(0.0)),
                format!("{:.2}", r["latency"]["p999_ms"].as_f64().unwrap_or(0.0)),
                r["lost"].to_string(),
                format!("{:.0}%", r["generator_cpu_pct"].as_f64().unwrap_or(0.0)),
            ]);
            results.push(r);
        }
    }
    crate::print_table(
        &format!("fanout — {}", server.target.name()),
        &[
            "K",
            "rooms",
            "msg/s/room",
            "offered/s",
            "deliveries/s",
            "srv CPU s",
            "deliv/CPU-s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "lost",
            "gen CPU",
        ],
        &table,
    );
    Ok(json!({ "sizes": results }))
}

/// A room's publishing connection, in the protocol its server speaks, with the address of its room.
enum Publisher {
    Ws {
        conn: Box<Conn>,
        conversation: u64,
    },
    /// `next_k` numbers the room's messages across rates: MQTT carries no sequence number of its own.
    Mqtt {
        conn: mqtt::Conn,
        topic: String,
        next_k: u64,
    },
}

/// A member that only receives.
enum Member {
    Ws(Box<Conn>),
    Mqtt(mqtt::Conn),
}

/// xindao and the Socket.IO peer: users log in, owners create the rooms and add the members, members connect.
async fn setup_ws(
    server: &Server,
    run: usize,
    k: usize,
    rooms: usize,
) -> Result<(Vec<Publisher>, Vec<Member>)> {
    let target = server.target;
    let n = rooms * k;
    eprintln!("   K={k}: {rooms} rooms, {n} members: logging in");
    let users = client::login_pool(&server.url, &format!("fan{k}-r{run}-"), n, 128).await?;
    // Owners (members[r*k]) connect first, create the rooms and add the members before those connect, so the
    // setup sends O(K) `member` pushes rather than O(K^2).
    let owner_tokens: Vec<&str> = (0..rooms).map(|r| users[r * k].token.as_str()).collect();
    let mut owners = client::connect_all(target, &server.url, &owner_tokens, 100).await?;
    let mut conv_ids = Vec::new();
    for (r, c) in owners.iter_mut().enumerate() {
        let body = c
            .call(
                "room_create",
                &json!({"name": format!("fan-{k}-{run}-{r}"), "visibility": "public"}).to_string(),
            )
            .await?;
        let created: Created = serde_json::from_str(body.get())?;
        conv_ids.push(created.conversation.id);
    }
    eprintln!("   K={k}: adding members");
    futures_util::future::try_join_all(owners.iter_mut().enumerate().map(|(r, c)| {
        let args: Vec<String> = (1..k)
            .map(|i| {
                json!({"conversation_id": conv_ids[r], "user_id": users[r * k + i].id}).to_string()
            })
            .collect();
        async move { c.call_many("room_add", &args, 64).await }
    }))
    .await?;
    eprintln!("   K={k}: connecting members");
    let member_idx: Vec<usize> = (0..n).filter(|i| i % k != 0).collect();
    let member_tokens: Vec<&str> = member_idx
        .iter()
        .map(|&i| users[i].token.as_str())
        .collect();
    let members = client::connect_all(target, &server.url, &member_tokens, 500).await?;
    let publishers = owners
        .into_iter()
        .zip(conv_ids)
        .map(|(conn, conversation)| Publisher::Ws {
            conn: Box::new(conn),
            conversation,
        })
        .collect();
    Ok((
        publishers,
        members
            .into_iter()
            .map(|c| Member::Ws(Box::new(c)))
            .collect(),
    ))
}

/// Mosquitto: a room is a topic; members connect and subscribe, then one publisher per room connects.
async fn setup_mqtt(
    server: &Server,
    run: usize,
    k: usize,
    rooms: usize,
) -> Result<(Vec<Publisher>, Vec<Member>)> {
    let addr = client::server_addr(&server.url)?;
    let topics: Vec<String> = (0..rooms).map(|r| format!("fan/{k}/{run}/{r}")).collect();
    eprintln!(
        "   K={k}: {rooms} topics, {} subscribers: connecting",
        rooms * (k - 1)
    );
    let topics = &topics;
    let members = futures_util::stream::iter((0..rooms).flat_map(|r| (1..k).map(move |i| (r, i))))
        .map(|(r, i)| async move {
            let mut conn = mqtt::Conn::connect(addr, &format!("fan{k}-r{run}-{r}-{i}")).await?;
            conn.subscribe(&topics[r]).await?;
            anyhow::Ok(Member::Mqtt(conn))
        })
        .buffer_unordered(100)
        .try_collect::<Vec<_>>()
        .await?;
    let mut publishers = Vec::new();
    for (r, topic) in topics.iter().enumerate() {
        let conn = mqtt::Conn::connect(addr, &format!("fan{k}-r{run}-{r}-pub")).await?;
        publishers.push(Publisher::Mqtt {
            conn,
            topic: topic.clone(),
            next_k: 0,
        });
    }
    Ok((publishers, members))
}

async fn one_size(o: &Opts, server: &Server, run: usize, k: usize) -> Result<Vec<Value>> {
    let rooms = (o.total / k).max(1);
    let n = rooms * k;
    let (owners, members) = if server.target == Target::Mosquitto {
        setup_mqtt(server, run, k, rooms).await?
    } else {
        setup_ws(server, run, k, rooms).await?
    };
    // Let the `member` pushes of the setup settle.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let recv = Rc::new(RefCell::new(Recv::default()));
    let hist = Rc::new(RefCell::new(stats::new_hist()));
    let mut handles = Vec::new();
    for member in members {
        let (recv, hist, stop) = (recv.clone(), hist.clone(), stop_rx.clone());
        handles.push(tokio::task::spawn_local(receiver(member, recv, hist, stop)));
    }
    let mut out = Vec::new();
    let mut owners: Vec<Option<Publisher>> = owners.into_iter().map(Some).collect();
    for (ri, &rate) in o.rates.iter().enumerate() {
        let closed = recv.borrow().closed;
        *recv.borrow_mut() = Recv {
            closed,
            ..Recv::default()
        };
        hist.borrow_mut().reset();
        let period_us = (1e6 / rate) as u64;
        let t0_us = stats::now_us() + 200_000;
        let end_us = t0_us + (o.secs * 1e6) as u64;
        let end = stats::instant_at(end_us);
        let pubstat = Rc::new(RefCell::new(Pub {
            sent: 0,
            acked: 0,
            errors: 0,
            ack_hist: stats::new_hist(),
            first_error: String::new(),
        }));
        let (pstop_tx, pstop_rx) = watch::channel(false);
        let mut pub_handles = Vec::new();
        for (r, c) in owners.iter_mut().enumerate() {
            let Some(c) = c.take() else { continue };
            // Spread the rooms' schedules over one period.
            let start_us = t0_us + period_us * r as u64 / rooms as u64;
            let (ps, stop) = (pubstat.clone(), pstop_rx.clone());
            let schedule = Schedule {
                start_us,
                period_us,
                end_us,
            };
            pub_handles.push(match c {
                Publisher::Ws { conn, conversation } => {
                    let tag = format!("f{ri}-{r}");
                    tokio::task::spawn_local(publisher(conn, conversation, tag, schedule, ps, stop))
                }
                Publisher::Mqtt {
                    conn,
                    topic,
                    next_k,
                } => tokio::task::spawn_local(mqtt_publisher(
                    conn, topic, next_k, schedule, ps, stop,
                )),
            });
        }
        let srv0 = server.sample();
        let gen0 = stats::sample("self");
        tokio::time::sleep_until(end.into()).await;
        // Wait for stragglers: every acked message must reach its K-1 other members.
        let drain_deadline = Instant::now() + Duration::from_secs_f64(o.drain_secs);
        let mut drained = false;
        loop {
            let expected = pubstat.borrow().acked * (k as u64 - 1);
            let pending_acks =
                pubstat.borrow().sent - pubstat.borrow().acked - pubstat.borrow().errors;
            if recv.borrow().delivered >= expected && pending_acks == 0 {
                drained = true;
                break;
            }
            if Instant::now() > drain_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let srv1 = server.sample();
        let gen1 = stats::sample("self");
        let _ = pstop_tx.send(true);
        for (r, h) in pub_handles.into_iter().enumerate() {
            owners[r] = h.await.ok().flatten();
        }
        {
            let p = pubstat.borrow();
            let rv = recv.borrow();
            let expected = p.acked * (k as u64 - 1);
            let window_s = (rv.last_delivery_us.saturating_sub(t0_us) as f64 / 1e6).max(o.secs);
            let cpu = srv1.cpu_s - srv0.cpu_s;
            let lat = stats::summarize_hist(&hist.borrow());
            let result = json!({
                "k": k, "rooms": rooms, "members": n, "rate_per_room": rate, "secs": o.secs,
                "offered_deliveries_per_s": rate * rooms as f64 * (k as f64 - 1.0),
                "sent": p.sent, "acked": p.acked, "send_errors": p.errors, "first_send_error": p.first_error,
                "expected_deliveries": expected, "delivered": rv.delivered,
                "lost": expected.saturating_sub(rv.delivered), "gaps": rv.gaps, "dups": rv.dups,
                "closed_by_server": rv.closed, "drained": drained, "first_recv_error": rv.first_error,
                "window_s": window_s,
                "deliveries_per_s": rv.delivered as f64 / window_s,
                "server_cpu_s": cpu,
                "server_cpu_pct": 100.0 * cpu / window_s,
                "deliveries_per_server_cpu_s": if cpu > 0.0 { rv.delivered as f64 / cpu } else { 0.0 },
                "bytes_per_delivery": if rv.delivered > 0 { rv.delivered_bytes as f64 / rv.delivered as f64 } else { 0.0 },
                "server_rss_kib": srv1.rss_kib,
                "server_runq_wait_s": srv1.runq_wait_s - srv0.runq_wait_s,
                "generator_runq_wait_s": gen1.runq_wait_s - gen0.runq_wait_s,
                "cpu_pressure_avg10": stats::cpu_pressure(),
                "generator_cpu_pct": 100.0 * (gen1.cpu_s - gen0.cpu_s) / window_s,
                "latency": lat,
                "ack_latency": stats::summarize_hist(&p.ack_hist),
            });
            eprintln!(
                "   K={k} rate {rate}/s/room: delivered {} of {expected}, p99 {:.2} ms",
                rv.delivered, lat.p99_ms
            );
            out.push(result);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    Ok(out)
}
