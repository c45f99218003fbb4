//! The shards' direct writes (`direct.rs`, `outbox.rs`) on real loopback sockets.
use std::io::Read;
use std::sync::Arc;

use tokio::sync::mpsc::error::TryRecvError;

use super::direct::DirectWrites;
use crate::hub::encoded::Encoded;
use crate::hub::{outbox, Outbound, Pushed, Queue};

fn push(text: &str) -> Arc<Encoded> {
    Arc::new(Encoded::new(text.to_owned().into()))
}

/// A connected loopback pair: the server's end, known writable (as an upgraded socket is once it has
/// sent its 101), and the client's end as a std socket.
async fn tcp_pair() -> (Arc<tokio::net::TcpStream>, std::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::task::spawn_blocking(move || std::net::TcpStream::connect(addr));
    let (server, _) = listener.accept().await.unwrap();
    server.writable().await.unwrap();
    let client = client.await.unwrap().unwrap();
    client.set_nonblocking(true).unwrap();
    (Arc::new(server), client)
}

/// A queue written by `shard` through `socket`.
fn queue_on(
    socket: &Arc<tokio::net::TcpStream>,
    shard: &Arc<DirectWrites>,
) -> (crate::hub::Outbox, Queue) {
    let (outbox, queue) = outbox(1024, 1 << 30);
    (outbox, queue.with_socket(socket.clone(), shard.clone()))
}

