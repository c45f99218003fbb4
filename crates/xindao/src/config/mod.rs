//! Server configuration. One struct, [`Config`], is the source of every key: its field is the TOML key
//! (`heartbeat_ms`), its clap attribute the flag and the default (`--heartbeat-ms`, `15000`), its doc comment
//! the meaning shown by `--help` and docs/configuration.md. [`Flags`] adds the `XINDAO_*` environment
//! variable of each key (`XINDAO_HEARTBEAT_MS`) and the TOML file; layers, lowest first: defaults, file,
//! environment, flags. `store` and `bus` are typed once here ([`StoreConfig`], [`BusConfig`]).

mod cli;
mod endpoint;

pub use cli::{reference_markdown, Flags};
pub use endpoint::{mask_url, BusConfig, QuietParser, Secret, StoreConfig};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// SQLite durability of an acknowledged message (see docs/protocol.md, "Delivery guarantees").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// WAL + synchronous=NORMAL: survives a crash of the process, not necessarily a power loss.
    #[default]
    Normal,
    /// WAL + synchronous=FULL: every ack is fsynced, survives power loss.
    Full,
}

/// Whether `POST /v1/login/dev` is served.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase", try_from = "BoolOrString")]
pub enum DevLogin {
    /// On when no WeChat credentials are configured, off otherwise.
    #[default]
    Auto,
    #[value(alias = "on", alias = "yes", alias = "1")]
    True,
    #[value(alias = "off", alias = "no", alias = "0")]
    False,
}

/// TOML may say `dev_login = true`: accept booleans as well as the words.
#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrString {
    Bool(bool),
    String(String),
}

