//! The server: binds the public and admin listeners, serves them until shutdown, then shuts down in order.
//!
//! Startup fits the connection caps into the open-file limit (`fd_budget.rs`); each listener runs the accept
//! loop of `accept.rs`, the admin one (/metrics) with small caps of its own.
//!
//! Shutdown order: stop accepting, close every WebSocket with 1001 once its current request is answered,
//! wait for the connection tasks, then take the [`App`] apart (the store commits what it accepted and closes,
//! fan-out pushes the rest, then the bus leaves the cluster, so the last commits' pushes still go out).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

use super::accept::{self, Edge};
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

/// A server bound to a listener, ready to run.
pub struct Server {
    app: Arc<App>,
    fanout: Fanout,
    listener: TcpListener,
    admin: Option<TcpListener>,
}

impl Server {
    /// Binds `config.listen` and opens the store.
    pub async fn bind(config: Config) -> Result<Server> {
        let listener = listen(config.listen)
            .map_err(|e| Error::Unavailable(format!("cannot listen on {}: {e}", config.listen)))?;
        Server::with_listener(config, listener).await
    }

    /// Uses an already bound listener (tests and benchmarks bind port 0); binds `config.admin_listen`, fits
    /// the connection caps into the open-file limit, and connects to the bus and the store (running
    /// migrations) before returning.
    pub async fn with_listener(mut config: Config, listener: TcpListener) -> Result<Server> {
        super::fd_budget::apply(&mut config)?;
        let admin = match config.admin_listen.0 {
            Some(addr) => Some(listen(addr).map_err(|e| {
                Error::Unavailable(format!("cannot listen on {addr} (admin_listen): {e}"))
            })?),
            None => None,
        };
        let (app, fanout) = App::open(config).await?;
        Ok(Server {
            app,
            fanout,
            listener,
            admin,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.app.config.listen)
    }

    /// The admin listener's address (/metrics), if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .and_then(|admin| admin.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Server {
            app,
            fanout,
            listener,
            admin,
        } = self;
        let token = app.shutdown.clone();
        tokio::spawn({
            let token = token.clone();
            async move {
                shutdown.await;
                token.cancel();
            }
        });
        let config = &app.config;
        let mut edge = Edge::new(
            config.max_pending_connections,
            config.max_connections_per_ip,
            config.trusted_proxies.clone(),
            config.http_header_timeout(),
            config.max_header_bytes,
            Some(app.metrics.clone()),
        );
        edge.upload_timeout = Duration::from_secs(config.media.media_upload_timeout_secs);
        let edge = Arc::new(edge);
        let public = accept::serve(
            listener,
            super::router(app.clone()),
            edge,
            token.clone(),
            app.tracker.clone(),
        );
        let admin = admin.map(|admin| {
            let edge = Arc::new(Edge::new(
                super::ADMIN_MAX_CONNECTIONS,
                super::ADMIN_MAX_CONNECTIONS,
                Vec::new(),
                config.http_header_timeout(),
                config.max_header_bytes,
                None,
            ));
            let router = super::admin_router(app.clone());
            tokio::spawn(accept::serve(
                admin,
                router,
                edge,
                token.clone(),
                app.tracker.clone(),
            ))
        });
        public.await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
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
        Ok(())
    }
}
