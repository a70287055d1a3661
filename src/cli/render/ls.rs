//! `vault ls` output: one line per node.

use std::path::Path;

use serde_json::json;

use super::sanitize;
use vault::format::tree::{Node, NodeKind};

/// A node as one JSON line.
pub fn json_line(path: &Path, node: &Node) -> String {
    let shown = sanitize(&format!("/{}", path.display()));
    json!({ "path": shown, "node": node }).to_string()
}

/// A node as an `ls -l` style line.
pub fn line(path: &Path, node: &Node) -> String {
    let shown = sanitize(&format!("/{}", path.display()));
    let kind = match node.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mtime = chrono::DateTime::from_timestamp_nanos(node.mtime_ns).format("%Y-%m-%d %H:%M");
    let owner = format!(
        "{}/{}",
        node.user.clone().unwrap_or(node.uid.to_string()),
        node.group.clone().unwrap_or(node.gid.to_string())
    );
    let mut line = format!(
        "{kind}{:04o} {:<16} {:>10} {mtime} {shown}",
        node.mode,
        sanitize(&owner),
        node.size
    );
    if let Some(t) = &node.target {
        line.push_str(&format!(" -> {}", sanitize(&String::from_utf8_lossy(&t.0))));
    }
    line
}
