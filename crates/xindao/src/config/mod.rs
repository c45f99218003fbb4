//! Server configuration. One struct, [`Config`], is the source of every key: its field is the TOML key
//! (`heartbeat_ms`), its clap attribute the flag and the default (`--heartbeat-ms`, `15000`), its doc comment
//! the meaning shown by `--help` and docs/configuration.md. [`Flags`] adds the `XINDAO_*` environment
//! variable of each key (`XINDAO_HEARTBEAT_MS`) and the TOML file; layers, lowest first: defaults, file,
//! environment, flags. `store` and `bus` are typed once here ([`StoreConfig`], [`BusConfig`]).

mod check;
mod cli;
mod endpoint;
mod kinds;
mod load;
pub use load::ConfigError;
mod media;
mod webhooks;
mod wechat;

pub use check::wafer_prefix_ok;
pub use cli::{reference_markdown, Flags};
pub use endpoint::{mask_url, BusConfig, QuietParser, Secret, StoreConfig};
pub use kinds::{AdminListen, DevLogin, LogFormat, SqliteSync};
pub use media::MediaConfig;
pub use webhooks::{BeforeSendFailure, WebhookEndpoint, Webhooks};
pub use wechat::{
    notify_fields, ContentCheck, ContentCheckFailure, ContentReview, NotifySource, WeChatServices,
    WeChatTokenApi,
};

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::rules;

