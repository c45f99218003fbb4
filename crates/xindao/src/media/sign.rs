//! Signed, expiring download URLs: `/v1/media/{id}?exp=<unix seconds>&sig=<HMAC>` (and `&thumb=1`).
//!
//! A URL is a capability: whoever holds it may download until `exp`, so that `<img src>` and the
//! mini-program's `<image>` / `InnerAudioContext` (which cannot send a bearer token) can fetch it. The
//! `media_url` operation hands URLs out only after checking the caller may see the medium. The key is
//! `media_secret`, else derived from `cluster_secret` (every node of a cluster verifies every other's
//! URLs), else generated once into data_dir/media.secret. Expiry is rounded up to a quarter of the TTL, so
//! that asking again soon gives the same URL and the client's HTTP cache keeps working.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Config, Secret};
use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Fewest bytes of a configured `media_secret`.
const SECRET_MIN: usize = 32;

/// Signs and checks download URLs.
#[derive(Clone)]
pub struct Signer {
    key: HmacSha256,
    ttl_secs: u64,
}

/// A signed URL for one medium (relative to the server's base URL) and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    /// Unix seconds.
    pub expires_at: u64,
}

impl Signer {
    /// The signer of `config.media.media_secret` (already resolved by [`resolve_secret`]).
    pub fn from_config(config: &Config) -> Result<Signer> {
        let secret = config
            .media
            .media_secret
            .as_ref()
            .ok_or_else(|| Error::Internal("media_secret not resolved".into()))?;
        Signer::new(secret.as_str().as_bytes(), config.media.media_url_ttl_secs)
    }

    pub fn new(key: &[u8], ttl_secs: u64) -> Result<Signer> {
        let key = HmacSha256::new_from_slice(key)
            .map_err(|e| Error::Internal(format!("media signing key: {e}")))?;
        Ok(Signer {
            key,
            ttl_secs: ttl_secs.max(1),
        })
    }

    fn mac(&self, id: &str, thumb: bool, exp: u64) -> HmacSha256 {
        let mut mac = self.key.clone();
        mac.update(format!("xindao-media-v1\n{id}\n{}\n{exp}", u8::from(thumb)).as_bytes());
        mac
    }

    /// A URL for medium `id` (its thumbnail when `thumb`) valid from `now` (unix seconds) for at least the TTL.
    /// When a URL signed at `now` expires (unix seconds): the TTL ahead, rounded up to a quarter of it.
    pub fn expires_at(&self, now: u64) -> u64 {
        let step = (self.ttl_secs / 4).max(1);
        (now + self.ttl_secs).div_ceil(step) * step
    }

    pub fn sign(&self, id: &str, thumb: bool, now: u64) -> SignedUrl {
        let exp = self.expires_at(now);
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(id, thumb, exp).finalize().into_bytes());
        let thumb = if thumb { "&thumb=1" } else { "" };
        SignedUrl {
            url: format!("/v1/media/{id}?exp={exp}{thumb}&sig={sig}"),
            expires_at: exp,
        }
    }

    /// Checks a URL's signature and expiry at `now`: `forbidden` when it was not signed by this key (or was
    /// altered) or has expired.
    pub fn verify(&self, id: &str, thumb: bool, exp: u64, sig: &str, now: u64) -> Result<()> {
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| Error::Forbidden("invalid media URL signature"))?;
        self.mac(id, thumb, exp)
            .verify_slice(&sig)
            .map_err(|_| Error::Forbidden("invalid media URL signature"))?;
        if exp <= now {
            return Err(Error::Forbidden(
                "this media URL has expired: ask for a new one",
            ));
        }
        Ok(())
    }
}

/// Fills in `config.media.media_secret` when it is unset: derived from `cluster_secret` when there is one, else
/// read from data_dir/media.secret, generated there (mode 0600) on first start.
pub fn resolve_secret(config: &mut Config) -> Result<()> {
    if let Some(secret) = &config.media.media_secret {
        if secret.as_str().len() < SECRET_MIN {
            return Err(Error::InvalidArgs(format!(
                "media_secret must be at least {SECRET_MIN} bytes"
            )));
        }
        return Ok(());
    }
    let secret = match &config.cluster_secret {
        Some(cluster) => {
            let mut mac = HmacSha256::new_from_slice(cluster.as_str().as_bytes())
                .map_err(|e| Error::Internal(format!("media key derivation: {e}")))?;
            mac.update(b"xindao media URL signing key v1");
            hex(&mac.finalize().into_bytes())
        }
        None => secret_file(&config.data_dir.join("media.secret"))?,
    };
    config.media.media_secret = Some(Secret::from(secret));
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret kept in `path`, created with 256 random bits if the file does not exist.
fn secret_file(path: &Path) -> Result<String> {
    let unavailable =
        |e: std::io::Error| Error::Unavailable(format!("media secret {}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= SECRET_MIN => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(Error::InvalidArgs(format!(
                "{} holds fewer than {SECRET_MIN} bytes",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unavailable(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
    }
    let secret = hex(&rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes()).map_err(unavailable)?;
            file.sync_all().map_err(unavailable)?;
            tracing::info!(path = %path.display(), "generated the media URL signing key");
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secret_file(path),
        Err(e) => Err(unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_verify_until_they_expire_and_not_when_altered() {
        let signer = Signer::new(&[7; 32], 3600).unwrap();
        let signed = signer.sign("abcdefghijklmnopqrstuv", false, 1_000_000);
        assert!(signed.expires_at >= 1_000_000 + 3600 && signed.expires_at <= 1_000_000 + 4500);
        // Asked again a little later: the same URL (cacheable).
        assert_eq!(
            signer.sign("abcdefghijklmnopqrstuv", false, 1_000_010),
            signed
        );
        let sig = signed.url.rsplit("sig=").next().unwrap();
        let exp = signed.expires_at;
        assert!(signer
            .verify("abcdefghijklmnopqrstuv", false, exp, sig, 1_000_000)
            .is_ok());
        assert!(signer
            .verify("abcdefghijklmnopqrstuv", false, exp, sig, exp)
            .is_err());
        assert!(signer
            .verify("abcdefghijklmnopqrstuv", true, exp, sig, 1_000_000)
            .is_err());
        assert!(signer
            .verify("bbcdefghijklmnopqrstuv", false, exp, sig, 1_000_000)
            .is_err());
        assert!(signer
            .verify("abcdefghijklmnopqrstuv", false, exp + 1, sig, 1_000_000)
            .is_err());
        assert!(signer
            .verify("abcdefghijklmnopqrstuv", false, exp, "!!", 1_000_000)
            .is_err());
        let other = Signer::new(&[8; 32], 3600).unwrap();
        assert!(other
            .verify("abcdefghijklmnopqrstuv", false, exp, sig, 1_000_000)
            .is_err());
    }
}
