//! xindao's integration tests: one test binary, one module per area. Each test starts real servers on
//! 127.0.0.1 port 0 (in-process, or the real binary where a process must die) and drives them through the
//! real interface: HTTP and WebSocket clients.
//!
//! Run them all with `cargo test -p xindao --test it`, one module with `cargo test -p xindao --test it chat::`,
//! one test by its full name with `--exact`, e.g.
//! `cargo test -p xindao --test it -- --exact chat::presence_and_typing`.
//!
//! The tests that need PostgreSQL (127.0.0.1:5432, trust auth, database `test`), Redis (6379) or NATS (4222)
//! — in `store_suite` and `cluster` — use the real services: each makes its own database and bus channel and
//! drops them afterwards. When a service is not reachable such a test prints `SKIPPED: ...` on stderr (never
//! captured) and passes without running; it is never faked.
//!
//! - `common`: the harness: an in-process server, dev login, a protocol client over a real WebSocket.
//! - `services`: PostgreSQL databases per test, Redis/NATS reachability and restarts, killable nodes.

mod common;
mod services;

mod bad_input;
mod before_send;
mod bus_auth;
mod chat;
mod client_stats;
mod cluster;
mod config;
mod conn_budget;
mod delivery;
mod deploy_files;
mod edge;
mod edge_access;
mod example_backend;
mod fake_wechat_api;
mod hostile;
mod jwt;
mod jwt_expiry;
mod lockout;
mod login;
mod login_burst;
mod login_hardening;
mod media;
mod media_backfill;
mod media_flow;
mod media_release;
mod media_storage;
mod membership;
mod metrics_where;
mod obs;
mod offline_marks;
mod otel;
mod probe;
mod profiles;
mod protocol_edges;
mod push_order;
mod recall;
mod request_ids;
mod server_api;
mod server_api_client;
mod server_api_cluster;
mod server_api_edges;
mod server_api_moderation;
mod server_api_profiles;
mod server_api_webhooks;
mod server_api_wechat;
mod store_caps;
mod store_migrate;
mod store_profiles;
mod store_profiles_cost;
mod store_suite;
mod wafer;
mod wafer_auth;
mod wafer_bad_input;
mod wafer_service;
mod webhook_batches;
mod webhook_events;
mod webhook_receiver;
mod webhooks;
mod webhooks_cluster;
mod webhooks_cluster3;
mod wechat_checks;
mod wechat_notify;
