//! Walks the source paths depth-first in name order and turns what it finds
//! into events for the tree assembler, handing regular files to the readers.

mod listing;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, bounded};
use globset::{Glob, GlobSetBuilder};

use super::cache::{FileCache, FileStamp};
use super::pipeline::{BlobSink, Failure, RawBlob};
use super::squeeze;
use crate::error::{Error, Result};
use crate::format::chunk::{self, Block};
use crate::format::id::{BlobId, Id};
use crate::format::pack::BlobKind;
use crate::format::salt;
use crate::format::snapshot::InputError;
use crate::format::tree::{LIST_IDS, Node, NodeKind, Xattr, list_bytes};
use crate::repo::Repository;
use crate::source::command::{CommandFailed, CommandSource, Running};
use crate::source::meta::{self, Names};
use listing::{Ahead, Entry, Found, Lister, Seen, Ticket};

/// Deepest directory nesting the walker descends into.
const MAX_DEPTH: usize = 2048;

/// A file's content as stored.
pub struct FileData {
    /// Content blob ids (none when they are in `lists`).
    pub content: Vec<BlobId>,
    /// A file from the cache that is in a bundle: its offset there
    /// ([`crate::format::tree::Node::bundle_offset`]).
    pub bundle_offset: Option<u64>,
    /// A small file a reader read, not stored yet: the assembler puts it
    /// in its directory's bundle, or stores it alone (`content` is empty).
    pub unbundled: Option<SmallFile>,
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
    /// The extended attributes of a file a reader read, through the
    /// descriptor it read the content from ([`meta::file_xattrs`]); `None`
    /// when the walker's node has them already (a file from the cache)
    /// or there is no file (command output).
    pub xattrs: Option<Vec<Xattr>>,
}

/// A small file's bytes on their way to a bundle.
pub struct SmallFile {
    /// The whole content (one chunk).
    pub bytes: Vec<u8>,
    /// The owner the file may share a bundle with others of
    /// ([`bundle_owner`]), as the reader found it; `None`: stored alone.
    pub shares_as: Option<u32>,
}

/// The owner whose other files an opened file may be compressed together
/// with, from the opened file's own metadata (not the listing's, which an
/// inode reused between the two could belie): none when its group or
/// others may write it, or when it has other names (a hard link to it can
/// sit in a directory of someone else's files). Compressing bytes an
/// attacker chooses beside a secret lets the compressed length (the
/// index's `length`, a pack's size) confirm guesses of the secret; a local
/// user can create only files it owns and write only those whose mode lets
/// it, so with one owner per bundle no bundle holds both a user's bytes and
/// another's, except where an owner keeps others' bytes in its own files
/// (docs/SECURITY.md).
pub fn bundle_owner(m: &std::fs::Metadata) -> Option<u32> {
    (m.mode() & 0o022 == 0 && m.nlink() == 1).then_some(m.uid())
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
    /// Bytes reserved for the file in the small files' budget
    /// ([`BlobSink::in_flight`]), which the assembler gives back.
    pub reserved: u64,
}

/// What reading one file gave: its content, or why it is left out.
pub type ReadResult = Result<FileData, ReadError>;

/// A file's content: known from the cache, or being read.
pub enum Pending {
    /// Known from the cache.
    Ready(FileData),
    /// Read alone (a large file, a keystore, a command's output): its
    /// result comes on this channel.
    Waiting(Receiver<ReadResult>),
    /// The first file of a batch of small files read together: the
    /// results of the whole batch come on this channel, in walk order.
    BatchStart(Receiver<Vec<ReadResult>>),
    /// A later file of the batch the last [`Pending::BatchStart`] began:
    /// its result is the next of that batch's.
    InBatch,
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

/// Most events the walker gathers before handing them to the assembler:
/// a batch costs one channel operation, and at most one wake-up of the
/// assembler, where one per entry cost 200,000 of each in a backup of
/// 200,000 unchanged files.
pub const EVENT_BATCH: usize = 64;

/// The walker's end of the event queue: events gathered into batches of
/// at most [`EVENT_BATCH`], sent when full and before the walk may wait
/// (for a listing, or for room in the readers' queue), so the assembler
/// never waits for events the walker holds.
struct Events {
    tx: Sender<Vec<Event>>,
    batch: Vec<Event>,
    /// The assembler is gone: nothing more is sent.
    closed: bool,
}

impl Events {
    fn new(tx: Sender<Vec<Event>>) -> Self {
        Events {
            tx,
            batch: Vec::with_capacity(EVENT_BATCH),
            closed: false,
        }
    }

    /// Gathers `event`; `Ok(true)` when the batch is full and is to be
    /// sent ([`WalkState::send`] does, once the files it names are on
    /// their way to the readers); `Err(())` once the assembler is gone.
    fn push(&mut self, event: Event) -> Result<bool, ()> {
        if self.closed {
            return Err(());
        }
        self.batch.push(event);
        Ok(self.batch.len() >= EVENT_BATCH)
    }

    /// Sends the events gathered so far.
    fn flush(&mut self) -> Result<(), ()> {
        if self.closed {
            return Err(());
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(EVENT_BATCH));
        self.tx.send(batch).map_err(|_| self.closed = true)
    }
}

/// Work for a reader thread: one file, or a batch of small ones.
pub struct FileJob(Job);

/// What a [`FileJob`] asks of a reader.
enum Job {
    /// A file or command read alone, its result sent on `reply`.
    One {
        source: JobSource,
        reply: Sender<ReadResult>,
    },
    /// Small files read in turn by one reader, their results sent together
    /// on `reply`: one job, one channel and one wake-up for
    /// [`SMALL_JOB_FILES`] files, where one each cost 200,000 of them in
    /// a first backup of 200,000 small files.
    Small {
        files: Vec<FileSource>,
        reply: Sender<Vec<ReadResult>>,
    },
}

/// A regular file to read: its path, the device and inode the walker
/// found there (the file read must be that one), and the bytes the walker
/// reserved for it in the small files' budget ([`super::inflight`]): it is
/// handed back for a bundle only if it ends within them, so a file that
/// grew after it was listed is stored alone, outside the budget's count.
struct FileSource {
    path: PathBuf,
    listed: (u64, u64),
    reserved: u64,
}

impl FileSource {
    /// Reads the file for [`reader`] ([`read_file`]).
    fn read(
        &self,
        tx: &Sender<RawBlob>,
        keys: &StreamKeys,
        sink: &BlobSink<'_>,
    ) -> Result<FileData, ReadError> {
        read_file(&self.path, self.listed, self.reserved, tx, keys, sink)
    }
}

/// Most small files in one reader's job. Small enough that the readers
/// share a directory's files and the assembler waits little for a batch's
/// first; large enough that the cost per job is spread thin.
pub const SMALL_JOB_FILES: usize = 32;

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
    /// A regular file on disk.
    Path(FileSource),
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
    /// Which entries are left out, and how a directory is listed.
    lister: Lister,
    cache: Option<&'a FileCache>,
    /// Where a cached file's blobs are looked up (and relied on).
    sink: &'a BlobSink<'a>,
    errors: &'a Mutex<Vec<InputError>>,
    /// Stay on the file system of each source path.
    one_file_system: bool,
    /// Threads listing directories ahead of the walk (0: the walker lists
    /// every directory itself).
    listers: usize,
    /// Directories whose listing was made ahead of the walk.
    #[cfg(test)]
    listed_ahead: std::sync::atomic::AtomicUsize,
}

