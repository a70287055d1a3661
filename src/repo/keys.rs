//! The repository's two keys: the owner key (reads everything) and the writer
//! key (adds backups, reads only index files and snapshot headers).

use std::path::Path;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::crypto::{self, Keyring, Recipient, Seal};
use crate::error::{CryptoError, Error, Result};
use crate::repo::config::RepoConfig;

const REPO_LINE: &str = "# vault-repository: ";
const OWNER_LINE: &str = "# vault-owner-recipient: ";
const CHUNK_KEY_LINE: &str = "# vault-chunk-id-key: ";

/// The writer key: an X25519 identity plus the 32-byte chunk-id key that
/// makes blob ids keyed hashes. Its file is also a valid age identity file.
pub struct WriterKey {
    identity: age::x25519::Identity,
    chunk_key: Zeroizing<[u8; 32]>,
    repo_id: String,
    owner_recipient: String,
}

impl WriterKey {
    /// Makes a new writer key for the repository `repo_id` owned by `owner_recipient`.
    pub fn generate(repo_id: &str, owner_recipient: &str) -> Self {
        let mut chunk_key = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, chunk_key.as_mut());
        WriterKey {
            identity: age::x25519::Identity::generate(),
            chunk_key,
            repo_id: repo_id.to_owned(),
            owner_recipient: owner_recipient.to_owned(),
        }
    }

    /// The key file's text.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# vault writer key: adds backups to one repository; cannot read file contents or names\n\
             {REPO_LINE}{}\n{OWNER_LINE}{}\n{CHUNK_KEY_LINE}{}\n# public key: {}\n{}\n",
            self.repo_id,
            self.owner_recipient,
            hex::encode(&self.chunk_key[..]),
            self.recipient(),
            self.identity.to_string().expose_secret()
        ))
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
        Some(WriterKey {
            identity: crypto::parse_x25519(text)?,
            chunk_key,
            repo_id: field(REPO_LINE)?,
            owner_recipient: field(OWNER_LINE)?,
        })
    }

    /// The writer's public recipient.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
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
    owner: Option<age::x25519::Identity>,
    owner_recipient: Recipient,
    writer_recipient: Recipient,
}

impl RepoKeys {
    /// Assembles the keys after checking them against the config.
    pub fn new(
        config: &RepoConfig,
        writer: WriterKey,
        owner: Option<age::x25519::Identity>,
    ) -> Result<Self> {
        if writer.repo_id != config.id {
            return Err(Error::Usage(format!(
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
        if writer.recipient() != config.writer_recipient {
            return Err(tampered("writer recipient"));
        }
        if let Some(o) = &owner
            && o.to_public().to_string() != config.owner_recipient
        {
            return Err(tampered("owner recipient"));
        }
        Ok(RepoKeys {
            owner_recipient: crypto::parse_recipient(&config.owner_recipient)?,
            writer_recipient: crypto::parse_recipient(&config.writer_recipient)?,
            writer,
            owner,
        })
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

    /// The key that makes blob ids.
    pub fn chunk_key(&self) -> &[u8; 32] {
        &self.writer.chunk_key
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
            ring.push(Box::new(o.clone()));
        }
        ring.push(Box::new(self.writer.identity.clone()));
        ring
    }
}

const WRITER_PIN_LINE: &str = "# vault-writer-recipient: ";

/// Text of the repository owner identity file (what `keys/owners/*.age`
/// wraps). It pins the writer recipient: age does not authenticate who
/// encrypted `keys/writer.age`, so without the pin someone with write access
/// to storage could swap in a writer key of their own.
pub fn owner_identity_text(
    id: &age::x25519::Identity,
    repo_id: &str,
    writer_recipient: &str,
) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "# vault repository owner key for repository {repo_id}\n# public key: {}\n\
         {WRITER_PIN_LINE}{writer_recipient}\n{}\n",
        id.to_public(),
        id.to_string().expose_secret()
    ))
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
