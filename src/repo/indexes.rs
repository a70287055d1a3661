//! Loading the index: every index file, checked against what storage
//! really holds.
//!
//! Index files are claims: anyone with the writer key, and anyone who can
//! write to the storage (sealing to the public recipients in `config`), can
//! add one. Format 2 signatures say who signed each file: owner-signed
//! entries are *attested* (an owner read them back), and backups
//! deduplicate only against those and their own
//! ([`Repository::load_dedup_index`]). Whoever signed it, an index file
//! only ever *adds* claims, and
//! every claim is bounded by facts the attacker cannot change without
//! storing real bytes:
//! - a pack's kind is where storage lists it (`data/` or `tree/`), never
//!   what an index file says: a planted file that lists every pack under
//!   the other kind changes nothing;
//! - a blob must lie inside its pack (`offset + length` at most the pack's
//!   stored size) and be no larger than blobs of its kind can be;
//! - one index file cannot claim more blobs in a pack than the pack can
//!   hold (each blob costs a 48-byte trailer entry), however many times it
//!   lists the pack;
//! - claims about packs storage does not hold add no locations.
//!
//! A claim that breaks a rule is dropped and reported as a [`FalseClaim`];
//! the claims of other files about the same pack are untouched, so no
//! planted file can hide a genuine copy.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::{Index, IndexFile, IndexedBlob, IndexedPack};
use crate::format::pack::{BlobKind, ENTRY_LEN};
use crate::format::signature::SignedKind;
use crate::repo::trust::Signer;
use crate::repo::verify::{MAX_COMPRESSED, max_raw};
use crate::repo::{IndexTrust, ObjectKind, Repository, StoredPack, Unreadable, list_packs};

/// Claims of one index file about one pack that cannot be true.
#[derive(Debug, Clone)]
pub struct FalseClaim {
    /// The index file.
    pub file: String,
    /// The pack.
    pub pack: Id,
    /// What is false.
    pub what: String,
}

impl std::fmt::Display for FalseClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: pack {}: {}", self.file, self.pack, self.what)
    }
}

/// Every index file of a repository, loaded and checked against storage.
#[derive(Default)]
pub struct LoadedIndex {
    /// The merged index of every readable index file (for
    /// [`Repository::load_dedup_index`]: of the trusted ones only).
    pub index: Index,
    /// The locations listed by index files the repository owner signed:
    /// an owner verified them (by reading the blobs) or wrote them itself.
    /// Empty from [`Repository::load_dedup_index`].
    pub attested: Index,
    /// Every data and tree pack in storage, listed after the index files
    /// were read (so every pack they name that exists is in it).
    pub stored: HashMap<Id, StoredPack>,
    /// Packs marked for deletion by prune, with the time of the mark.
    pub condemned: HashMap<Id, chrono::DateTime<chrono::Utc>>,
    /// Keys of the index files read.
    pub files: Vec<String>,
    /// Index files that could not be read and may be vault's own.
    pub damaged: Vec<Error>,
    /// Index files vault provably did not write (owner key only).
    pub foreign: Vec<Unreadable>,
    /// Claims dropped because they cannot be true.
    pub false_claims: Vec<FalseClaim>,
}

impl Repository {
    /// Loads every index file (see [`Repository::load_index_files`]) and
    /// returns the index with the index files that could not be read.
    pub fn load_index(&self) -> Result<(Index, Vec<Error>)> {
        let loaded = self.load_index_files()?;
        for f in &loaded.foreign {
            tracing::warn!("ignored: {f}");
        }
        Ok((loaded.index, loaded.damaged))
    }

    /// Reads every index file, then lists the packs in storage, and merges
    /// the claims that can be true (module docs). Also returns what prune
    /// needs besides the index: the files read and the deletion marks.
    pub fn load_index_files(&self) -> Result<LoadedIndex> {
        self.load_index_selected(None)
    }

