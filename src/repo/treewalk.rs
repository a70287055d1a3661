//! The one traversal of a snapshot's trees (owner key required), used by
//! restore, `dump`, `ls`, `check`, `prune` and `copy`.
//!
//! The walk is iterative: an explicit stack holds one frame per directory on
//! the current path, so a deeply nested snapshot costs heap, never thread
//! stack. Two bounds make a small crafted tree unable to cost much:
//! - [`Walker::each_tree_once`] (check, prune, copy: what matters is which
//!   blobs are reachable) walks a tree that several directories share only
//!   the first time, so a tree reusing its subtrees costs its own size;
//! - a [`Budget`] (ls: what matters is every path) counts every entry
//!   met, repeated subtrees included, against the totals the snapshot header
//!   declares, and a tree is refused while it is parsed once it holds more
//!   entries than are left: 43 KB of trees naming one subtree twice per
//!   level cannot expand into 2^depth entries, and one small blob cannot
//!   inflate into millions.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::id::{BlobId, TreeId};
use crate::format::index::Index;
use crate::format::snapshot::{Snapshot, Totals};
use crate::format::tree::{Node, NodeKind};
use crate::repo::{BlobReader, Repository};

/// Deepest nesting followed; deeper trees are reported as damaged.
pub const MAX_DEPTH: usize = 4096;

/// Entries other than files and directories (symlinks, fifos, devices,
/// sockets) that a budget allows beyond one per file or directory: headers
/// do not count them.
pub const OTHER_ENTRIES_ALLOWANCE: u64 = 1 << 16;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on (into a directory's contents, if it is one).
    Descend,
    /// Skip this directory's contents.
    Skip,
    /// End the walk here (without an error).
    Stop,
}

/// What is left of the totals snapshot headers declare: the walk may meet
/// no more files, directories, bytes of file content and other entries.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    files: u64,
    dirs: u64,
    others: u64,
    bytes: u64,
    declared: (u64, u64, u64),
}

impl Budget {
    /// The budget a header declares.
    pub fn of(totals: &Totals) -> Self {
        let mut b = Budget::default();
        b.add(totals);
        b
    }

    /// Adds another header's totals (a walk over several snapshots).
    pub fn add(&mut self, totals: &Totals) {
        self.files = self.files.saturating_add(totals.files);
        self.dirs = self.dirs.saturating_add(totals.dirs);
        self.bytes = self.bytes.saturating_add(totals.bytes);
        self.others = self
            .others
            .saturating_add(totals.files)
            .saturating_add(totals.dirs)
            .saturating_add(OTHER_ENTRIES_ALLOWANCE);
        self.declared = (self.files, self.dirs, self.bytes);
    }

    /// Entries of any kind still allowed.
    fn entries_left(&self) -> u64 {
        self.files
            .saturating_add(self.dirs)
            .saturating_add(self.others)
    }

    /// Counts one entry; `Err` says what overran.
    fn spend(&mut self, node: &Node) -> std::result::Result<(), Overrun> {
        let (f, d, b) = self.declared;
        match node.kind {
            NodeKind::Dir => {
                self.dirs = self.dirs.checked_sub(1).ok_or(Overrun::Dirs(d))?;
            }
            NodeKind::File => {
                self.files = self.files.checked_sub(1).ok_or(Overrun::Files(f))?;
                self.bytes = self.bytes.checked_sub(node.size).ok_or(Overrun::Bytes(b))?;
            }
            _ => {
                self.others = self
                    .others
                    .checked_sub(1)
                    .ok_or(Overrun::Others(OTHER_ENTRIES_ALLOWANCE))?;
            }
        }
        Ok(())
    }
}

/// What the trees hold beyond what their snapshot headers declare (the
/// declared count in each variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overrun {
    /// More directories.
    #[error("the trees hold more directories than the {0} its header declares")]
    Dirs(u64),
    /// More files.
    #[error("the trees hold more files than the {0} its header declares")]
    Files(u64),
    /// More bytes of files.
    #[error("the trees hold more bytes of files than the {0} its header declares")]
    Bytes(u64),
    /// More other entries than the allowance beyond one per file and
    /// directory.
    #[error(
        "the trees hold more symlinks, fifos and devices than the {0} allowed beyond one per \
         file and directory its header declares"
    )]
    Others(u64),
}

