//! Attack vectors of a keyless storage attacker (docs/SECURITY.md, "Someone
//! with write access to the storage"): it can read `config`, list, write and
//! delete objects, and seal documents to the public recipients in `config`.
//! It holds no key. Each vector states the outcome it asserts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::attackers::{StorageAttacker, peak_rss_mib};
use crate::util::*;

/// Memory a command may use under a bomb (a debug build's baseline is
/// 20-40 MiB; the bombs below cost 400 MiB to 8 GiB before they were bounded).
const BOMB_RSS_LIMIT_MIB: u64 = 160;

/// A repository with one snapshot of a sample tree; returns it and the source.
fn repo_with_a_snapshot() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    (env, src)
}

fn restores_exactly(env: &Env, src: &Path, target: &str) {
    let target = env.path(target);
    assert_success(&env.restore("latest", &target));
    assert_same_tree(src, &target.join(src.strip_prefix("/").unwrap()));
}

/// High 3. One index file sealed to the public recipients in `config` lists
/// every stored pack under the other kind (data as tree, tree as data) with
/// no blobs, and is named to sort before every real index file.
///
/// Expected: a pack's kind comes from where storage lists it, so restore of
/// the existing snapshot works, a later backup and its restore work,
/// `vault check` exits 4 naming the planted file's false claims, `vault
/// prune` runs and removes the planted file (it replaces every index file
/// with what the packs verifiably hold), and `vault check` is clean after.
#[test]
fn vector_planted_index_swaps_pack_kinds() {
    let (env, src) = repo_with_a_snapshot();
    let atk = StorageAttacker::new(&env.repo);
    let swapped: Vec<_> = atk
        .packs()
        .iter()
        .map(|(id, folder, _)| {
            json!({"id": id, "kind": if *folder == "data" { "tree" } else { "data" }, "blobs": []})
        })
        .collect();
    let doc = json!({ "packs": swapped }).to_string();
    let planted = atk.plant_first("index/", || atk.seal(doc.as_bytes()));

    restores_exactly(&env, &src, "t1");
    write(&src.join("etc/app/new.conf"), b"added after the attack\n");
    env.backup(&[&src]);
    restores_exactly(&env, &src, "t2");

    let check = env.vault(&["check"], &env.owner_key, &[]);
    assert_code(&check, 4);
    assert_contains(&stdout(&check), &planted);
    assert_contains(&stdout(&check), "storage holds it under");

    let prune = env.vault(&["prune"], &env.owner_key, &[]);
    assert_success(&prune);
    assert!(
        !env.repo.join(&planted).exists(),
        "prune replaced the planted index file"
    );
    assert_success(&env.vault(&["check"], &env.owner_key, &["--read-data"]));
    restores_exactly(&env, &src, "t3");
}

