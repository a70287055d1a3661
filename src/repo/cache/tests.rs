use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::crypto;
use crate::format::chunk::ChunkerParams;
use crate::format::snapshot::{SourceStatus, test_snapshot};
use crate::repo::{Access, InitOptions, OwnerSpec, Repository};
use crate::storage::Storage;
use crate::storage::memory::MemoryStorage;

/// A memory repository with one snapshot header; returns the storage, the
/// owner identity file, the writer key file and the header's key.
fn repo_with_header(dir: &Path) -> (Arc<MemoryStorage>, PathBuf, PathBuf, String) {
    let storage = Arc::new(MemoryStorage::new());
    let (text, recipient) = crypto::generate_x25519();
    let owner = dir.join("owner.key");
    crypto::write_key_file(&owner, &text).unwrap();
    let writer = dir.join("writer.key");
    Repository::init(
        storage.clone(),
        &InitOptions {
            owner: OwnerSpec::Recipients(vec![recipient]),
            owner_name: "ops".into(),
            writer_key_out: writer.clone(),
            chunker: ChunkerParams::default(),
            pack_size: 16 << 20,
            compression_level: 3,
            object_lock: None,
        },
    )
    .unwrap();
    let w = Repository::open(storage.clone(), Access::IdentityFile(&writer)).unwrap();
    let s = test_snapshot(chrono::Utc::now(), "web1", "/etc", SourceStatus::Ok);
    let id = w.put_signed_json(ObjectKind::Snapshot, &s).unwrap();
    (storage, owner, writer, ObjectKind::Snapshot.key(&id))
}

fn open(storage: &Arc<MemoryStorage>, key: &Path, cache: &Path) -> Repository {
    let mut r = Repository::open(storage.clone(), Access::IdentityFile(key)).unwrap();
    r.use_cache(cache).unwrap();
    r
}

fn entry_path(r: &Repository, key: &str) -> PathBuf {
    let c = r.metadata_cache().unwrap();
    c.view_dir()
        .join("snapshots")
        .join(key.rsplit('/').next().unwrap())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_cached_header_is_read_without_storage_and_forgotten_when_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (storage, _, writer, key) = repo_with_header(dir.path());
    let r = open(&storage, &writer, &cache);
    let first = r.verified_snapshots().unwrap();
    assert_eq!(first.records.len(), 1);
    let entry = entry_path(&r, &key);
    assert_eq!(mode(&entry), 0o600);
    for d in [
        entry.parent().unwrap(),
        r.metadata_cache().unwrap().view_dir(),
    ] {
        assert_eq!(mode(d), 0o700, "{}", d.display());
    }
    // Storage now holds other bytes under the name: the cache holds what
    // the name stands for, and serves it with the same verdict.
    storage.tamper(&key, b"garbage");
    let again = open(&storage, &writer, &cache)
        .verified_snapshots()
        .unwrap();
    assert!(again.damaged.is_empty(), "{:?}", again.damaged);
    assert_eq!(again.records[0].signer, first.records[0].signer);
    assert_eq!(again.records[0].snapshot.host, "web1");
    // ...except for `vault check`, which reads storage.
    let check = open(&storage, &writer, &cache);
    check.refetch_metadata();
    assert_eq!(check.verified_snapshots().unwrap().damaged.len(), 1);
    // Deleted from storage: forgotten by the next listing.
    storage.delete(&key).unwrap();
    let gone = open(&storage, &writer, &cache)
        .verified_snapshots()
        .unwrap();
    assert!(gone.records.is_empty());
    assert!(
        !entry.exists(),
        "the entry of a deleted object is forgotten"
    );
}

