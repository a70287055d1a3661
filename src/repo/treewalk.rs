//! Depth-first traversal of a snapshot's trees (owner key required).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::index::Index;
use crate::format::tree::{Node, NodeKind};
use crate::repo::{BlobReader, Repository};

/// Deepest nesting followed; deeper trees are reported as damaged.
pub const MAX_DEPTH: usize = 4096;

/// What the traversal reports, in depth-first name order.
pub enum Visit<'a> {
    /// An entry; for a directory its contents follow, then [`Visit::Leave`].
    Entry {
        /// Path relative to the snapshot root.
        path: &'a Path,
        /// The entry.
        node: &'a Node,
    },
    /// A directory's contents are done.
    Leave {
        /// The directory's relative path.
        path: &'a Path,
        /// The directory.
        node: &'a Node,
    },
    /// A directory's tree could not be read; its contents are skipped.
    Damaged {
        /// The directory's relative path (empty for the root).
        path: &'a Path,
        /// Why.
        error: Error,
    },
}

/// What the visitor wants next.
#[derive(PartialEq, Eq)]
pub enum Next {
    /// Go on (into a directory's contents, if it is one).
    Descend,
    /// Skip this directory's contents.
    Skip,
}

/// Walks the tree rooted at `root`, calling `visit` for everything.
pub fn walk(
    repo: &Repository,
    index: &Index,
    root: &Id,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<Next>,
) -> Result<()> {
    repo.keys().require_owner("reading a snapshot's files")?;
    let mut reader = BlobReader::new(repo);
    walk_dir(repo, index, &mut reader, root, &PathBuf::new(), visit, 0)
}

fn walk_dir(
    repo: &Repository,
    index: &Index,
    reader: &mut BlobReader<'_>,
    tree_id: &Id,
    path: &Path,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<Next>,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        let error = Error::format(
            format!("tree {tree_id}"),
            format!("nested deeper than {MAX_DEPTH} levels"),
        );
        visit(Visit::Damaged { path, error })?;
        return Ok(());
    }
    let tree = match repo.read_tree(index, reader, tree_id) {
        Ok(t) => t,
        Err(error) => {
            visit(Visit::Damaged { path, error })?;
            return Ok(());
        }
    };
    for node in &tree.nodes {
        let child = path.join(std::ffi::OsStr::from_bytes(&node.name.0));
        let next = visit(Visit::Entry { path: &child, node })?;
        if node.kind == NodeKind::Dir && next == Next::Descend {
            match &node.subtree {
                Some(sub) => walk_dir(repo, index, reader, sub, &child, visit, depth + 1)?,
                None => visit(Visit::Damaged {
                    path: &child,
                    error: Error::format(
                        format!("tree {tree_id}"),
                        "directory entry without a subtree",
                    ),
                })
                .map(|_| ())?,
            }
            visit(Visit::Leave { path: &child, node })?;
        }
    }
    Ok(())
}
