//! Content-defined chunking (FastCDC 2020) with cut points seeded from the
//! chunk-id key, so that chunk boundaries leak nothing about known files.

use std::io::Read;

use serde::{Deserialize, Serialize};

/// FastCDC size parameters, fixed per repository in its config.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// Smallest chunk, in bytes (except a file's last chunk).
    pub min_size: u32,
    /// Target average chunk size, in bytes.
    pub avg_size: u32,
    /// Largest chunk, in bytes.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 16 KiB average chunks. A day of scattered OLTP updates touches ~28 % of
    /// 64 KiB windows of a plain dump but nearly every 1 MiB window, so small
    /// chunks are what let the second night's dump dedupe (see docs/FORMAT.md).
    fn default() -> Self {
        ChunkerParams {
            min_size: 4 * 1024,
            avg_size: 16 * 1024,
            max_size: 64 * 1024,
        }
    }
}

/// Chunk sizes outside what FastCDC accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "chunk sizes min {} / avg {} / max {} are out of range \
     (64 B..1 MiB / 256 B..4 MiB / 1 KiB..16 MiB, even, min <= avg <= max)",
    .0.min_size, .0.avg_size, .0.max_size
)]
pub struct ChunkSizesOutOfRange(pub ChunkerParams);

impl ChunkerParams {
    /// Checks the sizes are within what FastCDC accepts.
    pub fn validate(&self) -> Result<(), ChunkSizesOutOfRange> {
        let ok = (64..=1 << 20).contains(&self.min_size)
            && (256..=4 << 20).contains(&self.avg_size)
            && (1024..=16 << 20).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            // FastCDC asserts even sizes (in debug builds), and its cut
            // points are what this chunker reproduces.
            && [self.min_size, self.avg_size, self.max_size]
                .iter()
                .all(|s| s.is_multiple_of(2));
        if ok {
            Ok(())
        } else {
            Err(ChunkSizesOutOfRange(*self))
        }
    }
}

/// Derives the 64-bit gear seed from the chunk-id key.
pub fn gear_seed(chunk_key: &[u8; 32]) -> u64 {
    let h = blake3::derive_key("vault 2026 fastcdc gear seed", chunk_key);
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// Splits a reader into content-defined chunks.
///
/// The cut points are those of `fastcdc::v2020::StreamCDC` with the same
/// sizes, normalization level 1 and `seed` (each cut is searched with at
/// least `max_size` bytes ahead, or all that is left), so chunks and their
/// ids match what earlier versions stored.
pub fn chunks<R: Read>(
    reader: R,
    params: &ChunkerParams,
    seed: u64,
) -> impl Iterator<Item = std::io::Result<Vec<u8>>> + use<R> {
    Gear::new(params, seed).chunks(reader, u64::MAX)
}

/// The chunker's sizes, masks and seeded gear tables, made once and shared
/// by every stream a backup chunks.
#[derive(Clone)]
pub struct Gear {
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64),
    tables: std::sync::Arc<GearTables>,
}

/// The gear table and its shifted twin (`fastcdc::v2020::get_gear_with_seed`).
type GearTables = (
    std::borrow::Cow<'static, [u64]>,
    std::borrow::Cow<'static, [u64]>,
);

impl Gear {
    /// The chunker for `params` and gear seed `seed` ([`gear_seed`]).
    pub fn new(params: &ChunkerParams, seed: u64) -> Self {
        let masks = fastcdc::v2020::select_masks(
            params.avg_size as usize,
            fastcdc::v2020::Normalization::Level1,
        );
        let tables = fastcdc::v2020::get_gear_with_seed(seed);
        // What [`first_cut`] relies on to match `cut_gear`.
        assert!(
            (masks.0 | masks.1) >> 63 == 0,
            "FastCDC masks leave the top bit"
        );
        assert!(
            (0..256).all(|i| tables.1[i] == tables.0[i] << 1),
            "FastCDC's second gear table is the first shifted"
        );
        Gear {
            min: params.min_size as usize,
            avg: params.avg_size as usize,
            max: params.max_size as usize,
            masks,
            tables: std::sync::Arc::new(tables),
        }
    }

