//! `vault restore --overwrite always|if-changed|never`: what happens to
//! entries already in the target, with counts in the summary and `--json`;
//! an existing inode is never written into.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use crate::util::*;

fn restore_json(env: &Env, id: &str, target: &str, mode: Option<&str>) -> serde_json::Value {
    let mut args = vec![id, "--target", target, "--json"];
    if let Some(m) = mode {
        args.extend(["--overwrite", m]);
    }
    let out = env.vault(&["restore"], &env.owner_key, &args);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("restore --json")
}

fn counts(v: &serde_json::Value) -> (u64, u64, u64) {
    let r = &v["report"];
    (
        r["replaced"].as_u64().unwrap(),
        r["skipped"].as_u64().unwrap(),
        r["files"].as_u64().unwrap(),
    )
}

#[test]
fn overwrite_modes_replace_keep_and_count() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    write(&src.join("a.txt"), b"one");
    write(&src.join("b.txt"), b"two");
    write(&src.join("sub/c.txt"), b"three");
    symlink("a.txt", src.join("link")).unwrap();
    let id = env.backup(&[&src]);
    let target = env.path("target");
    let t = target.to_str().unwrap();
    let root = target.join(src.strip_prefix("/").unwrap());

    // A first restore into an empty target replaces and keeps nothing.
    let v = restore_json(&env, &id, t, None);
    assert_eq!(counts(&v), (0, 0, 3));

    // Local changes: one file edited, one removed.
    write(&root.join("a.txt"), b"local edit");
    fs::remove_file(root.join("sub/c.txt")).unwrap();

    // never: the edit stays; the missing file comes back; a, b and the
    // symlink are counted as kept.
    let v = restore_json(&env, &id, t, Some("never"));
    assert_eq!(counts(&v), (0, 3, 1));
    assert_eq!(fs::read(root.join("a.txt")).unwrap(), b"local edit");
    assert_eq!(fs::read(root.join("sub/c.txt")).unwrap(), b"three");

    // if-changed: only the edited file is replaced; b (same content, mode
    // and mtime), c and the symlink are left alone, and b keeps its inode.
    let b_ino = fs::metadata(root.join("b.txt")).unwrap().ino();
    let v = restore_json(&env, &id, t, Some("if-changed"));
    assert_eq!(counts(&v), (1, 3, 1));
    assert_eq!(fs::read(root.join("a.txt")).unwrap(), b"one");
    assert_eq!(fs::metadata(root.join("b.txt")).unwrap().ino(), b_ino);

    // Same content, other mtime: if-changed replaces it (a new inode).
    let f = fs::File::options()
        .write(true)
        .open(root.join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    drop(f);
    let v = restore_json(&env, &id, t, Some("if-changed"));
    assert_eq!(counts(&v), (1, 3, 1));
    assert_ne!(fs::metadata(root.join("b.txt")).unwrap().ino(), b_ino);

    // always (the default): everything that exists is replaced, and the
    // text summary says how many.
    let out = env.restore(&id, &target);
    assert_success(&out);
    assert_contains(
        &stdout(&out),
        "already in the target: 4 replaced, 0 left as they were",
    );
    assert_eq!(
        fs::read_link(root.join("link")).unwrap().to_str(),
        Some("a.txt")
    );
}

