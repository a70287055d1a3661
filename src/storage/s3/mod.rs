//! A repository under an S3 prefix (AWS S3 or any S3-compatible store).
//!
//! Split by job: [`options`] (what the caller resolves: endpoint, region,
//! credentials, tuning), `client` (the SDK client), `retry` (vault's own
//! retries), `error` (what a retry can fix), `put` (single and multipart
//! puts, write-once by name), `read` (ranged reads and their shared window
//! cache), `list` (objects and unfinished uploads), `lock` (Object Lock and
//! deletes), `versions` (first-version reads on buckets that keep versions)
//! and `probe` (what the bucket really protects against).
//!
//! Nothing here reads the environment: endpoint, region, credentials and
//! tuning come in [`S3Options`]; only what they leave unset falls to the
//! AWS SDK's own chain. Puts carry `If-None-Match: *`, so an existing
//! object is never overwritten by vault; reads stream through ranged GETs.

#[cfg(feature = "s3")]
mod claim;
#[cfg(feature = "s3")]
mod client;
#[cfg(feature = "s3")]
mod error;
#[cfg(feature = "s3")]
mod list;
#[cfg(feature = "s3")]
mod lock;
pub mod options;
#[cfg(feature = "s3")]
mod probe;
#[cfg(feature = "s3")]
mod put;
#[cfg(feature = "s3")]
mod read;
#[cfg(feature = "s3")]
mod retry;
#[cfg(feature = "s3")]
mod versions;

pub use options::S3Options;

#[cfg(feature = "s3")]
pub use backend::S3Storage;
#[cfg(feature = "s3")]
pub use read::{MAX_READ_AHEAD, READ_AHEAD};

#[cfg(feature = "s3")]
mod backend {
    use std::sync::{Arc, Mutex};

    use chrono::{DateTime, Utc};

    use super::options::{S3Options, Tuning, parse_url};
    use super::read::{RangeReader, WindowCache};
    use super::versions::VersionState;
    use crate::storage::{
        ObjectInfo, ObjectLock, PendingUpload, Protection, PutOutcome, ReadSeek, Rewritten,
        Storage, StorageError,
    };

    /// An S3 bucket and key prefix (cheap to clone: the client, runtime and
    /// caches are shared).
    #[derive(Clone)]
    pub struct S3Storage {
        pub(super) client: aws_sdk_s3::Client,
        pub(super) bucket: String,
        /// The key prefix, empty or ending in `/`.
        pub(super) prefix: String,
        pub(super) runtime: Arc<tokio::runtime::Runtime>,
        pub(super) tuning: Tuning,
        pub(super) lock: Arc<Mutex<Option<ObjectLock>>>,
        pub(super) windows: Arc<WindowCache>,
        pub(super) versions: Arc<VersionState>,
        /// Whether any request has succeeded yet: until one has, an
        /// endpoint that refuses connections is a misconfiguration, not a
        /// hiccup worth retrying.
        pub(super) reached: Arc<std::sync::atomic::AtomicBool>,
        /// The endpoint as configured (`AWS_ENDPOINT_URL`, `[s3] endpoint`),
        /// or a description of AWS's, for messages.
        pub(super) endpoint: String,
        /// Added to this host's clock wherever the storage reads it (zero,
        /// except in tests that show a skewed host clock changes nothing).
        pub(super) host_skew: chrono::Duration,
    }

