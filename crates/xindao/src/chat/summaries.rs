//! Membership changes of big rooms, coalesced. A `member` push per join to every connected member makes a room
//! of n members cost n^2 pushes to fill; above `room_member_events_max` members a room's changes are instead
//! gathered for a second and told as one `members_changed` push (counts, the room's size, the last few
//! changes): at most one per room per second from each node, whatever the rate of joins.
//!
//! The first change of a room opens its window and spawns the task that closes it a second later; later
//! changes only count. The joining or leaving user's own connections still get their own `member` push
//! (`rooms.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::bus::Bus;
use crate::hub::Delivery;
use crate::model::{ConversationId, UserId};
use crate::protocol;
use crate::store::Store;

/// How long a room's changes are gathered before they are told.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How many of the latest changes a summary lists.
const RECENT_MAX: usize = 10;

/// One membership change, as the `member` push would have told it.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub user_id: UserId,
    pub action: &'static str,
    pub by: UserId,
}

#[derive(Default)]
struct Window {
    joined: u64,
    left: u64,
    recent: VecDeque<Change>,
}

#[derive(Serialize)]
struct MembersChanged {
    conversation_id: ConversationId,
    /// The room's size when the summary was made (absent if the store could not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<i64>,
    joined: u64,
    left: u64,
    /// The latest changes of the window, oldest first.
    recent: Vec<Change>,
}

/// The open windows, one per big room with changes in the last second.
pub struct Summaries {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    open: Mutex<HashMap<ConversationId, Window>>,
}

impl Summaries {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Arc<Summaries> {
        Arc::new(Summaries {
            store,
            bus,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a change of a big room; the room's members hear of it within [`WINDOW`].
    pub fn record(self: &Arc<Self>, conversation_id: ConversationId, change: Change) {
        let mut open = self.open.lock();
        let opened = !open.contains_key(&conversation_id);
        let window = open.entry(conversation_id).or_default();
        if matches!(change.action, "joined" | "added") {
            window.joined += 1;
        } else {
            window.left += 1;
        }
        if window.recent.len() == RECENT_MAX {
            window.recent.pop_front();
        }
        window.recent.push_back(change);
        drop(open);
        if opened {
            let summaries = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(WINDOW).await;
                summaries.close(conversation_id).await;
            });
        }
    }

    async fn close(&self, conversation_id: ConversationId) {
        let Some(window) = self.open.lock().remove(&conversation_id) else {
            return;
        };
        let members = match self.store.member_count(conversation_id).await {
            Ok(count) => Some(count),
            Err(error) => {
                tracing::warn!(conversation_id, %error, "members_changed without a member count");
                None
            }
        };
        let frame = protocol::event(
            "members_changed",
            &MembersChanged {
                conversation_id,
                members,
                joined: window.joined,
                left: window.left,
                recent: window.recent.into(),
            },
        );
        self.bus.publish(Delivery::Conversation {
            conversation_id,
            frame,
            own: None,
            skip_conn: 0,
            skip_user: 0,
        });
    }
}