/// One directory being listed: its entries and how far the walk got.
struct Frame {
    path: PathBuf,
    /// The directory's own entry, for [`Visit::Leave`] (none for the root).
    dir: Option<Node>,
    nodes: Vec<Node>,
    next: usize,
}

/// Walks snapshot trees; see the module docs for its bounds.
pub struct Walker<'r> {
    repo: &'r Repository,
    index: &'r Index,
    reader: BlobReader<'r>,
    /// With [`Walker::each_tree_once`]: the trees already walked.
    seen: Option<HashSet<TreeId>>,
    budget: Option<Budget>,
}

impl<'r> Walker<'r> {
    /// A walker reading trees of `repo` through `index` (owner key required).
    pub fn new(repo: &'r Repository, index: &'r Index) -> Result<Self> {
        repo.keys().require_owner("reading a snapshot's files")?;
        Ok(Walker {
            repo,
            index,
            reader: BlobReader::new(repo),
            seen: None,
            budget: None,
        })
    }

    /// Walks each distinct tree once, over every call to [`Walker::walk`]:
    /// a directory whose tree was already walked is reported as an entry
    /// (and left), but its contents are not walked again.
    pub fn each_tree_once(mut self) -> Self {
        self.seen = Some(HashSet::new());
        self
    }

    /// Counts every entry against `budget`; once it is spent the walk reports
    /// the overrun as damage and stops.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The trees walked so far (with [`Walker::each_tree_once`]).
    pub fn trees_seen(&self) -> usize {
        self.seen.as_ref().map_or(0, HashSet::len)
    }

