//! The repository's two keys: the owner key (reads everything) and the writer
//! key (adds backups, reads only index files and snapshot headers).

use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::sign::{PublicKey, SigningKey};
use crate::crypto::{self, ExposeSecret, Keyring, Recipient, Seal, SecretString, X25519Identity};
use crate::error::{CryptoError, Error, Result};
use crate::format::config::RepoConfig;
use crate::format::salt::{BlobIds, SaltedKey};
use crate::format::signature::{HostCertificate, SHARED_HOST};
use crate::repo::WRITERS_PREFIX;
use crate::storage::Storage;

const REPO_LINE: &str = "# vault-repository: ";
const OWNER_LINE: &str = "# vault-owner-recipient: ";
const CHUNK_KEY_LINE: &str = "# vault-chunk-id-key: ";
const GENERATION_LINE: &str = "# vault-writer-generation: ";
const PREVIOUS_LINE: &str = "# earlier writer keys of this repository";
const OWNER_SIGNING_LINE: &str = "# vault-owner-signing-key: ";
const HOST_CERT_LINE: &str = "# vault-host-certificate: ";
const HOST_KEY_LINE: &str = "# vault-host-signing-key: ";
const SALT_LINE: &str = "# vault-blob-salt: ";

/// BLAKE3 derive-key context of the passphrase that seals writer key
/// generations (`keys/writers/<n>.age`), derived from the repository owner key.
pub const GENERATION_CONTEXT: &str = "vault 2026 writer generation passphrase";

/// The writer key: an X25519 identity plus the 32-byte chunk-id key that
/// makes blob ids keyed hashes. Its file is also a valid age identity file.
pub struct WriterKey {
    identity: X25519Identity,
    chunk_key: Zeroizing<[u8; 32]>,
    repo_id: String,
    owner_recipient: String,
    /// 0 for the key `vault init` made; n for `keys/writers/<n>.age`.
    generation: u32,
    /// The identities of earlier generations, newest first: they open the
    /// index files and snapshot headers sealed before each rotation.
    previous: Vec<X25519Identity>,
    /// Format 2: the repository owner signing key's public half, pinned.
    owner_signing_key: Option<PublicKey>,
    /// Format 2: the key this writer signs with, and its certificate.
    host: Option<HostKey>,
    /// Format 3: the salt of this key's small-file blob ids.
    salt: Option<WriterSalt>,
}

/// A writer key's salt (format 3): its id and the salt the repository
/// owner derived for it ([`crate::format::salt`]).
#[derive(Clone)]
pub struct WriterSalt {
    id: [u8; 32],
    salt: Zeroizing<[u8; 32]>,
}

/// A host signing key and the owner's certificate for it.
#[derive(Clone)]
pub struct HostKey {
    key: SigningKey,
    certificate: HostCertificate,
}

impl HostKey {
    /// Makes a host key for `host` (`*`: the shared writer key) of writer
    /// key generation `generation`, certified by `owner`.
    pub fn certify(owner: &SigningKey, repo_id: &str, host: &str, generation: u32) -> Self {
        let key = SigningKey::generate();
        let now = chrono::Utc::now();
        let created = chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
        let mut certificate = HostCertificate {
            repository: repo_id.to_owned(),
            host: host.to_owned(),
            generation,
            key: key.public(),
            created,
            signature: owner.sign(b""),
        };
        certificate.signature = owner.sign(&certificate.message());
        HostKey { key, certificate }
    }

    /// The owner's certificate.
    pub fn certificate(&self) -> &HostCertificate {
        &self.certificate
    }