    /// [`chunks`] of a reader expected to yield about `expected` bytes (a
    /// file's size; `u64::MAX` when unknown): a small file's first read
    /// buffer is its size, not the chunker's usual read-ahead. Any length
    /// is chunked correctly.
    pub fn chunks<R: Read>(
        &self,
        reader: R,
        expected: u64,
    ) -> impl Iterator<Item = std::io::Result<Vec<u8>>> + use<R> {
        let mut blocks = self.blocks(reader, expected);
        let mut ready = std::collections::VecDeque::new();
        std::iter::from_fn(move || {
            while ready.is_empty() {
                match blocks.next_block() {
                    Ok(Some(block)) => {
                        ready.extend(block.chunks().map(<[u8]>::to_vec));
                        blocks.give_back(block.into_buffer());
                    }
                    Ok(None) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
            ready.pop_front().map(Ok)
        })
    }

    /// The same cut points as [`Gear::chunks`], a [`Block`] of whole chunks
    /// at a time: the chunks stay in the buffer they were read into, so a
    /// chunk that is already stored is never copied.
    pub fn blocks<R: Read>(&self, reader: R, expected: u64) -> Blocks<R> {
        Blocks {
            reader,
            buf: Vec::new(),
            len: 0,
            eof: false,
            read: 0,
            expected,
            spare: Vec::new(),
            gear: self.clone(),
            base: 0,
            hints: None,
        }
    }

    /// The two ends of cut points found ahead: [`Ahead::run`] on another
    /// thread, over positional reads of the same stream, finds them;
    /// [`Blocks::with_hints`] takes them instead of searching itself where
    /// that gives the same cut. At most `queue` batches of them wait.
    pub fn ahead(&self, queue: usize) -> (Ahead, Hints) {
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        (
            Ahead {
                gear: self.clone(),
                tx,
                progress: progress.clone(),
                lead: AHEAD_LEAD,
                shrink: true,
                margin: AHEAD_MARGIN,
                span: AHEAD_SPAN.max(2 * self.max),
            },
            Hints {
                rx,
                batch: Vec::new(),
                next: 0,
                progress,
                taken: 0,
            },
        )
    }

    /// The length of the chunk that starts `window` (at most `max` bytes of
    /// the stream, fewer only at its end): `fastcdc::v2020::cut_gear`'s cut
    /// point, found by [`first_cut`].
    fn cut(&self, window: &[u8]) -> usize {
        let mut end = window.len();
        if end <= self.min {
            return end;
        }
        let mut center = self.avg;
        if end > self.max {
            end = self.max;
        } else if end < center {
            center = end;
        }
        // cut_gear tests positions in pairs from the even position at or
        // below `min` on: with the small mask below the (even) center, with
        // the large one after it, an odd last byte untested.
        let from = self.min / 2 * 2;
        let center = center / 2 * 2;
        let end_even = end / 2 * 2;
        let (mask_s, mask_l) = self.masks;
        let table: &[u64; 256] = self.tables.0[..].try_into().expect("256 entries");
        let window = &window[..end];
        first_cut(window, table, from, from, center, mask_s)
            .or_else(|| first_cut(window, table, from, center, end_even, mask_l))
            .unwrap_or(end)
    }

    /// The size of a full read buffer: large reads and few moves of what
    /// is left after the last cut (at most one chunk's bound).
    fn full(&self) -> usize {
        READ_AHEAD.max(2 * self.max)
    }
}

/// Independent stretches of a window the gear hash runs over at once (the
/// hash of each byte depends on the one before, so one stretch at a time
/// leaves most of a core's arithmetic units idle).
const LANES: usize = 4;

/// Bytes of each stretch per round.
const STRETCH: usize = 512;

/// The first position `p` in `lo..hi` whose gear hash has none of `mask`'s
/// bits set, where the hash at `p` is that of `window[from..=p]` (each
/// byte's table entry shifted left once per later byte: only the last 64
/// bytes count). `cut_gear` ends the chunk before that byte.
///
/// `cut_gear` tests even positions as `(hash << 1) & (mask << 1)`: the same
/// as `hash & mask`, since no mask of FastCDC's sets the top bit (checked
/// in [`Gear::new`]).
fn first_cut(
    window: &[u8],
    table: &[u64; 256],
    from: usize,
    lo: usize,
    hi: usize,
    mask: u64,
) -> Option<usize> {
    let step = |h: u64, b: u8| (h << 1).wrapping_add(table[b as usize]);
    // The hash of everything from `from` up to (not including) `p`.
    let warm = |p: usize| {
        window[from.max(p.saturating_sub(64))..p]
            .iter()
            .fold(0u64, |h, &b| step(h, b))
    };
    let mut p = lo;
    let mut h = warm(p);
    // Rounds of LANES stretches side by side; a round where any stretch
    // finds a cut is searched again in order, from its start.
    while p + LANES * STRETCH <= hi {
        let round = &window[p..p + LANES * STRETCH];
        let (s0, rest) = round.split_at(STRETCH);
        let (s1, rest) = rest.split_at(STRETCH);
        let (s2, s3) = rest.split_at(STRETCH);
        let mut hs = [
            h,
            warm(p + STRETCH),
            warm(p + 2 * STRETCH),
            warm(p + 3 * STRETCH),
        ];
        let mut found = false;
        // One branch per eight bytes of each stretch: a hit anywhere in a
        // round sends the round to the in-order search anyway.
        for i in (0..STRETCH).step_by(8) {
            let mut hit = false;
            for j in i..i + 8 {
                hs[0] = step(hs[0], s0[j]);
                hs[1] = step(hs[1], s1[j]);
                hs[2] = step(hs[2], s2[j]);
                hs[3] = step(hs[3], s3[j]);
                hit |= (hs[0] & mask == 0)
                    | (hs[1] & mask == 0)
                    | (hs[2] & mask == 0)
                    | (hs[3] & mask == 0);
            }
            if hit {
                found = true;
                break;
            }
        }
        if found {
            return first_in_order(window, step, h, p, p + LANES * STRETCH, mask);
        }
        h = hs[3];
        p += LANES * STRETCH;
    }
    first_in_order(window, step, h, p, hi, mask)
}

/// [`first_cut`] one byte after the other from `lo`, with `h` the hash of
/// the bytes before it.
fn first_in_order(
    window: &[u8],
    step: impl Fn(u64, u8) -> u64,
    mut h: u64,
    lo: usize,
    hi: usize,
    mask: u64,
) -> Option<usize> {
    for (p, &b) in window.iter().enumerate().take(hi).skip(lo) {
        h = step(h, b);
        if h & mask == 0 {
            return Some(p);
        }
    }
    None
}

/// Bytes the chunker reads ahead: large reads and few moves of what is left
/// (a buffer of one chunk's bound would read and shift once per chunk).
const READ_AHEAD: usize = 256 * 1024;

/// Whole chunks of a stream, in the buffer they were read into.
pub struct Block {
    data: Vec<u8>,
    /// Where each chunk ends in `data`, in order (the first starts at 0).
    ends: Vec<usize>,
}

impl Block {
    /// The chunks, in stream order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let c = &self.data[start..end];
            start = end;
            c
        })
    }

    /// Every chunk's bytes as one slice (what a whole-stream hash takes).
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.ends.last().copied().unwrap_or(0)]
    }

    /// The buffer, for [`Blocks::give_back`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.data
    }
}