/// Writes an index file's JSON that claims `copies` times one blob at offset
/// 0 of `pack`: about 110 bytes per copy, compressing to almost nothing.
fn write_bomb(w: &mut dyn Write, pack: &str, copies: usize) {
    write!(w, r#"{{"packs":[{{"id":"{pack}","kind":"data","blobs":["#).unwrap();
    let entry = format!(
        r#"{{"id":"{}","offset":0,"length":1,"raw_length":1}}"#,
        "0".repeat(64)
    );
    let mut chunk = String::new();
    for _ in 0..1000 {
        chunk.push_str(&entry);
        chunk.push(',');
    }
    for _ in 0..copies / 1000 {
        w.write_all(chunk.as_bytes()).unwrap();
    }
    write!(w, "{entry}]}}]}}").unwrap();
}

/// Medium, bombs. Three planted index files of a few tens of KB, sealed to
/// the public recipients, each inflating to 222 MB of JSON (two million
/// claims on a real pack).
///
/// Expected: each is refused as a decompression bomb after at most 16 times
/// its stored size plus 1 MiB, so `check`, `restore` and `prune` stay under
/// [`BOMB_RSS_LIMIT_MIB`]; restore works; `check` exits 4 naming the files
/// as not written by vault; prune skips them (a keyless attacker cannot
/// block it) and `prune --remove-foreign` deletes exactly them.
#[test]
fn vector_index_json_bomb() {
    let (env, src) = repo_with_a_snapshot();
    let atk = StorageAttacker::new(&env.repo);
    let (pack, _, _) = atk.packs().into_iter().find(|p| p.1 == "data").unwrap();
    let mut planted = Vec::new();
    for _ in 0..3 {
        let bytes = atk.seal_with(|w| write_bomb(w, &pack, 2_000_000));
        assert!(
            bytes.len() < 200_000,
            "a small input: {} bytes",
            bytes.len()
        );
        planted.push(atk.plant("index/", &bytes));
    }
    let repo = env.repo.to_str().unwrap();
    let key = env.owner_key.to_str().unwrap();
    let (check, rss) = peak_rss_mib(&vault_bin(), &["check", "-r", repo, "-i", key]);
    assert_code(&check, 4);
    assert!(rss < BOMB_RSS_LIMIT_MIB, "check used {rss} MiB");
    for p in &planted {
        assert_contains(&stdout(&check), p);
    }
    assert_contains(&stdout(&check), "decompression bomb");
    let target = env.path("t");
    let (out, rss) = peak_rss_mib(
        &vault_bin(),
        &[
            "restore",
            "-r",
            repo,
            "-i",
            key,
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(rss < BOMB_RSS_LIMIT_MIB, "restore used {rss} MiB");
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));

    let (prune, rss) = peak_rss_mib(&vault_bin(), &["prune", "-r", repo, "-i", key]);
    assert_success(&prune);
    assert!(rss < BOMB_RSS_LIMIT_MIB, "prune used {rss} MiB");
    assert!(
        planted.iter().all(|p| env.repo.join(p).exists()),
        "only skipped"
    );
    assert_contains(&stderr(&prune), "skipped");
    let prune = env.vault(&["prune"], &env.owner_key, &["--remove-foreign"]);
    assert_success(&prune);
    assert!(planted.iter().all(|p| !env.repo.join(p).exists()));
    assert_success(&env.vault(&["check"], &env.owner_key, &[]));
}

/// Low. Planted snapshot headers vault cannot have written: one sealed to
/// the public recipients whose JSON is not a snapshot header, one that is
/// not zstd, one sealed to a stranger's key only.
///
/// Expected: they are intact (their bytes match their names) yet not vault's
/// own, so prune skips and names them instead of refusing to run, and
/// `prune --remove-foreign` deletes exactly those three. A genuine header
/// that is damaged (a flipped byte) still stops prune: it may be vault's.
#[test]
fn vector_unparseable_planted_snapshot_does_not_block_prune() {
    let (env, src) = repo_with_a_snapshot();
    let atk = StorageAttacker::new(&env.repo);
    let not_a_header = atk.plant("snapshots/", &atk.seal(br#"{"pwned":true}"#));
    let recipients = atk.recipients();
    let mut not_zstd = Vec::new();
    {
        let enc =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .unwrap();
        let mut w = enc.wrap_output(&mut not_zstd).unwrap();
        w.write_all(b"not compressed at all").unwrap();
        w.finish().unwrap();
    }
    let not_zstd = atk.plant("snapshots/", &not_zstd);
    let stranger = age::x25519::Identity::generate().to_public();
    let strangers = atk.plant(
        "snapshots/",
        &atk.encrypt_to(vec![&stranger], |w| w.write_all(b"{}").unwrap()),
    );
    let planted = [not_a_header, not_zstd, strangers];

    let list = env.vault(&["snapshots"], &env.owner_key, &[]);
    assert_contains(&stderr(&list), "vault never wrote it");
    let prune = env.vault(&["prune"], &env.owner_key, &[]);
    assert_success(&prune);
    for p in &planted {
        assert_contains(&stderr(&prune), p);
        assert!(env.repo.join(p).exists());
    }
    let prune = env.vault(&["prune"], &env.owner_key, &["--remove-foreign"]);
    assert_success(&prune);
    assert!(planted.iter().all(|p| !env.repo.join(p).exists()));
    assert_eq!(atk.list("snapshots/").len(), 1, "the genuine header stays");
    restores_exactly(&env, &src, "t");

    let (genuine, _) = atk.list("snapshots/").pop().unwrap();
    let path = env.repo.join(&genuine);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&path, bytes).unwrap();
    // Without a cached copy of the header, prune cannot tell what it needs:
    // it stops. (With one, it works from the copy, which is what the
    // header's name stands for; `vault check` reports the damage.)
    let prune = env.vault(&["prune"], &env.owner_key, &["--no-cache"]);
    assert_code(&prune, 4);
    assert_contains(&stderr(&prune), "does not match its name");
}

/// Low. Planted passphrase owner files (`keys/owners/aaa.age` and
/// `aab.age`, tried first) whose scrypt stanzas ask for work factors 23 and
/// 21: 8 GiB and 2 GiB for every passphrase open, were they computed (age's
/// own limit follows the machine's speed: 21 passes it on most machines,
/// 23 on fast ones). Each is an ordinary scrypt age file whose header names
/// another factor than 10 (the attacker need not compute it).
///
/// Expected: vault accepts at most 2^20 from owner files, so the planted
/// file is refused before any work and the real passphrase owner opens the
/// repository in well under a GiB.
#[test]
fn vector_planted_owner_file_with_huge_scrypt_work_factor() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    fs::write(&pass, "correct horse battery staple\n").unwrap();
    fs::set_permissions(&pass, fs::Permissions::from_mode(0o600)).unwrap();
    let repo = dir.path().join("repo");
    let writer = dir.path().join("writer.key");
    let out = std::process::Command::new(vault_bin())
        .args(["init", "-r", repo.to_str().unwrap(), "--owner-passphrase"])
        .args([
            "--owner-name",
            "safe",
            "--writer-key-out",
            writer.to_str().unwrap(),
        ])
        .env("VAULT_PASSPHRASE_FILE", &pass)
        .output()
        .unwrap();
    assert_success(&out);
    let src = dir.path().join("src");
    sample_tree(&src);
    backup_no_cache(&repo, &writer, &src);

    for (name, factor) in [("aaa", "23"), ("aab", "21")] {
        let mut planted = Vec::new();
        let mut r = age::scrypt::Recipient::new("whatever".to_owned().into());
        r.set_work_factor(10);
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let mut w = enc.wrap_output(&mut planted).unwrap();
        w.write_all(b"AGE-SECRET-KEY-1PLANTED").unwrap();
        w.finish().unwrap();
        let header_end = planted.windows(4).position(|w| w == b"\n---").unwrap();
        let header = String::from_utf8(planted[..header_end].to_vec()).unwrap();
        let edited = header.replacen(" 10\n", &format!(" {factor}\n"), 1);
        assert_ne!(header, edited, "the stanza names its work factor");
        let mut forged = edited.into_bytes();
        forged.extend_from_slice(&planted[header_end..]);
        fs::write(repo.join(format!("keys/owners/{name}.age")), forged).unwrap();
    }

    let started = std::time::Instant::now();
    let report = dir.path().join("rss");
    let out = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o", report.to_str().unwrap()])
        .arg(vault_bin())
        .args(["snapshots", "-r", repo.to_str().unwrap()])
        .env("VAULT_PASSPHRASE_FILE", &pass)
        .env_remove("VAULT_IDENTITY")
        .output()
        .unwrap();
    assert_success(&out);
    let rss_mib: u64 = fs::read_to_string(&report)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap()
        / 1024;
    assert!(rss_mib < 700, "opening used {rss_mib} MiB");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "opening took {:?}",
        started.elapsed()
    );
}

