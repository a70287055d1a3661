//! The tree assembler: consumes the walker's events in order and builds one
//! tree blob per directory, bottom-up, awaiting each file's content in walk
//! order and writing the next file cache as the files go by. Small files
//! read in one directory are stored together, in bundles of at most
//! [`BUNDLE_MAX`] bytes, in walk order.

use std::path::PathBuf;
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender};

use super::CompressedOutput;
use super::cache::{CacheEntry, CacheWriter};
use super::changes;
use super::pipeline::{BlobSink, Failure, RawBlob};
use super::shelf::{Shelf, ShelfKey};
use super::walk::{self, Event, FileData, Stamp};
use crate::error::{Error, Result};
use crate::format::id::{BlobId, TreeId};
use crate::format::pack::BlobKind;
use crate::format::salt::BlobIds;
use crate::format::snapshot::{CertInfo, InputError, Totals};
use crate::format::tree::{BUNDLE_MAX, Node, NodeKind, Tree};
use crate::repo::Repository;

/// What the assembler hands back once every event is consumed.
pub struct Assembled {
    /// The root tree.
    pub root: TreeId,
    /// Files, directories and bytes seen.
    pub totals: Totals,
    /// Certificates found in keystore files, sorted, without duplicates.
    pub certificates: Vec<CertInfo>,
    /// Command outputs that looked already compressed.
    pub compressed_outputs: Vec<CompressedOutput>,
    /// How many files are new, changed, unchanged (with
    /// [`FileRecords::list_changes`]).
    pub changes: Option<changes::ChangeCounts>,
}

/// What the assembler records about each file besides its tree entry.
pub struct FileRecords<'w> {
    /// The next file cache and the time after which files are too fresh
    /// to be remembered.
    pub next_cache: Option<(&'w mut CacheWriter, i64)>,
    /// Where each file's change goes, when listing.
    pub list_changes: Option<changes::ChangeList>,
}

/// Consumes walk events in order and builds one tree blob per directory,
/// bottom-up. File results are awaited in walk order.
pub fn assemble(
    events: Receiver<Vec<Event>>,
    raw_tx: &Sender<RawBlob>,
    repo: &Repository,
    sink: &BlobSink<'_>,
    errors: &Mutex<Vec<InputError>>,
    failure: &Failure,
    records: FileRecords<'_>,
) -> Result<Assembled> {
    // Gone, the assembler frees the walker from waiting on the budget.
    struct Close<'s>(&'s super::inflight::InFlight);
    impl Drop for Close<'_> {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let _close = Close(sink.in_flight());
    let mut a = Assembler {
        raw_tx,
        repo,
        sink,
        errors,
        next_cache: records.next_cache,
        changes: records.list_changes.map(|l| (l, Default::default())),
        stack: vec![(None, Vec::new())],
        ids: repo.keys().blob_ids(),
        bundle: Bundle::default(),
        shelf: Default::default(),
        bundle_max: BUNDLE_MAX.min(u64::from(repo.config().chunker.max_size)) as usize,
        certificates: Vec::new(),
        compressed_outputs: Vec::new(),
        totals: Totals::default(),
        batch: Vec::new().into_iter(),
    };
    for event in events.iter().flatten() {
        match event {
            Event::Enter(node) => {
                a.seal_bundle()?;
                a.stack.push((Some(node), Vec::new()));
            }
            Event::Leave => a.leave()?,
            Event::Other(node) => a.push(node),
            Event::File {
                path,
                node,
                stamp,
                data,
            } => a.file(path, node, stamp, data)?,
        }
        if failure.stopped() {
            return Err(cancelled());
        }
    }
    a.finish()
}

/// Whether a file's stamp can be trusted for the next backup: its size is
/// what was read, and neither time is within the last second before the
/// backup started (`fresh_ns`): a change in the same tick would not show.
fn trusted(node: &Node, stamp: &Stamp, size: u64, fresh_ns: i64) -> bool {
    size == stamp.size && node.mtime_ns < fresh_ns && stamp.ctime_ns < fresh_ns
}

fn cancelled() -> Error {
    Error::Cancelled {
        operation: "backup",
    }
}