struct WalkState<'s> {
    events: Events,
    jobs: Sender<FileJob>,
    /// Small files gathered for the next batch job, and the channel its
    /// results are to come on (the assembler already has the other end).
    small: Vec<FileSource>,
    small_reply: Option<Sender<Vec<ReadResult>>>,
    names: Names,
    /// The device of the source path being walked (`--one-file-system`).
    source_dev: u64,
    /// Listing ahead of the walk, when threads do.
    ahead: Option<&'s Ahead<'s>>,
    /// Listings asked of [`WalkState::ahead`] and not taken yet.
    outstanding: usize,
}

impl WalkState<'_> {
    /// Sends `event` to the assembler (with the events gathered before
    /// it, once they make a batch).
    fn send(&mut self, event: Event) -> Result<(), ()> {
        if self.events.push(event)? {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the events gathered so far, after the batch of small files
    /// they name: the assembler may wait for any of them, so none may be
    /// still held here. Done before the walk may wait for anything.
    fn flush(&mut self) -> Result<(), ()> {
        self.seal()?;
        self.events.flush()
    }

    /// Hands a file or command to the readers to be read alone, after the
    /// small files before it.
    fn hand_over(&mut self, source: JobSource) -> Result<Pending, ()> {
        self.seal()?;
        let (reply, rx) = bounded(1);
        self.queue(FileJob(Job::One { source, reply }))?;
        Ok(Pending::Waiting(rx))
    }

    /// Adds a small file to the batch being gathered; the batch goes to
    /// the readers once it holds [`SMALL_JOB_FILES`] files.
    fn read_small(&mut self, file: FileSource) -> Result<Pending, ()> {
        let pending = match self.small_reply {
            Some(_) => Pending::InBatch,
            None => {
                let (reply, rx) = bounded(1);
                self.small_reply = Some(reply);
                Pending::BatchStart(rx)
            }
        };
        self.small.push(file);
        if self.small.len() >= SMALL_JOB_FILES {
            self.seal()?;
        }
        Ok(pending)
    }

    /// Sends the batch of small files gathered so far to the readers.
    fn seal(&mut self) -> Result<(), ()> {
        let Some(reply) = self.small_reply.take() else {
            return Ok(());
        };
        let files = std::mem::replace(&mut self.small, Vec::with_capacity(SMALL_JOB_FILES));
        self.queue(FileJob(Job::Small { files, reply }))
    }

    /// Queues `job` for the readers; when their queue is full, the events
    /// gathered so far go to the assembler first (it may be waiting for
    /// one of them while the walk waits for room).
    fn queue(&mut self, job: FileJob) -> Result<(), ()> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full(job)) => {
                self.events.flush()?;
                self.jobs.send(job).map_err(|_| ())
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(()),
        }
    }
}

/// Directories whose listings are asked ahead of the walk at most at once.
const AHEAD_DIRS: usize = 16;

/// Threads listing ahead of the walk by default: the walker itself is one
/// more, and it spends about as long on each entry as listing it takes.
fn default_listers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// A directory being walked: where it is and what is left of it.
struct Frame<'l> {
    dir: PathBuf,
    /// Whether finishing it closes a directory the events entered (all
    /// but the root).
    leave: bool,
    rest: Rest<'l>,
    /// The listed directory, for the attributes of its files taken from
    /// the file cache.
    attrs: ListedDir,
}

/// Where an entry was found: how many levels below its source path, in
/// which listed directory (none for a source path itself), and the entries
/// of that directory listed after it.
struct At<'d> {
    depth: usize,
    dir: Option<&'d mut ListedDir>,
    later: &'d [Entry],
}

/// Where the walker reads the extended attributes of a file it does not
/// hand to a reader (unchanged since the last backup, with attributes):
/// the file is opened for its attributes only ([`inode_xattrs`]) relative
/// to a handle to the directory that was listed (opened when first needed
/// and checked to be the inode listed), so that a directory on the path
/// swapped for a symlink meanwhile (by a user who owns it) cannot lend
/// another directory's file's attributes. The handle is closed while the
/// walk is below the directory (one per level would run out of
/// descriptors in a deep tree) and opened again if needed.
struct ListedDir {
    /// The directory's device and inode as listed (`None`: no listed
    /// directory, the layout above the source paths or `/` itself).
    listed: Option<(u64, u64)>,
    /// The open handle, once needed.
    handle: Option<File>,
}

impl ListedDir {
    fn new(listed: Option<(u64, u64)>) -> Self {
        ListedDir {
            listed,
            handle: None,
        }
    }

    /// The attributes of the regular file `name` in directory `dir` that
    /// was listed as inode `file` (device, inode); `None` when that
    /// directory is no longer at `dir` or `name` in it is no longer that
    /// file (the caller hands it to a reader, which reports what changed).
    /// Without a listed directory (a source path that is a file), `name`
    /// is opened by its whole path, with the same check.
    fn xattrs(
        &mut self,
        dir: &Path,
        name: &std::ffi::OsStr,
        file: (u64, u64),
    ) -> Option<Vec<Xattr>> {
        let Some(listed) = self.listed else {
            return inode_xattrs(rustix::fs::CWD, &dir.join(name), file);
        };
        if self.handle.is_none() {
            self.handle = Some(listing::open_listed_dir(dir, listed).ok()?);
        }
        inode_xattrs(self.handle.as_ref()?, Path::new(name), file)
    }

    /// Closes the handle (the walk goes below the directory).
    fn close(&mut self) {
        self.handle = None;
    }
}

/// The extended attributes of the regular file at `path` (relative to
/// `at`, no symlink followed) if it is the inode `file` (device, inode),
/// else `None`. It is opened with `O_PATH`, which reads nothing, needs no
/// read permission and triggers no open-time side effects (leases, file
/// access notifications, device opens), and its attributes are read
/// through `/proc/self/fd/N`; without `/proc`, through a read-only
/// descriptor to the same checked inode.
fn inode_xattrs(at: impl AsFd, path: &Path, file: (u64, u64)) -> Option<Vec<Xattr>> {
    use rustix::fs::{FileType, Mode, OFlags};
    let is_it = |fd: &OwnedFd| {
        rustix::fs::fstat(fd).is_ok_and(|st| {
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && (st.st_dev, st.st_ino) == file
        })
    };
    let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let handle = rustix::fs::openat(&at, path, flags | OFlags::PATH, Mode::empty()).ok()?;
    if !is_it(&handle) {
        return None;
    }
    if let Some(x) = meta::handle_xattrs(&handle) {
        return Some(x);
    }
    let read = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = rustix::fs::openat(&at, path, flags | read, Mode::empty()).ok()?;
    is_it(&fd).then(|| meta::file_xattrs(&File::from(fd)))
}

