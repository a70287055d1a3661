//! Salted ids of small files (format 3, docs/FORMAT.md "Salted blobs"): a
//! host still deduplicates its own small files, and identical small files of
//! two hosts are stored once per host.

use std::collections::HashSet;
use std::path::Path;

use vault::format::id::BlobId;
use vault::format::pack::BlobKind;

use crate::attackers::{StorageAttacker, WriterAttacker};
use crate::util::*;

/// `n` small files (40 to ~6,000 bytes, distinct contents) under `root`.
fn small_files(root: &Path, n: usize) {
    for i in 0..n {
        let len = 40 + (i * 97) % 6_000;
        write(
            &root.join(format!("d{}/f{i}.conf", i % 10)),
            &noise(len, i as u64 + 1),
        );
    }
}

/// The data blobs of `repo`'s index files, as read with `key`.
fn data_blobs(repo: &Path, key: &Path) -> HashSet<BlobId> {
    WriterAttacker::new(repo, key)
        .repo
        .load_index_files()
        .unwrap()
        .index
        .blobs()
        .filter(|(_, l)| l.kind == BlobKind::Data)
        .map(|(id, _)| id)
        .collect()
}

/// Stored bytes of the data packs.
fn data_bytes(repo: &Path) -> u64 {
    StorageAttacker::new(repo)
        .packs()
        .into_iter()
        .filter(|p| p.1 == "data")
        .map(|p| p.2)
        .sum()
}

/// Expected: a host's second backup of the same small files, read again
/// (no file cache) and even from another directory, adds no data blob and
/// no data pack: its salted ids are the same from run to run.
#[test]
fn a_hosts_second_backup_of_the_same_small_files_adds_no_blobs() {
    let env = Env::new();
    let src = env.path("src");
    small_files(&src, 300);
    write(&src.join("large.bin"), &noise(200 << 10, 99));
    backup_no_cache(&env.repo, &env.writer_key, &src);
    let blobs = data_blobs(&env.repo, &env.writer_key);
    let packs = StorageAttacker::new(&env.repo).list("data/").len();
    // Bundled (format 6): about 900 KB of small files in 10 directories
    // fill some 30 bundles of at most 64 KiB (some 60 of 16 KiB before),
    // and the large file 3 or more.
    assert!(
        (25..55).contains(&blobs.len()),
        "{} data blobs",
        blobs.len()
    );

    backup_no_cache(&env.repo, &env.writer_key, &src);
    let moved = env.path("elsewhere");
    assert!(
        std::process::Command::new("cp")
            .args(["-r", src.to_str().unwrap(), moved.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    backup_no_cache(&env.repo, &env.writer_key, &moved);
    assert_eq!(data_blobs(&env.repo, &env.writer_key), blobs);
    assert_eq!(StorageAttacker::new(&env.repo).list("data/").len(), packs);

    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&moved, &target.join(moved.strip_prefix("/").unwrap()));
}

/// Expected: two hosts with keys of their own backing up the same small
/// files store them twice (each host's ids are salted with its own salt),
/// while a file larger than 16 KiB keeps unsalted ids (the same on both
/// hosts). Prints the storage cost.
#[test]
fn identical_small_files_on_two_hosts_are_stored_once_per_host() {
    let env = Env::new();
    let key = |name: &str| {
        let key = env.path(&format!("{name}.key"));
        assert_success(&env.vault(
            &["key", "add-host"],
            &env.owner_key,
            &[name, "--writer-key-out", key.to_str().unwrap()],
        ));
        key
    };
    let (a, b) = (key("a"), key("b"));
    let src = env.path("src");
    small_files(&src, 200);
    let large = noise(100 << 10, 7);

    backup_no_cache(&env.repo, &a, &src);
    let after_a = data_bytes(&env.repo);
    let blobs_a = data_blobs(&env.repo, &a);
    backup_no_cache(&env.repo, &b, &src);
    let after_b = data_bytes(&env.repo);
    let blobs_b: HashSet<BlobId> = &data_blobs(&env.repo, &b) - &blobs_a;
    eprintln!(
        "200 small files ({} bytes): host a stored {after_a} bytes of data packs, host b {} more",
        (0..200).map(|i| 40 + (i * 97) % 6_000).sum::<usize>(),
        after_b - after_a
    );
    assert_eq!(
        blobs_b.len(),
        blobs_a.len(),
        "b shares no small blob with a"
    );

    // Larger files keep unsalted ids: both hosts compute the same.
    let ids_a = WriterAttacker::new(&env.repo, &a).repo.keys().blob_ids();
    let ids_b = WriterAttacker::new(&env.repo, &b).repo.keys().blob_ids();
    assert_eq!(ids_a.unsalted(&large), ids_b.unsalted(&large));
    assert_ne!(ids_a.salted(b"x"), ids_b.salted(b"x"));

    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// Expected: the frozen format-3 fixture (`fixtures/repo-v3/`) stores its
/// small files salted: the unsalted id of `etc/app.conf` is in no index
/// file, its id salted with the fixture's writer key is, with lengths
/// rounded up to 64 bytes (its tests restore it like every fixture).
#[test]
fn the_v3_fixture_stores_small_files_salted() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo-v3");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("writer.key");
    std::fs::copy(fixture.join("writer.key"), &key).unwrap();
    let mut perms = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&key, perms).unwrap();
    let w = WriterAttacker::new(&fixture.join("repo"), &key);
    assert_eq!(w.repo.config().version, 3);
    let content = b"listen = 0.0.0.0:8443\nworkers = 4\n";
    let ids = w.repo.keys().blob_ids();
    let index = w.repo.load_index_files().unwrap().index;
    assert!(!index.contains(&ids.unsalted(content)));
    let loc = index
        .get(&ids.salted(content))
        .expect("salted blob indexed");
    assert_eq!((loc.raw_length, loc.length % 64), (64, 0));
}
