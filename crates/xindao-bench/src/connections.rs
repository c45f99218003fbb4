//! Scenario `connections`: N authenticated idle connections opened at a controlled rate, by worker processes of
//! this binary (one process may hold at most ~20,000 file descriptors); server RSS sampled at several N.
//!
//! With a node list (`--url A,B,.. --server-pid PA,PB,..`) connection i goes to node i % nodes (every worker
//! connects to every node); RSS and CPU are summed over the nodes (the RSS slope is on the sum) and each node's
//! figures are reported too.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};

use crate::client::{self};
use crate::proto::Target;
use crate::server::Server;
use crate::stats;

mod worker;
pub use worker::worker;

#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Total idle connections to open (one server process tops out near 19,900).
    #[arg(long, default_value_t = 19_800)]
    pub n: usize,
    /// Target connect rate (connections/s, all workers together).
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
    /// Number of RSS checkpoints (N/steps, 2N/steps, ..., N).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Client sockets per worker process.
    #[arg(long, default_value_t = 10_000)]
    pub per_worker: usize,
    /// Connection attempts in flight per worker (all workers together should stay below the server's listen
    /// backlog, or SYNs are dropped and retried after 1 s; drops are reported as listen overflows).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Pause after each step before sampling RSS (ms).
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
}

#[derive(Clone, Debug, clap::Args)]
pub struct WorkerOpts {
    #[arg(long)]
    pub target: Target,
    /// Node URL, or a comma-separated list of the nodes of one cluster (connection i goes to node i % n).
    #[arg(long)]
    pub base: String,
    #[arg(long)]
    pub tokens_file: std::path::PathBuf,
    #[arg(long)]
    pub start: usize,
    #[arg(long)]
    pub count: usize,
    #[arg(long)]
    pub src_offset: usize,
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
}

struct WorkerProc {
    child: tokio::process::Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    count: usize,
    opened: usize,
}