    /// The secret signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl WriterKey {
    /// Makes a new writer key for the repository `repo_id` owned by `owner_recipient`.
    pub fn generate(repo_id: &str, owner_recipient: &str) -> Self {
        let mut chunk_key = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, chunk_key.as_mut());
        WriterKey {
            identity: X25519Identity::generate(),
            chunk_key,
            repo_id: repo_id.to_owned(),
            owner_recipient: owner_recipient.to_owned(),
            generation: 0,
            previous: Vec::new(),
            owner_signing_key: None,
            host: None,
            salt: None,
        }
    }

    /// The same writer key for format 3: with a salt of its own for the ids
    /// of small files' blobs, derived by the repository `owner` from a new
    /// random salt id (see [`crate::format::salt`]).
    pub fn with_salt(mut self, owner: &X25519Identity) -> Self {
        let mut id = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let salt = crate::format::salt::derive_salt(owner.secret_line().expose_secret(), &id);
        self.salt = Some(WriterSalt { id, salt });
        self
    }

    /// The same writer key for format 2: pinning the owner signing key and
    /// holding a host key certified by it for `host` (`*` for the shared
    /// writer key that `vault init` and `vault key rotate-writer` make).
    pub fn with_host(mut self, owner: &SigningKey, host: &str) -> Self {
        self.owner_signing_key = Some(owner.public());
        self.host = Some(HostKey::certify(
            owner,
            &self.repo_id,
            host,
            self.generation,
        ));
        self
    }

    /// The writer key of generation `generation` that replaces this one: a
    /// new identity, the same chunk-id key and salt (so deduplication
    /// continues; a thief of this key cannot read the index files sealed to
    /// the new identity), and this key's identities kept as earlier ones.
    pub fn next_generation(&self, generation: u32) -> Self {
        let mut previous = vec![self.identity.clone()];
        previous.extend(self.previous.iter().cloned());
        WriterKey {
            identity: X25519Identity::generate(),
            chunk_key: self.chunk_key.clone(),
            repo_id: self.repo_id.clone(),
            owner_recipient: self.owner_recipient.clone(),
            generation,
            previous,
            owner_signing_key: None,
            host: None,
            salt: self.salt.clone(),
        }
    }

    /// The shared writer material (identities, chunk-id key, pins) without
    /// this key's host key: the base of a host writer key.
    pub fn clone_shared(&self) -> Self {
        WriterKey {
            identity: self.identity.clone(),
            chunk_key: self.chunk_key.clone(),
            repo_id: self.repo_id.clone(),
            owner_recipient: self.owner_recipient.clone(),
            generation: self.generation,
            previous: self.previous.clone(),
            owner_signing_key: self.owner_signing_key,
            host: None,
            salt: None,
        }
    }

    /// The key file's text.
    pub fn to_text(&self) -> Zeroizing<String> {
        let generation = if self.generation > 0 {
            format!("{GENERATION_LINE}{}\n", self.generation)
        } else {
            String::new()
        };
        let mut signing = String::new();
        if let Some(k) = &self.owner_signing_key {
            signing.push_str(&format!("{OWNER_SIGNING_LINE}{k}\n"));
        }
        if let Some(h) = &self.host {
            let cert = serde_json::to_string(&h.certificate).expect("certificates serialize");
            signing.push_str(&format!("{HOST_CERT_LINE}{cert}\n{HOST_KEY_LINE}"));
            signing.push_str(&h.key.seed_hex());
            signing.push('\n');
        }
        if let Some(s) = &self.salt {
            signing.push_str(&format!(
                "{SALT_LINE}{} {}\n",
                hex::encode(s.id),
                hex::encode(&s.salt[..])
            ));
        }
        let mut text = Zeroizing::new(format!(
            "# vault writer key: adds backups to one repository; cannot read file contents or names\n\
             {REPO_LINE}{}\n{OWNER_LINE}{}\n{CHUNK_KEY_LINE}{}\n{signing}{generation}# public key: {}\n{}\n",
            self.repo_id,
            self.owner_recipient,
            hex::encode(&self.chunk_key[..]),
            self.recipient(),
            self.identity.secret_line().expose_secret()
        ));
        if !self.previous.is_empty() {
            text.push_str(PREVIOUS_LINE);
            text.push_str(
                " (they read index files and snapshot headers sealed before a rotation):\n",
            );
            for id in &self.previous {
                text.push_str(id.secret_line().expose_secret());
                text.push('\n');
            }
        }
        text
    }

    /// Parses a writer key file's text; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let field = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|v| v.trim().to_owned())
        };
        let chunk_hex = Zeroizing::new(field(CHUNK_KEY_LINE)?);
        let mut chunk_key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(chunk_hex.as_bytes(), chunk_key.as_mut()).ok()?;
        let generation = match field(GENERATION_LINE) {
            Some(g) => g.parse().ok().filter(|&g| g > 0)?,
            None => 0,
        };
        // The first secret key line is the current identity; any later ones
        // are earlier generations.
        let mut secrets = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("AGE-SECRET-KEY-"));
        let identity = X25519Identity::from_line(secrets.next()?)?;
        let previous = secrets
            .map(X25519Identity::from_line)
            .collect::<Option<Vec<_>>>()?;
        // Format 2 lines: all three or none. A host key must be the one its
        // certificate names (the certificate itself is checked against the
        // repository when it is opened).
        let (owner_signing_key, host) = match (
            field(OWNER_SIGNING_LINE),
            field(HOST_CERT_LINE),
            field(HOST_KEY_LINE),
        ) {
            (None, None, None) => (None, None),
            (Some(pin), Some(cert), Some(seed)) => {
                let pin: PublicKey = pin.parse().ok()?;
                let certificate: HostCertificate = serde_json::from_str(&cert).ok()?;
                let key = SigningKey::from_seed_hex(&Zeroizing::new(seed))?;
                if key.public() != certificate.key {
                    return None;
                }
                (Some(pin), Some(HostKey { key, certificate }))
            }
            _ => return None,
        };
        let salt = match field(SALT_LINE) {
            None => None,
            Some(line) => {
                let line = Zeroizing::new(line);
                let (id_hex, salt_hex) = line.split_once(' ')?;
                let mut id = [0u8; 32];
                hex::decode_to_slice(id_hex, &mut id).ok()?;
                let mut salt = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(salt_hex.trim(), salt.as_mut()).ok()?;
                Some(WriterSalt { id, salt })
            }
        };
        Some(WriterKey {
            identity,
            chunk_key,
            repo_id: field(REPO_LINE)?,
            owner_recipient: field(OWNER_LINE)?,
            generation,
            previous,
            owner_signing_key,
            host,
            salt,
        })
    }

    /// Format 3: whether this key carries a blob salt.
    pub fn has_salt(&self) -> bool {
        self.salt.is_some()
    }

    /// Format 2: the pinned repository owner signing key.
    pub fn owner_signing_key(&self) -> Option<&PublicKey> {
        self.owner_signing_key.as_ref()
    }

    /// Format 2: the host key this writer signs with.
    pub fn host(&self) -> Option<&HostKey> {
        self.host.as_ref()
    }

    /// The host name this key is certified for; `None` for the shared
    /// writer key (any host name) and for format-1 keys.
    pub fn host_name(&self) -> Option<&str> {
        self.host
            .as_ref()
            .map(|h| h.certificate.host.as_str())
            .filter(|h| *h != SHARED_HOST)
    }

    /// Its generation: 0 for the key `vault init` made, n after the n-th
    /// `vault key rotate-writer`.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The writer's public recipient.
    pub fn recipient(&self) -> String {
        self.identity.recipient()
    }

    /// The repository this key belongs to.
    pub fn repo_id(&self) -> &str {
        &self.repo_id
    }
}

