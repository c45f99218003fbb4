//! `POST /v1/media`: a multipart upload (field `file`, as `wx.uploadFile` and browsers send it) with the
//! bearer token. The caller is authenticated, rate-limited and checked against the daily quota before a
//! byte of the body is read; the file then streams to a scratch file through a bounded buffer, its size
//! counted against the kind's limit as it arrives and its type read from its first bytes. `?kind=image`,
//! `voice` or `file` says what the client means it to be; without it the content decides.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::app::App;
use crate::auth::bearer;
use crate::error::{Error, Result};
use crate::media::probe::{self, HEAD_BYTES};
use crate::media::{new_id, storage_key, MediaService};
use crate::model::{now_millis, Media, MediaKind, UserId};

/// Size of the write buffer between the socket and the scratch file.
const WRITE_BUFFER: usize = 64 * 1024;
/// Longest file name kept, in characters.
const NAME_MAX_CHARS: usize = 255;
const DAY_MS: i64 = 24 * 3600 * 1000;

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    kind: Option<MediaKind>,
    /// `1`: an image anyone with its id may fetch without a signed URL (an avatar).
    public: Option<String>,
}

/// A scratch file, removed when dropped unless storage has taken it away.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What arrived in the `file` field.
struct Received {
    scratch: Scratch,
    size: u64,
    kind: MediaKind,
    mime: String,
    name: Option<String>,
}

pub(crate) async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: std::result::Result<Query<UploadQuery>, QueryRejection>,
    request: Request,
) -> Result<Response> {
    let token = bearer(&headers, None).ok_or(Error::Unauthorized)?;
    let session = app.auth.authenticate(&token).await?;
    let media = &app.media;
    let user = session.user_id;
    let Query(query) =
        query.map_err(|_| Error::InvalidArgs("kind must be image, voice or file".into()))?;
    let declared = query.kind;
    let public = match query.public.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") if declared == Some(MediaKind::Image) => true,
        Some(_) => {
            return Err(Error::InvalidArgs(
                "public=1 is for images (kind=image) only, e.g. avatars".into(),
            ))
        }
    };
    // Refused before the body is read: a declared length over every limit, the rate, the quota.
    let body_max = media.max_any().saturating_add(super::FORM_OVERHEAD);
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > body_max) {
        return Err(Error::TooLarge(format!(
            "the upload is larger than the largest allowed ({} MiB)",
            media.max_any() / (1024 * 1024)
        )));
    }
    media.uploads.check(user)?;
    let quota = media
        .config
        .media
        .media_quota_mb_per_day
        .saturating_mul(1024 * 1024);
    let used = app
        .store
        .media_uploaded_since(user, now_millis() - DAY_MS)
        .await? as u64;
    if used >= quota {
        return Err(Error::LimitReached(
            "daily upload quota used up (media_quota_mb_per_day)",
        ));
    }
    let _slot = media
        .upload_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Error::Unavailable("too many uploads in progress, retry".into()))?;
    let mut form = Multipart::from_request(request, &app)
        .await
        .map_err(|e| Error::BadRequest(format!("expected a multipart/form-data body: {e}")))?;
    let mut received = None;
    while let Some(field) = next_field(&mut form, media).await? {
        if field.name() != Some("file") || received.is_some() {
            drain(field, media).await?;
            continue;
        }
        received = Some(receive(field, media, declared, quota - used).await?);
    }
    let received =
        received.ok_or_else(|| Error::BadRequest("the form has no `file` field".into()))?;
    let stored = store(&app, user, received, public).await?;
    let mut answer = json!({ "media": stored });
    if stored.public {
        // Unsigned, non-expiring paths (relative to the server), e.g. for `avatar_url`.
        answer["media"]["url"] = format!("/v1/media/{}", stored.id).into();
        answer["media"]["thumb_url"] = format!("/v1/media/{}?thumb=1", stored.id).into();
    }
    Ok(Json(answer).into_response())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge("the upload is larger than the largest allowed".into())
    } else {
        Error::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The next part of the form, waiting at most the header timeout for the client to send something.
async fn next_field<'a>(
    form: &'a mut Multipart,
    media: &MediaService,
) -> Result<Option<axum::extract::multipart::Field<'a>>> {
    tokio::time::timeout(media.config.http_header_timeout(), form.next_field())
        .await
        .map_err(|_| stalled())?
        .map_err(multipart_error)
}

