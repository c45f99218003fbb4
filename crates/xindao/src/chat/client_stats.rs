//! `client_stats`: a client's report of the round trips it measured, added to `xindao_client_rtt_seconds`
//! ([`crate::obs::client_rtt`]) under the network of the connection's address. One report per connection per
//! minute is taken; the SDK sends one every few minutes.

use serde_json::json;
use serde_json::value::RawValue;

use super::{raw, Caller, Chat};
use crate::error::Result;
use crate::protocol::op::ClientStatsArgs;

/// Reports a connection may make per minute.
pub(super) const REPORTS_PER_MIN: u32 = 1;

impl Chat {
    pub(super) fn client_stats(&self, caller: Caller, a: ClientStatsArgs) -> Result<Box<RawValue>> {
        let metrics = self.hub.metrics();
        // Checked before the rate limit: a malformed report does not use up the connection's minute.
        metrics.client_rtt.check(&a)?;
        self.client_reports.check(caller.conn_id)?;
        let address = self
            .hub
            .connections_info(caller.user_id)
            .into_iter()
            .find(|(id, _)| *id == caller.conn_id)
            .and_then(|(_, info)| info.address);
        let counted = metrics.client_rtt.record(address, &a);
        raw(&json!({ "counted": counted }))
    }
}
