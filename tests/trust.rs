//! Signed history (format 2): one named vector per attack, each built with
//! that attacker's capability only, and the outcome it must get.
//!
//! - `writer key of host A` = host A's writer key file (made by `vault key
//!   add-host`) and write access to the storage; the attacker runs a
//!   modified client, here vault's own library.
//! - `storage write` = write access to the repository's files, no key.
//!
//! | vector | attacker | expected outcome |
//! |---|---|---|
//! | `host_key_forging_another_hosts_series_is_not_trusted` | writer key of web1 | db1's forged headers are untrusted: not `latest`, not in status, take no retention slot |
//! | `forged_headers_dated_ahead_cannot_make_forget_delete_real_snapshots` | writer key of web1 | after `forget --keep-last 3 --keep-daily 7` the real db1 snapshots all exist |
//! | `a_host_forging_its_own_series_cannot_make_forget_delete_its_newest_drilled_snapshot` | writer key of db1 | forged times are bounded by upload; the newest drilled real snapshot survives forget |
//! | `shared_writer_key_cannot_write_a_registered_hosts_series` | the shared writer key of `vault init` | its headers naming db1 (which has a key of its own) are untrusted |
//! | `planted_index_entries_do_not_poison_an_honest_backup` | writer key of web1 | db1's backup stores the content itself, restores, check is clean; prune drops the planted entry |
//! | `forged_drill_records_do_not_turn_status_green` | writer key of web1, shared writer key | status stays red; an owner's drill (control) turns it green |
//! | `a_revoked_hosts_key_signs_nothing_that_counts_after_revocation` | writer key of web1, revoked by `vault key revoke-host web1` (the attacker's client opened the repository before) | its header, index file and drill record stored after the revocation are untrusted: not `latest`, no retention slot, listed as untrusted by status, no dedup source; its earlier snapshots stay trusted and restorable; vault refuses the key |
//! | `a_storage_attacker_cannot_forge_or_backdate_a_revocation` | storage write | a self-signed revocation of db1's key, web1's revocation copied under db1's key name, and web1's revocation edited to an earlier time are all ignored: db1 and web1's earlier snapshots stay trusted |
//! | `a_revocation_reaches_the_copy_target` | writer key of web1 with write access to a copy target | after `vault copy`, its header signed after the revocation is untrusted in the target too, and vault refuses the key there (its real snapshot copied after the revocation does not count there either, and restores by id) |
//! | `rotate_writer_revokes_the_retired_shared_key_only` | the shared writer key after `vault key rotate-writer` | headers it signs afterwards are untrusted; a host key made before keeps counting until revoke-host |
//! | `a_storage_attacker_editing_config_is_refused` | storage write | chunker 64/256/1024, compression 22, 1 MiB packs, Object Lock, format 1, a self-signed config: writers and owners refuse |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vault::format::drill::{DrillRecord, DrillSummary};
use vault::format::id::{BlobId, Id, PackId};
use vault::format::index::{IndexFile, IndexedBlob, IndexedPack};
use vault::format::pack::BlobKind;
use vault::repo::{Access, ObjectKind, Repository};
use vault::storage::LocalStorage;

use crate::util::*;

/// A repository with two hosts that have keys of their own.
struct Fleet {
    env: Env,
    web1: PathBuf,
    db1: PathBuf,
}

fn fleet() -> Fleet {
    let env = Env::new();
    let web1 = env.path("web1.key");
    let db1 = env.path("db1.key");
    for (name, key) in [("web1", &web1), ("db1", &db1)] {
        let out = env.vault(
            &["key", "add-host"],
            &env.owner_key,
            &[name, "--writer-key-out", key.to_str().unwrap()],
        );
        assert_success(&out);
    }
    Fleet { env, web1, db1 }
}

