//! Prune: two-phase deletion with a grace period, repacking, the owner-only
//! rule, SIGKILL at any point, and prune running beside backups.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Number of pack objects in a local repository.
fn packs(repo: &Path) -> usize {
    ["data", "tree"]
        .iter()
        .map(|k| {
            walk_files(&repo.join(k))
                .into_iter()
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .count()
        })
        .sum()
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk_files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn prune_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend(args);
    let out = env.vault(&["prune"], &env.owner_key, &all);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_clean(env: &Env) {
    let out = env.vault(&["check"], &env.owner_key, &["--read-data"]);
    assert_success(&out);
}

#[test]
fn unused_packs_are_marked_then_deleted_and_what_remains_restores() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("keep.bin"), &noise(300_000, 1));
    write(&src.join("gone.bin"), &noise(3_000_000, 2));
    let first = env.backup(&[&src]);
    fs::remove_file(src.join("gone.bin")).unwrap();
    write(&src.join("new.bin"), &noise(2_000_000, 3));
    let second = env.backup(&[&src]);
    // The first snapshot goes (forget does this; here by hand).
    fs::remove_file(env.repo.join("snapshots").join(&first)).unwrap();
    let before = packs(&env.repo);

    let dry = prune_json(&env, &["--grace", "0s", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(packs(&env.repo), before, "a dry run changes nothing");

    // Run 1 only marks (or repacks): nothing is deleted yet.
    let r1 = prune_json(&env, &["--grace", "0s"]);
    let marked = r1["plan"]["packs_newly_marked"].as_u64().unwrap()
        + r1["plan"]["packs_repacked"].as_u64().unwrap();
    assert!(marked >= 1, "{r1}");
    assert_eq!(r1["plan"]["packs_deleted"], 0, "{r1}");
    assert!(packs(&env.repo) >= before);
    check_clean(&env);

    // Run 2 deletes what is still unused.
    let r2 = prune_json(&env, &["--grace", "0s"]);
    assert!(r2["plan"]["packs_deleted"].as_u64().unwrap() >= 1, "{r2}");
    assert!(packs(&env.repo) < before + r1["packs_written"].as_u64().unwrap() as usize);
    check_clean(&env);
    let target = env.path("restored");
    assert_success(&env.restore(&second, &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    // With a real grace period a fresh mark protects the packs.
    let stored_before: usize = packs(&env.repo);
    let r3 = prune_json(&env, &[]);
    assert_eq!(r3["plan"]["packs_deleted"], 0);
    assert_eq!(packs(&env.repo), stored_before);
}

#[test]
fn mostly_empty_packs_are_repacked() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..20 {
        write(&src.join(format!("f{i}")), &noise(100_000, i));
    }
    let first = env.backup(&[&src]);
    for i in 2..20 {
        fs::remove_file(src.join(format!("f{i}"))).unwrap();
    }
    let second = env.backup(&[&src]);
    fs::remove_file(env.repo.join("snapshots").join(&first)).unwrap();
    let r1 = prune_json(&env, &["--grace", "0s"]);
    assert!(r1["plan"]["packs_repacked"].as_u64().unwrap() >= 1, "{r1}");
    assert!(r1["packs_written"].as_u64().unwrap() >= 1, "{r1}");
    let r2 = prune_json(&env, &["--grace", "0s"]);
    assert!(r2["plan"]["packs_deleted"].as_u64().unwrap() >= 1, "{r2}");
    check_clean(&env);
    let size: u64 = walk_files(&env.repo.join("data"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        size < 600_000,
        "repacked data holds 2 files' worth, not 20: {size}"
    );
    let target = env.path("restored");
    assert_success(&env.restore(&second, &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn prune_needs_an_owner_key() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    let out = env.vault(&["prune"], &env.writer_key, &["--grace", "0s"]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "prune needs an owner key");
    assert!(fs::read_dir(env.repo.join("locks")).map_or(true, |d| d.count() == 0));
}

#[test]
fn prune_killed_at_any_point_leaves_a_valid_repository() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..40 {
        write(&src.join(format!("f{i}")), &noise(200_000, i));
    }
    let old = env.backup(&[&src]);
    for i in 5..40 {
        fs::remove_file(src.join(format!("f{i}"))).unwrap();
    }
    let keep = env.backup(&[&src]);
    fs::remove_file(env.repo.join("snapshots").join(&old)).unwrap();
    for delay_ms in [5u64, 40, 120, 300] {
        let mut child = Command::new(vault_bin())
            .args(["prune", "-r", env.repo.to_str().unwrap()])
            .args(["-i", env.owner_key.to_str().unwrap(), "--grace", "0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        check_clean(&env);
    }
    // The dead prune's lock does not block the next run on this host.
    prune_json(&env, &["--grace", "0s"]);
    prune_json(&env, &["--grace", "0s"]);
    check_clean(&env);
    let target = env.path("restored");
    assert_success(&env.restore(&keep, &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn backups_running_beside_prune_lose_nothing() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..8 {
        write(&src.join(format!("f{i}")), &noise(150_000, i));
    }
    env.backup(&[&src]);
    let stop = Instant::now() + Duration::from_secs(12);
    let repo = env.repo.clone();
    let owner = env.owner_key.clone();
    // Prune in a loop with a grace period far longer than one backup.
    let pruner = std::thread::spawn(move || {
        let (mut runs, mut deleted) = (0, 0);
        while Instant::now() < stop {
            let out = run(&[
                "prune",
                "-r",
                repo.to_str().unwrap(),
                "-i",
                owner.to_str().unwrap(),
                "--grace",
                "3s",
                "--json",
            ]);
            assert_success(&out);
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            deleted += r["plan"]["packs_deleted"].as_u64().unwrap();
            runs += 1;
        }
        (runs, deleted)
    });
    let mut round = 0u64;
    let mut kept = Vec::new();
    while Instant::now() < stop {
        // Change part of the tree, back up, and drop all but the last two
        // snapshots, so prune always has unused packs to mark and delete.
        write(
            &src.join(format!("f{}", round % 8)),
            &noise(150_000, 1000 + round),
        );
        let id = env.backup(&[&src]);
        kept.push(id);
        if kept.len() > 2 {
            let old = kept.remove(0);
            fs::remove_file(env.repo.join("snapshots").join(old)).unwrap();
        }
        round += 1;
    }
    let (prunes, deleted) = pruner.join().unwrap();
    assert!(
        prunes >= 3 && round >= 3,
        "prunes {prunes}, backups {round}"
    );
    assert!(deleted >= 1, "prune deleted nothing in {prunes} runs");
    eprintln!("{round} backups beside {prunes} prunes that deleted {deleted} packs");
    check_clean(&env);
    let target = env.path("restored");
    assert_success(&env.restore(kept.last().unwrap(), &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn a_backup_whose_reused_packs_vanish_meanwhile_writes_no_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), &noise(300_000, 3));
    env.backup(&[&src]);
    // Stand-in for a prune run with too short a grace period: the command
    // source deletes every data pack while the backup runs (after it loaded
    // the index and found the file's chunks there).
    let wipe = format!(
        "find {} -type f -delete; echo x",
        env.repo.join("data").display()
    );
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--no-cache",
            "--from-command",
            &wipe,
            "--stdin-filename",
            "x",
            src.to_str().unwrap(),
        ],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "were deleted while it ran");
    let snaps = fs::read_dir(env.repo.join("snapshots")).unwrap().count();
    assert_eq!(snaps, 1, "no snapshot pointing at deleted packs");
}

#[test]
fn a_backup_whose_cached_files_packs_vanish_meanwhile_writes_no_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), &noise(300_000, 4));
    // Old enough for the file cache (it skips files changed in the last
    // second).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.backup(&[&src]);
    // The file comes from the cache now: never read, its blobs looked up
    // once, by the walker.
    let cache = env.cache.to_str().unwrap();
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--cache-dir", cache, "--json", src.to_str().unwrap()],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["snapshot"]["totals"]["files_read"], 0, "{v}");
    // The packs go while the next backup runs; that backup relied on them
    // for the cached file only.
    let wipe = format!(
        "find {} -type f -delete; echo x",
        env.repo.join("data").display()
    );
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--cache-dir",
            cache,
            "--from-command",
            &wipe,
            "--stdin-filename",
            "x",
            src.to_str().unwrap(),
        ],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "were deleted while it ran");
    let snaps = fs::read_dir(env.repo.join("snapshots")).unwrap().count();
    assert_eq!(snaps, 2, "no snapshot pointing at deleted packs");
}

#[test]
fn prune_removes_old_leftovers_of_killed_puts_and_keeps_fresh_ones() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    let old = env.repo.join("data/.tmp-killed");
    let fresh = env.repo.join("index/.tmp-writing");
    write(&old, b"half a pack");
    write(&fresh, b"being written");
    let aged = std::process::Command::new("touch")
        .args(["-d", "2 hours ago", old.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(aged.success());
    let r = prune_json(&env, &["--grace", "0s"]);
    assert_eq!(r["leftovers_removed"], 1, "{r}");
    assert!(!old.exists());
    assert!(fresh.exists(), "a put may still be writing it");
}

/// A prune lock whose process is a zombie (it exited; its parent has not
/// collected it) is a dead prune's lock: the next prune on that host
/// removes it and runs. Control: a lock of a live process is honoured.
#[test]
fn a_prune_lock_held_by_a_zombie_process_is_treated_as_dead() {
    use vault::format::lock::LockRecord;
    use vault::repo::ObjectKind;
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"x\n");
    env.backup(&[&src]);
    let owner = open_repo(&env.repo, &env.owner_key);
    let plant = |pid: u32| {
        let record = LockRecord {
            time: chrono::Utc::now(),
            host: vault::source::host::hostname(),
            pid,
            nonce: "00".repeat(16),
        };
        owner
            .put_signed_transient_json(ObjectKind::Lock, &record)
            .unwrap()
    };
    // Control: this test's own (live) process holds it.
    let live = plant(std::process::id());
    let out = env.vault(&["prune"], &env.owner_key, &[]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "another prune");
    fs::remove_file(env.repo.join("locks").join(live.to_hex())).unwrap();

    let child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    // Wait for it to exit without collecting it: it stays a zombie.
    nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    )
    .unwrap();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    assert_contains(&stat, ") Z ");
    plant(pid);
    let out = env.vault(&["prune"], &env.owner_key, &[]);
    assert_success(&out);
    assert_contains(&stderr(&out), "removing stale prune lock");
    assert!(fs::read_dir(env.repo.join("locks")).map_or(true, |d| d.count() == 0));
    drop(child);
}

