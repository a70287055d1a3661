//! `vault copy`: copy snapshots to a second repository (another region or
//! provider), transferring only what it lacks, and `vault init --like`, which
//! makes such a copy target.
//!
//! A copy target **shares the source's keys**: `init --like` copies `config`,
//! `keys/owners/*.age` and `keys/writer.age` byte for byte. Blob ids are keyed
//! with the chunk-id key and packs are encrypted to the repository owner key,
//! so with the same keys every object is valid in both repositories under the
//! same name, and copying is a byte-for-byte transfer of content-addressed
//! objects: nothing is decrypted or re-encrypted except the index file that
//! describes the copied packs.
//!
//! Order of writes in the target, so that an interrupted copy never leaves a
//! snapshot that points at missing data and a rerun resumes: packs, then the
//! index file that lists them, then (after checking that the target holds
//! every blob the snapshots need) the snapshot headers.
//!
//! Every pack is verified whole before it is written (its name, its
//! decryption, every blob in its trailer), and the index file lists what
//! the trailers hold, not what the source's index files claim: a planted
//! index entry is never carried into the target.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::config::RepoConfig;
use crate::format::id::{BlobId, Id, PackId, SnapshotId};
use crate::format::index::{BlobLocation, IndexFile, IndexedPack};
use crate::format::pack::{BlobKind, PackEntry};
use crate::format::retirement::RetireRecord;
use crate::format::signature::SignedKind;
use crate::format::snapshot::Snapshot;
use crate::repo::attest;
use crate::repo::treewalk::reachable_blobs;
use crate::repo::trust::Signer;
use crate::repo::verify::{self, PackBuffers};
use crate::repo::{
    CONFIG_KEY, OWNERS_PREFIX, ObjectKind, Repository, StoredPack, WRITER_KEY, id_from_key,
    read_config,
};
use crate::storage::{PutOutcome, Storage, StorageError};

/// Packs listed per index file a copy writes.
const PACKS_PER_INDEX_FILE: usize = 4096;

/// What to tell a user whose target was not made for copying.
const MAKE_TARGET_HINT: &str = "make the copy target with `vault init -r TARGET --like SOURCE`";

/// Makes `target` a copy target of `source`: the same `config`, owner files
/// and wrapped writer key, byte for byte, so that the same owner identities
/// and the same writer key open both. Needs an owner key on `source`.
///
/// Writes the key files first and `config` last, as `vault init` does.
pub fn init_like(source: &Repository, target: &dyn Storage) -> Result<RepoConfig> {
    source.keys().require_owner("init --like")?;
    match target.get(CONFIG_KEY) {
        Ok(_) => {
            return Err(Error::InvalidInput(format!(
                "{}: a repository already exists here",
                target.location()
            )));
        }
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if !target.list("keys/")?.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: keys/ already holds objects (an earlier init?); use an empty location",
            target.location()
        )));
    }
    let src = source.storage();
    let config_bytes = src.get(CONFIG_KEY)?;
    let on_storage: RepoConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::format(CONFIG_KEY, format!("not a vault config: {e}")))?;
    if &on_storage != source.config() {
        return Err(Error::Conflict(format!(
            "{}: config changed since the repository was opened; try again",
            src.location()
        )));
    }
    let mut keys: Vec<String> = src
        .list(OWNERS_PREFIX)?
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.push(WRITER_KEY.to_owned());
    for key in &keys {
        let bytes = src.get(key)?;
        if target.put(key, &bytes)? != PutOutcome::Created {
            return Err(Error::Conflict(format!(
                "{}: another init is writing here; keep the first",
                target.location()
            )));
        }
    }
    if target.put(CONFIG_KEY, &config_bytes)? != PutOutcome::Created {
        return Err(Error::Conflict(format!(
            "{}: another init is writing here; keep the first",
            target.location()
        )));
    }
    let written = read_config(target)?;
    if &written != source.config() {
        return Err(Error::format(
            CONFIG_KEY,
            format!(
                "{}: the stored config differs from the source's",
                target.location()
            ),
        ));
    }
    Ok(written)
}

/// Settings of a copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Snapshots to copy (full ids, unique prefixes or `latest`); empty: all.
    pub snapshots: Vec<String>,
    /// After writing each pack, read it back from the target, decrypt it and
    /// verify every blob in it against its id and the index.
    pub verify_data: bool,
    /// Advanced per pack copied (totals: the packs first in line to
    /// supply a missing blob, an estimate).
    pub progress: Option<std::sync::Arc<crate::ops::progress::Progress>>,
}

