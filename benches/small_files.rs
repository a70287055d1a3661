//! A backup of many small files, the shape of `/etc` on a fleet of
//! servers: 6,000 config files of 200 B to 6 KiB in 60 directories.
//! Measures the first backup (every file read, bundled with its
//! directory's other small files), the unchanged second backup with the
//! file cache (the walk and the cache stream are the whole cost), and the
//! compressor stage on such files, alone and in bundles of 16 or 64 KiB.
//!
//! Run with `cargo bench --bench small_files`. Trees and repositories go
//! under $VAULT_BENCH_TMP (default: the system temp dir).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, black_box};

use vault::format::config::DEFAULT_COMPRESSION_LEVEL;
use vault::format::pack::BlobKind;
use vault::ops::backup::{self, BackupOptions};

mod common;

use common::{Rng, TempRepo, temp_repo};

/// Files in the tree.
const FILES: usize = 6_000;

const WORDS: &[&str] = &[
    "listen", "port", "host", "timeout", "retries", "user", "group", "path", "level", "enabled",
    "cache", "workers", "buffer", "limit", "backend", "upstream", "ssl", "cert", "key", "log",
];

/// A config file of about `len` bytes.
fn config_like(rng: &mut Rng, len: usize) -> Vec<u8> {
    common::config_like(rng, len, WORDS, 100_000)
}

/// Writes the tree; returns its files' contents.
fn make_tree(root: &Path) -> Vec<Vec<u8>> {
    let mut rng = Rng(11);
    let mut files = Vec::with_capacity(FILES);
    for d in 0..FILES / 100 {
        let dir = root.join(format!("etc/svc{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let len = 200 + rng.below(5_800) as usize;
            let text = config_like(&mut rng, len);
            fs::write(dir.join(format!("conf{f:02}")), &text).unwrap();
            files.push(text);
        }
    }
    files
}

fn bench_backup(c: &mut Criterion) {
    let work = common::work_dir("vault-bench-small-");
    let tree = work.path().join("tree");
    let files = make_tree(&tree);
    let made = Instant::now();
    let total: u64 = files.iter().map(|f| f.len() as u64).sum();
    let owner = vault::crypto::X25519Identity::generate().recipient();
    let opts = BackupOptions {
        paths: vec![tree.clone()],
        host: Some("bench".into()),
        cache_dir: Some(work.path().join("cache")),
        ..Default::default()
    };

    let mut g = c.benchmark_group("small_files");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(FILES as u64));
    g.bench_function("first_backup_6000_files", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let TempRepo { _dir, repo } = temp_repo(work.path(), &owner);
                let first = BackupOptions {
                    cache_dir: None,
                    ..opts.clone()
                };
                let t = Instant::now();
                let out = backup::run(&repo, &first).unwrap();
                spent += t.elapsed();
                assert_eq!(out.snapshot.totals.bytes, total);
            }
            spent
        })
    });
    let TempRepo { _dir, repo } = temp_repo(work.path(), &owner);
    // A backup leaves files changed within its last second out of the file
    // cache (they could change again within the same timestamp tick): the
    // cache-filling backup runs once the tree is older than that.
    std::thread::sleep(Duration::from_millis(1_100).saturating_sub(made.elapsed()));
    backup::run(&repo, &opts).unwrap();
    g.bench_function("unchanged_backup_6000_files_with_cache", |b| {
        b.iter(|| {
            let out = backup::run(&repo, &opts).unwrap();
            assert_eq!(out.snapshot.totals.files_read, 0);
        })
    });
    g.finish();
}

/// The tree written under `dir`: its files' contents and their bytes.
fn tree_in_memory(dir: &Path) -> (Vec<Vec<u8>>, u64) {
    let files = make_tree(dir);
    let bytes = files.iter().map(|f| f.len() as u64).sum();
    (files, bytes)
}

/// The settings of a group timing the compressor over `bytes` bytes.
fn compressor_group(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bytes: u64,
) {
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(bytes));
}

/// The compressor stage on the tree's files as salted blobs: zstd's
/// one-shot compress then the salted wrapping (what each blob cost before
/// [`backup::BlobEncoder`]), against the encoder's reused buffer.
fn bench_compressor(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (files, bytes) = tree_in_memory(dir.path());
    let salt_id = [7u8; 32];
    let mut g = c.benchmark_group("small_blobs");
    compressor_group(&mut g, bytes);
    g.bench_function("encode_blob_then_wrap_6000_salted", |b| {
        let mut z = zstd::bulk::Compressor::new(DEFAULT_COMPRESSION_LEVEL).unwrap();
        b.iter(|| {
            files
                .iter()
                .map(|f| {
                    let frame = backup::encode_blob(&mut z, BlobKind::Data, black_box(f)).unwrap();
                    vault::format::salt::wrap(&salt_id, &frame).len()
                })
                .sum::<usize>()
        })
    });
    g.bench_function("blob_encoder_6000_salted", |b| {
        let mut enc = backup::BlobEncoder::new(DEFAULT_COMPRESSION_LEVEL).unwrap();
        b.iter(|| stored_bytes(&mut enc, &files, &salt_id, true))
    });
    g.finish();
}

/// The stored bytes of `blobs` as salted data blobs (`small`: a small
/// file's content, see [`backup::BlobEncoder::stored`]).
fn stored_bytes(
    enc: &mut backup::BlobEncoder,
    blobs: &[Vec<u8>],
    salt_id: &[u8; 32],
    small: bool,
) -> usize {
    blobs
        .iter()
        .map(|b| {
            enc.stored(BlobKind::Data, black_box(b), Some(salt_id), small)
                .unwrap()
                .len()
        })
        .sum()
}

/// The tree's files packed into bundles of at most `max` bytes in walk
/// order, as the assembler fills them.
fn bundles(files: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    for f in files {
        let last = out.last_mut().expect("one");
        if !last.is_empty() && last.len() + f.len() > max {
            out.push(Vec::new());
        }
        out.last_mut().expect("one").extend_from_slice(f);
    }
    out
}

/// The compressor stage on bundles of the tree's files: 16 KiB bundles
/// (format 5) against 64 KiB ones (format 6), both at the small-blob level
/// as a backup stores them, and 64 KiB at the repository's level 3 (what
/// a bundle of that size would cost without the small-blob level).
fn bench_bundles(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (files, bytes) = tree_in_memory(dir.path());
    let salt_id = [7u8; 32];
    let mut g = c.benchmark_group("bundles");
    compressor_group(&mut g, bytes);
    for (name, max, small) in [
        ("bundles_16k_level2", 16 << 10, true),
        ("bundles_64k_level2", 64 << 10, true),
        ("bundles_64k_level3", 64 << 10, false),
    ] {
        let set = bundles(&files, max);
        let mut enc = backup::BlobEncoder::new(DEFAULT_COMPRESSION_LEVEL).unwrap();
        let stored = stored_bytes(&mut enc, &set, &salt_id, small);
        eprintln!(
            "{name}: {} bundles, {bytes} bytes stored as {stored}",
            set.len()
        );
        g.bench_function(name, |b| {
            b.iter(|| stored_bytes(&mut enc, &set, &salt_id, small))
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_bundles(&mut c);
    bench_compressor(&mut c);
    bench_backup(&mut c);
    c.final_summary();
}
