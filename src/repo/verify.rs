//! The one place that decides whether bytes are a genuine blob or a genuine
//! pack. Restore, `ls`, `check --read-data`, `copy` and `prune` all verify
//! through here, so a rule added here holds for every one of them.
//!
//! A blob is genuine when its compressed bytes decompress to exactly its
//! recorded `raw_length` and the keyed BLAKE3 of the result is its id. A
//! salted blob (format 3, [`crate::format::salt`]) names its salt id in its
//! padding frame: its id is keyed with the key of that salt, which only an
//! owner derives, and its recorded length is its length rounded up to 64.
//! Index files are not authenticated, so every location is a claim until
//! this says otherwise.

use std::collections::HashMap;
use std::io::Read;
use std::marker::PhantomData;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::pack::{BlobKind, PackEntry, decode_trailer};
use crate::format::salt::{self, SALTED_BLOB_MAX};
use crate::repo::keys::SaltKeys;
use crate::repo::{ObjectKind, Repository};

/// The largest blob vault writes or decompresses (guards against lying
/// indexes). Only tree blobs can get near it: a directory listing the chunk
/// ids of more than ~128 GiB of files. Data blobs are chunks, never larger
/// than the chunker's `max_size` (at most 16 MiB).
pub const MAX_BLOB: u32 = 512 << 20;

/// The largest compressed length accepted for a blob of `MAX_BLOB` bytes
/// (zstd's worst case for incompressible input, plus room).
pub const MAX_COMPRESSED: u32 = MAX_BLOB + (MAX_BLOB >> 7) + (1 << 20);

/// Verifies blobs for one repository, reusing one zstd context.
pub struct BlobCheck<'k> {
    keys: SaltKeys,
    /// Keys of salted ids met so far, by salt id (`None`: not derivable).
    salted: HashMap<[u8; 32], Option<Zeroizing<[u8; 32]>>>,
    max_data: u32,
    decompressor: zstd::bulk::Decompressor<'static>,
    _keys: PhantomData<&'k ()>,
}

/// What a blob's decompressed length must be.
#[derive(Clone, Copy)]
enum Expected {
    /// Exactly the recorded raw length (unsalted blobs).
    Exact(u32),
    /// At most [`SALTED_BLOB_MAX`] bytes, rounded up to the recorded raw length
    /// (salted blobs: the index shows only rounded lengths).
    Rounded(u32),
}

impl Expected {
    fn accepts(self, got: u64) -> bool {
        match self {
            Expected::Exact(n) => got == n as u64,
            Expected::Rounded(n) => {
                got <= SALTED_BLOB_MAX && u64::from(salt::rounded(got as u32)) == n as u64
            }
        }
    }

    fn recorded(self) -> u32 {
        match self {
            Expected::Exact(n) | Expected::Rounded(n) => n,
        }
    }
}

impl<'k> BlobCheck<'k> {
    /// A checker for the blobs of `repo`: salted blobs verify only for an
    /// owner, who derives every writer key's salt.
    pub fn new(repo: &'k Repository) -> Self {
        Self::with_keys(repo.keys().salt_keys(), repo.config().chunker.max_size)
    }

    /// A checker for unsalted blobs keyed with `chunk_key` whose data blobs
    /// are at most `max_chunk` bytes (the chunker's `max_size`).
    pub fn with_key(chunk_key: &'k [u8; 32], max_chunk: u32) -> Self {
        Self::with_keys(SaltKeys::unsalted(chunk_key), max_chunk)
    }

    /// A checker for blobs keyed with `keys` whose data blobs are at most
    /// `max_chunk` bytes.
    pub fn with_keys(keys: SaltKeys, max_chunk: u32) -> Self {
        BlobCheck {
            keys,
            salted: HashMap::new(),
            max_data: max_chunk,
            decompressor: zstd::bulk::Decompressor::new().expect("a zstd context"),
            _keys: PhantomData,
        }
    }

    /// The largest `raw_length` a blob of `kind` can honestly have.
    pub fn max_raw(&self, kind: BlobKind) -> u32 {
        max_raw(kind, self.max_data)
    }

    /// Decompresses one blob and checks it is exactly `raw_length` bytes whose
    /// keyed id is `id` (a salted blob: up to `raw_length` rounded, keyed
    /// with its salt); returns the raw bytes. `subject` names the pack in
    /// errors.
    pub fn verify(
        &mut self,
        subject: &str,
        id: &BlobId,
        kind: BlobKind,
        compressed: &[u8],
        raw_length: u32,
    ) -> Result<Vec<u8>> {
        let (key, frame, expected) = self.precheck(subject, id, kind, compressed, raw_length)?;
        let raw = self
            .decompressor
            .decompress(frame, raw_length as usize)
            .map_err(|e| Error::format(subject, format!("blob {id}: bad zstd data: {e}")))?;
        let mut hasher = blake3::Hasher::new_keyed(&key);
        hasher.update(&raw);
        conclude(subject, id, expected, raw.len() as u64, hasher)?;
        Ok(raw)
    }

