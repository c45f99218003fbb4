//! Server configuration: defaults, overlaid by a TOML file, then `XINDAO_*` environment variables, then flags.
//!
//! Every key is flat so that the same name works in all three places: `heartbeat_ms` in TOML,
//! `XINDAO_HEARTBEAT_MS` in the environment, `--heartbeat-ms` on the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// SQLite durability of an acknowledged message (see docs/protocol.md, "Delivery guarantees").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// WAL + synchronous=NORMAL: survives a crash of the process, not necessarily a power loss.
    #[default]
    Normal,
    /// WAL + synchronous=FULL: every ack is fsynced, survives power loss.
    Full,
}

/// Whether `POST /v1/login/dev` is served.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase", try_from = "BoolOrString")]
pub enum DevLogin {
    /// On when no WeChat credentials are configured, off otherwise.
    #[default]
    Auto,
    True,
    False,
}

/// Environment variables arrive as `true`/`false` booleans; accept those as well as the words.
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
            BoolOrString::String(s) => match s.to_ascii_lowercase().as_str() {
                "auto" => Ok(DevLogin::Auto),
                "true" | "on" | "yes" | "1" => Ok(DevLogin::True),
                "false" | "off" | "no" | "0" => Ok(DevLogin::False),
                other => Err(format!(
                    "dev_login must be auto, true or false, not `{other}`"
                )),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The whole configuration of a server. `Config::default()` is the zero-configuration setup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the embedded SQLite database.
    pub data_dir: PathBuf,
    /// Storage engine: "sqlite" (embedded, in data_dir) or a PostgreSQL URL "postgres://user@host/db".
    pub store: String,
    /// Pooled connections per node to PostgreSQL.
    pub postgres_pool_size: usize,
    /// Fan-out between nodes: "local" (one node), "redis://host:6379" or "nats://host:4222".
    pub bus: String,
    /// Redis channel / NATS subject the nodes of one cluster share.
    pub bus_channel: String,
    /// This node's name on the bus (unset: random at each start).
    pub node_id: Option<String>,
    /// Shared secret of the cluster's nodes (at least 32 bytes, the same on every node): every bus envelope
    /// carries an HMAC-SHA256 under it, and a node drops what does not verify. Required with a redis:// or
    /// nats:// bus. Prefer XINDAO_CLUSTER_SECRET or the file to a flag.
    pub cluster_secret: Option<String>,
    /// NATS credentials file (JWT + NKey seed, `.creds`) for a nats:// or tls:// bus.
    pub nats_creds_file: Option<PathBuf>,
    /// A node not heard from for this long is gone, with its users' presence; heartbeats every third of it.
    pub presence_ttl_ms: u64,
    /// Durability of an ack on SQLite: "normal" or "full".
    pub sqlite_synchronous: SqliteSync,
    /// Largest size of the SQLite database in MiB; beyond it sends fail with `unavailable` (unset: no quota).
    pub sqlite_max_db_mb: Option<u64>,
    /// Page cache of SQLite's writing connection in MiB: the index leaves that appends touch (about two per
    /// active conversation) stay in memory instead of being read back and spilled to the WAL mid-commit.
    pub sqlite_cache_mb: u64,
    /// WeChat mini-program AppID; with wechat_secret enables WeChat login.
    pub wechat_appid: Option<String>,
    /// WeChat mini-program AppSecret.
    pub wechat_secret: Option<String>,
    /// Base URL of the WeChat API (tests point it at a local fake).
    pub wechat_api_base: String,
    /// Development login (display name -> user): "auto", "true" or "false".
    pub dev_login: DevLogin,
    /// A session expires this many seconds after its last use.
    pub session_ttl_secs: u64,
    /// The server pings a connection that has been silent this long.
    pub heartbeat_ms: u64,
    /// A connection silent this long is closed (4010).
    pub idle_timeout_ms: u64,
    /// Largest WebSocket frame or message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Longest text message, in characters.
    pub max_text_chars: usize,
    /// Largest custom message content, in bytes of JSON.
    pub max_custom_bytes: usize,
    /// Largest page of history or sync.
    pub history_page_max: usize,
    /// Requests per second allowed per connection.
    pub rate_per_sec: u32,
    /// Burst of requests allowed per connection.
    pub rate_burst: u32,
    /// Pushes queued per connection before it is dropped as a slow consumer (4009).
    pub outbound_queue: usize,
    /// A socket write taking longer than this drops the connection.
    pub write_timeout_ms: u64,
    /// Open WebSockets allowed in this process.
    pub max_connections: usize,
    /// Open WebSockets allowed per user on this server.
    pub max_connections_per_user: usize,
    /// Most messages committed in one SQLite transaction (group commit).
    pub commit_batch_max: usize,
    /// Microseconds a group commit waits for more messages when several are sending at once (0: never).
    /// Unset: the store's own default ([`Config::group_commit`]).
    pub commit_linger_us: Option<u64>,
    /// Log filter, e.g. "info" or "xindao=debug,info".
    pub log: String,
    /// Log format: "text" or "json".
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("xindao-data"),
            store: "sqlite".into(),
            postgres_pool_size: 16,
            bus: "local".into(),
            bus_channel: "xindao".into(),
            node_id: None,
            cluster_secret: None,
            nats_creds_file: None,
            presence_ttl_ms: 15_000,
            sqlite_synchronous: SqliteSync::Normal,
            sqlite_max_db_mb: None,
            sqlite_cache_mb: 64,
            wechat_appid: None,
            wechat_secret: None,
            wechat_api_base: "https://api.weixin.qq.com".into(),
            dev_login: DevLogin::Auto,
            session_ttl_secs: 30 * 24 * 3600,
            heartbeat_ms: 15_000,
            idle_timeout_ms: 45_000,
            max_frame_bytes: 64 * 1024,
            max_text_chars: 4000,
            max_custom_bytes: 16 * 1024,
            history_page_max: 200,
            rate_per_sec: 20,
            rate_burst: 40,
            outbound_queue: 256,
            write_timeout_ms: 10_000,
            max_connections: 19_000,
            max_connections_per_user: 16,
            commit_batch_max: 512,
            commit_linger_us: None,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
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
    /// Loads defaults <- TOML file (if given) <- `XINDAO_*` environment <- `overrides` (from flags).
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &impl Serialize,
    ) -> Result<Config, ConfigError> {
        // Only XINDAO_<KEY> for real keys: other XINDAO_* variables (scripts' own) are not configuration.
        let keys: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let config: Config = figment
            .merge(
                Env::prefixed("XINDAO_").filter(move |key| keys.iter().any(|k| key == k.as_str())),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid(what.into()))
            }
        };
        check(
            self.store == "sqlite" || self.postgres_url().is_some(),
            "store must be \"sqlite\" or a postgres:// URL",
        )?;
        check(
            self.bus == "local"
                || BUS_SCHEMES
                    .iter()
                    .any(|scheme| self.bus.starts_with(scheme)),
            "bus must be \"local\", redis://, rediss://, nats:// or tls://...",
        )?;
        check(
            self.bus == "local"
                || self
                    .cluster_secret
                    .as_ref()
                    .is_some_and(|s| s.len() >= CLUSTER_SECRET_MIN),
            "a redis or nats bus needs cluster_secret: at least 32 bytes, the same on every node",
        )?;
        check(
            self.nats_creds_file.is_none()
                || self.bus.starts_with("nats://")
                || self.bus.starts_with("tls://"),
            "nats_creds_file goes with a nats:// or tls:// bus",
        )?;
        check(
            self.presence_ttl_ms >= 300,
            "presence_ttl_ms must be >= 300",
        )?;
        check(
            self.postgres_pool_size >= 2,
            "postgres_pool_size must be >= 2",
        )?;
        check(
            !self.bus_channel.is_empty(),
            "bus_channel must not be empty",
        )?;
        check(self.heartbeat_ms >= 100, "heartbeat_ms must be >= 100")?;
        check(
            self.idle_timeout_ms > self.heartbeat_ms,
            "idle_timeout_ms must exceed heartbeat_ms",
        )?;
        check(
            self.max_frame_bytes >= 1024,
            "max_frame_bytes must be >= 1024",
        )?;
        check(self.max_text_chars >= 1, "max_text_chars must be >= 1")?;
        check(self.history_page_max >= 1, "history_page_max must be >= 1")?;
        check(
            self.rate_per_sec >= 1 && self.rate_burst >= 1,
            "rate_per_sec and rate_burst must be >= 1",
        )?;
        check(self.outbound_queue >= 1, "outbound_queue must be >= 1")?;
        check(self.max_connections >= 1, "max_connections must be >= 1")?;
        check(
            self.max_connections_per_user >= 1,
            "max_connections_per_user must be >= 1",
        )?;
        check(self.commit_batch_max >= 1, "commit_batch_max must be >= 1")?;
        check(
            (1..=65_536).contains(&self.sqlite_cache_mb),
            "sqlite_cache_mb must be between 1 and 65536",
        )?;
        check(
            self.commit_linger_us.is_none_or(|us| us <= 100_000),
            "commit_linger_us must be <= 100000",
        )?;
        check(
            self.session_ttl_secs >= 60,
            "session_ttl_secs must be >= 60",
        )?;
        check(
            self.wechat_appid.is_some() == self.wechat_secret.is_some(),
            "wechat_appid and wechat_secret go together",
        )?;
        Ok(())
    }

    /// The PostgreSQL URL when `store` is one.
    pub fn postgres_url(&self) -> Option<&str> {
        ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| self.store.starts_with(scheme))
            .then_some(self.store.as_str())
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
        let mut shown = self.clone();
        if shown.wechat_secret.is_some() {
            shown.wechat_secret = Some("********".into());
        }
        if shown.cluster_secret.is_some() {
            shown.cluster_secret = Some("********".into());
        }
        shown.store = mask_url_password(&shown.store);
        shown.bus = mask_url_password(&shown.bus);
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    /// How the store groups message appends into commits (`commit_batch_max`, `commit_linger_us`).
    ///
    /// Unless `commit_linger_us` is set, SQLite never lingers: its commit takes ~100 µs (no fsync per commit),
    /// the next batch gathers while one commits, and a 1 ms linger doubled the 1:1 median latency at every load
    /// below saturation without raising the ceiling. PostgreSQL lingers 1 ms: a commit there is a round trip
    /// and an fsync, and without the linger the median latency doubled near its ceiling (BENCHMARKS.md).
    pub fn group_commit(&self) -> crate::store::GroupCommit {
        let default_linger_us = if self.postgres_url().is_some() {
            1000
        } else {
            0
        };
        crate::store::GroupCommit {
            batch_max: self.commit_batch_max,
            linger: Duration::from_micros(self.commit_linger_us.unwrap_or(default_linger_us)),
        }
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }
}

