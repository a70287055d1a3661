//! Write-once by name without conditional writes: on a bucket that keeps no
//! versions, a writer of an object not named by its content (config, keys)
//! first puts a *claim*, an object of its own under
//! `claims/<BLAKE3 of the key>/<random>`, then lists the claims of that key.
//! Only a writer that finds its own claim alone writes the object; one that
//! finds another deletes its claim, waits a random while and starts again
//! (checking first whether the object is there now), for up to 20 s.
//!
//! Why at most one writer finds itself alone: each puts its claim before it
//! lists, and keeps it until the object is written. Of two racing writers,
//! the one whose claim was stored second lists after both claims are
//! stored, so it sees the other's (the store's listing must show every
//! object stored before it began, as S3 and Garage guarantee). A writer that
//! finds itself alone still looks for the object before writing: one that
//! finished first deleted its claim only after its object was stored. This holds
//! whether or not the store honours `If-None-Match`, which some S3-compatible
//! stores (Garage 2.5, measured) accept on an existing key and overwrite
//! anyway. A claim left by a killed writer stops counting after
//! [`CLAIM_EXPIRES`], by the store's clock only: a claim counts when its
//! `LastModified` is less than that before the `LastModified` of the
//! writer's own claim, both stamped by the store, so a host whose clock is
//! off by any amount decides as one whose clock is right. The next owner
//! `vault prune` deletes expired claims, again against the store's clock
//! (read from a claim it writes for the purpose).

use chrono::{DateTime, Utc};
use rand::{Rng, RngCore};

use super::S3Storage;
use super::error::io_err;
use crate::storage::{ObjectInfo, PutOutcome, StorageError};

/// Where claims live.
pub const CLAIM_PREFIX: &str = "claims/";
/// A claim older than this was left by a writer that died (a writer holds
/// one for the time of one small PUT). Short, so that a command rerun after
/// a kill waits seconds, not minutes; a writer slower than this falls back
/// to the read-back check of `put_named`.
pub const CLAIM_EXPIRES: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a writer keeps trying while others hold claims on its name.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

impl S3Storage {
    /// Writes `key` (absent at the last look) once: claim, list, and put
    /// only when alone. `put` writes the object; its outcome is returned.
    pub(super) fn put_claimed(
        &self,
        key: &str,
        put: impl Fn() -> Result<PutOutcome, StorageError>,
    ) -> Result<PutOutcome, StorageError> {
        let folder = format!(
            "{CLAIM_PREFIX}{}/",
            hex::encode(blake3::hash(key.as_bytes()).as_bytes())
        );
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        while started.elapsed() < PATIENCE {
            attempt += 1;
            if attempt > 1 {
                match self.head(key) {
                    Ok(_) => return Ok(PutOutcome::AlreadyExists),
                    Err(StorageError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let mut name = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut name);
            let claim = format!("{folder}{}", hex::encode(name));
            self.put_single(&claim, key.as_bytes(), None)?;
            let listed = self.list_objects(&folder);
            let alone = listed.as_ref().map(|all| alone(all, &claim));
            // Alone: a writer that finished before this listing deleted its
            // claim only after its object was stored, so look again now
            // (the store may overwrite despite If-None-Match).
            let outcome = match alone {
                Ok(true) => Some(match self.head(key) {
                    Ok(_) => Ok(PutOutcome::AlreadyExists),
                    Err(StorageError::NotFound { .. }) => put(),
                    Err(e) => Err(e),
                }),
                Ok(false) => None,
                Err(_) => None,
            };
            if let Err(e) = self.delete_version(&claim, None) {
                tracing::info!("{claim}: claim stays ({e}); the next prune removes it");
            }
            match (outcome, listed) {
                (Some(result), _) => return result,
                (None, Err(e)) => return Err(e),
                (None, Ok(_)) => {
                    tracing::info!("{key}: another writer is writing this name; trying again");
                    let ms = rand::rngs::OsRng.gen_range(20u64..200) << attempt.min(3);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
            }
        }
        Err(io_err(
            key,
            "other writers kept claiming this name at the same time; nothing was written, \
             try again",
        ))
    }

    /// The store's clock: the `LastModified` of an empty object written
    /// under `claims/` for the purpose (and deleted again, every version of
    /// it; one a failed delete leaves is removed by the next prune). This host's clock only
    /// if the store names no time.
    pub(super) fn store_now(&self) -> Result<DateTime<Utc>, StorageError> {
        let mut name = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut name);
        let key = format!("{CLAIM_PREFIX}clock-{}", hex::encode(name));
        self.put_single(&key, b"", None)?;
        let listed = self.list_objects(&key);
        // Every version, so that a versioned bucket keeps no delete marker
        // (which `check --storage` would rightly report as a hidden object).
        if let Err(e) = self.delete_everything(&key) {
            tracing::info!("{key}: stays ({e}); the next prune removes it");
        }
        let stamped = listed?
            .into_iter()
            .find(|o| o.key == key)
            .and_then(|o| o.modified);
        Ok(stamped.unwrap_or_else(|| self.host_now()))
    }

    /// Deletes claims older than [`CLAIM_EXPIRES`] at `now` (the store's
    /// clock): those left by killed writers.
    pub(super) fn remove_expired_claims(&self, listed: Vec<ObjectInfo>, now: DateTime<Utc>) -> u64 {
        self.remove_stale(listed, CLAIM_EXPIRES, now, "claim")
    }
}

/// Whether the writer of `claim` is alone among the `listed` claims of its
/// name: every other claim was stored at least [`CLAIM_EXPIRES`] before
/// its own, by the store's clock. Not alone when the listing does not show
/// its own claim with a time (nothing to measure against), nor when
/// another claim has no time.
fn alone(listed: &[ObjectInfo], claim: &str) -> bool {
    let Some(own) = listed
        .iter()
        .find(|o| o.key == claim)
        .and_then(|o| o.modified)
    else {
        return false;
    };
    let horizon =
        own - chrono::Duration::from_std(CLAIM_EXPIRES).unwrap_or(chrono::Duration::zero());
    listed
        .iter()
        .filter(|o| o.key != claim)
        .all(|o| o.modified.is_some_and(|t| t < horizon))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(key: &str, secs: i64) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 0,
            modified: DateTime::from_timestamp(secs, 0),
        }
    }

    #[test]
    fn claims_expire_by_the_stores_clock_alone() {
        // The store's clock is years away from this host's: only the
        // distance between claims counts.
        let t = 1_000_000_000;
        assert!(alone(&[at("c/mine", t)], "c/mine"));
        assert!(alone(&[at("c/dead", t - 11), at("c/mine", t)], "c/mine"));
        assert!(!alone(&[at("c/live", t - 9), at("c/mine", t)], "c/mine"));
        // Stored after this writer's own: live.
        assert!(!alone(&[at("c/mine", t), at("c/late", t + 1)], "c/mine"));
        // Its own claim missing from the listing, or a claim without a time:
        // not alone.
        assert!(!alone(&[at("c/dead", t - 100)], "c/mine"));
        let mut untimed = at("c/other", 0);
        untimed.modified = None;
        assert!(!alone(&[untimed, at("c/mine", t)], "c/mine"));
    }
}
