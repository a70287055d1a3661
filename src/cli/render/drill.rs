//! `vault drill` output.

use super::sanitize;
use vault::ops::check::Severity;
use vault::ops::drill::DrillReport;

/// Prints each drilled snapshot, the pack slice and the verdict.
pub fn text(report: &DrillReport) {
    for s in &report.snapshots {
        let r = &s.report;
        outln!(
            "snapshot {} ({}): {}, {} re-read, {}: {}",
            s.snapshot.short(),
            s.reason,
            super::count(r.files, "file"),
            r.verified,
            super::count(r.databases.len() as u64, "database"),
            if r.failed() { "FAILED" } else { "passed" }
        );
        super::restore::problems(&r.problems);
        for c in &s.expiring_certificates {
            outln!(
                "  warning: certificate {} expires {}",
                sanitize(&c.subject),
                super::time(c.not_after)
            );
        }
    }
    outln!(
        "packs slice {}: {}, {} verified{}",
        report.pack_slice,
        super::count(report.packs.packs_read, "pack"),
        super::count(report.packs.blobs_verified, "blob"),
        if report.packs.has_errors() {
            ", DAMAGE FOUND"
        } else {
            ""
        }
    );
    for f in report
        .packs
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
    {
        outln!(
            "  error: {}: {}",
            sanitize(&f.subject),
            sanitize(&f.message)
        );
    }
    outln!(
        "result: {}",
        if report.passed { "PASSED" } else { "FAILED" }
    );
}
