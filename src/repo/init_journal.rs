//! What `vault init` records before it writes anything, so that a rerun
//! after a crash can tell its own leftovers from anyone else's.
//!
//! `init` writes the writer key file, then `keys/owners/<name>.age`, then
//! `keys/writer.age`, then `config`. Killed in between, it leaves a location
//! without `config` (not a repository) whose `keys/` a second init must not
//! silently reuse or delete: another init may be writing there. So before
//! the first write, init stores `<writer key file>.init` (mode 0600): the
//! location and the BLAKE3 of every object and of the writer key file it is
//! about to write. A rerun with the same `--writer-key-out` removes leftovers
//! only if each one hashes to what that record says — objects nobody else
//! could have written — and refuses the location otherwise, as before. The
//! record is removed once `config` is stored.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::storage::{Storage, StorageError};

/// The record (no secrets: hashes of encrypted objects and of the key file).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// The storage location, as [`Storage::location`] names it.
    location: String,
    /// Object key → BLAKE3 of the bytes init puts there.
    objects: BTreeMap<String, Id>,
    /// BLAKE3 of the writer key file's text.
    writer_key: Id,
}

/// Where the record for a writer key file lives.
pub fn path_for(writer_key_out: &Path) -> PathBuf {
    let mut p = writer_key_out.as_os_str().to_owned();
    p.push(".init");
    PathBuf::from(p)
}

fn refuse(storage: &dyn Storage) -> Error {
    Error::InvalidInput(format!(
        "{}: keys/ already holds objects (an earlier init?); use an empty location",
        storage.location()
    ))
}

/// Clears what an interrupted init with the same writer key file left at
/// `storage` and in `writer_key_out`; fails if `keys/` holds anything that
/// init did not record.
pub fn clear_leftovers(storage: &dyn Storage, writer_key_out: &Path) -> Result<()> {
    let record: Option<Record> = fs::read(path_for(writer_key_out))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|r: &Record| r.location == storage.location());
    let leftovers = storage.list("keys/")?;
    if !leftovers.is_empty() {
        let Some(record) = &record else {
            return Err(refuse(storage));
        };
        for obj in &leftovers {
            let ours = record.objects.get(&obj.key).is_some_and(|want| {
                storage
                    .get(&obj.key)
                    .is_ok_and(|bytes| Id::of_bytes(&bytes) == *want)
            });
            if !ours {
                return Err(refuse(storage));
            }
        }
        for obj in &leftovers {
            tracing::warn!("removing {} left by an interrupted vault init", obj.key);
            match storage.delete(&obj.key) {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(record) = &record
        && let Ok(text) = fs::read(writer_key_out)
        && (text.is_empty() || Id::of_bytes(&text) == record.writer_key)
    {
        // The writer key of a repository that never came to be (or the
        // empty file of a kill between creating and writing it).
        fs::remove_file(writer_key_out).map_err(|e| Error::io(writer_key_out, e))?;
    }
    Ok(())
}

/// Records what init is about to write (before its first write).
pub fn record(
    storage: &dyn Storage,
    writer_key_out: &Path,
    objects: &[(&str, &[u8])],
    writer_key_text: &str,
) -> Result<()> {
    let record = Record {
        location: storage.location(),
        objects: objects
            .iter()
            .map(|(k, b)| ((*k).to_owned(), Id::of_bytes(b)))
            .collect(),
        writer_key: Id::of_bytes(writer_key_text.as_bytes()),
    };
    let path = path_for(writer_key_out);
    let io = |e| Error::io(&path, e);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    f.write_all(&serde_json::to_vec(&record).expect("the record serializes"))
        .and_then(|()| f.sync_all())
        .map_err(io)
}

/// Removes the record once the repository exists.
pub fn finish(writer_key_out: &Path) {
    let path = path_for(writer_key_out);
    if let Err(e) = fs::remove_file(&path) {
        tracing::warn!("could not remove {}: {e}", path.display());
    }
}