/// Index files (not leftovers of interrupted writes) in a local repository.
fn index_files(repo: &Path) -> Vec<std::path::PathBuf> {
    walk_files(&repo.join("index"))
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[test]
fn prune_compacts_many_small_index_files_into_a_few_and_a_kill_between_write_and_delete_loses_nothing()
 {
    let env = Env::new();
    let src = env.path("src");
    let mut snapshots = Vec::new();
    for i in 0..40u64 {
        write(&src.join(format!("f{i}.bin")), &noise(20_000, 100 + i));
        snapshots.push(env.backup(&[&src]));
    }
    let before = index_files(&env.repo);
    assert!(before.len() >= 40, "{} index files", before.len());
    let saved = env.path("saved-index");
    fs::create_dir_all(&saved).unwrap();
    for f in &before {
        fs::copy(f, saved.join(f.file_name().unwrap())).unwrap();
    }

    let r = prune_json(&env, &["--grace", "0s"]);
    let after = index_files(&env.repo);
    assert!(
        after.len() <= 3,
        "{} index files after prune: {r}",
        after.len()
    );
    assert_eq!(
        r["index_files_removed"].as_u64().unwrap(),
        before.len() as u64,
        "{r}"
    );
    assert_eq!(r["plan"]["packs_deleted"], 0, "{r}");
    check_clean(&env);
    let target = env.path("restored");
    assert_success(&env.restore(snapshots.last().unwrap(), &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    // A writer's next backup (no local record of what it wrote) still
    // deduplicates: against the owner-signed compacted files.
    let data_before = packs(&env.repo);
    let (out, v) = env.backup_json(&[src.to_str().unwrap()]);
    assert_success(&out);
    assert!(
        v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap() < 4096,
        "the content is stored again: {v}"
    );
    assert!(packs(&env.repo) <= data_before + 1, "{v}");

    // A prune killed after writing the new files and before deleting the
    // old ones leaves both: put the old ones back.
    for f in fs::read_dir(&saved).unwrap() {
        let f = f.unwrap().path();
        let dest = before
            .iter()
            .find(|p| p.file_name() == f.file_name())
            .unwrap();
        fs::copy(&f, dest).unwrap();
    }
    assert!(index_files(&env.repo).len() >= 41);
    check_clean(&env);
    let target = env.path("restored-again");
    assert_success(&env.restore(&snapshots[0], &target));
    let first = target.join(src.strip_prefix("/").unwrap()).join("f0.bin");
    assert_eq!(fs::read(first).unwrap(), noise(20_000, 100));
    // The next prune finishes the job.
    prune_json(&env, &["--grace", "0s"]);
    assert!(index_files(&env.repo).len() <= 3);
    check_clean(&env);
    let target = env.path("restored-last");
    assert_success(&env.restore(snapshots.last().unwrap(), &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}
