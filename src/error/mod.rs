//! The library's error type: one enum per layer, wrapped in [`Error`], and
//! the [`ErrorKind`] that tells callers (the CLI's exit codes) what sort of
//! failure it was without parsing messages.
//!
//! Every variant names its subject (a path, an object key, a snapshot id) so
//! that a message read in a journal at 3 a.m. says what is wrong and where.

use std::path::PathBuf;

mod crypto;
mod storage;

pub use crypto::CryptoError;
pub use storage::StorageError;

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

    /// The caller asked for something that cannot be done as asked: a bad
    /// value, pattern or name, or a request refused for safety (the message
    /// says what to ask instead).
    #[error("{0}")]
    InvalidInput(String),

    /// Something the caller named does not exist: a repository, an owner, a
    /// path in a snapshot, a source path.
    #[error("{0}")]
    NotFound(String),

    /// Another process got in the way: it holds the lock, wrote the same
    /// object first, or changed or deleted what this operation relied on.
    /// Running again usually succeeds.
    #[error("{0}")]
    Conflict(String),

    /// The repository is damaged in a way that stops this operation (the
    /// message names what is unreadable or missing and what to run).
    #[error("{0}")]
    Damaged(String),

    /// The key given is not one this repository accepts for this (another
    /// repository's writer key, a retired writer key, no owner at all).
    #[error("{0}")]
    WrongKey(String),

    /// The operation was cancelled before it finished; nothing was committed.
    #[error("{operation} cancelled")]
    Cancelled {
        /// What was cancelled, e.g. `backup`.
        operation: &'static str,
    },

    /// Nothing could be read from any source, so no snapshot was made.
    #[error("nothing could be read, no snapshot made ({0})")]
    NothingRead(String),

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

/// What sort of failure an [`Error`] is, for callers that act on it (the
/// CLI maps kinds to exit codes) rather than print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request cannot be done as asked; a different request would work.
    InvalidInput,
    /// What the caller named does not exist.
    NotFound,
    /// A key, the file system or the storage refused access.
    Permission,
    /// Repository data is damaged, missing, or does not match its hash.
    Damage,
    /// The operation was cancelled.
    Cancelled,
    /// Another process got in the way (a lock, a race, a concurrent delete).
    Conflict,
    /// The storage failed (transport errors, retries exhausted).
    Storage,
    /// Anything else: a local I/O failure, a source that could not be read.
    Other,
}

impl Error {
    /// What sort of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Storage(e) => storage_kind(e),
            Error::Crypto(e) => e.kind(),
            Error::Format { .. } | Error::Damaged(_) => ErrorKind::Damage,
            Error::Io { error, .. } => io_kind(error),
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) | Error::SnapshotNotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::WrongKey(_) | Error::OwnerKeyRequired { .. } => ErrorKind::Permission,
            Error::Cancelled { .. } => ErrorKind::Cancelled,
            Error::NothingRead(_) => ErrorKind::Other,
        }
    }

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

/// The kind of a local I/O error.
fn io_kind(e: &std::io::Error) -> ErrorKind {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            ErrorKind::Permission
        }
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Other,
    }
}

/// The kind of a storage error. An object the repository refers to that is
/// gone is damage; a refusal (HTTP 403, Object Lock) is a permission problem.
fn storage_kind(e: &StorageError) -> ErrorKind {
    match e {
        StorageError::NotFound { .. } => ErrorKind::Damage,
        StorageError::Io { error, .. } => match io_kind(error) {
            ErrorKind::Permission => ErrorKind::Permission,
            _ => ErrorKind::Storage,
        },
        StorageError::Refused { .. } => ErrorKind::Permission,
        StorageError::Unsupported { .. }
        | StorageError::InvalidLocation(_)
        | StorageError::Misconfigured(_) => ErrorKind::InvalidInput,
        StorageError::RetriesExhausted { .. } => ErrorKind::Storage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_tell_permission_from_damage_and_usage() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(Error::io("/x", denied).kind(), ErrorKind::Permission);
        let refused = StorageError::Refused {
            key: "data/ab".into(),
            status: 403,
            message: "AccessDenied".into(),
        };
        assert_eq!(Error::from(refused).kind(), ErrorKind::Permission);
        let gone = StorageError::NotFound {
            key: "data/ab".into(),
        };
        assert_eq!(Error::from(gone).kind(), ErrorKind::Damage);
        assert_eq!(Error::format("tree/x", "bad").kind(), ErrorKind::Damage);
        assert_eq!(
            Error::InvalidInput("--x".into()).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Error::Cancelled {
                operation: "backup"
            }
            .kind(),
            ErrorKind::Cancelled
        );
        let no_key = CryptoError::NoMatchingKey { object: "x".into() };
        assert_eq!(Error::from(no_key).kind(), ErrorKind::Permission);
    }
}
