//! Attacks by a local user of a backed-up host, holding nothing but an
//! unprivileged account and the files and directories it owns (issue 11,
//! capability (d)). Each vector states the outcome it asserts.
//!
//! | vector | expected |
//! |---|---|
//! | `vector_backup_race_…` | nothing outside the user's directory is stored in it; no content or attributes under another inode's owner and mode, for files read and files unchanged alike |
//! | `vector_shared_cache_dir_symlink_…` | a cache directory others can write is refused; nothing outside it is created or chmod'ed |
//! | `vector_one_huge_directory_…` | a directory over the tree limit is stored empty and reported (exit 3); the rest of the backup restores |
//! | `vector_compression_oracle_…` | a user's file, or one it may write, never shares a bundle (compression frame) with another owner's file |

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::util::*;

/// The unprivileged attacker's uid and gid (`nobody`).
const NOBODY: u32 = 65534;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "host-tree attacks are tested as root, as backups of whole hosts run"
    );
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// The racer: as `nobody`, swap `home/sub` (its own directory) for a
/// symlink to `outside` and back until `stop` appears (bounded). Prints
/// how many swaps it made.
const RACER: &str = r#"
my ($home, $outside, $stop) = @ARGV;
chdir $home or die "chdir: $!";
my $n = 0;
open(my $ready, ">", ".ready") and close($ready);
# Wait until the backup has listed sub (its access time, set in the past,
# moves): from then on the walker and the readers use the paths it listed.
my $first = (stat("sub"))[8];
for (my $i = 0; $i < 20_000; $i++) {
    last if (stat("sub"))[8] != $first;
    select(undef, undef, undef, 0.001);
}
for (my $i = 0; $i < 3_000_000 && !-e $stop; $i++) {
    # Mostly the real directory (so the walker lists and stats it), now
    # and then briefly the symlink (where a reader opening a path lands).
    for (my $k = 0; $k < 20_000; $k++) {}
    rename("sub", "sub.real") or next;
    $n++ if symlink($outside, "sub");
    for (my $k = 0; $k < 4_000; $k++) {}
    unlink("sub");
    rename("sub.real", "sub") or die "rename back: $!";
}
print "$n\n";
"#;

/// The tree of the swapping race: the user's `home/sub` with 3,000
/// readable files `f0000`… (each with an attribute of its own, so that the
/// file cache records that they have some) and 300 symlinks `l0000`… to
/// them, and a root-only directory, `outside`, holding files of the same
/// names (`SECRET …`, mode 0600, with the attribute [`SECRET_XATTR`]) and
/// symlinks of the same names to `/SECRET-…`.
struct RaceTree {
    src: std::path::PathBuf,
    home: std::path::PathBuf,
    outside: std::path::PathBuf,
}

/// The attribute every secret of the swapping race carries.
const SECRET_XATTR: &str = "user.vault-secret";

impl RaceTree {
    fn new(env: &Env) -> Self {
        fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let src = env.path("src");
        let outside = env.path("outside");
        const FILES: usize = 3000;
        for i in 0..FILES {
            let public = src.join(format!("home/sub/f{i:04}"));
            write(&public, format!("file {i}\n").as_bytes());
            fs::set_permissions(&public, fs::Permissions::from_mode(0o644)).unwrap();
            xattr::set(&public, "user.vault-own", b"mine")
                .expect("user attributes on the test file system");
            chown(&public, NOBODY);
            let secret = outside.join(format!("f{i:04}"));
            write(&secret, format!("SECRET {i}\n").as_bytes());
            fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
            xattr::set(&secret, SECRET_XATTR, format!("SECRET {i}").as_bytes()).unwrap();
            if i % 10 == 0 {
                let link = src.join(format!("home/sub/l{i:04}"));
                std::os::unix::fs::symlink(format!("f{i:04}"), &link).unwrap();
                chown(&link, NOBODY);
                std::os::unix::fs::symlink(
                    format!("/SECRET-{i}"),
                    outside.join(format!("l{i:04}")),
                )
                .unwrap();
            }
        }
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
        let home = src.join("home");
        chown(&home, NOBODY);
        chown(&home.join("sub"), NOBODY);
        RaceTree { src, home, outside }
    }

