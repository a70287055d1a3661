//! `vault mount`: the repository's snapshots as a read-only FUSE file
//! system (owner key required).
//!
//! Layout of the mount point:
//! - `snapshots/ID/…`: one directory per snapshot, named by its short id
//!   (the full id where two short ids collide), holding the snapshot's tree
//!   as `vault ls` shows it (absolute paths below it);
//! - `latest`: a symbolic link to the newest snapshot's directory.
//!
//! Nothing is read until it is looked at: a directory's tree is read (and
//! verified) the first time it is listed or a name in it is looked up, and
//! a file's content blobs when its bytes are read, each blob verified
//! against its id before a byte of it is returned; the last few blobs stay
//! in memory for sequential reads, and the last packs' decrypting streams
//! stay open. Every tree read is bounded by the
//! entries its snapshot's header declares. The mount is read-only (every
//! write is refused by the kernel) and, by default, only the user who
//! mounted it can enter it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};

use crate::error::{Error, Result};
use crate::format::id::{BlobId, SnapshotId, TreeId};
use crate::format::index::Index;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::treewalk::OTHER_ENTRIES_ALLOWANCE;
use crate::repo::{BlobReader, Repository};

/// How long the kernel may cache names and attributes: a snapshot never
/// changes.
const TTL: Duration = Duration::from_secs(3600);

/// Plaintext blobs kept for sequential reads.
const CACHED_BLOBS: usize = 8;

const ROOT: u64 = 1;
const SNAPSHOTS: u64 = 2;
const LATEST: u64 = 3;

/// One inode.
enum Inode {
    /// `/` or `/snapshots`.
    Fixed { children: Vec<(Vec<u8>, u64)> },
    /// `/latest`.
    Link { target: Vec<u8> },
    /// A snapshot's root directory.
    SnapshotRoot { snapshot: usize },
    /// An entry of a snapshot's tree.
    Entry { snapshot: usize, node: Box<Node> },
}

/// The inode table: grows as the mount is browsed.
struct Table {
    inodes: HashMap<u64, Inode>,
    /// A directory's entries, once read: (name, inode).
    listings: HashMap<u64, Vec<(Vec<u8>, u64)>>,
    next: u64,
}

/// The read-only file system over some snapshots of a repository.
pub struct SnapshotFs {
    repo: &'static Repository,
    index: &'static Index,
    snapshots: Vec<(SnapshotId, Snapshot)>,
    table: Mutex<Table>,
    blobs: Mutex<Vec<(BlobId, Arc<Vec<u8>>)>>,
    /// Keeps the last packs' decrypting streams open between reads.
    reader: Mutex<BlobReader<'static>>,
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
}

