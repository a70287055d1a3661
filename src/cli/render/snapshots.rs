//! `vault snapshots` output.

use serde_json::json;

use super::{CERT_WARN_DAYS, sanitize, size};
use vault::Id;
use vault::format::snapshot::Snapshot;

/// Prints the snapshots as a JSON array.
pub fn json(list: &[(Id, Snapshot)]) {
    let now = chrono::Utc::now();
    let v: Vec<_> = list
        .iter()
        .map(|(id, s)| {
            let expiring = vault::source::keystore::expiring(&s.certificates, now, CERT_WARN_DAYS);
            json!({ "id": id, "snapshot": s, "expiring_certificates": expiring })
        })
        .collect();
    super::json(&v);
}

/// Prints the snapshots as a table.
pub fn table(list: &[(Id, Snapshot)]) {
    println!(
        "{:<8}  {:<20}  {:<16}  {:>10}  {:<6}  paths",
        "id", "time (UTC)", "host", "size", "status"
    );
    for (id, s) in list {
        println!(
            "{:<8}  {:<20}  {:<16}  {:>10}  {:<6}  {}",
            id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            sanitize(&s.host),
            size(s.totals.bytes),
            if s.is_complete() { "ok" } else { "partial" },
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