/// Medium (review F4). One lock object sealed to the public recipients (no
/// key) and dated in the far future (`9999-01-01`): it used to be never
/// stale, so every prune and every copy into the repository stepped back,
/// for good, and `--remove-foreign` kept it.
///
/// Expected: a format-2 lock counts only when the repository owner signed
/// it, so prune runs, names the planted lock, and `prune --remove-foreign`
/// deletes it. Control: a genuine owner-signed lock of another host still
/// stops prune; dated in the future, it counts as taken at its upload.
#[test]
fn vector_planted_future_lock_does_not_stop_prune() {
    let (env, src) = repo_with_a_snapshot();
    let atk = StorageAttacker::new(&env.repo);
    let future = br#"{"time":"9999-01-01T00:00:00Z","host":"prune-host","pid":1,"nonce":"00"}"#;
    let planted = atk.plant("locks/", &atk.seal(future));

    let prune = env.vault(&["prune"], &env.owner_key, &[]);
    assert_success(&prune);
    assert_contains(&stderr(&prune), &planted);
    assert_contains(&stderr(&prune), "not signed by the repository owner");
    assert!(
        env.repo.join(&planted).exists(),
        "removed without being asked"
    );
    let prune = env.vault(&["prune"], &env.owner_key, &["--remove-foreign", "--json"]);
    assert_success(&prune);
    let report: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert_eq!(report["foreign_removed"], 1, "{report}");
    assert!(!env.repo.join(&planted).exists(), "the planted lock stays");
    assert!(atk.list("locks/").is_empty(), "prune left a lock behind");

    // Control: the owner's own lock (another host's prune) is honoured...
    let owner = open_repo(&env.repo, &env.owner_key);
    let genuine = vault::ops::lock::LockRecord {
        time: "9999-01-01T00:00:00Z".parse().unwrap(),
        host: "another-host".into(),
        pid: 1,
        nonce: "01".into(),
    };
    let id = owner
        .put_signed_transient_json(vault::repo::ObjectKind::Lock, &genuine)
        .unwrap();
    let key = vault::repo::ObjectKind::Lock.key(&id);
    let prune = env.vault(&["prune"], &env.owner_key, &[]);
    assert_code(&prune, 1);
    assert_contains(&stderr(&prune), "another prune");
    assert_contains(&stderr(&prune), "another-host");
    // ...and, dated in the future, counts as taken at its upload (so it goes
    // stale six hours after it; a local object's upload time is its inode
    // change time, which no one can set back).
    assert!(!stderr(&prune).contains("9999"), "{}", stderr(&prune));
    fs::remove_file(env.repo.join(&key)).unwrap();
    assert_success(&env.vault(&["prune"], &env.owner_key, &[]));
    restores_exactly(&env, &src, "t");
}

