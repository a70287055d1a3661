//! The blobs a backup has already sent to be stored, so that a chunk seen
//! twice in one run is stored once, in memory that does not grow with the
//! backup's size.
//!
//! The most recent ids are held in a hash set; when it is full they are
//! sorted and spilled to an unnamed temporary file, as one run, with every
//! [`FENCE`]th id of the run kept in memory and every id added to a Bloom
//! filter. A lookup asks the set, then (when the filter says maybe) each
//! run: a binary search of its fences and one read of a [`FENCE`]-id block.
//!
//! Memory: the set (made at its full size, about 530 KiB, so it never
//! rehashes), 1 byte of fences per 4 ids spilled, and the filter, which
//! starts at [`BLOOM_MIN_BITS`] at the first spill and doubles (rebuilt from
//! the spill file) whenever it holds fewer than [`BITS_PER_ID`] bits per
//! spilled id, up to [`BLOOM_MAX_BITS`]: 256 KiB for a 1 GB backup of
//! 16 KiB chunks, 1 MiB for 10 GB, never more than 4 MiB.
//!
//! The answer may only err towards "not seen" (a spill file that cannot be
//! made or read): such a blob is stored twice, which every reader accepts,
//! never left out.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::format::id::BlobId;

/// Ids held in memory before a spill: the hash set then fills 16,384
/// buckets to 7/8 (about 530 KiB), and a 10 GB backup of 16 KiB chunks
/// spills about 40 runs.
pub const RECENT_MAX: usize = 14_336;

/// Spilled ids per fence (one block read per run looked up).
const FENCE: usize = 128;

/// Bits of the Bloom filter when it is made (256 KiB).
const BLOOM_MIN_BITS: usize = 1 << 21;

/// The most bits the Bloom filter grows to (4 MiB): past some 2.8 million
/// spilled ids (a backup of about 45 GB of new 16 KiB chunks) it fills up
/// and more lookups read a block of each run.
const BLOOM_MAX_BITS: usize = 1 << 25;

/// Fewest filter bits per spilled id before the filter doubles: with
/// [`PROBES`] bits set per id, under 1 false "maybe" in 300.
const BITS_PER_ID: usize = 12;

/// Bits set per id.
const PROBES: usize = 7;

/// Spilled ids read at once when the filter is rebuilt (128 KiB).
const REBUILD_IDS: usize = 4096;

/// One spilled run: ids sorted, at `start` (in ids) in the spill file.
struct Run {
    start: u64,
    len: usize,
    /// The first id of every block of [`FENCE`] ids.
    fences: Vec<BlobId>,
}

/// Ids seen by this run (see the module documentation).
pub struct Seen {
    recent: HashSet<BlobId>,
    runs: Vec<Run>,
    bloom: Vec<u64>,
    /// The spill file, and how many ids it holds.
    spill: Option<(File, u64)>,
    /// Spilling failed once: keep every id in memory from then on.
    in_memory: bool,
    max_recent: usize,
    /// Bits of the filter when it is first made.
    bloom_min_bits: usize,
}

impl Default for Seen {
    fn default() -> Self {
        Seen::with_limit(RECENT_MAX)
    }
}

impl Seen {
    /// A set spilling once `max_recent` ids are held.
    pub fn with_limit(max_recent: usize) -> Self {
        Self::with_limits(max_recent, BLOOM_MIN_BITS)
    }

    /// A set spilling once `max_recent` ids are held, whose filter starts
    /// at `bloom_min_bits` (a power of two, at least 64).
    fn with_limits(max_recent: usize, bloom_min_bits: usize) -> Self {
        let max_recent = max_recent.max(1);
        Seen {
            // At its full size from the start: growing it would hold the
            // old table and the new one at once, twice on the way up.
            recent: HashSet::with_capacity(max_recent),
            runs: Vec::new(),
            bloom: Vec::new(),
            spill: None,
            in_memory: false,
            max_recent,
            bloom_min_bits: bloom_min_bits.next_power_of_two().clamp(64, BLOOM_MAX_BITS),
        }
    }

