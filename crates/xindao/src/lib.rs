//! xindao (信道): a real-time chat server for WeChat mini-programs and the web.
//!
//! The modules in the order a request meets them (data flows one way; none reaches back):
//!
//! - [`http`]: the [`Server`] (listen, accept, graceful shutdown) and the HTTP routes: login and logout
//!   ([`auth`] issues and checks the bearer tokens), the server API, media upload and download, health,
//!   metrics, the admin page, the embedded web client.
//! - [`conn`]: `GET /v1/ws` is admitted and upgraded; then the connection's future owns its socket, the only
//!   writer of it: it reads requests and writes their replies and the pushes queued for it. The node's
//!   [`shards`] (one task per runtime worker) poll those futures, so a delivery wakes one task per shard.
//! - [`protocol`]: a frame becomes a request (envelope, operation, arguments); replies and events go back
//!   out as JSON frames.
//! - [`chat`]: each operation, authorised and validated ([`validate`]), against the [`store`]; pushes are
//!   published on the [`bus`]. The store's writers hand every committed batch to fan-out
//!   ([`chat::fanout`]), which encodes each message's push once and publishes it.
//! - [`rules`]: who may join, add, remove, leave and hand over a room, and when a session expires: plain
//!   functions, called by the stores inside the transaction that applies them (so they stay race-free).
//! - [`store`]: the source of truth (SQLite embedded, or PostgreSQL for clusters), behind one trait.
//! - [`bus`]: carries deliveries to every node that may hold a recipient (local, or a cluster over Redis
//!   or NATS) and answers who is online.
//! - [`hub`]: this node's connections and the conversations they follow; routes each delivery into the
//!   recipients' bounded queues ([`hub::outbox`](mod@hub::outbox)), which their connection tasks write.
//!
//! Beside them, [`wafer`] serves Wafer's session and tunnel protocol on top of the same parts, for
//! mini-programs built on Tencent's Wafer SDKs.
//! [`webhooks`] tells a business backend what happened and asks its before-send hook; [`wechat`] runs
//! WeChat's content check before a send commits and notifies offline WeChat users after it (both called by
//! [`chat`]).
//!
//! Around them: [`app`] (the shared state, its assembly and its ordered teardown), [`config`], [`peer`] (who
//! the client is, and connections per address), [`limits`] (per-user rate limits), [`media`] (uploaded
//! files: checks, storage, signed URLs), [`webhooks`] (the outbox's delivery and the before-send hook),
//! [`model`] (the stored types), [`error`] (one error type, with its wire code and HTTP status), [`obs`] and
//! [`metrics`]. The `xindao` binary is a thin command line around [`Server`] (and [`probe`]).
//!
//! Imports only point down this list's layers: `scripts/import_graph.py` (run by the test suite) fails on any
//! circle between modules.

// In request order, as above (one per group, so that rustfmt keeps the order).
pub mod http;
pub use http::Server;

pub mod conn;
pub mod shards;

pub mod protocol;

pub mod chat;

pub mod limits;
pub mod validate;

pub mod auth;

pub mod rules;
pub mod store;

pub mod bus;

pub mod hub;

pub mod media;
pub mod wafer;
pub mod webhooks;
pub mod wechat;

// Around them.
pub mod app;
pub mod config;
pub mod error;
pub mod metrics;
pub mod model;
pub mod obs;
pub mod peer;
pub mod probe;

pub use config::Config;
pub use error::{Error, Result};
