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

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::config::RepoConfig;
use crate::format::id::Id;
use crate::format::index::{Index, IndexFile, IndexedBlob, IndexedPack};
use crate::format::pack::{BlobKind, decode_trailer};
use crate::repo::{
    CONFIG_KEY, OWNERS_PREFIX, ObjectKind, Repository, WRITER_KEY, id_from_key, read_config,
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
}

/// What a copy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Snapshots written to the target, oldest first.
    pub snapshots_copied: Vec<Id>,
    /// Selected snapshots the target already had.
    pub snapshots_skipped: Vec<Id>,
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
    let mut report = CopyReport::default();

    // Which snapshots, oldest first, and which of them the target lacks.
    let selected = select(source, &opts.snapshots)?;
    let in_target: HashSet<Id> = target
        .storage()
        .list(ObjectKind::Snapshot.prefix())?
        .iter()
        .filter_map(|o| id_from_key(&o.key))
        .collect();
    let (skipped, todo): (Vec<_>, Vec<_>) = selected
        .into_iter()
        .partition(|(id, _)| in_target.contains(id));
    report.snapshots_skipped = skipped.into_iter().map(|(id, _)| id).collect();
    if todo.is_empty() {
        return Ok(report);
    }

    // The blobs they need, and where the source keeps them.
    let (src_index, _) = source.load_index()?;
    let needed =
        crate::ops::prune::referenced_blobs(source, &src_index, todo.iter().map(|(_, r)| *r))?;
    report.blobs_needed = needed.len() as u64;

    // What the target already has: indexed, stored and not marked for deletion.
    let src_packs = list_packs(source.storage().as_ref())?;
    let dst_packs = list_packs(target.storage().as_ref())?;
    let dst_index = usable_index(target, &dst_packs)?;

    let mut present_packs = HashSet::new();
    let mut to_copy: BTreeMap<Id, BlobKind> = BTreeMap::new();
    for blob in &needed {
        if let Some(loc) = dst_index.get(blob) {
            present_packs.insert(loc.pack);
            continue;
        }
        report.blobs_missing += 1;
        // Any source location whose pack is stored; the id checks on read
        // and after the copy catch a planted index entry.
        let loc = src_index
            .locations(blob)
            .find(|l| src_packs.contains_key(&l.pack))
            .ok_or_else(|| {
                Error::format(
                    format!("blob {blob}"),
                    "is needed by a snapshot but in no stored pack of the source; \
                     run `vault check` on the source",
                )
            })?;
        to_copy.insert(loc.pack, loc.kind);
    }
    report.packs_already_present = present_packs.len() as u64;

    // Packs first.
    let mut copied: Vec<IndexedPack> = Vec::new();
    let mut entries_of = index_entries(&src_index, &to_copy);
    for (&pack, &kind) in &to_copy {
        let key = ObjectKind::Pack(kind).key(&pack);
        let entries = entries_of.remove(&pack).unwrap_or_default();
        match dst_packs.get(&pack) {
            // Stored by an interrupted copy (or a backup) but not indexed.
            Some(size) if Some(size) == src_packs.get(&pack) => report.packs_resumed += 1,
            Some(_) => {
                return Err(Error::format(
                    format!("{}: {key}", target.storage().location()),
                    "the target holds a different-sized object under this pack's name \
                     (damaged); run `vault check --storage` on the target",
                ));
            }
            None => {
                let bytes = source.storage().get(&key)?;
                if Id::of_bytes(&bytes) != pack {
                    return Err(Error::format(
                        format!("{}: {key}", source.storage().location()),
                        "content does not match its name (damaged pack); nothing of it was \
                         copied — run `vault check --storage` on the source",
                    ));
                }
                target.storage().put(&key, &bytes)?;
                report.packs_copied += 1;
                report.pack_bytes += bytes.len() as u64;
                report.bytes_transferred += bytes.len() as u64;
            }
        }
        if opts.verify_data {
            verify_stored_pack(target, &key, &pack, &entries)?;
            report.packs_verified += 1;
        }
        copied.push(IndexedPack {
            id: pack,
            kind,
            blobs: entries,
        });
    }

    // Then the index files describing them.
    for chunk in copied.chunks(PACKS_PER_INDEX_FILE) {
        let file = IndexFile {
            packs: chunk.to_vec(),
            condemned: Vec::new(),
        };
        let id = target.put_shared_json(ObjectKind::Index, &file)?;
        report.index_files_written += 1;
        report.bytes_transferred += object_size(target, &ObjectKind::Index.key(&id))?;
    }

    // Check the structure before any header lands: every needed blob indexed
    // in the target, in a pack the target stores.
    verify_structure(target, &needed)?;

    // Last, the snapshot headers, byte for byte (same name in both).
    for (id, _) in &todo {
        let key = ObjectKind::Snapshot.key(id);
        let bytes = source.storage().get(&key)?;
        if Id::of_bytes(&bytes) != *id {
            return Err(Error::format(
                format!("{}: {key}", source.storage().location()),
                "content does not match its name (damaged snapshot header)",
            ));
        }
        target.storage().put(&key, &bytes)?;
        report.bytes_transferred += bytes.len() as u64;
        report.snapshots_copied.push(*id);
    }
    let listed: HashSet<Id> = target
        .storage()
        .list(ObjectKind::Snapshot.prefix())?
        .iter()
        .filter_map(|o| id_from_key(&o.key))
        .collect();
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
    Ok(report)
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

