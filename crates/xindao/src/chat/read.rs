//! Read marks: `read` moves the caller's mark forward (never back, never past the last message) and tells the
//! members' other connections.

use serde_json::json;
use serde_json::value::RawValue;

use crate::error::Result;
use crate::hub::Delivery;
use crate::protocol::{self, op::ReadArgs};

use super::{raw, Caller, Chat};

impl Chat {
    pub(super) async fn read(&self, caller: Caller, a: ReadArgs) -> Result<Box<RawValue>> {
        let read_seq = self
            .store
            .mark_read(a.conversation_id, caller.user_id, a.seq.0)
            .await?;
        let frame = protocol::event(
            "read",
            &json!({ "conversation_id": a.conversation_id, "user_id": caller.user_id, "seq": read_seq }),
        );
        self.bus.publish(Delivery::Conversation {
            conversation_id: a.conversation_id,
            frame,
            own: None,
            skip_conn: caller.conn_id,
            skip_user: 0,
        });
        self.emit_read(a.conversation_id, caller.user_id, read_seq)
            .await;
        raw(&json!({ "read_seq": read_seq }))
    }
}
