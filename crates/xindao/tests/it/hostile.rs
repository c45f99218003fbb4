//! A hostile client against a real server (issue 16): each attack on the base protocol gets its documented
//! outcome (an error reply, an HTTP refusal or a close code), and afterwards the server still serves a
//! normal client: a fresh login, a WebSocket, a `ping`, `/healthz`.
//!
//! Where a frame must be malformed below what a WebSocket library will send, the test writes the bytes on
//! a raw TCP socket. The limits built in issue 16 (HTTP timeouts, per-IP caps, byte budgets, ...) are tested
//! in their own modules; this one covers the protocol's hostile inputs.

use crate::common;

mod raw;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use raw::{http_exchange, raw_close_code_after_hello, raw_upgrade};

/// The server still serves: `/healthz` answers, and a new user logs in, connects and pings.
async fn assert_serves(server: &TestServer) {
    let health = http_exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "healthz: {health}");
    let name = format!("normal{}", next_user_number());
    let login = server.login(&name).await;
    let mut client = server.connect(&login).await;
    assert_eq!(client.call("ping", json!({})).await["ok"], true);
}

fn next_user_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn raw_reply(client: &mut Client, message: Message) -> Value {
    client.send_raw(message).await;
    client.next_frame().await.expect("a reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_binary_frames_get_error_replies() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let cases: [(&str, Value, &str); 10] = [
        ("", Value::Null, "bad_request"),
        ("{", Value::Null, "bad_request"),
        (r#"{"id":1,"op":"ping""#, Value::Null, "bad_request"),
        ("\u{0}\u{1}\u{2}", Value::Null, "bad_request"),
        (r#"{"id":1,"id":2,"op":"ping"}"#, Value::Null, "bad_request"),
        (r#"{"id":"\ud800","op":"ping"}"#, Value::Null, "bad_request"),
        (
            r#"{"id":18446744073709551616,"op":"ping"}"#,
            Value::Null,
            "bad_request",
        ),
        (r#"{"id":"k","op":null}"#, json!("k"), "bad_request"),
        (
            r#"{"id":-3,"op":"ping","args":"x"}"#,
            json!(-3),
            "invalid_args",
        ),
        (
            r#"{"id":4,"op":"send","args":{"cmid":"c","content":{"x":1},"zz":[]}}"#,
            json!(4),
            "invalid_args",
        ),
    ];
    for (frame, id, code) in cases {
        let reply = raw_reply(&mut a, Message::text(frame)).await;
        assert_eq!(
            (&reply["id"], reply["error"]["code"].as_str()),
            (&id, Some(code)),
            "{frame}"
        );
    }
    let long_op = format!(r#"{{"id":5,"op":"{}"}}"#, "o".repeat(60_000));
    let reply = raw_reply(&mut a, Message::text(long_op)).await;
    assert_eq!(reply["error"]["code"], "unknown_op");
    assert!(
        reply.to_string().len() < 300,
        "the unknown name is echoed truncated"
    );

    // Binary frames are read as UTF-8 JSON: the same answers, and invalid UTF-8 is an error reply.
    let reply = raw_reply(&mut a, Message::binary(vec![0xc3, 0x28, 0xff])).await;
    assert_eq!(reply["error"]["code"], "bad_request");
    let reply = raw_reply(&mut a, Message::binary(b"[1,2]".to_vec())).await;
    assert_eq!(reply["error"]["code"], "bad_request");
    let reply = raw_reply(&mut a, Message::binary(br#"{"id":6,"op":"ping"}"#.to_vec())).await;
    assert_eq!((&reply["id"], &reply["ok"]), (&json!(6), &json!(true)));

    assert_eq!(
        a.call("ping", json!({})).await["ok"],
        true,
        "the connection stays usable"
    );
    assert_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bombs_are_answered_at_once() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    let depth = 30_000; // under the 64 KiB frame limit
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let started = std::time::Instant::now();
    let unclosed = raw_reply(&mut a, Message::text("[".repeat(60_000))).await;
    assert_eq!(unclosed["error"]["code"], "bad_request");
    let frame = format!(
        r#"{{"id":1,"op":"send","args":{{"to_user":1,"cmid":"c","kind":"custom","content":{deep}}}}}"#
    );
    let in_content = raw_reply(&mut a, Message::text(frame)).await;
    assert_eq!(
        (&in_content["id"], &in_content["error"]["code"]),
        (&json!(1), &json!("invalid_args"))
    );
    let frame = format!(r#"{{"id":{deep},"op":"ping"}}"#);
    assert_eq!(
        raw_reply(&mut a, Message::text(frame)).await["error"]["code"],
        "bad_request"
    );
    // Skipped fields are skipped without recursion, however deep or wide.
    let half = format!("{}{}", "[".repeat(depth / 2), "]".repeat(depth / 2));
    let frame = format!(r#"{{"id":2,"op":"ping","x":{half},"args":{{"y":{half}}}}}"#);
    assert_eq!(raw_reply(&mut a, Message::text(frame)).await["ok"], true);
    let wide = vec!["0"; 30_000].join(",");
    let frame = format!(r#"{{"id":3,"op":"ping","args":{{"y":[{wide}]}}}}"#);
    assert_eq!(raw_reply(&mut a, Message::text(frame)).await["ok"], true);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_fragmented_frames_close_with_1009() {
    let server = TestServer::start(|c| c.max_frame_bytes = 4096).await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    a.send_raw(Message::binary(vec![b' '; 5000])).await;
    assert_eq!(a.closed().await, Closed::Code(1009));
    // Fragments each under the limit that add up to a message over it.
    let mut b = server.connect(&alice).await;
    let first = Frame::message(vec![b' '; 3000], OpCode::Data(Data::Text), false);
    let rest = Frame::message(vec![b' '; 3000], OpCode::Data(Data::Continue), true);
    b.send_raw(Message::Frame(first)).await;
    b.send_raw(Message::Frame(rest)).await;
    assert_eq!(b.closed().await, Closed::Code(1009));
    assert_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_break_the_websocket_protocol_close_with_1002() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let cases: [&[u8]; 3] = [
        &[0x81, 0x02, b'h', b'i'], // a client frame without a mask
        &[0x83, 0x80, 1, 2, 3, 4], // a reserved opcode
        &[0xc1, 0x80, 1, 2, 3, 4], // RSV1 set with no extension agreed
    ];
    for bytes in cases {
        let mut stream = raw_upgrade(server.addr, &alice.token).await;
        stream.write_all(bytes).await.unwrap();
        // The hello comes first (a text frame, skipped), then the close.
        assert_eq!(
            raw_close_code_after_hello(&mut stream).await,
            Some(1002),
            "{bytes:x?}"
        );
    }
    assert_serves(&server).await;
}

/// A client may send its first frame in the same write as the upgrade request: the server reads it from what
/// the HTTP layer had already buffered (here a frame without a mask, answered with 1002; were it dropped, the
/// socket would stay silent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_with_the_upgrade_request_is_read() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /v1/ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        alice.token
    );
    let pipelined = [request.as_bytes(), &[0x81, 0x02, b'h', b'i']].concat();
    stream.write_all(&pipelined).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(TIMEOUT, stream.read_u8())
            .await
            .unwrap()
            .unwrap();
        head.push(byte);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(raw_close_code_after_hello(&mut stream).await, Some(1002));
    assert_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_is_refused_then_closed_with_4008() {
    let server = TestServer::start(|c| {
        c.rate_per_sec = 5;
        c.rate_burst = 5;
    })
    .await;
    let alice = server.login("alice").await;
    let mut a = server.connect(&alice).await;
    for i in 0..200 {
        a.send_request("ping", json!({ "n": i })).await;
    }
    assert_eq!(a.closed().await, Closed::Code(4008));
    // The flooder's connection is gone; its user and everyone else are served.
    let mut again = server.connect(&alice).await;
    assert_eq!(again.call("ping", json!({})).await["ok"], true);
    assert_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_is_closed_with_4009() {
    let server = TestServer::start(|c| {
        c.outbound_queue = 4;
        c.write_timeout_ms = 60_000;
    })
    .await;
    let alice = server.login("alice").await;
    let bob = server.login("bob").await;
    let mut a = server.connect(&alice).await;
    let mut slow = connect_small_buffer(server.addr, &bob.token).await; // never reads until the end
    let big = "字".repeat(4000); // 12 KB per push
    let mut dropped = false;
    for batch in 0..40 {
        for i in 0..25 {
            let cmid = format!("b{batch}-{i}");
            a.send_request(
                "send",
                json!({ "to_user": bob.user_id, "cmid": cmid, "content": big }),
            )
            .await;
        }
        while a
            .next_frame()
            .await
            .is_some_and(|f| f["id"] != a_last_id(batch))
        {}
        dropped = metric(server.admin, "xindao_slow_consumers_total")
            .await
            .is_some_and(|count| count != "0");
        if dropped {
            break;
        }
    }
    assert!(dropped, "the slow reader was dropped");
    assert_eq!(slow.closed().await, Closed::Code(4009));
    assert_eq!(
        a.call("ping", json!({})).await["ok"],
        true,
        "the sender was never held up"
    );
    assert_serves(&server).await;
}

/// The request id of the last `send` of a batch of 25 (the client numbers requests from 1).
fn a_last_id(batch: i64) -> i64 {
    (batch + 1) * 25
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_do_not_stop_others_and_are_reaped_after_upgrade() {
    let server = TestServer::start(|c| {
        c.heartbeat_ms = 200;
        c.idle_timeout_ms = 600;
    })
    .await;
    let alice = server.login("alice").await;
    // Before the upgrade: sockets that connect and say nothing, or stop mid-request. (How long they are
    // held is the HTTP edge's limit, tested with it.)
    let mut parked = Vec::new();
    for i in 0..32 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 1 {
            stream
                .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nX-Pad: ")
                .await
                .unwrap();
        }
        parked.push(stream);
    }
    assert_serves(&server).await;
    // After the upgrade: a peer that never reads nor answers pings is closed with 4010, then dropped.
    let mut silent = raw_upgrade(server.addr, &alice.token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(raw_close_code_after_hello(&mut silent).await, Some(4010));
    let mut rest = Vec::new();
    let end = tokio::time::timeout(TIMEOUT, silent.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the server dropped the silent socket");
    assert_serves(&server).await;
    drop(parked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_of_one_user_are_refused_with_429() {
    let server = TestServer::start(|c| c.max_connections_per_user = 3).await;
    let alice = server.login("alice").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.connect(&alice).await);
    }
    for _ in 0..20 {
        let url = format!("ws://{}/v1/ws?token={}", server.addr, alice.token);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 429)
            }
            other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
        }
    }
    assert_serves(&server).await;
    // A slot freed is a slot usable again.
    let mut closing = open.pop().unwrap();
    closing.ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let url = format!("ws://{}/v1/ws?token={}", server.addr, alice.token);
        if tokio_tungstenite::connect_async(url).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed slot was never reusable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_http_is_refused_with_a_4xx() {
    let server = TestServer::start(|_| {}).await;
    let alice = server.login("alice").await;
    let upgrade = |version: &str, key: &str| {
        format!(
            "GET /v1/ws?token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}\
             Sec-WebSocket-Version: {version}\r\n\r\n",
            alice.token
        )
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ((0..=255u8).rev().cycle().take(4096).collect(), "400"),
        (b"GARBAGE\r\n\r\n".to_vec(), "400"),
        (b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "400"),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(), "400"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(), "400"),
        // The whole request head (line and headers) is bounded by max_header_bytes: 431.
        (format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(), "431"),
        (b"POST /v1/login/dev HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), "400"),
        (b"POST /v1/login/dev HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec(), "400"),
        (b"POST /v1/login/dev HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(), "400"),
        (body_of(70_000), "413"),
        (upgrade("13", "").into_bytes(), "400"),
        (upgrade("99", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n").into_bytes(), "400"),
    ];
    for (request, status) in cases {
        let answer = http_exchange(server.addr, &request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?} -> {answer:?}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
    }
    assert_serves(&server).await;
}

/// A dev login whose JSON body is `len` bytes long.
fn body_of(len: usize) -> Vec<u8> {
    let body = format!(r#"{{"display_name":"x","pad":"{}"}}"#, "p".repeat(len - 31));
    let head = format!(
        "POST /v1/login/dev HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}
