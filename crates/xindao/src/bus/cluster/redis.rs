//! The cluster bus over Redis pub/sub: one subscriber connection and one publisher connection per node,
//! each reconnecting with backoff. Redis keeps no state for us (presence travels as announcements).
//! `rediss://` connects over TLS (rustls), verifying the server against the system's roots.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Core;
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Most messages sent in one pipeline.
const PUBLISH_BATCH: usize = 256;

/// Starts the subscriber and publisher for `url`; `shown` is the URL for messages (password masked).
pub(super) async fn start(
    url: &str,
    shown: &str,
    channel: String,
    core: Arc<Core>,
    outgoing: mpsc::Receiver<Vec<u8>>,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<()> {
    let client = redis::Client::open(url)
        .map_err(|e| Error::Unavailable(format!("bad Redis URL {shown}: {e}")))?;
    let (ready, subscribed) = oneshot::channel();
    tasks.spawn(subscribe_loop(
        client.clone(),
        channel.clone(),
        core.clone(),
        cancel.clone(),
        ready,
    ));
    tasks.spawn(publish_loop(
        client,
        channel,
        core,
        outgoing,
        cancel.clone(),
    ));
    // Serve only once deliveries from other nodes can reach us.
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, subscribed).await {
        Ok(Ok(())) => Ok(()),
        _ => {
            cancel.cancel();
            Err(Error::Unavailable(format!(
                "cannot subscribe to the Redis bus at {shown}"
            )))
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    core: Arc<Core>,
    cancel: CancellationToken,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut reconnected = false;
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, subscribe).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                core.subscribed(reconnected);
                reconnected = true;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        // Our own heartbeat comes back every third of the TTL: silence means a dead link.
                        next = tokio::time::timeout(core.ttl(), messages.next()) => match next {
                            Ok(Some(message)) => core.receive(message.get_payload_bytes()),
                            Ok(None) => break,
                            Err(_) => {
                                tracing::warn!("Redis bus silent for the presence TTL: reconnecting");
                                break;
                            }
                        }
                    }
                }
                core.disconnected();
                tracing::warn!("lost the Redis bus subscription: reconnecting");
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot subscribe to the Redis bus"),
            Err(_) => tracing::warn!("subscribing to the Redis bus timed out"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn publish_loop(
    client: redis::Client,
    channel: String,
    core: Arc<Core>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    cancel: CancellationToken,
) {
    let mut connection: Option<MultiplexedConnection> = None;
    let mut pending: Vec<Vec<u8>> = Vec::with_capacity(PUBLISH_BATCH);
    let mut backoff = Duration::from_millis(100);
    loop {
        if pending.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                received = outgoing.recv_many(&mut pending, PUBLISH_BATCH) => if received == 0 { return },
            }
        }
        let conn = match &mut connection {
            Some(conn) => conn,
            None => {
                let connect = client.get_multiplexed_async_connection();
                match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                    Ok(Ok(conn)) => {
                        backoff = Duration::from_millis(100);
                        core.publisher_recovered();
                        connection.insert(conn)
                    }
                    _ => {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        let mut pipe = redis::pipe();
        for payload in &pending {
            pipe.cmd("PUBLISH").arg(&channel).arg(payload).ignore();
        }
        let started = std::time::Instant::now();
        match tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(conn)).await {
            Ok(Ok(())) => {
                let hops = crate::obs::hops::hops();
                crate::obs::hops::observe(&hops.bus_publish, started.elapsed());
                pending.clear()
            }
            outcome => {
                // Keep the batch and send it again on a new connection: at least once, never silently lost.
                // What arrived twice is dropped as a replay; what arrives after the replay window is dropped
                // as stale: the resync sent once the publisher recovers covers it.
                if let Ok(Err(error)) = outcome {
                    tracing::warn!(%error, "publishing on the Redis bus failed: reconnecting");
                }
                core.mark_lost();
                connection = None;
            }
        }
    }
}