/// The keys an open repository holds: always the writer key, and the
/// repository owner identity when the caller is an owner.
pub struct RepoKeys {
    writer: WriterKey,
    owner: Option<X25519Identity>,
    owner_recipient: Recipient,
    writer_recipient: Recipient,
    /// The repository's format version (from its config).
    format: u32,
    /// The repository owner signing key, when the caller is an owner.
    owner_signer: Option<SigningKey>,
    /// Its public half: derived by an owner, pinned in a format-2 writer key.
    owner_public: Option<PublicKey>,
}

impl RepoKeys {
    /// Assembles the keys after checking them against the config.
    pub fn new(
        config: &RepoConfig,
        writer: WriterKey,
        owner: Option<X25519Identity>,
    ) -> Result<Self> {
        if writer.repo_id != config.id {
            return Err(Error::WrongKey(format!(
                "this writer key belongs to repository {}, not to {} (wrong -i or -r?)",
                writer.repo_id, config.id
            )));
        }
        let tampered = |what: &str| {
            Error::format(
                "config",
                format!(
                    "its {what} does not match the one pinned in the repository's keys; \
                     the config object may have been tampered with"
                ),
            )
        };
        if writer.owner_recipient != config.owner_recipient {
            return Err(tampered("owner recipient"));
        }
        // Generation 0 is the writer in the config; later generations are
        // authenticated by `keys/writers/<n>.age` (see `current_writer`).
        if writer.generation == 0 && writer.recipient() != config.writer_recipient {
            return Err(tampered("writer recipient"));
        }
        if let Some(o) = &owner
            && o.recipient() != config.owner_recipient
        {
            return Err(tampered("owner recipient"));
        }
        let owner_signer = owner.as_ref().map(SigningKey::derive_owner);
        let owner_public = owner_signer
            .as_ref()
            .map(SigningKey::public)
            .or(writer.owner_signing_key);
        if config.version >= 2 {
            // Format 2: the whole config is signed by the owner signing
            // key, which an owner derives and every writer key pins, so a
            // storage attacker cannot change chunker, compression, pack
            // size or Object Lock.
            let Some(key) = owner_public else {
                return Err(Error::WrongKey(
                    "this writer key is of format 1 (it pins no owner signing key) but the \
                     repository is format 2; use a writer key made for this repository \
                     (`vault key add-host`)"
                        .into(),
                ));
            };
            if writer.owner_signing_key.is_some_and(|pin| pin != key) {
                return Err(Error::format(
                    "writer key",
                    "it pins another owner signing key than the repository owner key's",
                ));
            }
            config.verify(&key).map_err(|e| {
                Error::format(
                    "config",
                    format!(
                        "{e}; the config object may have been tampered with (vault refuses \
                         it: every setting in it is signed by the repository owner)"
                    ),
                )
            })?;
            if let Some(h) = &writer.host {
                check_certificate(&h.certificate, &key, config, writer.generation)?;
            }
        } else if writer.owner_signing_key.is_some() {
            return Err(tampered(
                "format version (1, while the writer key is of format 2)",
            ));
        }
        if config.version >= 3 && writer.salt.is_none() {
            return Err(Error::WrongKey(
                "this writer key has no blob salt but the repository is format 3; use a writer \
                 key made for this repository (`vault key add-host`)"
                    .into(),
            ));
        }
        Ok(RepoKeys {
            owner_recipient: crypto::parse_recipient(&config.owner_recipient)?,
            writer_recipient: writer.identity.to_recipient(),
            writer,
            owner,
            format: config.version,
            owner_signer,
            owner_public,
        })
    }

