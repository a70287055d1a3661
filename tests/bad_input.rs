//! Bad input gets a clear error naming what is wrong, and nothing is lost or
//! half-written: wrong keys, damaged objects, crafted trees, full disks,
//! unreadable sources, killed backups.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vault::crypto::Keyring;
use vault::format::id::{BlobId, Id};
use vault::format::index::{IndexFile, IndexedPack};
use vault::format::pack::BlobKind;
use vault::format::snapshot::{Snapshot, SourceRecord, SourceStatus, Totals};
use vault::format::tree::{Bytes, Node, NodeKind, Tree};
use vault::repo::ObjectKind;
use vault::repo::packer::PackBuilder;

use crate::util::*;

fn objects(repo: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![repo.join(prefix)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else if !p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
            {
                // Temporary files of a put cut short by SIGKILL are not objects.
                out.push(p)
            }
        }
    }
    out.sort();
    out
}

/// Flips one byte in the middle of `path`.
fn corrupt(path: &Path) {
    let mut b = fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x55;
    fs::write(path, b).unwrap();
}

/// The data pack holding the content of the large dump file (the largest pack).
fn largest_data_pack(env: &Env) -> PathBuf {
    objects(&env.repo, "data")
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap()
}

/// A repository with two packs: one with the big dump, one with everything else.
fn env_with_two_packs() -> (Env, PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("var/backups/huge.bin"), &noise(20 << 20, 3));
    env.backup(&[&src]);
    (env, src)
}

#[test]
fn wrong_key_is_refused_with_a_clear_message() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let stranger = env.path("stranger.key");
    generate_key(&stranger);
    let out = env.restore("latest", &env.path("t"));
    assert_success(&out);
    let out = env.vault(
        &["restore"],
        &stranger,
        &["latest", "--target", env.path("t2").to_str().unwrap()],
    );
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("neither this repository's writer key nor an owner"),
        "{err}"
    );
    assert!(
        !err.contains("AGE-SECRET-KEY"),
        "secret in error output: {err}"
    );
    assert!(!env.path("t2").exists() || fs::read_dir(env.path("t2")).unwrap().next().is_none());
}

#[test]
fn writer_key_cannot_read_data_or_trees_and_restore_says_owner_needed() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let text = fs::read_to_string(&env.writer_key).unwrap();
    let writer = Keyring::new(vault::crypto::parse_identities(&text, &env.writer_key).unwrap());
    for prefix in ["data", "tree"] {
        for obj in objects(&env.repo, prefix) {
            let err = writer.decrypt(&fs::read(&obj).unwrap(), "obj").unwrap_err();
            assert!(
                matches!(err, vault::error::CryptoError::NoMatchingKey { .. }),
                "{prefix}: {err}"
            );
        }
    }
    for prefix in ["index", "snapshots"] {
        let objs = objects(&env.repo, prefix);
        assert!(!objs.is_empty());
        for obj in objs {
            writer
                .decrypt(&fs::read(&obj).unwrap(), "obj")
                .expect("writer reads index and snapshot headers");
        }
    }
    let out = env.vault(
        &["restore"],
        &env.writer_key,
        &["latest", "--target", env.path("t").to_str().unwrap()],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "needs an owner key");
    for cmd in [&["ls"][..], &["dump"]] {
        let out = env.vault(cmd, &env.writer_key, &["latest"]);
        assert_code(&out, 1);
        assert_contains(&stderr(&out), "needs an owner key");
    }
}

#[test]
fn key_files_readable_by_others_are_refused() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    fs::set_permissions(&env.writer_key, fs::Permissions::from_mode(0o640)).unwrap();
    let out = env.vault(&["backup"], &env.writer_key, &[src.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "chmod 600");
    assert!(objects(&env.repo, "snapshots").is_empty());
}

