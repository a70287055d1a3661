//! `vault copy` output.

use super::size;
use vault::ops::copy::CopyReport;

/// Prints a copy report for humans.
pub fn text(r: &CopyReport, to: &str) {
    for id in &r.snapshots_copied {
        println!("copied snapshot {}", id.short());
    }
    println!(
        "{} snapshots copied to {to}, {} already there",
        r.snapshots_copied.len(),
        r.snapshots_skipped.len()
    );
    if r.snapshots_copied.is_empty() {
        return;
    }
    println!(
        "{} of {} needed blobs were missing: copied {} packs ({}), indexed {} left by an \
         earlier copy, {} packs already there",
        r.blobs_missing,
        r.blobs_needed,
        r.packs_copied,
        size(r.pack_bytes),
        r.packs_resumed,
        r.packs_already_present
    );
    println!(
        "{} transferred in all; every object checked against its name{}",
        size(r.bytes_transferred),
        if r.packs_verified > 0 {
            format!(
                ", {} packs read back and verified blob by blob",
                r.packs_verified
            )
        } else {
            String::new()
        }
    );
}
