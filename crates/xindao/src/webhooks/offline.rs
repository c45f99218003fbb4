//! `user.offline_message`: a message committed for a member with no open connection anywhere, so that the
//! backend can notify them another way (push, SMS, a WeChat subscribe message). Coalesced: at most one event
//! per user and conversation per `webhook_offline_window_secs`, not one per message.
//!
//! Fan-out hands each committed message to [`OfflineNotices::observe`], which never waits (a full queue skips
//! the message, counted in `xindao_webhook_offline_skipped_total`); a task of its own then reads the
//! conversation's members from the store, keeps those the bus reports offline ([`offline_recipients`], the
//! presence the nodes of a cluster share) and writes the events to the outbox, one transaction per batch.
//! The window is the store's (`crate::store::offline`): each event is written only if its (user,
//! conversation) mark is claimed in the same transaction, so a cluster announces once per window however
//! many nodes commit the conversation's messages. This node also remembers each window the store told it of
//! (claimed by it or by another node), so that a busy conversation costs the store one claim per node per
//! window, not one per message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::bus::Bus;
use crate::config::Config;
use crate::metrics::NotifyMetrics;
use crate::model::{now_millis, ConversationId, Message, MessageKind, Millis, UserId};
use crate::store::{OfflineCandidate, Outbox, OutboxEvent, Store, WindowClaim};

use super::USER_OFFLINE_MESSAGE;

/// Committed messages waiting to be checked before fan-out skips new ones.
const QUEUE: usize = 10_000;
/// Messages checked together (one member read per conversation among them).
const BATCH: usize = 512;
/// Members read per store call.
const MEMBERS_PAGE: usize = 1000;
/// Window entries kept before the expired ones are dropped.
const REMEMBERED_MAX: usize = 100_000;

/// Whether each of `members` (but `sender`) has no open connection on any node: the ones to announce.
pub fn offline_recipients(bus: &dyn Bus, members: &[UserId], sender: UserId) -> Vec<UserId> {
    members
        .iter()
        .copied()
        .filter(|&user| user != sender && !bus.is_online(user))
        .collect()
}

/// The `data` of `user.offline_message`: the first message of the window.
#[derive(Serialize)]
struct OfflineData {
    user_id: UserId,
    conversation_id: ConversationId,
    seq: i64,
    id: i64,
    sender_id: UserId,
    kind: MessageKind,
    ts: Millis,
}

/// What the check needs of a committed message.
struct Seen {
    conversation_id: ConversationId,
    seq: i64,
    id: i64,
    sender_id: UserId,
    kind: MessageKind,
    ts: Millis,
}

/// Fan-out's handle on the offline check.
pub struct OfflineNotices {
    tx: mpsc::Sender<Seen>,
    skipped: Counter,
}

/// The label of `user.offline_message` in `xindao_offline_notifications_total`.
const CHANNEL: &str = "webhook";

impl OfflineNotices {
    /// Starts the check when an endpoint takes `user.offline_message`; `None` otherwise (nothing is done).
    pub fn spawn(
        config: &Config,
        outbox: &Outbox,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        skipped: Counter,
        metrics: NotifyMetrics,
    ) -> Option<OfflineNotices> {
        if !outbox.wants(USER_OFFLINE_MESSAGE) {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let check = Check {
            store,
            bus,
            window: Duration::from_secs(config.webhook_offline_window_secs),
            system_name: config.system_display_name.clone(),
            system: None,
            last: HashMap::new(),
            metrics,
        };
        tokio::spawn(check.run(rx));
        Some(OfflineNotices { tx, skipped })
    }

    /// Queues a committed message for the check; never waits.
    pub fn observe(&self, message: &Message) {
        let seen = Seen {
            conversation_id: message.conversation_id,
            seq: message.seq,
            id: message.id,
            sender_id: message.sender_id,
            kind: message.kind,
            ts: message.ts,
        };
        if self.tx.try_send(seen).is_err() {
            self.skipped.inc();
        }
    }
}

struct Check {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    window: Duration,
    system_name: String,
    /// The system account (it never connects, so it is never announced), once looked up.
    system: Option<UserId>,
    /// When this node last claimed each (user, conversation)'s window.
    last: HashMap<(UserId, ConversationId), Instant>,
    metrics: NotifyMetrics,
}

impl Check {
    async fn run(mut self, mut rx: mpsc::Receiver<Seen>) {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let candidates = self.candidates(&batch).await;
            batch.clear();
            if !candidates.is_empty() {
                self.keep(candidates).await;
            }
        }
    }

