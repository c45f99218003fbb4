//! A prefix's live room: the xindao room its tunnels join, and who is in it right now (`people`).
//!
//! The room is a public xindao room named `Wafer <prefix>`, found by name or created by the first Wafer
//! user, so its history and members are visible to xindao's own clients. `people` is what the Wafer chat
//! demo shows: the number of open tunnels and who entered or left; it counts the tunnels of this node
//! (a Wafer app ran one tunnel server too). A tunnel of a session that opens a new one is stale (the SDK
//! holds one tunnel at a time, so the old one is a dead socket not yet noticed): it is closed first, so the
//! others see its `leave` before the new `enter`, never a ghost.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::packet;
use crate::app::App;
use crate::chat::Caller;
use crate::error::{Error, Result};
use crate::hub::ConnId;
use crate::model::{ConversationId, Visibility};
use crate::protocol::op::{ConversationArgs, RoomCreateArgs};
use crate::protocol::Op;

/// Public rooms looked through for the room's name before creating it.
const ROOM_SEARCH: usize = 1000;

/// What the room sends a tunnel's task.
#[derive(Debug)]
pub enum RoomSignal {
    /// A packet to write as is.
    Packet(Utf8Bytes),
    /// A newer tunnel of the same session replaced this one: send `close`, then close.
    Replaced,
}

/// One open tunnel in the room.
struct Member {
    session: [u8; 32],
    who: Arc<Value>,
    tx: mpsc::Sender<RoomSignal>,
}

pub struct LiveRoom {
    name: String,
    id: tokio::sync::Mutex<Option<ConversationId>>,
    members: Mutex<HashMap<ConnId, Member>>,
}

impl LiveRoom {
    pub fn new(name: String) -> LiveRoom {
        LiveRoom {
            name,
            id: tokio::sync::Mutex::new(None),
            members: Mutex::new(HashMap::new()),
        }
    }

    /// The room's id, found or created (by `caller`, who then owns it); `caller` is made a member.
    pub async fn join(&self, app: &App, caller: Caller) -> Result<ConversationId> {
        let mut id = self.id.lock().await;
        let room = match *id {
            Some(room) => room,
            None => {
                let found = app
                    .store
                    .public_rooms(ROOM_SEARCH)
                    .await?
                    .into_iter()
                    .find(|room| room.name == self.name)
                    .map(|room| room.id);
                let room = match found {
                    Some(room) => room,
                    None => {
                        let create = Op::RoomCreate(RoomCreateArgs {
                            name: self.name.clone(),
                            visibility: Visibility::Public,
                        });
                        let reply = app.chat.handle(caller, create).await?;
                        let reply: Value = serde_json::from_str(reply.get())
                            .map_err(|e| Error::Internal(format!("room_create reply: {e}")))?;
                        reply["conversation"]["id"]
                            .as_i64()
                            .or_else(|| reply["id"].as_i64())
                            .ok_or_else(|| Error::Internal(format!("room_create reply: {reply}")))?
                    }
                };
                *id = Some(room);
                room
            }
        };
        drop(id);
        let join = Op::RoomJoin(ConversationArgs {
            conversation_id: room,
        });
        app.chat.handle(caller, join).await?;
        Ok(room)
    }

    /// Adds a tunnel: closes the session's stale tunnels (their `leave` first), then tells everyone,
    /// the newcomer included, `people {total, enter}`.
    pub fn enter(
        &self,
        conn: ConnId,
        session: [u8; 32],
        who: Arc<Value>,
        tx: mpsc::Sender<RoomSignal>,
    ) {
        let mut members = self.members.lock();
        let stale: Vec<ConnId> = members
            .iter()
            .filter(|(_, m)| m.session == session)
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            if let Some(old) = members.remove(&id) {
                let _ = old.tx.try_send(RoomSignal::Replaced);
                let total = members.len();
                Self::broadcast(
                    &mut members,
                    "people",
                    json!({ "total": total, "leave": *old.who }),
                );
            }
        }
        members.insert(
            conn,
            Member {
                session,
                who: who.clone(),
                tx,
            },
        );
        let total = members.len();
        Self::broadcast(
            &mut members,
            "people",
            json!({ "total": total, "enter": *who }),
        );
    }

    /// Removes a tunnel (idempotent) and tells the others `people {total, leave}`.
    pub fn leave(&self, conn: ConnId) {
        let mut members = self.members.lock();
        if let Some(gone) = members.remove(&conn) {
            let total = members.len();
            Self::broadcast(
                &mut members,
                "people",
                json!({ "total": total, "leave": *gone.who }),
            );
        }
    }

    /// Open tunnels in the room on this node.
    pub fn total(&self) -> usize {
        self.members.lock().len()
    }

    /// Queues a packet for every member without waiting; a member whose queue is full is dropped as a slow
    /// consumer (its task ends when its sender goes), and the others hear that it left.
    fn broadcast(members: &mut HashMap<ConnId, Member>, kind: &str, content: Value) {
        let mut pending = vec![Utf8Bytes::from(packet::message(kind, &content))];
        while let Some(frame) = pending.pop() {
            let slow: Vec<ConnId> = members
                .iter()
                .filter(|(_, m)| m.tx.try_send(RoomSignal::Packet(frame.clone())).is_err())
                .map(|(&id, _)| id)
                .collect();
            for id in slow {
                if let Some(gone) = members.remove(&id) {
                    tracing::info!(conn = id, "wafer tunnel dropped: room queue full");
                    let total = members.len();
                    let leave = json!({ "total": total, "leave": *gone.who });
                    pending.push(Utf8Bytes::from(packet::message("people", &leave)));
                }
            }
        }
    }
}