    /// Backs up the tree as root with `args` while the racer, as `nobody`,
    /// swaps `home/sub` for a symlink to `outside` and back; checks that
    /// it raced and that the backup succeeded or reported what changed
    /// under it (exit 3), never stored it wrongly. Returns the backup's
    /// report (`--json`).
    fn backup_while_racing(&self, env: &Env, args: &[&str]) -> serde_json::Value {
        let stop = env.path("stop-racing");
        let _ = fs::remove_file(self.home.join(".ready"));
        let touched = Command::new("touch")
            .args(["-a", "-d", "2000-01-01"])
            .arg(self.home.join("sub"))
            .status()
            .unwrap();
        assert!(touched.success());
        let racer = Racer::start(RACER, &[&self.home, &self.outside], &stop);
        let ready = self.home.join(".ready");
        for _ in 0..10_000 {
            if ready.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(ready.exists(), "the racer did not start");
        let mut all = args.to_vec();
        all.extend(["--json", self.src.to_str().unwrap()]);
        let out = env.vault(&["backup"], &env.writer_key, &all);
        let swaps = racer.stop();
        assert!(
            swaps > 20,
            "the racer swapped only {swaps} times: the test proved nothing"
        );
        eprintln!("the racer swapped {swaps} times");
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "{}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("the backup's --json report")
    }

    /// Restores the latest snapshot and checks that none of the secrets'
    /// content, attributes or symlink targets came back; returns the files
    /// restored.
    fn restore_holds_no_secret(&self, env: &Env, target: &Path) -> usize {
        let restore = env.restore("latest", target);
        assert_success(&restore);
        let mut stored_secrets = Vec::new();
        let mut stored_xattrs = Vec::new();
        let mut files = 0;
        let mut stack = vec![target.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = fs::symlink_metadata(e.path()).unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else if m.is_symlink() {
                    if fs::read_link(e.path()).unwrap().starts_with("/SECRET") {
                        stored_secrets.push((e.path(), m.uid(), m.mode() & 0o7777));
                    }
                } else if m.is_file() {
                    files += 1;
                    if fs::read(e.path()).unwrap().starts_with(b"SECRET") {
                        stored_secrets.push((e.path(), m.uid(), m.mode() & 0o7777));
                    }
                    if xattr::get(e.path(), SECRET_XATTR).unwrap().is_some() {
                        stored_xattrs.push(e.path());
                    }
                }
            }
        }
        eprintln!("{files} files restored");
        assert!(
            stored_secrets.is_empty(),
            "{} files or symlinks of the root-only directory were stored in the user's, e.g. {:?}",
            stored_secrets.len(),
            stored_secrets[0]
        );
        assert!(
            stored_xattrs.is_empty(),
            "{} of the user's files were stored with a root-only file's attribute, e.g. {:?}",
            stored_xattrs.len(),
            stored_xattrs[0]
        );
        assert!(files > 100, "the user's files were stored");
        files
    }
}

/// A local user owns `home/sub` (3,000 readable files `f0000`…) and, while
/// root backs up the tree, swaps the directory for a symlink to a root-only
/// directory holding files of the same names (`SECRET …`, mode 0600) and
/// back. The walker lists `home/sub/fNNNN` as the user's 0644 file, and a
/// reader thread opens the same path a moment later, through the symlink.
///
/// Expected: nothing of the root-only directory is stored: the walker lists
/// and examines each directory through a handle to the inode it recorded,
/// and a reader reads a file only if its path still leads to the inode
/// whose owner and mode the snapshot records. Before, 132 of the secrets
/// were stored under the user's own files' owner and mode 0644 (a restore
/// of its home handed them over), and hundreds more as root's files inside
/// its directory (readable by it after a restore wherever only the root
/// directory's mode protected them). The secrets carry a `user.*`
/// attribute as well: no restored file has it, since a file read has its
/// attributes read through the reader's handle to the inode it checked,
/// not by its path again (which the swap may point at the secret). Before,
/// 144 to 452 of the user's files (three runs) were stored with a secret's
/// attribute and value.
#[test]
fn vector_backup_race_a_user_swapping_their_directory_cannot_relabel_a_secret() {
    require_root();
    let env = Env::new();
    let tree = RaceTree::new(&env);
    tree.backup_while_racing(&env, &["--no-cache"]);
    tree.restore_holds_no_secret(&env, &env.path("target"));
}

