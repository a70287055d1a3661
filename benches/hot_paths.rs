//! Hot paths of a backup, measured through the library's public API:
//! chunking, keyed blob ids, zstd level 3, pack building (age X25519), and an
//! end-to-end backup of a generated 64 MiB tree into a temporary repository.
//!
//! Run with `cargo bench --bench hot_paths`. Sample sizes are kept at
//! criterion's minimum so the whole run takes a few minutes on 2 cores.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, black_box};

use vault::crypto::Seal;
use vault::format::chunk::{self, ChunkerParams};
use vault::format::config::DEFAULT_COMPRESSION_LEVEL;
use vault::format::id::{BlobId, Id};
use vault::format::pack::BlobKind;
use vault::ops::backup::{self, BackupOptions};
use vault::repo::packer::PackBuilder;
use vault::repo::{Access, Repository};
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
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "account",
    "order",
    "invoice",
    "payment",
    "refund",
    "customer",
    "shipped",
    "pending",
    "premium",
    "standard",
    "north",
    "south",
    "east",
    "west",
    "warehouse",
    "berlin",
    "paris",
    "london",
    "madrid",
    "widget",
    "gadget",
    "sprocket",
    "bolt",
    "panel",
    "cable",
    "sensor",
    "motor",
    "pump",
    "valve",
    "filter",
    "bracket",
    "housing",
    "spring",
    "gear",
    "shaft",
];
const STATUSES: &[&str] = &[
    "new",
    "paid",
    "shipped",
    "delivered",
    "returned",
    "cancelled",
];
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./";

/// SQL-dump-like text (INSERT lines mixing a small vocabulary with random
/// numbers, hex and base64); zstd -3 compresses it about 2.2x, like
/// `scripts/bench.sh`'s corpus.
fn dump_like(len: usize, seed: u64) -> Vec<u8> {
    use std::fmt::Write;
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(len + 512);
    let mut n = 0u64;
    while out.len() < len {
        n += 1;
        let mut note = String::new();
        for i in 0..3 + n % 6 {
            if i > 0 {
                note.push(' ');
            }
            note.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        }
        let token: String = (0..53)
            .map(|_| B64[rng.below(64) as usize] as char)
            .collect();
        let _ = writeln!(
            out,
            "INSERT INTO public.orders VALUES ({n}, {}, '{}', '{note}', '{:016x}{:016x}{:016x}{:016x}', \
             '$2b$10${token}', {}.{:02}, '2025-{:02}-{:02} {:02}:{:02}:{:02}');",
            rng.below(1_000_000),
            STATUSES[rng.below(6) as usize],
            rng.next(),
            rng.next(),
            rng.next(),
            rng.next(),
            rng.below(100_000),
            rng.below(100),
            1 + n % 12,
            1 + n % 28,
            rng.below(24),
            rng.below(60),
            rng.below(60),
        );
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}

/// A config-file-like text of about `len` bytes.
fn config_like(rng: &mut Rng, len: usize) -> Vec<u8> {
    common::config_like(rng, len, WORDS, 10_000)
}

/// Writes a 64 MiB tree: one 56 MiB dump, 2,000 config files (~3.5 MiB)
/// in nested directories, and 100 random keystores (2-8 KiB). Returns the
/// total bytes written.
fn make_tree(root: &Path) -> u64 {
    let mut rng = Rng(42);
    let mut total = 0u64;
    let dump = dump_like(56 * MIB, 7);
    fs::create_dir_all(root.join("db")).unwrap();
    fs::write(root.join("db/app.sql"), &dump).unwrap();
    total += dump.len() as u64;
    for svc in 0..40 {
        for sub in 0..5 {
            let dir = root.join(format!("etc/svc{svc:02}/conf.d{sub}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..10 {
                let len = 200 + rng.below(3_500) as usize;
                let text = config_like(&mut rng, len);
                fs::write(dir.join(format!("{f:02}.conf")), &text).unwrap();
                total += text.len() as u64;
            }
        }
    }
    fs::create_dir_all(root.join("keystores")).unwrap();
    for k in 0..100 {
        let mut ks = vec![0u8; 2048 + rng.below(6 * 1024 + 1) as usize];
        rng.fill(&mut ks);
        fs::write(root.join(format!("keystores/ks-{k:03}.p12")), &ks).unwrap();
        total += ks.len() as u64;
    }
    // Top the tree up to exactly 64 MiB with a second, smaller dump.
    let rest = (64 * MIB as u64).saturating_sub(total) as usize;
    let extra = dump_like(rest, 8);
    fs::write(root.join("db/audit.sql"), &extra).unwrap();
    total + extra.len() as u64
}

fn chunk_seed() -> u64 {
    chunk::gear_seed(&[0x5a; 32])
}

fn bench_chunking(c: &mut Criterion, data: &[u8]) {
    let params = ChunkerParams::default();
    let seed = chunk_seed();
    let mut g = c.benchmark_group("chunk");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc_16k_avg_16MiB_dump", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for c in chunk::chunks(black_box(data), &params, seed) {
                n += c.unwrap().len();
            }
            assert_eq!(n, data.len());
        })
    });
    g.finish();
}

