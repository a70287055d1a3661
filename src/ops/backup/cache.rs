//! The per-host file cache: what each file looked like at the last backup
//! (size, mtime, ctime, inode) and its blob ids, so unchanged files are
//! skipped without reading them. Losing the cache only costs speed.
//!
//! The cache is a zstd stream of binary records in walk order (depth-first,
//! names in byte order: [`walk_order`]). A backup reads it as a stream beside
//! its own walk, holding one record at a time, and writes the next one as a
//! stream too: memory stays flat however many files there are. A record
//! out of order, damaged or cut short ends the stream early: the files after
//! it are read again, nothing else.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::stale::StaleBundles;
use crate::format::id::{BlobId, Id};

/// First bytes of a cache stream (after decompression): each record's path
/// is the bytes it shares with the record before it and the rest; records
/// carry a flags byte after their content hash, a count of content lists
/// after their blob ids, and a bundled file's offset in its bundle last.
const MAGIC: &[u8; 8] = b"VAULTFC6";

/// First bytes of the cache stream before bundles, still read: no offsets.
const MAGIC_V5: &[u8; 8] = b"VAULTFC5";

/// First bytes of the cache stream before that, still read: whole paths.
const MAGIC_V4: &[u8; 8] = b"VAULTFC4";

/// First bytes of the earlier cache stream, still read: records without
/// the flags byte.
const MAGIC_V3: &[u8; 8] = b"VAULTFC3";

/// First bytes of the cache stream before that, still read: records
/// without flags or content lists.
const MAGIC_V2: &[u8; 8] = b"VAULTFC2";

/// Record flag: the file had no extended attributes when it was recorded.
const FLAG_NO_XATTRS: u8 = 1;

/// Record flag ([`MAGIC`]): the file is in a bundle; a u32 offset in it
/// ends the record.
const FLAG_BUNDLED: u8 = 2;

/// What a record of a cache stream holds besides the fields every version
/// has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Layout {
    /// A path stored as the length it shares with the previous record's
    /// and the rest ([`MAGIC`]).
    shared: bool,
    /// A flags byte after the content hash ([`MAGIC`], [`MAGIC_V4`]).
    flags: bool,
    /// A count of content lists after the blob ids ([`MAGIC`], [`MAGIC_V4`],
    /// [`MAGIC_V3`]).
    lists: bool,
    /// Bundle offsets of the records flagged [`FLAG_BUNDLED`] ([`MAGIC`]).
    bundles: bool,
}

impl Layout {
    const CURRENT: Layout = Layout {
        shared: true,
        flags: true,
        lists: true,
        bundles: true,
    };

    /// The layout a stream's first bytes announce.
    fn of(magic: &[u8; 8]) -> Option<Layout> {
        match magic {
            m if m == MAGIC => Some(Layout::CURRENT),
            m if m == MAGIC_V5 => Some(Layout {
                bundles: false,
                ..Layout::CURRENT
            }),
            m if m == MAGIC_V4 => Some(Layout {
                shared: false,
                bundles: false,
                ..Layout::CURRENT
            }),
            m if m == MAGIC_V3 => Some(Layout {
                shared: false,
                flags: false,
                lists: true,
                bundles: false,
            }),
            m if m == MAGIC_V2 => Some(Layout {
                shared: false,
                flags: false,
                lists: false,
                bundles: false,
            }),
            _ => None,
        }
    }
}

/// Longest path a record may carry.
const MAX_PATH: usize = 64 * 1024;

/// Most blob ids a record may carry (a 64 TiB file of 4 KiB chunks would
/// need more; such a file is simply read again).
const MAX_BLOBS: usize = 1 << 24;

/// What the cache remembers about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Absolute path bytes.
    pub path: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Change time (ns).
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Content blob ids (none when they are in `lists`).
    pub content: Vec<BlobId>,
    /// The content lists of a file of many blobs (tree format version 4).
    pub lists: Vec<BlobId>,
    /// Where the file is in its one content blob, a bundle of small files
    /// ([`crate::format::tree::Node::bundle_offset`]).
    pub bundle_offset: Option<u64>,
    /// Plain BLAKE3 of the content.
    pub hash: Id,
    /// The file had no extended attributes when recorded. An unchanged
    /// stamp (change time included: setting or removing an attribute
    /// changes it) means it still has none, so they need not be listed
    /// again. A record of an earlier cache version says `false`.
    pub no_xattrs: bool,
}

impl CacheEntry {
    /// What the file looked like when recorded.
    pub fn stamp(&self) -> FileStamp {
        FileStamp {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
        }
    }

    /// The bundle the file is in, if it is bundled.
    fn bundle(&self) -> Option<BlobId> {
        match self.content.as_slice() {
            [b] if self.bundle_offset.is_some() => Some(*b),
            _ => None,
        }
    }
}

