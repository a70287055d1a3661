//! Directory listings for the walker: a directory's entries in name order,
//! each examined through the directory's own handle and turned into its
//! tree node. The walker lists a directory itself when it reaches it, or
//! takes the listing a few threads made ahead of it ([`Ahead`]): the same
//! listing either way, so the snapshot does not depend on which.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, bounded};
use globset::GlobSet;

use crate::format::tree::{Bytes, Node, NodeKind};
use crate::source::meta::{self, Names};

/// Entries of finished listings the walker has not taken yet, past which
/// the listing threads wait (a listing under way is finished): what
/// listing ahead may hold in memory, about 1 KiB an entry.
/// (Tests hold few, so that the walker often takes requests back.)
const MAX_HELD: usize = if cfg!(test) { 48 } else { 1024 };

/// What decides how a directory is listed: which entries are left out.
pub(crate) struct Lister {
    /// Patterns matching an entry's name.
    pub name_excludes: GlobSet,
    /// Patterns matching an entry's whole path.
    pub path_excludes: GlobSet,
    /// Directories holding an entry of one of these names are left out.
    pub exclude_if_present: Vec<OsString>,
}

/// One directory's entries, in name order, and the problems met listing it
/// (reported when the walk reaches the directory, so in walk order).
pub(crate) struct Listing {
    /// The entries not excluded.
    pub entries: Vec<Entry>,
    /// Paths and what went wrong with them.
    pub errors: Vec<(PathBuf, String)>,
}

/// One entry of a [`Listing`].
pub(crate) struct Entry {
    /// Its name, unless its node holds it ([`Entry::name`]).
    name: OsString,
    /// What examining it found, or why it could not be.
    pub found: std::io::Result<Found>,
    /// Its own listing, asked of the listing threads ahead of the walk.
    pub ticket: Option<Ticket>,
}

/// What examining an entry found.
pub(crate) struct Found {
    /// What its metadata says of it (the entry itself, no symlink
    /// followed) besides its node.
    pub seen: Seen,
    /// Its tree node (a regular file's without extended attributes: the
    /// walker reads them unless the file cache knows there are none), or
    /// why it could not be made.
    pub node: std::io::Result<Node>,
    /// A directory holding one of the `--exclude-if-present` names.
    pub marked: bool,
}

/// The facts of an entry's metadata the walk needs besides its node (a
/// fraction of the whole: a listing ahead holds many).
#[derive(Clone, Copy)]
pub(crate) struct Seen {
    /// Device and inode.
    pub dev: u64,
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Change time (ns).
    pub ctime_ns: i64,
}

impl Seen {
    /// What `meta` says.
    pub fn of(meta: &fs::Metadata) -> Self {
        Seen {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            ctime_ns: meta::ctime_ns(meta),
        }
    }
}

impl Entry {
    /// Its name.
    pub fn name(&self) -> &OsStr {
        match &self.found {
            Ok(Found { node: Ok(n), .. }) => OsStr::from_bytes(&n.name.0),
            _ => &self.name,
        }
    }
}

impl Lister {
    /// Whether `dir` holds one of the `--exclude-if-present` names.
    fn has_marker(&self, dir: &Path) -> bool {
        self.exclude_if_present
            .iter()
            .any(|n| fs::symlink_metadata(dir.join(n)).is_ok())
    }

    /// Examines the entry `name` at `path` whose metadata is `meta` (a
    /// regular file's path is not looked at: it may be empty). Gives back
    /// the name unless the node took it (then an empty one).
    pub fn examine(
        &self,
        path: &Path,
        name: OsString,
        meta: fs::Metadata,
        names: &mut Names,
    ) -> (Found, OsString) {
        let (node, name) = if meta::kind_of(&meta) == NodeKind::File {
            // The node takes the name: no copy per file.
            let node = meta::plain_node(Bytes(name.into_encoded_bytes()), &meta, names);
            (Ok(node), OsString::new())
        } else {
            (meta::node_for(path, &name, &meta, names), name)
        };
        let node = node.map(|mut n| {
            if n.kind != NodeKind::Dir && meta.nlink() > 1 {
                n.hardlink = Some(format!("{}:{}", meta.dev(), meta.ino()));
            }
            n
        });
        let marked = node.as_ref().is_ok_and(|n| n.kind == NodeKind::Dir)
            && !self.exclude_if_present.is_empty()
            && self.has_marker(path);
        let found = Found {
            seen: Seen::of(&meta),
            node,
            marked,
        };
        (found, name)
    }

