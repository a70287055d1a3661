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
use crate::format::id::PackId;
use crate::format::index::compact::MAX_PACKS;
use crate::format::index::stream::{self, IndexSink};
use crate::format::index::{CondemnedPack, Index, IndexedBlob};
use crate::format::pack::{BlobKind, ENTRY_LEN};
use crate::format::signature::SignedKind;
use crate::repo::index_digest::{self, SignedBy};
use crate::repo::trust::Signer;
use crate::repo::verify::{MAX_COMPRESSED, max_raw};
use crate::repo::{IndexTrust, ObjectKind, Repository, StoredPack, Unreadable, list_packs};

/// Claims of one index file about one pack that cannot be true.
#[derive(Debug, Clone)]
pub struct FalseClaim {
    /// The index file.
    pub file: String,
    /// The pack.
    pub pack: PackId,
    /// What is false.
    pub what: ClaimProblems,
}

/// Why an index file is not a valid index document.
#[derive(Debug, thiserror::Error)]
enum IndexFileError {
    /// Its JSON is not an index file.
    #[error(transparent)]
    Json(serde_json::Error),
    /// It names more packs than an index holds.
    #[error("names more than {MAX_PACKS} packs, more than vault indexes")]
    TooManyPacks,
}

/// A sink that keeps nothing: what a parse records is all that is wanted.
struct Discard;

impl IndexSink for Discard {
    fn blob(&mut self, _: &IndexedBlob) {}
    fn pack(&mut self, _: PackId, _: BlobKind, _: usize) {}
}

/// One thing an index file's claim about a pack gets wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimProblem {
    /// The claim lists the pack under another kind than storage holds.
    #[error("listed as a {} pack; storage holds it under {}/", listed.folder(), stored.folder())]
    WrongKind {
        /// The kind the index file gives.
        listed: BlobKind,
        /// The kind storage holds it as.
        stored: BlobKind,
    },
    /// More blobs than the pack's size leaves room for.
    #[error(
        "claims {blobs} blobs (listing the pack again counts); a pack of {size} bytes holds \
         at most {capacity}"
    )]
    TooManyBlobs {
        /// How many blobs the file claims in the pack.
        blobs: u64,
        /// The pack's stored size.
        size: u64,
        /// How many entries fit in that size.
        capacity: u64,
    },
    /// Blobs that cannot be where the claim puts them.
    #[error(
        "{dropped} blob(s) lie outside the pack's {size} bytes or are larger than a {} blob \
         can be",
        kind.folder()
    )]
    OutOfBounds {
        /// How many blobs were dropped.
        dropped: u64,
        /// The pack's stored size.
        size: u64,
        /// The pack's kind.
        kind: BlobKind,
    },
}

/// Everything false about one claim (never empty), shown joined by `; `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", joined(.0))]
pub struct ClaimProblems(pub Vec<ClaimProblem>);

/// The problems' messages, joined by `; `.
fn joined(problems: &[ClaimProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
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
    /// [`Repository::load_dedup_index`]: of the trusted ones only). Entries
    /// listed by an index file the repository owner signed are marked
    /// attested ([`Index::is_attested`]): an owner verified them (by reading
    /// the blobs) or wrote them itself. None are from
    /// [`Repository::load_dedup_index`].
    pub index: Index,
    /// Every data and tree pack in storage, listed after the index files
    /// were read (so every pack they name that exists is in it).
    pub stored: HashMap<PackId, StoredPack>,
    /// Packs marked for deletion by prune, with the time of the mark.
    pub condemned: HashMap<PackId, chrono::DateTime<chrono::Utc>>,
    /// Keys of the index files read.
    pub files: Vec<String>,
    /// Index files that could not be read and may be vault's own.
    pub damaged: Vec<Error>,
    /// Index files vault provably did not write (owner key only).
    pub foreign: Vec<Unreadable>,
    /// Claims dropped because they cannot be true.
    pub false_claims: Vec<FalseClaim>,
}

/// The blobs one index file lists for one pack: records `start..end` of the
/// index being built, before [`Index::finish`].
struct Claimed {
    file: usize,
    pack: u32,
    kind: BlobKind,
    start: usize,
    end: usize,
}

/// The [`IndexSink`] of one index file: pushes its blobs into the index
/// (unless the file is not wanted) and notes which pack claims which.
struct Loading<'a> {
    index: &'a mut Index,
    claims: &'a mut Vec<Claimed>,
    file: usize,
    attested: bool,
    wanted: bool,
    too_many_packs: bool,
}