/// What a copy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Snapshots written to the target, oldest first.
    pub snapshots_copied: Vec<SnapshotId>,
    /// Selected snapshots the target already had.
    pub snapshots_skipped: Vec<SnapshotId>,
    /// Distinct blobs (trees and data) the copied snapshots need.
    pub blobs_needed: u64,
    /// Of those, blobs the target did not have.
    pub blobs_missing: u64,
    /// Packs uploaded to the target.
    pub packs_copied: u64,
    /// Bytes of the packs uploaded.
    pub pack_bytes: u64,
    /// Packs an interrupted copy had already stored in the target; they were
    /// indexed, not transferred again.
    pub packs_resumed: u64,
    /// Target packs that already held needed blobs.
    pub packs_already_present: u64,
    /// Index files written to the target.
    pub index_files_written: u64,
    /// Every byte written to the target: packs, index files and snapshot headers.
    pub bytes_transferred: u64,
    /// Packs read back from the target and verified blob by blob (`verify_data`).
    pub packs_verified: u64,
    /// Host key revocations (`keys/revoked/`) the target lacked and got.
    pub revocations_copied: u64,
    /// Retirement records (`retired/`) that count in the source (owner
    /// signed) and that the target lacked and got.
    pub retirements_copied: u64,
    /// Target index entries for needed blobs that no owner had attested and
    /// that did not read back as the blob they name (planted, or damaged):
    /// the blobs were copied instead.
    pub target_claims_rejected: u64,
}

/// Copies snapshots from `source` to `target`, which must have been made with
/// [`init_like`] (same config and keys). Needs the owner key: the snapshots'
/// trees are read to find the blobs they need.
pub fn copy(source: &Repository, target: &Repository, opts: &CopyOptions) -> Result<CopyReport> {
    source.keys().require_owner("copy")?;
    check_same_keys(source, target)?;
    // No prune may run on the target meanwhile: a pack the target already
    // stores (an interrupted copy's, say) may be marked for deletion there,
    // and the copied snapshot is what will keep it.
    let held = crate::ops::lock::PruneLock::acquire(target, chrono::Utc::now())?;
    let result = copy_locked(source, target, opts);
    held.release();
    result
}

fn copy_locked(source: &Repository, target: &Repository, opts: &CopyOptions) -> Result<CopyReport> {
    // Before any header lands: a key revoked in the source counts for
    // nothing in the target either.
    let mut report = CopyReport {
        revocations_copied: source.copy_revocations_to(target)?,
        retirements_copied: copy_retirements(source, target)?,
        ..CopyReport::default()
    };
    let todo = snapshots_to_copy(source, target, opts, &mut report)?;
    if todo.is_empty() {
        return Ok(report);
    }
    let plan = plan_transfer(source, target, &todo, &mut report)?;
    let copied = transfer_packs(source, target, &plan, opts, &mut report)?;
    let mut attesting = copied;
    attesting.extend(attest::group_by_pack(plan.confirmed.iter().cloned()));
    write_index_files(target, &attesting, &mut report)?;
    // Check the structure before any header lands: every needed blob indexed
    // in the target, in a pack the target stores.
    verify_structure(target, &plan.needed)?;
    write_headers(source, target, &todo, &mut report)?;
    Ok(report)
}

/// The selected snapshots the target lacks, oldest first; the others are
/// reported as skipped.
fn snapshots_to_copy(
    source: &Repository,
    target: &Repository,
    opts: &CopyOptions,
    report: &mut CopyReport,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let selected = select(source, &opts.snapshots)?;
    let in_target = listed_snapshots(target)?;
    let (skipped, todo): (Vec<_>, Vec<_>) = selected
        .into_iter()
        .partition(|(id, _)| in_target.contains(id));
    report.snapshots_skipped = skipped.into_iter().map(|(id, _)| id).collect();
    Ok(todo)
}

/// What a copy must transfer.
struct TransferPlan {
    /// Every blob the copied snapshots need.
    needed: HashSet<BlobId>,
    /// Needed blobs the target lacks, with the source packs claiming each,
    /// in the order to try them.
    missing: BTreeMap<BlobId, Vec<(PackId, BlobKind)>>,
    /// Source packs by id (what storage lists, with sizes).
    src_packs: HashMap<PackId, StoredPack>,
    /// Target packs by id.
    dst_packs: HashMap<PackId, StoredPack>,
    /// Target locations of needed blobs that no owner had attested but
    /// that read back as the blob they name: attested with the copy's own.
    confirmed: Vec<(BlobId, BlobLocation)>,
}