#[test]
fn corrupted_data_pack_names_damaged_files_and_restores_the_rest() {
    let (env, src) = env_with_two_packs();
    corrupt(&largest_data_pack(&env));
    let target = env.path("t");
    let out = env.restore("latest", &target);
    assert_code(&out, 4);
    let report = stdout(&out);
    assert!(report.contains("huge.bin"), "{report}");
    assert!(report.contains("Damaged"), "{report}");
    let rel = src.strip_prefix("/").unwrap();
    assert_eq!(
        fs::read(target.join(rel).join("etc/app/app.conf")).unwrap(),
        fs::read(src.join("etc/app/app.conf")).unwrap()
    );
    assert!(
        !target.join(rel).join("var/backups/huge.bin").exists(),
        "no half-written file under its final name"
    );

    let check = env.vault(&["check"], &env.owner_key, &["--read-data"]);
    assert_code(&check, 4);
    assert_contains(&stdout(&check), "data/");
    let storage = run(&["check", "-r", env.repo.to_str().unwrap(), "--storage"]);
    assert_code(&storage, 4);
    assert_contains(&stdout(&storage), "content does not match its name");
    let verify = env.vault(&["restore"], &env.owner_key, &["latest", "--verify"]);
    assert_code(&verify, 4);
    assert!(stdout(&verify).contains("result: FAILED"));
}

#[test]
fn truncated_and_missing_packs_are_reported() {
    let (env, _src) = env_with_two_packs();
    let pack = largest_data_pack(&env);
    let len = fs::metadata(&pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let out = env.restore("latest", &env.path("t1"));
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "huge.bin");

    fs::remove_file(&pack).unwrap();
    let out = env.restore("latest", &env.path("t2"));
    assert_code(&out, 4);
    assert!(stdout(&out).contains("huge.bin"));
    let check = env.vault(&["check"], &env.owner_key, &[]);
    assert_code(&check, 4);
    assert_contains(&stdout(&check), "indexed pack is missing from storage");
}

#[test]
fn corrupted_tree_index_and_snapshot_objects_are_reported() {
    let (env, _src) = env_with_two_packs();
    for tree_pack in objects(&env.repo, "tree") {
        corrupt(&tree_pack);
    }
    let out = env.restore("latest", &env.path("t"));
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "directory not restored");

    let (env, _src) = env_with_two_packs();
    for index in objects(&env.repo, "index") {
        corrupt(&index);
    }
    let check = env.vault(&["check"], &env.owner_key, &[]);
    assert_code(&check, 4);
    assert_contains(&stdout(&check), "index/");

    let snap = objects(&env.repo, "snapshots").pop().unwrap();
    corrupt(&snap);
    let list = env.vault(&["snapshots"], &env.owner_key, &[]);
    assert_code(&list, 4);
    assert_contains(&stderr(&list), "snapshots/");
}

fn file_node(name: &[u8], content: &[u8], chunk_key: &[u8; 32]) -> Node {
    Node {
        name: Bytes(name.to_vec()),
        kind: NodeKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime_ns: 0,
        size: content.len() as u64,
        target: None,
        rdev: None,
        hardlink: None,
        xattrs: vec![],
        content: vec![BlobId::keyed(chunk_key, content)],
        bundle_offset: None,
        content_lists: Vec::new(),
        hash: Some(Id::of_bytes(content)),
        subtree: None,
    }
}