/// `vault backup --json` with `key` and its own cache directory.
fn backup_with(env: &Env, key: &Path, paths: &[&Path]) -> serde_json::Value {
    let cache = env.path(&format!(
        "cache-{}",
        key.file_name().unwrap().to_string_lossy()
    ));
    let mut args = vec!["--cache-dir", cache.to_str().unwrap(), "--json"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let out = env.vault(&["backup"], key, &args);
    assert_success(&out);
    serde_json::from_slice(&out.stdout).expect("backup --json")
}

/// The repository opened with `key`, as an attacker's modified client would.
fn open(env: &Env, key: &Path) -> Repository {
    open_repo(&env.repo, key)
}

fn snapshots_json(env: &Env, key: &Path) -> Vec<serde_json::Value> {
    let out = env.vault(&["snapshots"], key, &["--json"]);
    assert_success(&out);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Every file below `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn exists(env: &Env, snapshot: &str) -> bool {
    env.repo.join("snapshots").join(snapshot).exists()
}

/// Three real backups of db1, each of different content; returns their ids.
fn three_db1_backups(f: &Fleet, src: &Path) -> Vec<String> {
    (0..3)
        .map(|i| {
            write(&src.join("db.sql"), &noise(20_000, 100 + i));
            backup_with(&f.env, &f.db1, &[src])["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Copies of db1's newest header pointing at `root` (a tree of the
/// attacker's), dated 20, 35 and 50 minutes ahead, signed with `key`.
fn forge_db1_headers(env: &Env, key: &Path, real: &str, root: Id) -> Vec<Id> {
    let attacker = open(env, key);
    let (_, header) = attacker.find_snapshot(real).unwrap();
    [20, 35, 50]
        .into_iter()
        .map(|minutes| {
            let mut forged = header.clone();
            forged.root = vault::TreeId(root);
            forged.time = header.time + chrono::Duration::minutes(minutes);
            attacker
                .put_signed_json(ObjectKind::Snapshot, &forged)
                .unwrap()
        })
        .collect()
}

#[test]
fn host_key_forging_another_hosts_series_is_not_trusted() {
    let f = fleet();
    let (web, db) = (f.env.path("web"), f.env.path("db"));
    write(&web.join("index.html"), b"attacker's page\n");
    let web_root: Id = backup_with(&f.env, &f.web1, &[&web])["snapshot"]["root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let real = three_db1_backups(&f, &db);
    let forged = forge_db1_headers(&f.env, &f.web1, &real[2], web_root);

    // `latest` is never a forged header, whoever asks.
    for key in [&f.env.owner_key, &f.env.writer_key, &f.db1] {
        let (id, _) = open(&f.env, key).find_snapshot("latest").unwrap();
        assert!(!forged.contains(id.id()), "a forged header became latest");
    }
    // `vault snapshots` says which do not count and why.
    let listed = snapshots_json(&f.env, &f.env.owner_key);
    for id in &forged {
        let entry = listed.iter().find(|s| s["id"] == id.to_hex()).unwrap();
        assert_eq!(entry["trust"], "untrusted");
        assert_eq!(entry["signed_by"], "host web1");
        assert_contains(
            entry["untrusted_reason"].as_str().unwrap(),
            "host keys sign only their own series",
        );
    }
    for id in &real {
        let entry = listed.iter().find(|s| s["id"] == *id).unwrap();
        assert_eq!(entry["trust"], "trusted");
        assert_eq!(entry["signed_by"], "host db1");
    }
    // Status names them and leaves them out of db1's figures.
    let out = f.env.vault(&["status"], &f.db1, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["untrusted"].as_array().unwrap().len(), 3, "{v}");
    let db_source = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == "db1")
        .unwrap();
    assert_eq!(db_source["snapshots"], 3, "forged headers counted: {v}");
}

#[test]
fn forged_headers_dated_ahead_cannot_make_forget_delete_real_snapshots() {
    let f = fleet();
    let (web, db) = (f.env.path("web"), f.env.path("db"));
    write(&web.join("index.html"), b"attacker's page\n");
    let web_root: Id = backup_with(&f.env, &f.web1, &[&web])["snapshot"]["root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let real = three_db1_backups(&f, &db);
    let forged = forge_db1_headers(&f.env, &f.web1, &real[2], web_root);

    let out = f.env.vault(
        &["forget"],
        &f.env.owner_key,
        &["--keep-last", "3", "--keep-daily", "7", "--json"],
    );
    assert_success(&out);
    for id in &real {
        assert!(exists(&f.env, id), "forget deleted real snapshot {id}");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let db_group = v["forget"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["host"] == "db1")
        .unwrap();
    for s in db_group["snapshots"].as_array().unwrap() {
        if forged.iter().any(|id| s["id"] == id.to_hex()) {
            assert_contains(s["reasons"][0].as_str().unwrap(), "untrusted");
        } else {
            assert!(real.iter().any(|id| s["id"] == *id));
            assert!(s["keep"].as_bool().unwrap());
            assert!(
                s["reasons"].as_array().unwrap().iter().any(|r| r == "last"),
                "a real snapshot lost its retention slot: {s}"
            );
        }
    }
    // The owner's latest of db1 is the real newest one.
    let restored = f.env.path("restored");
    assert_success(&f.env.restore("latest", &restored));
    assert!(
        restored
            .join(db.strip_prefix("/").unwrap())
            .join("db.sql")
            .exists()
    );
}

#[test]
fn a_host_forging_its_own_series_cannot_make_forget_delete_its_newest_drilled_snapshot() {
    let f = fleet();
    let db = f.env.path("db");
    let real = three_db1_backups(&f, &db);
    // The owner's weekly drill proves the newest real snapshot restores.
    let out = f
        .env
        .vault(&["restore"], &f.env.owner_key, &[&real[2], "--verify"]);
    assert_success(&out);
    // db1 itself is compromised: it re-signs its own header three times,
    // pointing at an empty tree of its own and dated 20–50 minutes ahead.
    let empty = f.env.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty_root: Id = backup_with(&f.env, &f.db1, &[&empty])["snapshot"]["root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let forged = forge_db1_headers(&f.env, &f.db1, &real[2], empty_root);

    // Its own series: the forgeries are signed by db1's key and count, but
    // dated no later than their upload (plus 5 minutes).
    for s in snapshots_json(&f.env, &f.env.owner_key) {
        if forged.iter().any(|id| s["id"] == id.to_hex()) {
            let counts: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(s["counts_as_time"].clone()).unwrap();
            let uploaded: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(s["uploaded"].clone()).unwrap();
            assert!(counts <= uploaded + chrono::Duration::minutes(5), "{s}");
        }
    }
    let out = f.env.vault(
        &["forget"],
        &f.env.owner_key,
        &["--keep-last", "3", "--keep-daily", "7", "--json"],
    );
    assert_success(&out);
    assert!(
        exists(&f.env, &real[2]),
        "forget deleted the newest snapshot a drill proved"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept_by = v["forget"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["snapshots"].as_array().unwrap().iter())
        .find(|s| s["id"] == real[2])
        .unwrap()["reasons"]
        .clone();
    assert_eq!(
        kept_by,
        serde_json::json!(["newest drilled"]),
        "only the drill kept it"
    );
}

#[test]
fn shared_writer_key_cannot_write_a_registered_hosts_series() {
    let f = fleet();
    let (web, db) = (f.env.path("web"), f.env.path("db"));
    write(&web.join("index.html"), b"attacker's page\n");
    let root: Id = backup_with(&f.env, &f.env.writer_key, &[&web])["snapshot"]["root"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let real = three_db1_backups(&f, &db);
    let forged = forge_db1_headers(&f.env, &f.env.writer_key, &real[2], root);
    let listed = snapshots_json(&f.env, &f.env.owner_key);
    for id in &forged {
        let entry = listed.iter().find(|s| s["id"] == id.to_hex()).unwrap();
        assert_eq!(entry["trust"], "untrusted", "{entry}");
        assert_contains(
            entry["untrusted_reason"].as_str().unwrap(),
            "has had its own key since",
        );
    }
    // The shared key's own backups (any host name without a key) count.
    let shared = listed
        .iter()
        .find(|s| s["snapshot"]["root"] == root.to_hex());
    assert_eq!(shared.unwrap()["trust"], "trusted");
}

#[test]
fn a_host_key_records_its_own_host_name_only() {
    let f = fleet();
    let src = f.env.path("src");
    write(&src.join("f"), b"x\n");
    let v = backup_with(&f.env, &f.web1, &[&src]);
    assert_eq!(v["snapshot"]["host"], "web1");
    let out = f.env.vault(
        &["backup"],
        &f.web1,
        &["--no-cache", "--host", "db1", src.to_str().unwrap()],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "signs only that host's backups");
    // Only an owner makes host keys.
    let out = f.env.vault(
        &["key", "add-host"],
        &f.web1,
        &[
            "evil",
            "--writer-key-out",
            f.env.path("evil.key").to_str().unwrap(),
        ],
    );
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "needs an owner key");
    assert!(!f.env.path("evil.key").exists());
    let out = f.env.vault(&["key", "list"], &f.env.owner_key, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hosts"], serde_json::json!(["db1", "web1"]));
}

#[test]
fn planted_index_entries_do_not_poison_an_honest_backup() {
    let f = fleet();
    let web = f.env.path("web");
    write(&web.join("big.bin"), &noise(300_000, 7));
    backup_with(&f.env, &f.web1, &[&web]);
    // The attacker (web1) guesses a file db1 will back up later and claims
    // the keyed id of its first chunk lives at offset 0 of one of web1's
    // own packs. The file is larger than 16 KiB: a small file's ids are
    // salted with db1's salt, which web1 cannot compute (format 3).
    let mut secret = b"db_password=hunter2\n".to_vec();
    secret.extend(noise(40_000, 11));
    let attacker = open(&f.env, &f.web1);
    let key = *attacker.keys().chunk_key();
    let first = vault::format::chunk::chunks(
        &secret[..],
        &attacker.config().chunker,
        vault::format::chunk::gear_seed(&key),
    )
    .next()
    .unwrap()
    .unwrap();
    let blob = BlobId::keyed(&key, &first);
    let pack: PackId = std::fs::read_dir(f.env.repo.join("data"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .next()
        .unwrap();
    let planted = IndexFile {
        packs: vec![IndexedPack {
            id: pack,
            kind: BlobKind::Data,
            blobs: vec![IndexedBlob {
                id: blob,
                offset: 0,
                length: 100,
                raw_length: first.len() as u32,
            }],
        }],
        condemned: Vec::new(),
    };
    attacker
        .put_signed_json(ObjectKind::Index, &planted)
        .unwrap();
    attacker
        .put_shared_json(ObjectKind::Index, &planted)
        .unwrap();

    let db = f.env.path("db");
    write(&db.join("app.env"), &secret);
    let v = backup_with(&f.env, &f.db1, &[&db]);
    assert!(
        v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap() >= secret.len() as u64,
        "the honest backup deduplicated against the planted entry: {v}"
    );
    let id = v["id"].as_str().unwrap();
    let target = f.env.path("restored");
    assert_success(&f.env.restore(id, &target));
    assert_eq!(
        std::fs::read(target.join(db.strip_prefix("/").unwrap()).join("app.env")).unwrap(),
        secret
    );
    assert_success(&f.env.vault(&["check"], &f.env.owner_key, &[]));

    // Prune reads the claim back before signing anything: it is dropped,
    // never carried into an owner-attested index file.
    let out = f.env.vault(&["prune"], &f.env.owner_key, &["--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["entries_dropped"].as_u64().unwrap() >= 1, "{v}");
    let loaded = open(&f.env, &f.env.owner_key).load_index_files().unwrap();
    assert!(
        !loaded
            .index
            .locations(&blob)
            .any(|l| l.pack == pack && l.offset == 0 && loaded.index.is_attested(&blob, &l)),
        "prune attested the planted entry"
    );
    assert_eq!(loaded.index.locations(&blob).count(), 1, "the genuine copy");
    // And the next backup of another host deduplicates against the
    // genuine, now attested, copy.
    let data_packs = || walk_files(&f.env.repo.join("data")).len();
    let before = data_packs();
    let app = f.env.path("app");
    write(&app.join("app.env"), &secret);
    backup_with(&f.env, &f.env.writer_key, &[&app]);
    assert_eq!(data_packs(), before, "the content was stored again");
}

#[test]
fn other_hosts_index_files_are_a_dedup_source_only_once_an_owner_attested_them() {
    let f = fleet();
    let data = noise(4 << 20, 42);
    let (web, db, app) = (f.env.path("web"), f.env.path("db"), f.env.path("app"));
    for dir in [&web, &db, &app] {
        write(&dir.join("shared.bin"), &data);
    }
    let first = backup_with(&f.env, &f.web1, &[&web]);
    let before = backup_with(&f.env, &f.db1, &[&db]);
    let out = f
        .env
        .vault(&["check"], &f.env.owner_key, &["--read-data", "--json"]);
    assert_success(&out);
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = backup_with(&f.env, &f.env.writer_key, &[&app]);
    let added = |v: &serde_json::Value| v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap();
    eprintln!(
        "cross-host dedup: first host stored {} bytes; second host, before an owner step, {}; \
         check --read-data attested {} entries; third host after it, {}",
        added(&first),
        added(&before),
        check["entries_attested"],
        added(&after)
    );
    assert!(
        added(&before) >= data.len() as u64,
        "no cross-host dedup yet"
    );
    assert!(check["entries_attested"].as_u64().unwrap() > 0);
    assert!(added(&after) < 64 << 10, "attested entries dedupe");
    // A host still deduplicates against what it wrote itself.
    write(&db.join("other.bin"), b"small change\n");
    let again = backup_with(&f.env, &f.db1, &[&db]);
    assert!(added(&again) < 64 << 10, "{again}");
}

#[test]
fn forged_drill_records_do_not_turn_status_green() {
    let f = fleet();
    let db = f.env.path("db");
    write(&db.join("db.sql"), b"select 1;\n");
    let id: Id = backup_with(&f.env, &f.db1, &[&db])["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let record = DrillRecord {
        time: chrono::Utc::now(),
        host: "drillhost".into(),
        snapshot: vault::SnapshotId(id),
        passed: true,
        summary: DrillSummary {
            files: 1,
            verified: 1,
            ..Default::default()
        },
    };
    // Signed by a host key, by the shared writer key, and not at all.
    for key in [&f.web1, &f.env.writer_key] {
        open(&f.env, key)
            .put_signed_json(ObjectKind::Drill, &record)
            .unwrap();
    }
    open(&f.env, &f.web1)
        .put_shared_json(ObjectKind::Drill, &record)
        .unwrap();
    let out = f.env.vault(&["status"], &f.db1, &[]);
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "no passed restore drill");
    assert_eq!(stdout(&out).matches("untrusted: drill record").count(), 3);

    // Control: the owner's drill does count.
    assert_success(
        &f.env
            .vault(&["restore"], &f.env.owner_key, &["latest", "--verify"]),
    );
    let out = f.env.vault(&["status"], &f.db1, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["sources"][0]["last_passed_drill"].is_string(),
        "the owner's drill counts: {v}"
    );
    assert_eq!(v["untrusted"].as_array().unwrap().len(), 3);
}

#[test]
fn a_storage_attacker_editing_config_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"x\n");
    env.backup(&[&src]);
    let path = env.repo.join("config");
    let original = std::fs::read(&path).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let self_signed = {
        // A config re-signed with a key of the attacker's own.
        let mut c: vault::format::config::RepoConfig = serde_json::from_slice(&original).unwrap();
        let k = vault::crypto::sign::SigningKey::generate();
        c.compression_level = 22;
        c.owner_signing_key = Some(k.public());
        c.signature = Some(k.sign(c.signed_text().as_bytes()));
        serde_json::to_value(&c).unwrap()
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "tiny chunks",
            Box::new(|c| {
                c["chunker"] =
                    serde_json::json!({"min_size": 64, "avg_size": 256, "max_size": 1024})
            }),
        ),
        (
            "compression 22",
            Box::new(|c| c["compression_level"] = 22.into()),
        ),
        (
            "1 MiB packs",
            Box::new(|c| c["pack_size"] = (1 << 20).into()),
        ),
        (
            "object lock",
            Box::new(|c| c["object_lock"] = serde_json::json!({"mode": "governance", "days": 1})),
        ),
        (
            "format 1",
            Box::new(|c| {
                c["version"] = 1.into();
                let o = c.as_object_mut().unwrap();
                o.remove("owner_signing_key");
                o.remove("signature");
            }),
        ),
        ("self-signed", Box::new(move |c| *c = self_signed.clone())),
    ];
    for (what, edit) in edits {
        let mut c = config.clone();
        edit(&mut c);
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        let out = env.vault(
            &["backup"],
            &env.writer_key,
            &["--no-cache", src.to_str().unwrap()],
        );
        assert_code(&out, 4);
        assert_contains(&stderr(&out), "tampered");
        let out = env.vault(&["ls"], &env.owner_key, &["latest"]);
        assert_code(&out, 4);
        assert_contains(&stderr(&out), "tampered");
        eprintln!("{what}: refused");
    }
    std::fs::write(&path, &original).unwrap();
    assert_success(&env.vault(&["ls"], &env.owner_key, &["latest"]));
}

/// fixtures/repo-v1 copied into a temporary directory, keys made 0600.
fn v1_fixture() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo-v1");
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args(["-a", src.to_str().unwrap(), dir.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let root = dir.path().join("repo-v1");
    let (owner, writer) = (root.join("owner.key"), root.join("writer.key"));
    for k in [&owner, &writer] {
        std::fs::set_permissions(k, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    (dir, root.join("repo"), owner, writer)
}

#[test]
fn a_format_1_repository_stays_usable_with_its_history_marked_legacy() {
    let (dir, repo, owner, writer) = v1_fixture();
    let r = repo.to_str().unwrap();
    let v = |key: &Path, args: &[&str]| {
        let mut all = vec![args[0], "-r", r, "-i", key.to_str().unwrap()];
        all.extend(&args[1..]);
        run(&all)
    };
    // Backups with the v1 writer key go on, unsigned.
    let src = dir.path().join("src");
    write(&src.join("f"), b"written by a newer vault\n");
    let cache = dir.path().join("cache");
    assert_success(&v(
        &writer,
        &[
            "backup",
            "--cache-dir",
            cache.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    ));
    let out = v(&owner, &["snapshots", "--json"]);
    assert_success(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for s in list.as_array().unwrap() {
        assert_eq!(s["trust"], "legacy", "{s}");
    }
    // Host keys need format 2; the config stays format 1 and unsigned.
    let host_key = dir.path().join("h.key");
    let out = run(&[
        "key",
        "add-host",
        "-r",
        r,
        "-i",
        owner.to_str().unwrap(),
        "web1",
        "--writer-key-out",
        host_key.to_str().unwrap(),
    ]);
    assert_code(&out, 2);
    assert!(!host_key.exists());
    assert_contains(&stderr(&out), "format 1");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["version"], 1);
    // The owner's operations still work, and sign what they write.
    assert_success(&v(&owner, &["restore", "latest", "--verify"]));
    assert_success(&v(&owner, &["forget", "--keep-last", "2"]));
    let out = v(&writer, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["untrusted"].as_array().unwrap().is_empty(),
        "{status}"
    );
}

#[test]
fn a_revoked_hosts_key_signs_nothing_that_counts_after_revocation() {
    let f = fleet();
    let web = f.env.path("web");
    write(&web.join("index.html"), b"web1's page, version 1\n");
    let earlier: Vec<String> = (0..2)
        .map(|i| {
            write(&web.join("n"), &[i]);
            backup_with(&f.env, &f.web1, &[&web])["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // The compromised host's modified client: opened before the revocation,
    // it never checks it again.
    let attacker = open(&f.env, &f.web1);
    let out = f
        .env
        .vault(&["key", "revoke-host"], &f.env.owner_key, &["web1"]);
    assert_success(&out);
    assert_contains(&stdout(&out), "revoked key");

    // After the revocation it signs a header dated now (pointing at its own
    // old tree), an index file planting a claim, and a passed drill record.
    let (_, header) = attacker.find_snapshot(&earlier[1]).unwrap();
    let mut forged = header.clone();
    forged.time = chrono::Utc::now();
    let forged = attacker
        .put_signed_json(ObjectKind::Snapshot, &forged)
        .unwrap();
    let secret = b"API_TOKEN=0123456789abcdef\n".repeat(50);
    let blob = BlobId::keyed(attacker.keys().chunk_key(), &secret);
    let pack: PackId = walk_files(&f.env.repo.join("data"))[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .parse()
        .unwrap();
    attacker
        .put_signed_json(
            ObjectKind::Index,
            &IndexFile {
                packs: vec![IndexedPack {
                    id: pack,
                    kind: BlobKind::Data,
                    blobs: vec![IndexedBlob {
                        id: blob,
                        offset: 0,
                        length: 100,
                        raw_length: secret.len() as u32,
                    }],
                }],
                condemned: Vec::new(),
            },
        )
        .unwrap();
    attacker
        .put_signed_json(
            ObjectKind::Drill,
            &DrillRecord {
                time: chrono::Utc::now(),
                host: "web1".into(),
                snapshot: vault::SnapshotId(forged),
                passed: true,
                summary: DrillSummary {
                    files: 2,
                    verified: 2,
                    ..Default::default()
                },
            },
        )
        .unwrap();

    // The header does not count, and says why; the earlier ones do, and say
    // their key was revoked since.
    let listed = snapshots_json(&f.env, &f.env.owner_key);
    let entry = |id: &str| listed.iter().find(|s| s["id"] == id).unwrap().clone();
    let e = entry(&forged.to_hex());
    assert_eq!(e["trust"], "untrusted", "{e}");
    assert_contains(e["untrusted_reason"].as_str().unwrap(), "revoked");
    for id in &earlier {
        let e = entry(id);
        assert_eq!(e["trust"], "trusted", "{e}");
        assert!(e["key_revoked"].is_string(), "{e}");
    }
    // Not latest, for anyone.
    for key in [&f.env.owner_key, &f.db1] {
        let (id, _) = open(&f.env, key).find_snapshot("latest").unwrap();
        assert_ne!(id.0, forged, "the revoked key's header became latest");
    }
    // Status lists the header as untrusted and the drill record does not
    // turn web1 green.
    let out = f.env.vault(&["status"], &f.db1, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let untrusted = v["untrusted"].to_string();
    assert_contains(&untrusted, &format!("snapshot {}", &forged.to_hex()[..8]));
    assert_contains(&untrusted, "whose key was revoked");
    let web_source = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == "web1")
        .unwrap();
    assert_eq!(web_source["snapshots"], 2, "{v}");
    assert!(web_source["last_passed_drill"].is_null(), "{v}");
    // It takes no retention slot: keep-last 1 keeps the real newest one.
    let out = f
        .env
        .vault(&["forget"], &f.env.owner_key, &["--keep-last", "1"]);
    assert_success(&out);
    assert!(
        exists(&f.env, &earlier[1]),
        "the real newest web1 snapshot went"
    );
    // The earlier snapshots restore.
    assert_success(&f.env.restore(&earlier[1], &f.env.path("restored")));

    // vault refuses the revoked key outright.
    let out = f.env.vault(&["snapshots"], &f.web1, &[]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "was revoked");
    // The host, re-keyed, does not deduplicate against the planted claim.
    let web1_new = f.env.path("web1-new.key");
    assert_success(&f.env.vault(
        &["key", "add-host"],
        &f.env.owner_key,
        &["web1", "--writer-key-out", web1_new.to_str().unwrap()],
    ));
    write(&web.join("token.env"), &secret);
    let v = backup_with(&f.env, &web1_new, &[&web]);
    assert!(
        v["snapshot"]["totals"]["bytes_added"].as_u64().unwrap() >= secret.len() as u64,
        "the re-keyed host deduplicated against the revoked key's claim: {v}"
    );
    let target = f.env.path("restored-new");
    assert_success(&f.env.restore(v["id"].as_str().unwrap(), &target));
    assert_eq!(
        std::fs::read(
            target
                .join(web.strip_prefix("/").unwrap())
                .join("token.env")
        )
        .unwrap(),
        secret
    );
    // Revoking a host with no key of its own is refused by name.
    let out = f
        .env
        .vault(&["key", "revoke-host"], &f.env.owner_key, &["nosuchhost"]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "has no key of its own");
}

#[test]
fn rotate_writer_revokes_the_retired_shared_key_only() {
    let f = fleet();
    let src = f.env.path("src");
    write(&src.join("f"), b"one\n");
    let before = f.env.backup(&[&src]);
    let shared = open(&f.env, &f.env.writer_key);
    let web1 = open(&f.env, &f.web1);
    let next = f.env.path("writer-2.key");
    let out = f.env.vault(
        &["key", "rotate-writer"],
        &f.env.owner_key,
        &["--writer-key-out", next.to_str().unwrap()],
    );
    assert_success(&out);
    assert_contains(&stdout(&out), "revoked: the previous shared writer key");
    assert_contains(&stdout(&out), "not revoked: host keys");
    // Both retired handles sign a header after the rotation.
    let (_, header) = shared.find_snapshot(&before).unwrap();
    let by_shared = shared
        .put_signed_json(ObjectKind::Snapshot, &header)
        .unwrap();
    let mut h = header.clone();
    h.host = "web1".into();
    let by_web1 = web1.put_signed_json(ObjectKind::Snapshot, &h).unwrap();
    let listed = snapshots_json(&f.env, &f.env.owner_key);
    let trust = |id: &Id| {
        listed.iter().find(|s| s["id"] == id.to_hex()).unwrap()["trust"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(trust(&by_shared), "untrusted");
    assert_eq!(trust(&before.parse().unwrap()), "trusted");
    // Host keys are not revoked by a rotation (the output says so).
    assert_eq!(trust(&by_web1), "trusted");
}

#[test]
fn a_storage_attacker_cannot_forge_or_backdate_a_revocation() {
    let f = fleet();
    let (web, db) = (f.env.path("web"), f.env.path("db"));
    write(&web.join("index.html"), b"page\n");
    write(&db.join("db.sql"), b"select 1;\n");
    let web_snap = backup_with(&f.env, &f.web1, &[&web])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db_snap = backup_with(&f.env, &f.db1, &[&db])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db1_key = open(&f.env, &f.db1)
        .keys()
        .writer()
        .host()
        .unwrap()
        .certificate()
        .key;
    assert_success(
        &f.env
            .vault(&["key", "revoke-host"], &f.env.owner_key, &["web1"]),
    );
    let revoked_dir = f.env.repo.join("keys/revoked");
    let genuine_path = walk_files(&revoked_dir).pop().unwrap();
    let genuine: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&genuine_path).unwrap()).unwrap();
    // (a) A revocation of db1's key, signed by a key of the attacker's own.
    let k = vault::crypto::sign::SigningKey::generate();
    let mut r: vault::format::signature::HostRevocation =
        serde_json::from_value(genuine.clone()).unwrap();
    r.host = "db1".into();
    r.key = db1_key;
    r.revoked = chrono::Utc::now() - chrono::Duration::days(365);
    r.signature = k.sign(&r.message());
    let db1_object = revoked_dir.join(format!("{db1_key}.json"));
    std::fs::write(&db1_object, serde_json::to_vec(&r).unwrap()).unwrap();
    let check = |what: &str| {
        let listed = snapshots_json(&f.env, &f.env.owner_key);
        for id in [&web_snap, &db_snap] {
            let e = listed.iter().find(|s| s["id"] == *id.as_str()).unwrap();
            assert_eq!(e["trust"], "trusted", "{what}: {e}");
        }
    };
    check("self-signed revocation");
    // (b) web1's genuine revocation copied under db1's key name.
    std::fs::copy(&genuine_path, &db1_object).unwrap();
    check("revocation under another key's name");
    std::fs::remove_file(&db1_object).unwrap();
    // (c) web1's revocation moved a year back, to untrust its history.
    let mut earlier = genuine.clone();
    earlier["revoked"] = serde_json::json!(chrono::Utc::now() - chrono::Duration::days(365));
    std::fs::write(&genuine_path, serde_json::to_vec(&earlier).unwrap()).unwrap();
    check("backdated revocation");
}

#[test]
fn a_revocation_reaches_the_copy_target() {
    let f = fleet();
    let web = f.env.path("web");
    write(&web.join("index.html"), b"page\n");
    let real = backup_with(&f.env, &f.web1, &[&web])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = f.env.path("offsite");
    let to = target.to_str().unwrap();
    assert_success(&run(&[
        "init",
        "-r",
        to,
        "--like",
        f.env.repo.to_str().unwrap(),
        "-i",
        f.env.owner_key.to_str().unwrap(),
    ]));
    let open_target = |key: &Path| {
        Repository::open(
            Arc::new(LocalStorage::new(&target)),
            Access::IdentityFile(key),
        )
    };
    // The attacker's client on the target, opened before anything changed.
    let attacker = open_target(&f.web1).unwrap();
    assert_success(
        &f.env
            .vault(&["key", "revoke-host"], &f.env.owner_key, &["web1"]),
    );
    let out = f
        .env
        .vault(&["copy"], &f.env.owner_key, &["--to", to, "--json"]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["revocations_copied"], 1, "{v}");
    let (_, header) = attacker.find_snapshot(&real).unwrap();
    let mut forged = header.clone();
    forged.time = chrono::Utc::now();
    let forged = attacker
        .put_signed_json(ObjectKind::Snapshot, &forged)
        .unwrap();
    let set = open_target(&f.env.owner_key)
        .unwrap()
        .verified_snapshots()
        .unwrap();
    let trust = |id: &Id| {
        set.records
            .iter()
            .find(|r| r.id.0 == *id)
            .unwrap()
            .trust
            .clone()
    };
    assert!(!trust(&forged).usable(), "{:?}", trust(&forged));
    // The real snapshot, copied after the revocation, was stored in the
    // target after it too: it does not count there (it does in the source),
    // and it restores from the target by id.
    assert!(!trust(&real.parse().unwrap()).usable());
    let restored = f.env.path("restored");
    assert_success(&run(&[
        "restore",
        "-r",
        to,
        "-i",
        f.env.owner_key.to_str().unwrap(),
        &real,
        "--target",
        restored.to_str().unwrap(),
    ]));
    let Err(e) = open_target(&f.web1) else {
        panic!("the revoked key opened the copy target")
    };
    assert!(e.to_string().contains("was revoked"), "{e}");
}

/// `vault key list` shows the revocations the owner signed (with a key, the
/// writer key included) and, without a key, how many objects there are, so
/// that an operator can see that a revocation is still in place (one
/// deleted by someone with delete rights gives the key its trust back). A
/// planted revocation of another key, signed by someone else, is not listed.
#[test]
fn key_list_shows_the_revocations_the_owner_signed() {
    let f = fleet();
    let list = |key: Option<&Path>| {
        let mut args = vec!["key", "list", "-r", f.env.repo.to_str().unwrap(), "--json"];
        if let Some(k) = key {
            args.extend(["-i", k.to_str().unwrap()]);
        }
        let out = run(&args);
        assert_success(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        list(Some(&f.env.owner_key))["revoked"],
        serde_json::json!([])
    );
    assert_success(
        &f.env
            .vault(&["key", "revoke-host"], &f.env.owner_key, &["web1"]),
    );
    let revoked_dir = f.env.repo.join("keys/revoked");
    let genuine_path = walk_files(&revoked_dir).pop().unwrap();
    let genuine: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&genuine_path).unwrap()).unwrap();
    let mut forged: vault::format::signature::HostRevocation =
        serde_json::from_value(genuine).unwrap();
    forged.host = "db1".into();
    forged.key = vault::crypto::sign::SigningKey::generate().public();
    forged.signature = vault::crypto::sign::SigningKey::generate().sign(&forged.message());
    std::fs::write(
        revoked_dir.join(format!("{}.json", forged.key)),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    for key in [&f.env.owner_key, &f.db1] {
        let v = list(Some(key));
        let revoked = v["revoked"].as_array().unwrap();
        assert_eq!(revoked.len(), 1, "{v}");
        assert_eq!(revoked[0]["host"], "web1");
    }
    assert_eq!(list(None)["revocation_objects"], 2);
    let out = f.env.vault(&["key", "list"], &f.env.owner_key, &[]);
    assert_contains(&stdout(&out), "revoked: host web1 key ");
}