/// The order the walker visits paths in: component by component, each
/// compared as bytes (so `/a/b` comes before `/a.txt`, as the walker enters
/// `a` before it reaches `a.txt`). Equal to byte order with `/` ranked
/// below every other byte (no name contains `/` or NUL).
pub fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    let rank = |c: u8| if c == b'/' { 0 } else { c };
    a.iter().map(|&c| rank(c)).cmp(b.iter().map(|&c| rank(c)))
}

/// Where the cache of one repository, host and set of source paths lives.
fn cache_file(dir: &Path, repo_id: &str, host: &str, paths: &[PathBuf]) -> (PathBuf, PathBuf) {
    let mut h = blake3::Hasher::new();
    h.update(host.as_bytes());
    for p in paths {
        h.update(b"\0");
        h.update(p.as_os_str().as_encoded_bytes());
    }
    let name = &h.finalize().to_hex()[..16];
    let dir = dir.join(repo_id);
    (
        dir.join(format!("files-{name}.v2.zst")),
        // Written by earlier versions (one JSON array, read whole).
        dir.join(format!("files-{name}.json.zst")),
    )
}

/// The reading side: the last backup's records, consumed in walk order.
pub struct FileCache {
    file: PathBuf,
    legacy: PathBuf,
    cursor: Mutex<Cursor>,
}

/// What a file keeps while it does not change: what the cache compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Change time (ns).
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
}

/// One reading of the cache stream: the next record not yet passed.
struct Records {
    reader: Option<Box<dyn Read + Send>>,
    /// What the stream's records hold.
    layout: Layout,
    next: Option<CacheEntry>,
}

impl Records {
    /// A reading of `file` from its start (`None` when it is not a cache
    /// stream this vault reads), at its first record.
    fn open(file: &Arc<File>) -> Option<Records> {
        let at = ReadAt {
            file: Arc::clone(file),
            pos: 0,
        };
        let d = zstd::stream::read::Decoder::new(at).ok()?;
        let mut r = BufReader::with_capacity(64 * 1024, d);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).ok()?;
        let layout = Layout::of(&magic)?;
        let mut records = Records {
            reader: Some(Box::new(r)),
            layout,
            next: None,
        };
        records.advance();
        Some(records)
    }

    /// Reads the record after `next` (ending the stream on any problem) and
    /// gives back the record passed.
    fn advance(&mut self) -> Option<CacheEntry> {
        let previous = self.next.take();
        let Some(r) = self.reader.as_mut() else {
            return previous;
        };
        let after = previous.as_ref().map_or(&[][..], |p| &p.path[..]);
        match read_entry(r, self.layout, after) {
            Ok(Some(e))
                if previous
                    .as_ref()
                    .is_none_or(|p| walk_order(&p.path, &e.path) == Ordering::Less) =>
            {
                self.next = Some(e)
            }
            Ok(Some(_)) => {
                tracing::debug!("file cache: a record out of order; the rest is ignored");
                self.reader = None;
            }
            Ok(None) => self.reader = None,
            Err(e) => {
                tracing::debug!("file cache: unreadable from here on: {e}");
                self.reader = None;
            }
        }
        previous
    }
}

/// Reads an open file from a position of its own (`pread`): two readings
/// of one cache file go their own ways, and both read the file that was
/// opened, whatever is renamed over its name meanwhile.
struct ReadAt {
    file: Arc<File>,
    pos: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Where the walk stands in the last backup's records, and what it knows
/// of their bundles.
struct Cursor {
    /// The records the walk asks for, in walk order.
    records: Option<Records>,
    /// A second reading of the same file that runs ahead of `records`
    /// through one run of a directory's files to judge their bundles
    /// ([`Cursor::judge_run`]), holding one record at a time.
    scout: Option<Records>,
    /// Bundles holding bytes of files deleted or changed since.
    stale: StaleBundles,
    /// The run of one directory's files whose bundles are judged: its
    /// directory (with the final `/`) and its last record's path.
    judged: Option<(Vec<u8>, Vec<u8>)>,
}

impl Cursor {
    /// The next record the walk has not passed.
    fn next(&self) -> Option<&CacheEntry> {
        self.records.as_ref()?.next.as_ref()
    }

    /// Passes the next record and gives it back.
    fn advance(&mut self) -> Option<CacheEntry> {
        self.records.as_mut()?.advance()
    }

    /// A record the walk passed without asking for it (its file is gone,
    /// or no longer a file the walk reads) or found changed: its bundle
    /// holds bytes no file has any more.
    fn gone(&mut self, e: &CacheEntry) {
        if let Some(b) = e.bundle() {
            self.stale.insert(b);
        }
    }

