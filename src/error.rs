//! The library's error type: one enum per layer, wrapped in [`Error`].
//!
//! Every variant names its subject (a path, an object key, a snapshot id) so
//! that a message read in a journal at 3 a.m. says what is wrong and where.

use std::path::PathBuf;

pub use crate::crypto::CryptoError;
use crate::storage::StorageError;

/// Shorthand for results carrying the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside vault's library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a repository object failed.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// Encryption, decryption or key handling failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),

    /// A repository object is malformed or fails its integrity check.
    #[error("{object}: {reason}")]
    Format {
        /// The object key or blob id that is damaged.
        object: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A local file operation failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The local path involved.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained again).
        error: std::io::Error,
    },

    /// The caller asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),

    /// The operation needs an owner key but was given the writer key.
    #[error(
        "{operation} needs an owner key: the writer key can only add backups and \
         list snapshots (pass an owner identity with -i)"
    )]
    OwnerKeyRequired {
        /// What was attempted.
        operation: &'static str,
    },

    /// No snapshot matches what the user asked for.
    #[error("no snapshot matches {0:?} (`vault snapshots` lists them; `latest` picks the newest)")]
    SnapshotNotFound(String),
}

impl Error {
    /// Builds a [`Error::Format`] for `object`.
    pub fn format(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format {
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}
