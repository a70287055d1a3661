//! `vault diff` output: one line per changed path and a summary.

use std::os::unix::ffi::OsStrExt;

use serde_json::json;
use vault::format::id::SnapshotId;
use vault::format::tree::NodeKind;
use vault::ops::diff::{DiffSummary, Difference};

/// A change as a line: its mark (`+`, `-`, `M`, `U`, `T`) and the path,
/// escaped so that one change is always one line; a directory ends in `/`.
pub fn line(d: &Difference<'_>) -> String {
    let dir = d
        .after
        .or(d.before)
        .is_some_and(|n| n.kind == NodeKind::Dir);
    format!(
        "{}    /{}{}",
        d.change.mark(),
        vault::format::escape::escape_bytes(d.path.as_os_str().as_bytes()),
        if dir { "/" } else { "" }
    )
}

/// A change as JSON (JSON escapes control characters itself).
pub fn json_change(d: &Difference<'_>) -> serde_json::Value {
    let kind = |n: Option<&vault::format::tree::Node>| n.map(|n| n.kind);
    let size = |n: Option<&vault::format::tree::Node>| n.map(|n| n.size);
    json!({
        "path": format!("/{}", d.path.display()),
        "change": d.change,
        "kind_before": kind(d.before),
        "kind_after": kind(d.after),
        "size_before": size(d.before),
        "size_after": size(d.after),
    })
}

/// The whole diff as one JSON document.
pub fn json(
    from: &SnapshotId,
    to: &SnapshotId,
    changes: Vec<serde_json::Value>,
    summary: &DiffSummary,
) {
    super::json(&json!({
        "from": from.to_hex(),
        "to": to.to_hex(),
        "changes": changes,
        "summary": summary,
    }));
}

/// The closing summary line.
pub fn summary(s: &DiffSummary) -> String {
    if s.is_empty() {
        return format!(
            "no changes ({} read)",
            plural(s.trees_read, "tree", "trees")
        );
    }
    format!(
        "{} added, {} removed, {} modified, {} with new metadata, {} changed type; \
         +{} -{} ({} read, unchanged directories skipped)",
        s.added,
        s.removed,
        s.modified,
        s.metadata,
        s.type_changed,
        super::size(s.bytes_added),
        super::size(s.bytes_removed),
        plural(s.trees_read, "tree", "trees"),
    )
}

pub use super::plural;