    /// Judges the bundles of the run of files `e` (just passed, in a
    /// bundle) belongs to, once per run: every bundled record after it
    /// among its directory's files, up to the first record of another
    /// directory (bundles end where the walk enters one), must still be
    /// there unchanged (`later` gives a later file of the directory's
    /// stamp now, by name), or its bundle is stale. Records before `e`
    /// were judged as the walk passed them. Without a second reading of
    /// the file, `e`'s bundle is judged stale (its files are read again).
    fn judge_run(&mut self, e: &CacheEntry, later: &dyn Fn(&[u8]) -> Option<FileStamp>) {
        let Some(slash) = e.path.iter().rposition(|&b| b == b'/') else {
            return;
        };
        let dir = &e.path[..=slash];
        if let Some((d, last)) = &self.judged
            && d == dir
            && walk_order(&e.path, last) != Ordering::Greater
        {
            return;
        }
        let Some(scout) = self.scout.as_mut() else {
            if let Some(b) = e.bundle() {
                self.stale.insert(b);
            }
            return;
        };
        // The scout never passed `e` before: it stops at a run's end.
        while scout
            .next
            .as_ref()
            .is_some_and(|r| walk_order(&r.path, &e.path) != Ordering::Greater)
        {
            scout.advance();
        }
        let mut last = e.path.clone();
        while let Some(r) = scout.next.as_ref() {
            let Some(name) = r.path.strip_prefix(dir).filter(|n| !n.contains(&b'/')) else {
                break;
            };
            if let Some(b) = r.bundle()
                && later(name) != Some(r.stamp())
            {
                self.stale.insert(b);
            }
            last.clone_from(&r.path);
            scout.advance();
        }
        self.judged = Some((dir.to_vec(), last));
    }
}

impl FileCache {
    /// Opens the cache (a missing or unreadable cache is simply empty).
    pub fn load(dir: &Path, repo_id: &str, host: &str, paths: &[PathBuf]) -> Self {
        let (file, legacy) = cache_file(dir, repo_id, host, paths);
        let opened = File::open(&file).ok().map(Arc::new);
        let records = opened.as_ref().and_then(Records::open);
        let scout = opened
            .as_ref()
            .filter(|_| records.is_some())
            .and_then(Records::open);
        let cursor = Cursor {
            records,
            scout,
            stale: StaleBundles::default(),
            judged: None,
        };
        FileCache {
            file,
            legacy,
            cursor: Mutex::new(cursor),
        }
    }

    /// The entry for `path` if its size, times and inode are unchanged.
    /// Paths must be asked in walk order ([`walk_order`]): records before
    /// `path` are dropped on the way.
    /// A file in a bundle is judged with its directory's later files all
    /// gone (see [`FileCache::lookup_previous`]).
    #[cfg(test)]
    pub fn lookup(&self, path: &[u8], now: FileStamp) -> Option<CacheEntry> {
        self.lookup_previous(path, Some(now), &|_| None).0
    }

    /// Like [`FileCache::lookup`], and also the content hash the last
    /// backup recorded for `path` whatever its stamp now (`None` when it
    /// has no record): what `backup --list` compares with.
    ///
    /// A file in a bundle is offered only while the bundle is not stale
    /// ([`super::stale`]): every other file recorded in it is still there
    /// unchanged. `later` gives the stamp now of a file of the same
    /// directory listed after `path`, by name (`None`: not there, or not a
    /// regular file); files before it were judged as the walk passed them.
    /// `now` is `None` for a file read whatever its stamp (a keystore): its
    /// record counts as changed.
    pub fn lookup_previous(
        &self,
        path: &[u8],
        now: Option<FileStamp>,
        later: &dyn Fn(&[u8]) -> Option<FileStamp>,
    ) -> (Option<CacheEntry>, Option<Id>) {
        let mut c = self.cursor.lock().expect("file cache lock");
        loop {
            let Some(next) = c.next() else {
                return (None, None);
            };
            match walk_order(&next.path, path) {
                Ordering::Less => {
                    let passed = c.advance().expect("the record compared above");
                    c.gone(&passed);
                }
                Ordering::Greater => return (None, None),
                Ordering::Equal => {
                    let e = c.advance().expect("the record compared above");
                    let previous = Some(e.hash);
                    if Some(e.stamp()) != now {
                        c.gone(&e);
                        return (None, previous);
                    }
                    let Some(bundle) = e.bundle() else {
                        return (Some(e), previous);
                    };
                    c.judge_run(&e, later);
                    let fresh = !c.stale.contains(&bundle);
                    return (fresh.then_some(e), previous);
                }
            }
        }
    }

