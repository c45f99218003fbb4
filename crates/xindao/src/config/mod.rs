//! Server configuration. One struct, [`Config`], is the source of every key: its field is the TOML key
//! (`heartbeat_ms`), its clap attribute the flag and the default (`--heartbeat-ms`, `15000`), its doc comment
//! the meaning shown by `--help` and docs/configuration.md. [`Flags`] adds the `XINDAO_*` environment
//! variable of each key (`XINDAO_HEARTBEAT_MS`) and the TOML file; layers, lowest first: defaults, file,
//! environment, flags. `store` and `bus` are typed once here ([`StoreConfig`], [`BusConfig`]).

mod check;
mod cli;
mod endpoint;
mod kinds;
mod webhooks;
mod wechat;

pub use check::wafer_prefix_ok;
pub use cli::{reference_markdown, Flags};
pub use endpoint::{mask_url, BusConfig, QuietParser, Secret, StoreConfig};
pub use kinds::{AdminListen, DevLogin, LogFormat, SqliteSync};
pub use webhooks::{BeforeSendFailure, WebhookEndpoint, Webhooks};
pub use wechat::{
    notify_fields, ContentCheck, ContentCheckFailure, ContentReview, NotifySource, WeChatTokenApi,
};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::rules;

/// The whole configuration of a server. `Config::default()` is the zero-configuration setup: the defaults
/// below, written once in the clap attributes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(default, deny_unknown_fields)]
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
    /// Where the WeChat `access_token` comes from: "stable" (`cgi-bin/stable_token`) or "token"
    /// (`cgi-bin/token`). One token serves every node: it is kept in the store and refreshed by one node.
    #[arg(long, value_enum, default_value_t = WeChatTokenApi::default())]
    pub wechat_token_api: WeChatTokenApi,
    /// Content check of user text before it commits: "off" or "wechat" (`wxa/msg_sec_check` v2, for
    /// senders who logged in with WeChat; needs wechat_appid, wechat_secret). WeChat's "risky" refuses the
    /// send with `content_rejected`.
    #[arg(long, value_enum, default_value_t = ContentCheck::default())]
    pub content_check: ContentCheck,
    /// The `scene` of the content check: 1 profile, 2 comment, 3 forum, 4 social log.
    #[arg(long, default_value_t = 2)]
    pub content_check_scene: u8,
    /// What a send does when WeChat answers "review": "allow", "reject" (`content_rejected`) or "flag"
    /// (sent, and the webhook event `message.flagged` names it).
    #[arg(long, value_enum, default_value_t = ContentReview::default())]
    pub content_review: ContentReview,
    /// What a send does when the check cannot be made (timeout, WeChat errors such as 45009 over quota,
    /// the local rate limit): "allow" (sent unchecked) or "reject" (refused with `unavailable`).
    #[arg(long, value_enum, default_value_t = ContentCheckFailure::default())]
    pub content_check_failure: ContentCheckFailure,
    /// Milliseconds WeChat has to answer one content check (token fetch included).
    #[arg(long, default_value_t = 1000)]
    pub content_check_timeout_ms: u64,
    /// Content checks per minute this node makes (also the burst); beyond it content_check_failure decides.
    /// WeChat allows 4000 a minute per app: split it between the nodes.
    #[arg(long, default_value_t = 4000)]
    pub content_check_per_min: u32,
    /// Template id of the subscribe message (`subscribeMessage.send`) sent to a WeChat user who has no open
    /// connection when a message arrives, one per one-time grant (`notify_grant`). Unset: no notification.
    #[arg(long)]
    pub wechat_notify_template: Option<String>,
    /// Page the notification opens, e.g. "pages/chat/chat?conversation_id={conversation_id}" (the braces
    /// are filled in). Unset: the mini-program's home page.
    #[arg(long)]
    pub wechat_notify_page: Option<String>,
    /// The template's fields: `key=source` pairs, comma-separated, sources sender, text, time, conversation;
    /// e.g. "thing1=sender,thing2=text,time3=time".
    #[arg(long, default_value = "")]
    pub wechat_notify_fields: String,
    /// Characters of a message's text in the notification (WeChat's `thing` fields hold 20).
    #[arg(long, default_value_t = 20)]
    pub wechat_notify_preview_chars: usize,
    /// Seconds during which a user gets at most one notification per conversation.
    #[arg(long, default_value_t = 300)]
    pub wechat_notify_window_secs: u64,
    /// The `miniprogram_state` of notifications: "developer", "trial" or "formal".
    #[arg(long, default_value = "formal")]
    pub wechat_notify_state: String,
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
    /// Where uploaded media (images, voice, files) are kept: "local" (under data_dir/media, one node) or
    /// S3-compatible object storage, "s3://bucket" or "s3://bucket/prefix" (any S3 API; for clusters). Uploads
    /// are first streamed to data_dir/media/tmp either way.
    #[arg(long, default_value = "local")]
    pub media_storage: String,
    /// Endpoint of the S3-compatible storage, e.g. "http://127.0.0.1:9000" (unset: AWS, or AWS_ENDPOINT).
    #[arg(long)]
    pub media_s3_endpoint: Option<String>,
    /// Region of the S3 bucket (unset: AWS_REGION or "us-east-1").
    #[arg(long)]
    pub media_s3_region: Option<String>,
    /// Access key id for the S3 storage (unset: AWS_ACCESS_KEY_ID).
    #[arg(long)]
    pub media_s3_access_key_id: Option<String>,
    /// Secret access key for the S3 storage (unset: AWS_SECRET_ACCESS_KEY; prefer the environment or the
    /// file to a flag).
    #[arg(long)]
    pub media_s3_secret_access_key: Option<Secret>,
    /// Key of the HMAC that signs media download URLs (at least 32 bytes, the same on every node). Unset:
    /// derived from cluster_secret when that is set, else generated once and kept in data_dir/media.secret.
    #[arg(long)]
    pub media_secret: Option<Secret>,
    /// A signed media URL (`media_url`) is valid for at least this many seconds (at most a quarter more, so
    /// that repeated requests get the same, cacheable URL).
    #[arg(long, default_value_t = 3600)]
    pub media_url_ttl_secs: u64,
    /// Largest image upload, in MiB.
    #[arg(long, default_value_t = 10)]
    pub media_max_image_mb: u64,
    /// Largest voice upload, in MiB.
    #[arg(long, default_value_t = 5)]
    pub media_max_voice_mb: u64,
    /// Largest file upload, in MiB.
    #[arg(long, default_value_t = 25)]
    pub media_max_file_mb: u64,
    /// Most pixels (width x height) of an uploaded image, read from its header before anything is decoded:
    /// bounds the memory of decoding (4 bytes a pixel) and refuses decompression bombs.
    #[arg(long, default_value_t = 25_000_000)]
    pub media_max_image_pixels: u64,
    /// Uploads per user per minute on this node (also the burst); beyond it: HTTP 429 `rate_limited`.
    #[arg(long, default_value_t = 30)]
    pub media_uploads_per_min: u32,
    /// MiB one user may upload per 24 hours; beyond it: HTTP 409 `limit_reached`.
    #[arg(long, default_value_t = 1024)]
    pub media_quota_mb_per_day: u64,
    /// Longest an upload may take, in seconds (other HTTP requests get three header timeouts); a client that
    /// sends nothing for http_header_timeout_ms meanwhile is cut off.
    #[arg(long, default_value_t = 600)]
    pub media_upload_timeout_secs: u64,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "xindao=debug,info".
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Log format: "text" or "json".
    #[arg(long, value_enum, default_value_t = LogFormat::default())]
    pub log_format: LogFormat,
}

