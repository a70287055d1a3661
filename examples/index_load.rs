//! Index load benchmark (run by `scripts/bench-index.sh`, built `--release`).
//!
//! `index_load gen DIR BLOBS` writes plaintext index files (the JSON inside
//! `index/<id>` objects) describing BLOBS blobs: packs of 1,024 blobs (16 MiB
//! packs of 16 KiB chunks), 64 packs a file, random ids.
//!
//! `index_load load DIR [compact|full|documents]` reads them back one file at
//! a time and prints the blob count, the load time and the index's bytes per
//! blob; run it under `/usr/bin/time -v` for the peak RSS. `compact` is what
//! backup and restore load, `full` what prune and check load, `documents`
//! the former way (every file parsed into `IndexFile` structs and held,
//! then merged).
//!
//! `index_load digest DIR` turns the files into one file `DIR.digest` of
//! the binary records a backup keeps in its metadata cache
//! (`vault::repo::index_digest`); `index_load load DIR.digest digest` loads
//! that the way a warm backup does (compact, no JSON parsed).

use std::fs;
use std::path::Path;
use std::time::Instant;

use vault::format::id::{BlobId, Id, PackId};
use vault::format::index::stream::{self, IndexSink};
use vault::format::index::{Index, IndexFile, IndexedBlob, IndexedPack};
use vault::format::pack::BlobKind;
use vault::repo::index_digest;

const BLOBS_PER_PACK: u64 = 1024;
const PACKS_PER_FILE: u64 = 64;

/// splitmix64: deterministic ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> Id {
        let mut id = [0u8; 32];
        for c in id.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        Id(id)
    }
}

fn generate(dir: &Path, blobs: u64) {
    fs::create_dir_all(dir).expect("create the directory");
    let mut rng = Rng(42);
    let mut left = blobs;
    let mut n = 0;
    while left > 0 {
        let mut file = IndexFile::default();
        while left > 0 && (file.packs.len() as u64) < PACKS_PER_FILE {
            let count = left.min(BLOBS_PER_PACK);
            left -= count;
            file.packs.push(IndexedPack {
                id: PackId(rng.id()),
                kind: BlobKind::Data,
                blobs: (0..count as u32)
                    .map(|i| IndexedBlob {
                        id: BlobId(rng.id()),
                        offset: i * 9000,
                        length: 9000,
                        raw_length: 16384,
                    })
                    .collect(),
            });
        }
        let json = serde_json::to_vec(&file).expect("serialize");
        fs::write(dir.join(format!("{n:06}.json")), json).expect("write");
        n += 1;
    }
}

/// What the repository loader does with each file: blobs into the index,
/// each pack's blobs numbered once the pack's id is read.
struct Sink<'a>(&'a mut Index);

impl IndexSink for Sink<'_> {
    fn blob(&mut self, blob: &IndexedBlob) {
        self.0.push(None, blob, false);
    }

    fn pack(&mut self, id: PackId, kind: BlobKind, blobs: usize) {
        let n = self.0.number_pack(id, kind).expect("pack numbers left");
        let end = self.0.pushed();
        self.0.assign(end - blobs..end, n);
    }
}

/// Records every file's parse as the metadata cache's digest does, into
/// one file of length-prefixed records.
fn digest(dir: &Path) {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    struct Nothing;
    impl IndexSink for Nothing {
        fn blob(&mut self, _: &IndexedBlob) {}
        fn pack(&mut self, _: PackId, _: BlobKind, _: usize) {}
    }
    for f in &files {
        let json = fs::read(f).expect("read");
        let mut rec = index_digest::Recorder {
            inner: &mut Nothing,
            calls: Vec::new(),
        };
        let marks = stream::parse(&json, &mut rec).expect("parse");
        let record = index_digest::encode(index_digest::SignedBy::Owner, &marks, &rec.calls);
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(&record);
    }
    fs::write(dir.with_extension("digest"), out).expect("write the digest");
}

/// Loads a file made by [`digest`] into a compact index, as a warm backup
/// loads its digest.
fn load_digest(file: &Path) {
    let start = Instant::now();
    let bytes = fs::read(file).expect("read");
    let mut index = Index::compact();
    let mut rest = &bytes[..];
    let mut files = 0;
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        let (_, _, calls) = index_digest::open(&rest[4..4 + len]).expect("a record");
        assert!(index_digest::replay(calls, &mut Sink(&mut index)));
        rest = &rest[4 + len..];
        files += 1;
    }
    let parsed = start.elapsed();
    index.finish();
    let elapsed = start.elapsed();
    println!(
        "mode=digest blobs={} files={files} json_mib={:.0} load_s={:.3} parse_s={:.3} index_bytes_per_blob={:.1}",
        index.len(),
        bytes.len() as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        parsed.as_secs_f64(),
        index.record_bytes() as f64 / index.len().max(1) as f64,
    );
}

fn load(dir: &Path, mode: &str) {
    if mode == "digest" {
        return load_digest(dir);
    }
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let start = Instant::now();
    let mut index = if mode == "compact" {
        Index::compact()
    } else {
        Index::full()
    };
    let mut json_bytes = 0u64;
    if mode == "documents" {
        let mut docs = Vec::new();
        for f in &files {
            let json = fs::read(f).expect("read");
            json_bytes += json.len() as u64;
            docs.push(serde_json::from_slice::<IndexFile>(&json).expect("parse"));
        }
        for d in &docs {
            for p in &d.packs {
                index.add_pack(p);
            }
        }
    } else {
        for f in &files {
            let json = fs::read(f).expect("read");
            json_bytes += json.len() as u64;
            stream::parse(&json, &mut Sink(&mut index)).expect("parse");
        }
    }
    let parsed = start.elapsed();
    index.finish();
    let elapsed = start.elapsed();
    // Every generated blob is found again.
    let mut rng = Rng(42);
    let mut found = 0;
    let _first_pack = rng.id();
    for _ in 0..1000.min(index.len()) {
        found += usize::from(index.contains(&BlobId(rng.id())));
    }
    assert_eq!(found, 1000.min(index.len()), "lookups find the blobs");
    println!(
        "mode={mode} blobs={} files={} json_mib={:.0} load_s={:.3} parse_s={:.3} index_bytes_per_blob={:.1}",
        index.len(),
        files.len(),
        json_bytes as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        parsed.as_secs_f64(),
        index.record_bytes() as f64 / index.len().max(1) as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") if args.len() == 4 => {
            generate(Path::new(&args[2]), args[3].parse().expect("a blob count"))
        }
        Some("digest") if args.len() == 3 => digest(Path::new(&args[2])),
        Some("load") if args.len() >= 3 => load(
            Path::new(&args[2]),
            args.get(3).map_or("compact", String::as_str),
        ),
        _ => {
            eprintln!(
                "usage: index_load gen DIR BLOBS | index_load digest DIR | \
                 index_load load DIR|DIR.digest [compact|full|documents|digest]"
            );
            std::process::exit(2);
        }
    }
}
