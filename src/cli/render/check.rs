//! `vault check` output.

use super::{count, sanitize};
use vault::ops::check::{CheckReport, Severity};

/// Prints every finding and a summary line.
pub fn text(report: &CheckReport) {
    for f in &report.findings {
        let sev = if f.severity == Severity::Error {
            "error"
        } else {
            "info"
        };
        outln!("{sev}: {}: {}", sanitize(&f.subject), sanitize(&f.message));
    }
    outln!(
        "checked {}, hashed {}, read {} ({}), {} ({} aborted): {}",
        count(report.snapshots, "snapshot"),
        count(report.objects_hashed, "object"),
        count(report.packs_read, "pack"),
        count(report.blobs_verified, "blob"),
        count(report.pending_uploads, "unfinished upload"),
        report.uploads_aborted,
        if report.has_errors() {
            "DAMAGE FOUND"
        } else {
            "no errors"
        }
    );
}
