//! A connection's way out: its push queue and its socket, shared by the connection's task and the hub.
//!
//! Most pushes reach an idle connection: its task is parked and its socket can take the frame at once. On a
//! one-core node (the server shares sockets only there: `server.rs`) the hub then writes the frame to the socket
//! itself, encoded once per delivery, instead of queueing it and waking the task; in a broadcast the wake-up,
//! the task's poll and the re-arming of its queue and socket cost about as much CPU in user space as the write
//! does (BENCHMARKS.md). A mailbox without a socket queues every push, and the task writes it. A push is written inline only when nothing can
//! still be ahead of it: the task is not writing, no earlier push waits in the queue, the WebSocket library has
//! handed all its bytes to the kernel, no frame is half written and no close frame has gone out. Otherwise it
//! is queued as before, so a connection's pushes stay in order and a full queue still evicts a slow consumer.
//! Every byte written to the socket, the library's included, passes the same gate, so frames never interleave.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::ws::Utf8Bytes;
use axum::serve::IncomingStream;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the hub hands to a connection's task.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A push, already encoded.
    Frame(Utf8Bytes),
    /// A push was written inline only in part: finish it (the socket's flush writes the rest).
    Resume,
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Handed to the kernel (at least its first bytes; the task finishes a frame the socket took in part).
    Written,
    /// In the connection's queue.
    Queued,
    /// The queue is full: the connection is a slow consumer.
    Full,
    /// The connection's task is gone.
    Closed,
}

/// A connection's socket with the gate that orders every write to it.
pub struct GatedSocket {
    tcp: TcpStream,
    gate: Mutex<Gate>,
}

#[derive(Default)]
struct Gate {
    /// The socket carries WebSocket frames and the greeting is out: inline pushes may start.
    open: bool,
    /// A close frame is out or next: nothing may follow it.
    closed: bool,
    /// The task is writing: frames it gave the WebSocket library may not be on the socket yet.
    task_writing: bool,
    /// Pushes (and resume marks) queued for the task and not yet taken by it.
    queued: usize,
    /// Bytes at the start of the library's next write that it already offered (and that were scanned).
    library_pending: usize,
    /// The rest of a frame written inline that the socket took only in part; it goes before anything else.
    tail: Option<Bytes>,
}

impl Gate {
    fn free(&self) -> bool {
        self.open
            && !self.closed
            && !self.task_writing
            && self.queued == 0
            && self.library_pending == 0
            && self.tail.is_none()
    }
}

impl GatedSocket {
    fn new(tcp: TcpStream) -> GatedSocket {
        GatedSocket {
            tcp,
            gate: Mutex::new(Gate::default()),
        }
    }

    /// The greeting is written: pushes may go inline from now on.
    pub fn open(&self) {
        let mut gate = self.gate.lock();
        gate.open = true;
        gate.library_pending = 0;
    }

    /// The task starts writing: pushes queue behind it until [`GatedSocket::end_write`].
    pub fn begin_write(&self) {
        self.gate.lock().task_writing = true;
    }

    /// The task took a push (or resume mark) from its queue, between `begin_write` and `end_write`.
    pub fn took_queued(&self) {
        let mut gate = self.gate.lock();
        gate.queued = gate.queued.saturating_sub(1);
    }

    /// Everything the task wrote is on the socket.
    pub fn end_write(&self) {
        self.gate.lock().task_writing = false;
    }

    /// The connection is closing: no push may go inline any more.
    pub fn close(&self) {
        self.gate.lock().closed = true;
    }

    /// Writes the rest of a frame the socket took in part, if there is one.
    fn write_tail(
        &self,
        gate: &mut MutexGuard<'_, Gate>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while let Some(tail) = gate.tail.as_mut() {
            match self.tcp.try_write(tail) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) if n == tail.len() => gate.tail = None,
                Ok(n) => tail.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A connection's queue and, for a WebSocket on a TCP socket, its [`GatedSocket`].
pub struct Mailbox {
    tx: mpsc::Sender<Outbound>,
    socket: Option<Arc<GatedSocket>>,
}

impl Mailbox {
    pub fn new(tx: mpsc::Sender<Outbound>, socket: Option<Arc<GatedSocket>>) -> Mailbox {
        Mailbox { tx, socket }
    }

