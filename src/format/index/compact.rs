//! The in-memory index: a sorted `Vec` of fixed 40-byte records searched by
//! binary search.
//!
//! A record holds the first [`KEY_LEN`] (24) bytes of the blob id, a pack
//! number into a small pack table (its top bit says whether an owner
//! attested the entry), and the blob's offset, stored length and raw length
//! (4 bytes each). 10 million blobs cost 381 MiB of records, 392 MiB peak
//! RSS when loaded (measured: `scripts/bench-index.sh`), whatever the pack
//! layout.
//!
//! Two modes:
//! - **compact** ([`Index::compact`], for backup and restore): 40 bytes a
//!   blob. A lookup matches the first 24 bytes of the id, so two blobs
//!   whose ids share them would be one key. Restore never relies on that:
//!   every blob read is checked against its full keyed id
//!   (the repository layer's blob reader), and a location holding another blob
//!   fails that check, so the reader falls back to the next location and
//!   reports an error when none holds the blob. A backup deduplicating
//!   against such a key would skip a new blob: that takes two blob ids
//!   agreeing on 192 bits, a birthday search of 2^96 keyed BLAKE3
//!   evaluations with the repository's chunk key (writers only);
//! - **full** ([`Index::full`], the default, for prune, check and copy,
//!   which write index files from it): the last 8 id bytes are kept in a
//!   parallel `Vec` (48 bytes a blob), every lookup is exact, and
//!   [`Index::blobs`] yields full ids.

use std::collections::HashMap;
use std::ops::Range;

use crate::format::id::{BlobId, PackId};
use crate::format::index::{BlobLocation, IndexedBlob, IndexedPack};
use crate::format::pack::BlobKind;

/// Id bytes kept in every record.
pub const KEY_LEN: usize = 24;

/// Id bytes kept beside the records of a full index.
const TAIL_LEN: usize = 32 - KEY_LEN;

/// The first [`KEY_LEN`] id bytes as big-endian words: they sort as the
/// bytes do, and compare in three integer comparisons instead of a memcmp
/// (lookups are a large share of a backup of unchanged files).
type Key = [u64; KEY_LEN / 8];

/// Top bit of a record's pack number: an owner attested the entry.
const ATTESTED: u32 = 1 << 31;

/// A pack number that marks a record to be dropped at [`Index::finish`].
const DEAD: u32 = ATTESTED - 1;

