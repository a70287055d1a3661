//! Which blob lives where: index files on the repository ([`IndexFile`]),
//! read entry by entry ([`stream`]) into the compact in-memory index built
//! from them ([`Index`], module [`compact`]).

pub mod compact;
pub mod stream;

pub use compact::Index;

use serde::{Deserialize, Serialize};

use crate::format::id::{BlobId, PackId};
use crate::format::pack::{BlobKind, PackEntry};

/// One pack as listed in an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedPack {
    /// The pack's object id.
    pub id: PackId,
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
    pub id: BlobId,
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
    pub pack: PackId,
    /// When prune first found it unused.
    pub since: chrono::DateTime<chrono::Utc>,
}

impl IndexedPack {
    /// Describes a pack from its trailer entries.
    pub fn from_entries(id: PackId, kind: BlobKind, entries: &[PackEntry]) -> Self {
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
    pub pack: PackId,
    /// The pack's kind.
    pub kind: BlobKind,
    /// Offset in the pack plaintext.
    pub offset: u32,
    /// Compressed length.
    pub length: u32,
    /// Uncompressed length.
    pub raw_length: u32,
}