/// The assembler's state between events.
struct Assembler<'a, 'c> {
    raw_tx: &'a Sender<RawBlob>,
    repo: &'a Repository,
    sink: &'a BlobSink<'a>,
    errors: &'a Mutex<Vec<InputError>>,
    /// The cache being written, and the time after which files are too
    /// fresh to remember.
    next_cache: Option<(&'c mut CacheWriter, i64)>,
    /// Where the change list goes and its counts so far, when asked for.
    changes: Option<(changes::ChangeList, changes::ChangeCounts)>,
    /// One frame per open directory (the root's has no node): its entry
    /// and the entries assembled in it so far.
    stack: Vec<(Option<Node>, Vec<Node>)>,
    /// Names the bundles.
    ids: BlobIds,
    /// The bundle being filled with the current directory's small files.
    bundle: Bundle,
    /// Small files stored in this run's bundles so far, by content and
    /// owner ([`Shelf`]).
    shelf: Shelf,
    /// Its largest size: [`BUNDLE_MAX`], or the chunker's largest chunk
    /// where that is smaller (no data blob may be larger).
    bundle_max: usize,
    certificates: Vec<CertInfo>,
    compressed_outputs: Vec<CompressedOutput>,
    totals: Totals,
    /// The results of the batch of small files being taken, those not
    /// taken yet (see [`walk::Pending::BatchStart`]).
    batch: std::vec::IntoIter<walk::ReadResult>,
}

/// Small files of the directory being assembled, stored together once
/// the next would not fit, or the directory ends (or a subdirectory
/// starts): one compression frame, index entry and blob id for all of
/// them.
#[derive(Default)]
struct Bundle {
    /// Their bytes back to back.
    bytes: Vec<u8>,
    /// Each one's place among the directory's entries, offset, and what
    /// the shelf knows it by (files that share).
    members: Vec<(usize, u64, Option<ShelfKey>)>,
    /// The owner of its files, while others may join them.
    owner: Option<u32>,
    /// Where each content it holds starts, by whole-file hash and size:
    /// identical files of a directory are stored once.
    holds: std::collections::HashMap<(crate::format::id::Id, u64), u64>,
    /// The files the next cache is to remember, in walk order, held while
    /// the bundle is open (an entry needs the bundle's id): path, place
    /// among the directory's entries, stamp, size.
    remember: Vec<(PathBuf, usize, Stamp, u64)>,
}

impl Assembler<'_, '_> {
    /// Stores the bundle being filled, names it in its files' entries, and
    /// writes the cache entries held for it.
    fn seal_bundle(&mut self) -> Result<()> {
        if self.bundle.members.is_empty() {
            return Ok(());
        }
        let Bundle {
            bytes,
            members,
            remember,
            ..
        } = std::mem::take(&mut self.bundle);
        let id = self.ids.salted(&bytes);
        // One file alone is stored as it always was: its own blob.
        let alone = members.len() == 1;
        self.sink
            .submit(self.raw_tx, BlobKind::Data, id, bytes, true)
            .map_err(|_| cancelled())?;
        let children = &mut self.stack.last_mut().expect("frame").1;
        for (at, offset, key) in members {
            let offset = (!alone).then_some(offset);
            children[at].content = vec![id];
            children[at].bundle_offset = offset;
            if let Some(key) = key {
                self.shelf.insert(key, (id, offset));
            }
        }
        for (path, at, stamp, size) in remember {
            let mut node = std::mem::replace(
                &mut self.stack.last_mut().expect("frame").1[at],
                Node::bare(b"-", NodeKind::File),
            );
            self.remember(path, &mut node, &stamp, size);
            self.stack.last_mut().expect("frame").1[at] = node;
        }
        Ok(())
    }

    /// Stores a directory listing as a tree blob, or gives back the
    /// listing's size when it is over the tree limit (a local user can make
    /// such a directory: some 140,000 files with 4 KiB of user xattrs each).
    fn store_tree(&self, nodes: Vec<Node>) -> Result<std::result::Result<TreeId, usize>> {
        let bytes = Tree { nodes }.to_bytes();
        if bytes.len() > crate::repo::MAX_BLOB as usize {
            return Ok(Err(bytes.len()));
        }
        let id = BlobId::keyed(self.repo.keys().chunk_key(), &bytes);
        self.sink
            .submit(self.raw_tx, BlobKind::Tree, id, bytes, false)
            .map_err(|_| cancelled())?;
        Ok(Ok(TreeId(id.0)))
    }

