//! The hand-off from the store's writers to fan-out (`crate::chat::fanout`): each committed batch, in commit
//! order, through a bounded channel that counts what it was handed, so that a push published after an ack can
//! wait behind the batches committed before it.

use crate::model::Message;

/// A newly committed message, its sender's connection (0: none), request id and commit span (for fan-out).
#[derive(Debug, Clone)]
pub struct Committed {
    pub message: Message,
    pub origin: u64,
    pub request_id: Option<std::sync::Arc<str>>,
    pub trace: crate::obs::otel::Parent,
}

/// Where a store's writers hand each committed batch (new messages only, duplicates left out), in commit
/// order. Bounded: a writer waits when fan-out falls behind. It counts the batches handed over, so that a push
/// published after an ack can wait behind the batches handed over before it (`chat::order`).
#[derive(Debug, Clone)]
pub struct CommitSink {
    tx: tokio::sync::mpsc::Sender<Vec<Committed>>,
    handed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CommitSink {
    /// A sink into `tx` that counts the batches it hands over in `handed`.
    pub fn counted(
        tx: tokio::sync::mpsc::Sender<Vec<Committed>>,
        handed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> CommitSink {
        CommitSink { tx, handed }
    }

    /// Hands a batch over, waiting while the channel is full; `Err` once fan-out is gone.
    pub async fn send(&self, batch: Vec<Committed>) -> std::result::Result<(), Vec<Committed>> {
        // Counted before it is in the channel: whoever sees the batch's ack sees the count.
        self.handed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.tx.send(batch).await.map_err(|e| e.0)
    }
}

impl From<tokio::sync::mpsc::Sender<Vec<Committed>>> for CommitSink {
    fn from(tx: tokio::sync::mpsc::Sender<Vec<Committed>>) -> CommitSink {
        CommitSink::counted(tx, Default::default())
    }
}
