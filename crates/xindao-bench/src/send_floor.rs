//! Scenario `send-floor`: what one delivery costs the kernel alone on this machine, with no server at all.
//!
//! Fan-out costs the server at least one socket write per recipient. This scenario measures the cheapest
//! such write: a plain thread pinned to the server's core writes one WebSocket-sized frame to each of N
//! loopback TCP sockets in turn (blocking `write`, TCP_NODELAY, as a server would), while the load generator's
//! core reads them all through tokio, as the benchmark clients do. On loopback the receiving side's TCP
//! processing runs in the sender's softirq and is charged to the sender, as it is to the server in `fanout`.
//! Sends per CPU-second of the sending thread is the ceiling for deliveries per server CPU-second with one
//! write per delivery.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::client;

#[derive(Clone, Debug, clap::Args)]
pub struct Opts {
    /// Sockets written to (each end is a file in this one process, so at most ~9,900).
    #[arg(long, default_value_t = 9000)]
    pub n: usize,
    /// Frames written to every socket.
    #[arg(long, default_value_t = 40)]
    pub rounds: usize,
    /// Bytes per frame (a fan-out push of a short text message is ~200).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(5..))]
    pub bytes: u16,
    /// Pauses between rounds to measure (ms): 0 writes back to back; 500 paces rounds like `fanout`'s 2
    /// broadcasts/s, so the readers fall asleep between rounds and every round must wake them.
    #[arg(long, value_delimiter = ',', default_value = "0,500")]
    pub interval_ms: Vec<u64>,
    /// Core the sending thread is pinned to (the server's core in the other scenarios).
    #[arg(long, default_value = "0")]
    pub send_cpu: String,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A server text frame of `bytes` bytes in all: FIN + text opcode, a 16-bit length, then the payload.
fn frame(bytes: u16) -> Vec<u8> {
    let payload = bytes.saturating_sub(4);
    let mut frame = vec![0x81u8, 126];
    frame.extend(payload.to_be_bytes());
    frame.extend(std::iter::repeat_n(b'x', payload as usize));
    frame
}

/// Accepts `n` connections, waits for the go, writes `rounds` frames to each; returns (CPU, wall) time.
fn sender(
    listener: TcpListener,
    opts: Opts,
    interval: Duration,
    go: std::sync::mpsc::Receiver<()>,
) -> Result<(Duration, Duration)> {
    client::pin_to(&opts.send_cpu)?;
    let mut sockets: Vec<TcpStream> = Vec::with_capacity(opts.n);
    for _ in 0..opts.n {
        let (socket, _) = listener.accept().context("accept")?;
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    go.recv().map_err(|_| anyhow!("receivers gone"))?;
    let frame = frame(opts.bytes);
    let mut cpu = Duration::ZERO;
    let mut wall = Duration::ZERO;
    for _ in 0..opts.rounds {
        let (cpu_before, wall_before) = (thread_cpu(), Instant::now());
        for socket in &mut sockets {
            socket.write_all(&frame)?;
        }
        cpu += thread_cpu() - cpu_before;
        wall += wall_before.elapsed();
        std::thread::sleep(interval);
    }
    Ok((cpu, wall))
}

pub async fn run(opts: &Opts, run: usize) -> Result<Value> {
    let mut modes = Vec::new();
    for &interval_ms in &opts.interval_ms {
        modes.push(measure(opts, run, interval_ms).await?);
    }
    Ok(json!({ "modes": modes }))
}

/// One measurement: fresh sockets, `rounds` frames to each, `interval_ms` apart.
async fn measure(opts: &Opts, run: usize, interval_ms: u64) -> Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let sending = {
        let opts = opts.clone();
        let interval = Duration::from_millis(interval_ms);
        std::thread::spawn(move || sender(listener, opts, interval, go_rx))
    };
    let per_socket = opts.rounds * frame(opts.bytes).len();
    let mut readers = Vec::with_capacity(opts.n);
    for _ in 0..opts.n {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        readers.push(tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while got < per_socket {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        }));
    }
    go_tx.send(()).map_err(|_| anyhow!("sender gone"))?;
    let mut received = 0usize;
    for reader in readers {
        received += reader.await?;
    }
    let (cpu, wall) = sending.join().map_err(|_| anyhow!("sender panicked"))??;
    let sends = opts.n * opts.rounds;
    let us_per_send = cpu.as_secs_f64() * 1e6 / sends as f64;
    let per_cpu_s = sends as f64 / cpu.as_secs_f64().max(1e-9);
    crate::print_table(
        &format!(
            "send-floor — run {run} ({} sockets, {} B frames)",
            opts.n, opts.bytes
        ),
        &[
            "sends",
            "sender CPU s",
            "wall s",
            "µs per send",
            "sends per CPU-s",
            "bytes received",
        ],
        &[vec![
            sends.to_string(),
            format!("{:.3}", cpu.as_secs_f64()),
            format!("{:.3}", wall.as_secs_f64()),
            format!("{us_per_send:.2}"),
            format!("{per_cpu_s:.0}"),
            format!("{received}/{}", per_socket * opts.n),
        ]],
    );
    Ok(json!({
        "sockets": opts.n,
        "rounds": opts.rounds,
        "frame_bytes": opts.bytes,
        "interval_ms": interval_ms,
        "sends": sends,
        "sender_cpu_s": cpu.as_secs_f64(),
        "wall_s": wall.as_secs_f64(),
        "us_per_send": us_per_send,
        "sends_per_cpu_s": per_cpu_s,
        "bytes_received": received,
        "bytes_expected": per_socket * opts.n,
    }))
}
