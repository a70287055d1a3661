//! What prune will do, decided without touching storage: which packs stay,
//! which are repacked, which are marked for deletion and which go now.
//!
//! Safety rules (see docs/FORMAT.md, "Prune"):
//! - a pack is deleted only when no snapshot needs it, it was marked at
//!   least one grace period ago, and storage says it is at least one grace
//!   period old; so a backup running now, whose snapshot is not written yet,
//!   never loses a pack it wrote or deduplicated against (as long as it
//!   finishes within the grace period);
//! - a marked pack that a snapshot turns out to need is simply unmarked.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::format::id::{BlobId, PackId};
use crate::format::index::{BlobLocation, CondemnedPack, Index};
pub use crate::repo::StoredPack;

/// Tuning of a prune run.
#[derive(Debug, Clone, Copy)]
pub struct PlanRules {
    /// How long a pack stays marked (and unused) before it is deleted, and
    /// the minimum age of anything deleted.
    pub grace: chrono::Duration,
    /// Repack a pack when more than this fraction of its bytes is unused.
    pub repack_unused_fraction: f64,
    /// The time of this run.
    pub now: DateTime<Utc>,
}

/// What to do with the repository's packs.
#[derive(Debug, Default)]
pub struct PrunePlan {
    /// Packs that stay listed in the index (including marked ones still
    /// inside their grace period).
    pub keep: Vec<PackId>,
    /// Blobs to copy into new packs (from packs being repacked).
    pub copy: Vec<(BlobId, BlobLocation)>,
    /// Packs being repacked this run (marked once their blobs are copied).
    pub repack: Vec<PackId>,
    /// Packs to delete now.
    pub delete: Vec<PackId>,
    /// Marks to record (old ones still pending, new ones, and those of the
    /// packs deleted now, so an interrupted deletion resumes next time).
    pub marks: Vec<CondemnedPack>,
    /// Counts for the report.
    pub counts: PlanCounts,
}

/// Figures describing a plan.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PlanCounts {
    /// Packs in storage.
    pub packs: u64,
    /// Their total size.
    pub bytes: u64,
    /// Packs every byte of which some snapshot needs (or that are too young
    /// to judge), kept as they are.
    pub packs_in_use: u64,
    /// Packs marked for deletion this run.
    pub packs_newly_marked: u64,
    /// Marked packs still within the grace period.
    pub packs_waiting: u64,
    /// Marked packs a snapshot needs again, unmarked.
    pub packs_unmarked: u64,
    /// Packs to repack.
    pub packs_repacked: u64,
    /// Blobs copied out of them.
    pub blobs_copied: u64,
    /// Packs to delete now.
    pub packs_deleted: u64,
    /// Bytes freed by deleting them.
    pub bytes_deleted: u64,
}

/// Needed blobs that no stored pack verifiably holds: prune must stop.
#[derive(Debug, Clone, Default)]
pub struct Unavailable {
    /// Blobs no stored pack even claims (a lost pack or index file).
    pub missing: Vec<BlobId>,
    /// Blobs claimed by stored packs, none of which verifiably holds them,
    /// with the first pack claiming each.
    pub unverified: Vec<(BlobId, PackId)>,
}

impl Unavailable {
    /// A pack that claims an unverified blob, if any.
    pub fn claimed_by(&self) -> Option<PackId> {
        self.unverified.first().map(|(_, pack)| *pack)
    }
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(first) = self.missing.first() {
            write!(
                f,
                "{} blob(s) that snapshots need are in no stored pack (first: {first})",
                self.missing.len()
            )?;
            if !self.unverified.is_empty() {
                f.write_str("; ")?;
            }
        }
        if let Some((blob, pack)) = self.unverified.first() {
            write!(
                f,
                "{} blob(s) that snapshots need are not verifiably held by any pack claiming \
                 them (first: {blob}, claimed by pack {pack})",
                self.unverified.len()
            )?;
        }
        Ok(())
    }
}