/// Writes a snapshot whose root is built by `make_root`, bypassing the
/// backup code, as an attacker with the owner key and storage access could.
fn craft_snapshot(
    env: &Env,
    make_root: impl FnOnce(&[u8; 32], &mut dyn FnMut(Tree) -> Id) -> Tree,
) -> String {
    let repo = open_repo(&env.repo, &env.owner_key);
    let key = *repo.keys().chunk_key();
    let content = b"pwned\n";
    let mut data = PackBuilder::new(BlobKind::Data, &repo.keys().owner_only(), 0).unwrap();
    data.add(
        BlobId::keyed(&key, content),
        &zstd::bulk::compress(content, 3).unwrap(),
        content.len() as u32,
    )
    .unwrap();
    let mut trees = PackBuilder::new(BlobKind::Tree, &repo.keys().owner_only(), 0).unwrap();
    let mut add_tree = |t: Tree| {
        let bytes = t.to_bytes();
        let id = Id::keyed(&key, &bytes);
        trees
            .add(
                BlobId(id),
                &zstd::bulk::compress(&bytes, 3).unwrap(),
                bytes.len() as u32,
            )
            .unwrap();
        id
    };
    let root_tree = make_root(&key, &mut add_tree);
    let root = add_tree(root_tree);
    let mut index = IndexFile::default();
    for pack in [data.finish().unwrap(), trees.finish().unwrap()] {
        repo.put_object(ObjectKind::Pack(pack.kind), &pack.bytes)
            .unwrap();
        index
            .packs
            .push(IndexedPack::from_entries(pack.id, pack.kind, &pack.entries));
    }
    repo.put_shared_json(ObjectKind::Index, &index).unwrap();
    let snap = Snapshot {
        time: chrono::Utc::now(),
        host: "evil".into(),
        user: "evil".into(),
        tags: vec![],
        sources: vec![SourceRecord {
            kind: "paths".into(),
            name: "/".into(),
            paths: vec!["/".into()],
            status: SourceStatus::Ok,
            command: None,
            details: None,
        }],
        root: vault::TreeId(root),
        totals: Totals::default(),
        errors: vec![],
        certificates: vec![],
        parent: None,
        program_version: "crafted".into(),
    };
    repo.put_shared_json(ObjectKind::Snapshot, &snap)
        .unwrap()
        .to_hex()
}

fn assert_nothing_outside(env: &Env) {
    let names: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for n in &names {
        assert!(
            [
                "repo",
                "owner.key",
                "writer.key",
                "cache",
                "target",
                "outside"
            ]
            .contains(&n.as_str()),
            "unexpected {n} in {names:?}"
        );
    }
    assert!(!Path::new("/tmp/pwned").exists() && !Path::new("/pwned").exists());
    let outside = env.path("outside");
    if outside.exists() {
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "something was written outside the target"
        );
    }
}

#[test]
fn crafted_tree_names_cannot_escape_the_target() {
    for bad in [&b".."[..], b"a/../../pwned", b"/tmp/pwned", b".", b""] {
        let env = Env::new();
        let id = craft_snapshot(&env, |key, _| Tree {
            nodes: vec![file_node(bad, b"pwned\n", key)],
        });
        let target = env.path("target");
        let out = env.restore(&id, &target);
        assert_code(&out, 4);
        assert!(
            stdout(&out).contains("entry"),
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            stdout(&out)
        );
        assert_nothing_outside(&env);
        assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    }
}

#[test]
fn crafted_symlink_then_file_beneath_it_is_refused() {
    let env = Env::new();
    fs::create_dir(env.path("outside")).unwrap();
    let outside = env.path("outside");
    let id = craft_snapshot(&env, |key, add| {
        let sub = add(Tree {
            nodes: vec![file_node(b"x", b"pwned\n", key)],
        });
        let mut link = file_node(b"link", b"", key);
        link.kind = NodeKind::Symlink;
        link.content.clear();
        link.hash = None;
        link.target = Some(Bytes(outside.as_os_str().as_encoded_bytes().to_vec()));
        let mut dir = file_node(b"link", b"", key);
        dir.kind = NodeKind::Dir;
        dir.content.clear();
        dir.hash = None;
        dir.subtree = Some(vault::TreeId(sub));
        Tree {
            nodes: vec![link, dir],
        }
    });
    let out = env.restore(&id, &env.path("target"));
    assert_code(&out, 4);
    assert_contains(&stdout(&out), "duplicated");
    assert_nothing_outside(&env);
}

#[test]
fn symlink_planted_in_the_target_is_not_followed() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let target = env.path("target");
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let first = src.strip_prefix("/").unwrap().components().next().unwrap();
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join(first)).unwrap();
    let out = env.restore("latest", &target);
    assert_ne!(out.status.code(), Some(0));
    assert_contains(&stdout(&out), "symlink planted");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "restore wrote through a planted symlink"
    );
}

