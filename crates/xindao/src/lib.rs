//! xindao (信道): a real-time chat server for WeChat mini-programs and the web.
//!
//! Data flows one way: socket ([`transport`]) -> decoded frame ([`protocol`]) -> authorised operation
//! ([`chat`]) -> [`store`] and [`bus`] -> [`hub`] -> socket. [`server::Server`] wires it together; the
//! `xindao` binary is a thin command line around it.

pub mod api;
pub mod auth;
pub mod bus;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod error;
pub mod hub;
pub mod mailbox;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod rules;
pub mod server;
pub mod store;
pub mod transport;
pub mod validate;

pub use config::Config;
pub use error::{Error, Result};
pub use server::Server;
