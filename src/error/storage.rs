//! Errors of the storage layer; each names the object key.

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
    /// The storage refused the request and retrying cannot help: missing
    /// permission (a backup host without delete rights) or an object still
    /// under Object Lock retention.
    #[error("{key}: the storage refused the request (HTTP {status}): {message}")]
    Refused {
        /// The object key.
        key: String,
        /// The HTTP status (403 for S3's AccessDenied).
        status: u16,
        /// The server's error code and message, plus what vault knows about why.
        message: String,
    },
    /// A request failed with transient errors (5xx, throttling, timeouts,
    /// dropped connections) on every attempt.
    #[error("{key}: gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// The object key (or prefix) involved.
        key: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's status or cause.
        last: String,
    },
    /// The storage cannot do what was asked (e.g. Object Lock on a local
    /// directory or on a bucket created without it).
    #[error("{location}: {reason}")]
    Unsupported {
        /// The storage location (`s3://bucket/prefix` or a directory).
        location: String,
        /// What is missing and how to get it.
        reason: String,
    },
    /// The repository location itself is malformed (an empty path).
    #[error("{0}")]
    InvalidLocation(String),
    /// The storage cannot be used as configured (S3 without credentials or
    /// without a region); no request can succeed, so none is retried.
    #[error("{0}")]
    Misconfigured(String),
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