/// Whatever the client can read now.
fn read_now(client: &mut std::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// The texts of the whole frames in `bytes`, and how many bytes of an unfinished frame are left over.
fn frames(mut bytes: &[u8]) -> (Vec<String>, usize) {
    let mut texts = Vec::new();
    loop {
        let (len, head) = match bytes {
            [0x81, 126, a, b, ..] => (u16::from_be_bytes([*a, *b]) as usize, 4),
            [0x81, short, ..] if *short < 126 => (*short as usize, 2),
            _ => return (texts, bytes.len()),
        };
        if bytes.len() < head + len {
            return (texts, bytes.len());
        }
        texts.push(String::from_utf8(bytes[head..head + len].to_vec()).unwrap());
        bytes = &bytes[head + len..];
    }
}

fn text(outbound: Result<Outbound, TryRecvError>) -> String {
    match outbound {
        Ok(Outbound::Frame(push) | Outbound::Timed(push, _)) => push.text.to_string(),
        other => panic!("expected a push, got {other:?}"),
    }
}

/// A push to a parked connection is written by its shard, framed, and leaves nothing queued or counted;
/// once the connection runs again, pushes are queued for it.
#[tokio::test]
async fn the_shard_writes_to_a_parked_connection_a_running_one_writes_itself() {
    let (socket, mut client) = tcp_pair().await;
    let shard = Arc::new(DirectWrites::default());
    let (outbox, mut queue) = queue_on(&socket, &shard);
    assert_eq!(outbox.push(&push("before parking")), Pushed::Queued);
    assert_eq!(text(queue.try_recv()), "before parking");
    // What the task took stays counted until it has written it; the shard's writes leave nothing counted.
    let counted = queue.budget.outstanding();
    queue.park();
    assert_eq!(outbox.push(&push("one")), Pushed::Queued);
    assert_eq!(outbox.push(&push("two")), Pushed::Queued);
    shard.write_listed().await;
    assert!(matches!(queue.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(queue.budget.outstanding(), counted);
    assert_eq!(
        frames(&read_now(&mut client)),
        (vec!["one".into(), "two".into()], 0)
    );
    queue.busy();
    assert_eq!(outbox.push(&push("running")), Pushed::Queued);
    assert_eq!(text(queue.try_recv()), "running");
    assert!(read_now(&mut client).is_empty());
}

/// A connection that woke up before its shard got to it writes its queue itself.
#[tokio::test]
async fn a_connection_that_woke_keeps_its_queue() {
    let (socket, mut client) = tcp_pair().await;
    let shard = Arc::new(DirectWrites::default());
    let (outbox, mut queue) = queue_on(&socket, &shard);
    queue.park();
    assert_eq!(outbox.push(&push("listed")), Pushed::Queued);
    queue.busy();
    shard.write_listed().await;
    assert_eq!(text(queue.try_recv()), "listed");
    assert!(read_now(&mut client).is_empty());
}

/// What is not a push (a close) stays for the connection, which is unparked, with the pushes behind it.
#[tokio::test]
async fn a_close_is_left_to_the_connection() {
    let (socket, mut client) = tcp_pair().await;
    let shard = Arc::new(DirectWrites::default());
    let (outbox, mut queue) = queue_on(&socket, &shard);
    queue.park();
    assert_eq!(outbox.send(Outbound::Close(4003, "banned")), Pushed::Queued);
    assert_eq!(outbox.push(&push("after the close")), Pushed::Queued);
    shard.write_listed().await;
    assert!(matches!(queue.try_recv(), Ok(Outbound::Close(4003, _))));
    assert_eq!(text(queue.try_recv()), "after the close");
    assert!(read_now(&mut client).is_empty());
}

/// When the socket takes part of a frame, its rest is queued first and whole pushes after it (when it
/// takes nothing, the push stays queued whole); written in that order (as the connection does), the
/// client gets every frame whole, in order.
#[tokio::test]
async fn the_rest_of_a_partly_written_frame_goes_first() {
    let (socket, mut client) = tcp_pair().await;
    socket2::SockRef::from(&*socket)
        .set_send_buffer_size(4096)
        .unwrap();
    let shard = Arc::new(DirectWrites::default());
    let (outbox, mut queue) = queue_on(&socket, &shard);
    let big = "y".repeat(60_000);
    let mut written = 0;
    let rest = loop {
        queue.park();
        assert_eq!(outbox.push(&push(&big)), Pushed::Queued);
        shard.write_listed().await;
        // What a closing connection takes before its close frame (`Conn::write_leading_raw`).
        if let Some(rest) = queue.take_leading_raw() {
            assert_eq!(queue.budget.outstanding(), rest.len());
            assert!(queue.take_leading_raw().is_none());
            break rest;
        }
        match queue.try_recv() {
            Err(TryRecvError::Empty) => written += 1,
            Ok(Outbound::Frame(push) | Outbound::Timed(push, _)) => {
                assert_eq!(queue.budget.outstanding(), push.text.len());
                break push.framed.clone();
            }
            other => panic!("expected the rest of a frame, got {other:?}"),
        }
        assert!(written < 10_000, "the socket never filled");
    };
    assert_eq!(outbox.push(&push("after")), Pushed::Queued);
    let after = match queue.try_recv() {
        Ok(Outbound::Frame(push) | Outbound::Timed(push, _)) => push,
        other => panic!("expected a push, got {other:?}"),
    };
    let mut unsent = [&rest[..], &after.framed[..]].concat();
    let mut got = Vec::new();
    while !unsent.is_empty() {
        got.extend(read_now(&mut client));
        socket.writable().await.unwrap();
        if let Ok(n) = socket.try_write(&unsent) {
            unsent.drain(..n);
        }
    }
    while frames(&got).0.len() < written + 2 {
        got.extend(read_now(&mut client));
        tokio::task::yield_now().await;
    }
    let (texts, left_over) = frames(&got);
    assert_eq!(left_over, 0);
    assert_eq!(texts.len(), written + 2);
    assert!(texts[..=written].iter().all(|t| *t == big));
    assert_eq!(texts[written + 1], "after");
}

/// Once the connection's end is gone, its socket is let go at once, and pushes are refused.
#[tokio::test]
async fn a_dropped_queue_lets_its_socket_go() {
    let (socket, _client) = tcp_pair().await;
    let shard = Arc::new(DirectWrites::default());
    let (outbox, queue) = queue_on(&socket, &shard);
    queue.park();
    assert_eq!(Arc::strong_count(&socket), 2);
    drop(queue);
    assert_eq!(Arc::strong_count(&socket), 1);
    assert_eq!(outbox.push(&push("late")), Pushed::Closed);
}
