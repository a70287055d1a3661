//! `vault find` output: one line per match, and a summary on stderr.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::json;
use vault::format::id::SnapshotId;
use vault::format::snapshot::Snapshot;
use vault::format::tree::Node;
use vault::ops::find::FindSummary;

use super::diff::plural;

/// A path as shown: escaped so one match is always one line.
pub fn shown(path: &Path) -> String {
    format!(
        "/{}",
        vault::format::escape::escape_bytes(path.as_os_str().as_bytes())
    )
}

/// A match as a line: the snapshot's short id, then the entry as `vault
/// ls` shows it (kind and mode, owner, size, mtime, path).
pub fn line(snapshot: &SnapshotId, path: &Path, node: &Node) -> String {
    format!("{}  {}", snapshot.short(), super::ls::line(path, node))
}

/// A match as one JSON line.
pub fn json_line(snapshot: &SnapshotId, header: &Snapshot, path: &Path, node: &Node) -> String {
    let mtime = chrono::DateTime::from_timestamp_nanos(node.mtime_ns);
    json!({
        "snapshot": snapshot.to_hex(),
        "snapshot_time": header.time,
        "host": header.host,
        "path": format!("/{}", path.display()),
        "kind": node.kind,
        "size": node.size,
        "mtime": mtime,
    })
    .to_string()
}

/// The closing summary (stderr, so that stdout holds only matches).
pub fn summary(s: &FindSummary) -> String {
    let ruled_out = match s.ruled_out {
        0 => String::new(),
        n => format!(", {n} ruled out by the path"),
    };
    format!(
        "{} in {} ({} read, {} unchanged without a match skipped{ruled_out})",
        plural(s.matches, "match", "matches"),
        plural(s.snapshots, "snapshot", "snapshots"),
        plural(s.trees_read, "directory", "directories"),
        s.skipped,
    )
}
