//! The webhook outbox as the stores see it: which endpoints want an event (each endpoint's filter), and the
//! rows the delivery worker (`webhooks::worker`) claims. A store writes an event's rows in the transaction
//! that commits the event, and only for the endpoints whose filter takes it: with no endpoint configured
//! nothing is written and nothing is serialised. The outbox is bounded: when the worker finds it at
//! `webhook_outbox_max` rows it sets [`Outbox::set_full`], and new events are counted and logged as dropped
//! (an alert), never holding chat back, until it drains.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::group_commit::{AppendJob, Stored};
use crate::config::Config;
use crate::model::{ConversationId, MessageKind, Millis, UserId};

/// The endpoints events are kept for, whether the outbox is full, and the wake-up of this node's worker.
#[derive(Debug, Default)]
pub struct Outbox {
    /// (endpoint name, event filter): `*`, an event name, or a prefix ending in `.*`.
    endpoints: Vec<(String, Vec<String>)>,
    full: AtomicBool,
    dropped: AtomicU64,
    /// Told after a transaction that wrote events has committed on this node.
    committed: tokio::sync::Notify,
}

/// One event to write to the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub event: &'static str,
    /// Events of one key are delivered in order: the conversation id, or minus the user id for user events.
    pub key: i64,
    /// The event's `data`, as JSON.
    pub data: String,
    /// The request whose commit made the event ([`crate::obs::request_id`]).
    pub request_id: Option<Arc<str>>,
}

impl OutboxEvent {
    /// An event of a conversation.
    pub fn conversation(
        event: &'static str,
        conversation: ConversationId,
        data: &impl Serialize,
    ) -> OutboxEvent {
        OutboxEvent {
            event,
            key: conversation,
            data: serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
            request_id: current_request(),
        }
    }

    /// An event of a user (connected, disconnected).
    pub fn user(event: &'static str, user: UserId, data: &impl Serialize) -> OutboxEvent {
        OutboxEvent {
            event,
            key: -user,
            data: serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
            request_id: current_request(),
        }
    }

    /// The event, as made by request `id` (when it is made outside the request's task).
    pub fn made_by(mut self, id: Option<Arc<str>>) -> OutboxEvent {
        self.request_id = id;
        self
    }
}

/// The id of the request this task is handling, if any.
fn current_request() -> Option<Arc<str>> {
    crate::obs::request_id::current().map(|id| id.0)
}

/// A claimed outbox row.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub endpoint: String,
    pub key: i64,
    pub event: String,
    pub data: String,
    pub created_at: Millis,
    pub attempts: i64,
    pub request_id: Option<String>,
}

/// What the delivery worker did with the rows it claimed, recorded together with its next claim (one store
/// transaction per wake of the worker, not one per row or per POST).
#[derive(Debug, Default)]
pub struct Settlement {
    /// Accepted by their receiver: deleted.
    pub delivered: Vec<i64>,
    /// Claimed but not sent (behind a failed row of their key, or not fitting a batch): given back.
    pub released: Vec<i64>,
    /// A failed attempt of the first row of its key: tried again at `next_at`.
    pub retried: Vec<Retry>,
    /// Out of retries: moved to the dead-letter list, with the last error.
    pub buried: Vec<(i64, String)>,
}

/// A failed attempt to be tried again.
#[derive(Debug)]
pub struct Retry {
    pub id: i64,
    pub next_at: Millis,
    pub error: String,
}

/// A claim for `node` until `now + lease_ms` of at most `limit` rows: deliverable heads (due, not under a
/// live lease, the first row of their endpoint and key) and, behind each, the rows of the same endpoint and
/// key, at most `run` per key. A head's lease keeps every other claimer off its whole key.
#[derive(Debug, Clone)]
pub struct Claim {
    pub node: String,
    pub now: Millis,
    pub lease_ms: i64,
    pub limit: usize,
    pub run: usize,
}