/// Most packs one index numbers.
pub const MAX_PACKS: usize = DEAD as usize;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Record {
    key: Key,
    /// Pack number, with [`ATTESTED`] in the top bit.
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

impl Record {
    fn number(&self) -> u32 {
        self.pack & !ATTESTED
    }

    fn attested(&self) -> bool {
        self.pack & ATTESTED != 0
    }

    /// The order records sort in: every field, the attestation aside.
    fn order(&self) -> (Key, u32, u32, u32, u32) {
        (
            self.key,
            self.number(),
            self.offset,
            self.length,
            self.raw_length,
        )
    }
}

/// The last [`TAIL_LEN`] id bytes as one big-endian word.
type Tail = u64;

/// The big-endian word at `bytes[at..at + 8]`.
fn word(bytes: &[u8; 32], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(w)
}

fn split(id: &BlobId) -> (Key, Tail) {
    let bytes = &id.0.0;
    let key = [word(bytes, 0), word(bytes, 8), word(bytes, 16)];
    (key, word(bytes, KEY_LEN))
}

/// The in-memory index: every blob location of every indexed pack.
pub struct Index {
    packs: Vec<(PackId, BlobKind)>,
    pack_numbers: HashMap<PackId, u32>,
    records: Vec<Record>,
    /// The last id bytes of each record, in a full index.
    tails: Option<Vec<Tail>>,
    sorted: bool,
    /// Where each run of records sharing their first key bits starts
    /// ([`Buckets`]), so a lookup searches a handful of records.
    buckets: Buckets,
}

/// The start of each run of sorted records sharing the top `bits` bits of
/// their key (plus the end), for records sorted as they were when the table
/// was made (`for_len` of them): a lookup then binary-searches about
/// [`PER_BUCKET`] records instead of all of them, touching one or two cache
/// lines of the table instead of the first probes' cache misses.
#[derive(Clone, Default)]
struct Buckets {
    bits: u32,
    starts: Vec<u32>,
    /// The record count the table was made for (any other: unused).
    for_len: usize,
}

/// Records per bucket aimed at: the table costs 4 bytes per 8 records,
/// at most 256 KiB.
const PER_BUCKET: usize = 8;

/// Most bits a bucket table uses (2^16 buckets).
const MAX_BUCKET_BITS: u32 = 16;

impl Buckets {
    /// The table for `records` (sorted).
    fn of(records: &[Record]) -> Self {
        let want = (records.len() / PER_BUCKET).max(1);
        let bits = (usize::BITS - 1 - want.leading_zeros()).min(MAX_BUCKET_BITS);
        let mut starts = vec![0u32; (1 << bits) + 1];
        if records.len() > u32::MAX as usize {
            return Buckets::default();
        }
        for r in records {
            starts[Self::bucket(bits, &r.key) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        Buckets {
            bits,
            starts,
            for_len: records.len(),
        }
    }

    fn bucket(bits: u32, key: &Key) -> usize {
        key[0].checked_shr(64 - bits).unwrap_or(0) as usize
    }

    /// The records that may hold `key`, out of `len` sorted ones.
    fn span(&self, key: &Key, len: usize) -> Range<usize> {
        if self.for_len != len || self.starts.is_empty() {
            return 0..len;
        }
        let b = Self::bucket(self.bits, key);
        self.starts[b] as usize..self.starts[b + 1] as usize
    }
}

impl Default for Index {
    /// A full index (exact lookups, full ids).
    fn default() -> Self {
        Index::full()
    }
}

/// How far an index had grown, to roll back to ([`Index::rollback`]).
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    records: usize,
    packs: usize,
}

impl Index {
    /// An empty full index: exact lookups, 48 bytes a blob (module docs).
    pub fn full() -> Self {
        Index {
            packs: Vec::new(),
            pack_numbers: HashMap::new(),
            records: Vec::new(),
            tails: Some(Vec::new()),
            sorted: true,
            buckets: Buckets::default(),
        }
    }

    /// An empty compact index: lookups by the first 24 id bytes, 40 bytes a
    /// blob (module docs).
    pub fn compact() -> Self {
        Index {
            tails: None,
            ..Index::full()
        }
    }

    /// Whether lookups compare whole ids.
    pub fn is_full(&self) -> bool {
        self.tails.is_some()
    }

    /// Adds one pack's blobs. Call [`Index::finish`] before looking up.
    pub fn add_pack(&mut self, pack: &IndexedPack) {
        let number = self
            .number_pack(pack.id, pack.kind)
            .expect("fewer than 2^31 packs");
        for b in &pack.blobs {
            self.push(Some(number), b, false);
        }
    }

    /// The number of pack `id`, numbering it (as `kind`) if it is new;
    /// `None` once [`MAX_PACKS`] are numbered.
    pub fn number_pack(&mut self, id: PackId, kind: BlobKind) -> Option<u32> {
        if let Some(n) = self.pack_numbers.get(&id) {
            return Some(*n);
        }
        if self.packs.len() >= MAX_PACKS {
            return None;
        }
        let n = self.packs.len() as u32;
        self.packs.push((id, kind));
        self.pack_numbers.insert(id, n);
        Some(n)
    }

    /// The id of pack number `n`.
    pub fn pack_id(&self, n: u32) -> PackId {
        self.packs[n as usize].0
    }

    /// Sets the kind of pack number `n` (the kind storage lists it under).
    pub fn set_kind(&mut self, n: u32, kind: BlobKind) {
        self.packs[n as usize].1 = kind;
    }

    /// Adds one location of `blob` in pack number `pack` (`None`: not known
    /// yet, see [`Index::assign`]), attested by an owner or not.
    pub fn push(&mut self, pack: Option<u32>, blob: &IndexedBlob, attested: bool) {
        let (key, tail) = split(&blob.id);
        let number = pack.unwrap_or(DEAD);
        self.records.push(Record {
            key,
            pack: if attested { number | ATTESTED } else { number },
            offset: blob.offset,
            length: blob.length,
            raw_length: blob.raw_length,
        });
        if let Some(t) = &mut self.tails {
            t.push(tail);
        }
        self.sorted = false;
    }

    /// Records added so far (before [`Index::finish`]: in the order added).
    pub fn pushed(&self) -> usize {
        self.records.len()
    }

    /// Puts the records in `range` (added since the last [`Index::finish`])
    /// into pack number `pack`, keeping their attestation.
    pub fn assign(&mut self, range: Range<usize>, pack: u32) {
        for r in &mut self.records[range] {
            r.pack = (r.pack & ATTESTED) | pack;
        }
    }

    /// Drops, at the next [`Index::finish`], the records in `range` for which
    /// `keep(offset, length, raw_length)` is false. Returns how many.
    pub fn drop_unless(
        &mut self,
        range: Range<usize>,
        keep: impl Fn(u32, u32, u32) -> bool,
    ) -> usize {
        let mut dropped = 0;
        for r in &mut self.records[range] {
            if !keep(r.offset, r.length, r.raw_length) {
                r.pack = DEAD;
                dropped += 1;
            }
        }
        dropped
    }

    /// Where the index stands now.
    pub fn mark(&self) -> Mark {
        Mark {
            records: self.records.len(),
            packs: self.packs.len(),
        }
    }

    /// Forgets every record and pack added since `mark` (an index file that
    /// turned out unreadable halfway through).
    pub fn rollback(&mut self, mark: Mark) {
        self.records.truncate(mark.records);
        if let Some(t) = &mut self.tails {
            t.truncate(mark.records);
        }
        for (id, _) in self.packs.drain(mark.packs..) {
            self.pack_numbers.remove(&id);
        }
    }

    /// Sorts the records. A blob stored in several places keeps every
    /// location: index files are not authenticated (anyone holding the
    /// writer key can add one), so readers fall back to the next location
    /// when one fails verification, and a planted entry cannot hide a
    /// genuine copy. Only exact duplicates merge (attested if either was).
    pub fn finish(&mut self) {
        let same = |a: &Record, b: &Record| a.order() == b.order();
        let merge = |gone: &Record, kept: &mut Record| kept.pack |= gone.pack & ATTESTED;
        match self.tails.take() {
            None => {
                self.records.retain(|r| r.number() != DEAD);
                sort(
                    &mut self.records,
                    |r| (r.key[0] >> 56) as u8,
                    |a, b| a.order().cmp(&b.order()),
                );
                self.records
                    .dedup_by(|a, b| same(a, b) && (merge(a, b), true).1);
                self.records.shrink_to_fit();
            }
            Some(tails) => {
                let mut both: Vec<(Record, Tail)> = std::mem::take(&mut self.records)
                    .into_iter()
                    .zip(tails)
                    .filter(|(r, _)| r.number() != DEAD)
                    .collect();
                sort(
                    &mut both,
                    |(r, _)| (r.key[0] >> 56) as u8,
                    |(a, ta), (b, tb)| (a.key, ta, a.order()).cmp(&(b.key, tb, b.order())),
                );
                both.dedup_by(|(a, ta), (b, tb)| ta == tb && same(a, b) && (merge(a, b), true).1);
                let (records, tails): (Vec<Record>, Vec<Tail>) = both.into_iter().unzip();
                self.records = records;
                self.tails = Some(tails);
            }
        }
        self.sorted = true;
        self.buckets = Buckets::of(&self.records);
    }

    /// Drops every location in a pack that `exists` says is not stored, so a
    /// backup never skips a blob because of an entry pointing nowhere.
    pub fn retain_packs(&mut self, exists: impl Fn(&PackId) -> bool) {
        let keep: Vec<bool> = self.packs.iter().map(|(id, _)| exists(id)).collect();
        match &mut self.tails {
            None => self.records.retain(|r| keep[r.number() as usize]),
            Some(tails) => {
                let mut i = 0;
                tails.retain(|_| {
                    i += 1;
                    keep[self.records[i - 1].number() as usize]
                });
                self.records.retain(|r| keep[r.number() as usize]);
            }
        }
        if self.sorted {
            self.buckets = Buckets::of(&self.records);
        }
    }

    fn location(&self, r: &Record) -> BlobLocation {
        let (pack, kind) = self.packs[r.number() as usize];
        BlobLocation {
            pack,
            kind,
            offset: r.offset,
            length: r.length,
            raw_length: r.raw_length,
        }
    }

    /// The records of `id`: those sharing its key (and, in a full index, its
    /// tail).
    fn range(&self, id: &BlobId) -> Range<usize> {
        debug_assert!(self.sorted, "Index::finish must be called before lookups");
        let (key, tail) = split(id);
        // Records of one key share their bucket.
        let span = self.buckets.span(&key, self.records.len());
        let start = span.start + self.records[span.clone()].partition_point(|r| r.key < key);
        // Almost always zero or one record: a scan beats a second search.
        let len = self.records[start..span.end]
            .iter()
            .take_while(|r| r.key == key)
            .count();
        let Some(tails) = &self.tails else {
            return start..start + len;
        };
        let same = &tails[start..start + len];
        let from = start + same.partition_point(|t| *t < tail);
        let n = tails[from..start + len]
            .iter()
            .take_while(|t| **t == tail)
            .count();
        from..from + n
    }

    /// The first known location of `id`.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.locations(id).next()
    }

    /// Every known location of `id`.
    pub fn locations(&self, id: &BlobId) -> impl Iterator<Item = BlobLocation> + '_ {
        self.records[self.range(id)]
            .iter()
            .map(|r| self.location(r))
    }

    /// The uncompressed length of `id` if every location agrees on it.
    pub fn agreed_raw_length(&self, id: &BlobId) -> Option<u32> {
        let r = &self.records[self.range(id)];
        let first = r.first()?.raw_length;
        r.iter().all(|e| e.raw_length == first).then_some(first)
    }

    /// Whether `id` is indexed.
    pub fn contains(&self, id: &BlobId) -> bool {
        !self.range(id).is_empty()
    }

    /// The number of the pack holding the first known location of `id`
    /// (the one [`Index::get`] gives; [`Index::pack_id`] names it): one
    /// lookup, for callers that only need to know which pack they rely on.
    pub fn pack_of(&self, id: &BlobId) -> Option<u32> {
        let r = self.range(id);
        (!r.is_empty()).then(|| self.records[r.start].number())
    }

    /// How many packs are numbered (every pack number is below this).
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Whether an index file the owner signed makes exactly this claim (the
    /// pack's kind aside: it comes from where the pack is stored).
    pub fn is_attested(&self, id: &BlobId, loc: &BlobLocation) -> bool {
        self.records[self.range(id)].iter().any(|r| {
            r.attested()
                && self.packs[r.number() as usize].0 == loc.pack
                && (r.offset, r.length, r.raw_length) == (loc.offset, loc.length, loc.raw_length)
        })
    }

    /// A copy holding only the locations an owner attested (finished, like
    /// this one).
    pub fn attested(&self) -> Index {
        let keep: Vec<bool> = self.records.iter().map(Record::attested).collect();
        let mut i = 0;
        let tails = self.tails.as_ref().map(|t| {
            t.iter()
                .zip(&keep)
                .filter_map(|(t, k)| k.then_some(*t))
                .collect()
        });
        let records: Vec<Record> = self
            .records
            .iter()
            .filter(|_| {
                i += 1;
                keep[i - 1]
            })
            .copied()
            .collect();
        let buckets = if self.sorted {
            Buckets::of(&records)
        } else {
            Buckets::default()
        };
        Index {
            packs: self.packs.clone(),
            pack_numbers: self.pack_numbers.clone(),
            records,
            tails,
            sorted: self.sorted,
            buckets,
        }
    }

    /// Number of blob locations an owner attested.
    pub fn attested_len(&self) -> usize {
        self.records.iter().filter(|r| r.attested()).count()
    }

    /// Number of blob locations.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes the records take (the pack table aside).
    pub fn record_bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.tails.as_ref().map_or(0, |t| t.capacity() * TAIL_LEN)
    }

    /// Every indexed pack with its kind.
    pub fn packs(&self) -> impl Iterator<Item = (PackId, BlobKind)> + '_ {
        self.packs.iter().copied()
    }

    /// Every blob location with the blob's full id.
    ///
    /// # Panics
    ///
    /// On a compact index, which does not hold full ids.
    pub fn blobs(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        let tails = self
            .tails
            .as_ref()
            .expect("Index::blobs needs a full index");
        self.records.iter().zip(tails).map(|(r, t)| {
            let mut id = [0; 32];
            for (i, w) in r.key.iter().chain(std::iter::once(t)).enumerate() {
                id[i * 8..i * 8 + 8].copy_from_slice(&w.to_be_bytes());
            }
            (BlobId(crate::format::id::Id(id)), self.location(r))
        })
    }
}

