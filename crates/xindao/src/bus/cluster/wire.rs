//! What nodes say to each other over the bus: deliveries, presence announcements and node heartbeats,
//! each tagged with the sending node (so that a node can ignore its own echo) and with the boot, counter
//! and time that bound replays (checked in `auth.rs`, after the seal).

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::hub::{Delivery, OwnFrame};
use crate::model::{ConversationId, UserId};

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    /// Random per sending process.
    pub boot: u64,
    /// Counts the sending process's envelopes from 1.
    pub seq: u64,
    /// Sending time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The request (HTTP or WebSocket) that caused it, if one did ([`crate::obs::request_id`]); covered by
    /// the seal like the rest, so a bus peer without the secret cannot put ids into another node's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the sender's fan-out span, when it exports traces ([`crate::obs::otel`]):
    /// the receiver's `bus` span becomes its child. A malformed one is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(flatten)]
    pub body: Wire,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Wire {
    /// A delivery for the hub of every other node. `skip_conn` is node-local and does not travel.
    /// `own` is the variant for one member's connections (absent for most pushes; a node that predates it
    /// ignores it and sends `frame` to everyone).
    Conversation {
        conversation_id: ConversationId,
        frame: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        own: Option<WireOwn>,
        skip_user: UserId,
    },
    User {
        user_id: UserId,
        frame: String,
    },
    Membership {
        conversation_id: ConversationId,
        user_id: UserId,
        member: bool,
    },
    EndSession {
        token_hash: [u8; 32],
    },
    /// Close a user's connections (server API: ban, disconnect).
    CloseUser {
        user_id: UserId,
        code: u16,
    },
    /// The sender's first connection of this user opened, or its last one closed.
    Presence {
        user_id: UserId,
        online: bool,
    },
    /// Heartbeat: every user online on the sender. A node silent for the presence TTL is considered gone.
    /// A big snapshot travels in chunks: all but the last say `more`.
    Snapshot {
        users: Vec<UserId>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// A node (re)joined: everyone answers with a snapshot.
    Hello,
    /// A node leaves gracefully.
    Bye,
    /// The sender may have failed to publish some deliveries: every node tells its clients to resync.
    Resync,
}

/// The variant of a conversation push for one member's own connections.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireOwn {
    user_id: UserId,
    frame: String,
}

impl Wire {
    /// The cluster form of a delivery; `None` for what stays on this node (presence watchers are told by
    /// each node from its own view of presence).
    pub fn from_delivery(delivery: &Delivery) -> Option<Wire> {
        Some(match delivery {
            Delivery::Conversation {
                conversation_id,
                frame,
                own,
                skip_user,
                ..
            } => Wire::Conversation {
                conversation_id: *conversation_id,
                frame: frame.as_str().to_owned(),
                own: own.as_ref().map(|own| WireOwn {
                    user_id: own.user_id,
                    frame: own.frame.as_str().to_owned(),
                }),
                skip_user: *skip_user,
            },
            Delivery::User { user_id, frame } => Wire::User {
                user_id: *user_id,
                frame: frame.as_str().to_owned(),
            },
            Delivery::Membership {
                conversation_id,
                user_id,
                member,
            } => Wire::Membership {
                conversation_id: *conversation_id,
                user_id: *user_id,
                member: *member,
            },
            Delivery::EndSession { token_hash } => Wire::EndSession {
                token_hash: *token_hash,
            },
            Delivery::CloseUser { user_id, code } => Wire::CloseUser {
                user_id: *user_id,
                code: *code,
            },
            Delivery::Watchers { .. } => return None,
        })
    }

    /// The local delivery a received message asks for, if it is one.
    pub fn into_delivery(self) -> Result<Delivery, Wire> {
        Ok(match self {
            Wire::Conversation {
                conversation_id,
                frame,
                own,
                skip_user,
            } => Delivery::Conversation {
                conversation_id,
                frame: Utf8Bytes::from(frame),
                own: own.map(|own| OwnFrame {
                    user_id: own.user_id,
                    frame: Utf8Bytes::from(own.frame),
                }),
                // Connection ids start at 1: 0 skips nobody.
                skip_conn: 0,
                skip_user,
            },
            Wire::User { user_id, frame } => Delivery::User {
                user_id,
                frame: Utf8Bytes::from(frame),
            },
            Wire::Membership {
                conversation_id,
                user_id,
                member,
            } => Delivery::Membership {
                conversation_id,
                user_id,
                member,
            },
            Wire::EndSession { token_hash } => Delivery::EndSession { token_hash },
            Wire::CloseUser { user_id, code } => Delivery::CloseUser { user_id, code },
            other => return Err(other),
        })
    }
}
