//! `vault prune`: repack mostly-empty packs and delete packs no snapshot
//! needs, without ever breaking a backup that runs at the same time.
//!
//! Deletion takes two runs: a run *marks* unused packs (in the index file it
//! writes), and a later run deletes those still unused once the mark and the
//! pack are older than the grace period. Backups skip marked packs when they
//! deduplicate, and a snapshot that needs a marked pack again unmarks it.
//!
//! Order of writes, so that a prune killed at any point leaves a valid
//! repository that the next prune finishes: new packs, then the new index
//! files (with the marks), then removal of the index files it replaced,
//! then the pack deletions, last the lock.
//!
//! Prune is also the index's compaction: whenever it finds more than one
//! index file (or anything to change), it rewrites every entry of a stored
//! pack it keeps into owner-signed index files of at most
//! [`attest::BLOBS_PER_FILE`] blobs each, so the many small files backups
//! write (one or more per run and host) become a few. The trust rules stay
//! those of every owner-signed file: an entry no owner attested is read
//! back first (once: it is attested from then on), a false one is never
//! signed. Write order for compaction: every new file is stored (a put
//! returns once the object is durable: fsynced locally, acknowledged by
//! S3), and only then are the files it replaces deleted. Killed in between,
//! both sets remain; loading merges identical entries, so nothing is lost
//! and nothing counts twice, and the next prune removes the old ones.

mod locks;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, SnapshotId};
use crate::format::index::{BlobLocation, CondemnedPack, IndexFile, IndexedPack};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::ops::progress::{self, Progress};
use crate::repo::attest;
use crate::repo::packer::PackBuilder;
use crate::repo::treewalk::reachable_blobs_tolerant;
use crate::repo::{BlobReader, LoadedIndex, ObjectKind, Repository, Unreadable};
use crate::storage::Storage;

pub use locks::LockUpkeep;
pub use plan::{PlanCounts, PlanRules, StoredPack};

/// Settings of a prune run.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Grace period, repack threshold and the clock.
    pub rules: PlanRules,
    /// Only report what would be done.
    pub dry_run: bool,
    /// Delete snapshot headers and index files that vault provably did not
    /// write (see [`crate::repo::Unreadable::foreign`]) instead of only
    /// reporting them.
    pub remove_foreign: bool,
    /// Advanced while prune reads packs to verify index entries (`packs`)
    /// and while it repacks (`blobs`), for a caller to draw.
    pub progress: Option<Arc<Progress>>,
}

/// What a prune run did (or, with `dry_run`, would do).
#[derive(Debug, Default, Clone, Serialize)]
pub struct PruneReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshots whose trees were walked.
    pub snapshots: u64,
    /// Distinct blobs the snapshots need.
    pub blobs_referenced: u64,
    /// Packs read to verify index entries no owner had attested yet (each
    /// read once, whole, however many entries name it).
    pub packs_verified: u64,
    /// Bytes of those packs read and decrypted: at most their stored size,
    /// however many claims an index file makes about them.
    pub bytes_verified: u64,
    /// Index entries (of stored packs) whose pack does not hold them
    /// (planted, or left by damage): never signed, never relied on.
    pub claims_dropped: u64,
    /// The plan's figures.
    pub plan: PlanCounts,
    /// New packs written by repacking.
    pub packs_written: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Index files removed (replaced by the new ones).
    pub index_files_removed: u64,
    /// Index entries read back and verified before the owner signed them
    /// (entries already attested by an owner are not read again).
    pub entries_verified: u64,
    /// Index entries dropped because their bytes are not the blob they
    /// name and no snapshot needs that blob (planted claims).
    pub entries_dropped: u64,
    /// Index entries of blobs snapshots need that did not verify: kept, in
    /// an index file the owner does not sign (`vault check --read-data`
    /// reports the damage).
    pub entries_unverified: u64,
    /// Leftovers of interrupted writes removed.
    pub leftovers_removed: u64,
    /// Snapshot headers and index files vault provably did not write: skipped
    /// (they can name nothing prune must keep), and removed with
    /// `remove_foreign`.
    pub foreign: Vec<String>,
    /// Of those, how many were removed.
    pub foreign_removed: u64,
    /// Snapshot headers that do not count (not signed by the owner or the
    /// host they name, replayed copies, ...), with the reason: what they
    /// reach is kept when it can be read, a tree of theirs that cannot be
    /// read does not stop prune, and `remove_foreign` deletes them.
    pub untrusted: Vec<String>,
    /// Of those, how many were removed.
    pub untrusted_removed: u64,
    /// Objects that could not be deleted, with the reason (e.g. Object Lock
    /// retention); they are retried by the next prune.
    pub not_deleted: Vec<String>,
    /// Object Lock upkeep: retention lengthened for what recent snapshots need.
    pub object_lock: LockUpkeep,
}

