//! Input rules shared by the HTTP API and the WebSocket: names, client message ids, message bodies.

use crate::error::{Error, Result};
use crate::model::MessageKind;

/// Bidirectional embedding/override (U+202A..U+202E) and isolate (U+2066..U+2069) controls: invisible
/// characters that can make displayed text lie about its content.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A display name or room name: 1..=64 characters after trimming, no control or bidi characters.
pub fn name(raw: &str, what: &str) -> Result<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(Error::InvalidArgs(format!("{what} must not be empty")));
    }
    if trimmed.chars().count() > 64 {
        return Err(Error::InvalidArgs(format!(
            "{what} is longer than 64 characters"
        )));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() || is_bidi_control(c))
    {
        return Err(Error::InvalidArgs(format!(
            "{what} contains control or bidi-override characters"
        )));
    }
    Ok(trimmed.to_string())
}

/// Longest avatar URL, in bytes.
pub const AVATAR_URL_MAX: usize = 512;

/// The path prefix of media served by xindao: an avatar may name one relative to the server.
pub const MEDIA_PATH_PREFIX: &str = "/v1/media/";

/// An avatar URL: at most [`AVATAR_URL_MAX`] bytes of printable ASCII without spaces, quotes or angle
/// brackets, and either an `https://` URL with a host and no credentials, or a xindao media path
/// (`/v1/media/...`, no `..` segment). Anything else (http, `javascript:`, `data:`, other hosts' paths) could
/// make every client that shows the avatar fetch or run what another user chose.
pub fn avatar_url(raw: &str) -> Result<String> {
    let refuse = |why: &str| Err(Error::InvalidArgs(format!("avatar_url {why}")));
    if raw.len() > AVATAR_URL_MAX {
        return refuse(&format!("is longer than {AVATAR_URL_MAX} bytes"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`'))
    {
        return refuse(
            "must be printable ASCII without spaces, quotes, backslashes or angle brackets",
        );
    }
    if let Some(rest) = raw.strip_prefix(MEDIA_PATH_PREFIX) {
        if rest.is_empty() || rest.split(['/', '?', '#']).any(|segment| segment == "..") {
            return refuse("names no media");
        }
        return Ok(raw.to_string());
    }
    match url::Url::parse(raw) {
        // The text as written must be `https://host...` (the parser would also take `https:///host`).
        Ok(url)
            if raw.starts_with("https://")
                && !raw["https://".len()..].starts_with('/')
                && url.scheme() == "https"
                && url.host_str().is_some_and(|h| !h.is_empty())
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            Ok(raw.to_string())
        }
        _ => refuse(&format!(
            "must be an https:// URL or a xindao media path ({MEDIA_PATH_PREFIX}...)"
        )),
    }
}

/// A client message id: 1..=64 characters of `[A-Za-z0-9_.:-]`.
pub fn cmid(raw: &str) -> Result<()> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidMessage(
            "cmid must be 1..=64 characters of [A-Za-z0-9_.:-]".into(),
        ))
    }
}

/// Checks a message body against its kind and the configured limits.
pub fn content(
    kind: MessageKind,
    content: &serde_json::Value,
    max_text_chars: usize,
    max_custom_bytes: usize,
) -> Result<()> {
    match kind {
        MessageKind::Text => {
            let serde_json::Value::String(text) = content else {
                return Err(Error::InvalidMessage(
                    "a text message's content must be a string".into(),
                ));
            };
            if text.trim().is_empty() {
                return Err(Error::InvalidMessage("message text is empty".into()));
            }
            let chars = text.chars().count();
            if chars > max_text_chars {
                return Err(Error::MessageTooLong(format!(
                    "message text has {chars} characters, the limit is {max_text_chars}"
                )));
            }
            if text
                .chars()
                .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
            {
                return Err(Error::InvalidMessage(
                    "message text contains control or bidi-override characters".into(),
                ));
            }
            Ok(())
        }
        MessageKind::Custom => {
            if content.is_null() {
                return Err(Error::InvalidMessage(
                    "a custom message needs content".into(),
                ));
            }
            let size = content.to_string().len();
            if size > max_custom_bytes {
                return Err(Error::MessageTooLong(format!(
                    "custom content is {size} bytes, the limit is {max_custom_bytes}"
                )));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_controls_and_bidi() {
        assert_eq!(name("  alice ", "name").unwrap(), "alice");
        assert!(name("", "name").is_err());
        assert!(name("a\u{202E}b", "name").is_err());
        assert!(name("a\nb", "name").is_err());
        assert!(name(&"x".repeat(65), "name").is_err());
        assert!(name("张三", "name").is_ok());
    }

    #[test]
    fn text_allows_newlines_not_other_controls() {
        let ok = |s: &str| content(MessageKind::Text, &serde_json::json!(s), 10, 100).is_ok();
        assert!(ok("a\nb\tc"));
        assert!(!ok("a\u{0007}"));
        assert!(!ok("\u{2066}x"));
        assert!(!ok("   "));
        assert!(!ok("12345678901"));
        assert!(ok("1234567890"));
    }

    #[test]
    fn avatar_urls() {
        assert!(avatar_url("https://cdn.example.com/a.png?x=1").is_ok());
        assert!(avatar_url("/v1/media/abc123").is_ok());
        for bad in [
            "http://example.com/a.png",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "https://user:pw@example.com/a.png",
            "https:///nohost",
            "/v1/media/",
            "/v1/media/../admin",
            "/other/path",
            "https://example.com/a b.png",
            "https://example.com/\"onerror=\"x",
            "https://例子.com/a.png",
        ] {
            assert!(avatar_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(AVATAR_URL_MAX));
        assert!(avatar_url(&long).is_err());
    }

    #[test]
    fn cmid_charset() {
        assert!(cmid("abc-123_x.y:z").is_ok());
        assert!(cmid("").is_err());
        assert!(cmid("with space").is_err());
        assert!(cmid(&"a".repeat(65)).is_err());
    }
}