#[test]
fn small_files_that_do_not_fit_leave_nothing_under_their_names() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a tmpfs and must run as root"
    );
    let env = Env::new();
    let src = env.path("src");
    // 2.4 MB of small files for a 1 MiB file system.
    for f in 0..600u64 {
        write(&src.join(format!("etc/conf/f{f:03}")), &noise(4000, f));
    }
    env.backup(&[&src]);
    let mnt = env.path("small");
    let _guard = Tmpfs1MiB::mount(&mnt);
    let out = env.restore("latest", &mnt);
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "No space left");
    let restored = mnt.join(src.strip_prefix("/").unwrap()).join("etc/conf");
    let mut complete = 0;
    for e in fs::read_dir(&restored).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".vault-restore-"), "left: {name}");
        // Every file under its name is whole: the ones that did not fit
        // were removed, not left empty or cut short.
        assert_eq!(
            fs::read(e.path()).unwrap(),
            fs::read(src.join("etc/conf").join(&name)).unwrap(),
            "{name} is not what was backed up"
        );
        complete += 1;
    }
    assert!((1..600).contains(&complete), "{complete} files restored");
}

#[test]
fn restore_into_a_full_filesystem_fails_cleanly() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a tmpfs and must run as root"
    );
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("var/backups/huge.bin"), &noise(3 << 20, 9));
    env.backup(&[&src]);
    let mnt = env.path("small");
    let _guard = Tmpfs1MiB::mount(&mnt);
    let out = env.restore("latest", &mnt);
    assert_code(&out, 1);
    let report = stdout(&out);
    assert!(
        report.contains("huge.bin") && report.contains("No space left"),
        "{report}"
    );
    let found = std::process::Command::new("find")
        .arg(&mnt)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&found.stdout);
    assert!(
        !listing.contains(".vault-restore-"),
        "temporary files left: {listing}"
    );
    assert!(
        !listing.contains("huge.bin"),
        "half-written file under its final name: {listing}"
    );
    // The workers write in parallel: a small file written while the large
    // one still held the space fails too, and is then reported; every
    // other small file is restored.
    assert!(
        listing.contains("app.conf") || report.contains("app.conf"),
        "small files restored or reported: {listing}\n{report}"
    );
    assert!(
        listing.contains("keystore.p12") || report.contains("keystore.p12"),
        "small files restored or reported: {listing}\n{report}"
    );
}

#[test]
fn missing_source_path_gives_exit_3_and_is_listed() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let gone = env.path("no-such-dir");
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--json", src.to_str().unwrap(), gone.to_str().unwrap()],
    );
    assert_code(&out, 3);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["complete"], false);
    assert_eq!(v["snapshot"]["sources"][0]["status"], "partial");
    assert!(
        v["snapshot"]["errors"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("no-such-dir")
    );
    assert!(stderr(&out).contains("no-such-dir"));

    let only_missing = env.vault(&["backup"], &env.writer_key, &[gone.to_str().unwrap()]);
    assert_code(&only_missing, 2);
    assert_contains(&stderr(&only_missing), "nothing could be read");
}

#[test]
fn unreadable_file_gives_exit_3_and_the_rest_is_backed_up() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs the backup as an unprivileged user"
    );
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("etc/app/secret.conf"), b"hidden");
    fs::set_permissions(
        src.join("etc/app/secret.conf"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let chown_r = |p: &Path| {
        let st = std::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", nobody.uid, nobody.gid))
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    };
    chown_r(env.dir.path());
    let root_only = env.path("src/etc/app/secret.conf");
    nix::unistd::chown(&root_only, Some(0.into()), Some(0.into())).unwrap();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(vault_bin())
        .args([
            "backup",
            "-r",
            env.repo.to_str().unwrap(),
            "-i",
            env.writer_key.to_str().unwrap(),
            "--no-cache",
            "--json",
        ])
        .arg(&src)
        .output()
        .unwrap();
    assert_code(&out, 3);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["snapshot"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]["path"].as_str().unwrap().ends_with("secret.conf"));
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("Permission denied")
    );
    // Root reads only key files that are its own (or the caller's): give
    // the owner key back to root, as an operator's would be.
    nix::unistd::chown(&env.owner_key, Some(0.into()), Some(0.into())).unwrap();
    let ls = env.vault(&["ls"], &env.owner_key, &["latest"]);
    assert!(stdout(&ls).contains("app.conf") && !stdout(&ls).contains("secret.conf"));
}

