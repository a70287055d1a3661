//! Depth-first traversal of a snapshot's trees (owner key required).
//!
//! The walk is iterative: an explicit stack holds one frame per directory on
//! the current path, so a deeply nested snapshot costs heap, never thread
//! stack.

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
    /// End the walk here (without an error).
    Stop,
}

/// One directory being listed: its entries and how far the walk got.
struct Frame {
    path: PathBuf,
    /// The directory's own entry, for [`Visit::Leave`] (none for the root).
    dir: Option<Node>,
    nodes: Vec<Node>,
    next: usize,
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
    let root_path = PathBuf::new();
    let nodes = match repo.read_tree(index, &mut reader, root) {
        Ok(t) => t.nodes,
        Err(error) => {
            visit(Visit::Damaged {
                path: &root_path,
                error,
            })?;
            return Ok(());
        }
    };
    let mut stack = vec![Frame {
        path: root_path,
        dir: None,
        nodes,
        next: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(node) = top.nodes.get(top.next) else {
            let done = stack.pop().expect("the loop holds a frame");
            if let Some(dir) = &done.dir
                && visit(Visit::Leave {
                    path: &done.path,
                    node: dir,
                })? == Next::Stop
            {
                return Ok(());
            }
            continue;
        };
        top.next += 1;
        let child = top.path.join(std::ffi::OsStr::from_bytes(&node.name.0));
        match visit(Visit::Entry { path: &child, node })? {
            Next::Stop => return Ok(()),
            Next::Skip => continue,
            Next::Descend if node.kind != NodeKind::Dir => continue,
            Next::Descend => {}
        }
        let dir = node.clone();
        // The parent frame is `stack.len() - 1` levels deep; its child one more.
        let depth = stack.len();
        let nodes = match enter(repo, index, &mut reader, &dir, depth) {
            Ok(nodes) => nodes,
            Err(error) => {
                let stop = visit(Visit::Damaged {
                    path: &child,
                    error,
                })? == Next::Stop
                    || visit(Visit::Leave {
                        path: &child,
                        node: &dir,
                    })? == Next::Stop;
                if stop {
                    return Ok(());
                }
                continue;
            }
        };
        stack.push(Frame {
            path: child,
            dir: Some(dir),
            nodes,
            next: 0,
        });
    }
    Ok(())
}

/// Reads the listing of directory `dir`, found `depth` levels down.
fn enter(
    repo: &Repository,
    index: &Index,
    reader: &mut BlobReader<'_>,
    dir: &Node,
    depth: usize,
) -> Result<Vec<Node>> {
    let Some(sub) = &dir.subtree else {
        return Err(Error::format(
            format!("directory {:?}", dir.name),
            "directory entry without a subtree",
        ));
    };
    if depth > MAX_DEPTH {
        return Err(Error::format(
            format!("tree {sub}"),
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(repo.read_tree(index, reader, sub)?.nodes)
}
