//! Round trips: backup with the writer key, restore and verify with the owner key.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::util::*;

fn snapshots_json(env: &Env) -> serde_json::Value {
    let out = env.vault(&["snapshots"], &env.writer_key, &["--json"]);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn snapshot_by_id<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| &s["snapshot"])
        .expect("snapshot listed")
}

#[test]
fn writer_backup_restores_identically_with_metadata() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let xattr_ok = xattr::set(src.join("etc/app/app.conf"), "user.vault-test", b"v1").is_ok();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(
            &src.join("opt/keystores/keystore.p12"),
            Some(1234.into()),
            Some(4321.into()),
        )
        .unwrap();
    }
    let id = env.backup(&[&src]);

    let target = env.path("restored");
    let out = env.restore(&id[..8], &target);
    assert_success(&out);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &restored);

    let a = fs::metadata(restored.join("etc/app/app.conf")).unwrap();
    let b = fs::metadata(restored.join("etc/app/app.conf.hardlink")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link restored as a hard link");
    if xattr_ok {
        assert_eq!(
            xattr::get(restored.join("etc/app/app.conf"), "user.vault-test")
                .unwrap()
                .as_deref(),
            Some(&b"v1"[..])
        );
    }
    if nix::unistd::geteuid().is_root() {
        let m = fs::metadata(restored.join("opt/keystores/keystore.p12")).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (1234, 4321),
            "ownership restored as root"
        );
    }
    let leftovers: Vec<_> = walk_names(&target)
        .into_iter()
        .filter(|n| n.contains(".vault-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn walk_names(root: &Path) -> Vec<String> {
    let out = std::process::Command::new("find")
        .arg(root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn second_backup_skips_unchanged_files_and_stores_only_new_chunks() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    // The cache only trusts files whose timestamps are over a second older
    // than the backup, so that a file changed within the same clock tick is
    // never mistaken for unchanged.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = env.backup(&[&src]);
    let mut dump = fs::read(src.join("var/backups/app.sql")).unwrap();
    dump.splice(300_000..300_010, b"UPDATED!!!".iter().copied());
    write(&src.join("var/backups/app.sql"), &dump);
    let second = env.backup(&[&src]);
    let list = snapshots_json(&env);
    let (s1, s2) = (
        snapshot_by_id(&list, &first),
        snapshot_by_id(&list, &second),
    );
    assert_eq!(s2["parent"], first.as_str());
    assert_eq!(s1["totals"]["files_read"], s1["totals"]["files"]);
    // Only the changed file is read, plus the two keystores (server.key,
    // keystore.p12), which are always read for their certificates.
    assert_eq!(
        s2["totals"]["files_read"], 3,
        "only the changed file is read: {s2}"
    );
    let added = s2["totals"]["bytes_added"].as_u64().unwrap();
    let total = s1["totals"]["bytes_added"].as_u64().unwrap();
    assert!(
        added * 5 < total,
        "second backup added {added} of {total} bytes"
    );

    let target = env.path("restored");
    assert_success(&env.restore("latest", &target));
    assert_eq!(
        fs::read(
            target
                .join(src.strip_prefix("/").unwrap())
                .join("var/backups/app.sql")
        )
        .unwrap(),
        dump
    );
}

#[test]
fn no_cache_still_dedupes_everything() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--no-cache", "--json", src.to_str().unwrap()],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["snapshot"]["totals"]["files_read"],
        v["snapshot"]["totals"]["files"]
    );
    // Only directory trees whose metadata changed (the parent of the cache
    // directory) are new; no file content is stored again.
    assert!(
        v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap() < 4096,
        "nothing new to store: {v}"
    );
}

#[test]
fn excludes_tags_and_host_are_recorded() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("etc/app/scratch.tmp"), b"tmp");
    write(&src.join("var/cache/big"), b"cache");
    let cache_glob = format!("{}/var/cache", src.display());
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--no-cache",
            "--exclude",
            "*.tmp",
            "--exclude",
            &cache_glob,
            "--tag",
            "nightly",
            "--tag",
            "etc",
            "--host",
            "web1",
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let list = snapshots_json(&env);
    let s = &list[0]["snapshot"];
    assert_eq!(s["host"], "web1");
    assert_eq!(s["tags"], serde_json::json!(["nightly", "etc"]));
    let ls = env.vault(&["ls"], &env.owner_key, &["latest"]);
    assert_success(&ls);
    let listing = stdout(&ls);
    assert!(listing.contains("app.conf"), "{listing}");
    assert!(!listing.contains("scratch.tmp"), "{listing}");
    assert!(!listing.contains("var/cache"), "{listing}");
}