/// The blocks of one stream ([`Gear::blocks`]).
pub struct Blocks<R> {
    reader: R,
    /// The buffer being filled; its first `len` bytes are read and not yet
    /// cut.
    buf: Vec<u8>,
    len: usize,
    eof: bool,
    /// Bytes read from the stream so far.
    read: u64,
    /// The expected length: the first buffer's size, and where a short
    /// read ends the stream (see [`Blocks::fill`]).
    expected: u64,
    /// Buffers of earlier blocks, to read into again.
    spare: Vec<Vec<u8>>,
    gear: Gear,
    /// Where `buf` starts in the stream.
    base: u64,
    /// Cut points found ahead by another thread, if one helps.
    hints: Option<Hints>,
}

impl<R: Read> Blocks<R> {
    /// The next whole chunks, `None` at the end. A read error ends the
    /// stream.
    pub fn next_block(&mut self) -> std::io::Result<Option<Block>> {
        loop {
            if let Err(e) = self.fill() {
                self.eof = true;
                self.len = 0;
                return Err(e);
            }
            // Each cut looks at `max` bytes ahead, or all that is left.
            let mut ends = Vec::new();
            let mut pos = 0;
            while pos < self.len && (self.eof || self.len - pos >= self.gear.max) {
                // A hint only where the window is whole: the cut the
                // helper found in its `max` bytes is this one.
                let hinted = match &mut self.hints {
                    Some(h) if self.len - pos >= self.gear.max => {
                        h.cut_at(self.base + pos as u64, &self.gear)
                    }
                    _ => None,
                };
                pos += hinted.unwrap_or_else(|| self.gear.cut(&self.buf[pos..self.len]));
                ends.push(pos);
            }
            self.base += pos as u64;
            if let Some(h) = &self.hints {
                h.progress
                    .store(self.base, std::sync::atomic::Ordering::Relaxed);
            }
            if ends.is_empty() {
                if self.eof {
                    return Ok(None);
                }
                // A first buffer sized for a short stream that is longer.
                self.buf.resize(self.gear.full(), 0);
                continue;
            }
            let rest = self.len - pos;
            let next = if self.eof && rest == 0 {
                Vec::new()
            } else {
                let mut next = self.spare.pop().unwrap_or_default();
                next.resize(self.gear.full(), 0);
                next[..rest].copy_from_slice(&self.buf[pos..self.len]);
                next
            };
            self.len = rest;
            let data = std::mem::replace(&mut self.buf, next);
            return Ok(Some(Block { data, ends }));
        }
    }

    /// Takes the cut points another thread finds ahead ([`Gear::ahead`]):
    /// a chunk that starts where one of them is ends where the next one of
    /// the same run is, without a search. The cut points are the same as
    /// without hints (given the same bytes); the stream is still read here,
    /// whole.
    pub fn with_hints(mut self, hints: Hints) -> Self {
        self.set_hints(hints);
        self
    }

    /// [`Blocks::with_hints`] from now on, for a stream being read: the
    /// helper starts ahead of where the chunker is.
    pub fn set_hints(&mut self, hints: Hints) {
        hints
            .progress
            .store(self.base, std::sync::atomic::Ordering::Relaxed);
        self.hints = Some(hints);
    }

    /// How many cut points were taken from hints (none without).
    pub fn hinted(&self) -> u64 {
        self.hints.as_ref().map_or(0, |h| h.taken)
    }

    /// Takes back the buffer of a block handed out, to read into again.
    pub fn give_back(&mut self, buffer: Vec<u8>) {
        if buffer.len() == self.gear.full() && self.spare.len() < 2 {
            self.spare.push(buffer);
        }
    }

