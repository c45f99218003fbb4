//! The server: binds a listener, serves the router until shutdown, then shuts down in order.
//!
//! Shutdown order: stop accepting, close every WebSocket with 1001 once its current request is answered,
//! wait for the connection tasks, then take the [`App`] apart (the store commits what it accepted and closes,
//! fan-out pushes the rest, then the bus leaves the cluster, so the last commits' pushes still go out).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::app::{App, Fanout};
use crate::config::Config;
use crate::error::{Error, Result};

/// How long shutdown waits for connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds with a deep accept backlog: tokio's `bind` asks for 128, and reconnect storms overflow that
/// (the kernel drops SYNs and clients wait a second to retry). The kernel caps it at `somaxconn`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Turns Nagle's algorithm off on an accepted socket. Without TCP_NODELAY, a push written while the previous one
/// is not yet acknowledged waits for the client's delayed ACK (up to 40 ms on Linux); writes are already
/// gathered per connection, so every write is one the client should get now.
fn set_nodelay(tcp: &mut TcpStream) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// A server bound to a listener, ready to run.
pub struct Server {
    app: Arc<App>,
    fanout: Fanout,
    listener: TcpListener,
}

impl Server {
    /// Binds `config.listen` and opens the store.
    pub async fn bind(config: Config) -> Result<Server> {
        let listener = listen(config.listen)
            .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", config.listen)))?;
        Server::with_listener(config, listener).await
    }

    /// Uses an already bound listener (tests and benchmarks bind port 0). Connects to the bus and the
    /// store (running migrations) before returning.
    pub async fn with_listener(config: Config, listener: TcpListener) -> Result<Server> {
        let (app, fanout) = App::open(config).await?;
        Ok(Server {
            app,
            fanout,
            listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.app.config.listen)
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Server {
            app,
            fanout,
            listener,
        } = self;
        let token = app.shutdown.clone();
        tokio::spawn({
            let token = token.clone();
            async move {
                shutdown.await;
                token.cancel();
            }
        });
        // With the peer's address, which the login rate limits count by.
        let router = super::router(app.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener.tap_io(set_nodelay), router)
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await;
        let result = served.map_err(|e| Error::Internal(format!("server: {e}")));
        token.cancel();
        tracing::info!(
            connections = app.hub.connection_count(),
            "shutting down: closing connections with 1001"
        );
        app.tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, app.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
        }
        app.close(fanout).await;
        tracing::info!("shutdown complete");
        result
    }
}