    /// `url` without a `user:password@` part, for messages.
    fn without_userinfo(url: &str) -> String {
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let host_end = rest.find('/').unwrap_or(rest.len());
                match rest[..host_end].rfind('@') {
                    Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                    None => url.to_owned(),
                }
            }
            None => url.to_owned(),
        }
    }

    impl S3Storage {
        /// Connects to `s3://bucket/prefix` with `options`.
        pub fn open(url: &str, options: &S3Options) -> Result<Self, StorageError> {
            let (bucket, prefix) = parse_url(url)?;
            let tuning = options.tuning(url)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| super::error::io_err(url, e))?;
            let client = super::client::build(options, &tuning, &runtime);
            Ok(S3Storage {
                client,
                bucket,
                prefix: if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                },
                runtime: Arc::new(runtime),
                tuning,
                lock: Arc::new(Mutex::new(None)),
                windows: Arc::default(),
                versions: Arc::default(),
                reached: Arc::default(),
                endpoint: options
                    .endpoint
                    .as_deref()
                    .map_or_else(|| "AWS's S3 endpoint".to_owned(), without_userinfo),
                host_skew: chrono::Duration::zero(),
            })
        }

        /// Shifts this host's clock as the storage sees it by `skew`: for
        /// tests showing that nothing here depends on the host's clock
        /// agreeing with the store's.
        #[doc(hidden)]
        pub fn skew_host_clock_for_tests(&mut self, skew: chrono::Duration) {
            self.host_skew = skew;
        }

        /// This host's clock (as skewed by tests).
        pub(super) fn host_now(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::Utc::now() + self.host_skew
        }

        /// The bucket key of the repository key `key`.
        pub(super) fn full(&self, key: &str) -> String {
            format!("{}{key}", self.prefix)
        }

        /// The repository key of the bucket key `key`.
        pub(super) fn relative(&self, key: &str) -> String {
            key.strip_prefix(self.prefix.as_str())
                .unwrap_or(key)
                .to_owned()
        }
    }

    impl Storage for S3Storage {
        fn put(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
            self.put_object(key, data)
        }

        fn put_transient(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
            if crate::storage::named_by_content(key) {
                self.put_single(key, data, None).map(|(o, _)| o)
            } else {
                self.put_named(key, data, None)
            }
        }

        fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
            self.fetch(key, None).map(|(body, _)| body)
        }

        fn exists(&self, key: &str) -> Result<bool, StorageError> {
            match self.head(key) {
                Ok(_) => Ok(true),
                Err(StorageError::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        }

        fn open(&self, key: &str) -> Result<Box<dyn ReadSeek>, StorageError> {
            Ok(Box::new(RangeReader::open(self, key)?))
        }

        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
            self.list_objects(prefix)
        }

        fn delete(&self, key: &str) -> Result<(), StorageError> {
            self.delete_everything(key)
        }

        fn locked_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
            self.retained_until(key)
        }

        fn extend_lock(&self, key: &str, until: DateTime<Utc>) -> Result<(), StorageError> {
            self.lengthen_lock(key, until)
        }

        fn check_object_lock(&self) -> Result<(), StorageError> {
            self.require_object_lock()
        }

        fn set_object_lock(&self, lock: Option<ObjectLock>) {
            *self.lock.lock().expect("lock setting is never poisoned") = lock;
        }

        fn pending_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
            self.uploads()
        }

        fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StorageError> {
            self.abort(upload)
        }

        fn location(&self) -> String {
            format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
        }

        fn parallel_writes(&self) -> usize {
            // One pack uploading while the next one is sent.
            2
        }

        fn parallel_reads(&self) -> usize {
            // A few dozen round trips in flight: enough to hide 20-50 ms of
            // latency without flooding the store or the connection pool.
            32
        }

        fn clean_leftovers(&self, older_than: std::time::Duration) -> Result<u64, StorageError> {
            let probes = self.list_objects(crate::storage::PROBE_PREFIX)?;
            let claims = self.list_objects(super::claim::CLAIM_PREFIX)?;
            if probes.is_empty() && claims.is_empty() {
                return Ok(0);
            }
            // Ages are measured by the store's clock, read only when there
            // is something to measure (reading it writes an object).
            let now = self.store_now()?;
            Ok(self.remove_stale(probes, older_than, now, "probe object")
                + self.remove_expired_claims(claims, now))
        }

        fn protection(&self) -> Result<Option<Protection>, StorageError> {
            Ok(Some(self.probe_protection()))
        }

        fn rewritten(&self) -> Result<Vec<Rewritten>, StorageError> {
            self.rewritten_objects()
        }
    }
}