    /// Reads until the buffer is full or the stream ends. A read that
    /// returns less than asked, ending exactly at the expected length, ends
    /// the stream without the read that would return nothing (one system
    /// call per small file): the expected length is a regular file's size
    /// just taken from its open handle, and a regular file's read is short
    /// only at its end. Had the file grown since, the read would have
    /// returned all it was asked for, and reading goes on to the real end
    /// (on a file system that cuts reads short elsewhere, such a file is
    /// stored as it was when its size was taken: a state it had).
    fn fill(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() && !self.eof {
            // One byte more than expected, so the end shows in one read.
            let full = self.gear.full();
            let first = usize::try_from(self.expected.saturating_add(1)).unwrap_or(full);
            self.buf = vec![0; first.clamp(1, full)];
        }
        while !self.eof && self.len < self.buf.len() {
            let asked = self.buf.len() - self.len;
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.len += n;
                    self.read += n as u64;
                    self.eof = n < asked && self.read == self.expected;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// How far ahead of the chunker [`Ahead`] starts a run of its own (when it
/// starts, and whenever the chunker has come near its run): the chunker
/// searches that stretch itself while the helper searches what follows.
const AHEAD_LEAD: u64 = 8 << 20;

/// How near the chunker may come to the end of [`Ahead`]'s run before the
/// helper starts a new one further on. A chunker taking cut points moves
/// about four times as fast as the helper finds them: closer than this, it
/// would soon search beside the helper, over the same bytes, at the same
/// pace (both working, one of them for nothing).
const AHEAD_MARGIN: u64 = 1 << 20;

/// Bytes [`Ahead`] reads and searches per batch of cut points (more when
/// chunks may be larger): one positional read and one hand-over each, and
/// at most this much searched twice when the chunker overtakes the helper.
const AHEAD_SPAN: usize = 256 << 10;

/// Finds cut points ahead of a chunker ([`Gear::ahead`]), on a thread of
/// its own, for [`Hints`].
///
/// It starts a run `lead` bytes ahead of where the chunker is, as if a
/// chunk started there, and follows its cut points on: once the chunker
/// cuts where a run does, all their later cuts are the same (a cut depends
/// only on where its chunk starts and the `max` bytes after it). When the
/// chunker comes within `margin` of the run's end, a new one starts `lead`
/// ahead of it, or nearer towards the end of the stream: the chunker
/// searches up to the run's start itself and then only reads on while
/// the helper searches, so the helper's share of the search is larger.
/// At 2/5 of what is left, both finish together (the chunker also reads
/// and hashes the whole stream); a run starting `lead` ahead near the end
/// would leave the helper nothing to do.
pub struct Ahead {
    gear: Gear,
    tx: crossbeam_channel::Sender<Vec<u64>>,
    /// Where the chunker is (the end of its last block).
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    lead: u64,
    /// Whether a run starts nearer than `lead` where less is left: at 2/5
    /// of what the chunker has left (see [`Ahead::run`]).
    shrink: bool,
    margin: u64,
    /// Bytes read per batch.
    span: usize,
}

impl Ahead {
    /// Searches the stream of `len` bytes that `read_at(buf, offset)` reads
    /// (as `pread`) until its end, or until the chunker is gone. Each batch
    /// sent holds consecutive cut points of one run, the first being the
    /// last of the run's batch before (or where the run starts). A read that
    /// fails or ends early ends it: the chunker searches the rest itself.
    /// Returns how many cut points it found.
    pub fn run(
        self,
        len: u64,
        mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
    ) -> u64 {
        let max = self.gear.max;
        let mut buf = vec![0u8; self.span];
        // `buf[..filled]` holds the stream from `buf_at` on.
        let (mut buf_at, mut filled) = (0u64, 0usize);
        // Where the current run is, if the chunker has not reached it.
        let mut run: Option<u64> = None;
        let mut found = 0;
        loop {
            let chunker = self.progress.load(std::sync::atomic::Ordering::Relaxed);
            let at = match run {
                Some(p) if p >= chunker.saturating_add(self.margin) => p,
                // Never back over what was searched already.
                _ => {
                    let left = len.saturating_sub(chunker);
                    let lead = if self.shrink {
                        self.lead.min(left / 5 * 2)
                    } else {
                        self.lead
                    };
                    chunker.saturating_add(lead).max(run.unwrap_or(0))
                }
            };
            if at >= len || len - at < max as u64 {
                return found;
            }
            if run == Some(at) {
                let keep = (at - buf_at) as usize;
                buf.copy_within(keep..filled, 0);
                filled -= keep;
            } else {
                filled = 0;
            }
            buf_at = at;
            let want = (self.span as u64).min(len - buf_at) as usize;
            while filled < want {
                match read_at(&mut buf[filled..want], buf_at + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return found,
                }
            }
            let mut cuts = vec![at];
            let mut p = 0;
            while p + max <= filled {
                p += self.gear.cut(&buf[p..p + max]);
                cuts.push(buf_at + p as u64);
            }
            let n = cuts.len() as u64 - 1;
            if n == 0 || self.tx.send(cuts).is_err() {
                return found;
            }
            found += n;
            run = Some(buf_at + p as u64);
        }
    }
}

/// The chunker's end of [`Ahead`]: the cut points found ahead of it, one
/// batch at a time.
pub struct Hints {
    rx: crossbeam_channel::Receiver<Vec<u64>>,
    /// The batch being followed, and the first of its cut points not yet
    /// passed.
    batch: Vec<u64>,
    next: usize,
    progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Cut points taken.
    taken: u64,
}

impl Hints {
    /// The length of the chunk starting at `at` (whose whole window of
    /// `max` bytes is read), if a run's cut point is at `at` and its next
    /// one is known. A length [`Gear::cut`] could not return is refused
    /// (and searched for instead).
    fn cut_at(&mut self, at: u64, gear: &Gear) -> Option<usize> {
        loop {
            while self.batch.get(self.next).is_some_and(|&c| c < at) {
                self.next += 1;
            }
            match self.batch.get(self.next..) {
                Some([first, second, ..]) if *first == at => {
                    let len = usize::try_from(second - at).ok()?;
                    if len < gear.min / 2 * 2 || len > gear.max {
                        return None;
                    }
                    self.taken += 1;
                    return Some(len);
                }
                // The next cut is in the next batch (which starts with
                // this one), or nothing is known past `at`: a batch found
                // since, if any.
                Some([first]) if *first == at => {}
                Some([]) | None => {}
                Some(_) => return None,
            }
            self.batch = self.rx.try_recv().ok()?;
            self.next = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize) -> Vec<u8> {
        crate::format::testdata::xorshift(n, 0x9e3779b97f4a7c15)
    }

    #[test]
    fn chunks_cover_input_and_respect_bounds() {
        let data = pseudo_random(1 << 20);
        let p = ChunkerParams::default();
        let parts: Vec<_> = chunks(&data[..], &p, 1).map(Result::unwrap).collect();
        assert_eq!(parts.concat(), data);
        for c in &parts[..parts.len() - 1] {
            assert!(c.len() >= p.min_size as usize && c.len() <= p.max_size as usize);
        }
    }

    #[test]
    fn cut_points_match_fastcdc_stream_cdc() {
        let p = ChunkerParams::default();
        for (len, seed) in [
            (0, 1),
            (100, 2),
            (5000, 3),
            (3 << 20, 4),
            ((1 << 20) + 77, 5),
        ] {
            let mut data = pseudo_random(len);
            // Runs of zeros force maximum-size chunks.
            if len > 300_000 {
                data[100_000..300_000].fill(0);
            }
            // A reader that returns short reads, as pipes do.
            let reader = ShortReads(&data[..], 7777);
            let ours: Vec<Vec<u8>> = chunks(reader, &p, seed).map(Result::unwrap).collect();
            // Expected lengths below, at and above the real one.
            for expected in [0, len as u64 / 2, len as u64, len as u64 + 1, 1 << 40] {
                let sized: Vec<Vec<u8>> = Gear::new(&p, seed)
                    .chunks(&data[..], expected)
                    .map(Result::unwrap)
                    .collect();
                assert!(sized == ours, "length {len}, expected {expected}");
            }
            let theirs: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::with_level_and_seed(
                &data[..],
                p.min_size as usize,
                p.avg_size as usize,
                p.max_size as usize,
                fastcdc::v2020::Normalization::Level1,
                seed,
            )
            .map(|c| c.unwrap().data)
            .collect();
            assert_eq!(ours, theirs, "length {len}");
        }
    }

    #[test]
    fn every_cut_is_the_one_fastcdc_finds() {
        let sizes = [
            ChunkerParams::default(),
            ChunkerParams {
                min_size: 64,
                avg_size: 256,
                max_size: 1024,
            },
            ChunkerParams {
                min_size: 2050,
                avg_size: 8190,
                max_size: 30002,
            },
            ChunkerParams {
                min_size: 64 << 10,
                avg_size: 1 << 20,
                max_size: 4 << 20,
            },
        ];
        let noise = pseudo_random(5 << 20);
        // Text-like bytes (few distinct values), and runs of one byte.
        let text: Vec<u8> = noise
            .iter()
            .map(|b| b"etaoin shrdlu\n"[*b as usize % 14])
            .collect();
        let mut runs = noise.clone();
        for (i, b) in runs.iter_mut().enumerate() {
            if (i / 3000) % 2 == 0 {
                *b = 0;
            }
        }
        for (n, p) in sizes.iter().enumerate() {
            for seed in [0, 7, gear_seed(&[9; 32])] {
                let gear = Gear::new(p, seed);
                let (mask_s, mask_l) = gear.masks;
                for data in [&noise, &text, &runs] {
                    let mut at = 0;
                    let mut cuts = 0;
                    while at < data.len() && cuts < 400 {
                        // Windows of every length near the bounds, as at a
                        // stream's end.
                        let len = match cuts % 5 {
                            0 => p.max_size as usize,
                            1 => p.min_size as usize + cuts % 3,
                            2 => p.avg_size as usize + 1 - cuts % 3,
                            3 => 3 * p.max_size as usize,
                            _ => (p.avg_size as usize + p.max_size as usize) / 2 + 1,
                        };
                        let window = &data[at..(at + len).min(data.len())];
                        let (_, want) = fastcdc::v2020::cut_gear(
                            window,
                            p.min_size as usize,
                            p.avg_size as usize,
                            p.max_size as usize,
                            mask_s,
                            mask_l,
                            mask_s << 1,
                            mask_l << 1,
                            &gear.tables.0,
                            &gear.tables.1,
                        );
                        assert_eq!(gear.cut(window), want, "sizes {n}, seed {seed}, at {at}");
                        at += want.max(1) + cuts % 7;
                        cuts += 1;
                    }
                }
            }
        }
    }

    /// Yields at most `.1` bytes per read.
    struct ShortReads<'a>(&'a [u8], usize);

    impl Read for ShortReads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_ends_the_chunks() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk"))
            }
        }
        let mut it = chunks(Failing, &ChunkerParams::default(), 1);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    /// A reader of `data` that returns at most `cap` bytes a read and
    /// counts its reads.
    struct Counted<'a> {
        data: &'a [u8],
        cap: usize,
        reads: usize,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            let n = buf.len().min(self.cap).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Every byte `blocks` yields for a stream of `data` read `cap` bytes
    /// at a time, `expected` long as far as known, and the reads made.
    fn read_blocks(data: &[u8], cap: usize, expected: u64) -> (Vec<u8>, usize) {
        let gear = Gear::new(&ChunkerParams::default(), 1);
        let mut reader = Counted {
            data,
            cap,
            reads: 0,
        };
        let mut out = Vec::new();
        let mut blocks = gear.blocks(&mut reader, expected);
        while let Some(b) = blocks.next_block().unwrap() {
            out.extend_from_slice(b.bytes());
            blocks.give_back(b.into_buffer());
        }
        drop(blocks);
        (out, reader.reads)
    }

    #[test]
    fn a_stream_of_its_expected_length_ends_without_a_read_that_returns_nothing() {
        let data = pseudo_random(3000);
        // One read for a small file, none to find its end.
        assert_eq!(read_blocks(&data, usize::MAX, 3000), (data.clone(), 1));
        // Short reads before the end do not end it.
        assert_eq!(read_blocks(&data, 1000, 3000), (data.clone(), 3));
        // A file that grew after its size was taken is read to its end.
        assert_eq!(read_blocks(&data, usize::MAX, 2000).0, data);
        // Unknown or shorter than said: read until a read returns nothing.
        assert_eq!(read_blocks(&data, usize::MAX, u64::MAX), (data.clone(), 2));
        assert_eq!(read_blocks(&data, usize::MAX, 4000), (data.clone(), 2));
        assert_eq!(read_blocks(&[], usize::MAX, 0), (Vec::new(), 1));
        // A large stream: many buffers, the last read short at its end.
        let large = pseudo_random(3 << 20);
        let (out, reads) = read_blocks(&large, usize::MAX, large.len() as u64);
        assert!(out == large);
        let (_, reads_unknown) = read_blocks(&large, usize::MAX, u64::MAX);
        assert_eq!(reads + 1, reads_unknown);
    }

    /// Reads `data` as `pread` would.
    fn read_at(data: &[u8]) -> impl FnMut(&mut [u8], u64) -> std::io::Result<usize> + '_ {
        move |buf, at| {
            let at = usize::try_from(at).unwrap().min(data.len());
            let n = buf.len().min(data.len() - at);
            buf[..n].copy_from_slice(&data[at..at + n]);
            Ok(n)
        }
    }