    /// The repository's format version.
    pub fn format(&self) -> u32 {
        self.format
    }

    /// The repository owner signing key's public half: derived for an
    /// owner, pinned in a format-2 writer key; `None` for a format-1 writer.
    pub fn owner_signing_public(&self) -> Option<&PublicKey> {
        self.owner_public.as_ref()
    }

    /// The repository owner signing key (owners only).
    pub fn owner_signing_key(&self) -> Option<&SigningKey> {
        self.owner_signer.as_ref()
    }

    /// Signs a sealed document's JSON as the caller: an owner with the owner
    /// signing key, a format-2 writer with its host key. `None` for a
    /// format-1 writer key, which cannot sign.
    pub fn sign_document(
        &self,
        kind: crate::format::signature::SignedKind,
        json: &[u8],
    ) -> Option<crate::format::signature::SignatureBlock> {
        use crate::format::signature::{SignatureBlock, SignedBy, document_message};
        let message = document_message(kind, &self.writer.repo_id, json);
        if let Some(owner) = &self.owner_signer {
            return Some(SignatureBlock {
                by: SignedBy::Owner,
                key: owner.public(),
                certificate: None,
                signature: owner.sign(&message),
            });
        }
        let host = self.writer.host.as_ref()?;
        Some(SignatureBlock {
            by: SignedBy::Host,
            key: host.key.public(),
            certificate: Some(host.certificate.clone()),
            signature: host.key.sign(&message),
        })
    }

