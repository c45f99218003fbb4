//! The Wafer login's user profile: `wx.getUserInfo`'s `encryptedData`, AES-128-CBC (PKCS#7) under the
//! `session_key` of the same login's `code2Session`, with the `iv` the client sends; all three base64.
//!
//! A profile is believed only if it decrypts, is a JSON object, and its `watermark.appid` is this server's
//! AppID (a payload from another mini-program, or an old one replayed against a new code, fails here). When
//! the client also sends `rawData` and `signature`, `signature` must be `sha1(rawData + session_key)` in hex.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use base64::Engine;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

/// Largest `encryptedData` accepted, in base64 characters (a real one is about 500).
pub const MAX_ENCRYPTED_CHARS: usize = 8 * 1024;

/// Why a profile was refused. The message is safe to show to the client.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("X-WX-Encrypted-Data or X-WX-IV is not valid base64 of the right size")]
    Encoding,
    #[error("the user data does not decrypt with this login's session key")]
    Decrypt,
    #[error("the user data is not a JSON object")]
    NotJson,
    #[error("the user data was issued for another mini-program (watermark.appid)")]
    WrongApp,
    #[error("the raw user data does not match its signature")]
    Signature,
}

fn b64(text: &str) -> Result<Vec<u8>, ProfileError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| ProfileError::Encoding)
}

/// Decrypts and checks a profile: the JSON object WeChat encrypted, watermark included.
pub fn decrypt(
    session_key: &str,
    encrypted: &str,
    iv: &str,
    appid: &str,
) -> Result<Map<String, Value>, ProfileError> {
    if encrypted.len() > MAX_ENCRYPTED_CHARS {
        return Err(ProfileError::Encoding);
    }
    let key = b64(session_key)?;
    let iv = b64(iv)?;
    let data = b64(encrypted)?;
    let decryptor = cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
        .map_err(|_| ProfileError::Encoding)?;
    let plain = decryptor
        .decrypt_padded_vec_mut::<Pkcs7>(&data)
        .map_err(|_| ProfileError::Decrypt)?;
    let Ok(Value::Object(profile)) = serde_json::from_slice::<Value>(&plain) else {
        return Err(ProfileError::NotJson);
    };
    let watermark = profile
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(Value::as_str);
    if watermark != Some(appid) {
        return Err(ProfileError::WrongApp);
    }
    Ok(profile)
}

/// Checks `signature == hex(sha1(raw_data + session_key))`.
pub fn check_signature(
    raw_data: &str,
    signature: &str,
    session_key: &str,
) -> Result<(), ProfileError> {
    let mut hasher = Sha1::new();
    hasher.update(raw_data.as_bytes());
    hasher.update(session_key.as_bytes());
    let expected: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected.eq_ignore_ascii_case(signature.trim()) {
        Ok(())
    } else {
        Err(ProfileError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockEncryptMut;
    use serde_json::json;

    const KEY: &str = "MTIzNDU2Nzg5MDEyMzQ1Ng=="; // "1234567890123456"
    const IV: &str = "YWJjZGVmZ2hpamtsbW5vcA=="; // "abcdefghijklmnop"

    fn encrypt(plain: &[u8]) -> String {
        let key = b64(KEY).unwrap();
        let iv = b64(IV).unwrap();
        let out = cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .unwrap()
            .encrypt_padded_vec_mut::<Pkcs7>(plain);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn decrypts_a_profile_of_this_app() {
        let profile = json!({ "openId": "o1", "nickName": "小明", "watermark": { "appid": "wxAPP", "timestamp": 1 } });
        let data = encrypt(profile.to_string().as_bytes());
        let got = decrypt(KEY, &data, IV, "wxAPP").unwrap();
        assert_eq!(Value::Object(got), profile);
    }

    #[test]
    fn refuses_other_apps_other_keys_and_garbage() {
        let profile = json!({ "nickName": "x", "watermark": { "appid": "wxOTHER" } });
        let data = encrypt(profile.to_string().as_bytes());
        assert_eq!(
            decrypt(KEY, &data, IV, "wxAPP"),
            Err(ProfileError::WrongApp)
        );
        let wrong_key = "QUFBQUFBQUFBQUFBQUFBQQ==";
        assert!(matches!(
            decrypt(wrong_key, &data, IV, "wxAPP"),
            Err(ProfileError::Decrypt | ProfileError::NotJson)
        ));
        assert_eq!(
            decrypt(KEY, "not base64!", IV, "wxAPP"),
            Err(ProfileError::Encoding)
        );
        assert_eq!(
            decrypt(KEY, &data, "c2hvcnQ=", "wxAPP"),
            Err(ProfileError::Encoding)
        );
        let array = encrypt(b"[1]");
        assert_eq!(
            decrypt(KEY, &array, IV, "wxAPP"),
            Err(ProfileError::NotJson)
        );
        let huge = "A".repeat(MAX_ENCRYPTED_CHARS + 4);
        assert_eq!(
            decrypt(KEY, &huge, IV, "wxAPP"),
            Err(ProfileError::Encoding)
        );
    }

    #[test]
    fn checks_the_raw_data_signature() {
        // sha1("{}" + KEY)
        let mut hasher = Sha1::new();
        hasher.update(format!("{{}}{KEY}").as_bytes());
        let signature: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(check_signature("{}", &signature, KEY), Ok(()));
        assert_eq!(
            check_signature("{ }", &signature, KEY),
            Err(ProfileError::Signature)
        );
    }
}
