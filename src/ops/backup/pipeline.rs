//! The storage half of a backup: new blobs are compressed in parallel,
//! packed and encrypted, uploaded with bounded concurrency, and indexed.
//!
//! Stages are threads joined by bounded channels, so memory stays bounded
//! whatever the input: at most a few packs (16 MiB each) are in flight.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::index::{Index, IndexFile, IndexedPack};
use crate::format::pack::BlobKind;
use crate::repo::packer::{FinishedPack, PackBuilder};
use crate::repo::{ObjectKind, Repository};

use super::journal::Journal;
use super::seen::Seen;
use super::squeeze;

/// Packs per index file: an interrupted backup loses at most this many
/// packs' worth of reuse (their blobs are stored again next time).
const PACKS_PER_INDEX: usize = 8;

/// Most blobs an index file lists. Its JSON (about 160 bytes a blob) is
/// held two or three times over while it is signed, compressed and sealed,
/// on top of everything the other stages hold, so it must not grow with how
/// well the data compresses: 4,096 blobs take under 3 MiB for the whole
/// flush (16,384 took about 9 MiB, the largest transient of a backup), and
/// make an index file for every 64 MiB of new 16 KiB chunks.
pub(super) const BLOBS_PER_INDEX: usize = 4_096;

/// Most blobs a pack holds, whatever its size: each costs memory while the
/// pack is built, uploaded and indexed (its trailer entry, its index entry,
/// its JSON), and a 16 MiB pack of tiny salted blobs could otherwise hold
/// over 100,000. Equal to [`BLOBS_PER_INDEX`], so a pack always fits in one
/// index file.
pub(super) const BLOBS_PER_PACK: usize = BLOBS_PER_INDEX;

/// A tree pack is sent once it holds this fraction of the pack size: it is
/// filled beside the data pack, so its buffer is a third one, kept small
/// whatever the backup holds (a file of many chunks adds content lists).
const TREE_PACK_DIVISOR: u64 = 4;

/// Records the first fatal error and tells every stage to stop.
#[derive(Default)]
pub struct Failure {
    first: Mutex<Option<Error>>,
    stop: AtomicBool,
}

