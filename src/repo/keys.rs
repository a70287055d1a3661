//! The repository's two keys: the owner key (reads everything) and the writer
//! key (adds backups, reads only index files and snapshot headers).

use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::{self, ExposeSecret, Keyring, Recipient, Seal, SecretString, X25519Identity};
use crate::error::{CryptoError, Error, Result};
use crate::format::config::RepoConfig;
use crate::repo::WRITERS_PREFIX;
use crate::storage::Storage;

const REPO_LINE: &str = "# vault-repository: ";
const OWNER_LINE: &str = "# vault-owner-recipient: ";
const CHUNK_KEY_LINE: &str = "# vault-chunk-id-key: ";
const GENERATION_LINE: &str = "# vault-writer-generation: ";
const PREVIOUS_LINE: &str = "# earlier writer keys of this repository";

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
        }
    }

    /// The writer key of generation `generation` that replaces this one: a
    /// new identity, the same chunk-id key (so deduplication continues), and
    /// this key's identities kept as earlier ones.
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
        }
    }

    /// The key file's text.
    pub fn to_text(&self) -> Zeroizing<String> {
        let generation = if self.generation > 0 {
            format!("{GENERATION_LINE}{}\n", self.generation)
        } else {
            String::new()
        };
        let mut text = Zeroizing::new(format!(
            "# vault writer key: adds backups to one repository; cannot read file contents or names\n\
             {REPO_LINE}{}\n{OWNER_LINE}{}\n{CHUNK_KEY_LINE}{}\n{generation}# public key: {}\n{}\n",
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
        Some(WriterKey {
            identity,
            chunk_key,
            repo_id: field(REPO_LINE)?,
            owner_recipient: field(OWNER_LINE)?,
            generation,
            previous,
        })
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
        Ok(RepoKeys {
            owner_recipient: crypto::parse_recipient(&config.owner_recipient)?,
            writer_recipient: writer.identity.to_recipient(),
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

const WRITER_PIN_LINE: &str = "# vault-writer-recipient: ";

/// Text of the repository owner identity file (what `keys/owners/*.age`
/// wraps). It pins the writer recipient: age does not authenticate who
/// encrypted `keys/writer.age`, so without the pin someone with write access
/// to storage could swap in a writer key of their own.
pub fn owner_identity_text(
    id: &X25519Identity,
    repo_id: &str,
    writer_recipient: &str,
) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "# vault repository owner key for repository {repo_id}\n# public key: {}\n\
         {WRITER_PIN_LINE}{writer_recipient}\n{}\n",
        id.recipient(),
        id.secret_line().expose_secret()
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
