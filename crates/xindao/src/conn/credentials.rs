//! What a connection is authenticated with, and when that ends. A login's session slides while its socket is
//! open (the periodic session check extends it), so only logout, revocation or a ban end it. A business JWT
//! ends at its `exp`: the connection closes then with 4001 `token_expired`, unless the client sent a fresh
//! token first (`auth_refresh`, answered here).
//!
//! The deadline costs no timer of its own: the connection's heartbeat interval is brought forward to it
//! ([`Credentials::arm`]), and the tick that finds it passed closes the connection.

use std::time::{Duration, Instant};

use serde_json::json;
use serde_json::value::{to_raw_value, RawValue};
use tokio::time::Interval;

use crate::app::App;
use crate::auth::Session;
use crate::chat::Caller;
use crate::error::{Error, Result};
use crate::model::{now_millis, Millis};
use crate::protocol::op::AuthRefreshArgs;

/// The close reason of a connection whose token expired (with code 4001).
pub(super) const TOKEN_EXPIRED: &str = "token_expired";

/// A connection's session and, when it has a fixed end, that end on the monotonic clock.
pub(super) struct Credentials {
    pub(super) session: Session,
    deadline: Option<Instant>,
}

impl Credentials {
    pub(super) fn new(session: Session) -> Credentials {
        Credentials {
            deadline: session.expires_at.and_then(deadline),
            session,
        }
    }

    /// When the credentials end (ms since the epoch), for the client: `None` while they slide.
    pub(super) fn expires_at(&self) -> Option<Millis> {
        self.session.expires_at
    }

    /// Whether the credentials have ended.
    pub(super) fn expired(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Makes `heartbeat` (ticking every `period`) tick at the deadline when that comes before a tick would.
    pub(super) fn arm(&self, heartbeat: &mut Interval, period: Duration) {
        if let Some(deadline) = self.deadline {
            if deadline <= Instant::now() + period {
                heartbeat.reset_at(deadline.into());
            }
        }
    }

    /// `auth_refresh`: takes `args.token` as the connection's credentials if it is valid and the caller's
    /// (`forbidden` for another user's; `token_expired`, `invalid_token` or `unauthorized` for one that does
    /// not authenticate), and answers their new end. A refused token changes nothing: the connection keeps
    /// its old credentials, and closes at their end.
    pub(super) async fn refresh(
        &mut self,
        app: &App,
        caller: Caller,
        args: AuthRefreshArgs,
    ) -> Result<Box<RawValue>> {
        let resolved = app.auth.resolve(&args.token).await?;
        if resolved.session.user_id != caller.user_id {
            return Err(Error::Forbidden("this token is another user's"));
        }
        app.chat
            .apply_grants(caller.user_id, &resolved.grants)
            .await;
        // Logout of the new token closes this socket from now on; of the old one, no longer.
        app.hub
            .set_session(caller.user_id, caller.conn_id, resolved.session.token_hash);
        *self = Credentials::new(resolved.session);
        to_raw_value(&json!({ "expires_at": self.expires_at() }))
            .map_err(|e| Error::Internal(format!("encode result: {e}")))
    }
}

/// The instant of `expires_at` (ms since the epoch) on the monotonic clock; `None` past what it can hold (an
/// `exp` ages away: as good as none).
fn deadline(expires_at: Millis) -> Option<Instant> {
    let left = u64::try_from(expires_at.saturating_sub(now_millis())).unwrap_or(0);
    Instant::now().checked_add(Duration::from_millis(left))
}
