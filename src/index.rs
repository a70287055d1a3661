//! Which blob lives where: index files on the repository, and the compact
//! in-memory index built from them.
//!
//! The in-memory index is a sorted `Vec` of 48-byte entries searched by
//! binary search: no hash-map overhead, so 10 million blobs cost ~480 MB
//! whatever the pack layout, and a typical 1 GB server costs ~3 MB.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::pack::{BlobKind, PackEntry};

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

    /// Sorts the entries; a blob stored in several packs keeps one location.
    pub fn finish(&mut self) {
        self.entries
            .sort_unstable_by(|a, b| a.id.cmp(&b.id).then(a.pack.cmp(&b.pack)));
        self.entries.dedup_by(|a, b| a.id == b.id);
        self.entries.shrink_to_fit();
        self.sorted = true;
    }

    /// Where `id` is stored, if indexed.
    pub fn get(&self, id: &Id) -> Option<BlobLocation> {
        debug_assert!(self.sorted, "Index::finish must be called before lookups");
        let i = self.entries.binary_search_by(|e| e.id.cmp(id)).ok()?;
        let e = self.entries[i];
        let (pack, kind) = self.packs[e.pack as usize];
        Some(BlobLocation {
            pack,
            kind,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        })
    }

    /// Whether `id` is indexed.
    pub fn contains(&self, id: &Id) -> bool {
        self.get(id).is_some()
    }

    /// Number of distinct blobs.
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

    /// Every blob id with its location.
    pub fn blobs(&self) -> impl Iterator<Item = (Id, BlobLocation)> + '_ {
        self.entries.iter().map(|e| {
            let (pack, kind) = self.packs[e.pack as usize];
            (
                e.id,
                BlobLocation {
                    pack,
                    kind,
                    offset: e.offset,
                    length: e.length,
                    raw_length: e.raw_length,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_after_finish() {
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
        idx.finish();
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.get(&Id([1; 32])).unwrap().pack, Id([100; 32]));
        assert_eq!(idx.get(&Id([2; 32])).unwrap().kind, BlobKind::Tree);
        assert!(idx.get(&Id([9; 32])).is_none());
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }
}
