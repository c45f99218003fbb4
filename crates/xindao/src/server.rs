//! Assembles a server from its configuration and runs it until shutdown.
//!
//! Shutdown order: stop accepting, close every WebSocket with 1001 once its current request is answered,
//! wait for the connection tasks, then let the store commit what it accepted and close cleanly, then leave
//! the cluster bus (after the store, so the last commits' pushes still go out).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::bus::Bus;
use crate::chat::{commit_hook, Chat};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::mailbox::{set_nodelay, GatedListener, SocketInfo};
use crate::metrics::Metrics;
use crate::store::Store;

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

/// Shared state of a running server.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub hub: Arc<Hub>,
    pub chat: Chat,
    pub auth: Auth,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub connection_slots: Arc<Semaphore>,
}

/// A server bound to a listener, ready to run.
pub struct Server {
    app: Arc<App>,
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
        let config = Arc::new(config);
        let metrics = Metrics::default();
        let hub = Arc::new(Hub::new(metrics.clone()));
        let bus = crate::bus::open(&config, hub.clone()).await?;
        // Interim consumer of the store's committed batches: the old commit hook, per message.
        let (sink, mut committed) =
            tokio::sync::mpsc::channel::<Vec<crate::store::Committed>>(1024);
        let hook = commit_hook(bus.clone(), metrics.clone());
        tokio::spawn(async move {
            while let Some(batch) = committed.recv().await {
                for c in &batch {
                    hook(&c.message, c.origin);
                }
            }
        });
        let store = match crate::store::open(&config, sink).await {
            Ok(store) => store,
            Err(error) => {
                bus.shutdown().await;
                return Err(error);
            }
        };
        let auth = Auth::new(store.clone(), config.clone())?;
        let chat = Chat::new(store.clone(), bus.clone(), hub.clone(), config.clone());
        if config.wechat_enabled() {
            tracing::info!(
                "WeChat login enabled (code2Session at {})",
                config.wechat_api_base
            );
        }
        if config.dev_login_enabled() {
            tracing::warn!("DEVELOPMENT LOGIN IS ON: anyone can log in as any display name (POST /v1/login/dev)");
        }
        let app = Arc::new(App {
            connection_slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
            store,
            bus,
            hub,
            chat,
            auth,
            metrics,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        Ok(Server { app, listener })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.app.config.listen)
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let app = self.app;
        let token = app.shutdown.clone();
        let router = crate::api::router(app.clone());
        tokio::spawn({
            let token = token.clone();
            async move {
                shutdown.await;
                token.cancel();
            }
        });
        // With one worker thread, each request carries its connection's socket, and once the connection is a
        // WebSocket the hub writes pushes to it while it is idle: there is no other core to spread the writes
        // over, and waking each recipient's task only adds work. With several, the connections' tasks write
        // their pushes on every core and keep their sockets: the thread that delivers a message is the store's
        // commit thread, and writing from it cost more 1:1 throughput than the wake-ups saved (BENCHMARKS.md).
        let stopped = token.clone().cancelled_owned();
        let served = if tokio::runtime::Handle::current().metrics().num_workers() == 1 {
            let service = router.into_make_service_with_connect_info::<SocketInfo>();
            axum::serve(GatedListener(self.listener), service)
                .with_graceful_shutdown(stopped)
                .await
        } else {
            let listener = self.listener.tap_io(|tcp| set_nodelay(tcp));
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        };
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
        app.store.shutdown().await;
        app.bus.shutdown().await;
        tracing::info!("shutdown complete");
        result
    }
}