    /// The caller's view of the local metadata cache: its directory name
    /// (`owner-…` or `writer-…`, from a hash of the public key) and a
    /// secret only this key's holders know, from which the cache derives
    /// the key its entries are tagged with. Never stored.
    pub(crate) fn cache_view(&self) -> (String, Zeroizing<String>) {
        let (role, identity) = match &self.owner {
            Some(o) => ("owner", o),
            None => ("writer", &self.writer.identity),
        };
        let public = blake3::hash(identity.recipient().as_bytes()).to_hex();
        (
            format!("{role}-{}", &public[..16]),
            Zeroizing::new(identity.secret_line().expose_secret().to_owned()),
        )
    }

    /// Whether the caller holds the owner key.
    pub fn is_owner(&self) -> bool {
        self.owner.is_some()
    }

    /// Fails with a clear message unless the caller holds the owner key.
    pub fn require_owner(&self, operation: &'static str) -> Result<()> {
        if self.is_owner() {
            Ok(())
        } else {
            Err(Error::OwnerKeyRequired { operation })
        }
    }

    /// The current writer key (the newest authenticated generation).
    pub fn writer(&self) -> &WriterKey {
        &self.writer
    }

    /// The repository owner identity, when the caller is an owner.
    pub(super) fn owner_identity(&self) -> Option<&X25519Identity> {
        self.owner.as_ref()
    }

    /// The key that makes blob ids.
    pub fn chunk_key(&self) -> &[u8; 32] {
        &self.writer.chunk_key
    }

    /// How this writer computes blob ids: small files salted with its
    /// writer key's salt in a format-3 repository, nothing salted before.
    pub fn blob_ids(&self) -> BlobIds {
        let salted = self
            .writer
            .salt
            .as_ref()
            .filter(|_| self.format >= 3)
            .map(|s| SaltedKey {
                salt_id: s.id,
                id_key: crate::format::salt::salted_id_key(&self.writer.chunk_key, &s.salt),
            });
        BlobIds::new(&self.writer.chunk_key, salted)
    }

    /// What verifies salted blobs: the chunk-id key and, for an owner, the
    /// repository owner key every salt is derived from.
    pub fn salt_keys(&self) -> SaltKeys {
        match &self.owner {
            Some(o) => SaltKeys::for_owner(&self.writer.chunk_key, o.secret_line().expose_secret()),
            None => SaltKeys::unsalted(&self.writer.chunk_key),
        }
    }

    /// Encrypts to the owner only (data and tree packs).
    pub fn seal_owner_only(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crypto::encrypt(plaintext, &self.owner_only())
    }

    /// The recipients of owner-only objects, for streaming encryption.
    pub fn owner_only(&self) -> Seal<'_> {
        Seal::Recipients(vec![self.owner_recipient.as_ref()])
    }

    /// Encrypts to the owner and the writer (index, snapshots, drills).
    pub fn seal_shared(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crypto::encrypt(
            plaintext,
            &Seal::Recipients(vec![
                self.owner_recipient.as_ref(),
                self.writer_recipient.as_ref(),
            ]),
        )
    }

    /// Every identity the caller holds, for decryption.
    pub fn keyring(&self) -> Keyring {
        // The owner identity first: it opens every object, so the writer
        // identity is tried only when the caller is not an owner.
        let mut ring = Keyring::default();
        if let Some(o) = &self.owner {
            ring.push(o.to_identity());
        }
        ring.push(self.writer.identity.to_identity());
        for id in &self.writer.previous {
            ring.push(id.to_identity());
        }
        ring
    }
}

/// The keys that verify blob ids ([`RepoKeys::salt_keys`]).
#[derive(Clone)]
pub struct SaltKeys {
    chunk_key: [u8; 32],
    owner_secret: Option<Zeroizing<String>>,
}

impl SaltKeys {
    /// Unsalted ids only (tests, and callers without an owner key).
    pub fn unsalted(chunk_key: &[u8; 32]) -> Self {
        SaltKeys {
            chunk_key: *chunk_key,
            owner_secret: None,
        }
    }

    /// An owner's keys from the repository owner key's secret line.
    pub(crate) fn for_owner(chunk_key: &[u8; 32], owner_secret_line: &str) -> Self {
        SaltKeys {
            chunk_key: *chunk_key,
            owner_secret: Some(Zeroizing::new(owner_secret_line.to_owned())),
        }
    }

    /// The chunk-id key.
    pub fn chunk_key(&self) -> &[u8; 32] {
        &self.chunk_key
    }

