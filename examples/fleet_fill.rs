//! Grows a repository into a fleet's for `scripts/bench-fleet.sh`: copies
//! of its newest snapshot header (and of its index files) until it holds N
//! snapshots, as if N backups had run on 100 hosts, one a minute.
//!
//! Every copy is a real sealed, signed document, written with the writer
//! key exactly as a backup writes one (age encryption makes each copy's
//! bytes, and so its name, distinct); only the data they point at is shared.
//!
//! `cargo run --example fleet_fill -- REPO WRITER_KEY N [INDEX_FILES]`
//!
//! With `FILL_BLOBS=B` in the environment it also writes index files
//! describing B more blobs (random ids, 1,024 to a pack, 64 packs to a
//! file: the size of the files prune compacts into), so that a command's
//! index load and peak memory can be measured at millions of blobs. The
//! packs they name do not exist; only the index's cost is measured.
//! (S3 settings come from the same environment as vault's: AWS_ENDPOINT_URL,
//! AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use vault::format::id::{BlobId, Id, PackId};
use vault::format::index::{IndexFile, IndexedBlob, IndexedPack};
use vault::format::pack::BlobKind;
use vault::repo::{Access, ObjectKind, Repository};
use vault::storage::S3Options;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: fleet_fill REPO WRITER_KEY N [INDEX_FILES]".into());
    }
    let n: usize = args[2].parse()?;
    let index_files: usize = args.get(3).map_or(Ok(0), |s| s.parse())?;
    let s3 = S3Options {
        endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
        region: std::env::var("AWS_REGION").ok(),
        credentials: match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(k), Ok(s)) => Some((k, s)),
            _ => None,
        },
        path_style: true,
        ..Default::default()
    };
    let storage: Arc<dyn vault::storage::Storage> = vault::storage::open(&args[0], &s3)?.into();
    let repo = Repository::open(storage, Access::IdentityFile(args[1].as_ref()))?;
    let headers = repo.read_documents::<serde_json::Value>(ObjectKind::Snapshot)?;
    let (_, _, newest) = headers
        .read
        .last()
        .ok_or("the repository has no snapshot")?;
    let have = headers.read.len();
    let start = chrono::Utc::now() - chrono::Duration::minutes(n as i64 + 10);
    let next = AtomicUsize::new(have);
    let threads = std::thread::available_parallelism().map_or(2, |c| c.get()) * 4;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let mut h = newest.clone();
                    h["time"] = serde_json::json!(
                        (start + chrono::Duration::minutes(i as i64))
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    );
                    h["host"] = serde_json::json!(format!("fleet-{:03}", i % 100));
                    repo.put_signed_json(ObjectKind::Snapshot, &h)
                        .expect("storing a header");
                }
            });
        }
    });
    if index_files > 0 {
        let files = repo.read_documents::<serde_json::Value>(ObjectKind::Index)?;
        let (_, _, file) = files
            .read
            .last()
            .ok_or("the repository has no index file")?;
        let next = AtomicUsize::new(files.read.len());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < index_files {
                        repo.put_signed_json(ObjectKind::Index, file)
                            .expect("storing an index file");
                    }
                });
            }
        });
    }
    if let Ok(blobs) = std::env::var("FILL_BLOBS") {
        fill_blobs(&repo, blobs.parse()?)?;
    }
    Ok(())
}

/// Writes index files describing `blobs` random blobs.
fn fill_blobs(repo: &Repository, blobs: u64) -> Result<(), Box<dyn std::error::Error>> {
    const PER_PACK: u64 = 1024;
    const PACKS_PER_FILE: usize = 64;
    let mut seed = 0x5eed_u64;
    let mut id = || {
        let mut out = [0u8; 32];
        for c in out.chunks_mut(8) {
            // splitmix64
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            c.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        Id(out)
    };
    let mut left = blobs;
    while left > 0 {
        let mut file = IndexFile::default();
        while left > 0 && file.packs.len() < PACKS_PER_FILE {
            let count = left.min(PER_PACK);
            left -= count;
            let pack = PackId(id());
            file.packs.push(IndexedPack {
                id: pack,
                kind: BlobKind::Data,
                blobs: (0..count as u32)
                    .map(|i| IndexedBlob {
                        id: BlobId(id()),
                        offset: i * 9000,
                        length: 9000,
                        raw_length: 16384,
                    })
                    .collect(),
            });
        }
        repo.put_signed_json(ObjectKind::Index, &file)?;
    }
    Ok(())
}
