//! The prune lock: one `locks/<id>` object per running prune (or copy into
//! the repository), so that prune never runs beside another prune or a copy. Backups take no lock (they
//! are protected by prune's grace period instead), and a backup host
//! without delete permission never needs to remove one.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result, StorageError};
pub use crate::format::lock::LockRecord;
use crate::format::signature::SignedKind;
use crate::repo::trust::Signer;
use crate::repo::{ObjectKind, Repository, id_from_key};

/// A lock older than this is taken to belong to a prune that died.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::hours(6);

/// A held prune lock; released (deleted) with [`PruneLock::release`].
pub struct PruneLock<'a> {
    repo: &'a Repository,
    key: String,
    ignored: Vec<String>,
}

impl<'a> PruneLock<'a> {
    /// Takes the lock, or fails naming the prune that holds it. Stale locks
    /// (older than [`STALE_AFTER`]) are removed.
    pub fn acquire(repo: &'a Repository, now: DateTime<Utc>) -> Result<Self> {
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let record = LockRecord {
            time: now,
            host: crate::source::host::hostname(),
            pid: std::process::id(),
            nonce: hex::encode(nonce),
        };
        // Format 2: signed by the owner (prune and copy need the owner
        // key), so that a lock planted without it stops nothing.
        let signed = repo.config().version >= 2;
        let id = if signed {
            repo.put_signed_transient_json(ObjectKind::Lock, &record)?
        } else {
            repo.put_transient_json(ObjectKind::Lock, &record)?
        };
        let mut lock = PruneLock {
            repo,
            key: ObjectKind::Lock.key(&id),
            ignored: Vec::new(),
        };
        // Look after writing, so that of two prunes starting together each
        // sees the other's lock.
        for obj in repo.storage().list(ObjectKind::Lock.prefix())? {
            let Some(other) = id_from_key(&obj.key) else {
                continue;
            };
            if other == id {
                continue;
            }
            let mut held = match repo.get_signed_json::<LockRecord>(&obj.key, SignedKind::Lock) {
                Ok((r, Signer::Owner)) => r,
                // Released since the listing.
                Err(Error::Storage(StorageError::NotFound { .. })) => continue,
                Ok((_, signer)) if signed => {
                    ignore(&obj.key, &signer.describe());
                    lock.ignored.push(obj.key);
                    continue;
                }
                Err(e) if signed => {
                    ignore(&obj.key, &e.to_string());
                    lock.ignored.push(obj.key);
                    continue;
                }
                Ok((r, _)) => r,
                // Format 1: an unreadable lock cannot be judged; honour it
                // for its age.
                Err(_) => LockRecord {
                    time: obj.modified.unwrap_or(now),
                    host: "an unknown host".into(),
                    pid: 0,
                    nonce: String::new(),
                },
            };
            // A lock is as old as its upload at least: one dated in the
            // future still goes stale.
            if let Some(uploaded) = obj.modified {
                held.time = held.time.min(uploaded);
            }
            let dead_here = held.host == crate::source::host::hostname()
                && held.pid != 0
                && held.pid != std::process::id()
                && process_gone(held.pid);
            if held.time < now - STALE_AFTER || dead_here {
                tracing::warn!("removing stale prune lock {} from {}", obj.key, held.host);
                let _ = repo.storage().delete(&obj.key);
                continue;
            }
            // Any other live lock wins, whatever the clocks say: two
            // prunes starting together both step back.
            lock.release();
            return Err(Error::Conflict(format!(
                "another prune (or a copy into this repository) is running: {} (pid {}) since {}; if it died, delete {} \
                 or wait until the lock is {} hours old",
                held.host,
                held.pid,
                held.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                obj.key,
                STALE_AFTER.num_hours()
            )));
        }
        Ok(lock)
    }

    /// Format-2 locks found that no owner signed: not honoured, for `vault
    /// prune --remove-foreign` to delete.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Deletes the lock object.
    pub fn release(self) {
        if let Err(e) = self.repo.storage().delete(&self.key) {
            tracing::warn!("could not remove prune lock {}: {e}", self.key);
        }
    }
}

/// Reports a format-2 lock that no owner signed (planted: anyone can seal a
/// document to the public recipients) and that is therefore not honoured.
fn ignore(key: &str, why: &str) {
    tracing::warn!(
        "ignoring lock {key}: not signed by the repository owner ({why}); \
         `vault prune --remove-foreign` deletes it"
    );
}

/// Whether process `pid` of this host has ended: it does not exist, or it
/// is a zombie (state `Z`, or `X`, in `/proc/PID/stat`), which has exited
/// and only waits for its parent to collect its status (a prune killed
/// while its parent is stuck holds no lock worth honouring).
fn process_gone(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None)
        == Err(nix::errno::Errno::ESRCH)
    {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_state(&stat))
        .is_some_and(|state| matches!(state, b'Z' | b'X'))
}

/// The state letter in a `/proc/PID/stat` line: the first field after the
/// command name, which is in parentheses and may itself hold `)` and spaces.
fn stat_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = stat.get(close + 1..)?;
    rest.iter().copied().find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_is_read_after_the_last_parenthesis() {
        assert_eq!(stat_state(b"42 (vault) Z 1 42 42"), Some(b'Z'));
        assert_eq!(stat_state(b"42 (a) R (b)) S 1"), Some(b'S'));
        assert_eq!(stat_state(b"42 (x"), None);
        assert_eq!(stat_state(b"42 (x)"), None);
    }

    #[test]
    fn a_zombie_counts_as_gone_and_a_live_process_does_not() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Wait until it has exited without collecting it: a zombie.
        nix::sys::wait::waitid(
            nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
            nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        let state = stat_state(&std::fs::read(format!("/proc/{pid}/stat")).unwrap());
        assert_eq!(state, Some(b'Z'));
        assert!(process_gone(pid));
        assert!(!process_gone(std::process::id()));
        drop(child);
    }
}
