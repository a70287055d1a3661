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
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::format::id::{BlobId, Id};

/// First bytes of a cache stream (after decompression): records carry a
/// flags byte after their content hash, and a count of content lists after
/// their blob ids.
const MAGIC: &[u8; 8] = b"VAULTFC4";

/// First bytes of the earlier cache stream, still read: records without
/// the flags byte.
const MAGIC_V3: &[u8; 8] = b"VAULTFC3";

/// First bytes of the cache stream before that, still read: records
/// without flags or content lists.
const MAGIC_V2: &[u8; 8] = b"VAULTFC2";

/// Record flag: the file had no extended attributes when it was recorded.
const FLAG_NO_XATTRS: u8 = 1;

/// What a record of a cache stream holds besides the fields every version
/// has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Layout {
    /// A flags byte after the content hash ([`MAGIC`]).
    flags: bool,
    /// A count of content lists after the blob ids ([`MAGIC`], [`MAGIC_V3`]).
    lists: bool,
}

impl Layout {
    const CURRENT: Layout = Layout {
        flags: true,
        lists: true,
    };

    /// The layout a stream's first bytes announce.
    fn of(magic: &[u8; 8]) -> Option<Layout> {
        match magic {
            m if m == MAGIC => Some(Layout::CURRENT),
            m if m == MAGIC_V3 => Some(Layout {
                flags: false,
                lists: true,
            }),
            m if m == MAGIC_V2 => Some(Layout {
                flags: false,
                lists: false,
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
    /// Plain BLAKE3 of the content.
    pub hash: Id,
    /// The file had no extended attributes when recorded. An unchanged
    /// stamp (change time included: setting or removing an attribute
    /// changes it) means it still has none, so they need not be listed
    /// again. A record of an earlier cache version says `false`.
    pub no_xattrs: bool,
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

/// Where the stream stands: the next record not yet passed by the walk.
struct Cursor {
    reader: Option<Box<dyn Read + Send>>,
    /// What the stream's records hold.
    layout: Layout,
    next: Option<CacheEntry>,
}

impl Cursor {
    /// Reads the record after `next` (ending the stream on any problem) and
    /// gives back the record passed.
    fn advance(&mut self) -> Option<CacheEntry> {
        let previous = self.next.take();
        let Some(r) = self.reader.as_mut() else {
            return previous;
        };
        match read_entry(r, self.layout) {
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

impl FileCache {
    /// Opens the cache (a missing or unreadable cache is simply empty).
    pub fn load(dir: &Path, repo_id: &str, host: &str, paths: &[PathBuf]) -> Self {
        let (file, legacy) = cache_file(dir, repo_id, host, paths);
        let opened = File::open(&file)
            .and_then(zstd::stream::read::Decoder::new)
            .ok()
            .and_then(|d| {
                let mut r = BufReader::with_capacity(64 * 1024, d);
                let mut magic = [0u8; 8];
                r.read_exact(&mut magic).ok()?;
                let layout = Layout::of(&magic)?;
                Some((Box::new(r) as Box<dyn Read + Send>, layout))
            });
        let (reader, layout) = opened.map_or((None, Layout::CURRENT), |(r, l)| (Some(r), l));
        let mut cursor = Cursor {
            reader,
            layout,
            next: None,
        };
        cursor.advance();
        FileCache {
            file,
            legacy,
            cursor: Mutex::new(cursor),
        }
    }

    /// The entry for `path` if its size, times and inode are unchanged.
    /// Paths must be asked in walk order ([`walk_order`]): records before
    /// `path` are dropped on the way.
    #[cfg(test)]
    pub fn lookup(
        &self,
        path: &[u8],
        size: u64,
        mtime_ns: i64,
        ctime_ns: i64,
        ino: u64,
    ) -> Option<CacheEntry> {
        self.lookup_previous(path, size, mtime_ns, ctime_ns, ino).0
    }

    /// Like [`FileCache::lookup`], and also the content hash the last
    /// backup recorded for `path` whatever its stamp now (`None` when it
    /// has no record): what `backup --list` compares with.
    pub fn lookup_previous(
        &self,
        path: &[u8],
        size: u64,
        mtime_ns: i64,
        ctime_ns: i64,
        ino: u64,
    ) -> (Option<CacheEntry>, Option<Id>) {
        let mut c = self.cursor.lock().expect("file cache lock");
        loop {
            let Some(next) = c.next.as_ref() else {
                return (None, None);
            };
            match walk_order(&next.path, path) {
                Ordering::Less => drop(c.advance()),
                Ordering::Greater => return (None, None),
                Ordering::Equal => {
                    let e = c.advance().expect("the record compared above");
                    let previous = Some(e.hash);
                    let same = e.size == size
                        && e.mtime_ns == mtime_ns
                        && e.ctime_ns == ctime_ns
                        && e.ino == ino;
                    return (same.then_some(e), previous);
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
        let mut out = zstd::stream::write::Encoder::new(BufWriter::with_capacity(64 * 1024, f), 1)?;
        out.write_all(MAGIC)?;
        Ok(CacheWriter {
            out: Some(out),
            tmp,
            file: self.file.clone(),
            legacy: self.legacy.clone(),
            last: Vec::new(),
            record: Vec::new(),
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
    /// The record being encoded, written to the stream in one call (the
    /// encoder's per-call cost is paid once per record, not per field).
    record: Vec<u8>,
}

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
        self.record.clear();
        write_entry(&mut self.record, e)?;
        out.write_all(&self.record)?;
        self.last.clear();
        self.last.extend_from_slice(&e.path);
        Ok(())
    }

    /// The cache file this writer replaces when finished.
    pub fn path(&self) -> &std::path::Path {
        &self.file
    }

    /// Completes the stream and replaces the cache with it (atomically).
    pub fn finish(mut self) -> std::io::Result<()> {
        let out = self.out.take().expect("finished once");
        let f = out.finish()?.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&self.tmp, &self.file)?;
        let _ = fs::remove_file(&self.legacy);
        Ok(())
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// path_len u32 | path | size u64 | mtime i64 | ctime i64 | ino u64 |
/// hash [32] | flags u8 | blob count u32 | blob ids [32]… | list count u32 |
/// content list ids [32]… (integers little-endian; [`MAGIC_V3`] records
/// have no flags byte, [`MAGIC_V2`] records neither that nor the lists).
fn write_entry(out: &mut impl Write, e: &CacheEntry) -> std::io::Result<()> {
    out.write_all(&(e.path.len() as u32).to_le_bytes())?;
    out.write_all(&e.path)?;
    out.write_all(&e.size.to_le_bytes())?;
    out.write_all(&e.mtime_ns.to_le_bytes())?;
    out.write_all(&e.ctime_ns.to_le_bytes())?;
    out.write_all(&e.ino.to_le_bytes())?;
    out.write_all(&e.hash.0)?;
    out.write_all(&[if e.no_xattrs { FLAG_NO_XATTRS } else { 0 }])?;
    for ids in [&e.content, &e.lists] {
        out.write_all(&(ids.len() as u32).to_le_bytes())?;
        for id in ids {
            out.write_all(&id.0.0)?;
        }
    }
    Ok(())
}

/// The next record of a stream of `layout`, `None` at a clean end of the
/// stream.
fn read_entry(r: &mut impl Read, layout: Layout) -> std::io::Result<Option<CacheEntry>> {
    let mut len = [0u8; 4];
    match r.read(&mut len[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut len[1..])?,
    }
    let path_len = u32::from_le_bytes(len) as usize;
    if path_len == 0 || path_len > MAX_PATH {
        return Err(std::io::Error::other(
            "a record's path length is out of range",
        ));
    }
    let mut path = vec![0u8; path_len];
    r.read_exact(&mut path)?;
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
    Ok(Some(CacheEntry {
        path,
        size: u64_at(0),
        mtime_ns: u64_at(8) as i64,
        ctime_ns: u64_at(16) as i64,
        ino: u64_at(24),
        content,
        lists,
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
            content: (0..n).map(|i| BlobId(Id([i; 32]))).collect(),
            lists: (0..n % 2).map(|i| BlobId(Id([i + 200; 32]))).collect(),
            hash: Id([n; 32]),
            no_xattrs: n.is_multiple_of(2),
        }
    }

    fn lookup(c: &FileCache, e: &CacheEntry) -> Option<CacheEntry> {
        c.lookup(&e.path, e.size, e.mtime_ns, e.ctime_ns, e.ino)
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

    /// `e` as a record of an earlier cache version: without the flags byte
    /// (`VAULTFC3`), and without the content lists too (`VAULTFC2`).
    fn earlier_record(e: &CacheEntry, lists: bool) -> Vec<u8> {
        let mut record = Vec::new();
        write_entry(&mut record, e).unwrap();
        record.remove(4 + e.path.len() + 4 * 8 + 32);
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
        for (magic, lists) in [(MAGIC_V2, false), (MAGIC_V3, true)] {
            let e = CacheEntry {
                lists: if lists {
                    entry("/s/a", 1).lists
                } else {
                    Vec::new()
                },
                no_xattrs: true,
                ..entry("/s/a", 3)
            };
            let mut plain = magic.to_vec();
            plain.extend_from_slice(&earlier_record(&e, lists));
            fs::write(&file, zstd::bulk::compress(&plain, 1).unwrap()).unwrap();
            let c = FileCache::load(dir.path(), "r", "h", &paths);
            // Read whole; an earlier record says nothing about xattrs.
            let want = CacheEntry {
                no_xattrs: false,
                ..e.clone()
            };
            assert_eq!(lookup(&c, &e), Some(want), "{magic:?}");
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
