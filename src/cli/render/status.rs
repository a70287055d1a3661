//! `vault status` output.

use super::sanitize;
use vault::ops::status::{StatusReport, human};

/// Prints the status table, certificates, and the verdict.
pub fn text(r: &StatusReport) {
    let age = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("never".to_owned(), |t| format!("{} ago", human(r.time - t)))
    };
    // Columns as wide as their longest value, so long labels keep the table aligned.
    let width = |min: usize, values: &mut dyn Iterator<Item = String>| {
        values.map(|v| v.chars().count()).fold(min, usize::max)
    };
    let hw = width(16, &mut r.sources.iter().map(|s| sanitize(&s.host)));
    let sw = width(28, &mut r.sources.iter().map(|s| sanitize(&s.source)));
    outln!(
        "{:<hw$}  {:<sw$}  {:<14}  {:<14}  state",
        "host",
        "source",
        "last backup",
        "last drill"
    );
    for s in &r.sources {
        outln!(
            "{:<hw$}  {:<sw$}  {:<14}  {:<14}  {}",
            sanitize(&s.host),
            sanitize(&s.source),
            age(s.last_complete_backup),
            age(s.last_passed_drill),
            if s.problems.is_empty() {
                "ok".to_owned()
            } else {
                s.problems.join("; ")
            }
        );
    }
    for s in &r.retired {
        outln!(
            "retired: {} {} (retired {}, last backup {}; a new backup brings it back)",
            sanitize(&s.host),
            sanitize(&s.source),
            age(Some(s.retired)),
            age(s.last_backup)
        );
    }
    for s in &r.sources {
        for note in &s.notes {
            outln!(
                "note: {} {}: {}",
                sanitize(&s.host),
                sanitize(&s.source),
                sanitize(note)
            );
        }
    }
    for c in &r.expiring_certificates {
        outln!(
            "certificate {} on {} expires {} ({} days)",
            sanitize(&c.certificate.subject),
            sanitize(&c.host),
            super::time(c.certificate.not_after),
            c.days_left
        );
    }
    for f in &r.future_snapshots {
        outln!("{}", sanitize(f));
    }
    for u in &r.unreadable {
        outln!("unreadable: {}", sanitize(u));
    }
    for u in &r.untrusted {
        println!("untrusted: {}", sanitize(u));
    }
    if r.sources.is_empty() {
        outln!("no snapshots yet");
    }
    outln!("status: {}", if r.ok { "ok" } else { "attention needed" });
}