/// Walks the snapshots' trees for the blobs they need and finds which of
/// them the target lacks. A blob counts as present in the target only at a
/// location an owner attested there, or one this copy read back as the
/// blob (in a stored pack not marked for deletion): anyone with the writer
/// key can plant index entries in the target, and a copy that trusted them
/// would write headers the target cannot restore.
fn plan_transfer(
    source: &Repository,
    target: &Repository,
    todo: &[(SnapshotId, Snapshot)],
    report: &mut CopyReport,
) -> Result<TransferPlan> {
    let src = source.load_index_files()?;
    let snaps: Vec<&Snapshot> = todo.iter().map(|(_, s)| s).collect();
    let needed = reachable_blobs(source, &src.index, &snaps)?;
    report.blobs_needed = needed.len() as u64;
    let dst = target.load_index_files()?;
    let live = |p: &PackId| dst.stored.contains_key(p) && !dst.condemned.contains_key(p);
    // Format 1 signs nothing: there, as before, every index entry counts.
    let (mut attested, mut dst_index) = if signs_index_files(target) {
        (dst.index.attested(), dst.index)
    } else {
        (dst.index, Default::default())
    };
    attested.retain_packs(live);
    dst_index.retain_packs(live);
    let mut present_packs = HashSet::new();
    let mut unattested = Vec::new();
    for blob in &needed {
        match attested.get(blob) {
            Some(loc) => {
                present_packs.insert(loc.pack);
            }
            None => unattested.extend(dst_index.locations(blob).map(|l| (*blob, l))),
        }
    }
    let verification = attest::verify_claims(target, unattested.clone())?;
    report.target_claims_rejected = verification.rejected.len() as u64;
    let mut confirmed = Vec::new();
    let mut confirmed_blobs = HashSet::new();
    for (blob, loc) in unattested {
        if !verification.rejected.contains(&attest::claim(&blob, &loc)) {
            present_packs.insert(loc.pack);
            confirmed_blobs.insert(blob);
            confirmed.push((blob, loc));
        }
    }
    let mut missing = BTreeMap::new();
    for blob in &needed {
        if attested.contains(blob) || confirmed_blobs.contains(blob) {
            continue;
        }
        // Every stored source pack claiming it: a claim may be planted, so
        // the packs are verified when copied and the next one tried.
        let mut claims: Vec<(PackId, BlobKind)> = src
            .index
            .locations(blob)
            .filter(|l| src.stored.contains_key(&l.pack))
            .map(|l| (l.pack, l.kind))
            .collect();
        claims.dedup();
        if claims.is_empty() {
            return Err(Error::format(
                format!("blob {blob}"),
                "is needed by a snapshot but in no stored pack of the source; \
                 run `vault check` on the source",
            ));
        }
        missing.insert(*blob, claims);
    }
    report.blobs_missing = missing.len() as u64;
    report.packs_already_present = present_packs.len() as u64;
    Ok(TransferPlan {
        needed,
        missing,
        src_packs: src.stored,
        dst_packs: dst.stored,
        confirmed,
    })
}

/// Copies, for every missing blob, a source pack that verifiably holds it.
/// Each pack is verified whole (name, decryption, every blob) before it is
/// written, and the index entries written for it are its verified trailer,
/// never what an index file claimed: a planted claim is neither copied nor
/// trusted.
fn transfer_packs(
    source: &Repository,
    target: &Repository,
    plan: &TransferPlan,
    opts: &CopyOptions,
    report: &mut CopyReport,
) -> Result<Vec<IndexedPack>> {
    let mut copied: Vec<IndexedPack> = Vec::new();
    let mut covered: HashSet<BlobId> = HashSet::new();
    let mut tried: HashSet<PackId> = HashSet::new();
    let mut plain = Vec::new();
    let pack_size = |pack: &PackId| plan.src_packs.get(pack).map_or(0, |s| s.size);
    if let Some(p) = &opts.progress {
        let first: HashSet<PackId> = plan
            .missing
            .values()
            .filter_map(|c| c.first().map(|(pack, _)| *pack))
            .collect();
        p.start(
            "packs",
            first.len() as u64,
            first.iter().map(pack_size).sum(),
        );
    }
    for (blob, claims) in &plan.missing {
        let mut last_error = None;
        for &(pack, kind) in claims {
            if covered.contains(blob) {
                break;
            }
            if !tried.insert(pack) {
                continue;
            }
            let copied_pack = copy_pack(source, target, plan, pack, kind, &mut plain, report);
            crate::ops::progress::advance(&opts.progress, 1, pack_size(&pack));
            match copied_pack {
                Ok(entries) => {
                    if opts.verify_data {
                        let mut bufs = PackBuffers::default();
                        verify::all_verified(verify::verify_stored_pack(
                            target, &pack, kind, &mut bufs,
                        )?)?;
                        report.packs_verified += 1;
                    }
                    covered.extend(entries.iter().map(|e| e.id));
                    copied.push(IndexedPack::from_entries(pack, kind, &entries));
                }
                Err(e) => last_error = Some(e),
            }
        }
        if !covered.contains(blob) {
            return Err(Error::format(
                format!("blob {blob}"),
                format!(
                    "no source pack claiming it holds it ({}); nothing was written to the \
                     target but packs — run `vault check --read-data` on the source",
                    last_error.map_or("the packs that do were not copied".into(), |e| e
                        .to_string())
                ),
            ));
        }
    }
    Ok(copied)
}

