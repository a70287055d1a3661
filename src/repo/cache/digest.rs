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

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::format::id::Id;

const MAGIC: &[u8; 8] = b"VLTDIG01";
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

fn write_new(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
        .and_then(|()| fs::rename(&tmp, dir.join(format!("seg-{unique}"))));
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
    let written = if merge {
        digest.records.retain(|id, _| listed.contains(id));
        digest.records.extend(added);
        write_new(dir, &seal_segment(key, &digest.name, digest.records.iter()))
    } else {
        write_new(
            dir,
            &seal_segment(key, &digest.name, added.iter().map(|(i, r)| (i, r))),
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
}
