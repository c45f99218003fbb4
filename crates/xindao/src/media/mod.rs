//! Media: images, voice recordings and files sent in messages (docs/protocol.md, "Media").
//!
//! An upload (`POST /v1/media`, multipart, `upload.rs`) streams through a bounded buffer into a scratch file
//! under data_dir/media/tmp, counting its size against the kind's limit as it goes; its type is read from
//! its first bytes (`probe.rs`), never from its name or declared type. Images are measured from their header
//! before anything is decoded, then decoded under `image`'s limits for a thumbnail; voice gets its duration
//! from the container. The finished file moves into [`storage`] (local files or S3-compatible object
//! storage) and its metadata into the store ([`crate::store::MediaStore`]). A `send` of kind image, voice or
//! file names the medium and the server fills in what it knows (`chat::media`). Downloads
//! (`GET /v1/media/{id}`, `http::media`) go through URLs signed by [`sign::Signer`], handed out by the
//! `media_url` operation to the owner and to members of a conversation the medium was sent to.

pub(crate) mod probe;
pub mod sign;
pub mod storage;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::MediaKind;
pub use sign::Signer;
pub use storage::Storage;

/// Image decodes (and thumbnails) at once on a node: each may hold `media_max_image_pixels` x 4 bytes.
const DECODE_SLOTS: usize = 2;
/// Uploads in progress at once on a node; beyond it `unavailable` (each holds a file and a small buffer).
const UPLOAD_SLOTS: usize = 64;
/// Uploads handed to storage at once on a node: an S3 upload holds up to two 5 MiB parts (or a whole file of
/// up to 5 MiB), so this bounds that memory to ~40 MiB; the others wait their turn.
const STORE_SLOTS: usize = 4;

/// The media side of a running server: where the bytes go, how URLs are signed, and the upload limits.
pub struct MediaService {
    pub storage: Arc<dyn Storage>,
    pub signer: Signer,
    /// Scratch directory of uploads in progress (data_dir/media/tmp).
    pub(crate) tmp_dir: PathBuf,
    pub(crate) uploads: crate::limits::PerUser,
    pub(crate) decode_slots: Arc<Semaphore>,
    pub(crate) upload_slots: Arc<Semaphore>,
    pub(crate) store_slots: Arc<Semaphore>,
    pub(crate) config: Arc<Config>,
}

impl MediaService {
    /// Opens the configured storage; `config.media.media_secret` is already resolved ([`sign::resolve_secret`]).
    pub fn open(config: Arc<Config>) -> Result<MediaService> {
        let tmp_dir = config.data_dir.join("media").join("tmp");
        // Uploads cut off by a previous stop: nothing refers to them.
        if let Ok(entries) = std::fs::read_dir(&tmp_dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if config.media.media_storage.trim() == "local"
            && matches!(config.store, crate::config::StoreConfig::Postgres { .. })
        {
            tracing::warn!(
                "media_storage is \"local\" with a PostgreSQL store: each node keeps (and serves) only the \
                 media uploaded to it; use S3-compatible storage for a cluster"
            );
        }
        Ok(MediaService {
            storage: storage::open(&config)?,
            signer: Signer::from_config(&config)?,
            tmp_dir,
            uploads: crate::limits::PerUser::per_minute(config.media.media_uploads_per_min),
            decode_slots: Arc::new(Semaphore::new(DECODE_SLOTS)),
            upload_slots: Arc::new(Semaphore::new(UPLOAD_SLOTS)),
            store_slots: Arc::new(Semaphore::new(STORE_SLOTS)),
            config,
        })
    }

    /// The most bytes an upload of `kind` may have.
    pub fn max_bytes(&self, kind: MediaKind) -> u64 {
        let mb = match kind {
            MediaKind::Image => self.config.media.media_max_image_mb,
            MediaKind::Voice => self.config.media.media_max_voice_mb,
            MediaKind::File => self.config.media.media_max_file_mb,
        };
        mb.saturating_mul(1024 * 1024)
    }

    /// The largest upload of any kind (what the body limit of the upload route allows, plus the form).
    pub(crate) fn max_any(&self) -> u64 {
        [MediaKind::Image, MediaKind::Voice, MediaKind::File]
            .into_iter()
            .map(|kind| self.max_bytes(kind))
            .max()
            .unwrap_or(0)
    }
}

/// A new media id: 128 random bits, base64url (22 characters).
pub fn new_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// Whether `id` has the shape of a media id (checked before it reaches a storage key or a query).
pub fn valid_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A media id from a client, or `invalid_args`.
pub fn parse_id(id: &str) -> Result<&str> {
    if valid_id(id) {
        Ok(id)
    } else {
        Err(Error::InvalidArgs("media_id is not a media id".into()))
    }
}

/// The storage key of a medium and of its thumbnail: spread over 64 directories by the id's first character.
pub fn storage_key(id: &str, thumb: bool) -> String {
    let shard = &id[..1.min(id.len())];
    if thumb {
        format!("{shard}/{id}.thumb")
    } else {
        format!("{shard}/{id}")
    }
}
