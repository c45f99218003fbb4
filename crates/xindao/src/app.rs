//! The shared state of a running server, how it is put together, and the order it is taken apart in.
//!
//! Assembly: the hub, then the bus (which delivers into the hub), then the store with the sink of the fan-out
//! channel, then the fan-out task (which publishes the store's commits on the bus), then auth and chat on top.
//! Teardown, once the connections have drained (`http::Server::run`): the store commits what it
//! accepted and closes, which closes the fan-out channel; fan-out pushes what is left in it; then the bus
//! leaves the cluster, so the last commits' pushes still reach the other nodes.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Auth};
use crate::bus::Bus;
use crate::chat::order::OrderedBus;
use crate::chat::{fanout, Chat};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::peer::PerIp;
use crate::shards::Shards;
use crate::store::Store;

/// Shared state of a running server: what every request and connection task reaches.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub hub: Arc<Hub>,
    pub chat: Chat,
    pub auth: Arc<Auth>,
    /// Media storage, URL signing and upload limits.
    pub media: Arc<crate::media::MediaService>,
    pub metrics: Metrics,
    /// The server API's rate limits and system account (`/v1/server/...`).
    pub server_api: crate::auth::server_api::ServerApi,
    /// Cancelled when the server starts shutting down: connections close with 1001.
    pub shutdown: CancellationToken,
    /// The connections, which shutdown waits for.
    pub tracker: TaskTracker,
    /// The tasks that run the connections and own their sockets, one per runtime worker.
    pub shards: Shards,
    /// Open WebSockets: `max_connections` of them.
    pub connection_slots: Arc<Semaphore>,
    /// Open WebSockets per client address: `max_connections_per_ip` each.
    pub sockets_per_ip: PerIp,
}

/// The fan-out task, which [`App::close`] waits for.
pub struct Fanout(JoinHandle<()>);

impl App {
    /// Connects to the bus and opens the store (running migrations), then starts fan-out between them.
    pub async fn open(config: Config) -> Result<(Arc<App>, Fanout)> {
        // A configuration error, shown as is (`InvalidArgs` displays its message alone).
        config
            .check_login_exposure()
            .map_err(|e| Error::InvalidArgs(e.to_string()))?;
        let mut config = config;
        crate::media::sign::resolve_secret(&mut config)?;
        let config = Arc::new(config);
        let media = Arc::new(crate::media::MediaService::open(config.clone())?);
        crate::obs::hops::set_detailed(config.detailed_metrics);
        let metrics = Metrics::default();
        metrics
            .client_rtt
            .set_max_networks(config.client_rtt_max_prefixes);
        let hub = Arc::new(Hub::new(metrics.clone()));
        let bus = crate::bus::open(&config, hub.clone()).await?;
        let (sink, commits, order) = fanout::channel();
        let outbox = crate::store::Outbox::from_config(&config);
        let store = match crate::store::open(&config, sink, outbox.clone()).await {
            Ok(store) => store,
            Err(error) => {
                bus.shutdown().await;
                return Err(error);
            }
        };
        let offline = crate::webhooks::offline::OfflineNotices::spawn(
            &config,
            &outbox,
            store.clone(),
            bus.clone(),
            metrics.webhooks.offline_skipped.clone(),
            metrics.notify.clone(),
        );
        let fanout = Fanout(fanout::spawn(
            commits,
            bus.clone(),
            order.clone(),
            metrics.clone(),
            offline,
        ));
        let auth = Arc::new(Auth::new(store.clone(), config.clone())?);
        let before_send = crate::webhooks::before_send::BeforeSend::from_config(
            &config,
            metrics.webhooks.clone(),
        )?;
        let wechat =
            crate::wechat::WeChat::from_config(&config, store.clone(), metrics.notify.clone())?;
        // The chat service's own pushes stay behind the commits handed to fan-out before them.
        let ordered: Arc<dyn Bus> = Arc::new(OrderedBus::new(bus.clone(), order));
        let chat = Chat::new(store.clone(), ordered, hub.clone(), config.clone())
            .with_hooks(crate::chat::Hooks {
                outbox: outbox.clone(),
                before_send,
                wechat,
            })
            .with_media_storage(media.storage.clone());
        if config.wechat_enabled() {
            tracing::info!(
                "WeChat login enabled (code2Session at {})",
                config.wechat_api_base
            );
        }
        auth::warn_dev_login(&config);
        let shutdown = CancellationToken::new();
        auth::spawn_housekeeping(auth.clone(), config.clone(), shutdown.clone());
        crate::webhooks::worker::spawn(
            store.clone(),
            config.clone(),
            outbox,
            metrics.webhooks.clone(),
            shutdown.clone(),
        )?;
        let app = Arc::new(App {
            connection_slots: Arc::new(Semaphore::new(config.max_connections)),
            server_api: crate::auth::server_api::ServerApi::new(&config),
            sockets_per_ip: PerIp::new(config.max_connections_per_ip),
            config,
            store,
            bus,
            hub,
            chat,
            auth,
            media,
            metrics,
            shutdown,
            tracker: TaskTracker::new(),
            shards: Shards::start(),
        });
        Ok((app, fanout))
    }

    /// Takes the server apart once its connections are gone: the store commits what it accepted and closes
    /// (closing the fan-out channel), fan-out pushes the rest of the channel, then the bus shuts down.
    pub async fn close(&self, fanout: Fanout) {
        self.store.shutdown().await;
        if let Err(error) = fanout.0.await {
            tracing::error!(%error, "fan-out task failed");
        }
        self.bus.shutdown().await;
    }
}
