//! `vault check`: structure (every snapshot's trees and blobs reachable and
//! indexed), data (decrypt and hash every blob) and storage (every object's
//! name equals the BLAKE3 of its bytes — no key needed).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::error::Result;
use crate::format::id::{BlobId, Id, PackId, SnapshotId};
use crate::format::index::Index;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::treewalk::{Budget, Next, Visit, Walker};
use crate::repo::verify::{self, PackBuffers};
use crate::repo::{LoadedIndex, ObjectKind, Repository, id_from_key, read_config};
use crate::storage::Storage;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Data is damaged or missing.
    Error,
    /// Worth knowing; nothing is lost (e.g. packs left by an interrupted backup).
    Info,
}

/// One thing a check found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// The object, snapshot or path concerned.
    pub subject: String,
    /// What is wrong.
    pub message: String,
}

/// Which checks to run.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Check snapshots, trees and index consistency (needs a key).
    pub structure: bool,
    /// Read and verify the packs in subset `n` of `m` (1-based); `(1, 1)` is all.
    pub read_data: Option<(u32, u32)>,
    /// Hash every object and compare with its name (no key needed).
    pub storage: bool,
    /// Advanced per pack read by `read_data` (totals: the packs selected
    /// and their sizes).
    pub progress: Option<std::sync::Arc<crate::ops::progress::Progress>>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Objects hashed by the storage check.
    pub objects_hashed: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Packs read by the data check.
    pub packs_read: u64,
    /// Blobs verified by the data check.
    pub blobs_verified: u64,
    /// Index entries the data check verified that no owner had attested
    /// yet; it signs them, so that backups may deduplicate against them.
    pub entries_attested: u64,
    /// Unfinished multipart uploads found by the storage check.
    pub pending_uploads: u64,
    /// How many of those were aborted (`--clean-uploads`).
    pub uploads_aborted: u64,
    /// What the storage protects against (S3: versioning, Object Lock,
    /// conditional writes), from the storage check.
    pub protection: Option<crate::storage::Protection>,
    /// Everything found.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    fn add(&mut self, severity: Severity, subject: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            subject: subject.into(),
            message: message.into(),
        });
    }

    /// Whether any error was found.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Hashes every content-addressed object, says what the storage protects
/// against, and reports objects overwritten or hidden since vault wrote
/// them (on storage that keeps versions); needs no key.
pub fn check_storage(storage: &dyn Storage, report: &mut CheckReport) -> Result<()> {
    if let Err(e) = read_config(storage) {
        report.add(Severity::Error, "config", e.to_string());
    }
    if let Some(p) = storage.protection()? {
        for line in p.facts().into_iter().chain(p.verdict()) {
            report.add(Severity::Info, "storage", line);
        }
        report.protection = Some(p);
    }
    for r in storage.rewritten()? {
        let severity = if r.is_tampering() {
            Severity::Error
        } else {
            Severity::Info
        };
        report.add(severity, &r.key, r.describe());
    }
    for kind in ObjectKind::ALL {
        for obj in storage.list(kind.prefix())? {
            let Some(id) = id_from_key(&obj.key) else {
                report.add(Severity::Info, &obj.key, "not a vault object name; ignored");
                continue;
            };
            let mut hasher = blake3::Hasher::new();
            let result = storage.open(&obj.key).and_then(|mut r| {
                std::io::copy(&mut r, &mut hasher)
                    .map_err(|e| crate::storage::StorageError::from_io(&obj.key, e))
            });
            report.objects_hashed += 1;
            match result {
                Ok(_) if Id::from(hasher.finalize()) == id => {}
                Ok(_) => report.add(
                    Severity::Error,
                    &obj.key,
                    "content does not match its name: the object is damaged",
                ),
                Err(e) => report.add(Severity::Error, &obj.key, e.to_string()),
            }
        }
    }
    Ok(())
}