/// The bus URL schemes: Redis (plain, TLS) and NATS (plain or TLS as the server asks, TLS required).
pub const BUS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "nats://", "tls://"];

/// Fewest bytes of `cluster_secret`: 256 bits, the HMAC-SHA256 key size.
pub const CLUSTER_SECRET_MIN: usize = 32;

/// A URL fit for a log line or an error message: the password (`scheme://user:secret@host`), a NATS token
/// (`nats://token@host`) and `password=`/`token=` query values become `********`; anything else unchanged.
pub fn mask_url_password(url: &str) -> String {
    const MASK: &str = "********";
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{host}"),
            // A lone userinfo is a token on NATS, a user name elsewhere.
            None if matches!(scheme, "nats" | "tls") => format!("{MASK}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((before, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if ["password", "pass", "token", "sslpassword"]
                            .contains(&key.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{key}={MASK}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{before}?{}", query.join("&"))
        }
        None => path.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

/// Command-line overrides for `xindao serve` and `xindao config`; each flag also reads `XINDAO_<NAME>`
/// through the configuration loader. Unset flags leave lower layers alone.
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct Flags {
    /// TOML configuration file (keys as in `xindao config`).
    #[arg(long, short = 'c', env = "XINDAO_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded SQLite database.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Storage engine: sqlite or postgres://user@host/db.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// PostgreSQL connections per node.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_pool_size: Option<usize>,
    /// Fan-out between nodes: local, redis://host:6379 or nats://host:4222.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
    /// Redis channel / NATS subject shared by the cluster's nodes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_channel: Option<String>,
    /// This node's name on the bus (default: random).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Shared secret authenticating bus envelopes, >= 32 bytes (prefer XINDAO_CLUSTER_SECRET or the file).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<String>,
    /// NATS credentials file (.creds: JWT and NKey seed).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_creds_file: Option<PathBuf>,
    /// Milliseconds after which a silent node's users count as offline.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_ttl_ms: Option<u64>,
    /// SQLite durability of an ack: normal (survives crashes) or full (also power loss).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_synchronous: Option<String>,
    /// Quota for the SQLite database in MiB (sends beyond it fail with `unavailable`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_max_db_mb: Option<u64>,
    /// Page cache of SQLite's writing connection in MiB.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite_cache_mb: Option<u64>,
    /// WeChat mini-program AppID.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_appid: Option<String>,
    /// WeChat mini-program AppSecret (prefer XINDAO_WECHAT_SECRET or the file).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_secret: Option<String>,
    /// Base URL of the WeChat API.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_api_base: Option<String>,
    /// Development login: auto (on without WeChat credentials), true or false.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_login: Option<String>,
    /// Seconds a session lives after its last use.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_ttl_secs: Option<u64>,
    /// Ping a connection silent this many milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// Close a connection silent this many milliseconds (4010).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Largest WebSocket frame in bytes (bigger closes with 1009).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,
    /// Longest text message in characters.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_text_chars: Option<usize>,
    /// Largest custom message content in bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_custom_bytes: Option<usize>,
    /// Largest history or sync page.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_page_max: Option<usize>,
    /// Requests per second per connection.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u32>,
    /// Request burst per connection.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_burst: Option<u32>,
    /// Pushes queued per connection before it is dropped as slow (4009).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_queue: Option<usize>,
    /// Milliseconds a socket write may take.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_timeout_ms: Option<u64>,
    /// WebSockets allowed in this process.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// WebSockets allowed per user.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_user: Option<usize>,
    /// Most messages per SQLite commit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_batch_max: Option<usize>,
    /// Microseconds a group commit waits for more messages under concurrent load (0: never; unset: 0 on
    /// SQLite, 1000 on PostgreSQL).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_linger_us: Option<u64>,
    /// Log filter (RUST_LOG syntax).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

impl Flags {
    /// Loads the configuration these flags describe (file, environment, flags).
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), self)
    }
}