#[test]
fn include_restores_only_the_selected_subtree() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let rel = src.strip_prefix("/").unwrap();
    let target = env.path("restored");
    let include = format!("{}/etc/app", rel.display());
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--include",
            &include,
        ],
    );
    assert_success(&out);
    assert!(target.join(rel).join("etc/app/app.conf").is_file());
    assert!(
        target
            .join(rel)
            .join("etc/app/conf.d/10-tls.conf")
            .is_file()
    );
    assert!(!target.join(rel).join("var").exists());
    assert!(!target.join(rel).join("opt").exists());
}

#[test]
fn verify_reports_every_file_and_records_a_drill() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let id = env.backup(&[&src]);
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &["latest", "--verify", "--json"],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true);
    assert_eq!(v["report"]["snapshot"], id.as_str());
    assert_eq!(v["report"]["verified"], v["report"]["files"]);
    assert!(v["report"]["files"].as_u64().unwrap() >= 6);
    let drill = v["drill"].as_str().unwrap();
    assert!(env.repo.join("drills").join(drill).is_file());
    // The sandbox is gone afterwards.
    let sandbox = v["report"]["target"].as_str().unwrap();
    assert!(
        !Path::new(sandbox).exists(),
        "sandbox {sandbox} left behind"
    );

    let text = env.vault(&["restore"], &env.owner_key, &["latest", "--verify"]);
    assert_success(&text);
    assert!(stdout(&text).contains("result: PASSED"));
}

#[test]
fn dump_streams_a_tar_of_a_subtree() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let rel = src.strip_prefix("/").unwrap().join("etc");
    let out = env.vault(
        &["dump"],
        &env.owner_key,
        &["latest", rel.to_str().unwrap()],
    );
    assert_success(&out);
    let tar_path = env.path("out.tar");
    fs::write(&tar_path, &out.stdout).unwrap();
    let x = env.path("x");
    fs::create_dir_all(&x).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        fs::read(x.join(&rel).join("app/app.conf")).unwrap(),
        fs::read(src.join("etc/app/app.conf")).unwrap()
    );
    assert_eq!(
        fs::read_link(x.join(&rel).join("app/current.conf")).unwrap(),
        Path::new("app.conf")
    );
    assert!(!x.join(src.strip_prefix("/").unwrap()).join("var").exists());
}

#[test]
fn concurrent_backups_both_complete_and_check_clean() {
    let env = Env::new();
    let (a, b) = (env.path("host-a"), env.path("host-b"));
    sample_tree(&a);
    sample_tree(&b);
    write(&a.join("big.bin"), &noise(6 << 20, 7));
    write(&b.join("big.bin"), &noise(6 << 20, 7));
    let spawn = |p: &Path, host: &str| {
        std::process::Command::new(vault_bin())
            .args([
                "backup",
                "-r",
                env.repo.to_str().unwrap(),
                "-i",
                env.writer_key.to_str().unwrap(),
                "--no-cache",
                "--host",
                host,
            ])
            .arg(p)
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a, "a"));
        let hb = s.spawn(|| spawn(&b, "b"));
        (ha.join().unwrap().unwrap(), hb.join().unwrap().unwrap())
    });
    assert_success(&ra);
    assert_success(&rb);
    let check = env.vault(&["check"], &env.owner_key, &["--read-data", "--storage"]);
    assert_success(&check);
    assert_contains(&stdout(&check), "checked 2 snapshots");
    // A third backup of either tree now stores nothing new.
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--no-cache", "--json", a.to_str().unwrap()],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap() < 4096,
        "only changed trees are new: {v}"
    );
    for (i, p) in [&a, &b].iter().enumerate() {
        let t = env.path(&format!("r{i}"));
        let list = snapshots_json(&env);
        let host = if i == 0 { "a" } else { "b" };
        let id = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["snapshot"]["host"] == host)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_success(&env.restore(&id, &t));
        assert_same_tree(p, &t.join(p.strip_prefix("/").unwrap()));
    }
}