/// Runs prune on `repo` (owner key required).
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    repo.keys().require_owner("prune")?;
    let now = opts.rules.now;
    let held = if opts.dry_run {
        None
    } else {
        Some(crate::ops::lock::PruneLock::acquire(repo, now)?)
    };
    let planted_locks = held.as_ref().map(|l| l.ignored().to_vec());
    let result = run(repo, opts, planted_locks.as_deref().unwrap_or_default());
    if let Some(l) = held {
        l.release();
    }
    result
}

/// What prune read before deciding anything.
struct State {
    snapshots: Vec<(SnapshotId, Snapshot)>,
    loaded: LoadedIndex,
    referenced: HashSet<BlobId>,
    verified: VerifiedClaims,
    foreign: Vec<Unreadable>,
    /// Keys of the untrusted snapshot headers.
    untrusted: Vec<String>,
}

fn run(repo: &Repository, opts: &PruneOptions, planted_locks: &[String]) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let state = read_state(repo, opts, &mut report)?;
    report.foreign.extend(
        planted_locks
            .iter()
            .map(|k| format!("{k}: a lock the repository owner did not sign")),
    );
    let plan = make_plan(&state, &opts.rules)?;
    report.plan = plan.counts.clone();
    let marked: HashSet<PackId> = plan.marks.iter().map(|m| m.pack).collect();
    let staying: HashSet<PackId> = plan
        .keep
        .iter()
        .filter(|p| !marked.contains(p))
        .copied()
        .collect();
    report.object_lock = locks::keep_recent_locked(
        repo,
        &state.loaded.index,
        &state.loaded.stored,
        &staying,
        &state.snapshots,
        opts.rules.now,
        opts.dry_run,
    )?;
    if opts.dry_run {
        return Ok(report);
    }
    if !unchanged(&state, &plan) {
        apply(repo, &state, &plan, opts, &mut report)?;
    }
    if opts.remove_foreign {
        remove_foreign(repo, &state.foreign, opts.rules.now, &mut report);
        for key in state.untrusted.iter() {
            match delete_unless_locked(repo.storage().as_ref(), key, opts.rules.now) {
                Ok(()) => report.untrusted_removed += 1,
                Err(e) => report.not_deleted.push(e.to_string()),
            }
        }
        for key in planted_locks {
            match delete_unless_locked(repo.storage().as_ref(), key, opts.rules.now) {
                Ok(()) => report.foreign_removed += 1,
                Err(e) => report.not_deleted.push(e.to_string()),
            }
        }
    }
    clean_leftovers(repo, opts, &mut report);
    Ok(report)
}