#[test]
fn a_damaged_or_planted_entry_is_deleted_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (storage, owner, writer, key) = repo_with_header(dir.path());
    let w = open(&storage, &writer, &cache);
    let before = w.verified_snapshots().unwrap();
    let entry = entry_path(&w, &key);
    let good = std::fs::read(&entry).unwrap();
    // The view's digest of whole headers holds the header too: without it,
    // entries are what is read.
    let digest = w.metadata_cache().unwrap().view_dir().join("digests");
    let no_digest = || {
        let _ = std::fs::remove_dir_all(&digest);
    };
    // Truncated.
    std::fs::write(&entry, &good[..good.len() / 2]).unwrap();
    no_digest();
    let after = open(&storage, &writer, &cache)
        .verified_snapshots()
        .unwrap();
    assert_eq!(
        serde_json::to_string(&after.records[0].snapshot).unwrap(),
        serde_json::to_string(&before.records[0].snapshot).unwrap()
    );
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        good,
        "fetched and cached again"
    );
    // Planted: another document under this name, with a tag computed
    // without the view's key.
    let mut other = test_snapshot(chrono::Utc::now(), "evil", "/", SourceStatus::Ok);
    other.tags = vec!["planted".into()];
    let json = serde_json::to_vec(&other).unwrap();
    std::fs::write(&entry, entry::seal(&[0; 32], &key, &Signer::Owner, &json)).unwrap();
    no_digest();
    let read = open(&storage, &writer, &cache)
        .verified_snapshots()
        .unwrap();
    assert_eq!(
        read.records[0].snapshot.host, "web1",
        "the planted entry is refused"
    );
    // The owner's view is its own: an entry copied from the writer's view
    // does not open there.
    let o = open(&storage, &owner, &cache);
    let owner_entry = entry_path(&o, &key);
    assert_ne!(owner_entry, entry);
    std::fs::write(&owner_entry, std::fs::read(&entry).unwrap()).unwrap();
    let as_owner = o.verified_snapshots().unwrap();
    assert_eq!(as_owner.records.len(), 1);
    assert_ne!(
        std::fs::read(&owner_entry).unwrap(),
        std::fs::read(&entry).unwrap(),
        "the owner fetched and cached its own entry"
    );
    assert_eq!(o.snapshots().unwrap().0.len(), 1);
}

#[test]
fn an_unwritable_cache_directory_is_refused_up_front() {
    if nix::unistd::geteuid().is_root() {
        return; // root writes anywhere
    }
    let dir = tempfile::tempdir().unwrap();
    let (storage, _, writer, _) = repo_with_header(dir.path());
    let cache = dir.path().join("ro");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o500)).unwrap();
    let mut r = Repository::open(storage.clone(), Access::IdentityFile(&writer)).unwrap();
    assert!(r.use_cache(&cache).is_err());
    assert_eq!(r.verified_snapshots().unwrap().records.len(), 1);
}

#[test]
fn files_of_the_old_layout_move_into_the_host_directory() {
    let dir = tempfile::tempdir().unwrap();
    let repo_id = "ab".repeat(16);
    let old = dir.path().join(&repo_id);
    let hash = blake3::hash(b"web1").to_hex();
    std::fs::create_dir_all(old.join(format!("uploads-{}", &hash[..16]))).unwrap();
    std::fs::write(old.join(format!("uploads-{}/x.json", &hash[..16])), b"{}").unwrap();
    std::fs::write(old.join("own-index"), format!("{}\n", "cd".repeat(32))).unwrap();
    let host = HostDir::open(dir.path(), &repo_id, "web1").unwrap();
    assert_eq!(
        std::fs::read_to_string(host.own_index()).unwrap(),
        format!("{}\n", "cd".repeat(32))
    );
    assert!(host.uploads().join("x.json").exists());
    assert!(!old.join("own-index").exists());
    assert_eq!(mode(host.own_index().parent().unwrap()), 0o700);
    assert!(dir.path().join("CACHEDIR.TAG").exists());
    // A stamp of another layout version: refused, not misread.
    std::fs::write(old.join("v1/VERSION"), "vault cache layout 9\n").unwrap();
    assert!(HostDir::open(dir.path(), &repo_id, "web1").is_err());
    assert!(repo_dir(dir.path(), "../x").is_err());
}
