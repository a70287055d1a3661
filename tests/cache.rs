//! The local metadata cache on a real local repository: its layout and
//! modes, what it refuses (planted or damaged entries, an unusable
//! directory), what it never hides (`vault check` reads storage), and the
//! files of the layout before it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::*;

fn repo_id(env: &Env) -> String {
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(env.repo.join("config")).unwrap()).unwrap();
    config["id"].as_str().unwrap().to_owned()
}

/// `vault snapshots` with `key` and the cache under `cache`.
fn snapshots(env: &Env, key: &Path, cache: &Path) -> std::process::Output {
    env.vault(
        &["snapshots"],
        key,
        &["--cache-dir", cache.to_str().unwrap(), "--json"],
    )
}

/// The cached snapshot header entries of the view whose name starts with
/// `role` (`writer` or `owner`).
fn entries(env: &Env, cache: &Path, role: &str) -> Vec<PathBuf> {
    let v1 = cache.join(repo_id(env)).join("v1");
    let mut out = Vec::new();
    for view in fs::read_dir(&v1).unwrap().flatten() {
        if view.file_name().to_string_lossy().starts_with(role) {
            for e in fs::read_dir(view.path().join("snapshots"))
                .unwrap()
                .flatten()
            {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn two_snapshots(env: &Env) -> Vec<String> {
    let src = env.path("src");
    write(&src.join("a"), b"one");
    let a = env.backup(&[&src]);
    write(&src.join("a"), b"two");
    vec![a, env.backup(&[&src])]
}

/// The segments of digest `name` in the view whose name starts with `role`.
fn view_digest(env: &Env, cache: &Path, role: &str, name: &str) -> Vec<PathBuf> {
    let v1 = cache.join(repo_id(env)).join("v1");
    let mut out = Vec::new();
    for view in fs::read_dir(&v1).unwrap().flatten() {
        if view.file_name().to_string_lossy().starts_with(role)
            && let Ok(r) = fs::read_dir(view.path().join("digests").join(name))
        {
            out.extend(r.flatten().map(|e| e.path()));
        }
    }
    out
}

#[test]
fn snapshots_reads_headers_seen_before_from_one_digest_per_view() {
    let env = Env::new();
    two_snapshots(&env);
    let cache = env.path("meta");
    let cold = snapshots(&env, &env.writer_key, &cache);
    assert_success(&cold);
    // Each view keeps its own digest, 0600, holding what that key read.
    let o = snapshots(&env, &env.owner_key, &cache);
    assert_success(&o);
    for role in ["writer", "owner"] {
        let segs = view_digest(&env, &cache, role, "snapshots-v1");
        assert_eq!(segs.len(), 1, "{role}: {segs:?}");
        assert_eq!(
            fs::metadata(&segs[0]).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Warm: the headers come from the digest, not from their entries
    // (removed here, and not written again), with the same verdicts.
    for e in entries(&env, &cache, "writer") {
        fs::remove_file(e).unwrap();
    }
    let warm = snapshots(&env, &env.writer_key, &cache);
    assert_eq!(stdout(&warm), stdout(&cold));
    assert!(entries(&env, &cache, "writer").is_empty());
    // A damaged digest is refused and deleted: the headers are read from
    // storage again (one entry each), the listing unchanged.
    for seg in view_digest(&env, &cache, "writer", "snapshots-v1") {
        let mut bytes = fs::read(&seg).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(&seg, bytes).unwrap();
    }
    let again = snapshots(&env, &env.writer_key, &cache);
    assert_eq!(stdout(&again), stdout(&cold));
    assert_contains(&stderr(&again), "does not match");
    assert_eq!(entries(&env, &cache, "writer").len(), 2);
    // And the owner's listing (owner-signed verdicts) is its own.
    assert_eq!(stdout(&snapshots(&env, &env.owner_key, &cache)), stdout(&o));
}

#[test]
fn cache_dirs_are_private_and_views_do_not_share_entries() {
    let env = Env::new();
    two_snapshots(&env);
    let cache = env.path("meta");
    let w = snapshots(&env, &env.writer_key, &cache);
    assert_success(&w);
    let o = snapshots(&env, &env.owner_key, &cache);
    assert_success(&o);
    let (we, oe) = (
        entries(&env, &cache, "writer"),
        entries(&env, &cache, "owner"),
    );
    assert_eq!((we.len(), oe.len()), (2, 2));
    // Same objects, separate entries with different tags.
    for (a, b) in we.iter().zip(&oe) {
        assert_eq!(a.file_name(), b.file_name());
        assert_ne!(fs::read(a).unwrap(), fs::read(b).unwrap());
    }
    let mut dirs = vec![
        cache.join(repo_id(&env)),
        cache.join(repo_id(&env)).join("v1"),
    ];
    for e in we.iter().chain(&oe) {
        assert_eq!(fs::metadata(e).unwrap().permissions().mode() & 0o777, 0o600);
        dirs.push(e.parent().unwrap().to_owned());
        dirs.push(e.parent().unwrap().parent().unwrap().to_owned());
    }
    for d in dirs {
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    assert!(cache.join("CACHEDIR.TAG").exists());
    // The same listing as without a cache.
    let plain = env.vault(&["snapshots"], &env.writer_key, &["--no-cache", "--json"]);
    assert_eq!(stdout(&plain), stdout(&w));
    assert_eq!(
        stdout(&snapshots(&env, &env.writer_key, &cache)),
        stdout(&w)
    );
}

#[test]
fn planted_and_damaged_entries_are_refused_and_fetched_again() {
    let env = Env::new();
    two_snapshots(&env);
    let cache = env.path("meta");
    let first = snapshots(&env, &env.writer_key, &cache);
    assert_success(&first);
    let e = entries(&env, &cache, "writer");
    let good = fs::read(&e[0]).unwrap();
    // A planted entry: another header's JSON under this name, with a
    // made-up hash.
    let mut planted = good.clone();
    let body = String::from_utf8_lossy(&good[40..]).replace("\"tags\":[]", "\"tags\":[\"evil\"]");
    planted.truncate(40);
    planted.extend_from_slice(body.as_bytes());
    planted[8..40].copy_from_slice(blake3::hash(body.as_bytes()).as_bytes());
    fs::write(&e[0], &planted).unwrap();
    // A damaged one: cut short.
    let second = fs::read(&e[1]).unwrap();
    fs::write(&e[1], &second[..second.len() - 7]).unwrap();
    // Without the view's digest of whole headers, which holds them too.
    for seg in view_digest(&env, &cache, "writer", "snapshots-v1") {
        fs::remove_file(seg).unwrap();
    }
    let again = snapshots(&env, &env.writer_key, &cache);
    assert_success(&again);
    assert_eq!(
        stdout(&again),
        stdout(&first),
        "same output, nothing planted"
    );
    assert!(!stdout(&again).contains("evil"));
    assert_contains(&stderr(&again), "does not match");
    assert_eq!(fs::read(&e[0]).unwrap(), good, "fetched and cached again");
    assert_eq!(fs::read(&e[1]).unwrap(), second);
}

#[test]
fn forgotten_snapshots_leave_the_cache_and_check_reads_storage() {
    let env = Env::new();
    let ids = two_snapshots(&env);
    let cache = env.path("meta");
    assert_success(&snapshots(&env, &env.owner_key, &cache));
    assert_eq!(entries(&env, &cache, "owner").len(), 2);
    // Storage damage under a cached name: the cache still holds what the
    // name stands for, but `vault check` reads storage and reports it.
    let header = env.repo.join("snapshots").join(&ids[1]);
    let mut bytes = fs::read(&header).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::set_permissions(&header, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&header, &bytes).unwrap();
    let listed = snapshots(&env, &env.owner_key, &cache);
    assert_success(&listed);
    assert_contains(&stdout(&listed), &ids[1]);
    let check = env.vault(&["check"], &env.owner_key, &[]);
    assert!(!check.status.success(), "check must see the damage");
    assert_contains(
        &format!("{}{}", stdout(&check), stderr(&check)),
        &ids[1][..8],
    );
    // Forgotten: gone from the listing and from the cache.
    let out = env.vault(
        &["forget"],
        &env.owner_key,
        &["--keep-last", "1", "--cache-dir", cache.to_str().unwrap()],
    );
    assert_success(&out);
    assert_success(&snapshots(&env, &env.owner_key, &cache));
    let left = entries(&env, &cache, "owner");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(&ids[1]));
}

#[test]
fn an_unusable_cache_dir_is_warned_about_and_the_command_goes_on() {
    let env = Env::new();
    two_snapshots(&env);
    let not_a_dir = env.path("file");
    write(&not_a_dir, b"x");
    let out = snapshots(&env, &env.writer_key, &not_a_dir);
    assert_success(&out);
    assert_contains(&stderr(&out), "metadata cache not usable");
    let plain = env.vault(&["snapshots"], &env.writer_key, &["--no-cache", "--json"]);
    assert_eq!(stdout(&out), stdout(&plain));
    let bad = env.vault(&["snapshots"], &env.writer_key, &["--fetch-jobs", "0"]);
    assert!(!bad.status.success());
    assert_contains(&stderr(&bad), "--fetch-jobs 0");
}

#[test]
fn the_own_index_record_of_the_old_layout_is_picked_up() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"one");
    env.backup(&[&src]);
    // Put this host's record where vault kept it before the layout was
    // versioned, as an older vault would have left it.
    let v1 = env.cache.join(repo_id(&env)).join("v1");
    let host = fs::read_dir(&v1)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("host-"))
        .unwrap()
        .path();
    let record = fs::read_to_string(host.join("own-index")).unwrap();
    assert!(!record.is_empty());
    fs::remove_dir_all(&v1).unwrap();
    fs::write(env.cache.join(repo_id(&env)).join("own-index"), &record).unwrap();
    write(&src.join("b"), b"two");
    env.backup(&[&src]);
    let moved = fs::read_to_string(host.join("own-index")).unwrap();
    assert!(moved.starts_with(&record), "{moved:?} keeps {record:?}");
    assert!(!env.cache.join(repo_id(&env)).join("own-index").exists());
}

/// The digest segments of the writer view named `name`.
fn digest_segments(env: &Env, name: &str) -> Vec<PathBuf> {
    digest_files(env, name, "seg-")
}

/// The records digest `name` keeps in files of their own (one per large
/// document) in the writer view of the workspace cache.
fn digest_records(env: &Env, name: &str) -> Vec<PathBuf> {
    digest_files(env, name, "rec-")
}

fn digest_files(env: &Env, name: &str, prefix: &str) -> Vec<PathBuf> {
    let v1 = env.cache.join(repo_id(env)).join("v1");
    let mut out = Vec::new();
    for view in fs::read_dir(&v1).unwrap().flatten() {
        if view.file_name().to_string_lossy().starts_with("writer") {
            for e in fs::read_dir(view.path().join("digests").join(name))
                .unwrap()
                .flatten()
            {
                if e.file_name().to_string_lossy().starts_with(prefix) {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// A backup with the workspace cache: its id and its parent.
fn backup_parent(env: &Env, src: &Path) -> (String, Option<String>, std::process::Output) {
    let out = env.vault(
        &["backup"],
        &env.writer_key,
        &[
            "--cache-dir",
            env.cache.to_str().unwrap(),
            "--json",
            src.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parent = v["snapshot"]["parent"].as_str().map(str::to_owned);
    (v["id"].as_str().unwrap().to_owned(), parent, out)
}

/// The host directories of the workspace cache.
fn host_dirs(env: &Env) -> Vec<PathBuf> {
    let v1 = env.cache.join(repo_id(env)).join("v1");
    fs::read_dir(&v1)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("host-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// [`backup_parent`] with the remembered last snapshot forgotten first, so
/// that the backup finds its parent by listing every header.
fn backup_listing_parent(env: &Env, src: &Path) -> (String, Option<String>, std::process::Output) {
    for host in host_dirs(env) {
        let _ = fs::remove_dir_all(host.join("last-snapshot"));
    }
    backup_parent(env, src)
}

#[test]
fn a_backup_takes_its_parent_from_the_hosts_cache_without_listing_headers() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"one");
    let (first, _, _) = backup_parent(&env, &src);
    write(&src.join("a"), b"two");
    let (second, parent, _) = backup_parent(&env, &src);
    assert_eq!(parent.as_deref(), Some(first.as_str()));
    // Remembered, 0600 in a 0700 directory; no header was listed or
    // summed up (the first backup had none to sum up).
    let remembered: Vec<PathBuf> = host_dirs(&env)
        .iter()
        .flat_map(|h| fs::read_dir(h.join("last-snapshot")).unwrap().flatten())
        .map(|e| e.path())
        .collect();
    assert_eq!(remembered.len(), 1, "{remembered:?}");
    assert_eq!(fs::read_to_string(&remembered[0]).unwrap(), second);
    assert_eq!(
        fs::metadata(&remembered[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(remembered[0].parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(digest_segments(&env, "heads-v1").is_empty());
    // The remembered snapshot deleted (forget): the newest listed one.
    fs::remove_file(env.repo.join("snapshots").join(&second)).unwrap();
    write(&src.join("a"), b"three");
    let (third, parent, _) = backup_parent(&env, &src);
    assert_eq!(parent.as_deref(), Some(first.as_str()));
    // Garbage remembered: ignored, the newest listed one.
    fs::write(&remembered[0], "not an id").unwrap();
    write(&src.join("a"), b"four");
    let (_, parent, _) = backup_parent(&env, &src);
    assert_eq!(parent.as_deref(), Some(third.as_str()));
}

#[test]
fn backup_digests_follow_what_changed_and_refuse_damage() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"one");
    let (first, none, _) = backup_listing_parent(&env, &src);
    assert_eq!(none, None);
    write(&src.join("a"), b"two");
    let (second, parent, _) = backup_listing_parent(&env, &src);
    assert_eq!(parent.as_deref(), Some(first.as_str()));
    for name in ["heads-v1", "index-v1"] {
        let segments = digest_segments(&env, name);
        assert!(!segments.is_empty(), "no {name} digest");
        for s in segments {
            assert_eq!(
                fs::metadata(&s).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
    // Damaged segments are refused (and deleted), the headers read again:
    // the parent is still the newest snapshot.
    for s in digest_segments(&env, "heads-v1") {
        let mut bytes = fs::read(&s).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        fs::write(&s, bytes).unwrap();
    }
    write(&src.join("a"), b"three");
    let (third, parent, out) = backup_listing_parent(&env, &src);
    assert_eq!(parent.as_deref(), Some(second.as_str()));
    assert_contains(&stderr(&out), "does not match");
    write(&src.join("a"), b"four");
    let (fourth, parent, _) = backup_listing_parent(&env, &src);
    assert_eq!(parent.as_deref(), Some(third.as_str()));
    // Snapshots deleted from storage (as forget does) leave the digest:
    // the third is in it now, and must not become the next parent; the
    // digest is merged into one segment without it.
    for gone in [&third, &fourth] {
        fs::remove_file(env.repo.join("snapshots").join(gone)).unwrap();
    }
    write(&src.join("a"), b"five");
    let (_, parent, _) = backup_listing_parent(&env, &src);
    assert_eq!(parent.as_deref(), Some(second.as_str()));
    let heads = digest_segments(&env, "heads-v1");
    assert_eq!(heads.len(), 1, "{heads:?}");
    // And the repository restores what the last backup saw.
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    assert_eq!(
        fs::read(target.join(src.strip_prefix("/").unwrap()).join("a")).unwrap(),
        b"five"
    );
}

#[test]
fn large_index_files_keep_records_of_their_own_and_still_deduplicate() {
    let env = Env::new();
    let src = env.path("src");
    // About 900 distinct small files, a blob each (group-writable files are
    // never bundled): one index file of more blobs than a digest record
    // holds.
    for i in 0..900 {
        let f = src.join(format!("f{i}"));
        write(&f, format!("file number {i}\n").as_bytes());
        fs::set_permissions(&f, fs::Permissions::from_mode(0o664)).unwrap();
    }
    backup_parent(&env, &src);
    let large: Vec<String> = fs::read_dir(env.repo.join("index"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(large.len(), 1, "{large:?}");
    // Kept by the backup that wrote it, as a record of its own (0600), not
    // in the digest's segments.
    let records = digest_records(&env, "index-v1");
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].ends_with(format!("rec-{}", large[0])));
    assert_eq!(
        fs::metadata(&records[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The next runs replay the record: with the file's cache entry gone,
    // they neither fetch it (no entry written again) nor store its blobs
    // again: the changed file and the trees above it, not 900 blobs.
    for e in index_entries(&env) {
        let v1 = env.cache.join(repo_id(&env)).join("v1");
        for view in fs::read_dir(&v1).unwrap().flatten() {
            let _ = fs::remove_file(view.path().join("index").join(&e));
        }
    }
    let blobs_added = |out: &std::process::Output| {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["snapshot"]["totals"]["blobs_added"].as_u64().unwrap()
    };
    write(&src.join("f0"), b"changed");
    let (_, _, out) = backup_parent(&env, &src);
    assert!(blobs_added(&out) < 10, "{}", stdout(&out));
    assert!(!index_entries(&env).contains(&large[0]), "fetched again");
    assert!(digest_segments(&env, "index-v1").len() <= 1);
    // A damaged record is refused and deleted, the file read from storage
    // instead (deduplication unchanged), and its record kept again.
    let mut bytes = fs::read(&records[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&records[0], bytes).unwrap();
    write(&src.join("f1"), b"changed too");
    let (_, _, out) = backup_parent(&env, &src);
    assert_contains(&stderr(&out), "does not match");
    assert!(blobs_added(&out) < 10, "{}", stdout(&out));
    assert!(index_entries(&env).contains(&large[0]), "not read again");
    assert_eq!(digest_records(&env, "index-v1"), records);
    // Once the index file is no longer stored, its record goes too (the
    // backup, finding its blobs unindexed, stores them again under a new
    // index file, with a record of its own).
    // (Records written in the last ten minutes are kept: another command
    // may have stored their index file after this one listed.)
    fs::remove_file(env.repo.join("index").join(&large[0])).unwrap();
    fs::File::options()
        .write(true)
        .open(&records[0])
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    write(&src.join("f2"), b"changed as well");
    backup_parent(&env, &src);
    let now = digest_records(&env, "index-v1");
    assert!(!now.contains(&records[0]), "{now:?}");
    assert_eq!(now.len(), 1, "{now:?}");
}

/// The index entries of the writer view of the workspace cache.
fn index_entries(env: &Env) -> Vec<String> {
    let v1 = env.cache.join(repo_id(env)).join("v1");
    let mut out = Vec::new();
    for view in fs::read_dir(&v1).unwrap().flatten() {
        if view.file_name().to_string_lossy().starts_with("writer")
            && let Ok(r) = fs::read_dir(view.path().join("index"))
        {
            out.extend(
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.')),
            );
        }
    }
    out.sort();
    out
}

#[test]
fn a_backups_own_index_files_are_cached_as_written_and_not_fetched_again() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..50 {
        write(
            &src.join(format!("f{i}")),
            format!("file number {i}\n").as_bytes(),
        );
    }
    backup_parent(&env, &src);
    let mut stored: Vec<String> = fs::read_dir(env.repo.join("index"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    assert!(!stored.is_empty());
    // Cached by the backup that wrote them, before any command read them.
    assert_eq!(index_entries(&env), stored);
    // The next backup takes them from the cache: with every stored index
    // file replaced by other bytes (which a fetch would refuse as damaged),
    // it neither warns nor stores the files' blobs again.
    for name in &stored {
        let path = env.repo.join("index").join(name);
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] ^= 1;
        fs::write(&path, bytes).unwrap();
    }
    write(&src.join("f0"), b"changed");
    let (_, parent, out) = backup_parent(&env, &src);
    assert!(parent.is_some());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("damaged"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["snapshot"]["totals"]["blobs_added"].as_u64().unwrap() < 10,
        "{v}"
    );
}
