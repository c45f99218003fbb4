//! `GET /v1/media/{id}?exp=&sig=[&thumb=1]`: a medium through a signed URL (`sign.rs`), or without one for a
//! public image (an avatar, uploaded with `public=1`), with `ETag`,
//! `Cache-Control` (private, until the URL expires; the bytes of an id never change) and single byte
//! ranges (206, or 416 when out of bounds). Files are served as attachments and nothing is served for the
//! browser to sniff or run: `nosniff` and a sandboxing CSP on every answer, since a stored file is
//! whatever a user uploaded.

use std::ops::Range;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::App;
use crate::error::{Error, Result};
use crate::model::{now_millis, MediaKind};

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    exp: Option<u64>,
    sig: Option<String>,
    thumb: Option<String>,
}

/// The byte range a `Range` header asks for within `size` bytes: `None` to send everything (no header, or
/// one this server does not serve: several ranges, other units, bad syntax), `Err(())` when unsatisfiable.
fn byte_range(value: Option<&HeaderValue>, size: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        // The last `end` bytes.
        let Ok(suffix) = end.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 {
            return Err(());
        }
        size.saturating_sub(suffix)..size
    } else {
        let Ok(start) = start.parse::<u64>() else {
            return Ok(None);
        };
        let end = if end.is_empty() {
            size
        } else {
            match end.parse::<u64>() {
                Ok(last) if last >= start => last.saturating_add(1).min(size),
                _ => return Ok(None),
            }
        };
        start..end
    };
    if range.start >= size {
        return Err(());
    }
    Ok(Some(range))
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == "*" || tag.trim().trim_start_matches("W/") == etag)
        })
}

/// `attachment; filename*=UTF-8''...`, the name percent-encoded (RFC 6266 / 8187).
fn attachment(name: &str) -> String {
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename*=UTF-8''{encoded}")
}

pub(crate) async fn download(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(query): Query<DownloadQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let id = crate::media::parse_id(&id).map_err(|_| Error::NotFound("no such media"))?;
    let thumb = query.thumb.as_deref().is_some_and(|t| t == "1");
    let now = (now_millis() / 1000) as u64;
    // Signed: valid until `exp`. Unsigned: only a public medium (an avatar), cacheable for a year.
    let signed = match (query.exp, query.sig.as_deref()) {
        (Some(exp), Some(sig)) => {
            app.media.signer.verify(id, thumb, exp, sig, now)?;
            Some(exp)
        }
        _ => None,
    };
    let media = app.store.media(id).await?;
    let media = match (media, signed) {
        (Some(media), Some(_)) => media,
        (Some(media), None) if media.public => media,
        // Absent or not public: the same answer, so that ids cannot be probed.
        (_, None) => {
            return Err(Error::Forbidden(
                "a media URL needs exp and sig: ask media_url for one",
            ))
        }
        (None, Some(_)) => return Err(Error::NotFound("no such media")),
    };
    let cache_control = match signed {
        Some(exp) => format!("private, max-age={}, immutable", exp.saturating_sub(now)),
        None => "public, max-age=31536000, immutable".to_string(),
    };
    let (key, mime, size) = if thumb {
        match (&media.thumb_key, &media.thumb_mime, media.thumb_size) {
            (Some(key), Some(mime), Some(size)) => (key.clone(), mime.clone(), size as u64),
            _ => return Err(Error::NotFound("this media has no thumbnail")),
        }
    } else {
        (
            media.storage_key.clone(),
            media.mime.clone(),
            media.size as u64,
        )
    };
    let etag = format!("\"{id}{}\"", if thumb { "-t" } else { "" });
    let mut out = HeaderMap::new();
    let header =
        |v: &str| HeaderValue::from_str(v).map_err(|e| Error::Internal(format!("header: {e}")));
    out.insert(header::ETAG, header(&etag)?);
    out.insert(header::CACHE_CONTROL, header(&cache_control)?);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if etag_matches(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(header::CONTENT_TYPE, header(&mime)?);
    if media.kind == MediaKind::File && !thumb {
        let name = media.name.as_deref().unwrap_or("file");
        out.insert(header::CONTENT_DISPOSITION, header(&attachment(name))?);
    }
    let (status, range) = match byte_range(headers.get(header::RANGE), size) {
        Ok(None) => (StatusCode::OK, 0..size),
        Ok(Some(range)) => {
            out.insert(
                header::CONTENT_RANGE,
                header(&format!("bytes {}-{}/{size}", range.start, range.end - 1))?,
            );
            (StatusCode::PARTIAL_CONTENT, range)
        }
        Err(()) => {
            out.insert(header::CONTENT_RANGE, header(&format!("bytes */{size}"))?);
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, out).into_response());
        }
    };
    out.insert(
        header::CONTENT_LENGTH,
        header(&(range.end - range.start).to_string())?,
    );
    let body = if range.is_empty() {
        Body::empty()
    } else {
        Body::from_stream(app.media.storage.get(&key, range).await?)
    };
    Ok((status, out, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(spec: &str, size: u64) -> Result<Option<Range<u64>>, ()> {
        byte_range(Some(&HeaderValue::from_str(spec).unwrap()), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(range("bytes=0-3", 10), Ok(Some(0..4)));
        assert_eq!(range("bytes=5-", 10), Ok(Some(5..10)));
        assert_eq!(range("bytes=-3", 10), Ok(Some(7..10)));
        assert_eq!(range("bytes=-30", 10), Ok(Some(0..10)));
        assert_eq!(range("bytes=8-100", 10), Ok(Some(8..10)));
        assert_eq!(range("bytes=10-", 10), Err(()));
        assert_eq!(range("bytes=-0", 10), Err(()));
        assert_eq!(range("bytes=0-1,4-5", 10), Ok(None));
        assert_eq!(range("items=0-1", 10), Ok(None));
        assert_eq!(range("bytes=4-2", 10), Ok(None));
        assert_eq!(range("bytes=x-2", 10), Ok(None));
    }

    #[test]
    fn attachment_names_are_encoded() {
        assert_eq!(
            attachment("a b.pdf"),
            "attachment; filename*=UTF-8''a%20b.pdf"
        );
        assert_eq!(
            attachment("报告.pdf"),
            "attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf"
        );
        assert_eq!(attachment("x\";y"), "attachment; filename*=UTF-8''x%22%3By");
    }
}