/// Medium (review F3). One planted index file (about 1.6 KB, no key) makes
/// 400 claims at distinct offsets of one stored 8 MiB pack, each claiming the
/// rest of the pack, and lists the pack four times (100 claims each) to slip
/// past the per-pack claim cap. Prune used to read back each claim on its
/// own, decrypting up to the claimed length: work grew with claims x pack
/// size (400 claims on a 16 MiB pack took prune from 0.14 s to 24.5 s).
///
/// Expected: prune reads each claimed pack once, whole, and accepts a claim
/// only if it is exactly a trailer entry that verifies: one pack read, at most
/// the pack's stored size decrypted, all 400 claims dropped, and restore still
/// exact. Listing one pack again in the same file counts against what the
/// pack can hold: a file listing the tree pack twice, each listing within
/// the cap but both together over it, has every claim refused.
#[test]
fn vector_planted_claims_cost_prune_one_read_per_pack() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("big"), &noise(8 << 20, 3));
    write(&src.join("small"), b"hello\n");
    env.backup(&[&src]);
    // An owner prune attests the genuine entries: the next one reads only
    // what was planted after it.
    assert_success(&env.vault(&["prune"], &env.owner_key, &[]));
    let atk = StorageAttacker::new(&env.repo);
    let (pack, folder, size) = atk
        .packs()
        .into_iter()
        .filter(|(_, f, _)| *f == "data")
        .max_by_key(|p| p.2)
        .unwrap();
    assert!(size > 8 << 20, "one pack holds the file");
    let claims: Vec<serde_json::Value> = (0..400u64)
        .map(|i| json!({"id": "00".repeat(32), "offset": i, "length": size - 64 - i, "raw_length": 1000}))
        .collect();
    let packs: Vec<serde_json::Value> = claims
        .chunks(100)
        .map(|c| json!({"id": pack, "kind": folder, "blobs": c}))
        .collect();
    let planted = atk.seal(json!({ "packs": packs }).to_string().as_bytes());
    assert!(planted.len() < 4096, "{} bytes", planted.len());
    atk.plant("index/", &planted);

    let prune = env.vault(&["prune"], &env.owner_key, &["--json"]);
    assert_success(&prune);
    let report: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert_eq!(report["claims_dropped"], 400, "{report}");
    assert_eq!(report["packs_verified"], 1, "{report}");
    assert_eq!(report["entries_verified"], 0, "{report}");
    let read = report["bytes_verified"].as_u64().unwrap();
    assert!(
        read > 0 && read <= size,
        "{read} bytes read for a {size}-byte pack"
    );
    restores_exactly(&env, &src, "t");
    let again = env.vault(&["prune"], &env.owner_key, &["--json"]);
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        again["packs_verified"], 0,
        "planted claims came back: {again}"
    );

    let (tree, _, tree_size) = atk.packs().into_iter().find(|p| p.1 == "tree").unwrap();
    let capacity = tree_size / 48;
    let half = capacity / 2 + 1;
    let listing = |from: u64| {
        let blobs: Vec<serde_json::Value> = (from..from + half)
            .map(|i| json!({"id": "11".repeat(32), "offset": i, "length": 1, "raw_length": 1}))
            .collect();
        json!({"id": tree, "kind": "tree", "blobs": blobs})
    };
    let twice = json!({ "packs": [listing(0), listing(half)] });
    atk.plant("index/", &atk.seal(twice.to_string().as_bytes()));
    let check = env.vault(&["check"], &env.owner_key, &[]);
    assert_code(&check, 4);
    assert_contains(&stdout(&check), "listing the pack again counts");
    assert_contains(&stdout(&check), &format!("claims {}", 2 * half));
}