impl Settlement {
    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty()
            && self.released.is_empty()
            && self.retried.is_empty()
            && self.buried.is_empty()
    }
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeadRow {
    pub id: i64,
    pub endpoint: String,
    pub event: String,
    pub created_at: Millis,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub dead_at: Millis,
}

impl Outbox {
    pub fn from_config(config: &Config) -> Arc<Outbox> {
        Arc::new(Outbox {
            endpoints: config
                .webhooks
                .0
                .iter()
                .map(|e| (e.name.clone(), e.events.clone()))
                .collect(),
            ..Outbox::default()
        })
    }

    /// Called by a store after committing a transaction that wrote events: an idle worker on this node
    /// claims them now instead of at its next poll (other nodes' commits are found by the poll).
    pub fn committed(&self) {
        if self.is_active() {
            self.committed.notify_one();
        }
    }

    /// Completes once events were committed on this node since it last completed.
    pub async fn events_committed(&self) {
        self.committed.notified().await
    }

    /// Whether any endpoint is configured (else the stores write nothing).
    pub fn is_active(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// Whether some endpoint takes `event` (a cheap check before building its data).
    pub fn wants(&self, event: &str) -> bool {
        self.endpoints.iter().any(|(_, f)| matches(f, event))
    }

    /// The endpoints an event goes to; none while the outbox is full (then the event is counted as dropped).
    pub fn targets<'a>(&'a self, event: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let full = self.full.load(Ordering::Relaxed);
        if full && self.wants(event) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped % 1000 == 0 {
                tracing::error!(
                    event,
                    dropped = dropped + 1,
                    "webhook outbox full (webhook_outbox_max): event not kept for delivery"
                );
            }
        }
        self.endpoints
            .iter()
            .filter(move |(_, f)| !full && matches(f, event))
            .map(|(name, _)| name.as_str())
    }

    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::Relaxed);
    }

    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Events not kept because the outbox was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Whether an endpoint's filter takes `event`.
pub fn matches(filter: &[String], event: &str) -> bool {
    filter.iter().any(|f| {
        f == "*"
            || f == event
            || f.strip_suffix('*')
                .is_some_and(|prefix| prefix.ends_with('.') && event.starts_with(prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_names_prefixes_and_all() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches(&f(&["*"]), "message.created"));
        assert!(matches(&f(&["member.*"]), "member.joined"));
        assert!(!matches(&f(&["member.*"]), "message.created"));
        assert!(matches(&f(&["read.moved", "x"]), "read.moved"));
        assert!(!matches(&f(&["mem*"]), "member.joined"));
        assert!(!matches(&f(&[]), "member.joined"));
    }
}

/// The event a committed message writes to the outbox, in the commit's own transaction.
pub const MESSAGE_CREATED: &str = "message.created";

/// `message.created`: the committed message as clients see it.
#[derive(Serialize)]
struct MessageData<'a> {
    id: i64,
    conversation_id: ConversationId,
    seq: i64,
    sender_id: UserId,
    cmid: &'a str,
    kind: MessageKind,
    content: &'a serde_json::Value,
    ts: Millis,
}

/// The `message.created` events of a committed batch (new messages only), in commit order.
pub(crate) fn message_events(
    batch: &[AppendJob],
    results: &[crate::Result<Stored>],
) -> Vec<OutboxEvent> {
    batch
        .iter()
        .zip(results)
        .filter_map(|(job, result)| match result {
            Ok(Stored::New { id, seq, ts }) => {
                let m = &job.message;
                Some(
                    OutboxEvent::conversation(
                        MESSAGE_CREATED,
                        m.conversation_id,
                        &MessageData {
                            id: *id,
                            conversation_id: m.conversation_id,
                            seq: *seq,
                            sender_id: m.sender_id,
                            cmid: &m.cmid,
                            kind: m.kind,
                            content: &m.content,
                            ts: *ts,
                        },
                    )
                    .made_by(job.request_id.clone()),
                )
            }
            _ => None,
        })
        .collect()
}
