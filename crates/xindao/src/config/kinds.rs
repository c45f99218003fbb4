//! The small typed settings: SQLite durability, the development login switch, the log format and a listen
//! address that may be turned off. Each parses from the same word in TOML, the environment and a flag.

use std::net::SocketAddr;

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
    /// On when no WeChat credentials are configured and the server listens on loopback only; off otherwise
    /// (and the server refuses to start when that would leave a non-loopback server without any login).
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

/// A listen address that may be turned off: `""` (or `off`) for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AdminListen(pub Option<SocketAddr>);

impl std::str::FromStr for AdminListen {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" | "off" | "none" => Ok(AdminListen(None)),
            addr => addr
                .parse()
                .map(|addr| AdminListen(Some(addr)))
                .map_err(|_| format!("`{addr}` is not an address (host:port), nor \"\" for none")),
        }
    }
}

impl TryFrom<String> for AdminListen {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<AdminListen> for String {
    fn from(listen: AdminListen) -> String {
        listen.0.map(|addr| addr.to_string()).unwrap_or_default()
    }
}