/// Decides what prune does. `referenced` is every blob some snapshot needs;
/// `verify` says whether a location (an index file's claim) is true.
///
/// Index files are not authenticated, so every location prune relies on or
/// carries into its own index is verified, even when it is the only one: a
/// needed blob is read from a verified copy (preferring packs that are not
/// marked), a planted claim never makes prune delete the genuine copy, and
/// a pack's unused share counts only what it verifiably holds.
///
/// Fails when a needed blob has no verified copy: the repository is
/// already damaged (or an index file is lost), and prune must not act on a
/// picture it cannot trust.
pub fn plan(
    stored: &HashMap<PackId, StoredPack>,
    index: &Index,
    marked: &HashMap<PackId, DateTime<Utc>>,
    referenced: &HashSet<BlobId>,
    rules: &PlanRules,
    verify: &mut dyn FnMut(&BlobId, &BlobLocation) -> bool,
) -> std::result::Result<PrunePlan, Unavailable> {
    let used = choose_copies(stored, index, marked, referenced, verify)?;
    let held = verified_bytes(stored, index, verify);
    let mut out = PrunePlan::default();
    let mut ids: Vec<&PackId> = stored.keys().collect();
    ids.sort();
    for id in ids {
        let pack = &stored[id];
        out.counts.packs += 1;
        out.counts.bytes += pack.size;
        let held = held.get(id).copied().unwrap_or(0);
        match used.get(id) {
            None => out.decide_unused(*id, pack, marked.get(id).copied(), held, rules),
            Some(blobs) => out.decide_used(*id, pack, marked.contains_key(id), blobs, held, rules),
        }
    }
    out.carry_marks_of_deleted(index, stored, marked);
    // Copy in pack order so each old pack is read front to back once.
    out.copy.sort_by_key(|(_, loc)| (loc.pack, loc.offset));
    Ok(out)
}

/// Where each needed blob will be read from: a verified location in a
/// stored pack, preferring packs that are not marked. By pack.
fn choose_copies(
    stored: &HashMap<PackId, StoredPack>,
    index: &Index,
    marked: &HashMap<PackId, DateTime<Utc>>,
    referenced: &HashSet<BlobId>,
    verify: &mut dyn FnMut(&BlobId, &BlobLocation) -> bool,
) -> std::result::Result<HashMap<PackId, Vec<(BlobId, BlobLocation)>>, Unavailable> {
    let mut used: HashMap<PackId, Vec<(BlobId, BlobLocation)>> = HashMap::new();
    let mut lost = Unavailable::default();
    let mut refs: Vec<&BlobId> = referenced.iter().collect();
    refs.sort();
    for blob in refs {
        let mut claims: Vec<BlobLocation> = index
            .locations(blob)
            .filter(|l| stored.contains_key(&l.pack))
            .collect();
        claims.sort_by_key(|l| marked.contains_key(&l.pack));
        match claims.iter().copied().find(|l| verify(blob, l)) {
            Some(loc) => used.entry(loc.pack).or_default().push((*blob, loc)),
            None => match claims.first() {
                None => lost.missing.push(*blob),
                Some(l) => lost.unverified.push((*blob, l.pack)),
            },
        }
    }
    if lost.missing.is_empty() && lost.unverified.is_empty() {
        Ok(used)
    } else {
        Err(lost)
    }
}

/// The compressed bytes each stored pack verifiably holds (planted claims
/// do not make a pack look emptier than it is).
fn verified_bytes(
    stored: &HashMap<PackId, StoredPack>,
    index: &Index,
    verify: &mut dyn FnMut(&BlobId, &BlobLocation) -> bool,
) -> HashMap<PackId, u64> {
    let mut held: HashMap<PackId, u64> = HashMap::new();
    let mut seen = HashSet::new();
    for (blob, loc) in index.blobs() {
        if stored.contains_key(&loc.pack) && verify(&blob, &loc) && seen.insert((blob, loc.pack)) {
            *held.entry(loc.pack).or_default() += loc.length as u64;
        }
    }
    held
}