    /// The key of the ids salted with `salt_id`; `None` without the owner key.
    pub fn salted_id_key(&self, salt_id: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        let secret = self.owner_secret.as_ref()?;
        let salt = crate::format::salt::derive_salt(secret, salt_id);
        Some(crate::format::salt::salted_id_key(&self.chunk_key, &salt))
    }
}

/// Checks a host certificate: signed by `owner_key`, for this repository,
/// for the writer key generation that carries it.
pub fn check_certificate(
    cert: &HostCertificate,
    owner_key: &PublicKey,
    config: &RepoConfig,
    generation: u32,
) -> Result<()> {
    let problem = if cert.repository != config.id {
        Some("it is for another repository")
    } else if cert.generation != generation {
        Some("it names another writer key generation")
    } else if !owner_key.verify(&cert.message(), &cert.signature) {
        Some("the repository owner did not sign it")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(Error::format(
            "writer key",
            format!("its host certificate for {:?} is not valid: {p}", cert.host),
        )),
    }
}

const WRITER_PIN_LINE: &str = "# vault-writer-recipient: ";

/// Text of the repository owner identity file (what `keys/owners/*.age`
/// wraps). It pins the writer recipient: age does not authenticate who
/// encrypted `keys/writer.age`, so without the pin someone with write access
/// to storage could swap in a writer key of their own.
///
/// From format 2 on it also names the repository owner signing key (which
/// the owner key derives): an owner key text with that line belongs to a
/// format-2 repository, and a config claiming format 1 is refused.
pub fn owner_identity_text(
    id: &X25519Identity,
    repo_id: &str,
    writer_recipient: &str,
    format: u32,
) -> Zeroizing<String> {
    let signing = if format >= 2 {
        format!(
            "{OWNER_SIGNING_LINE}{}\n",
            SigningKey::derive_owner(id).public()
        )
    } else {
        String::new()
    };
    Zeroizing::new(format!(
        "# vault repository owner key for repository {repo_id}\n# public key: {}\n\
         {WRITER_PIN_LINE}{writer_recipient}\n{signing}{}\n",
        id.recipient(),
        id.secret_line().expose_secret()
    ))
}

/// Refuses a format-1 config when the owner key's text says the repository
/// is format 2 (a storage attacker replacing a signed config by an unsigned
/// one of the old format).
pub fn check_owner_text_format(owner_text: &str, config: &RepoConfig) -> Result<()> {
    let v2 = owner_text
        .lines()
        .any(|l| l.starts_with(OWNER_SIGNING_LINE));
    if v2 && config.version < 2 {
        return Err(Error::format(
            crate::repo::CONFIG_KEY,
            "it claims format 1 but the owner key belongs to a format-2 repository; the \
             config object may have been tampered with",
        ));
    }
    Ok(())
}

/// Checks that `writer` is the writer pinned in the owner key's text.
pub fn check_writer_pin(owner_text: &str, writer: &WriterKey) -> Result<()> {
    let pinned = owner_text
        .lines()
        .find_map(|l| l.strip_prefix(WRITER_PIN_LINE))
        .map(str::trim);
    match pinned {
        Some(p) if p == writer.recipient() => Ok(()),
        Some(_) => Err(Error::format(
            crate::repo::WRITER_KEY,
            "the writer key differs from the one pinned in the owner key; \
             keys/writer.age may have been tampered with",
        )),
        None => Err(Error::format(
            "owner key",
            "it pins no writer recipient (not made by vault init?)",
        )),
    }
}

/// Loads the identities in a user's identity file, refusing insecure modes.
pub fn load_identity_file(path: &Path) -> Result<(Zeroizing<String>, Option<WriterKey>)> {
    let text = crypto::read_key_file(path)?;
    let writer = WriterKey::parse(&text);
    Ok((text, writer))
}

/// The object key of writer key generation `n`.
pub fn generation_key(n: u32) -> String {
    format!("{WRITERS_PREFIX}{n}.age")
}

