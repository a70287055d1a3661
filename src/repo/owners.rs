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
}

impl Repository {
    /// The `keys/owners/<name>.age` object the caller's identity unwrapped;
    /// `None` for the writer key and for the repository owner key itself.
    pub fn owner_file(&self) -> Option<&str> {
        self.owner_file.as_deref()
    }

    fn owner_identity(&self, operation: &'static str) -> Result<&age::x25519::Identity> {
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
        Ok(RotatedWriter {
            generation,
            object,
            recipient: next.recipient(),
        })
    }
}
