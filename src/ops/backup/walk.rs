//! Walks the source paths depth-first in name order and turns what it finds
//! into events for the tree assembler, handing regular files to the readers.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, bounded};
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::cache::FileCache;
use super::pipeline::{BlobSink, Failure, RawBlob};
use super::squeeze;
use crate::error::{Error, Result};
use crate::format::chunk::{self, Block};
use crate::format::id::{BlobId, Id};
use crate::format::pack::BlobKind;
use crate::format::salt;
use crate::format::snapshot::InputError;
use crate::format::tree::{LIST_IDS, Node, NodeKind, list_bytes};
use crate::repo::Repository;
use crate::source::command::{CommandFailed, CommandSource, Running};
use crate::source::meta::{self, Names};

/// Deepest directory nesting the walker descends into.
const MAX_DEPTH: usize = 2048;

/// A file's content as stored.
pub struct FileData {
    /// Content blob ids (none when they are in `lists`).
    pub content: Vec<BlobId>,
    /// The content lists holding the blob ids of a file of more than
    /// [`crate::format::tree::LIST_IDS`] blobs.
    pub lists: Vec<BlobId>,
    /// Plain BLAKE3 of the content.
    pub hash: Id,
    /// Bytes read.
    pub size: u64,
    /// Certificates found, for keystore files.
    pub certificates: Vec<crate::format::snapshot::CertInfo>,
    /// For command output: why it looks already compressed, if it does.
    pub looks_compressed: Option<&'static str>,
}

/// What the walker saw of a file before reading it (for the cache).
#[derive(Clone, Copy)]
pub struct Stamp {
    pub size: u64,
    pub ctime_ns: i64,
    pub ino: u64,
    /// Whether the file cache may remember it (not for command output).
    pub cacheable: bool,
    /// The content hash the last backup recorded for this path, if any.
    pub previous: Option<Id>,
}

/// A file's content: known from the cache, or being read.
pub enum Pending {
    Ready(FileData),
    Waiting(Receiver<Result<FileData, ReadError>>),
}

/// What the walker tells the assembler, in depth-first order.
// Events are moved through one bounded queue; boxing a file's would cost an
// allocation per file for a queue of a few thousand slots.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A directory starts; its entries follow until the matching `Leave`.
    Enter(Node),
    /// The current directory is complete.
    Leave,
    /// A non-file entry (symlink, device, fifo, socket).
    Other(Node),
    /// A regular file.
    File {
        path: PathBuf,
        node: Node,
        stamp: Stamp,
        data: Pending,
    },
}

/// A file for a reader thread.
pub struct FileJob {
    source: JobSource,
    reply: Sender<Result<FileData, ReadError>>,
}

/// Why a file or a command's output could not be stored: an input error,
/// reported and left out of the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The command could not be started.
    #[error("cannot start the command: {0}")]
    Start(std::io::Error),
    /// The command failed after its output was read.
    #[error(transparent)]
    Command(#[from] CommandFailed),
    /// Reading the command's output failed, so it was killed.
    #[error("{why}{}", stderr_suffix(stderr))]
    Aborted {
        /// Why reading stopped.
        why: Box<ReadError>,
        /// The end of the command's standard error.
        stderr: String,
    },
    /// The file could not be opened.
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    /// The opened file could not be looked at.
    #[error("cannot stat: {0}")]
    Stat(std::io::Error),
    /// The path now leads to something other than a regular file.
    #[error("is no longer a regular file")]
    NotRegular,
    /// The path now leads to another file than the one listed.
    #[error("was replaced while the backup ran (its path now leads to another file)")]
    Replaced,
    /// Reading the content failed.
    #[error("read error: {0}")]
    Read(std::io::Error),
    /// The backup was cancelled while the content was stored.
    #[error("backup cancelled")]
    Cancelled,
}

/// `; command stderr: TAIL`, or nothing when the command said nothing.
fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; command stderr: {stderr}")
    }
}

/// Where a file's content comes from.
enum JobSource {
    /// A regular file on disk, and the device and inode the walker found
    /// there (the file read must be that one).
    Path(PathBuf, (u64, u64)),
    /// A command's standard output.
    Command(CommandSource),
}

/// The source paths arranged as a tree, so `/etc` and `/opt/app` share `/`.
#[derive(Default)]
struct Layout {
    children: BTreeMap<Vec<u8>, Layout>,
    is_source: bool,
    /// A command source stored at this path (index into the commands).
    command: Option<usize>,
}

impl Layout {
    fn has_command(&self) -> bool {
        let mut todo = vec![self];
        while let Some(l) = todo.pop() {
            if l.command.is_some() {
                return true;
            }
            todo.extend(l.children.values());
        }
        false
    }
}

/// Walks sources and produces events.
pub struct Walker<'a> {
    layout: Layout,
    commands: &'a [CommandSource],
    name_excludes: GlobSet,
    path_excludes: GlobSet,
    cache: Option<&'a FileCache>,
    /// Where a cached file's blobs are looked up (and relied on).
    sink: &'a BlobSink<'a>,
    errors: &'a Mutex<Vec<InputError>>,
    /// Directories holding an entry of one of these names are left out.
    exclude_if_present: Vec<OsString>,
    /// Stay on the file system of each source path.
    one_file_system: bool,
}

