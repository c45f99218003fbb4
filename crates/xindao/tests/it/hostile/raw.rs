//! Raw sockets for what a WebSocket or HTTP library will not send: bytes written by hand, answers read
//! as bytes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TIMEOUT;

/// Writes raw bytes on a new TCP connection and reads the answer: until the server closes, or until an
/// answer's head has arrived and nothing more comes for a moment (a 4xx to a well-formed request may keep
/// the connection alive).
pub async fn http_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything: a failed write is an answer too.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut chunk = [0u8; 4096];
    loop {
        let has_head = answer.windows(4).any(|w| w == b"\r\n\r\n");
        let wait = if has_head {
            Duration::from_millis(300)
        } else {
            deadline - tokio::time::Instant::now()
        };
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Err(_) if has_head => break,
            Err(_) => panic!("no answer and no close within the timeout"),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Upgrades a raw TCP connection to a WebSocket by hand and returns it just after the `101`.
pub async fn raw_upgrade(addr: SocketAddr, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "upgrade answer cut short");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads the server's (unmasked) frames until a close frame and returns its code; `None` if the socket
/// ends without one.
pub async fn raw_close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        let mut chunk = [0u8; 4096];
        loop {
            let mut at = 0;
            while bytes.len() >= at + 2 {
                let (opcode, len) = (bytes[at] & 0x0f, usize::from(bytes[at + 1] & 0x7f));
                assert!(len < 126, "only control frames expected here");
                if bytes.len() < at + 2 + len {
                    break;
                }
                if opcode == 0x8 {
                    return (len >= 2).then(|| u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
                }
                at += 2 + len;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("a close or the end of the socket within the timeout")
}

/// Skips the server's hello (a text frame of any length) and reads up to the close frame.
pub async fn raw_close_code_after_hello(stream: &mut TcpStream) -> Option<u16> {
    let mut head = [0u8; 2];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[0], 0x81, "the hello is a text frame");
    let len = match head[1] & 0x7f {
        126 => usize::from(stream.read_u16().await.unwrap()),
        127 => stream.read_u64().await.unwrap() as usize,
        len => usize::from(len),
    };
    let mut hello = vec![0u8; len];
    stream.read_exact(&mut hello).await.unwrap();
    raw_close_code(stream).await
}