/// Verifies one source pack and stores it in the target (unless the target
/// already holds it, left by an interrupted copy: then the target's copy is
/// verified). Returns its verified blobs.
fn copy_pack(
    source: &Repository,
    target: &Repository,
    plan: &TransferPlan,
    pack: PackId,
    kind: BlobKind,
    plain: &mut Vec<u8>,
    report: &mut CopyReport,
) -> Result<Vec<PackEntry>> {
    let key = ObjectKind::Pack(kind).key(&pack);
    let in_target = plan.dst_packs.get(&pack);
    let (repo, bytes) = match in_target {
        // Stored by an interrupted copy (or a backup) but not indexed.
        Some(d) if Some(d.size) == plan.src_packs.get(&pack).map(|s| s.size) && d.kind == kind => {
            (target, target.storage().get(&key)?)
        }
        Some(_) => {
            return Err(Error::format(
                format!("{}: {key}", target.storage().location()),
                "the target holds a different object under this pack's name \
                 (damaged); run `vault check --storage` on the target",
            ));
        }
        None => (source, source.storage().get(&key)?),
    };
    let entries =
        verify::all_verified(verify::verify_pack_bytes(repo, &pack, kind, &bytes, plain)?)
            .map_err(|e| {
                Error::format(
                    format!("{}: {key}", repo.storage().location()),
                    format!("{e}; nothing of this pack was copied"),
                )
            })?;
    if in_target.is_some() {
        report.packs_resumed += 1;
    } else {
        target.storage().put(&key, &bytes)?;
        report.packs_copied += 1;
        report.pack_bytes += bytes.len() as u64;
        report.bytes_transferred += bytes.len() as u64;
    }
    Ok(entries)
}

/// Writes owner-attested index files for the copied packs (their verified
/// trailers) and the target locations this copy read back: every entry
/// was verified here, so backups into the target may deduplicate against
/// them.
fn write_index_files(
    target: &Repository,
    packs: &[IndexedPack],
    report: &mut CopyReport,
) -> Result<()> {
    for chunk in packs.chunks(PACKS_PER_INDEX_FILE) {
        let file = IndexFile {
            packs: chunk.to_vec(),
            condemned: Vec::new(),
        };
        let id = target.put_index_file(&file)?;
        report.index_files_written += 1;
        report.bytes_transferred += object_size(target, &ObjectKind::Index.key(&id))?;
    }
    Ok(())
}

/// Copies the snapshot headers byte for byte (same name in both), last,
/// and checks that the target lists them.
fn write_headers(
    source: &Repository,
    target: &Repository,
    todo: &[(SnapshotId, Snapshot)],
    report: &mut CopyReport,
) -> Result<()> {
    for (id, _) in todo {
        let key = ObjectKind::Snapshot.key(id);
        let bytes = source.storage().get(&key)?;
        if Id::of_bytes(&bytes) != id.0 {
            return Err(Error::format(
                format!("{}: {key}", source.storage().location()),
                "content does not match its name (damaged snapshot header)",
            ));
        }
        target.storage().put(&key, &bytes)?;
        report.bytes_transferred += bytes.len() as u64;
        report.snapshots_copied.push(*id);
    }
    let listed = listed_snapshots(target)?;
    if let Some(missing) = report
        .snapshots_copied
        .iter()
        .find(|id| !listed.contains(id))
    {
        return Err(Error::format(
            ObjectKind::Snapshot.key(missing),
            "was written to the target but is not listed there",
        ));
    }
    Ok(())
}

