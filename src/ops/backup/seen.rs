//! The blobs a backup has already sent to be stored, so that a chunk seen
//! twice in one run is stored once, in memory that does not grow with the
//! backup's size.
//!
//! The most recent ids are held in a hash set; when it is full they are
//! sorted and spilled to an unnamed temporary file, as one run, with every
//! [`FENCE`]th id of the run kept in memory and every id added to a
//! fixed-size Bloom filter. A lookup asks the set, then (when the filter
//! says maybe) each run: a binary search of its fences and one read of a
//! [`FENCE`]-id block. Memory: the set, the filter (4 MiB, made at the
//! first spill) and 1 byte of fences per 4 ids spilled.
//!
//! The answer may only err towards "not seen" (a spill file that cannot be
//! made or read): such a blob is stored twice, which every reader accepts,
//! never left out.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::format::id::BlobId;

/// Ids held in memory before a spill: the hash set then fills 65,536
/// buckets to 7/8 (about 2 MiB), and a 10 GB backup of 16 KiB chunks
/// spills about a dozen runs.
pub const RECENT_MAX: usize = 57_344;

/// Spilled ids per fence (one block read per run looked up).
const FENCE: usize = 128;

/// Bits of the Bloom filter (4 MiB); each id sets [`PROBES`] of them.
const BLOOM_BITS: usize = 1 << 25;

/// Bits set per id: under 1 false "maybe" in 10^5 for a 10 GB backup.
const PROBES: usize = 7;

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
}

impl Default for Seen {
    fn default() -> Self {
        Seen::with_limit(RECENT_MAX)
    }
}

impl Seen {
    /// A set spilling once `max_recent` ids are held.
    pub fn with_limit(max_recent: usize) -> Self {
        Seen {
            recent: HashSet::new(),
            runs: Vec::new(),
            bloom: Vec::new(),
            spill: None,
            in_memory: false,
            max_recent: max_recent.max(1),
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

    /// The Bloom filter's bit positions of `id` (ids are keyed hashes:
    /// uniform, so their bytes are positions already).
    fn probes(id: &BlobId) -> impl Iterator<Item = usize> + '_ {
        let b = &id.0.0;
        (0..PROBES).map(move |i| {
            let w = u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
            w as usize % BLOOM_BITS
        })
    }

    fn spilled(&self, id: &BlobId) -> bool {
        if self.runs.is_empty()
            || !Self::probes(id).all(|bit| self.bloom[bit / 64] & (1 << (bit % 64)) != 0)
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
        if self.bloom.is_empty() {
            self.bloom = vec![0; BLOOM_BITS / 64];
        }
        for id in &ids {
            for bit in Self::probes(id) {
                self.bloom[bit / 64] |= 1 << (bit % 64);
            }
        }
        self.runs.push(Run {
            start: *at,
            len: ids.len(),
            fences: ids.iter().step_by(FENCE).copied().collect(),
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
}