struct WalkState {
    events: Sender<Event>,
    jobs: Sender<FileJob>,
    names: Names,
    links: HashMap<(u64, u64), ()>,
    /// The device of the source path being walked (`--one-file-system`).
    source_dev: u64,
}

/// A directory being walked: where it is and what is left of it.
struct Frame<'l> {
    dir: PathBuf,
    /// Whether finishing it closes a directory the events entered (all
    /// but the root).
    leave: bool,
    rest: Rest<'l>,
}

/// What is left to visit in a [`Frame`].
enum Rest<'l> {
    /// Children of the layout above the source paths.
    Layout(std::collections::btree_map::Iter<'l, Vec<u8>, Layout>),
    /// Entries of a listed directory, in name order, each `depth` levels
    /// below its source path, with what examining each through the
    /// directory's handle found (see [`Walker::listing`]).
    Entries {
        entries: std::vec::IntoIter<(OsString, std::io::Result<fs::Metadata>)>,
        depth: usize,
    },
}

/// What visiting one entry asks of the walk.
enum Step<'l> {
    /// Go on with the current directory.
    Next,
    /// Walk this directory first (its `Enter` was sent).
    Descend(Frame<'l>),
    /// The current directory is done.
    Finished,
}

impl<'a> Walker<'a> {
    /// Prepares a walk over absolute `paths`.
    pub fn new(
        paths: &[PathBuf],
        commands: &'a [CommandSource],
        excludes: &[String],
        cache: Option<&'a FileCache>,
        sink: &'a BlobSink<'a>,
        errors: &'a Mutex<Vec<InputError>>,
    ) -> Result<Self> {
        let mut layout = Layout::default();
        for p in paths {
            let mut at = &mut layout;
            for c in p.components().skip(1) {
                if !matches!(c, std::path::Component::Normal(_)) {
                    return Err(Error::InvalidInput(format!(
                        "{}: source paths must be absolute and free of `.` and `..`",
                        p.display()
                    )));
                }
                if at.is_source {
                    break;
                }
                at = at
                    .children
                    .entry(c.as_os_str().as_bytes().to_vec())
                    .or_default();
            }
            if !at.is_source {
                at.is_source = true;
                at.children.clear();
            }
        }
        for (i, cmd) in commands.iter().enumerate() {
            let collides = || {
                Error::InvalidInput(format!(
                    "--stdin-filename {:?} collides with a backed-up path or another command",
                    cmd.filename
                ))
            };
            let mut at = &mut layout;
            for part in cmd.components()? {
                if at.is_source || at.command.is_some() {
                    return Err(collides());
                }
                at = at.children.entry(part).or_default();
            }
            if at.is_source || at.command.is_some() || !at.children.is_empty() {
                return Err(collides());
            }
            at.command = Some(i);
        }
        let (mut names, mut full) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for pat in excludes {
            let glob = Glob::new(pat)
                .map_err(|e| Error::InvalidInput(format!("exclude pattern {pat:?}: {e}")))?;
            if pat.contains('/') {
                full.add(glob)
            } else {
                names.add(glob)
            };
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::InvalidInput(format!("exclude patterns: {e}")))
        };
        Ok(Walker {
            layout,
            commands,
            name_excludes: build(names)?,
            path_excludes: build(full)?,
            cache,
            sink,
            errors,
            exclude_if_present: Vec::new(),
            one_file_system: false,
        })
    }

    /// Leaves out every directory that holds an entry named one of `names`
    /// (`--exclude-if-present`, e.g. `.nobackup` or `CACHEDIR.TAG`).
    pub fn exclude_if_present(mut self, names: &[String]) -> Self {
        self.exclude_if_present = names.iter().map(OsString::from).collect();
        self
    }

    /// Does not descend into directories on another file system than
    /// their source path (`--one-file-system`): a mount point is kept, empty.
    pub fn one_file_system(mut self, on: bool) -> Self {
        self.one_file_system = on;
        self
    }

    /// Whether `dir` holds one of the `--exclude-if-present` names.
    fn has_marker(&self, dir: &Path) -> bool {
        self.exclude_if_present
            .iter()
            .any(|n| fs::symlink_metadata(dir.join(n)).is_ok())
    }

    fn error(&self, path: &Path, message: impl Into<String>) {
        self.errors.lock().expect("errors lock").push(InputError {
            path: path.display().to_string(),
            message: message.into(),
        });
    }

    /// Walks everything, sending events and jobs; stops early on failure.
    ///
    /// Iterative: one [`Frame`] per directory being listed, on a stack of
    /// its own, so a deep nest costs heap, not thread stack.
    pub fn walk(&self, events: Sender<Event>, jobs: Sender<FileJob>, failure: &Failure) {
        let mut st = WalkState {
            events,
            jobs,
            names: Names::default(),
            links: HashMap::new(),
            source_dev: fs::metadata("/").map_or(0, |m| m.dev()),
        };
        let root = if self.layout.is_source {
            // `/` itself is a source: its entries are the root tree's entries.
            self.listing(Path::new("/"), None, 1, false)
        } else {
            Frame {
                dir: PathBuf::from("/"),
                leave: false,
                rest: Rest::Layout(self.layout.children.iter()),
            }
        };
        let _ = self.walk_from(root, &mut st, failure);
    }

    /// Runs the walk until the stack that starts with `root` is empty.
    fn walk_from<'l>(
        &'l self,
        root: Frame<'l>,
        st: &mut WalkState,
        failure: &Failure,
    ) -> Result<(), ()> {
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            let step = match &mut top.rest {
                Rest::Layout(children) => match children.next() {
                    Some((name, child)) => self.layout_child(&top.dir, name, child, st, failure)?,
                    None => Step::Finished,
                },
                Rest::Entries { entries, depth } => match entries.next() {
                    Some((name, m)) => self.entry(&top.dir, &name, m, *depth, st, failure)?,
                    None => Step::Finished,
                },
            };
            match step {
                Step::Next => {}
                Step::Descend(frame) => stack.push(frame),
                Step::Finished => {
                    let done = stack.pop().expect("the loop holds a frame");
                    if done.leave {
                        st.events.send(Event::Leave).map_err(|_| ())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One child of the layout above the source paths: a command source, a
    /// source path, or a directory on the way to deeper ones.
    fn layout_child<'l>(
        &'l self,
        dir: &Path,
        name: &[u8],
        child: &'l Layout,
        st: &mut WalkState,
        failure: &Failure,
    ) -> Result<Step<'l>, ()> {
        let name = OsString::from(std::ffi::OsStr::from_bytes(name));
        let path = dir.join(&name);
        if let Some(i) = child.command {
            self.command_file(&path, &name, &self.commands[i], st)?;
            return Ok(Step::Next);
        }
        if child.is_source {
            return match fs::symlink_metadata(&path) {
                Ok(m) => self.visit(path, &name, &m, st, failure, 0),
                Err(e) => {
                    self.error(&path, format!("source path cannot be read: {e}"));
                    Ok(Step::Next)
                }
            };
        }
        // An intermediate directory of a deeper source path.
        let node = match fs::metadata(&path)
            .and_then(|m| meta::node_for(&path, &name, &m, &mut st.names))
        {
            Ok(mut n) => {
                n.kind = NodeKind::Dir;
                n.target = None;
                n
            }
            // Command output lives in directories that need not exist.
            Err(_) if child.has_command() => {
                synthetic_node(&name, NodeKind::Dir, 0o755, &mut st.names)
            }
            Err(e) => {
                self.error(&path, format!("source path cannot be read: {e}"));
                return Ok(Step::Next);
            }
        };
        st.events.send(Event::Enter(node)).map_err(|_| ())?;
        Ok(Step::Descend(Frame {
            dir: path,
            leave: true,
            rest: Rest::Layout(child.children.iter()),
        }))
    }

    /// Hands a command source to the readers as a file at `path`.
    fn command_file(
        &self,
        path: &Path,
        name: &std::ffi::OsStr,
        cmd: &CommandSource,
        st: &mut WalkState,
    ) -> Result<(), ()> {
        let node = synthetic_node(name, NodeKind::File, 0o600, &mut st.names);
        let (tx, rx) = bounded(1);
        st.jobs
            .send(FileJob {
                source: JobSource::Command(cmd.clone()),
                reply: tx,
            })
            .map_err(|_| ())?;
        let stamp = Stamp {
            size: 0,
            ctime_ns: 0,
            ino: 0,
            cacheable: false,
            previous: None,
        };
        st.events
            .send(Event::File {
                path: path.to_owned(),
                node,
                stamp,
                data: Pending::Waiting(rx),
            })
            .map_err(|_| ())
    }

    /// A frame for directory `path`'s entries in name order, to visit at
    /// `depth` (a directory that cannot be listed is reported and has none).
    /// `listed` is what the walker recorded of the directory itself: it is
    /// listed, and its entries are examined, through a handle to that very
    /// inode, so a directory on the path swapped for a symlink meanwhile (by
    /// a user who owns it) is reported, never walked in its place.
    fn listing<'l>(
        &self,
        path: &Path,
        listed: Option<&fs::Metadata>,
        depth: usize,
        leave: bool,
    ) -> Frame<'l> {
        let frame = |entries: Vec<(OsString, std::io::Result<fs::Metadata>)>| Frame {
            dir: path.to_owned(),
            leave,
            rest: Rest::Entries {
                entries: entries.into_iter(),
                depth,
            },
        };
        let handle = match listed.map(|m| open_listed_dir(path, m)).transpose() {
            Ok(h) => h,
            Err(e) => {
                self.error(path, format!("listing directory: {e}"));
                return frame(Vec::new());
            }
        };
        // Through the open handle (`/proc/self/fd/N` names the inode, not
        // the path), where /proc is there.
        let through = handle
            .as_ref()
            .map(|h| PathBuf::from(format!("/proc/self/fd/{}", h.as_raw_fd())))
            .filter(|p| p.exists());
        let base = through.as_deref().unwrap_or(path);
        let entries = match fs::read_dir(base) {
            Ok(rd) => {
                let mut entries: Vec<_> = rd
                    .filter_map(|e| match e {
                        Ok(e) => Some(e),
                        Err(err) => {
                            self.error(path, format!("listing directory: {err}"));
                            None
                        }
                    })
                    .collect();
                entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
                entries
            }
            Err(e) => {
                self.error(path, format!("listing directory: {e}"));
                Vec::new()
            }
        };
        // Every entry is examined through the listing's own handle now
        // (`fstatat` relative to it, no symlink followed: no path to resolve
        // per entry); the handles are closed before descending (one open
        // directory per level would run out of descriptors in a deep tree),
        // which is safe because each subdirectory is reopened and checked
        // against what was seen here.
        let examined: Vec<_> = entries
            .into_iter()
            .map(|e| (e.file_name(), e))
            .filter(|(cname, _)| {
                !self.name_excludes.is_match(cname)
                    && (self.path_excludes.is_empty()
                        || !self.path_excludes.is_match(path.join(cname)))
            })
            .map(|(cname, e)| (cname, e.metadata()))
            .collect();
        drop(handle);
        frame(examined)
    }

    /// One entry `cname` of directory `dir`, with what examining it found
    /// (exclusions were applied when the directory was listed).
    fn entry<'l>(
        &'l self,
        dir: &Path,
        cname: &std::ffi::OsStr,
        m: std::io::Result<fs::Metadata>,
        depth: usize,
        st: &mut WalkState,
        failure: &Failure,
    ) -> Result<Step<'l>, ()> {
        let cpath = dir.join(cname);
        match m {
            Ok(cm) => self.visit(cpath, cname, &cm, st, failure, depth),
            Err(err) => {
                self.error(&cpath, format!("vanished or unreadable: {err}"));
                Ok(Step::Next)
            }
        }
    }

    /// A regular file: its content comes from the cache when the file is
    /// unchanged and its blobs are still indexed, else a reader reads it.
    /// `node` comes without extended attributes: they are read here unless
    /// the cache knows the unchanged file has none.
    fn file(
        &self,
        path: PathBuf,
        name: &std::ffi::OsStr,
        m: &fs::Metadata,
        mut node: Node,
        st: &mut WalkState,
    ) -> Result<(), ()> {
        let mut stamp = Stamp {
            size: m.len(),
            ctime_ns: meta::ctime_ns(m),
            ino: m.ino(),
            cacheable: true,
            previous: None,
        };
        // Keystores are always read: their certificates' expiry is
        // recorded in every snapshot.
        let keystore = crate::source::keystore::is_keystore_name(name.as_bytes())
            && stamp.size <= crate::source::keystore::MAX_KEYSTORE;
        let (hit, previous) = self.cache.map_or((None, None), |c| {
            c.lookup_previous(
                path.as_os_str().as_bytes(),
                stamp.size,
                node.mtime_ns,
                stamp.ctime_ns,
                stamp.ino,
            )
        });
        stamp.previous = previous;
        // A file recorded without extended attributes and unchanged since
        // (its change time too, which setting or removing one updates)
        // still has none: no `llistxattr` per unchanged file.
        if !hit.as_ref().is_some_and(|e| e.no_xattrs) {
            node.xattrs = meta::read_xattrs(&path);
        }
        let cached = hit
            .filter(|_| !keystore)
            .filter(|e| self.sink.reuse(&e.content) && self.sink.reuse(&e.lists));
        let data = match cached {
            Some(e) => Pending::Ready(FileData {
                content: e.content,
                lists: e.lists,
                hash: e.hash,
                size: e.size,
                certificates: Vec::new(),
                looks_compressed: None,
            }),
            None => {
                let (tx, rx) = bounded(1);
                st.jobs
                    .send(FileJob {
                        source: JobSource::Path(path.clone(), (m.dev(), m.ino())),
                        reply: tx,
                    })
                    .map_err(|_| ())?;
                Pending::Waiting(rx)
            }
        };
        st.events
            .send(Event::File {
                path,
                node,
                stamp,
                data,
            })
            .map_err(|_| ())
    }

    /// Visits one entry found `depth` levels below its source path: a
    /// directory is entered (its frame returned to walk), anything else
    /// sent on.
    fn visit<'l>(
        &'l self,
        path: PathBuf,
        name: &std::ffi::OsStr,
        m: &fs::Metadata,
        st: &mut WalkState,
        failure: &Failure,
        depth: usize,
    ) -> Result<Step<'l>, ()> {
        if failure.stopped() {
            return Err(());
        }
        // A file's attributes are listed once the file cache was asked
        // whether the file has any ([`Walker::file`]).
        let node = if meta::kind_of(m) == NodeKind::File {
            meta::node_without_xattrs(&path, name, m, &mut st.names)
        } else {
            meta::node_for(&path, name, m, &mut st.names)
        };
        let mut node = match node {
            Ok(n) => n,
            Err(e) => {
                self.error(&path, e.to_string());
                return Ok(Step::Next);
            }
        };
        if node.kind != NodeKind::Dir && m.nlink() > 1 {
            st.links.insert((m.dev(), m.ino()), ());
            node.hardlink = Some(format!("{}:{}", m.dev(), m.ino()));
        }
        if depth == 0 {
            st.source_dev = m.dev();
        }
        let sent = match node.kind {
            NodeKind::Dir if self.has_marker(&path) => Ok(()),
            NodeKind::Dir => {
                st.events.send(Event::Enter(node)).map_err(|_| ())?;
                if self.one_file_system && m.dev() != st.source_dev {
                    // Another file system mounted here: the mount point
                    // stays, empty.
                } else if depth >= MAX_DEPTH {
                    self.error(
                        &path,
                        format!(
                            "directory nesting deeper than {MAX_DEPTH} levels; contents skipped"
                        ),
                    );
                } else {
                    return Ok(Step::Descend(self.listing(&path, Some(m), depth + 1, true)));
                }
                st.events.send(Event::Leave).map_err(|_| ())
            }
            NodeKind::File => self.file(path, name, m, node, st),
            _ => st.events.send(Event::Other(node)).map_err(|_| ()),
        };
        sent.map(|()| Step::Next)
    }
}

