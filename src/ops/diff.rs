//! `vault diff`: what changed between two snapshots (owner key required).
//!
//! The two trees are walked side by side, one directory at a time. A
//! directory whose tree id is the same on both sides holds the same entries
//! (tree ids are content addresses), so its contents are never read: diffing
//! two nightly snapshots of a large tree where one file changed reads the
//! trees on the path to that file, not the whole tree.
//!
//! Bounds: the walk holds one frame per directory on the current path (at
//! most [`MAX_DEPTH`] deep), and every entry read counts against the entries
//! the two headers declare, as [`crate::repo::treewalk::Budget`] does for
//! `ls`: a crafted tree that reuses its subtrees cannot make a diff read
//! more than the snapshots claim to hold.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::TreeId;
use crate::format::index::Index;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::treewalk::{MAX_DEPTH, OTHER_ENTRIES_ALLOWANCE};
use crate::repo::{BlobReader, Repository};

/// How a path differs between the two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the second snapshot.
    Added,
    /// Only in the first snapshot.
    Removed,
    /// In both, with different content (file bytes, symlink target, device).
    Modified,
    /// In both with the same content, but other metadata (mode, owner,
    /// mtime, extended attributes).
    Metadata,
    /// In both, but of a different kind (a file became a directory).
    Type,
}

impl Change {
    /// The one-letter mark `vault diff` prints (restic's).
    pub fn mark(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
            Change::Type => 'T',
        }
    }
}

/// One changed path, in depth-first name order.
pub struct Difference<'a> {
    /// Path relative to the snapshot roots.
    pub path: &'a Path,
    /// What changed.
    pub change: Change,
    /// The entry in the first snapshot.
    pub before: Option<&'a Node>,
    /// The entry in the second snapshot.
    pub after: Option<&'a Node>,
}

/// Counts of what [`diff`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Paths only in the second snapshot.
    pub added: u64,
    /// Paths only in the first snapshot.
    pub removed: u64,
    /// Paths whose content changed.
    pub modified: u64,
    /// Paths whose metadata alone changed.
    pub metadata: u64,
    /// Paths whose kind changed.
    pub type_changed: u64,
    /// Bytes of the files added (and of the new side of modified files).
    pub bytes_added: u64,
    /// Bytes of the files removed (and of the old side of modified files).
    pub bytes_removed: u64,
    /// Trees read: unchanged subtrees are not.
    pub trees_read: u64,
}

impl DiffSummary {
    /// Whether the snapshots hold the same paths, content and metadata.
    pub fn is_empty(&self) -> bool {
        self.added + self.removed + self.modified + self.metadata + self.type_changed == 0
    }
}

/// One directory pair being compared: entries of both sides, matched by
/// name, and how far the walk got.
struct Frame {
    path: PathBuf,
    items: Vec<(Option<Node>, Option<Node>)>,
    next: usize,
}

/// Reads trees within what the headers declare.
struct Trees<'r> {
    index: &'r Index,
    reader: BlobReader<'r>,
    entries_left: u64,
    read: u64,
}

impl Trees<'_> {
    /// The entries of the directory `node` (none when it is not one).
    fn entries(&mut self, node: Option<&Node>, path: &Path) -> Result<Vec<Node>> {
        let Some(node) = node.filter(|n| n.kind == NodeKind::Dir) else {
            return Ok(Vec::new());
        };
        let Some(sub) = node.subtree else {
            return Err(Error::format(
                shown(path),
                "directory entry without a subtree",
            ));
        };
        self.read(&sub, path)
    }

    fn read(&mut self, id: &TreeId, path: &Path) -> Result<Vec<Node>> {
        let max = self.entries_left.min(usize::MAX as u64) as usize;
        let tree = self
            .reader
            .read_tree(id, self.index, max)
            .map_err(|e| match e {
                Error::Format { .. } | Error::Damaged(_) | Error::Crypto(_) => {
                    Error::format(format!("snapshot tree {}", shown(path)), e.to_string())
                }
                other => other,
            })?;
        self.read += 1;
        self.entries_left = self
            .entries_left
            .checked_sub(tree.nodes.len() as u64)
            .ok_or_else(|| {
                Error::format(
                    format!("snapshot tree {}", shown(path)),
                    "the trees hold more entries than the two headers declare",
                )
            })?;
        Ok(tree.nodes)
    }
}

/// A relative path as shown in messages (`/etc/hosts`).
fn shown(path: &Path) -> String {
    format!(
        "/{}",
        crate::format::escape::escape_bytes(path.as_os_str().as_bytes())
    )
}

/// Matches the entries of two listings by name, in name order.
fn pair(a: Vec<Node>, b: Vec<Node>) -> Vec<(Option<Node>, Option<Node>)> {
    let mut a = a;
    let mut b = b;
    a.sort_by(|x, y| x.name.cmp(&y.name));
    b.sort_by(|x, y| x.name.cmp(&y.name));
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut a = a.into_iter().peekable();
    let mut b = b.into_iter().peekable();
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.name.cmp(&y.name),
        };
        out.push(match order {
            std::cmp::Ordering::Less => (a.next(), None),
            std::cmp::Ordering::Greater => (None, b.next()),
            std::cmp::Ordering::Equal => (a.next(), b.next()),
        });
    }
    out
}

/// Whether two entries of the same kind hold different content.
fn content_differs(a: &Node, b: &Node) -> bool {
    match a.kind {
        // The whole-file hash, when both have it: a small file moved into
        // another bundle is the same content under another blob.
        NodeKind::File => {
            a.size != b.size
                || match (a.hash, b.hash) {
                    (Some(x), Some(y)) => x != y,
                    _ => a.content != b.content || a.bundle_offset != b.bundle_offset,
                }
        }
        NodeKind::Symlink => a.target != b.target,
        NodeKind::Chardev | NodeKind::Blockdev => a.rdev != b.rdev,
        NodeKind::Dir | NodeKind::Fifo | NodeKind::Socket => false,
    }
}