    /// Walks the tree rooted at `root`, calling `visit` for everything.
    pub fn walk(
        &mut self,
        root: &TreeId,
        visit: &mut dyn FnMut(Visit<'_>) -> Result<Next>,
    ) -> Result<()> {
        let root_path = PathBuf::new();
        if self.seen.as_ref().is_some_and(|s| s.contains(root)) {
            return Ok(());
        }
        let nodes = match self.read(root) {
            Ok(nodes) => nodes,
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
        loop {
            // The top frame is `depth - 1` levels deep; a child one more.
            let depth = stack.len();
            let Some(top) = stack.last_mut() else { break };
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
            if let Some(budget) = &mut self.budget
                && let Err(why) = budget.spend(node)
            {
                visit(Visit::Damaged {
                    path: &child,
                    error: Error::format("snapshot", why.to_string()),
                })?;
                return Ok(());
            }
            match visit(Visit::Entry { path: &child, node })? {
                Next::Stop => return Ok(()),
                Next::Skip => continue,
                Next::Descend if node.kind != NodeKind::Dir => continue,
                Next::Descend => {}
            }
            let dir = node.clone();
            let entered = self.enter(&dir, depth);
            let nodes = match entered {
                Ok(Some(nodes)) => nodes,
                // Walked before (each_tree_once): only the Leave.
                Ok(None) => {
                    if visit(Visit::Leave {
                        path: &child,
                        node: &dir,
                    })? == Next::Stop
                    {
                        return Ok(());
                    }
                    continue;
                }
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

    /// Reads the listing of directory `dir`, found `depth` levels down;
    /// `None` when its tree was walked before.
    fn enter(&mut self, dir: &Node, depth: usize) -> Result<Option<Vec<Node>>> {
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
        if self.seen.as_ref().is_some_and(|s| s.contains(sub)) {
            return Ok(None);
        }
        self.read(sub).map(Some)
    }

    /// Reads and parses one tree, within what the budget leaves.
    fn read(&mut self, id: &TreeId) -> Result<Vec<Node>> {
        let max_nodes = self.budget.as_ref().map_or(usize::MAX, |b| {
            b.entries_left().min(usize::MAX as u64) as usize
        });
        let tree = self.reader.read_tree(id, self.index, max_nodes)?;
        if let Some(seen) = &mut self.seen {
            seen.insert(*id);
        }
        Ok(tree.nodes)
    }

    /// The repository being walked.
    pub fn repo(&self) -> &'r Repository {
        self.repo
    }
}

/// Walks the tree rooted at `root`, calling `visit` for everything (every
/// path, repeated subtrees included, unbounded: restore bounds what it
/// writes itself).
pub fn walk(
    repo: &Repository,
    index: &Index,
    root: &TreeId,
    visit: &mut dyn FnMut(Visit<'_>) -> Result<Next>,
) -> Result<()> {
    Walker::new(repo, index)?.walk(root, visit)
}

/// Every tree and data blob reachable from `snapshots`, each tree read
/// once, within the totals their headers declare. Fails on the first tree
/// that cannot be read, naming the snapshot path: callers (prune, copy)
/// must know everything a snapshot needs.
pub fn reachable_blobs(
    repo: &Repository,
    index: &Index,
    snapshots: &[&Snapshot],
) -> Result<HashSet<BlobId>> {
    let mut budget = Budget::default();
    snapshots.iter().for_each(|s| budget.add(&s.totals));
    let mut walker = Walker::new(repo, index)?
        .each_tree_once()
        .with_budget(budget);
    let mut blobs = HashSet::new();
    for snap in snapshots {
        if let Some(e) = walk_into(&mut walker, snap, &mut blobs)? {
            return Err(e);
        }
    }
    Ok(blobs)
}

/// What [`reachable_blobs_tolerant`] found.
#[derive(Debug, Default)]
pub struct Reachable {
    /// Every blob the trusted snapshots need (all their trees were read).
    pub needed: HashSet<BlobId>,
    /// Blobs the untrusted headers name (of trees that could be read; some
    /// may be missing): to keep where they verifiably exist, never a reason
    /// to fail.
    pub wanted: HashSet<BlobId>,
    /// The untrusted headers with a tree that could not be read.
    pub unreadable: Vec<(crate::format::id::SnapshotId, Error)>,
}

/// [`reachable_blobs`] of `trusted`, then whatever the `untrusted` headers
/// reach that can be read: a tree of an untrusted header (anyone can plant
/// one that names a tree that does not exist) that cannot be read is
/// returned with its header, not fatal. The untrusted headers are walked
/// after the trusted ones and with their own budget, so they can neither
/// cut short nor stretch what a trusted snapshot's walk reads.
pub fn reachable_blobs_tolerant(
    repo: &Repository,
    index: &Index,
    trusted: &[&Snapshot],
    untrusted: &[(crate::format::id::SnapshotId, &Snapshot)],
) -> Result<Reachable> {
    let mut out = Reachable {
        needed: reachable_blobs(repo, index, trusted)?,
        ..Default::default()
    };
    if untrusted.is_empty() {
        return Ok(out);
    }
    let mut budget = Budget::default();
    untrusted.iter().for_each(|(_, s)| budget.add(&s.totals));
    let mut walker = Walker::new(repo, index)?
        .each_tree_once()
        .with_budget(budget);
    for (id, snap) in untrusted {
        match walk_into(&mut walker, snap, &mut out.wanted) {
            Ok(None) => {}
            // Storage and transport failures say nothing about the header.
            Err(e @ (Error::Storage(_) | Error::Io { .. } | Error::Cancelled { .. })) => {
                return Err(e);
            }
            Ok(Some(e)) | Err(e) => out.unreadable.push((*id, e)),
        }
    }
    Ok(out)
}

/// Adds what `snap` reaches to `blobs`; returns the first tree that could
/// not be read.
fn walk_into(
    walker: &mut Walker<'_>,
    snap: &Snapshot,
    blobs: &mut HashSet<BlobId>,
) -> Result<Option<Error>> {
    let mut failed = None;
    blobs.insert(snap.root.blob());
    walker.walk(&snap.root, &mut |v| match v {
        Visit::Entry { node, .. } => {
            blobs.extend(node.content.iter().copied());
            blobs.extend(node.content_lists.iter().copied());
            blobs.extend(node.subtree.map(|t| t.blob()));
            Ok(Next::Descend)
        }
        Visit::Leave { .. } => Ok(Next::Descend),
        Visit::Damaged { path, error } => {
            failed = Some(Error::format(
                format!(
                    "snapshot tree /{}",
                    crate::format::escape::escape(&path.display().to_string())
                ),
                error.to_string(),
            ));
            Ok(Next::Stop)
        }
    })?;
    Ok(failed)
}
