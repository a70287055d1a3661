//! `scripts/restore-without-vault`: a snapshot made by vault can be restored
//! with nothing but bash, `age`, `zstd` and Python 3 (docs/FORMAT.md).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/restore-without-vault")
}

/// The script's tools must be installed: a missing tool fails the test
/// instead of skipping it (CI installs them: `apt-get install age zstd`).
pub fn require_tools() {
    for tool in ["age", "zstd", "python3"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` is needed by scripts/restore-without-vault and its tests; \
             install it (e.g. `apt-get install age zstd python3`)"
        );
    }
}

/// Runs the script with a private TMPDIR so that leftovers can be checked.
fn restore_without_vault(env: &Env, identity: &Path, snapshot: &str, target: &Path) -> Output {
    let tmp = env.path("script-tmp");
    fs::create_dir_all(&tmp).unwrap();
    Command::new(script())
        .args([env.repo.as_os_str(), identity.as_os_str()])
        .arg(snapshot)
        .arg(target)
        .env("TMPDIR", &tmp)
        .env_remove("RESTORE_TMPDIR")
        .output()
        .expect("run scripts/restore-without-vault")
}

/// Where the script (like `vault restore`) puts the source path `src`.
fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// mtimes of every entry, directories and symlinks included (lstat).
fn assert_same_mtimes(a: &Path, b: &Path) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (ma, mb) = (
            fs::symlink_metadata(a.join(&rel)).unwrap(),
            fs::symlink_metadata(b.join(&rel)).unwrap(),
        );
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "{rel:?} mtime"
        );
        if ma.is_dir() {
            assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{rel:?} mode");
            for e in fs::read_dir(a.join(&rel)).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
    }
}

fn assert_no_leftovers(env: &Env, target: &Path) {
    let tmp: Vec<_> = fs::read_dir(env.path("script-tmp")).unwrap().collect();
    assert!(
        tmp.is_empty(),
        "the decrypted owner key was left behind: {tmp:?}"
    );
    for e in fs::read_dir(target).unwrap() {
        let name = e.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with('.'),
            "staging or temporary file left in the target: {name:?}"
        );
    }
}

#[test]
fn restores_a_snapshot_with_only_age_and_zstd() {
    require_tools();
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    // Random bytes (like compressed input) are stored as zstd frames of raw
    // blocks rather than compressed: plain `zstd -d` must read them too.
    write(&src.join("already-compressed.bin"), &noise(300_000, 5));
    let id = env.backup(&[&src]);

    // By `latest`.
    let target = env.path("restored");
    let out = restore_without_vault(&env, &env.owner_key, "latest", &target);
    assert_success(&out);
    assert_contains(&stdout(&out), "result: PASSED");
    let root = restored(&target, &src);
    assert_same_tree(&src, &root);
    assert_same_mtimes(&src, &root);
    // Hard links may come back as copies; this script links them.
    let (a, b) = (
        fs::metadata(root.join("etc/app/app.conf")).unwrap(),
        fs::metadata(root.join("etc/app/app.conf.hardlink")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link restored as a link");
    assert_no_leftovers(&env, &target);

    // By id prefix, and identical to what vault itself restores.
    let by_vault = env.path("by-vault");
    assert_success(&env.restore(&id, &by_vault));
    let target2 = env.path("restored-by-prefix");
    let out = restore_without_vault(&env, &env.owner_key, &id[..12], &target2);
    assert_success(&out);
    assert_same_tree(&restored(&by_vault, &src), &restored(&target2, &src));
    assert_same_mtimes(&restored(&by_vault, &src), &restored(&target2, &src));
}

#[test]
fn refuses_a_key_that_is_not_an_owner() {
    require_tools();
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);

    let stranger = env.path("stranger.key");
    generate_key(&stranger);
    let target = env.path("restored");
    let out = restore_without_vault(&env, &stranger, "latest", &target);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not an owner of this repository") && err.contains("stranger.key"),
        "unclear message: {err}"
    );
    assert!(!target.exists(), "nothing may be written with a wrong key");

    // The writer key is refused with its own explanation.
    let out = restore_without_vault(&env, &env.writer_key, "latest", &target);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    assert!(
        stderr(&out).contains("writer key"),
        "unclear message: {}",
        stderr(&out)
    );
    assert!(
        !target.exists(),
        "nothing may be written with the writer key"
    );
    let tmp: Vec<_> = fs::read_dir(env.path("script-tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temporary files left behind: {tmp:?}");
}

/// A file of more blobs than one content list holds (format version 4) is
/// named by content lists: its directory's tree stays a few hundred bytes
/// however large the file (what a backup holds while building it), and both
/// `vault restore` and the script restore it byte for byte.
#[test]
fn a_file_of_many_chunks_is_named_by_content_lists_and_restored_by_both() {
    use vault::format::tree::{LIST_IDS, Tree};
    require_tools();
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // 1 MiB of hex text repeated: about 64 chunks per repetition, stored
    // once, so some 6,000 blob ids for 100 MiB of file.
    let block: Vec<u8> = noise(512 << 10, 9)
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(fs::File::create(src.join("big.sql")).unwrap());
        for _ in 0..100 {
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
    }
    write(&src.join("small.conf"), b"key = value\n");
    // The file cache does not remember files changed within the last
    // second (their stamp may still move): age them past it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let id = env.backup(&[&src]);

    // The tree holding big.sql names lists, not blobs.
    let repo = open_repo(&env.repo, &env.owner_key);
    let (index, _) = repo.load_index().unwrap();
    let mut reader = vault::repo::BlobReader::new(&repo);
    let src_tree = |snapshot: &str| dir_tree(&env, snapshot, &src);
    let tree_id = src_tree(&id);
    let raw = reader.read_indexed(&tree_id.blob(), &index).unwrap();
    assert!(raw.len() < 2048, "the tree is {} bytes", raw.len());
    let stored = Tree::from_bytes(&raw, tree_id.id()).unwrap();
    let big = stored
        .nodes
        .iter()
        .find(|n| n.name.0 == b"big.sql")
        .unwrap();
    assert!(big.content.is_empty(), "blob ids inline");
    assert!((2..=3).contains(&big.content_lists.len()), "{big:?}");
    let small = stored
        .nodes
        .iter()
        .find(|n| n.name.0 == b"small.conf")
        .unwrap();
    assert!(small.content_lists.is_empty() && small.content.len() == 1);
    // Read from the repository, the lists are filled in, in order.
    let read = repo.read_tree(&index, &mut reader, &tree_id).unwrap();
    let big = read.nodes.iter().find(|n| n.name.0 == b"big.sql").unwrap();
    assert!(big.content.len() > LIST_IDS, "{} blobs", big.content.len());
    let distinct: std::collections::HashSet<_> = big.content.iter().collect();
    assert!(
        distinct.len() < 200,
        "1 MiB repeated: {} ids",
        distinct.len()
    );

    let by_vault = env.path("by-vault");
    assert_success(&env.restore(&id, &by_vault));
    assert_same_tree(&src, &restored(&by_vault, &src));
    fs::remove_dir_all(&by_vault).unwrap();
    // Unchanged, the file comes from the file cache, which keeps its lists.
    let again = env.backup(&[&src]);
    assert_eq!(src_tree(&again), tree_id, "the same tree from the cache");
    let (_, snap) = repo.find_snapshot(&again).unwrap();
    assert_eq!(snap.totals.files_read, 0, "both files came from the cache");
    let target = env.path("by-script");
    let out = restore_without_vault(&env, &env.owner_key, &id, &target);
    assert_success(&out);
    assert_contains(&stdout(&out), "result: PASSED");
    assert_same_tree(&src, &restored(&target, &src));
}
