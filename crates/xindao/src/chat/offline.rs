//! Who of a conversation's members has no open connection anywhere: what an offline notification goes to
//! (WeChat subscribe messages here; a `user.offline_message` webhook may share it). "Open connection" is the
//! bus's presence: this node's hub, and on a cluster the presence the nodes announce (a user whose node died
//! counts as online until `presence_ttl_ms` passes). Rooms are scanned a page at a time, at most `scan_max`
//! members: a huge room notifies nobody rather than costing a scan of every member per message.

use crate::bus::Bus;
use crate::error::Result;
use crate::model::{ConversationId, MemberCursor, UserId};
use crate::store::Store;

/// Members read per page.
const PAGE: usize = 200;

/// The members of `conversation` other than `except` with no open connection; empty when the conversation
/// has more than `scan_max` members.
pub async fn offline_members(
    store: &dyn Store,
    bus: &dyn Bus,
    conversation: ConversationId,
    except: UserId,
    scan_max: usize,
) -> Result<Vec<UserId>> {
    let mut offline = Vec::new();
    let mut cursor = None;
    let mut scanned = 0;
    loop {
        let page = store.members(conversation, cursor, PAGE).await?;
        scanned += page.len();
        if scanned > scan_max {
            return Ok(Vec::new());
        }
        offline.extend(
            page.iter()
                .map(|member| member.user.id)
                .filter(|&id| id != except && !bus.is_online(id)),
        );
        match page.last() {
            Some(last) if page.len() == PAGE => {
                cursor = Some(MemberCursor {
                    joined_at: last.joined_at,
                    user_id: last.user.id,
                })
            }
            _ => return Ok(offline),
        }
    }
}