    /// Notes `id`; whether it was new to this run.
    pub fn insert(&mut self, id: BlobId) -> bool {
        if self.recent.contains(&id) || self.spilled(&id) {
            return false;
        }
        self.recent.insert(id);
        if self.recent.len() >= self.max_recent && !self.in_memory {
            self.spill_recent();
        }
        true
    }

    /// Ids held in memory (the hash set), for tests of the bound.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.recent.len()
    }

    /// Bytes of memory the set holds: the hash set's table (its capacity,
    /// not just its entries), the filter and the fences; for tests.
    #[cfg(test)]
    pub fn memory(&self) -> usize {
        let table = self.recent.capacity().div_ceil(7) * 8;
        let entry = std::mem::size_of::<BlobId>() + 1;
        let fences: usize = self.runs.iter().map(|r| r.fences.capacity()).sum();
        table * entry + self.bloom.capacity() * 8 + fences * std::mem::size_of::<BlobId>()
    }

    /// The bit positions of `id` in a filter of `bits` bits (a power of
    /// two; ids are keyed hashes: uniform, so their bytes are positions
    /// already).
    fn probes(id: &BlobId, bits: usize) -> impl Iterator<Item = usize> + '_ {
        let b = &id.0.0;
        (0..PROBES).map(move |i| {
            let w = u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            w as usize & (bits - 1)
        })
    }

    /// Sets `id`'s bits in `bloom`.
    fn mark(bloom: &mut [u64], id: &BlobId) {
        for bit in Self::probes(id, bloom.len() * 64) {
            bloom[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn spilled(&self, id: &BlobId) -> bool {
        let bits = self.bloom.len() * 64;
        if self.runs.is_empty()
            || !Self::probes(id, bits).all(|bit| self.bloom[bit / 64] & (1 << (bit % 64)) != 0)
        {
            return false;
        }
        let Some((file, _)) = &self.spill else {
            return false;
        };
        self.runs.iter().any(|run| run_contains(file, run, id))
    }

    /// Moves the recent ids to a new run in the spill file.
    fn spill_recent(&mut self) {
        if self.spill.is_none() {
            match tempfile::tempfile() {
                Ok(f) => self.spill = Some((f, 0)),
                Err(e) => {
                    tracing::debug!("deduplication spill file: {e}; keeping ids in memory");
                    self.in_memory = true;
                    return;
                }
            }
        }
        let mut ids: Vec<BlobId> = self.recent.iter().copied().collect();
        ids.sort_unstable();
        let (file, at) = self.spill.as_mut().expect("made above");
        let mut bytes = Vec::with_capacity(ids.len() * 32);
        for id in &ids {
            bytes.extend_from_slice(&id.0.0);
        }
        if let Err(e) = file.write_all_at(&bytes, *at * 32) {
            tracing::debug!("deduplication spill file: {e}; keeping ids in memory");
            self.in_memory = true;
            return;
        }
        drop(bytes);
        self.runs.push(Run {
            start: *at,
            len: ids.len(),
            fences: ids.iter().step_by(FENCE).copied().collect(),
        });
        *at += ids.len() as u64;
        let spilled = *at as usize;
        self.recent.clear();
        let want = (spilled * BITS_PER_ID)
            .next_power_of_two()
            .clamp(self.bloom_min_bits, BLOOM_MAX_BITS);
        if self.bloom.is_empty() {
            self.bloom = vec![0; want / 64];
        } else if self.bloom.len() * 64 < want {
            // Every run, this one included, read back from the file. If
            // that fails, the smaller filter (complete, only fuller) stays.
            if let Some(bloom) = self.rebuilt_bloom(want) {
                self.bloom = bloom;
                return;
            }
        }
        for id in &ids {
            Self::mark(&mut self.bloom, id);
        }
    }

    /// A filter of `bits` bits holding every spilled id, read back from the
    /// spill file [`REBUILD_IDS`] at a time; `None` if it cannot be read.
    fn rebuilt_bloom(&self, bits: usize) -> Option<Vec<u64>> {
        let (file, count) = self.spill.as_ref()?;
        let mut bloom = vec![0u64; bits / 64];
        let mut buf = vec![0u8; REBUILD_IDS * 32];
        let mut at = 0u64;
        while at < *count {
            let n = REBUILD_IDS.min((*count - at) as usize);
            file.read_exact_at(&mut buf[..n * 32], at * 32).ok()?;
            for raw in buf[..n * 32].chunks_exact(32) {
                let id = BlobId(crate::format::id::Id(raw.try_into().expect("32 bytes")));
                Self::mark(&mut bloom, &id);
            }
            at += n as u64;
        }
        Some(bloom)
    }
}

/// Whether `run` holds `id`: the block its fences point to, read back.
fn run_contains(file: &File, run: &Run, id: &BlobId) -> bool {
    let key = &id.0.0;
    // The last block whose first id is not above `id`.
    let block = match run.fences.binary_search_by(|f| f.0.0.cmp(key)) {
        Ok(_) => return true,
        Err(0) => return false,
        Err(i) => i - 1,
    };
    let first = block * FENCE;
    let n = FENCE.min(run.len - first);
    let mut buf = vec![0u8; n * 32];
    if file
        .read_exact_at(&mut buf, (run.start + first as u64) * 32)
        .is_err()
    {
        // Unreadable: "not seen" (stored again), never "seen".
        return false;
    }
    buf.chunks_exact(32)
        .map(|c| <&[u8; 32]>::try_from(c).expect("32 bytes"))
        .collect::<Vec<_>>()
        .binary_search(&key)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::Id;

    fn id(n: u64) -> BlobId {
        BlobId(Id::of_bytes(&n.to_le_bytes()))
    }

    #[test]
    fn answers_like_a_hash_set_while_holding_a_bounded_number_of_ids() {
        let mut seen = Seen::with_limit(1000);
        let mut model = HashSet::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut peak = 0;
        for _ in 0..30_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Ids repeat: one draw in three is an earlier one.
            let n = x % 20_000;
            assert_eq!(seen.insert(id(n)), model.insert(n), "id {n}");
            peak = peak.max(seen.held());
        }
        assert!(seen.runs.len() >= 10, "{} runs", seen.runs.len());
        assert!(peak < 1000, "{peak} ids held");
        // Every id again, and new ones.
        for n in 0..25_000 {
            assert_eq!(seen.insert(id(n)), model.insert(n), "id {n}");
        }
    }
    #[test]
    fn the_filter_grows_as_ids_are_spilled_and_answers_stay_exact() {
        // A tiny filter, so it is rebuilt (from the spill file) many times.
        let mut seen = Seen::with_limits(500, 64);
        let mut model = HashSet::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut sizes = Vec::new();
        for _ in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = x % 30_000;
            assert_eq!(seen.insert(id(n)), model.insert(n), "id {n}");
            if sizes.last() != Some(&seen.bloom.len()) {
                sizes.push(seen.bloom.len());
            }
            let spilled = seen.spill.as_ref().map_or(0, |s| s.1) as usize;
            assert!(
                seen.bloom.len() * 64 >= spilled * BITS_PER_ID,
                "{spilled} ids"
            );
        }
        assert!(sizes.len() >= 8, "filter sizes {sizes:?}");
        for n in 0..35_000 {
            assert_eq!(seen.insert(id(n)), model.insert(n), "id {n}");
        }
    }

    #[test]
    fn the_ids_of_a_ten_gigabyte_backup_fit_in_two_mebibytes() {
        // 600,000 new 16 KiB chunks: the hash set, the filter (1 MiB by
        // then) and the fences, with no table ever rehashed.
        let mut seen = Seen::default();
        let start = seen.memory();
        assert!(start < 600 << 10, "{start} bytes before the first id");
        let mut peak = 0;
        for n in 0..600_000 {
            assert!(seen.insert(id(n)));
            peak = peak.max(seen.memory());
        }
        assert!(peak < 2 << 20, "{peak} bytes");
        assert_eq!(
            seen.recent.capacity(),
            RECENT_MAX,
            "the hash set never grew"
        );
        for n in (0..600_000).step_by(997) {
            assert!(!seen.insert(id(n)), "id {n}");
        }
    }
}
