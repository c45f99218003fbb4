//! What a [`Config`] is once read: its defaults (from the clap attributes), loading the layers (defaults, TOML
//! file, environment and flags), the checks types cannot express, and the values derived from the keys.

use std::time::Duration;

use clap::{Args, FromArgMatches};
use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Provider};
use serde::Serialize;

use super::{endpoint, Config, DevLogin};
use crate::rules;

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
    /// see [`super::Flags::load`]), then checks the limits that types cannot express.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &impl Serialize,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let figment = figment.merge(Serialized::defaults(overrides));
        // A key no field knows is a typo or a key of another version: refused, not ignored.
        let known = super::cli::keys();
        for dict in figment.data().map_err(Box::new)?.values() {
            if let Some(key) = dict.keys().find(|key| !known.contains(key)) {
                return Err(ConfigError::Invalid(format!(
                    "unknown key `{key}` (`xindao config` lists every key)"
                )));
            }
        }
        let config: Config = figment.extract().map_err(Box::new)?;
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
            ("media_secret", self.media.media_secret.is_some()),
            (
                "media_s3_secret_access_key",
                self.media.media_s3_secret_access_key.is_some(),
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