    /// Delivers a push without waiting: inline when the socket is free, else through the queue.
    /// `encoded` caches the frame's WebSocket encoding across the recipients of one delivery.
    pub fn push(&self, frame: &Utf8Bytes, encoded: &mut Option<Bytes>) -> Pushed {
        let Some(socket) = &self.socket else {
            return queue(&self.tx, Outbound::Frame(frame.clone()));
        };
        let mut gate = socket.gate.lock();
        if gate.free() {
            let bytes = encoded.get_or_insert_with(|| text_frame(frame.as_bytes()));
            match socket.tcp.try_write(bytes) {
                Ok(n) if n == bytes.len() => return Pushed::Written,
                Ok(n) if n > 0 => {
                    gate.tail = Some(bytes.slice(n..));
                    return match queue_counted(&mut gate, &self.tx, Outbound::Resume) {
                        Pushed::Queued => Pushed::Written,
                        other => other,
                    };
                }
                // Would block, or an error the task meets on its next read or write: queue it.
                _ => {}
            }
        }
        queue_counted(&mut gate, &self.tx, Outbound::Frame(frame.clone()))
    }

    /// Queues a message for the task (a close), behind every push already delivered.
    pub fn send(&self, outbound: Outbound) -> Pushed {
        match &self.socket {
            Some(socket) => queue_counted(&mut socket.gate.lock(), &self.tx, outbound),
            None => queue(&self.tx, outbound),
        }
    }
}

fn queue(tx: &mpsc::Sender<Outbound>, outbound: Outbound) -> Pushed {
    match tx.try_send(outbound) {
        Ok(()) => Pushed::Queued,
        Err(mpsc::error::TrySendError::Full(_)) => Pushed::Full,
        Err(mpsc::error::TrySendError::Closed(_)) => Pushed::Closed,
    }
}

/// Queues with the gate held, so that the queue's order is the gate's order.
fn queue_counted(gate: &mut Gate, tx: &mpsc::Sender<Outbound>, outbound: Outbound) -> Pushed {
    let pushed = queue(tx, outbound);
    if pushed == Pushed::Queued {
        gate.queued += 1;
    }
    pushed
}

/// A final, unmasked WebSocket text frame (RFC 6455 §5.2), as a server sends it.
pub fn text_frame(payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(0x81);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(short);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.extend_from_slice(payload);
    out.freeze()
}

/// Whether `bytes`, which begin at a frame boundary, hold a close frame (opcode 8).
fn has_close_frame(mut bytes: &[u8]) -> bool {
    while let [first, second, rest @ ..] = bytes {
        if first & 0x0f == 0x8 {
            return true;
        }
        let (extended, len) = match (second & 0x7f, rest) {
            (126, [a, b, ..]) => (2, u16::from_be_bytes([*a, *b]) as usize),
            (127, [a, b, c, d, e, f, g, h, ..]) => (
                8,
                u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]) as usize,
            ),
            (126 | 127, _) => return false,
            (n, _) => (0, n as usize),
        };
        let mask: usize = if second & 0x80 != 0 { 4 } else { 0 };
        let skip = (2 + extended + mask).saturating_add(len);
        if skip >= bytes.len() {
            return false;
        }
        bytes = &bytes[skip..];
    }
    false
}

/// The I/O type the HTTP server reads and writes: the accepted socket, shared with the hub through
/// [`SocketInfo`].
pub struct SharedSocket(Arc<GatedSocket>);

