//! `vault stats`: how big a repository or a set of snapshots is, and how
//! much deduplication and compression save.
//!
//! Two modes:
//! - [`repository`] reads the index files, the pack listing and the
//!   snapshot headers: no tree and no pack content, so it is quick on any
//!   repository and works with the writer key.
//! - [`snapshots`] walks the trees of the snapshots given (owner key),
//!   counting every path, and sums the blobs they need once each: what
//!   those snapshots hold and what they cost in the repository.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::Result;
use crate::format::id::{BlobId, SnapshotId};
use crate::format::index::Index;
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::NodeKind;
use crate::repo::Repository;
use crate::repo::treewalk::{Budget, Next, Visit, Walker};

/// Blob counts and sizes of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlobStats {
    /// Distinct blobs.
    pub count: u64,
    /// Their bytes before compression, as the index records them (in
    /// format 3 the blobs of small files count rounded up to 64 bytes: the
    /// index shows no exact length of them).
    pub raw_bytes: u64,
    /// Their bytes as stored in packs (compressed).
    pub stored_bytes: u64,
}

impl BlobStats {
    fn add(&mut self, raw: u32, stored: u32) {
        self.count += 1;
        self.raw_bytes += u64::from(raw);
        self.stored_bytes += u64::from(stored);
    }
}

/// What [`repository`] or [`snapshots`] counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// `repository` or `snapshots`.
    pub mode: &'static str,
    /// Snapshots counted.
    pub snapshots: u64,
    /// Regular files (every path: a file in two snapshots counts twice).
    pub files: u64,
    /// Directories (every path).
    pub dirs: u64,
    /// Bytes of file content restoring every path would write.
    pub logical_bytes: u64,
    /// File content blobs.
    pub data: BlobStats,
    /// Directory tree blobs.
    pub trees: BlobStats,
    /// Packs in storage (repository mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packs: Option<u64>,
    /// Bytes of packs in storage, encryption included (repository mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_bytes: Option<u64>,
    /// Content blobs the trees name that no index file lists (snapshot
    /// mode; not 0 means damage: `vault check` says more).
    pub missing_blobs: u64,
    /// Bytes of distinct file content, each content blob once. Snapshot
    /// mode counts them exactly (a small file's blob is its file's size);
    /// repository mode counts them as the index records them, which in
    /// format 3 rounds the blobs of small files up to 64 bytes.
    pub content_bytes: u64,
    /// Whether `content_bytes` is exact (snapshot mode) rather than as
    /// indexed (repository mode).
    pub content_exact: bool,
    /// `logical_bytes` per `content_bytes`: what deduplication saves (2.0:
    /// half the content is repeated). A lower bound when `content_exact`
    /// is false (small files count rounded up).
    pub dedup_ratio: f64,
    /// Content bytes per stored byte: what compression saves.
    pub compression_ratio: f64,
}

impl Stats {
    fn finish(mut self) -> Self {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        self.dedup_ratio = ratio(self.logical_bytes, self.content_bytes);
        self.compression_ratio = ratio(self.data.raw_bytes, self.data.stored_bytes);
        self
    }
}

/// The whole repository from its index, its pack listing and the snapshot
/// headers `headers` (the files, directories and bytes each declares):
/// reads no tree and no pack.
pub fn repository(repo: &Repository, headers: &[(SnapshotId, Snapshot)]) -> Result<Stats> {
    let loaded = repo.load_index_files()?;
    let mut s = Stats {
        mode: "repository",
        snapshots: headers.len() as u64,
        packs: Some(loaded.stored.len() as u64),
        pack_bytes: Some(loaded.stored.values().map(|p| p.size).sum()),
        ..Stats::default()
    };
    for (_, h) in headers {
        s.files = s.files.saturating_add(h.totals.files);
        s.dirs = s.dirs.saturating_add(h.totals.dirs);
        s.logical_bytes = s.logical_bytes.saturating_add(h.totals.bytes);
    }
    // Records are sorted by id: several locations of one blob are adjacent
    // and count once.
    let mut last: Option<BlobId> = None;
    for (id, loc) in loaded.index.blobs() {
        if last == Some(id) {
            continue;
        }
        last = Some(id);
        match loc.kind {
            BlobKind::Data => s.data.add(loc.raw_length, loc.length),
            BlobKind::Tree => s.trees.add(loc.raw_length, loc.length),
        }
    }
    s.content_bytes = s.data.raw_bytes;
    Ok(s.finish())
}