    /// Starts writing the next cache (to a temporary file, mode 0600).
    pub fn writer(&self) -> std::io::Result<CacheWriter> {
        let dir = self.file.parent().expect("cache file has a parent");
        fs::create_dir_all(dir)?;
        let tmp = self.file.with_extension("tmp");
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let out = zstd::stream::write::Encoder::new(BufWriter::with_capacity(64 * 1024, f), 1)?;
        let mut pending = Vec::with_capacity(PENDING);
        pending.extend_from_slice(MAGIC);
        Ok(CacheWriter {
            out: Some(out),
            tmp,
            file: self.file.clone(),
            legacy: self.legacy.clone(),
            last: Vec::new(),
            pending,
        })
    }
}

/// The writing side: records appended in walk order, put in place by
/// [`CacheWriter::finish`]; dropped unfinished, it leaves nothing.
pub struct CacheWriter {
    out: Option<zstd::stream::write::Encoder<'static, BufWriter<File>>>,
    tmp: PathBuf,
    file: PathBuf,
    legacy: PathBuf,
    last: Vec<u8>,
    /// Records encoded and not yet compressed: the compressor takes them
    /// [`PENDING`] bytes at a time (called once per record, zstd's
    /// streaming cost the CPU of a second backup of 200,000 unchanged files
    /// twice what compressing the same bytes in blocks does).
    pending: Vec<u8>,
}

/// Bytes of records the writer gathers before compressing them.
const PENDING: usize = 128 * 1024;

impl CacheWriter {
    /// Appends one record; records out of walk order are skipped (the
    /// reader would stop there).
    pub fn add(&mut self, e: &CacheEntry) -> std::io::Result<()> {
        if !self.last.is_empty() && walk_order(&self.last, &e.path) != Ordering::Less {
            return Ok(());
        }
        if e.path.len() > MAX_PATH || e.content.len() > MAX_BLOBS || e.lists.len() > MAX_BLOBS {
            return Ok(());
        }
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        write_entry(&mut self.pending, e, &self.last);
        if self.pending.len() >= PENDING {
            out.write_all(&self.pending)?;
            self.pending.clear();
        }
        self.last.clear();
        self.last.extend_from_slice(&e.path);
        Ok(())
    }

    /// The cache file this writer replaces when finished.
    pub fn path(&self) -> &std::path::Path {
        &self.file
    }

    /// Completes the stream and replaces the cache with it (atomically).
    #[cfg(test)]
    pub fn finish(self) -> std::io::Result<()> {
        self.seal()?.put_in_place()
    }

