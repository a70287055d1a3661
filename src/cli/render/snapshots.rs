//! `vault snapshots` output.

use serde_json::json;

use super::{CERT_WARN_DAYS, sanitize, size};
use vault::Id;
use vault::format::snapshot::{Snapshot, SourceRecord};

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

/// One source as a table cell: its paths, `postgres:NAME` or `command:FILE`.
fn source_cell(s: &SourceRecord) -> String {
    match s.kind.as_str() {
        "paths" if !s.paths.is_empty() => s.paths.join(" "),
        kind => format!("{kind}:{}", s.name),
    }
}

/// Prints the snapshots as a table: tags, and every source (paths,
/// databases, commands).
pub fn table(list: &[(Id, Snapshot)]) {
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|(id, s)| {
            let tags = if s.tags.is_empty() {
                "-".to_owned()
            } else {
                s.tags.join(",")
            };
            let sources: Vec<String> = s.sources.iter().map(source_cell).collect();
            [
                id.short(),
                s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                sanitize(&s.host),
                size(s.totals.bytes),
                if s.is_complete() { "ok" } else { "partial" }.to_owned(),
                sanitize(&tags),
                sanitize(&sources.join(" ")),
            ]
        })
        .collect();
    let header = [
        "id",
        "time (UTC)",
        "host",
        "size",
        "status",
        "tags",
        "sources",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..6).map(width).collect();
    let line = |r: [&str; 7]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:<w4$}  {:<w5$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5],
        )
    };
    outln!("{}", line(header).trim_end());
    for r in &rows {
        outln!(
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]).trim_end()
        );
    }
}