/// Low/Medium (review F6). One well-formed header, unsigned (sealed to the
/// public recipients, no key), naming a tree that does not exist. Prune
/// walked the trees of every readable header and refused to run; `forget`
/// never deletes untrusted headers and `--remove-foreign` took it for
/// vault's own, so nothing removed it; `vault copy` without snapshot
/// arguments tried to copy it and failed too.
///
/// Expected: prune runs and names it (untrusted, its tree unreadable);
/// `copy` without arguments copies only the headers that count;
/// `prune --dry-run --remove-foreign` lists it and keeps it; a writer key
/// cannot remove it; the owner's `prune --remove-foreign` deletes it and
/// nothing else, and the real snapshot restores exactly.
#[test]
fn vector_planted_header_with_a_missing_tree_does_not_block_prune() {
    let (env, src) = repo_with_a_snapshot();
    let atk = StorageAttacker::new(&env.repo);
    let header = json!({"time":"2026-01-01T00:00:00Z","host":"ghost","user":"root","tags":[],
        "sources":[{"kind":"paths","name":"/x","paths":["/x"],"status":"ok"}],
        "root":"ab".repeat(32),
        "totals":{"files":1,"dirs":1,"bytes":1,"files_read":1,"blobs_added":0,"bytes_added":0,
            "bytes_stored":0,"duration_ms":1},
        "errors":[],"parent":null,"program_version":"0.1.0"});
    let planted = atk.plant("snapshots/", &atk.seal(header.to_string().as_bytes()));
    // And a claim that the missing tree is in a stored pack: it is not.
    let (tree_pack, _, _) = atk.packs().into_iter().find(|p| p.1 == "tree").unwrap();
    let claim = json!({"packs":[{"id": tree_pack, "kind": "tree",
        "blobs":[{"id": "ab".repeat(32), "offset": 0, "length": 10, "raw_length": 10}]}]});
    atk.plant("index/", &atk.seal(claim.to_string().as_bytes()));
    assert_success(&env.vault(&["forget"], &env.owner_key, &["--keep-last", "1"]));
    assert_eq!(atk.list("snapshots/").len(), 2);

    let prune = env.vault(&["prune"], &env.owner_key, &[]);
    assert_success(&prune);
    assert_contains(&stderr(&prune), &planted);
    assert_contains(&stderr(&prune), "untrusted header (not signed)");
    assert_contains(&stderr(&prune), "its tree is unreadable");

    let target = env.path("copy-target");
    let target = target.to_str().unwrap();
    let init = run(&[
        "init",
        "-r",
        target,
        "--like",
        env.repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
    ]);
    assert_success(&init);
    let copy = env.vault(&["copy"], &env.owner_key, &["--to", target, "--json"]);
    assert_success(&copy);
    let copied: serde_json::Value = serde_json::from_slice(&copy.stdout).unwrap();
    assert_eq!(
        copied["snapshots_copied"].as_array().unwrap().len(),
        1,
        "{copied}"
    );
    assert!(!copied.to_string().contains(&planted[10..]), "{copied}");

    let dry = env.vault(
        &["prune"],
        &env.owner_key,
        &["--dry-run", "--remove-foreign"],
    );
    assert_success(&dry);
    assert_contains(&stderr(&dry), &planted);
    assert!(env.repo.join(&planted).exists(), "a dry run removed it");
    let writer = env.vault(&["prune"], &env.writer_key, &["--remove-foreign"]);
    assert!(!writer.status.success(), "a writer key ran prune");
    assert!(env.repo.join(&planted).exists(), "a writer key removed it");

    let prune = env.vault(&["prune"], &env.owner_key, &["--remove-foreign", "--json"]);
    assert_success(&prune);
    let report: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert_eq!(report["untrusted_removed"], 1, "{report}");
    assert!(
        !env.repo.join(&planted).exists(),
        "the planted header stays"
    );
    assert_eq!(atk.list("snapshots/").len(), 1, "the genuine header stays");
    restores_exactly(&env, &src, "t");
}

