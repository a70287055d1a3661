//! The repository handle: layout of object keys, opening with a key, and
//! reading and writing sealed objects (compress → encrypt → store).

pub mod attest;
pub mod cache;
mod documents;
mod fetch;
mod heads;
pub mod hosts;
pub mod index_digest;
mod indexes;
mod init_journal;
pub mod keys;
pub mod owners;
pub mod packer;
mod reader;
pub mod revoke;
pub mod select;
pub mod treewalk;
pub mod trust;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use documents::{Documents, Unreadable};
pub use heads::SnapshotHead;
pub use indexes::{FalseClaim, LoadedIndex};
pub use reader::BlobReader;
pub use verify::MAX_BLOB;

use crate::crypto::{self, Keyring, PassphraseSource, Seal, SecretString, X25519Identity};
use crate::error::{CryptoError, Error, Result};
use crate::format::chunk::ChunkerParams;
use crate::format::config::{FORMAT_VERSION, MAX_LOCK_DAYS, OLDEST_FORMAT_VERSION, RepoConfig};
use crate::format::id::{Id, PackId, SnapshotId, TreeId};
use crate::format::index::Index;
use crate::format::pack::BlobKind;
use crate::format::signature::SignedKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;
use crate::storage::{ObjectLock, PutOutcome, Storage, StorageError};
use keys::{RepoKeys, WriterKey};

/// Key of the config object.
pub const CONFIG_KEY: &str = "config";
/// Key of the wrapped writer key.
pub const WRITER_KEY: &str = "keys/writer.age";
/// Prefix of the wrapped owner keys.
pub const OWNERS_PREFIX: &str = "keys/owners/";
/// Prefix of the writer key generations made by `vault key rotate-writer`.
pub const WRITERS_PREFIX: &str = "keys/writers/";

/// The kinds of content-addressed objects and where they live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A pack of blobs.
    Pack(BlobKind),
    /// An index file.
    Index,
    /// A snapshot header.
    Snapshot,
    /// A restore-drill record.
    Drill,
    /// A prune lock (only prune takes locks; backups never do).
    Lock,
    /// A retirement record (`vault status --retire`), owner-signed.
    Retirement,
}

impl ObjectKind {
    /// The key prefix for this kind (`data/`, `tree/`, `index/`, `snapshots/`, `drills/`).
    pub fn prefix(self) -> &'static str {
        match self {
            ObjectKind::Pack(BlobKind::Data) => "data/",
            ObjectKind::Pack(BlobKind::Tree) => "tree/",
            ObjectKind::Index => "index/",
            ObjectKind::Snapshot => "snapshots/",
            ObjectKind::Drill => "drills/",
            ObjectKind::Lock => "locks/",
            ObjectKind::Retirement => "retired/",
        }
    }

    /// The object key for `id`; packs fan out by their first two hex digits.
    pub fn key(self, id: &impl AsRef<Id>) -> String {
        let hex = id.as_ref().to_hex();
        match self {
            ObjectKind::Pack(_) => format!("{}{}/{hex}", self.prefix(), &hex[..2]),
            _ => format!("{}{hex}", self.prefix()),
        }
    }

    /// Every content-addressed kind.
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Pack(BlobKind::Data),
        ObjectKind::Pack(BlobKind::Tree),
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Drill,
        ObjectKind::Lock,
        ObjectKind::Retirement,
    ];
}

/// The id at the end of an object key, if it is a 64-hex-digit name.
pub fn id_from_key(key: &str) -> Option<Id> {
    key.rsplit('/').next()?.parse().ok()
}

/// Who owns a new repository.
pub enum OwnerSpec {
    /// Public-key recipients (age X25519, ssh-ed25519, ssh-rsa).
    Recipients(Vec<String>),
    /// A passphrase (age scrypt).
    Passphrase(SecretString),
}

/// Settings for `vault init`.
pub struct InitOptions {
    /// The first owner.
    pub owner: OwnerSpec,
    /// Its name (the file `keys/owners/<name>.age`).
    pub owner_name: String,
    /// Where to write the writer key (mode 0600).
    pub writer_key_out: PathBuf,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Pack target size in bytes.
    pub pack_size: u32,
    /// zstd level.
    pub compression_level: i32,
    /// S3 Object Lock retention for every object (S3 buckets with Object
    /// Lock enabled only; `init` refuses it elsewhere).
    pub object_lock: Option<ObjectLock>,
}

