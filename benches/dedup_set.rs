//! The backup's in-run deduplication set ([`vault::ops::backup::seen::Seen`]):
//! the ids of a 3 GB backup's new 16 KiB chunks, inserted through every
//! spill, then some of them again (chunks repeated within the run).
//!
//! `cargo bench --bench dedup_set`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use vault::format::id::{BlobId, Id};
use vault::ops::backup::seen::Seen;

/// New chunks of a 3 GB backup of 16 KiB chunks.
const NEW: u64 = 200_000;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let ids: Vec<BlobId> = (0..NEW)
        .map(|n| BlobId(Id::of_bytes(&n.to_le_bytes())))
        .collect();
    let mut g = c.benchmark_group("dedup_set");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(NEW + NEW / 10));
    g.bench_function("insert_200k_new_then_20k_repeats", |b| {
        b.iter(|| {
            let mut seen = Seen::default();
            let mut new = 0u32;
            for id in &ids {
                new += u32::from(seen.insert(black_box(*id)));
            }
            for id in ids.iter().step_by(10) {
                new += u32::from(seen.insert(black_box(*id)));
            }
            assert_eq!(new as u64, NEW);
            new
        })
    });
    g.finish();
    c.final_summary();
}
