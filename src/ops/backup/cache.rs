//! The per-host file cache: what each file looked like at the last backup
//! (size, mtime, ctime, inode) and its blob ids, so unchanged files are
//! skipped without reading them. Losing the cache only costs speed.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::id::Id;
use crate::format::tree::Bytes;

/// What the cache remembers about one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheEntry {
    /// Absolute path bytes.
    pub path: Bytes,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Change time (ns).
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Content blob ids.
    pub content: Vec<Id>,
    /// Plain BLAKE3 of the content.
    pub hash: Id,
}

/// The cache file for one repository, host and set of source paths.
pub struct FileCache {
    file: PathBuf,
    old: HashMap<Vec<u8>, CacheEntry>,
}

impl FileCache {
    /// Loads the cache (missing or unreadable caches are simply empty).
    pub fn load(dir: &Path, repo_id: &str, host: &str, paths: &[PathBuf]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(host.as_bytes());
        for p in paths {
            h.update(b"\0");
            h.update(p.as_os_str().as_encoded_bytes());
        }
        let file = dir
            .join(repo_id)
            .join(format!("files-{}.json.zst", &h.finalize().to_hex()[..16]));
        let old = fs::read(&file)
            .ok()
            .and_then(|b| zstd::stream::decode_all(&b[..]).ok())
            .and_then(|j| serde_json::from_slice::<Vec<CacheEntry>>(&j).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.path.0.clone(), e))
            .collect();
        FileCache { file, old }
    }

    /// The entry for `path` if its size, times and inode are unchanged.
    pub fn lookup(
        &self,
        path: &[u8],
        size: u64,
        mtime_ns: i64,
        ctime_ns: i64,
        ino: u64,
    ) -> Option<&CacheEntry> {
        self.old.get(path).filter(|e| {
            e.size == size && e.mtime_ns == mtime_ns && e.ctime_ns == ctime_ns && e.ino == ino
        })
    }

    /// Replaces the cache file with `entries` (atomically, mode 0600).
    pub fn save(&self, entries: &[CacheEntry]) -> std::io::Result<()> {
        let dir = self.file.parent().expect("cache file has a parent");
        fs::create_dir_all(dir)?;
        let json = serde_json::to_vec(entries).map_err(std::io::Error::other)?;
        let data = zstd::bulk::compress(&json, 3)?;
        let tmp = self.file.with_extension("tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.file)
    }
}
