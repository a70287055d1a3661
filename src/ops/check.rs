//! `vault check`: structure (every snapshot's trees and blobs reachable and
//! indexed), data (decrypt and hash every blob) and storage (every object's
//! name equals the BLAKE3 of its bytes — no key needed).

use std::collections::{HashMap, HashSet};
use std::io::Read;

use serde::Serialize;

use crate::error::Result;
use crate::format::id::Id;
use crate::format::index::Index;
use crate::format::pack::{BlobKind, decode_trailer};
use crate::format::tree::NodeKind;
use crate::repo::{BlobReader, ObjectKind, Repository, id_from_key, read_config};
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
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Check snapshots, trees and index consistency (needs a key).
    pub structure: bool,
    /// Read and verify the packs in subset `n` of `m` (1-based); `(1, 1)` is all.
    pub read_data: Option<(u32, u32)>,
    /// Hash every object and compare with its name (no key needed).
    pub storage: bool,
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

/// Runs the keyed checks that `opts` asks for.
pub fn check(repo: &Repository, opts: &CheckOptions, report: &mut CheckReport) -> Result<()> {
    let loaded = repo.load_index_files()?;
    let (index, condemned) = (loaded.index, loaded.condemned);
    for e in loaded.damaged {
        report.add(Severity::Error, "index", e.to_string());
    }
    let stored: HashMap<Id, u64> = crate::repo::list_packs(repo.storage().as_ref())?
        .into_iter()
        .map(|(id, p)| (id, p.size))
        .collect();
    if opts.structure {
        check_structure(repo, &index, &condemned, &stored, report)?;
    }
    if let Some((n, m)) = opts.read_data {
        repo.keys().require_owner("check --read-data")?;
        let verified = check_data(repo, &index, &stored, n, m, report);
        attest_verified(repo, &loaded.attested, verified, report);
    }
    Ok(())
}