    /// Like [`BlobCheck::verify`], but decompresses straight into `dest`,
    /// which must be exactly the `raw_length` the blob is checked against
    /// (an unsalted blob: its length is exact). Nothing is allocated; on an
    /// error `dest` holds junk the caller must not use.
    pub fn verify_into(
        &mut self,
        subject: &str,
        id: &BlobId,
        kind: BlobKind,
        compressed: &[u8],
        dest: &mut [u8],
    ) -> Result<()> {
        let raw_length = u32::try_from(dest.len())
            .map_err(|_| Error::format(subject, format!("blob {id}: over the blob limit")))?;
        let (key, frame, expected) = self.precheck(subject, id, kind, compressed, raw_length)?;
        // A frame inflating past `dest` is refused by zstd, not truncated.
        let got = self
            .decompressor
            .decompress_to_buffer(frame, dest)
            .map_err(|e| Error::format(subject, format!("blob {id}: bad zstd data: {e}")))?;
        if got != dest.len() {
            return Err(Error::format(
                subject,
                format!("blob {id}: decompresses to {got} bytes, not the {raw_length} recorded"),
            ));
        }
        let mut hasher = blake3::Hasher::new_keyed(&key);
        hasher.update(dest);
        conclude(subject, id, expected, got as u64, hasher)
    }

    /// Like [`BlobCheck::verify`], but decompresses into `scratch`, a
    /// buffer reused from blob to blob (grown, zeroed, only when a blob is
    /// larger than any before), and returns nothing: what `check
    /// --read-data` needs. Blobs larger than a data chunk can be (trees)
    /// go through [`BlobCheck::verify`], so `scratch` stays within a chunk.
    pub fn verify_reusing(
        &mut self,
        subject: &str,
        id: &BlobId,
        kind: BlobKind,
        compressed: &[u8],
        raw_length: u32,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        if raw_length > self.max_raw(BlobKind::Data) {
            return self
                .verify(subject, id, kind, compressed, raw_length)
                .map(|_| ());
        }
        let (key, frame, expected) = self.precheck(subject, id, kind, compressed, raw_length)?;
        let len = raw_length as usize;
        if scratch.len() < len {
            scratch.reserve_exact(len - scratch.len());
            scratch.resize(len, 0);
        }
        // As in `verify`: room for exactly `raw_length` bytes, so a frame
        // inflating past it is refused by zstd, not truncated.
        let dest = &mut scratch[..len];
        let got = self
            .decompressor
            .decompress_to_buffer(frame, dest)
            .map_err(|e| Error::format(subject, format!("blob {id}: bad zstd data: {e}")))?;
        let mut hasher = blake3::Hasher::new_keyed(&key);
        hasher.update(&dest[..got]);
        conclude(subject, id, expected, got as u64, hasher)
    }

