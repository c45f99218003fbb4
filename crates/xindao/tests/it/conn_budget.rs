//! What one connection may cost the server: the byte budget of what its client has not read (a client that
//! stops reading is closed as a slow consumer, 4009, and its memory freed at once) and the flood close (4008,
//! a sliding window of refused requests). The memory test runs the real binary to read its RSS in /proc.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::{connect_small_buffer, http, login, Client, Closed, TestServer};

/// The xindao binary, killed when dropped.
struct Binary {
    child: Child,
    addr: SocketAddr,
    /// The admin listener, which serves /metrics.
    admin: SocketAddr,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    fn start(data_dir: &std::path::Path, flags: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xindao"))
            .args(["serve", "--listen", "127.0.0.1:0", "--dev-login", "true"])
            .args([
                "--admin-listen",
                "127.0.0.1:0",
                "--max-connections-per-ip",
                "100000",
            ])
            .args(flags)
            .arg("--data-dir")
            .arg(data_dir)
            .env("XINDAO_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start xindao binary");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut address = |prefix: &str| -> SocketAddr {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .expect("the address line")
                .parse()
                .unwrap()
        };
        let addr = address("listening http://");
        let admin = address("admin http://");
        Binary { child, addr, admin }
    }

    /// The server process's resident memory, in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib / 1024.0
    }
}

