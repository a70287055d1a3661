//! A repository under an S3 prefix (AWS S3 or any S3-compatible store).
//!
//! Endpoint, region and credentials come from the standard AWS chain
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, profiles, instance
//! roles). Path-style addressing is used when `VAULT_S3_PATH_STYLE=1` or a
//! custom endpoint is set. Puts carry `If-None-Match: *`, so an existing
//! object is never overwritten; objects above a threshold go up in parts and
//! are completed with `If-None-Match: *` too. Reads stream through ranged GETs.
//!
//! Retries are vault's own, not the SDK's: every request (including reading
//! a GET's body, which the SDK does not retry) is retried with exponential
//! backoff and jitter on 5xx, throttling, timeouts and dropped connections,
//! never on other 4xx such as 403, 404 or 412. When the attempts are spent,
//! the error names the key, the number of attempts and the last cause.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectLockMode};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use md5::Digest as _;

use super::{
    LockMode, ObjectInfo, ObjectLock, PendingUpload, PutOutcome, ReadSeek, Storage, StorageError,
};

/// Bytes fetched per ranged GET when streaming an object.
const READ_WINDOW: u64 = 4 << 20;

/// The smallest part S3 accepts (except the last one).
const MIN_PART_SIZE: u64 = 5 << 20;

/// An S3 bucket and key prefix (cheap to clone: the client and runtime are shared).
#[derive(Clone)]
pub struct S3Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    runtime: Arc<tokio::runtime::Runtime>,
    tuning: Tuning,
    lock: Arc<Mutex<Option<ObjectLock>>>,
    windows: Arc<WindowCache>,
}

/// Windows of objects kept for readers; objects are immutable, so a
/// window fetched once serves every reader of this storage.
const CACHED_WINDOWS: usize = 8;

/// Which window: the object key and the window's start offset.
type WindowId = (String, u64);

/// One cached window: filled by the first reader that needs it (the others
/// wait on its lock), with the object's total length.
type WindowSlot = Arc<Mutex<Option<(Arc<Vec<u8>>, u64)>>>;

/// The [`READ_WINDOW`]-aligned windows most recently fetched, shared by all
/// readers (restore workers read the same packs, partly out of order): each
/// window of a pack is fetched about once instead of once per reader and
/// per backward seek. At most [`CACHED_WINDOWS`] × 4 MiB stay in memory.
#[derive(Default)]
struct WindowCache {
    /// The windows, and their keys oldest first (for eviction).
    slots: Mutex<(HashMap<WindowId, WindowSlot>, VecDeque<WindowId>)>,
}

/// The settings that shape requests, copied out of [`S3Settings`].
#[derive(Debug, Clone)]
struct Tuning {
    max_attempts: u32,
    retry_base: Duration,
    read_timeout: Duration,
    multipart_threshold: u64,
    part_size: u64,
    storage_class: Option<aws_sdk_s3::types::StorageClass>,
}

fn io_err(key: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        key: key.to_owned(),
        error: std::io::Error::other(e.to_string()),
    }
}

/// Explicit connection settings; anything left `None` comes from the
/// standard AWS chain.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible store.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Static access key id and secret.
    pub credentials: Option<(String, String)>,
    /// Path-style addressing (needed by most self-hosted stores).
    pub path_style: bool,
    /// Attempts per request before giving up (default 6; `VAULT_S3_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Backoff before the second attempt, doubled for each later one up to
    /// 30 s, with jitter (default 500 ms; `VAULT_S3_RETRY_BASE_MS`).
    pub retry_base: Duration,
    /// How long one request may take until the response starts (sending
    /// the request body included), and how long a response body may stall,
    /// before the attempt counts as failed (default 120 s, enough for a
    /// 32 MiB PUT at 280 KB/s; `VAULT_S3_TIMEOUT_SECS`).
    pub read_timeout: Duration,
    /// Objects larger than this are uploaded in parts (default 32 MiB;
    /// `VAULT_S3_MULTIPART_THRESHOLD_MIB`). Default-sized 16 MiB packs stay
    /// one PUT; packs from `--pack-size-mib 64` and up go multipart.
    pub multipart_threshold: u64,
    /// Size of each part (default 16 MiB, at least 5 MiB; `VAULT_S3_PART_SIZE_MIB`).
    pub part_size: u64,
    /// Storage class of new objects, e.g. `STANDARD_IA` or `GLACIER_IR`
    /// (default: the bucket's; `VAULT_S3_STORAGE_CLASS`). Choose one that
    /// allows immediate reads: restores and drills read packs directly.
    pub storage_class: Option<String>,
    /// AWS profile to use (default: `AWS_PROFILE`, else `default`).
    pub profile: Option<String>,
    /// AWS shared credentials file (default: `AWS_SHARED_CREDENTIALS_FILE`,
    /// else `~/.aws/credentials`), e.g. one handed over by systemd.
    pub credentials_file: Option<std::path::PathBuf>,
}