/// Opens directory `path` without following a symlink in its last
/// component, and checks that it is the inode `listed` describes.
fn open_listed_dir(path: &Path, listed: &fs::Metadata) -> std::io::Result<File> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)?;
    let m = dir.metadata()?;
    if (m.dev(), m.ino()) != (listed.dev(), listed.ino()) {
        return Err(std::io::Error::other(
            "was replaced while the backup ran (its path now leads to another directory)",
        ));
    }
    Ok(dir)
}

fn open_for_backup(path: &Path) -> std::io::Result<File> {
    let open = |flags| OpenOptions::new().read(true).custom_flags(flags).open(path);
    // O_NONBLOCK: a file swapped for a FIFO after lstat must not hang the
    // backup (it is refused below as no longer a regular file).
    match open(libc::O_NOFOLLOW | libc::O_NOATIME | libc::O_NONBLOCK) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            open(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        }
        other => other,
    }
}

/// A node for something that has no inode of its own (command output and
/// the directories holding it): owned by the running user, modified now.
fn synthetic_node(name: &std::ffi::OsStr, kind: NodeKind, mode: u32, names: &mut Names) -> Node {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    meta::synthetic(name, kind, mode, uid, gid, now, names)
}

/// Runs a command source and stores its standard output.
fn read_command(
    source: &CommandSource,
    tx: &Sender<RawBlob>,
    keys: &StreamKeys,
    sink: &BlobSink<'_>,
) -> Result<FileData, ReadError> {
    let (running, stdout) = Running::start(source).map_err(ReadError::Start)?;
    // Only a plain command can be told to stop compressing; the native
    // PostgreSQL source dumps uncompressed already.
    let inspect = if source.kind == "command" {
        Inspect::Head
    } else {
        Inspect::Nothing
    };
    match store_stream(stdout, u64::MAX, tx, keys, sink, inspect) {
        Ok(data) => Ok(running.finish().map(|_| data)?),
        Err(why) => Err(ReadError::Aborted {
            why: Box::new(why),
            stderr: running.abort(),
        }),
    }
}

