//! `vault restore`, measured through the library's public API: a tree of
//! one 96 MiB dump-like file (several segments, written around the page
//! cache by both workers) and 500 small config files (one blob each, whole
//! files per worker), restored into a new directory each time, on every
//! core, ending with the flush that makes it durable.
//!
//! Run with `cargo bench --bench restore`. Trees, repositories and
//! restores go under $VAULT_BENCH_TMP (default: the system temp dir; point
//! it at a disk-backed, journaled file system: a tmpfs takes no direct
//! writes and measures another path).

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};

use vault::ops::backup::{self, BackupOptions};
use vault::ops::restore::{self, RestoreOptions};
use vault::repo::{Access, Repository};
use vault::storage::{LocalStorage, Storage};

mod common;

use common::{Rng, temp_repo};

const MIB: usize = 1 << 20;

const WORDS: &[&str] = &[
    "select", "insert", "orders", "account", "invoice", "payment", "refund", "customer", "shipped",
    "pending",
];

/// Dump-like text (compresses 2-3x with zstd -3, like a real SQL dump).
fn dump_like(len: usize) -> Vec<u8> {
    let mut rng = Rng(21);
    let mut out = common::config_like(&mut rng, len, WORDS, 1_000_000);
    out.truncate(len);
    out
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let work = common::work_dir("vault-bench-restore-");
    let (owner_key, recipient) = common::owner_key(work.path());
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    let dump = dump_like(96 * MIB);
    fs::write(tree.join("app.sql"), &dump).unwrap();
    let mut total = dump.len() as u64;
    let mut rng = Rng(7);
    for i in 0..500 {
        let len = 200 + rng.below(6_000) as usize;
        let text = common::config_like(&mut rng, len, WORDS, 1000);
        total += text.len() as u64;
        fs::write(tree.join(format!("etc/conf{i:03}")), text).unwrap();
    }

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
    let owner = Repository::open(storage, Access::IdentityFile(&owner_key)).unwrap();
    let (snapshots, damaged) = owner.snapshots().unwrap();
    assert!(damaged.is_empty());
    let (id, snapshot) = &snapshots[0];

    let mut g = c.benchmark_group("restore");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(total));
    let mut n = 0u32;
    g.bench_function("dump_96MiB_and_500_configs", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let target = work.path().join(format!("restored-{n}"));
                let t = Instant::now();
                let report = restore::restore(
                    &owner,
                    id,
                    snapshot,
                    &RestoreOptions {
                        target: target.clone(),
                        ..Default::default()
                    },
                )
                .unwrap();
                spent += t.elapsed();
                assert!(!report.failed());
                assert_eq!(report.bytes, total);
                fs::remove_dir_all(&target).unwrap();
            }
            spent
        })
    });
    g.finish();
}
