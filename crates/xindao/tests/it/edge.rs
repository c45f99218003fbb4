//! The HTTP edge under attack (issue 16, finding 1): slowloris headers, oversize headers, idle keep-alive,
//! silent sockets, more un-upgraded connections than the cap, a low open-file limit. Each test is the attack
//! itself against a real server, asserting on what comes back and that the server still serves.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.1 and 127.0.0.2 are two clients).
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the peer closes (or resets) the connection; returns what it sent and when it closed, or None
/// if it is still open after `wait`.
async fn until_closed(tcp: &mut TcpStream, wait: Duration) -> Option<(String, Instant)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((String::from_utf8_lossy(&got).into_owned(), Instant::now()))
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET /healthz` on a fresh connection from `from`: the status, or None when refused or not answered in 5 s.
pub async fn healthz_from(from: [u8; 4], addr: SocketAddr) -> Option<u16> {
    let mut tcp = connect_from(from, addr).await;
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.ok()?;
    let (reply, _) = until_closed(&mut tcp, Duration::from_secs(5)).await?;
    reply.get(9..12)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_headers_and_silent_sockets_are_closed_at_the_header_timeout() {
    let server = TestServer::start(|c| c.http_header_timeout_ms = 1000).await;
    let started = Instant::now();
    let mut slow = connect_from([127, 0, 0, 1], server.addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = connect_from([127, 0, 0, 1], server.addr).await;
    // Before: both held for as long as the client liked (300 such sockets, 75 s, none closed).
    for tcp in [&mut slow, &mut silent] {
        let (_, closed) = until_closed(tcp, Duration::from_secs(5))
            .await
            .expect("closed by the server");
        let held = closed - started;
        assert!(
            held >= Duration::from_millis(900) && held < Duration::from_secs(3),
            "held {held:?}"
        );
    }
    assert_eq!(healthz_from([127, 0, 0, 1], server.addr).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = TestServer::start(|c| c.http_header_timeout_ms = 1000).await;
    let mut tcp = connect_from([127, 0, 0, 1], server.addr).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    let (rest, closed) = until_closed(&mut tcp, Duration::from_secs(5))
        .await
        .expect("the idle keep-alive connection is closed");
    let idle = closed - answered;
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(3),
        "idle {idle:?}, then {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_within_three_header_timeouts() {
    let server = TestServer::start(|c| c.http_header_timeout_ms = 500).await;
    let mut tcp = connect_from([127, 0, 0, 1], server.addr).await;
    let head = "POST /v1/login/dev HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (reply, closed) = until_closed(&mut tcp, Duration::from_secs(5))
        .await
        .expect("closed by the server");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    let held = closed - started;
    assert!(held < Duration::from_millis(2500), "held {held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_headers_are_answered_431() {
    let server = TestServer::start(|_| {}).await;
    let mut tcp = connect_from([127, 0, 0, 1], server.addr).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may close before it has read everything: a failed write is part of the outcome.
    let _ = tcp.write_all(head.as_bytes()).await;
    let (reply, _) = until_closed(&mut tcp, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply:?}"
    );
    assert_eq!(healthz_from([127, 0, 0, 1], server.addr).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_pending_cap_are_refused_while_websockets_keep_working() {
    let server = TestServer::start(|c| {
        c.max_pending_connections = 20;
        c.http_header_timeout_ms = 1500;
    })
    .await;
    let alice = server.login("alice").await;
    let mut ws = server.connect(&alice).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from([127, 0, 0, 1], server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The 21st is closed at once, before a byte is read.
    let mut refused = connect_from([127, 0, 0, 1], server.addr).await;
    let (reply, _) = until_closed(&mut refused, Duration::from_secs(1))
        .await
        .expect("refused at accept");
    assert_eq!(reply, "");
    // The upgraded socket is not counted and keeps working.
    assert_eq!(ws.call("ping", json!({})).await["ok"], true);
    assert_eq!(
        metric(server.admin, "xindao_pending_connections")
            .await
            .as_deref(),
        Some("20")
    );
    // Once the header timeout has closed the silent ones, new connections are served again.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(healthz_from([127, 0, 0, 1], server.addr).await, Some(200));
    assert_eq!(ws.call("ping", json!({})).await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_every_pending_place() {
    // Default caps: 64 un-upgraded connections per address, 1024 in all.
    let server = TestServer::start(|c| {
        c.max_connections_per_ip = 64;
    })
    .await;
    let mut attack = Vec::new();
    for _ in 0..300 {
        attack.push(connect_from([127, 0, 0, 1], server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metric(server.admin, "xindao_pending_connections")
            .await
            .as_deref(),
        Some("64")
    );
    assert_eq!(
        metric(server.admin, "xindao_accepts_refused_total")
            .await
            .as_deref(),
        Some("236")
    );
    // Another client is still served, the attacker's address is not.
    assert_eq!(healthz_from([127, 0, 0, 2], server.addr).await, Some(200));
    assert_eq!(healthz_from([127, 0, 0, 1], server.addr).await, None);
}

/// The release figure of issue 16 (500 sockets parked on 366 KiB of unfinished headers: RSS 42 -> 222 MB),
/// replayed against the binary: the server's resident memory before and at its peak during the attack.
async fn header_flood(extra_args: &[&str]) -> (u64, u64, Option<u16>) {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_binary(dir.path(), extra_args);
    let pid = child.0.id();
    assert_eq!(healthz_from([127, 0, 0, 1], addr).await, Some(200));
    let before = rss_kib(pid);
    let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
    let flood: Vec<_> = (0..500)
        .map(|_| {
            let line = line.clone();
            tokio::spawn(async move {
                let mut tcp = connect_from([127, 0, 0, 1], addr).await;
                if tcp
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .is_err()
                {
                    return tcp;
                }
                for _ in 0..366 {
                    if tcp.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
                tcp
            })
        })
        .collect();
    let mut peak = before;
    let mut sockets = Vec::new();
    for task in flood {
        peak = peak.max(rss_kib(pid));
        sockets.push(task.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak = peak.max(rss_kib(pid));
    let health = healthz_from([127, 0, 0, 2], addr).await;
    drop(sockets);
    drop(child);
    (before, peak, health)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unfinished_headers_keeps_memory_bounded() {
    let (before, peak, health) = header_flood(&["--max-connections-per-ip", "100000"]).await;
    eprintln!("header flood: RSS {before} KiB before, {peak} KiB at the peak");
    assert_eq!(health, Some(200), "the server still answers");
    assert!(
        peak < before + 40 * 1024,
        "RSS grew from {before} to {peak} KiB"
    );
}

/// The same flood with the limits hyper had before (400 KiB heads, no timeout) for the before/after
/// figure: `cargo test -p xindao --test it -- --ignored edge::header_flood_with_the_old_limits --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints the before figure; asserts nothing"]
async fn header_flood_with_the_old_limits() {
    let old = [
        "--max-connections-per-ip",
        "100000",
        "--max-header-bytes",
        "409600",
        "--http-header-timeout-ms",
        "600000",
    ];
    let (before, peak, health) = header_flood(&old).await;
    eprintln!("old limits: RSS {before} KiB before, {peak} KiB at the peak; healthz {health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_low_open_file_limit_silent_sockets_do_not_starve_the_server() {
    // 1024 descriptors (a common default): 256 are kept for the store and listeners, the caps are lowered
    // to fit the rest (192 un-upgraded connections, 576 WebSockets).
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr) = start_binary_with_limit(dir.path(), 1024, &[]);
    let mut attack = Vec::new();
    for _ in 0..600 {
        attack.push(connect_from([127, 0, 0, 1], addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Before: /healthz and login timed out and WAL checkpoints failed. Now the attacker's address holds
    // 64 places, the rest of its sockets were closed at accept, and another client is served in full.
    assert_eq!(healthz_from([127, 0, 0, 2], addr).await, Some(200));
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let login: serde_json::Value = http
        .post(format!("http://{addr}/v1/login/dev"))
        .json(&json!({ "display_name": "alice" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let url = format!("ws://{addr}/v1/ws?token={token}");
    let tcp = connect_from([127, 0, 0, 2], addr).await;
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    let mut a = Client::from_ws(ws).await;
    let room = a.ok("room_create", json!({ "name": "fd" })).await["conversation"]["id"]
        .as_i64()
        .unwrap();
    for i in 0..20 {
        a.say(room, &format!("c{i}"), "still writing").await;
    }
    drop(attack);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The server's process, killed when dropped (also when the test fails).
struct Binary(Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_binary(data_dir: &std::path::Path, extra_args: &[&str]) -> (Binary, SocketAddr) {
    start_binary_with_limit(data_dir, 0, extra_args)
}

/// The real binary on port 0; `nofile` > 0 sets its open-file limit (soft and hard) with `ulimit -n`.
fn start_binary_with_limit(
    data_dir: &std::path::Path,
    nofile: u32,
    extra_args: &[&str],
) -> (Binary, SocketAddr) {
    let limit = match nofile {
        0 => String::new(),
        n => format!("ulimit -n {n} && "),
    };
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("{limit}exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_xindao"))
        .args(["serve", "--listen", "127.0.0.1:0", "--dev-login", "true"])
        .args(["--admin-listen", "", "--log", "warn"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xindao binary");
    let mut child = Binary(child);
    let addr = crate::common::listening(&mut child.0);
    (child, addr)
}