    /// The index a backup may deduplicate against: the index files the
    /// repository owner signed, and those `also_trust` accepts (its own).
    ///
    /// Index files are claims anyone with the writer key can make; a
    /// backup that deduplicates against a planted entry ("blob X lives at
    /// offset 0 of pack P") writes a snapshot that does not restore. So
    /// other hosts' index files are never a source for deduplication; they
    /// stay readable for restore, which verifies every blob.
    pub fn load_dedup_index(&self, also_trust: &IndexTrust<'_>) -> Result<LoadedIndex> {
        self.load_index_selected(Some(also_trust))
    }

    fn load_index_selected(&self, dedup: Option<&IndexTrust<'_>>) -> Result<LoadedIndex> {
        let docs = self.read_signed_documents::<IndexFile>(ObjectKind::Index, SignedKind::Index)?;
        // Listed after the index files were read: a backup finishing
        // meanwhile stored its packs before the index file naming them.
        let stored = list_packs(self.storage().as_ref())?;
        let max_chunk = self.config().chunker.max_size;
        let mut loaded = LoadedIndex::default();
        // A mark dated in the future (planted, or a skewed clock) would keep
        // a pack forever: ignored.
        let horizon = chrono::Utc::now()
            + chrono::Duration::hours(crate::format::snapshot::FUTURE_SLACK_HOURS);
        for (key, id, (file, signer)) in docs.read {
            let by_owner = signer == Signer::Owner;
            let wanted = match dedup {
                None => true,
                Some(also) => by_owner || also(&id, &signer),
            };
            // A pack listed several times in one file counts once against
            // what it can hold: repeating it must not multiply the claims.
            let mut listed: HashMap<Id, u64> = HashMap::new();
            for pack in &file.packs {
                let before = listed.entry(pack.id).or_default();
                let already = *before;
                *before += pack.blobs.len() as u64;
                let claimed = admit(&key, pack, already, stored.get(&pack.id), max_chunk);
                if let Err(claim) = &claimed.1 {
                    loaded.false_claims.push(claim.clone());
                }
                if wanted {
                    loaded.index.add_pack(&claimed.0);
                }
                if by_owner && dedup.is_none() {
                    loaded.attested.add_pack(&claimed.0);
                }
            }
            // Only prune (an owner) marks packs: in format 2 a mark in a
            // file the owner did not sign is ignored, so a planted one
            // cannot hurry a deletion.
            if self.config().version >= 2 && !by_owner {
                loaded.files.push(key);
                continue;
            }
            for mark in file.condemned.into_iter().filter(|m| m.since <= horizon) {
                // Several records for one pack: the latest wins, so a pack
                // waits the longest grace anyone asked for.
                let since = loaded.condemned.entry(mark.pack).or_insert(mark.since);
                *since = (*since).max(mark.since);
            }
            loaded.files.push(key);
        }
        loaded.index.finish();
        loaded.attested.finish();
        for u in docs.unreadable {
            if u.foreign {
                loaded.foreign.push(u);
            } else {
                loaded.damaged.push(u.error);
            }
        }
        loaded.stored = stored;
        Ok(loaded)
    }
}