    /// Like [`BlobCheck::verify`], but streams the raw bytes into `consume`
    /// instead of holding them: a tree is parsed as it is decompressed, so a
    /// small blob that inflates into a huge listing costs only what
    /// `consume` keeps. The checks run once `consume` returns (the rest of
    /// the blob is drained and hashed); its result is returned only if they
    /// pass.
    pub fn verify_with<T>(
        &mut self,
        subject: &str,
        id: &BlobId,
        kind: BlobKind,
        compressed: &[u8],
        raw_length: u32,
        consume: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<T> {
        let (key, frame, expected) = self.precheck(subject, id, kind, compressed, raw_length)?;
        let decoder = zstd::stream::read::Decoder::with_buffer(frame)
            .map_err(|e| Error::format(subject, format!("blob {id}: bad zstd data: {e}")))?;
        let mut raw = Hashing {
            inner: decoder.take(raw_length as u64 + 1),
            hasher: blake3::Hasher::new_keyed(&key),
            count: 0,
        };
        {
            let mut buffered = std::io::BufReader::with_capacity(64 << 10, &mut raw);
            // A consumer that gives up (a tree over its budget, junk at a
            // planted location) ends the read: nothing more is inflated.
            let value = consume(&mut buffered)?;
            std::io::copy(&mut buffered, &mut std::io::sink())
                .map_err(|e| Error::format(subject, format!("blob {id}: bad zstd data: {e}")))?;
            drop(buffered);
            conclude(subject, id, expected, raw.count, raw.hasher)?;
            Ok(value)
        }
    }

    /// The key `id` must be a keyed hash under: the chunk-id key, or for a
    /// salted blob the key of its salt.
    fn id_key(
        &mut self,
        subject: &str,
        id: &BlobId,
        salt_id: Option<&[u8; 32]>,
    ) -> Result<[u8; 32]> {
        let Some(salt_id) = salt_id else {
            return Ok(*self.keys.chunk_key());
        };
        let keys = &self.keys;
        match self
            .salted
            .entry(*salt_id)
            .or_insert_with(|| keys.salted_id_key(salt_id))
        {
            Some(k) => Ok(**k),
            None => Err(Error::format(
                subject,
                format!("blob {id}: a salted blob verifies only with the repository owner key"),
            )),
        }
    }

    /// The checks that need no decompression; returns the id key, the zstd
    /// frame and the length the frame must decompress to.
    fn precheck<'c>(
        &mut self,
        subject: &str,
        id: &BlobId,
        kind: BlobKind,
        compressed: &'c [u8],
        raw_length: u32,
    ) -> Result<([u8; 32], &'c [u8], Expected)> {
        let limit = self.max_raw(kind);
        if raw_length > limit || compressed.len() as u64 > MAX_COMPRESSED as u64 {
            return Err(Error::format(
                subject,
                format!(
                    "blob {id}: claims {} compressed / {raw_length} raw bytes, over the limit \
                     for a {} blob ({limit})",
                    compressed.len(),
                    kind.folder()
                ),
            ));
        }
        let (salt_id, frame) = salt::unwrap(compressed)
            .map_err(|why| Error::format(subject, format!("blob {id}: {why}")))?;
        let expected = match salt_id {
            None => Expected::Exact(raw_length),
            Some(_)
                if raw_length as u64 > SALTED_BLOB_MAX || !raw_length.is_multiple_of(salt::PAD) =>
            {
                return Err(Error::format(
                    subject,
                    format!(
                        "blob {id}: salted, but its recorded length {raw_length} is not a \
                         multiple of {} up to {SALTED_BLOB_MAX}",
                        salt::PAD
                    ),
                ));
            }
            Some(_) => Expected::Rounded(raw_length),
        };
        let key = self.id_key(subject, id, salt_id.as_ref())?;
        // vault records the content size in every frame: a frame that says
        // otherwise is refused before anything is allocated for it.
        match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(declared)) if !expected.accepts(declared) => Err(Error::format(
                subject,
                format!("blob {id}: its zstd frame holds {declared} bytes, not {raw_length}"),
            )),
            Ok(None) | Err(_) if salt_id.is_some() => Err(Error::format(
                subject,
                format!("blob {id}: a salted blob's zstd frame must declare its size"),
            )),
            _ => Ok((key, frame, expected)),
        }
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The checks on what a blob decompressed to: the length `expected` and a
/// keyed hash equal to `id`.
fn conclude(
    subject: &str,
    id: &BlobId,
    expected: Expected,
    got: u64,
    hasher: blake3::Hasher,
) -> Result<()> {
    if !expected.accepts(got) {
        let raw_length = expected.recorded();
        return Err(Error::format(
            subject,
            format!(
                "blob {id}: decompresses to {got}{} bytes, not the {raw_length} recorded",
                if got > raw_length as u64 {
                    " or more"
                } else {
                    ""
                }
            ),
        ));
    }
    if BlobId(hasher.finalize().into()) != *id {
        return Err(Error::format(
            subject,
            format!("blob {id}: content does not match its id"),
        ));
    }
    Ok(())
}

/// The largest `raw_length` of a blob of `kind` in a repository whose
/// chunker cuts at most `max_chunk` bytes: a salted chunk's is recorded
/// rounded up to a multiple of 64, so up to 63 bytes more.
pub fn max_raw(kind: BlobKind, max_chunk: u32) -> u32 {
    match kind {
        BlobKind::Data => salt::rounded(max_chunk.min(MAX_BLOB)),
        BlobKind::Tree => MAX_BLOB,
    }
}

/// One trailer entry of a verified pack and whether its blob verified.
pub type EntryVerdict = (PackEntry, Result<()>);

/// Buffers reused from pack to pack, so memory stays at about one pack's
/// plaintext, 1 MiB and one chunk per thread however many packs are
/// verified.
#[derive(Default)]
pub struct PackBuffers {
    /// The stored size of the pack last read.
    stored_len: u64,
    /// The plaintext of the pack last read, at the start of a buffer that
    /// only grows (see [`read_all`]).
    plain: Vec<u8>,
    /// One blob's raw bytes ([`BlobCheck::verify_reusing`]).
    raw: Vec<u8>,
}

