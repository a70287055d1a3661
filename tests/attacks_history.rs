//! Attacks on history and on copies, each built with one attacker's
//! capability only, each asserting that it no longer works:
//!
//! - a compromised host stores another host's signed header again under
//!   new names, hoping the copies fill retention's "last N" slots;
//! - a writer-key holder plants index entries in a copy target so that
//!   `vault copy` skips data the target does not hold;
//! - on a local repository, a writer sets a file's modification time to
//!   move a header's "upload time" where it wants it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use vault::repo::ObjectKind;

use crate::attackers::StorageAttacker;
use crate::util::*;

/// The age identities in a key file (what `age -d -i FILE` tries).
fn identities(key: &Path) -> Vec<age::x25519::Identity> {
    std::fs::read_to_string(key)
        .unwrap()
        .lines()
        .filter(|l| l.trim().starts_with("AGE-SECRET-KEY-"))
        .map(|l| age::x25519::Identity::from_str(l.trim()).unwrap())
        .collect()
}

/// Decrypts a sealed object with a writer key file, as `age -d` would.
fn open_sealed(key: &Path, bytes: &[u8]) -> Vec<u8> {
    let ids = identities(key);
    let d = age::Decryptor::new(bytes).unwrap();
    let mut r = d
        .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

/// Encrypts a plaintext, unchanged, to the public recipients in `config`:
/// a new object name for the same signed document.
fn reseal(repo: &Path, plain: &[u8]) -> Vec<u8> {
    let recipients = StorageAttacker::new(repo).recipients();
    let mut out = Vec::new();
    let enc = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .unwrap();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(plain).unwrap();
    w.finish().unwrap();
    out
}

fn add_host(env: &Env, name: &str) -> PathBuf {
    let key = env.path(&format!("{name}.key"));
    let out = env.vault(
        &["key", "add-host"],
        &env.owner_key,
        &[name, "--writer-key-out", key.to_str().unwrap()],
    );
    assert_success(&out);
    key
}

fn backup_id(repo: &Path, key: &Path, path: &Path) -> String {
    let out = run(&[
        "backup",
        "-r",
        repo.to_str().unwrap(),
        "-i",
        key.to_str().unwrap(),
        "--no-cache",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Vector: db1's own host key (one compromised host) and write access to
/// the storage. It decrypts web1's newest header (a writer reads headers)
/// and stores the same signed plaintext three more times, re-encrypted.
/// Expected: the copies are "a copy of snapshot …", untrusted; the owner's
/// `forget --keep-last 3` keeps web1's three newest REAL snapshots.
#[test]
fn a_replayed_header_of_another_host_counts_once_and_forget_keeps_the_real_ones() {
    let env = Env::new();
    let web1 = add_host(&env, "web1");
    let db1 = add_host(&env, "db1");
    let src = env.path("web");
    let mut real = Vec::new();
    for i in 0..4 {
        write(&src.join("index.html"), &noise(5_000, 7 + i));
        real.push(backup_id(&env.repo, &web1, &src));
    }
    let newest = std::fs::read(env.repo.join("snapshots").join(&real[3])).unwrap();
    let plain = open_sealed(&db1, &newest);
    let attacker = StorageAttacker::new(&env.repo);
    let replayed: Vec<String> = (0..3)
        .map(|_| {
            attacker
                .plant("snapshots/", &reseal(&env.repo, &plain))
                .trim_start_matches("snapshots/")
                .to_owned()
        })
        .collect();
    let listed = env.vault(&["snapshots"], &env.owner_key, &["--json"]);
    assert_success(&listed);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let entry = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"))
            .clone()
    };
    for id in &replayed {
        let e = entry(id);
        assert_ne!(e["trust"], "trusted", "a replay counts: {e}");
        assert!(e.to_string().contains("a copy of snapshot"), "{e}");
    }
    assert_eq!(entry(&real[3])["trust"], "trusted");
    let out = env.vault(&["forget"], &env.owner_key, &["--keep-last", "3", "--json"]);
    assert_success(&out);
    for id in &real[1..] {
        assert!(
            env.repo.join("snapshots").join(id).exists(),
            "real snapshot {id} was forgotten because of replays: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(!env.repo.join("snapshots").join(&real[0]).exists());
}

/// Vector: the writer key and write access to a copy target. The attacker
/// plants, in the target, one index file per blob of a source snapshot,
/// claiming it lives at offset 0 of a pack the target stores.
/// Expected: `vault copy` reads those claims back, rejects them, copies
/// the data, and the copied snapshot restores from the target.
#[test]
fn planted_index_entries_in_a_copy_target_do_not_make_copy_skip_data() {
    let env = Env::new();
    let target = env.path("offsite");
    assert_success(&run(&[
        "init",
        "-r",
        target.to_str().unwrap(),
        "--like",
        env.repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
    ]));
    let other = env.path("other");
    write(&other.join("x"), &noise(200_000, 1));
    backup_id(&target, &env.writer_key, &other);
    let src = env.path("src");
    write(&src.join("a.txt"), &noise(150_000, 2));
    write(&src.join("b.txt"), b"hello\n");
    let snap = backup_id(&env.repo, &env.writer_key, &src);

    let index = open_repo(&env.repo, &env.writer_key)
        .load_index_files()
        .unwrap()
        .index;
    let t = StorageAttacker::new(&target);
    let packs = t.packs();
    let mut planted = 0;
    for (blob, loc) in index.blobs() {
        let folder = loc.kind.folder();
        let (pack, _, size) = packs.iter().find(|(_, f, _)| *f == folder).unwrap();
        let length = (loc.length as u64).min(*size) as u32;
        let json = serde_json::json!({"packs":[{"id": pack, "kind": folder, "blobs":[
            {"id": blob.to_hex(), "offset": 0, "length": length, "raw_length": loc.raw_length}]}]});
        t.plant("index/", &t.seal(json.to_string().as_bytes()));
        planted += 1;
    }
    assert!(planted > 0);

    let out = env.vault(
        &["copy"],
        &env.owner_key,
        &["--to", target.to_str().unwrap(), "--json", &snap],
    );
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blobs_missing"], report["blobs_needed"], "{report}");
    let rejected = report["target_claims_rejected"].as_u64();
    assert!(rejected.is_some_and(|n| n >= planted), "{report}");
    let restored = env.path("from-target");
    assert_success(&run(&[
        "restore",
        "-r",
        target.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
        &snap,
        "--target",
        restored.to_str().unwrap(),
    ]));
    let b = restored.join(src.strip_prefix("/").unwrap()).join("b.txt");
    assert_eq!(std::fs::read(&b).unwrap(), b"hello\n");
    assert_success(&env.vault(&["check"], &env.owner_key, &[]));
}

/// Sets a file's modification time, as anyone who can write the
/// repository directory can.
fn touch(path: &Path, at: chrono::DateTime<chrono::Utc>) {
    let ok = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{}", at.timestamp()))
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Vector: write access to a local repository directory, with the shared
/// writer key and with db1's own key. The attacker sets header files'
/// modification times: back, to before db1 got its own key (so a
/// shared-key header for db1 would count), and forward, so a header dated
/// 50 minutes ahead escapes the upload bound.
/// Expected: the "upload time" of a local object is its inode change time,
/// which nobody can set back: the shared-key header is untrusted and the
/// forward-dated one's time is bounded to its upload plus five minutes.
#[test]
fn on_a_local_repository_file_times_do_not_move_a_headers_upload_time() {
    let env = Env::new();
    let db1 = add_host(&env, "db1");
    let db = env.path("db");
    write(&db.join("db.sql"), &noise(3_000, 50));
    let real = backup_id(&env.repo, &db1, &db);
    let evil = env.path("evil");
    write(&evil.join("db.sql"), b"DROP TABLE users;\n");
    backup_id(&env.repo, &env.writer_key, &evil);

    let shared = open_repo(&env.repo, &env.writer_key);
    let (_, header) = shared.find_snapshot(&real).unwrap();
    let mut forged = header.clone();
    forged.time = chrono::Utc::now() + chrono::Duration::minutes(3);
    let id = shared
        .put_signed_json(ObjectKind::Snapshot, &forged)
        .unwrap();
    touch(
        &env.repo.join("snapshots").join(id.to_hex()),
        chrono::Utc::now() - chrono::Duration::minutes(10),
    );

    let mut ahead = header.clone();
    ahead.time = chrono::Utc::now() + chrono::Duration::minutes(50);
    let id2 = open_repo(&env.repo, &db1)
        .put_signed_json(ObjectKind::Snapshot, &ahead)
        .unwrap();
    touch(&env.repo.join("snapshots").join(id2.to_hex()), ahead.time);
    write(&db.join("db.sql"), &noise(3_000, 99));
    let later = backup_id(&env.repo, &db1, &db);

    let owner = open_repo(&env.repo, &env.owner_key);
    let set = owner.verified_snapshots().unwrap();
    let rec = set.records.iter().find(|r| r.id.0 == id).unwrap();
    assert!(!rec.trust.usable(), "{:?}", rec.trust);
    // Stored just now whatever its mtime says: its time is bounded to the
    // upload time plus the five-minute slack, not 50 minutes ahead.
    let rec2 = set.records.iter().find(|r| r.id.0 == id2).unwrap();
    assert!(rec2.recorded_time > chrono::Utc::now() + chrono::Duration::minutes(40));
    assert!(
        rec2.snapshot.time < chrono::Utc::now() + chrono::Duration::minutes(6),
        "not bounded: {}",
        rec2.snapshot.time
    );
    // db1's real backup made after it is still found among db1's.
    let filter = vault::repo::select::SnapshotFilter {
        host: Some("db1".into()),
        ..Default::default()
    };
    let (found, _) = vault::repo::select::find(&owner, &later, &filter).unwrap();
    assert_eq!(found.to_hex(), later);
}
