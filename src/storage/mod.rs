//! Where repository objects live: one small trait over opaque keys and bytes.
//!
//! Storage never sees plaintext or snapshot types. Objects are write-once:
//! [`Storage::put`] never replaces an existing object. Keys whose last
//! component is 64 hex digits are named by their content (the BLAKE3 of
//! their bytes, see [`named_by_content`]): any two puts of such a key carry
//! the same bytes. Other keys (`config`, `keys/…`) are written once by name.
//!
//! Owner maintenance (forget, prune) deletes through [`Storage::delete`] and
//! asks [`Storage::locked_until`] first, so that objects still under S3
//! Object Lock retention are skipped instead of failing the whole run.
//!
//! Backends: [`LocalStorage`] (a directory), `S3Storage` (behind the
//! default-on cargo feature `s3`) and, for unit tests only, `MemoryStorage`.

pub mod direct;
mod local;
#[cfg(test)]
pub(crate) mod memory;
mod protection;
pub mod s3;

use std::io::{Read, Seek};

pub use crate::error::StorageError;
pub use crate::format::config::{LockMode, ObjectLock};
pub use local::LocalStorage;
pub use protection::{LockState, PROBE_PREFIX, Probe, Protection, Rewritten, Versioning};
pub use s3::S3Options;
#[cfg(feature = "s3")]
pub use s3::S3Storage;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What happened on a put-if-absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object already existed under that key and was left untouched.
    AlreadyExists,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full object key, e.g. `data/ab/ab12…`.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the storage last wrote it (the server's clock for S3; a local
    /// directory's inode change time, which nobody can set back), if known.
    /// Prune uses it so that objects a running backup has just written are
    /// never deleted, whatever a planted record claims.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// One key listed by [`Storage::list_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    /// The full object key.
    pub key: String,
    /// Its size in bytes, when the listing gave it.
    pub size: Option<u64>,
}

/// A multipart upload that was started and never completed or aborted
/// (left by a crashed or killed backup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingUpload {
    /// The object key it would have created.
    pub key: String,
    /// The upload id.
    pub upload_id: String,
    /// When it was started, if the storage says.
    pub started: Option<DateTime<Utc>>,
}