    /// The chunk lengths `blocks` yields for `data` (read `cap` bytes at a
    /// time) with `hints`, and how many cut points it took from them.
    fn lens_with(gear: &Gear, data: &[u8], cap: usize, hints: Hints) -> (Vec<usize>, u64) {
        let mut blocks = gear
            .blocks(ShortReads(data, cap), data.len() as u64)
            .with_hints(hints);
        let mut lens = Vec::new();
        while let Some(b) = blocks.next_block().unwrap() {
            lens.extend(b.chunks().map(<[u8]>::len));
            blocks.give_back(b.into_buffer());
        }
        (lens, blocks.hinted())
    }

    /// The chunk lengths of `data` without hints.
    fn lens_alone(gear: &Gear, data: &[u8]) -> Vec<usize> {
        gear.chunks(data, u64::MAX)
            .map(|c| c.unwrap().len())
            .collect()
    }

    /// The chunk lengths with the cut points of one run starting at `lead`
    /// found first, in batches of `span` bytes.
    fn lens_one_run(gear: &Gear, data: &[u8], lead: u64, span: usize) -> (Vec<usize>, u64) {
        // Each batch but the last moves on by at least `max` bytes: room
        // for all of them.
        let (mut ahead, hints) = gear.ahead(data.len() / gear.max + 2);
        ahead.lead = lead;
        ahead.shrink = false;
        ahead.margin = 0;
        ahead.span = span.max(2 * gear.max);
        // The chunker has not started: one run, from `lead` to the end.
        ahead.run(data.len() as u64, read_at(data));
        lens_with(gear, data, 7777, hints)
    }