/// The same race on the second night: the user's 3,000 files are
/// unchanged since the first backup, so the file cache supplies their
/// content and the walker reads only their attributes (the cache recorded
/// that they have some), while the racer swaps their directory.
///
/// Expected: no restored file has a secret's attribute: the walker reads
/// an unchanged file's attributes through a handle to the directory it
/// listed, checked to be that inode, not by a path the swap redirects.
/// Before, 109 to 678 of the 3,000 unchanged files (three runs) were
/// stored with a secret's attribute and value.
#[test]
fn vector_backup_race_unchanged_files_cannot_take_a_secrets_attributes() {
    require_root();
    let env = Env::new();
    let tree = RaceTree::new(&env);
    let cache = env.path("cache");
    let cache_args = ["--cache-dir", cache.to_str().unwrap()];
    // The file cache leaves out files changed within the second before a
    // backup starts: wait (on the clock, not a guess) until the last one
    // made is older than that.
    let last = tree.home.join("sub/f2999");
    let made = fs::symlink_metadata(&last).unwrap().ctime();
    while (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH))
        .unwrap()
        .as_secs_f64()
        < made as f64 + 2.0
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let first = env.vault(
        &["backup"],
        &env.writer_key,
        &[cache_args[0], cache_args[1], tree.src.to_str().unwrap()],
    );
    assert_success(&first);
    let report = tree.backup_while_racing(&env, &cache_args);
    let totals = &report["snapshot"]["totals"];
    let (read, files) = (
        totals["files_read"].as_u64().unwrap(),
        totals["files"].as_u64().unwrap(),
    );
    eprintln!("second night: {read} of {files} files read, the rest from the file cache");
    // Most files came from the cache (those the race made the walker see
    // changed, or whose directory was swapped, were read or reported).
    assert!(
        read * 2 < files,
        "{read} of {files} files read: the cache was not used"
    );
    tree.restore_holds_no_secret(&env, &env.path("target"));
}

/// A cache directory other local users can write to (a `--cache-dir` under
/// `/tmp`, a shared `/var/cache/…` made group- or world-writable: here
/// mode 1777, like `/tmp`). Another user, `nobody`, plants the entry of
/// the repository (its id is in the plain `config`) as a symlink to a
/// root-owned directory, `victim`, before root backs up with that cache.
///
/// Expected: the cache directory is refused (it is not private to the
/// user running vault), the backup runs without it and succeeds, and
/// `victim` keeps its mode and stays empty. Before, root made `v1/` and
/// the view directories inside `victim` and changed its mode to 0700
/// (through the symlink): any directory on the host could be chmod'ed.
#[test]
fn vector_shared_cache_dir_symlink_changes_nothing_outside_the_cache() {
    require_root();
    let env = Env::new();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let shared = env.path("shared-cache");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = env.path("victim");
    fs::create_dir(&victim).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o755)).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(env.repo.join("config")).unwrap()).unwrap();
    let id = config["id"].as_str().unwrap();
    let planted = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ln",
            "-s",
        ])
        .arg(&victim)
        .arg(shared.join(id))
        .status()
        .unwrap();
    assert!(planted.success(), "nobody plants the symlink");

    let src = env.path("src");
    sample_tree(&src);
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--cache-dir",
            shared.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert_contains(&stderr(&out), "group or others can write to it");
    let m = fs::metadata(&victim).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o755, "the victim's mode changed");
    assert_eq!(
        fs::read_dir(&victim).unwrap().count(),
        0,
        "vault wrote into the victim directory"
    );
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// A local user fills one directory of its own with 140,000 empty files,
/// each with a long name and 3.9 KB of `user.*` attributes (ext4 keeps one
/// shared attribute block for identical values, so this costs it almost no
/// disk): the directory's listing is over the 512 MiB tree limit.
///
/// Expected: that directory is stored empty and reported (exit 3, a
/// partial backup naming it); everything else of the host is backed up
/// and restores. Before, the whole backup failed ("over the tree limit"),
/// every night, for every source of the host.
#[test]
fn vector_one_huge_directory_does_not_fail_the_whole_backup() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src.join("etc"));
    let huge = src.join("home/user/junk");
    fs::create_dir_all(&huge).unwrap();
    let value = vec![b'x'; 3900];
    for i in 0..140_000 {
        let p = huge.join(format!("{}{i:06}", "n".repeat(240)));
        fs::File::create(&p).unwrap();
        if let Err(e) = xattr::set(&p, "user.pad", &value) {
            panic!("this test needs user xattrs of 3.9 KB (ext4): {e}");
        }
    }
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &["--no-cache", "--json", src.to_str().unwrap()],
    );
    fs::remove_dir_all(&huge).unwrap();
    assert_code(&out, 3);
    assert_contains(&stderr(&out), "over the 512 MiB tree limit");
    assert_contains(&stderr(&out), "home/user/junk");
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&src.join("etc"), &restored.join("etc"));
    assert_eq!(
        fs::read_dir(restored.join("home/user/junk"))
            .unwrap()
            .count(),
        0
    );
}

