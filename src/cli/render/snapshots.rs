//! `vault snapshots` output.

use serde_json::json;

use super::{CERT_WARN_DAYS, sanitize, size};
use vault::format::snapshot::SourceRecord;
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
                    "uploaded": r.uploaded, "key_revoked": r.key_revoked })
        })
        .collect();
    super::json(&v);
}

/// One source as a table cell: its paths, `postgres:NAME` or `command:FILE`.
fn source_cell(s: &SourceRecord) -> String {
    match s.kind.as_str() {
        "paths" if !s.paths.is_empty() => s.paths.join(" "),
        kind => format!("{kind}:{}", s.name),
    }
}

/// Prints the snapshots as a table: tags, and every source (paths,
/// databases, commands).
pub fn table(list: &[SnapshotRecord]) {
    let rows: Vec<[String; 8]> = list
        .iter()
        .map(|r| {
            let (id, s) = (&r.id, &r.snapshot);
            let tags = if s.tags.is_empty() {
                "-".to_owned()
            } else {
                s.tags.join(",")
            };
            let sources: Vec<String> = s.sources.iter().map(source_cell).collect();
            [
                id.short(),
                super::time(s.time),
                sanitize(&s.host),
                size(s.totals.bytes),
                if s.is_complete() { "ok" } else { "partial" }.to_owned(),
                trust(&r.trust).to_owned(),
                sanitize(&tags),
                sanitize(&sources.join(" ")),
            ]
        })
        .collect();
    let header = [
        "id", "time", "host", "size", "status", "trust", "tags", "sources",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..7).map(width).collect();
    let line = |r: [&str; 8]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {:<w5$}  {:<w6$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5],
            w6 = w[6],
        )
    };
    outln!("{}", line(header).trim_end());
    for r in &rows {
        outln!(
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7]]).trim_end()
        );
    }
}