/// The snapshots `chosen`, from their trees (owner key): every path
/// counted, each blob they need counted once. Each walk is bounded by its
/// header's totals; a tree that cannot be read fails the whole count.
pub fn snapshots(
    repo: &Repository,
    index: &Index,
    chosen: &[(SnapshotId, Snapshot)],
) -> Result<Stats> {
    let mut s = Stats {
        mode: "snapshots",
        snapshots: chosen.len() as u64,
        ..Stats::default()
    };
    // Each content blob once, with its file's size when it is the file's
    // only blob (the exact length of a blob the index rounds).
    let mut data: HashMap<BlobId, Option<u64>> = HashMap::new();
    let mut trees: HashSet<BlobId> = HashSet::new();
    for (id, snap) in chosen {
        trees.insert(snap.root.blob());
        let mut failed = None;
        let mut walker = Walker::new(repo, index)?.with_budget(Budget::of(&snap.totals));
        walker.walk(&snap.root, &mut |v| match v {
            Visit::Entry { node, .. } => {
                match node.kind {
                    NodeKind::File => {
                        s.files += 1;
                        s.logical_bytes = s.logical_bytes.saturating_add(node.size);
                        // A bundle's length: where its last file ends.
                        let whole = match node.bundle_offset {
                            Some(at) => Some(at.saturating_add(node.size)),
                            None => (node.content.len() == 1).then_some(node.size),
                        };
                        for id in &node.content {
                            let known = data.entry(*id).or_insert(whole);
                            *known = match (*known, whole) {
                                (Some(a), Some(b)) if node.bundle_offset.is_some() => {
                                    Some(a.max(b))
                                }
                                (k, w) => k.or(w),
                            };
                        }
                        trees.extend(node.content_lists.iter().copied());
                    }
                    NodeKind::Dir => {
                        s.dirs += 1;
                        trees.extend(node.subtree.map(|t| t.blob()));
                    }
                    _ => {}
                }
                Ok(Next::Descend)
            }
            Visit::Leave { .. } => Ok(Next::Descend),
            Visit::Damaged { path, error } => {
                failed = Some(crate::error::Error::format(
                    format!(
                        "snapshot {} tree /{}",
                        id.short(),
                        crate::format::escape::escape(&path.display().to_string())
                    ),
                    error.to_string(),
                ));
                Ok(Next::Stop)
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    let mut missing = 0;
    for (id, whole) in &data {
        match index.get(id) {
            Some(loc) => {
                s.data.add(loc.raw_length, loc.length);
                s.content_bytes += exact_length(loc.raw_length, *whole);
            }
            None => missing += 1,
        }
    }
    for id in &trees {
        match index.get(id) {
            Some(loc) => s.trees.add(loc.raw_length, loc.length),
            None => missing += 1,
        }
    }
    s.missing_blobs = missing;
    s.content_exact = true;
    Ok(s.finish())
}

/// A content blob's length: the size of the file it is the only blob of,
/// when that agrees with the length `indexed` (exactly, or rounded up to
/// 64 for a small file's blob in format 3), else the indexed length.
fn exact_length(indexed: u32, whole_file: Option<u64>) -> u64 {
    let indexed = u64::from(indexed);
    match whole_file {
        Some(size) if size <= indexed && indexed - size < 64 => size,
        _ => indexed,
    }
}