impl PackBuffers {
    /// The stored size of the pack last read into these buffers.
    pub fn stored_len(&self) -> u64 {
        self.stored_len
    }
}

/// Reads pack `id` of `kind` from storage and verifies it
/// ([`verify_pack_bytes`]).
pub fn verify_stored_pack(
    repo: &Repository,
    id: &PackId,
    kind: BlobKind,
    bufs: &mut PackBuffers,
) -> Result<Vec<EntryVerdict>> {
    verify_stored_pack_entries(repo, id, kind, bufs, |_| true)
}

/// Reads pack `id` of `kind` from storage once and verifies the trailer
/// entries `wanted` picks, with the checks of [`verify_pack_entries`].
///
/// The stored bytes are not held: they are hashed for the pack's name as
/// they stream from storage into decryption, a 1 MiB piece at a time
/// while it is in the cache. Nothing decrypted is looked at before the
/// whole object has been read and its name found to match; a damaged pack
/// is reported as damaged (not as undecryptable), a storage failure as
/// such.
pub fn verify_stored_pack_entries(
    repo: &Repository,
    id: &PackId,
    kind: BlobKind,
    bufs: &mut PackBuffers,
    wanted: impl Fn(&PackEntry) -> bool,
) -> Result<Vec<EntryVerdict>> {
    let key = ObjectKind::Pack(kind).key(id);
    bufs.stored_len = 0;
    let mut source = Named {
        inner: repo.storage().open(&key)?,
        hasher: blake3::Hasher::new(),
        count: 0,
        failed: None,
    };
    let (decrypted, drained) = {
        // Read from storage 1 MiB at a time (hashed while it is in the
        // cache; age takes its 64 KiB chunks from there): reading 64 KiB at
        // a time straight from a file cost twice the kernel's copying time.
        let mut buffered = std::io::BufReader::with_capacity(1 << 20, &mut source);
        let decrypted = decrypt_into(repo, &key, &mut buffered, &mut bufs.plain);
        // The name covers every byte: what decryption left (nothing, or the
        // rest of a damaged pack) is read and hashed too.
        let drained = std::io::copy(&mut buffered, &mut std::io::sink());
        (decrypted, drained)
    };
    bufs.stored_len = source.count;
    if let Some(e) = source.failed.take() {
        return Err(crate::storage::StorageError::from_io(&key, e).into());
    }
    if let Err(e) = drained {
        return Err(crate::storage::StorageError::from_io(&key, e).into());
    }
    if PackId(source.hasher.finalize().into()) != *id {
        return Err(damaged(&key));
    }
    let len = decrypted?;
    verify_plain(repo, &key, kind, &bufs.plain[..len], &mut bufs.raw, wanted)
}

/// A stored object's reader that hashes (for its name) and counts every
/// byte passing through, and keeps the storage's own error, so that it is
/// told apart from a decryption failure.
struct Named<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
    failed: Option<std::io::Error>,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.failed.get_or_insert(e);
                Err(std::io::Error::new(kind, "reading from storage failed"))
            }
        }
    }
}

fn damaged(key: &str) -> Error {
    Error::format(key, "content does not match its name (damaged pack)")
}

/// Decrypts `stored` into the start of `plain` ([`read_all`]); returns the
/// plaintext's length.
fn decrypt_into(
    repo: &Repository,
    key: &str,
    stored: impl Read,
    plain: &mut Vec<u8>,
) -> Result<usize> {
    let mut stream = repo.keys().keyring().decrypt_stream(stored, key)?;
    read_all(&mut stream, plain).map_err(|e| Error::format(key, format!("decryption failed: {e}")))
}