/// The whole reading stage of one stream on one thread, as a backup does
/// it: cut into blocks of whole chunks, the plain BLAKE3 of all of them,
/// and a keyed id per chunk (no chunk copied out of its read buffer).
fn bench_stream(c: &mut Criterion, data: &[u8]) {
    let gear = chunk::Gear::new(&ChunkerParams::default(), chunk_seed());
    let key = [0x11u8; 32];
    let mut g = c.benchmark_group("stream");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("chunk_hash_name_16MiB_dump", |b| {
        b.iter(|| {
            let mut blocks = gear.blocks(black_box(data), data.len() as u64);
            let mut whole = blake3::Hasher::new();
            let mut acc = 0u8;
            while let Some(block) = blocks.next_block().unwrap() {
                whole.update(block.bytes());
                for c in block.chunks() {
                    acc ^= Id::keyed(&key, c).0[0];
                }
                blocks.give_back(block.into_buffer());
            }
            (acc, whole.finalize())
        })
    });
    // The same cut points found by fastcdc's own cut_gear over the data in
    // place (no read into a buffer): what `blocks_only` replaced.
    let params = ChunkerParams::default();
    g.bench_function("fastcdc_in_place_16MiB_dump", |b| {
        b.iter(|| {
            let n: usize = fastcdc::v2020::FastCDC::with_level_and_seed(
                black_box(data),
                params.min_size as usize,
                params.avg_size as usize,
                params.max_size as usize,
                fastcdc::v2020::Normalization::Level1,
                chunk_seed(),
            )
            .map(|c| c.length)
            .sum();
            assert_eq!(n, data.len());
        })
    });
    g.bench_function("blocks_only_16MiB_dump", |b| {
        b.iter(|| {
            let mut blocks = gear.blocks(black_box(data), data.len() as u64);
            let mut n = 0usize;
            while let Some(block) = blocks.next_block().unwrap() {
                n += block.bytes().len();
                blocks.give_back(block.into_buffer());
            }
            assert_eq!(n, data.len());
        })
    });
    // The same blocks, with their cut points searched for ahead on a second
    // thread as well (what a backup does for a large regular file): the
    // wall time of the pair, on two cores.
    g.bench_function("blocks_with_finder_16MiB_dump", |b| {
        b.iter(|| {
            let (finder, hints) = gear.ahead(16);
            std::thread::scope(|s| {
                s.spawn(|| {
                    finder.run(data.len() as u64, |buf, at| {
                        let at = (at as usize).min(data.len());
                        let n = buf.len().min(data.len() - at);
                        buf[..n].copy_from_slice(&data[at..at + n]);
                        Ok(n)
                    })
                });
                let mut blocks = gear
                    .blocks(black_box(data), data.len() as u64)
                    .with_hints(hints);
                let mut n = 0usize;
                while let Some(block) = blocks.next_block().unwrap() {
                    n += block.bytes().len();
                    blocks.give_back(block.into_buffer());
                }
                assert_eq!(n, data.len());
            })
        })
    });
    g.finish();
}

fn bench_ids(c: &mut Criterion, chunks: &[Vec<u8>], data: &[u8]) {
    let key = [0x11u8; 32];
    let mut g = c.benchmark_group("id");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("keyed_blake3_per_chunk_16MiB", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for c in chunks {
                acc ^= Id::keyed(&key, black_box(c)).0[0];
            }
            acc
        })
    });
    // The plain whole-file hash that backup computes alongside the chunk ids.
    g.bench_function("plain_blake3_whole_16MiB", |b| {
        b.iter(|| Id::of_bytes(black_box(data)))
    });
    g.finish();
}