impl SnapshotFs {
    /// A file system showing `snapshots` (oldest first; the last is
    /// `latest`). The repository and index live as long as the process: a
    /// mount serves until it is unmounted, then the process ends.
    pub fn new(
        repo: Repository,
        index: Index,
        snapshots: Vec<(SnapshotId, Snapshot)>,
        uid: u32,
        gid: u32,
    ) -> Result<Self> {
        repo.keys().require_owner("mounting snapshots")?;
        let repo: &'static Repository = Box::leak(Box::new(repo));
        let index: &'static Index = Box::leak(Box::new(index));
        let names = dir_names(&snapshots);
        let mut inodes = HashMap::new();
        let mut root = vec![(b"snapshots".to_vec(), SNAPSHOTS)];
        if let Some(last) = names.last() {
            let mut target = b"snapshots/".to_vec();
            target.extend_from_slice(last.as_bytes());
            inodes.insert(LATEST, Inode::Link { target });
            root.push((b"latest".to_vec(), LATEST));
        }
        let mut next = LATEST + 1;
        let mut listed = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            inodes.insert(next, Inode::SnapshotRoot { snapshot: i });
            listed.push((name.into_bytes(), next));
            next += 1;
        }
        inodes.insert(ROOT, Inode::Fixed { children: root });
        inodes.insert(SNAPSHOTS, Inode::Fixed { children: listed });
        Ok(SnapshotFs {
            repo,
            index,
            snapshots,
            table: Mutex::new(Table {
                inodes,
                listings: HashMap::new(),
                next,
            }),
            blobs: Mutex::new(Vec::new()),
            reader: Mutex::new(BlobReader::new(repo)),
            uid,
            gid,
            mounted_at: SystemTime::now(),
        })
    }

    /// The entries of directory `ino`, reading its tree the first time.
    fn children(&self, ino: u64) -> std::result::Result<Vec<(Vec<u8>, u64)>, Errno> {
        let mut t = self.table.lock().expect("the inode table lock");
        if let Some(l) = t.listings.get(&ino) {
            return Ok(l.clone());
        }
        let (snapshot, tree) = match t.inodes.get(&ino) {
            Some(Inode::Fixed { children }) => return Ok(children.clone()),
            Some(Inode::SnapshotRoot { snapshot }) => (*snapshot, self.snapshots[*snapshot].1.root),
            Some(Inode::Entry { snapshot, node }) if node.kind == NodeKind::Dir => {
                match node.subtree {
                    Some(s) => (*snapshot, s),
                    None => return Err(Errno::EIO),
                }
            }
            Some(_) => return Err(Errno::ENOTDIR),
            None => return Err(Errno::ENOENT),
        };
        let nodes = self.read_tree(snapshot, &tree).map_err(|e| {
            tracing::warn!("snapshot {}: {e}", self.snapshots[snapshot].0.short());
            Errno::EIO
        })?;
        let mut listing = Vec::with_capacity(nodes.len());
        for node in nodes {
            let n = t.next;
            t.next += 1;
            listing.push((node.name.0.clone(), n));
            t.inodes.insert(
                n,
                Inode::Entry {
                    snapshot,
                    node: Box::new(node),
                },
            );
        }
        t.listings.insert(ino, listing.clone());
        Ok(listing)
    }

    /// Reads one tree, within the entries its snapshot's header declares.
    fn read_tree(&self, snapshot: usize, tree: &TreeId) -> Result<Vec<Node>> {
        let totals = &self.snapshots[snapshot].1.totals;
        let max = totals
            .files
            .saturating_add(totals.dirs)
            .saturating_mul(2)
            .saturating_add(OTHER_ENTRIES_ALLOWANCE)
            .min(usize::MAX as u64) as usize;
        let tree = BlobReader::new(self.repo).read_tree(tree, self.index, max)?;
        Ok(tree.nodes)
    }

    /// The attributes of inode `ino`.
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let t = self.table.lock().expect("the inode table lock");
        let inode = t.inodes.get(&ino)?;
        let mut a = FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.mounted_at,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            crtime: self.mounted_at,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        };
        match inode {
            Inode::Fixed { .. } => {}
            Inode::Link { target } => {
                a.kind = FileType::Symlink;
                a.perm = 0o777;
                a.nlink = 1;
                a.size = target.len() as u64;
            }
            Inode::SnapshotRoot { snapshot } => {
                let time: SystemTime = self.snapshots[*snapshot].1.time.into();
                (a.mtime, a.ctime) = (time, time);
            }
            Inode::Entry { node, .. } => {
                let time = UNIX_EPOCH
                    .checked_add(Duration::from_nanos(node.mtime_ns.max(0) as u64))
                    .unwrap_or(UNIX_EPOCH);
                a.kind = match node.kind {
                    NodeKind::File => FileType::RegularFile,
                    NodeKind::Dir => FileType::Directory,
                    NodeKind::Symlink => FileType::Symlink,
                    NodeKind::Fifo => FileType::NamedPipe,
                    NodeKind::Chardev => FileType::CharDevice,
                    NodeKind::Blockdev => FileType::BlockDevice,
                    NodeKind::Socket => FileType::Socket,
                };
                a.size = match node.kind {
                    NodeKind::File => node.size,
                    NodeKind::Symlink => node.target.as_ref().map_or(0, |t| t.0.len() as u64),
                    _ => 0,
                };
                a.blocks = a.size.div_ceil(512);
                // Set-id bits never travel through a mount.
                a.perm = (node.mode & 0o1777) as u16;
                a.nlink = if node.kind == NodeKind::Dir { 2 } else { 1 };
                (a.uid, a.gid) = (node.uid, node.gid);
                (a.mtime, a.ctime, a.atime) = (time, time, time);
                a.rdev = node.rdev.unwrap_or(0) as u32;
            }
        }
        Some(a)
    }

    /// The file entry of inode `ino`.
    fn file(&self, ino: u64) -> std::result::Result<Node, Errno> {
        let t = self.table.lock().expect("the inode table lock");
        match t.inodes.get(&ino) {
            Some(Inode::Entry { node, .. }) if node.kind == NodeKind::File => Ok((**node).clone()),
            Some(Inode::Entry { node, .. }) if node.kind == NodeKind::Dir => Err(Errno::EISDIR),
            Some(_) => Err(Errno::EINVAL),
            None => Err(Errno::ENOENT),
        }
    }

    /// A content blob's plaintext, verified, from the small cache or the
    /// repository.
    fn blob(&self, id: &BlobId) -> Result<Arc<Vec<u8>>> {
        {
            let cache = self.blobs.lock().expect("the blob cache lock");
            if let Some((_, b)) = cache.iter().find(|(i, _)| i == id) {
                return Ok(b.clone());
            }
        }
        let bytes = Arc::new(
            self.reader
                .lock()
                .expect("the blob reader lock")
                .read_indexed(id, self.index)?,
        );
        let mut cache = self.blobs.lock().expect("the blob cache lock");
        if cache.len() >= CACHED_BLOBS {
            cache.remove(0);
        }
        cache.push((*id, bytes.clone()));
        Ok(bytes)
    }

    /// Up to `size` bytes of `node`'s content from `offset`.
    fn read_file(&self, node: &Node, offset: u64, size: u32) -> Result<Vec<u8>> {
        let end = offset.saturating_add(u64::from(size)).min(node.size);
        if node.size <= crate::format::salt::SALTED_MAX {
            return self.read_small_file(node, offset, end);
        }
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut start = 0u64;
        for id in &node.content {
            if start >= end {
                break;
            }
            let len = u64::from(self.index.agreed_raw_length(id).ok_or_else(|| {
                Error::format(
                    format!("blob {id}"),
                    "not indexed, or indexed with two lengths",
                )
            })?);
            let stop = start + len;
            if stop > offset {
                let blob = self.blob(id)?;
                if blob.len() as u64 != len {
                    return Err(Error::format(
                        format!("blob {id}"),
                        "length differs from the index",
                    ));
                }
                let from = offset.saturating_sub(start) as usize;
                let to = (end.min(stop) - start) as usize;
                out.extend_from_slice(&blob[from..to]);
            }
            start = stop;
        }
        Ok(out)
    }
}