    /// Completes the stream and syncs it, still under its temporary name:
    /// [`Sealed::put_in_place`] replaces the cache with it, dropping it
    /// leaves nothing.
    pub fn seal(mut self) -> std::io::Result<Sealed> {
        let mut out = self.out.take().expect("sealed once");
        let tmp = std::mem::take(&mut self.tmp);
        let sealed = Sealed {
            tmp,
            file: std::mem::take(&mut self.file),
            legacy: std::mem::take(&mut self.legacy),
        };
        out.write_all(&self.pending)?;
        let f = out.finish()?.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(sealed)
    }
}

/// A complete next cache under its temporary name (see
/// [`CacheWriter::seal`]).
pub struct Sealed {
    tmp: PathBuf,
    file: PathBuf,
    legacy: PathBuf,
}

impl Sealed {
    /// Replaces the cache with this one (atomically).
    pub fn put_in_place(mut self) -> std::io::Result<()> {
        fs::rename(&self.tmp, &self.file)?;
        self.tmp = PathBuf::new();
        let _ = fs::remove_file(&self.legacy);
        Ok(())
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// shared u32 | rest_len u32 | rest | size u64 | mtime i64 | ctime i64 |
/// ino u64 | hash [32] | flags u8 | blob count u32 | blob ids [32]… |
/// list count u32 | content list ids [32]… (integers little-endian). The
/// path is the first `shared` bytes of the previous record's path (`after`;
/// none for the first) followed by `rest`. Records of [`MAGIC_V4`] and
/// earlier start with path_len u32 | path instead; [`MAGIC_V3`] records have
/// no flags byte, [`MAGIC_V2`] records neither that nor the lists.
fn write_entry(out: &mut Vec<u8>, e: &CacheEntry, after: &[u8]) {
    let shared = e.path.iter().zip(after).take_while(|(a, b)| a == b).count();
    let rest = &e.path[shared..];
    out.extend_from_slice(&(shared as u32).to_le_bytes());
    out.extend_from_slice(&(rest.len() as u32).to_le_bytes());
    out.extend_from_slice(rest);
    write_fields(out, e);
}

/// A record's fields after its path, as [`MAGIC`] and [`MAGIC_V4`] have
/// them (see [`write_entry`]).
fn write_fields(out: &mut Vec<u8>, e: &CacheEntry) {
    out.extend_from_slice(&e.size.to_le_bytes());
    out.extend_from_slice(&e.mtime_ns.to_le_bytes());
    out.extend_from_slice(&e.ctime_ns.to_le_bytes());
    out.extend_from_slice(&e.ino.to_le_bytes());
    out.extend_from_slice(&e.hash.0);
    let bundled = if e.bundle_offset.is_some() {
        FLAG_BUNDLED
    } else {
        0
    };
    out.push(if e.no_xattrs { FLAG_NO_XATTRS } else { 0 } | bundled);
    for ids in [&e.content, &e.lists] {
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            out.extend_from_slice(&id.0.0);
        }
    }
    if let Some(at) = e.bundle_offset {
        out.extend_from_slice(&(at as u32).to_le_bytes());
    }
}

/// The next record of a stream of `layout`, `None` at a clean end of the
/// stream; `after` is the path of the record before it (empty for the
/// first).
fn read_entry(
    r: &mut impl Read,
    layout: Layout,
    after: &[u8],
) -> std::io::Result<Option<CacheEntry>> {
    let mut len = [0u8; 4];
    match r.read(&mut len[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut len[1..])?,
    }
    let (shared, rest_len) = if layout.shared {
        let mut rest = [0u8; 4];
        r.read_exact(&mut rest)?;
        (
            u32::from_le_bytes(len) as usize,
            u32::from_le_bytes(rest) as usize,
        )
    } else {
        (0, u32::from_le_bytes(len) as usize)
    };
    if shared > after.len() || rest_len > MAX_PATH || !(1..=MAX_PATH).contains(&(shared + rest_len))
    {
        return Err(std::io::Error::other(
            "a record's path length is out of range",
        ));
    }
    let mut path = Vec::with_capacity(shared + rest_len);
    path.extend_from_slice(&after[..shared]);
    path.resize(shared + rest_len, 0);
    r.read_exact(&mut path[shared..])?;
    let mut fixed = [0u8; 8 * 4 + 32 + 1 + 4];
    let flags_len = usize::from(layout.flags);
    let fixed = &mut fixed[..8 * 4 + 32 + flags_len + 4];
    r.read_exact(fixed)?;
    let u64_at = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&fixed[32..64]);
    let flags = if layout.flags { fixed[64] } else { 0 };
    let at = 64 + flags_len;
    let count = u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
    let content = read_ids(r, count)?;
    let lists = if layout.lists {
        let mut count = [0u8; 4];
        r.read_exact(&mut count)?;
        read_ids(r, u32::from_le_bytes(count))?
    } else {
        Vec::new()
    };
    let bundle_offset = if layout.bundles && flags & FLAG_BUNDLED != 0 {
        let mut at = [0u8; 4];
        r.read_exact(&mut at)?;
        Some(u64::from(u32::from_le_bytes(at)))
    } else {
        None
    };
    // A record no tree may hold would make the next snapshot's tree of its
    // directory unreadable: the cache is damaged from here on.
    if let Some(at) = bundle_offset
        && (content.len() != 1
            || !lists.is_empty()
            || u64_at(0) > crate::format::salt::SALTED_MAX
            || at.saturating_add(u64_at(0)) > crate::format::tree::BUNDLE_MAX)
    {
        return Err(std::io::Error::other(
            "a bundled record that is not one blob within a bundle",
        ));
    }
    Ok(Some(CacheEntry {
        path,
        size: u64_at(0),
        mtime_ns: u64_at(8) as i64,
        ctime_ns: u64_at(16) as i64,
        ino: u64_at(24),
        content,
        lists,
        bundle_offset,
        hash: Id(hash),
        no_xattrs: flags & FLAG_NO_XATTRS != 0,
    }))
}

/// `count` blob ids.
fn read_ids(r: &mut impl Read, count: u32) -> std::io::Result<Vec<BlobId>> {
    let count = count as usize;
    if count > MAX_BLOBS {
        return Err(std::io::Error::other("a record lists too many blobs"));
    }
    let mut ids = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let mut id = [0u8; 32];
        r.read_exact(&mut id)?;
        ids.push(BlobId(Id(id)));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, n: u8) -> CacheEntry {
        CacheEntry {
            path: path.as_bytes().to_vec(),
            size: n as u64 * 10,
            mtime_ns: n as i64,
            ctime_ns: n as i64 + 1,
            ino: n as u64 + 100,
            // Every third a bundled file: one blob, no lists.
            content: (0..if n % 3 == 2 { 1 } else { n })
                .map(|i| BlobId(Id([i; 32])))
                .collect(),
            lists: (0..if n % 3 == 2 { 0 } else { n % 2 })
                .map(|i| BlobId(Id([i + 200; 32])))
                .collect(),
            bundle_offset: (n % 3 == 2).then_some(u64::from(n) * 7),
            hash: Id([n; 32]),
            no_xattrs: n.is_multiple_of(2),
        }
    }

    fn lookup(c: &FileCache, e: &CacheEntry) -> Option<CacheEntry> {
        c.lookup(&e.path, e.stamp())
    }

    /// A record of a file in bundle `bundle`, at `offset`.
    fn bundled(path: &str, n: u8, bundle: u8, offset: u64) -> CacheEntry {
        CacheEntry {
            content: vec![BlobId(Id([bundle; 32]))],
            lists: Vec::new(),
            bundle_offset: Some(offset),
            ..entry(path, n)
        }
    }

    /// A cache holding `records`, written and loaded again.
    fn cache_of(dir: &Path, records: &[CacheEntry]) -> FileCache {
        let paths = [PathBuf::from("/src")];
        let c = FileCache::load(dir, "repo", "host", &paths);
        let mut w = c.writer().unwrap();
        for e in records {
            w.add(e).unwrap();
        }
        w.finish().unwrap();
        FileCache::load(dir, "repo", "host", &paths)
    }

