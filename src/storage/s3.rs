//! A repository under an S3 prefix (AWS S3 or any S3-compatible store).
//!
//! Endpoint, region and credentials come from the standard AWS chain
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, profiles, instance
//! roles). Path-style addressing is used when `VAULT_S3_PATH_STYLE=1` or a
//! custom endpoint is set. Puts carry `If-None-Match: *`, so an existing
//! object is never overwritten. Reads stream through ranged GETs.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;

use super::{ObjectInfo, PutOutcome, ReadSeek, Storage, StorageError};

/// Bytes fetched per ranged GET when streaming an object.
const READ_WINDOW: u64 = 4 << 20;

/// An S3 bucket and key prefix (cheap to clone: the client and runtime are shared).
#[derive(Clone)]
pub struct S3Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    runtime: Arc<tokio::runtime::Runtime>,
}

fn io_err(key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        key: key.to_owned(),
        error: std::io::Error::other(e.to_string()),
    }
}

/// Explicit connection settings; anything left `None` comes from the
/// standard AWS chain.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible store.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Static access key id and secret.
    pub credentials: Option<(String, String)>,
    /// Path-style addressing (needed by most self-hosted stores).
    pub path_style: bool,
}

impl S3Settings {
    /// Settings from the environment: the AWS chain, plus path-style when
    /// `VAULT_S3_PATH_STYLE=1` or a custom endpoint (`AWS_ENDPOINT_URL`) is set.
    pub fn from_env() -> Self {
        S3Settings {
            path_style: std::env::var("VAULT_S3_PATH_STYLE")
                .map(|v| v == "1")
                .unwrap_or(false)
                || std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            ..Default::default()
        }
    }
}

impl S3Storage {
    /// Connects to `s3://bucket/prefix` using the standard AWS configuration.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_with(url, &S3Settings::from_env())
    }

    /// Connects to `s3://bucket/prefix` with explicit settings.
    pub fn open_with(url: &str, settings: &S3Settings) -> Result<Self, StorageError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| io_err(url, "not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(io_err(url, "the URL names no bucket"));
        }
        let prefix = prefix.trim_matches('/');
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| io_err(url, e))?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(e) = &settings.endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some(r) = &settings.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some((id, secret)) = &settings.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id, secret, None, None, "vault",
            ));
        }
        // Retries with exponential backoff and jitter on 5xx, throttling
        // (SlowDown, 429), timeouts and connection errors; none on 4xx such
        // as 403, 404 or 412.
        loader = loader
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .operation_attempt_timeout(std::time::Duration::from_secs(300))
                    .build(),
            );
        let shared = runtime.block_on(loader.load());
        let path_style = settings.path_style || settings.endpoint.is_some();
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(path_style)
            .build();
        Ok(S3Storage {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            runtime: Arc::new(runtime),
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// GETs `key` (a byte range of it, when given); returns the body and the
    /// object's total length.
    fn fetch(&self, key: &str, range: Option<(u64, u64)>) -> Result<(Vec<u8>, u64), StorageError> {
        let full = self.full(key);
        self.runtime.block_on(async {
            let mut req = self.client.get_object().bucket(&self.bucket).key(&full);
            if let Some((start, len)) = range {
                req = req.range(format!("bytes={}-{}", start, start + len - 1));
            }
            let resp = req.send().await.map_err(|e| map_sdk(key, e))?;
            let total = resp
                .content_range()
                .and_then(|r| r.rsplit('/').next())
                .and_then(|t| t.parse().ok())
                .or_else(|| resp.content_length().map(|n| n.max(0) as u64))
                .unwrap_or(0);
            let body = resp.body.collect().await.map_err(|e| io_err(key, e))?;
            Ok((body.into_bytes().to_vec(), total))
        })
    }
}

fn map_sdk<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    key: &str,
    e: aws_sdk_s3::error::SdkError<E>,
) -> StorageError {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_owned);
    if code.as_deref() == Some("NoSuchBucket") {
        return io_err(
            key,
            "the bucket does not exist (create it, or check the s3:// URL and endpoint)",
        );
    }
    if status == Some(404) || matches!(code.as_deref(), Some("NoSuchKey") | Some("NotFound")) {
        return StorageError::NotFound {
            key: key.to_owned(),
        };
    }
    io_err(key, DisplayErrorContext(e))
}

impl Storage for S3Storage {
    fn put(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        let full = self.full(key);
        self.runtime.block_on(async {
            let result = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .if_none_match("*")
                .body(ByteStream::from(data.to_vec()))
                .send()
                .await;
            match result {
                Ok(_) => Ok(PutOutcome::Created),
                Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => {
                    Ok(PutOutcome::AlreadyExists)
                }
                Err(e) => Err(map_sdk(key, e)),
            }
        })
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.fetch(key, None).map(|(body, _)| body)
    }

    fn open(&self, key: &str) -> Result<Box<dyn ReadSeek>, StorageError> {
        let (window, total) = self.fetch(key, Some((0, READ_WINDOW)))?;
        Ok(Box::new(RangeReader {
            storage: self.clone(),
            key: key.to_owned(),
            len: total.max(window.len() as u64),
            pos: 0,
            window_start: 0,
            window,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let full = self.full(prefix);
        let mut out = Vec::new();
        self.runtime.block_on(async {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| map_sdk(prefix, e))?;
                for obj in page.contents() {
                    let Some(k) = obj.key() else { continue };
                    out.push(ObjectInfo {
                        key: k.strip_prefix(&self.prefix).unwrap_or(k).to_owned(),
                        size: obj.size().unwrap_or(0).max(0) as u64,
                        modified: obj.last_modified().and_then(|t| {
                            chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
                        }),
                    });
                }
            }
            Ok::<_, StorageError>(())
        })?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let full = self.full(key);
        self.runtime.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_sdk(key, e))
        })
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
    }
}

/// Streams an object through ranged GETs, one window at a time.
struct RangeReader {
    storage: S3Storage,
    key: String,
    len: u64,
    pos: u64,
    window_start: u64,
    window: Vec<u8>,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let in_window = self.pos >= self.window_start
            && self.pos < self.window_start + self.window.len() as u64;
        if !in_window {
            let want = READ_WINDOW.min(self.len - self.pos);
            let (data, _) = self
                .storage
                .fetch(&self.key, Some((self.pos, want)))
                .map_err(std::io::Error::other)?;
            if data.is_empty() {
                return Ok(0);
            }
            self.window_start = self.pos;
            self.window = data;
        }
        let off = (self.pos - self.window_start) as usize;
        let n = buf.len().min(self.window.len() - off);
        buf[..n].copy_from_slice(&self.window[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}