impl Failure {
    /// Records `e` (if it is the first) and raises the stop flag.
    pub fn fail(&self, e: Error) {
        let mut first = self.first.lock().expect("failure lock");
        if first.is_none() {
            *first = Some(e);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Tells every stage to stop without recording an error (the caller
    /// has its own).
    pub fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether some stage failed.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Takes the recorded error.
    pub fn take(&self) -> Option<Error> {
        self.first.lock().expect("failure lock").take()
    }
}

/// Counters shared by the stages (and read by a progress display).
#[derive(Debug, Default)]
pub struct Stats {
    /// Bytes of every blob read this run, new or already stored.
    pub bytes_scanned: AtomicU64,
    /// New blobs submitted.
    pub blobs_added: AtomicU64,
    /// Uncompressed bytes of new blobs.
    pub bytes_added: AtomicU64,
    /// Bytes of packs uploaded.
    pub bytes_stored: AtomicU64,
    /// Pack buffers the run allocated: each holds a pack being filled or
    /// uploaded, and is reused for later packs (so it is also the most
    /// packs ever held in memory at once).
    pub pack_buffers: AtomicU64,
}

/// One blob on its way to a pack.
pub struct RawBlob {
    kind: BlobKind,
    id: BlobId,
    data: Vec<u8>,
    /// A chunk of a small file, stored as a salted blob.
    salted: bool,
}

struct CompressedBlob {
    kind: BlobKind,
    id: BlobId,
    data: Vec<u8>,
    raw_length: u32,
}

/// The entry point for new blobs: drops those already stored or sent
/// earlier in this run, and notes which stored packs the run relies on.
///
/// Each blob costs one index lookup: a submitted blob is looked up once, at
/// [`BlobSink::submit`], and a file from the cache has its blobs looked up
/// once, at [`BlobSink::reuse`]; either notes the pack the blob is in.
pub struct BlobSink<'a> {
    index: &'a Index,
    /// Every blob sent this run, in bounded memory ([`Seen`]).
    sent: Mutex<Seen>,
    stats: &'a Stats,
    /// Packs (by index pack number, one bit each) holding blobs this run
    /// reuses instead of storing them.
    relied: Vec<AtomicU64>,
    /// Streams (files, command output) being read and chunked now.
    streams: AtomicUsize,
    /// Bytes of small files read and not yet bundled.
    in_flight: super::inflight::InFlight,
}

impl<'a> BlobSink<'a> {
    /// A sink deduplicating against `index`.
    pub fn new(index: &'a Index, stats: &'a Stats) -> Self {
        BlobSink {
            index,
            sent: Mutex::new(Seen::default()),
            stats,
            relied: (0..index.pack_count().div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            streams: AtomicUsize::new(0),
            in_flight: Default::default(),
        }
    }

    /// The bound on small files' bytes between the readers and the
    /// assembler.
    pub fn in_flight(&self) -> &super::inflight::InFlight {
        &self.in_flight
    }

    /// The count of streams of this run being read and chunked now (kept
    /// by the readers; it decides only which thread searches a large
    /// file's cut points, never what is stored).
    pub fn streams(&self) -> &AtomicUsize {
        &self.streams
    }

    /// Notes that the run depends on pack number `n`.
    fn rely(&self, n: u32) {
        self.relied[n as usize / 64].fetch_or(1 << (n % 64), Ordering::Relaxed);
    }

    /// Whether every blob of `ids` (a file the cache says is unchanged) is
    /// in a pack this run may rely on; if so, the run now depends on those
    /// packs (see [`BlobSink::relied_packs`]) and the file need not be read.
    pub fn reuse(&self, ids: &[BlobId]) -> bool {
        // A small file's one blob (most files): no list of packs made.
        if let [id] = ids {
            return match self.index.pack_of(id) {
                Some(n) => {
                    self.rely(n);
                    true
                }
                None => false,
            };
        }
        let mut packs = Vec::with_capacity(ids.len());
        for id in ids {
            match self.index.pack_of(id) {
                Some(n) => packs.push(n),
                None => return false,
            }
        }
        packs.dedup();
        for n in packs {
            self.rely(n);
        }
        true
    }

    /// The packs of earlier backups this run deduplicated against: they must
    /// still exist when the snapshot is written.
    pub fn relied_packs(&self) -> HashSet<PackId> {
        let mut out = HashSet::new();
        for (i, word) in self.relied.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let n = i * 64 + bits.trailing_zeros() as usize;
                out.insert(self.index.pack_id(n as u32));
                bits &= bits - 1;
            }
        }
        out
    }

    /// Sends the blob on unless it is known; `salted`: a chunk of a small
    /// file whose `id` is salted ([`crate::format::salt`]). Returns `Err(())`
    /// when the pipeline has shut down (a later stage failed).
    pub fn submit(
        &self,
        tx: &Sender<RawBlob>,
        kind: BlobKind,
        id: BlobId,
        data: Vec<u8>,
        salted: bool,
    ) -> Result<(), ()> {
        self.submit_with(tx, kind, id, data.len(), || data, salted)
    }

    /// [`BlobSink::submit`] of a chunk still in its read buffer: copied
    /// only when it is new.
    pub fn submit_slice(
        &self,
        tx: &Sender<RawBlob>,
        kind: BlobKind,
        id: BlobId,
        data: &[u8],
        salted: bool,
    ) -> Result<(), ()> {
        self.submit_with(tx, kind, id, data.len(), || data.to_vec(), salted)
    }

    fn submit_with(
        &self,
        tx: &Sender<RawBlob>,
        kind: BlobKind,
        id: BlobId,
        len: usize,
        data: impl FnOnce() -> Vec<u8>,
        salted: bool,
    ) -> Result<(), ()> {
        self.stats
            .bytes_scanned
            .fetch_add(len as u64, Ordering::Relaxed);
        if let Some(n) = self.index.pack_of(&id) {
            self.rely(n);
            return Ok(());
        }
        if !self.sent.lock().expect("sent lock").insert(id) {
            return Ok(());
        }
        self.stats.blobs_added.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_added
            .fetch_add(len as u64, Ordering::Relaxed);
        tx.send(RawBlob {
            kind,
            id,
            data: data(),
            salted,
        })
        .map_err(|_| ())
    }
}

/// Compresses blobs with a reusable zstd context; salted blobs are wrapped
/// with `salt_id` and padded ([`crate::format::salt::wrap`]), and their raw
/// length recorded rounded up.
pub fn compressor(
    rx: Receiver<RawBlob>,
    tx: Sender<CompressedBlobMsg>,
    level: i32,
    salt_id: Option<[u8; 32]>,
    failure: &Failure,
) {
    let mut enc = match BlobEncoder::new(level) {
        Ok(z) => z,
        Err(e) => return failure.fail(Error::io("zstd", e)),
    };
    for blob in rx {
        if failure.stopped() {
            return;
        }
        let salt = salt_id.as_ref().filter(|_| blob.salted);
        let data = match enc.stored(blob.kind, &blob.data, salt, blob.salted) {
            Ok(d) => d,
            Err(e) => return failure.fail(Error::io("zstd", e)),
        };
        let raw_length = blob.data.len() as u32;
        let raw_length = match salt {
            Some(_) => crate::format::salt::rounded(raw_length),
            None => raw_length,
        };
        let msg = CompressedBlob {
            kind: blob.kind,
            id: blob.id,
            raw_length,
            data,
        };
        if tx.send(CompressedBlobMsg(msg)).is_err() {
            return;
        }
    }
}

/// The most room a [`BlobEncoder`] keeps between blobs: a larger frame
/// (a chunk or tree far over the default chunk size) gets room of its own.
const SCRATCH_KEEP: usize = 1 << 20;

/// Blobs of at most this many bytes are *small* for [`small_blob_level`]:
/// zstd picks its parameters for an input of at most 128 KiB from a table of
/// their own. Every chunk of the default chunker (at most 64 KiB), every
/// bundle of small files ([`tree::BUNDLE_MAX`]) and every chunk of a small
/// file ([`salt::SALTED_MAX`]) is one.
///
/// [`tree::BUNDLE_MAX`]: crate::format::tree::BUNDLE_MAX
/// [`salt::SALTED_MAX`]: crate::format::salt::SALTED_MAX
pub const SMALL_BLOB: usize = 128 << 10;

/// The zstd level a blob of at most [`SMALL_BLOB`] bytes, a bundle of small
/// files or a tree blob is compressed at under the repository's `level`.
/// At the default level 3, zstd compresses such an input with its
/// double-fast strategy; level 2 uses the fast one, which costs less for
/// about as many bytes: on the dump corpus of `scripts/bench.sh` (chunks of
/// 4 to 64 KiB) 18 % less user CPU for the first backup and 0.45-0.56 % *fewer*
/// bytes stored; on 200,000 small config files, in 16 KiB blobs a fifth
/// less time for 0.7 % more bytes, in 64 KiB bundles 8 % less CPU for 4 %
/// more, and for the trees of their 2,100 directories another 8 % less CPU
/// for the whole backup and 1.4 % fewer bytes. Other levels are kept as
/// asked, and so is level 3 for blobs past [`SMALL_BLOB`] (a chunker set to
/// larger chunks). Either way a blob is an ordinary zstd frame, decoded
/// alike.
pub fn small_blob_level(level: i32) -> i32 {
    if level == 3 { 2 } else { level }
}

/// Turns blobs into their stored form with one zstd context and one output
/// buffer, both reused from blob to blob: each blob costs one allocation
/// of its stored size, not one of zstd's worst-case bound (then another
/// for the salted wrapping). Small blobs get a context of their own when
/// their level differs ([`small_blob_level`]).
pub struct BlobEncoder {
    z: zstd::bulk::Compressor<'static>,
    small: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl BlobEncoder {
    /// An encoder compressing at zstd `level` (small blobs at
    /// [`small_blob_level`]).
    pub fn new(level: i32) -> std::io::Result<Self> {
        let small = small_blob_level(level);
        Ok(BlobEncoder {
            z: zstd::bulk::Compressor::new(level)?,
            small: match small == level {
                true => None,
                false => Some(zstd::bulk::Compressor::new(small)?),
            },
            scratch: Vec::new(),
        })
    }

    /// `data` as stored in a pack: its frame (see [`encode_blob`]), wrapped
    /// with `salt_id` and padded when it is a salted blob. `small_content`:
    /// `data` is a small file's chunk or a bundle of small files. Those, and
    /// tree blobs, are compressed at [`small_blob_level`] whatever their
    /// length; other data blobs when at most [`SMALL_BLOB`] bytes (every
    /// chunk of the default chunker).
    pub fn stored(
        &mut self,
        kind: BlobKind,
        data: &[u8],
        salt_id: Option<&[u8; 32]>,
        small_content: bool,
    ) -> std::io::Result<Vec<u8>> {
        if looks_random(kind, data) {
            let frame = squeeze::raw_frame(data);
            return Ok(match salt_id {
                Some(salt_id) => crate::format::salt::wrap(salt_id, &frame),
                None => frame,
            });
        }
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(data.len()));
        let z = match &mut self.small {
            Some(small) if small_content || kind == BlobKind::Tree || data.len() <= SMALL_BLOB => {
                small
            }
            _ => &mut self.z,
        };
        z.compress_to_buffer(data, &mut self.scratch)?;
        let frame = &self.scratch[..];
        let out = match salt_id {
            Some(salt_id) => crate::format::salt::wrap(salt_id, frame),
            None => frame.to_vec(),
        };
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
        Ok(out)
    }
}

/// Whether `data` is a data blob stored as a frame of raw blocks, unsqueezed
/// (see [`encode_blob`]).
fn looks_random(kind: BlobKind, data: &[u8]) -> bool {
    kind == BlobKind::Data && data.len() <= squeeze::MAX_RAW_FRAME && squeeze::looks_random(data)
}

/// One blob as stored in a pack: a zstd frame, compressed by `z` unless
/// it is a data blob that looks random (already compressed or encrypted
/// input), which is stored as a frame of raw blocks for the cost of a copy.
/// Either way `zstd -d` and every reader decode it alike.
pub fn encode_blob(
    z: &mut zstd::bulk::Compressor<'_>,
    kind: BlobKind,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    if looks_random(kind, data) {
        return Ok(squeeze::raw_frame(data));
    }
    z.compress(data)
}

/// A compressed blob travelling to the packer.
pub struct CompressedBlobMsg(CompressedBlob);

/// Appends blobs to one open pack per kind; full packs go to the uploaders.
/// At most `buffers` data pack buffers are ever made: past that, a new pack
/// waits for an uploaded pack's buffer (`spare`).
pub fn packer(
    rx: Receiver<CompressedBlobMsg>,
    tx: Sender<FinishedPack>,
    spare: Receiver<Vec<u8>>,
    buffers: u64,
    repo: &Repository,
    stats: &Stats,
    failure: &Failure,
) {
    let pack_size = repo.config().pack_size as u64;
    let full = |k: BlobKind| match k {
        BlobKind::Data => pack_size,
        BlobKind::Tree => pack_size / TREE_PACK_DIVISOR,
    };
    let mut open: [Option<PackBuilder>; 2] = [None, None];
    let slot = |k: BlobKind| match k {
        BlobKind::Data => 0,
        BlobKind::Tree => 1,
    };
    let run = || -> Result<bool> {
        for CompressedBlobMsg(b) in rx {
            if failure.stopped() {
                return Ok(false);
            }
            let s = &mut open[slot(b.kind)];
            if s.is_none() {
                let seal = repo.keys().owner_only();
                // Data packs reuse the buffers of uploaded ones; tree packs
                // are small and few (their capacity is reserved, not touched,
                // so it costs no memory until filled, and no copies then).
                let builder = if b.kind == BlobKind::Tree {
                    PackBuilder::new(b.kind, &seal, full(b.kind) as usize + (1 << 20))?
                } else if let Ok(buf) = spare.try_recv() {
                    PackBuilder::with_buffer(b.kind, &seal, buf)?
                } else if stats.pack_buffers.load(Ordering::Relaxed) < buffers {
                    stats.pack_buffers.fetch_add(1, Ordering::Relaxed);
                    PackBuilder::new(b.kind, &seal, pack_size as usize + (1 << 20))?
                } else {
                    match spare_buffer(&spare, failure) {
                        Some(buf) => PackBuilder::with_buffer(b.kind, &seal, buf)?,
                        None => return Ok(false),
                    }
                };
                *s = Some(builder);
            }
            let builder = s.as_mut().expect("opened above");
            builder.add(b.id, &b.data, b.raw_length)?;
            if builder.len() >= full(b.kind) || builder.blobs() >= BLOBS_PER_PACK {
                let full = s.take().expect("present").finish()?;
                if tx.send(full).is_err() {
                    return Ok(false);
                }
            }
        }
        for s in open.iter_mut() {
            if let Some(b) = s.take().filter(|b| !b.is_empty())
                && tx.send(b.finish()?).is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    };
    if let Err(e) = run() {
        failure.fail(e);
    }
}

/// Waits for an uploaded pack's buffer; `None` once the uploaders are gone
/// or a stage failed (an uploader that failed keeps its buffer).
fn spare_buffer(spare: &Receiver<Vec<u8>>, failure: &Failure) -> Option<Vec<u8>> {
    loop {
        match spare.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(buf) => return Some(buf),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if !failure.stopped() => {}
            Err(_) => return None,
        }
    }
}

/// Uploads finished packs, then hands their description to the indexer.
/// Each pack is journaled before its upload starts (see [`Journal`]).
pub fn uploader(
    rx: Receiver<FinishedPack>,
    tx: Sender<IndexedPack>,
    spare: Sender<Vec<u8>>,
    repo: &Repository,
    journal: Option<&Journal>,
    stats: &Stats,
    failure: &Failure,
) {
    for pack in rx {
        if failure.stopped() {
            return;
        }
        if let Some(j) = journal
            && let Err(e) = j.record(&pack)
        {
            // The journal only saves work after a crash: a backup goes on
            // without it.
            tracing::warn!("upload journal: {e}");
        }
        // Synced with the others of its index file, before that is stored.
        if let Err(e) = repo.put_pack_unsynced(&pack) {
            return failure.fail(e);
        }
        stats
            .bytes_stored
            .fetch_add(pack.bytes.len() as u64, Ordering::Relaxed);
        if pack.kind == BlobKind::Data {
            // Back to the packer for a later pack.
            let _ = spare.try_send(pack.bytes);
        }
        if tx
            .send(IndexedPack::from_entries(pack.id, pack.kind, &pack.entries))
            .is_err()
        {
            return;
        }
    }
}

/// Writes an index file for every few uploaded packs, and one at the end.
/// A pack is indexed only after its upload finished and it was synced
/// (uploads do not sync each pack), so an index never points at a missing
/// or torn pack, even after a power loss.
/// Each is signed by this host and recorded in `own`, so later backups of
/// this host deduplicate against it; once an index file is stored, the
/// journal entries of its packs go.
pub fn indexer(
    rx: Receiver<IndexedPack>,
    repo: &Repository,
    own: &super::own_index::OwnIndex,
    journal: Option<&Journal>,
    failure: &Failure,
) {
    let mut pending = IndexFile::default();
    let flush = |pending: &mut IndexFile| -> Result<()> {
        if !pending.packs.is_empty() {
            // One sync for the packs the index file makes reachable.
            repo.sync_objects(
                pending
                    .packs
                    .iter()
                    .map(|p| (ObjectKind::Pack(p.kind), p.id)),
            )?;
            let id = repo.put_index_file(pending)?;
            own.record(&id);
            if let Some(j) = journal {
                j.forget(pending.packs.iter().map(|p| p.id));
            }
            pending.packs.clear();
        }
        Ok(())
    };
    let mut blobs = 0;
    for pack in rx {
        // A pack that would take the file past its blob limit goes in the
        // next one (a pack holds at most as many blobs as a file).
        if blobs + pack.blobs.len() > BLOBS_PER_INDEX {
            if let Err(e) = flush(&mut pending) {
                return failure.fail(e);
            }
            blobs = 0;
        }
        blobs += pack.blobs.len();
        pending.packs.push(pack);
        if (pending.packs.len() >= PACKS_PER_INDEX || blobs >= BLOBS_PER_INDEX)
            && let Err(e) = flush(&mut pending)
        {
            return failure.fail(e);
        }
        if pending.packs.is_empty() {
            blobs = 0;
        }
    }
    // Index what was uploaded even if another stage failed: the next backup
    // reuses those blobs instead of storing them again.
    if let Err(e) = flush(&mut pending) {
        failure.fail(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_data_blobs_are_stored_as_raw_frames_and_the_rest_compressed() {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let mut x = 0x1234_5678_9abc_def1u64;
        let random: Vec<u8> = (0..40_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let stored = encode_blob(&mut z, BlobKind::Data, &random).unwrap();
        assert!(stored == squeeze::raw_frame(&random));
        assert_eq!(
            zstd::bulk::decompress(&stored, random.len()).unwrap(),
            random
        );
        // A tree blob always goes through the compressor (it may exceed a raw
        // frame's size); zstd itself falls back to raw blocks here.
        let tree = encode_blob(&mut z, BlobKind::Tree, &random).unwrap();
        assert!(zstd::bulk::decompress(&tree, random.len()).unwrap() == random);
        let text = b"key = value\n".repeat(3000);
        let packed = encode_blob(&mut z, BlobKind::Data, &text).unwrap();
        assert!(packed.len() < text.len() / 10);
        assert_eq!(zstd::bulk::decompress(&packed, text.len()).unwrap(), text);
    }

    #[test]
    fn the_reused_encoder_stores_each_blob_as_encode_blob_does_at_its_exact_size() {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        let mut z_small = zstd::bulk::Compressor::new(small_blob_level(3)).unwrap();
        let mut enc = BlobEncoder::new(3).unwrap();
        let salt_id = [9u8; 32];
        let mut seed = 7u64;
        let mut noise = |n: usize| -> Vec<u8> {
            seed += 1;
            crate::format::testdata::xorshift(n, seed)
        };
        // Large blobs between small ones: the buffer grows, is let go, and
        // what it held before never leaks into a later blob.
        let blobs = [
            (BlobKind::Data, b"a = 1\n".repeat(300)),
            (BlobKind::Data, noise(3000)),
            (BlobKind::Tree, b"{\"nodes\":[]}".repeat(200_000)),
            (BlobKind::Data, b"short".to_vec()),
            (BlobKind::Data, noise(2 << 20)),
            (BlobKind::Data, Vec::new()),
            (BlobKind::Data, b"b = 2\n".repeat(20)),
        ];
        for (kind, data) in &blobs {
            let z = match data.len() <= SMALL_BLOB || *kind == BlobKind::Tree {
                true => &mut z_small,
                false => &mut z,
            };
            let want = encode_blob(z, *kind, data).unwrap();
            let plain = enc.stored(*kind, data, None, false).unwrap();
            assert!(plain == want, "{} bytes", data.len());
            // Not zstd's bound for the input (a raw frame reserves a few
            // bytes for block headers).
            assert!(plain.capacity() <= plain.len() + 32, "{} bytes", data.len());
            let salted = enc.stored(*kind, data, Some(&salt_id), false).unwrap();
            assert!(salted == crate::format::salt::wrap(&salt_id, &want));
            let (id, frame) = crate::format::salt::unwrap(&salted).unwrap();
            assert_eq!(id, Some(salt_id));
            assert!(zstd::stream::decode_all(frame).unwrap() == *data);
            assert!(enc.scratch.capacity() <= SCRATCH_KEEP);
        }
    }

    #[test]
    fn small_blobs_at_the_default_level_use_zstds_fast_strategy_and_others_the_level_asked() {
        let text = |n: usize| -> Vec<u8> {
            let mut rng = 5u64;
            let words = ["listen", "port", "host", "timeout", "user", "cache", "ssl"];
            let mut out = Vec::new();
            while out.len() < n {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                out.extend_from_slice(words[(rng >> 33) as usize % words.len()].as_bytes());
                out.extend_from_slice(format!(" = {}\n", rng >> 50).as_bytes());
            }
            out.truncate(n);
            out
        };
        assert_eq!(small_blob_level(3), 2);
        for level in [1, 2, 4, 19] {
            assert_eq!(small_blob_level(level), level);
        }
        let frame = |level: i32, data: &[u8]| {
            zstd::bulk::Compressor::new(level)
                .unwrap()
                .compress(data)
                .unwrap()
        };
        let mut enc = BlobEncoder::new(3).unwrap();
        // Up to zstd's 128 KiB table: a small file, a chunk of the default
        // chunker as large as it gets, a blob at the limit.
        for n in [200, 3000, 16 << 10, 64 << 10, SMALL_BLOB] {
            let data = text(n);
            let stored = enc.stored(BlobKind::Data, &data, None, false).unwrap();
            // The fast strategy finds other matches than double-fast here.
            assert!(
                stored == frame(2, &data) && stored != frame(3, &data),
                "{n} bytes"
            );
            assert!(zstd::stream::decode_all(&stored[..]).unwrap() == data);
        }
        // Past the small size, and at any other level, the level asked.
        let large = text(SMALL_BLOB + 1);
        assert!(enc.stored(BlobKind::Data, &large, None, false).unwrap() == frame(3, &large));
        // A bundle of small files (salted or not), as large as it gets: the
        // fast strategy too.
        let bundle = text(crate::format::tree::BUNDLE_MAX as usize);
        for salt in [None, Some(&[3u8; 32])] {
            let stored = enc.stored(BlobKind::Data, &bundle, salt, true).unwrap();
            let (_, frame_of) = crate::format::salt::unwrap(&stored).unwrap();
            assert!(frame_of == frame(2, &bundle) && frame_of != frame(3, &bundle));
        }
        let mut enc4 = BlobEncoder::new(4).unwrap();
        let data = text(3000);
        assert!(enc4.stored(BlobKind::Data, &data, None, true).unwrap() == frame(4, &data));
    }

    #[test]
    fn reusing_a_file_relies_on_its_blobs_packs_only_when_every_blob_is_indexed() {
        use crate::format::id::Id;
        use crate::format::index::IndexedBlob;
        let blob = |b: u8| IndexedBlob {
            id: BlobId(Id([b; 32])),
            offset: 0,
            length: 10,
            raw_length: 10,
        };
        let mut index = Index::compact();
        for (p, blobs) in [(1u8, vec![blob(1), blob(2)]), (2, vec![blob(3)])] {
            index.add_pack(&IndexedPack {
                id: PackId(Id([p; 32])),
                kind: BlobKind::Data,
                blobs,
            });
        }
        index.finish();
        let id = |b: u8| BlobId(Id([b; 32]));
        let pack = |p: u8| PackId(Id([p; 32]));
        let stats = Stats::default();
        let sink = BlobSink::new(&index, &stats);
        assert!(sink.reuse(&[]));
        assert!(!sink.reuse(&[id(9)]));
        assert!(!sink.reuse(&[id(3), id(9)]));
        assert!(sink.relied_packs().is_empty());
        assert!(sink.reuse(&[id(3)]));
        assert_eq!(sink.relied_packs(), HashSet::from([pack(2)]));
        assert!(sink.reuse(&[id(1), id(2)]));
        assert_eq!(sink.relied_packs(), HashSet::from([pack(1), pack(2)]));
    }
}
