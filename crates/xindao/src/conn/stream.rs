//! A connection's TCP socket, shared by its task (through tungstenite) and its push queue (direct writes).
//!
//! A push to a connection whose task is parked with nothing unsent is written to the socket by the pusher
//! itself (`hub::outbox`), without waking the task: waking it, polling it and framing the push again cost
//! about as much as the write (`docs/decisions/direct-writes.md`). Both ends hold the socket through an
//! `Arc`, so it stays open while either may write, and neither needs `&mut`: reads and writes go through
//! tokio's readiness API (`poll_*_ready`, then `try_*`), which takes `&self`. Only the task polls readiness
//! (tokio keeps one waker per direction); a direct write only tries, and a `WouldBlock` there clears the
//! write readiness the task then waits on, as its own would.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The socket, as tungstenite reads and writes it.
#[derive(Debug)]
pub struct SharedStream {
    tcp: Arc<TcpStream>,
    /// Whether tungstenite's last write left part of its buffer unwritten (the socket took less, or
    /// nothing): the socket may then hold part of a frame, and nothing may be written beside it.
    held_back: bool,
}

impl SharedStream {
    pub fn new(tcp: Arc<TcpStream>) -> SharedStream {
        SharedStream {
            tcp,
            held_back: false,
        }
    }

    /// Whether every write tungstenite started has ended on a frame boundary, as far as this stream knows.
    pub fn drained(&self) -> bool {
        !self.held_back
    }
}

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            match self.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.held_back = true;
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                written => {
                    self.held_back = !matches!(written, Ok(n) if n == buf.len());
                    return Poll::Ready(written);
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shutdown = socket2::SockRef::from(&*self.tcp).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match shutdown {
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}
