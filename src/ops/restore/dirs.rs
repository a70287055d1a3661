//! The directories on the walk's current path, as open handles.
//!
//! A directory is created only when something inside it is restored (so
//! `--include` does not leave empty parents behind), relative to its
//! parent's handle. Only the deepest [`KEEP_OPEN`] levels stay open, so a
//! snapshot nested 4096 deep does not run out of file descriptors; a level
//! needed again is reopened beneath the target without following any
//! symlink and must still be the very directory restore created.
//!
//! A directory restore creates inside one it did not create is made under a
//! temporary name ([`Dir::ensure_child_dir_staged`]) and named at the end
//! ([`DirStack::take_staged`]): until then, nothing restored beneath it is
//! under its final path.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fsops::{Dir, FileId};
use crate::format::tree::Node;

/// Directory levels kept open below the target.
pub const KEEP_OPEN: usize = 16;

/// A directory restore created (or found in place), for the final pass.
pub struct Created {
    /// Path relative to the snapshot root.
    pub rel: PathBuf,
    /// The inode, checked again when the final pass reopens it.
    pub id: FileId,
    /// Its entry (metadata to apply last).
    pub node: Node,
}

enum State {
    /// Not created yet.
    Pending,
    /// Created and held open.
    Open(Arc<Dir>),
    /// Created; its handle was let go.
    Closed(FileId),
    /// Could not be created: nothing beneath it is restored.
    Failed,
}

/// A directory made under a temporary name, to be named at the end.
pub struct StagedDir {
    /// Its path relative to the snapshot root (where it belongs).
    pub rel: PathBuf,
    /// Its parent's path beneath the target (a directory restore did not
    /// create, so never beneath a temporary name).
    pub parent: PathBuf,
    /// The parent's inode, checked when it is reopened.
    pub parent_id: FileId,
    /// The temporary name it has in its parent.
    pub tmp: OsString,
    /// The inode, checked before it is named.
    pub id: FileId,
}

struct Level {
    rel: PathBuf,
    /// Where it is beneath the target now (under a staged ancestor's
    /// temporary name until the end).
    disk: PathBuf,
    /// Made out of sight ([`Dir::hidden`]): so it is again when reopened.
    hidden: bool,
    node: Option<Node>,
    state: State,
}

/// The stack of directories from the target down to the walk's position.
pub struct DirStack {
    levels: Vec<Level>,
    staged: Vec<StagedDir>,
}

/// A directory that could not be created or reopened.
pub struct DirError {
    /// Its path relative to the snapshot root.
    pub rel: PathBuf,
    /// Why.
    pub error: io::Error,
}

impl DirStack {
    /// A stack holding only the target.
    pub fn new(target: Arc<Dir>) -> Self {
        DirStack {
            levels: vec![Level {
                rel: PathBuf::new(),
                disk: PathBuf::new(),
                hidden: false,
                node: None,
                state: State::Open(target),
            }],
            staged: Vec::new(),
        }
    }

    /// Enters directory `node` at `rel` (created later, when needed).
    pub fn push(&mut self, rel: &Path, node: &Node) {
        self.levels.push(Level {
            rel: rel.to_owned(),
            disk: PathBuf::new(),
            hidden: false,
            node: Some(node.clone()),
            state: State::Pending,
        });
    }

    /// Leaves the deepest directory.
    pub fn pop(&mut self) {
        if self.levels.len() > 1 {
            self.levels.pop();
        }
    }

    /// Whether the deepest directory (or one above it) could not be made.
    pub fn failed(&self) -> bool {
        self.levels.iter().any(|l| matches!(l.state, State::Failed))
    }

    /// Creates every pending directory on the path and returns the deepest
    /// one's handle and path. Directories created are appended to `created`.
    /// On failure the directory and everything below it are marked failed.
    pub fn materialize(
        &mut self,
        created: &mut Vec<Created>,
    ) -> Result<(Arc<Dir>, PathBuf), DirError> {
        let top = self.levels.len() - 1;
        for i in 0..=top {
            let result = match self.levels[i].state {
                State::Pending => self.create(i, created),
                State::Closed(_) if i == top => self.reopen(i),
                State::Failed => {
                    return Err(DirError {
                        rel: self.levels[i].rel.clone(),
                        error: io::Error::other("its directory could not be created"),
                    });
                }
                _ => Ok(()),
            };
            if let Err(error) = result {
                for l in &mut self.levels[i..] {
                    l.state = State::Failed;
                }
                return Err(DirError {
                    rel: self.levels[i].rel.clone(),
                    error,
                });
            }
        }
        match &self.levels[top].state {
            State::Open(d) => Ok((d.clone(), self.levels[top].rel.clone())),
            _ => unreachable!("materialize leaves the deepest level open"),
        }
    }

    /// Creates level `i` inside level `i - 1`.
    fn create(&mut self, i: usize, created: &mut Vec<Created>) -> io::Result<()> {
        let parent = match &self.levels[i - 1].state {
            State::Open(d) => d.clone(),
            State::Closed(_) => {
                self.reopen(i - 1)?;
                return self.create(i, created);
            }
            State::Pending | State::Failed => unreachable!("parents are made first"),
        };
        let level = &self.levels[i];
        let name = level.rel.file_name().expect("directories have a name");
        let (dir, tmp) = parent.ensure_child_dir_staged(name)?;
        created.push(Created {
            rel: level.rel.clone(),
            id: dir.id(),
            node: level.node.clone().expect("only the target has no entry"),
        });
        let parent_disk = self.levels[i - 1].disk.clone();
        self.levels[i].disk = parent_disk.join(tmp.as_deref().unwrap_or(name));
        self.levels[i].hidden = dir.hidden();
        if let Some(tmp) = tmp {
            self.staged.push(StagedDir {
                rel: self.levels[i].rel.clone(),
                parent: parent_disk,
                parent_id: parent.id(),
                tmp,
                id: dir.id(),
            });
        }
        self.open(i, Arc::new(dir));
        Ok(())
    }

    /// The directories made under a temporary name so far, in the order
    /// they were made (none is beneath another), to be named.
    pub fn take_staged(&mut self) -> Vec<StagedDir> {
        std::mem::take(&mut self.staged)
    }

    /// Reopens level `i` beneath the target.
    fn reopen(&mut self, i: usize) -> io::Result<()> {
        let State::Closed(id) = self.levels[i].state else {
            return Ok(());
        };
        let State::Open(root) = &self.levels[0].state else {
            unreachable!("the target stays open");
        };
        let mut dir = root.reopen(&self.levels[i].disk, id)?;
        // Still beneath its staged ancestor (the very inode restore made):
        // what is made in it stays out of sight, never staged a second
        // time under a name the naming at the end would not know.
        if self.levels[i].hidden {
            dir.keep_hidden();
        }
        self.open(i, Arc::new(dir));
        Ok(())
    }

    /// Holds level `i` open, letting go of the level [`KEEP_OPEN`] above.
    fn open(&mut self, i: usize, dir: Arc<Dir>) {
        self.levels[i].state = State::Open(dir);
        if i > KEEP_OPEN
            && let State::Open(d) = &self.levels[i - KEEP_OPEN].state
        {
            self.levels[i - KEEP_OPEN].state = State::Closed(d.id());
        }
    }
}
