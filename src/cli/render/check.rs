//! `vault check` output.

use super::sanitize;
use vault::ops::check::{CheckReport, Severity};

/// Prints every finding and a summary line.
pub fn text(report: &CheckReport) {
    for f in &report.findings {
        let sev = if f.severity == Severity::Error {
            "error"
        } else {
            "info"
        };
        println!("{sev}: {}: {}", sanitize(&f.subject), sanitize(&f.message));
    }
    println!(
        "checked {} snapshots, hashed {} objects, read {} packs ({} blobs), \
         {} unfinished uploads ({} aborted): {}",
        report.snapshots,
        report.objects_hashed,
        report.packs_read,
        report.blobs_verified,
        report.pending_uploads,
        report.uploads_aborted,
        if report.has_errors() {
            "DAMAGE FOUND"
        } else {
            "no errors"
        }
    );
}
