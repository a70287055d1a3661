//! Where repository objects live: one small trait over opaque keys and bytes.
//!
//! Storage never sees plaintext or snapshot types. Objects are write-once:
//! [`Storage::put`] never replaces an existing object.

mod local;
mod s3;

use std::io::{Read, Seek};

pub use local::LocalStorage;
pub use s3::{S3Settings, S3Storage};

/// Errors from a storage backend; each names the object key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist.
    #[error("{key}: object not found in the repository")]
    NotFound {
        /// The object key.
        key: String,
    },
    /// An I/O or transport error.
    #[error("{key}: {error}")]
    Io {
        /// The object key (or prefix) involved.
        key: String,
        /// The underlying error (shown in the message, so not chained again).
        error: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error for `key`, mapping "not found" to [`StorageError::NotFound`].
    pub fn from_io(key: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound {
                key: key.to_owned(),
            }
        } else {
            StorageError::Io {
                key: key.to_owned(),
                error: source,
            }
        }
    }
}

/// What happened on a put-if-absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object already existed under that key and was left untouched.
    AlreadyExists,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full object key, e.g. `data/ab/ab12…`.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the storage last wrote it (the server's clock for S3), if known.
    /// Prune uses it so that objects a running backup has just written are
    /// never deleted, whatever a planted record claims.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// A readable, seekable object body.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// The operations vault needs from a place that stores objects.
pub trait Storage: Send + Sync {
    /// Stores `data` under `key` unless an object already exists there.
    fn put(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError>;
    /// Reads a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    /// Opens an object for streaming, seekable reads.
    fn open(&self, key: &str) -> Result<Box<dyn ReadSeek>, StorageError>;
    /// Lists every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Deletes an object (owner operations only: prune, forget).
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// A human-readable location for messages.
    fn location(&self) -> String;
    /// Removes what interrupted writes left behind (temporary files of a
    /// killed put) that is older than `older_than`; returns how many were
    /// removed. Owner maintenance (prune) calls it; readers ignore leftovers.
    fn clean_leftovers(&self, older_than: std::time::Duration) -> Result<u64, StorageError> {
        let _ = older_than;
        Ok(0)
    }
}

/// Opens the storage that `repo` names: a directory path, `file:///path`,
/// or `s3://bucket/prefix`.
pub fn open(repo: &str) -> Result<Box<dyn Storage>, crate::Error> {
    if repo.starts_with("s3://") {
        return Ok(Box::new(S3Storage::open(repo)?));
    }
    let path = repo.strip_prefix("file://").unwrap_or(repo);
    if path.is_empty() {
        return Err(crate::Error::Usage("the repository path is empty".into()));
    }
    Ok(Box::new(LocalStorage::new(path)))
}
