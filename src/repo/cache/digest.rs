//! Digests: what a command needs from every document of one kind, kept as
//! short binary records in a few files, so that a command over a long
//! history reads a handful of files instead of one entry per document and
//! parses no JSON for the documents it has seen before.
//!
//! ```text
//! <view>/digests/<name>/<segment>   one file per run that added records
//! segment:
//!   "VLTDIG01"          8 bytes, the format
//!   tag                 32 bytes: BLAKE3 keyed with the view's key over
//!                       u64::MAX (LE) ‖ len(name) (u64 LE) ‖ name ‖ body
//!   body: records, each
//!     object id         32 bytes
//!     length            u32 LE
//!     record            what the digest's owner encoded
//! ```
//!
//! A record is derived from a document exactly as read through the cache
//! (hash-checked, decrypted, signature verdict): it is as trustworthy as
//! the cache entry it came from, and tagged by the same view key (the
//! `u64::MAX` prefix keeps a segment's tag from ever matching an entry's).
//! A segment whose tag does not match is deleted, and the documents it
//! summed up are read again. Records of documents no longer listed are
//! dropped when the digest is next rewritten; a run that added records
//! writes one new segment, and once there are more than
//! [`MAX_SEGMENTS`] they are merged into one.
//!
//! A document whose record is too large to hold among the others (a
//! digest is loaded whole) can keep it as a file of its own, read only when
//! that document is wanted:
//!
//! ```text
//! <view>/digests/<name>/rec-<object id>
//!   "VLTREC01"          8 bytes, the format
//!   tag                 32 bytes: BLAKE3 keyed with the view's key over
//!                       u64::MAX - 1 (LE) ‖ len(name) (u64 LE) ‖ name ‖
//!                       object id ‖ record
//!   record
//! ```
//!
//! The prefix keeps a record's tag from matching a segment's or an entry's,
//! and the object id in it keeps a record from opening under another name.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::format::id::Id;

const MAGIC: &[u8; 8] = b"VLTDIG01";
const RECORD_MAGIC: &[u8; 8] = b"VLTREC01";
/// The names of records kept in files of their own start with this.
const RECORD_PREFIX: &str = "rec-";
const TAG: usize = 32;
/// Segments a digest may have before a run merges them.
pub const MAX_SEGMENTS: usize = 16;
/// A segment larger than this is not read (a digest of 10 M blobs is about
/// 400 MiB).
const MAX_SEGMENT: u64 = 4 << 30;

/// The records of one digest, as loaded.
#[derive(Debug, Default)]
pub struct Digest {
    name: String,
    /// The records, by object id.
    pub records: HashMap<Id, Vec<u8>>,
    segments: Vec<PathBuf>,
}

impl Digest {
    /// The digest's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn tag(key: &[u8; 32], name: &str, body: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&u64::MAX.to_le_bytes());
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(body);
    h.finalize()
}

fn record_tag(key: &[u8; 32], name: &str, id: &Id, record: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&(u64::MAX - 1).to_le_bytes());
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    h.update(&id.0);
    h.update(record);
    h.finalize()
}

fn record_path(dir: &Path, id: &Id) -> PathBuf {
    dir.join(format!("{RECORD_PREFIX}{}", id.to_hex()))
}

/// The record of document `id` kept in a file of its own in `dir` (the
/// digest's directory), if one of at most `max` bytes is there and opens; a
/// damaged one is deleted.
pub(super) fn load_record(
    dir: &Path,
    key: &[u8; 32],
    name: &str,
    id: &Id,
    max: u64,
) -> Option<Vec<u8>> {
    let path = record_path(dir, id);
    let head = RECORD_MAGIC.len() + TAG;
    // Not followed if a link, not waited on if a FIFO: only a plain file of
    // a size a record can have is read.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .ok()?;
    let opened = match file.metadata() {
        Ok(m) if !m.is_file() => Err("not a regular file"),
        Ok(m) if m.len() > max.saturating_add(head as u64) => {
            Err("larger than such a record can be")
        }
        Ok(m) => {
            let mut bytes = Vec::with_capacity(m.len() as usize);
            match file
                .take(max.saturating_add(head as u64 + 1))
                .read_to_end(&mut bytes)
            {
                Ok(_) => open_record(key, name, id, bytes, max),
                Err(e) => {
                    tracing::warn!("metadata cache: {}: {e}", path.display());
                    return None;
                }
            }
        }
        Err(e) => {
            tracing::warn!("metadata cache: {}: {e}", path.display());
            return None;
        }
    };
    match opened {
        Ok(record) => Some(record),
        Err(why) => {
            tracing::warn!(
                "metadata cache: {}: {why}; deleted, reading the document again",
                path.display()
            );
            let _ = fs::remove_file(&path);
            None
        }
    }
}

