//! The directories on the walk's current path, as open handles.
//!
//! A directory is created only when something inside it is restored (so
//! `--include` does not leave empty parents behind), relative to its
//! parent's handle. Only the deepest [`KEEP_OPEN`] levels stay open, so a
//! snapshot nested 4096 deep does not run out of file descriptors; a level
//! needed again is reopened beneath the target without following any
//! symlink and must still be the very directory restore created.

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

struct Level {
    rel: PathBuf,
    node: Option<Node>,
    state: State,
}

/// The stack of directories from the target down to the walk's position.
pub struct DirStack {
    levels: Vec<Level>,
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
                node: None,
                state: State::Open(target),
            }],
        }
    }

    /// Enters directory `node` at `rel` (created later, when needed).
    pub fn push(&mut self, rel: &Path, node: &Node) {
        self.levels.push(Level {
            rel: rel.to_owned(),
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
        let dir = parent.ensure_child_dir(name)?;
        created.push(Created {
            rel: level.rel.clone(),
            id: dir.id(),
            node: level.node.clone().expect("only the target has no entry"),
        });
        self.open(i, Arc::new(dir));
        Ok(())
    }

    /// Reopens level `i` beneath the target.
    fn reopen(&mut self, i: usize) -> io::Result<()> {
        let State::Closed(id) = self.levels[i].state else {
            return Ok(());
        };
        let State::Open(root) = &self.levels[0].state else {
            unreachable!("the target stays open");
        };
        let dir = root.reopen(&self.levels[i].rel, id)?;
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
