//! `vault stats` output: a two-column table.

use vault::ops::stats::Stats;

use super::size;

/// Prints the figures as aligned `label  value` lines.
pub fn table(s: &Stats) {
    let mut rows: Vec<(&str, String)> = vec![
        (
            "counted from",
            if s.mode == "repository" {
                "the index and snapshot headers (no tree read)".to_owned()
            } else {
                "the snapshots' trees".to_owned()
            },
        ),
        ("snapshots", s.snapshots.to_string()),
        ("files", s.files.to_string()),
        ("directories", s.dirs.to_string()),
        ("logical size", size_and_bytes(s.logical_bytes)),
        ("content blobs", s.data.count.to_string()),
        ("content size", content_size(s)),
        ("content stored", size_and_bytes(s.data.stored_bytes)),
        ("tree blobs", s.trees.count.to_string()),
        ("trees stored", size_and_bytes(s.trees.stored_bytes)),
    ];
    if let (Some(p), Some(b)) = (s.packs, s.pack_bytes) {
        rows.push(("packs", p.to_string()));
        rows.push(("pack size", size_and_bytes(b)));
    }
    if s.missing_blobs > 0 {
        rows.push(("blobs not indexed", s.missing_blobs.to_string()));
    }
    rows.push(("dedup ratio", dedup(s)));
    rows.push(("compression ratio", format!("{:.2}", s.compression_ratio)));
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (l, v) in rows {
        outln!("{l:<width$}  {v}");
    }
}

/// The distinct content's size, saying how it was counted.
fn content_size(s: &Stats) -> String {
    let n = size_and_bytes(s.content_bytes);
    if s.content_exact {
        n
    } else {
        format!("{n}, as indexed: small files' blobs rounded up to 64 B")
    }
}

/// Logical size per content size; a lower bound when small files count
/// rounded up.
fn dedup(s: &Stats) -> String {
    if s.content_exact {
        format!("{:.2} (logical size / content size)", s.dedup_ratio)
    } else {
        format!(
            "at least {:.2} (logical size / content size; `vault stats SNAPSHOT…` counts exactly)",
            s.dedup_ratio
        )
    }
}

/// `1.5 MiB (1572864 bytes)`.
fn size_and_bytes(n: u64) -> String {
    if n < 1024 {
        size(n)
    } else {
        format!("{} ({n} bytes)", size(n))
    }
}
