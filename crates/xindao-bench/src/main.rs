//! xindao-bench: a load generator that speaks xindao's protocol (and the Socket.IO peer's) with thousands of
//! real WebSocket connections, and runs the same scenarios against both servers in one run.
//!
//! See docs/performance.md and `bench/run.sh`.

mod client;
mod closed_loop;
mod connections;
mod direct;
mod fanout;
mod join_storm;
mod mqtt;
mod proto;
mod send_floor;
mod server;
mod stats;
mod storm;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::Value;

use crate::proto::Target;
use crate::server::{Server, ServerOpts};

#[derive(Parser, Debug)]
#[command(
    name = "xindao-bench",
    version,
    about = "Benchmark harness for xindao and its peers"
)]
struct Cli {
    #[command(flatten)]
    server: ServerOpts,
    /// Servers to measure, in this order.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "xindao,socketio"
    )]
    targets: Vec<Target>,
    /// Core(s) the load generator is pinned to; empty for no pinning.
    #[arg(long, global = true, default_value = "1")]
    gen_cpu: String,
    /// Directory for JSON results and server logs.
    #[arg(long, global = true, default_value = "bench/results/local/raw")]
    out: PathBuf,
    /// Repetitions of the scenario (a fresh server each time), for min/median/max.
    #[arg(long, global = true, default_value_t = 1)]
    runs: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// N authenticated idle connections at a controlled rate: connect rate, server RSS per connection.
    Connections(connections::Opts),
    /// Rooms of K members with publishers at a fixed rate: deliveries/s, latency, loss, server CPU.
    Fanout(fanout::Opts),
    /// M pairs chatting 1:1, open-loop sweep of offered load: committed msg/s, latency, loss, duplicates.
    Direct(direct::Opts),
    /// M pairs chatting 1:1 in closed loop (one message in flight per connection): acked msg/s, round trip.
    DirectClosed(closed_loop::Opts),
    /// N clients drop at once, messages arrive meanwhile, all reconnect and sync: time until all caught up.
    ReconnectStorm(storm::Opts),
    /// N connected clients join one room at once: time until all joined, pushes sent (xindao only).
    JoinStorm(join_storm::Opts),
    /// No server: one thread on the server's core writes a frame to each of N loopback sockets; the kernel's
    /// cost per send, the ceiling for fan-out deliveries per CPU-second with one write per delivery.
    SendFloor(send_floor::Opts),
    /// Internal: one load-generator worker process of the `connections` scenario.
    #[command(hide = true)]
    Worker(connections::WorkerOpts),
}

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Connections(_) => "connections",
            Cmd::Fanout(_) => "fanout",
            Cmd::Direct(_) => "direct",
            Cmd::DirectClosed(_) => "direct-closed",
            Cmd::ReconnectStorm(_) => "reconnect-storm",
            Cmd::JoinStorm(_) => "join-storm",
            Cmd::SendFloor(_) => "send-floor",
            Cmd::Worker(_) => "worker",
        }
    }
}

#[derive(Serialize)]
struct RunRecord {
    target: Target,
    run: usize,
    /// /proc/loadavg before and after: this machine may be shared, so say how busy it was.
    loadavg_before: String,
    loadavg_after: String,
    server_command: String,
    result: Value,
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().next().unwrap_or("").to_string();
    serde_json::json!({
        "cpu": model,
        "cpus": cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        "online_cpus": std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default().trim(),
        "mem": mem,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "nofile_limit": client::raise_nofile(),
    })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    client::raise_nofile();
    stats::now_us();
    if !cli.gen_cpu.is_empty() {
        client::pin_to(&cli.gen_cpu)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::Worker(w) = &cli.cmd {
        return connections::worker(w.clone()).await;
    }
    std::fs::create_dir_all(&cli.out)?;
    let scenario = cli.cmd.name();
    let mut records = Vec::new();
    let argv: Vec<String> = std::env::args().collect();
    if let Cmd::SendFloor(o) = &cli.cmd {
        let mut runs = Vec::new();
        for run in 1..=cli.runs {
            let loadavg_before = loadavg();
            let result = send_floor::run(o, run).await?;
            runs.push(serde_json::json!({
                "run": run,
                "loadavg_before": loadavg_before,
                "loadavg_after": loadavg(),
                "result": result,
            }));
            write_json(&cli.out, scenario, &argv, &runs)?;
        }
        return Ok(());
    }
    for run in 1..=cli.runs {
        for &target in &cli.targets {
            if target == Target::Mosquitto && !matches!(cli.cmd, Cmd::Fanout(_)) {
                eprintln!("{scenario}: skipping mosquitto ({})", proto::MQTT_ONLY);
                continue;
            }
            if matches!(cli.cmd, Cmd::JoinStorm(_)) && target != Target::Xindao {
                eprintln!("join-storm: skipping {} (xindao only)", target.name());
                continue;
            }
            if matches!(cli.cmd, Cmd::ReconnectStorm(_)) && target != Target::Xindao {
                eprintln!(
                    "reconnect-storm: skipping {} (the Socket.IO peer has no sync: missed events are lost)",
                    target.name()
                );
                continue;
            }
            eprintln!(
                "== {scenario} / {} / run {run} of {}",
                target.name(),
                cli.runs
            );
            let log = cli
                .out
                .join(format!("{scenario}-{}-run{run}.server.log", target.name()));
            let loadavg_before = loadavg();
            let server = Server::start(&cli.server, target, &log).await?;
            if server.pids.len() > 1 {
                eprintln!("   servers: {} (pids {:?})", server.url, server.pids);
            } else {
                eprintln!("   server: {} (pid {:?})", server.url, server.pid);
            }
            let result = match &cli.cmd {
                Cmd::Connections(o) => connections::run(o, &server, &cli.out).await,
                Cmd::Fanout(o) => fanout::run(o, &server, run).await,
                Cmd::Direct(o) => direct::run(o, &server, run).await,
                Cmd::DirectClosed(o) => closed_loop::run(o, &server, run).await,
                Cmd::ReconnectStorm(o) => storm::run(o, &server, run).await,
                Cmd::JoinStorm(o) => join_storm::run(o, &server, run).await,
                Cmd::SendFloor(_) | Cmd::Worker(_) => unreachable!(),
            };
            let command = server.command.clone();
            server.stop().await;
            let result = result?;
            records.push(RunRecord {
                target,
                run,
                loadavg_before,
                loadavg_after: loadavg(),
                server_command: command,
                result,
            });
            write_json(&cli.out, scenario, &argv, &records)?;
        }
    }
    Ok(())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn write_json(out: &Path, scenario: &str, argv: &[String], records: &impl Serialize) -> Result<()> {
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let doc = serde_json::json!({
        "scenario": scenario,
        "command": argv.join(" "),
        "machine": machine(),
        "unix_time": unix_time,
        // The servers inherit the environment: TOKIO_WORKER_THREADS=1 runs xindao on one worker (run.sh's
        // scaling check), which the command line above does not show.
        "tokio_worker_threads": std::env::var("TOKIO_WORKER_THREADS").ok(),
        "runs": records,
    });
    let path = out.join(format!("{scenario}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    eprintln!("   wrote {}", path.display());
    Ok(())
}

/// Print a plain-text table.
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    println!("\n{title}");
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:>width$}", width = w[i]))
            .collect();
        println!("| {} |", s.join(" | "));
    };
    line(header.iter().map(|s| s.to_string()).collect());
    println!(
        "|{}|",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        line(r.clone());
    }
}
