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
