//! Packs: one age stream holding independently zstd-compressed blobs followed
//! by a trailer that lists them, so an index can be rebuilt from packs alone.
//!
//! Plaintext layout (all integers little-endian):
//!
//! ```text
//! blob 0 | blob 1 | … | entry 0 | entry 1 | … | count: u32 | "VAULTPK1"
//! entry = id [32] | offset u32 | length u32 | raw_length u32 | kind u8 | 0 0 0
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id};

/// The magic that ends every pack's plaintext.
pub const PACK_MAGIC: &[u8; 8] = b"VAULTPK1";
/// Size of one trailer entry.
pub const ENTRY_LEN: usize = 48;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// A chunk of file content.
    Data,
    /// A directory tree (JSON).
    Tree,
}

impl BlobKind {
    fn code(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }

    /// The repository folder holding packs of this kind.
    pub fn folder(self) -> &'static str {
        match self {
            BlobKind::Data => "data",
            BlobKind::Tree => "tree",
        }
    }
}

/// One blob's place inside a pack's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Keyed BLAKE3 of the blob's uncompressed content.
    pub id: BlobId,
    /// Byte offset of the compressed blob in the pack plaintext.
    pub offset: u32,
    /// Compressed length.
    pub length: u32,
    /// Uncompressed length.
    pub raw_length: u32,
    /// What the blob holds.
    pub kind: BlobKind,
}

/// Encodes the trailer for `entries` (entries, count, magic).
pub fn encode_trailer(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN + 12);
    for e in entries {
        out.extend_from_slice(&e.id.0.0);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&e.raw_length.to_le_bytes());
        out.extend_from_slice(&[e.kind.code(), 0, 0, 0]);
    }
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(PACK_MAGIC);
    out
}

/// Parses the trailer at the end of a pack's plaintext; `name` is for errors.
pub fn decode_trailer(plaintext: &[u8], name: &str) -> Result<Vec<PackEntry>> {
    let count = trailer_count(plaintext, name)? as usize;
    let n_at = plaintext.len() - 12;
    let start = n_at
        .checked_sub(count * ENTRY_LEN)
        .ok_or_else(|| Error::format(name, "pack trailer: entry count larger than the pack"))?;
    decode_entries(&plaintext[start..n_at], start as u64, name)
}

/// The entry count in the last 12 bytes of a pack's plaintext (`tail` may
/// be longer; only its end is read).
pub fn trailer_count(tail: &[u8], name: &str) -> Result<u32> {
    if tail.len() < 12 || &tail[tail.len() - 8..] != PACK_MAGIC {
        return Err(Error::format(
            name,
            "pack trailer: missing end marker (truncated or not a pack)",
        ));
    }
    let n_at = tail.len() - 12;
    Ok(u32::from_le_bytes(
        tail[n_at..n_at + 4].try_into().expect("4"),
    ))
}

/// Parses trailer entries (without count and magic) of a pack whose blob
/// area ends at `blob_area_end`.
pub fn decode_entries(raw: &[u8], blob_area_end: u64, name: &str) -> Result<Vec<PackEntry>> {
    let bad = |why: &str| Error::format(name, format!("pack trailer: {why}"));
    let start = blob_area_end as usize;
    let mut out = Vec::with_capacity(raw.len() / ENTRY_LEN);
    for raw in raw.chunks_exact(ENTRY_LEN) {
        let u32_at = |i: usize| u32::from_le_bytes(raw[i..i + 4].try_into().expect("4"));
        let kind = match raw[44] {
            0 => BlobKind::Data,
            1 => BlobKind::Tree,
            k => return Err(bad(&format!("unknown blob kind {k}"))),
        };
        let e = PackEntry {
            id: BlobId(Id(raw[..32].try_into().expect("32"))),
            offset: u32_at(32),
            length: u32_at(36),
            raw_length: u32_at(40),
            kind,
        };
        if e.offset as usize + e.length as usize > start {
            return Err(bad("blob extends past the blob area"));
        }
        out.push(e);
    }
    Ok(out)
}