impl IndexSink for Loading<'_> {
    fn blob(&mut self, blob: &IndexedBlob) {
        if self.wanted {
            self.index.push(None, blob, self.attested);
        }
    }

    fn pack(&mut self, id: PackId, kind: BlobKind, blobs: usize) {
        if !self.wanted {
            return;
        }
        let Some(pack) = self.index.number_pack(id, kind) else {
            self.too_many_packs = true;
            return;
        };
        let end = self.index.pushed();
        self.index.assign(end - blobs..end, pack);
        self.claims.push(Claimed {
            file: self.file,
            pack,
            kind,
            start: end - blobs,
            end,
        });
    }
}

impl Repository {
    /// Loads every index file into a compact index (see
    /// [`crate::format::index::compact`]; for restore) and returns it with
    /// the index files that could not be read.
    pub fn load_index(&self) -> Result<(Index, Vec<Error>)> {
        let loaded = self.load_index_selected(None, Index::compact())?;
        for f in &loaded.foreign {
            tracing::warn!("ignored: {f}");
        }
        Ok((loaded.index, loaded.damaged))
    }

    /// Reads every index file, then lists the packs in storage, and merges
    /// the claims that can be true (module docs) into a full index (exact
    /// ids, for prune, check and copy). Also returns what prune needs
    /// besides the index: the files read and the deletion marks.
    pub fn load_index_files(&self) -> Result<LoadedIndex> {
        self.load_index_selected(None, Index::full())
    }

    /// The index a backup may deduplicate against, compact: the index files
    /// the repository owner signed, and those `also_trust` accepts (its own).
    ///
    /// Index files are claims anyone with the writer key can make; a
    /// backup that deduplicates against a planted entry ("blob X lives at
    /// offset 0 of pack P") writes a snapshot that does not restore. So
    /// other hosts' index files are never a source for deduplication; they
    /// stay readable for restore, which verifies every blob.
    pub fn load_dedup_index(&self, also_trust: &IndexTrust<'_>) -> Result<LoadedIndex> {
        self.load_index_selected(Some(also_trust), Index::compact())
    }

