//! Validation of a loaded configuration: every bound a setting must respect, checked once at load, with a
//! message naming the key.

use super::{BusConfig, Config, ConfigError, CLUSTER_SECRET_MIN};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
            (
                self.max_outstanding_bytes >= 2 * self.max_frame_bytes,
                "max_outstanding_bytes must be >= 2 * max_frame_bytes",
            ),
            (self.max_connections >= 1, "max_connections must be >= 1"),
            (
                self.max_connections_per_user >= 1,
                "max_connections_per_user must be >= 1",
            ),
            (
                self.max_pending_connections >= 1 && self.max_connections_per_ip >= 1,
                "max_pending_connections and max_connections_per_ip must be >= 1",
            ),
            (
                self.http_header_timeout_ms >= 100,
                "http_header_timeout_ms must be >= 100",
            ),
            (
                (0.0..=1.0).contains(&self.otel_sample_ratio),
                "otel_sample_ratio must be between 0.0 and 1.0",
            ),
            (
                self.otel_endpoint.as_deref().is_none_or(|url| {
                    url.starts_with("http://") || url.starts_with("https://")
                }) && !self.otel_service_name.is_empty(),
                "otel_endpoint must be an http:// or https:// URL, otel_service_name not empty",
            ),
            (
                self.max_header_bytes >= 8192,
                "max_header_bytes must be >= 8192",
            ),
            (
                self.allowed_origins.iter().all(|o| o.contains("://")),
                "allowed_origins must be scheme://host[:port] origins",
            ),
            (self.commit_batch_max >= 1, "commit_batch_max must be >= 1"),
            (
                self.max_memberships_per_user >= 1 && self.max_rooms_per_owner >= 1,
                "max_memberships_per_user and max_rooms_per_owner must be >= 1",
            ),
            (
                self.room_adds_per_min >= 1 && self.lookups_per_min >= 1,
                "room_adds_per_min and lookups_per_min must be >= 1",
            ),
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
                self.login_per_ip_per_minute >= 1 && self.login_per_second >= 1,
                "login_per_ip_per_minute and login_per_second must be >= 1",
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
                self.webhook_concurrency >= 1
                    && self.webhook_lease_ms >= self.webhook_timeout_ms.saturating_add(1000),
                "webhook_concurrency must be >= 1 and webhook_lease_ms >= webhook_timeout_ms + 1000 (a \
                 claim must outlast the delivery it covers)",
            ),
            (
                self.before_send_url.as_deref().is_none_or(|url| {
                    url.starts_with("http://") || url.starts_with("https://")
                }),
                "before_send_url must be an http:// or https:// URL",
            ),
            (
                self.jwt_hs256_secret
                    .as_ref()
                    .is_none_or(|secret| secret.as_str().len() >= 32),
                "jwt_hs256_secret must be at least 32 bytes",
            ),
            (
                self.nats_creds_file.is_none() || matches!(self.bus, BusConfig::Nats { .. }),
                "nats_creds_file goes with a nats:// or tls:// bus",
            ),
            (
                !self.wafer_auth || self.wechat_enabled(),
                "wafer_auth needs WeChat login (wechat_appid, wechat_secret)",
            ),
            (
                (1..=300).contains(&self.wafer_heartbeat_secs),
                "wafer_heartbeat_secs must be between 1 and 300",
            ),
            (
                [&self.wafer_prefix, &self.wafer1_prefix]
                    .into_iter()
                    .flatten()
                    .all(|p| wafer_prefix_ok(p))
                    && (self.wafer_prefix.is_none() || self.wafer_prefix != self.wafer1_prefix),
                "wafer_prefix and wafer1_prefix must differ, each \"/\" or a path like \"/weapp\" \
                 (letters, digits, - and _) not under /v1",
            ),
            (
                self.wafer_public_url.as_deref().is_none_or(|u| {
                    (u.starts_with("ws://") || u.starts_with("wss://")) && !u.ends_with('/')
                }),
                "wafer_public_url must be ws://host[:port] or wss://host[:port] without a trailing /",
            ),
        ];
        if let Some(problem) = self.webhooks.problem() {
            return Err(ConfigError::Invalid(problem));
        }
        if let Some(problem) = self.wechat_problem() {
            return Err(ConfigError::Invalid(problem));
        }
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(ConfigError::Invalid(what.into())),
            None => Ok(()),
        }
    }
}

/// Whether `prefix` can be a Wafer prefix: "/" or `/segment[/segment]` of `[A-Za-z0-9_-]`, outside `/v1`.
pub fn wafer_prefix_ok(prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(rest) = prefix.strip_prefix('/') else {
        return false;
    };
    let segments_ok = rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    segments_ok && rest.split('/').next() != Some("v1")
}