/// S3 settings from the configuration file: each applies only where its
/// environment variable is not set (flag > environment > file).
#[derive(Debug, Clone, Default)]
pub struct S3Defaults {
    /// Endpoint (under `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region (under `AWS_REGION`/`AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Path-style addressing (under `VAULT_S3_PATH_STYLE`).
    pub path_style: Option<bool>,
    /// Storage class (under `VAULT_S3_STORAGE_CLASS`).
    pub storage_class: Option<String>,
    /// Profile (under `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Shared credentials file (under `AWS_SHARED_CREDENTIALS_FILE`).
    pub credentials_file: Option<std::path::PathBuf>,
}

static DEFAULTS: std::sync::OnceLock<S3Defaults> = std::sync::OnceLock::new();

/// Records the configuration file's S3 settings for every S3 repository
/// this process opens (called once, at start, by the CLI).
pub fn set_defaults(defaults: S3Defaults) {
    let _ = DEFAULTS.set(defaults);
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            region: None,
            credentials: None,
            path_style: false,
            max_attempts: 6,
            retry_base: Duration::from_millis(500),
            read_timeout: Duration::from_secs(120),
            multipart_threshold: 32 << 20,
            part_size: 16 << 20,
            storage_class: None,
            profile: None,
            credentials_file: None,
        }
    }
}

fn env_number(name: &str) -> Result<Option<u64>, StorageError> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| StorageError::Unsupported {
                location: name.to_owned(),
                reason: format!("{v:?} is not a whole number"),
            }),
        Err(_) => Ok(None),
    }
}

impl S3Settings {
    /// Settings from the environment: the AWS chain, plus path-style when
    /// `VAULT_S3_PATH_STYLE=1` or a custom endpoint (`AWS_ENDPOINT_URL`) is
    /// set, and the `VAULT_S3_*` tuning variables named on each field.
    pub fn from_env() -> Result<Self, StorageError> {
        let mut s = S3Settings {
            path_style: std::env::var("VAULT_S3_PATH_STYLE")
                .map(|v| v == "1")
                .unwrap_or(false)
                || std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            ..Default::default()
        };
        if let Some(n) = env_number("VAULT_S3_MAX_ATTEMPTS")? {
            s.max_attempts = n.min(100) as u32;
        }
        if let Some(n) = env_number("VAULT_S3_RETRY_BASE_MS")? {
            s.retry_base = Duration::from_millis(n);
        }
        if let Some(n) = env_number("VAULT_S3_TIMEOUT_SECS")? {
            s.read_timeout = Duration::from_secs(n);
        }
        if let Some(n) = env_number("VAULT_S3_MULTIPART_THRESHOLD_MIB")? {
            s.multipart_threshold = n.saturating_mul(1 << 20);
        }
        if let Some(n) = env_number("VAULT_S3_PART_SIZE_MIB")? {
            s.part_size = n.saturating_mul(1 << 20);
        }
        s.storage_class = std::env::var("VAULT_S3_STORAGE_CLASS")
            .ok()
            .filter(|v| !v.trim().is_empty());
        if let Some(d) = DEFAULTS.get() {
            let unset = |names: &[&str]| names.iter().all(|n| std::env::var_os(n).is_none());
            if unset(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]) {
                s.endpoint = d.endpoint.clone();
            }
            if unset(&["AWS_REGION", "AWS_DEFAULT_REGION"]) {
                s.region = d.region.clone();
            }
            if unset(&["VAULT_S3_PATH_STYLE"]) && d.path_style == Some(true) {
                s.path_style = true;
            }
            if s.storage_class.is_none() {
                s.storage_class = d.storage_class.clone();
            }
            if unset(&["AWS_PROFILE"]) {
                s.profile = d.profile.clone();
            }
            if unset(&["AWS_SHARED_CREDENTIALS_FILE"]) {
                s.credentials_file = d.credentials_file.clone();
            }
        }
        Ok(s)
    }

    fn tuning(&self, url: &str) -> Result<Tuning, StorageError> {
        let bad = |reason: String| StorageError::Unsupported {
            location: url.to_owned(),
            reason,
        };
        if self.max_attempts == 0 {
            return Err(bad("at least one attempt per request is needed".into()));
        }
        if self.read_timeout.is_zero() {
            return Err(bad("the S3 timeout must be at least one second".into()));
        }
        if !(MIN_PART_SIZE..=5 << 30).contains(&self.part_size) {
            return Err(bad(format!(
                "part size {} bytes is outside S3's 5 MiB–5 GiB",
                self.part_size
            )));
        }
        let storage_class = match self.storage_class.as_deref().map(str::trim) {
            None => None,
            Some(c)
                if !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
            {
                Some(aws_sdk_s3::types::StorageClass::from(c))
            }
            Some(c) => {
                return Err(bad(format!(
                    "{c:?} is not an S3 storage class such as STANDARD_IA"
                )));
            }
        };
        Ok(Tuning {
            max_attempts: self.max_attempts,
            retry_base: self.retry_base,
            read_timeout: self.read_timeout,
            multipart_threshold: self.multipart_threshold,
            part_size: self.part_size,
            storage_class,
        })
    }
}