/// Reads one file: chunk, hash, and submit new chunks. `listed` is the
/// device and inode the walker recorded the file's metadata from: a path
/// that leads elsewhere by now (a directory on it swapped for a symlink by
/// whoever owns it) is not read, so no content is stored under another
/// file's owner and mode.
fn read_file(
    path: &Path,
    listed: (u64, u64),
    tx: &Sender<RawBlob>,
    keys: &StreamKeys,
    sink: &BlobSink<'_>,
) -> Result<FileData, ReadError> {
    let file = open_for_backup(path).map_err(ReadError::Open)?;
    let m = file.metadata().map_err(ReadError::Stat)?;
    if !m.is_file() {
        return Err(ReadError::NotRegular);
    }
    if (m.dev(), m.ino()) != listed {
        return Err(ReadError::Replaced);
    }
    let keystore = path
        .file_name()
        .is_some_and(|n| crate::source::keystore::is_keystore_name(n.as_bytes()));
    let inspect = if keystore {
        Inspect::Keystore
    } else {
        Inspect::Nothing
    };
    store_stream(file, m.len(), tx, keys, sink, inspect)
}

/// What [`store_stream`] looks at besides storing the content.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inspect {
    /// Nothing.
    Nothing,
    /// The certificates of a keystore (its whole content, when small).
    Keystore,
    /// Whether command output is already compressed (its first MiB).
    Head,
}

