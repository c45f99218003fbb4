//! The media keys of [`super::Config`], flattened into it (the keys stay top-level): where uploads are
//! stored, their limits, and the signed URLs that serve them.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::Secret;

/// Media uploads: storage, limits and signed URLs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Args)]
#[serde(default)]
pub struct MediaConfig {
    /// Where uploaded media (images, voice, files) are kept: "local" (under data_dir/media, one node) or
    /// S3-compatible object storage, "s3://bucket" or "s3://bucket/prefix" (any S3 API; for clusters). Uploads
    /// are first streamed to data_dir/media/tmp either way.
    #[arg(long, default_value = "local")]
    pub media_storage: String,
    /// Endpoint of the S3-compatible storage, e.g. "http://127.0.0.1:9000" (unset: AWS, or AWS_ENDPOINT).
    #[arg(long)]
    pub media_s3_endpoint: Option<String>,
    /// Region of the S3 bucket (unset: AWS_REGION or "us-east-1").
    #[arg(long)]
    pub media_s3_region: Option<String>,
    /// Access key id for the S3 storage (unset: AWS_ACCESS_KEY_ID).
    #[arg(long)]
    pub media_s3_access_key_id: Option<String>,
    /// Secret access key for the S3 storage (unset: AWS_SECRET_ACCESS_KEY; prefer the environment or the
    /// file to a flag).
    #[arg(long)]
    pub media_s3_secret_access_key: Option<Secret>,
    /// Key of the HMAC that signs media download URLs (at least 32 bytes, the same on every node). Unset:
    /// derived from cluster_secret when that is set, else generated once and kept in data_dir/media.secret.
    #[arg(long)]
    pub media_secret: Option<Secret>,
    /// A signed media URL (`media_url`) is valid for at least this many seconds (at most a quarter more, so
    /// that repeated requests get the same, cacheable URL).
    #[arg(long, default_value_t = 3600)]
    pub media_url_ttl_secs: u64,
    /// Largest image upload, in MiB.
    #[arg(long, default_value_t = 10)]
    pub media_max_image_mb: u64,
    /// Largest voice upload, in MiB.
    #[arg(long, default_value_t = 5)]
    pub media_max_voice_mb: u64,
    /// Largest file upload, in MiB.
    #[arg(long, default_value_t = 25)]
    pub media_max_file_mb: u64,
    /// Most pixels (width x height) of an uploaded image, read from its header before anything is decoded:
    /// bounds the memory of decoding (4 bytes a pixel) and refuses decompression bombs.
    #[arg(long, default_value_t = 25_000_000)]
    pub media_max_image_pixels: u64,
    /// Uploads per user per minute on this node (also the burst); beyond it: HTTP 429 `rate_limited`.
    #[arg(long, default_value_t = 30)]
    pub media_uploads_per_min: u32,
    /// MiB one user may upload per 24 hours; beyond it: HTTP 409 `limit_reached`.
    #[arg(long, default_value_t = 1024)]
    pub media_quota_mb_per_day: u64,
    /// Longest an upload may take, in seconds (other HTTP requests get three header timeouts); a client that
    /// sends nothing for http_header_timeout_ms meanwhile is cut off.
    #[arg(long, default_value_t = 600)]
    pub media_upload_timeout_secs: u64,
}

impl Default for MediaConfig {
    /// The defaults in the clap attributes (a TOML file that names none of these keys gets them).
    fn default() -> Self {
        super::Config::default().media
    }
}
