//! Which repository and which key: the one place every command resolves
//! `-r`, `-i`, `VAULT_PASSPHRASE_FILE` and the passphrase prompt.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use vault::crypto::{ExposeSecret, SecretString};

use crate::cli::exit::usage;
use vault::repo::select::SnapshotFilter;
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
    /// Directory of the local cache: metadata (index files, snapshot
    /// headers, drill records), the file cache and the upload journal
    /// [default: $XDG_CACHE_HOME/vault, ~/.cache/vault, /var/cache/vault for root].
    #[arg(long, env = "VAULT_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use no local cache: fetch all metadata, read every file.
    #[arg(long)]
    pub no_cache: bool,
    /// How many metadata objects to fetch at once (1-256) [default: 32 on
    /// S3, 4 on a local directory].
    #[arg(long, env = "VAULT_FETCH_JOBS", value_name = "N")]
    pub fetch_jobs: Option<usize>,
}

impl RepoArgs {
    /// Opens the repository with the key these flags name, with the local
    /// metadata cache unless `--no-cache` (a cache directory that cannot be
    /// used is warned about, and the command goes on without).
    pub fn open(&self) -> Result<Repository> {
        if let Some(n) = self.fetch_jobs
            && !(1..=256).contains(&n)
        {
            usage!("--fetch-jobs {n}: must be between 1 and 256");
        }
        let mut repo = Key::resolve(self.identity.as_deref())?
            .open(&self.repo)
            .with_context(|| format!("opening repository {}", self.repo))?;
        if let Some(n) = self.fetch_jobs {
            repo.set_fetch_jobs(n);
        }
        if let Some(dir) = self.cache_dir()
            && let Err(e) = repo.use_cache(&dir)
        {
            crate::cli::render::warning(&format!(
                "metadata cache not usable, going on without it (slower): {e}"
            ));
        }
        Ok(repo)
    }

    /// The cache directory: `--cache-dir`, else the default; none with
    /// `--no-cache`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        }
    }
}

/// Where the cache lives when `--cache-dir` is not given.
fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("vault"));
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/cache/vault"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vault"))
}

/// `--host`, `--tag`, `--path`: which snapshots a command considers in a
/// repository several hosts share; `latest` is the newest of those.
#[derive(Args, Clone, Default)]
pub struct SelectArgs {
    /// Only snapshots of this host.
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots with this source: a backed-up path or a source name
    /// (repeatable: all must match).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl SelectArgs {
    /// The library filter these flags describe.
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            host: self.host.clone(),
            tags: self.tags.clone(),
            paths: self.paths.clone(),
        }
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
            None => usage!(
                "no key given: pass -i KEY (or set VAULT_IDENTITY, or VAULT_PASSPHRASE_FILE for \
                 a passphrase owner)"
            ),
        }
    }

    /// The key given without asking: `identity` or `VAULT_PASSPHRASE_FILE`
    /// (for commands where a key is optional, such as `key list`).
    pub fn given(identity: Option<&Path>) -> Result<Option<Key>> {
        Ok(match identity {
            Some(p) if p.is_dir() => usage!(
                "-i {}: is a directory; name the key file (e.g. {})",
                p.display(),
                p.join("owner.key").display()
            ),
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

/// Creates the missing parent directories of a key file about to be
/// written, mode 0700 (`--writer-key-out /etc/vault/writer.key` on a fresh
/// machine); existing directories are left as they are.
pub fn key_parent(path: &Path) -> Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .with_context(|| format!("creating {}", parent.display()))
}