/// Whether two entries differ in metadata other than content.
fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.user != b.user
        || a.group != b.group
        || a.mtime_ns != b.mtime_ns
        || a.xattrs != b.xattrs
}

/// What changed from snapshot `a` to snapshot `b`: calls `report` for every
/// changed path in depth-first name order (the contents of an added or
/// removed directory are reported too), and returns the counts. Fails on
/// the first tree that cannot be read, naming its path.
pub fn diff(
    repo: &Repository,
    index: &Index,
    a: &Snapshot,
    b: &Snapshot,
    report: &mut dyn FnMut(Difference<'_>) -> Result<()>,
) -> Result<DiffSummary> {
    repo.keys().require_owner("comparing snapshots")?;
    let mut summary = DiffSummary::default();
    if a.root == b.root {
        return Ok(summary);
    }
    let declared = |s: &Snapshot| {
        s.totals
            .files
            .saturating_add(s.totals.dirs)
            .saturating_mul(2)
            .saturating_add(OTHER_ENTRIES_ALLOWANCE)
    };
    let mut trees = Trees {
        index,
        reader: BlobReader::new(repo),
        entries_left: declared(a).saturating_add(declared(b)),
        read: 0,
    };
    let root = PathBuf::new();
    let items = pair(trees.read(&a.root, &root)?, trees.read(&b.root, &root)?);
    let mut stack = vec![Frame {
        path: root,
        items,
        next: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some((before, after)) = top.items.get_mut(top.next) else {
            stack.pop();
            continue;
        };
        top.next += 1;
        let (before, after) = (before.take(), after.take());
        let name = before
            .as_ref()
            .or(after.as_ref())
            .map(|n| n.name.0.clone())
            .expect("a pair has at least one side");
        let path = top.path.join(OsStr::from_bytes(&name));
        let change = match (&before, &after) {
            (Some(_), None) => Some(Change::Removed),
            (None, Some(_)) => Some(Change::Added),
            (Some(x), Some(y)) if x.kind != y.kind => Some(Change::Type),
            (Some(x), Some(y)) if content_differs(x, y) => Some(Change::Modified),
            (Some(x), Some(y)) if metadata_differs(x, y) => Some(Change::Metadata),
            _ => None,
        };
        if let Some(change) = change {
            count(&mut summary, change, before.as_ref(), after.as_ref());
            report(Difference {
                path: &path,
                change,
                before: before.as_ref(),
                after: after.as_ref(),
            })?;
        }
        let (da, db) = (dir(before.as_ref()), dir(after.as_ref()));
        let same_tree = matches!((da, db), (Some(x), Some(y)) if x.subtree == y.subtree);
        if (da.is_none() && db.is_none()) || same_tree {
            continue;
        }
        if stack.len() > MAX_DEPTH {
            return Err(Error::format(
                format!("snapshot tree {}", shown(&path)),
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let items = pair(trees.entries(da, &path)?, trees.entries(db, &path)?);
        stack.push(Frame {
            path,
            items,
            next: 0,
        });
    }
    summary.trees_read = trees.read;
    Ok(summary)
}

/// The entry when it is a directory.
fn dir(n: Option<&Node>) -> Option<&Node> {
    n.filter(|n| n.kind == NodeKind::Dir)
}

/// Adds one change to the counts.
fn count(s: &mut DiffSummary, change: Change, before: Option<&Node>, after: Option<&Node>) {
    let size = |n: Option<&Node>| n.filter(|n| n.kind == NodeKind::File).map_or(0, |n| n.size);
    match change {
        Change::Added => s.added += 1,
        Change::Removed => s.removed += 1,
        Change::Modified => s.modified += 1,
        Change::Metadata => s.metadata += 1,
        Change::Type => s.type_changed += 1,
    }
    if change != Change::Metadata {
        s.bytes_added = s.bytes_added.saturating_add(size(after));
        s.bytes_removed = s.bytes_removed.saturating_add(size(before));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::Bytes;

    fn node(name: &str, kind: NodeKind) -> Node {
        Node {
            mtime_ns: 1,
            ..Node::bare(name.as_bytes(), kind)
        }
    }

    #[test]
    fn pair_matches_names_in_order_whatever_the_input_order() {
        let a = vec![node("c", NodeKind::File), node("a", NodeKind::File)];
        let b = vec![node("b", NodeKind::File), node("c", NodeKind::File)];
        let names: Vec<(Option<String>, Option<String>)> = pair(a, b)
            .into_iter()
            .map(|(x, y)| {
                let n = |n: Option<Node>| n.map(|n| String::from_utf8(n.name.0).unwrap());
                (n(x), n(y))
            })
            .collect();
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            names,
            vec![(s("a"), None), (None, s("b")), (s("c"), s("c"))]
        );
    }

    #[test]
    fn content_and_metadata_are_told_apart() {
        let a = node("f", NodeKind::File);
        let mut b = a.clone();
        b.mtime_ns = 2;
        assert!(!content_differs(&a, &b));
        assert!(metadata_differs(&a, &b));
        b.size = 3;
        assert!(content_differs(&a, &b));
        let mut l = node("l", NodeKind::Symlink);
        let mut m = l.clone();
        l.target = Some(Bytes(b"x".to_vec()));
        m.target = Some(Bytes(b"y".to_vec()));
        assert!(content_differs(&l, &m));
    }
}
