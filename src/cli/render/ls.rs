//! `vault ls` output: one line per node.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::json;

use super::sanitize;
use vault::format::tree::{Node, NodeKind};

/// A path as shown: its bytes with control characters (a newline in a file
/// name, terminal escapes) and invalid UTF-8 escaped, so that one entry is
/// always one line.
fn shown(path: &Path) -> String {
    format!(
        "/{}",
        vault::format::escape::escape_bytes(path.as_os_str().as_bytes())
    )
}

/// A node as one JSON line. JSON escapes control characters itself, so the
/// path is given as it is (invalid UTF-8 replaced).
pub fn json_line(path: &Path, node: &Node) -> String {
    let shown = format!("/{}", path.display());
    json!({ "path": shown, "node": node }).to_string()
}

/// A node as an `ls -l` style line.
pub fn line(path: &Path, node: &Node) -> String {
    let shown = shown(path);
    let kind = match node.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mtime = super::time_ns(node.mtime_ns);
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
        line.push_str(&format!(
            " -> {}",
            vault::format::escape::escape_bytes(&t.0)
        ));
    }
    line
}