/// Reads snapshots, then index files, then lists packs (in that order: a
/// backup finishing meanwhile wrote its packs and index files before its
/// snapshot, so whatever a snapshot read here needs is in what is listed
/// after it), walks the trees, and verifies every index entry no owner has
/// attested yet (attested ones were read by an owner before, and packs never
/// change: see [`crate::repo::attest`]).
fn read_state(repo: &Repository, opts: &PruneOptions, report: &mut PruneReport) -> Result<State> {
    let snaps = repo.read_documents::<Snapshot>(ObjectKind::Snapshot)?;
    if let Some(e) = snaps.damaged().next() {
        return Err(Error::Damaged(format!(
            "a snapshot is unreadable ({e}); prune cannot tell what it needs and changes nothing"
        )));
    }
    let mut loaded = repo.load_index_files()?;
    if let Some(e) = loaded.damaged.drain(..).next() {
        return Err(Error::Damaged(format!(
            "an index file is unreadable ({e}); prune changes nothing until `vault check` \
             is clean"
        )));
    }
    let mut foreign: Vec<Unreadable> = snaps.unreadable;
    foreign.append(&mut loaded.foreign);
    report.foreign = foreign.iter().map(|u| u.to_string()).collect();
    let snapshots: Vec<(SnapshotId, Snapshot)> = snaps
        .read
        .into_iter()
        .map(|(_, id, s)| (SnapshotId(id), s))
        .collect();
    report.snapshots = snapshots.len() as u64;
    // Headers nobody trusted signed (anyone can plant one) are walked for
    // what they reach, but a tree of theirs that cannot be read is reported,
    // not fatal: a planted header must not stop prune. A header read after
    // this listing counts as trusted (strict).
    let untrusted: HashMap<SnapshotId, String> = repo
        .verified_snapshots()?
        .untrusted()
        .map(|(r, why)| (r.id, why.to_owned()))
        .collect();
    let (strict, lenient): (Vec<_>, Vec<_>) = snapshots
        .iter()
        .partition(|(id, _)| !untrusted.contains_key(id));
    let strict: Vec<&Snapshot> = strict.into_iter().map(|(_, s)| s).collect();
    let lenient: Vec<(SnapshotId, &Snapshot)> =
        lenient.into_iter().map(|(id, s)| (*id, s)).collect();
    let reachable =
        reachable_blobs_tolerant(repo, &loaded.index, &strict, &lenient).map_err(|e| {
            Error::Damaged(format!(
                "a snapshot tree is unreadable ({e}); nothing was changed — run `vault check`"
            ))
        })?;
    let mut referenced = reachable.needed;
    let unwalked: HashMap<SnapshotId, Error> = reachable.unreadable.into_iter().collect();
    for (id, why) in &untrusted {
        let key = ObjectKind::Snapshot.key(id);
        report.untrusted.push(match unwalked.get(id) {
            Some(e) => format!("{key}: untrusted header ({why}); its tree is unreadable ({e})"),
            None => format!("{key}: untrusted header ({why})"),
        });
    }
    report.untrusted.sort();
    let verified = VerifiedClaims::read(repo, &loaded, opts.progress.as_deref())?;
    // What only untrusted headers name is kept where a pack verifiably
    // holds it; missing, it is no reason to stop.
    referenced.extend(reachable.wanted.into_iter().filter(|blob| {
        loaded
            .index
            .locations(blob)
            .any(|loc| verified.holds(&loaded, blob, &loc))
    }));
    report.blobs_referenced = referenced.len() as u64;
    report.packs_verified = verified.packs;
    report.bytes_verified = verified.bytes;
    report.entries_verified = verified.verified;
    report.claims_dropped = verified.rejected.len() as u64;
    let mut untrusted: Vec<String> = untrusted
        .keys()
        .map(|id| ObjectKind::Snapshot.key(id))
        .collect();
    untrusted.sort();
    Ok(State {
        snapshots,
        loaded,
        referenced,
        verified,
        foreign,
        untrusted,
    })
}

/// Decides what to do; a needed blob that no pack verifiably holds stops
/// prune, naming a snapshot that needs it.
fn make_plan(state: &State, rules: &PlanRules) -> Result<plan::PrunePlan> {
    let verified = &state.verified;
    plan::plan(
        &state.loaded.stored,
        &state.loaded.index,
        &state.loaded.condemned,
        &state.referenced,
        rules,
        &mut |blob, loc| verified.holds(&state.loaded, blob, loc),
    )
    .map_err(|lost| {
        Error::Damaged(format!(
            "{lost}; the repository is damaged, so prune changes nothing — \
             run `vault check --read-data`, then `vault forget` the snapshots that need it"
        ))
    })
}

/// Whether the index prune would write is the one already there.
fn unchanged(state: &State, plan: &plan::PrunePlan) -> bool {
    let loaded = &state.loaded;
    let previous_marks: HashSet<CondemnedPack> = loaded
        .condemned
        .iter()
        .map(|(pack, since)| CondemnedPack {
            pack: *pack,
            since: *since,
        })
        .collect();
    plan.copy.is_empty()
        && plan.delete.is_empty()
        && loaded.files.len() <= 1
        && loaded.false_claims.is_empty()
        && state.verified.rejected.is_empty()
        && loaded.index.attested_len() == loaded.index.len()
        && plan.marks.iter().copied().collect::<HashSet<_>>() == previous_marks
        && loaded
            .index
            .packs()
            .all(|(p, _)| loaded.stored.contains_key(&p))
}

/// Repacks, writes the new index, removes the index files it replaces and
/// deletes what the plan condemned, in that order (module docs).
fn apply(
    repo: &Repository,
    state: &State,
    plan: &plan::PrunePlan,
    opts: &PruneOptions,
    report: &mut PruneReport,
) -> Result<()> {
    let stored = &state.loaded.stored;
    let new_packs = repack(repo, &plan.copy, opts.progress.as_ref(), report)?;
    report.index_files_written = write_index(repo, state, plan, new_packs, opts.rules.now, report)?;
    for key in &state.loaded.files {
        match delete_unless_locked(repo.storage().as_ref(), key, opts.rules.now) {
            Ok(()) => report.index_files_removed += 1,
            // A replaced index file that stays (Object Lock) may list packs
            // deleted below; their marks, carried in the new index, tell
            // readers and `vault check` that they went on purpose.
            Err(e) => report.not_deleted.push(e.to_string()),
        }
    }
    for pack in &plan.delete {
        let key = ObjectKind::Pack(stored[pack].kind).key(pack);
        if let Err(e) = delete_unless_locked(repo.storage().as_ref(), &key, opts.rules.now) {
            report.not_deleted.push(e.to_string());
        }
    }
    Ok(())
}