/// Copies the source's retirement records that count (signed by the
/// repository owner) and that the target lacks, byte for byte, each checked
/// against its name first. The target shares the source's keys, so a record
/// counts there as it does here: `vault status` on the target leaves the
/// same sources unjudged, until a newer backup of one brings it back.
/// Records that do not count (planted, badly signed) or cannot be read stay
/// behind. Returns how many were stored.
fn copy_retirements(source: &Repository, target: &Repository) -> Result<u64> {
    let docs = source
        .read_signed_documents::<RetireRecord>(ObjectKind::Retirement, SignedKind::Retirement)?;
    let present: HashSet<Id> = target
        .storage()
        .list(ObjectKind::Retirement.prefix())?
        .iter()
        .filter_map(|o| id_from_key(&o.key))
        .collect();
    let mut stored = 0;
    for (key, id, (_, signer)) in docs.read {
        if signer != Signer::Owner || present.contains(&id) {
            continue;
        }
        let bytes = source.storage().get(&key)?;
        if Id::of_bytes(&bytes) != id {
            return Err(Error::format(
                format!("{}: {key}", source.storage().location()),
                "content does not match its name (damaged retirement record)",
            ));
        }
        if target.storage().put(&key, &bytes)? == PutOutcome::Created {
            stored += 1;
        }
    }
    Ok(stored)
}

/// Whether `repo`'s format signs index files (format 2 on), so that owner
/// attestation is what makes an index entry count.
fn signs_index_files(repo: &Repository) -> bool {
    repo.config().version >= 2
}

fn listed_snapshots(repo: &Repository) -> Result<HashSet<SnapshotId>> {
    Ok(repo
        .storage()
        .list(ObjectKind::Snapshot.prefix())?
        .iter()
        .filter_map(|o| id_from_key(&o.key).map(SnapshotId))
        .collect())
}

/// Refuses a target that does not share the source's config and keys.
fn check_same_keys(source: &Repository, target: &Repository) -> Result<()> {
    let (s, t) = (source.config(), target.config());
    let same = s == t && source.keys().chunk_key() == target.keys().chunk_key();
    if same {
        return Ok(());
    }
    let what = if s.id != t.id {
        format!("it is repository {}, the source is {}", t.id, s.id)
    } else {
        "its config or keys differ from the source's".to_owned()
    };
    Err(Error::InvalidInput(format!(
        "{} is not a copy target of {}: {what}; {MAKE_TARGET_HINT}",
        target.storage().location(),
        source.storage().location()
    )))
}

/// The selected snapshots, oldest first, without duplicates.
fn select(source: &Repository, specs: &[String]) -> Result<Vec<(SnapshotId, Snapshot)>> {
    if specs.is_empty() {
        // Only the headers that count: an untrusted one (anyone can plant
        // one) is not copied unless named, and cannot stop the copy.
        let set = source.verified_snapshots()?;
        if let Some(e) = set.damaged.first() {
            return Err(Error::Damaged(format!(
                "a source snapshot is unreadable ({e}); name the snapshots to copy, or run \
                 `vault check`"
            )));
        }
        for (r, why) in set.untrusted() {
            tracing::warn!("not copied: snapshot {} does not count ({why})", r.id);
        }
        let mut all = set.usable();
        all.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        return Ok(all);
    }
    let mut picked = Vec::new();
    for spec in specs {
        picked.push(source.find_snapshot(spec)?);
    }
    picked.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    picked.dedup_by_key(|p| p.0);
    Ok(picked)
}

fn object_size(repo: &Repository, key: &str) -> Result<u64> {
    Ok(repo
        .storage()
        .list(key)?
        .into_iter()
        .find(|o| o.key == key)
        .map_or(0, |o| o.size))
}

/// Every needed blob is in an owner-attested index entry of the target, in
/// a pack the target stores. (A pack prune has marked counts: the snapshot
/// about to be written needs it again, which makes the next prune unmark
/// it.)
fn verify_structure(target: &Repository, needed: &HashSet<BlobId>) -> Result<()> {
    let loaded = target.load_index_files()?;
    let mut index = if signs_index_files(target) {
        loaded.index.attested()
    } else {
        loaded.index
    };
    index.retain_packs(|p| loaded.stored.contains_key(p));
    let missing = needed.iter().filter(|b| !index.contains(b)).count();
    if missing > 0 {
        return Err(Error::format(
            target.storage().location(),
            format!(
                "after copying, {missing} blob(s) the snapshots need are not in a stored, \
                 indexed pack of the target; no snapshot header was written"
            ),
        ));
    }
    Ok(())
}
