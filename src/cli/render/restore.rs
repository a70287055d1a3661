//! `vault restore` (and `--verify`) output, and the problem lines `vault
//! drill` shares.

use serde_json::json;

use super::{CERT_WARN_DAYS, count, duration_ms, sanitize, size};
use vault::SnapshotId;
use vault::format::snapshot::{CertInfo, Snapshot};
use vault::ops::restore::{Problem, RestoreReport, WITHHELD_LISTED, WithheldReport};

/// What a restore or verification did.
pub struct Outcome<'a> {
    /// The snapshot restored.
    pub id: &'a SnapshotId,
    /// Its header.
    pub snapshot: &'a Snapshot,
    /// What happened.
    pub report: &'a RestoreReport,
    /// The drill record written by `--verify`.
    pub drill: Option<&'a vault::Id>,
    /// Whether this was `--verify`.
    pub verify: bool,
    /// Whether only part of the snapshot was restored (`--include`,
    /// `--exclude`): its certificates are recorded without the names of
    /// their files, so none is checked.
    pub partial: bool,
}

/// The snapshot's certificates that expire soon, when the whole snapshot
/// was restored; None when only part of it was.
fn expiring(o: &Outcome<'_>) -> Option<Vec<CertInfo>> {
    (!o.partial).then(|| {
        vault::source::keystore::expiring(
            &o.snapshot.certificates,
            chrono::Utc::now(),
            CERT_WARN_DAYS,
        )
    })
}

/// Prints the outcome as JSON.
pub fn json(o: &Outcome<'_>) {
    super::json(&json!({
        "passed": !o.report.failed(),
        "drill": o.drill,
        "report": o.report,
        "expiring_certificates": expiring(o),
    }));
}

/// Prints the outcome for humans.
pub fn text(o: &Outcome<'_>) {
    let report = o.report;
    let verb = if o.verify { "verified" } else { "restored" };
    outln!(
        "snapshot {} {verb}: {}, {}, {} other, {} in {}",
        o.id.short(),
        count(report.files, "file"),
        count(report.dirs, "dir"),
        report.other,
        size(report.bytes),
        duration_ms(report.duration_ms)
    );
    if report.replaced + report.skipped > 0 {
        outln!(
            "  already in the target: {} replaced, {} left as they were",
            report.replaced,
            report.skipped
        );
    }
    if o.verify {
        outln!(
            "  {} re-read from disk and matched {} BLAKE3 {}",
            count(report.verified, "file"),
            if report.verified == 1 { "its" } else { "their" },
            if report.verified == 1 {
                "hash"
            } else {
                "hashes"
            }
        );
        match o.drill {
            Some(d) => outln!("  drill record {} written", d.short()),
            None => outln!(
                "  no drill record: only part of the snapshot (--include) was restored, which \
                 proves nothing about the rest"
            ),
        }
    }
    for db in &report.databases {
        let verdict = match (db.passed, db.failure) {
            (true, _) => "loaded by an unprivileged role, every row count matches".to_owned(),
            (false, Some(f)) => format!("FAILED: {}", f.describe()),
            (false, None) => "FAILED".to_owned(),
        };
        outln!("  database {}: {verdict}", sanitize(&db.name));
        for t in &db.tables {
            let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
            let mark = if t.expected == t.found {
                "ok"
            } else {
                "MISMATCH"
            };
            outln!(
                "    {:<40} expected {:>10}  found {:>10}  {mark}",
                sanitize(&t.table),
                n(t.expected),
                n(t.found)
            );
        }
    }
    problems(&report.problems);
    withheld(&report.withheld);
    warn_expiring(&expiring(o).unwrap_or_default());
    outln!(
        "result: {}",
        if report.failed() { "FAILED" } else { "PASSED" }
    );
}

/// Prints restore problems, one per line.
pub fn problems(problems: &[Problem]) {
    for p in problems {
        outln!(
            "  {:?}: /{}: {}",
            p.kind,
            sanitize(&p.path),
            sanitize(&p.message)
        );
    }
}

/// Withheld entries printed one per line; `--json` lists more.
const WITHHELD_SHOWN: usize = 20;

/// Says what the restore policy kept out of the target, and how to ask for it.
fn withheld(w: &WithheldReport) {
    if w.total() == 0 {
        return;
    }
    let mut parts = Vec::new();
    for (n, what, flag) in [
        (w.setid, "setuid/setgid bits cleared", "--keep-setid"),
        (w.devices, "device nodes not created", "--allow-devices"),
        (
            w.security_xattrs,
            "security.*/trusted.* attributes not set",
            "--keep-security-xattrs",
        ),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what} ({flag} restores them)"));
        }
    }
    println!("  withheld by the restore policy: {}", parts.join(", "));
    for e in w.entries.iter().take(WITHHELD_SHOWN) {
        println!("    /{}: {}", sanitize(&e.path), sanitize(&e.detail));
    }
    let more = w
        .total()
        .saturating_sub(WITHHELD_SHOWN.min(w.entries.len()) as u64);
    if more > 0 {
        println!("    ... and {more} more (--json lists up to {WITHHELD_LISTED})");
    }
}

/// Prints a warning line per certificate of `expiring`.
fn warn_expiring(expiring: &[CertInfo]) {
    for c in expiring {
        outln!(
            "  warning: certificate {} expires {}",
            sanitize(&c.subject),
            super::time(c.not_after)
        );
    }
}
