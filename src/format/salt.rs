//! Salted blob ids (format 3): the blobs of small files are keyed with a
//! salt of the writer key that stored them, so that another host's writer
//! key, which holds the chunk-id key, cannot confirm guesses of them.
//!
//! Rules (all integers little-endian):
//!
//! - A file or command output of at most [`SALTED_MAX`] bytes in all is
//!   *small*: every one of its chunks is a salted blob. Larger files, and
//!   trees, keep unsalted ids (`BLAKE3-keyed(chunk-id key, content)`), so
//!   hosts still deduplicate large files across each other.
//! - A salted blob's id is `BLAKE3-keyed(salted key, content)`, where the
//!   salted key is `BLAKE3-derive-key(`[`SALTED_ID_CONTEXT`]`, chunk-id key ‖
//!   salt)`: a keyed hash of its own, so no salted id can equal an unsalted
//!   one of other content.
//! - The salt of a writer key is `BLAKE3-derive-key(`[`SALT_CONTEXT`]`,
//!   repository owner secret key line ‖ salt id)`, the salt id 32 random
//!   bytes: its writer key file holds both, and every owner derives the salt
//!   again from the salt id, which each salted blob carries inside its sealed
//!   pack. Nothing more is stored, and no writer can derive another's salt.
//! - A salted blob is stored as a zstd skippable frame (magic
//!   [`SALT_FRAME_MAGIC`], length, salt id [32], zeros) followed by the
//!   blob's zstd frame, padded so that the stored length is a multiple of
//!   [`PAD`]; the index records that padded length and the raw length
//!   rounded up to a multiple of [`PAD`]. `zstd -d` skips the padding frame.

use zeroize::Zeroizing;

use crate::format::id::BlobId;

/// The largest file (or command output) whose chunks are salted.
pub const SALTED_MAX: u64 = 16 << 10;

/// The largest salted blob: a bundle of small files (format 6, docs/FORMAT.md
/// §6.2; 16 KiB, [`SALTED_MAX`], before). A small file's own chunks are at
/// most [`SALTED_MAX`] bytes; a bundle of them may fill the chunker's
/// default largest chunk, so that zstd sees 64 KiB of config text at a time:
/// on 200,000 small files a tenth less time and space than 16 KiB bundles.
pub const SALTED_BLOB_MAX: u64 = 64 << 10;

/// Index-visible lengths of salted blobs are multiples of this.
pub const PAD: u32 = 64;

/// The zstd skippable-frame magic that opens a salted blob.
pub const SALT_FRAME_MAGIC: u32 = 0x184D_2A56;

/// Header of the padding frame: magic, length, salt id.
const HEADER: usize = 8 + 32;

/// BLAKE3 derive-key context of a writer key's salt.
pub const SALT_CONTEXT: &str = "vault 2026 blob salt";

/// BLAKE3 derive-key context of the key salted ids are keyed with.
pub const SALTED_ID_CONTEXT: &str = "vault 2026 salted blob id key";

/// `len` rounded up to a multiple of [`PAD`].
pub fn rounded(len: u32) -> u32 {
    len.div_ceil(PAD) * PAD
}

/// The key of salted ids for `chunk_key` and `salt`.
pub fn salted_id_key(chunk_key: &[u8; 32], salt: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut material = Zeroizing::new([0u8; 64]);
    material[..32].copy_from_slice(chunk_key);
    material[32..].copy_from_slice(salt);
    Zeroizing::new(blake3::derive_key(SALTED_ID_CONTEXT, &material[..]))
}

/// The salt of `salt_id` from the repository owner's secret key line.
pub fn derive_salt(owner_secret_line: &str, salt_id: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut material = Zeroizing::new(owner_secret_line.as_bytes().to_vec());
    material.extend_from_slice(salt_id);
    Zeroizing::new(blake3::derive_key(SALT_CONTEXT, &material))
}

/// Wraps a blob's zstd frame as a salted blob of `salt_id`.
pub fn wrap(salt_id: &[u8; 32], frame: &[u8]) -> Vec<u8> {
    let total = (HEADER + frame.len()).div_ceil(PAD as usize) * PAD as usize;
    let skip = total - frame.len() - 8;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&SALT_FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&(skip as u32).to_le_bytes());
    out.extend_from_slice(salt_id);
    out.resize(8 + skip, 0);
    out.extend_from_slice(frame);
    out
}