#[test]
fn check_passes_on_a_healthy_repository_with_every_mode() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    assert_success(&env.vault(&["check"], &env.owner_key, &[]));
    assert_success(&env.vault(&["check"], &env.owner_key, &["--read-data"]));
    assert_success(&env.vault(&["check"], &env.owner_key, &["--read-data-subset", "1/2"]));
    assert_success(&env.vault(&["check"], &env.writer_key, &[]));
    let storage_only = run(&["check", "-r", env.repo.to_str().unwrap(), "--storage"]);
    assert_success(&storage_only);
    assert!(stdout(&storage_only).contains("no errors"));
}

#[test]
fn source_paths_with_dot_dot_are_normalized() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let odd = src.join("etc/../var/../etc");
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--no-cache", odd.to_str().unwrap()],
    );
    assert_success(&out);
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    let rel = src.strip_prefix("/").unwrap();
    assert_same_tree(&src.join("etc"), &target.join(rel).join("etc"));
}

#[test]
fn hard_linked_symlinks_and_fifos_restore() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    std::os::unix::fs::symlink("target-file", src.join("sl")).unwrap();
    fs::hard_link(src.join("sl"), src.join("sl2")).unwrap();
    nix::unistd::mkfifo(
        &src.join("ff"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    fs::hard_link(src.join("ff"), src.join("ff2")).unwrap();
    write(&src.join("f"), b"data");
    fs::hard_link(src.join("f"), src.join("f2")).unwrap();
    env.backup(&[&src]);
    let target = env.path("t");
    let out = env.restore("latest", &target);
    assert_success(&out);
    let r = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src, &r);
    for (a, b) in [("sl", "sl2"), ("ff", "ff2"), ("f", "f2")] {
        let (ma, mb) = (
            fs::symlink_metadata(r.join(a)).unwrap(),
            fs::symlink_metadata(r.join(b)).unwrap(),
        );
        assert_eq!(ma.ino(), mb.ino(), "{a} and {b} are one inode");
    }
}

#[test]
fn include_that_matches_nothing_is_an_error() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &["latest", "--verify", "--include", "no/such/path"],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "matched nothing");
    assert!(
        !env.repo.join("drills").exists()
            || fs::read_dir(env.repo.join("drills")).unwrap().count() == 0
    );
}

#[test]
fn deep_directory_nesting_backs_up_and_restores() {
    let env = Env::new();
    let src = env.path("src");
    let mut deep = src.clone();
    for _ in 0..700 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom.txt"), b"deep");
    env.backup(&[&src]);
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    let restored = target
        .join(deep.strip_prefix("/").unwrap())
        .join("bottom.txt");
    assert_eq!(fs::read(restored).unwrap(), b"deep");
}

