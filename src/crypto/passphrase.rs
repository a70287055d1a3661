//! Where passphrases come from. The library never prompts and never reads
//! the environment: the caller hands it a [`PassphraseSource`] (the CLI's
//! reads `VAULT_PASSPHRASE_FILE` or asks on the terminal).

use std::path::PathBuf;

use age::secrecy::SecretString;

use super::keyfile::read_key_file;
use crate::error::CryptoError;

/// Gives passphrases when vault needs one (a passphrase owner, a new
/// passphrase owner, an encrypted ssh key).
pub trait PassphraseSource {
    /// The passphrase for `purpose` (e.g. "the encrypted ssh key /root/id"),
    /// or [`CryptoError::NoPassphrase`] when this source has none.
    fn passphrase(&self, purpose: &str) -> Result<SecretString, crate::Error>;
}

/// No passphrase at all: every request fails with [`CryptoError::NoPassphrase`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPassphrase;

impl PassphraseSource for NoPassphrase {
    fn passphrase(&self, purpose: &str) -> Result<SecretString, crate::Error> {
        Err(CryptoError::NoPassphrase {
            purpose: purpose.to_owned(),
        }
        .into())
    }
}

/// The first line of a file that only its owner can read (checked like a
/// key file: mode 0600 or stricter, owned by the caller or root).
#[derive(Debug, Clone)]
pub struct PassphraseFile(pub PathBuf);

impl PassphraseSource for PassphraseFile {
    fn passphrase(&self, _purpose: &str) -> Result<SecretString, crate::Error> {
        let text = read_key_file(&self.0)?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(CryptoError::EmptyPassphraseFile {
                path: self.0.clone(),
            }
            .into());
        }
        Ok(SecretString::from(line.to_owned()))
    }
}

/// A passphrase the caller already holds.
pub struct GivenPassphrase(pub SecretString);

impl PassphraseSource for GivenPassphrase {
    fn passphrase(&self, _purpose: &str) -> Result<SecretString, crate::Error> {
        Ok(self.0.clone())
    }
}