/// What is left to visit in a [`Frame`].
enum Rest<'l> {
    /// Children of the layout above the source paths.
    Layout(std::collections::btree_map::Iter<'l, Vec<u8>, Layout>),
    /// Entries of a listed directory, in name order, each `depth` levels
    /// below its source path (see [`Lister::list`]). The first `scan` of
    /// them were considered for listing ahead.
    Entries {
        entries: std::vec::IntoIter<Entry>,
        depth: usize,
        scan: usize,
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

/// Shuts the listing threads down however the walk ends.
struct ShutOnDrop<'a, 'b>(&'a Ahead<'b>);

impl Drop for ShutOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.shut();
    }
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
            lister: Lister {
                name_excludes: build(names)?,
                path_excludes: build(full)?,
                exclude_if_present: Vec::new(),
            },
            cache,
            sink,
            errors,
            one_file_system: false,
            listers: default_listers(),
            #[cfg(test)]
            listed_ahead: Default::default(),
        })
    }

    /// Leaves out every directory that holds an entry named one of `names`
    /// (`--exclude-if-present`, e.g. `.nobackup` or `CACHEDIR.TAG`).
    pub fn exclude_if_present(mut self, names: &[String]) -> Self {
        self.lister.exclude_if_present = names.iter().map(OsString::from).collect();
        self
    }

    /// Does not descend into directories on another file system than
    /// their source path (`--one-file-system`): a mount point is kept, empty.
    pub fn one_file_system(mut self, on: bool) -> Self {
        self.one_file_system = on;
        self
    }

    /// Lists directories ahead of the walk on `n` threads (0: none, the
    /// walker lists each directory when it reaches it). The events are the
    /// same whatever `n`.
    #[cfg(test)]
    pub fn listers(mut self, n: usize) -> Self {
        self.listers = n;
        self
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
    /// its own, so a deep nest costs heap, not thread stack. Directories
    /// the walk will reach soon are listed ahead on threads of their own
    /// ([`Ahead`]); the walk itself stays in order on this thread.
    pub fn walk(&self, events: Sender<Vec<Event>>, jobs: Sender<FileJob>, failure: &Failure) {
        let ahead = Ahead::new(&self.lister, self.listers);
        std::thread::scope(|s| {
            for _ in 0..self.listers {
                let ahead = &ahead;
                std::thread::Builder::new()
                    .name("lister".into())
                    .spawn_scoped(s, move || ahead.work())
                    .expect("a listing thread starts");
            }
            let _shut = ShutOnDrop(&ahead);
            let mut st = WalkState {
                events: Events::new(events),
                jobs,
                small: Vec::with_capacity(SMALL_JOB_FILES),
                small_reply: None,
                names: Names::default(),
                source_dev: fs::metadata("/").map_or(0, |m| m.dev()),
                ahead: (self.listers > 0).then_some(&ahead),
                outstanding: 0,
            };
            let root = if self.layout.is_source {
                // `/` itself is a source: its entries are the root tree's
                // entries.
                self.listing(Path::new("/"), None, None, 1, false, &mut st)
            } else {
                Frame {
                    dir: PathBuf::from("/"),
                    leave: false,
                    rest: Rest::Layout(self.layout.children.iter()),
                    attrs: ListedDir::new(None),
                }
            };
            if self.walk_from(root, &mut st, failure).is_ok() {
                let _ = st.flush();
            }
        });
    }

    /// Runs the walk until the stack that starts with `root` is empty.
    fn walk_from<'l>(
        &'l self,
        root: Frame<'l>,
        st: &mut WalkState,
        failure: &Failure,
    ) -> Result<(), ()> {
        let mut stack = vec![root];
        self.ask_ahead(&mut stack, st);
        while let Some(top) = stack.last_mut() {
            let step = match &mut top.rest {
                Rest::Layout(children) => match children.next() {
                    Some((name, child)) => self.layout_child(&top.dir, name, child, st, failure)?,
                    None => Step::Finished,
                },
                Rest::Entries {
                    entries,
                    depth,
                    scan,
                } => match entries.next() {
                    Some(e) => {
                        *scan = scan.saturating_sub(1);
                        let at = At {
                            depth: *depth,
                            dir: Some(&mut top.attrs),
                            later: entries.as_slice(),
                        };
                        self.entry(&top.dir, at, e, st, failure)?
                    }
                    None => Step::Finished,
                },
            };
            match step {
                Step::Next => {}
                Step::Descend(frame) => {
                    if let Some(parent) = stack.last_mut() {
                        parent.attrs.close();
                    }
                    stack.push(frame);
                    self.ask_ahead(&mut stack, st);
                }
                Step::Finished => {
                    let done = stack.pop().expect("the loop holds a frame");
                    if done.leave {
                        st.send(Event::Leave)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Asks for the listings of the directories the walk will descend into
    /// next, nearest first, up to [`AHEAD_DIRS`] outstanding.
    fn ask_ahead(&self, stack: &mut [Frame<'_>], st: &mut WalkState) {
        let Some(ahead) = st.ahead else {
            return;
        };
        for frame in stack.iter_mut().rev() {
            if st.outstanding >= AHEAD_DIRS {
                return;
            }
            let Rest::Entries {
                entries,
                depth,
                scan,
            } = &mut frame.rest
            else {
                continue;
            };
            let rest = entries.as_mut_slice();
            while *scan < rest.len() && st.outstanding < AHEAD_DIRS {
                let e = &mut rest[*scan];
                *scan += 1;
                if let Ok(found) = &e.found
                    && self.descends(found, *depth, st.source_dev)
                {
                    e.ticket = Some(
                        ahead.request(frame.dir.join(e.name()), (found.seen.dev, found.seen.ino)),
                    );
                    st.outstanding += 1;
                }
            }
        }
    }

    /// Whether the walk descends into the entry `depth` levels below its
    /// source path that examining found `found` (see [`Walker::visit`]).
    fn descends(&self, found: &Found, depth: usize, source_dev: u64) -> bool {
        found.node.as_ref().is_ok_and(|n| n.kind == NodeKind::Dir)
            && !found.marked
            && !(self.one_file_system && found.seen.dev != source_dev)
            && depth < MAX_DEPTH
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
                Ok(m) => {
                    let (found, _) = self.lister.examine(&path, name, m, &mut st.names);
                    self.visit(
                        path,
                        found,
                        None,
                        At {
                            depth: 0,
                            dir: None,
                            later: &[],
                        },
                        st,
                        failure,
                    )
                }
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
        st.send(Event::Enter(node))?;
        Ok(Step::Descend(Frame {
            dir: path,
            leave: true,
            rest: Rest::Layout(child.children.iter()),
            attrs: ListedDir::new(None),
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
        let data = st.hand_over(JobSource::Command(cmd.clone()))?;
        let stamp = Stamp {
            size: 0,
            ctime_ns: 0,
            ino: 0,
            cacheable: false,
            previous: None,
            reserved: 0,
        };
        st.send(Event::File {
            path: path.to_owned(),
            node,
            stamp,
            data,
        })
    }

    /// A frame for directory `path`'s entries in name order, to visit at
    /// `depth`: the listing `ticket` asked for ahead of the walk, or made
    /// now (see [`Lister::list`]). The problems met listing it are
    /// reported now, in walk order.
    fn listing<'l>(
        &self,
        path: &Path,
        listed: Option<(u64, u64)>,
        ticket: Option<Ticket>,
        depth: usize,
        leave: bool,
        st: &mut WalkState,
    ) -> Frame<'l> {
        // Taking the listing may wait for a listing thread, or list here:
        // the assembler gets what precedes it first.
        let _ = st.flush();
        let ahead = ticket.and_then(|t| {
            st.outstanding -= 1;
            st.ahead.and_then(|a| a.take(t))
        });
        #[cfg(test)]
        if ahead.is_some() {
            self.listed_ahead
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let listing = ahead.unwrap_or_else(|| self.lister.list(path, listed, &mut st.names));
        for (p, message) in listing.errors {
            self.error(&p, message);
        }
        Frame {
            dir: path.to_owned(),
            leave,
            rest: Rest::Entries {
                entries: listing.entries.into_iter(),
                depth,
                scan: 0,
            },
            attrs: ListedDir::new(listed),
        }
    }

    /// One entry of directory `dir` (exclusions were applied when the
    /// directory was listed).
    fn entry<'l>(
        &'l self,
        dir: &Path,
        at: At<'_>,
        e: Entry,
        st: &mut WalkState,
        failure: &Failure,
    ) -> Result<Step<'l>, ()> {
        let cpath = dir.join(e.name());
        match e.found {
            Ok(found) => self.visit(cpath, found, e.ticket, at, st, failure),
            Err(err) => {
                self.give_up(e.ticket, st);
                self.error(&cpath, format!("vanished or unreadable: {err}"));
                Ok(Step::Next)
            }
        }
    }

    /// A listing asked for and not wanted after all.
    fn give_up(&self, ticket: Option<Ticket>, st: &mut WalkState) {
        if let (Some(t), Some(ahead)) = (ticket, st.ahead) {
            st.outstanding -= 1;
            ahead.cancel(t);
        }
    }

    /// A regular file: its content comes from the cache when the file is
    /// unchanged and its blobs are still indexed, else a reader reads it.
    /// `node` comes without extended attributes: a file from the cache has
    /// them read here (unless the cache knows the unchanged file has none),
    /// a file read has them read by its reader, through the descriptor it
    /// reads the content from ([`FileData::xattrs`]).
    fn file(
        &self,
        path: PathBuf,
        m: &Seen,
        mut node: Node,
        attrs: Option<&mut ListedDir>,
        later: &[Entry],
        st: &mut WalkState,
    ) -> Result<(), ()> {
        let mut stamp = Stamp {
            size: m.size,
            ctime_ns: m.ctime_ns,
            ino: m.ino,
            cacheable: true,
            previous: None,
            reserved: 0,
        };
        // Keystores are always read: their certificates' expiry is
        // recorded in every snapshot.
        let keystore = crate::source::keystore::is_keystore_name(&node.name.0)
            && stamp.size <= crate::source::keystore::MAX_KEYSTORE;
        let now = FileStamp {
            size: stamp.size,
            mtime_ns: node.mtime_ns,
            ctime_ns: stamp.ctime_ns,
            ino: stamp.ino,
        };
        // A source path that is a file has no listing: the files beside it
        // in the cache are source paths too, looked at where they are.
        // Keystores are read every time (above), so their records count as
        // changed: the bundles they are in go with them.
        let listed = attrs.is_some();
        let (hit, previous) = self.cache.map_or((None, None), |c| {
            let now = (!keystore).then_some(now);
            c.lookup_previous(path.as_os_str().as_bytes(), now, &|name| {
                if crate::source::keystore::is_keystore_name(name) {
                    None
                } else if listed {
                    listed_stamp(later, name)
                } else {
                    path.parent()
                        .and_then(|dir| stamp_at(&dir.join(OsStr::from_bytes(name))))
                }
            })
        });
        stamp.previous = previous;
        let mut cached = hit.filter(|e| self.sink.reuse(&e.content) && self.sink.reuse(&e.lists));
        // A file recorded without extended attributes and unchanged since
        // (its change time too, which setting or removing one updates)
        // still has none: no `llistxattr` per unchanged file. Others are
        // read through the listed directory; a file read has them read by
        // its reader.
        if let Some(e) = &cached
            && !e.no_xattrs
        {
            let file = (m.dev, m.ino);
            let xattrs = match (attrs, path.parent(), path.file_name()) {
                (Some(attrs), Some(dir), Some(name)) => attrs.xattrs(dir, name, file),
                // A source path that is itself a file: by its whole path,
                // with the same check.
                _ => inode_xattrs(rustix::fs::CWD, &path, file),
            };
            match xattrs {
                Some(x) => node.xattrs = x,
                // The directory or the file was replaced: the reader
                // reports it.
                None => cached = None,
            }
        }
        let data = match cached {
            Some(e) => Pending::Ready(FileData {
                content: e.content,
                bundle_offset: e.bundle_offset,
                unbundled: None,
                lists: e.lists,
                hash: e.hash,
                size: e.size,
                certificates: Vec::new(),
                looks_compressed: None,
                xattrs: None,
            }),
            None => {
                // A small file's bytes come back to the assembler: within a
                // budget, reserved in walk order (the events so far go
                // first, the assembler gives bytes back as it takes them).
                // Keystores, read every time, are never bundled: a bundle
                // must not lose a file while its neighbours keep it.
                // Small files go to the readers in batches.
                if stamp.size <= crate::format::salt::SALTED_MAX && !keystore {
                    stamp.reserved = stamp.size;
                    if !self.sink.in_flight().try_reserve(stamp.size) {
                        st.flush()?;
                        self.sink.in_flight().reserve(stamp.size);
                    }
                    st.read_small(FileSource {
                        path: path.clone(),
                        listed: (m.dev, m.ino),
                        reserved: stamp.reserved,
                    })?
                } else {
                    st.hand_over(JobSource::Path(FileSource {
                        path: path.clone(),
                        listed: (m.dev, m.ino),
                        reserved: 0,
                    }))?
                }
            }
        };
        st.send(Event::File {
            path,
            node,
            stamp,
            data,
        })
    }

    /// Visits one entry found `depth` levels below its source path, with
    /// what examining it found: a directory is entered (its frame returned
    /// to walk, from the listing `ticket` asked for if any), anything else
    /// sent on.
    fn visit<'l>(
        &'l self,
        path: PathBuf,
        found: Found,
        ticket: Option<Ticket>,
        at: At<'_>,
        st: &mut WalkState,
        failure: &Failure,
    ) -> Result<Step<'l>, ()> {
        let At {
            depth,
            dir: attrs,
            later,
        } = at;
        if failure.stopped() {
            return Err(());
        }
        if depth == 0 {
            st.source_dev = found.seen.dev;
        }
        let descends = self.descends(&found, depth, st.source_dev);
        let Found {
            seen: m,
            node,
            marked,
        } = found;
        let ticket = if descends {
            ticket
        } else {
            self.give_up(ticket, st);
            None
        };
        // A file's attributes are listed once the file cache was asked
        // whether the file has any ([`Walker::file`]).
        let node = match node {
            Ok(n) => n,
            Err(e) => {
                self.error(&path, e.to_string());
                return Ok(Step::Next);
            }
        };
        let sent = match node.kind {
            NodeKind::Dir if marked => Ok(()),
            NodeKind::Dir => {
                st.send(Event::Enter(node))?;
                if descends {
                    return Ok(Step::Descend(self.listing(
                        &path,
                        Some((m.dev, m.ino)),
                        ticket,
                        depth + 1,
                        true,
                        st,
                    )));
                } else if self.one_file_system && m.dev != st.source_dev {
                    // Another file system mounted here: the mount point
                    // stays, empty.
                } else {
                    self.error(
                        &path,
                        format!(
                            "directory nesting deeper than {MAX_DEPTH} levels; contents skipped"
                        ),
                    );
                }
                st.send(Event::Leave)
            }
            NodeKind::File => self.file(path, &m, node, attrs, later, st),
            _ => st.send(Event::Other(node)),
        };
        sent.map(|()| Step::Next)
    }
}

/// The stamp now of the regular file `name` among `later` (a directory's
/// entries in name order), if it is one.
fn listed_stamp(later: &[Entry], name: &[u8]) -> Option<FileStamp> {
    let i = later
        .binary_search_by(|e| e.name().as_bytes().cmp(name))
        .ok()?;
    match &later[i].found {
        Ok(Found {
            seen, node: Ok(n), ..
        }) if n.kind == NodeKind::File => Some(FileStamp {
            size: seen.size,
            mtime_ns: n.mtime_ns,
            ctime_ns: seen.ctime_ns,
            ino: seen.ino,
        }),
        _ => None,
    }
}

/// The stamp now of the regular file at `path` (no symlink followed), if
/// it is one.
fn stamp_at(path: &Path) -> Option<FileStamp> {
    let m = fs::symlink_metadata(path).ok()?;
    m.file_type().is_file().then(|| FileStamp {
        size: m.len(),
        mtime_ns: meta::mtime_ns(&m),
        ctime_ns: meta::ctime_ns(&m),
        ino: m.ino(),
    })
}

fn open_for_backup(path: &Path) -> std::io::Result<File> {
    let open = |flags| OpenOptions::new().read(true).custom_flags(flags).open(path);
    // O_NONBLOCK: a file swapped for a FIFO after lstat must not hang the
    // backup (it is refused below as no longer a regular file); O_NOCTTY:
    // a terminal swapped in never becomes the backup's controlling one.
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    match open(flags | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(flags),
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
    match store_stream(
        stdout,
        u64::MAX,
        tx,
        keys,
        sink,
        inspect,
        SearchAhead::Never,
        0,
    ) {
        Ok(data) => Ok(running.finish().map(|_| data)?),
        Err(why) => Err(ReadError::Aborted {
            why: Box::new(why),
            stderr: running.abort(),
        }),
    }
}

/// Reads one file: chunk, hash, and submit new chunks (a file of one chunk
/// ending within `reserved`, the bytes the walker reserved for it in the
/// small files' budget, is handed back for a bundle instead). `listed` is the
/// device and inode the walker recorded the file's metadata from: a path
/// that leads elsewhere by now (a directory on it swapped for a symlink by
/// whoever owns it) is not read, so no content is stored under another
/// file's owner and mode.
fn read_file(
    path: &Path,
    listed: (u64, u64),
    reserved: u64,
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
    let ahead = if m.len() >= AHEAD_MIN {
        SearchAhead::WhenAlone(&file)
    } else {
        SearchAhead::Never
    };
    let xattrs = meta::file_xattrs(&file);
    let mut data = store_stream(&file, m.len(), tx, keys, sink, inspect, ahead, reserved)?;
    if let Some(small) = data.unbundled.as_mut() {
        small.shares_as = bundle_owner(&m);
    }
    Ok(FileData {
        xattrs: Some(xattrs),
        ..data
    })
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

/// Regular files at least this long have their cut points searched for on
/// a third thread as well ([`chunk::Ahead`]), ahead of the reading one: the
/// search is most of the reading thread's work, and one large file alone
/// at the end of a backup would leave the other core idle.
pub const AHEAD_MIN: u64 = 64 << 20;

/// Batches of cut points [`chunk::Ahead`] may find before the chunker
/// takes them (each about [`chunk::Gear::ahead`]'s span of the file).
const AHEAD_QUEUE: usize = 64;

/// Whether a stream's cut points are searched ahead ([`chunk::Ahead`]),
/// over positional reads of the same file.
#[derive(Clone, Copy)]
enum SearchAhead<'f> {
    /// Never (command output, smaller files).
    Never,
    /// From when this is the only stream being stored on, so that the
    /// search takes a core no other reader uses (the helper costs its own
    /// copy of what it reads, and may search what the chunker searches
    /// too; among several streams, each reader keeps a core busy already).
    WhenAlone(&'f File),
    /// From the start.
    #[cfg(test)]
    Always(&'f File),
}

/// Counts one stream in its backup's count of streams being stored
/// ([`BlobSink::streams`]) while it lives: what [`SearchAhead::WhenAlone`]
/// looks at (not a result, only which thread searches).
struct StoringStream<'s>(&'s std::sync::atomic::AtomicUsize);

impl<'s> StoringStream<'s> {
    fn start(streams: &'s std::sync::atomic::AtomicUsize) -> Self {
        streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StoringStream(streams)
    }

    /// Whether no other stream of the backup is being stored.
    fn alone(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) == 1
    }
}

impl Drop for StoringStream<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Chunks, hashes and submits everything `reader` yields; `expected` is its
/// length as far as known (a file's size, `u64::MAX` for command output).
/// `ahead` says whether and when cut points are searched ahead of the
/// reading on another thread.
// The stream, where its blobs go (three), and how it is treated (three):
// grouping either would only rename them.
#[allow(clippy::too_many_arguments)]
fn store_stream(
    reader: impl std::io::Read + Send,
    expected: u64,
    tx: &Sender<RawBlob>,
    keys: &StreamKeys,
    sink: &BlobSink<'_>,
    inspect: Inspect,
    ahead: SearchAhead<'_>,
    bundle_max: u64,
) -> Result<FileData, ReadError> {
    let storing = StoringStream::start(sink.streams());
    let mut digest = Digest::new(&keys.ids, sink, tx, inspect);
    digest.bundle_max = bundle_max;
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
        // Dropped before the threads are joined (on a panic too): the
        // finder stops once its hints have no taker.
        let mut blocks = blocks;
        // The file to search ahead in, until the search starts.
        let mut search = match ahead {
            SearchAhead::Never => None,
            SearchAhead::WhenAlone(file) => Some((file, false)),
            #[cfg(test)]
            SearchAhead::Always(file) => Some((file, true)),
        };
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
                if let Some((file, now)) = search
                    && (now || storing.alone())
                {
                    search = None;
                    let (finder, hints) = keys.gear.ahead(AHEAD_QUEUE);
                    blocks.set_hints(hints);
                    s.spawn(move || {
                        finder.run(expected, |buf, at| {
                            std::os::unix::fs::FileExt::read_at(file, buf, at)
                        });
                    });
                }
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
        drop(blocks);
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
    /// A stream of one chunk ending within this many bytes is handed back
    /// for a bundle ([`FileData::unbundled`]) instead of stored on its own
    /// (0: never).
    bundle_max: u64,
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
            bundle_max: 0,
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
        // A file of one chunk (any bundle holds whole chunks, so none is
        // larger than the chunker's largest) is handed back for a bundle.
        let mut unbundled = None;
        if self.size <= self.bundle_max && self.content.is_empty() && self.held.len() == 1 {
            unbundled = self.held.pop().map(|bytes| SmallFile {
                bytes,
                shares_as: None,
            });
        }
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
            bundle_offset: None,
            unbundled,
            lists: self.lists,
            hash,
            size: self.size,
            certificates,
            looks_compressed,
            xattrs: None,
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
    for FileJob(job) in jobs {
        if failure.stopped() {
            return;
        }
        match job {
            Job::One { source, reply } => {
                let result = match &source {
                    JobSource::Path(file) => file.read(&tx, &keys, sink),
                    JobSource::Command(source) => read_command(source, &tx, &keys, sink),
                };
                let _ = reply.send(result);
            }
            Job::Small { files, reply } => {
                let mut results = Vec::with_capacity(files.len());
                for f in &files {
                    // Stopped, the batch is dropped unanswered: the
                    // assembler stops too.
                    if failure.stopped() {
                        return;
                    }
                    results.push(f.read(&tx, &keys, sink));
                }
                let _ = reply.send(results);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::Index;
    use crate::format::tree::Xattr;
    use crate::ops::backup::cache::CacheEntry;
    use crossbeam_channel::unbounded;

    /// What a reader job asks for, file by file, in order.
    fn job_sources(FileJob(job): FileJob) -> Vec<JobSource> {
        match job {
            Job::One { source, .. } => vec![source],
            Job::Small { files, .. } => files.into_iter().map(JobSource::Path).collect(),
        }
    }

    /// A tree of many directories on three levels (more than are listed
    /// ahead at once), with names that sort apart from their paths, links,
    /// special files, attributes and what the exclusions leave out.
    fn varied_tree(root: &Path) {
        for d in 0..12 {
            for e in 0..5 {
                for f in 0..3 {
                    let dir = root.join(format!("d{d}/e{e}/f{f}"));
                    fs::create_dir_all(&dir).unwrap();
                    for name in ["a", "a.txt", "a-b", "b.skip", "z"] {
                        fs::write(dir.join(name), format!("{d}{e}{f}{name}")).unwrap();
                    }
                }
                fs::write(root.join(format!("d{d}/e{e}.txt")), b"x").unwrap();
            }
        }
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a.txt"), b"file beside a directory").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
        fs::hard_link(root.join("a.txt"), root.join("a/hard")).unwrap();
        fs::create_dir_all(root.join("marked/inside")).unwrap();
        fs::write(root.join("marked/.nobackup"), b"").unwrap();
        fs::create_dir_all(root.join("c.skip/inside")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let _ = xattr::set(root.join("d3/e1/f0/a"), "user.vault-test", b"v");
        let _ = xattr::set(root.join("d3"), "user.vault-test", b"dir");
    }

    /// Everything a walk of `paths` tells the assembler and the readers, in
    /// order, and the errors it reported, with `listers` threads listing
    /// ahead.
    /// (Directories above the parent of the source paths are left out of
    /// the events: other tests change them meanwhile.)
    fn walk_record(paths: &[PathBuf], listers: usize) -> (Vec<String>, Vec<String>, usize) {
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let errors = Mutex::new(Vec::new());
        let excludes = ["*.skip".to_owned(), "**/d4/e2".to_owned()];
        let walker = Walker::new(paths, &[], &excludes, None, &sink, &errors)
            .unwrap()
            .exclude_if_present(&[".nobackup".to_owned()])
            .one_file_system(true)
            .listers(listers);
        let (ev_tx, ev_rx) = unbounded();
        let (job_tx, job_rx) = unbounded();
        walker.walk(ev_tx, job_tx, &Failure::default());
        let mut out: Vec<String> = ev_rx
            .iter()
            .flatten()
            .map(|e| match e {
                Event::Enter(n) => format!("enter {n:?}"),
                Event::Leave => "leave".to_owned(),
                Event::Other(n) => format!("other {n:?}"),
                Event::File {
                    path,
                    node,
                    stamp,
                    data,
                } => format!(
                    "file {} {node:?} {} {} {} {} {:?} {}",
                    path.display(),
                    stamp.size,
                    stamp.ctime_ns,
                    stamp.ino,
                    stamp.cacheable,
                    stamp.previous,
                    !matches!(data, Pending::Ready(_))
                ),
            })
            .collect();
        let above = paths[0].components().count() - 3;
        assert!(out[..above].iter().all(|e| e.starts_with("enter ")));
        out.drain(..above);
        out.truncate(out.len() - above);
        out.extend(job_rx.iter().flat_map(job_sources).map(|j| match j {
            JobSource::Path(f) => format!("read {} {:?}", f.path.display(), f.listed),
            JobSource::Command(_) => "command".to_owned(),
        }));
        let ahead = walker.listed_ahead.into_inner();
        let errors = errors.into_inner().unwrap();
        let errors = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (out, errors, ahead)
    }

    #[test]
    fn a_walk_listed_ahead_on_threads_tells_exactly_what_a_walk_in_turn_does() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        varied_tree(&src);
        let paths = [src.clone(), dir.path().join("missing")];
        let (want, want_errors, ahead) = walk_record(&paths, 0);
        assert_eq!(ahead, 0);
        let files = want.iter().filter(|e| e.starts_with("file ")).count();
        // d4/e2 left out whole, and a.txt with its hard link.
        assert_eq!(files, 12 * 5 * (3 * 4 + 1) - 3 * 4 + 2);
        assert!(want.iter().any(|e| e.contains("hardlink: Some")));
        assert!(
            !want
                .iter()
                .any(|e| e.contains("skip") || e.contains("inside"))
        );
        assert!(
            want.iter()
                .any(|e| e.starts_with("other ") && e.contains("Fifo"))
        );
        assert_eq!(want_errors.len(), 1, "{want_errors:?}");
        let dirs = want.iter().filter(|e| e.starts_with("enter ")).count();
        for listers in [1, 2, 3, 1, 2, 3] {
            let (got, errors, ahead) = walk_record(&paths, listers);
            if let Some(i) = (0..want.len().max(got.len())).find(|&i| got.get(i) != want.get(i)) {
                panic!(
                    "{listers} listing threads: at {i}: {:?} instead of {:?}",
                    got.get(i),
                    want.get(i)
                );
            }
            assert_eq!(errors, want_errors);
            // Most directories were listed ahead (the rest were taken back
            // from threads holding as much as they may).
            assert!(ahead > 0 && ahead < dirs, "{ahead} of {dirs}");
        }
    }

    #[test]
    fn a_walk_that_stops_early_stops_its_listing_threads() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        varied_tree(&src);
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let errors = Mutex::new(Vec::new());
        let paths = [src];
        let walker = Walker::new(&paths, &[], &[], None, &sink, &errors)
            .unwrap()
            .listers(2);
        for stop_after in [0, 1, 10, 100] {
            let (ev_tx, ev_rx) = bounded(1);
            let (job_tx, _job_rx) = unbounded();
            std::thread::scope(|s| {
                let walk = s.spawn(|| walker.walk(ev_tx, job_tx, &Failure::default()));
                let seen = ev_rx.iter().flatten().take(stop_after).count();
                drop(ev_rx);
                walk.join().unwrap();
                assert_eq!(seen, stop_after);
            });
        }
        // A failure elsewhere stops it too.
        let failure = Failure::default();
        failure.halt();
        let (ev_tx, ev_rx) = unbounded();
        let (job_tx, _job_rx) = unbounded();
        walker.walk(ev_tx, job_tx, &failure);
        assert!(ev_rx.iter().flatten().count() < 10);
    }

    #[test]
    fn the_walk_hands_its_events_over_in_batches_and_before_it_waits_for_the_readers() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        varied_tree(&src);
        let flat = dir.path().join("flat");
        fs::create_dir(&flat).unwrap();
        for i in 0..1000 {
            fs::write(flat.join(format!("f{i:04}")), b"x").unwrap();
        }
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let errors = Mutex::new(Vec::new());
        let wait = std::time::Duration::from_secs(10);
        // Like the assembler with one reader that takes a file's job only
        // once the assembler has the file's event, and room for one job:
        // a walk keeping the event of the job it queued last while it
        // waits for room for the next would wait for ever.
        let paths = [src];
        let walker = Walker::new(&paths, &[], &[], None, &sink, &errors).unwrap();
        let (ev_tx, ev_rx) = bounded(4);
        let (job_tx, job_rx) = bounded(1);
        let mut files = 0;
        // Files of jobs taken and not matched with their events yet.
        let mut queued = std::collections::VecDeque::new();
        std::thread::scope(|s| {
            s.spawn(|| walker.walk(ev_tx, job_tx, &Failure::default()));
            // Dropped on a panic here, so the walk stops and the test ends.
            let (ev_rx, job_rx) = (ev_rx, job_rx);
            loop {
                let batch = match ev_rx.recv_timeout(wait) {
                    Ok(b) => b,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    Err(e) => panic!("the walk holds events while it waits: {e}"),
                };
                assert!(!batch.is_empty() && batch.len() <= EVENT_BATCH);
                for e in batch {
                    if let Event::File { path, .. } = e {
                        files += 1;
                        if queued.is_empty() {
                            let job = job_rx.recv_timeout(wait).expect("the file's job");
                            queued.extend(job_sources(job));
                        }
                        let source = queued.pop_front().expect("a job holds a file");
                        assert!(matches!(source, JobSource::Path(f) if f.path == path));
                    }
                }
            }
        });
        assert!(files >= 12 * 5 * (3 * 5 + 1), "{files}");
        assert!(queued.is_empty());
        // A large directory: full batches, of events and of small files
        // for the readers.
        let paths = [flat];
        let walker = Walker::new(&paths, &[], &[], None, &sink, &errors).unwrap();
        let (ev_tx, ev_rx) = unbounded();
        let (job_tx, job_rx) = unbounded();
        walker.walk(ev_tx, job_tx, &Failure::default());
        let jobs: Vec<usize> = job_rx.iter().map(|j| job_sources(j).len()).collect();
        assert_eq!(jobs.iter().sum::<usize>(), 1000);
        assert!(jobs.iter().all(|n| (1..=SMALL_JOB_FILES).contains(n)));
        assert!(jobs.len() <= 1000 / 16 + 1, "{jobs:?}");
        let batches: Vec<Vec<Event>> = ev_rx.iter().collect();
        let events: usize = batches.iter().map(Vec::len).sum();
        assert!(events > 1000);
        assert!(
            batches.len() <= events.div_ceil(EVENT_BATCH) + 2,
            "{}",
            batches.len()
        );
        assert!(errors.into_inner().unwrap().is_empty());
    }

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
            .flatten()
            .map(|e| match e {
                Event::Enter(n) => format!("+{}", name(&n)),
                Event::Leave => "-".to_owned(),
                Event::Other(n) | Event::File { node: n, .. } => name(&n),
            })
            .collect()
    }

    /// The xattrs a backup records for the file `path` when the file cache
    /// holds `entry` (its blobs indexed), and whether they came with the
    /// walker's node (a file from the cache) or from the reader that read
    /// the file (through its descriptor).
    fn xattrs_recorded(path: &Path, entry: Option<&CacheEntry>) -> (Vec<Xattr>, &'static str) {
        let dir = tempfile::tempdir().unwrap();
        let repo = super::super::tests::local_repo(dir.path(), 1 << 20);
        let cache_dir = dir.path().join("cache");
        let src = path.parent().unwrap().to_path_buf();
        let paths = [src.clone()];
        let cache = FileCache::load(&cache_dir, "r", "h", &paths);
        let mut w = cache.writer().unwrap();
        let mut index = Index::compact();
        if let Some(e) = entry {
            w.add(e).unwrap();
            let blobs = e
                .content
                .iter()
                .map(|&id| crate::format::index::IndexedBlob {
                    id,
                    offset: 0,
                    length: 8,
                    raw_length: e.size as u32,
                });
            index.add_pack(&crate::format::index::IndexedPack {
                id: crate::format::id::PackId(Id([1; 32])),
                kind: BlobKind::Data,
                blobs: blobs.collect(),
            });
        }
        index.finish();
        w.finish().unwrap();
        let cache = FileCache::load(&cache_dir, "r", "h", &paths);
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let errors = Mutex::new(Vec::new());
        let walker = Walker::new(&paths, &[], &[], Some(&cache), &sink, &errors).unwrap();
        let (ev_tx, ev_rx) = unbounded();
        let (job_tx, job_rx) = unbounded();
        walker.walk(ev_tx, job_tx, &Failure::default());
        assert!(errors.into_inner().unwrap().is_empty());
        let mut files: Vec<(Node, Pending)> = ev_rx
            .iter()
            .flatten()
            .filter_map(|e| match e {
                Event::File { node, data, .. } => Some((node, data)),
                _ => None,
            })
            .collect();
        assert_eq!(files.len(), 1);
        let (node, data) = files.pop().unwrap();
        match data {
            Pending::Ready(d) => {
                assert!(d.xattrs.is_none());
                (node.xattrs, "cache")
            }
            _ => {
                // The walker left them to the reader.
                assert!(node.xattrs.is_empty());
                let job: FileJob = job_rx.try_recv().unwrap();
                let Some(JobSource::Path(file)) = job_sources(job).pop() else {
                    panic!("a file job")
                };
                let (tx, _rx) = unbounded();
                let keys = StreamKeys::new(&repo);
                let read = file
                    .read(&tx, &keys, &sink)
                    .map_err(|e| e.to_string())
                    .unwrap();
                (read.xattrs.unwrap(), "read")
            }
        }
    }

    /// An unchanged file's attributes are read only from the inode listed,
    /// in the directory listed: a file renamed over its name, a FIFO or a
    /// symlink put there, or the directory swapped, gives `None` (the file
    /// goes to a reader, which reports it), never another inode's.
    #[test]
    fn an_unchanged_files_xattrs_come_only_from_the_inode_and_directory_listed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        fs::create_dir(&d).unwrap();
        let (f, g) = (d.join("f"), d.join("g"));
        fs::write(&f, b"f").unwrap();
        fs::write(&g, b"g").unwrap();
        if let Err(e) = xattr::set(&f, "user.vault-test", b"own") {
            println!("SKIPPED: no user xattrs here: {e}");
            return;
        }
        xattr::set(&g, "user.vault-test", b"other").unwrap();
        let id = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        let (listed_dir, listed_f, listed_g) = (id(&d), id(&f), id(&g));
        let value = |x: Option<Vec<Xattr>>| x.map(|x| x.into_iter().map(|x| x.value).collect());
        let mut at = ListedDir::new(Some(listed_dir));
        let name = std::ffi::OsStr::new("f");
        assert_eq!(
            value(at.xattrs(&d, name, listed_f)),
            Some(vec![b"own".to_vec()])
        );
        // Without a listed directory (a source path that is a file): the same.
        let mut none = ListedDir::new(None);
        assert_eq!(
            value(none.xattrs(&d, name, listed_f)),
            Some(vec![b"own".to_vec()])
        );
        // Another file renamed over the name.
        fs::rename(&g, &f).unwrap();
        assert_eq!(at.xattrs(&d, name, listed_f), None);
        assert_eq!(none.xattrs(&d, name, listed_f), None);
        assert_eq!(
            value(at.xattrs(&d, name, listed_g)),
            Some(vec![b"other".to_vec()])
        );
        // A FIFO (opened for nothing, so no wait) or a symlink in its place.
        fs::remove_file(&f).unwrap();
        nix::unistd::mkfifo(&f, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(at.xattrs(&d, name, id(&f)), None);
        fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("g", &f).unwrap();
        assert_eq!(at.xattrs(&d, name, listed_g), None);
        // The directory swapped for a symlink to another holding the file:
        // the handle is reopened and refused.
        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::write(other.join("f"), b"f").unwrap();
        xattr::set(other.join("f"), "user.vault-test", b"secret").unwrap();
        let listed_other_f = id(&other.join("f"));
        fs::rename(&d, dir.path().join("d.real")).unwrap();
        std::os::unix::fs::symlink(&other, &d).unwrap();
        at.close();
        assert_eq!(at.xattrs(&d, name, listed_other_f), None);
        assert_eq!(at.xattrs(&d, name, listed_f), None);
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
            bundle_offset: None,
            hash: Id::of_bytes(b"content"),
            no_xattrs: false,
        };
        let want = vec![Xattr {
            name: crate::format::tree::Bytes(b"user.vault-test".to_vec()),
            value: b"v".to_vec(),
        }];
        // No cache: the reader reads them with the content.
        assert_eq!(xattrs_recorded(&file, None), (want.clone(), "read"));
        // A record that saw attributes: the walker reads them.
        assert_eq!(
            xattrs_recorded(&file, Some(&recorded)),
            (want.clone(), "cache")
        );
        // A record of the same stamp without attributes is believed (the
        // attribute was set here without the record knowing; in real life
        // setting it changes the file's ctime, see below).
        let none = CacheEntry {
            no_xattrs: true,
            ..recorded.clone()
        };
        assert_eq!(xattrs_recorded(&file, Some(&none)), (Vec::new(), "cache"));
        // Any other stamp: the file is read, its attributes with it.
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
            assert_eq!(
                xattrs_recorded(&file, Some(&changed)),
                (want.clone(), "read")
            );
        }
        // Setting an attribute changes the ctime the cache compares.
        std::thread::sleep(std::time::Duration::from_millis(20));
        xattr::set(&file, "user.vault-test", b"w").unwrap();
        assert_ne!(
            meta::ctime_ns(&fs::symlink_metadata(&file).unwrap()),
            none.ctime_ns
        );
        let (got, how) = xattrs_recorded(&file, Some(&none));
        assert_eq!((got.len(), how), (1, "read"));
        assert_eq!(got[0].value, b"w");
    }

    /// The bytes a reader hands back for a bundle are at most those the
    /// walker reserved for the file in the small files' budget: a file
    /// that grew after it was listed is stored alone (nothing handed
    /// back, its blob submitted), so the budget's count stays true.
    #[test]
    fn a_small_file_grown_past_its_reservation_is_stored_alone() {
        let dir = tempfile::tempdir().unwrap();
        let repo = super::super::tests::local_repo(dir.path(), 1 << 20);
        let data = super::super::tests::noise(3_000, 11);
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let (tx, rx) = unbounded();
        let keys = StreamKeys::new(&repo);
        let store = |reserved: u64| {
            store_stream(
                &data[..],
                data.len() as u64,
                &tx,
                &keys,
                &sink,
                Inspect::Nothing,
                SearchAhead::Never,
                reserved,
            )
            .map_err(|e| e.to_string())
            .unwrap()
        };
        let within = store(3_000);
        assert_eq!(within.unbundled.map(|f| f.bytes), Some(data.clone()));
        assert!(within.content.is_empty());
        assert_eq!(rx.try_iter().count(), 0);
        // Listed (and reserved) at 100 bytes, read at 3,000.
        let grown = store(100);
        assert!(grown.unbundled.is_none());
        assert_eq!(grown.content.len(), 1);
        assert_eq!(rx.try_iter().count(), 1);
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
            SearchAhead::Never,
            0,
        )
        .map_err(|e| e.to_string())
        .unwrap();
        let submitted = rx.try_iter().count();
        // The same content read on one thread: the same ids, nothing new.
        let one = store_stream(
            &data[..],
            0,
            &tx,
            &keys,
            &sink,
            Inspect::Head,
            SearchAhead::Never,
            0,
        )
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
    fn a_large_file_whose_cut_points_are_searched_ahead_is_stored_as_in_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let repo = super::super::tests::local_repo(dir.path(), 1 << 20);
        // Long enough for several runs searched ahead; a stretch of zeros
        // (chunks of the largest size, no cut point of a run to meet) and a
        // repeated stretch.
        let mut data = super::super::tests::noise(SPLIT_MIN as usize + (13 << 20), 11);
        data[9 << 20..(9 << 20) + 300_000].fill(0);
        let (a, b) = data.split_at_mut(5 << 20);
        b[..1 << 20].copy_from_slice(&a[..1 << 20]);
        let path = dir.path().join("large");
        fs::write(&path, &data).unwrap();
        let index = Index::compact();
        let stats = super::super::Stats::default();
        let sink = BlobSink::new(&index, &stats);
        let (tx, rx) = unbounded();
        let keys = StreamKeys::new(&repo);
        let store = |ahead: bool| {
            let file = File::open(&path).unwrap();
            let ahead = if ahead {
                SearchAhead::Always(&file)
            } else {
                SearchAhead::Never
            };
            store_stream(
                &file,
                data.len() as u64,
                &tx,
                &keys,
                &sink,
                Inspect::Nothing,
                ahead,
                0,
            )
            .map_err(|e| e.to_string())
            .unwrap()
        };
        let searched = store(true);
        assert!(rx.try_iter().count() > 0);
        let alone = store(false);
        // Nothing new: the same chunks.
        assert_eq!(rx.try_iter().count(), 0);
        assert!(searched.content == alone.content && searched.lists == alone.lists);
        assert_eq!((searched.hash, searched.size), (alone.hash, alone.size));
        assert_eq!(searched.hash, Id::of_bytes(&data));
        let ids = repo.keys().blob_ids();
        let seed = chunk::gear_seed(repo.keys().chunk_key());
        let want: Vec<BlobId> = chunk::chunks(&data[..], &repo.config().chunker, seed)
            .map(|c| ids.unsalted(&c.unwrap()))
            .collect();
        assert!(searched.content == want);
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
