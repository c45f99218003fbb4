//! The webhook and before-send settings that are more than one word: the list of endpoints (each with a
//! name, URL, signing secret and event filter) and the before-send failure policy. The list is written as a
//! TOML array of tables, or as the same list in JSON in the environment or a flag; secrets never show in
//! `Debug` or `xindao config`.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{QuietParser, Secret};

/// The webhook endpoints (none by default: then no event is written anywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Webhooks(pub Vec<WebhookEndpoint>);

/// One receiver of webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Stable name: the outbox rows and the dead-letter list name the endpoint by it.
    pub name: String,
    /// http:// or https:// URL that receives `POST`s.
    pub url: String,
    /// HMAC-SHA256 key of `X-Xindao-Signature` (at least 16 bytes).
    pub secret: Secret,
    /// Events sent to it: names (`message.created`), prefixes (`member.*`) or `*` (the default).
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    /// Most events in one `POST` (`{"events": [...]}`), 1..=1000; 100 by default.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

/// Most events one POST carries, unless an endpoint says otherwise.
pub const DEFAULT_BATCH_MAX: usize = 100;
/// The largest `batch_max` an endpoint may ask for.
pub const BATCH_MAX_LIMIT: usize = 1000;

fn all_events() -> Vec<String> {
    vec!["*".into()]
}

fn default_batch_max() -> usize {
    DEFAULT_BATCH_MAX
}

impl Webhooks {
    /// The first problem of the list, if any.
    pub fn problem(&self) -> Option<String> {
        let mut names = std::collections::HashSet::new();
        for endpoint in &self.0 {
            if endpoint.name.is_empty() || !names.insert(endpoint.name.as_str()) {
                return Some("webhooks: every endpoint needs a unique, non-empty name".into());
            }
            if !(endpoint.url.starts_with("http://") || endpoint.url.starts_with("https://")) {
                return Some(format!(
                    "webhooks: endpoint {} needs an http:// or https:// url",
                    endpoint.name
                ));
            }
            if endpoint.secret.as_str().len() < 16 {
                return Some(format!(
                    "webhooks: the secret of endpoint {} must be at least 16 bytes",
                    endpoint.name
                ));
            }
            if !(1..=BATCH_MAX_LIMIT).contains(&endpoint.batch_max) {
                return Some(format!(
                    "webhooks: the batch_max of endpoint {} must be 1..={BATCH_MAX_LIMIT}",
                    endpoint.name
                ));
            }
        }
        None
    }
}

impl FromStr for Webhooks {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            format!(
                "webhooks must be a JSON list of {{\"name\", \"url\", \"secret\", \"events\", \"batch_max\"}} \
                 (line {}, column {})",
                e.line(),
                e.column()
            )
        })
    }
}

impl fmt::Display for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} endpoint(s)]", self.0.len())
    }
}

impl clap::builder::ValueParserFactory for Webhooks {
    type Parser = QuietParser<Webhooks>;
    fn value_parser() -> Self::Parser {
        QuietParser(PhantomData)
    }
}

/// What a send does when the before-send hook cannot be asked (down, timed out, a bad answer).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BeforeSendFailure {
    /// The message is sent as it is.
    #[default]
    Open,
    /// The message is refused with `unavailable`.
    Closed,
}
