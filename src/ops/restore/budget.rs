//! The snapshot header's totals as a budget for what a restore may write.
//!
//! Trees are content-addressed, so one small tree can name the same subtree
//! twice, and each of those twice more: 43 KB of trees that restore 2^depth
//! entries and fill the drill host's disk (issue 11, "Bombs from tiny
//! inputs"). The header declares how many files and directories the
//! snapshot holds and how many bytes of content; an honest backup counts
//! every entry it writes into the trees, repeated subtrees included. A
//! restore counts every entry its walk meets against those totals and stops,
//! reporting damage, the moment the trees hold more than the header says.
//! Files are never written past their recorded size (`files.rs`), so the
//! bytes a restore writes are bounded by the header too.
//!
//! Other entries (symlinks, fifos, devices) are not counted in headers; they
//! are bounded by the directories: each directory's listing is one tree blob
//! of bounded size.

use crate::format::snapshot::Totals;
use crate::format::tree::{Node, NodeKind};

/// What is left of the header's totals.
#[derive(Debug, Clone)]
pub struct Budget {
    files: u64,
    dirs: u64,
    bytes: u64,
    declared: (u64, u64, u64),
}

impl Budget {
    /// The budget a header declares.
    pub fn new(totals: &Totals) -> Self {
        Budget {
            files: totals.files,
            dirs: totals.dirs,
            bytes: totals.bytes,
            declared: (totals.files, totals.dirs, totals.bytes),
        }
    }

    /// Counts one entry the walk met; `Err` says what overran.
    pub fn spend(&mut self, node: &Node) -> Result<(), Overrun> {
        let (f, d, b) = self.declared;
        match node.kind {
            NodeKind::Dir => {
                self.dirs = self.dirs.checked_sub(1).ok_or(Overrun::Dirs(d))?;
            }
            NodeKind::File => {
                self.files = self.files.checked_sub(1).ok_or(Overrun::Files(f))?;
                self.bytes = self.bytes.checked_sub(node.size).ok_or(Overrun::Bytes(b))?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// What a snapshot's trees hold beyond what its header declares (the
/// declared count in each variant): damage, or a crafted snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overrun {
    /// More directories.
    #[error("the snapshot's trees hold more than the {0} directories its header declares")]
    Dirs(u64),
    /// More files.
    #[error("the snapshot's trees hold more than the {0} files its header declares")]
    Files(u64),
    /// More bytes of files.
    #[error("the snapshot's files add up to more than the {0} bytes its header declares")]
    Bytes(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: NodeKind, size: u64) -> Node {
        Node {
            size,
            ..Node::bare(b"x", kind)
        }
    }

    #[test]
    fn entries_beyond_the_header_are_refused() {
        let mut b = Budget::new(&Totals {
            files: 2,
            dirs: 1,
            bytes: 10,
            ..Default::default()
        });
        b.spend(&node(NodeKind::Dir, 0)).unwrap();
        b.spend(&node(NodeKind::Symlink, 0)).unwrap();
        b.spend(&node(NodeKind::File, 6)).unwrap();
        let e = b.spend(&node(NodeKind::File, 5)).unwrap_err();
        assert_eq!(e, Overrun::Bytes(10));
        assert!(e.to_string().contains("10 bytes"), "{e}");
        let e = b.spend(&node(NodeKind::Dir, 0)).unwrap_err();
        assert!(e.to_string().contains("1 directories"), "{e}");
        let mut b = Budget::new(&Totals::default());
        assert_eq!(b.spend(&node(NodeKind::File, 0)), Err(Overrun::Files(0)));
    }
}
