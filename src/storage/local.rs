//! A repository in a local directory: temp file, fsync, then a no-replace link.
//! Packs skip the fsync at upload ([`Storage::put_unsynced`]) and are synced
//! together before the index file that lists them ([`Storage::sync`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::direct;
use super::{ListedKey, ObjectInfo, PutOutcome, ReadSeek, Storage, StorageError};

/// Objects stored as files under a root directory, keys mapping to paths.
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// A storage rooted at `root` (which need not exist until the first put).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Every object file under `dir`, at any depth. Iterative (a worklist of
    /// directories): whoever can write to the repository directory cannot
    /// make a deep nest cost stack.
    fn list_into(&self, dir: &Path, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
        let mut todo = vec![dir.to_owned()];
        while let Some(dir) = todo.pop() {
            self.list_one(&dir, out, &mut todo)?;
        }
        Ok(())
    }

    /// The object files directly in `dir`; its subdirectories go to `todo`.
    fn list_one(
        &self,
        dir: &Path,
        out: &mut Vec<ObjectInfo>,
        todo: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for entry in object_entries(dir)? {
            let entry = entry?;
            if is_temporary(&entry) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted (by prune) between the directory read and now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(&self.root)
                    .expect("listed paths are under the root")
                    .to_string_lossy()
                    .into_owned();
                out.push(ObjectInfo {
                    key: rel,
                    size: meta.len(),
                    modified: stored_at(&meta),
                });
            }
        }
        Ok(())
    }
}

