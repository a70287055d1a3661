//! `vault backup` output.

use serde_json::json;

use super::{duration_ms, sanitize, size};
use vault::ops::backup::BackupOutcome;
use vault::ops::backup::changes::ChangeCounts;

/// Prints the new snapshot as JSON (`list`: with the change list).
pub fn json(out: &BackupOutcome, list: bool) {
    let s = &out.snapshot;
    let mut v = json!({
        "id": out.id,
        "snapshot": s,
        "complete": s.is_complete(),
        "resumed": out.resumed,
        "compressed_outputs": out.compressed_outputs.iter()
            .map(|c| json!({"path": c.path, "why": c.why}))
            .collect::<Vec<_>>(),
    });
    if list {
        v["changes"] = json!(out.changes);
        v["change_counts"] = json!(ChangeCounts::of(&out.changes));
    }
    super::json(&v);
}

/// `--list`: one line per file, `new`, `changed` or `unchanged` and its
/// path, then the counts.
pub fn changes(out: &BackupOutcome) {
    for c in &out.changes {
        outln!("{:<9} {}", c.change.word(), sanitize(&c.path));
    }
    let n = ChangeCounts::of(&out.changes);
    outln!(
        "files: {} new, {} changed, {} unchanged",
        n.new,
        n.changed,
        n.unchanged
    );
}

/// Prints what the backup did for humans.
pub fn text(out: &BackupOutcome) {
    let t = &out.snapshot.totals;
    outln!("snapshot {} saved", out.id.short());
    outln!(
        "  {} files, {} dirs, {} ({} files read, the rest unchanged)",
        t.files,
        t.dirs,
        size(t.bytes),
        t.files_read
    );
    outln!(
        "  added {} new blobs, {} raw, {} stored, in {}",
        t.blobs_added,
        size(t.bytes_added),
        size(t.bytes_stored),
        duration_ms(t.duration_ms)
    );
    if out.resumed.packs > 0 {
        println!(
            "  reused {} pack(s), {}, that an interrupted backup had uploaded",
            out.resumed.packs,
            size(out.resumed.bytes)
        );
    }
}

/// Warns on stderr about every input that could not be read, and about
/// command output that was already compressed.
pub fn warnings(out: &BackupOutcome) {
    for e in &out.snapshot.errors {
        eprintln!(
            "vault: warning: could not read {}: {}",
            sanitize(&e.path),
            sanitize(&e.message)
        );
    }
    for c in &out.compressed_outputs {
        let what = match c.why {
            "incompressible" => "does not compress (its first MiB did not shrink)".to_owned(),
            format => format!("is {format}-compressed"),
        };
        eprintln!(
            "vault: warning: the command output stored as {} {what}: compressed output never \
             deduplicates, so every backup stores all of it again; have the command write \
             uncompressed output (pg_dump -Z0 / --compress=0, no gzip or zstd in the pipe), \
             or back PostgreSQL up with vault's native --postgres source",
            sanitize(&c.path)
        );
    }
}