/// How the caller proves who it is.
pub enum Access<'a> {
    /// An identity file: a writer key, or an owner's own age/ssh identity
    /// (an encrypted ssh key is refused: it needs a passphrase source).
    IdentityFile(&'a Path),
    /// An identity file as above; an encrypted ssh key opens with the
    /// passphrase that the source gives.
    IdentityFileWithPassphrase(&'a Path, &'a dyn PassphraseSource),
    /// A passphrase owner (scrypt).
    Passphrase(SecretString),
}

/// A pack as storage lists it.
#[derive(Debug, Clone, Copy)]
pub struct StoredPack {
    /// Data or tree pack (from its key prefix, not from any index claim).
    pub kind: BlobKind,
    /// Size in bytes.
    pub size: u64,
    /// When storage wrote it, if known.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every data and tree pack in `storage`, by id. What is stored, not what
/// index files claim: backups, check, prune and copy all start from it.
pub fn list_packs(storage: &dyn Storage) -> Result<std::collections::HashMap<PackId, StoredPack>> {
    let mut out = std::collections::HashMap::new();
    for kind in [BlobKind::Data, BlobKind::Tree] {
        for obj in storage.list(ObjectKind::Pack(kind).prefix())? {
            if let Some(id) = id_from_key(&obj.key) {
                out.insert(
                    PackId(id),
                    StoredPack {
                        kind,
                        size: obj.size,
                        modified: obj.modified,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Decides, for an index file (its id, and the public key of the certified
/// host key that signed it, if one did), whether a backup may deduplicate
/// against it.
pub type IndexTrust<'a> = dyn Fn(&Id, Option<&[u8; 32]>) -> bool + 'a;

/// Readable snapshots (oldest first) and the errors for unreadable ones.
pub type SnapshotList = (Vec<(SnapshotId, Snapshot)>, Vec<Error>);

/// An open repository.
pub struct Repository {
    storage: Arc<dyn Storage>,
    config: RepoConfig,
    keys: RepoKeys,
    /// The `keys/owners/<name>.age` object the caller's identity unwrapped.
    owner_file: Option<String>,
    /// What is left of this handle's (one command's) decompression slack
    /// for sealed documents ([`documents`]).
    doc_slack: documents::Slack,
    /// The local metadata cache, if the caller gave a cache directory.
    meta_cache: Option<cache::MetaCache>,
    /// Set by [`Repository::refetch_metadata`]: cache entries are written,
    /// never read.
    refetch: std::sync::atomic::AtomicBool,
    /// How many metadata objects to fetch at once; `None`: the storage's
    /// default.
    fetch_jobs: Option<usize>,
}

fn check_owner_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "owner name {name:?} must be 1-64 characters of letters, digits, '.', '_', '-', '@'"
        )))
    }
}

/// Encrypts the repository owner identity text for one owner.
fn wrap_for_owner(owner_text: &str, owner: &OwnerSpec) -> Result<Vec<u8>> {
    Ok(match owner {
        OwnerSpec::Passphrase(p) => crypto::encrypt(owner_text.as_bytes(), &Seal::Passphrase(p))?,
        OwnerSpec::Recipients(rs) if rs.is_empty() => {
            return Err(Error::InvalidInput(
                "at least one owner recipient is needed".into(),
            ));
        }
        OwnerSpec::Recipients(rs) => {
            let parsed = rs
                .iter()
                .map(|r| crypto::parse_recipient(r))
                .collect::<Result<Vec<_>, _>>()?;
            crypto::encrypt(
                owner_text.as_bytes(),
                &Seal::Recipients(parsed.iter().map(|r| r.as_ref()).collect()),
            )?
        }
    })
}

/// The zstd level of every JSON document (index files, snapshot headers,
/// the config, locks, drills). Their bulk is hex ids, which zstd's fast
/// strategy at level 1 packs better than level 3 does and in less time: a
/// backup's 500 KB index file of 4,096 blobs compresses to 172.7 KB at
/// 192 MB/s at level 1, to 182.4 KB at 134 MB/s at level 3. Any level
/// decodes alike.
const DOCUMENT_LEVEL: i32 = 1;

/// A JSON document's compressed form: one zstd frame at
/// [`DOCUMENT_LEVEL`].
fn compress_document(json: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(json, DOCUMENT_LEVEL).map_err(|e| Error::io("zstd", e))
}

/// Compresses with zstd and encrypts a JSON document.
fn seal_json<T: Serialize>(
    value: &T,
    seal: impl FnOnce(&[u8]) -> Result<Vec<u8>, CryptoError>,
) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(value).expect("repository documents always serialize");
    let compressed = compress_document(&json)?;
    Ok(seal(&compressed)?)
}

/// The largest JSON document a sealed object may decompress to.
const MAX_JSON: u64 = 1 << 30;

/// Decompresses and parses the plaintext of a sealed JSON object (one zstd
/// frame of JSON); `key` names the object in errors.
pub fn decode_sealed_json<T: serde::de::DeserializeOwned>(
    compressed: &[u8],
    key: &str,
) -> Result<T> {
    let json = decode_sealed_json_bytes(compressed, key)?;
    serde_json::from_slice(&json).map_err(|e| Error::format(key, format!("not valid JSON: {e}")))
}

/// Decompresses a sealed document's JSON bytes, bounded (see [`MAX_JSON`]).
fn decode_sealed_json_bytes(compressed: &[u8], key: &str) -> Result<Vec<u8>> {
    // A bounded decode: a sealed document can be planted by anyone with
    // the writer key, so it must not be able to exhaust memory.
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(compressed)
        .and_then(|d| {
            std::io::Read::read_to_end(&mut std::io::Read::take(d, MAX_JSON + 1), &mut json)
        })
        .map_err(|e| Error::format(key, format!("not valid zstd: {e}")))?;
    if json.len() as u64 > MAX_JSON {
        return Err(Error::format(key, "decompresses to more than 1 GiB"));
    }
    Ok(json)
}

/// Reads the config object.
pub fn read_config(storage: &dyn Storage) -> Result<RepoConfig> {
    let bytes = match storage.get(CONFIG_KEY) {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { .. }) if storage.list("keys/")?.is_empty() => {
            return Err(Error::NotFound(format!(
                "{}: no vault repository here (no config object); run `vault init` first",
                storage.location()
            )));
        }
        // Keys without a config: a store that has not caught up with a
        // fresh repository yet (an eventually consistent S3), or an
        // interrupted `vault init`. Never "run vault init" here.
        Err(StorageError::NotFound { .. }) => config_after_all(storage)?,
        Err(other) => return Err(other.into()),
    };
    parse_config(&bytes)
}

/// Reads `config` again a few times, a few seconds in all, for a store
/// that answered "not found" although `keys/` holds objects.
fn config_after_all(storage: &dyn Storage) -> Result<Vec<u8>> {
    for wait_ms in [250, 1000, 2500] {
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        match storage.get(CONFIG_KEY) {
            Ok(bytes) => return Ok(bytes),
            Err(StorageError::NotFound { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Err(Error::NotFound(format!(
        "{}: keys/ holds objects but there is no config object: an interrupted `vault init` \
         (run the same command again, with the same --writer-key-out) or a store that has not \
         caught up yet (try again later)",
        storage.location()
    )))
}

/// Parses and checks the bytes of a `config` object (anyone with write
/// access to storage can plant one: every field is range-checked).
pub fn parse_config(bytes: &[u8]) -> Result<RepoConfig> {
    let config: RepoConfig = serde_json::from_slice(bytes)
        .map_err(|e| Error::format(CONFIG_KEY, format!("not a vault config: {e}")))?;
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&config.version) {
        return Err(Error::format(
            CONFIG_KEY,
            format!(
                "format version {} is not supported (this vault reads \
                 {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})",
                config.version
            ),
        ));
    }
    if (config.version >= 2) != config.owner_signing_key.is_some()
        || (config.version >= 2) != config.signature.is_some()
    {
        return Err(Error::format(
            CONFIG_KEY,
            format!(
                "a format-{} config must {}carry owner_signing_key and signature",
                config.version,
                if config.version >= 2 { "" } else { "not " }
            ),
        ));
    }
    if !(1 << 20..=1 << 30).contains(&config.pack_size)
        || !(1..=22).contains(&config.compression_level)
    {
        return Err(Error::format(
            CONFIG_KEY,
            "pack size or compression level out of range",
        ));
    }
    config
        .chunker
        .validate()
        .map_err(|e| Error::format(CONFIG_KEY, e.to_string()))?;
    if let Some(lock) = &config.object_lock
        && !(1..=MAX_LOCK_DAYS).contains(&lock.days)
    {
        return Err(Error::format(
            CONFIG_KEY,
            format!("object_lock.days {} is out of range", lock.days),
        ));
    }
    Ok(config)
}

impl Repository {
    /// Creates a repository. Returns its config; the writer key is written to
    /// `opts.writer_key_out` with mode 0600.
    pub fn init(storage: Arc<dyn Storage>, opts: &InitOptions) -> Result<RepoConfig> {
        check_owner_name(&opts.owner_name)?;
        opts.chunker
            .validate()
            .map_err(|e| Error::InvalidInput(e.to_string()))?;
        if !(1..=22).contains(&opts.compression_level) {
            return Err(Error::InvalidInput(
                "compression level must be 1..=22".into(),
            ));
        }
        if !(1 << 20..=1 << 30).contains(&opts.pack_size) {
            return Err(Error::InvalidInput(
                "pack size must be between 1 MiB and 1 GiB".into(),
            ));
        }
        if storage.exists(CONFIG_KEY)? {
            return Err(Error::InvalidInput(format!(
                "{}: a repository already exists here",
                storage.location()
            )));
        }
        if let Some(lock) = opts.object_lock {
            if !(1..=MAX_LOCK_DAYS).contains(&lock.days) {
                return Err(Error::InvalidInput(format!(
                    "--object-lock-days must be 1..={MAX_LOCK_DAYS}"
                )));
            }
            // Before anything is written: a repository that promises locked
            // objects must not start on a bucket that cannot lock them.
            storage.check_object_lock()?;
        }
        storage.set_object_lock(opts.object_lock);
        // Check the owner's recipients before anything is written.
        if let OwnerSpec::Recipients(rs) = &opts.owner {
            if rs.is_empty() {
                return Err(Error::InvalidInput(
                    "at least one owner recipient is needed".into(),
                ));
            }
            for r in rs {
                crypto::parse_recipient(r)?;
            }
        }

        let mut repo_id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut repo_id);
        let repo_id = hex::encode(repo_id);
        let owner = X25519Identity::generate();
        let owner_recipient = owner.recipient();
        // Format 2: the owner signing key signs the config and certifies
        // the shared writer key's host key.
        let owner_signer = crypto::sign::SigningKey::derive_owner(&owner);
        // Format 3: the writer key's salt for the ids of small files.
        let writer = WriterKey::generate(&repo_id, &owner_recipient)
            .with_host(&owner_signer, crate::format::signature::SHARED_HOST)
            .with_salt(&owner);
        let mut config = RepoConfig {
            version: FORMAT_VERSION,
            id: repo_id.clone(),
            owner_recipient: owner_recipient.clone(),
            writer_recipient: writer.recipient(),
            chunker: opts.chunker,
            pack_size: opts.pack_size,
            compression_level: opts.compression_level,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            object_lock: opts.object_lock,
            owner_signing_key: Some(owner_signer.public()),
            signature: None,
        };
        config.signature = Some(owner_signer.sign(config.signed_text().as_bytes()));

        let owner_text =
            keys::owner_identity_text(&owner, &repo_id, &writer.recipient(), FORMAT_VERSION);
        let wrapped_owner = wrap_for_owner(&owner_text, &opts.owner)?;
        let owner_as_recipient = owner.to_recipient();
        let writer_text = writer.to_text();
        let wrapped_writer = crypto::encrypt(
            writer_text.as_bytes(),
            &Seal::Recipients(vec![owner_as_recipient.as_ref()]),
        )?;
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        let owner_key = format!("{OWNERS_PREFIX}{}.age", opts.owner_name);

        // Write order: a record of what follows (so that a rerun after a
        // crash removes only its own leftovers), the writer key file, the
        // owner file, the wrapped writer key, and `config` last: without
        // it the location is not a repository.
        init_journal::clear_leftovers(storage.as_ref(), &opts.writer_key_out)?;
        if opts.writer_key_out.symlink_metadata().is_ok() {
            return Err(Error::io(
                &opts.writer_key_out,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        init_journal::record(
            storage.as_ref(),
            &opts.writer_key_out,
            &[
                (&owner_key, &wrapped_owner),
                (WRITER_KEY, &wrapped_writer),
                (CONFIG_KEY, &json),
            ],
            &writer_text,
        )?;
        crypto::write_key_file(&opts.writer_key_out, &writer_text)?;
        let raced = || Error::Conflict("another vault init is writing here; keep the first".into());
        if storage.put(&owner_key, &wrapped_owner)? != PutOutcome::Created {
            return Err(raced());
        }
        if storage.put(WRITER_KEY, &wrapped_writer)? != PutOutcome::Created {
            return Err(raced());
        }
        if storage.put(CONFIG_KEY, &json)? != PutOutcome::Created {
            return Err(raced());
        }
        init_journal::finish(&opts.writer_key_out);
        Ok(config)
    }

    /// Opens a repository with the caller's key. From here on the storage
    /// puts every object with the config's Object Lock retention, if any.
    pub fn open(storage: Arc<dyn Storage>, access: Access<'_>) -> Result<Self> {
        let config = read_config(storage.as_ref())?;
        storage.set_object_lock(config.object_lock);
        let (keys, owner_file) = match access {
            Access::IdentityFile(path) => {
                Self::open_with_file(storage.as_ref(), &config, path, &crypto::NoPassphrase)?
            }
            Access::IdentityFileWithPassphrase(path, passphrases) => {
                Self::open_with_file(storage.as_ref(), &config, path, passphrases)?
            }
            Access::Passphrase(p) => {
                let ring = Keyring::with_passphrase(p);
                let (keys, file) =
                    Self::unwrap_as_owner(storage.as_ref(), &config, &ring, "the passphrase")?;
                (keys, Some(file))
            }
        };
        let repo = Repository {
            storage,
            config,
            keys,
            owner_file,
            doc_slack: documents::Slack::default(),
            meta_cache: None,
            refetch: std::sync::atomic::AtomicBool::new(false),
            fetch_jobs: None,
        };
        if !repo.keys.is_owner() {
            repo.check_writer_not_revoked()?;
        }
        Ok(repo)
    }

    /// The keys an identity file opens, and the owner file it unwrapped.
    fn open_with_file(
        storage: &dyn Storage,
        config: &RepoConfig,
        path: &Path,
        passphrases: &dyn PassphraseSource,
    ) -> Result<(RepoKeys, Option<String>)> {
        let (text, writer) = keys::load_identity_file(path)?;
        if let Some(w) = writer {
            let keys = RepoKeys::new(config, w, None)?;
            keys::check_writer_current(storage, keys.writer())?;
            return Ok((keys, None));
        }
        if let Some(owner) =
            crypto::parse_x25519(&text).filter(|o| o.recipient() == config.owner_recipient)
        {
            // The unwrapped repository owner key itself.
            let keys = Self::owner_keys(storage, config, owner, &text)?;
            return Ok((keys, None));
        }
        let ring = Keyring::new(crypto::parse_identities_with(&text, path, passphrases)?);
        let (keys, file) =
            Self::unwrap_as_owner(storage, config, &ring, &path.display().to_string())?;
        Ok((keys, Some(file)))
    }

    /// The keys of an owner holding the repository owner key `owner`, whose
    /// identity text (pinning the writer key) is `text`.
    fn owner_keys(
        storage: &dyn Storage,
        config: &RepoConfig,
        owner: X25519Identity,
        text: &str,
    ) -> Result<RepoKeys> {
        keys::check_owner_text_format(text, config)?;
        let writer = Self::unwrap_writer(storage, &owner)?;
        keys::check_writer_pin(text, &writer)?;
        if writer.recipient() != config.writer_recipient {
            return Err(Error::format(
                CONFIG_KEY,
                "its writer recipient does not match the one pinned in the repository's keys; \
                 the config object may have been tampered with",
            ));
        }
        let writer = keys::current_writer(storage, config, &owner, writer)?;
        RepoKeys::new(config, writer, Some(owner))
    }

    fn unwrap_as_owner(
        storage: &dyn Storage,
        config: &RepoConfig,
        ring: &Keyring,
        what: &str,
    ) -> Result<(RepoKeys, String)> {
        let owners = storage.list(OWNERS_PREFIX)?;
        // Any owner file may be junk or planted (age does not authenticate
        // senders): try them all, and report a problem only if none works.
        let mut problem: Option<Error> = None;
        for obj in &owners {
            match Self::try_owner_file(storage, config, ring, &obj.key) {
                Ok(Some(keys)) => return Ok((keys, obj.key.clone())),
                Ok(None) => {}
                Err(e) => {
                    problem.get_or_insert(e);
                }
            }
        }
        if let Some(e) = problem {
            return Err(e);
        }
        Err(Error::WrongKey(format!(
            "wrong passphrase or key: {what} is neither this repository's writer key nor an \
             owner (it unwraps none of the {} owner key(s) in {OWNERS_PREFIX})",
            owners.len()
        )))
    }

    fn try_owner_file(
        storage: &dyn Storage,
        config: &RepoConfig,
        ring: &Keyring,
        key: &str,
    ) -> Result<Option<RepoKeys>> {
        let wrapped = storage.get(key)?;
        let plain = match ring.decrypt(&wrapped, key) {
            Ok(p) => zeroize::Zeroizing::new(p),
            Err(CryptoError::NoMatchingKey { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let text =
            std::str::from_utf8(&plain).map_err(|_| Error::format(key, "not a text identity"))?;
        let owner = crypto::parse_x25519(text)
            .ok_or_else(|| Error::format(key, "holds no X25519 identity"))?;
        if owner.recipient() != config.owner_recipient {
            return Err(Error::format(
                key,
                "holds a key that is not this repository's owner key",
            ));
        }
        Self::owner_keys(storage, config, owner, text).map(Some)
    }

    fn unwrap_writer(storage: &dyn Storage, owner: &X25519Identity) -> Result<WriterKey> {
        let owner_ring = Keyring::new(vec![owner.to_identity()]);
        let plain =
            zeroize::Zeroizing::new(owner_ring.decrypt(&storage.get(WRITER_KEY)?, WRITER_KEY)?);
        std::str::from_utf8(&plain)
            .ok()
            .and_then(WriterKey::parse)
            .ok_or_else(|| Error::format(WRITER_KEY, "not a vault writer key"))
    }

    /// Keeps index files, snapshot headers and drill records in the local
    /// metadata cache under `cache_dir` ([`cache`]), in this key's view.
    /// On error (a directory that cannot be made or written) the
    /// repository works as before, without a cache.
    pub fn use_cache(&mut self, cache_dir: &Path) -> Result<()> {
        self.meta_cache = Some(cache::MetaCache::open(
            cache_dir,
            &self.config.id,
            &self.keys,
        )?);
        Ok(())
    }

    /// The metadata cache in use, if any.
    pub fn metadata_cache(&self) -> Option<&cache::MetaCache> {
        self.meta_cache.as_ref()
    }

    /// The metadata cache to read from: none after
    /// [`Repository::refetch_metadata`].
    fn cached(&self) -> Option<&cache::MetaCache> {
        if self.refetch.load(std::sync::atomic::Ordering::Relaxed) {
            None
        } else {
            self.meta_cache.as_ref()
        }
    }

    /// From now on every document is fetched from storage, never read from
    /// the cache (whose entries are refreshed): for `vault check`, which
    /// must see what storage holds.
    pub fn refetch_metadata(&self) {
        self.refetch
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Fetches up to `jobs` metadata objects at once (at least 1).
    pub fn set_fetch_jobs(&mut self, jobs: usize) {
        self.fetch_jobs = Some(jobs.max(1));
    }

    /// How many metadata objects are fetched at once: as set, else the
    /// storage's own default ([`Storage::parallel_reads`]).
    pub fn fetch_jobs(&self) -> usize {
        self.fetch_jobs
            .unwrap_or_else(|| self.storage.parallel_reads())
    }

    /// The storage backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The repository config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The caller's keys.
    pub fn keys(&self) -> &RepoKeys {
        &self.keys
    }

    /// Stores an already-sealed content-addressed object; returns its id.
    pub fn put_object(&self, kind: ObjectKind, bytes: &[u8]) -> Result<Id> {
        let id = Id::of_bytes(bytes);
        self.storage.put(&kind.key(&id), bytes)?;
        Ok(id)
    }

    /// Stores a pack [`PackBuilder::finish`](crate::repo::packer::PackBuilder::finish)
    /// made, under the id `finish` computed from the same bytes (a pack is
    /// hashed once, not again here). Not yet durable: the pack must go
    /// through [`Repository::sync_objects`] before anything refers to it.
    pub fn put_pack_unsynced(&self, pack: &crate::repo::packer::FinishedPack) -> Result<()> {
        debug_assert_eq!(
            PackId::of_bytes(&pack.bytes),
            pack.id,
            "a pack's id is its hash"
        );
        self.storage
            .put_unsynced(&ObjectKind::Pack(pack.kind).key(&pack.id.0), &pack.bytes)?;
        Ok(())
    }

    /// Makes objects stored by [`Repository::put_pack_unsynced`] durable.
    pub fn sync_objects<I: AsRef<Id>>(
        &self,
        objects: impl IntoIterator<Item = (ObjectKind, I)>,
    ) -> Result<()> {
        let keys: Vec<String> = objects.into_iter().map(|(k, id)| k.key(&id)).collect();
        if !keys.is_empty() {
            self.storage.sync(&keys)?;
        }
        Ok(())
    }

    /// Seals a JSON document for owner and writer and stores it.
    pub fn put_shared_json<T: Serialize>(&self, kind: ObjectKind, value: &T) -> Result<Id> {
        let bytes = seal_json(value, |b| self.keys.seal_shared(b))?;
        self.put_object(kind, &bytes)
    }

    /// Seals a JSON document for owner and writer, signed by the caller (the
    /// owner signing key, or the writer's host key; a format-1 writer key
    /// cannot sign), and stores it. Only for documents whose every claim the
    /// caller made or verified itself: an owner-signed index file is trusted
    /// by every backup for deduplication.
    pub fn put_signed_json<T: Serialize>(&self, kind: ObjectKind, value: &T) -> Result<Id> {
        let (bytes, json, block) = self.signed_sealed_json(kind, value)?;
        let id = self.put_object(kind, &bytes)?;
        // Stored: the next command on this host reads it from the cache
        // instead of fetching, decrypting and checking it again.
        self.remember_written(kind, &id, &json, block, bytes.len() as u64);
        Ok(id)
    }

    /// [`Repository::put_signed_json`] of an index file, which also keeps,
    /// for a file too large for the index digest, the record the next load
    /// replays instead of parsing its JSON (made from `file`, not parsed).
    pub fn put_index_file(&self, file: &crate::format::index::IndexFile) -> Result<Id> {
        let kind = ObjectKind::Index;
        let (bytes, json, block) = self.signed_sealed_json(kind, file)?;
        let id = self.put_object(kind, &bytes)?;
        let verdict = self.remember_written(kind, &id, &json, block, bytes.len() as u64);
        if let (Some(c), Some(verdict)) = (self.cached(), verdict) {
            let calls = index_digest::calls_of(file);
            if calls.len() > index_digest::MAX_RECORD {
                let signed_by = index_digest::SignedBy::from(&verdict);
                let record = index_digest::encode(signed_by, &file.condemned, &calls);
                if record.len() as u64 <= index_digest::MAX_OWN_RECORD {
                    c.put_record(index_digest::DIGEST, &id, &record);
                }
            }
        }
        Ok(id)
    }

    /// Like [`Repository::put_signed_json`], but never under Object Lock
    /// retention (a format-2 prune lock, which must be deletable).
    pub fn put_signed_transient_json<T: Serialize>(
        &self,
        kind: ObjectKind,
        value: &T,
    ) -> Result<Id> {
        let (bytes, _, _) = self.signed_sealed_json(kind, value)?;
        let id = Id::of_bytes(&bytes);
        self.storage.put_transient(&kind.key(&id), &bytes)?;
        Ok(id)
    }

    /// The sealed bytes of a signed document, with the JSON and the
    /// signature block inside them.
    fn signed_sealed_json<T: Serialize>(
        &self,
        kind: ObjectKind,
        value: &T,
    ) -> Result<(
        Vec<u8>,
        Vec<u8>,
        Option<crate::format::signature::SignatureBlock>,
    )> {
        let signed = match kind {
            ObjectKind::Snapshot => SignedKind::Snapshot,
            ObjectKind::Index => SignedKind::Index,
            ObjectKind::Drill => SignedKind::Drill,
            ObjectKind::Lock => SignedKind::Lock,
            ObjectKind::Retirement => SignedKind::Retirement,
            other => unreachable!("{other:?} objects are never signed"),
        };
        let json = serde_json::to_vec(value).expect("repository documents always serialize");
        let compressed = compress_document(&json)?;
        let block = self.keys.sign_document(signed, &json);
        let plain = match &block {
            Some(block) => crate::format::signature::frame(block, &compressed),
            None => compressed,
        };
        Ok((self.keys.seal_shared(&plain)?, json, block))
    }

    /// Like [`Repository::put_shared_json`], but never under Object Lock
    /// retention (prune's lock, which must be deletable when prune ends).
    pub fn put_transient_json<T: Serialize>(&self, kind: ObjectKind, value: &T) -> Result<Id> {
        let bytes = seal_json(value, |b| self.keys.seal_shared(b))?;
        let id = Id::of_bytes(&bytes);
        self.storage.put_transient(&kind.key(&id), &bytes)?;
        Ok(id)
    }

    /// Every snapshot, oldest first; unreadable ones come back as errors.
    pub fn snapshots(&self) -> Result<SnapshotList> {
        let docs = self.read_documents::<Snapshot>(ObjectKind::Snapshot)?;
        let mut out: Vec<(SnapshotId, Snapshot)> = docs
            .read
            .into_iter()
            .map(|(_, id, s)| (SnapshotId(id), s))
            .collect();
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((out, docs.unreadable.into_iter().map(|u| u.error).collect()))
    }

    /// Finds a snapshot by `latest` (the newest that counts: signed by the
    /// owner or its own host, dated no later than its upload, not in the
    /// future), a full id, or a unique id prefix (any readable header).
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            let set = self.verified_snapshots()?;
            // Not one dated ahead of the clock (a storage without upload
            // times, skew): it would shadow every real snapshot.
            let now = chrono::Utc::now();
            let usable: Vec<&trust::SnapshotRecord> =
                set.records.iter().filter(|r| r.trust.usable()).collect();
            let pick = usable
                .iter()
                .rev()
                .find(|r| !r.snapshot.is_in_the_future(now))
                .or(usable.last());
            return match pick {
                Some(r) => Ok((r.id, r.snapshot.clone())),
                None if set.records.is_empty() => Err(Error::SnapshotNotFound(spec.into())),
                None => Err(Error::NotFound(format!(
                    "no snapshot can be trusted as `latest`: the {} header(s) here are not \
                     signed by the repository owner or by the host they name (`vault snapshots` \
                     says why); name one by its id to use it anyway",
                    set.records.len()
                ))),
            };
        }
        let (all, _) = self.snapshots()?;
        let spec_l = spec.to_ascii_lowercase();
        let mut hits: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
            .collect();
        match hits.len() {
            1 => Ok(hits.pop().expect("one hit")),
            0 => Err(Error::SnapshotNotFound(spec.into())),
            n => Err(Error::InvalidInput(format!(
                "snapshot prefix {spec:?} is ambiguous ({n} matches)"
            ))),
        }
    }

    /// Reads and parses one tree blob (owner only).
    pub fn read_tree(
        &self,
        index: &Index,
        reader: &mut BlobReader<'_>,
        id: &TreeId,
    ) -> Result<Tree> {
        reader.read_tree(id, index, usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{IndexFile, IndexedBlob, IndexedPack};

    /// A backup's index file (8 packs of 512 blobs, random ids) compresses
    /// at [`DOCUMENT_LEVEL`] to one frame that decodes to its JSON and is
    /// no larger than at level 3, the level of blobs.
    #[test]
    fn an_index_file_compresses_at_the_document_level_no_larger_than_at_level_3() {
        let mut seed = 1u64;
        let mut id = || {
            let mut b = [0u8; 32];
            for x in b.iter_mut() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *x = (seed >> 33) as u8;
            }
            Id(b)
        };
        let packs = (0..8)
            .map(|_| IndexedPack {
                id: crate::format::id::PackId(id()),
                kind: crate::format::pack::BlobKind::Data,
                blobs: (0..512u32)
                    .map(|n| IndexedBlob {
                        id: crate::format::id::BlobId(id()),
                        offset: n * 1400,
                        length: 1000 + n % 400,
                        raw_length: 2000 + n % 900,
                    })
                    .collect(),
            })
            .collect();
        let file = IndexFile {
            packs,
            condemned: Vec::new(),
        };
        let json = serde_json::to_vec(&file).unwrap();
        let frame = compress_document(&json).unwrap();
        assert_eq!(zstd::bulk::decompress(&frame, json.len()).unwrap(), json);
        let at_3 = zstd::bulk::compress(&json, 3).unwrap();
        assert!(
            frame.len() <= at_3.len(),
            "{} bytes at the document level, {} at level 3",
            frame.len(),
            at_3.len()
        );
    }
}