    /// The tree of a directory that is not the root: one over the tree
    /// limit is stored empty and reported, instead of failing the whole
    /// backup.
    fn directory_tree(&self, node: &Node, children: Vec<Node>) -> Result<TreeId> {
        let len = match self.store_tree(children)? {
            Ok(id) => return Ok(id),
            Err(len) => len,
        };
        let mut path = Vec::new();
        for n in self
            .stack
            .iter()
            .filter_map(|(n, _)| n.as_ref())
            .chain([node])
        {
            path.push(b'/');
            path.extend_from_slice(&n.name.0);
        }
        self.errors.lock().expect("errors lock").push(InputError {
            path: String::from_utf8_lossy(&path).into_owned(),
            message: format!(
                "its listing is {len} bytes, over the {} MiB tree limit; \
                 stored as an empty directory",
                crate::repo::MAX_BLOB >> 20
            ),
        });
        Ok(self.store_tree(Vec::new())?.expect("an empty tree fits"))
    }

    /// Adds an entry to the directory being assembled.
    fn push(&mut self, node: Node) {
        self.stack.last_mut().expect("frame").1.push(node);
    }

    /// The current directory is complete: store its tree and add its entry
    /// to its parent.
    fn leave(&mut self) -> Result<()> {
        self.seal_bundle()?;
        let (node, mut children) = self.stack.pop().expect("balanced enter/leave");
        children.sort_by(|a, b| a.name.cmp(&b.name));
        let mut node = node.expect("only the root has no node");
        node.subtree = Some(self.directory_tree(&node, children)?);
        self.totals.dirs += 1;
        self.stack.last_mut().expect("root frame").1.push(node);
        Ok(())
    }