    /// The entries of directory `path` in name order (a directory that
    /// cannot be listed is reported and has none). `listed` is the device
    /// and inode the walker recorded of the directory itself: it is listed, and its
    /// entries are examined, through a handle to that very inode, so a
    /// directory on the path swapped for a symlink meanwhile (by a user who
    /// owns it) is reported, never listed in its place.
    pub fn list(&self, path: &Path, listed: Option<(u64, u64)>, names: &mut Names) -> Listing {
        let mut out = Listing {
            entries: Vec::new(),
            errors: Vec::new(),
        };
        let handle = match listed.map(|m| open_listed_dir(path, m)).transpose() {
            Ok(h) => h,
            Err(e) => {
                out.errors
                    .push((path.to_owned(), format!("listing directory: {e}")));
                return out;
            }
        };
        // Through the open handle (`/proc/self/fd/N` names the inode, not
        // the path), where /proc is there.
        let through = handle
            .as_ref()
            .map(|h| PathBuf::from(format!("/proc/self/fd/{}", h.as_raw_fd())))
            .filter(|p| p.exists());
        let base = through.as_deref().unwrap_or(path);
        let mut entries = match fs::read_dir(base) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some((e.file_name(), e)),
                    Err(err) => {
                        out.errors
                            .push((path.to_owned(), format!("listing directory: {err}")));
                        None
                    }
                })
                .collect::<Vec<_>>(),
            Err(e) => {
                out.errors
                    .push((path.to_owned(), format!("listing directory: {e}")));
                return out;
            }
        };
        entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        // Every entry is examined through the listing's own handle
        // (`statx` relative to it, no symlink followed: no path to resolve
        // per entry); the handle is closed before the walk descends (one
        // open directory per level would run out of descriptors in a deep
        // tree), which is safe because each subdirectory is reopened and
        // checked against what was seen here.
        out.entries.reserve(entries.len());
        for (name, e) in entries {
            if self.name_excludes.is_match(&name)
                || (!self.path_excludes.is_empty() && self.path_excludes.is_match(path.join(&name)))
            {
                continue;
            }
            let (found, name) = match e.metadata() {
                // A regular file's node needs no path (no target, no
                // attributes read here): no path made per file. Anything
                // else has its target, attributes and markers read through
                // the handle too, not by a path a swap may redirect.
                Ok(m) if m.is_file() => self.examine(Path::new(""), name, m, names),
                Ok(m) => self.examine(&base.join(&name), name, m, names),
                Err(e) => {
                    out.entries.push(Entry {
                        name,
                        found: Err(e),
                        ticket: None,
                    });
                    continue;
                }
            };
            out.entries.push(Entry {
                name,
                found: Ok(found),
                ticket: None,
            });
        }
        drop(handle);
        out
    }
}

/// Opens directory `path` without following a symlink in its last
/// component, and checks that it is the inode `listed` (device, inode).
pub(crate) fn open_listed_dir(path: &Path, listed: (u64, u64)) -> std::io::Result<File> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)?;
    let m = dir.metadata()?;
    if (m.dev(), m.ino()) != listed {
        return Err(std::io::Error::other(
            "was replaced while the backup ran (its path now leads to another directory)",
        ));
    }
    Ok(dir)
}

/// Listing ahead of the walk: the walker asks for the directories it will
/// reach next ([`Ahead::request`]), a few threads list them ([`Ahead::work`]),
/// the one the walk reaches soonest first, and the walker takes each
/// listing when it gets there ([`Ahead::take`]). One still waiting for a
/// thread then is taken back and listed by the walker itself, so the walk
/// never waits for a thread that waits for it.
pub(crate) struct Ahead<'a> {
    lister: &'a Lister,
    queue: Mutex<Queue>,
    /// Wakes the listing threads: a request, room to hold more, or the end.
    wake: Condvar,
    /// Wakes the walker waiting for a request to be taken up.
    started: Condvar,
}

/// The requests not yet taken by a listing thread, and what is held.
struct Queue {
    /// By walk order ([`walk_key`]): the first is reached first.
    jobs: BTreeMap<Vec<u8>, Job>,
    /// Entries of finished listings not yet taken by the walker.
    held: usize,
    /// The walk is over: the threads stop.
    shut: bool,
    /// Listing threads still running.
    alive: usize,
}

/// A directory to list and where its listing goes.
struct Job {
    path: PathBuf,
    listed: (u64, u64),
    reply: Sender<Listing>,
}

