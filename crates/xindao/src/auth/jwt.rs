//! Identity from the business: a backend that owns its users mints a JWT itself, and the client connects
//! with it where it would send a session token. The token is checked here, without the store: its algorithm
//! must match a configured key (HS256 with `jwt_hs256_secret`; EdDSA or RS256 with `jwt_public_key_file` or a
//! key of `jwt_jwks_file`), so `alg: none` and HS/RS confusion (an HS256 token signed with the public key
//! as its secret) find no key; `exp` and `sub` are required, `nbf`, `iss` and `aud` checked when present or
//! configured. What is refused says why (`token_expired`, or `invalid_token` and a reason), never echoing the
//! token.

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{now_millis, ConversationId};

/// Largest JWT accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Room grants honoured per token.
pub const MAX_ROOM_GRANTS: usize = 100;
/// Longest `sub`, in bytes.
const MAX_SUB_BYTES: usize = 128;
/// Clock skew tolerated on `nbf`, in seconds (a backend whose clock runs ahead still mints usable tokens).
/// `exp` gets none: a token is refused from its `exp` on, and its sockets close then, the same instant
/// everywhere (the SDK asks for the next token well before).
const NBF_LEEWAY_SECS: u64 = 30;

/// The claims xindao reads; others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The business's own user id.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Display name (set or updated on each new token).
    #[serde(default)]
    pub name: Option<String>,
    /// Conversation ids the user is joined to when the token is first used.
    #[serde(default)]
    pub rooms: Vec<ConversationId>,
}

/// The keys a JWT may be signed with, loaded once at start.
pub struct JwtKeys {
    hs256: Option<DecodingKey>,
    /// The public key file's key and its algorithm.
    public: Option<(Algorithm, DecodingKey)>,
    /// JWKS keys by `kid`, with their algorithm.
    jwks: HashMap<String, (Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

/// Whether a token is a JWT rather than an opaque session token (which has no dots).
pub fn looks_like_jwt(token: &str) -> bool {
    token.contains('.')
}

fn invalid(reason: &'static str) -> Error {
    Error::InvalidToken(reason)
}

impl JwtKeys {
    /// The configured keys, or `None` when no JWT key is configured. A key that cannot be read or parsed
    /// fails the start.
    pub fn load(config: &Config) -> Result<Option<JwtKeys>> {
        let hs256 = config
            .jwt_hs256_secret
            .as_ref()
            .map(|secret| DecodingKey::from_secret(secret.as_str().as_bytes()));
        let public = match &config.jwt_public_key_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::Internal(format!("jwt_public_key_file {}: {e}", path.display()))
                })?;
                Some(parse_public_pem(&pem)?)
            }
            None => None,
        };
        let mut jwks = HashMap::new();
        if let Some(path) = &config.jwt_jwks_file {
            let text = std::fs::read(path)
                .map_err(|e| Error::Internal(format!("jwt_jwks_file {}: {e}", path.display())))?;
            let set: JwkSet = serde_json::from_slice(&text)
                .map_err(|e| Error::Internal(format!("jwt_jwks_file: {e}")))?;
            for jwk in &set.keys {
                let Some(kid) = jwk.common.key_id.clone() else {
                    continue;
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| Error::Internal(format!("jwt_jwks_file key {kid}: {e}")))?;
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    _ => continue,
                };
                jwks.insert(kid, (algorithm, key));
            }
        }
        if hs256.is_none() && public.is_none() && jwks.is_empty() {
            return Ok(None);
        }
        Ok(Some(JwtKeys {
            hs256,
            public,
            jwks,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        }))
    }

    /// Checks a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token larger than 8 KiB"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token header"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::EdDSA | Algorithm::RS256 => {
                match header.kid.as_deref().and_then(|kid| self.jwks.get(kid)) {
                    Some((alg, key)) if *alg == header.alg => Some(key),
                    Some(_) => None,
                    None => self
                        .public
                        .as_ref()
                        .filter(|(alg, _)| *alg == header.alg)
                        .map(|(_, key)| key),
                }
            }
            _ => None,
        }
        .ok_or_else(|| invalid("algorithm not accepted for this server's keys"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = NBF_LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => Error::TokenExpired,
            ErrorKind::ImmatureSignature => invalid("token not yet valid (nbf)"),
            ErrorKind::InvalidSignature => invalid("bad signature"),
            ErrorKind::MissingRequiredClaim(_) => invalid("missing required claim (exp, sub)"),
            ErrorKind::InvalidIssuer => invalid("wrong issuer"),
            ErrorKind::InvalidAudience => invalid("wrong audience"),
            ErrorKind::InvalidAlgorithm => invalid("algorithm not accepted"),
            _ => invalid("malformed token"),
        })?;
        let claims = data.claims;
        // jsonwebtoken gives `exp` the same leeway as `nbf`: none here.
        if claims.exp.saturating_mul(1000) <= now_millis() {
            return Err(Error::TokenExpired);
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_BYTES {
            return Err(invalid("sub must be 1 to 128 bytes"));
        }
        if claims.rooms.len() > MAX_ROOM_GRANTS {
            return Err(invalid("more than 100 room grants"));
        }
        Ok(claims)
    }
}