/// Appends `[default: …]` from `Config::default()` to every flag's help, so `--help` can never drift.
pub fn with_defaults_in_help(command: clap::Command) -> clap::Command {
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let ids: Vec<String> = command
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    ids.into_iter().fold(command, |command, id| {
        let shown = match defaults.get(&id) {
            Some(serde_json::Value::Null) => "unset".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return command,
        };
        command.mut_arg(id, |arg| {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            arg.help(format!("{help} [default: {shown}]"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_bus_accept_their_urls_only() {
        let ok = |store: &str, bus: &str| {
            Config {
                store: store.into(),
                bus: bus.into(),
                cluster_secret: Some("0123456789abcdef0123456789abcdef".into()),
                ..Config::default()
            }
            .validate()
            .is_ok()
        };
        assert!(ok("sqlite", "local"));
        assert!(ok("postgres://u@h/db", "redis://127.0.0.1:6379"));
        assert!(ok("postgresql://u@h/db", "nats://127.0.0.1:4222"));
        assert!(!ok("mysql://u@h/db", "local"));
        assert!(!ok("sqlite", "kafka://h"));
    }

    #[test]
    fn the_commit_linger_defaults_to_the_stores_own() {
        let linger = |store: &str, set: Option<u64>| {
            Config {
                store: store.into(),
                commit_linger_us: set,
                ..Config::default()
            }
            .group_commit()
            .linger
        };
        assert_eq!(linger("sqlite", None), Duration::ZERO);
        assert_eq!(linger("postgres://u@h/db", None), Duration::from_millis(1));
        assert_eq!(linger("sqlite", Some(250)), Duration::from_micros(250));
        assert_eq!(linger("postgres://u@h/db", Some(0)), Duration::ZERO);
    }

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            mask_url_password("postgres://u:secret@h/db"),
            "postgres://u:********@h/db"
        );
        assert_eq!(mask_url_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(mask_url_password("local"), "local");
        assert_eq!(
            mask_url_password("rediss://:p@ss:w0rd@redis:6380/0"),
            "rediss://:********@redis:6380/0"
        );
        assert_eq!(
            mask_url_password("nats://s3cret@nats:4222"),
            "nats://********@nats:4222"
        );
        assert_eq!(
            mask_url_password("postgres://u@h/db?sslmode=require&password=x"),
            "postgres://u@h/db?sslmode=require&password=********"
        );
    }

    #[test]
    fn a_cluster_bus_needs_a_long_cluster_secret() {
        let ok = |bus: &str, secret: Option<&str>| {
            Config {
                bus: bus.into(),
                cluster_secret: secret.map(str::to_string),
                ..Config::default()
            }
            .validate()
            .is_ok()
        };
        let long = "0123456789abcdef0123456789abcdef";
        assert!(ok("local", None));
        assert!(ok("redis://h:6379", Some(long)));
        assert!(ok("rediss://h:6380", Some(long)));
        assert!(ok("tls://h:4222", Some(long)));
        assert!(!ok("redis://h:6379", None));
        assert!(!ok("nats://h:4222", Some(&long[..31])));
    }

    #[test]
    fn the_cluster_secret_is_masked() {
        let config = Config {
            bus: "redis://:pw@h:6379".into(),
            cluster_secret: Some("0123456789abcdef0123456789abcdef".into()),
            ..Config::default()
        };
        let shown = config.to_toml_masked();
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains(":pw@"), "{shown}");
    }
}