    /// Writes the events whose window the store lets this node claim (all of them with a window of 0).
    async fn keep(&mut self, candidates: Vec<OfflineCandidate>) {
        let count = candidates.len() as u64;
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        if window_ms == 0 {
            let events = candidates.into_iter().map(|c| c.event).collect();
            return match self.store.webhook_enqueue(events).await {
                Ok(()) => self.metrics.notified(CHANNEL, "sent", count),
                Err(error) => self.not_kept(count, error),
            };
        }
        let keys: Vec<_> = candidates
            .iter()
            .map(|c| (c.user, c.conversation))
            .collect();
        let (claimed_at, now) = (Instant::now(), now_millis());
        let claimed = self.store.offline_enqueue(candidates, now, window_ms).await;
        match claimed {
            Ok(claims) => {
                let mut sent = 0;
                for (key, claim) in keys.into_iter().zip(claims) {
                    // Remembered from when its window opened, whichever node opened it.
                    let opened = match claim {
                        WindowClaim::Won => {
                            sent += 1;
                            claimed_at
                        }
                        WindowClaim::Held { since } => {
                            let age =
                                Duration::from_millis(now.saturating_sub(since).max(0) as u64);
                            claimed_at.checked_sub(age).unwrap_or(claimed_at)
                        }
                    };
                    self.last.insert(key, opened);
                }
                self.metrics.notified(CHANNEL, "sent", sent);
                // Held back by a window another node opened.
                self.metrics.notified(CHANNEL, "coalesced", count - sent);
            }
            Err(error) => self.not_kept(count, error),
        }
    }

    fn not_kept(&self, count: u64, error: crate::Error) {
        self.metrics.notified(CHANNEL, "error", count);
        tracing::error!(%error, "user.offline_message events not kept");
    }

    /// The candidate events of a batch: per conversation (members read once), the first message each offline
    /// member did not send, unless this node claimed their window for that conversation.
    async fn candidates(&mut self, batch: &[Seen]) -> Vec<OfflineCandidate> {
        if self.system.is_none() {
            self.system = self
                .store
                .system_user(&self.system_name)
                .await
                .ok()
                .map(|u| u.id);
        }
        let mut by_conversation: Vec<(ConversationId, Vec<&Seen>)> = Vec::new();
        for seen in batch {
            match by_conversation
                .iter_mut()
                .find(|(c, _)| *c == seen.conversation_id)
            {
                Some((_, list)) => list.push(seen),
                None => by_conversation.push((seen.conversation_id, vec![seen])),
            }
        }
        let now = Instant::now();
        self.forget_expired(now);
        let (mut candidates, mut coalesced) = (Vec::new(), 0);
        for (conversation, messages) in by_conversation {
            let members = match self.member_ids(conversation).await {
                Ok(members) => members,
                Err(error) => {
                    tracing::warn!(%error, conversation, "offline check: members not read");
                    continue;
                }
            };
            let mut announced = Vec::new();
            for seen in &messages {
                for user in offline_recipients(self.bus.as_ref(), &members, seen.sender_id) {
                    if Some(user) == self.system || announced.contains(&user) {
                        continue;
                    }
                    announced.push(user);
                    match self.announce(user, seen, now) {
                        Some(candidate) => candidates.push(candidate),
                        None => coalesced += 1,
                    }
                }
            }
        }
        self.metrics.notified(CHANNEL, "coalesced", coalesced);
        candidates
    }

    /// The candidate event for `user`, unless this node claimed their window for the conversation.
    fn announce(&self, user: UserId, seen: &Seen, now: Instant) -> Option<OfflineCandidate> {
        let key = (user, seen.conversation_id);
        if let Some(at) = self.last.get(&key) {
            if now.duration_since(*at) < self.window {
                return None;
            }
        }
        let data = OfflineData {
            user_id: user,
            conversation_id: seen.conversation_id,
            seq: seen.seq,
            id: seen.id,
            sender_id: seen.sender_id,
            kind: seen.kind,
            ts: seen.ts,
        };
        Some(OfflineCandidate {
            user,
            conversation: seen.conversation_id,
            event: OutboxEvent::user(USER_OFFLINE_MESSAGE, user, &data),
        })
    }

    fn forget_expired(&mut self, now: Instant) {
        if self.last.len() > REMEMBERED_MAX {
            let window = self.window;
            self.last.retain(|_, at| now.duration_since(*at) < window);
        }
    }

    async fn member_ids(&self, conversation: ConversationId) -> crate::Result<Vec<UserId>> {
        let mut ids = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .members(conversation, cursor, MEMBERS_PAGE)
                .await?;
            ids.extend(page.iter().map(|m| m.user.id));
            match page.last() {
                Some(last) if page.len() == MEMBERS_PAGE => {
                    cursor = Some(crate::model::MemberCursor {
                        joined_at: last.joined_at,
                        user_id: last.user.id,
                    })
                }
                _ => return Ok(ids),
            }
        }
    }
}