/// A requested listing, to take ([`Ahead::take`]) or give up
/// ([`Ahead::cancel`]) once.
pub(crate) struct Ticket {
    key: Vec<u8>,
    reply: Receiver<Listing>,
}

/// `path` as bytes that sort in walk order: `/` ranks below every byte a
/// name can hold, as NUL does (no name holds either).
fn walk_key(path: &Path) -> Vec<u8> {
    path.as_os_str()
        .as_bytes()
        .iter()
        .map(|&c| if c == b'/' { 0 } else { c })
        .collect()
}

impl<'a> Ahead<'a> {
    /// Listing ahead with `lister`'s rules, on `threads` threads that are
    /// to call [`Ahead::work`].
    pub fn new(lister: &'a Lister, threads: usize) -> Self {
        Ahead {
            lister,
            queue: Mutex::new(Queue {
                jobs: BTreeMap::new(),
                held: 0,
                shut: false,
                alive: threads,
            }),
            wake: Condvar::new(),
            started: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A listing thread holds the lock only for queue operations that
        // cannot panic; a poisoned lock still holds a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A listing thread: lists requested directories, the one first in walk
    /// order first, until [`Ahead::shut`].
    pub fn work(&self) {
        /// Counts the thread out however it ends (the walker stops waiting
        /// for threads that are gone).
        struct Alive<'g, 'a>(&'g Ahead<'a>);
        impl Drop for Alive<'_, '_> {
            fn drop(&mut self) {
                self.0.lock().alive -= 1;
                self.0.started.notify_all();
            }
        }
        let _alive = Alive(self);
        let mut names = Names::default();
        let mut q = self.lock();
        loop {
            if q.shut {
                return;
            }
            if q.held < MAX_HELD
                && let Some((_, job)) = q.jobs.pop_first()
            {
                drop(q);
                self.started.notify_all();
                let listing = self.lister.list(&job.path, Some(job.listed), &mut names);
                q = self.lock();
                q.held += listing.entries.len();
                drop(q);
                // The walker may be waiting for room to be made.
                self.started.notify_all();
                // The walker gave the ticket up (or stopped): nothing waits.
                let _ = job.reply.send(listing);
                q = self.lock();
                continue;
            }
            q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Asks for directory `path`'s listing; `listed` is the device and
    /// inode the walker recorded of it.
    pub fn request(&self, path: PathBuf, listed: (u64, u64)) -> Ticket {
        let key = walk_key(&path);
        let (tx, rx) = bounded(1);
        let job = Job {
            path,
            listed,
            reply: tx,
        };
        self.lock().jobs.insert(key.clone(), job);
        self.wake.notify_one();
        Ticket { key, reply: rx }
    }

    /// The listing `ticket` asked for, or `None` when no thread can take it
    /// up (all wait for the walker to take what they listed, or are gone):
    /// it is withdrawn and the caller lists it.
    pub fn take(&self, ticket: Ticket) -> Option<Listing> {
        let mut q = self.lock();
        while q.jobs.contains_key(&ticket.key) {
            if q.held >= MAX_HELD || q.alive == 0 || q.shut {
                q.jobs.remove(&ticket.key);
                return None;
            }
            q = self.started.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        drop(q);
        self.receive(ticket)
    }

    /// The listing of `ticket`, taken up by a thread, which sends it once
    /// listed (`None`: the thread is gone).
    fn receive(&self, ticket: Ticket) -> Option<Listing> {
        let listing = ticket.reply.recv().ok()?;
        let mut q = self.lock();
        q.held -= listing.entries.len();
        drop(q);
        self.wake.notify_all();
        Some(listing)
    }

    /// Gives `ticket` up: its listing is not wanted.
    pub fn cancel(&self, ticket: Ticket) {
        if self.lock().jobs.remove(&ticket.key).is_none() {
            drop(self.receive(ticket));
        }
    }

    /// The walk is over: the threads stop, requests left are dropped.
    pub fn shut(&self) {
        let mut q = self.lock();
        q.shut = true;
        q.jobs.clear();
        drop(q);
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_keys_sort_as_the_walk_goes() {
        let mut paths = ["/a.txt", "/a/z", "/a/b/c", "/a-b", "/a", "/b"];
        paths.sort_by_key(|p| walk_key(Path::new(p)));
        assert_eq!(paths, ["/a", "/a/b/c", "/a/z", "/a-b", "/a.txt", "/b"]);
        for w in paths.windows(2) {
            let order = crate::ops::backup::cache::walk_order(w[0].as_bytes(), w[1].as_bytes());
            assert_eq!(order, std::cmp::Ordering::Less);
        }
    }
}