/// What one index file's entry for one pack may add to the index: the pack
/// under its stored kind with the blobs that can be true, and what was
/// dropped.
fn admit(
    file: &str,
    pack: &IndexedPack,
    already: u64,
    stored: Option<&StoredPack>,
    max_chunk: u32,
) -> (IndexedPack, std::result::Result<(), FalseClaim>) {
    let claim = |what: String| FalseClaim {
        file: file.to_owned(),
        pack: pack.id,
        what,
    };
    let Some(stored) = stored else {
        // Not in storage: known by id (for `vault check` and prune's
        // marks), no locations.
        let kind = pack.kind;
        return (empty(pack.id, kind), Ok(()));
    };
    let mut problems = Vec::new();
    if pack.kind != stored.kind {
        problems.push(format!(
            "listed as a {} pack; storage holds it under {}/",
            pack.kind.folder(),
            stored.kind.folder()
        ));
    }
    let capacity = stored.size / ENTRY_LEN as u64;
    if already + pack.blobs.len() as u64 > capacity {
        problems.push(format!(
            "claims {} blobs (listing the pack again counts); a pack of {} bytes holds at \
             most {capacity}",
            already + pack.blobs.len() as u64,
            stored.size
        ));
        return (empty(pack.id, stored.kind), Err(claim(problems.join("; "))));
    }
    let limit = max_raw(stored.kind, max_chunk);
    let fits = |b: &IndexedBlob| {
        b.offset as u64 + b.length as u64 <= stored.size
            && b.length <= MAX_COMPRESSED
            && b.raw_length <= limit
    };
    let blobs: Vec<IndexedBlob> = pack.blobs.iter().copied().filter(fits).collect();
    let dropped = pack.blobs.len() - blobs.len();
    if dropped > 0 {
        problems.push(format!(
            "{dropped} blob(s) lie outside the pack's {} bytes or are larger than a {} blob \
             can be",
            stored.size,
            stored.kind.folder()
        ));
    }
    let admitted = IndexedPack {
        id: pack.id,
        kind: stored.kind,
        blobs,
    };
    if problems.is_empty() {
        (admitted, Ok(()))
    } else {
        (admitted, Err(claim(problems.join("; "))))
    }
}

fn empty(id: Id, kind: BlobKind) -> IndexedPack {
    IndexedPack {
        id,
        kind,
        blobs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(offset: u32, length: u32, raw: u32) -> IndexedBlob {
        IndexedBlob {
            id: Id([offset as u8; 32]),
            offset,
            length,
            raw_length: raw,
        }
    }

    fn stored(kind: BlobKind, size: u64) -> StoredPack {
        StoredPack {
            kind,
            size,
            modified: None,
        }
    }

    #[test]
    fn kinds_come_from_storage_and_impossible_blobs_are_dropped() {
        let pack = IndexedPack {
            id: Id([1; 32]),
            kind: BlobKind::Tree,
            blobs: vec![
                blob(0, 100, 200),
                blob(100, 540 << 20, 200),
                blob(200, 10, 1 << 30),
            ],
        };
        let (got, claim) = admit(
            "index/x",
            &pack,
            0,
            Some(&stored(BlobKind::Data, 4096)),
            65536,
        );
        assert_eq!(got.kind, BlobKind::Data);
        assert_eq!(got.blobs.len(), 1);
        let claim = claim.unwrap_err();
        assert!(claim.what.contains("listed as a tree pack"), "{claim}");
        assert!(claim.what.contains("2 blob(s)"), "{claim}");
    }

    #[test]
    fn more_blobs_than_a_pack_can_hold_are_all_refused() {
        let pack = IndexedPack {
            id: Id([1; 32]),
            kind: BlobKind::Data,
            blobs: (0..3).map(|i| blob(i, 1, 1)).collect(),
        };
        let (got, claim) = admit(
            "index/x",
            &pack,
            0,
            Some(&stored(BlobKind::Data, 100)),
            65536,
        );
        assert!(got.blobs.is_empty());
        assert!(claim.unwrap_err().what.contains("at most 2"));
        // Listed again in the same file: what came before counts.
        let two = IndexedPack {
            blobs: pack.blobs[..2].to_vec(),
            ..pack.clone()
        };
        let stored100 = stored(BlobKind::Data, 100);
        assert!(admit("index/x", &two, 0, Some(&stored100), 65536).1.is_ok());
        let (got, claim) = admit("index/x", &two, 2, Some(&stored100), 65536);
        assert!(got.blobs.is_empty());
        assert!(claim.unwrap_err().what.contains("claims 4 blobs"));
        let (got, claim) = admit("index/x", &pack, 0, None, 65536);
        assert!(
            got.blobs.is_empty() && claim.is_ok(),
            "unstored: known, no locations"
        );
    }
}