/// Streams at least this long (a file's size; command output always) are
/// read, chunked and hashed whole (plain BLAKE3) on one thread, and their
/// chunks named (keyed BLAKE3), looked up and submitted on another, so one
/// large file keeps two cores busy with about as much work on each.
pub const SPLIT_MIN: u64 = 4 << 20;

/// Blocks of whole chunks waiting between the two threads of one stream
/// (a block is one read-ahead buffer, handed over whole: one hand-over per
/// buffer, not per chunk, and no copy of a chunk that is already stored).
const SPLIT_QUEUE: usize = 4;

/// Chunks, hashes and submits everything `reader` yields; `expected` is its
/// length as far as known (a file's size, `u64::MAX` for command output).
fn store_stream(
    reader: impl std::io::Read + Send,
    expected: u64,
    tx: &Sender<RawBlob>,
    keys: &StreamKeys,
    sink: &BlobSink<'_>,
    inspect: Inspect,
) -> Result<FileData, ReadError> {
    let mut digest = Digest::new(&keys.ids, sink, tx, inspect);
    let mut blocks = keys.gear.blocks(reader, expected);
    let mut whole = blake3::Hasher::new();
    if expected < SPLIT_MIN {
        while let Some(block) = blocks.next_block().map_err(ReadError::Read)? {
            whole.update(block.bytes());
            digest.add(&block)?;
            blocks.give_back(block.into_buffer());
        }
        return digest.finish(whole.finalize().into());
    }
    // Chunking and the whole-stream hash are sequential; naming each chunk,
    // the dedup lookup and submitting (compression follows on the
    // compressing threads) go on beside them.
    let (block_tx, block_rx) = bounded::<Block>(SPLIT_QUEUE);
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(SPLIT_QUEUE);
    std::thread::scope(|s| {
        let naming = s.spawn(move || {
            for block in block_rx {
                digest.add(&block)?;
                // A full queue: the reader holds enough; this one is freed.
                let _ = spare_tx.try_send(block.into_buffer());
            }
            Ok::<_, ReadError>(digest)
        });
        let read = (|| {
            loop {
                while let Ok(buffer) = spare_rx.try_recv() {
                    blocks.give_back(buffer);
                }
                let Some(block) = blocks.next_block().map_err(ReadError::Read)? else {
                    return Ok(whole.finalize().into());
                };
                whole.update(block.bytes());
                // A closed queue: the naming side stopped (its error wins).
                block_tx.send(block).map_err(|_| ReadError::Cancelled)?;
            }
        })();
        drop(block_tx);
        let named = naming.join().expect("the naming thread does not panic");
        named.and_then(|digest| read.and_then(|hash| digest.finish(hash)))
    })
}