impl AsyncRead for SharedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            match tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let socket = &*self.0;
        let mut gate = socket.gate.lock();
        ready!(socket.write_tail(&mut gate, cx))?;
        // The library offers its whole unwritten buffer each time: what it offered before comes first and was
        // scanned then; the rest starts at a frame boundary.
        if gate.open && has_close_frame(buf.get(gate.library_pending..).unwrap_or_default()) {
            gate.closed = true;
        }
        loop {
            match socket.tcp.try_write(buf) {
                Ok(n) => {
                    if gate.open {
                        gate.library_pending = buf.len() - n;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if gate.open {
                        gate.library_pending = buf.len();
                    }
                    ready!(socket.tcp.poll_write_ready(cx))?
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = &*self.0;
        let mut gate = socket.gate.lock();
        socket.write_tail(&mut gate, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = &*self.0;
        let mut gate = socket.gate.lock();
        ready!(socket.write_tail(&mut gate, cx))?;
        Poll::Ready(socket2::SockRef::from(&socket.tcp).shutdown(std::net::Shutdown::Write))
    }
}

/// Turns Nagle's algorithm off on an accepted socket. Without TCP_NODELAY, a push written while the previous one
/// is not yet acknowledged waits for the client's delayed ACK (up to 40 ms on Linux); writes are already
/// gathered per connection, so every write is one the client should get now.
pub fn set_nodelay(tcp: &TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// The accepting socket: sets TCP_NODELAY on each connection and wraps it in a [`SharedSocket`].
pub struct GatedListener(pub TcpListener);

impl axum::serve::Listener for GatedListener {
    type Io = SharedSocket;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SharedSocket, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((tcp, addr)) => {
                    set_nodelay(&tcp);
                    return (SharedSocket(Arc::new(GatedSocket::new(tcp))), addr);
                }
                Err(error) => {
                    // Out of file descriptors, mostly: wait for some to close rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Connection info that hands each request the connection's [`GatedSocket`] (the WebSocket upgrade keeps it).
#[derive(Clone)]
pub struct SocketInfo(pub Arc<GatedSocket>);

impl Connected<IncomingStream<'_, GatedListener>> for SocketInfo {
    fn connect_info(stream: IncomingStream<'_, GatedListener>) -> SocketInfo {
        SocketInfo(stream.io().0.clone())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connected loopback pair: the server's end, gated, and the client's end.
    async fn pair() -> (Arc<GatedSocket>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Arc::new(GatedSocket::new(server)), client)
    }

    fn text(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_string())
    }

    #[tokio::test]
    async fn a_push_goes_inline_only_when_nothing_can_be_ahead_of_it() {
        let (gated, mut client) = pair().await;
        let (tx, mut rx) = mpsc::channel(16);
        let mailbox = Mailbox::new(tx, Some(gated.clone()));
        // Before the greeting is out: queued.
        assert_eq!(mailbox.push(&text("early"), &mut None), Pushed::Queued);
        gated.begin_write();
        assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(_))));
        gated.took_queued();
        gated.end_write();
        gated.open();
        assert_eq!(mailbox.push(&text("a"), &mut None), Pushed::Written);
        // While the task writes, and then while an earlier push waits in the queue: queued behind.
        gated.begin_write();
        assert_eq!(mailbox.push(&text("b"), &mut None), Pushed::Queued);
        gated.end_write();
        assert_eq!(
            mailbox.push(&text("c"), &mut None),
            Pushed::Queued,
            "b is still queued"
        );
        gated.begin_write();
        for _ in 0..2 {
            assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(_))));
            gated.took_queued();
        }
        gated.end_write();
        assert_eq!(mailbox.push(&text("d"), &mut None), Pushed::Written);
        // The library's writes pass the same gate; once a close frame is among them, nothing follows.
        let mut socket = SharedSocket(gated.clone());
        let library = [&text_frame(b"r")[..], &[0x88, 0]].concat();
        socket.write_all(&library).await.unwrap();
        assert_eq!(
            mailbox.push(&text("e"), &mut None),
            Pushed::Queued,
            "nothing after a close frame"
        );
        let expected = [&text_frame(b"a")[..], &text_frame(b"d")[..], &library].concat();
        let mut got = vec![0; expected.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn a_frame_the_socket_takes_in_part_is_finished_before_anything_else() {
        let (gated, mut client) = pair().await;
        let (tx, mut rx) = mpsc::channel(16);
        let mailbox = Mailbox::new(tx, Some(gated.clone()));
        gated.open();
        // More than the two ends' socket buffers hold while the client does not read.
        let big = Utf8Bytes::from("x".repeat(16 << 20));
        assert_eq!(mailbox.push(&big, &mut None), Pushed::Written);
        assert!(
            matches!(rx.try_recv(), Ok(Outbound::Resume)),
            "the task is told to finish it"
        );
        assert_eq!(mailbox.push(&text("next"), &mut None), Pushed::Queued);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        // The task's next write goes out after the rest of the big frame.
        let mut socket = SharedSocket(gated.clone());
        socket.write_all(&text_frame(b"next")).await.unwrap();
        socket.shutdown().await.unwrap();
        let all = reader.await.unwrap();
        let expected = [&text_frame(big.as_bytes())[..], &text_frame(b"next")[..]].concat();
        assert_eq!(all.len(), expected.len());
        assert!(all == expected, "the frames interleaved");
    }

    #[test]
    fn text_frames_use_the_shortest_length() {
        assert_eq!(&text_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let medium = text_frame(&[b'a'; 300]);
        assert_eq!(&medium[..4], &[0x81, 126, 1, 44]);
        assert_eq!(medium.len(), 304);
        let long = text_frame(&vec![b'a'; 70_000]);
        assert_eq!(&long[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(long.len(), 70_010);
    }

    #[test]
    fn a_close_frame_is_found_behind_other_frames() {
        let mut bytes = text_frame(&[b'a'; 300]).to_vec();
        bytes.extend_from_slice(&text_frame(b"x"));
        assert!(!has_close_frame(&bytes));
        bytes.extend_from_slice(&[0x88, 2, 0x03, 0xe8]);
        assert!(has_close_frame(&bytes));
        // A pong is not a close.
        assert!(!has_close_frame(&[0x8a, 0]));
        // A cut header is not read past its end.
        assert!(!has_close_frame(&[0x81, 126, 1]));
    }
}
