//! Which repository and which key: the one place every command resolves
//! `-r`, `-i`, `VAULT_PASSPHRASE_FILE` and the passphrase prompt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use vault::crypto::{ExposeSecret, SecretString};

use vault::repo::{Access, Repository};
use vault::storage::Storage;

/// Where the repository is and which key opens it.
#[derive(Args, Clone)]
pub struct RepoArgs {
    /// Repository: a directory, file:///path or s3://bucket/prefix.
    #[arg(short = 'r', long = "repo", env = "VAULT_REPO")]
    pub repo: String,
    /// Identity file: the writer key, or an owner's age or ssh identity.
    /// Without it, VAULT_PASSPHRASE_FILE (or a terminal prompt) opens a passphrase owner.
    #[arg(short = 'i', long = "identity", env = "VAULT_IDENTITY")]
    pub identity: Option<PathBuf>,
}

impl RepoArgs {
    /// Opens the repository with the key these flags name.
    pub fn open(&self) -> Result<Repository> {
        Key::resolve(self.identity.as_deref())?
            .open(&self.repo)
            .with_context(|| format!("opening repository {}", self.repo))
    }
}

/// The key a caller opens repositories with: an identity file, or a
/// passphrase asked for once (so `copy` and `init --like` open two
/// repositories with one prompt).
pub enum Key {
    /// `-i FILE` (or `VAULT_IDENTITY`).
    File(PathBuf),
    /// A passphrase owner's passphrase.
    Passphrase(SecretString),
}

impl Key {
    /// The key `identity` names, else a passphrase from
    /// `VAULT_PASSPHRASE_FILE` or a terminal prompt; an error when there is
    /// neither.
    pub fn resolve(identity: Option<&Path>) -> Result<Key> {
        match Key::given(identity)? {
            Some(k) => Ok(k),
            None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => Ok(Key::Passphrase(
                super::edge::obtain_passphrase("the repository owner")?,
            )),
            None => bail!(
                "no key given: pass -i KEY (or set VAULT_IDENTITY, or VAULT_PASSPHRASE_FILE for \
                 a passphrase owner)"
            ),
        }
    }

    /// The key given without asking: `identity` or `VAULT_PASSPHRASE_FILE`
    /// (for commands where a key is optional, such as `key list`).
    pub fn given(identity: Option<&Path>) -> Result<Option<Key>> {
        Ok(match identity {
            Some(p) => Some(Key::File(p.to_owned())),
            None if super::edge::passphrase_file().is_some() => Some(Key::Passphrase(
                super::edge::obtain_passphrase("the repository owner")?,
            )),
            None => None,
        })
    }

    /// Opens the repository at `location` with this key.
    pub fn open(&self, location: &str) -> Result<Repository> {
        let storage = open_storage(location)?;
        let access = match self {
            Key::File(p) => Access::IdentityFileWithPassphrase(p, &super::edge::Passphrases),
            Key::Passphrase(p) => {
                Access::Passphrase(SecretString::from(p.expose_secret().to_owned()))
            }
        };
        Ok(Repository::open(storage, access)?)
    }
}

/// Opens the storage at `location` (no key needed), S3 with the options
/// the environment and the configuration file give.
pub fn open_storage(location: &str) -> Result<Arc<dyn Storage>> {
    super::edge::open_storage(location)
}
