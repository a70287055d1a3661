//! `vault mount`: the snapshots as a read-only FUSE file system, read
//! through the kernel and unmounted both ways (fusermount -u, a signal).
//!
//! These tests need a usable /dev/fuse and fusermount3 (or fusermount):
//! where the sandbox has none they print why and return; the bad-input
//! test needs neither.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Why FUSE cannot be used here, if it cannot.
pub(crate) fn fuse_unusable() -> Option<String> {
    if let Err(e) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("/dev/fuse cannot be opened: {e}"));
    }
    let found = ["fusermount3", "fusermount"].iter().any(|b| {
        Command::new(b)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    (!found).then(|| "neither fusermount3 nor fusermount is installed".to_owned())
}

/// `vault mount` in the background, once `latest` shows in the mount.
pub(crate) fn mount(env: &Env, mountpoint: &Path) -> Child {
    let mut child = Command::new(vault_bin())
        .args(["mount", "-r", env.repo.to_str().unwrap(), "-i"])
        .arg(&env.owner_key)
        .arg(mountpoint)
        .env_remove("VAULT_CONFIG")
        .args(["--no-config", "--no-cache"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs::symlink_metadata(mountpoint.join("latest")).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("vault mount ended with {status}: {err}");
        }
        assert!(Instant::now() < deadline, "the mount never showed `latest`");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Waits for `child` to end; returns its exit code and stderr.
pub(crate) fn finish(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vault mount did not end after the unmount");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_mounted(mountpoint: &Path) -> bool {
    let canon = fs::canonicalize(mountpoint).unwrap_or(mountpoint.to_owned());
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(canon.to_str().unwrap()))
}

pub(crate) fn fusermount() -> &'static str {
    let ok = |b: &str| Command::new(b).arg("-V").output().is_ok();
    if ok("fusermount3") {
        "fusermount3"
    } else {
        "fusermount"
    }
}

#[test]
fn mount_serves_every_snapshot_read_only_and_unmounts() {
    if let Some(why) = fuse_unusable() {
        println!("SKIPPED mount_serves_every_snapshot_read_only_and_unmounts: {why}");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    // Several content blobs: reads cross blob boundaries.
    let big = noise(5 << 20, 9);
    write(&src.join("big.bin"), &big);
    // Extended attributes, where the test file system has them.
    let tagged = src.join("etc/app/app.conf");
    let xattrs = xattr::set(&tagged, "user.vault.test", b"hello xattr").is_ok();
    if xattrs {
        xattr::set(&tagged, "user.vault.empty", b"").unwrap();
    } else {
        println!(
            "xattrs unsupported on {}: their part is skipped",
            src.display()
        );
    }
    let first = env.backup(&[&src]);
    write(&src.join("etc/app/app.conf"), b"changed\n");
    let second = env.backup(&[&src]);
    let mp = env.path("mnt");
    fs::create_dir(&mp).unwrap();

    let child = mount(&env, &mp);
    assert_eq!(
        fs::read_link(mp.join("latest")).unwrap(),
        PathBuf::from(format!("snapshots/{}", &second[..8]))
    );
    let mut listed: Vec<String> = fs::read_dir(mp.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut want = vec![first[..8].to_owned(), second[..8].to_owned()];
    want.sort();
    assert_eq!(listed, want);
    let rel = src.strip_prefix("/").unwrap();
    // The newest snapshot is the source tree: names, kinds, content,
    // modes, symlink targets, mtimes.
    assert_same_tree(&src, &mp.join("latest").join(rel));
    let old = mp.join("snapshots").join(&first[..8]).join(rel);
    assert_ne!(
        fs::read(old.join("etc/app/app.conf")).unwrap(),
        b"changed\n"
    );
    // Reads at any offset, across blob boundaries.
    let mut f = fs::File::open(mp.join("latest").join(rel).join("big.bin")).unwrap();
    let mut buf = vec![0; 300_000];
    for offset in [0u64, 1_048_000, 3_000_001, (5 << 20) - 300_000] {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &big[offset as usize..offset as usize + buf.len()]);
    }
    drop(f);
    // Extended attributes through the kernel (getxattr/listxattr), and
    // read-only: none can be set or removed.
    if xattrs {
        let old_conf = old.join("etc/app/app.conf");
        assert_eq!(
            xattr::get(&old_conf, "user.vault.test").unwrap().as_deref(),
            Some(&b"hello xattr"[..])
        );
        assert_eq!(
            xattr::get(&old_conf, "user.vault.empty")
                .unwrap()
                .as_deref(),
            Some(&b""[..])
        );
        let mut names: Vec<String> = xattr::list(&old_conf)
            .unwrap()
            .map(|n| n.into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["user.vault.empty", "user.vault.test"]);
        assert_eq!(xattr::get(&old_conf, "user.absent").unwrap(), None);
        assert!(xattr::set(&old_conf, "user.new", b"x").is_err());
        assert!(xattr::remove(&old_conf, "user.vault.test").is_err());
        assert_eq!(xattr::list(mp.join("snapshots")).unwrap().count(), 0);
    }
    // Read-only: no write, no new file, no removal.
    let conf = mp.join("latest").join(rel).join("etc/app/app.conf");
    let e = fs::write(&conf, b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc_erofs()), "{e}");
    assert!(fs::remove_file(&conf).is_err());
    assert!(fs::write(mp.join("latest").join(rel).join("new"), b"x").is_err());
    assert_eq!(fs::read(&conf).unwrap(), b"changed\n");

    // `fusermount -u` ends the command, exit 0.
    let out = Command::new(fusermount())
        .arg("-u")
        .arg(&mp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert_contains(&err, "unmounted");
    assert!(!is_mounted(&mp));

    // SIGTERM unmounts before the process ends.
    let child = mount(&env, &mp);
    assert!(is_mounted(&mp));
    let pid = nix_pid(&child);
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, err) = finish(child);
    assert_eq!(code, 0, "{err}");
    assert!(!is_mounted(&mp), "the mount point is left mounted");
    assert_eq!(fs::read_dir(&mp).unwrap().count(), 0);
}

fn nix_pid(child: &Child) -> String {
    child.id().to_string()
}

/// EROFS on Linux.
fn libc_erofs() -> i32 {
    30
}

#[test]
fn mount_refuses_bad_input_before_mounting() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"1");
    env.backup(&[&src]);
    let missing = env.path("nope");
    let out = env.vault(&["mount"], &env.owner_key, &[missing.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "mount point");
    assert_contains(&stderr(&out), "nope");
    let file = src.join("f");
    let out = env.vault(&["mount"], &env.owner_key, &[file.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "not a directory");
    let out = env.vault(&["mount"], &env.owner_key, &[src.to_str().unwrap()]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "not empty");
    let mp = env.path("mnt");
    fs::create_dir(&mp).unwrap();
    let out = env.vault(&["mount"], &env.writer_key, &[mp.to_str().unwrap()]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "owner key");
    let out = env.vault(
        &["mount"],
        &env.owner_key,
        &[mp.to_str().unwrap(), "--host", "db9"],
    );
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "no snapshot matches --host db9");
    assert!(!is_mounted(&mp));
}
