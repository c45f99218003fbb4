//! The cluster bus over NATS core pub/sub. The client reconnects and resubscribes by itself; we watch its
//! connection events to resync local clients once the subscription is back. `tls://` requires TLS (the
//! client verifies the server against the system's roots); credentials come from the URL (user:password or
//! token) or a `.creds` file (JWT + NKey seed, `nats_creds_file`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Event};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Core;
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to connect.
pub(super) struct Target<'a> {
    pub url: &'a str,
    /// The URL for messages (password or token masked).
    pub shown: &'a str,
    pub creds: Option<&'a Path>,
}

pub(super) async fn start(
    target: Target<'_>,
    channel: String,
    core: Arc<Core>,
    outgoing: mpsc::Receiver<Vec<u8>>,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<()> {
    let Target { url, shown, creds } = target;
    let unavailable = |e: String| {
        let e = e.replace(url, shown);
        Error::Unavailable(format!("cannot reach the NATS bus at {shown}: {e}"))
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * 2u64.pow(attempts.min(5) as u32)).min(2000))
        })
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        });
    if url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    if let Some(path) = creds {
        options = options.credentials_file(path).await.map_err(|e| {
            Error::Unavailable(format!(
                "cannot read nats_creds_file {}: {e}",
                path.display()
            ))
        })?;
    }
    let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(url))
        .await
        .map_err(|_| unavailable("timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let subscriber = client
        .subscribe(channel.clone())
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    probe(&client).await;
    core.subscribed(false);
    tasks.spawn(subscribe_loop(
        client.clone(),
        subscriber,
        events,
        core.clone(),
        cancel.clone(),
    ));
    tasks.spawn(publish_loop(
        client,
        channel,
        core,
        outgoing,
        cancel.clone(),
    ));
    Ok(())
}

/// One round trip to the server: everything sent before it (the subscription) has been processed.
async fn probe(client: &Client) {
    let _ = client.flush().await;
    // Nobody answers: the server's "no responders" reply is the round trip we want.
    let _ = tokio::time::timeout(PROBE_TIMEOUT, client.request("_xindao.probe", "".into())).await;
}

async fn subscribe_loop(
    client: Client,
    mut subscriber: async_nats::Subscriber,
    mut events: mpsc::UnboundedReceiver<Event>,
    core: Arc<Core>,
    cancel: CancellationToken,
) {
    let mut was_disconnected = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            message = subscriber.next() => match message {
                Some(message) => core.receive(&message.payload),
                None => return,
            },
            Some(event) = events.recv() => match event {
                Event::Disconnected => {
                    tracing::warn!("lost the NATS bus connection: reconnecting");
                    was_disconnected = true;
                    core.disconnected();
                }
                Event::Connected if was_disconnected => {
                    was_disconnected = false;
                    // The client resubscribed on the new connection; make sure the server has it first.
                    probe(&client).await;
                    tracing::info!("NATS bus reconnected");
                    core.subscribed(true);
                    core.publisher_recovered();
                }
                _ => {}
            },
        }
    }
}

async fn publish_loop(
    client: Client,
    channel: String,
    core: Arc<Core>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    cancel: CancellationToken,
) {
    let subject = async_nats::Subject::from(channel);
    loop {
        let payload = tokio::select! {
            _ = cancel.cancelled() => return,
            payload = outgoing.recv() => match payload {
                Some(payload) => payload,
                None => return,
            },
        };
        // While disconnected the client buffers; whatever does not make it is covered by a cluster resync.
        core.note_possible_loss();
        let started = std::time::Instant::now();
        if client
            .publish(subject.clone(), payload.into())
            .await
            .is_err()
        {
            core.mark_lost();
        } else {
            let hops = crate::obs::hops::hops();
            crate::obs::hops::observe(&hops.bus_publish, started.elapsed());
        }
    }
}