/// The record in the `bytes` of a record file, or why it does not open.
fn open_record(
    key: &[u8; 32],
    name: &str,
    id: &Id,
    mut bytes: Vec<u8>,
    max: u64,
) -> Result<Vec<u8>, &'static str> {
    let head = RECORD_MAGIC.len() + TAG;
    if bytes.len() < head || &bytes[..RECORD_MAGIC.len()] != RECORD_MAGIC {
        return Err("truncated or not a digest record");
    }
    if (bytes.len() - head) as u64 > max {
        return Err("larger than such a record can be");
    }
    let stored: [u8; TAG] = bytes[RECORD_MAGIC.len()..head]
        .try_into()
        .expect("32 bytes");
    if record_tag(key, name, id, &bytes[head..]) != blake3::Hash::from(stored) {
        return Err("its hash does not match (damaged, or not written with this key)");
    }
    bytes.drain(..head);
    Ok(bytes)
}

/// Keeps `record` of document `id` in a file of its own in `dir` (written
/// to a temporary name and renamed: never a partial record).
pub(super) fn save_record(
    dir: &Path,
    key: &[u8; 32],
    name: &str,
    id: &Id,
    record: &[u8],
) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(RECORD_MAGIC.len() + TAG + record.len());
    bytes.extend_from_slice(RECORD_MAGIC);
    bytes.extend_from_slice(record_tag(key, name, id, record).as_bytes());
    bytes.extend_from_slice(record);
    write_new(dir, &bytes, |_| record_path(dir, id))
}

/// Deletes the records kept in files of their own in `dir` whose document
/// is not `listed` any more, unless written in the last `grace` (another
/// command may have stored the document after this one listed), and
/// temporary files older than that (left by a killed command).
pub(super) fn forget_records(dir: &Path, listed: &HashSet<Id>, grace: std::time::Duration) {
    let Ok(read) = fs::read_dir(dir) else {
        return;
    };
    let old = |e: &fs::DirEntry| {
        e.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > grace)
    };
    for e in read.flatten() {
        let file = e.file_name();
        let Some(file) = file.to_str() else {
            continue;
        };
        let gone = match file.strip_prefix(RECORD_PREFIX) {
            Some(hex) => hex.parse::<Id>().is_ok_and(|id| !listed.contains(&id)) && old(&e),
            None => file.starts_with(".tmp-") && old(&e),
        };
        if gone {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Splits a segment body into records; `None` if it is malformed.
fn records(mut body: &[u8]) -> Option<Vec<(Id, &[u8])>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 36 {
            return None;
        }
        let id = Id(body[..32].try_into().ok()?);
        let len = u32::from_le_bytes(body[32..36].try_into().ok()?) as usize;
        let rest = &body[36..];
        if rest.len() < len {
            return None;
        }
        out.push((id, &rest[..len]));
        body = &rest[len..];
    }
    Some(out)
}

/// Opens one segment: its records, or why it does not open.
fn open_segment(
    key: &[u8; 32],
    name: &str,
    bytes: &[u8],
) -> Result<Vec<(Id, Vec<u8>)>, &'static str> {
    let head = MAGIC.len() + TAG;
    if bytes.len() < head || &bytes[..MAGIC.len()] != MAGIC {
        return Err("truncated or not a digest segment");
    }
    let stored: [u8; TAG] = bytes[MAGIC.len()..head].try_into().expect("32 bytes");
    if tag(key, name, &bytes[head..]) != blake3::Hash::from(stored) {
        return Err("its hash does not match (damaged, or not written with this key)");
    }
    let parsed = records(&bytes[head..]).ok_or("malformed records")?;
    Ok(parsed.into_iter().map(|(id, r)| (id, r.to_vec())).collect())
}

