//! A backup killed with SIGKILL after some packs were uploaded: the next
//! backup reuses what was uploaded (through the upload journal), checks it
//! first, and never trusts a journal entry whose pack is not what it says.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Source size: 24 files of 1 MiB of incompressible bytes.
const FILES: u64 = 24;
const FILE_SIZE: usize = 1 << 20;

/// A repository with 1 MiB packs, so that the source fills about 24 of them.
fn small_pack_repo(env: &Env, name: &str) -> (PathBuf, PathBuf) {
    let repo = env.path(name);
    let writer = env.path(&format!("{name}.writer.key"));
    assert_success(&run(&[
        "init",
        "-r",
        repo.to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--owner-name",
        "ops",
        "--writer-key-out",
        writer.to_str().unwrap(),
        "--pack-size-mib",
        "1",
    ]));
    (repo, writer)
}

/// Data packs stored under `repo/data` (complete or not) with their sizes.
fn data_packs(repo: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(fan) = fs::read_dir(repo.join("data")) else {
        return out;
    };
    for d in fan.flatten() {
        for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() == 64 {
                out.push((f.path(), f.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    out
}

/// Bytes of the data packs whose content hashes to their name (uploads
/// that completed).
fn completed_pack_bytes(repo: &Path) -> u64 {
    data_packs(repo)
        .iter()
        .filter(|(p, _)| {
            let name = p.file_name().unwrap().to_str().unwrap();
            blake3::hash(&fs::read(p).unwrap()).to_hex().as_str() == name
        })
        .map(|(_, size)| size)
        .sum()
}

/// Starts a backup and SIGKILLs it once at least `packs` data packs are
/// stored. Returns false when the backup finished first.
fn kill_after_packs(repo: &Path, writer: &Path, cache: &Path, src: &Path, packs: usize) -> bool {
    let mut child = Command::new(vault_bin())
        .args(["backup", "-r", repo.to_str().unwrap()])
        .args(["-i", writer.to_str().unwrap()])
        .args([
            "--cache-dir",
            cache.to_str().unwrap(),
            src.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if data_packs(repo).len() >= packs {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(Instant::now() < deadline, "the backup stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    for i in 0..FILES {
        write(&src.join(format!("f{i:02}")), &noise(FILE_SIZE, 1000 + i));
    }
    src
}

fn backup_json(repo: &Path, writer: &Path, cache: &Path, src: &Path) -> serde_json::Value {
    let out = run(&[
        "backup",
        "-r",
        repo.to_str().unwrap(),
        "-i",
        writer.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
        src.to_str().unwrap(),
    ]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_read_data(env: &Env, repo: &Path) {
    let out = run(&[
        "check",
        "-r",
        repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
        "--read-data",
    ]);
    assert_success(&out);
}

/// Raw bytes a backup of `src` adds to an empty repository (file data and
/// trees): what a resumed backup adds, less what it reuses.
fn clean_backup_adds(env: &Env, src: &Path) -> u64 {
    let (repo, writer) = small_pack_repo(env, "clean");
    let v = backup_json(&repo, &writer, &env.path("clean-cache"), src);
    v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap()
}

#[test]
fn a_killed_backup_s_uploads_are_reused_by_the_next_one() {
    let env = Env::new();
    let src = source(&env);
    let total = clean_backup_adds(&env, &src);
    // Before the first index file (8 packs), just after it, and late.
    for (n, packs) in [1usize, 3, 9, 17].into_iter().enumerate() {
        let (repo, writer) = small_pack_repo(&env, &format!("repo{n}"));
        let cache = env.path(&format!("cache{n}"));
        assert!(
            kill_after_packs(&repo, &writer, &cache, &src, packs),
            "the backup finished before {packs} packs were stored"
        );
        let completed = completed_pack_bytes(&repo);
        assert!(completed > 0);
        let v = backup_json(&repo, &writer, &cache, &src);
        let added = v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap();
        // The source is incompressible: a completed pack holds about its
        // size in raw bytes (a little less: headers and trailer).
        let reused = total - added;
        let ratio = reused as f64 / completed as f64;
        eprintln!(
            "killed after {packs} packs: {completed} bytes of completed packs, {reused} bytes \
             reused ({:.1} %), resumed {}",
            100.0 * ratio,
            v["resumed"]
        );
        assert!(
            ratio >= 0.9,
            "killed after {packs} packs: reused {reused} of {completed} bytes ({:.1} %)",
            100.0 * ratio
        );
        if packs < 8 {
            // Nothing was indexed when it was killed: all of it came back
            // through the journal.
            assert!(v["resumed"]["packs"].as_u64().unwrap() >= 1, "{v}");
        }
        // What is left in the journal are uploads the kill interrupted
        // (their packs are not stored; kept an hour in case another backup
        // is still uploading them).
        let journal = journal_dir(&cache);
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&journal).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700);
        for e in fs::read_dir(&journal).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue; // killed while writing it
            }
            let id = name.strip_suffix(".json").unwrap();
            assert!(
                !repo.join("data").join(&id[..2]).join(id).exists(),
                "journal entry {name} left for a stored pack"
            );
        }
        check_read_data(&env, &repo);
        let target = env.path(&format!("restored{n}"));
        let id = v["id"].as_str().unwrap();
        let out = run(&[
            "restore",
            "-r",
            repo.to_str().unwrap(),
            "-i",
            env.owner_key.to_str().unwrap(),
            id,
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_success(&out);
        assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    }
}

/// The upload journal under `cache`: `<repository id>/v1/host-*/uploads`.
fn journal_dir(cache: &Path) -> PathBuf {
    fs::read_dir(cache)
        .unwrap()
        .flatten()
        .filter(|d| d.path().is_dir())
        .flat_map(|d| fs::read_dir(d.path().join("v1")).unwrap().flatten())
        .find(|d| d.file_name().to_string_lossy().starts_with("host-"))
        .expect("host directory")
        .path()
        .join("uploads")
}

#[test]
fn journal_entries_whose_pack_does_not_check_out_are_not_indexed() {
    let env = Env::new();
    let src = source(&env);
    let (repo, writer) = small_pack_repo(&env, "small-repo");
    let cache = env.path("cache");
    assert!(kill_after_packs(&repo, &writer, &cache, &src, 4));
    let journal: Vec<PathBuf> = fs::read_dir(journal_dir(&cache))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    let stored: Vec<PathBuf> = data_packs(&repo)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            journal
                .iter()
                .any(|j| j.file_stem().unwrap() == p.file_name().unwrap())
        })
        .collect();
    assert!(stored.len() >= 2, "{journal:?}");
    // One pack replaced by other bytes of the same size (it no longer
    // hashes to its name), one deleted.
    let len = fs::metadata(&stored[0]).unwrap().len() as usize;
    fs::write(&stored[0], noise(len, 7)).unwrap();
    fs::remove_file(&stored[1]).unwrap();
    // A planted entry that is not JSON.
    let planted = journal[0].with_file_name(format!("{}.json", "ab".repeat(32)));
    fs::write(&planted, b"{not json").unwrap();

    let v = backup_json(&repo, &writer, &cache, &src);
    assert!(v["resumed"]["dropped"].as_u64().unwrap() >= 1, "{v}");
    let kept = v["resumed"]["packs"].as_u64().unwrap();
    assert!(kept as usize <= journal.len() - 2, "{v}");
    assert!(!planted.exists());
    // Nothing in the index points into the damaged pack: the new snapshot
    // reads back whole.
    fs::remove_file(&stored[0]).unwrap();
    check_read_data(&env, &repo);
    let target = env.path("restored");
    let out = run(&[
        "restore",
        "-r",
        repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
        v["id"].as_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Tmpfs {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts a tmpfs and must run as root"
        );
        fs::create_dir_all(&at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs(at)
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every object under a final name (64 hex digits) in `repo` hashes to it.
fn assert_nothing_partial(repo: &Path) {
    let mut stack = vec![repo.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                assert_eq!(
                    blake3::hash(&fs::read(&p).unwrap()).to_hex().as_str(),
                    name,
                    "{} is partial",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn a_backup_into_a_full_filesystem_fails_cleanly_and_the_next_one_reuses_its_packs() {
    let env = Env::new();
    let src = source(&env);
    let fs_ = Tmpfs::mount(env.path("small"), "9m");
    let (repo, writer) = {
        let repo = fs_.0.join("repo");
        let writer = env.path("full.writer.key");
        assert_success(&run(&[
            "init",
            "-r",
            repo.to_str().unwrap(),
            "--owner",
            &env.owner_recipient,
            "--owner-name",
            "ops",
            "--writer-key-out",
            writer.to_str().unwrap(),
            "--pack-size-mib",
            "1",
        ]));
        (repo, writer)
    };
    let cache = env.path("cache");
    let out = run(&[
        "backup",
        "-r",
        repo.to_str().unwrap(),
        "-i",
        writer.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert_contains(&err, "No space left");
    assert_contains(&err, repo.to_str().unwrap());
    assert!(
        !repo.join("snapshots").exists()
            || fs::read_dir(repo.join("snapshots")).unwrap().count() == 0
    );
    assert_nothing_partial(&repo);
    let completed = completed_pack_bytes(&repo);
    assert!(completed >= 4 << 20, "only {completed} bytes of packs fit");

    fs_.resize("64m");
    let v = backup_json(&repo, &writer, &cache, &src);
    let added = v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap();
    let reused = FILES * FILE_SIZE as u64 - added;
    assert!(
        reused as f64 >= 0.9 * completed as f64,
        "reused {reused} of {completed} bytes: {v}"
    );
    assert_nothing_partial(&repo);
    check_read_data(&env, &repo);
}

#[test]
fn an_init_killed_midway_is_rerun_and_foreign_leftovers_are_still_refused() {
    let env = Env::new();
    let loc = env.path("fresh");
    let key = env.path("fresh.writer.key");
    let init_args = [
        "init",
        "-r",
        loc.to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--owner-name",
        "ops",
        "--writer-key-out",
        key.to_str().unwrap(),
    ];
    // SIGKILL at the second hard link of a put (the wrapped writer key):
    // the writer key file and the owner file are written, `config` is not.
    let status = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=link,linkat"])
        .args(["-e", "inject=link,linkat:signal=KILL:when=2"])
        .arg(vault_bin())
        .args(init_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("strace (scripts/install-test-deps.sh installs it)");
    assert!(!status.success());
    assert!(loc.join("keys/owners/ops.age").exists());
    assert!(!loc.join("config").exists());
    assert!(key.exists());
    // The same command line again: its own leftovers are replaced.
    assert_success(&run(&init_args));
    assert!(!env.path("fresh.writer.key.init").exists());
    let src = env.path("src");
    write(&src.join("a"), b"after a killed init");
    backup_json(&loc, &key, &env.path("cache"), &src);
    check_read_data(&env, &loc);

    // Objects this init did not write are never removed.
    let other = env.path("other");
    write(&other.join("keys/owners/someone.age"), b"not ours");
    let out = run(&[
        "init",
        "-r",
        other.to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--writer-key-out",
        env.path("other.writer.key").to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "keys/ already holds objects");
    assert_eq!(
        fs::read(other.join("keys/owners/someone.age")).unwrap(),
        b"not ours"
    );
}

/// Regular files beneath `root` and whether the path to each passes
/// through a restore's temporary name (`.vault-restore-*`).
fn files_beneath(root: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_owned(), false)];
    while let Some((dir, hidden)) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let staged = hidden
                || e.file_name()
                    .to_string_lossy()
                    .starts_with(".vault-restore-");
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((e.path(), staged)),
                Ok(t) if t.is_file() => out.push((e.path(), staged)),
                _ => {}
            }
        }
    }
    out
}

#[test]
fn a_restore_stopped_midway_has_no_file_under_its_final_name_and_a_rerun_completes() {
    let env = Env::new();
    let src = env.path("src");
    for d in 0..40u64 {
        for f in 0..100u64 {
            let len = 500 + ((d * 100 + f) * 7919 % 3000) as usize;
            write(
                &src.join(format!("etc/svc{d:02}/conf{f:02}")),
                &noise(len, d * 100 + f),
            );
        }
    }
    env.backup(&[&src]);
    let target = env.path("target");
    fs::create_dir(&target).unwrap();
    let mut child = Command::new(vault_bin())
        .args(["restore", "-r", env.repo.to_str().unwrap()])
        .args(["-i", env.owner_key.to_str().unwrap(), "latest"])
        .args(["--target", target.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Stopped (as a kill would leave it) once it has written some files.
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore finished before it could be stopped"
        );
        if files_beneath(&target).len() >= 10 {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "the restore stalled");
    }
    let seen = files_beneath(&target);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.len() >= 10, "{seen:?}");
    let named: Vec<_> = seen.iter().filter(|(_, staged)| !staged).collect();
    assert!(
        named.is_empty(),
        "files under their final name before the restore ended: {named:?}"
    );
    // What it left is under temporary names only, and a rerun restores
    // the whole tree beside it.
    let left: Vec<_> = fs::read_dir(&target).unwrap().flatten().collect();
    assert!(!left.is_empty());
    for e in &left {
        assert!(
            e.file_name()
                .to_string_lossy()
                .starts_with(".vault-restore-"),
            "{:?}",
            e.file_name()
        );
    }
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}
