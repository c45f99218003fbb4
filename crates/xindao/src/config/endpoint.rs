//! The two settings that name other systems, typed once at load: where messages are stored ([`StoreConfig`])
//! and how nodes reach each other ([`BusConfig`]). Each is written as one string (`store = "sqlite"`,
//! `bus = "redis://host:6379"`) so the same key works in TOML, the environment and flags; anything else is
//! refused at load with a message naming the key. Their URLs may carry passwords, and [`Secret`] holds the
//! WeChat AppSecret: none of them shows in `Debug`, `Display` or parse errors (see [`mask_url`]).

use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a masked secret looks like.
pub(crate) const MASK: &str = "********";

/// Where the server stores users, sessions and messages.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreConfig {
    /// The embedded SQLite database in `data_dir` (one node).
    Sqlite,
    /// A PostgreSQL server, `postgres://user:password@host/db` (one or more nodes).
    Postgres { url: String },
}

impl StoreConfig {
    /// Microseconds a group commit lingers for more messages unless `commit_linger_us` says otherwise.
    ///
    /// SQLite never lingers: its commit takes ~100 µs (no fsync per commit), the next batch gathers while one
    /// commits, and a 1 ms linger doubled the 1:1 median latency at every load below saturation without
    /// raising the ceiling. PostgreSQL lingers 1 ms: a commit there is a round trip and an fsync, and without
    /// the linger the median latency doubled near its ceiling (docs/performance.md).
    pub fn default_commit_linger_us(&self) -> u64 {
        match self {
            StoreConfig::Sqlite => 0,
            StoreConfig::Postgres { .. } => 1000,
        }
    }
}

impl FromStr for StoreConfig {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "sqlite" {
            Ok(StoreConfig::Sqlite)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(StoreConfig::Postgres { url: text.into() })
        } else {
            Err(format!(
                "store must be \"sqlite\" or a postgres:// URL, not \"{}\"",
                mask_url(text)
            ))
        }
    }
}

impl From<StoreConfig> for String {
    fn from(store: StoreConfig) -> String {
        match store {
            StoreConfig::Sqlite => "sqlite".into(),
            StoreConfig::Postgres { url } => url,
        }
    }
}

/// How this node reaches the others.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BusConfig {
    /// One node: deliveries stay in this process.
    Local,
    /// Redis pub/sub, `redis://[:password@]host:6379` (`rediss://` for TLS).
    Redis { url: String },
    /// NATS, `nats://[user:password@ | token@]host:4222` (`tls://` to require TLS).
    Nats { url: String },
}

impl FromStr for BusConfig {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "local" {
            Ok(BusConfig::Local)
        } else if text.starts_with("redis://") || text.starts_with("rediss://") {
            Ok(BusConfig::Redis { url: text.into() })
        } else if text.starts_with("nats://") || text.starts_with("tls://") {
            Ok(BusConfig::Nats { url: text.into() })
        } else {
            Err(format!(
                "bus must be \"local\", redis://, rediss://, nats:// or tls://..., not \"{}\"",
                mask_url(text)
            ))
        }
    }
}

impl From<BusConfig> for String {
    fn from(bus: BusConfig) -> String {
        match bus {
            BusConfig::Local => "local".into(),
            BusConfig::Redis { url } | BusConfig::Nats { url } => url,
        }
    }
}

/// Both enums: serde reads them through `FromStr`, shows them masked, and clap parses them without echoing
/// the raw value (which may hold a password) in its error.
macro_rules! url_setting {
    ($type:ty) => {
        impl TryFrom<String> for $type {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                text.parse()
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&mask_url(&String::from(self.clone())))
            }
        }
        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($type))
            }
        }
        impl clap::builder::ValueParserFactory for $type {
            type Parser = QuietParser<$type>;
            fn value_parser() -> Self::Parser {
                QuietParser(PhantomData)
            }
        }
    };
}
url_setting!(StoreConfig);
url_setting!(BusConfig);