/// A user that can create files beside a secret (a shared directory) and
/// watch compressed sizes (the index's rounded `length`, a pack's size)
/// would learn the secret byte by byte if its guesses were compressed
/// together with it (format 5 bundles small files of a directory). Its own
/// files, and files it may write, are therefore never bundled with another
/// owner's: here the root files bundle together, the user's file and the
/// group-writable root file are stored alone.
#[test]
fn vector_compression_oracle_a_users_file_never_shares_a_bundle_with_anothers() {
    require_root();
    let env = Env::new();
    let shared = env.path("src/shared");
    fs::create_dir_all(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let secret = b"db_password=hunter2-7f3a9c\n";
    // In walk order: the root files, then the user's guess and the file
    // others may write, each of which would join the root files' bundle
    // if owners were not told apart.
    let files: [(&str, &[u8], u32, u32); 5] = [
        ("a-plain.conf", b"listen = 5432\n", 0, 0o644),
        ("b-plain.conf", b"max_connections = 100\n", 0, 0o644),
        ("c-secret.conf", secret, 0, 0o600),
        (
            "d-guess.txt",
            b"db_password=hunter2-7f3a9c\n",
            NOBODY,
            0o644,
        ),
        ("e-writable.conf", b"db_password=hunter\n", 0, 0o664),
    ];
    for (name, bytes, uid, mode) in files {
        let path = shared.join(name);
        write(&path, bytes);
        chown(&path, uid);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    // Elsewhere (walked later), a copy of a root file (stored once, in the root files'
    // bundle) and the user's copy of the secret (stored on its own: no
    // bundle, and no deduplication, across owners).
    let other = env.path("src/z-other");
    fs::create_dir_all(&other).unwrap();
    write(&other.join("a-copy.conf"), b"listen = 5432\n");
    write(&other.join("b-users-copy.conf"), secret);
    chown(&other.join("b-users-copy.conf"), NOBODY);
    fs::set_permissions(
        other.join("b-users-copy.conf"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // Old enough for the file cache: a file it will not record (changed in
    // the last second) is stored alone, never bundled.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let id = env.backup(&[&env.path("src")]);
    let nodes = dir_nodes(&env, &id, &shared);
    let blob = |name: &str| {
        let n = nodes.iter().find(|n| n.name.0 == name.as_bytes()).unwrap();
        assert_eq!(n.content.len(), 1, "{name}: {n:?}");
        (n.content[0], n.bundle_offset)
    };
    let (bundle, _) = blob("a-plain.conf");
    // The root files readable only as root share one bundle ...
    for name in ["a-plain.conf", "b-plain.conf", "c-secret.conf"] {
        let (id, at) = blob(name);
        assert_eq!(id, bundle, "{name} is in the root files' bundle");
        assert!(at.is_some(), "{name} is bundled");
    }
    // ... the user's file and the file others may write are alone.
    for name in ["d-guess.txt", "e-writable.conf"] {
        let (id, at) = blob(name);
        assert_ne!(id, bundle, "{name} is compressed with the secret");
        assert_eq!(at, None, "{name} is stored on its own");
    }
    let elsewhere = dir_nodes(&env, &id, &other);
    let node = |name: &str| {
        elsewhere
            .iter()
            .find(|n| n.name.0 == name.as_bytes())
            .unwrap()
    };
    assert_eq!(
        (
            node("a-copy.conf").content[0],
            node("a-copy.conf").bundle_offset
        ),
        blob("a-plain.conf"),
        "a root file's copy is named where the first one is"
    );
    let (secret_blob, _) = blob("c-secret.conf");
    assert_ne!(node("b-users-copy.conf").content[0], secret_blob);
    assert_eq!(node("b-users-copy.conf").bundle_offset, None);
    let target = env.path("target");
    assert_success(&env.restore(&id, &target));
    assert_eq!(
        fs::read(
            target
                .join(shared.strip_prefix("/").unwrap())
                .join("c-secret.conf")
        )
        .unwrap(),
        secret
    );
}