    /// What the walker would see of `records` still there (their stamps
    /// unchanged), less `gone` and with `changed` edited.
    fn listing(records: &[CacheEntry], gone: &str, changed: &str) -> Vec<(Vec<u8>, FileStamp)> {
        records
            .iter()
            .filter(|e| e.path != gone.as_bytes())
            .map(|e| {
                let mut stamp = e.stamp();
                if e.path == changed.as_bytes() {
                    stamp.mtime_ns += 1;
                }
                (e.path.clone(), stamp)
            })
            .collect()
    }

    /// Looks up every file of `now` in walk order, the way the walker asks
    /// (a file's later siblings by name): which ones the cache offers.
    fn offered(c: &FileCache, now: &[(Vec<u8>, FileStamp)]) -> Vec<String> {
        let mut got = Vec::new();
        for (i, (path, stamp)) in now.iter().enumerate() {
            let dir = &path[..=path.iter().rposition(|&b| b == b'/').unwrap()];
            let later = |name: &[u8]| {
                now[i + 1..]
                    .iter()
                    .find(|(p, _)| p.strip_prefix(dir) == Some(name))
                    .map(|(_, s)| *s)
            };
            if c.lookup_previous(path, Some(*stamp), &later).0.is_some() {
                got.push(String::from_utf8(path.clone()).unwrap());
            }
        }
        got
    }

    /// A deleted or changed small file's bytes must not live on in its
    /// bundle: the cache offers no file of that bundle again (they are read
    /// and bundled anew), whether the file was before or after them; other
    /// bundles, and files stored alone, are offered as before.
    #[test]
    fn a_bundle_that_lost_a_file_is_offered_no_more() {
        let records = [
            bundled("/src/d/a", 1, 7, 0),
            bundled("/src/d/b", 2, 7, 10),
            entry("/src/d/c", 3),
            bundled("/src/d/e", 4, 7, 30),
            bundled("/src/d/f", 5, 8, 0),
            bundled("/src/d/s/x", 6, 9, 0),
            bundled("/src/d/z", 7, 10, 0),
            bundled("/src/z/y", 8, 11, 0),
        ];
        let all: Vec<String> = records
            .iter()
            .map(|e| String::from_utf8(e.path.clone()).unwrap())
            .collect();
        let without = |gone: &[&str]| -> Vec<String> {
            all.iter()
                .filter(|p| !gone.contains(&p.as_str()))
                .cloned()
                .collect()
        };
        let cases = [
            // Nothing changed: everything.
            ("", "", without(&[])),
            // A bundle's last file deleted: its first two are read again.
            (
                "/src/d/e",
                "",
                without(&["/src/d/a", "/src/d/b", "/src/d/e"]),
            ),
            // Its first deleted: the walk passes the record before it asks.
            (
                "/src/d/a",
                "",
                without(&["/src/d/a", "/src/d/b", "/src/d/e"]),
            ),
            // One edited: the bundle holds its earlier bytes.
            (
                "",
                "/src/d/b",
                without(&["/src/d/a", "/src/d/b", "/src/d/e"]),
            ),
            // A file stored alone changes no bundle.
            ("/src/d/c", "", without(&["/src/d/c"])),
            // Bundles end where the walk enters a directory: one there,
            // and the directory's files after it, are judged apart.
            ("/src/d/s/x", "", without(&["/src/d/s/x"])),
            ("/src/d/z", "", without(&["/src/d/z"])),
        ];
        for (gone, changed, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let c = cache_of(dir.path(), &records);
            let now = listing(&records, gone, changed);
            assert_eq!(offered(&c, &now), want, "{gone} gone, {changed} changed");
        }
    }

    #[test]
    fn walk_order_enters_a_directory_before_longer_names() {
        assert_eq!(walk_order(b"/a/b", b"/a.txt"), Ordering::Less);
        assert_eq!(walk_order(b"/a", b"/a/b"), Ordering::Less);
        assert_eq!(walk_order(b"/a/z", b"/b"), Ordering::Less);
        assert_eq!(walk_order(b"/x", b"/x"), Ordering::Equal);
        assert_eq!(walk_order(b"/a-b", b"/a/b"), Ordering::Greater);
    }

    #[test]
    fn a_cache_written_in_walk_order_is_read_back_as_a_stream() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [PathBuf::from("/src")];
        let entries = [
            entry("/src/a/b", 1),
            entry("/src/a.txt", 2),
            entry("/src/c", 0),
            entry("/src/d/e/f", 3),
            entry("/src/z", 4),
        ];
        let c = FileCache::load(dir.path(), "repo", "host", &paths);
        assert_eq!(lookup(&c, &entries[0]), None, "no cache yet");
        let mut w = c.writer().unwrap();
        for e in &entries {
            w.add(e).unwrap();
        }
        // Out of order: skipped, not written.
        w.add(&entry("/src/b", 9)).unwrap();
        w.finish().unwrap();
        let files: Vec<_> = fs::read_dir(dir.path().join("repo")).unwrap().collect();
        assert_eq!(files.len(), 1, "only the cache file, no temporary");

