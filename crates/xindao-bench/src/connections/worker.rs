//! The worker side of `connections`: a child process of this binary that opens its share of the idle
//! connections at the rate it is told and holds them. Kept apart from `connections.rs`, which starts the
//! workers, paces them and samples the server.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use super::WorkerOpts;
use crate::client::{self, Conn};
use crate::proto::{self, Frame};
use crate::stats;

/// A worker process: reads `open K RATE` / `quit` lines on stdin, answers one JSON line per `open`.
pub async fn worker(o: WorkerOpts) -> Result<()> {
    client::set_src_offset(o.src_offset);
    let text = std::fs::read_to_string(&o.tokens_file)?;
    let tokens: Vec<String> = text
        .lines()
        .skip(o.start)
        .take(o.count)
        .map(String::from)
        .collect();
    let nodes: Vec<(String, std::net::SocketAddr)> = o
        .base
        .split(',')
        .map(|url| Ok((url.to_string(), client::server_addr(url)?)))
        .collect::<Result<_>>()?;
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let dropped = Rc::new(Cell::new(0usize));
    let mut next = 0usize;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    println!("ready");
    while let Some(line) = stdin.next_line().await? {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["open", k, rate] => {
                let k: usize = k.parse()?;
                let rate: f64 = rate.parse()?;
                let dropped_before = dropped.get();
                let done = Rc::new(Cell::new(0usize));
                let ok = Rc::new(Cell::new(0usize));
                let notify = Rc::new(Notify::new());
                let hist = Rc::new(RefCell::new(stats::new_hist()));
                let first_error = Rc::new(RefCell::new(String::new()));
                let t0 = Instant::now();
                for i in 0..k {
                    let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let permit = sem.clone().acquire_owned().await?;
                    let j = (next + i) % tokens.len();
                    let token = tokens[j].clone();
                    // Round-robin over the nodes by the connection's index among all workers' connections.
                    let (base, addr) = nodes[(o.start + j) % nodes.len()].clone();
                    let (done, ok, notify, hist, first_error, dropped) = (
                        done.clone(),
                        ok.clone(),
                        notify.clone(),
                        hist.clone(),
                        first_error.clone(),
                        dropped.clone(),
                    );
                    tokio::task::spawn_local(async move {
                        let started = Instant::now();
                        let r = Conn::connect(o.target, &base, addr, &token).await;
                        drop(permit);
                        let conn = match r {
                            Ok(c) => {
                                stats::record(
                                    &mut hist.borrow_mut(),
                                    started.elapsed().as_micros() as u64,
                                );
                                ok.set(ok.get() + 1);
                                Some(c)
                            }
                            Err(e) => {
                                if first_error.borrow().is_empty() {
                                    *first_error.borrow_mut() = format!("{e:#}");
                                }
                                None
                            }
                        };
                        done.set(done.get() + 1);
                        notify.notify_one();
                        if let Some(c) = conn {
                            idle(c).await;
                            dropped.set(dropped.get() + 1);
                        }
                    });
                }
                while done.get() < k {
                    notify.notified().await;
                }
                let elapsed = t0.elapsed().as_secs_f64();
                next += k;
                let s = stats::summarize_hist(&hist.borrow());
                let reply = json!({
                    "ok": ok.get(), "failed": k - ok.get(), "elapsed_s": elapsed,
                    "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
                    "dropped": dropped.get() - dropped_before,
                    "first_error": first_error.borrow().clone(),
                });
                println!("{reply}");
            }
            ["quit"] => break,
            _ => bail!("worker: unknown command {line:?}"),
        }
    }
    Ok(())
}

/// Keep an idle connection alive: answer Engine.IO pings (tungstenite answers WebSocket pings itself).
async fn idle(mut c: Conn) {
    while let Some(Ok(m)) = c.ws.next().await {
        if let Message::Text(t) = &m {
            if let Ok(Frame::EioPing) = proto::parse(c.target, t) {
                if c.ws.send(Message::text("3")).await.is_err() {
                    break;
                }
            }
        }
        if let Message::Close(_) = m {
            break;
        }
    }
}
