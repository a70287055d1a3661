//! `vault restore` (and `--verify`) output, and the problem lines `vault
//! drill` shares.

use serde_json::json;

use super::{CERT_WARN_DAYS, duration_ms, sanitize, size};
use vault::Id;
use vault::format::snapshot::{CertInfo, Snapshot};
use vault::ops::restore::{Problem, RestoreReport};

/// What a restore or verification did.
pub struct Outcome<'a> {
    /// The snapshot restored.
    pub id: &'a Id,
    /// Its header.
    pub snapshot: &'a Snapshot,
    /// What happened.
    pub report: &'a RestoreReport,
    /// The drill record written by `--verify`.
    pub drill: Option<&'a Id>,
    /// Whether this was `--verify`.
    pub verify: bool,
}

/// Prints the outcome as JSON.
pub fn json(o: &Outcome<'_>) {
    let expiring = vault::source::keystore::expiring(
        &o.snapshot.certificates,
        chrono::Utc::now(),
        CERT_WARN_DAYS,
    );
    super::json(&json!({
        "passed": !o.report.failed(),
        "drill": o.drill,
        "report": o.report,
        "expiring_certificates": expiring,
    }));
}

/// Prints the outcome for humans.
pub fn text(o: &Outcome<'_>) {
    let report = o.report;
    let verb = if o.verify { "verified" } else { "restored" };
    println!(
        "snapshot {} {verb}: {} files, {} dirs, {} other, {} in {}",
        o.id.short(),
        report.files,
        report.dirs,
        report.other,
        size(report.bytes),
        duration_ms(report.duration_ms)
    );
    if o.verify {
        println!(
            "  {} files re-read from disk and matched their BLAKE3 hashes",
            report.verified
        );
        if let Some(d) = o.drill {
            println!("  drill record {} written", d.short());
        }
    }
    for db in &report.databases {
        let verdict = match (db.passed, db.failure) {
            (true, _) => "loaded by an unprivileged role, every row count matches".to_owned(),
            (false, Some(f)) => format!("FAILED: {}", f.describe()),
            (false, None) => "FAILED".to_owned(),
        };
        println!("  database {}: {verdict}", sanitize(&db.name));
        for t in &db.tables {
            let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
            let mark = if t.expected == t.found {
                "ok"
            } else {
                "MISMATCH"
            };
            println!(
                "    {:<40} expected {:>10}  found {:>10}  {mark}",
                sanitize(&t.table),
                n(t.expected),
                n(t.found)
            );
        }
    }
    problems(&report.problems);
    warn_expiring(&o.snapshot.certificates);
    println!(
        "result: {}",
        if report.failed() { "FAILED" } else { "PASSED" }
    );
}

/// Prints restore problems, one per line.
pub fn problems(problems: &[Problem]) {
    for p in problems {
        println!(
            "  {:?}: /{}: {}",
            p.kind,
            sanitize(&p.path),
            sanitize(&p.message)
        );
    }
}

/// Prints a warning line per certificate that expires soon.
fn warn_expiring(certs: &[CertInfo]) {
    for c in vault::source::keystore::expiring(certs, chrono::Utc::now(), CERT_WARN_DAYS) {
        println!(
            "  warning: certificate {} expires {}",
            sanitize(&c.subject),
            c.not_after.format("%Y-%m-%d %H:%M UTC")
        );
    }
}