/// What a reader chunks and names blobs with, made once per thread (not
/// per file: 200,000 small files would derive the keys 200,000 times).
pub struct StreamKeys {
    ids: crate::format::salt::BlobIds,
    gear: chunk::Gear,
}

impl StreamKeys {
    /// The chunker and blob ids of `repo`'s writer.
    pub fn new(repo: &Repository) -> Self {
        let seed = chunk::gear_seed(repo.keys().chunk_key());
        StreamKeys {
            ids: repo.keys().blob_ids(),
            gear: chunk::Gear::new(&repo.config().chunker, seed),
        }
    }
}

/// What storing one stream accumulates, chunk by chunk in order: the blob
/// ids and what [`Inspect`] asks for (the whole-content hash is computed
/// beside it, see [`store_stream`]). At most [`LIST_IDS`] ids are held:
/// each full list of them is stored as a content list blob, so a stream of
/// any length costs the same memory.
struct Digest<'a, 's> {
    ids: &'a crate::format::salt::BlobIds,
    sink: &'a BlobSink<'s>,
    tx: &'a Sender<RawBlob>,
    inspect: Inspect,
    whole: Vec<u8>,
    content: Vec<BlobId>,
    /// The content lists stored so far.
    lists: Vec<BlobId>,
    size: u64,
    /// The chunks of a stream that may still be small (at most SALTED_MAX
    /// bytes in all): held back until it ends (their ids are salted) or
    /// grows past it (unsalted, like every later chunk).
    held: Vec<Vec<u8>>,
}

impl<'a, 's> Digest<'a, 's> {
    fn new(
        ids: &'a crate::format::salt::BlobIds,
        sink: &'a BlobSink<'s>,
        tx: &'a Sender<RawBlob>,
        inspect: Inspect,
    ) -> Self {
        Digest {
            ids,
            sink,
            tx,
            inspect,
            whole: Vec::new(),
            content: Vec::new(),
            lists: Vec::new(),
            size: 0,
            held: Vec::new(),
        }
    }

    /// Makes room for one more id in `content`.
    fn room(&mut self) -> Result<(), ReadError> {
        if self.content.len() == LIST_IDS {
            self.seal_list()?;
        }
        Ok(())
    }

    /// Submits a chunk held back, now that its id is known to be `salted`
    /// or not.
    fn send_held(&mut self, data: Vec<u8>, salted: bool) -> Result<(), ReadError> {
        let id = if salted {
            self.ids.salted(&data)
        } else {
            self.ids.unsalted(&data)
        };
        self.room()?;
        self.content.push(id);
        self.sink
            .submit(self.tx, BlobKind::Data, id, data, salted)
            .map_err(|_| ReadError::Cancelled)
    }

    /// Stores the ids held so far as a content list (a tree-kind blob, owner
    /// readable like the tree that will name it) and lets them go.
    fn seal_list(&mut self) -> Result<(), ReadError> {
        let bytes = list_bytes(&self.content);
        self.content.clear();
        let id = self.ids.unsalted(&bytes);
        self.lists.push(id);
        self.sink
            .submit(self.tx, BlobKind::Tree, id, bytes, false)
            .map_err(|_| ReadError::Cancelled)
    }

