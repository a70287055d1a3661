//! Building a pack: compressed blobs streamed through age, then the trailer
//! ([`crate::format::pack`]) that lists them.

use std::io::Write;

use crate::crypto::{EncryptStream, Seal};
use crate::error::{CryptoError, Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::pack::{BlobKind, PackEntry, encode_trailer};

/// Accumulates compressed blobs into one encrypted pack, streaming through age.
pub struct PackBuilder {
    writer: EncryptStream<Vec<u8>>,
    entries: Vec<PackEntry>,
    offset: u64,
    kind: BlobKind,
}

/// A finished pack, ready to upload.
pub struct FinishedPack {
    /// The pack id: BLAKE3 of `bytes`.
    pub id: PackId,
    /// What kind of blobs it holds.
    pub kind: BlobKind,
    /// The encrypted pack.
    pub bytes: Vec<u8>,
    /// Its blobs.
    pub entries: Vec<PackEntry>,
    /// Sum of the blobs' uncompressed lengths.
    pub raw_bytes: u64,
}

impl PackBuilder {
    /// Starts a pack of `kind` blobs sealed by `seal`.
    pub fn new(kind: BlobKind, seal: &Seal<'_>, capacity: usize) -> Result<Self, CryptoError> {
        Ok(PackBuilder {
            writer: crate::crypto::encrypt_stream(Vec::with_capacity(capacity), seal)?,
            entries: Vec::new(),
            offset: 0,
            kind,
        })
    }

    /// Like [`PackBuilder::new`], writing into `buffer` (cleared first): a
    /// finished pack's bytes, given back after its upload, so a backup
    /// reuses the same few large buffers instead of allocating one a pack.
    pub fn with_buffer(
        kind: BlobKind,
        seal: &Seal<'_>,
        mut buffer: Vec<u8>,
    ) -> Result<Self, CryptoError> {
        buffer.clear();
        Ok(PackBuilder {
            writer: crate::crypto::encrypt_stream(buffer, seal)?,
            entries: Vec::new(),
            offset: 0,
            kind,
        })
    }

    /// Appends one compressed blob.
    pub fn add(&mut self, id: BlobId, compressed: &[u8], raw_length: u32) -> Result<()> {
        self.writer
            .write_all(compressed)
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
        self.entries.push(PackEntry {
            id,
            offset: u32::try_from(self.offset).expect("packs stay below 4 GiB"),
            length: compressed.len() as u32,
            raw_length,
            kind: self.kind,
        });
        self.offset += compressed.len() as u64;
        Ok(())
    }

    /// Plaintext bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// Blobs added so far.
    pub fn blobs(&self) -> usize {
        self.entries.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the trailer and closes the age stream.
    pub fn finish(mut self) -> Result<FinishedPack> {
        let trailer = encode_trailer(&self.entries);
        let enc = |e: std::io::Error| Error::from(CryptoError::Encrypt(e.to_string()));
        self.writer.write_all(&trailer).map_err(enc)?;
        let bytes = self.writer.finish().map_err(enc)?;
        Ok(FinishedPack {
            id: PackId::of_bytes(&bytes),
            kind: self.kind,
            raw_bytes: self.entries.iter().map(|e| e.raw_length as u64).sum(),
            bytes,
            entries: self.entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Keyring, X25519Identity};
    use crate::format::pack::decode_trailer;

    #[test]
    fn pack_round_trips_and_trailer_is_checked() {
        let id = X25519Identity::generate();
        let r = id.to_recipient();
        let mut b =
            PackBuilder::new(BlobKind::Data, &Seal::Recipients(vec![r.as_ref()]), 0).unwrap();
        b.add(
            BlobId(crate::format::id::Id::of_bytes(b"a")),
            b"compressed-a",
            100,
        )
        .unwrap();
        b.add(BlobId(crate::format::id::Id::of_bytes(b"b")), b"bb", 2)
            .unwrap();
        let p = b.finish().unwrap();
        assert_eq!(p.id, PackId::of_bytes(&p.bytes));
        let plain = Keyring::new(vec![id.to_identity()])
            .decrypt(&p.bytes, "p")
            .unwrap();
        let entries = decode_trailer(&plain, "p").unwrap();
        assert_eq!(entries, p.entries);
        assert_eq!(&plain[12..14], b"bb");
        assert!(decode_trailer(&plain[..plain.len() - 1], "p").is_err());
        let mut lying = plain.clone();
        let n = lying.len() - 12;
        lying[n..n + 4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode_trailer(&lying, "p").is_err());
    }
}