/// Total size of the files under `dir`, recursively.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// Bombs through the metadata cache. Forty planted index files, each a
/// valid empty index (`{"packs":[]}`) padded with a MiB of spaces: about
/// 600 bytes stored, each inside its share of the per-command
/// decompression slack, so each is accepted (not vault's, but a valid
/// document) and, before, cached whole.
///
/// Expected: a document that needed slack beyond its kind's ratio to its
/// stored size is never cached, so the backup host's cache does not grow
/// with the padding (it grew by 40 MiB, and by up to 256 MiB more on every
/// run for as many files as the attacker planted, all read back on each
/// command without counting against the slack); backups still work.
#[test]
fn vector_padded_documents_do_not_fill_the_metadata_cache() {
    let (env, src) = repo_with_a_snapshot();
    let atk = StorageAttacker::new(&env.repo);
    let stored: u64 = (0..40)
        .map(|_| {
            let bytes = atk.seal_with(|w| {
                w.write_all(br#"{"packs":"#).unwrap();
                w.write_all(&vec![b' '; 1 << 20]).unwrap();
                w.write_all(b"[]}").unwrap();
            });
            atk.plant("index/", &bytes);
            bytes.len() as u64
        })
        .sum();
    // Padded with repeats of one blob entry instead: valid index files whose
    // calls, replayed, would take a digest record of their own (~300 KB
    // each) if they were kept.
    let entry = format!(
        r#"{{"id":"{}","offset":0,"length":10,"raw_length":10}}"#,
        "ab".repeat(32)
    );
    let stored: u64 = stored
        + (0..10)
            .map(|_| {
                let bytes = atk.seal_with(|w| {
                    write!(
                        w,
                        r#"{{"packs":[{{"id":"{}","kind":"data","blobs":["#,
                        "cd".repeat(32)
                    )
                    .unwrap();
                    for i in 0..7_000 {
                        if i > 0 {
                            w.write_all(b",").unwrap();
                        }
                        w.write_all(entry.as_bytes()).unwrap();
                    }
                    w.write_all(b"]}]}").unwrap();
                });
                atk.plant("index/", &bytes);
                bytes.len() as u64
            })
            .sum::<u64>();
    assert!(stored < 80_000, "a small input: {stored} bytes");
    let cache = env.path("meta");
    for _ in 0..2 {
        let out = env.vault(
            &["backup"],
            &env.writer_key,
            &[
                "--cache-dir",
                cache.to_str().unwrap(),
                src.to_str().unwrap(),
            ],
        );
        assert_success(&out);
    }
    let id = atk.config()["id"].as_str().unwrap().to_owned();
    let cached = tree_size(&cache.join(id).join("v1"));
    assert!(
        cached < 1 << 20,
        "the cache holds {cached} bytes for {stored} stored bytes of planted index files"
    );
    restores_exactly(&env, &src, "t");
}

/// Deleting what tells of a failure. A drill passed, the data was then
/// damaged and the next drill failed; the storage attacker (it may delete
/// on a local directory or an unversioned bucket) deletes the newest object
/// under `drills/` — it needs no key to tell which one is newest.
///
/// Expected (a residual, documented in docs/SECURITY.md): a deletion leaves
/// no trace, so `vault status` goes back to the last pass and is green; the
/// lie lasts only while that pass is younger than `max_drill_age` (here a
/// threshold of 0 s makes the same status red, naming the drill), and
/// `vault check --read-data` still finds the damage. The drill host's own
/// exit status is unaffected.
#[test]
fn vector_deleting_a_failed_drill_record_hides_it_only_until_max_drill_age() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), &noise(100_000, 5));
    env.backup(&[&src]);
    assert_success(&env.vault(&["drill"], &env.owner_key, &[]));
    let atk = StorageAttacker::new(&env.repo);
    for (key, _) in atk.list("data") {
        let p = env.repo.join(key);
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, bytes).unwrap();
    }
    assert_code(&env.vault(&["drill"], &env.owner_key, &[]), 4);
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "a drill failed at");

    let newest = atk
        .list("drills")
        .into_iter()
        .map(|(k, _)| k)
        .max_by_key(|k| fs::metadata(env.repo.join(k)).unwrap().modified().unwrap())
        .unwrap();
    fs::remove_file(env.repo.join(&newest)).unwrap();
    let out = env.vault(&["status"], &env.writer_key, &[]);
    assert_success(&out);
    let out = env.vault(&["status"], &env.writer_key, &["--max-drill-age", "0s"]);
    assert_code(&out, 1);
    assert_contains(&stdout(&out), "drill");
    assert_code(&env.vault(&["check"], &env.owner_key, &["--read-data"]), 4);
}