/// How one failed attempt ends.
enum Failure {
    /// Another attempt may succeed (5xx, throttling, timeouts, dropped
    /// connections, truncated bodies); carries the cause for the final message.
    Transient(String),
    /// No retry can help.
    Final(StorageError),
}

/// Status, code and message of a service error, for messages.
fn describe<E: ProvideErrorMetadata>(status: Option<u16>, e: &E) -> String {
    let status = status.map_or(String::new(), |s| format!("HTTP {s} "));
    format!(
        "{status}{}: {}",
        e.code().unwrap_or("error"),
        e.message().unwrap_or("(no message)")
    )
}

/// Sorts an SDK error into transient and final.
fn classify<E>(key: &str, e: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::TimeoutError(_) => Failure::Transient("timed out".into()),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            Failure::Transient("timed out waiting for the server".into())
        }
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient(DisplayErrorContext(&e).to_string())
        }
        SdkError::ServiceError(_) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let transient = matches!(status, Some(s) if s >= 500 || s == 429)
                || matches!(
                    e.code(),
                    Some(
                        "SlowDown"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "ThrottlingException"
                            | "ConditionalRequestConflict"
                    )
                );
            if transient {
                Failure::Transient(describe(status, &e))
            } else {
                Failure::Final(map_sdk(key, e))
            }
        }
        _ => Failure::Final(map_sdk(key, e)),
    }
}

/// Maps a final SDK error to a [`StorageError`] naming `key`.
fn map_sdk<E>(key: &str, e: SdkError<E>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
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
    if status == Some(403) || code.as_deref() == Some("AccessDenied") {
        return StorageError::Refused {
            key: key.to_owned(),
            status: status.unwrap_or(403),
            message: describe(None, &e),
        };
    }
    if matches!(e, SdkError::ServiceError(_)) {
        return io_err(key, describe(status, &e));
    }
    io_err(key, DisplayErrorContext(e))
}

/// Reads a whole body, failing (transiently) when the server stalls for
/// longer than `idle` or the body is shorter than announced.
async fn collect(
    mut body: ByteStream,
    expected: Option<u64>,
    idle: Duration,
) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(expected.unwrap_or(0).min(64 << 20) as usize);
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => {
                return Err(Failure::Transient(format!(
                    "no data for {} s while reading the body",
                    idle.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
            Ok(Some(Err(e))) => {
                return Err(Failure::Transient(format!(
                    "connection lost while reading the body: {}",
                    DisplayErrorContext(e)
                )));
            }
        }
    }
    match expected {
        Some(n) if n != out.len() as u64 => Err(Failure::Transient(format!(
            "body ended after {} of {n} bytes",
            out.len()
        ))),
        _ => Ok(out),
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn s3_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Governance => ObjectLockMode::Governance,
        LockMode::Compliance => ObjectLockMode::Compliance,
    }
}

/// The retain-until date for an object put now.
fn retain_until(lock: &ObjectLock) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(
        Utc::now().timestamp() + i64::from(lock.days) * 86_400,
    )
}

