//! `vault snapshots` output.

use serde_json::json;

use super::{CERT_WARN_DAYS, sanitize, size};
use vault::repo::trust::{SnapshotRecord, Trust};

fn trust(t: &Trust) -> &'static str {
    match t {
        Trust::Trusted => "trusted",
        Trust::Legacy => "legacy",
        Trust::Untrusted(_) => "untrusted",
    }
}

/// Prints the snapshots as a JSON array: each header as written, who signed
/// it, whether it counts (and why not), and the time it counts as (bounded
/// by its upload).
pub fn json(list: &[SnapshotRecord]) {
    let now = chrono::Utc::now();
    let v: Vec<_> = list
        .iter()
        .map(|r| {
            let mut s = r.snapshot.clone();
            s.time = r.recorded_time;
            let expiring = vault::source::keystore::expiring(&s.certificates, now, CERT_WARN_DAYS);
            let reason = match &r.trust {
                Trust::Untrusted(why) => Some(why.clone()),
                _ => None,
            };
            json!({ "id": r.id, "snapshot": s, "expiring_certificates": expiring,
                    "signed_by": r.signer.describe(), "trust": trust(&r.trust),
                    "untrusted_reason": reason, "counts_as_time": r.snapshot.time,
                    "uploaded": r.uploaded })
        })
        .collect();
    super::json(&v);
}

/// Prints the snapshots as a table.
pub fn table(list: &[SnapshotRecord]) {
    println!(
        "{:<8}  {:<20}  {:<16}  {:>10}  {:<6}  {:<9}  paths",
        "id", "time (UTC)", "host", "size", "status", "trust"
    );
    for r in list {
        let s = &r.snapshot;
        println!(
            "{:<8}  {:<20}  {:<16}  {:>10}  {:<6}  {:<9}  {}",
            r.id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            sanitize(&s.host),
            size(s.totals.bytes),
            if s.is_complete() { "ok" } else { "partial" },
            trust(&r.trust),
            sanitize(
                &s.sources
                    .iter()
                    .flat_map(|x| x.paths.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        );
    }
}
