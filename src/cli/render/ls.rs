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

/// The owner column's width. `ls` streams its lines, so the column cannot
/// grow to the longest owner: a longer `user/group` is cut to fit.
const OWNER_WIDTH: usize = 16;

/// `user/group` as shown in the owner column: escaped, and at most
/// [`OWNER_WIDTH`] characters, a longer one cut with `…` (`--json` gives
/// both names whole), so the columns after it stay aligned.
fn owner_column(user: &str, group: &str) -> String {
    let owner = sanitize(&format!("{user}/{group}"));
    if owner.chars().count() <= OWNER_WIDTH {
        return owner;
    }
    let mut cut: String = owner.chars().take(OWNER_WIDTH - 1).collect();
    cut.push('…');
    cut
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
    let owner = owner_column(
        &node.user.clone().unwrap_or(node.uid.to_string()),
        &node.group.clone().unwrap_or(node.gid.to_string()),
    );
    let mut line = format!(
        "{kind}{:04o} {owner:<OWNER_WIDTH$} {:>10} {mtime} {shown}",
        node.mode, node.size
    );
    if let Some(t) = &node.target {
        line.push_str(&format!(
            " -> {}",
            vault::format::escape::escape_bytes(&t.0)
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault::format::tree::Bytes;

    fn file(user: &str, group: &str) -> Node {
        Node {
            name: Bytes(b"f".to_vec()),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            user: Some(user.into()),
            group: Some(group.into()),
            mtime_ns: 0,
            size: 5,
            target: None,
            rdev: None,
            hardlink: None,
            xattrs: vec![],
            content: vec![],
            bundle_offset: None,
            content_lists: vec![],
            hash: None,
            subtree: None,
        }
    }

    #[test]
    fn a_long_owner_is_cut_so_the_columns_stay_aligned() {
        let path = Path::new("srv/f");
        let short = line(path, &file("root", "root"));
        assert!(short.starts_with("-0644 root/root         "), "{short}");
        for (user, group) in [
            ("averyveryverylongusername", "staff"),
            ("svc-backup-01", "svc-backup-01"),
            ("u", "\x1b[2Jgroupwithescapes"),
        ] {
            let long = line(path, &file(user, group));
            let column = |l: &str| l.chars().position(|c| c == '5').unwrap();
            assert_eq!(column(&long), column(&short), "{long}");
            assert!(long.contains('…'), "{long}");
            assert!(long.ends_with(" /srv/f"), "{long}");
            assert!(!long.contains('\x1b'), "{long}");
        }
        // Exactly 16 characters fit as they are.
        let fits = line(path, &file("sixteen-char", "abc"));
        assert!(fits.contains(" sixteen-char/abc "), "{fits}");
        assert!(!fits.contains('…'));
    }
}