#[test]
fn a_directory_after_a_deep_one_is_restored_under_its_name() {
    // Directories deeper than restore keeps open close the levels above
    // them; a new directory made afterwards beside the deep one is made
    // in its reopened parent, which is out of sight until the end, and
    // must come back under its own name like every other.
    let env = Env::new();
    let src = env.path("src");
    let mut deep = src.join("a");
    for i in 0..24 {
        deep.push(format!("c{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom.txt"), b"deep");
    write(&src.join("z/sub/g"), b"beside");
    write(&src.join("zz"), b"last");
    env.backup(&[&src]);
    let target = env.path("t");
    let out = env.restore("latest", &target);
    assert_success(&out);
    let root = target.join(src.strip_prefix("/").unwrap());
    let restored = root
        .join(deep.strip_prefix(&src).unwrap())
        .join("bottom.txt");
    assert_eq!(fs::read(restored).unwrap(), b"deep");
    assert_eq!(fs::read(root.join("z/sub/g")).unwrap(), b"beside");
    assert_eq!(fs::read(root.join("zz")).unwrap(), b"last");
    let leftovers: Vec<_> = walk_names(&target)
        .into_iter()
        .filter(|n| n.contains(".vault-restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn progress_is_drawn_on_a_terminal_and_never_into_a_pipe() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), &noise(200_000, 9));
    let cmd = format!(
        "{} backup -r {} -i {} --no-cache {}",
        vault_bin().display(),
        env.repo.display(),
        env.writer_key.display(),
        src.display()
    );
    // `script` gives the command a terminal.
    let tty = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux)");
    assert_success(&tty);
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert_contains(&shown, "uploaded");
    assert_contains(&shown, "snapshot ");
    let piped = env.vault(
        &["backup"],
        &env.writer_key,
        &["--no-cache", src.to_str().unwrap()],
    );
    assert_success(&piped);
    assert!(!stderr(&piped).contains("uploaded"), "{}", stderr(&piped));
    assert!(!stdout(&piped).contains('\r'));
}

#[test]
fn the_file_cache_follows_the_walk_across_sources_and_tricky_names() {
    let env = Env::new();
    let src = env.path("src");
    // Names whose byte order differs from walk order ("a.txt" < "a/x" as
    // bytes, but the walk enters a/ first), sources given out of order.
    for rel in [
        "b/one",
        "b/two",
        "a/x",
        "a/y/z",
        "a.txt",
        "a-b",
        "A",
        "a/y.conf",
        "c/deep/er/file",
    ] {
        write(&src.join(rel), format!("content of {rel}\n").as_bytes());
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let sources = ["c", "b", "a.txt", "a", "A", "a-b"].map(|s| src.join(s));
    let args: Vec<&Path> = sources.iter().map(|p| p.as_path()).collect();
    let first = env.backup(&args);
    let second = env.backup(&args);
    // One file changed, one removed, one new.
    write(&src.join("a/y/z"), b"changed content\n");
    fs::remove_file(src.join("a/y.conf")).unwrap();
    write(&src.join("a/new"), b"new\n");
    let third = env.backup(&args);
    let list = snapshots_json(&env);
    let files_read = |id: &str| {
        snapshot_by_id(&list, id)["totals"]["files_read"]
            .as_u64()
            .unwrap()
    };
    let files = |id: &str| {
        snapshot_by_id(&list, id)["totals"]["files"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(files_read(&first), files(&first));
    assert_eq!(files_read(&second), 0, "nothing changed, nothing read");
    assert_eq!(files_read(&third), 2, "the changed and the new file only");
    // Only the cache itself is left in the cache directory's repository folder.
    let leftovers: Vec<_> = fs::read_dir(&env.cache)
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|p| fs::read_dir(p).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("files-"))
        .collect();
    assert!(
        leftovers.iter().all(|n| n.ends_with(".v2.zst")),
        "{leftovers:?}"
    );
    let target = env.path("restored");
    assert_success(&env.restore("latest", &target));
    let root = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(fs::read(root.join("a/y/z")).unwrap(), b"changed content\n");
    assert_eq!(fs::read(root.join("A")).unwrap(), b"content of A\n");
}

/// A repository whose chunker's largest chunk (4 KiB here) is under the
/// 16 KiB of a bundle: bundles stay within it, since no data blob may be
/// larger (readers refuse an index entry that is), and every file restores.
#[test]
fn bundles_stay_within_a_small_chunkers_largest_chunk() {
    let env = Env::with_init(&["--chunk-avg-kib", "1"]);
    let src = env.path("src");
    for i in 0..10 {
        write(&src.join(format!("f{i}")), &noise(1000 + i * 100, i as u64));
    }
    // 3 KiB: one chunk of a 4 KiB chunker, or more.
    write(&src.join("g"), &noise(3 << 10, 99));
    let (out, _) = env.backup_json(&[src.to_str().unwrap()]);
    assert_success(&out);
    assert_success(&env.vault(&["check"], &env.owner_key, &["--read-data"]));
    let target = env.path("target");
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// The bytes of a small file deleted (or changed) since the last backup
/// must not live on in a bundle its unchanged neighbours keep naming:
/// the next backup reads those neighbours again and bundles them anew, so
/// once the snapshots holding the file are forgotten and pruned its bundle
/// is gone from the repository. A backup with nothing changed reads
/// nothing again.
#[test]
fn a_deleted_small_files_bytes_leave_with_the_snapshots_that_hold_it() {
    let env = Env::new();
    let src = env.path("src");
    let dir = src.join("etc/app");
    for i in 0..6 {
        write(
            &dir.join(format!("conf{i}")),
            format!("setting_{i} = {}\n", i * 7).as_bytes(),
        );
    }
    write(&dir.join("conf3"), b"leaked_token = 8c1f0e77d2a94b5f\n");
    write(
        &src.join("other/keep"),
        b"an untouched neighbour elsewhere\n",
    );
    // Old enough for the file cache (it skips files changed in the last
    // second).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = env.backup(&[&src]);
    let nodes = dir_nodes(&env, &first, &dir);
    let bundle = nodes[0].content[0];
    assert!(
        nodes
            .iter()
            .all(|n| n.content == [bundle] && n.bundle_offset.is_some()),
        "six small files of one owner share a bundle"
    );
    let elsewhere = dir_nodes(&env, &first, &src.join("other"))[0]
        .content
        .clone();

    fs::remove_file(dir.join("conf3")).unwrap();
    let second = env.backup(&[&src]);
    let nodes = dir_nodes(&env, &second, &dir);
    assert_eq!(nodes.len(), 5);
    assert!(
        nodes.iter().all(|n| n.content[0] != bundle),
        "the unchanged files still name the bundle holding the deleted one"
    );
    assert_eq!(
        dir_nodes(&env, &second, &src.join("other"))[0].content,
        elsewhere,
        "another directory's bundle is kept"
    );
    let list = snapshots_json(&env);
    assert_eq!(
        snapshot_by_id(&list, &second)["totals"]["files_read"],
        5,
        "the five neighbours are read again, nothing else"
    );
    // Nothing changed since: nothing read, the new bundle kept.
    let third = env.backup(&[&src]);
    let list = snapshots_json(&env);
    assert_eq!(snapshot_by_id(&list, &third)["totals"]["files_read"], 0);
    assert_eq!(
        dir_nodes(&env, &third, &dir)
            .iter()
            .map(|n| n.content[0])
            .collect::<Vec<_>>(),
        nodes.iter().map(|n| n.content[0]).collect::<Vec<_>>()
    );

    // Forgetting the first snapshot, and prunes that repack every pack
    // holding a blob no snapshot needs, remove the old bundle.
    assert_success(&env.vault(&["forget"], &env.owner_key, &["--keep-last", "2"]));
    for _ in 0..2 {
        assert_success(&env.vault(
            &["prune"],
            &env.owner_key,
            &["--repack-unused-percent", "1", "--grace", "0s"],
        ));
    }
    let (index, _) = open_repo(&env.repo, &env.owner_key).load_index().unwrap();
    assert!(
        !index.contains(&bundle),
        "the deleted file's bundle is still stored"
    );
    assert!(index.contains(&nodes[0].content[0]));
    let target = env.path("target");
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// Only files the next backup will know share a bundle: a file changed
/// in the second before the backup (the file cache does not record it)
/// and a keystore (read every time) are stored alone, so that deleting or
/// changing either later is seen and its bytes leave with its snapshots.
#[test]
fn files_the_next_backup_cannot_follow_are_never_bundled() {
    let env = Env::new();
    let src = env.path("src");
    for name in ["a.conf", "b.conf", "tls.key"] {
        write(&src.join(name), format!("{name} holds this\n").as_bytes());
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&src.join("c-fresh.conf"), b"written just now\n");
    let id = env.backup(&[&src]);
    let nodes = dir_nodes(&env, &id, &src);
    let offset = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name.0 == name.as_bytes())
            .unwrap()
            .bundle_offset
    };
    assert!(offset("a.conf").is_some() && offset("b.conf").is_some());
    assert_eq!(offset("c-fresh.conf"), None, "a fresh file is stored alone");
    assert_eq!(offset("tls.key"), None, "a keystore is stored alone");
    let target = env.path("target");
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}
