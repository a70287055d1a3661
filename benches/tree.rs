//! Reading a tree blob as restore does: its zstd frame decompressed and the
//! JSON parsed into entries. A tree of at most `TREE_IN_MEMORY` (1 MiB)
//! is decompressed whole and parsed from the slice; a larger one is parsed
//! as it streams out of the decompressor, so a small blob that inflates to
//! a huge listing costs only what the entries keep. Both ways are measured
//! on directories of 100 and 2,000 regular files (what a tree of small
//! configuration files and a wide directory hold).
//!
//! Run with `cargo bench --bench tree`.

use criterion::{Criterion, Throughput, black_box};

use vault::format::id::{BlobId, Id};
use vault::format::tree::{Node, NodeKind, Tree};

// Only the generator is used here.
#[allow(dead_code)]
mod common;

use common::Rng;

/// A directory of `n` regular files with the fields a backup records.
fn directory(n: usize, rng: &mut Rng) -> Vec<u8> {
    let nodes = (0..n)
        .map(|i| {
            let mut node = Node::bare(format!("unit{i:05}.conf").as_bytes(), NodeKind::File);
            node.mtime_ns = 1_764_000_000_000_000_000 + rng.below(1 << 40) as i64;
            node.size = 200 + rng.below(8_000);
            node.user = Some("root".into());
            node.group = Some("root".into());
            let mut id = [0u8; 32];
            rng.fill(&mut id);
            node.content = vec![BlobId(Id(id))];
            node.bundle_offset = Some(rng.below(16_384 - node.size));
            rng.fill(&mut id);
            node.hash = Some(Id(id));
            node
        })
        .collect();
    Tree { nodes }.to_bytes()
}

fn bench_parse(c: &mut Criterion) {
    let mut rng = Rng(7);
    let id = Id([0u8; 32]);
    let mut g = c.benchmark_group("tree");
    for n in [100usize, 2_000] {
        let raw = directory(n, &mut rng);
        let frame = zstd::bulk::compress(&raw, 3).unwrap();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("streamed_{n}_files"), |b| {
            b.iter(|| {
                // As restore hands it over: buffered, behind `dyn Read`.
                let decoder = zstd::stream::read::Decoder::new(&frame[..]).unwrap();
                let mut buffered = std::io::BufReader::with_capacity(64 << 10, decoder);
                let raw: &mut dyn std::io::Read = &mut buffered;
                let tree = Tree::from_reader_bounded(raw, &id, usize::MAX).unwrap();
                black_box(tree.nodes.len())
            })
        });
        g.bench_function(format!("in_memory_{n}_files"), |b| {
            let mut z = zstd::bulk::Decompressor::new().unwrap();
            b.iter(|| {
                let bytes = z.decompress(&frame, raw.len()).unwrap();
                let tree = Tree::from_bytes_bounded(&bytes, &id, usize::MAX).unwrap();
                black_box(tree.nodes.len())
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(3));
    bench_parse(&mut c);
    c.final_summary();
}
