//! Reads blobs out of packs, keeping the last pack's decrypting stream open so
//! that consecutive blobs of one pack cost one age header and a forward seek.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};

use crate::crypto::DecryptStream;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId, TreeId};
use crate::format::index::BlobLocation;
use crate::format::pack::{ENTRY_LEN, decode_entries, trailer_count};
use crate::format::tree::{MAX_LISTED_IDS, Tree, parse_list};
use crate::repo::verify::{BlobCheck, MAX_COMPRESSED};
use crate::repo::{ObjectKind, Repository};
use crate::storage::ReadSeek;

/// A pack open for reading: its id, its decrypting stream, and the
/// plaintext position the stream is at.
type OpenPack = (PackId, DecryptStream<Box<dyn ReadSeek>>, u64);

/// Packs kept open per reader. A file changed since its first backup
/// alternates between old and new packs; reopening costs an X25519 unwrap
/// and a chunk decryption each time.
const OPEN_PACKS: usize = 8;

/// Trees of up to this many bytes are decompressed whole and parsed from
/// memory by [`BlobReader::read_tree`]: what a reader holds for one tree
/// either way, bounded so that a listing of millions of entries still
/// streams.
pub const TREE_IN_MEMORY: u32 = 1 << 20;

/// Locations read per blob at most: a blob that several index files claim
/// is read from the ones its pack's trailer lists first (see
/// [`BlobReader::read_indexed`]).
pub const MAX_ATTEMPTS: usize = 8;

/// A pack trailer's entries as (blob, offset, length, raw length).
type TrailerClaims = HashSet<(BlobId, u32, u32, u32)>;

/// A per-thread blob reader (owner key required for data and trees).
pub struct BlobReader<'a> {
    repo: &'a Repository,
    /// Most recently used first.
    open: Vec<OpenPack>,
    buf: Vec<u8>,
    check: BlobCheck<'a>,
    /// Trailers of packs holding contested blobs (`None`: unreadable).
    trailers: HashMap<PackId, Option<TrailerClaims>>,
    /// The last bundle of small files read ([`BlobReader::read_file_blob`]),
    /// verified: a directory's bundled files are read one after the other.
    bundle: Option<(BlobId, Vec<u8>)>,
}

impl<'a> BlobReader<'a> {
    /// A reader over `repo`.
    pub fn new(repo: &'a Repository) -> Self {
        BlobReader {
            repo,
            open: Vec::new(),
            buf: Vec::new(),
            check: BlobCheck::new(repo),
            trailers: HashMap::new(),
            bundle: None,
        }
    }

    /// The content of a file of one blob: the blob `id`, read from the first
    /// of its indexed locations that verifies, or for a bundled file (a
    /// `slice`, see [`crate::format::tree::Node::slice`]) its bytes in that
    /// bundle. The last bundle stays with the reader, so each of a
    /// directory's bundled files costs a copy, not a read of the bundle.
    pub fn read_file_blob(
        &mut self,
        id: &BlobId,
        slice: Option<std::ops::Range<usize>>,
        index: &crate::format::index::Index,
    ) -> Result<Vec<u8>> {
        let Some(range) = slice else {
            return self.read_indexed(id, index);
        };
        if self.bundle.as_ref().is_none_or(|(last, _)| last != id) {
            self.bundle = None;
            let data = self.read_indexed(id, index)?;
            self.bundle = Some((*id, data));
        }
        let (_, data) = self.bundle.as_ref().expect("read above");
        data.get(range.clone()).map(<[u8]>::to_vec).ok_or_else(|| {
            Error::format(
                format!("blob {id}"),
                format!(
                    "a bundle of {} bytes, but a file in it claims bytes {} to {}",
                    data.len(),
                    range.start,
                    range.end
                ),
            )
        })
    }

    /// Reads `id` from the first of its indexed locations that verifies.
    pub fn read_indexed(
        &mut self,
        id: &BlobId,
        index: &crate::format::index::Index,
    ) -> Result<Vec<u8>> {
        self.first_verified(id, index, |r, loc| r.read(id, loc))
    }