    /// The next chunks: named and submitted (copied out of their buffer
    /// only when new).
    fn add(&mut self, block: &Block) -> Result<(), ReadError> {
        for data in block.chunks() {
            self.add_chunk(data)?;
        }
        Ok(())
    }

    fn add_chunk(&mut self, data: &[u8]) -> Result<(), ReadError> {
        self.size += data.len() as u64;
        let max_keystore = crate::source::keystore::MAX_KEYSTORE;
        if self.inspect == Inspect::Keystore && self.size <= max_keystore {
            self.whole.extend_from_slice(data);
        }
        if self.inspect == Inspect::Head && self.whole.len() < squeeze::HEAD {
            let take = data.len().min(squeeze::HEAD - self.whole.len());
            self.whole.extend_from_slice(&data[..take]);
        }
        if self.size <= salt::SALTED_MAX {
            self.held.push(data.to_vec());
            return Ok(());
        }
        for held in std::mem::take(&mut self.held) {
            self.send_held(held, false)?;
        }
        let id = self.ids.unsalted(data);
        self.room()?;
        self.content.push(id);
        self.sink
            .submit_slice(self.tx, BlobKind::Data, id, data, false)
            .map_err(|_| ReadError::Cancelled)
    }

    /// The stored stream, once every chunk was added; `hash` is the plain
    /// BLAKE3 of all of them.
    fn finish(mut self, hash: Id) -> Result<FileData, ReadError> {
        for held in std::mem::take(&mut self.held) {
            self.send_held(held, true)?;
        }
        if !self.lists.is_empty() && !self.content.is_empty() {
            self.seal_list()?;
        }
        let certificates = if self.inspect == Inspect::Keystore
            && self.size <= crate::source::keystore::MAX_KEYSTORE
        {
            crate::source::keystore::certificates(&self.whole)
        } else {
            Vec::new()
        };
        let looks_compressed = match self.inspect {
            Inspect::Head => squeeze::looks_compressed(&self.whole),
            _ => None,
        };
        Ok(FileData {
            content: self.content,
            lists: self.lists,
            hash,
            size: self.size,
            certificates,
            looks_compressed,
        })
    }
}

