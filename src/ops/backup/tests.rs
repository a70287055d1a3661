//! Backup runs against a real local repository, checking what the
//! pipeline holds in memory.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::format::chunk::ChunkerParams;
use crate::format::config::DEFAULT_COMPRESSION_LEVEL;
use crate::repo::{Access, InitOptions, OwnerSpec};
use crate::storage::{LocalStorage, Storage};
use std::os::unix::fs::PermissionsExt;

/// A repository in `dir` with packs of `pack_size`, opened with its
/// writer key as `vault backup` does.
pub(super) fn local_repo(dir: &Path, pack_size: u32) -> Repository {
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.join("repo")));
    let writer = dir.join("writer.key");
    Repository::init(
        storage.clone(),
        &InitOptions {
            owner: OwnerSpec::Recipients(vec![
                crate::crypto::X25519Identity::generate().recipient(),
            ]),
            owner_name: "test".into(),
            writer_key_out: writer.clone(),
            chunker: ChunkerParams::default(),
            pack_size,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            object_lock: None,
        },
    )
    .unwrap();
    Repository::open(storage, Access::IdentityFile(&writer)).unwrap()
}

/// A temporary directory holding a local repository with packs of
/// `pack_size` ([`local_repo`]) and an empty source directory.
fn repo_and_source(pack_size: u32) -> (tempfile::TempDir, Repository, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path(), pack_size);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    (dir, repo, src)
}

/// `n` bytes of xorshift noise (incompressible: each byte stored is a
/// byte of pack).
pub(super) fn noise(n: usize, seed: u64) -> Vec<u8> {
    crate::format::testdata::xorshift(n, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
}

#[test]
fn a_backup_to_a_local_directory_holds_one_pack_buffer_however_many_packs() {
    let (_dir, repo, src) = repo_and_source(1 << 20);
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}")), noise(5 << 20, i + 1)).unwrap();
    }
    let stats = Arc::new(Stats::default());
    let opts = BackupOptions {
        paths: vec![src],
        host: Some("test".into()),
        progress: Some(stats.clone()),
        ..Default::default()
    };
    run(&repo, &opts).unwrap();
    // 20 MiB of noise in packs of 1 MiB: about 20 packs went through.
    assert!(stats.bytes_stored.load(Ordering::Relaxed) >= 20 << 20);
    // Filled, then written out, then filled again: one buffer for all.
    let buffers = stats.pack_buffers.load(Ordering::Relaxed);
    assert_eq!(buffers, 1, "{buffers} pack buffers");
}

#[test]
fn packs_and_index_files_hold_a_bounded_number_of_blobs() {
    // 6,000 small files: a blob each (group-writable files are never
    // bundled), all of which fit in one 16 MiB pack.
    // Each blob costs memory in the pack's trailer and index entries and in
    // the index file's JSON (held two or three times over while it is
    // signed and sealed): packs and index files are cut by count too.
    let (_dir, repo, src) = repo_and_source(16 << 20);
    for d in 0..6 {
        let sub = src.join(format!("d{d}"));
        std::fs::create_dir(&sub).unwrap();
        for i in 0..1000 {
            let f = sub.join(format!("f{i}"));
            std::fs::write(&f, format!("file {d}/{i}\n")).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        }
    }
    let stats = Arc::new(Stats::default());
    let opts = BackupOptions {
        paths: vec![src],
        host: Some("test".into()),
        progress: Some(stats.clone()),
        ..Default::default()
    };
    run(&repo, &opts).unwrap();
    let blobs = stats.blobs_added.load(Ordering::Relaxed) as usize;
    assert!(blobs >= 6000, "{blobs} blobs");
    let files = repo.load_index_files().unwrap().files;
    let mut listed = 0;
    for key in &files {
        let (file, _): (crate::format::index::IndexFile, _) = repo
            .get_signed_json(key, crate::format::signature::SignedKind::Index)
            .unwrap();
        let n: usize = file.packs.iter().map(|p| p.blobs.len()).sum();
        assert!(n <= 4096, "{key}: {n} blobs");
        for pack in &file.packs {
            assert!(pack.blobs.len() <= 4096, "{key}");
        }
        listed += n;
    }
    assert_eq!(listed, blobs);
    assert!(files.len() >= blobs.div_ceil(pipeline::BLOBS_PER_INDEX));
}

#[test]
fn small_files_past_the_in_flight_budget_are_all_backed_up_in_batches() {
    // 700 files of 15 KiB: 10 MiB, over the 4 MiB the walker may reserve
    // for small files in flight, so it waits for the assembler again and
    // again while it gathers batches for the readers, and fills the event
    // queue between. A batch it still held while it waits (the assembler
    // waiting for that batch's first file) would hang the backup (as it
    // did with the batch left unsent before events went); the watchdog
    // turns that into a failure.
    let (_dir, repo, src) = repo_and_source(16 << 20);
    let n = 700u64;
    const SIZE: usize = 15 << 10;
    assert!(n * SIZE as u64 > 2 * inflight::IN_FLIGHT_MAX);
    for i in 0..n {
        std::fs::write(src.join(format!("f{i:03}")), noise(SIZE, i + 1)).unwrap();
    }
    let opts = BackupOptions {
        paths: vec![src],
        host: Some("test".into()),
        ..Default::default()
    };
    // On a thread of its own, so that a hung backup fails the test instead
    // of hanging it.
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(run(&repo, &opts).map_err(|e| e.to_string()));
    });
    let outcome = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the backup finishes (a batch held while the walker waits hangs it)")
        .unwrap();
    let totals = &outcome.snapshot.totals;
    assert_eq!(totals.files, n);
    assert_eq!(totals.files_read, n);
    assert_eq!(totals.bytes, n * SIZE as u64);
    assert!(
        outcome.snapshot.errors.is_empty(),
        "{:?}",
        outcome.snapshot.errors
    );
}
