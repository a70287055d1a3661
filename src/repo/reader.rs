//! Reads blobs out of packs, keeping the last pack's decrypting stream open so
//! that consecutive blobs of one pack cost one age header and a forward seek.

use std::io::{Read, Seek, SeekFrom};

use crate::crypto::DecryptStream;
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::BlobLocation;
use crate::format::tree::Tree;
use crate::repo::verify::{BlobCheck, MAX_COMPRESSED};
use crate::repo::{ObjectKind, Repository};
use crate::storage::ReadSeek;

/// A pack open for reading: its id, its decrypting stream, and the
/// plaintext position the stream is at.
type OpenPack = (Id, DecryptStream<Box<dyn ReadSeek>>, u64);

/// Packs kept open per reader. A file changed since its first backup
/// alternates between old and new packs; reopening costs an X25519 unwrap
/// and a chunk decryption each time.
const OPEN_PACKS: usize = 8;

/// A per-thread blob reader (owner key required for data and trees).
pub struct BlobReader<'a> {
    repo: &'a Repository,
    /// Most recently used first.
    open: Vec<OpenPack>,
    buf: Vec<u8>,
    check: BlobCheck<'a>,
}

impl<'a> BlobReader<'a> {
    /// A reader over `repo`.
    pub fn new(repo: &'a Repository) -> Self {
        BlobReader {
            repo,
            open: Vec::new(),
            buf: Vec::new(),
            check: BlobCheck::new(repo),
        }
    }

    /// Reads `id` from the first of its indexed locations that verifies.
    pub fn read_indexed(
        &mut self,
        id: &Id,
        index: &crate::format::index::Index,
    ) -> Result<Vec<u8>> {
        self.first_verified(id, index, |r, loc| r.read(id, loc))
    }

    /// Reads and parses tree `id` from the first of its indexed locations
    /// that verifies, refusing it while parsing once it holds more than
    /// `max_nodes` entries. The tree is parsed as it is decompressed: a
    /// small blob inflating into a huge listing costs what is kept.
    pub fn read_tree(
        &mut self,
        id: &Id,
        index: &crate::format::index::Index,
        max_nodes: usize,
    ) -> Result<Tree> {
        self.first_verified(id, index, |r, loc| {
            r.read_with(id, loc, |raw| Tree::from_reader_bounded(raw, id, max_nodes))
        })
    }

    fn first_verified<T>(
        &mut self,
        id: &Id,
        index: &crate::format::index::Index,
        mut read: impl FnMut(&mut Self, &BlobLocation) -> Result<T>,
    ) -> Result<T> {
        let mut first_error = None;
        for loc in index.locations(id) {
            match read(self, &loc) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| {
            Error::format(
                format!("blob {id}"),
                "is in no index (lost pack or index file)",
            )
        }))
    }

    /// Reads one blob at one location, verifies it, and returns it still
    /// compressed (as stored in the pack), for copying it into another pack.
    pub fn read_compressed(&mut self, id: &Id, loc: &BlobLocation) -> Result<Vec<u8>> {
        self.read(id, loc)?;
        Ok(self.buf.clone())
    }

    /// Reads, decompresses and verifies one blob at one location
    /// ([`BlobCheck::verify`]: exact length, keyed id).
    pub fn read(&mut self, id: &Id, loc: &BlobLocation) -> Result<Vec<u8>> {
        let key = self.fetch(id, loc)?;
        self.check
            .verify(&key, id, loc.kind, &self.buf, loc.raw_length)
    }

    /// Reads one blob at one location and streams its raw bytes into
    /// `consume`, verifying them ([`BlobCheck::verify_with`]).
    pub fn read_with<T>(
        &mut self,
        id: &Id,
        loc: &BlobLocation,
        consume: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let key = self.fetch(id, loc)?;
        self.check
            .verify_with(&key, id, loc.kind, &self.buf, loc.raw_length, consume)
    }

    /// Reads a blob's compressed bytes into the buffer; returns the pack key.
    fn fetch(&mut self, id: &Id, loc: &BlobLocation) -> Result<String> {
        let key = ObjectKind::Pack(loc.kind).key(&loc.pack);
        if loc.raw_length > self.check.max_raw(loc.kind) || loc.length > MAX_COMPRESSED {
            return Err(Error::format(
                &key,
                format!(
                    "blob {id}: index claims {} / {} bytes, over the limit",
                    loc.length, loc.raw_length
                ),
            ));
        }
        if let Err(e) = self.read_raw(&key, loc) {
            self.open.retain(|(p, _, _)| *p != loc.pack);
            return Err(e);
        }
        Ok(key)
    }

    fn read_raw(&mut self, key: &str, loc: &BlobLocation) -> Result<()> {
        // Blobs of one file sit close together but not always in order
        // (compression runs in parallel), so seek either way inside the open
        // pack rather than paying for a new age header.
        match self.open.iter().position(|(p, _, _)| *p == loc.pack) {
            Some(0) => {}
            Some(i) => {
                let hit = self.open.remove(i);
                self.open.insert(0, hit);
            }
            None => {
                // Buffered: age parses the header a few bytes at a time.
                let body: Box<dyn ReadSeek> = Box::new(std::io::BufReader::with_capacity(
                    64 << 10,
                    self.repo.storage().open(key)?,
                ));
                let stream = self.repo.keys().keyring().decrypt_stream(body, key)?;
                self.open.truncate(OPEN_PACKS - 1);
                self.open.insert(0, (loc.pack, stream, 0));
            }
        }
        let (_, stream, pos) = &mut self.open[0];
        let io = |e: std::io::Error| {
            Error::format(key, format!("reading at offset {}: {e}", loc.offset))
        };
        if *pos != loc.offset as u64 {
            stream
                .seek(SeekFrom::Start(loc.offset as u64))
                .map_err(io)?;
        }
        // Read, never allocate, what the index claims: a lying length ends
        // at the end of the pack instead of costing its size in memory.
        self.buf.clear();
        let got = stream
            .by_ref()
            .take(loc.length as u64)
            .read_to_end(&mut self.buf)
            .map_err(io)?;
        *pos = loc.offset as u64 + got as u64;
        if got != loc.length as usize {
            return Err(Error::format(
                key,
                format!(
                    "the pack ends before the {} bytes claimed at offset {}",
                    loc.length, loc.offset
                ),
            ));
        }
        Ok(())
    }
}