/// The whole configuration of a server. `Config::default()` is the zero-configuration setup: the defaults
/// below, written once in the clap attributes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
// No `deny_unknown_fields`: serde does not support it beside `flatten`; `Config::load` refuses unknown keys.
#[serde(default)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite database.
    #[arg(long, default_value = "xindao-data")]
    pub data_dir: PathBuf,
    /// Storage engine: "sqlite" (embedded, in data_dir) or a PostgreSQL URL, e.g.
    /// "postgres://xindao@db.internal/xindao".
    #[arg(long, default_value = "sqlite")]
    pub store: StoreConfig,
    /// Connections per node to PostgreSQL; one group-commit writer per 4 of them (at most 4), each owning a
    /// share of the conversations.
    #[arg(long, default_value_t = 16)]
    pub postgres_pool_size: usize,
    /// Fan-out between nodes: "local" (one node), "redis://127.0.0.1:6379" or "nats://127.0.0.1:4222".
    #[arg(long, default_value = "local")]
    pub bus: BusConfig,
    /// Redis channel / NATS subject the nodes of one cluster share.
    #[arg(long, default_value = "xindao")]
    pub bus_channel: String,
    /// Shared secret of the cluster's nodes (at least 32 bytes, the same on every node): every bus envelope
    /// carries an HMAC-SHA256 under it, and a node drops what does not verify. Required with a Redis or NATS
    /// bus. Prefer XINDAO_CLUSTER_SECRET or the file to a flag.
    #[arg(long)]
    pub cluster_secret: Option<Secret>,
    /// NATS credentials file (`.creds`: JWT and NKey seed) for a nats:// or tls:// bus.
    #[arg(long)]
    pub nats_creds_file: Option<PathBuf>,
    /// This node's name on the bus, shown in logs (unset: random at each start).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Milliseconds after which a node not heard from is gone, with its users' presence; heartbeats every
    /// third of it.
    #[arg(long, default_value_t = 15_000)]
    pub presence_ttl_ms: u64,
    /// Durability of an ack on SQLite: "normal" (survives a crash of the process) or "full" (also a power
    /// loss).
    #[arg(long, value_enum, default_value_t = SqliteSync::default())]
    pub sqlite_synchronous: SqliteSync,
    /// Size quota of the SQLite database in MiB; when reached (or the disk is full) sends fail with
    /// `unavailable`, reads go on (unset: no quota).
    #[arg(long)]
    pub sqlite_max_db_mb: Option<u64>,
    /// Page cache of SQLite's writing connection in MiB: the index pages that appends touch (about two per
    /// active conversation) stay in memory instead of being read back and spilled to the WAL mid-commit;
    /// filled only as used.
    #[arg(long, default_value_t = 64)]
    pub sqlite_cache_mb: u64,
    /// WeChat mini-program AppID; with wechat_secret enables `POST /v1/login/wechat`.
    #[arg(long)]
    pub wechat_appid: Option<String>,
    /// WeChat mini-program AppSecret (prefer the environment or the file to a flag).
    #[arg(long)]
    pub wechat_secret: Option<Secret>,
    /// Base URL of the WeChat API (tests point it at a local fake).
    #[arg(long, default_value = "https://api.weixin.qq.com")]
    pub wechat_api_base: String,
    /// WeChat's server-side services: the shared `access_token`, the content check and the offline
    /// notifications (config/wechat.rs).
    #[command(flatten)]
    #[serde(flatten)]
    pub wechat_services: WeChatServices,
    /// Shared secret (at least 32 bytes) with which the business backend signs HS256 connection tokens
    /// (JWT, claims `sub`, `exp`, optional `nbf`, `name`, `rooms`); a client sends such a token where it
    /// would send a session token. Prefer XINDAO_JWT_HS256_SECRET or the file to a flag.
    #[arg(long)]
    pub jwt_hs256_secret: Option<Secret>,
    /// PEM file of the public key (Ed25519 for EdDSA, or RSA for RS256) that verifies connection tokens.
    #[arg(long)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS file (JSON `{"keys": [...]}`, Ed25519 or RSA keys with a `kid`) that verifies connection tokens
    /// naming a `kid`.
    #[arg(long)]
    pub jwt_jwks_file: Option<PathBuf>,
    /// The `iss` a connection token must carry (unset: not checked).
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// The `aud` a connection token must carry (unset: not checked).
    #[arg(long)]
    pub jwt_audience: Option<String>,
    /// Development login (`POST /v1/login/dev`: anyone who types a display name becomes that user, with its
    /// history): "auto" (on exactly when WeChat is not configured and `listen` is a loopback address; a
    /// non-loopback server without WeChat refuses to start), "true" (on anywhere, logged as a warning at
    /// start and every five minutes) or "false".
    #[arg(long, value_enum, default_value_t = DevLogin::default())]
    pub dev_login: DevLogin,
    /// Logins (WeChat and development) allowed per client IP address per minute, with a burst of as many;
    /// beyond it: HTTP 429 `rate_limited` with Retry-After. IPv6 clients count per /64.
    #[arg(long, default_value_t = 30)]
    pub login_per_ip_per_minute: u32,
    /// Logins allowed per second on this node, from all clients together, with a burst of as many: bounds
    /// the calls to WeChat's code2Session (its quota is per app) and the sessions created.
    #[arg(long, default_value_t = 50)]
    pub login_per_second: u32,
    /// A session expires this many seconds after its last use (an HTTP call, a WebSocket upgrade, or an open
    /// WebSocket: see docs/protocol.md). Expired sessions are deleted every few minutes.
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    pub session_ttl_secs: u64,
    /// The server pings a connection that has been silent this many milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// A connection silent this many milliseconds is closed (4010).
    #[arg(long, default_value_t = 45_000)]
    pub idle_timeout_ms: u64,
    /// Largest WebSocket frame or message accepted, in bytes (bigger closes with 1009).
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Longest text message, in characters.
    #[arg(long, default_value_t = 4000)]
    pub max_text_chars: usize,
    /// Largest custom message content, in bytes of JSON.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_custom_bytes: usize,
    /// Largest page of history or sync.
    #[arg(long, default_value_t = 200)]
    pub history_page_max: usize,
    /// Rooms with more members than this get membership changes as a `members_changed` summary, at most one
    /// per room per second, instead of a `member` push per change.
    #[arg(long, default_value_t = 500)]
    pub room_member_events_max: usize,
    /// Requests per second allowed per connection.
    #[arg(long, default_value_t = 20)]
    pub rate_per_sec: u32,
    /// Burst of requests allowed per connection. Refused requests are counted too: a connection with more
    /// than `rate_burst` refusals in a 10 s sliding window (a leaky bucket: `rate_burst` refusals, one drained
    /// every 10 s / `rate_burst`) is closed with 4008.
    #[arg(long, default_value_t = 40)]
    pub rate_burst: u32,
    /// Pushes queued per connection before it is dropped as a slow consumer (4009).
    #[arg(long, default_value_t = 256)]
    pub outbound_queue: usize,
    /// Bytes a connection may have outstanding: pushes queued for it plus replies and pushes written to its
    /// socket and not yet taken by it. A push or reply that would go over it closes the connection as a slow
    /// consumer (4009) at once, freeing them. Keep it above the largest reply (a 1 MiB history or sync page
    /// plus one message). Worst-case memory per connection: about max_outstanding_bytes + max_frame_bytes +
    /// 16 KiB, held at most write_timeout_ms (plus, while a request is answered, its reply: at most ~1 MiB).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub max_outstanding_bytes: usize,
    /// Milliseconds a socket may hold back what was written to it before the connection is dropped.
    #[arg(long, default_value_t = 10_000)]
    pub write_timeout_ms: u64,
    /// Open WebSockets allowed in this process (beyond it: HTTP 503 before upgrading).
    #[arg(long, default_value_t = 19_000)]
    pub max_connections: usize,
    /// Open WebSockets allowed per user on this server (beyond it: HTTP 429 before upgrading).
    #[arg(long, default_value_t = 16)]
    pub max_connections_per_user: usize,
    /// HTTP connections accepted but not upgraded to a WebSocket (yet) allowed at once: beyond it a new
    /// connection is closed as soon as it is accepted. Every TCP connection counts from its accept: against
    /// this cap until it upgrades, then against max_connections; together with a reserve for the store they
    /// must fit the open-file limit (else max_connections is lowered at startup, with a warning).
    #[arg(long, default_value_t = 1024)]
    pub max_pending_connections: usize,
    /// Connections allowed per client address, counted twice: HTTP connections not upgraded (beyond it:
    /// closed at accept) and open WebSockets (beyond it: HTTP 429 before upgrading). The address is the
    /// socket's peer, or the one X-Forwarded-For names when that peer is one of trusted_proxies.
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_ip: usize,
    /// Reverse proxies whose X-Forwarded-For header is believed, as CIDRs (comma-separated;
    /// "10.0.0.7/32" for one address). Their own connections are not counted per address; the client
    /// address of a request through them is the rightmost X-Forwarded-For entry that is not a trusted
    /// proxy. Unset: X-Forwarded-For is ignored.
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Milliseconds a client has to send a request's headers, counted from the accept or, on a kept-alive
    /// connection, from the previous response: a slow (slowloris) or idle HTTP connection is closed. A whole
    /// request, body included, must be read and answered within three times this (else 408).
    #[arg(long, default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,
    /// Largest request head (request line and headers) in bytes, at least 8192; a larger one is answered
    /// 431 and the connection closed.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Address of the admin listener, which serves /metrics (and /healthz); "" for none. /metrics is not
    /// served on `listen`: keep this address on loopback or a private network.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: AdminListen,
    /// Keep the histograms of /metrics (request duration per operation, and the per-hop ones: upgrade,
    /// queueing, commit wait and batch size, fan-out, pool wait, bus publish and receive lag). Counters and
    /// gauges are always kept. `false` only to measure what the histograms cost
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub detailed_metrics: bool,
    /// Origins (`scheme://host[:port]`, comma-separated) whose web pages may open a WebSocket; others get
    /// HTTP 403 before upgrading. Unset: only pages served from the host the request names (its Host
    /// header). A request without Origin (mini-programs, native apps) is allowed.
    #[arg(long, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Conversations (rooms and direct) one user may be in. Creating, joining, opening a direct conversation
    /// or being added beyond it answers `limit_reached`; leaving is never capped.
    #[arg(long, default_value_t = rules::MEMBERSHIPS_PER_USER_DEFAULT)]
    pub max_memberships_per_user: u64,
    /// Rooms one user may own; `room_create` beyond it answers `limit_reached`.
    #[arg(long, default_value_t = rules::ROOMS_PER_OWNER_DEFAULT)]
    pub max_rooms_per_owner: u64,
    /// `room_add` requests per user per minute on this node (also the burst); beyond it: `rate_limited`.
    #[arg(long, default_value_t = 60)]
    pub room_adds_per_min: u32,
    /// User lookups per user per minute on this node (also the burst): `user_find`, and `direct_open` or
    /// `send` with `to_user` naming someone the caller has no direct conversation with yet. Beyond it:
    /// `rate_limited`. User ids are sequential; this bounds how fast one account can probe them.
    #[arg(long, default_value_t = 60)]
    pub lookups_per_min: u32,
    /// Distinct client networks (IPv4 /16, IPv6 /32 of the client's address) that get their own series in
    /// `xindao_client_rtt_seconds`; the first ones seen keep theirs until restart, later ones count as
    /// `other`. Bounds the metric's cardinality: 3 client kinds x (this + 1) series.
    #[arg(long, default_value_t = 100)]
    pub client_rtt_max_prefixes: usize,
    /// Server API (`/v1/server/...`) requests per API key per second on this node; beyond it (and the burst):
    /// `429 rate_limited`.
    #[arg(long, default_value_t = 100)]
    pub server_api_rate_per_sec: u32,
    /// Server API requests one API key may make at once above its rate (the bucket's size).
    #[arg(long, default_value_t = 200)]
    pub server_api_burst: u32,
    /// Display name of the system account, which sends the server API's system messages; given when the
    /// account is created (on first use).
    #[arg(long, default_value = "System")]
    pub system_display_name: String,
    /// Seconds after sending within which the sender may `recall` a message; later: `recall_window_passed`.
    #[arg(long, default_value_t = 120)]
    pub recall_window_secs: u64,
    /// Most messages per group commit (SQLite, and per writer on PostgreSQL).
    #[arg(long, default_value_t = 512)]
    pub commit_batch_max: usize,
    /// Microseconds a group commit waits for more messages when several arrive together but the batch is
    /// small: fewer, larger commits (0: never; a lone message never waits). Unset: the store's own default,
    /// 0 on SQLite (the next batch gathers while one commits) and 1000 on PostgreSQL (a commit there is a
    /// round trip and an fsync).
    #[arg(long)]
    pub commit_linger_us: Option<u64>,
    /// Webhook endpoints: a TOML array of tables `{name, url, secret, events}` (in the environment or a flag,
    /// the same list in JSON). `events` filters what each receives: names (`message.created`), prefixes
    /// (`member.*`) or `*` (the default). Events are kept in an outbox in the transaction that commits them
    /// and delivered signed (docs/webhooks.md). None by default: then nothing is kept.
    #[arg(long, default_value = "[]")]
    pub webhooks: Webhooks,
    /// Seconds a webhook delivery is retried (exponential backoff with jitter, from 1 s up to 10 min between
    /// attempts) before it is parked in the dead-letter list (`xindao webhooks dead list|redrive`).
    #[arg(long, default_value_t = 24 * 3600)]
    pub webhook_retry_secs: u64,
    /// Milliseconds before the second attempt of a failed webhook delivery; each further wait doubles (up to
    /// 10 minutes), with 50-100 % jitter.
    #[arg(long, default_value_t = 1000)]
    pub webhook_backoff_ms: u64,
    /// Milliseconds a webhook receiver has to answer a delivery (else it counts as failed and is retried).
    #[arg(long, default_value_t = 5000)]
    pub webhook_timeout_ms: u64,
    /// Most deliveries waiting in the outbox; beyond it new events are not kept (the metric
    /// xindao_webhook_dropped_total and an error log say so) until it drains. Chat is never held back.
    #[arg(long, default_value_t = 1_000_000)]
    pub webhook_outbox_max: u64,
    /// Milliseconds a node's claim on the deliveries it is sending lasts: a node that dies holding some has
    /// them sent by another after this.
    #[arg(long, default_value_t = 30_000)]
    pub webhook_lease_ms: u64,
    /// Deliveries a node sends at once (to different conversations; one conversation's events go one at a
    /// time, in order).
    #[arg(long, default_value_t = 32)]
    pub webhook_concurrency: usize,
    /// Seconds in which at most one `user.offline_message` webhook event is kept per user and conversation:
    /// the first message committed for a member with no open connection (on any node) is announced, the
    /// ones after it in the window are not (docs/webhooks.md). 0 announces every message.
    #[arg(long, default_value_t = 60)]
    pub webhook_offline_window_secs: u64,
    /// URL of the before-send hook: each user message is POSTed to it before it commits, and the answer
    /// accepts, rejects (`rejected` with the hook's reason) or replaces its content (docs/webhooks.md).
    /// Unset: no hook.
    #[arg(long)]
    pub before_send_url: Option<String>,
    /// Key of the `X-Xindao-Signature` header on before-send calls (same scheme as webhooks); unset: calls
    /// are not signed.
    #[arg(long)]
    pub before_send_secret: Option<Secret>,
    /// Milliseconds the before-send hook has to answer.
    #[arg(long, default_value_t = 1000)]
    pub before_send_timeout_ms: u64,
    /// What a send does when the before-send hook fails (down, timeout, bad answer): "open" (sent as it is)
    /// or "closed" (refused with `unavailable`).
    #[arg(long, value_enum, default_value_t = BeforeSendFailure::default())]
    pub before_send_failure: BeforeSendFailure,
    /// Path prefix of the Wafer 2 compatible endpoints (e.g. "/weapp": `GET /weapp/login`, `/weapp/user`,
    /// `/weapp/tunnel`), for mini-programs built on wafer2-client-sdk (docs/wafer.md). Unset: not served.
    /// Needs WeChat login (wechat_appid, wechat_secret).
    #[arg(long)]
    pub wafer_prefix: Option<String>,
    /// Path prefix of the Wafer 1 compatible endpoints (e.g. "/wafer1": `/wafer1/login`, `/wafer1/user`,
    /// `/wafer1/tunnel`), for wafer-client-sdk 0.x. Unset: not served. Needs WeChat login.
    #[arg(long)]
    pub wafer1_prefix: Option<String>,
    /// Base of the tunnel URLs handed to Wafer clients, e.g. "wss://chat.example.com" behind a TLS proxy.
    /// Unset: "ws://" and the Host of the tunnel request.
    #[arg(long)]
    pub wafer_public_url: Option<String>,
    /// Seconds between a Wafer client's pings (sent to it as `timeout:N` when its tunnel opens); a tunnel
    /// silent for three of them is closed as a dead peer.
    #[arg(long, default_value_t = 15)]
    pub wafer_heartbeat_secs: u64,
    /// Tunnel-service mode: the `tunnelSignatureKey` shared with existing Wafer business servers, which then
    /// use `<this server>/wafer-tunnel` as their `tunnelServerUrl` (docs/wafer.md). Unset: not served. Prefer
    /// XINDAO_WAFER_TUNNEL_KEY or the file to a flag.
    #[arg(long)]
    pub wafer_tunnel_key: Option<Secret>,
    /// The `tcId`s (md5 of a business server's `serverHost`) allowed to use the tunnel service,
    /// comma-separated; empty: any that signs with wafer_tunnel_key.
    #[arg(long, value_delimiter = ',')]
    pub wafer_tunnel_tc_ids: Vec<String>,
    /// Serve `POST /wafer-auth`, a replacement for the Wafer 1 auth service (`AuthServerUrl` of
    /// qcloud-weapp-server-sdk business servers), backed by WeChat login (needs wechat_appid, wechat_secret).
    #[arg(long, default_value_t = false)]
    pub wafer_auth: bool,
    /// Media uploads: storage, limits and signed URLs (config/media.rs).
    #[command(flatten)]
    #[serde(flatten)]
    pub media: MediaConfig,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "xindao=debug,info".
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Log format: "text" or "json".
    #[arg(long, value_enum, default_value_t = LogFormat::default())]
    pub log_format: LogFormat,
    /// OpenTelemetry trace export: the OTLP/HTTP collector's base URL, e.g. "http://127.0.0.1:4318" (Jaeger,
    /// Tempo, an OpenTelemetry Collector; spans go to `<url>/v1/traces` as protobuf). Unset: no export.
    #[arg(long)]
    pub otel_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    #[arg(long, default_value = "xindao")]
    pub otel_service_name: String,
    /// Share of traces exported (0.0 to 1.0), decided at each trace's root; a request carrying a sampled
    /// `traceparent` is always exported.
    #[arg(long, default_value_t = 1.0)]
    pub otel_sample_ratio: f64,
}

/// Fewest bytes of `cluster_secret`: 256 bits, the HMAC-SHA256 key size.
pub const CLUSTER_SECRET_MIN: usize = 32;

#[cfg(test)]
mod tests;