/// Deletes documents vault provably did not write (`--remove-foreign`).
fn remove_foreign(
    repo: &Repository,
    foreign: &[Unreadable],
    now: chrono::DateTime<chrono::Utc>,
    report: &mut PruneReport,
) {
    for f in foreign.iter().filter(|f| f.foreign) {
        match delete_unless_locked(repo.storage().as_ref(), &f.key, now) {
            Ok(()) => report.foreign_removed += 1,
            Err(e) => report.not_deleted.push(e.to_string()),
        }
    }
}

/// Removes leftovers of interrupted writes. A temporary file may belong to
/// a put still being written (a backup running now): only those older than
/// an hour, and than the grace, go.
fn clean_leftovers(repo: &Repository, opts: &PruneOptions, report: &mut PruneReport) {
    let age = opts
        .rules
        .grace
        .to_std()
        .unwrap_or_default()
        .max(std::time::Duration::from_secs(3600));
    match repo.storage().clean_leftovers(age) {
        Ok(n) => report.leftovers_removed = n,
        Err(e) => tracing::warn!("leftovers of interrupted writes not removed: {e}"),
    }
}

/// The index entries on stored packs that this run read back: the rest
/// were attested by an owner, who read them before.
#[derive(Default)]
struct VerifiedClaims {
    /// Entries read back and found true.
    verified: u64,
    /// Packs read.
    packs: u64,
    /// Bytes of them read and decrypted.
    bytes: u64,
    /// Entries whose bytes are not the blob they name.
    rejected: HashSet<attest::Claim>,
}

impl VerifiedClaims {
    /// Reads back every entry of the index that names a stored pack and
    /// that no owner attested, counting packs and their bytes on `progress`.
    fn read(repo: &Repository, loaded: &LoadedIndex, progress: Option<&Progress>) -> Result<Self> {
        let unattested: Vec<(BlobId, BlobLocation)> = loaded
            .index
            .blobs()
            .filter(|(blob, loc)| {
                loaded.stored.contains_key(&loc.pack)
                    && !attest::is_attested(&loaded.index, blob, loc)
            })
            .collect();
        if let Some(p) = progress {
            let packs = attest::packs_named(&unattested);
            let bytes = packs
                .iter()
                .filter_map(|pack| loaded.stored.get(pack))
                .map(|s| s.size)
                .sum();
            p.start("packs", packs.len() as u64, bytes);
        }
        let checked = attest::verify_claims_reporting(repo, unattested, &|_, bytes| {
            if let Some(p) = progress {
                p.advance(1, bytes);
            }
        })?;
        Ok(VerifiedClaims {
            verified: checked.verified,
            packs: checked.packs_read,
            bytes: checked.bytes_read,
            rejected: checked.rejected,
        })
    }

    /// Whether `loc` verifiably holds `blob`: its pack is stored, and an
    /// owner attested the entry or this run read it back.
    fn holds(&self, loaded: &LoadedIndex, blob: &BlobId, loc: &BlobLocation) -> bool {
        loaded.stored.contains_key(&loc.pack) && !self.rejected.contains(&attest::claim(blob, loc))
    }
}