fn stalled() -> Error {
    Error::BadRequest("the upload stalled (nothing received for http_header_timeout_ms)".into())
}

async fn chunk(
    field: &mut axum::extract::multipart::Field<'_>,
    media: &MediaService,
) -> Result<Option<bytes::Bytes>> {
    tokio::time::timeout(media.config.http_header_timeout(), field.chunk())
        .await
        .map_err(|_| stalled())?
        .map_err(multipart_error)
}

/// Reads a part that is not the file to its end (the body's limit bounds it).
async fn drain(mut field: axum::extract::multipart::Field<'_>, media: &MediaService) -> Result<()> {
    while chunk(&mut field, media).await?.is_some() {}
    Ok(())
}

/// The last path component of the client's file name, without control or bidi characters.
fn clean_name(raw: &str) -> Option<String> {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let name: String = base
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .take(NAME_MAX_CHARS)
        .collect();
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Streams the file part into a scratch file; decides its kind once its first bytes are in.
async fn receive(
    mut field: axum::extract::multipart::Field<'_>,
    media: &MediaService,
    declared: Option<MediaKind>,
    quota_left: u64,
) -> Result<Received> {
    let name = field.file_name().and_then(clean_name);
    tokio::fs::create_dir_all(&media.tmp_dir)
        .await
        .map_err(|e| Error::Unavailable(format!("media scratch directory: {e}")))?;
    let scratch = Scratch(media.tmp_dir.join(format!("{}.part", new_id())));
    let file = tokio::fs::File::create(&scratch.0)
        .await
        .map_err(|e| Error::Unavailable(format!("media scratch file: {e}")))?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut typed: Option<(String, MediaKind, u64)> = None;
    let mut size = 0u64;
    let write_error = |e: std::io::Error| Error::Unavailable(format!("media scratch file: {e}"));
    loop {
        let piece = chunk(&mut field, media).await?;
        let done = piece.is_none();
        if let Some(piece) = &piece {
            size += piece.len() as u64;
            if head.len() < HEAD_BYTES {
                let take = (HEAD_BYTES - head.len()).min(piece.len());
                head.extend_from_slice(&piece[..take]);
            }
            out.write_all(piece).await.map_err(write_error)?;
        }
        if typed.is_none() && (head.len() >= HEAD_BYTES || done) {
            let (mime, kind) = typed_as(&head, declared)?;
            typed = Some((mime, kind, media.max_bytes(kind)));
        }
        if let Some((_, kind, max)) = &typed {
            if size > *max {
                return Err(Error::TooLarge(format!(
                    "{} uploads are limited to {} MiB",
                    kind.as_str(),
                    max / (1024 * 1024)
                )));
            }
        }
        if size > quota_left {
            return Err(Error::LimitReached(
                "this upload would exceed the daily quota (media_quota_mb_per_day)",
            ));
        }
        if done {
            break;
        }
    }
    out.flush().await.map_err(write_error)?;
    let Some((mime, kind, _)) = typed else {
        return Err(Error::Internal("upload was never typed".into()));
    };
    if size == 0 {
        return Err(Error::BadRequest("the file is empty".into()));
    }
    Ok(Received {
        scratch,
        size,
        kind,
        mime,
        name,
    })
}

/// The MIME type and kind of an upload from its first bytes and what the client declared.
fn typed_as(head: &[u8], declared: Option<MediaKind>) -> Result<(String, MediaKind)> {
    let (mime, found) = probe::sniff(head);
    match declared {
        None | Some(MediaKind::File) => Ok((mime, declared.unwrap_or(found))),
        Some(MediaKind::Image) if found == MediaKind::Image => Ok((mime, found)),
        Some(MediaKind::Image) => Err(Error::UnsupportedMedia(format!(
            "images must be JPEG, PNG, GIF or WebP; this is {mime}"
        ))),
        Some(MediaKind::Voice) if found == MediaKind::Voice => Ok((mime, found)),
        // An MP4 container whose brand says video may still hold only audio: the container reader decides.
        Some(MediaKind::Voice) if mime == "video/mp4" => Ok(("audio/mp4".into(), MediaKind::Voice)),
        Some(MediaKind::Voice) => Err(Error::UnsupportedMedia(format!(
            "voice must be AAC (ADTS or M4A), MP3 or WAV; this is {mime}"
        ))),
    }
}

/// Measures the upload, moves it (and an image's thumbnail) into storage and records it.
async fn store(app: &App, owner: UserId, received: Received, public: bool) -> Result<Media> {
    let media = &app.media;
    let id = new_id();
    let mut record = Media {
        storage_key: storage_key(&id, false),
        id,
        owner_id: owner,
        kind: received.kind,
        mime: received.mime.clone(),
        size: received.size as i64,
        width: None,
        height: None,
        duration_ms: None,
        name: received.name,
        thumb_key: None,
        thumb_mime: None,
        thumb_size: None,
        public,
        created_at: now_millis(),
    };
    let path = received.scratch.0.clone();
    let _storing = media
        .store_slots
        .acquire()
        .await
        .map_err(|_| Error::Unavailable("shutting down".into()))?;
    match received.kind {
        MediaKind::Image => {
            let _decoding = media
                .decode_slots
                .acquire()
                .await
                .map_err(|_| Error::Unavailable("shutting down".into()))?;
            let max_pixels = media.config.media.media_max_image_pixels;
            let info = blocking(path.clone(), move |p| probe::image(p, max_pixels)).await?;
            record.width = Some(info.width.into());
            record.height = Some(info.height.into());
            let thumb = Scratch(path.with_extension("thumb"));
            tokio::fs::write(&thumb.0, &info.thumb)
                .await
                .map_err(|e| Error::Unavailable(format!("media scratch file: {e}")))?;
            let key = storage_key(&record.id, true);
            media
                .storage
                .put_file(&key, &thumb.0, info.thumb.len() as u64)
                .await?;
            record.thumb_key = Some(key);
            record.thumb_mime = Some(info.thumb_mime.into());
            record.thumb_size = Some(info.thumb.len() as i64);
        }
        MediaKind::Voice => {
            let mime = received.mime.clone();
            record.duration_ms =
                Some(blocking(path.clone(), move |p| probe::duration_ms(p, &mime)).await?);
        }
        MediaKind::File => {}
    }
    media
        .storage
        .put_file(&record.storage_key, &path, received.size)
        .await?;
    app.store.media_insert(&record).await?;
    drop(received.scratch);
    Ok(record)
}

async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce(&Path) -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || f(&path))
        .await
        .map_err(|e| Error::Internal(format!("media probe failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_last_component_only() {
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(
            clean_name("C:\\x\\report.pdf").as_deref(),
            Some("report.pdf")
        );
        assert_eq!(clean_name("a\u{202E}b\n.txt").as_deref(), Some("ab.txt"));
        assert_eq!(clean_name("  "), None);
        assert_eq!(clean_name(&"x".repeat(300)).map(|n| n.len()), Some(255));
    }

    #[test]
    fn the_content_decides_not_the_declared_kind() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(typed_as(png, None).unwrap().1, MediaKind::Image);
        assert_eq!(
            typed_as(png, Some(MediaKind::File)).unwrap().1,
            MediaKind::File
        );
        assert!(matches!(
            typed_as(b"hello, not an image", Some(MediaKind::Image)),
            Err(Error::UnsupportedMedia(_))
        ));
        assert!(matches!(
            typed_as(png, Some(MediaKind::Voice)),
            Err(Error::UnsupportedMedia(_))
        ));
        assert_eq!(
            typed_as(b"plain text", None).unwrap(),
            ("application/octet-stream".into(), MediaKind::File)
        );
    }
}