impl PrunePlan {
    /// Nothing needs pack `id`: mark it, or delete it once the mark and the
    /// pack itself are older than the grace period.
    fn decide_unused(
        &mut self,
        id: PackId,
        pack: &StoredPack,
        mark: Option<DateTime<Utc>>,
        held: u64,
        rules: &PlanRules,
    ) {
        if rules.old_enough(mark) && rules.old_enough(pack.modified) {
            self.delete.push(id);
            self.counts.packs_deleted += 1;
            self.counts.bytes_deleted += pack.size;
        } else {
            if mark.is_some() {
                self.counts.packs_waiting += 1;
            } else {
                self.counts.packs_newly_marked += 1;
            }
            if held > 0 {
                self.keep.push(id);
            }
        }
        self.marks.push(CondemnedPack {
            pack: id,
            since: mark.unwrap_or(rules.now),
        });
    }

    /// Pack `id` holds `blobs` that snapshots need: keep it (unmarked), or
    /// repack it when most of what it holds is unused.
    fn decide_used(
        &mut self,
        id: PackId,
        pack: &StoredPack,
        marked: bool,
        blobs: &[(BlobId, BlobLocation)],
        held: u64,
        rules: &PlanRules,
    ) {
        self.keep.push(id);
        if marked {
            self.counts.packs_unmarked += 1;
            return;
        }
        let in_use: u64 = blobs.iter().map(|(_, l)| l.length as u64).sum();
        let unused = held.saturating_sub(in_use) as f64 / held.max(1) as f64;
        if unused > rules.repack_unused_fraction && rules.old_enough(pack.modified) {
            self.repack.push(id);
            self.copy.extend(blobs.iter().copied());
            self.counts.packs_repacked += 1;
            self.counts.blobs_copied += blobs.len() as u64;
            self.marks.push(CondemnedPack {
                pack: id,
                since: rules.now,
            });
        } else {
            self.counts.packs_in_use += 1;
        }
    }

    /// Marks of packs already deleted stay as long as some index file still
    /// lists the pack (an index file Object Lock keeps, say): they tell
    /// `vault check` that the pack went on purpose.
    fn carry_marks_of_deleted(
        &mut self,
        index: &Index,
        stored: &HashMap<PackId, StoredPack>,
        marked: &HashMap<PackId, DateTime<Utc>>,
    ) {
        for (pack, _) in index.packs() {
            if !stored.contains_key(&pack)
                && let Some(since) = marked.get(&pack)
            {
                self.marks.push(CondemnedPack {
                    pack,
                    since: *since,
                });
            }
        }
    }
}