#[test]
fn backup_killed_at_random_points_leaves_a_clean_repository_and_is_reused() {
    let env = Env::new();
    // Small packs so that a partial upload spans several index files.
    let repo2 = env.path("repo-small-packs");
    let out = run(&[
        "init",
        "-r",
        repo2.to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--writer-key-out",
        env.path("w2.key").to_str().unwrap(),
        "--pack-size-mib",
        "1",
    ]);
    assert_success(&out);
    let src = env.path("src");
    sample_tree(&src);
    for i in 0..4 {
        write(
            &src.join(format!("data/blob{i}.bin")),
            &noise(16 << 20, 100 + i),
        );
    }
    let w2 = env.path("w2.key");
    let mut interrupted = 0;
    for _round in 0..3 {
        let before = objects(&repo2, "snapshots").len();
        let mut child = std::process::Command::new(vault_bin())
            .args([
                "backup",
                "-r",
                repo2.to_str().unwrap(),
                "-i",
                w2.to_str().unwrap(),
                "--no-cache",
            ])
            .arg(&src)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill once `round + 1` index files exist: a point mid-upload.
        let want = objects(&repo2, "index").len() + 1;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while objects(&repo2, "index").len() < want && std::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        // A backup that finished before the kill landed (a loaded machine
        // may not run this loop for a while) wrote its one snapshot; a
        // killed one wrote none, or its one if the kill came after it.
        let after = objects(&repo2, "snapshots").len();
        assert!(after <= before + 1, "{before} -> {after} snapshots");
        if status.success() {
            assert_eq!(after, before + 1, "a finished backup wrote its snapshot");
        } else if after == before {
            interrupted += 1;
        }
        let check = run(&[
            "check",
            "-r",
            repo2.to_str().unwrap(),
            "-i",
            env.owner_key.to_str().unwrap(),
            "--read-data",
            "--storage",
        ]);
        assert_success(&check);
    }
    assert!(interrupted > 0, "no backup was killed before its snapshot");
    let out = run(&[
        "backup",
        "-r",
        repo2.to_str().unwrap(),
        "-i",
        w2.to_str().unwrap(),
        "--no-cache",
        "--json",
        src.to_str().unwrap(),
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["snapshot"]["totals"];
    assert!(
        t["bytes_added"].as_u64().unwrap() < t["bytes"].as_u64().unwrap(),
        "uploaded blobs were reused: {t}"
    );
    let check = run(&[
        "check",
        "-r",
        repo2.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
        "--read-data",
    ]);
    assert_success(&check);
    let r = env.path("r");
    let out = run(&[
        "restore",
        "-r",
        repo2.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
        "latest",
        "--target",
        r.to_str().unwrap(),
    ]);
    assert_success(&out);
    assert_same_tree(&src, &r.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn tampered_config_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    let attacker = env.path("attacker.key");
    let out = run(&["key", "generate", "--output", attacker.to_str().unwrap()]);
    let attacker_recipient = stdout(&out).trim().to_owned();
    let cfg_path = env.repo.join("config");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    cfg["owner_recipient"] = attacker_recipient.into();
    fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = env.vault(&["backup"], &env.writer_key, &[src.to_str().unwrap()]);
    assert_code(&out, 4);
    assert_contains(&stderr(&out), "tampered");
    assert!(
        objects(&env.repo, "data").is_empty(),
        "nothing was encrypted to the swapped recipient"
    );
}

#[test]
fn swapped_writer_key_object_is_refused_by_owners() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    // An attacker with write access to storage replaces keys/writer.age with a
    // writer key of their own, encrypted to the (public) owner recipient.
    let cfg_path = env.repo.join("config");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    let owner_recipient = cfg["owner_recipient"].as_str().unwrap().to_owned();
    let fake =
        vault::repo::keys::WriterKey::generate(cfg["id"].as_str().unwrap(), &owner_recipient);
    let r = vault::crypto::parse_recipient(&owner_recipient).unwrap();
    let wrapped = vault::crypto::encrypt(
        fake.to_text().as_bytes(),
        &vault::crypto::Seal::Recipients(vec![r.as_ref()]),
    )
    .unwrap();
    fs::write(env.repo.join("keys/writer.age"), wrapped).unwrap();
    cfg["writer_recipient"] = fake.recipient().into();
    fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = env.vault(&["ls"], &env.owner_key, &["latest"]);
    assert_code(&out, 4);
    assert_contains(&stderr(&out), "tampered");
}

#[test]
fn planted_index_entries_cannot_hide_genuine_copies() {
    let (env, src) = env_with_two_packs();
    // Anyone with the writer key can add index files; make one that points
    // every blob at the wrong place.
    let repo = open_repo(&env.repo, &env.writer_key);
    for obj in objects(&env.repo, "index") {
        let key = format!("index/{}", obj.file_name().unwrap().to_string_lossy());
        let mut file: IndexFile = repo.get_json(&key).unwrap();
        for pack in &mut file.packs {
            for b in &mut pack.blobs {
                // Lower offsets sort first, so readers meet the lie first.
                b.offset = b.offset.saturating_sub(1);
                b.raw_length += 1;
            }
        }
        repo.put_shared_json(ObjectKind::Index, &file).unwrap();
    }
    let target = env.path("t");
    let out = env.restore("latest", &target);
    assert_success(&out);
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn a_snapshot_forged_into_the_future_is_not_latest_and_status_names_it() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"old\n");
    let old = env.backup(&[&src]);
    write(&src.join("f"), b"newest content\n");
    env.backup(&[&src]);
    // A writer-key holder re-publishes the old snapshot dated a year ahead.
    let repo = open_repo(&env.repo, &env.writer_key);
    let (_, mut forged) = repo.find_snapshot(&old).unwrap();
    forged.time += chrono::Duration::days(365);
    repo.put_shared_json(ObjectKind::Snapshot, &forged).unwrap();

    let target = env.path("restored");
    assert_success(&env.restore("latest", &target));
    let restored = target.join(src.strip_prefix("/").unwrap()).join("f");
    assert_eq!(fs::read(restored).unwrap(), b"newest content\n");
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert_code(&out, 1);
    // Format 2: an unsigned header does not count at all (a signed one
    // dated ahead counts as dated at its upload: see tests/trust.rs).
    assert_contains(&stdout(&out), "does not count: not signed");
}

#[test]
fn a_drill_time_limit_must_be_a_duration_above_zero() {
    let env = Env::new();
    for (bad, says) in [("0s", "above zero"), ("banana", "not a duration")] {
        let out = env.vault(&["drill"], &env.owner_key, &["--db-load-timeout", bad]);
        assert_code(&out, 2);
        assert_contains(&stderr(&out), says);
        let out = env.vault(
            &["restore"],
            &env.owner_key,
            &["latest", "--verify", "--db-load-timeout", bad],
        );
        assert_code(&out, 2);
        assert_contains(&stderr(&out), "--db-load-timeout");
    }
    assert_eq!(
        fs::read_dir(env.repo.join("drills")).map_or(0, |d| d.count()),
        0
    );
}

/// A 1 MiB tmpfs mounted at `at` (made) for as long as it is held; a
/// restore into it runs out of space.
struct Tmpfs1MiB(PathBuf);

impl Tmpfs1MiB {
    fn mount(at: &Path) -> Self {
        fs::create_dir(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs1MiB(at.to_owned())
    }
}

impl Drop for Tmpfs1MiB {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
