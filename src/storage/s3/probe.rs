//! Finding out what a bucket really gives: versioning and Object Lock as
//! the bucket reports them, and, by writing a probe object twice, whether
//! conditional writes are honoured and whether these credentials can delete.

use rand::RngCore;

use super::S3Storage;
use crate::storage::Storage as _;
use crate::storage::{
    LockState, PROBE_PREFIX, Probe, Protection, PutOutcome, StorageError, Versioning,
};

impl S3Storage {
    /// Asks and probes; see [`Protection`].
    pub(super) fn probe_protection(&self) -> Protection {
        let versioning = self
            .bucket_versioning()
            .unwrap_or_else(|e| Versioning::Unknown(e.to_string()));
        let object_lock = self
            .lock_configuration()
            .unwrap_or_else(|e| LockState::Unknown {
                reason: e.to_string(),
            });
        let (conditional_writes, can_delete, probe_left) = self.probe_writes();
        Protection {
            location: self.location(),
            versioning,
            object_lock,
            repository_lock: self.current_lock(),
            conditional_writes,
            can_delete,
            probe_left,
        }
    }

    /// Puts a probe object twice with `If-None-Match: *`, then deletes it
    /// (every version written). Returns whether the second put was
    /// refused, whether the delete went through, and the probe's key when
    /// it stays behind.
    fn probe_writes(&self) -> (Probe, Probe, Option<String>) {
        let mut name = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut name);
        let key = format!("{PROBE_PREFIX}{}", hex::encode(name));
        let first = match self.put_single(&key, b"vault conditional-write probe 1\n", None) {
            Ok((PutOutcome::Created, v)) => v,
            Ok((PutOutcome::AlreadyExists, _)) => {
                let why = "the probe key already existed".to_owned();
                return (Probe::Unknown(why.clone()), Probe::Unknown(why), None);
            }
            Err(e) => {
                let why = format!("cannot put a probe object: {e}");
                return (Probe::Unknown(why.clone()), Probe::Unknown(why), None);
            }
        };
        let (conditional, second) =
            match self.put_single(&key, b"vault conditional-write probe 2\n", None) {
                Ok((PutOutcome::AlreadyExists, _)) => (Probe::Yes, None),
                Ok((PutOutcome::Created, v)) => (Probe::No, v),
                Err(e) => (Probe::Unknown(format!("the second put failed: {e}")), None),
            };
        let versions: Vec<Option<String>> = match (first, second) {
            (None, None) => vec![None],
            (a, b) => [b, a].into_iter().filter(Option::is_some).collect(),
        };
        let mut deleted = Probe::Yes;
        for v in &versions {
            match self.delete_version(&key, v.as_deref()) {
                Ok(()) => {}
                Err(StorageError::Refused { .. }) => {
                    deleted = Probe::No;
                    break;
                }
                Err(e) => {
                    deleted = Probe::Unknown(e.to_string());
                    break;
                }
            }
        }
        let left = (deleted != Probe::Yes).then_some(key);
        (conditional, deleted, left)
    }

    /// Removes the `listed` objects (probes or claims, named `what` in the
    /// log) older than `older_than` at `now` (the store's clock), every
    /// version of each; those these credentials may not delete stay (with a
    /// note in the log).
    pub(super) fn remove_stale(
        &self,
        listed: Vec<crate::storage::ObjectInfo>,
        older_than: std::time::Duration,
        now: chrono::DateTime<chrono::Utc>,
        what: &str,
    ) -> u64 {
        let horizon =
            now - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::zero());
        let mut removed = 0;
        for obj in listed {
            if obj.modified.is_some_and(|t| t > horizon) {
                continue;
            }
            match self.delete_everything(&obj.key) {
                Ok(()) => removed += 1,
                Err(StorageError::NotFound { .. }) => {}
                Err(e) => tracing::info!("{}: {what} stays: {e}", obj.key),
            }
        }
        removed
    }
}