/// The selected snapshots with their root trees, oldest first, without duplicates.
fn select(source: &Repository, specs: &[String]) -> Result<Vec<(Id, Id)>> {
    if specs.is_empty() {
        let (all, damaged) = source.snapshots()?;
        if let Some(e) = damaged.into_iter().next() {
            return Err(Error::Damaged(format!(
                "a source snapshot is unreadable ({e}); name the snapshots to copy, or run \
                 `vault check`"
            )));
        }
        return Ok(all.into_iter().map(|(id, s)| (id, s.root)).collect());
    }
    let mut picked = Vec::new();
    for spec in specs {
        let (id, snap) = source.find_snapshot(spec)?;
        picked.push((snap.time, id, snap.root));
    }
    picked.sort();
    picked.dedup_by_key(|p| p.1);
    Ok(picked.into_iter().map(|(_, id, root)| (id, root)).collect())
}

/// Every stored data and tree pack with its size.
fn list_packs(storage: &dyn Storage) -> Result<HashMap<Id, u64>> {
    Ok(crate::repo::list_packs(storage)?
        .into_iter()
        .map(|(id, p)| (id, p.size))
        .collect())
}

/// The target's index restricted to packs it stores and prune has not
/// marked for deletion (the rule backups follow when they deduplicate).
fn usable_index(target: &Repository, stored: &HashMap<Id, u64>) -> Result<Index> {
    let loaded = target.load_index_files()?;
    let mut index = loaded.index;
    index.retain_packs(|p| stored.contains_key(p) && !loaded.condemned.contains_key(p));
    Ok(index)
}

/// The source index's entries for each of `packs`, by offset, without
/// duplicates (one pass over the index).
fn index_entries(index: &Index, packs: &BTreeMap<Id, BlobKind>) -> HashMap<Id, Vec<IndexedBlob>> {
    let mut out: HashMap<Id, Vec<IndexedBlob>> = HashMap::new();
    for (id, loc) in index.blobs() {
        if packs.contains_key(&loc.pack) {
            out.entry(loc.pack).or_default().push(IndexedBlob {
                id,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
            });
        }
    }
    for blobs in out.values_mut() {
        blobs.sort_by_key(|b| (b.offset, b.id));
        blobs.dedup_by_key(|b| (b.offset, b.id));
    }
    out
}

fn object_size(repo: &Repository, key: &str) -> Result<u64> {
    Ok(repo
        .storage()
        .list(key)?
        .into_iter()
        .find(|o| o.key == key)
        .map_or(0, |o| o.size))
}

/// Reads a pack back from the target, checks its name, decrypts it and
/// verifies every blob in its trailer; the index entries must match the trailer.
fn verify_stored_pack(
    target: &Repository,
    key: &str,
    pack: &Id,
    entries: &[IndexedBlob],
) -> Result<()> {
    let bytes = target.storage().get(key)?;
    if Id::of_bytes(&bytes) != *pack {
        return Err(Error::format(key, "the copy does not match its name"));
    }
    let plain = target.keys().keyring().decrypt(&bytes, key)?;
    let trailer = decode_trailer(&plain, key)?;
    let mut z = zstd::bulk::Decompressor::new().map_err(|e| Error::io("zstd", e))?;
    for e in &trailer {
        if e.raw_length > crate::repo::MAX_BLOB {
            return Err(Error::format(
                key,
                format!("blob {}: claims {} bytes", e.id, e.raw_length),
            ));
        }
        let slice = &plain[e.offset as usize..e.offset as usize + e.length as usize];
        let raw = z
            .decompress(slice, e.raw_length as usize)
            .map_err(|err| Error::format(key, format!("blob {}: bad zstd data: {err}", e.id)))?;
        if Id::keyed(target.keys().chunk_key(), &raw) != e.id {
            return Err(Error::format(
                key,
                format!("blob {}: content does not match its id", e.id),
            ));
        }
    }
    let found: HashSet<(Id, u32, u32, u32)> = trailer
        .iter()
        .map(|e| (e.id, e.offset, e.length, e.raw_length))
        .collect();
    if let Some(b) = entries
        .iter()
        .find(|b| !found.contains(&(b.id, b.offset, b.length, b.raw_length)))
    {
        return Err(Error::format(
            key,
            format!(
                "the source index lists blob {} that the pack does not hold",
                b.id
            ),
        ));
    }
    Ok(())
}

/// Every needed blob is indexed in the target, in a pack the target stores.
/// (A pack prune has marked counts: the snapshot about to be written needs
/// it again, which makes the next prune unmark it.)
fn verify_structure(target: &Repository, needed: &HashSet<Id>) -> Result<()> {
    let stored = list_packs(target.storage().as_ref())?;
    let (mut index, _) = target.load_index()?;
    index.retain_packs(|p| stored.contains_key(p));
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