impl SnapshotFs {
    /// Bytes `offset..end` of a small file: its blobs are salted in format
    /// 3, and the index records their lengths only rounded up, so the whole
    /// file is read (at most [`SALTED_MAX`](crate::format::salt::SALTED_MAX)
    /// bytes) and its size checked against the snapshot's.
    fn read_small_file(&self, node: &Node, offset: u64, end: u64) -> Result<Vec<u8>> {
        let mut whole = Vec::with_capacity(node.size as usize);
        if let (Some(range), [id]) = (node.slice(), node.content.as_slice()) {
            // A bundled file: its bytes in the bundle (none when the bundle
            // is shorter than the tree claims, which the size check reports).
            whole.extend_from_slice(self.blob(id)?.get(range).unwrap_or_default());
        } else {
            for id in &node.content {
                whole.extend_from_slice(&self.blob(id)?);
                if whole.len() as u64 > node.size {
                    break;
                }
            }
        }
        if whole.len() as u64 != node.size {
            return Err(Error::format(
                format!("file of {} bytes", node.size),
                "its blobs hold a different number of bytes",
            ));
        }
        let from = offset.min(end) as usize;
        Ok(whole[from..end as usize].to_vec())
    }
}

/// The directory name of each snapshot: its short id, or its full id
/// where two short ids collide.
fn dir_names(snapshots: &[(SnapshotId, Snapshot)]) -> Vec<String> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for (id, _) in snapshots {
        *count.entry(id.short()).or_default() += 1;
    }
    snapshots
        .iter()
        .map(|(id, _)| {
            if count[&id.short()] == 1 {
                id.short()
            } else {
                id.to_hex()
            }
        })
        .collect()
}