    /// Small chunks, so that short data has many.
    fn small() -> ChunkerParams {
        ChunkerParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        }
    }

    /// Noise, text-like bytes, noise with stretches of zeros longer than
    /// the largest chunk, and zeros only.
    fn kinds(n: usize, seed: u64) -> [Vec<u8>; 4] {
        let noise = crate::format::testdata::xorshift(n, seed);
        let text = noise
            .iter()
            .map(|b| b"etaoin shrdlu\n"[*b as usize % 14])
            .collect();
        let mut runs = noise.clone();
        for (i, b) in runs.iter_mut().enumerate() {
            if (i / 5000) % 3 == 1 {
                *b = 0;
            }
        }
        [noise, text, runs, vec![0; n]]
    }

    #[test]
    fn a_run_found_ahead_from_anywhere_gives_the_cut_points_found_alone() {
        let mut hinted_noise = 0;
        for (p, seed) in [
            (small(), 1),
            (small(), gear_seed(&[3; 32])),
            (ChunkerParams::default(), 5),
        ] {
            let gear = Gear::new(&p, seed);
            let max = p.max_size as usize;
            let sizes = if p == small() {
                vec![0, 100, max - 1, max, max + 1, 3 * max + 5, 40_000, 150_000]
            } else {
                vec![3 << 20]
            };
            for len in sizes {
                for (kind, data) in kinds(len, seed ^ len as u64).iter().enumerate() {
                    let want = lens_alone(&gear, data);
                    // Cut points of the sequential chunker near its start,
                    // middle and end, and one byte beside them.
                    let mut ends: Vec<usize> = want
                        .iter()
                        .scan(0, |at, l| {
                            *at += l;
                            Some(*at)
                        })
                        .collect();
                    let n = ends.len();
                    ends = [0, 1, n / 2, n.saturating_sub(3), n.saturating_sub(1)]
                        .into_iter()
                        .filter_map(|i| ends.get(i).copied())
                        .collect();
                    let mut leads = vec![0, 1, 63, max - 1, max, max + 1, len / 2];
                    leads.extend([
                        len.saturating_sub(max + 1),
                        len.saturating_sub(max),
                        len,
                        len + 9,
                    ]);
                    for e in ends {
                        leads.extend([e.saturating_sub(1), e, e + 1]);
                    }
                    for lead in leads {
                        for span in [1, 5000, 1 << 20] {
                            let (got, hinted) = lens_one_run(&gear, data, lead as u64, span);
                            assert!(
                                got == want,
                                "seed {seed}, length {len}, kind {kind}, lead {lead}, span {span}"
                            );
                            if kind == 0 {
                                hinted_noise += hinted;
                            }
                        }
                    }
                }
            }
        }
        // The runs were followed, not only searched past.
        assert!(hinted_noise > 10_000, "{hinted_noise}");
    }

    #[test]
    fn a_run_from_a_cut_point_is_followed_to_the_end() {
        let gear = Gear::new(&small(), 9);
        let data = pseudo_random(200_000);
        let want = lens_alone(&gear, &data);
        let first = want[0] as u64;
        let (got, hinted) = lens_one_run(&gear, &data, first, 1 << 20);
        assert!(got == want);
        // Every chunk but the first and the last few (whose window is
        // short at the end) came from the hints.
        let tail = want.iter().rev().scan(0, |s, l| {
            *s += l;
            Some(*s)
        });
        let searched_at_end = tail.take_while(|&s| s < 1024 + 1024).count() as u64;
        assert!(
            hinted + 1 + searched_at_end + 1 >= want.len() as u64,
            "{hinted} of {}",
            want.len()
        );
    }

    #[test]
    fn cut_points_found_on_another_thread_meanwhile_are_the_ones_found_alone() {
        let mut hinted = 0;
        for seed in 0..12u64 {
            let p = if seed % 4 == 3 {
                ChunkerParams::default()
            } else {
                small()
            };
            let gear = Gear::new(&p, seed);
            let len = if seed % 4 == 3 {
                3 << 20
            } else {
                300_000 + seed as usize * 977
            };
            let data = &kinds(len, seed + 1)[(seed % 3) as usize];
            let want = lens_alone(&gear, data);
            for (lead, span, queue, cap) in [
                (0, 1, 1, 1 << 20),
                (3000, 4096, 2, 999),
                (40_000, 20_000, 1, 1 << 16),
                (1 << 20, 1 << 20, 16, 1 << 20),
            ] {
                let (mut ahead, hints) = gear.ahead(queue);
                ahead.lead = lead;
                ahead.margin = lead / 2;
                ahead.span = span.max(2 * gear.max);
                let (got, taken) = std::thread::scope(|s| {
                    s.spawn(|| ahead.run(data.len() as u64, read_at(data)));
                    lens_with(&gear, data, cap, hints)
                });
                assert!(got == want, "seed {seed}, lead {lead}, span {span}");
                hinted += taken;
            }
        }
        assert!(hinted > 0);
    }

    #[test]
    fn a_finder_started_in_the_middle_of_a_stream_starts_ahead_of_the_chunker() {
        let gear = Gear::new(&small(), 8);
        let data = pseudo_random(3 << 20);
        let want = lens_alone(&gear, &data);
        for after in [1, 3, 7] {
            let mut blocks = gear.blocks(&data[..], data.len() as u64);
            let mut lens = Vec::new();
            for _ in 0..after {
                let b = blocks.next_block().unwrap().unwrap();
                lens.extend(b.chunks().map(<[u8]>::len));
            }
            let (mut ahead, hints) = gear.ahead(4096);
            ahead.lead = 5000;
            ahead.margin = 0;
            blocks.set_hints(hints);
            let start = blocks.base;
            // Run first, to its end: one run from 5000 past the chunker.
            let found = ahead.run(data.len() as u64, read_at(&data));
            assert!(found > 1000);
            let first = blocks.hints.as_ref().unwrap().rx.try_recv().unwrap();
            assert_eq!(first[0], start + 5000);
            blocks.hints.as_mut().unwrap().batch = first;
            while let Some(b) = blocks.next_block().unwrap() {
                lens.extend(b.chunks().map(<[u8]>::len));
            }
            assert!(lens == want, "after {after} blocks");
            assert!(blocks.hinted() > 1000);
        }
    }

    #[test]
    fn a_finder_whose_reads_fail_or_end_early_changes_nothing() {
        let gear = Gear::new(&small(), 4);
        let data = pseudo_random(100_000);
        let want = lens_alone(&gear, &data);
        for stop in [0, 10, 5000, 50_000] {
            // Reads fail past `stop`, or the stream looks `stop` long.
            for fail in [true, false] {
                let (mut ahead, hints) = gear.ahead(64);
                ahead.lead = 3000;
                ahead.span = 4096;
                let mut inner = read_at(&data);
                ahead.run(data.len() as u64, |buf, at| {
                    if at as usize >= stop {
                        if fail {
                            return Err(std::io::Error::other("disk"));
                        }
                        return Ok(0);
                    }
                    let n = buf.len().min(stop - at as usize);
                    inner(&mut buf[..n], at)
                });
                let (got, _) = lens_with(&gear, &data, 1 << 20, hints);
                assert!(got == want, "stop {stop}, fail {fail}");
            }
        }
    }

    /// The chunk lengths of `data` with `batches` given as the cut points
    /// found ahead.
    fn lens_given(gear: &Gear, data: &[u8], batches: Vec<Vec<u64>>) -> Vec<usize> {
        let (ahead, hints) = gear.ahead(batches.len().max(1));
        for b in batches {
            ahead.tx.send(b).unwrap();
        }
        lens_with(gear, data, 1 << 20, hints).0
    }

    #[test]
    fn wrong_cut_points_are_refused_or_show() {
        let gear = Gear::new(&small(), 6);
        let data = pseudo_random(100_000);
        let want = lens_alone(&gear, &data);
        let ends: Vec<u64> = want
            .iter()
            .scan(0u64, |at, &l| {
                *at += l as u64;
                Some(*at)
            })
            .collect();
        let true_run: Vec<u64> = ends[10..200].to_vec();
        // The true cut points, in batches that overlap by one, are taken.
        let batches: Vec<Vec<u64>> = true_run
            .windows(20)
            .step_by(19)
            .map(<[u64]>::to_vec)
            .collect();
        assert_eq!(lens_given(&gear, &data, batches), want);
        // Lengths no search returns are refused: too short, too long.
        let c = ends[10];
        for wrong in [
            vec![c, c + 1],
            vec![c, c + 62],
            vec![c, c + 1025],
            vec![c, c + 5000],
        ] {
            assert_eq!(lens_given(&gear, &data, vec![wrong]), want);
        }
        // Points that are no cut point of the chunker are never reached.
        let off: Vec<u64> = true_run.iter().map(|e| e + 1).collect();
        assert_eq!(lens_given(&gear, &data, vec![off]), want);
        // A batch whose next point is not the next cut (a bug in how runs
        // are followed or joined) shows in the chunks: this is what the
        // tests above would catch.
        let mut skewed = true_run.clone();
        skewed[5] += 2;
        assert_ne!(lens_given(&gear, &data, vec![skewed]), want);
        let mut gap = ends[10..40].to_vec();
        gap.remove(10);
        assert_ne!(lens_given(&gear, &data, vec![gap]), want);
        // A new run in the next batch is a new run, not a continuation.
        let runs = vec![ends[10..20].to_vec(), ends[21..40].to_vec()];
        assert_eq!(lens_given(&gear, &data, runs), want);
    }

    #[test]
    fn seed_changes_cut_points() {
        let data = pseudo_random(1 << 20);
        let p = ChunkerParams::default();
        let lens = |seed| -> Vec<usize> {
            chunks(&data[..], &p, seed)
                .map(|c| c.unwrap().len())
                .collect()
        };
        assert_ne!(lens(gear_seed(&[1; 32])), lens(gear_seed(&[2; 32])));
    }

    #[test]
    fn insert_shifts_only_nearby_chunks() {
        let data = pseudo_random(1 << 20);
        let mut edited = data.clone();
        edited.splice(500_000..500_000, b"inserted".iter().copied());
        let p = ChunkerParams::default();
        let set = |d: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            chunks(d, &p, 3).map(Result::unwrap).collect()
        };
        let (a, b) = (set(&data), set(&edited));
        let shared = a.intersection(&b).count();
        assert!(shared + 3 >= a.len(), "{shared} of {}", a.len());
    }

    #[test]
    fn rejects_bad_params() {
        let p = ChunkerParams {
            min_size: 10,
            avg_size: 5,
            max_size: 1,
        };
        assert!(p.validate().is_err());
        assert!(ChunkerParams::default().validate().is_ok());
        // Odd sizes in a hand-edited config: refused, as FastCDC would.
        for odd in [
            ChunkerParams {
                min_size: 4097,
                ..ChunkerParams::default()
            },
            ChunkerParams {
                avg_size: 16385,
                ..ChunkerParams::default()
            },
            ChunkerParams {
                max_size: 65537,
                ..ChunkerParams::default()
            },
        ] {
            let e = odd.validate().unwrap_err();
            assert!(e.to_string().contains("even"), "{e}");
        }
    }
}