impl LocalStorage {
    /// [`LocalStorage::list_one`] by the directory entries' types alone (no
    /// stat per file: a fleet's history holds tens of thousands), keeping
    /// the keys that start with `prefix`.
    fn keys_in(
        &self,
        dir: &Path,
        prefix: &str,
        out: &mut Vec<ListedKey>,
        todo: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for entry in object_entries(dir)? {
            let entry = entry?;
            if is_temporary(&entry) {
                continue;
            }
            let kind = match entry.file_type() {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(&self.root)
                    .expect("listed paths are under the root")
                    .to_string_lossy();
                if rel.starts_with(prefix) {
                    out.push(ListedKey {
                        key: rel.into_owned(),
                        size: None,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The entries of `dir`, none when it does not exist (nothing stored
/// under that prefix yet, or a prune removed it).
fn object_entries(
    dir: &Path,
) -> std::io::Result<impl Iterator<Item = std::io::Result<fs::DirEntry>>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => Some(e),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(entries.into_iter().flatten())
}

/// Whether `entry` is an upload still being written (`.tmp-…`), which
/// listings never show.
fn is_temporary(entry: &fs::DirEntry) -> bool {
    entry.file_name().to_string_lossy().starts_with(".tmp-")
}

/// When the object was stored, as far as this host can tell: the inode's
/// change time. Unlike the modification time, which whoever can write to
/// the directory sets to anything (`touch -d`), the change time cannot be
/// set back: a header's upload bound and the time a host got its own key
/// hold on a local repository too.
fn stored_at(meta: &fs::Metadata) -> Option<chrono::DateTime<chrono::Utc>> {
    use std::os::unix::fs::MetadataExt;
    chrono::DateTime::from_timestamp(meta.ctime(), meta.ctime_nsec().clamp(0, 999_999_999) as u32)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl LocalStorage {
    /// Writes a temporary file and links it to `key`'s path; with `durable`,
    /// the file is synced before the link and the directory after it.
    fn put_file(&self, key: &str, data: &[u8], durable: bool) -> Result<PutOutcome, StorageError> {
        let err = |e| StorageError::from_io(key, e);
        let path = self.path(key);
        let dir = path.parent().expect("object keys have a parent directory");
        fs::create_dir_all(dir).map_err(err)?;
        if path.exists() {
            return Ok(PutOutcome::AlreadyExists);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(err)?;
        // Packs and large index files go around the page cache: nothing
        // reads them back soon, and filling the cache costs kernel time.
        direct::write_around_cache(tmp.as_file(), data).map_err(err)?;
        if durable {
            tmp.as_file().sync_all().map_err(err)?;
        }
        // A hard link never replaces an existing object, so two writers racing
        // for the same key cannot clobber each other.
        let outcome = match fs::hard_link(tmp.path(), &path) {
            Ok(()) => PutOutcome::Created,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => PutOutcome::AlreadyExists,
            Err(e) => return Err(err(e)),
        };
        drop(tmp);
        if durable {
            sync_dir(dir).map_err(err)?;
        }
        Ok(outcome)
    }
}

impl Storage for LocalStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        self.put_file(key, data, true)
    }

    fn put_unsynced(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        self.put_file(key, data, false)
    }

    fn sync(&self, keys: &[String]) -> Result<(), StorageError> {
        let mut dirs = std::collections::BTreeSet::new();
        for key in keys {
            let path = self.path(key);
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| StorageError::from_io(key, e))?;
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_owned());
            }
        }
        for dir in dirs {
            sync_dir(&dir).map_err(|e| StorageError::from_io(&dir.display().to_string(), e))?;
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        fs::read(self.path(key)).map_err(|e| StorageError::from_io(key, e))
    }

    fn open(&self, key: &str) -> Result<Box<dyn ReadSeek>, StorageError> {
        // Through the page cache: a restore's readers reopen packs they
        // let go of, which must not cost another read from disk.
        let f = File::open(self.path(key)).map_err(|e| StorageError::from_io(key, e))?;
        Ok(Box::new(f))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        // List the directory containing the prefix, then filter by prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        self.list_into(&self.root.join(dir_part), &mut out)
            .map_err(|e| StorageError::from_io(prefix, e))?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<ListedKey>, StorageError> {
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut out = Vec::new();
        let mut todo = vec![self.root.join(dir_part)];
        while let Some(dir) = todo.pop() {
            self.keys_in(&dir, prefix, &mut out, &mut todo)
                .map_err(|e| StorageError::from_io(prefix, e))?;
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        fs::remove_file(self.path(key)).map_err(|e| StorageError::from_io(key, e))
    }

    fn locked_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        fs::symlink_metadata(self.path(key)).map_err(|e| StorageError::from_io(key, e))?;
        Ok(None)
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn clean_leftovers(&self, older_than: std::time::Duration) -> Result<u64, StorageError> {
        let mut removed = 0;
        remove_old_temporaries(&self.root, older_than, &mut removed)
            .map_err(|e| StorageError::from_io(".tmp-*", e))?;
        Ok(removed)
    }
}

/// Deletes `.tmp-*` files (left by a killed put) older than `older_than`
/// under `dir`, at any depth (iteratively, like [`LocalStorage::list_into`]).
fn remove_old_temporaries(
    dir: &Path,
    older_than: std::time::Duration,
    removed: &mut u64,
) -> std::io::Result<()> {
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        remove_old_temporaries_in(&dir, older_than, removed, &mut todo)?;
    }
    Ok(())
}

/// [`remove_old_temporaries`] directly in `dir`; its subdirectories go to
/// `todo`.
fn remove_old_temporaries_in(
    dir: &Path,
    older_than: std::time::Duration,
    removed: &mut u64,
    todo: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Linked and removed by a put finishing meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            todo.push(entry.path());
        } else if is_temporary(&entry)
            && meta.modified()?.elapsed().unwrap_or_default() >= older_than
        {
            match fs::remove_file(entry.path()) {
                Ok(()) => *removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_write_once_and_list_is_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        assert_eq!(s.put("index/b", b"1").unwrap(), PutOutcome::Created);
        assert_eq!(s.put("index/a", b"2").unwrap(), PutOutcome::Created);
        assert_eq!(s.put("index/a", b"3").unwrap(), PutOutcome::AlreadyExists);
        assert_eq!(s.get("index/a").unwrap(), b"2");
        let keys: Vec<_> = s
            .list("index/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["index/a", "index/b"]);
        assert!(matches!(
            s.get("index/zz"),
            Err(StorageError::NotFound { .. })
        ));
        s.delete("index/a").unwrap();
        assert_eq!(s.list("index/").unwrap().len(), 1);
    }

    #[test]
    fn unsynced_puts_are_write_once_too_and_sync_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        assert_eq!(
            s.put_unsynced("data/ab/x", b"1").unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            s.put_unsynced("data/ab/x", b"2").unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(
            s.put_unsynced("data/cd/y", b"3").unwrap(),
            PutOutcome::Created
        );
        assert_eq!(s.get("data/ab/x").unwrap(), b"1");
        s.sync(&["data/ab/x".into(), "data/cd/y".into()]).unwrap();
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path().join("data/ab")).unwrap().count(), 1);
        let missing = s.sync(&["data/ef/z".into()]).unwrap_err();
        assert!(missing.to_string().contains("data/ef/z"), "{missing}");
    }

    #[test]
    fn a_deep_nest_in_the_repository_is_listed_and_cleaned_without_a_large_stack() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        let key = format!("data/{}obj", "d/".repeat(1000));
        s.put(&key, b"1").unwrap();
        s.put("data/top", b"2").unwrap();
        let deepest = dir.path().join(&key).parent().unwrap().to_owned();
        fs::write(deepest.join(".tmp-left"), b"x").unwrap();
        let (listed, removed) = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let keys: Vec<String> = s
                    .list("data/")
                    .unwrap()
                    .into_iter()
                    .map(|o| o.key)
                    .collect();
                (keys, s.clean_leftovers(std::time::Duration::ZERO).unwrap())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(listed, [key, "data/top".to_owned()]);
        assert_eq!(removed, 1);
        assert!(!deepest.join(".tmp-left").exists());
    }
}