/// Base64 MD5, sent as `Content-MD5` on puts into a locked bucket: S3
/// requires an integrity header there, and Content-MD5 is the one every
/// S3-compatible store accepts whatever the SDK's checksum settings.
fn content_md5(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl S3Storage {
    /// Connects to `s3://bucket/prefix` using the standard AWS configuration.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Self::open_with(url, &S3Settings::from_env()?)
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
        let tuning = settings.tuning(url)?;
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
        if let Some(p) = &settings.profile {
            loader = loader.profile_name(p);
        }
        if let Some(f) = &settings.credentials_file {
            use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
            loader = loader.profile_files(
                EnvConfigFiles::builder()
                    .include_default_config_file(true)
                    .with_file(EnvConfigFileKind::Credentials, f)
                    .build(),
            );
        }
        if let Some((id, secret)) = &settings.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id, secret, None, None, "vault",
            ));
        }
        // vault retries itself (see the module docs), so the SDK makes one
        // attempt per call. The attempt timeout is a backstop for a part or
        // object upload that crawls; `read_timeout` catches a silent server.
        loader = loader
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(tuning.read_timeout)
                    .operation_attempt_timeout(Duration::from_secs(600))
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
            tuning,
            lock: Arc::new(Mutex::new(None)),
            windows: Arc::default(),
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn current_lock(&self) -> Option<ObjectLock> {
        *self.lock.lock().expect("lock setting is never poisoned")
    }

    /// Runs `op` until it succeeds, fails for good, or the attempts are spent.
    fn retry<T, F, Fut>(&self, key: &str, what: &str, mut op: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.runtime.block_on(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let cause = match op().await {
                    Ok(v) => return Ok(v),
                    Err(Failure::Final(e)) => return Err(e),
                    Err(Failure::Transient(cause)) => cause,
                };
                if attempt >= self.tuning.max_attempts {
                    return Err(StorageError::RetriesExhausted {
                        key: key.to_owned(),
                        attempts: attempt,
                        last: format!("{what}: {cause}"),
                    });
                }
                let delay = backoff(self.tuning.retry_base, attempt);
                tracing::info!(
                    "{key}: {what} attempt {attempt} failed ({cause}); retrying in {} ms",
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
            }
        })
    }

    /// GETs `key` (a byte range of it, when given); returns the body and the
    /// object's total length.
    /// The window of `key` starting at `start` (a multiple of
    /// [`READ_WINDOW`]) and the object's length, from the shared cache or
    /// one ranged GET.
    fn window(&self, key: &str, start: u64) -> Result<(Arc<Vec<u8>>, u64), StorageError> {
        let slot = {
            let mut guard = self.windows.slots.lock().expect("window cache lock");
            let (slots, order) = &mut *guard;
            let id = (key.to_owned(), start);
            let slot = slots
                .entry(id.clone())
                .or_insert_with(|| {
                    order.push_back(id);
                    WindowSlot::default()
                })
                .clone();
            while order.len() > CACHED_WINDOWS {
                if let Some(old) = order.pop_front() {
                    slots.remove(&old);
                }
            }
            slot
        };
        let mut filled = slot.lock().expect("window slot lock");
        if let Some((data, len)) = &*filled {
            return Ok((data.clone(), *len));
        }
        let (data, len) = self.fetch(key, Some((start, READ_WINDOW)))?;
        let data = Arc::new(data);
        *filled = Some((data.clone(), len));
        Ok((data, len))
    }

    fn fetch(&self, key: &str, range: Option<(u64, u64)>) -> Result<(Vec<u8>, u64), StorageError> {
        let full = self.full(key);
        let (client, bucket, idle) = (&self.client, &self.bucket, self.tuning.read_timeout);
        self.retry(key, "GET", || {
            let full = &full;
            async move {
                let mut req = client.get_object().bucket(bucket).key(full);
                if let Some((start, len)) = range {
                    req = req.range(format!("bytes={}-{}", start, start + len - 1));
                }
                let resp = req.send().await.map_err(|e| classify(key, e))?;
                let length = resp.content_length().map(|n| n.max(0) as u64);
                let total = resp
                    .content_range()
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|t| t.parse().ok())
                    .or(length)
                    .unwrap_or(0);
                let body = collect(resp.body, length, idle).await?;
                Ok((body, total))
            }
        })
    }

    /// HEADs `key`.
    fn head(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::head_object::HeadObjectOutput, StorageError> {
        let full = self.full(key);
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry(key, "HEAD", || {
            let full = &full;
            async move {
                client
                    .head_object()
                    .bucket(bucket)
                    .key(full)
                    .send()
                    .await
                    .map_err(|e| classify(key, e))
            }
        })
    }

    /// One PUT with `If-None-Match: *`.
    fn put_single(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        self.put_single_with(key, data, self.current_lock())
    }

    fn put_single_with(
        &self,
        key: &str,
        data: &[u8],
        lock: Option<ObjectLock>,
    ) -> Result<PutOutcome, StorageError> {
        let full = self.full(key);
        let class = &self.tuning.storage_class;
        let md5 = lock.map(|_| content_md5(data));
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry(key, "PUT", || {
            let (full, md5) = (&full, &md5);
            async move {
                let mut req = client
                    .put_object()
                    .bucket(bucket)
                    .key(full)
                    .if_none_match("*")
                    .set_storage_class(class.clone())
                    .body(ByteStream::from(data.to_vec()));
                if let Some(l) = &lock {
                    req = req
                        .object_lock_mode(s3_mode(l.mode))
                        .object_lock_retain_until_date(retain_until(l))
                        .set_content_md5(md5.clone());
                }
                match req.send().await {
                    Ok(_) => Ok(PutOutcome::Created),
                    Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => {
                        Ok(PutOutcome::AlreadyExists)
                    }
                    Err(e) => Err(classify(key, e)),
                }
            }
        })
    }

    /// Uploads `data` in parts of `part_size`, completing with
    /// `If-None-Match: *`; aborts the upload on any failure.
    fn put_multipart(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        // Objects are content-addressed: an existing one already holds these
        // bytes, so skip the upload (the If-None-Match on completion still
        // guards against a writer racing us).
        match self.head(key) {
            Ok(_) => return Ok(PutOutcome::AlreadyExists),
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let full = self.full(key);
        let lock = self.current_lock();
        let class = &self.tuning.storage_class;
        let (client, bucket) = (&self.client, &self.bucket);
        let upload_id = self.retry(key, "CreateMultipartUpload", || {
            let full = &full;
            async move {
                let mut req = client
                    .create_multipart_upload()
                    .bucket(bucket)
                    .key(full)
                    .set_storage_class(class.clone());
                if let Some(l) = &lock {
                    req = req
                        .object_lock_mode(s3_mode(l.mode))
                        .object_lock_retain_until_date(retain_until(l));
                }
                let out = req.send().await.map_err(|e| classify(key, e))?;
                out.upload_id().map(str::to_owned).ok_or_else(|| {
                    Failure::Final(io_err(key, "CreateMultipartUpload returned no upload id"))
                })
            }
        })?;
        let mut result = self.upload_parts(key, &full, &upload_id, data, lock.is_some());
        if let (Ok(PutOutcome::Created), Some(l)) = (&result, &lock)
            && let Err(e) = self.ensure_retention(key, l)
        {
            result = Err(e);
        }
        if !matches!(result, Ok(PutOutcome::Created)) {
            let upload = PendingUpload {
                key: key.to_owned(),
                upload_id: upload_id.clone(),
                started: None,
            };
            if let Err(e) = self.abort_upload(&upload) {
                tracing::warn!(
                    "{key}: could not abort multipart upload {upload_id} ({e}); \
                     `vault check --storage --clean-uploads` removes it later"
                );
            }
        }
        result
    }

    /// Makes sure a completed multipart object carries its retention. S3
    /// applies the lock given to CreateMultipartUpload; some S3-compatible
    /// stores (moto among them) drop it, so check, and set it if missing.
    fn ensure_retention(&self, key: &str, lock: &ObjectLock) -> Result<(), StorageError> {
        if self.head(key)?.object_lock_retain_until_date().is_some() {
            return Ok(());
        }
        self.put_retention(key, lock, retain_until(lock))
    }

    /// Sets `key`'s retention to `until` in `lock`'s mode (S3 only allows
    /// lengthening it).
    fn put_retention(
        &self,
        key: &str,
        lock: &ObjectLock,
        until: aws_sdk_s3::primitives::DateTime,
    ) -> Result<(), StorageError> {
        let full = self.full(key);
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry(key, "PutObjectRetention", || {
            let full = &full;
            async move {
                let retention = aws_sdk_s3::types::ObjectLockRetention::builder()
                    .mode(match lock.mode {
                        LockMode::Governance => {
                            aws_sdk_s3::types::ObjectLockRetentionMode::Governance
                        }
                        LockMode::Compliance => {
                            aws_sdk_s3::types::ObjectLockRetentionMode::Compliance
                        }
                    })
                    .retain_until_date(until)
                    .build();
                client
                    .put_object_retention()
                    .bucket(bucket)
                    .key(full)
                    .retention(retention)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(key, e))
            }
        })
    }

    fn upload_parts(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        data: &[u8],
        locked: bool,
    ) -> Result<PutOutcome, StorageError> {
        let (client, bucket) = (&self.client, &self.bucket);
        let mut parts = Vec::new();
        for (i, chunk) in data.chunks(self.tuning.part_size as usize).enumerate() {
            let number = i as i32 + 1;
            let md5 = locked.then(|| content_md5(chunk));
            let etag = self.retry(key, &format!("UploadPart {number}"), || {
                let md5 = &md5;
                async move {
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(full)
                        .upload_id(upload_id)
                        .part_number(number)
                        .set_content_md5(md5.clone())
                        .body(ByteStream::from(chunk.to_vec()))
                        .send()
                        .await
                        .map_err(|e| classify(key, e))?;
                    Ok(out.e_tag().map(str::to_owned))
                }
            })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
        }
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let outcome = self.retry(key, "CompleteMultipartUpload", || {
            let done = &done;
            async move {
                match client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(full)
                    .upload_id(upload_id)
                    .multipart_upload(done.clone())
                    .if_none_match("*")
                    .send()
                    .await
                {
                    Ok(_) => Ok(PutOutcome::Created),
                    Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(412) => {
                        Ok(PutOutcome::AlreadyExists)
                    }
                    Err(e) => Err(classify(key, e)),
                }
            }
        });
        match outcome {
            // A retried completion whose first attempt did complete finds the
            // upload gone; the object is there if that is what happened.
            Err(StorageError::NotFound { .. }) => match self.head(key) {
                Ok(h) if h.content_length() == Some(data.len() as i64) => Ok(PutOutcome::Created),
                _ => Err(io_err(
                    key,
                    "the multipart upload vanished before completion",
                )),
            },
            other => other,
        }
    }
}