fn bench_zstd(c: &mut Criterion, data: &[u8]) {
    let mut g = c.benchmark_group("zstd");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(data.len() as u64));
    // The repository's level against the one blobs of up to 128 KiB get
    // (`small_blob_level`), in chunks as small, as large as the default
    // chunker makes them, and at the limit.
    let levels = [
        DEFAULT_COMPRESSION_LEVEL,
        backup::small_blob_level(DEFAULT_COMPRESSION_LEVEL),
    ];
    for block in [16 << 10, 64 << 10, 128 << 10] {
        for level in levels {
            g.bench_with_input(
                BenchmarkId::new(
                    format!("compress_{}KiB_chunks_16MiB", block >> 10),
                    format!("level{level}"),
                ),
                &level,
                |b, &level| {
                    let mut z = zstd::bulk::Compressor::new(level).unwrap();
                    b.iter(|| {
                        let mut out = 0usize;
                        for c in data.chunks(block) {
                            out += z.compress(black_box(c)).unwrap().len();
                        }
                        out
                    })
                },
            );
            let mut z = zstd::bulk::Compressor::new(level).unwrap();
            let packed: usize = data
                .chunks(block)
                .map(|c| z.compress(c).unwrap().len())
                .sum();
            eprintln!(
                "note: zstd -{level} on {} KiB chunks of the dump-like data: {packed} bytes, ratio {:.3}",
                block >> 10,
                data.len() as f64 / packed as f64
            );
        }
    }
    g.finish();
}

/// Storing a blob: zstd on every chunk (what backups did before) against
/// `encode_blob` (an entropy sample first; random-looking data blobs stored
/// as raw zstd blocks), on compressible and on already-compressed data.
fn bench_blob_encode(c: &mut Criterion, data: &[u8]) {
    let block = 16 * 1024;
    let mut random = vec![0u8; data.len()];
    Rng(99).fill(&mut random);
    let mut g = c.benchmark_group("blob_encode");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(data.len() as u64));
    for (name, input) in [("dump_like", data), ("random", &random[..])] {
        g.bench_function(format!("zstd3_always_16KiB_chunks_16MiB_{name}"), |b| {
            let mut z = zstd::bulk::Compressor::new(DEFAULT_COMPRESSION_LEVEL).unwrap();
            b.iter(|| {
                input
                    .chunks(block)
                    .map(|c| z.compress(black_box(c)).unwrap().len())
                    .sum::<usize>()
            })
        });
        g.bench_function(format!("encode_blob_16KiB_chunks_16MiB_{name}"), |b| {
            let mut z = zstd::bulk::Compressor::new(DEFAULT_COMPRESSION_LEVEL).unwrap();
            b.iter(|| {
                input
                    .chunks(block)
                    .map(|c| {
                        backup::encode_blob(&mut z, BlobKind::Data, black_box(c))
                            .unwrap()
                            .len()
                    })
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

fn bench_pack(c: &mut Criterion, chunks: &[Vec<u8>]) {
    let mut z = zstd::bulk::Compressor::new(DEFAULT_COMPRESSION_LEVEL).unwrap();
    let key = [0x11u8; 32];
    let compressed: Vec<(BlobId, Vec<u8>, u32)> = chunks
        .iter()
        .map(|c| {
            (
                BlobId::keyed(&key, c),
                z.compress(c).unwrap(),
                c.len() as u32,
            )
        })
        .collect();
    let bytes: usize = compressed.iter().map(|(_, c, _)| c.len()).sum();
    let recipient = vault::crypto::X25519Identity::generate().to_recipient();
    let mut g = c.benchmark_group("pack");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("build_x25519_compressed_16MiB_plain", |b| {
        b.iter(|| {
            let seal = Seal::Recipients(vec![recipient.as_ref()]);
            let mut p = PackBuilder::new(BlobKind::Data, &seal, bytes + (1 << 20)).unwrap();
            for (id, data, raw) in &compressed {
                p.add(*id, black_box(data), *raw).unwrap();
            }
            p.finish().unwrap().bytes.len()
        })
    });
    g.finish();
}

fn backup_opts(tree: &Path) -> BackupOptions {
    BackupOptions {
        paths: vec![tree.to_owned()],
        host: Some("bench".into()),
        cache_dir: None,
        ..Default::default()
    }
}

fn bench_backup(c: &mut Criterion) {
    let work = common::work_dir("vault-bench-");
    let tree = work.path().join("tree");
    let total = make_tree(&tree);
    let owner = vault::crypto::X25519Identity::generate().recipient();
    let opts = backup_opts(&tree);

    let mut g = c.benchmark_group("backup");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(total));
    // First backup: everything is new (read, chunk, id, compress, pack, encrypt, write).
    g.bench_function("first_64MiB_tree", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let r = temp_repo(work.path(), &owner);
                let t = Instant::now();
                let out = backup::run(&r.repo, &opts).unwrap();
                spent += t.elapsed();
                assert_eq!(out.snapshot.totals.bytes, total);
            }
            spent
        })
    });
    // Same tree again without the file cache: every file is read, chunked
    // and hashed, but every blob is already stored (the dedup-only path).
    let seeded = temp_repo(work.path(), &owner);
    backup::run(&seeded.repo, &opts).unwrap();
    g.bench_function("unchanged_64MiB_tree_no_cache", |b| {
        b.iter(|| {
            let out = backup::run(&seeded.repo, &opts).unwrap();
            // No content is new; only a tree blob of an ancestor directory
            // may be (other programs touch /tmp, changing its mtime).
            assert!(out.snapshot.totals.bytes_added < 64 * 1024);
        })
    });
    // One large file changed since the last backup (a night's dump): read,
    // chunked and hashed again, each chunk found already stored. Chunking
    // is sequential; the hashing beside it is what this measures.
    let one = work.path().join("one");
    fs::create_dir_all(&one).unwrap();
    fs::write(one.join("dump.sql"), dump_like(64 * MIB, 11)).unwrap();
    let one_opts = backup_opts(&one);
    let one_repo = temp_repo(work.path(), &owner);
    backup::run(&one_repo.repo, &one_opts).unwrap();
    g.bench_function("unchanged_64MiB_one_file_no_cache", |b| {
        b.iter(|| {
            let out = backup::run(&one_repo.repo, &one_opts).unwrap();
            assert!(out.snapshot.totals.bytes_added < 64 * 1024);
        })
    });
    // Same tree again with the file cache: nothing is read, the walk and
    // the cache stream are the whole cost.
    let cached = temp_repo(work.path(), &owner);
    let cache_dir = work.path().join("cache");
    let cached_opts = BackupOptions {
        cache_dir: Some(cache_dir),
        ..backup_opts(&tree)
    };
    backup::run(&cached.repo, &cached_opts).unwrap();
    g.bench_function("unchanged_64MiB_tree_with_cache", |b| {
        b.iter(|| {
            let out = backup::run(&cached.repo, &cached_opts).unwrap();
            assert!(out.snapshot.totals.bytes_added < 64 * 1024);
        })
    });
    g.finish();
}

