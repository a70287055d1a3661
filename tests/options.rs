//! Restore `--dry-run` and `--exclude`; backup `--exclude-file`,
//! `--exclude-if-present` and `--one-file-system`: each from the CLI, bad
//! input refused before anything is written.

use std::fs;

use crate::util::*;

fn listed(env: &Env, id: &str) -> String {
    let out = env.vault(&["ls"], &env.owner_key, &[id]);
    assert_success(&out);
    stdout(&out)
}

fn snapshot_count(env: &Env) -> usize {
    snapshot_ids_in(env.repo.to_str().unwrap(), &env.writer_key).len()
}

#[test]
fn restore_dry_run_lists_and_writes_nothing_and_exclude_leaves_out() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let id = env.backup(&[&src]);
    let rel = src.strip_prefix("/").unwrap().display().to_string();
    let target = env.path("target");
    let t = target.to_str().unwrap();
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--target", t, "--dry-run", "--exclude", "*.key"],
    );
    assert_success(&out);
    let list = stdout(&out);
    assert_contains(&list, "etc/app/app.conf");
    assert_contains(&list, "var/backups/app.sql");
    assert!(!list.contains("server.key"), "{list}");
    assert_contains(&stderr(&out), "nothing was written");
    assert!(
        !target.exists(),
        "a dry run creates nothing, not even the target"
    );
    // Include and a path exclude together; a dry run that matches nothing.
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            &id,
            "--target",
            t,
            "--dry-run",
            "--include",
            &format!("{rel}/etc"),
            "--exclude",
            &format!("{rel}/etc/app/conf.d"),
        ],
    );
    assert_success(&out);
    let list = stdout(&out);
    assert_contains(&list, "etc/app/app.conf");
    assert!(
        !list.contains("10-tls.conf") && !list.contains("app.sql"),
        "{list}"
    );
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--target", t, "--dry-run", "--include", "no/such"],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "matched nothing");
    // A bad pattern is refused before the target is made.
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--target", t, "--exclude", "a[b"],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "exclude pattern");
    assert!(!target.exists());

    // The real restore leaves out what is excluded, and only that.
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            &id,
            "--target",
            t,
            "--exclude",
            "*.key",
            "--exclude",
            &format!("{rel}/var"),
        ],
    );
    assert_success(&out);
    let root = target.join(&rel);
    assert!(root.join("etc/app/app.conf").is_file());
    assert!(!root.join("etc/app/tls/server.key").exists());
    assert!(root.join("etc/app/tls").is_dir());
    assert!(!root.join("var").exists());
    assert_eq!(
        fs::read(root.join("etc/app/app.conf")).unwrap(),
        fs::read(src.join("etc/app/app.conf")).unwrap()
    );
}

#[test]
fn backup_exclude_file_and_exclude_if_present() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("keep/a.txt"), b"a");
    write(&src.join("keep/b.tmp"), b"b");
    write(&src.join("cache/big.bin"), &noise(1000, 1));
    write(&src.join("cache/.nobackup"), b"");
    write(&src.join("logs/x.log"), b"x");
    let excl = env.path("excludes.txt");
    fs::write(&excl, "# temporary files\n*.tmp\n\n   \n*.log\n").unwrap();
    let (out, v) = env.backup_json(&[
        "--exclude-file",
        excl.to_str().unwrap(),
        "--exclude-if-present",
        ".nobackup",
        src.to_str().unwrap(),
    ]);
    assert_success(&out);
    let ls = listed(&env, v["id"].as_str().unwrap());
    assert_contains(&ls, "keep/a.txt");
    for gone in ["b.tmp", "x.log", "big.bin", "/cache"] {
        assert!(!ls.contains(gone), "{gone} in:\n{ls}");
    }
    assert_contains(&ls, "/logs");

    // Bad input: nothing is written.
    let before = snapshot_count(&env);
    fs::write(&excl, "*.tmp\nfoo[\n").unwrap();
    let (out, _) = env.backup_json(&[
        "--exclude-file",
        excl.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), &format!("{}:2:", excl.display()));
    let missing = env.path("missing.txt");
    let (out, _) = env.backup_json(&[
        "--exclude-file",
        missing.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "missing.txt");
    let (out, _) = env.backup_json(&["--exclude-if-present", "a/b", src.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--exclude-if-present");
    assert_eq!(snapshot_count(&env), before);
}

/// Needs root to mount a tmpfs (as the CI runs the suite).
#[test]
fn one_file_system_keeps_a_mount_point_empty() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a tmpfs: run the suite as root (scripts/test.sh in CI does)"
    );
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("here.txt"), b"here");
    let mnt = src.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "vault-test", mnt.to_str().unwrap()])
        .status()
        .expect("mount");
    assert!(status.success(), "mount -t tmpfs failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    write(&mnt.join("other-fs.txt"), b"elsewhere");
    let (out, v) = env.backup_json(&["-x", src.to_str().unwrap()]);
    assert_success(&out);
    let ls = listed(&env, v["id"].as_str().unwrap());
    assert_contains(&ls, "here.txt");
    assert_contains(&ls, "/mnt");
    assert!(!ls.contains("other-fs.txt"), "{ls}");
    let (out, v) = env.backup_json(&[src.to_str().unwrap()]);
    assert_success(&out);
    assert_contains(&listed(&env, v["id"].as_str().unwrap()), "other-fs.txt");
}

#[test]
fn backup_dry_run_lists_what_it_would_store_and_writes_nothing() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("keep/a.txt"), b"aaaa");
    write(&src.join("keep/b.tmp"), b"b");
    write(&src.join("cache/.nobackup"), b"");
    write(&src.join("cache/c.bin"), b"c");
    let marker = env.path("ran");
    let cmd = format!("touch {}", marker.display());
    let before = fs::read_dir(env.repo.join("data")).map_or(0, |d| d.count());
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--dry-run",
            "--no-cache",
            "--exclude",
            "*.tmp",
            "--exclude-if-present",
            ".nobackup",
            "--from-command",
            &cmd,
            "--stdin-filename",
            "cmd.out",
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let list = stdout(&out);
    assert_contains(&list, &format!("{}/keep/a.txt", src.display()));
    assert!(!list.contains("b.tmp") && !list.contains("c.bin"), "{list}");
    assert_contains(&list, "would run: touch");
    assert_contains(&stderr(&out), "nothing was read or written");
    assert!(!marker.exists(), "a dry run runs no command");
    assert_eq!(snapshot_count(&env), 0, "no snapshot");
    assert_eq!(
        fs::read_dir(env.repo.join("data")).map_or(0, |d| d.count()),
        before
    );
    let (out, v) = env.backup_json(&["--dry-run", src.to_str().unwrap()]);
    assert_success(&out);
    assert_eq!(v["files"], 4, "{v}");
    assert_eq!(v["bytes"], 6);
    // Bad input fails as the backup would.
    let (out, _) = env.backup_json(&["--dry-run", "--exclude", "a[", src.to_str().unwrap()]);
    assert_code(&out, 2);
    // More small files than a backup holds in flight for its bundles (6 MiB
    // of 15 KiB files, over the 4 MiB budget): the dry run, which reads
    // none of them, still lists them all.
    let many = env.path("many");
    for i in 0..400 {
        write(&many.join(format!("f{i:03}")), &vec![b'x'; 15 << 10]);
    }
    let (out, v) = env.backup_json(&["--dry-run", many.to_str().unwrap()]);
    assert_success(&out);
    assert_eq!(v["files"], 400, "{v}");
}
