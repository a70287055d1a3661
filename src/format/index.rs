//! Which blob lives where: index files on the repository, and the compact
//! in-memory index built from them.
//!
//! The in-memory index is a sorted `Vec` of 48-byte entries searched by
//! binary search: no hash-map overhead, so 10 million blobs cost ~480 MB
//! whatever the pack layout, and a typical 1 GB server costs ~3 MB.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::format::id::Id;
use crate::format::pack::{BlobKind, PackEntry};

/// One pack as listed in an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedPack {
    /// The pack's object id.
    pub id: Id,
    /// Whether the pack holds data or tree blobs.
    pub kind: BlobKind,
    /// The pack's blobs, as in its trailer.
    pub blobs: Vec<IndexedBlob>,
}

/// One blob in an index file.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedBlob {
    /// Keyed BLAKE3 of the blob's content.
    pub id: Id,
    /// Offset of the compressed blob in the pack plaintext.
    pub offset: u32,
    /// Compressed length.
    pub length: u32,
    /// Uncompressed length.
    pub raw_length: u32,
}

/// The content of one `index/<id>` object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    /// The packs this index file describes.
    pub packs: Vec<IndexedPack>,
    /// Packs that prune found unused and will delete once the grace period
    /// has passed (written by `vault prune` only). Backups do not deduplicate
    /// against them, so nothing new comes to depend on a pack about to go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub condemned: Vec<CondemnedPack>,
}

/// A pack prune has marked for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CondemnedPack {
    /// The pack.
    pub pack: Id,
    /// When prune first found it unused.
    pub since: chrono::DateTime<chrono::Utc>,
}

impl IndexedPack {
    /// Describes a pack from its trailer entries.
    pub fn from_entries(id: Id, kind: BlobKind, entries: &[PackEntry]) -> Self {
        IndexedPack {
            id,
            kind,
            blobs: entries
                .iter()
                .map(|e| IndexedBlob {
                    id: e.id,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        }
    }
}

/// Where one blob can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: Id,
    /// The pack's kind.
    pub kind: BlobKind,
    /// Offset in the pack plaintext.
    pub offset: u32,
    /// Compressed length.
    pub length: u32,
    /// Uncompressed length.
    pub raw_length: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    id: Id,
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// The in-memory index: every blob of every indexed pack.
#[derive(Default)]
pub struct Index {
    packs: Vec<(Id, BlobKind)>,
    pack_numbers: HashMap<Id, u32>,
    entries: Vec<Entry>,
    sorted: bool,
}

impl Index {
    /// Adds one pack's blobs. Call [`Index::finish`] before looking up.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        let number = *self.pack_numbers.entry(pack.id).or_insert_with(|| {
            self.packs.push((pack.id, pack.kind));
            (self.packs.len() - 1) as u32
        });
        self.entries.extend(pack.blobs.iter().map(|b| Entry {
            id: b.id,
            pack: number,
            offset: b.offset,
            length: b.length,
            raw_length: b.raw_length,
        }));
        self.sorted = false;
    }

    /// Sorts the entries. A blob stored in several places keeps every
    /// location: index files are not authenticated (anyone holding the
    /// writer key can add one), so readers fall back to the next location
    /// when one fails verification, and a planted entry cannot hide a
    /// genuine copy.
    pub fn finish(&mut self) {
        self.entries.sort_unstable_by(|a, b| {
            a.id.cmp(&b.id)
                .then(a.pack.cmp(&b.pack))
                .then(a.offset.cmp(&b.offset))
                .then(a.length.cmp(&b.length))
                .then(a.raw_length.cmp(&b.raw_length))
        });
        // Only exact duplicates go: two entries differing in any field are
        // two claims, and one of them may be the genuine one.
        self.entries.dedup_by(|a, b| {
            a.id == b.id
                && a.pack == b.pack
                && a.offset == b.offset
                && a.length == b.length
                && a.raw_length == b.raw_length
        });
        self.entries.shrink_to_fit();
        self.sorted = true;
    }

    /// Drops every location in a pack that `exists` says is not stored, so a
    /// backup never skips a blob because of an entry pointing nowhere.
    pub fn retain_packs(&mut self, exists: impl Fn(&Id) -> bool) {
        let keep: Vec<bool> = self.packs.iter().map(|(id, _)| exists(id)).collect();
        self.entries.retain(|e| keep[e.pack as usize]);
    }

    fn location(&self, e: &Entry) -> BlobLocation {
        let (pack, kind) = self.packs[e.pack as usize];
        BlobLocation {
            pack,
            kind,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        }
    }

    fn range(&self, id: &Id) -> &[Entry] {
        debug_assert!(self.sorted, "Index::finish must be called before lookups");
        let start = self.entries.partition_point(|e| e.id < *id);
        let len = self.entries[start..].partition_point(|e| e.id == *id);
        &self.entries[start..start + len]
    }

    /// The first known location of `id`.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        self.range(id).first().map(|e| self.location(e))
    }

    /// Every known location of `id`.
    pub fn locations(&self, id: &Id) -> impl Iterator<Item = BlobLocation> + '_ {
        self.range(id).iter().map(|e| self.location(e))
    }

    /// The uncompressed length of `id` if every location agrees on it.
    pub fn agreed_raw_length(&self, id: &Id) -> Option<u32> {
        let r = self.range(id);
        let first = r.first()?.raw_length;
        r.iter().all(|e| e.raw_length == first).then_some(first)
    }

    /// Whether `id` is indexed.
    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    /// Number of blob locations.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every indexed pack with its kind.
    pub fn packs(&self) -> impl Iterator<Item = (Id, BlobKind)> + '_ {
        self.packs.iter().copied()
    }

    /// Every blob location.
    pub fn blobs(&self) -> impl Iterator<Item = (Id, BlobLocation)> + '_ {
        self.entries.iter().map(|e| (e.id, self.location(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_after_finish_keep_every_location() {
        let mut idx = Index::default();
        let blob = |n: u8, off| IndexedBlob {
            id: Id([n; 32]),
            offset: off,
            length: 10,
            raw_length: 20,
        };
        idx.add_pack(&IndexedPack {
            id: Id([100; 32]),
            kind: BlobKind::Data,
            blobs: vec![blob(3, 0), blob(1, 10)],
        });
        idx.add_pack(&IndexedPack {
            id: Id([101; 32]),
            kind: BlobKind::Tree,
            blobs: vec![blob(2, 0), blob(1, 50)],
        });
        idx.add_pack(&IndexedPack {
            id: Id([100; 32]),
            kind: BlobKind::Data,
            blobs: vec![blob(3, 0)],
        });
        idx.finish();
        assert_eq!(idx.len(), 4);
        assert_eq!(idx.get(&Id([1; 32])).unwrap().pack, Id([100; 32]));
        assert_eq!(idx.locations(&Id([1; 32])).count(), 2);
        assert_eq!(idx.get(&Id([2; 32])).unwrap().kind, BlobKind::Tree);
        assert_eq!(idx.agreed_raw_length(&Id([1; 32])), Some(20));
        assert!(idx.get(&Id([9; 32])).is_none());
        idx.retain_packs(|p| *p != Id([100; 32]));
        assert_eq!(idx.locations(&Id([1; 32])).count(), 1);
        assert!(!idx.contains(&Id([3; 32])));
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }
}