/// Exponential backoff with jitter: half the doubled delay, plus a random
/// share of the other half; capped at 30 s.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(Duration::from_secs(30));
    let half = full / 2;
    half + half.mul_f64(rand::Rng::r#gen::<f64>(&mut rand::thread_rng()))
}

impl Storage for S3Storage {
    fn put(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        if data.len() as u64 > self.tuning.multipart_threshold {
            self.put_multipart(key, data)
        } else {
            self.put_single(key, data)
        }
    }

    fn put_transient(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        self.put_single_with(key, data, None)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.fetch(key, None).map(|(body, _)| body)
    }

    fn open(&self, key: &str) -> Result<Box<dyn ReadSeek>, StorageError> {
        let (window, total) = self.window(key, 0)?;
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
        let (client, bucket) = (&self.client, &self.bucket);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.retry(prefix, "LIST", || {
                let (full, token) = (&full, &token);
                async move {
                    client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(full)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| classify(prefix, e))
                }
            })?;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                out.push(ObjectInfo {
                    key: k.strip_prefix(&self.prefix).unwrap_or(k).to_owned(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    modified: obj
                        .last_modified()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() || page.is_truncated() != Some(true) {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        // The version id makes the delete real on a versioned bucket: without
        // it S3 only adds a delete marker, and a locked version would stay
        // (and be billed) while the object looked gone.
        let head = self.head(key)?;
        let version = head.version_id().map(str::to_owned);
        let locked = head
            .object_lock_retain_until_date()
            .and_then(to_chrono)
            .filter(|t| *t > Utc::now());
        let full = self.full(key);
        let (client, bucket) = (&self.client, &self.bucket);
        let result = self.retry(key, "DELETE", || {
            let (full, version) = (&full, &version);
            async move {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(full)
                    .set_version_id(version.clone())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(key, e))
            }
        });
        match (result, locked) {
            (
                Err(StorageError::Refused {
                    key,
                    status,
                    message,
                }),
                Some(until),
            ) => Err(StorageError::Refused {
                key,
                status,
                message: format!(
                    "{message}; the object is under Object Lock ({}) until {} and cannot \
                         be deleted before then",
                    head.object_lock_mode().map_or("?", |m| m.as_str()),
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            }),
            (other, _) => other,
        }
    }

    fn locked_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        let head = self.head(key)?;
        if head.object_lock_legal_hold_status()
            == Some(&aws_sdk_s3::types::ObjectLockLegalHoldStatus::On)
        {
            return Ok(Some(DateTime::<Utc>::MAX_UTC));
        }
        Ok(head
            .object_lock_retain_until_date()
            .and_then(to_chrono)
            .filter(|t| *t > Utc::now()))
    }

    fn extend_lock(&self, key: &str, until: DateTime<Utc>) -> Result<(), StorageError> {
        match self.current_lock() {
            Some(lock) => self.put_retention(
                key,
                &lock,
                aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()),
            ),
            None => Ok(()),
        }
    }

    fn check_object_lock(&self) -> Result<(), StorageError> {
        let (client, bucket) = (&self.client, &self.bucket);
        let unsupported = |why: &str| StorageError::Unsupported {
            location: self.location(),
            reason: format!(
                "bucket {bucket:?} {why}; S3 enables Object Lock only when a bucket is created \
                 (aws s3api create-bucket --object-lock-enabled-for-bucket) or on a versioned \
                 bucket, so use such a bucket or drop --object-lock-days"
            ),
        };
        let out = self.retry("config", "GetObjectLockConfiguration", || async move {
            match client
                .get_object_lock_configuration()
                .bucket(bucket)
                .send()
                .await
            {
                Ok(out) => Ok(Some(out)),
                Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok(None),
                Err(e) => Err(classify("config", e)),
            }
        })?;
        let enabled = out
            .as_ref()
            .and_then(|o| o.object_lock_configuration())
            .and_then(|c| c.object_lock_enabled())
            == Some(&aws_sdk_s3::types::ObjectLockEnabled::Enabled);
        if enabled {
            Ok(())
        } else {
            Err(unsupported("does not have Object Lock enabled"))
        }
    }

    fn set_object_lock(&self, lock: Option<ObjectLock>) {
        *self.lock.lock().expect("lock setting is never poisoned") = lock;
    }

    fn pending_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        let (client, bucket, prefix) = (&self.client, &self.bucket, &self.prefix);
        let mut out = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self.retry(prefix, "ListMultipartUploads", || {
                let markers = &markers;
                async move {
                    client
                        .list_multipart_uploads()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_key_marker(markers.0.clone())
                        .set_upload_id_marker(markers.1.clone())
                        .send()
                        .await
                        .map_err(|e| classify(prefix, e))
                }
            })?;
            for u in page.uploads() {
                let (Some(k), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                out.push(PendingUpload {
                    key: k.strip_prefix(prefix.as_str()).unwrap_or(k).to_owned(),
                    upload_id: id.to_owned(),
                    started: u.initiated().and_then(to_chrono),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
        Ok(out)
    }

    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StorageError> {
        let full = self.full(&upload.key);
        let (client, bucket, key) = (&self.client, &self.bucket, upload.key.as_str());
        self.retry(key, "AbortMultipartUpload", || {
            let full = &full;
            async move {
                match client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(full)
                    .upload_id(&upload.upload_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    // Already gone (aborted, or completed after all).
                    Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
                    Err(e) => Err(classify(key, e)),
                }
            }
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
    window: Arc<Vec<u8>>,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let in_window = self.pos >= self.window_start
            && self.pos < self.window_start + self.window.len() as u64;
        if !in_window {
            let start = self.pos - self.pos % READ_WINDOW;
            let (data, _) = self
                .storage
                .window(&self.key, start)
                .map_err(std::io::Error::other)?;
            if start + data.len() as u64 <= self.pos {
                return Ok(0);
            }
            self.window_start = start;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for attempt in 1..6 {
            let d = backoff(base, attempt);
            let full = base * (1 << (attempt - 1));
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(backoff(base, 40) <= Duration::from_secs(30));
    }

    #[test]
    fn content_md5_is_base64_of_the_digest() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn settings_refuse_parts_below_5_mib() {
        let s = S3Settings {
            part_size: 1 << 20,
            ..Default::default()
        };
        assert!(matches!(
            s.tuning("s3://b/p"),
            Err(StorageError::Unsupported { .. })
        ));
    }
}
