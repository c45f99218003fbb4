//! Scenario `join-storm`: N connected clients join one public room at once, over their live connections, and
//! keep reading their pushes. Reported: time until every join is answered, the pushes the server queued
//! meanwhile (its `xindao_pushes_total`), what the clients received (`member` pushes and `members_changed`
//! summaries) and server CPU. Per-member events would cost ~N^2/2 pushes; above `--room-member-events-max`
//! (xindao's setting, default 500) the room's changes come as one summary per second, so the pushes stay O(N).
//! xindao only (the Socket.IO peer has no rooms with membership events).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::client::{self, Conn};
use crate::proto::Target;
use crate::server::Server;

#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Clients that join the room.
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    /// Give up after this long (s).
    #[arg(long, default_value_t = 120.0)]
    pub timeout_secs: f64,
}

#[derive(Default)]
struct Counts {
    joined: Cell<usize>,
    failed: Cell<usize>,
    member: Cell<u64>,
    summaries: Cell<u64>,
}

/// The server's `xindao_pushes_total`, read from its metrics page.
async fn pushes_total(base: &str) -> Result<u64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix("xindao_pushes_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .context("no xindao_pushes_total in /metrics")
}

pub async fn run(o: &Opts, server: &Server, run: usize) -> Result<Value> {
    if server.target != Target::Xindao {
        bail!("join-storm: xindao only");
    }
    let n = o.n;
    let base = server
        .url
        .split(',')
        .next()
        .unwrap_or(&server.url)
        .to_string();
    let metrics = server.admin_url.clone().context(
        "join-storm reads xindao_pushes_total from the admin listener: start the server here",
    )?;
    eprintln!("   {n} clients: logging in");
    let users = client::login_pool(&base, &format!("join-r{run}-"), n + 1, 128).await?;
    let addr = client::server_addr(&base)?;
    let mut owner = Conn::connect(server.target, &base, addr, &users[n].token).await?;
    let body = owner
        .call(
            "room_create",
            &json!({ "name": format!("join-storm-{run}") }).to_string(),
        )
        .await?;
    let room: Value = serde_json::from_str(body.get())?;
    let room = room["conversation"]["id"].as_u64().context("room id")?;
    eprintln!("   connecting {n} clients");
    let tokens: Vec<&str> = users[..n].iter().map(|u| u.token.as_str()).collect();
    let conns = client::connect_all(server.target, &server.url, &tokens, 500).await?;

    eprintln!("   storm: {n} joins at once");
    let counts = Rc::new(Counts::default());
    let stop = Rc::new(Cell::new(false));
    let pushes0 = pushes_total(&metrics).await?;
    let srv0 = server.sample();
    let t0 = Instant::now();
    let join = json!({ "conversation_id": room }).to_string();
    let mut tasks = Vec::with_capacity(n);
    for mut conn in conns {
        let (counts, stop, join) = (counts.clone(), stop.clone(), join.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let id = conn.alloc_id();
            if conn
                .send_text(conn.target.request(id, "room_join", &join))
                .await
                .is_err()
            {
                counts.failed.set(counts.failed.get() + 1);
                return;
            }
            let mut answered = false;
            while !stop.get() {
                let text = match tokio::time::timeout(Duration::from_millis(100), conn.recv_text())
                    .await
                {
                    Err(_) => continue,
                    Ok(Err(_)) => {
                        if !answered {
                            counts.failed.set(counts.failed.get() + 1);
                        }
                        return;
                    }
                    Ok(Ok(text)) => text,
                };
                // Cheap classification: the frames are the server's own, one JSON object each.
                if text.starts_with(r#"{"event":"member""#) {
                    counts.member.set(counts.member.get() + 1);
                } else if text.starts_with(r#"{"event":"members_changed""#) {
                    counts.summaries.set(counts.summaries.get() + 1);
                } else if !answered && text.starts_with(&format!(r#"{{"id":{id},"#)) {
                    answered = true;
                    if text.contains(r#""ok":true"#) {
                        counts.joined.set(counts.joined.get() + 1);
                    } else {
                        counts.failed.set(counts.failed.get() + 1);
                    }
                }
            }
        }));
    }
    let deadline = t0 + Duration::from_secs_f64(o.timeout_secs);
    while counts.joined.get() + counts.failed.get() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_joined_ms = t0.elapsed().as_secs_f64() * 1e3;
    let pushes_at_joined = pushes_total(&metrics).await? - pushes0;
    // The last summary comes within a second of the last join.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pushes = pushes_total(&metrics).await? - pushes0;
    let srv1 = server.sample();
    stop.set(true);
    for task in tasks {
        let _ = task.await;
    }
    let cpu = srv1.cpu_s - srv0.cpu_s;
    let (joined, failed) = (counts.joined.get(), counts.failed.get());
    let (member, summaries) = (counts.member.get(), counts.summaries.get());
    crate::print_table(
        &format!(
            "join-storm — {} ({n} clients join one room)",
            server.target.name()
        ),
        &[
            "all joined ms",
            "joined",
            "failed",
            "pushes queued",
            "per join",
            "member rcvd",
            "summaries rcvd",
            "srv CPU s",
        ],
        &[vec![
            format!("{all_joined_ms:.0}"),
            joined.to_string(),
            failed.to_string(),
            pushes.to_string(),
            format!("{:.2}", pushes as f64 / n.max(1) as f64),
            member.to_string(),
            summaries.to_string(),
            format!("{cpu:.2}"),
        ]],
    );
    Ok(json!({
        "n": n, "all_joined_ms": all_joined_ms, "joined": joined, "failed": failed,
        "pushes_queued_until_all_joined": pushes_at_joined, "pushes_queued": pushes,
        "pushes_per_join": pushes as f64 / n.max(1) as f64,
        "member_pushes_received": member, "members_changed_received": summaries,
        "server_cpu_s": cpu, "server_rss_kib": srv1.rss_kib,
    }))
}