#[test]
fn replacing_never_writes_into_a_planted_hard_link() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("a.txt"), b"snapshot content");
    let id = env.backup(&[&src]);
    let target = env.path("target");
    let root = target.join(src.strip_prefix("/").unwrap());
    fs::create_dir_all(&root).unwrap();
    // The target's a.txt is another name of a file outside the target,
    // with the very content the snapshot holds.
    let outside = env.path("outside.txt");
    write(&outside, b"snapshot content");
    fs::hard_link(&outside, root.join("a.txt")).unwrap();
    for mode in ["if-changed", "always"] {
        let v = restore_json(&env, &id, target.to_str().unwrap(), Some(mode));
        assert_eq!(counts(&v).0, 1, "{mode}: replaced, never compared in place");
        // The outside file is untouched and no longer linked in.
        let m = fs::metadata(&outside).unwrap();
        assert_eq!(m.nlink(), 1, "{mode}");
        assert_eq!(fs::read(&outside).unwrap(), b"snapshot content");
        assert_eq!(fs::read(root.join("a.txt")).unwrap(), b"snapshot content");
        fs::remove_file(root.join("a.txt")).unwrap();
        fs::hard_link(&outside, root.join("a.txt")).unwrap();
    }
    // A directory in the file's way is reported, not removed.
    fs::remove_file(root.join("a.txt")).unwrap();
    fs::create_dir(root.join("a.txt")).unwrap();
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[
            &id,
            "--target",
            target.to_str().unwrap(),
            "--overwrite",
            "if-changed",
        ],
    );
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "a directory is in the way");
    assert!(root.join("a.txt").is_dir());
}

#[test]
fn overwrite_bad_values_are_usage_errors() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("a.txt"), b"x");
    let id = env.backup(&[&src]);
    let target = env.path("target");
    let t = target.to_str().unwrap();
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--target", t, "--overwrite", "sometimes"],
    );
    assert_code(&out, 2);
    let err = stderr(&out);
    assert_contains(&err, "sometimes");
    assert_contains(&err, "if-changed");
    assert!(!target.exists(), "nothing is written on a usage error");
    let out = env.vault(
        &["restore"],
        &env.owner_key,
        &[&id, "--verify", "--overwrite", "never"],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "--overwrite");
}

/// A directory of several batches of small files, restored once into a
/// fresh target and once over one holding a planted symlink and an edited
/// file: every file comes back byte for byte with its mode, the symlink's
/// target outside is never written, and the planted entries are replaced.
#[test]
fn a_large_directory_of_small_files_restores_over_planted_entries() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let src = env.path("src");
    let conf = src.join("conf");
    fs::create_dir_all(&conf).unwrap();
    let files = 600usize;
    let mut seed = 7u64;
    for i in 0..files {
        // Empty, one-blob and (past 16 KiB) multi-blob files, mixed.
        let len = match i % 50 {
            0 => 0,
            1 => 40_000,
            _ => 1 + (i * 613) % 6_000,
        };
        let data: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b"abcdefgh =\n"[(seed % 11) as usize]
            })
            .collect();
        let p = conf.join(format!("f{i:04}.conf"));
        write(&p, &data);
        fs::set_permissions(
            &p,
            fs::Permissions::from_mode(0o600 + (i % 2) as u32 * 0o40),
        )
        .unwrap();
    }
    let id = env.backup(&[&src]);
    let same = |root: &Path| {
        for i in 0..files {
            let name = format!("f{i:04}.conf");
            let (a, b) = (conf.join(&name), root.join("conf").join(&name));
            let mb = fs::symlink_metadata(&b).unwrap();
            assert!(mb.file_type().is_file(), "{name}");
            assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{name}");
            let ma = fs::metadata(&a).unwrap();
            assert_eq!((ma.mode(), ma.mtime()), (mb.mode(), mb.mtime()), "{name}");
        }
        assert_eq!(fs::read_dir(root.join("conf")).unwrap().count(), files);
    };

    let fresh = env.path("fresh");
    let v = restore_json(&env, &id, fresh.to_str().unwrap(), None);
    assert_eq!(counts(&v), (0, 0, files as u64));
    same(&fresh.join(src.strip_prefix("/").unwrap()));

    let target = env.path("target");
    let root = target.join(src.strip_prefix("/").unwrap());
    fs::create_dir_all(root.join("conf")).unwrap();
    let outside = env.path("outside.txt");
    write(&outside, b"not the restore's to write");
    symlink(&outside, root.join("conf/f0123.conf")).unwrap();
    write(&root.join("conf/f0321.conf"), b"a local edit");
    let v = restore_json(&env, &id, target.to_str().unwrap(), None);
    assert_eq!(counts(&v), (2, 0, files as u64));
    assert_eq!(fs::read(&outside).unwrap(), b"not the restore's to write");
    same(&root);
}