/// Parses a flag or environment value with `FromStr`, reporting the (masked) error without the raw value.
#[derive(Clone)]
pub struct QuietParser<T>(pub(crate) PhantomData<T>);

impl<T> clap::builder::TypedValueParser for QuietParser<T>
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    type Value = T;
    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let fail = |message: String| {
            let flag = arg.and_then(|a| a.get_long()).unwrap_or_default();
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for --{flag}: {message}\n"),
            )
            .with_cmd(command)
        };
        value
            .to_str()
            .ok_or_else(|| fail("not UTF-8".into()))?
            .parse()
            .map_err(fail)
    }
}

/// A value that must not be shown: `Debug` prints a mask. Serializes as itself (configuration layers are
/// merged through serde); [`super::Config::to_toml_masked`] masks it for printing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret(secret.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A URL with its secrets masked: the password (`user:********@`), a NATS token (`********@`) and a
/// `password=` query parameter. Text that is not a URL (`sqlite`, `local`) is returned as it is; a URL that
/// does not parse keeps only its scheme.
pub fn mask_url(text: &str) -> String {
    let Some((scheme, _)) = text.split_once("://") else {
        return text.to_string();
    };
    let Ok(mut url) = url::Url::parse(text) else {
        return format!("{scheme}://{MASK}");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(MASK));
    } else if matches!(scheme, "nats" | "tls") && !url.username().is_empty() {
        let _ = url.set_username(MASK);
    }
    let secret_key = |key: &str| {
        ["password", "pass", "token", "sslpassword"].contains(&key.to_ascii_lowercase().as_str())
    };
    if url.query_pairs().any(|(key, _)| secret_key(&key)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret_key(&key) {
                    MASK.into()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_bus_parse_once_into_their_kinds() {
        assert_eq!("sqlite".parse(), Ok(StoreConfig::Sqlite));
        assert_eq!(
            "postgresql://u@h/db".parse(),
            Ok(StoreConfig::Postgres {
                url: "postgresql://u@h/db".into()
            })
        );
        assert_eq!("local".parse(), Ok(BusConfig::Local));
        assert!(matches!(
            "redis://127.0.0.1:6379".parse(),
            Ok(BusConfig::Redis { .. })
        ));
        assert!(matches!(
            "nats://127.0.0.1:4222".parse(),
            Ok(BusConfig::Nats { .. })
        ));
        let refused = "mysql://u:pw@h/db".parse::<StoreConfig>().unwrap_err();
        assert!(
            refused.contains("store must be") && !refused.contains("pw"),
            "{refused}"
        );
        assert!("kafka://h".parse::<BusConfig>().is_err());
        assert!("Sqlite".parse::<StoreConfig>().is_err());
    }

    #[test]
    fn the_commit_linger_default_belongs_to_the_store() {
        assert_eq!(StoreConfig::Sqlite.default_commit_linger_us(), 0);
        let postgres: StoreConfig = "postgres://u@h/db".parse().unwrap();
        assert_eq!(postgres.default_commit_linger_us(), 1000);
    }

    #[test]
    fn secrets_are_masked_wherever_shown() {
        assert_eq!(
            mask_url("postgres://u:secret@h/db"),
            "postgres://u:********@h/db"
        );
        assert_eq!(mask_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_url("redis://:secret@h:6379"),
            "redis://:********@h:6379"
        );
        assert_eq!(mask_url("nats://token@h:4222"), "nats://********@h:4222");
        assert_eq!(
            mask_url("postgres://h/db?user=u&password=secret"),
            "postgres://h/db?user=u&password=********"
        );
        assert_eq!(mask_url("local"), "local");
        let store: StoreConfig = "postgres://u:secret@h/db".parse().unwrap();
        let bus: BusConfig = "redis://:secret@h:6379".parse().unwrap();
        let shown = format!(
            "{store} {store:?} {bus} {bus:?} {:?}",
            Secret::from("secret")
        );
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(
            String::from(store),
            "postgres://u:secret@h/db",
            "kept for use"
        );
    }
}
