//! The local cache: one directory layout for everything vault keeps on a
//! host about a repository, and the metadata cache of sealed documents.
//!
//! ```text
//! <cache dir>/CACHEDIR.TAG
//! <cache dir>/<repository id>/v1/VERSION
//! <cache dir>/<repository id>/v1/<view>/{index,snapshots,drills}/<object id>
//! <cache dir>/<repository id>/v1/<view>/digests/<name>/<segment>
//! <cache dir>/<repository id>/v1/host-<hash of host name>/own-index
//! <cache dir>/<repository id>/v1/host-<hash of host name>/uploads/
//! ```
//!
//! Directories are 0700 and files 0600. A *view* is what one key decrypted:
//! `owner-<hash>` for the repository owner key, `writer-<hash>` for a writer
//! key, each named by a hash of the key's public part. Entries are tagged
//! with a key derived from the view's secret ([`entry`]), so a writer run
//! never reads what an owner run cached (and the other way round), and a
//! planted entry does not open.
//!
//! Index files, snapshot headers and drill records are immutable and named
//! by the hash of their stored bytes: an entry, once written, stays right
//! for as long as the object exists. An entry whose object is no longer
//! listed is forgotten; a damaged one is deleted and fetched again. Losing
//! the whole cache costs only time.

mod digest;
mod entry;
mod layout;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use zeroize::Zeroizing;

pub use digest::Digest;
pub use layout::{HostDir, private_root, repo_dir};

use crate::error::Result;
use crate::format::id::Id;
use crate::repo::ObjectKind;
use crate::repo::keys::RepoKeys;
use crate::repo::trust::Signer;

/// A temporary entry file older than this was left by a killed process.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(600);

/// The kinds of documents cached, and their directories.
const KINDS: [(ObjectKind, &str); 3] = [
    (ObjectKind::Index, "index"),
    (ObjectKind::Snapshot, "snapshots"),
    (ObjectKind::Drill, "drills"),
];

fn folder(kind: ObjectKind) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, d)| *d)
}

/// Whether documents of `kind` are cached.
pub fn caches(kind: ObjectKind) -> bool {
    folder(kind).is_some()
}

/// The digest that keeps every document of `kind` read before whole (its
/// signature verdict and JSON, as an entry holds them), for kinds listed
/// whole by every `snapshots` and `status`: one tagged file read instead
/// of an entry per document.
pub fn documents_digest(kind: ObjectKind) -> Option<&'static str> {
    match kind {
        ObjectKind::Snapshot => Some("snapshots-v1"),
        ObjectKind::Drill => Some("drills-v1"),
        _ => None,
    }
}

/// Documents larger than this stay out of a documents digest (read from
/// their entries): headers are a few KiB unless they list many errors.
pub const MAX_DIGESTED_DOCUMENT: usize = 64 << 10;

/// A documents digest's record of a document: its verdict and JSON.
pub fn document_record(signer: &Signer, json: &[u8]) -> Vec<u8> {
    entry::body(signer, json)
}

/// The verdict and JSON of a [`document_record`]; `None` if malformed.
pub fn open_document_record(record: &[u8]) -> Option<(Signer, &[u8])> {
    entry::open_body(record).ok()
}

/// The metadata cache of one repository, as one key sees it.
pub struct MetaCache {
    view: PathBuf,
    key: Zeroizing<[u8; 32]>,
    /// Set after the first failed write, so that a full or read-only disk
    /// warns once per command.
    write_failed: AtomicBool,
}

