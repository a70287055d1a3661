//! Owner key management: listing, adding and removing the wrapped copies of
//! the repository owner key (`keys/owners/<name>.age`), and rotating the
//! writer key (`keys/writers/<n>.age`).
//!
//! Listing needs no key: object names and sizes are visible to anyone who
//! can list the storage. Everything that changes `keys/` needs the
//! repository owner key.

use std::path::Path;

use serde::Serialize;

use super::keys::{self, WriterKey};
use super::{OWNERS_PREFIX, OwnerSpec, Repository, check_owner_name, wrap_for_owner};
use crate::crypto;
use crate::error::{Error, Result};
use crate::storage::{PutOutcome, Storage};

/// One `keys/owners/<name>.age` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OwnerEntry {
    /// The owner's name.
    pub name: String,
    /// The object key.
    pub object: String,
    /// The object's size in bytes.
    pub size: u64,
}

/// The owner objects in a repository, sorted by name. Needs no key.
pub fn list_owners(storage: &dyn Storage) -> Result<Vec<OwnerEntry>> {
    let mut out: Vec<OwnerEntry> = storage
        .list(OWNERS_PREFIX)?
        .into_iter()
        .filter_map(|o| {
            let name = o.key.strip_prefix(OWNERS_PREFIX)?.strip_suffix(".age")?;
            Some(OwnerEntry {
                name: name.to_owned(),
                object: o.key.clone(),
                size: o.size,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A second handle on a secret (the secret type is not `Clone`).
fn again(s: &crate::crypto::SecretString) -> crate::crypto::SecretString {
    use crate::crypto::ExposeSecret;
    crate::crypto::SecretString::from(s.expose_secret().to_owned())
}

/// Whether an owner file is sealed with a passphrase (its age header's
/// only stanza is `scrypt`).
fn is_passphrase_wrapped(bytes: &[u8]) -> bool {
    bytes.starts_with(b"age-encryption.org/v1\n-> scrypt ")
}

fn owner_object(name: &str) -> String {
    format!("{OWNERS_PREFIX}{name}.age")
}

/// What `vault key rotate-writer` made.
#[derive(Debug, Clone, Serialize)]
pub struct RotatedWriter {
    /// The new generation number.
    pub generation: u32,
    /// Its object key (`keys/writers/<n>.age`).
    pub object: String,
    /// The new writer recipient (public).
    pub recipient: String,
    /// The retired shared writer key's revocation (format 2): what it signs
    /// from now on does not count.
    pub revoked_shared: Option<super::revoke::RevokedKey>,
    /// Why that revocation could not be stored, if it could not (the
    /// rotation itself succeeded; run it again to retry).
    pub revocation_failed: Option<String>,
}

impl Repository {
    /// The `keys/owners/<name>.age` object the caller's identity unwrapped;
    /// `None` for the writer key and for the repository owner key itself.
    pub fn owner_file(&self) -> Option<&str> {
        self.owner_file.as_deref()
    }

    fn owner_identity(&self, operation: &'static str) -> Result<&crypto::X25519Identity> {
        self.keys.require_owner(operation)?;
        self.keys
            .owner_identity()
            .ok_or(Error::OwnerKeyRequired { operation })
    }

    /// Wraps the repository owner key for a new owner and stores it as
    /// `keys/owners/<name>.age`; refuses a name that is taken. Returns the
    /// object key.
    pub fn add_owner(&self, name: &str, owner: &OwnerSpec) -> Result<String> {
        let identity = self.owner_identity("adding an owner")?;
        check_owner_name(name)?;
        let object = owner_object(name);
        let taken = || {
            Error::InvalidInput(format!(
                "an owner named {name:?} already exists ({object}); choose another name, or \
                 remove that owner first with `vault key remove-owner`"
            ))
        };
        if list_owners(self.storage.as_ref())?
            .iter()
            .any(|o| o.name == name)
        {
            return Err(taken());
        }
        // The pin names the writer key in keys/writer.age (generation 0),
        // which the open checked against the caller's own owner key.
        let text = keys::owner_identity_text(
            identity,
            &self.config.id,
            &self.config.writer_recipient,
            self.config.version,
        );
        let wrapped = wrap_for_owner(&text, owner)?;
        match self.storage.put(&object, &wrapped)? {
            PutOutcome::Created => Ok(object),
            PutOutcome::AlreadyExists => Err(taken()),
        }
    }

    /// Gives the passphrase owner whose file the caller opened (with its
    /// passphrase) the passphrase `new`. Crash-safe: the owner key wrapped
    /// for `new` is first stored as `keys/owners/<name>.new.age` and read
    /// back and unwrapped with `new`; only then does the old file go, and
    /// `<name>.age` is written again (and verified) under `new` before the
    /// `.new` copy is removed. At every moment some owner file opens with
    /// the old or the new passphrase; a run interrupted after the old file
    /// went is finished by running it again with the new passphrase. An
    /// existing file in the way (another owner named `<name>.new`) is never
    /// deleted: the change is refused.
    /// Returns the owner file now holding `new`.
    pub fn change_passphrase(&self, new: &crate::crypto::SecretString) -> Result<String> {
        let identity = self.owner_identity("changing a passphrase")?;
        let not_passphrase = || {
            Error::InvalidInput(
                "`vault key passwd` changes a passphrase owner's passphrase: open the repository \
                 with that passphrase (VAULT_PASSPHRASE_FILE or the prompt), not with -i"
                    .into(),
            )
        };
        let current = self.owner_file().ok_or_else(not_passphrase)?.to_owned();
        if !is_passphrase_wrapped(&self.storage.get(&current)?) {
            return Err(not_passphrase());
        }
        let name = current
            .strip_prefix(OWNERS_PREFIX)
            .and_then(|n| n.strip_suffix(".age"))
            .expect("owner files are keys/owners/<name>.age");
        let base = name.strip_suffix(".new").unwrap_or(name);
        let (fin, temp) = (owner_object(base), owner_object(&format!("{base}.new")));
        let text = keys::owner_identity_text(
            identity,
            &self.config.id,
            &self.config.writer_recipient,
            self.config.version,
        );
        let wrapped = wrap_for_owner(&text, &OwnerSpec::Passphrase(again(new)))?;
        let exists = |key: &str| -> Result<bool> {
            Ok(self
                .storage
                .list(OWNERS_PREFIX)?
                .iter()
                .any(|o| o.key == key))
        };
        let store = |key: &str| -> Result<()> {
            if let PutOutcome::AlreadyExists = self.storage.put(key, &wrapped)? {
                return Err(Error::Conflict(format!(
                    "{key} appeared while the passphrase was being changed; nothing else was \
                     changed, run `vault key passwd` again"
                )));
            }
            // Read back and unwrapped with the new passphrase before
            // anything older goes.
            let ring = crate::crypto::Keyring::with_passphrase(again(new));
            let back = zeroize::Zeroizing::new(ring.decrypt(&self.storage.get(key)?, key)?);
            if back.as_slice() != text.as_bytes() {
                return Err(Error::Damaged(format!(
                    "{key} does not read back as written; the old passphrase still works"
                )));
            }
            Ok(())
        };
        if current == fin {
            if exists(&temp)? {
                // Another owner of that name, or left by an interrupted
                // run: never deleted here, it may be someone's only key.
                return Err(Error::Conflict(format!(
                    "{temp} exists (another owner, or an interrupted `vault key passwd`); \
                     nothing was changed: open with its passphrase to finish that change, or \
                     remove it with `vault key remove-owner {base}.new`"
                )));
            }
            store(&temp)?;
            self.storage.delete(&fin)?;
        } else if exists(&fin)? {
            // Both exist: an interrupted change before the old file went,
            // or two owners; which one is not for this command to guess.
            return Err(Error::Conflict(format!(
                "{fin} and {temp} both exist; nothing was changed: if {temp} is left from an \
                 interrupted `vault key passwd`, remove the file you no longer want with `vault \
                 key remove-owner` and run it again"
            )));
        }
        store(&fin)?;
        self.storage.delete(&temp)?;
        Ok(fin)
    }

    /// Deletes `keys/owners/<name>.age`. Refuses to delete the last owner
    /// object, and the one the caller's own identity opened unless `force`.
    /// Returns the object key.
    pub fn remove_owner(&self, name: &str, force: bool) -> Result<String> {
        self.owner_identity("removing an owner")?;
        check_owner_name(name)?;
        let owners = list_owners(self.storage.as_ref())?;
        let object = owner_object(name);
        if !owners.iter().any(|o| o.name == name) {
            return Err(Error::NotFound(format!(
                "there is no owner named {name:?} (`vault key list` shows them)"
            )));
        }
        if owners.len() == 1 {
            return Err(Error::InvalidInput(format!(
                "{name:?} is the last owner: without it nobody could open the repository; \
                 add another owner first (`vault key add-owner`)"
            )));
        }
        if self.owner_file() == Some(object.as_str()) && !force {
            return Err(Error::InvalidInput(format!(
                "{object} is the owner key your own identity opened: removing it locks you \
                 out unless another owner file also lists you; pass --force to remove it anyway"
            )));
        }
        self.storage.delete(&object)?;
        Ok(object)
    }

    /// Makes the next writer key generation: writes the new writer key to
    /// `writer_key_out` (mode 0600, never replacing a file), then stores it
    /// as `keys/writers/<n>.age`, sealed with the owner-derived passphrase.
    /// The new key keeps the chunk-id key, so deduplication continues.
    pub fn rotate_writer(&self, writer_key_out: &Path) -> Result<RotatedWriter> {
        let owner = self.owner_identity("rotating the writer key")?;
        let current: &WriterKey = self.keys.writer();
        // Above every name present, authentic or not: a writer refuses its
        // key when any higher generation name exists.
        let newest = keys::generation_numbers(self.storage.as_ref())?
            .last()
            .copied()
            .unwrap_or(0)
            .max(current.generation());
        let generation = newest
            .checked_add(1)
            .ok_or_else(|| Error::format(super::WRITERS_PREFIX, "generation numbers exhausted"))?;
        let mut next = current.next_generation(generation);
        if let Some(signer) = self.keys.owner_signing_key()
            && self.config.version >= 2
        {
            next = next.with_host(signer, crate::format::signature::SHARED_HOST);
        }
        let sealed = keys::seal_generation(owner, &next)?;
        crypto::write_key_file(writer_key_out, &next.to_text())?;
        let object = keys::generation_key(generation);
        let stored = match self.storage.put(&object, &sealed) {
            Ok(PutOutcome::Created) => Ok(()),
            Ok(PutOutcome::AlreadyExists) => Err(Error::Conflict(format!(
                "{object} appeared while rotating (another rotate-writer?); run it again"
            ))),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = stored {
            // The key file is useless without its generation object.
            let _ = std::fs::remove_file(writer_key_out);
            return Err(e);
        }
        // The retired shared writer key signs nothing that counts from now
        // on. Host keys (`vault key add-host`) are not revoked here: each
        // is revoked on its own with `vault key revoke-host`.
        let (mut revoked_shared, mut revocation_failed) = (None, None);
        if let Some(h) = current.host().filter(|h| h.certificate().is_shared()) {
            match self.revoke_certificate(h.certificate()) {
                Ok(r) => revoked_shared = Some(r),
                Err(e) => revocation_failed = Some(e.to_string()),
            }
        }
        Ok(RotatedWriter {
            generation,
            object,
            recipient: next.recipient(),
            revoked_shared,
            revocation_failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::crypto::{GivenPassphrase, SecretString, X25519Identity};
    use crate::format::chunk::ChunkerParams;
    use crate::repo::{Access, CONFIG_KEY, InitOptions};
    use crate::storage::memory::MemoryStorage;

    /// A repository in memory owned by a new X25519 key; returns the
    /// storage, the owner's identity file and the writer key file.
    fn memory_repo(dir: &Path, owner: &OwnerSpec) -> (Arc<MemoryStorage>, PathBuf) {
        let storage = Arc::new(MemoryStorage::new());
        let writer = dir.join("writer.key");
        Repository::init(
            storage.clone(),
            &InitOptions {
                owner: match owner {
                    OwnerSpec::Recipients(r) => OwnerSpec::Recipients(r.clone()),
                    OwnerSpec::Passphrase(p) => OwnerSpec::Passphrase(p.clone()),
                },
                owner_name: "alice".into(),
                writer_key_out: writer.clone(),
                chunker: ChunkerParams::default(),
                pack_size: 16 << 20,
                compression_level: 3,
                object_lock: None,
            },
        )
        .unwrap();
        (storage, writer)
    }

    fn identity_file(dir: &Path, name: &str) -> (PathBuf, String) {
        let (text, recipient) = crypto::generate_x25519();
        let path = dir.join(name);
        crypto::write_key_file(&path, &text).unwrap();
        (path, recipient)
    }

    #[test]
    fn owners_are_added_listed_and_removed_on_a_memory_repository() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, alice_r) = identity_file(dir.path(), "alice.key");
        let (bob, bob_r) = identity_file(dir.path(), "bob.key");
        let (storage, writer) = memory_repo(dir.path(), &OwnerSpec::Recipients(vec![alice_r]));
        let repo = Repository::open(storage.clone(), Access::IdentityFile(&alice)).unwrap();
        assert_eq!(repo.owner_file(), Some("keys/owners/alice.age"));
        repo.add_owner("bob", &OwnerSpec::Recipients(vec![bob_r.clone()]))
            .unwrap();
        let again = repo
            .add_owner("bob", &OwnerSpec::Recipients(vec![bob_r]))
            .unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        let names: Vec<_> = list_owners(storage.as_ref())
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        // Bob opens it as an owner; the writer key cannot manage owners.
        let as_bob = Repository::open(storage.clone(), Access::IdentityFile(&bob)).unwrap();
        assert!(as_bob.keys().is_owner());
        let as_writer = Repository::open(storage.clone(), Access::IdentityFile(&writer)).unwrap();
        assert!(matches!(
            as_writer.remove_owner("bob", false),
            Err(Error::OwnerKeyRequired { .. })
        ));
        // Alice may not remove her own file without --force; bob's goes.
        assert!(repo.remove_owner("alice", false).is_err());
        repo.remove_owner("bob", false).unwrap();
        assert!(Repository::open(storage, Access::IdentityFile(&bob)).is_err());
    }

    #[test]
    fn a_config_whose_writer_recipient_was_swapped_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, alice_r) = identity_file(dir.path(), "alice.key");
        let (storage, writer) = memory_repo(dir.path(), &OwnerSpec::Recipients(vec![alice_r]));
        let config = storage.get(CONFIG_KEY).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&config).unwrap();
        json["writer_recipient"] = X25519Identity::generate().recipient().into();
        storage.tamper(CONFIG_KEY, &serde_json::to_vec(&json).unwrap());
        for key in [&alice, &writer] {
            let err = Repository::open(storage.clone(), Access::IdentityFile(key))
                .err()
                .expect("a swapped writer recipient is refused");
            assert!(err.to_string().contains("tampered"), "{err}");
        }
    }

    #[test]
    fn a_rotated_writer_key_replaces_the_old_one_on_a_memory_repository() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, alice_r) = identity_file(dir.path(), "alice.key");
        let (storage, writer) = memory_repo(dir.path(), &OwnerSpec::Recipients(vec![alice_r]));
        let repo = Repository::open(storage.clone(), Access::IdentityFile(&alice)).unwrap();
        let next = dir.path().join("writer2.key");
        let rotated = repo.rotate_writer(&next).unwrap();
        assert_eq!(rotated.generation, 1);
        let old = Repository::open(storage.clone(), Access::IdentityFile(&writer))
            .err()
            .expect("the replaced writer key is refused");
        assert!(old.to_string().contains("has been replaced"), "{old}");
        let new = Repository::open(storage.clone(), Access::IdentityFile(&next)).unwrap();
        assert_eq!(new.keys().writer().generation(), 1);
        // The owner now seals for the new writer.
        let reopened = Repository::open(storage, Access::IdentityFile(&alice)).unwrap();
        assert_eq!(reopened.keys().writer().recipient(), rotated.recipient);
    }

    #[test]
    fn a_passphrase_owner_opens_only_with_its_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let secret = || SecretString::from("correct horse battery staple".to_owned());
        let (storage, _) = memory_repo(dir.path(), &OwnerSpec::Passphrase(secret()));
        let repo = Repository::open(storage.clone(), Access::Passphrase(secret())).unwrap();
        assert!(repo.keys().is_owner());
        let wrong = SecretString::from("hunter2".to_owned());
        assert!(Repository::open(storage, Access::Passphrase(wrong)).is_err());
        // GivenPassphrase is what a caller holding the secret passes on.
        let _ = GivenPassphrase(secret());
    }

    #[test]
    fn an_encrypted_ssh_owner_key_opens_with_the_passphrase_source_given() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "open sesame", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(st.success());
        let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
        let public: Vec<_> = public.split_whitespace().take(2).collect();
        let (storage, _) = memory_repo(dir.path(), &OwnerSpec::Recipients(vec![public.join(" ")]));
        let err = Repository::open(storage.clone(), Access::IdentityFile(&key))
            .err()
            .expect("no passphrase source: refused");
        assert!(err.to_string().contains("needs a passphrase"), "{err}");
        let given = GivenPassphrase(SecretString::from("open sesame".to_owned()));
        let repo =
            Repository::open(storage, Access::IdentityFileWithPassphrase(&key, &given)).unwrap();
        assert!(repo.keys().is_owner());
    }
}
