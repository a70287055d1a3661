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

mod locks;
pub mod plan;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::{CondemnedPack, Index, IndexFile, IndexedPack};
use crate::format::pack::BlobKind;
use crate::format::tree::NodeKind;
use crate::repo::packer::PackBuilder;
use crate::repo::{BlobReader, ObjectKind, Repository};
use crate::storage::Storage;

pub use locks::LockUpkeep;
pub use plan::{PlanCounts, PlanRules, StoredPack};

/// Settings of a prune run.
#[derive(Debug, Clone, Copy)]
pub struct PruneOptions {
    /// Grace period, repack threshold and the clock.
    pub rules: PlanRules,
    /// Only report what would be done.
    pub dry_run: bool,
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
    let result = run(repo, opts);
    if let Some(l) = held {
        l.release();
    }
    result
}

fn run(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // Snapshots first, then index files, then packs: a backup finishing
    // meanwhile wrote its packs and index files before its snapshot, so
    // whatever a snapshot read here needs is in what is listed after it.
    let (snapshots, damaged) = repo.snapshots()?;
    if let Some(e) = damaged.into_iter().next() {
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
    let stored = crate::repo::list_packs(repo.storage().as_ref())?;
    report.snapshots = snapshots.len() as u64;
    let referenced = referenced_blobs(repo, &loaded.index, snapshots.iter().map(|(_, s)| s.root))?;
    report.blobs_referenced = referenced.len() as u64;
    let mut checker = BlobReader::new(repo);
    let plan = plan::plan(
        &stored,
        &loaded.index,
        &loaded.condemned,
        &referenced,
        &opts.rules,
        &mut |blob, loc| checker.read(blob, loc).is_ok(),
    )?;
    drop(checker);
    report.plan = plan.counts.clone();
    let marked: HashSet<Id> = plan.marks.iter().map(|m| m.pack).collect();
    let staying: HashSet<Id> = plan
        .keep
        .iter()
        .filter(|p| !marked.contains(p))
        .copied()
        .collect();
    report.object_lock = locks::keep_recent_locked(
        repo,
        &loaded.index,
        &stored,
        &staying,
        &snapshots,
        opts.rules.now,
        opts.dry_run,
    )?;
    if opts.dry_run {
        return Ok(report);
    }
    let previous_marks: HashSet<CondemnedPack> = loaded
        .condemned
        .iter()
        .map(|(pack, since)| CondemnedPack {
            pack: *pack,
            since: *since,
        })
        .collect();
    let unchanged = plan.copy.is_empty()
        && plan.delete.is_empty()
        && loaded.files.len() <= 1
        && loaded.attested.len() == loaded.index.len()
        && plan.marks.iter().copied().collect::<HashSet<_>>() == previous_marks
        && loaded.index.packs().all(|(p, _)| stored.contains_key(&p));

    if !unchanged {
        let new_packs = repack(repo, &plan.copy, &mut report)?;
        report.index_files_written = write_index(
            repo,
            &loaded,
            &referenced,
            &stored,
            &plan,
            new_packs,
            opts.rules.now,
            &mut report,
        )?;
        for key in &loaded.files {
            match delete_unless_locked(repo.storage().as_ref(), key, opts.rules.now) {
                Ok(()) => report.index_files_removed += 1,
                // A replaced index file that stays (Object Lock) may list
                // packs deleted below; their marks, carried in the new
                // index, tell readers and `vault check` that they went on
                // purpose.
                Err(e) => report.not_deleted.push(e.to_string()),
            }
        }
        for pack in &plan.delete {
            let key = ObjectKind::Pack(stored[pack].kind).key(pack);
            if let Err(e) = delete_unless_locked(repo.storage().as_ref(), &key, opts.rules.now) {
                report.not_deleted.push(e.to_string());
            }
        }
    }
    // A temporary file may belong to a put still being written (a backup
    // running now): only those older than an hour, and than the grace, go.
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
    Ok(report)
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

/// Every tree and data blob reachable from `roots`. Fails on the first tree
/// that cannot be read: prune must know everything a snapshot needs.
pub fn referenced_blobs(
    repo: &Repository,
    index: &Index,
    roots: impl IntoIterator<Item = Id>,
) -> Result<HashSet<Id>> {
    let mut seen = HashSet::new();
    let mut reader = BlobReader::new(repo);
    let mut stack: Vec<Id> = roots.into_iter().collect();
    while let Some(tree_id) = stack.pop() {
        if !seen.insert(tree_id) {
            continue;
        }
        let tree = repo.read_tree(index, &mut reader, &tree_id).map_err(|e| {
            Error::Damaged(format!(
                "a snapshot tree is unreadable ({e}); nothing was changed — run `vault check`"
            ))
        })?;
        for node in &tree.nodes {
            if node.kind == NodeKind::Dir
                && let Some(sub) = node.subtree
            {
                stack.push(sub);
            }
            seen.extend(node.content.iter().copied());
        }
    }
    Ok(seen)
}

/// Copies the still-needed blobs of mostly-empty packs into new packs.
fn repack(
    repo: &Repository,
    copy: &[(Id, crate::format::index::BlobLocation)],
    report: &mut PruneReport,
) -> Result<Vec<IndexedPack>> {
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
#[allow(clippy::too_many_arguments)]
fn write_index(
    repo: &Repository,
    loaded: &crate::repo::LoadedIndex,
    referenced: &HashSet<Id>,
    stored: &HashMap<Id, StoredPack>,
    plan: &plan::PrunePlan,
    new_packs: Vec<IndexedPack>,
    started: chrono::DateTime<chrono::Utc>,
    report: &mut PruneReport,
) -> Result<u64> {
    use crate::repo::attest;
    let keep: HashSet<Id> = plan.keep.iter().copied().collect();
    // From where the pack is stored, not from what an index file (perhaps a
    // planted one) claimed.
    let kept: Vec<(Id, crate::format::index::BlobLocation)> = loaded
        .index
        .blobs()
        .filter(|(_, loc)| keep.contains(&loc.pack))
        .map(|(blob, mut loc)| {
            loc.kind = stored.get(&loc.pack).map_or(loc.kind, |p| p.kind);
            (blob, loc)
        })
        .collect();
    let unattested: Vec<_> = kept
        .iter()
        .filter(|(blob, loc)| !attest::is_attested(&loaded.attested, blob, loc))
        .copied()
        .collect();
    let checked = attest::verify_claims(repo, unattested)?;
    report.entries_verified = checked.verified;
    let (good, bad): (Vec<_>, Vec<_>) = kept
        .into_iter()
        .partition(|(blob, loc)| !checked.rejected.contains(&attest::claim(blob, loc)));
    // A failed claim is dropped when nothing needs its blob, or when another
    // claim of the same blob verified (a planted entry beside the genuine
    // copy); otherwise it is damage, kept where readers still see it.
    let good_blobs: HashSet<Id> = good.iter().map(|(blob, _)| *blob).collect();
    let (damaged, planted): (Vec<_>, Vec<_>) = bad
        .into_iter()
        .partition(|(blob, _)| referenced.contains(blob) && !good_blobs.contains(blob));
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