/// The generation numbers named under `keys/writers/` (ascending). Names
/// are not authenticated: anyone with write access to storage can add one.
pub fn generation_numbers(storage: &dyn Storage) -> Result<Vec<u32>> {
    let mut out: Vec<u32> = storage
        .list(WRITERS_PREFIX)?
        .iter()
        .filter_map(|o| {
            let stem = o.key.strip_prefix(WRITERS_PREFIX)?.strip_suffix(".age")?;
            stem.parse::<u32>()
                .ok()
                .filter(|n| *n > 0 && n.to_string() == stem)
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The passphrase that seals writer key generations: only holders of the
/// repository owner key can compute it, so only they can make a generation.
pub fn generation_passphrase(owner: &X25519Identity) -> SecretString {
    crypto::derived_passphrase(owner, GENERATION_CONTEXT)
}

/// Seals writer key `writer` as its generation object.
pub fn seal_generation(owner: &X25519Identity, writer: &WriterKey) -> Result<Vec<u8>> {
    Ok(crypto::seal_derived(
        writer.to_text().as_bytes(),
        &generation_passphrase(owner),
    )?)
}

/// For an owner: the newest writer key generation that opens with the
/// owner-derived passphrase and belongs to this repository, or `base` (the
/// writer key in `keys/writer.age`) when there is none. Objects that do not
/// authenticate were not made by an owner; they are skipped with a warning.
pub fn current_writer(
    storage: &dyn Storage,
    config: &RepoConfig,
    owner: &X25519Identity,
    base: WriterKey,
) -> Result<WriterKey> {
    let numbers = generation_numbers(storage)?;
    if numbers.is_empty() {
        return Ok(base);
    }
    let passphrase = generation_passphrase(owner);
    for n in numbers.into_iter().rev() {
        let key = generation_key(n);
        let bytes = match storage.get(&key) {
            Ok(b) => b,
            Err(crate::storage::StorageError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let writer = crypto::open_derived(&bytes, &passphrase, &key)
            .ok()
            .and_then(|plain| std::str::from_utf8(&plain).ok().and_then(WriterKey::parse));
        match writer {
            Some(w)
                if w.generation == n
                    && w.repo_id == config.id
                    && w.owner_recipient == config.owner_recipient
                    && w.chunk_key[..] == base.chunk_key[..] =>
            {
                return Ok(w);
            }
            _ => tracing::warn!(
                "{key}: not a writer key generation made by an owner of this repository; ignored"
            ),
        }
    }
    Ok(base)
}

/// For a writer key: refuses a key that a newer generation has replaced,
/// or whose own generation object is missing from the repository.
pub fn check_writer_current(storage: &dyn Storage, writer: &WriterKey) -> Result<()> {
    let numbers = generation_numbers(storage)?;
    if let Some(&newest) = numbers.last()
        && newest > writer.generation
    {
        return Err(Error::WrongKey(format!(
            "this writer key (generation {}) has been replaced by writer key generation \
             {newest} (`vault key rotate-writer`); install the new writer key on this host",
            writer.generation
        )));
    }
    if writer.generation > 0 && !numbers.contains(&writer.generation) {
        return Err(Error::WrongKey(format!(
            "this writer key is generation {}, which this repository does not have \
             ({} is missing; wrong -r?)",
            writer.generation,
            generation_key(writer.generation)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_generations_round_trip_and_keep_the_chunk_key() {
        let w0 = WriterKey::generate("00ff", "age1owner");
        assert_eq!(WriterKey::parse(&w0.to_text()).unwrap().generation(), 0);
        let w2 = w0.next_generation(1).next_generation(2);
        let parsed = WriterKey::parse(&w2.to_text()).unwrap();
        assert_eq!(parsed.generation(), 2);
        assert_eq!(parsed.recipient(), w2.recipient());
        assert_eq!(parsed.chunk_key[..], w0.chunk_key[..]);
        assert_eq!(parsed.previous.len(), 2);
        assert_eq!(parsed.previous[1].recipient(), w0.recipient());
        // The first secret key line is the current key, for age too.
        assert_eq!(
            crypto::parse_x25519(&w2.to_text()).unwrap().recipient(),
            w2.recipient()
        );
        let bad = w2.to_text().replace(
            "# vault-writer-generation: 2",
            "# vault-writer-generation: 0",
        );
        assert!(
            WriterKey::parse(&bad).is_none(),
            "generation 0 is never written"
        );
    }
}