    /// The largest uncompressed length a blob of `kind` can honestly have.
    pub fn max_raw(&self, kind: crate::format::pack::BlobKind) -> u32 {
        self.check.max_raw(kind)
    }

    /// Reads `id` from the first of its indexed locations that verifies,
    /// decompressing it straight into `dest`, which must be exactly its
    /// length (see [`BlobCheck::verify_into`]).
    pub fn read_indexed_into(
        &mut self,
        id: &BlobId,
        index: &crate::format::index::Index,
        dest: &mut [u8],
    ) -> Result<()> {
        self.first_verified(id, index, |r, loc| {
            let key = r.fetch(id, loc)?;
            r.check.verify_into(&key, id, loc.kind, &r.buf, dest)
        })
    }

    /// Reads and parses tree `id` from the first of its indexed locations
    /// that verifies, refusing it while parsing once it holds more than
    /// `max_nodes` entries. A tree of up to [`TREE_IN_MEMORY`] bytes is
    /// decompressed whole and parsed from memory (several times faster than
    /// byte by byte); a larger one is parsed as it is decompressed, so a
    /// small blob inflating into a huge listing costs what is kept.
    pub fn read_tree(
        &mut self,
        id: &TreeId,
        index: &crate::format::index::Index,
        max_nodes: usize,
    ) -> Result<Tree> {
        let blob = id.blob();
        let mut tree = self.first_verified(&blob, index, |r, loc| {
            if loc.raw_length <= TREE_IN_MEMORY {
                let raw = r.read(&blob, loc)?;
                return Tree::from_bytes_bounded(&raw, id.id(), max_nodes);
            }
            r.read_with(&blob, loc, |raw| {
                Tree::from_reader_bounded(raw, id.id(), max_nodes)
            })
        })?;
        self.expand_lists(&mut tree, id, index)?;
        Ok(tree)
    }

    /// Fills in the `content` of every file that names content lists
    /// (format version 4) from those lists, each read and checked like any
    /// blob. A file never has more blobs than bytes, and one tree's lists
    /// expand into at most [`MAX_LISTED_IDS`] ids.
    fn expand_lists(
        &mut self,
        tree: &mut Tree,
        id: &TreeId,
        index: &crate::format::index::Index,
    ) -> Result<()> {
        let mut left = MAX_LISTED_IDS;
        for node in tree.nodes.iter_mut() {
            for list in &node.content_lists {
                let ids = parse_list(&self.read_indexed(list, index)?, list)?;
                if ids.len() > left || (node.content.len() + ids.len()) as u64 > node.size {
                    return Err(Error::format(
                        format!("tree {id}"),
                        format!(
                            "entry {:?}: its content lists name more blobs than its {} bytes \
                             or the {MAX_LISTED_IDS} a tree may list",
                            node.name, node.size
                        ),
                    ));
                }
                left -= ids.len();
                node.content.extend(ids);
            }
        }
        Ok(())
    }