impl TryFrom<BoolOrString> for DevLogin {
    type Error = String;
    fn try_from(value: BoolOrString) -> Result<Self, String> {
        match value {
            BoolOrString::Bool(true) => Ok(DevLogin::True),
            BoolOrString::Bool(false) => Ok(DevLogin::False),
            BoolOrString::String(s) => <DevLogin as clap::ValueEnum>::from_str(&s, true)
                .map_err(|_| format!("dev_login must be auto, true or false, not `{s}`")),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

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
    /// Development login (`POST /v1/login/dev`, display name -> user): "auto" (on exactly when WeChat is not
    /// configured), "true" or "false".
    #[arg(long, value_enum, default_value_t = DevLogin::default())]
    pub dev_login: DevLogin,
    /// A session expires this many seconds after its last use.
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
    /// Burst of requests allowed per connection.
    #[arg(long, default_value_t = 40)]
    pub rate_burst: u32,
    /// Pushes queued per connection before it is dropped as a slow consumer (4009).
    #[arg(long, default_value_t = 256)]
    pub outbound_queue: usize,
    /// Milliseconds a socket write may take before the connection is dropped.
    #[arg(long, default_value_t = 10_000)]
    pub write_timeout_ms: u64,
    /// Open WebSockets allowed in this process (beyond it: HTTP 503 before upgrading).
    #[arg(long, default_value_t = 19_000)]
    pub max_connections: usize,
    /// Open WebSockets allowed per user on this server (beyond it: HTTP 429 before upgrading).
    #[arg(long, default_value_t = 16)]
    pub max_connections_per_user: usize,
    /// Most messages per group commit (SQLite, and per writer on PostgreSQL).
    #[arg(long, default_value_t = 512)]
    pub commit_batch_max: usize,
    /// Microseconds a group commit waits for more messages when several arrive together but the batch is
    /// small: fewer, larger commits (0: never; a lone message never waits). Unset: the store's own default,
    /// 0 on SQLite (the next batch gathers while one commits) and 1000 on PostgreSQL (a commit there is a
    /// round trip and an fsync).
    #[arg(long)]
    pub commit_linger_us: Option<u64>,
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

    fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            (
                self.presence_ttl_ms >= 300,
                "presence_ttl_ms must be >= 300",
            ),
            (
                self.postgres_pool_size >= 2,
                "postgres_pool_size must be >= 2",
            ),
            (
                !self.bus_channel.is_empty(),
                "bus_channel must not be empty",
            ),
            (self.heartbeat_ms >= 100, "heartbeat_ms must be >= 100"),
            (
                self.idle_timeout_ms > self.heartbeat_ms,
                "idle_timeout_ms must exceed heartbeat_ms",
            ),
            (
                self.max_frame_bytes >= 1024,
                "max_frame_bytes must be >= 1024",
            ),
            (self.max_text_chars >= 1, "max_text_chars must be >= 1"),
            (self.history_page_max >= 1, "history_page_max must be >= 1"),
            (
                self.rate_per_sec >= 1 && self.rate_burst >= 1,
                "rate_per_sec and rate_burst must be >= 1",
            ),
            (self.outbound_queue >= 1, "outbound_queue must be >= 1"),
            (self.max_connections >= 1, "max_connections must be >= 1"),
            (
                self.max_connections_per_user >= 1,
                "max_connections_per_user must be >= 1",
            ),
            (self.commit_batch_max >= 1, "commit_batch_max must be >= 1"),
            (
                (1..=65_536).contains(&self.sqlite_cache_mb),
                "sqlite_cache_mb must be between 1 and 65536",
            ),
            (
                self.commit_linger_us.is_none_or(|us| us <= 100_000),
                "commit_linger_us must be <= 100000",
            ),
            (
                self.session_ttl_secs >= 60,
                "session_ttl_secs must be >= 60",
            ),
            (
                self.wechat_appid.is_some() == self.wechat_secret.is_some(),
                "wechat_appid and wechat_secret go together",
            ),
            (
                self.bus == BusConfig::Local
                    || self
                        .cluster_secret
                        .as_ref()
                        .is_some_and(|secret| secret.as_str().len() >= CLUSTER_SECRET_MIN),
                "a redis or nats bus needs cluster_secret: at least 32 bytes, the same on every node",
            ),
            (
                self.nats_creds_file.is_none() || matches!(self.bus, BusConfig::Nats { .. }),
                "nats_creds_file goes with a nats:// or tls:// bus",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(ConfigError::Invalid(what.into())),
            None => Ok(()),
        }
    }

    /// Whether WeChat login is configured.
    pub fn wechat_enabled(&self) -> bool {
        self.wechat_appid.is_some() && self.wechat_secret.is_some()
    }

    /// Whether the development login is served, after resolving "auto".
    pub fn dev_login_enabled(&self) -> bool {
        match self.dev_login {
            DevLogin::Auto => !self.wechat_enabled(),
            DevLogin::True => true,
            DevLogin::False => false,
        }
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
        toml::to_string(&table).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// How long a group commit lingers: `commit_linger_us`, or else the store's own default.
    pub fn commit_linger(&self) -> Duration {
        let us = self
            .commit_linger_us
            .unwrap_or_else(|| self.store.default_commit_linger_us());
        Duration::from_micros(us)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_zero_configuration_setup() {
        let config = Config::default();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.store, StoreConfig::Sqlite);
        assert_eq!(config.bus, BusConfig::Local);
        assert_eq!(config.session_ttl_secs, 30 * 24 * 3600);
        assert_eq!(config.max_frame_bytes, 64 * 1024);
        assert_eq!(config.dev_login, DevLogin::Auto);
        assert_eq!(config.commit_linger_us, None);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_commit_linger_defaults_to_the_stores_own() {
        let linger = |store: &str, set: Option<u64>| {
            Config {
                store: store.parse().unwrap(),
                commit_linger_us: set,
                ..Config::default()
            }
            .commit_linger()
        };
        assert_eq!(linger("sqlite", None), Duration::ZERO);
        assert_eq!(linger("postgres://u@h/db", None), Duration::from_millis(1));
        assert_eq!(linger("sqlite", Some(250)), Duration::from_micros(250));
        assert_eq!(linger("postgres://u@h/db", Some(0)), Duration::ZERO);
    }

    #[test]
    fn no_secret_in_debug_or_toml() {
        let config = Config {
            store: "postgres://u:pw1@h/db".parse().unwrap(),
            bus: "nats://u:pw2@h:4222".parse().unwrap(),
            wechat_appid: Some("wxA".into()),
            wechat_secret: Some("pw3".into()),
            ..Config::default()
        };
        for shown in [format!("{config:?}"), config.to_toml_masked()] {
            assert!(!shown.contains("pw"), "{shown}");
        }
        assert!(config
            .to_toml_masked()
            .contains("wechat_secret = \"********\""));
    }

    #[test]
    fn dev_login_reads_words_and_booleans() {
        let parse = |toml: &str| toml::from_str::<Config>(toml).map(|c| c.dev_login);
        assert_eq!(parse("dev_login = true").unwrap(), DevLogin::True);
        assert_eq!(parse("dev_login = \"off\"").unwrap(), DevLogin::False);
        assert_eq!(parse("dev_login = \"auto\"").unwrap(), DevLogin::Auto);
        assert!(parse("dev_login = \"maybe\"").is_err());
    }
}