/// Signs, as the owner, the pack entries this check read and verified that
/// no owner had attested yet: backups of every host may then deduplicate
/// against them. A check that cannot write (read-only credentials) says so
/// and goes on.
fn attest_verified(
    repo: &Repository,
    attested: &Index,
    verified: Vec<(Id, BlobKind, Vec<crate::format::pack::PackEntry>)>,
    report: &mut CheckReport,
) {
    use crate::format::index::BlobLocation;
    let fresh: Vec<(Id, BlobLocation)> = verified
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
    index: &Index,
    condemned: &HashMap<Id, chrono::DateTime<chrono::Utc>>,
    stored: &HashMap<Id, u64>,
    report: &mut CheckReport,
) -> Result<()> {
    let indexed: HashSet<Id> = index.packs().map(|(id, _)| id).collect();
    let mut pruned = 0;
    for (pack, kind) in index.packs() {
        if stored.contains_key(&pack) {
            continue;
        }
        if condemned.contains_key(&pack) {
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
    let (snapshots, damaged) = repo.snapshots()?;
    for e in damaged {
        report.add(Severity::Error, "snapshots", e.to_string());
    }
    report.snapshots = snapshots.len() as u64;
    if !repo.keys().is_owner() {
        report.add(
            Severity::Info,
            "trees",
            "not checked: reading trees needs an owner key",
        );
        return Ok(());
    }
    let mut seen_trees = HashSet::new();
    let mut reader = BlobReader::new(repo);
    for (id, snap) in &snapshots {
        let mut stack = vec![(snap.root, String::new())];
        while let Some((tree_id, path)) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let tree = match repo.read_tree(index, &mut reader, &tree_id) {
                Ok(t) => t,
                Err(e) => {
                    report.add(
                        Severity::Error,
                        format!("snapshot {} /{path}", id.short()),
                        e.to_string(),
                    );
                    continue;
                }
            };
            for node in &tree.nodes {
                let child = format!(
                    "{path}{}{:?}",
                    if path.is_empty() { "" } else { "/" },
                    node.name
                )
                .replace('"', "");
                if node.kind == NodeKind::Dir {
                    match node.subtree {
                        Some(sub) => stack.push((sub, child.clone())),
                        None => report.add(
                            Severity::Error,
                            format!("snapshot {} /{child}", id.short()),
                            "directory without a subtree",
                        ),
                    }
                }
                for blob in &node.content {
                    if !index.locations(blob).any(|l| stored.contains_key(&l.pack)) {
                        report.add(
                            Severity::Error,
                            format!("snapshot {} /{child}", id.short()),
                            format!("blob {blob} is in no stored pack"),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_data(
    repo: &Repository,
    index: &Index,
    stored: &HashMap<Id, u64>,
    n: u32,
    m: u32,
    report: &mut CheckReport,
) -> Vec<(Id, BlobKind, Vec<crate::format::pack::PackEntry>)> {
    let mut verified = Vec::new();
    let mut expected: HashMap<Id, Vec<(Id, u32, u32)>> = HashMap::new();
    for (blob, loc) in index.blobs() {
        expected
            .entry(loc.pack)
            .or_default()
            .push((blob, loc.offset, loc.length));
    }
    let kinds: HashMap<Id, BlobKind> = index.packs().collect();
    let mut packs: Vec<Id> = stored.keys().copied().collect();
    packs.sort();
    let selected: Vec<(Id, String)> = packs
        .into_iter()
        .filter(|pack| {
            // Subsets are by the pack id's first 8 bytes, so `n/m` for n = 1..m covers all.
            let bucket = u64::from_le_bytes(pack.0[..8].try_into().expect("8 bytes")) % m as u64;
            m == 1 || bucket + 1 == n as u64
        })
        .filter_map(|pack| {
            kinds
                .get(&pack)
                .map(|k| (pack, ObjectKind::Pack(*k).key(&pack)))
        })
        .collect();
    // Packs are verified in parallel (decrypt, decompress and hash dominate).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(selected.len()));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut bufs = PackBuffers::default();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((pack, key)) = selected.get(i) else {
                        break;
                    };
                    let r = verify_pack(repo, key, pack, &mut bufs);
                    results.lock().expect("results lock").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, _)| *i);
    for (i, result) in results {
        let (pack, key) = &selected[i];
        report.packs_read += 1;
        match result {
            Ok(entries) => {
                report.blobs_verified += entries.len() as u64;
                let found: HashSet<(Id, u32, u32)> =
                    entries.iter().map(|e| (e.id, e.offset, e.length)).collect();
                for exp in expected.get(pack).into_iter().flatten() {
                    if !found.contains(exp) {
                        report.add(
                            Severity::Error,
                            key,
                            format!("index lists blob {} that the pack does not hold", exp.0),
                        );
                    }
                }
                verified.push((*pack, kinds[pack], entries));
            }
            Err(e) => report.add(Severity::Error, key, e.to_string()),
        }
    }
    verified
}

/// Decrypts a whole pack and verifies every blob in its trailer.
/// Per-thread buffers reused from pack to pack, so memory stays at about
/// two packs per thread however many packs there are.
#[derive(Default)]
struct PackBuffers {
    stored: Vec<u8>,
    plain: Vec<u8>,
}

fn verify_pack(
    repo: &Repository,
    key: &str,
    id: &Id,
    bufs: &mut PackBuffers,
) -> Result<Vec<crate::format::pack::PackEntry>> {
    let PackBuffers { stored, plain } = bufs;
    stored.clear();
    plain.clear();
    repo.storage()
        .open(key)?
        .read_to_end(stored)
        .map_err(|e| crate::storage::StorageError::from_io(key, e))?;
    if Id::of_bytes(stored) != *id {
        return Err(crate::Error::format(key, "content does not match its name"));
    }
    repo.keys()
        .keyring()
        .decrypt_stream(&stored[..], key)?
        .read_to_end(plain)
        .map_err(|e| crate::Error::format(key, format!("decryption failed: {e}")))?;
    let entries = decode_trailer(plain, key)?;
    let mut z = zstd::bulk::Decompressor::new().map_err(|e| crate::Error::io("zstd", e))?;
    for e in &entries {
        if e.raw_length > crate::repo::MAX_BLOB {
            return Err(crate::Error::format(
                key,
                format!("blob {}: claims {} bytes", e.id, e.raw_length),
            ));
        }
        let slice = &plain[e.offset as usize..e.offset as usize + e.length as usize];
        let raw = z.decompress(slice, e.raw_length as usize).map_err(|err| {
            crate::Error::format(key, format!("blob {}: bad zstd data: {err}", e.id))
        })?;
        if Id::keyed(repo.keys().chunk_key(), &raw) != e.id {
            return Err(crate::Error::format(
                key,
                format!("blob {}: content does not match its id", e.id),
            ));
        }
    }
    Ok(entries)
}