    fn load_index_selected(
        &self,
        dedup: Option<&IndexTrust<'_>>,
        mut index: Index,
    ) -> Result<LoadedIndex> {
        let mut claims: Vec<Claimed> = Vec::new();
        // The files read, in the order their claims number them: key,
        // deletion marks, whether the owner signed it.
        let mut files: Vec<(String, Vec<CondemnedPack>, bool)> = Vec::new();
        let listed = self.list_document_keys(ObjectKind::Index)?;
        // Files read by an earlier run are replayed from the cache's digest
        // (no JSON parsed); the others, and any whose record does not
        // replay, are read and parsed, and added to the digest.
        // A file whose record is too large for the digest has it in a file
        // of its own, read (and let go) only here.
        let digest = self.cached().map(|c| c.digest(index_digest::DIGEST));
        let mut unseen = Vec::new();
        for (obj, id) in &listed {
            let own_record;
            let record = match digest.as_ref().map(|d| d.records.get(id)) {
                Some(Some(r)) => Some(r.as_slice()),
                Some(None) => {
                    own_record = self.cached().and_then(|c| {
                        c.record(index_digest::DIGEST, id, index_digest::MAX_OWN_RECORD)
                    });
                    own_record.as_deref()
                }
                None => None,
            };
            let Some((signer, marks, calls)) = record.and_then(index_digest::open) else {
                unseen.push((obj.clone(), *id));
                continue;
            };
            let by_owner = signer == SignedBy::Owner;
            let mark = index.mark();
            let claims_before = claims.len();
            let mut sink = Loading {
                index: &mut index,
                claims: &mut claims,
                file: files.len(),
                attested: by_owner && dedup.is_none(),
                wanted: match dedup {
                    None => true,
                    Some(also) => by_owner || also(id, signer.host_key()),
                },
                too_many_packs: false,
            };
            if index_digest::replay(calls, &mut sink) && !sink.too_many_packs {
                files.push((obj.key.clone(), marks, by_owner));
            } else {
                index.rollback(mark);
                claims.truncate(claims_before);
                unseen.push((obj.clone(), *id));
            }
        }
        let mut added = Vec::new();
        let mut keys_read = files.len();
        // Each file's blobs go straight into the index as they are parsed
        // (no file is held as a whole); a file that fails halfway is rolled
        // back.
        // Parsed on the fetch workers into the digest's binary calls (a
        // third of the JSON's size, dropped as soon as it is parsed), then
        // replayed into the index here, in listing order.
        let docs = self.visit_listed(
            &unseen,
            SignedKind::Index,
            |_, json, _| {
                let mut recorder = index_digest::Recorder {
                    inner: &mut Discard,
                    calls: Vec::new(),
                };
                let marks = stream::parse(json, &mut recorder).map_err(IndexFileError::Json)?;
                Ok((marks, recorder.calls))
            },
            |id, (marks, calls), signer| {
                let signed_by = SignedBy::from(signer);
                let by_owner = signed_by == SignedBy::Owner;
                let mark = index.mark();
                let claims_before = claims.len();
                let mut sink = Loading {
                    index: &mut index,
                    claims: &mut claims,
                    file: keys_read,
                    attested: by_owner && dedup.is_none(),
                    wanted: match dedup {
                        None => true,
                        Some(also) => by_owner || also(id, signed_by.host_key()),
                    },
                    too_many_packs: false,
                };
                // The calls were just recorded, so they always replay.
                let replayed = index_digest::replay(&calls, &mut sink);
                if !replayed || sink.too_many_packs {
                    index.rollback(mark);
                    claims.truncate(claims_before);
                    return Err(IndexFileError::TooManyPacks);
                }
                keys_read += 1;
                // Recorded only if its entry was kept (the JSON within its
                // ratio to the stored size, as for entries), so that padding
                // cannot fill the digest.
                if let Some(c) = self
                    .cached()
                    .filter(|c| digest.is_some() && c.has(ObjectKind::Index, id))
                {
                    let record = index_digest::encode(signed_by, &marks, &calls);
                    if calls.len() <= index_digest::MAX_RECORD {
                        added.push((*id, record));
                    } else if record.len() as u64 <= index_digest::MAX_OWN_RECORD {
                        c.put_record(index_digest::DIGEST, id, &record);
                    }
                }
                Ok(marks)
            },
        );
        for (key, _, (marks, signer)) in docs.read {
            files.push((key, marks, signer == Signer::Owner));
        }
        if let (Some(c), Some(d)) = (self.cached(), digest) {
            let ids = listed.iter().map(|(_, id)| *id).collect();
            c.forget_records(index_digest::DIGEST, &ids);
            c.save_digest(d, added, &ids);
        }
        // Listed after the index files were read: a backup finishing
        // meanwhile stored its packs before the index file naming them.
        let stored = list_packs(self.storage().as_ref())?;
        let max_chunk = self.config().chunker.max_size;
        let mut loaded = LoadedIndex::default();
        // A mark dated in the future (planted, or a skewed clock) would keep
        // a pack forever: ignored.
        let horizon = chrono::Utc::now()
            + chrono::Duration::hours(crate::format::snapshot::FUTURE_SLACK_HOURS);
        for (key, condemned, by_owner) in files {
            // Only prune (an owner) marks packs: in format 2 a mark in a
            // file the owner did not sign is ignored, so a planted one
            // cannot hurry a deletion.
            if self.config().version < 2 || by_owner {
                for mark in condemned.into_iter().filter(|m| m.since <= horizon) {
                    // Several records for one pack: the latest wins, so a
                    // pack waits the longest grace anyone asked for.
                    let since = loaded.condemned.entry(mark.pack).or_insert(mark.since);
                    *since = (*since).max(mark.since);
                }
            }
            loaded.files.push(key);
        }
        // A pack listed several times in one file counts once against what
        // it can hold: repeating it must not multiply the claims.
        let mut listed: HashMap<(usize, u32), u64> = HashMap::new();
        for c in &claims {
            let pack = index.pack_id(c.pack);
            let stored = stored.get(&pack);
            if let Some(s) = stored {
                index.set_kind(c.pack, s.kind);
            }
            let count = listed.entry((c.file, c.pack)).or_default();
            let already = *count;
            *count += (c.end - c.start) as u64;
            if let Err(what) = admit(&mut index, c, already, stored, max_chunk) {
                loaded.false_claims.push(FalseClaim {
                    file: loaded.files[c.file].clone(),
                    pack,
                    what,
                });
            }
        }
        index.finish();
        loaded.index = index;
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

/// Drops from `index` the blobs of one index file's claim about one pack
/// that cannot be true, and says what was false. `already`: how many blobs
/// the same file claimed in this pack before (listing it again counts).
fn admit(
    index: &mut Index,
    c: &Claimed,
    already: u64,
    stored: Option<&StoredPack>,
    max_chunk: u32,
) -> std::result::Result<(), ClaimProblems> {
    let range = c.start..c.end;
    let Some(stored) = stored else {
        // Not in storage: known by id (for `vault check` and prune's
        // marks), no locations.
        index.drop_unless(range, |_, _, _| false);
        return Ok(());
    };
    let mut problems = Vec::new();
    if c.kind != stored.kind {
        problems.push(ClaimProblem::WrongKind {
            listed: c.kind,
            stored: stored.kind,
        });
    }
    let capacity = stored.size / ENTRY_LEN as u64;
    let blobs = already + (c.end - c.start) as u64;
    if blobs > capacity {
        problems.push(ClaimProblem::TooManyBlobs {
            blobs,
            size: stored.size,
            capacity,
        });
        index.drop_unless(range, |_, _, _| false);
        return Err(ClaimProblems(problems));
    }
    let limit = max_raw(stored.kind, max_chunk);
    let dropped = index.drop_unless(range, |offset, length, raw_length| {
        offset as u64 + length as u64 <= stored.size
            && length <= MAX_COMPRESSED
            && raw_length <= limit
    });
    if dropped > 0 {
        problems.push(ClaimProblem::OutOfBounds {
            dropped: dropped as u64,
            size: stored.size,
            kind: stored.kind,
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ClaimProblems(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::{BlobId, Id};

    fn blob(offset: u32, length: u32, raw: u32) -> IndexedBlob {
        IndexedBlob {
            id: BlobId(Id([offset as u8; 32])),
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

    /// One claim of `blobs` in a pack listed as `kind`, pushed into a new
    /// index.
    fn claim(kind: BlobKind, blobs: &[IndexedBlob]) -> (Index, Claimed) {
        let mut index = Index::full();
        let pack = index.number_pack(PackId(Id([1; 32])), kind).unwrap();
        for b in blobs {
            index.push(Some(pack), b, false);
        }
        let c = Claimed {
            file: 0,
            pack,
            kind,
            start: 0,
            end: blobs.len(),
        };
        (index, c)
    }

    #[test]
    fn impossible_blobs_are_dropped_and_a_wrong_kind_is_reported() {
        let blobs = [
            blob(0, 100, 200),
            blob(100, 540 << 20, 200),
            blob(200, 10, 1 << 30),
        ];
        let (mut index, c) = claim(BlobKind::Tree, &blobs);
        let s = stored(BlobKind::Data, 4096);
        let what = admit(&mut index, &c, 0, Some(&s), 65536)
            .unwrap_err()
            .to_string();
        index.finish();
        assert_eq!(index.len(), 1);
        assert_eq!(
            what,
            "listed as a tree pack; storage holds it under data/; 2 blob(s) lie outside the \
             pack's 4096 bytes or are larger than a data blob can be"
        );
        assert!(what.contains("listed as a tree pack"), "{what}");
        assert!(what.contains("2 blob(s)"), "{what}");
    }

    #[test]
    fn more_blobs_than_a_pack_can_hold_are_all_refused() {
        let blobs: Vec<_> = (0..3).map(|i| blob(i, 1, 1)).collect();
        let (mut index, c) = claim(BlobKind::Data, &blobs);
        let what = admit(&mut index, &c, 0, Some(&stored(BlobKind::Data, 100)), 65536)
            .unwrap_err()
            .to_string();
        index.finish();
        assert!(index.is_empty());
        assert!(what.contains("at most 2"));
        let (mut index, c) = claim(BlobKind::Data, &blobs);
        assert!(admit(&mut index, &c, 0, None, 65536).is_ok());
        index.finish();
        assert!(index.is_empty(), "unstored: known, no locations");
        assert_eq!(index.packs().count(), 1);
    }
}