        let c = FileCache::load(dir.path(), "repo", "host", &paths);
        // A new file before a cached one, a cached one, a changed one, a
        // skipped one (/src/c is passed over), then the last.
        assert_eq!(lookup(&c, &entry("/src/a/a", 1)), None);
        assert_eq!(lookup(&c, &entries[0]).as_ref(), Some(&entries[0]));
        let mut changed = entries[1].clone();
        changed.mtime_ns += 1;
        assert_eq!(lookup(&c, &changed), None);
        assert_eq!(lookup(&c, &entry("/src/b", 9)), None);
        assert_eq!(lookup(&c, &entries[3]).as_ref(), Some(&entries[3]));
        assert_eq!(lookup(&c, &entries[4]).as_ref(), Some(&entries[4]));
        assert_eq!(lookup(&c, &entry("/src/zz", 1)), None);
        // Another host or path set has its own cache.
        let other = FileCache::load(dir.path(), "repo", "other", &paths);
        assert_eq!(lookup(&other, &entries[0]), None);
    }

    #[test]
    fn a_bundled_record_no_tree_may_hold_ends_the_cache_there() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [PathBuf::from("/src")];
        let good = entry("/src/a", 2);
        assert!(good.bundle_offset.is_some());
        let bad = CacheEntry {
            content: vec![BlobId(Id([1; 32])), BlobId(Id([2; 32]))],
            ..entry("/src/b", 2)
        };
        let past = CacheEntry {
            bundle_offset: Some(crate::format::tree::BUNDLE_MAX),
            ..entry("/src/c", 2)
        };
        for wrong in [bad, past] {
            let after = entry("/src/d", 1);
            let c = FileCache::load(dir.path(), "repo", "host", &paths);
            let mut w = c.writer().unwrap();
            for e in [&good, &wrong, &after] {
                w.add(e).unwrap();
            }
            w.finish().unwrap();
            let c = FileCache::load(dir.path(), "repo", "host", &paths);
            assert_eq!(lookup(&c, &good).as_ref(), Some(&good));
            assert_eq!(lookup(&c, &wrong), None);
            assert_eq!(lookup(&c, &after), None, "nothing after it is trusted");
        }
    }

    /// `e` as a record of an earlier cache version: its whole path
    /// (`VAULTFC4`), also without the flags byte (`VAULTFC3`), and without
    /// the content lists too (`VAULTFC2`).
    fn earlier_record(e: &CacheEntry, flags: bool, lists: bool) -> Vec<u8> {
        let mut record = (e.path.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&e.path);
        write_fields(&mut record, e);
        if !flags {
            record.remove(4 + e.path.len() + 4 * 8 + 32);
        }
        if !lists {
            record.truncate(record.len() - 4);
        }
        record
    }

    #[test]
    fn caches_of_the_earlier_versions_are_still_read_and_claim_no_missing_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [PathBuf::from("/s")];
        let (file, _) = cache_file(dir.path(), "r", "h", &paths);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        for (magic, flags, lists) in [
            (MAGIC_V2, false, false),
            (MAGIC_V3, false, true),
            (MAGIC_V4, true, true),
        ] {
            let e = CacheEntry {
                lists: if lists {
                    entry("/s/a", 1).lists
                } else {
                    Vec::new()
                },
                no_xattrs: true,
                bundle_offset: None,
                ..entry("/s/a", 3)
            };
            // Two records: the second's whole path shares its start with
            // the first's.
            let f = CacheEntry {
                path: b"/s/a2".to_vec(),
                ..e.clone()
            };
            let mut plain = magic.to_vec();
            plain.extend_from_slice(&earlier_record(&e, flags, lists));
            plain.extend_from_slice(&earlier_record(&f, flags, lists));
            fs::write(&file, zstd::bulk::compress(&plain, 1).unwrap()).unwrap();
            let c = FileCache::load(dir.path(), "r", "h", &paths);
            // Read whole; a record without flags says nothing about xattrs.
            let want = |e: &CacheEntry| CacheEntry {
                no_xattrs: flags,
                ..e.clone()
            };
            assert_eq!(lookup(&c, &e), Some(want(&e)), "{magic:?}");
            assert_eq!(lookup(&c, &f), Some(want(&f)), "{magic:?}");
        }
    }

    #[test]
    fn whether_a_file_had_xattrs_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [PathBuf::from("/s")];
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        let mut w = c.writer().unwrap();
        let (a, b) = (entry("/s/a", 2), entry("/s/b", 3));
        assert!(a.no_xattrs && !b.no_xattrs);
        w.add(&a).unwrap();
        w.add(&b).unwrap();
        w.finish().unwrap();
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        assert_eq!(lookup(&c, &a), Some(a));
        assert_eq!(lookup(&c, &b), Some(b));
    }

    #[test]
    fn a_record_stores_only_the_end_of_its_path_that_the_one_before_does_not_share() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [PathBuf::from("/s")];
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        let mut w = c.writer().unwrap();
        let deep = format!("/s/{}", "dir/".repeat(100));
        let entries: Vec<_> = (0..100u8)
            .map(|i| entry(&format!("{deep}f{i:03}"), 1))
            .collect();
        for e in &entries {
            w.add(e).unwrap();
        }
        w.finish().unwrap();
        let (file, _) = cache_file(dir.path(), "r", "h", &paths);
        let plain = zstd::stream::decode_all(&fs::read(&file).unwrap()[..]).unwrap();
        // Lengths, then what follows the path: times, inode, hash, flags,
        // one blob id and one content list id with their counts.
        let fields = 4 * 8 + 32 + 1 + (4 + 32) * 2;
        let first = 8 + entries[0].path.len() + fields;
        // Each next record: its last two digits (`f000` → `f001`), or three.
        let rest: usize = entries
            .windows(2)
            .map(|p| {
                let shared = p[0].path.iter().zip(&p[1].path).take_while(|(a, b)| a == b);
                8 + p[1].path.len() - shared.count() + fields
            })
            .sum();
        assert!(rest <= 99 * (8 + 2 + fields));
        assert_eq!(plain.len(), MAGIC.len() + first + rest);
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        for e in &entries {
            assert_eq!(lookup(&c, e).as_ref(), Some(e));
        }
        // A record claiming more of the path before it than there is ends
        // the stream there.
        let mut damaged = MAGIC.to_vec();
        let mut record = Vec::new();
        write_entry(&mut record, &entries[0], b"");
        damaged.extend_from_slice(&record);
        let mut record = Vec::new();
        write_entry(&mut record, &entries[1], &entries[0].path);
        record[..4].copy_from_slice(&(entries[0].path.len() as u32 + 1).to_le_bytes());
        damaged.extend_from_slice(&record);
        fs::write(&file, zstd::bulk::compress(&damaged, 1).unwrap()).unwrap();
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        assert_eq!(lookup(&c, &entries[0]).as_ref(), Some(&entries[0]));
        assert_eq!(lookup(&c, &entries[1]), None);
    }

    #[test]
    fn a_sealed_cache_replaces_the_last_only_once_put_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [PathBuf::from("/s")];
        let (old, new) = (entry("/s/a", 1), entry("/s/b", 2));
        let write = |e: &CacheEntry| {
            let mut w = FileCache::load(dir.path(), "r", "h", &paths)
                .writer()
                .unwrap();
            w.add(e).unwrap();
            w.seal().unwrap()
        };
        write(&old).put_in_place().unwrap();
        let files = || fs::read_dir(dir.path().join("r")).unwrap().count();
        assert_eq!(files(), 1);
        // Sealed (complete and synced) but dropped, as when the snapshot
        // could not be written: the last cache stays, nothing else.
        let sealed = write(&new);
        assert_eq!(files(), 2);
        drop(sealed);
        assert_eq!(files(), 1);
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        assert_eq!(lookup(&c, &old), Some(old.clone()));
        write(&new).put_in_place().unwrap();
        assert_eq!(files(), 1);
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        assert_eq!(lookup(&c, &old), None);
        assert_eq!(lookup(&c, &new), Some(new));
    }

    #[test]
    fn a_damaged_cache_only_loses_what_follows_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let paths = [PathBuf::from("/s")];
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        let mut w = c.writer().unwrap();
        let entries: Vec<_> = (0..50u8)
            .map(|i| entry(&format!("/s/f{i:03}"), i % 5))
            .collect();
        for e in &entries {
            w.add(e).unwrap();
        }
        w.finish().unwrap();
        let (file, _) = cache_file(dir.path(), "r", "h", &paths);
        let plain = zstd::stream::decode_all(&fs::read(&file).unwrap()[..]).unwrap();
        // Cut short, and with a path length out of range.
        for damaged in [plain[..plain.len() / 2].to_vec(), {
            let mut p = plain.clone();
            let at = plain.len() / 2;
            p.truncate(at);
            p.extend_from_slice(&u32::MAX.to_le_bytes());
            p.extend_from_slice(&[0; 200]);
            p
        }] {
            fs::write(&file, zstd::bulk::compress(&damaged, 1).unwrap()).unwrap();
            let c = FileCache::load(dir.path(), "r", "h", &paths);
            let found = entries.iter().filter(|e| lookup(&c, e).is_some()).count();
            assert!(found > 5 && found < 50, "{found}");
        }
        // Not a cache at all.
        fs::write(&file, b"garbage").unwrap();
        let c = FileCache::load(dir.path(), "r", "h", &paths);
        assert_eq!(lookup(&c, &entries[0]), None);
    }
}