fn seal_segment<'a>(
    key: &[u8; 32],
    name: &str,
    records: impl Iterator<Item = (&'a Id, &'a Vec<u8>)>,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, r) in records {
        body.extend_from_slice(&id.0);
        body.extend_from_slice(&(r.len() as u32).to_le_bytes());
        body.extend_from_slice(r);
    }
    let mut out = Vec::with_capacity(MAGIC.len() + TAG + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(tag(key, name, &body).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Writes `bytes` to a new file in `dir` under a temporary name and renames
/// it to `name(unique)` (never a partial file under that name).
fn write_new(dir: &Path, bytes: &[u8], name: impl FnOnce(&str) -> PathBuf) -> std::io::Result<()> {
    let unique = format!(
        "{}-{:016x}",
        std::process::id(),
        rand::RngCore::next_u64(&mut rand::rngs::OsRng)
    );
    let tmp = dir.join(format!(".tmp-{unique}"));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, name(&unique)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Loads digest `name` from `dir` (its directory), deleting segments that
/// do not open.
pub(super) fn load(dir: &Path, key: &[u8; 32], name: &str) -> Digest {
    let mut digest = Digest {
        name: name.to_owned(),
        ..Digest::default()
    };
    let Ok(read) = fs::read_dir(dir) else {
        return digest;
    };
    for e in read.flatten() {
        let file = e.file_name();
        if !file.to_string_lossy().starts_with("seg-") {
            continue;
        }
        let path = e.path();
        let opened = match e.metadata() {
            Ok(m) if m.len() > MAX_SEGMENT => Err("larger than a digest can be"),
            Ok(_) => match fs::read(&path) {
                Ok(bytes) => open_segment(key, name, &bytes),
                Err(_) => continue,
            },
            Err(_) => continue,
        };
        match opened {
            Ok(records) => {
                digest.records.extend(records);
                digest.segments.push(path);
            }
            Err(why) => {
                tracing::warn!(
                    "metadata cache: {}: {why}; deleted, reading the documents again",
                    path.display()
                );
                let _ = fs::remove_file(&path);
            }
        }
    }
    digest
}

/// Saves what changed: `added` records as a new segment, or, when there
/// would be more than [`MAX_SEGMENTS`] or records of documents no longer
/// `listed` take room, every listed record as one segment replacing those
/// loaded. Failures only cost time later (logged).
pub(super) fn save(
    dir: &Path,
    key: &[u8; 32],
    mut digest: Digest,
    added: Vec<(Id, Vec<u8>)>,
    listed: &HashSet<Id>,
) {
    let stale = digest
        .records
        .keys()
        .filter(|id| !listed.contains(id))
        .count();
    if added.is_empty() && stale == 0 {
        return;
    }
    let merge = digest.segments.len() + 1 > MAX_SEGMENTS || stale > 0;
    let segment_name = |unique: &str| dir.join(format!("seg-{unique}"));
    let written = if merge {
        digest.records.retain(|id, _| listed.contains(id));
        digest.records.extend(added);
        write_new(
            dir,
            &seal_segment(key, &digest.name, digest.records.iter()),
            segment_name,
        )
    } else {
        write_new(
            dir,
            &seal_segment(key, &digest.name, added.iter().map(|(i, r)| (i, r))),
            segment_name,
        )
    };
    match written {
        Ok(()) if merge => {
            for s in &digest.segments {
                let _ = fs::remove_file(s);
            }
        }
        Ok(()) => {}
        Err(e) => tracing::warn!("metadata cache: {}: {e}; going on without", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn records_add_up_merge_and_refuse_another_key_or_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = [7u8; 32];
        let listed: HashSet<Id> = [id(1), id(2)].into();
        save(
            dir,
            &key,
            load(dir, &key, "t"),
            vec![(id(1), b"one".to_vec())],
            &listed,
        );
        save(
            dir,
            &key,
            load(dir, &key, "t"),
            vec![(id(2), b"two".to_vec())],
            &listed,
        );
        let d = load(dir, &key, "t");
        assert_eq!(d.segments.len(), 2);
        assert_eq!(d.records[&id(2)], b"two");
        // id(1) vanished: the next save merges into one segment without it.
        let only: HashSet<Id> = [id(2)].into();
        save(dir, &key, load(dir, &key, "t"), vec![], &only);
        let d = load(dir, &key, "t");
        assert_eq!(d.segments.len(), 1);
        assert_eq!(d.records.len(), 1);
        // A flipped byte: the segment is refused and deleted.
        let seg = &d.segments[0];
        let mut bytes = fs::read(seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(seg, bytes).unwrap();
        assert!(load(dir, &key, "t").records.is_empty());
        assert!(!seg.exists());
        // Another key or name opens nothing (and deletes what it cannot open).
        save(
            dir,
            &key,
            load(dir, &key, "t"),
            vec![(id(2), b"two".to_vec())],
            &only,
        );
        assert!(load(dir, &[8u8; 32], "t").records.is_empty());
        save(
            dir,
            &key,
            load(dir, &key, "t"),
            vec![(id(2), b"two".to_vec())],
            &only,
        );
        assert!(load(dir, &key, "other").records.is_empty());
        assert!(load(dir, &key, "t").records.is_empty());
    }

    #[test]
    fn many_runs_are_merged_past_the_segment_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let key = [1u8; 32];
        let listed: HashSet<Id> = (0..40).map(id).collect();
        for n in 0..40 {
            let d = load(tmp.path(), &key, "t");
            assert!(d.segments.len() <= MAX_SEGMENTS);
            save(tmp.path(), &key, d, vec![(id(n), vec![n])], &listed);
        }
        let d = load(tmp.path(), &key, "t");
        assert_eq!(d.records.len(), 40);
        assert!(d.segments.len() <= MAX_SEGMENTS);
    }

    #[test]
    fn a_record_of_its_own_opens_only_with_its_key_name_and_id_and_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let key = [3u8; 32];
        save_record(dir, &key, "t", &id(1), b"large record").unwrap();
        assert_eq!(
            load_record(dir, &key, "t", &id(1), 100).as_deref(),
            Some(&b"large record"[..])
        );
        // Not a segment: loading the digest leaves it alone.
        assert!(load(dir, &key, "t").records.is_empty());
        assert!(record_path(dir, &id(1)).exists());
        // Larger than asked for: refused (and deleted).
        assert_eq!(load_record(dir, &key, "t", &id(1), 5), None);
        assert!(!record_path(dir, &id(1)).exists());
        // Another key, another digest name, or copied under another id:
        // refused.
        save_record(dir, &key, "t", &id(1), b"large record").unwrap();
        assert_eq!(load_record(dir, &[4u8; 32], "t", &id(1), 100), None);
        save_record(dir, &key, "t", &id(1), b"large record").unwrap();
        assert_eq!(load_record(dir, &key, "u", &id(1), 100), None);
        save_record(dir, &key, "t", &id(1), b"large record").unwrap();
        fs::copy(record_path(dir, &id(1)), record_path(dir, &id(2))).unwrap();
        assert_eq!(load_record(dir, &key, "t", &id(2), 100), None);
        // A flipped byte, or cut short: refused and deleted.
        let path = record_path(dir, &id(1));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(load_record(dir, &key, "t", &id(1), 100), None);
        assert!(!path.exists());
        save_record(dir, &key, "t", &id(1), b"large record").unwrap();
        fs::write(&path, &fs::read(&path).unwrap()[..20]).unwrap();
        assert_eq!(load_record(dir, &key, "t", &id(1), 100), None);
        // A link to a record, or a FIFO, under a record's name: not
        // followed, not waited on, refused.
        save_record(dir, &key, "t", &id(3), b"elsewhere").unwrap();
        fs::rename(record_path(dir, &id(3)), dir.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), record_path(dir, &id(3))).unwrap();
        assert_eq!(load_record(dir, &key, "t", &id(3), 100), None);
        let fifo = record_path(dir, &id(4));
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        assert_eq!(load_record(dir, &key, "t", &id(4), 100), None);
        // Records of documents no longer listed are forgotten once older
        // than the grace, others kept; so are old temporary files.
        save_record(dir, &key, "t", &id(1), b"one").unwrap();
        save_record(dir, &key, "t", &id(2), b"two").unwrap();
        fs::write(dir.join(".tmp-killed"), b"half").unwrap();
        forget_records(dir, &[id(2)].into(), std::time::Duration::from_secs(600));
        assert!(record_path(dir, &id(1)).exists(), "just written");
        assert!(
            dir.join(".tmp-killed").exists(),
            "maybe still being written"
        );
        forget_records(dir, &[id(2)].into(), std::time::Duration::ZERO);
        assert!(!record_path(dir, &id(1)).exists());
        assert!(!dir.join(".tmp-killed").exists());
        assert_eq!(
            load_record(dir, &key, "t", &id(2), 100).as_deref(),
            Some(&b"two"[..])
        );
    }
}
