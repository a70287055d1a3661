//! Objects in memory, for unit tests only: integration tests use a local
//! directory and real S3 servers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::{ObjectInfo, PutOutcome, ReadSeek, Storage, StorageError};

/// Each object's bytes and when it was put.
type Objects = BTreeMap<String, (Vec<u8>, DateTime<Utc>)>;

/// A write-once map from key to bytes.
#[derive(Default)]
pub struct MemoryStorage {
    objects: Mutex<Objects>,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces an object's bytes behind vault's back (an attacker with
    /// write access to the storage, in tests).
    pub fn tamper(&self, key: &str, data: &[u8]) {
        self.objects
            .lock()
            .expect("memory storage lock")
            .insert(key.to_owned(), (data.to_vec(), Utc::now()));
    }
}

impl Storage for MemoryStorage {
    fn put(&self, key: &str, data: &[u8]) -> Result<PutOutcome, StorageError> {
        let mut objects = self.objects.lock().expect("memory storage lock");
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(key.to_owned(), (data.to_vec(), Utc::now()));
        Ok(PutOutcome::Created)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        self.objects
            .lock()
            .expect("memory storage lock")
            .get(key)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| StorageError::NotFound {
                key: key.to_owned(),
            })
    }

    fn open(&self, key: &str) -> Result<Box<dyn ReadSeek>, StorageError> {
        Ok(Box::new(std::io::Cursor::new(self.get(key)?)))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        Ok(self
            .objects
            .lock()
            .expect("memory storage lock")
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (d, t))| ObjectInfo {
                key: k.clone(),
                size: d.len() as u64,
                modified: Some(*t),
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.objects
            .lock()
            .expect("memory storage lock")
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| StorageError::NotFound {
                key: key.to_owned(),
            })
    }

    fn locked_until(&self, key: &str) -> Result<Option<DateTime<Utc>>, StorageError> {
        self.get(key).map(|_| None)
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};

    use super::*;

    #[test]
    fn memory_storage_is_write_once_and_lists_by_prefix_in_order() {
        let s = MemoryStorage::new();
        assert_eq!(s.put("index/b", b"1").unwrap(), PutOutcome::Created);
        assert_eq!(s.put("index/a", b"2").unwrap(), PutOutcome::Created);
        assert_eq!(s.put("indexes", b"x").unwrap(), PutOutcome::Created);
        assert_eq!(s.put("index/a", b"3").unwrap(), PutOutcome::AlreadyExists);
        assert_eq!(s.get("index/a").unwrap(), b"2");
        let keys: Vec<_> = s
            .list("index/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["index/a", "index/b"]);
        let mut r = s.open("index/b").unwrap();
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut all = String::new();
        r.read_to_string(&mut all).unwrap();
        assert_eq!(all, "1");
        s.delete("index/a").unwrap();
        assert!(matches!(
            s.delete("index/a"),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            s.locked_until("index/a"),
            Err(StorageError::NotFound { .. })
        ));
    }
}
