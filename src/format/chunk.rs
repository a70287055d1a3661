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
     (64 B..1 MiB / 256 B..4 MiB / 1 KiB..16 MiB, min <= avg <= max)",
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
            && self.avg_size <= self.max_size;
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
        Gear {
            min: params.min_size as usize,
            avg: params.avg_size as usize,
            max: params.max_size as usize,
            masks: fastcdc::v2020::select_masks(
                params.avg_size as usize,
                fastcdc::v2020::Normalization::Level1,
            ),
            tables: std::sync::Arc::new(fastcdc::v2020::get_gear_with_seed(seed)),
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
        Chunker {
            reader,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            eof: false,
            expected,
            gear: self.clone(),
        }
    }
}

/// Bytes the chunker reads ahead: large reads and few moves of what is left
/// (a buffer of one chunk's bound would read and shift once per chunk).
const READ_AHEAD: usize = 256 * 1024;

/// The iterator behind [`chunks`].
struct Chunker<R> {
    reader: R,
    buf: Vec<u8>,
    /// Start of the bytes not yet cut.
    pos: usize,
    /// End of the bytes read.
    len: usize,
    eof: bool,
    /// The expected length, for the first buffer's size.
    expected: u64,
    gear: Gear,
}

impl<R: Read> Chunker<R> {
    /// Reads until at least `max` bytes are ahead of `pos`, or the end.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.eof || self.len - self.pos >= self.gear.max {
            return Ok(());
        }
        let full = READ_AHEAD.max(2 * self.gear.max);
        if self.buf.is_empty() {
            // One byte more than expected, so the end shows in one read.
            let first = usize::try_from(self.expected.saturating_add(1)).unwrap_or(full);
            self.buf = vec![0; first.clamp(1, full)];
        }
        // Move what is left to the front, then read as much as fits.
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        loop {
            while !self.eof && self.len < self.buf.len() {
                match self.reader.read(&mut self.buf[self.len..]) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.len += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if self.eof || self.len >= self.gear.max {
                return Ok(());
            }
            // Longer than expected: the usual read-ahead from now on.
            self.buf.resize(full, 0);
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            self.eof = true;
            self.pos = self.len;
            return Some(Err(e));
        }
        if self.pos == self.len {
            return None;
        }
        let (mask_s, mask_l) = self.gear.masks;
        let (_, n) = fastcdc::v2020::cut_gear(
            &self.buf[self.pos..self.len],
            self.gear.min,
            self.gear.avg,
            self.gear.max,
            mask_s,
            mask_l,
            mask_s << 1,
            mask_l << 1,
            &self.gear.tables.0,
            &self.gear.tables.1,
        );
        let chunk = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Some(Ok(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
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
    }
}