    /// Tries the locations of `id` until one verifies. A blob with one
    /// location is read there. When several index files claim it (anyone
    /// who can write to the storage can add claims), the locations that
    /// their pack's own trailer lists come first, ahead of claims no pack
    /// makes, and at most [`MAX_ATTEMPTS`] are read: planted claims, however
    /// many, cost a trailer read per pack, not a decryption each.
    fn first_verified<T>(
        &mut self,
        id: &BlobId,
        index: &crate::format::index::Index,
        mut read: impl FnMut(&mut Self, &BlobLocation) -> Result<T>,
    ) -> Result<T> {
        let mut locations: Vec<BlobLocation> = index.locations(id).collect();
        if locations.len() > 1 {
            let unlisted: Vec<bool> = locations
                .iter()
                .map(|loc| !self.in_trailer(id, loc))
                .collect();
            let mut ranked: Vec<(bool, BlobLocation)> =
                unlisted.into_iter().zip(locations).collect();
            ranked.sort_by_key(|(unlisted, _)| *unlisted);
            locations = ranked.into_iter().map(|(_, loc)| loc).collect();
        }
        let mut first_error = None;
        for loc in locations.iter().take(MAX_ATTEMPTS) {
            match read(self, loc) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if locations.len() > MAX_ATTEMPTS {
            tracing::warn!(
                "blob {id}: {} of its {} claimed locations not tried",
                locations.len() - MAX_ATTEMPTS,
                locations.len()
            );
        }
        Err(first_error.unwrap_or_else(|| {
            Error::format(
                format!("blob {id}"),
                "is in no index (lost pack or index file)",
            )
        }))
    }

    /// Whether the trailer of `loc`'s pack lists exactly this blob there
    /// (read once per pack, from the end of its decrypting stream).
    fn in_trailer(&mut self, id: &BlobId, loc: &BlobLocation) -> bool {
        if !self.trailers.contains_key(&loc.pack) {
            let listed = match self.read_trailer(loc) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.open.retain(|(p, _, _)| *p != loc.pack);
                    tracing::debug!("trailer of pack {} unreadable: {e}", loc.pack);
                    None
                }
            };
            self.trailers.insert(loc.pack, listed);
        }
        self.trailers[&loc.pack]
            .as_ref()
            .is_some_and(|t| t.contains(&(*id, loc.offset, loc.length, loc.raw_length)))
    }

    fn read_trailer(&mut self, loc: &BlobLocation) -> Result<TrailerClaims> {
        let key = ObjectKind::Pack(loc.kind).key(&loc.pack);
        self.open_pack(&key, loc.pack)?;
        let (_, stream, pos) = &mut self.open[0];
        let io = |e: std::io::Error| Error::format(&key, format!("reading the trailer: {e}"));
        let end = stream.seek(SeekFrom::End(0)).map_err(io)?;
        if end < 12 {
            return Err(Error::format(&key, "too short for a pack trailer"));
        }
        let mut tail = [0u8; 12];
        stream.seek(SeekFrom::Start(end - 12)).map_err(io)?;
        stream.read_exact(&mut tail).map_err(io)?;
        let len = trailer_count(&tail, &key)? as u64 * ENTRY_LEN as u64;
        let start = (end - 12)
            .checked_sub(len)
            .ok_or_else(|| Error::format(&key, "pack trailer: entry count larger than the pack"))?;
        stream.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut raw = Vec::new();
        stream
            .by_ref()
            .take(len)
            .read_to_end(&mut raw)
            .map_err(io)?;
        *pos = start + raw.len() as u64;
        Ok(decode_entries(&raw, start, &key)?
            .into_iter()
            .filter(|e| e.kind == loc.kind)
            .map(|e| (e.id, e.offset, e.length, e.raw_length))
            .collect())
    }

    /// Reads one blob at one location, verifies it, and returns it still
    /// compressed (as stored in the pack), for copying it into another pack.
    pub fn read_compressed(&mut self, id: &BlobId, loc: &BlobLocation) -> Result<Vec<u8>> {
        self.read(id, loc)?;
        Ok(self.buf.clone())
    }

    /// Reads, decompresses and verifies one blob at one location
    /// ([`BlobCheck::verify`]: exact length, keyed id).
    pub fn read(&mut self, id: &BlobId, loc: &BlobLocation) -> Result<Vec<u8>> {
        let key = self.fetch(id, loc)?;
        self.check
            .verify(&key, id, loc.kind, &self.buf, loc.raw_length)
    }

    /// Reads one blob at one location and streams its raw bytes into
    /// `consume`, verifying them ([`BlobCheck::verify_with`]).
    pub fn read_with<T>(
        &mut self,
        id: &BlobId,
        loc: &BlobLocation,
        consume: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let key = self.fetch(id, loc)?;
        self.check
            .verify_with(&key, id, loc.kind, &self.buf, loc.raw_length, consume)
    }

    /// Reads a blob's compressed bytes into the buffer; returns the pack key.
    fn fetch(&mut self, id: &BlobId, loc: &BlobLocation) -> Result<String> {
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
        self.open_pack(key, loc.pack)?;
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

    /// Makes `pack` the first open pack, opening it if need be.
    fn open_pack(&mut self, key: &str, pack: PackId) -> Result<()> {
        match self.open.iter().position(|(p, _, _)| *p == pack) {
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
                self.open.insert(0, (pack, stream, 0));
            }
        }
        Ok(())
    }
}
