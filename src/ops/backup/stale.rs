//! Bundles a backup must not name again: those that hold the bytes of a
//! small file deleted or changed since the last backup.
//!
//! A bundle ([`crate::format::tree::Node::bundle_offset`]) is one blob for
//! several files. If an unchanged neighbour kept naming it, the bytes of a
//! deleted file (a leaked key removed from `/etc`) or of a file's earlier
//! version would stay in every later snapshot, and so in the repository,
//! however many snapshots are forgotten and pruned. So the file cache
//! offers no bundled record of a stale bundle: the unchanged neighbours are
//! read again and bundled anew, and the old bundle goes once the snapshots
//! naming it are forgotten and pruned.
//!
//! The set is bounded: past [`MAX_STALE`] bundles every bundled record is
//! judged stale (those files are read again: slower, never wrong).

use std::collections::HashSet;

use crate::format::id::BlobId;

/// Stale bundles remembered at most (32 bytes each, 2 MiB at most): more
/// small files than that changed since the last backup and every bundle
/// counts as stale.
pub const MAX_STALE: usize = 1 << 16;

/// The stale bundles found so far in one backup's walk.
#[derive(Default)]
pub struct StaleBundles {
    ids: HashSet<BlobId>,
    /// More than [`MAX_STALE`] were found: every bundle is stale.
    all: bool,
}

impl StaleBundles {
    /// Notes that `bundle` holds bytes no file has any more.
    pub fn insert(&mut self, bundle: BlobId) {
        if self.all {
            return;
        }
        if self.ids.len() >= MAX_STALE {
            self.all = true;
            self.ids = HashSet::new();
            return;
        }
        self.ids.insert(bundle);
    }

    /// Whether the walk may no longer name `bundle`.
    pub fn contains(&self, bundle: &BlobId) -> bool {
        self.all || self.ids.contains(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::Id;

    fn id(n: u32) -> BlobId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        BlobId(Id(b))
    }

    #[test]
    fn past_its_bound_every_bundle_is_stale() {
        let mut s = StaleBundles::default();
        s.insert(id(0));
        assert!(s.contains(&id(0)));
        assert!(!s.contains(&id(1)));
        for n in 1..MAX_STALE as u32 {
            s.insert(id(n));
        }
        assert!(!s.contains(&id(u32::MAX)));
        s.insert(id(MAX_STALE as u32));
        assert!(s.contains(&id(u32::MAX)), "one more: every bundle");
        assert!(s.ids.is_empty(), "the memory is given back");
    }
}