/// How many connections were closed with `code`, from `/metrics`.
async fn closes(addr: SocketAddr, code: u16) -> u64 {
    let text = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("code=\"{code}\"");
    text.lines()
        .filter(|line| line.starts_with("xindao_connection_closes") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

const READERS_THAT_NEVER_READ: usize = 100;

/// The byte budget of the memory test: 1 MiB, and pages of ~0.5 MiB (the debug build is slow at encoding
/// 1 MiB pages; the default budget is 2 MiB for 1 MiB pages, the same ratio).
const BUDGET_MIB: f64 = 1.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_big_pages_are_dropped_at_once_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Binary::start(
        dir.path(),
        &[
            "--max-connections-per-user",
            "200",
            "--max-outstanding-bytes",
            "1048576",
            // Longer than the test: what closes them is the budget.
            "--write-timeout-ms",
            "60000",
            "--rate-per-sec",
            "1000",
            "--rate-burst",
            "1000",
        ],
    );
    let alice = login(server.addr, "alice").await;
    let bob = login(server.addr, "bob").await;
    let mut a = Client::connect(server.addr, &alice.token).await;
    let big = "字".repeat(4000); // 12 KB a message
    let mut conversation = 0;
    for i in 0..45 {
        let sent = a
            .ok(
                "send",
                json!({ "to_user": bob.user_id, "cmid": format!("m{i}"), "content": big }),
            )
            .await;
        conversation = sent["message"]["conversation_id"].as_i64().unwrap();
    }
    let page = json!({ "conversation_id": conversation, "limit": 45 });
    let mut normal = Client::connect(server.addr, &bob.token).await;
    let page_bytes = normal.call("history", page.clone()).await.to_string().len();
    assert!(page_bytes > 540_000, "a page of ~0.5 MiB: {page_bytes}");
    let before = server.rss_mib();

    // Each asks for twelve pages (6.5 MB) and reads nothing: once the kernel's buffers are full (its send
    // buffer may take up to 4 MiB, tcp_wmem), the pages left unsent outgrow the budget.
    let attack = async {
        let mut stuck = Vec::new();
        for _ in 0..READERS_THAT_NEVER_READ {
            let mut client = connect_small_buffer(server.addr, &bob.token).await;
            for _ in 0..12 {
                client.send_request("history", page.clone()).await;
            }
            stuck.push(client);
        }
        (stuck, Instant::now())
    };
    // Meanwhile a client that reads gets its pages, and the server's memory stays bounded.
    let mut peak = before;
    let mut pages = 0;
    let reader = async {
        loop {
            let reply = normal.ok("history", page.clone()).await;
            assert_eq!(reply["messages"].as_array().unwrap().len(), 45);
            pages += 1;
            peak = peak.max(server.rss_mib());
            let closed = closes(server.admin, 4009).await;
            if closed >= READERS_THAT_NEVER_READ as u64 {
                return Instant::now();
            }
            assert!(pages < 2000, "only {closed} closed 4009");
        }
    };
    let ((mut stuck, attack_sent), all_closed) = tokio::join!(attack, reader);
    let closed_after = all_closed.saturating_duration_since(attack_sent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_mib();
    eprintln!(
        "{READERS_THAT_NEVER_READ} non-readers of twelve {page_bytes}-byte pages: all closed 4009 {closed_after:?} \
         after the last one asked; {pages} pages read meanwhile; RSS {before:.0} MiB before, peak {peak:.0}, \
         {after:.0} after"
    );
    assert!(
        closed_after < Duration::from_secs(5),
        "closed {closed_after:?} after the last one asked"
    );
    // Each holds at most its budget until it is dropped.
    let bound = READERS_THAT_NEVER_READ as f64 * BUDGET_MIB;
    assert!(peak - before < bound, "peak {peak:.0} MiB from {before:.0}");
    // Their sockets are gone: each reads what the kernel had taken, then the end of the stream.
    for client in &mut stuck {
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = client.ws.next().await {}
        })
        .await;
        assert!(end.is_ok(), "the dropped socket ends");
    }
    assert_eq!(
        closes(server.admin, 4009).await,
        READERS_THAT_NEVER_READ as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_fits_the_budget_is_still_sent_to_a_slow_reader() {
    // One big page and nothing more: under budget, the server waits for the client to read it.
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    let big = "字".repeat(4000);
    let mut conversation = 0;
    for i in 0..100 {
        let sent = a
            .ok(
                "send",
                json!({ "to_user": bob.user_id, "cmid": format!("m{i}"), "content": big }),
            )
            .await;
        conversation = sent["message"]["conversation_id"].as_i64().unwrap();
    }
    let mut slow = connect_small_buffer(server.addr, &bob.token).await;
    let id = slow
        .send_request(
            "history",
            json!({ "conversation_id": conversation, "limit": 200 }),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reply: Value = slow.reply(id).await;
    assert_eq!(
        reply["ok"],
        true,
        "{}",
        reply.to_string().chars().take(300).collect::<String>()
    );
    assert!(reply["result"]["messages"].as_array().unwrap().len() > 50);
    slow.ok("ping", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twice_the_allowed_rate_is_closed_as_flooding_and_the_allowed_rate_never_is() {
    let server = TestServer::start(|c| {
        c.rate_per_sec = 10;
        c.rate_burst = 10;
    })
    .await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut steady = server.connect(&alice).await;
    let mut flooder = server.connect(&bob).await;
    let started = Instant::now();
    let flood = async {
        // 20 requests a second, reading every reply: half of them are refused.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut refused = 0;
        loop {
            tick.tick().await;
            let id = flooder.send_request("ping", json!({})).await;
            match tokio::time::timeout(Duration::from_secs(10), reply_or_close(&mut flooder, id))
                .await
                .expect("an answer or a close")
            {
                Some(reply) if reply["error"]["code"] == "rate_limited" => refused += 1,
                Some(reply) => assert_eq!(reply["ok"], true),
                None => return (refused, started.elapsed()),
            }
        }
    };
    let allowed = async {
        // 10 requests a second, the allowed rate, for 8 s: never refused, never closed.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..80 {
            tick.tick().await;
            assert_eq!(steady.call("ping", json!({})).await["ok"], true);
        }
    };
    let ((refused, closed_at), ()) = tokio::join!(flood, allowed);
    eprintln!("2x the rate: closed 4008 after {closed_at:?}, {refused} refusals");
    assert!(
        closed_at < Duration::from_secs(5),
        "closed after {closed_at:?}"
    );
    assert!(refused >= 10, "rate_burst refusals first: {refused}");
    assert_eq!(closes(server.admin, 4008).await, 1);
    steady.ok("ping", json!({})).await;
}

/// The reply to request `id`, or `None` once the server closed with 4008.
async fn reply_or_close(client: &mut Client, id: i64) -> Option<Value> {
    loop {
        match client.ws.next().await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["id"] == id {
                    return Some(frame);
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 4008);
                return None;
            }
            other => panic!("unexpected {other:?}: {:?}", Closed::NoCloseFrame),
        }
    }
}