pub async fn run(o: &Opts, server: &Server, out: &Path) -> Result<Value> {
    let target = server.target;
    let t = Instant::now();
    let users = client::login_pool(&server.url, "idle-", o.n, 128).await?;
    let login_s = t.elapsed().as_secs_f64();
    eprintln!(
        "   {} users logged in in {login_s:.1} s ({:.0}/s)",
        o.n,
        o.n as f64 / login_s
    );
    let tokens_file = out.join(format!("tokens-{}.txt", target.name()));
    let text: Vec<&str> = users.iter().map(|u| u.token.as_str()).collect();
    std::fs::write(&tokens_file, text.join("\n"))?;

    let exe = std::env::current_exe()?;
    let nworkers = o.n.div_ceil(o.per_worker).max(1);
    let mut workers = Vec::new();
    for w in 0..nworkers {
        let start = w * o.n / nworkers;
        let end = (w + 1) * o.n / nworkers;
        let mut child = Command::new(&exe)
            .args([
                "--gen-cpu",
                "",
                "worker",
                "--target",
                target.name(),
                "--base",
                &server.url,
                "--tokens-file",
                &tokens_file.display().to_string(),
                "--start",
                &start.to_string(),
                "--count",
                &(end - start).to_string(),
                "--src-offset",
                &(w * 97).to_string(),
                "--concurrency",
                &o.concurrency.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning worker")?;
        let stdin = child.stdin.take().expect("piped");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        workers.push(WorkerProc {
            child,
            stdin,
            lines,
            count: end - start,
            opened: 0,
        });
    }
    for w in &mut workers {
        let l = w.lines.next_line().await?.unwrap_or_default();
        if l != "ready" {
            bail!("worker did not start: {l:?}");
        }
    }

    tokio::time::sleep(Duration::from_millis(o.settle_ms)).await;
    let nodes = server.nodes();
    let multi = nodes.len() > 1;
    let per_node = |each: &[stats::ProcSample]| -> Vec<Value> {
        each.iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"url": nodes.get(i).copied().unwrap_or(""), "pid": server.pids[i],
                       "rss_kib": s.rss_kib, "cpu_s": s.cpu_s})
            })
            .collect()
    };
    // Per-node RSS table rows (printed for a node list only): N, one column per node, total CPU-seconds.
    let mut node_table = Vec::new();
    let mut node_row = |n: usize, each: &[stats::ProcSample]| {
        let mut r = vec![n.to_string()];
        r.extend(each.iter().map(|s| s.rss_kib.to_string()));
        r.push(format!("{:.2}", stats::sum(each.iter().copied()).cpu_s));
        node_table.push(r);
    };
    let each = server.sample_each();
    let base_sample = stats::sum(each.iter().copied());
    let mut points = vec![(0.0, base_sample.rss_kib as f64 * 1024.0)];
    let mut rows = vec![json!({"n": 0, "rss_kib": base_sample.rss_kib})];
    if multi {
        rows[0]["server_cpu_s_total"] = json!(base_sample.cpu_s);
        rows[0]["nodes"] = json!(per_node(&each));
        node_row(0, &each);
    }
    let mut table = vec![vec![
        "0".into(),
        "".into(),
        "".into(),
        "".into(),
        "".into(),
        base_sample.rss_kib.to_string(),
        "".into(),
        "".into(),
        "".into(),
    ]];
    let mut total_failed = 0usize;
    let mut first_error = String::new();
    for step in 1..=o.steps {
        let cpu0 = server.sample().cpu_s;
        let ovf0 = stats::tcp_ext("ListenOverflows");
        let mut n_step = 0usize;
        for w in &mut workers {
            let goal = w.count * step / o.steps;
            let k = goal - w.opened;
            n_step += k;
            let rate = o.rate * w.count as f64 / o.n as f64;
            w.stdin
                .write_all(format!("open {k} {rate}\n").as_bytes())
                .await?;
            w.stdin.flush().await?;
            w.opened = goal;
        }
        let mut max_elapsed = 0f64;
        let (mut ok, mut failed, mut dropped) = (0usize, 0usize, 0usize);
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for w in &mut workers {
            let l = w.lines.next_line().await?.unwrap_or_default();
            let v: Value =
                serde_json::from_str(&l).with_context(|| format!("worker said {l:?}"))?;
            max_elapsed = max_elapsed.max(v["elapsed_s"].as_f64().unwrap_or(0.0));
            ok += v["ok"].as_u64().unwrap_or(0) as usize;
            failed += v["failed"].as_u64().unwrap_or(0) as usize;
            dropped += v["dropped"].as_u64().unwrap_or(0) as usize;
            p50.push(v["p50_ms"].as_f64().unwrap_or(0.0));
            p99.push(v["p99_ms"].as_f64().unwrap_or(0.0));
            if first_error.is_empty() {
                first_error = v["first_error"].as_str().unwrap_or("").to_string();
            }
        }
        let cpu1 = server.sample().cpu_s;
        let overflows = stats::tcp_ext("ListenOverflows") - ovf0;
        total_failed += failed;
        tokio::time::sleep(Duration::from_millis(o.settle_ms)).await;
        let each = server.sample_each();
        let s = stats::sum(each.iter().copied());
        let n_total: usize = workers.iter().map(|w| w.opened).sum::<usize>() - total_failed;
        let rate = ok as f64 / max_elapsed.max(1e-9);
        points.push((n_total as f64, s.rss_kib as f64 * 1024.0));
        let p50 = stats::percentile(&p50, 1.0).unwrap_or(0.0);
        let p99 = stats::percentile(&p99, 1.0).unwrap_or(0.0);
        let mut row = json!({
            "n": n_total, "opened": ok, "failed": failed, "dropped_since_open": dropped,
            "connect_rate_per_s": rate, "connect_p50_ms_max_worker": p50, "connect_p99_ms_max_worker": p99,
            "rss_kib": s.rss_kib, "server_cpu_s_during_connect": cpu1 - cpu0,
            "server_cpu_us_per_connect": (cpu1 - cpu0) * 1e6 / ok.max(1) as f64,
            "listen_overflows": overflows,
        });
        if multi {
            // rss_kib and the CPU figures above are sums over the nodes; server_cpu_s_total is cumulative.
            row["server_cpu_s_total"] = json!(s.cpu_s);
            row["nodes"] = json!(per_node(&each));
            node_row(n_total, &each);
        }
        rows.push(row);
        table.push(vec![
            n_total.to_string(),
            format!("{rate:.0}"),
            format!("{p50:.1}"),
            format!("{p99:.1}"),
            failed.to_string(),
            s.rss_kib.to_string(),
            format!("{:.2}", cpu1 - cpu0),
            format!("{:.0}", (cpu1 - cpu0) * 1e6 / ok.max(1) as f64),
            overflows.to_string(),
        ]);
        eprintln!(
            "   step {step}: n={n_total} rate={rate:.0}/s failed={failed} rss={} KiB",
            s.rss_kib
        );
        let _ = n_step;
    }
    let slope = stats::slope(&points[1..]).unwrap_or(0.0);
    let last = points.last().copied().unwrap_or((0.0, 0.0));
    let avg = if last.0 > 0.0 {
        (last.1 - points[0].1) / last.0
    } else {
        0.0
    };
    for w in &mut workers {
        let _ = w.stdin.write_all(b"quit\n").await;
    }
    for w in &mut workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w.child.wait()).await;
    }
    let _ = std::fs::remove_file(&tokens_file);
    let over = if multi {
        format!(" over {} nodes, RSS and CPU summed", nodes.len())
    } else {
        String::new()
    };
    crate::print_table(
        &format!(
            "connections — {}{over} (RSS slope {:.0} B/conn = {:.2} KiB/conn; (RSS(N)-RSS(0))/N {:.0} B)",
            target.name(),
            slope,
            slope / 1024.0,
            avg
        ),
        &[
            "N",
            "connects/s",
            "p50 ms",
            "p99 ms",
            "failed",
            "server RSS KiB",
            "server CPU s",
            "CPU µs/conn",
            "listen ovf",
        ],
        &table,
    );
    let mut result = json!({
        "n": o.n, "target_rate": o.rate, "workers": nworkers, "login_s": login_s,
        "rss_slope_bytes_per_conn": slope, "rss_avg_bytes_per_conn": avg,
        "failed": total_failed, "first_error": first_error, "steps": rows,
    });
    if multi {
        let mut header = vec!["N".to_string()];
        header.extend((1..=nodes.len()).map(|i| format!("node {i} RSS KiB")));
        header.push("total CPU s".into());
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        crate::print_table(
            &format!(
                "connections — {} per node ({}; total CPU s = CPU-seconds of all nodes since they started)",
                target.name(),
                server.url
            ),
            &header,
            &node_table,
        );
        result["nodes"] = json!(nodes);
        result["server_pids"] = json!(server.pids);
    }
    Ok(result)
}
