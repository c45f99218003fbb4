//! API keys of the server API: what a key may do (scopes), how one is made (256 random bits, shown once) and
//! kept (its SHA-256 only, like session tokens), and the operator's `xindao apikey` commands.

use base64::Engine;
use rand::RngCore;

use crate::auth::hash_token;
use crate::error::{Error, Result};
use crate::store::server_api::ApiKey;
use crate::store::Store;

/// Every key starts with this, so that a leaked one is recognisable (e.g. by secret scanners).
pub const KEY_PREFIX: &str = "xdk_";

/// A key's length: the prefix and 32 bytes in unpadded base64url.
const KEY_LEN: usize = KEY_PREFIX.len() + 43;

/// What a key may do. Each route needs one; a read-only route also accepts `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Scope {
    Messages,
    Rooms,
    Users,
    Sessions,
    /// The webhook dead-letter list: read it, redrive it.
    Webhooks,
    /// Every read-only route (`GET`), whatever its resource.
    Read,
}

impl Scope {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A key's scopes, from their stored comma-separated names (unknown names are ignored: a key made by a newer
/// version keeps working for what this one knows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses `messages,rooms,...` strictly: an unknown or missing name is an error (for the operator).
    pub fn parse(text: &str) -> Result<Scopes> {
        let mut scopes = Vec::new();
        for name in text.split(',').map(str::trim) {
            let scope: Scope = name.parse().map_err(|_| {
                Error::InvalidArgs(format!(
                    "unknown scope `{name}`: use messages, rooms, users, sessions, webhooks, read"
                ))
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Ok(Scopes(scopes))
    }

    /// The scopes of a stored key.
    pub fn from_stored(text: &str) -> Scopes {
        Scopes(
            text.split(',')
                .filter_map(|name| name.trim().parse().ok())
                .collect(),
        )
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// The stored form: names joined by commas.
    pub fn joined(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|s| s.name()).collect();
        names.join(",")
    }
}

/// A key's name: 1..=64 characters of `[A-Za-z0-9_.-]` (it appears in every log line of the key's calls).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    match ok {
        true => Ok(()),
        false => Err(Error::InvalidArgs(
            "a key's name is 1..=64 characters of [A-Za-z0-9_.-]".into(),
        )),
    }
}

/// A new key: the prefix and 256 random bits in base64url.
fn new_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Creates a key; returns it (the only time it is seen) with what is stored of it.
pub async fn create(store: &dyn Store, name: &str, scopes: &str) -> Result<(String, ApiKey)> {
    check_name(name)?;
    let scopes = Scopes::parse(scopes)?;
    let key = new_key();
    let stored = store
        .create_api_key(name, hash_token(&key), &scopes.joined())
        .await?;
    Ok((key, stored))
}

/// Every key, revoked ones too.
pub async fn list(store: &dyn Store) -> Result<Vec<ApiKey>> {
    store.api_keys().await
}

/// Revokes the key of this name; `NotFound` when there is no live key of that name.
pub async fn revoke(store: &dyn Store, name: &str) -> Result<()> {
    match store.revoke_api_key(name).await? {
        true => Ok(()),
        false => Err(Error::NotFound("no live API key of this name")),
    }
}

/// The live key `presented` is, if any (unknown and revoked keys are both `None`).
pub(super) async fn lookup(store: &dyn Store, presented: &str) -> Result<Option<ApiKey>> {
    // Anything not shaped like a key is refused without a store read.
    if !presented.starts_with(KEY_PREFIX) || presented.len() != KEY_LEN {
        return Ok(None);
    }
    let key = store.api_key_by_hash(hash_token(presented)).await?;
    Ok(key.filter(|key| key.revoked_at.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_strictly_and_read_back_leniently() {
        let scopes = Scopes::parse("messages, rooms,read,rooms").unwrap();
        assert_eq!(scopes.joined(), "messages,rooms,read");
        assert!(scopes.has(Scope::Rooms) && !scopes.has(Scope::Users));
        assert!(Scopes::parse("messages,admin").is_err());
        assert!(Scopes::parse("").is_err());
        assert_eq!(Scopes::from_stored("users,future").joined(), "users");
    }

    #[test]
    fn keys_are_prefixed_and_random() {
        let (a, b) = (new_key(), new_key());
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_LEN);
        assert_ne!(a, b);
        assert!(check_name("backend-1.prod").is_ok());
        assert!(check_name("a b").is_err() && check_name("").is_err());
    }
}
