//! The blobs a backup has already sent to be stored, so that a chunk seen
//! twice in one run is stored once, in memory that does not grow with the
//! backup's size.
//!
//! The most recent ids are held in a hash set; when it is full they are
//! sorted and spilled to an unnamed temporary file, as one run, with every
//! [`FENCE`]th id of the run kept in memory and a Bloom filter of the run's
//! ids ([`BITS_PER_ID`] bits each). A lookup asks the set, then each run
//! whose filter says maybe: a binary search of its fences and one read of a
//! [`FENCE`]-id block. An id seen again costs one read (of the run holding
//! it) and a new id almost never one.
//!
//! Memory: the set (made at its full size, about 530 KiB, so it never
//! rehashes), then under 2 bytes per spilled id (filter and fences): about
//! 100 KiB for a 1 GB backup of 16 KiB chunks, 1 MiB for 10 GB.
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

/// Filter bits per spilled id: with [`PROBES`] bits set per id, a run's
/// filter says maybe for about 1 id in 200 it does not hold.
const BITS_PER_ID: usize = 12;

/// Bits set per id.
const PROBES: usize = 7;

/// One spilled run: ids sorted, at `start` (in ids) in the spill file.
struct Run {
    start: u64,
    len: usize,
    /// The first id of every block of [`FENCE`] ids.
    fences: Vec<BlobId>,
    /// The run's Bloom filter.
    bloom: Vec<u64>,
}

impl Run {
    /// Whether the run's filter may hold `id`.
    fn may_hold(&self, id: &BlobId) -> bool {
        probes(id, self.bloom.len() * 64).all(|bit| self.bloom[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The bit positions of `id` in a filter of `bits` bits (ids are keyed
/// hashes: uniform, so their bytes are positions already, scaled to the
/// filter by a multiply and shift).
fn probes(id: &BlobId, bits: usize) -> impl Iterator<Item = usize> + '_ {
    let b = &id.0.0;
    (0..PROBES).map(move |i| {
        let w = u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        ((u64::from(w) * bits as u64) >> 32) as usize
    })
}

/// Ids seen by this run (see the module documentation).
pub struct Seen {
    recent: HashSet<BlobId>,
    runs: Vec<Run>,
    /// The spill file, and how many ids it holds.
    spill: Option<(File, u64)>,
    /// Spilling failed once: keep every id in memory from then on.
    in_memory: bool,
    max_recent: usize,
    /// Blocks read back from the spill file, for tests of the cost.
    #[cfg(test)]
    reads: std::cell::Cell<usize>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen::with_limit(RECENT_MAX)
    }
}

impl Seen {
    /// A set spilling once `max_recent` ids are held.
    pub fn with_limit(max_recent: usize) -> Self {
        let max_recent = max_recent.max(1);
        Seen {
            // At its full size from the start: growing it would hold the
            // old table and the new one at once, twice on the way up.
            recent: HashSet::with_capacity(max_recent),
            runs: Vec::new(),
            spill: None,
            in_memory: false,
            max_recent,
            #[cfg(test)]
            reads: std::cell::Cell::new(0),
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
    /// not just its entries), the filters and the fences; for tests.
    #[cfg(test)]
    pub fn memory(&self) -> usize {
        let table = self.recent.capacity().div_ceil(7) * 8;
        let entry = std::mem::size_of::<BlobId>() + 1;
        let runs: usize = self
            .runs
            .iter()
            .map(|r| r.fences.capacity() * std::mem::size_of::<BlobId>() + r.bloom.capacity() * 8)
            .sum();
        table * entry + runs
    }

    fn spilled(&self, id: &BlobId) -> bool {
        let Some((file, _)) = &self.spill else {
            return false;
        };
        self.runs.iter().any(|run| {
            run.may_hold(id) && {
                #[cfg(test)]
                self.reads.set(self.reads.get() + 1);
                run_contains(file, run, id)
            }
        })
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
        let mut bloom = vec![0u64; (ids.len() * BITS_PER_ID).div_ceil(64)];
        let bits = bloom.len() * 64;
        for id in &ids {
            for bit in probes(id, bits) {
                bloom[bit / 64] |= 1 << (bit % 64);
            }
        }
        self.runs.push(Run {
            start: *at,
            len: ids.len(),
            fences: ids.iter().step_by(FENCE).copied().collect(),
            bloom,
        });
        *at += ids.len() as u64;
        self.recent.clear();
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
    // On the stack: a lookup allocates nothing.
    let mut buf = [0u8; FENCE * 32];
    let ids = &mut buf[..n * 32];
    if file
        .read_exact_at(ids, (run.start + first as u64) * 32)
        .is_err()
    {
        // Unreadable: "not seen" (stored again), never "seen".
        return false;
    }
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match ids[mid * 32..mid * 32 + 32].cmp(&key[..]) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    false
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
    fn an_id_seen_again_reads_one_block_and_a_new_one_almost_none() {
        let mut seen = Seen::with_limit(1000);
        for n in 0..30_000 {
            assert!(seen.insert(id(n)));
        }
        assert!(seen.runs.len() >= 29, "{} runs", seen.runs.len());
        // Repeats from every run: one read each (the run holding it), plus
        // the few other runs whose filter errs.
        seen.reads.set(0);
        for n in (0..29_000).step_by(7) {
            assert!(!seen.insert(id(n)), "id {n}");
        }
        let repeats = 29_000usize.div_ceil(7);
        let reads = seen.reads.get();
        assert!(
            reads >= repeats && reads < repeats + repeats / 5,
            "{reads} reads"
        );
        // New ids: a read only where a filter errs.
        seen.reads.set(0);
        for n in 100_000..110_000 {
            assert!(seen.insert(id(n)));
        }
        let reads = seen.reads.get();
        assert!(reads < 10_000 / 5, "{reads} reads for 10,000 new ids");
    }

    #[test]
    fn the_ids_of_a_ten_gigabyte_backup_fit_in_two_mebibytes() {
        // 600,000 new 16 KiB chunks: the hash set, the filters and the
        // fences, with no table ever rehashed.
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
