//! `vault backup --list`: whether each file is new, changed or unchanged
//! since this host's last backup of the same paths.
//!
//! A backup host holds only the writer key and cannot read earlier
//! snapshots, so the comparison is with the per-host file cache (what each
//! file looked like at the last backup, with its content hash): a file the
//! cache recognises by size, times and inode is unchanged without being
//! read; a file read again is unchanged when its content hashes to what the
//! cache recorded (only its metadata moved), changed when it does not, and
//! new when the cache has no record of it (the first backup, `--no-cache`).
//!
//! That is by design, not a shortcut: the file cache is the host's own
//! record of its previous snapshot, the only one it can read. Each file's
//! verdict goes to a [`ChangeList`] as soon as the file is stored, in walk
//! order, and only the counts are kept, so memory does not grow with the
//! number of files.

use serde::Serialize;

use crate::format::id::Id;

/// How a file compares with the last backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Not in the last backup's file cache.
    New,
    /// Its content differs from what the last backup stored.
    Changed,
    /// Same content as the last backup stored.
    Unchanged,
}

impl Change {
    /// Classifies a file: `from_cache` when the cache recognised it without
    /// reading, `previous` the content hash the cache recorded, `hash` what
    /// was read now.
    pub fn of(from_cache: bool, previous: Option<Id>, hash: Id) -> Change {
        match previous {
            _ if from_cache => Change::Unchanged,
            Some(p) if p == hash => Change::Unchanged,
            Some(_) => Change::Changed,
            None => Change::New,
        }
    }

    /// The word printed for it.
    pub fn word(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        }
    }
}

/// One file of the change list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// Absolute path, escaped as in snapshot listings.
    pub path: String,
    /// How it compares with the last backup.
    pub change: Change,
}

/// Where each file's verdict goes, as it is decided (from the backup's
/// assembling thread, in walk order).
#[derive(Clone)]
pub struct ChangeList(pub std::sync::Arc<dyn Fn(&FileChange) + Send + Sync>);

impl std::fmt::Debug for ChangeList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeList")
    }
}

/// Counts of a change list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeCounts {
    /// New files.
    pub new: u64,
    /// Changed files.
    pub changed: u64,
    /// Unchanged files.
    pub unchanged: u64,
}

impl ChangeCounts {
    /// Counts one more file.
    pub fn add(&mut self, change: Change) {
        *match change {
            Change::New => &mut self.new,
            Change::Changed => &mut self.changed,
            Change::Unchanged => &mut self.unchanged,
        } += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_cache_and_the_content() {
        let (a, b): (Id, Id) = (blake3::hash(b"a").into(), blake3::hash(b"b").into());
        assert_eq!(Change::of(true, Some(a), a), Change::Unchanged);
        assert_eq!(Change::of(false, Some(a), a), Change::Unchanged);
        assert_eq!(Change::of(false, Some(a), b), Change::Changed);
        assert_eq!(Change::of(false, None, b), Change::New);
        let mut counts = ChangeCounts::default();
        counts.add(Change::New);
        counts.add(Change::Unchanged);
        assert_eq!(
            counts,
            ChangeCounts {
                new: 1,
                changed: 0,
                unchanged: 1
            }
        );
    }
}
