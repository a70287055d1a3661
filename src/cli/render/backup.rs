//! `vault backup` output.

use serde_json::json;

use super::{duration_ms, sanitize, size};
use vault::format::snapshot::Snapshot;
use vault::ops::backup::BackupOutcome;

/// Prints the new snapshot as JSON.
pub fn json(out: &BackupOutcome) {
    let s = &out.snapshot;
    super::json(&json!({ "id": out.id, "snapshot": s, "complete": s.is_complete() }));
}

/// Prints what the backup did for humans.
pub fn text(out: &BackupOutcome) {
    let t = &out.snapshot.totals;
    println!("snapshot {} saved", out.id.short());
    println!(
        "  {} files, {} dirs, {} ({} files read, the rest unchanged)",
        t.files,
        t.dirs,
        size(t.bytes),
        t.files_read
    );
    println!(
        "  added {} new blobs, {} raw, {} stored, in {}",
        t.blobs_added,
        size(t.bytes_added),
        size(t.bytes_stored),
        duration_ms(t.duration_ms)
    );
}

/// Warns on stderr about every input that could not be read.
pub fn warnings(s: &Snapshot) {
    for e in &s.errors {
        eprintln!(
            "vault: warning: could not read {}: {}",
            sanitize(&e.path),
            sanitize(&e.message)
        );
    }
}
