//! Where media bytes live: the seam between the server and object storage. [`Local`] keeps them as files
//! under data_dir/media (embedded, nothing to run, one node); [`S3`] in any S3-compatible object storage
//! through `object_store` (for clusters: every node reads what any node stored).
//!
//! Both take a finished upload from its scratch file and serve byte ranges as streams, so neither ever holds
//! a whole medium in memory: Local renames the file and reads it back in 64 KiB pieces; S3 sends a file of up
//! to 5 MiB in one PUT and a larger one as a multipart upload of 5 MiB parts, one part in flight.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::config::Config;
use crate::error::{Error, Result};

/// A medium's bytes, as they are read.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Size of the pieces read from a file, and of S3 parts (S3's smallest part but the last).
const READ_CHUNK: usize = 64 * 1024;
const PART_BYTES: usize = 5 * 1024 * 1024;

#[async_trait]
pub trait Storage: Send + Sync {
    /// Takes the finished upload at `file` (`size` bytes) in under `key`; the file may be gone afterwards.
    async fn put_file(&self, key: &str, file: &Path, size: u64) -> Result<()>;
    /// Bytes `range` of the object `key`.
    async fn get(&self, key: &str, range: Range<u64>) -> Result<ByteStream>;
    /// Deletes the object `key`; one that is already gone is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// Opens the storage `media_storage` names.
pub fn open(config: &Config) -> Result<Arc<dyn Storage>> {
    let spec = config.media.media_storage.trim();
    if spec == "local" {
        return Ok(Arc::new(Local {
            root: config.data_dir.join("media").join("objects"),
        }));
    }
    let rest = spec.strip_prefix("s3://").ok_or_else(|| {
        Error::InvalidArgs(format!(
            "media_storage must be \"local\" or \"s3://bucket[/prefix]\", not \"{spec}\""
        ))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::InvalidArgs("media_storage names no bucket".into()));
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &config.media.media_s3_endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &config.media.media_s3_region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &config.media.media_s3_access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &config.media.media_s3_secret_access_key {
        builder = builder.with_secret_access_key(secret.as_str());
    }
    let store = builder
        .build()
        .map_err(|e| Error::InvalidArgs(format!("media_storage: {e}")))?;
    Ok(Arc::new(S3 {
        store,
        prefix: prefix.trim_matches('/').to_string(),
    }))
}

/// Files under a directory.
pub struct Local {
    root: PathBuf,
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound("no such media")
    } else {
        Error::Unavailable(format!("media storage: {what}: {e}"))
    }
}

#[async_trait]
impl Storage for Local {
    async fn put_file(&self, key: &str, file: &Path, _size: u64) -> Result<()> {
        let target = self.root.join(key);
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_error("create directory", e))?;
        }
        // The scratch directory is on the same file system (both under data_dir/media): a rename.
        if tokio::fs::rename(file, &target).await.is_err() {
            tokio::fs::copy(file, &target)
                .await
                .map_err(|e| io_error("copy", e))?;
        }
        Ok(())
    }

    async fn get(&self, key: &str, range: Range<u64>) -> Result<ByteStream> {
        let mut file = tokio::fs::File::open(self.root.join(key))
            .await
            .map_err(|e| io_error("open", e))?;
        file.seek(SeekFrom::Start(range.start))
            .await
            .map_err(|e| io_error("seek", e))?;
        let limited = file.take(range.end.saturating_sub(range.start));
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            limited, READ_CHUNK,
        )))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.root.join(key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("delete", e)),
            _ => Ok(()),
        }
    }
}

/// An S3-compatible bucket (AWS, MinIO, Ceph, R2, OSS, COS...), keys under an optional prefix.
pub struct S3 {
    store: AmazonS3,
    prefix: String,
}

impl S3 {
    fn path(&self, key: &str) -> object_store::path::Path {
        if self.prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        }
    }
}

fn s3_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound("no such media"),
        other => Error::Unavailable(format!("media storage: {other}")),
    }
}

#[async_trait]
impl Storage for S3 {
    async fn put_file(&self, key: &str, file: &Path, size: u64) -> Result<()> {
        let path = self.path(key);
        let mut file = tokio::fs::File::open(file)
            .await
            .map_err(|e| io_error("open upload", e))?;
        if size <= PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes)
                .await
                .map_err(|e| io_error("read upload", e))?;
            self.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(s3_error)?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&path).await.map_err(s3_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0; READ_CHUNK];
        loop {
            let read = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io_error("read upload", e));
                }
            };
            // At most one part on its way while the next one fills.
            if let Err(e) = writer.wait_for_capacity(1).await {
                let _ = writer.abort().await;
                return Err(s3_error(e));
            }
            writer.write(&buf[..read]);
        }
        writer.finish().await.map_err(s3_error)?;
        Ok(())
    }

    async fn get(&self, key: &str, range: Range<u64>) -> Result<ByteStream> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(s3_error)?;
        Ok(Box::pin(
            got.into_stream()
                .map_err(|e| std::io::Error::other(e.to_string()))
                .boxed(),
        ))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(e)),
        }
    }
}
