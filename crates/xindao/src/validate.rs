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
        // Checked against the uploaded medium by `chat::media`.
        MessageKind::Image | MessageKind::Voice | MessageKind::File => Ok(()),
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
    fn cmid_charset() {
        assert!(cmid("abc-123_x.y:z").is_ok());
        assert!(cmid("").is_err());
        assert!(cmid("with space").is_err());
        assert!(cmid(&"a".repeat(65)).is_err());
    }
}