/// An Ed25519 or RSA public key in PEM.
fn parse_public_pem(pem: &[u8]) -> Result<(Algorithm, DecodingKey)> {
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((Algorithm::EdDSA, key));
    }
    DecodingKey::from_rsa_pem(pem)
        .map(|key| (Algorithm::RS256, key))
        .map_err(|e| {
            Error::Internal(format!(
                "jwt_public_key_file: not an Ed25519 or RSA public key in PEM: {e}"
            ))
        })
}

/// A connection token that verified: the session it stands for, and the rooms to join when it is new.
pub struct Resolved {
    pub session: super::Session,
    /// The token's room grants, on its first use only (later uses find its session).
    pub grants: Vec<ConversationId>,
}

impl super::Auth {
    /// Checks a business JWT and finds its session: on the token's first use, the user of its `sub` is found
    /// or created (`users.external_id`), its display name set from `name`, and a session stored under the
    /// token's hash until its `exp`, never extended (so connect tickets and logout work as with any session,
    /// and none outlives the token).
    pub(super) async fn resolve_jwt(&self, token: &str) -> Result<Resolved> {
        let keys = self
            .jwt
            .as_ref()
            .ok_or(Error::InvalidToken("this server accepts no JWT"))?;
        let claims = keys.verify(token)?;
        let token_hash = super::hash_token(token);
        let expires_at = claims.exp.saturating_mul(1000);
        if let Ok(session) = self.check_session(token_hash).await {
            return Ok(Resolved {
                // The token's own exp, also for a session stored before sessions could be fixed.
                session: super::Session {
                    expires_at: Some(expires_at),
                    ..session
                },
                grants: Vec::new(),
            });
        }
        let display_name = match &claims.name {
            Some(name) => Some(
                crate::validate::name(name, "name")
                    .map_err(|_| invalid("the name claim is not a valid display name"))?,
            ),
            None => None,
        };
        let default_name =
            crate::validate::name(&claims.sub, "sub").unwrap_or_else(|_| "user".to_string());
        let user = self
            .store
            .upsert_user(crate::store::LoginIdentity {
                external_id: crate::store::ExternalId::Business {
                    id: claims.sub.clone(),
                    display_name,
                    default_name,
                },
                unionid: None,
            })
            .await?;
        // A user banned through the server API gets no session from a token either.
        if self.store.is_banned(user.id).await? {
            return Err(Error::Banned);
        }
        if let Err(error) = self
            .store
            .create_session(
                token_hash,
                user.id,
                expires_at,
                crate::store::SessionExpiry::Fixed,
            )
            .await
        {
            // The same token's first use on another request or node stored it first.
            tracing::debug!(%error, "JWT session already stored");
            return Ok(Resolved {
                session: self.check_session(token_hash).await?,
                grants: Vec::new(),
            });
        }
        tracing::info!(user = user.id, "business user connected with a JWT");
        Ok(Resolved {
            session: super::Session {
                user_id: user.id,
                token_hash,
                expires_at: Some(expires_at),
            },
            grants: claims.rooms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_token_is_not_taken_for_a_jwt() {
        assert!(!looks_like_jwt(
            "q8Jp0m2-rX1kD5aZ_4Yb9cE3fG7hI6jK0lMnOpQrStU"
        ));
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
    }
}