/// Reports multipart uploads that were started under the repository and never
/// completed (a backup killed mid-upload leaves one; its parts are billed).
/// With `abort_before`, aborts those started before that time; younger ones
/// may belong to a backup that is still running. Needs no key.
pub fn check_uploads(
    storage: &dyn Storage,
    abort_before: Option<chrono::DateTime<chrono::Utc>>,
    report: &mut CheckReport,
) -> Result<()> {
    for upload in storage.pending_uploads()? {
        report.pending_uploads += 1;
        let started = upload.started.map_or("at an unknown time".into(), |t| {
            format!(
                "at {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        });
        let old_enough = match (abort_before, upload.started) {
            (Some(limit), Some(t)) => t < limit,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !old_enough {
            let hint = if abort_before.is_some() {
                "younger than the grace period; left alone"
            } else {
                "`vault check --storage --clean-uploads` aborts it"
            };
            report.add(
                Severity::Info,
                &upload.key,
                format!(
                    "unfinished multipart upload {} started {started}; {hint}",
                    upload.upload_id
                ),
            );
            continue;
        }
        match storage.abort_upload(&upload) {
            Ok(()) => {
                report.uploads_aborted += 1;
                report.add(
                    Severity::Info,
                    &upload.key,
                    format!(
                        "aborted unfinished multipart upload {} started {started}",
                        upload.upload_id
                    ),
                );
            }
            Err(e) => report.add(Severity::Error, &upload.key, e.to_string()),
        }
    }
    Ok(())
}

/// Findings of one kind listed one by one before they are summed up: a
/// planted index file can make thousands.
const DETAILED_FINDINGS: usize = 100;

/// Runs the keyed checks that `opts` asks for.
///
/// The data check (`read_data`, CPU-bound: decrypting, decompressing and
/// hashing every pack) starts first, on its own listing of the packs, and
/// runs on every core while this thread loads the index and checks the
/// structure; its findings are then added after theirs, as if the checks
/// had run one after the other.
pub fn check(repo: &Repository, opts: &CheckOptions, report: &mut CheckReport) -> Result<()> {
    // What storage holds, not what the local cache remembers of it.
    repo.refetch_metadata();
    if opts.read_data.is_some() {
        repo.keys().require_owner("check --read-data")?;
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<()> {
        let data = match opts.read_data {
            Some(subset) => {
                let selected = select_packs(repo, subset)?;
                if let Some(p) = opts.progress.as_deref() {
                    p.start(
                        "packs",
                        selected.len() as u64,
                        selected.iter().map(|(_, _, size)| size).sum(),
                    );
                }
                let stop = &stop;
                let progress = opts.progress.as_deref();
                Some(s.spawn(move || {
                    let results = read_packs(repo, &selected, progress, stop);
                    (selected, results)
                }))
            }
            None => None,
        };
        // On an error here, the data check is told to stop before the
        // scope waits for it.
        let structure: Result<LoadedIndex> = (|| {
            let loaded = repo.load_index_files()?;
            report_index_files(&loaded, report);
            if opts.structure {
                check_structure(repo, &loaded, report)?;
            }
            Ok(loaded)
        })();
        if structure.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let loaded = structure?;
        if let Some(data) = data {
            // Built while the packs are being read.
            let expected = expected_by_pack(&loaded);
            let (selected, results) = data.join().expect("the data check does not panic");
            let verified = record_data(&expected, &selected, results, report);
            drop(expected);
            attest_verified(repo, &loaded.index, verified, report);
        }
        Ok(())
    })
}

/// Index files that could not be read, were not written by vault, or make
/// claims that cannot be true.
fn report_index_files(loaded: &LoadedIndex, report: &mut CheckReport) {
    for e in &loaded.damaged {
        report.add(Severity::Error, "index", e.to_string());
    }
    for f in &loaded.foreign {
        report.add(
            Severity::Error,
            &f.key,
            format!("{}; `vault prune --remove-foreign` deletes it", f.error),
        );
    }
    for c in loaded.false_claims.iter().take(DETAILED_FINDINGS) {
        report.add(
            Severity::Error,
            &c.file,
            format!("pack {}: {} (ignored; prune drops it)", c.pack, c.what),
        );
    }
    if loaded.false_claims.len() > DETAILED_FINDINGS {
        report.add(
            Severity::Error,
            "index",
            format!(
                "{} more false claims about packs (ignored; prune drops them)",
                loaded.false_claims.len() - DETAILED_FINDINGS
            ),
        );
    }
}

/// Signs, as the owner, the pack entries this check read and verified that
/// no owner had attested yet: backups of every host may then deduplicate
/// against them. A check that cannot write (read-only credentials) says so
/// and goes on.
fn attest_verified(
    repo: &Repository,
    attested: &crate::format::index::Index,
    verified: Vec<(PackId, BlobKind, Vec<crate::format::pack::PackEntry>)>,
    report: &mut CheckReport,
) {
    use crate::format::index::BlobLocation;
    let fresh: Vec<(BlobId, BlobLocation)> = verified
        .into_iter()
        .flat_map(|(pack, kind, entries)| {
            entries.into_iter().map(move |e| {
                let loc = BlobLocation {
                    pack,
                    kind,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                };
                (e.id, loc)
            })
        })
        .filter(|(blob, loc)| !crate::repo::attest::is_attested(attested, blob, loc))
        .collect();
    if fresh.is_empty() {
        return;
    }
    let n = fresh.len() as u64;
    let packs = crate::repo::attest::group_by_pack(fresh);
    match crate::repo::attest::write_attested(repo, &packs, Vec::new()) {
        Ok(_) => report.entries_attested = n,
        Err(e) => report.add(
            Severity::Info,
            "index",
            format!("verified entries could not be attested (backups will store them again): {e}"),
        ),
    }
}

fn check_structure(
    repo: &Repository,
    loaded: &LoadedIndex,
    report: &mut CheckReport,
) -> Result<()> {
    check_indexed_packs(loaded, report);
    let snapshots = check_snapshot_headers(repo, report)?;
    if !repo.keys().is_owner() {
        report.add(
            Severity::Info,
            "trees",
            "not checked: reading trees needs an owner key",
        );
        return Ok(());
    }
    check_trees(repo, loaded, &snapshots, report)
}

/// Every indexed pack is stored (or went on purpose), and every stored
/// pack is indexed (or was left by an interrupted backup).
fn check_indexed_packs(loaded: &LoadedIndex, report: &mut CheckReport) {
    let (index, stored) = (&loaded.index, &loaded.stored);
    let indexed: HashSet<PackId> = index.packs().map(|(id, _)| id).collect();
    let mut pruned = 0;
    for (pack, kind) in index.packs() {
        if stored.contains_key(&pack) {
            continue;
        }
        if loaded.condemned.contains_key(&pack) {
            // Deleted by prune; an index file that could not be removed yet
            // (Object Lock) still lists it. Snapshots needing its blobs are
            // checked below like any other.
            pruned += 1;
        } else {
            report.add(
                Severity::Error,
                ObjectKind::Pack(kind).key(&pack),
                "indexed pack is missing from storage",
            );
        }
    }
    if pruned > 0 {
        report.add(
            Severity::Info,
            "index",
            format!("{pruned} pack(s) deleted by prune are still listed by retained index files"),
        );
    }
    let orphans = stored.keys().filter(|p| !indexed.contains(p)).count();
    if orphans > 0 {
        report.add(
            Severity::Info,
            "packs",
            format!("{orphans} pack(s) are in no index (left by an interrupted backup; prune removes them)"),
        );
    }
}

/// Reads every snapshot header; reports those that cannot be read.
fn check_snapshot_headers(
    repo: &Repository,
    report: &mut CheckReport,
) -> Result<Vec<(SnapshotId, Snapshot)>> {
    let docs = repo.read_documents::<Snapshot>(ObjectKind::Snapshot)?;
    for u in &docs.unreadable {
        let hint = if u.foreign {
            "; `vault prune --remove-foreign` deletes it"
        } else {
            ""
        };
        report.add(Severity::Error, "snapshots", format!("{u}{hint}"));
    }
    report.snapshots = docs.read.len() as u64;
    Ok(docs
        .read
        .into_iter()
        .map(|(_, id, s)| (SnapshotId(id), s))
        .collect())
}

/// Walks every snapshot's trees (each distinct tree once): every tree
/// readable, every file's blobs in a stored pack, the entries within what
/// the headers declare.
fn check_trees(
    repo: &Repository,
    loaded: &LoadedIndex,
    snapshots: &[(SnapshotId, Snapshot)],
    report: &mut CheckReport,
) -> Result<()> {
    let mut budget = Budget::default();
    snapshots.iter().for_each(|(_, s)| budget.add(&s.totals));
    let mut walker = Walker::new(repo, &loaded.index)?
        .each_tree_once()
        .with_budget(budget);
    for (id, snap) in snapshots {
        let subject = |path: &std::path::Path| {
            crate::format::escape::escape(&format!("snapshot {} /{}", id.short(), path.display()))
        };
        walker.walk(&snap.root, &mut |v| {
            match v {
                Visit::Entry { path, node } => {
                    for blob in node.content.iter().chain(&node.content_lists) {
                        if !loaded
                            .index
                            .locations(blob)
                            .any(|l| loaded.stored.contains_key(&l.pack))
                        {
                            report.add(
                                Severity::Error,
                                subject(path),
                                format!("blob {blob} is in no stored pack"),
                            );
                        }
                    }
                    if let Some(why) = layout_problem(node, &loaded.index) {
                        report.add(Severity::Error, subject(path), why);
                    }
                }
                Visit::Damaged { path, error } => {
                    report.add(Severity::Error, subject(path), error.to_string())
                }
                Visit::Leave { .. } => {}
            }
            Ok(Next::Descend)
        })?;
    }
    Ok(())
}

/// What is wrong with where a file says its bytes lie, judged from the
/// index's lengths alone (no data is read): a bundled file's slice must lie
/// within its bundle, and a larger file's blobs must add up to its size.
/// Restore refuses both; `check` says so before a restore is needed.
/// Index files that disagree on a blob's length are a finding of their
/// own: a blob id fixes its content, so every honest claim of it has the
/// same length, and a planted one must not hide the checks above (restore
/// decides by what verifies). Salted blobs (every small file's, every
/// bundle) are indexed with their lengths rounded up to
/// [`PAD`](crate::format::salt::PAD) bytes: a slice ending within that
/// rounding is only found by reading the bundle. Blobs in no index are
/// reported by the caller.
fn layout_problem(node: &Node, index: &Index) -> Option<String> {
    if node.kind != NodeKind::File {
        return None;
    }
    let mut sum = 0u64;
    for id in &node.content {
        let mut lengths = index.locations(id).map(|l| l.raw_length);
        // A blob in no index is reported by the caller.
        let first = lengths.next()?;
        if let Some(other) = lengths.find(|&l| l != first) {
            return Some(format!(
                "index files disagree on the length of its blob {id} ({first} and {other} bytes): \
                 one entry is false; restore uses the one that verifies, `vault prune` drops the other"
            ));
        }
        sum += u64::from(first);
    }
    if let Some(at) = node.bundle_offset {
        let end = at.saturating_add(node.size);
        return (end > sum).then(|| {
            format!(
                "its bytes {at} to {end} lie past the end of bundle {} ({sum} bytes); {UNRESTORABLE}",
                node.content
                    .first()
                    .map_or_else(String::new, |b| b.to_string())
            )
        });
    }
    (node.size > crate::format::salt::SALTED_MAX && sum != node.size).then(|| {
        format!(
            "its blobs add up to {sum} bytes, the snapshot says {}; {UNRESTORABLE}",
            node.size
        )
    })
}

/// What a file [`layout_problem`] finds means for the operator.
const UNRESTORABLE: &str = "restore refuses this file: restore it from an older snapshot, \
     and `vault backup --no-cache` stores it afresh";

/// A stored pack the data check reads: its id, kind and stored size.
type Selected = (PackId, BlobKind, u64);

/// The stored packs in subset `n` of `m` (1-based), in id order. Listed
/// when the data check starts: a pack stored later (by a backup finishing
/// meanwhile) is left for the next check.
fn select_packs(repo: &Repository, (n, m): (u32, u32)) -> Result<Vec<Selected>> {
    let stored = crate::repo::list_packs(repo.storage().as_ref())?;
    let mut selected: Vec<Selected> = stored
        .into_iter()
        .filter(|(pack, _)| {
            // Subsets are by the pack id's first 8 bytes, so `n/m` for n = 1..m covers all.
            let bucket = u64::from_le_bytes(pack.0.0[..8].try_into().expect("8 bytes")) % m as u64;
            m == 1 || bucket + 1 == n as u64
        })
        .map(|(pack, s)| (pack, s.kind, s.size))
        .collect();
    selected.sort_by_key(|(id, _, _)| *id);
    Ok(selected)
}

/// Reads and verifies `selected` in parallel (decrypting, decompressing and
/// hashing dominate); a pack taken after `stop` is set is not read.
fn read_packs(
    repo: &Repository,
    selected: &[Selected],
    progress: Option<&crate::ops::progress::Progress>,
    stop: &AtomicBool,
) -> Vec<Result<Vec<verify::EntryVerdict>>> {
    // Largest first, so that the last packs taken are the small ones and
    // the threads finish close together.
    let mut order: Vec<&Selected> = selected.iter().collect();
    order.sort_by_key(|(_, _, size)| std::cmp::Reverse(*size));
    let mut results: Vec<(&Selected, _)> = order
        .iter()
        .copied()
        .zip(verify::parallel(
            &order,
            PackBuffers::default,
            |bufs, &&(pack, kind, size)| read_pack(repo, bufs, (&pack, kind, size), progress, stop),
        ))
        .collect();
    results.sort_by_key(|(s, _)| s.0);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Reads and verifies one pack for [`read_packs`].
fn read_pack(
    repo: &Repository,
    bufs: &mut PackBuffers,
    (pack, kind, size): (&PackId, BlobKind, u64),
    progress: Option<&crate::ops::progress::Progress>,
    stop: &AtomicBool,
) -> Result<Vec<verify::EntryVerdict>> {
    if stop.load(Ordering::Relaxed) {
        return Err(crate::error::Error::format(
            ObjectKind::Pack(kind).key(pack),
            "not read: the check stopped",
        ));
    }
    let verdict = verify::verify_stored_pack(repo, pack, kind, bufs);
    if let Some(p) = progress {
        p.advance(1, size);
    }
    verdict
}

/// What the index claims each pack holds: blob, offset, length.
type Expected = HashMap<PackId, Vec<(BlobId, u32, u32, u32)>>;

fn expected_by_pack(loaded: &LoadedIndex) -> Expected {
    let mut expected = Expected::new();
    for (blob, loc) in loaded.index.blobs() {
        expected
            .entry(loc.pack)
            .or_default()
            .push((blob, loc.offset, loc.length, loc.raw_length));
    }
    expected
}

/// Adds to `report` what reading `selected` found (`results`, in the same
/// order), and compares what each pack holds with what the index claims
/// it holds. Returns, per pack, the entries that verified.
fn record_data(
    expected: &Expected,
    selected: &[Selected],
    results: Vec<Result<Vec<verify::EntryVerdict>>>,
    report: &mut CheckReport,
) -> Vec<(PackId, BlobKind, Vec<crate::format::pack::PackEntry>)> {
    let mut verified = Vec::new();
    for ((pack, kind, _), result) in selected.iter().zip(results) {
        let key = ObjectKind::Pack(*kind).key(pack);
        report.packs_read += 1;
        let verdicts = match result {
            Ok(v) => v,
            Err(e) => {
                report.add(Severity::Error, &key, e.to_string());
                continue;
            }
        };
        // Where each verified blob lies, and its true uncompressed length.
        let mut found = HashMap::new();
        let mut bad = 0usize;
        let mut good = Vec::new();
        for (entry, verdict) in verdicts {
            match verdict {
                Ok(()) => {
                    report.blobs_verified += 1;
                    found.insert((entry.id, entry.offset, entry.length), entry.raw_length);
                    good.push(entry);
                }
                Err(e) => {
                    bad += 1;
                    if bad <= DETAILED_FINDINGS {
                        report.add(Severity::Error, &key, e.to_string());
                    }
                }
            }
        }
        verified.push((*pack, *kind, good));
        let lies: Vec<&(BlobId, u32, u32, u32)> = expected
            .get(pack)
            .into_iter()
            .flatten()
            .filter(|&&(id, offset, length, raw)| found.get(&(id, offset, length)) != Some(&raw))
            .collect();
        for &&(id, offset, length, raw) in lies.iter().take(DETAILED_FINDINGS) {
            let what = match found.get(&(id, offset, length)) {
                Some(true_raw) => format!(
                    "index claims blob {id} is {raw} bytes uncompressed; the pack holds \
                     {true_raw}"
                ),
                None => format!("index lists blob {id} that the pack does not hold"),
            };
            report.add(
                Severity::Error,
                &key,
                format!(
                    "{what}: a false or damaged entry; restore uses only what verifies, and \
                     `vault prune` drops the entry when another copy verifies or no snapshot \
                     needs the blob"
                ),
            );
        }
        if lies.len() > DETAILED_FINDINGS {
            report.add(
                Severity::Error,
                &key,
                format!(
                    "{} more index entries the pack does not bear out (false or damaged, \
                     as above: restore uses only what verifies, `vault prune` drops them)",
                    lies.len() - DETAILED_FINDINGS
                ),
            );
        }
    }
    verified
}
