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
        }
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
                pos += self.gear.cut(&self.buf[pos..self.len]);
                ends.push(pos);
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