/// Extended attributes the mount shows: all but `security.*` (file
/// capabilities, SELinux labels), withheld as set-id bits are, so that
/// copying a file out of the mount (`cp -a`) grants nothing.
fn shown_xattrs(node: &Node) -> impl Iterator<Item = &crate::format::tree::Xattr> {
    node.xattrs
        .iter()
        .filter(|x| !x.name.0.starts_with(b"security."))
}

/// Replies `data`, or its size when the caller asked for the size
/// (`size` 0), or ERANGE when it does not fit.
fn reply_sized(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl SnapshotFs {
    /// The xattrs of inode `ino` (names and values) as shown, or None for
    /// an unknown inode; the mount's own directories have none.
    fn xattrs(&self, ino: u64) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.table.lock().expect("the inode table lock");
        Some(match t.inodes.get(&ino)? {
            Inode::Entry { node, .. } => shown_xattrs(node)
                .map(|x| (x.name.0.clone(), x.value.clone()))
                .collect(),
            _ => Vec::new(),
        })
    }
}

impl Filesystem for SnapshotFs {
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            None => reply.error(Errno::ENOENT),
            Some(x) => match x.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
                Some((_, value)) => reply_sized(reply, size, value),
                None => reply.error(Errno::NO_XATTR),
            },
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino.0) {
            None => reply.error(Errno::ENOENT),
            Some(x) => {
                let mut names = Vec::new();
                for (n, _) in &x {
                    names.extend_from_slice(n);
                    names.push(0);
                }
                reply_sized(reply, size, &names);
            }
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.children(parent.0).map(|c| {
            c.into_iter()
                .find(|(n, _)| n.as_slice() == name.as_bytes())
                .map(|(_, ino)| ino)
        });
        match found {
            Ok(Some(ino)) => match self.attr(ino) {
                Some(a) => reply.entry(&TTL, &a, Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let t = self.table.lock().expect("the inode table lock");
        match t.inodes.get(&ino.0) {
            Some(Inode::Link { target }) => reply.data(target),
            Some(Inode::Entry { node, .. }) if node.kind == NodeKind::Symlink => {
                reply.data(node.target.as_ref().map_or(&[][..], |t| &t.0))
            }
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.file(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let node = match self.file(ino.0) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        match self.read_file(&node, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => {
                tracing::warn!("{}: {e}", crate::format::escape::escape_bytes(&node.name.0));
                reply.error(Errno::EIO)
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino.0) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        let mut all = vec![
            (b".".to_vec(), ino.0, FileType::Directory),
            (b"..".to_vec(), ino.0, FileType::Directory),
        ];
        for (name, child) in children {
            let kind = self.attr(child).map_or(FileType::RegularFile, |a| a.kind);
            all.push((name, child, kind));
        }
        for (i, (name, child, kind)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(
                INodeNo(child),
                (i + 1) as u64,
                kind,
                OsStr::from_bytes(&name),
            ) {
                break;
            }
        }
        reply.ok();
    }
}
