//! `vault copy` output.

use super::{count, size};
use vault::ops::copy::CopyReport;

/// Prints a copy report for humans.
pub fn text(r: &CopyReport, to: &str) {
    for id in &r.snapshots_copied {
        outln!("copied snapshot {}", id.short());
    }
    outln!(
        "{} copied to {to}, {} already there",
        count(r.snapshots_copied.len() as u64, "snapshot"),
        r.snapshots_skipped.len()
    );
    if r.retirements_copied > 0 {
        outln!(
            "{} copied (sources the owner retired)",
            count(r.retirements_copied, "retirement record")
        );
    }
    if r.snapshots_copied.is_empty() {
        return;
    }
    outln!(
        "{} of {} {} missing: copied {} ({}), indexed {} left by an earlier copy, {} already \
         there",
        r.blobs_missing,
        count(r.blobs_needed, "needed blob"),
        if r.blobs_missing == 1 { "was" } else { "were" },
        count(r.packs_copied, "pack"),
        size(r.pack_bytes),
        r.packs_resumed,
        count(r.packs_already_present, "pack")
    );
    outln!(
        "{} transferred in all; every object checked against its name{}",
        size(r.bytes_transferred),
        if r.packs_verified > 0 {
            format!(
                ", {} read back and verified blob by blob",
                count(r.packs_verified, "pack")
            )
        } else {
            String::new()
        }
    );
}