/// A readable, seekable object body.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// The operations vault needs from a place that stores objects.
pub trait Storage: Send + Sync {
    /// Stores `data` under `key` unless an object already exists there.
    fn put(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError>;
    /// Like [`Storage::put`], but the object need not survive a power loss
    /// until [`Storage::sync`] is called with its key: for objects nothing
    /// refers to yet (packs before the index file listing them), so that many
    /// are made durable at once. Storage whose puts are durable anyway (S3)
    /// keeps the default.
    fn put_unsynced(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        self.put(key, data)
    }
    /// Makes the objects under `keys`, stored by [`Storage::put_unsynced`],
    /// durable. Called before anything that refers to them is stored.
    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        let _ = keys;
        Ok(())
    }
    /// Like [`Storage::put`], but never under Object Lock retention: for
    /// small objects that must be deletable soon (prune's lock).
    fn put_transient(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        self.put(key, data)
    }
    /// Reads a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError>;
    /// Whether an object exists now, answered at once: unlike
    /// [`Storage::get`], which on S3 asks again for an object a lagging
    /// store does not show yet, a missing object is simply `false` (init
    /// asks this of a fresh location).
    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.get(key) {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
    /// Opens an object for streaming, seekable reads.
    fn open(&self, key: &str) -> Result<Box<dyn ReadSeek>, StorageError>;
    /// Lists every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// The keys [`Storage::list`] would give, with each object's size only
    /// where listing gives it at no extra cost (S3 does; a local directory
    /// would have to stat every file, so it gives names alone). For
    /// documents named by their hash, whose size is checked when read.
    fn list_keys(&self, prefix: &str) -> Result<Vec<ListedKey>, StorageError> {
        Ok(self
            .list(prefix)?
            .into_iter()
            .map(|o| ListedKey {
                key: o.key,
                size: Some(o.size),
            })
            .collect())
    }
    /// Deletes an object for good (owner operations only: prune, forget).
    ///
    /// On a versioned S3 bucket (every Object Lock bucket is one) this deletes
    /// the object's current version rather than hiding it behind a delete
    /// marker, so the space is really freed. An object under retention, or a
    /// caller without delete permission, gets [`StorageError::Refused`]
    /// naming the key (and the retention date when known); a missing object
    /// gets [`StorageError::NotFound`].
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Until when an object is protected from deletion by S3 Object Lock.
    ///
    /// `Ok(None)`: no retention is in force (never was, or it has ended by
    /// this host's clock), so [`Storage::delete`] is not refused for that
    /// reason. `Ok(Some(t))`: retained until `t`, which lies in the future; a
    /// legal hold reports [`DateTime::<Utc>::MAX_UTC`]. Local directories
    /// always answer `Ok(None)`. A missing object is [`StorageError::NotFound`].
    fn locked_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError>;
    /// Lengthens `key`'s Object Lock retention to `until` (owner maintenance:
    /// prune keeps the data of recent snapshots locked even when it was
    /// first stored long ago). Storages without retention ignore it.
    fn extend_lock(&self, key: &str, until: DateTime<Utc>) -> Result<(), StorageError> {
        let _ = (key, until);
        Ok(())
    }
    /// Checks that this storage can retain objects with Object Lock (an S3
    /// bucket created with Object Lock enabled); [`StorageError::Unsupported`]
    /// says what is missing otherwise.
    fn check_object_lock(&self) -> Result<(), StorageError> {
        Err(StorageError::Unsupported {
            location: self.location(),
            reason: "this storage cannot lock objects; Object Lock needs an S3 bucket \
                     created with Object Lock enabled"
                .into(),
        })
    }
    /// Applies `lock` to every object put from now on (`None`: no retention).
    /// The repository calls it with its config's setting when it is opened.
    /// Storages that cannot lock objects ignore it (a local copy of a locked
    /// repository stays readable and writable).
    fn set_object_lock(&self, lock: Option<ObjectLock>) {
        let _ = lock;
    }
    /// Multipart uploads under this storage's prefix that were started but
    /// never completed or aborted. Local directories have none.
    fn pending_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        Ok(Vec::new())
    }
    /// Aborts a pending multipart upload, freeing the parts it holds.
    fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StorageError> {
        let _ = upload;
        Ok(())
    }
    /// A human-readable location for messages.
    fn location(&self) -> String;
    /// How many small reads (metadata objects) to have in flight at once by
    /// default: a few for a local directory, where a read costs little
    /// more than the CPU it takes; S3 overrides it, where each read is a
    /// round trip.
    fn parallel_reads(&self) -> usize {
        4
    }
    /// How many packs a backup uploads at once: one for a local directory
    /// (a write costs little more than its copy, and every pack in flight
    /// is held in memory); S3 overrides it, where an upload waits on the
    /// network.
    fn parallel_writes(&self) -> usize {
        1
    }
    /// What this storage protects against a writer that turns hostile
    /// (S3: versioning, Object Lock, conditional writes, found out by asking
    /// the bucket and writing a probe object under [`PROBE_PREFIX`]).
    /// `None` where there is nothing to find out (a local directory: whoever
    /// can write to it can destroy it).
    fn protection(&self) -> Result<Option<Protection>, StorageError> {
        Ok(None)
    }
    /// Objects written more than once or hidden by a delete marker, on a
    /// storage that keeps versions; empty where versions are not kept (or
    /// cannot be read).
    fn rewritten(&self) -> Result<Vec<Rewritten>, StorageError> {
        Ok(Vec::new())
    }
    /// Removes what interrupted writes left behind (temporary files of a
    /// killed put) that is older than `older_than`; returns how many were
    /// removed. Owner maintenance (prune) calls it; readers ignore leftovers.
    fn clean_leftovers(&self, older_than: std::time::Duration) -> Result<u64, StorageError> {
        let _ = older_than;
        Ok(0)
    }
}

/// Whether `key` names its content: its last component is 64 hex digits
/// (the BLAKE3 of the object's bytes).
pub fn named_by_content(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Opens the storage that `repo` names: a directory path, `file:///path`,
/// or `s3://bucket/prefix` (reached with `s3`).
pub fn open(repo: &str, s3: &S3Options) -> Result<Box<dyn Storage>, StorageError> {
    if repo.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(Box::new(S3Storage::open(repo, s3)?));
        #[cfg(not(feature = "s3"))]
        {
            let _ = s3;
            return Err(StorageError::Unsupported {
                location: "s3://".into(),
                reason: "this vault was built without S3 support (cargo feature `s3`)".into(),
            });
        }
    }
    let path = repo.strip_prefix("file://").unwrap_or(repo);
    if path.is_empty() {
        return Err(StorageError::InvalidLocation(
            "the repository path is empty".into(),
        ));
    }
    Ok(Box::new(LocalStorage::new(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_names_of_64_digits_are_named_by_content() {
        let id = "ab".repeat(32);
        assert!(named_by_content(&format!("data/ab/{id}")));
        assert!(named_by_content(&format!("index/{id}")));
        assert!(!named_by_content("config"));
        assert!(!named_by_content("keys/owners/alice.age"));
        assert!(!named_by_content(&format!("index/{}", &id[1..])));
        assert!(!named_by_content(&format!("index/{}zz", &id[2..])));
    }

    #[test]
    fn an_empty_location_is_refused() {
        assert!(matches!(
            open("", &S3Options::default()),
            Err(StorageError::InvalidLocation(_))
        ));
        assert!(matches!(
            open("file://", &S3Options::default()),
            Err(StorageError::InvalidLocation(_))
        ));
    }
}
