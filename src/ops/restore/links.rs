//! Hard-link groups: the first restored member of a group is restored in
//! full; the others become hard links to it, made last, once it exists.
//!
//! A member is linked only when its entry agrees with the first one (same
//! kind, and for a file the same size and hash; for a symlink the same
//! target; for a device the same number). Otherwise a crafted group could
//! turn an entry the snapshot declares as a regular file into a link to a
//! symlink pointing anywhere (issue 11, Low), and `--verify` would pass; an
//! honest backup of a file that changed between two reads disagrees too.
//! Such a member is restored on its own, as declared.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::fsops::FileId;
use crate::format::id::Id;
use crate::format::tree::{Bytes, Node, NodeKind};

/// Where a restored entry lives: its parent directory and its name.
#[derive(Clone)]
pub struct Place {
    /// Path relative to the snapshot root.
    pub rel: PathBuf,
    /// The parent directory's path relative to the snapshot root.
    pub parent: PathBuf,
    /// The parent directory's inode.
    pub parent_id: FileId,
    /// The entry's name.
    pub name: OsString,
}

impl Place {
    /// The place of `rel` in the directory `parent`.
    pub fn new(rel: &Path, parent: &Path, parent_id: FileId) -> Self {
        Place {
            rel: rel.to_owned(),
            parent: parent.to_owned(),
            parent_id,
            name: rel.file_name().expect("entries have a name").to_owned(),
        }
    }
}

/// A later member of a group, linked in the final pass.
pub struct Pending {
    /// Where the link goes.
    pub at: Place,
    /// The group.
    pub group: String,
}

/// What members of one group must share: kind, size, whole-file hash
/// (which stands for the content, verified when the first is written),
/// symlink target, device number.
pub type Key = (NodeKind, u64, Option<Id>, Option<Bytes>, Option<u64>);

pub fn key(n: &Node) -> Key {
    (n.kind, n.size, n.hash, n.target.clone(), n.rdev)
}

/// What is known of each group's first member.
struct First {
    key: Key,
    at: Place,
}

/// The groups met so far and the links to make.
#[derive(Default)]
pub struct Links {
    first: HashMap<String, First>,
    /// Later members, in walk order.
    pub pending: Vec<Pending>,
}

/// What to do with an entry that has a hard-link group.
pub enum Role {
    /// The first member: restore it in full.
    First,
    /// A later member, queued as a link.
    Linked,
    /// Disagrees with the group's first member: restore it on its own.
    Disagrees,
}

impl Links {
    /// Files `node`, restored at `at`, into its group.
    pub fn classify(&mut self, group: &str, node: &Node, at: Place) -> Role {
        match self.first.get(group) {
            None => {
                self.first
                    .insert(group.to_owned(), First { key: key(node), at });
                Role::First
            }
            Some(f) if f.key == key(node) => {
                self.pending.push(Pending {
                    at,
                    group: group.to_owned(),
                });
                Role::Linked
            }
            Some(_) => Role::Disagrees,
        }
    }

    /// Where the first member of `group` was restored.
    pub fn first(&self, group: &str) -> &Place {
        &self.first[group].at
    }
}