/// Reads `r` to its end into the start of `buf`; returns how many bytes it
/// read. `buf`'s length is a high-water mark: it grows (by a quarter, at
/// least 1 MiB; zeroed once) only when a read does not fit, and is never
/// cut, so reading pack after pack into it neither allocates nor zeroes
/// (`read_to_end` zeroes the spare room every call).
fn read_all(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut n = 0;
    loop {
        if n == buf.len() {
            let grow = (buf.len() / 4).max(1 << 20);
            buf.reserve_exact(grow);
            buf.resize(buf.len() + grow, 0);
        }
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(n),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Verifies a whole pack held in memory: its name is the BLAKE3 of its
/// bytes, it decrypts, its trailer parses, and every trailer entry is a blob
/// of the pack's own kind that verifies ([`BlobCheck::verify`]). A pack
/// that cannot be read at all is an `Err`; otherwise every entry comes back
/// with its own verdict. `plain` is scratch room for the plaintext, reused
/// from call to call.
pub fn verify_pack_bytes(
    repo: &Repository,
    id: &PackId,
    kind: BlobKind,
    stored: &[u8],
    plain: &mut Vec<u8>,
) -> Result<Vec<EntryVerdict>> {
    verify_pack_entries(repo, id, kind, stored, plain, |_| true)
}

/// Like [`verify_pack_bytes`], but verifies only the trailer entries that
/// `wanted` picks (the pack is still decrypted whole, once): what a claim
/// that names no trailer entry costs is nothing beyond that one read.
pub fn verify_pack_entries(
    repo: &Repository,
    id: &PackId,
    kind: BlobKind,
    stored: &[u8],
    plain: &mut Vec<u8>,
    wanted: impl Fn(&PackEntry) -> bool,
) -> Result<Vec<EntryVerdict>> {
    let key = ObjectKind::Pack(kind).key(id);
    if PackId::of_bytes(stored) != *id {
        return Err(damaged(&key));
    }
    let len = decrypt_into(repo, &key, stored, plain)?;
    verify_plain(repo, &key, kind, &plain[..len], &mut Vec::new(), wanted)
}

/// The checks on a pack's plaintext `plain` (named `key` in errors): its
/// trailer parses, and every trailer entry `wanted` picks is a blob of
/// `kind` that verifies ([`BlobCheck::verify_reusing`], in `raw`).
fn verify_plain(
    repo: &Repository,
    key: &str,
    kind: BlobKind,
    plain: &[u8],
    raw: &mut Vec<u8>,
    wanted: impl Fn(&PackEntry) -> bool,
) -> Result<Vec<EntryVerdict>> {
    let entries = decode_trailer(plain, key)?;
    let mut check = BlobCheck::new(repo);
    Ok(entries
        .into_iter()
        .filter(|e| wanted(e))
        .map(|e| {
            let verdict = if e.kind != kind {
                Err(Error::format(
                    key,
                    format!(
                        "blob {}: the trailer calls it a {} blob in a {} pack",
                        e.id,
                        e.kind.folder(),
                        kind.folder()
                    ),
                ))
            } else {
                // decode_trailer checked that every blob lies in the blob area.
                let slice = &plain[e.offset as usize..e.offset as usize + e.length as usize];
                check.verify_reusing(key, &e.id, kind, slice, e.raw_length, raw)
            };
            (e, verdict)
        })
        .collect())
}

/// The verified entries of a pack, or the first failure.
pub fn all_verified(verdicts: Vec<EntryVerdict>) -> Result<Vec<PackEntry>> {
    verdicts.into_iter().map(|(e, v)| v.map(|()| e)).collect()
}

/// Runs `f` over `items` on every available core, one item at a time, and
/// returns the results in the order of `items`. Each worker gets its own
/// `state` (buffers, readers).
pub fn parallel<T: Sync, S, R: Send>(
    items: &[T],
    state: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(items.len()));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut st = state();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(&mut st, item);
                    results.lock().expect("results lock").push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn both(
        check: &mut BlobCheck<'_>,
        id: &BlobId,
        kind: BlobKind,
        compressed: &[u8],
        raw_length: u32,
    ) -> (Result<Vec<u8>>, Result<Vec<u8>>) {
        let bulk = check.verify("pack", id, kind, compressed, raw_length);
        let streamed = check.verify_with("pack", id, kind, compressed, raw_length, |r| {
            let mut out = Vec::new();
            r.read_to_end(&mut out)
                .map_err(|e| Error::format("test", e.to_string()))?;
            Ok(out)
        });
        (bulk, streamed)
    }

    #[test]
    fn a_blob_must_decompress_to_exactly_its_recorded_length_and_id() {
        let mut check = BlobCheck::with_key(&KEY, 1024);
        let raw = b"hello, world".to_vec();
        let id = BlobId::keyed(&KEY, &raw);
        let framed = zstd::bulk::compress(&raw, 3).unwrap();
        // Without the content size in the frame, only decompressing tells.
        let mut bare = Vec::new();
        {
            let mut e = zstd::stream::write::Encoder::new(&mut bare, 3).unwrap();
            e.include_contentsize(false).unwrap();
            std::io::Write::write_all(&mut e, &raw).unwrap();
            e.finish().unwrap();
        }
        for compressed in [&framed, &bare] {
            let (a, b) = both(&mut check, &id, BlobKind::Data, compressed, 12);
            assert_eq!(a.unwrap(), raw);
            assert_eq!(b.unwrap(), raw);
            for wrong in [11, 13] {
                let (a, b) = both(&mut check, &id, BlobKind::Data, compressed, wrong);
                assert!(a.is_err() && b.is_err(), "raw_length {wrong} accepted");
            }
        }
        let other = BlobId::keyed(&KEY, b"something else");
        let (a, b) = both(&mut check, &other, BlobKind::Data, &framed, 12);
        assert!(a.unwrap_err().to_string().contains("does not match its id"));
        assert!(b.unwrap_err().to_string().contains("does not match its id"));
    }

    #[test]
    fn a_salted_blob_verifies_only_under_its_salt_with_the_owner_key() {
        let owner = "AGE-SECRET-KEY-1TEST";
        let salt_id = [3u8; 32];
        let salted_key = salt::salted_id_key(&KEY, &salt::derive_salt(owner, &salt_id));
        let raw = b"db_password=hunter2\n".to_vec();
        let id = BlobId::keyed(&salted_key, &raw);
        let stored = salt::wrap(&salt_id, &zstd::bulk::compress(&raw, 3).unwrap());
        let mut owner_check = BlobCheck::with_keys(SaltKeys::for_owner(&KEY, owner), 1 << 16);
        let (a, b) = both(&mut owner_check, &id, BlobKind::Data, &stored, 64);
        assert_eq!(a.unwrap(), raw);
        assert_eq!(b.unwrap(), raw);
        // The exact length is not what the index records, nor is 128.
        for wrong in [20, 128, 0] {
            let (a, b) = both(&mut owner_check, &id, BlobKind::Data, &stored, wrong);
            assert!(a.is_err() && b.is_err(), "raw_length {wrong} accepted");
        }
        // The unsalted id of the same content, or another salt id, fails.
        let (a, _) = both(
            &mut owner_check,
            &BlobId::keyed(&KEY, &raw),
            BlobKind::Data,
            &stored,
            64,
        );
        assert!(a.unwrap_err().to_string().contains("does not match its id"));
        let other = salt::wrap(&[4u8; 32], &zstd::bulk::compress(&raw, 3).unwrap());
        let (a, _) = both(&mut owner_check, &id, BlobKind::Data, &other, 64);
        assert!(a.unwrap_err().to_string().contains("does not match its id"));
        // Another repository owner key derives another salt.
        let mut stranger =
            BlobCheck::with_keys(SaltKeys::for_owner(&KEY, "AGE-SECRET-KEY-1OTHER"), 1 << 16);
        assert!(
            both(&mut stranger, &id, BlobKind::Data, &stored, 64)
                .0
                .is_err()
        );
        // Without the owner key, a salted blob does not verify at all.
        let mut writer = BlobCheck::with_key(&KEY, 1 << 16);
        let (a, _) = both(&mut writer, &id, BlobKind::Data, &stored, 64);
        assert!(a.unwrap_err().to_string().contains("owner key"));
        // A truncated padding frame is refused.
        let (a, _) = both(&mut owner_check, &id, BlobKind::Data, &stored[..40], 64);
        assert!(a.is_err());
    }

    /// A writer key stores salted blobs, and so picks their lengths: one
    /// as large as the largest bundle verifies, one byte more is refused
    /// by its recorded length, naming the limit, whatever the chunker
    /// allows.
    #[test]
    fn vector_a_salted_blob_past_the_largest_bundle_is_refused() {
        let owner = "AGE-SECRET-KEY-1TEST";
        let salt_id = [3u8; 32];
        let salted_key = salt::salted_id_key(&KEY, &salt::derive_salt(owner, &salt_id));
        let mut check = BlobCheck::with_keys(SaltKeys::for_owner(&KEY, owner), 1 << 20);
        let max = SALTED_BLOB_MAX as usize;
        for (len, fits) in [(max, true), (max + 1, false)] {
            let raw = vec![b'a'; len];
            let id = BlobId::keyed(&salted_key, &raw);
            let stored = salt::wrap(&salt_id, &zstd::bulk::compress(&raw, 3).unwrap());
            let recorded = salt::rounded(len as u32);
            let (a, b) = both(&mut check, &id, BlobKind::Data, &stored, recorded);
            if fits {
                assert_eq!(a.unwrap(), raw);
                assert_eq!(b.unwrap(), raw);
            } else {
                let why = a.unwrap_err().to_string();
                assert!(why.contains("up to 65536"), "{why}");
                assert!(b.is_err());
            }
        }
    }

    #[test]
    fn a_data_blob_larger_than_a_chunk_is_refused_before_decompressing() {
        let mut check = BlobCheck::with_key(&KEY, 8);
        let raw = vec![0u8; 100];
        let id = BlobId::keyed(&KEY, &raw);
        let compressed = zstd::bulk::compress(&raw, 3).unwrap();
        let (a, _) = both(&mut check, &id, BlobKind::Data, &compressed, 100);
        assert!(a.unwrap_err().to_string().contains("over the limit"));
        let (a, b) = both(&mut check, &id, BlobKind::Tree, &compressed, 100);
        assert!(a.is_ok() && b.is_ok(), "trees may be larger than chunks");
    }

    /// A repository in memory, opened with its owner key, and its storage.
    fn owner_repo(
        dir: &std::path::Path,
    ) -> (
        Repository,
        std::sync::Arc<crate::storage::memory::MemoryStorage>,
    ) {
        use crate::repo::{Access, InitOptions, OwnerSpec};
        let storage = std::sync::Arc::new(crate::storage::memory::MemoryStorage::new());
        let (text, recipient) = crate::crypto::generate_x25519();
        let owner = dir.join("owner.key");
        crate::crypto::write_key_file(&owner, &text).unwrap();
        Repository::init(
            storage.clone(),
            &InitOptions {
                owner: OwnerSpec::Recipients(vec![recipient]),
                owner_name: "ops".into(),
                writer_key_out: dir.join("writer.key"),
                chunker: crate::format::chunk::ChunkerParams::default(),
                pack_size: 16 << 20,
                compression_level: 3,
                object_lock: None,
            },
        )
        .unwrap();
        let repo = Repository::open(storage.clone(), Access::IdentityFile(&owner)).unwrap();
        (repo, storage)
    }

    /// Stores a data pack of `blobs` (raw bytes, and the bytes its id is
    /// made of) as a backup does; returns its id.
    fn store_pack(repo: &Repository, blobs: &[(&[u8], &[u8])]) -> PackId {
        let seal = repo.keys().owner_only();
        let mut b = crate::repo::packer::PackBuilder::new(BlobKind::Data, &seal, 0).unwrap();
        for (raw, named) in blobs {
            let id = BlobId::keyed(repo.keys().chunk_key(), named);
            let compressed = zstd::bulk::compress(raw, 3).unwrap();
            b.add(id, &compressed, raw.len() as u32).unwrap();
        }
        let p = b.finish().unwrap();
        repo.storage()
            .put(&ObjectKind::Pack(BlobKind::Data).key(&p.id), &p.bytes)
            .unwrap();
        p.id
    }

    fn text(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| b"abcdefgh \n"[(i * 7 + seed as usize + i / 97) % 10])
            .collect()
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        crate::format::testdata::xorshift(n, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    #[test]
    fn a_damaged_blob_in_the_middle_of_a_pack_is_reported_by_its_id_and_the_others_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = owner_repo(dir.path());
        // 40 incompressible blobs: the pack spans several 1 MiB reads and
        // many 64 KiB age chunks. Blob 20 holds other bytes than its id names.
        let raws: Vec<Vec<u8>> = (0..40).map(|i| noise(60_000, i + 1)).collect();
        let other = noise(60_000, 99);
        let blobs: Vec<(&[u8], &[u8])> = raws
            .iter()
            .enumerate()
            .map(|(i, r)| (if i == 20 { &other[..] } else { &r[..] }, &r[..]))
            .collect();
        let pack = store_pack(&repo, &blobs);
        let stored = repo
            .storage()
            .get(&ObjectKind::Pack(BlobKind::Data).key(&pack))
            .unwrap();
        assert!(stored.len() > 2 << 20);
        let bad = BlobId::keyed(repo.keys().chunk_key(), &raws[20]);
        let mut bufs = PackBuffers::default();
        // Twice through the same buffers: the second pass must not see the first's bytes.
        for _ in 0..2 {
            let verdicts = verify_stored_pack(&repo, &pack, BlobKind::Data, &mut bufs).unwrap();
            assert_eq!(verdicts.len(), 40);
            for (i, (entry, verdict)) in verdicts.iter().enumerate() {
                if i == 20 {
                    assert_eq!(entry.id, bad);
                    let err = verdict.as_ref().unwrap_err().to_string();
                    assert!(err.contains(&bad.to_string()), "{err}");
                    assert!(err.contains("does not match its id"), "{err}");
                } else {
                    assert!(verdict.is_ok(), "blob {i}: {verdict:?}");
                }
            }
            assert_eq!(bufs.stored_len(), stored.len() as u64);
            // The in-memory path says the same.
            let mut plain = Vec::new();
            let same =
                verify_pack_bytes(&repo, &pack, BlobKind::Data, &stored, &mut plain).unwrap();
            let failed: Vec<usize> = (0..40).filter(|&i| same[i].1.is_err()).collect();
            assert_eq!(failed, [20]);
        }
        // A smaller pack after it, in the same buffers.
        let small = store_pack(&repo, &[(b"tiny", b"tiny")]);
        let verdicts = verify_stored_pack(&repo, &small, BlobKind::Data, &mut bufs).unwrap();
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts[0].1.is_ok());
    }

    #[test]
    fn a_stored_pack_changed_anywhere_is_reported_as_damaged_not_as_undecryptable() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, storage) = owner_repo(dir.path());
        let raws: Vec<Vec<u8>> = (0..25).map(|i| noise(60_000, i + 50)).collect();
        let blobs: Vec<(&[u8], &[u8])> = raws.iter().map(|r| (&r[..], &r[..])).collect();
        let pack = store_pack(&repo, &blobs);
        let key = ObjectKind::Pack(BlobKind::Data).key(&pack);
        let good = repo.storage().get(&key).unwrap();
        let mut bufs = PackBuffers::default();
        // In the age header, the first chunk, past the first 1 MiB read, the
        // last byte; cut short; one byte more.
        let mut variants = Vec::new();
        for at in [10, 1000, 1_200_000, good.len() - 1] {
            let mut v = good.clone();
            v[at] ^= 1;
            variants.push(v);
        }
        variants.push(good[..good.len() - 100].to_vec());
        variants.push([&good[..], b"x"].concat());
        for bytes in variants {
            storage.tamper(&key, &bytes);
            let err = verify_stored_pack(&repo, &pack, BlobKind::Data, &mut bufs).unwrap_err();
            assert!(err.to_string().contains("damaged pack"), "{err}");
            assert_eq!(bufs.stored_len(), bytes.len() as u64);
        }
        storage.tamper(&key, &good);
        assert!(
            all_verified(verify_stored_pack(&repo, &pack, BlobKind::Data, &mut bufs).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn read_all_reads_to_the_end_into_a_buffer_that_only_grows() {
        /// Hands out at most 1,000 bytes a read.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let big = text(3 << 20, 6);
        let mut buf = Vec::new();
        assert_eq!(read_all(&mut Dribble(&big), &mut buf).unwrap(), big.len());
        assert_eq!(&buf[..big.len()], &big[..]);
        let high = buf.len();
        assert!(high >= big.len() && high < big.len() + (big.len() / 2).max(1 << 20));
        let small = text(5000, 7);
        assert_eq!(
            read_all(&mut Dribble(&small), &mut buf).unwrap(),
            small.len()
        );
        assert_eq!(&buf[..small.len()], &small[..]);
        assert_eq!(buf.len(), high, "the buffer is reused, not cut");
        assert_eq!(read_all(&mut Dribble(&[]), &mut buf).unwrap(), 0);
    }

    #[test]
    fn verify_reusing_agrees_with_verify() {
        let mut check = BlobCheck::with_key(&KEY, 1 << 16);
        let mut scratch = Vec::new();
        let raw = text(40_000, 8);
        let id = BlobId::keyed(&KEY, &raw);
        let compressed = zstd::bulk::compress(&raw, 3).unwrap();
        for (id, len, ok) in [
            (id, 40_000, true),
            (id, 39_999, false),
            (id, 40_001, false),
            (BlobId::keyed(&KEY, b"x"), 40_000, false),
        ] {
            let a = check.verify("pack", &id, BlobKind::Data, &compressed, len);
            let b =
                check.verify_reusing("pack", &id, BlobKind::Data, &compressed, len, &mut scratch);
            assert_eq!(a.is_ok(), ok);
            assert_eq!(b.is_ok(), ok);
            if let (Err(a), Err(b)) = (a, b) {
                assert_eq!(a.to_string(), b.to_string());
            }
        }
        // A smaller blob after a larger one: only its own bytes count.
        let short = b"short".to_vec();
        let sid = BlobId::keyed(&KEY, &short);
        let sc = zstd::bulk::compress(&short, 3).unwrap();
        check
            .verify_reusing("pack", &sid, BlobKind::Data, &sc, 5, &mut scratch)
            .unwrap();
        assert_eq!(scratch.len(), 40_000, "grown to the largest blob, not cut");
        // A tree blob over a chunk's size goes through the allocating path.
        let tree = text(100_000, 9);
        let tid = BlobId::keyed(&KEY, &tree);
        let tc = zstd::bulk::compress(&tree, 3).unwrap();
        check
            .verify_reusing("pack", &tid, BlobKind::Tree, &tc, 100_000, &mut scratch)
            .unwrap();
        assert_eq!(scratch.len(), 40_000);
    }
}