/// Sorts `v` by `cmp`, whose order starts with `first` (the first id
/// byte): one pass puts every element in its first-byte bucket (in place),
/// then the buckets (small, so cache-friendly) are sorted on as many
/// threads as there are cores (at most 8).
fn sort<T: Send>(
    v: &mut [T],
    first: impl Fn(&T) -> u8,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering + Sync,
) {
    let mut ends = [0usize; 256];
    for x in v.iter() {
        ends[first(x) as usize] += 1;
    }
    let mut starts = [0usize; 256];
    let mut total = 0;
    for b in 0..256 {
        starts[b] = total;
        total += ends[b];
        ends[b] = total;
    }
    // In place: each element is swapped into the next free slot of its
    // bucket until the slot holds one that belongs there.
    let mut next = starts;
    for b in 0..256 {
        while next[b] < ends[b] {
            let d = first(&v[next[b]]) as usize;
            if d == b {
                next[b] += 1;
            } else {
                v.swap(next[b], next[d]);
                next[d] += 1;
            }
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut buckets: Vec<&mut [T]> = Vec::with_capacity(256);
    let mut rest = v;
    for b in 0..256 {
        let (head, tail) = rest.split_at_mut(ends[b] - starts[b]);
        buckets.push(head);
        rest = tail;
    }
    if threads < 2 || total < 1 << 16 {
        for b in buckets {
            b.sort_unstable_by(&cmp);
        }
        return;
    }
    // Buckets dealt out round-robin: random ids fill them evenly.
    let mut shares: Vec<Vec<&mut [T]>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, b) in buckets.into_iter().enumerate() {
        shares[i % threads].push(b);
    }
    let cmp = &cmp;
    std::thread::scope(|s| {
        for share in shares {
            s.spawn(move || {
                for b in share {
                    b.sort_unstable_by(cmp);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::Id;

    fn blob(n: u8, off: u32) -> IndexedBlob {
        IndexedBlob {
            id: BlobId(Id([n; 32])),
            offset: off,
            length: 10,
            raw_length: 20,
        }
    }

    fn fill(idx: &mut Index) {
        idx.add_pack(&IndexedPack {
            id: PackId(Id([100; 32])),
            kind: BlobKind::Data,
            blobs: vec![blob(3, 0), blob(1, 10)],
        });
        idx.add_pack(&IndexedPack {
            id: PackId(Id([101; 32])),
            kind: BlobKind::Tree,
            blobs: vec![blob(2, 0), blob(1, 50)],
        });
        idx.add_pack(&IndexedPack {
            id: PackId(Id([100; 32])),
            kind: BlobKind::Data,
            blobs: vec![blob(3, 0)],
        });
        idx.finish();
    }

    #[test]
    fn lookups_after_finish_keep_every_location_in_both_modes() {
        for mut idx in [Index::full(), Index::compact()] {
            fill(&mut idx);
            assert_eq!(idx.len(), 4);
            assert_eq!(
                idx.get(&BlobId(Id([1; 32]))).unwrap().pack,
                PackId(Id([100; 32]))
            );
            assert_eq!(idx.locations(&BlobId(Id([1; 32]))).count(), 2);
            assert_eq!(idx.get(&BlobId(Id([2; 32]))).unwrap().kind, BlobKind::Tree);
            assert_eq!(idx.agreed_raw_length(&BlobId(Id([1; 32]))), Some(20));
            assert!(idx.get(&BlobId(Id([9; 32]))).is_none());
            idx.retain_packs(|p| *p != PackId(Id([100; 32])));
            assert_eq!(idx.locations(&BlobId(Id([1; 32]))).count(), 1);
            assert!(!idx.contains(&BlobId(Id([3; 32]))));
        }
        assert_eq!(std::mem::size_of::<Record>(), 40);
    }

    #[test]
    fn the_bucketed_sort_sorts() {
        let mut x: u64 = 7;
        let mut v: Vec<[u8; 3]> = (0..100_000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let b = x.to_be_bytes();
                [b[0], b[1], b[2]]
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_unstable();
        sort(&mut v, |e| e[0], |a, b| a.cmp(b));
        assert_eq!(v, expected);
        let mut small = vec![[3u8, 0, 0], [1, 0, 0], [3, 0, 1], [0, 9, 9]];
        sort(&mut small, |e| e[0], |a, b| a.cmp(b));
        assert_eq!(small, [[0, 9, 9], [1, 0, 0], [3, 0, 0], [3, 0, 1]]);
    }

    #[test]
    fn ids_sharing_the_key_are_told_apart_only_by_a_full_index() {
        let mut a = BlobId(Id([7; 32]));
        let mut b = a;
        a.0.0[31] = 1;
        b.0.0[31] = 2;
        let pack = |id| IndexedPack {
            id: PackId(Id([100; 32])),
            kind: BlobKind::Data,
            blobs: vec![IndexedBlob {
                id,
                offset: 0,
                length: 1,
                raw_length: 1,
            }],
        };
        let mut full = Index::full();
        full.add_pack(&pack(a));
        full.finish();
        assert!(full.contains(&a) && !full.contains(&b));
        assert_eq!(full.blobs().next().unwrap().0, a);
        // The compact index answers by key: the reader's full-id check is
        // what tells the blobs apart (module docs).
        let mut compact = Index::compact();
        compact.add_pack(&pack(a));
        compact.finish();
        assert!(compact.contains(&b));
    }

    #[test]
    fn attestation_merges_dead_records_go_and_rollback_forgets() {
        for mut idx in [Index::full(), Index::compact()] {
            let p = idx
                .number_pack(PackId(Id([100; 32])), BlobKind::Data)
                .unwrap();
            idx.push(Some(p), &blob(1, 0), false);
            idx.push(Some(p), &blob(1, 0), true);
            idx.push(None, &blob(2, 0), false);
            idx.push(None, &blob(3, 0), false);
            idx.assign(2..4, p);
            assert_eq!(idx.drop_unless(2..4, |off, _, _| off > 0), 2);
            let mark = idx.mark();
            let q = idx
                .number_pack(PackId(Id([101; 32])), BlobKind::Tree)
                .unwrap();
            idx.push(Some(q), &blob(4, 0), false);
            idx.rollback(mark);
            idx.finish();
            assert_eq!(idx.len(), 1);
            assert_eq!(idx.attested_len(), 1);
            assert_eq!(idx.attested().len(), 1);
            let loc = idx.get(&BlobId(Id([1; 32]))).unwrap();
            assert!(idx.is_attested(&BlobId(Id([1; 32])), &loc));
            assert_eq!(idx.packs().count(), 1);
            assert!(!idx.contains(&BlobId(Id([4; 32]))));
        }
    }

    #[test]
    fn bucketed_lookups_find_every_id_of_any_index_size_and_no_other() {
        let id = |n: u64| BlobId(Id::of_bytes(&n.to_le_bytes()));
        for count in [0u64, 1, 15, 16, 17, 1000, 200_000] {
            for mut idx in [Index::full(), Index::compact()] {
                let keep = PackId(Id([100; 32]));
                let gone = PackId(Id([101; 32]));
                let blobs = |range: std::ops::Range<u64>| {
                    range
                        .map(|n| IndexedBlob {
                            id: id(n),
                            offset: n as u32,
                            length: 1,
                            raw_length: 1,
                        })
                        .collect()
                };
                let half = count / 2;
                for (pack, range) in [(keep, 0..half), (gone, half..count)] {
                    idx.add_pack(&IndexedPack {
                        id: pack,
                        kind: BlobKind::Data,
                        blobs: blobs(range),
                    });
                }
                idx.finish();
                let step = (count / 500).max(1) as usize;
                for n in (0..count).step_by(step) {
                    let loc = idx.get(&id(n)).expect("indexed");
                    assert_eq!(loc.offset, n as u32);
                    let pack = if n < half { keep } else { gone };
                    assert_eq!(idx.pack_id(idx.pack_of(&id(n)).unwrap()), pack);
                }
                for n in (count..count + 1000).step_by(7) {
                    assert!(idx.get(&id(n)).is_none() && idx.pack_of(&id(n)).is_none());
                }
                // The table follows the records a retain leaves.
                idx.retain_packs(|p| *p == keep);
                for n in (0..count).step_by(step) {
                    assert_eq!(idx.contains(&id(n)), n < half, "{n} of {count}");
                }
                let attested = idx.attested();
                assert!(attested.is_empty() && !attested.contains(&id(0)));
            }
        }
    }
}