    /// A regular file: awaits its content (a file that could not be read
    /// is an input error, left out), records it, and remembers it in the
    /// next cache.
    fn file(
        &mut self,
        path: PathBuf,
        mut node: Node,
        stamp: Stamp,
        data: walk::Pending,
    ) -> Result<()> {
        let from_cache = matches!(data, walk::Pending::Ready(_));
        let read = match data {
            walk::Pending::Ready(d) => Some(Ok(d)),
            walk::Pending::Waiting(rx) => rx.recv().ok(),
            walk::Pending::BatchStart(rx) => rx.recv().ok().and_then(|results| {
                self.batch = results.into_iter();
                self.batch.next()
            }),
            walk::Pending::InBatch => self.batch.next(),
        };
        // No result: the reader stopped, the backup is being cancelled.
        let Some(read) = read else {
            return Err(cancelled());
        };
        if !from_cache {
            self.sink.in_flight().release(stamp.reserved);
        }
        let data: FileData = match read {
            Ok(d) => {
                self.totals.files_read += u64::from(!from_cache);
                d
            }
            Err(e) => {
                self.errors.lock().expect("errors lock").push(InputError {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
                return Ok(());
            }
        };
        self.certificates.extend(data.certificates);
        if let Some(why) = data.looks_compressed {
            self.compressed_outputs.push(CompressedOutput {
                path: path.display().to_string(),
                why,
            });
        }
        if let Some(xattrs) = data.xattrs {
            node.xattrs = xattrs;
        }
        node.size = data.size;
        node.content = data.content;
        node.bundle_offset = data.bundle_offset;
        node.content_lists = data.lists;
        let place = self.stack.last().expect("frame").1.len();
        if let Some(small) = data.unbundled {
            // Only files of one owner that no one else may write share a
            // bundle (their bytes are compressed together), as the reader
            // found the file and the walker listed it (`walk::bundle_owner`);
            // and only files the next file cache records: the next backup
            // must know every file of a bundle to tell when one is gone
            // (`super::stale`). Others are stored alone.
            let bytes = small.bytes;
            let shares = small.shares_as == Some(node.uid)
                && node.hardlink.is_none()
                && self.recorded(&node, &stamp, data.size);
            let key = (data.hash, data.size, node.uid);
            if !shares {
                node.content = vec![self.store_alone(bytes)?];
                node.bundle_offset = None;
            } else if let Some((id, offset)) = self.shelf.get(&key) {
                // Stored earlier in this run (another directory) by the
                // same owner: named where it is.
                node.content = vec![id];
                node.bundle_offset = offset;
            } else {
                if self.bundle.bytes.len() + bytes.len() > self.bundle_max
                    || self.bundle.owner != Some(node.uid)
                {
                    self.seal_bundle()?;
                }
                // A file the bundle holds already (same owner) is named there.
                let offset = match self.bundle.holds.get(&(data.hash, data.size)) {
                    Some(&at) => at,
                    None => {
                        if self.bundle.bytes.capacity() == 0 {
                            self.bundle.bytes.reserve_exact(self.bundle_max);
                        }
                        let at = self.bundle.bytes.len() as u64;
                        self.bundle.bytes.extend_from_slice(&bytes);
                        self.bundle.holds.insert((data.hash, data.size), at);
                        at
                    }
                };
                self.bundle.members.push((place, offset, Some(key)));
                self.bundle.owner = Some(node.uid);
            }
        }
        node.hash = Some(data.hash);
        self.totals.files += 1;
        self.totals.bytes += data.size;
        // Command output has no earlier state to compare with.
        if let Some((list, counts)) = self.changes.as_mut()
            && stamp.cacheable
        {
            let change = changes::Change::of(from_cache, stamp.previous, data.hash);
            counts.add(change);
            (list.0)(&changes::FileChange {
                path: crate::format::escape::escape_bytes(path.as_os_str().as_encoded_bytes()),
                change,
            });
        }
        if stamp.cacheable {
            if self.bundle.members.is_empty() {
                self.remember(path, &mut node, &stamp, data.size);
            } else {
                self.bundle.remember.push((path, place, stamp, data.size));
            }
        }
        self.push(node);
        Ok(())
    }

    /// Whether the next file cache records the file ([`Assembler::remember`]);
    /// always when no cache is written.
    fn recorded(&self, node: &Node, stamp: &Stamp, size: u64) -> bool {
        self.next_cache
            .as_ref()
            .is_none_or(|(_, fresh_ns)| stamp.cacheable && trusted(node, stamp, size, *fresh_ns))
    }

    /// Stores one small file's bytes as a blob of its own (salted), as
    /// files were stored before bundles.
    fn store_alone(&self, bytes: Vec<u8>) -> Result<BlobId> {
        let id = self.ids.salted(&bytes);
        self.sink
            .submit(self.raw_tx, BlobKind::Data, id, bytes, true)
            .map_err(|_| cancelled())?;
        Ok(id)
    }

    /// Writes `node`'s entry into the next file cache, unless the file
    /// changed while being read (its stamp is not trustworthy) or within the
    /// last second.
    fn remember(&mut self, path: PathBuf, node: &mut Node, stamp: &Stamp, size: u64) {
        let Some((w, fresh_ns)) = self.next_cache.as_mut() else {
            return;
        };
        if !trusted(node, stamp, size, *fresh_ns) {
            return;
        }
        let entry = CacheEntry {
            path: path.into_os_string().into_encoded_bytes(),
            size: stamp.size,
            mtime_ns: node.mtime_ns,
            ctime_ns: stamp.ctime_ns,
            ino: stamp.ino,
            content: std::mem::take(&mut node.content),
            lists: std::mem::take(&mut node.content_lists),
            bundle_offset: node.bundle_offset,
            hash: node.hash.expect("set before remembering"),
            no_xattrs: node.xattrs.is_empty(),
        };
        if let Err(e) = w.add(&entry) {
            tracing::warn!("could not write the file cache {}: {e}", w.path().display());
            self.next_cache = None;
        }
        node.content = entry.content;
        node.content_lists = entry.lists;
    }

    /// Every event consumed: stores the root tree.
    fn finish(mut self) -> Result<Assembled> {
        self.seal_bundle()?;
        let (_, mut children) = self.stack.pop().expect("root frame");
        if !self.stack.is_empty() {
            return Err(cancelled());
        }
        children.sort_by(|a, b| a.name.cmp(&b.name));
        debug_assert!(
            children
                .iter()
                .all(|n| n.kind != NodeKind::File || n.hash.is_some())
        );
        let root = self.store_tree(children)?.map_err(|len| {
            Error::InvalidInput(format!(
                "the root directory's listing is {len} bytes, over the {} MiB tree limit",
                crate::repo::MAX_BLOB >> 20
            ))
        })?;
        self.certificates.sort_by(|a: &CertInfo, b: &CertInfo| {
            (&a.subject, &a.serial).cmp(&(&b.subject, &b.serial))
        });
        self.certificates.dedup();
        Ok(Assembled {
            root,
            totals: self.totals,
            certificates: self.certificates,
            compressed_outputs: self.compressed_outputs,
            changes: self.changes.map(|(_, counts)| counts),
        })
    }
}