/// Why an object was not deleted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotDeleted {
    /// Object Lock retains it.
    #[error(
        "{key}: retained by Object Lock until {}; deleted by a prune after that",
        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    Locked {
        /// The object key.
        key: String,
        /// When its retention ends.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// The storage refused or failed the delete.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Deletes `key` unless Object Lock still retains it; the error says which
/// and until when.
pub fn delete_unless_locked(
    storage: &dyn Storage,
    key: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), NotDeleted> {
    match storage.locked_until(key) {
        Ok(Some(until)) if until > now => {
            return Err(NotDeleted::Locked {
                key: key.to_owned(),
                until,
            });
        }
        Err(crate::storage::StorageError::NotFound { .. }) => return Ok(()),
        _ => {}
    }
    Ok(storage.delete(key)?)
}

/// Copies the still-needed blobs of mostly-empty packs into new packs.
fn repack(
    repo: &Repository,
    copy: &[(BlobId, crate::format::index::BlobLocation)],
    progress: Option<&Arc<Progress>>,
    report: &mut PruneReport,
) -> Result<Vec<IndexedPack>> {
    if let Some(p) = progress.filter(|_| !copy.is_empty()) {
        let bytes = copy.iter().map(|(_, loc)| loc.length as u64).sum();
        p.start("blobs", copy.len() as u64, bytes);
    }
    let progress = progress.cloned();
    let mut written = Vec::new();
    let mut reader = BlobReader::new(repo);
    let pack_size = repo.config().pack_size as u64;
    let mut builders: HashMap<BlobKind, PackBuilder> = HashMap::new();
    let mut flush = |builder: PackBuilder| -> Result<()> {
        let pack = builder.finish()?;
        repo.put_object(ObjectKind::Pack(pack.kind), &pack.bytes)?;
        written.push(IndexedPack::from_entries(pack.id, pack.kind, &pack.entries));
        Ok(())
    };
    for (blob, loc) in copy {
        let compressed = reader.read_compressed(blob, loc)?;
        let builder = match builders.entry(loc.kind) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(PackBuilder::new(
                loc.kind,
                &repo.keys().owner_only(),
                pack_size as usize,
            )?),
        };
        builder.add(*blob, &compressed, loc.raw_length)?;
        progress::advance(&progress, 1, loc.length as u64);
        if builder.len() >= pack_size {
            let full = builders.remove(&loc.kind).expect("just used");
            flush(full)?;
        }
    }
    for (_, builder) in builders {
        flush(builder)?;
    }
    report.packs_written = written.len() as u64;
    Ok(written)
}

/// Writes the index files that replace every current one: the kept packs,
/// the new packs, and the marks. Returns how many were written.
///
/// The owner signs them, and backups deduplicate against owner-signed
/// entries without question, so every entry is verified first unless an
/// owner already attested it: a planted claim ("blob X is at offset 0 of
/// pack P") is read back, found false and dropped, never carried into a
/// signed file. Entries of blobs a snapshot needs that fail are kept in an
/// unsigned file (damage for `vault check` to report, not for prune to hide).
fn write_index(
    repo: &Repository,
    state: &State,
    plan: &plan::PrunePlan,
    new_packs: Vec<IndexedPack>,
    started: chrono::DateTime<chrono::Utc>,
    report: &mut PruneReport,
) -> Result<u64> {
    let loaded = &state.loaded;
    let stored = &loaded.stored;
    let keep: HashSet<PackId> = plan.keep.iter().copied().collect();
    // Kinds are where the pack is stored (the index loader took them from
    // the listing, not from what an index file claimed), and every entry
    // was attested by an owner or read back by this run.
    let kept: Vec<(BlobId, BlobLocation)> = loaded
        .index
        .blobs()
        .filter(|(_, loc)| keep.contains(&loc.pack) && stored.contains_key(&loc.pack))
        .collect();
    let (good, bad): (Vec<_>, Vec<_>) = kept
        .into_iter()
        .partition(|(blob, loc)| !state.verified.rejected.contains(&attest::claim(blob, loc)));
    // A failed claim is dropped when nothing needs its blob, or when another
    // claim of the same blob verified (a planted entry beside the genuine
    // copy); otherwise it is damage, kept where readers still see it.
    let good_blobs: HashSet<BlobId> = good.iter().map(|(blob, _)| *blob).collect();
    let (damaged, planted): (Vec<_>, Vec<_>) = bad
        .into_iter()
        .partition(|(blob, _)| state.referenced.contains(blob) && !good_blobs.contains(blob));
    report.entries_dropped = planted.len() as u64;
    report.entries_unverified = damaged.len() as u64;
    let mut all = attest::group_by_pack(good);
    all.extend(new_packs);
    // New marks count from now, when backups can first see them, not from
    // the start of this run (walking trees and repacking take time).
    let visible = chrono::Utc::now();
    let mut marks = plan.marks.clone();
    for m in &mut marks {
        if m.since == started {
            m.since = visible;
        }
    }
    marks.sort_by_key(|m| m.pack);
    let mut written = attest::write_attested(repo, &all, marks)?;
    if !damaged.is_empty() {
        let file = IndexFile {
            packs: attest::group_by_pack(damaged),
            condemned: Vec::new(),
        };
        repo.put_shared_json(ObjectKind::Index, &file)?;
        written += 1;
    }
    Ok(written)
}

/// The default grace period: a backup that runs longer than this while
/// prune runs twice could lose packs it deduplicated against.
pub fn default_grace() -> chrono::Duration {
    chrono::Duration::hours(24)
}
