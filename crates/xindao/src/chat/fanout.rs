//! From commit to pushes: every message the store commits is encoded once as a `message` event and published
//! on the bus, which routes it to the members' connections (all but the sender's).

use std::sync::Arc;

use crate::bus::Bus;
use crate::hub::Delivery;
use crate::model::Message;
use crate::protocol;

/// The commit hook given to the store: every committed message becomes one encoded `message` push.
pub fn commit_hook(
    bus: Arc<dyn Bus>,
    metrics: crate::metrics::Metrics,
) -> crate::store::CommitHook {
    Arc::new(move |message: &Message, origin: u64| {
        metrics.messages_committed.inc();
        let frame = protocol::event("message", message);
        bus.publish(Delivery::Conversation {
            conversation_id: message.conversation_id,
            frame,
            skip_conn: origin,
            skip_user: 0,
        });
    })
}
