//! `vault check --read-data`, measured through the library's public API: one
//! pack read, decrypted, decompressed and hashed on one thread (the CPU a
//! pack costs), and the whole check of a repository holding a 64 MiB
//! dump-like file (index load, structure, every pack, on every core).
//!
//! Run with `cargo bench --bench check`.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};

use vault::ops::backup::{self, BackupOptions};
use vault::ops::check::{self, CheckOptions, CheckReport};
use vault::repo::verify::{self, PackBuffers};
use vault::repo::{Access, Repository, list_packs};
use vault::storage::{LocalStorage, Storage};

mod common;

use common::{Rng, temp_repo};

const MIB: usize = 1 << 20;

const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "account",
    "order",
    "invoice",
    "payment",
    "refund",
    "customer",
    "shipped",
    "pending",
    "cancelled",
];

/// SQL-dump-like text: INSERT lines of a small vocabulary, numbers and hex
/// (zstd -3 compresses it about 2-3x, like a real dump).
fn dump_like(len: usize, seed: u64) -> Vec<u8> {
    use std::fmt::Write;
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(len + 256);
    let mut n = 0u64;
    while out.len() < len {
        n += 1;
        let _ = writeln!(
            out,
            "INSERT INTO public.orders VALUES ({n}, {}, '{} {}', '{:016x}{:016x}', {}.{:02});",
            rng.below(1_000_000),
            WORDS[rng.below(WORDS.len() as u64) as usize],
            WORDS[rng.below(WORDS.len() as u64) as usize],
            rng.next(),
            rng.next(),
            rng.below(100_000),
            rng.below(100),
        );
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let work = common::work_dir("vault-bench-check-");
    let (owner_key, recipient) = common::owner_key(work.path());
    let tree = work.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    let dump = dump_like(64 * MIB, 5);
    fs::write(tree.join("app.sql"), &dump).unwrap();
    let config = common::config_like(&mut Rng(3), 4096, WORDS, 1000);
    fs::write(tree.join("app.conf"), &config).unwrap();

    let r = temp_repo(work.path(), &recipient);
    backup::run(
        &r.repo,
        &BackupOptions {
            paths: vec![tree.clone()],
            host: Some("bench".into()),
            cache_dir: None,
            ..Default::default()
        },
    )
    .unwrap();
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(r._dir.path().join("repo")));
    let owner = Repository::open(storage.clone(), Access::IdentityFile(&owner_key)).unwrap();
    let packs = list_packs(storage.as_ref()).unwrap();
    let (pack, stored) = packs
        .iter()
        .max_by_key(|(_, s)| s.size)
        .expect("the backup stored packs");

    let mut g = c.benchmark_group("check");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    // One pack on one thread: read, name hash, decrypt, per blob decompress
    // and keyed hash.
    g.throughput(Throughput::Bytes(stored.size));
    let mut bufs = PackBuffers::default();
    g.bench_function("verify_one_pack", |b| {
        b.iter(|| {
            let verdicts =
                verify::verify_stored_pack(&owner, pack, stored.kind, &mut bufs).unwrap();
            assert!(verdicts.iter().all(|(_, v)| v.is_ok()));
        })
    });
    // The whole `check --read-data` (the first run attests the entries;
    // the measured ones find them attested).
    g.throughput(Throughput::Bytes((dump.len() + config.len()) as u64));
    g.bench_function("read_data_64MiB_dump", |b| {
        b.iter(|| {
            let mut report = CheckReport::default();
            let opts = CheckOptions {
                structure: true,
                read_data: Some((1, 1)),
                ..Default::default()
            };
            check::check(&owner, &opts, &mut report).unwrap();
            assert!(!report.has_errors(), "{:?}", report.findings);
            assert!(report.blobs_verified > 0);
        })
    });
    g.finish();
}