/// Fewest bytes of `cluster_secret`: 256 bits, the HMAC-SHA256 key size.
pub const CLUSTER_SECRET_MIN: usize = 32;

impl Default for Config {
    /// The defaults in the clap attributes above, parsed as if no flag were given (no environment read).
    fn default() -> Self {
        let matches = Config::augment_args(clap::Command::new("defaults"))
            .try_get_matches_from(["defaults"])
            .and_then(|matches| Config::from_arg_matches(&matches));
        matches.expect("every default in Config's clap attributes parses")
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults <- TOML file (if given) <- `overrides` (the keys given in the environment or as flags,
    /// see [`Flags::load`]), then checks the limits that types cannot express.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &impl Serialize,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Whether WeChat login is configured.
    pub fn wechat_enabled(&self) -> bool {
        self.wechat_appid.is_some() && self.wechat_secret.is_some()
    }

    /// Whether business connection tokens (JWT) are configured.
    pub fn jwt_enabled(&self) -> bool {
        self.jwt_hs256_secret.is_some()
            || self.jwt_public_key_file.is_some()
            || self.jwt_jwks_file.is_some()
    }

    /// Whether the server listens on loopback only (127.0.0.0/8 or ::1): nobody else can reach it.
    pub fn listens_on_loopback(&self) -> bool {
        self.listen.ip().is_loopback()
    }

    /// Whether the development login is served, after resolving "auto".
    pub fn dev_login_enabled(&self) -> bool {
        match self.dev_login {
            DevLogin::Auto => {
                !self.wechat_enabled() && !self.jwt_enabled() && self.listens_on_loopback()
            }
            DevLogin::True => true,
            DevLogin::False => false,
        }
    }

    /// Refuses the one setup that used to expose the development login by accident: "auto", no WeChat, and a
    /// listen address others can reach. Checked at start (not in [`Config::load`], so that `xindao config`
    /// still shows such a configuration).
    pub fn check_login_exposure(&self) -> Result<(), ConfigError> {
        if self.dev_login == DevLogin::Auto
            && !self.wechat_enabled()
            && !self.jwt_enabled()
            && !self.listens_on_loopback()
        {
            return Err(ConfigError::Invalid(format!(
                "no login is configured for {}, which is not a loopback address: configure WeChat login \
                 (wechat_appid, wechat_secret), or set dev_login = \"true\" to serve the development login \
                 (anyone can log in as any name) on purpose, or dev_login = \"false\"",
                self.listen
            )));
        }
        Ok(())
    }

    /// The configuration as TOML, with secrets masked (for `xindao config`).
    pub fn to_toml_masked(&self) -> String {
        let mut table = match toml::Table::try_from(self) {
            Ok(table) => table,
            Err(e) => return format!("# cannot render: {e}\n"),
        };
        table.insert("store".into(), self.store.to_string().into());
        table.insert("bus".into(), self.bus.to_string().into());
        if self.wechat_secret.is_some() {
            table.insert("wechat_secret".into(), endpoint::MASK.into());
        }
        if self.cluster_secret.is_some() {
            table.insert("cluster_secret".into(), endpoint::MASK.into());
        }
        if self.jwt_hs256_secret.is_some() {
            table.insert("jwt_hs256_secret".into(), endpoint::MASK.into());
        }
        if self.before_send_secret.is_some() {
            table.insert("before_send_secret".into(), endpoint::MASK.into());
        }
        if let Some(toml::Value::Array(endpoints)) = table.get_mut("webhooks") {
            for endpoint in endpoints {
                if let Some(fields) = endpoint.as_table_mut() {
                    fields.insert("secret".into(), endpoint::MASK.into());
                }
            }
        }
        if self.wafer_tunnel_key.is_some() {
            table.insert("wafer_tunnel_key".into(), endpoint::MASK.into());
        }
        for (key, set) in [
            ("media_secret", self.media_secret.is_some()),
            (
                "media_s3_secret_access_key",
                self.media_s3_secret_access_key.is_some(),
            ),
        ] {
            if set {
                table.insert(key.into(), endpoint::MASK.into());
            }
        }
        toml::to_string(&table).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// How long a group commit lingers: `commit_linger_us`, or else the store's own default.
    pub fn commit_linger(&self) -> Duration {
        let us = self
            .commit_linger_us
            .unwrap_or_else(|| self.store.default_commit_linger_us());
        Duration::from_micros(us)
    }

    /// The membership caps the stores enforce.
    pub fn caps(&self) -> rules::Caps {
        rules::Caps {
            memberships_per_user: self.max_memberships_per_user,
            rooms_per_owner: self.max_rooms_per_owner,
        }
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }
    pub fn http_header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
    }
}

#[cfg(test)]
mod tests;