/// A stored blob split into its salt id (`None`: an unsalted blob) and its
/// zstd frame; `Err` names what is wrong with a malformed salt frame.
pub fn unwrap(stored: &[u8]) -> Result<(Option<[u8; 32]>, &[u8]), &'static str> {
    if stored.len() < 4 || stored[..4] != SALT_FRAME_MAGIC.to_le_bytes() {
        return Ok((None, stored));
    }
    if stored.len() < HEADER || !stored.len().is_multiple_of(PAD as usize) {
        return Err("a salted blob's length is not a positive multiple of 64");
    }
    let skip = u32::from_le_bytes(stored[4..8].try_into().expect("4")) as usize;
    if skip < 32 || skip > stored.len() - 8 {
        return Err("a salted blob's padding frame has a bad length");
    }
    let salt_id: [u8; 32] = stored[8..40].try_into().expect("32");
    Ok((Some(salt_id), &stored[8 + skip..]))
}

/// A writer key's salt: its public id (inside sealed packs only) and the
/// key its salted ids are keyed with.
#[derive(Clone)]
pub struct SaltedKey {
    /// The salt id blobs carry.
    pub salt_id: [u8; 32],
    /// `salted_id_key(chunk key, salt)`.
    pub id_key: Zeroizing<[u8; 32]>,
}

/// How a writer computes blob ids: the chunk-id key, and the salt for small
/// files (format 3; `None` for formats 1 and 2).
#[derive(Clone)]
pub struct BlobIds {
    chunk_key: [u8; 32],
    salted: Option<SaltedKey>,
}

impl BlobIds {
    /// Ids keyed with `chunk_key`, small files salted with `salted`.
    pub fn new(chunk_key: &[u8; 32], salted: Option<SaltedKey>) -> Self {
        BlobIds {
            chunk_key: *chunk_key,
            salted,
        }
    }

    /// The unsalted id of `content` (large files, trees).
    pub fn unsalted(&self, content: &[u8]) -> BlobId {
        BlobId::keyed(&self.chunk_key, content)
    }

    /// The salted id of `content`, a chunk of a small file; the unsalted
    /// one when this writer does not salt.
    pub fn salted(&self, content: &[u8]) -> BlobId {
        match &self.salted {
            Some(s) => BlobId::keyed(&s.id_key, content),
            None => self.unsalted(content),
        }
    }

    /// The salt id stored with salted blobs, when this writer salts.
    pub fn salt_id(&self) -> Option<&[u8; 32]> {
        self.salted.as_ref().map(|s| &s.salt_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_blobs_unwrap_and_decompress_with_plain_zstd() {
        let data = b"db_password=hunter2\n";
        let frame = zstd::bulk::compress(data, 3).unwrap();
        let salt_id = [7u8; 32];
        let stored = wrap(&salt_id, &frame);
        assert_eq!(stored.len() % PAD as usize, 0);
        let (id, inner) = unwrap(&stored).unwrap();
        assert_eq!(id, Some(salt_id));
        assert_eq!(inner, &frame[..]);
        // Any zstd decoder skips the padding frame.
        assert_eq!(zstd::stream::decode_all(&stored[..]).unwrap(), data);
        assert_eq!(unwrap(&frame).unwrap(), (None, &frame[..]));
        assert!(unwrap(&stored[..stored.len() - 1]).is_err());
        let mut bad = stored.clone();
        bad[4..8].copy_from_slice(&9u32.to_le_bytes());
        assert!(unwrap(&bad).is_err());
    }

    #[test]
    fn salted_ids_differ_per_salt_and_from_unsalted_ones() {
        let chunk = [1u8; 32];
        let salt_a = derive_salt("AGE-SECRET-KEY-1OWNER", &[2u8; 32]);
        let salt_b = derive_salt("AGE-SECRET-KEY-1OWNER", &[3u8; 32]);
        assert_ne!(salt_a[..], salt_b[..]);
        assert_ne!(
            salt_a[..],
            derive_salt("AGE-SECRET-KEY-1OTHER", &[2u8; 32])[..]
        );
        let a = BlobIds::new(
            &chunk,
            Some(SaltedKey {
                salt_id: [2u8; 32],
                id_key: salted_id_key(&chunk, &salt_a),
            }),
        );
        let b = BlobIds::new(
            &chunk,
            Some(SaltedKey {
                salt_id: [3u8; 32],
                id_key: salted_id_key(&chunk, &salt_b),
            }),
        );
        let x = b"x";
        assert_ne!(a.salted(x), b.salted(x));
        assert_ne!(a.salted(x), a.unsalted(x));
        assert_eq!(a.unsalted(x), b.unsalted(x));
        assert_eq!(BlobIds::new(&chunk, None).salted(x), a.unsalted(x));
        assert_eq!(rounded(0), 0);
        assert_eq!(rounded(1), 64);
        assert_eq!(rounded(64), 64);
        assert_eq!(rounded(16385), 16384 + 64);
    }
}