impl PlanRules {
    /// Whether `t` is known and at least one grace period before now.
    fn old_enough(&self, t: Option<DateTime<Utc>>) -> bool {
        t.is_some_and(|t| t <= self.now - self.grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::Id;
    use crate::format::index::{IndexedBlob, IndexedPack};
    use crate::format::pack::BlobKind;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn setup(packs: &[(u8, &[u8])]) -> (HashMap<PackId, StoredPack>, Index) {
        let mut index = Index::default();
        let mut stored = HashMap::new();
        for (p, blobs) in packs {
            index.add_pack(&IndexedPack {
                id: PackId(Id([*p; 32])),
                kind: BlobKind::Data,
                blobs: blobs
                    .iter()
                    .enumerate()
                    .map(|(i, b)| IndexedBlob {
                        id: BlobId(Id([*b; 32])),
                        offset: i as u32 * 100,
                        length: 100,
                        raw_length: 200,
                    })
                    .collect(),
            });
            stored.insert(
                PackId(Id([*p; 32])),
                StoredPack {
                    kind: BlobKind::Data,
                    size: 100 * blobs.len() as u64,
                    modified: Some(t(0)),
                },
            );
        }
        index.finish();
        (stored, index)
    }

    fn rules(now_h: i64) -> PlanRules {
        PlanRules {
            grace: chrono::Duration::hours(24),
            repack_unused_fraction: 0.5,
            now: t(now_h),
        }
    }

    fn refs(ids: &[u8]) -> HashSet<BlobId> {
        ids.iter().map(|b| BlobId(Id([*b; 32]))).collect()
    }

    /// Every copy verifies.
    fn ok(_: &BlobId, _: &BlobLocation) -> bool {
        true
    }

    #[test]
    fn a_planted_claim_cannot_get_the_genuine_copy_deleted() {
        // Blob 10 really is in pack 1; a planted index entry claims it is
        // in pack 2 too, and pack 2 sorts first.
        let (stored, index) = setup(&[(2, &[20, 10]), (1, &[10])]);
        let plan_verifying = |verify: &mut dyn FnMut(&BlobId, &BlobLocation) -> bool| {
            plan(
                &stored,
                &index,
                &HashMap::new(),
                &refs(&[10]),
                &rules(48),
                verify,
            )
        };
        let p = plan_verifying(&mut |_, l| l.pack == PackId(Id([1; 32]))).unwrap();
        assert!(
            p.marks.iter().all(|m| m.pack != PackId(Id([1; 32]))),
            "{:?}",
            p.marks
        );
        assert!(p.keep.contains(&PackId(Id([1; 32]))));
        // When no copy verifies, prune stops: it carries no unverified claim.
        let lost = plan_verifying(&mut |_, _| false).unwrap_err();
        assert_eq!(lost.unverified.len(), 1, "{lost}");
        assert!(lost.to_string().contains("not verifiably held"), "{lost}");
    }

    #[test]
    fn a_single_claim_is_verified_too_and_planted_bytes_do_not_count() {
        // Pack 1 holds blob 10; a planted claim says it also holds 30 (not
        // needed). Only pack 2's claim on 20 exists, and it is false.
        let (stored, index) = setup(&[(1, &[10, 30]), (2, &[20])]);
        let mut truth =
            |b: &BlobId, _: &BlobLocation| *b != BlobId(Id([20; 32])) && *b != BlobId(Id([30; 32]));
        let lost = plan(
            &stored,
            &index,
            &HashMap::new(),
            &refs(&[10, 20]),
            &rules(48),
            &mut truth,
        )
        .unwrap_err();
        assert_eq!(
            lost.unverified,
            vec![(BlobId(Id([20; 32])), PackId(Id([2; 32])))]
        );
        // Needing only 10: pack 1 is fully used (the planted 30 is not
        // counted as unused bytes), so it is not repacked.
        let p = plan(
            &stored,
            &index,
            &HashMap::new(),
            &refs(&[10]),
            &rules(48),
            &mut truth,
        )
        .unwrap();
        assert!(p.repack.is_empty(), "{:?}", p.repack);
        assert_eq!(p.counts.packs_in_use, 1);
    }

    #[test]
    fn unused_packs_are_marked_first_and_deleted_only_after_the_grace_period() {
        let (stored, index) = setup(&[(1, &[10, 11]), (2, &[20])]);
        let first = plan(
            &stored,
            &index,
            &HashMap::new(),
            &refs(&[10, 11]),
            &rules(48),
            &mut ok,
        )
        .unwrap();
        assert!(first.delete.is_empty());
        assert_eq!(first.counts.packs_newly_marked, 1);
        assert_eq!(first.marks.len(), 1);
        assert_eq!(first.marks[0].pack, PackId(Id([2; 32])));
        assert_eq!(first.keep.len(), 2, "a marked pack stays indexed");

        let marks: HashMap<_, _> = [(PackId(Id([2; 32])), t(48))].into();
        let early = plan(
            &stored,
            &index,
            &marks,
            &refs(&[10, 11]),
            &rules(60),
            &mut ok,
        )
        .unwrap();
        assert!(early.delete.is_empty(), "still inside the grace period");
        assert_eq!(early.counts.packs_waiting, 1);

        let later = plan(
            &stored,
            &index,
            &marks,
            &refs(&[10, 11]),
            &rules(72),
            &mut ok,
        )
        .unwrap();
        assert_eq!(later.delete, vec![PackId(Id([2; 32]))]);
        assert_eq!(later.keep, vec![PackId(Id([1; 32]))]);
    }

    #[test]
    fn marks_of_deleted_packs_stay_while_an_index_lists_them() {
        let (mut stored, index) = setup(&[(1, &[10]), (2, &[20])]);
        stored.remove(&PackId(Id([2; 32])));
        let marks: HashMap<_, _> =
            [(PackId(Id([2; 32])), t(0)), (PackId(Id([9; 32])), t(0))].into();
        let p = plan(&stored, &index, &marks, &refs(&[10]), &rules(72), &mut ok).unwrap();
        let kept: Vec<PackId> = p.marks.iter().map(|m| m.pack).collect();
        assert_eq!(
            kept,
            vec![PackId(Id([2; 32]))],
            "pack 9 is in no index: its mark goes"
        );
    }

    #[test]
    fn a_young_pack_is_never_deleted_even_with_an_old_mark() {
        let (mut stored, index) = setup(&[(2, &[20])]);
        stored.get_mut(&PackId(Id([2; 32]))).unwrap().modified = Some(t(70));
        let marks: HashMap<_, _> = [(PackId(Id([2; 32])), t(0))].into();
        let p = plan(&stored, &index, &marks, &refs(&[]), &rules(72), &mut ok).unwrap();
        assert!(p.delete.is_empty());
        let unknown_age: HashMap<_, _> = stored
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    StoredPack {
                        modified: None,
                        ..*v
                    },
                )
            })
            .collect();
        let p = plan(
            &unknown_age,
            &index,
            &marks,
            &refs(&[]),
            &rules(72),
            &mut ok,
        )
        .unwrap();
        assert!(p.delete.is_empty(), "no known age, no deletion");
    }

    #[test]
    fn a_marked_pack_a_snapshot_needs_again_is_unmarked() {
        let (stored, index) = setup(&[(2, &[20])]);
        let marks: HashMap<_, _> = [(PackId(Id([2; 32])), t(0))].into();
        let p = plan(&stored, &index, &marks, &refs(&[20]), &rules(72), &mut ok).unwrap();
        assert!(p.delete.is_empty());
        assert!(p.marks.is_empty());
        assert_eq!(p.counts.packs_unmarked, 1);
    }

    #[test]
    fn mostly_unused_packs_are_repacked_and_copies_prefer_unmarked_packs() {
        let (stored, index) = setup(&[(1, &[10, 11, 12]), (2, &[13, 14]), (3, &[13])]);
        let marks: HashMap<_, _> = [(PackId(Id([2; 32])), t(47))].into();
        let p = plan(
            &stored,
            &index,
            &marks,
            &refs(&[10, 13]),
            &rules(48),
            &mut ok,
        )
        .unwrap();
        assert_eq!(p.repack, vec![PackId(Id([1; 32]))], "two thirds unused");
        assert_eq!(p.copy.len(), 1);
        assert_eq!(p.copy[0].0, BlobId(Id([10; 32])));
        assert!(p.marks.iter().any(|m| m.pack == PackId(Id([1; 32]))));
        // Blob 13 is read from pack 3, so marked pack 2 stays unused.
        assert!(
            p.marks
                .iter()
                .any(|m| m.pack == PackId(Id([2; 32])) && m.since == t(47))
        );
    }

    #[test]
    fn a_needed_blob_stored_nowhere_stops_prune() {
        let (stored, index) = setup(&[(1, &[10])]);
        let err = plan(
            &stored,
            &index,
            &HashMap::new(),
            &refs(&[10, 99]),
            &rules(1),
            &mut ok,
        )
        .unwrap_err();
        assert!(err.to_string().contains("in no stored pack"), "{err}");
        assert_eq!(err.missing, vec![BlobId(Id([99; 32]))]);
    }
}