impl std::fmt::Debug for MetaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaCache")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl MetaCache {
    /// Opens (creating) the view of `keys` in the cache of repository
    /// `repo_id` under `cache_dir`. Fails when the directories cannot be
    /// made or the layout there is of another version.
    pub fn open(cache_dir: &Path, repo_id: &str, keys: &RepoKeys) -> Result<MetaCache> {
        let root = repo_dir(cache_dir, repo_id)?;
        let (name, secret) = keys.cache_view();
        let view = root.join(name);
        for (_, dir) in KINDS {
            layout::private_dir(&view.join(dir))?;
        }
        let key = Zeroizing::new(blake3::derive_key(
            "vault 2026 metadata cache entry tag",
            secret.as_bytes(),
        ));
        // Writable? A read-only cache would fail every write: say so now.
        let probe = view.join(format!(".tmp-probe-{}", std::process::id()));
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&probe)
            .map_err(|e| crate::Error::io(&view, e))?;
        let _ = fs::remove_file(&probe);
        Ok(MetaCache {
            view,
            key,
            write_failed: AtomicBool::new(false),
        })
    }

    /// The view's directory.
    pub fn view_dir(&self) -> &Path {
        &self.view
    }

    fn path(&self, kind: ObjectKind, id: &Id) -> Option<PathBuf> {
        Some(self.view.join(folder(kind)?).join(id.to_hex()))
    }

    /// The cached verdict and JSON of object `id`, if an intact entry is
    /// there (one of at most `max` bytes). A damaged entry is deleted.
    pub fn get(&self, kind: ObjectKind, id: &Id, max: u64) -> Option<(Signer, Vec<u8>)> {
        let path = self.path(kind, id)?;
        let mut bytes = Vec::new();
        match fs::File::open(&path) {
            Ok(f) => {
                if let Err(e) = f.take(max + 1).read_to_end(&mut bytes) {
                    tracing::warn!("metadata cache: {}: {e}", path.display());
                    return None;
                }
            }
            Err(_) => return None,
        }
        let refused = if bytes.len() as u64 > max {
            Err("larger than such a document can be")
        } else {
            entry::open(&self.key, &kind.key(id), bytes)
        };
        match refused {
            Ok(v) => Some(v),
            Err(why) => {
                tracing::warn!(
                    "metadata cache: {}: {why}; deleted, fetching the object again",
                    path.display()
                );
                self.discard(kind, id);
                None
            }
        }
    }

    /// Caches what the document `id` decrypted to and who signed it
    /// (written to a temporary name and renamed: never a partial entry).
    pub fn put(&self, kind: ObjectKind, id: &Id, signer: &Signer, json: &[u8]) {
        let Some(path) = self.path(kind, id) else {
            return;
        };
        let bytes = entry::seal(&self.key, &kind.key(id), signer, json);
        let tmp = path.with_file_name(format!(
            ".tmp-{}-{}-{:08x}",
            id.to_hex(),
            std::process::id(),
            rand::RngCore::next_u32(&mut rand::rngs::OsRng)
        ));
        // No fsync: an entry a crash leaves empty or short fails its tag
        // and is fetched again.
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            if !self.write_failed.swap(true, Ordering::Relaxed) {
                tracing::warn!("metadata cache: {}: {e}; going on without", path.display());
            }
        }
    }

    fn digest_dir(&self, name: &str) -> PathBuf {
        self.view.join("digests").join(name)
    }

    /// Loads digest `name` (see [`digest`]): short records of documents
    /// read before, by object id. Empty when there is none yet, or when its
    /// directory cannot be made.
    pub fn digest(&self, name: &str) -> Digest {
        let dir = self.digest_dir(name);
        if let Err(e) =
            layout::private_dir(&self.view.join("digests")).and_then(|()| layout::private_dir(&dir))
        {
            tracing::warn!("metadata cache: {e}; going on without digest {name}");
        }
        digest::load(&dir, &self.key, name)
    }

    /// Saves digest `d` with the records `added` by this run, dropping
    /// those of documents not `listed` any more.
    pub fn save_digest(&self, d: Digest, added: Vec<(Id, Vec<u8>)>, listed: &HashSet<Id>) {
        let dir = self.digest_dir(d.name());
        digest::save(&dir, &self.key, d, added, listed);
    }

    /// Whether an entry for document `id` is kept (the document was cached
    /// under the ratio rule when it was read or written): only then may a
    /// digest keep a record of it, so that padding cannot fill a digest.
    pub fn has(&self, kind: ObjectKind, id: &Id) -> bool {
        self.path(kind, id).is_some_and(|p| p.is_file())
    }

    /// The record of document `id` that digest `name` keeps in a file of
    /// its own ([`digest`]: too large to load with the others), if an
    /// intact one of at most `max` bytes is there.
    pub fn record(&self, name: &str, id: &Id, max: u64) -> Option<Vec<u8>> {
        digest::load_record(&self.digest_dir(name), &self.key, name, id, max)
    }

    /// Keeps `record` of document `id` for digest `name` in a file of its
    /// own.
    pub fn put_record(&self, name: &str, id: &Id, record: &[u8]) {
        let dir = self.digest_dir(name);
        if let Err(e) = digest::save_record(&dir, &self.key, name, id, record)
            && !self.write_failed.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("metadata cache: {}: {e}; going on without", dir.display());
        }
    }

    /// Deletes the records digest `name` keeps in files of their own whose
    /// document is not `listed` any more (unless just written: another
    /// command may have stored it after this one listed), and temporary
    /// files a killed command left there.
    pub fn forget_records(&self, name: &str, listed: &HashSet<Id>) {
        digest::forget_records(&self.digest_dir(name), listed, STALE_TEMP);
    }

    /// Deletes the entry of `id` (damaged, or not a valid document).
    pub fn discard(&self, kind: ObjectKind, id: &Id) {
        if let Some(path) = self.path(kind, id) {
            let _ = fs::remove_file(path);
        }
    }

    /// Forgets the entries of `kind` whose object is not in `listed` (it
    /// was deleted by forget or prune), and temporary files a killed run
    /// left. Returns how many entries were forgotten.
    pub fn forget_unlisted(&self, kind: ObjectKind, listed: &HashSet<Id>) -> usize {
        let Some(dir) = folder(kind).map(|d| self.view.join(d)) else {
            return 0;
        };
        let Ok(read) = fs::read_dir(&dir) else {
            return 0;
        };
        let mut forgotten = 0;
        for e in read.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let gone = match name.parse::<Id>() {
                Ok(id) => !listed.contains(&id),
                Err(_) if name.starts_with(".tmp-") => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TEMP),
                // Not ours; left alone.
                Err(_) => false,
            };
            if gone && fs::remove_file(e.path()).is_ok() && !name.starts_with(".tmp-") {
                forgotten += 1;
            }
        }
        forgotten
    }
}

#[cfg(test)]
mod tests;