/// Restore: 4,000 small config files (the per-file system calls and
/// metadata), and one 48 MiB dump (several segments written by both
/// workers, hashed in order, flushed), each into a new target per
/// iteration; the snapshot is backed up once beforehand.
fn bench_restore(c: &mut Criterion) {
    use vault::ops::restore::{self, RestoreOptions};
    let work = common::work_dir("vault-bench-restore-");
    let (secret, recipient) = vault::crypto::generate_x25519();
    let owner_key = work.path().join("owner.key");
    fs::write(&owner_key, secret.as_bytes()).unwrap();
    // Key files are refused unless only their owner can read them.
    fs::set_permissions(&owner_key, fs::Permissions::from_mode(0o600)).unwrap();

    let small = work.path().join("small");
    let mut rng = Rng(7);
    let mut small_bytes = 0u64;
    for d in 0..40 {
        let dir = small.join(format!("etc/d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let len = 300 + rng.below(6_000) as usize;
            let text = config_like(&mut rng, len);
            fs::write(dir.join(format!("{f:03}.conf")), &text).unwrap();
            small_bytes += text.len() as u64;
        }
    }
    let large = work.path().join("large");
    fs::create_dir_all(&large).unwrap();
    let dump = dump_like(48 * MIB, 9);
    fs::write(large.join("app.sql"), &dump).unwrap();

    let mut g = c.benchmark_group("restore");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for (name, tree, bytes) in [
        ("small_files_4000", &small, small_bytes),
        ("large_file_48MiB", &large, dump.len() as u64),
    ] {
        let r = temp_repo(work.path(), &recipient);
        let out = backup::run(&r.repo, &backup_opts(tree)).unwrap();
        let store = r._dir.path().join("repo");
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&store));
        let owner = Repository::open(storage, Access::IdentityFile(&owner_key)).unwrap();
        let targets = work.path().join(format!("targets-{name}"));
        g.throughput(Throughput::Bytes(bytes));
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let opts = RestoreOptions {
                        target: targets.join(n.to_string()),
                        ..Default::default()
                    };
                    let t = Instant::now();
                    let report = restore::restore(&owner, &out.id, &out.snapshot, &opts).unwrap();
                    spent += t.elapsed();
                    assert_eq!(report.bytes, bytes);
                    assert!(report.problems.is_empty());
                    fs::remove_dir_all(&opts.target).unwrap();
                }
                spent
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let data = dump_like(16 * MIB, 1);
    let chunks: Vec<Vec<u8>> = chunk::chunks(&data[..], &ChunkerParams::default(), chunk_seed())
        .map(Result::unwrap)
        .collect();
    eprintln!(
        "note: 16 MiB dump-like input cut into {} chunks (mean {} bytes)",
        chunks.len(),
        data.len() / chunks.len()
    );
    bench_chunking(&mut c, &data);
    bench_ids(&mut c, &chunks, &data);
    bench_stream(&mut c, &data);
    bench_zstd(&mut c, &data);
    bench_blob_encode(&mut c, &data);
    bench_pack(&mut c, &chunks);
    bench_backup(&mut c);
    bench_restore(&mut c);
    c.final_summary();
}
