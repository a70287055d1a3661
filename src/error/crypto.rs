//! Errors of the crypto layer. Messages never contain key material.

use std::path::PathBuf;

use super::ErrorKind;

/// Errors from the crypto layer. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A recipient string could not be parsed.
    #[error("not a valid age recipient: {0:?} (expected age1…, ssh-ed25519 … or ssh-rsa …)")]
    BadRecipient(String),

    /// An identity file could not be parsed.
    #[error("{}: not an age identity file, an ssh private key or a vault writer key", path.display())]
    BadIdentityFile {
        /// The identity file.
        path: PathBuf,
    },

    /// A key file is readable by group or others.
    #[error(
        "{}: key file is readable by group or others (mode {mode:o}); run `chmod 600` on it",
        path.display()
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A key file belongs to another user than the caller (and is not
    /// root's): whoever owns it could have written a key of their choosing,
    /// or read it, so it is not the caller's secret.
    #[error(
        "{}: key file belongs to user id {owner}, not to you (user id {caller}) or root; \
         `chown` it to the user that runs vault",
        path.display()
    )]
    KeyFileNotOwned {
        /// The key file.
        path: PathBuf,
        /// The file's owner.
        owner: u32,
        /// The caller's effective user id.
        caller: u32,
    },

    /// None of the given identities can decrypt an object.
    #[error("{object}: wrong passphrase or key (none of the given keys can decrypt it)")]
    NoMatchingKey {
        /// The object that could not be decrypted.
        object: String,
    },

    /// An object failed to decrypt (damaged, truncated, or not age at all).
    #[error("{object}: decryption failed: {reason}")]
    Decrypt {
        /// The object that failed.
        object: String,
        /// The age error, which never contains key material.
        reason: String,
    },

    /// Encrypting failed.
    #[error("encryption failed: {0}")]
    Encrypt(String),

    /// A passphrase was needed but the caller's passphrase source has none.
    #[error(
        "{purpose} needs a passphrase and none was given (a passphrase file, or a terminal to type it on)"
    )]
    NoPassphrase {
        /// What the passphrase is for.
        purpose: String,
    },

    /// A passphrase file holds no passphrase on its first line.
    #[error("{}: the passphrase file is empty", path.display())]
    EmptyPassphraseFile {
        /// The passphrase file.
        path: PathBuf,
    },

    /// An encrypted ssh key did not open with the passphrase given.
    #[error("{}: the passphrase does not open this encrypted ssh key", path.display())]
    WrongKeyPassphrase {
        /// The ssh key file.
        path: PathBuf,
    },
}

impl CryptoError {
    /// What sort of failure this is: a bad key or recipient given by the
    /// caller, a key that opens nothing, or a damaged object.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CryptoError::BadRecipient(_)
            | CryptoError::BadIdentityFile { .. }
            | CryptoError::InsecureKeyFile { .. }
            | CryptoError::NoPassphrase { .. }
            | CryptoError::EmptyPassphraseFile { .. } => ErrorKind::InvalidInput,
            CryptoError::KeyFileNotOwned { .. }
            | CryptoError::NoMatchingKey { .. }
            | CryptoError::WrongKeyPassphrase { .. } => ErrorKind::Permission,
            CryptoError::Decrypt { .. } => ErrorKind::Damage,
            CryptoError::Encrypt(_) => ErrorKind::Other,
        }
    }
}