/// A reader thread: takes file jobs until the walker is done.
pub fn reader(
    jobs: Receiver<FileJob>,
    tx: Sender<RawBlob>,
    repo: &Repository,
    sink: &BlobSink<'_>,
    failure: &Failure,
) {
    let keys = StreamKeys::new(repo);
    for job in jobs {
        if failure.stopped() {
            return;
        }
        let result = match &job.source {
            JobSource::Path(path, listed) => read_file(path, *listed, &tx, &keys, sink),
            JobSource::Command(source) => read_command(source, &tx, &keys, sink),
        };
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::Index;
    use crate::format::tree::Xattr;
    use crate::ops::backup::cache::CacheEntry;
    use crossbeam_channel::unbounded;

    /// Walks `paths` on a thread with a small stack; returns the events as
    /// `+name` (enter), `-` (leave), `name` (file or other).
    fn walk_small_stack(paths: &[PathBuf]) -> Vec<String> {
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let errors = Mutex::new(Vec::new());
        let walker = Walker::new(paths, &[], &[], None, &sink, &errors).unwrap();
        let (ev_tx, ev_rx) = unbounded();
        let (job_tx, _job_rx) = unbounded();
        let failure = Failure::default();
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, || walker.walk(ev_tx, job_tx, &failure))
                .unwrap();
        });
        assert!(errors.into_inner().unwrap().is_empty());
        let name = |n: &Node| String::from_utf8_lossy(&n.name.0).into_owned();
        ev_rx
            .iter()
            .map(|e| match e {
                Event::Enter(n) => format!("+{}", name(&n)),
                Event::Leave => "-".to_owned(),
                Event::Other(n) | Event::File { node: n, .. } => name(&n),
            })
            .collect()
    }

    /// The xattrs of the file `path` as the walker records them when the
    /// file cache holds `entry` (blobs absent from the index: the file is
    /// handed to a reader all the same).
    fn xattrs_walked(path: &Path, entry: Option<&CacheEntry>) -> Vec<Xattr> {
        let cache_dir = tempfile::tempdir().unwrap();
        let src = path.parent().unwrap().to_path_buf();
        let paths = [src.clone()];
        let cache = FileCache::load(cache_dir.path(), "r", "h", &paths);
        let mut w = cache.writer().unwrap();
        if let Some(e) = entry {
            w.add(e).unwrap();
        }
        w.finish().unwrap();
        let cache = FileCache::load(cache_dir.path(), "r", "h", &paths);
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let errors = Mutex::new(Vec::new());
        let walker = Walker::new(&paths, &[], &[], Some(&cache), &sink, &errors).unwrap();
        let (ev_tx, ev_rx) = unbounded();
        let (job_tx, _job_rx) = unbounded();
        walker.walk(ev_tx, job_tx, &Failure::default());
        assert!(errors.into_inner().unwrap().is_empty());
        let files: Vec<Node> = ev_rx
            .iter()
            .filter_map(|e| match e {
                Event::File { node, .. } => Some(node),
                _ => None,
            })
            .collect();
        assert_eq!(files.len(), 1);
        files[0].xattrs.clone()
    }

    #[test]
    fn an_unchanged_file_cached_without_xattrs_is_not_asked_for_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let file = src.join("f");
        fs::write(&file, b"content").unwrap();
        if let Err(e) = xattr::set(&file, "user.vault-test", b"v") {
            println!("SKIPPED: no user xattrs here: {e}");
            return;
        }
        let m = fs::symlink_metadata(&file).unwrap();
        let recorded = CacheEntry {
            path: file.as_os_str().as_bytes().to_vec(),
            size: m.len(),
            mtime_ns: meta::mtime_ns(&m),
            ctime_ns: meta::ctime_ns(&m),
            ino: m.ino(),
            content: vec![BlobId(Id([7; 32]))],
            lists: Vec::new(),
            hash: Id::of_bytes(b"content"),
            no_xattrs: false,
        };
        let want = vec![Xattr {
            name: crate::format::tree::Bytes(b"user.vault-test".to_vec()),
            value: b"v".to_vec(),
        }];
        // No cache, or a record that saw attributes: they are read.
        assert_eq!(xattrs_walked(&file, None), want);
        assert_eq!(xattrs_walked(&file, Some(&recorded)), want);
        // A record of the same stamp without attributes is believed (the
        // attribute was set here without the record knowing; in real life
        // setting it changes the file's ctime, see below).
        let none = CacheEntry {
            no_xattrs: true,
            ..recorded.clone()
        };
        assert_eq!(xattrs_walked(&file, Some(&none)), Vec::new());
        // Any other stamp: read again.
        for changed in [
            CacheEntry {
                ctime_ns: none.ctime_ns - 1,
                ..none.clone()
            },
            CacheEntry {
                ino: none.ino + 1,
                ..none.clone()
            },
            CacheEntry {
                mtime_ns: none.mtime_ns - 1,
                ..none.clone()
            },
        ] {
            assert_eq!(xattrs_walked(&file, Some(&changed)), want);
        }
        // Setting an attribute changes the ctime the cache compares.
        std::thread::sleep(std::time::Duration::from_millis(20));
        xattr::set(&file, "user.vault-test", b"w").unwrap();
        assert_ne!(
            meta::ctime_ns(&fs::symlink_metadata(&file).unwrap()),
            none.ctime_ns
        );
        let got = xattrs_walked(&file, Some(&none));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value, b"w");
    }

    #[test]
    fn a_large_stream_hashed_beside_its_chunking_is_stored_as_in_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let repo = super::super::tests::local_repo(dir.path(), 1 << 20);
        let mut data = super::super::tests::noise(SPLIT_MIN as usize + (3 << 20), 7);
        // A repeated stretch: chunks submitted once, listed twice.
        let (a, b) = data.split_at_mut(3 << 20);
        b[..1 << 20].copy_from_slice(&a[..1 << 20]);
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let (tx, rx) = unbounded();
        let keys = StreamKeys::new(&repo);
        let split = store_stream(
            &data[..],
            data.len() as u64,
            &tx,
            &keys,
            &sink,
            Inspect::Head,
        )
        .map_err(|e| e.to_string())
        .unwrap();
        let submitted = rx.try_iter().count();
        // The same content read on one thread: the same ids, nothing new.
        let one = store_stream(&data[..], 0, &tx, &keys, &sink, Inspect::Head)
            .map_err(|e| e.to_string())
            .unwrap();
        assert_eq!(rx.try_iter().count(), 0);
        assert!(split.content == one.content);
        assert_eq!(split.hash, Id::of_bytes(&data));
        assert_eq!((split.hash, split.size), (one.hash, one.size));
        assert_eq!(split.looks_compressed, Some("incompressible"));
        let distinct: std::collections::HashSet<_> = split.content.iter().collect();
        assert_eq!(submitted, distinct.len());
        assert!(distinct.len() < split.content.len());
        let ids = repo.keys().blob_ids();
        let seed = chunk::gear_seed(repo.keys().chunk_key());
        let want: Vec<BlobId> = chunk::chunks(&data[..], &repo.config().chunker, seed)
            .map(|c| ids.unsalted(&c.unwrap()))
            .collect();
        assert!(split.content == want);
    }

    #[test]
    fn a_deep_nest_is_walked_in_order_without_a_large_stack() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let mut deep = src.clone();
        for _ in 0..1000 {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("bottom"), b"x").unwrap();
        fs::write(src.join("b"), b"x").unwrap();
        fs::write(src.join("e"), b"x").unwrap();
        let events = walk_small_stack(std::slice::from_ref(&src));
        // The directories above the source path (`/` aside), then the
        // source itself.
        let above = src.components().count() - 2;
        assert!(events[..above].iter().all(|e| e.starts_with('+')));
        assert_eq!(events[above], "+src");
        let inside = &events[above + 1..events.len() - above - 1];
        let mut want = vec!["b".to_owned()];
        want.extend((0..1000).map(|_| "+d".to_owned()));
        want.push("bottom".to_owned());
        want.extend((0..1000).map(|_| "-".to_owned()));
        want.push("e".to_owned());
        assert_eq!(inside, want.as_slice());
        assert!(events[events.len() - above - 1..].iter().all(|e| e == "-"));
    }
}
