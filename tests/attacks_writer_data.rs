//! Attack vectors of a compromised backup host (docs/SECURITY.md, "A thief
//! of the writer key"): it reads index files and snapshot headers, computes
//! keyed blob ids, writes packs sealed to the owner recipient, index files
//! and headers. It cannot read packs. Each vector states the outcome it
//! asserts. (Bombs through index files alone need no key at all: see
//! `attacks_storage.rs`.)

use std::path::Path;

use vault::format::id::{BlobId, Id};
use vault::format::index::{IndexFile, IndexedBlob, IndexedPack};
use vault::format::pack::BlobKind;
use vault::format::snapshot::{Snapshot, SourceRecord, SourceStatus, Totals};
use vault::format::tree::{Bytes, Node, NodeKind, Tree};
use vault::repo::ObjectKind;
use vault::repo::packer::PackBuilder;

use crate::attackers::{StorageAttacker, WriterAttacker, peak_rss_mib};
use crate::util::*;

/// Memory a command may use under a bomb (see `attacks_storage.rs`).
const BOMB_RSS_LIMIT_MIB: u64 = 160;

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node::bare(name, kind)
}

/// Writes a snapshot whose trees `make_trees` builds (given the chunk-id key
/// and a function storing one tree), declaring `totals`, with the writer
/// key only: packs sealed to the owner recipient, an index file, a header
/// (unsigned: listed as untrusted, which is enough for a reader's bounds).
fn forge_snapshot(
    w: &WriterAttacker,
    totals: Totals,
    make_trees: impl FnOnce(&[u8; 32], &mut dyn FnMut(&Tree) -> Id) -> Id,
) -> String {
    forge(w, totals, false, make_trees)
}

/// [`forge_snapshot`], the header signed with the writer key when `signed`
/// (as a compromised host signs its own backups: the snapshot counts and
/// is `latest`).
fn forge(
    w: &WriterAttacker,
    totals: Totals,
    signed: bool,
    make_trees: impl FnOnce(&[u8; 32], &mut dyn FnMut(&Tree) -> Id) -> Id,
) -> String {
    let repo = &w.repo;
    let key = *repo.keys().chunk_key();
    let mut trees = PackBuilder::new(BlobKind::Tree, &repo.keys().owner_only(), 0).unwrap();
    let mut add = |t: &Tree| {
        let bytes = t.to_bytes();
        let id = Id::keyed(&key, &bytes);
        trees
            .add(
                BlobId(id),
                &zstd::bulk::compress(&bytes, 9).unwrap(),
                bytes.len() as u32,
            )
            .unwrap();
        id
    };
    let root = make_trees(&key, &mut add);
    let pack = trees.finish().unwrap();
    repo.put_object(ObjectKind::Pack(pack.kind), &pack.bytes)
        .unwrap();
    let index = IndexFile {
        packs: vec![IndexedPack::from_entries(pack.id, pack.kind, &pack.entries)],
        condemned: vec![],
    };
    repo.put_shared_json(ObjectKind::Index, &index).unwrap();
    let snap = Snapshot {
        time: chrono::Utc::now(),
        host: "web1".into(),
        user: "root".into(),
        tags: vec![],
        sources: vec![SourceRecord {
            kind: "paths".into(),
            name: "/srv".into(),
            paths: vec!["/srv".into()],
            status: SourceStatus::Ok,
            command: None,
            details: None,
        }],
        root: vault::TreeId(root),
        totals,
        errors: vec![],
        certificates: vec![],
        parent: None,
        program_version: "0.1.0".into(),
    };
    let id = if signed {
        repo.put_signed_json(ObjectKind::Snapshot, &snap)
    } else {
        repo.put_shared_json(ObjectKind::Snapshot, &snap)
    };
    id.unwrap().to_hex()
}

fn owner_args<'a>(env: &'a Env, cmd: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        cmd,
        "-r",
        env.repo.to_str().unwrap(),
        "-i",
        env.owner_key.to_str().unwrap(),
    ];
    v.extend(more);
    v
}

/// Medium, bombs. For every blob in every index file, an index entry in the
/// same pack one byte earlier, claiming a length of 540 MB (sorted before
/// the genuine entry, so readers meet it first: restore used to allocate
/// 540 MB per thread for it).
///
/// Expected: a claim reaching past its pack's stored size is dropped when the
/// index is loaded, so restore never reads it: it restores exactly in
/// little memory; `check` exits 4 naming the false claims.
#[test]
fn vector_index_entry_claims_540_mb() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let w = WriterAttacker::new(&env.repo, &env.writer_key);
    let atk = StorageAttacker::new(&env.repo);
    for (key, _) in atk.list("index/") {
        let mut file: IndexFile = w.repo.get_json(&key).unwrap();
        for pack in &mut file.packs {
            for b in &mut pack.blobs {
                b.offset = b.offset.saturating_sub(1);
                b.length = 540_000_000;
            }
        }
        w.repo.put_shared_json(ObjectKind::Index, &file).unwrap();
    }
    let target = env.path("t");
    let t = target.to_str().unwrap();
    let (out, rss) = peak_rss_mib(
        &vault_bin(),
        &owner_args(&env, "restore", &["latest", "--target", t]),
    );
    assert_success(&out);
    assert!(rss < BOMB_RSS_LIMIT_MIB, "restore used {rss} MiB");
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
    let check = env.vault(&["check"], &env.owner_key, &[]);
    assert_code(&check, 4);
    assert_contains(&stdout(&check), "lie outside the pack");
}

/// Medium, bombs. A snapshot whose trees reuse their subtrees: level k holds
/// directories `a` and `b`, both the tree of level k-1, 24 levels deep, with
/// one file at the bottom: a few KB that name 2^24 files. The forged header
/// declares 10 files and 60 directories.
///
/// Expected: `ls` counts every entry against the header's totals and stops,
/// exit 4, after about 60 lines; `check` and `prune` walk each distinct tree
/// once and finish at once.
#[test]
fn vector_tree_reusing_subtrees() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let w = WriterAttacker::new(&env.repo, &env.writer_key);
    let totals = Totals {
        files: 10,
        dirs: 60,
        bytes: 10,
        ..Default::default()
    };
    let forged = forge_snapshot(&w, totals, |_, add| {
        let mut leaf = node(b"f", NodeKind::File);
        leaf.hash = Some(Id::of_bytes(b""));
        let mut id = add(&Tree { nodes: vec![leaf] });
        for _ in 0..24 {
            let mut a = node(b"a", NodeKind::Dir);
            a.subtree = Some(vault::TreeId(id));
            let mut b = node(b"b", NodeKind::Dir);
            b.subtree = Some(vault::TreeId(id));
            id = add(&Tree { nodes: vec![a, b] });
        }
        id
    });
    let started = std::time::Instant::now();
    let ls = env.vault(&["ls"], &env.owner_key, &[&forged]);
    assert_code(&ls, 4);
    assert!(
        stdout(&ls).lines().count() <= 70,
        "{} lines",
        stdout(&ls).lines().count()
    );
    assert_contains(&stderr(&ls), "its header declares");
    assert_success(&env.vault(&["check"], &env.owner_key, &[]));
    assert_success(&env.vault(&["prune"], &env.owner_key, &[]));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

/// Medium, bombs. One tree blob of a million fifo entries (a few hundred KB
/// stored) in a snapshot whose forged header declares nothing.
///
/// Expected: the tree is parsed as it is decompressed and refused once it
/// holds more entries than the header leaves (other entries: 65,536 beyond
/// files and directories), so `ls` exits 4 in little memory; `check`
/// reports it (exit 4), also in little memory.
#[test]
fn vector_one_wide_tree() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let w = WriterAttacker::new(&env.repo, &env.writer_key);
    let forged = forge_snapshot(&w, Totals::default(), |_, add| {
        let nodes = (0..1_000_000u32)
            .map(|i| node(format!("{i:07}").as_bytes(), NodeKind::Fifo))
            .collect();
        add(&Tree { nodes })
    });
    let stored: u64 = StorageAttacker::new(&env.repo)
        .list("tree/")
        .iter()
        .map(|(_, s)| s)
        .max()
        .copied()
        .unwrap();
    assert!(stored < 2 << 20, "a small input: {stored} bytes");
    let (ls, rss) = peak_rss_mib(&vault_bin(), &owner_args(&env, "ls", &[&forged]));
    assert_code(&ls, 4);
    assert!(rss < BOMB_RSS_LIMIT_MIB, "ls used {rss} MiB");
    assert_contains(
        &stderr(&ls),
        "entries left in the snapshot's declared totals",
    );
    let (check, rss) = peak_rss_mib(&vault_bin(), &owner_args(&env, "check", &[]));
    assert_code(&check, 4);
    assert!(rss < BOMB_RSS_LIMIT_MIB, "check used {rss} MiB");
}

/// High 2 (partial). A writer-key holder plants an index entry claiming that
/// the keyed id of content another host will back up later
/// (`db_password=hunter2`) lies at offset 0 of an existing data pack.
///
/// Expected: prune verifies every location it keeps, even a single one, so
/// the planted entry is not in the index prune writes (it reports the dropped
/// claim); a backup made after prune then stores the content for real and
/// restores it.
#[test]
fn vector_planted_location_is_not_carried_by_prune() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);
    let w = WriterAttacker::new(&env.repo, &env.writer_key);
    let atk = StorageAttacker::new(&env.repo);
    let secret = b"db_password=hunter2\n";
    // The id the next backup with this key will give the file (salted with
    // the key's own salt: the attacker holds it).
    let target_id = w.repo.keys().blob_ids().salted(secret);
    let (pack, _, _) = atk.packs().into_iter().find(|p| p.1 == "data").unwrap();
    let planted = IndexFile {
        packs: vec![IndexedPack {
            id: pack.parse().unwrap(),
            kind: BlobKind::Data,
            blobs: vec![IndexedBlob {
                id: target_id,
                offset: 0,
                length: secret.len() as u32,
                raw_length: secret.len() as u32,
            }],
        }],
        condemned: vec![],
    };
    w.repo.put_shared_json(ObjectKind::Index, &planted).unwrap();

    let prune = env.vault(&["prune"], &env.owner_key, &["--json"]);
    assert_success(&prune);
    let report: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert!(report["claims_dropped"].as_u64().unwrap() >= 1, "{report}");
    for (key, _) in atk.list("index/") {
        let file: IndexFile = w.repo.get_json(&key).unwrap();
        assert!(
            file.packs
                .iter()
                .all(|p| p.blobs.iter().all(|b| b.id != target_id)),
            "prune carried the planted entry into {key}"
        );
    }

    let other = env.path("other-host");
    write(&other.join("etc/app/secret.env"), secret);
    backup_no_cache(&env.repo, &env.writer_key, &other);
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    let restored = target
        .join(other.strip_prefix("/").unwrap())
        .join("etc/app/secret.env");
    assert_eq!(std::fs::read(restored).unwrap(), secret);
}

/// Low. A local user of a backed-up host names a file
/// `x\n-4755 root 0 2026-01-01 00:00 sudo` (any byte but `/` and NUL may be
/// in a name): printed as is, `vault ls` would show a second, fake entry.
///
/// Expected: every listing escapes control characters: the name prints on
/// one line as `x\n-4755…`, and `ls` prints exactly one line per entry.
#[test]
fn vector_newline_in_a_file_name_cannot_fake_an_ls_entry() {
    let env = Env::new();
    let src = env.path("src");
    let evil = "x\n-4755 root                    0 2026-01-01 00:00 sudo";
    write(&src.join(evil), b"");
    write(&src.join("plain"), b"");
    write(&src.join("\x1b[2Jclear"), b"");
    env.backup(&[&src]);
    let ls = env.vault(&["ls"], &env.owner_key, &["latest"]);
    assert_success(&ls);
    let out = stdout(&ls);
    assert!(!out.lines().any(|l| l.starts_with("-4755 root")), "{out}");
    assert_contains(&out, "/x\\n-4755 root ");
    assert_contains(&out, "/\\x1b[2Jclear");
    assert!(!out.contains('\x1b'));
    let dirs = Path::new(&src).components().count();
    assert_eq!(out.lines().count(), dirs - 1 + 3, "{out}");
}

/// Medium (docs/SECURITY.md, "Guessing small secrets"). Host web1's writer
/// key (a compromised host, its own key from `vault key add-host`) guesses a
/// small file host db backed up with its own key: the chunk-id key gives it
/// the unsalted keyed id of any guess, its own salt the salted one, and index
/// files (which its key reads) list every blob id.
///
/// Expected, exactly (format 3): it confirms NOTHING of db's files — not the
/// small file (`db_password=hunter2\n` among 10,000 candidates: db's blob id
/// is keyed with db's salt, which only db's key and the owner hold), nor a
/// line inside a larger file — and the index shows the small blob's lengths
/// only rounded up to 64. Controls, so that the test cannot pass for a
/// wrong reason: the same guesses confirm `hunter2` once web1 backs up the
/// same file itself (its own salt), and in a format-2 repository (the v2
/// fixture, to which a new backup is added with its writer key, which keeps
/// format-2 ids). The owner still restores db's snapshot byte for byte, and
/// `check --read-data` verifies every salted blob.
#[test]
fn vector_guessing_small_secrets_another_hosts_key_confirms_nothing() {
    let env = Env::new();
    let add_host = |name: &str| {
        let key = env.path(&format!("{name}.key"));
        assert_success(&env.vault(
            &["key", "add-host"],
            &env.owner_key,
            &[name, "--writer-key-out", key.to_str().unwrap()],
        ));
        key
    };
    let (web1, db_key) = (add_host("web1"), add_host("db"));
    let db = env.path("db");
    let secret = b"db_password=hunter2\n";
    write(&db.join("etc/app/secret.env"), secret);
    let mut big = noise(64 * 1024, 5);
    big.splice(30_000..30_000, b"api_key=swordfish\n".iter().copied());
    write(&db.join("etc/app/big.conf"), &big);
    backup_no_cache(&env.repo, &db_key, &db);

    let mut words: Vec<String> = (0..10_000).map(|i| format!("w{i:05}")).collect();
    words[6_543] = "hunter2".into();
    words[7_000] = "swordfish".into();
    // Every id web1 can compute for a guess: unsalted, and salted with its
    // own salt.
    let guess = |w: &WriterAttacker, prefix: &str| -> (Vec<String>, f64) {
        let ids = w.repo.keys().blob_ids();
        let index = w.repo.load_index_files().unwrap().index;
        let started = std::time::Instant::now();
        let found = words
            .iter()
            .filter(|word| {
                let g = format!("{prefix}{word}\n");
                index.contains(&ids.unsalted(g.as_bytes()))
                    || index.contains(&ids.salted(g.as_bytes()))
            })
            .cloned()
            .collect();
        (found, words.len() as f64 / started.elapsed().as_secs_f64())
    };
    let attacker = WriterAttacker::new(&env.repo, &web1);
    let (small, rate) = guess(&attacker, "db_password=");
    eprintln!(
        "guesses tried against another host's salted blobs: {rate:.0}/s, confirmed {small:?}"
    );
    assert!(
        small.is_empty(),
        "web1 confirmed {small:?} of db's small file"
    );
    assert!(guess(&attacker, "api_key=").0.is_empty());
    // db's blob is there (db's own key computes its id), with lengths
    // visible only rounded up to 64 bytes.
    let db_id = WriterAttacker::new(&env.repo, &db_key)
        .repo
        .keys()
        .blob_ids()
        .salted(secret);
    let index = attacker.repo.load_index_files().unwrap().index;
    let loc = index.get(&db_id).expect("db's blob is indexed");
    assert_eq!(loc.raw_length, 64, "the exact length is {}", secret.len());
    assert_eq!(loc.length % 64, 0);

    // The owner restores and verifies what db stored.
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    let restored = target.join(db.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("etc/app/secret.env")).unwrap(),
        secret
    );
    assert_eq!(
        std::fs::read(restored.join("etc/app/big.conf")).unwrap(),
        big
    );
    assert_success(&env.vault(&["check"], &env.owner_key, &["--read-data"]));

    // Control 1: the same guesses against web1's own backup of the file.
    let web = env.path("web1");
    write(&web.join("etc/app/secret.env"), secret);
    backup_no_cache(&env.repo, &web1, &web);
    let attacker = WriterAttacker::new(&env.repo, &web1);
    assert_eq!(guess(&attacker, "db_password=").0, ["hunter2"]);

    // Control 2: a format-2 repository (the v2 fixture) given a new backup
    // of the file with its writer key: ids unsalted, as format 2 wrote them.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo-v2");
    let v2 = env.path("v2");
    assert!(
        std::process::Command::new("cp")
            .args(["-a", fixture.to_str().unwrap(), v2.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let v2_writer = v2.join("writer.key");
    let mut perms = std::fs::metadata(&v2_writer).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&v2_writer, perms).unwrap();
    backup_no_cache(&v2.join("repo"), &v2_writer, &db);
    let old = WriterAttacker::new(&v2.join("repo"), &v2_writer);
    assert!(old.repo.keys().blob_ids().salt_id().is_none());
    let (found, rate) = guess(&old, "db_password=");
    eprintln!("guesses confirmed against a format-2 repository: {rate:.0}/s");
    assert_eq!(found, ["hunter2"]);
    let id = BlobId::keyed(old.repo.keys().chunk_key(), secret);
    let loc = old.repo.load_index_files().unwrap().index.get(&id).unwrap();
    assert_eq!(
        loc.raw_length,
        secret.len() as u32,
        "format 2 keeps exact lengths"
    );
}

/// Medium (review F3, restore). For every blob of every index file, twelve
/// claims in the same pack at offsets 0 to 11 (before the genuine entry,
/// so readers meet them first), each claiming the rest of the pack: restore
/// used to try claims in index order, decrypting up to the claimed length
/// for each.
///
/// Expected: when several locations claim a blob, restore reads first the
/// ones its pack's own trailer lists (one trailer read per pack) and tries
/// at most eight; so the genuine copy is read first and the snapshot
/// restores exactly (were the planted claims tried first, the cap would
/// make it fail).
#[test]
fn vector_planted_claims_before_genuine_ones_cost_restore_nothing() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("big"), &noise(1 << 20, 9));
    env.backup(&[&src]);
    let w = WriterAttacker::new(&env.repo, &env.writer_key);
    let atk = StorageAttacker::new(&env.repo);
    let sizes: std::collections::HashMap<String, u64> = atk
        .packs()
        .into_iter()
        .map(|(id, _, size)| (id, size))
        .collect();
    let mut planted = IndexFile {
        packs: vec![],
        condemned: vec![],
    };
    for (key, _) in atk.list("index/") {
        let file: IndexFile = w.repo.get_json(&key).unwrap();
        for pack in &file.packs {
            let size = sizes[&pack.id.to_string()] as u32;
            for b in pack.blobs.iter().filter(|b| b.offset >= 12) {
                planted.packs.push(IndexedPack {
                    id: pack.id,
                    kind: pack.kind,
                    blobs: (0..12)
                        .map(|o| IndexedBlob {
                            id: b.id,
                            offset: o,
                            length: size - 64 - o,
                            raw_length: b.raw_length,
                        })
                        .collect(),
                });
            }
        }
    }
    assert!(planted.packs.len() > 10, "too few blobs to attack");
    w.repo.put_shared_json(ObjectKind::Index, &planted).unwrap();
    let target = env.path("t");
    assert_success(&env.restore("latest", &target));
    assert_same_tree(&src, &target.join(src.strip_prefix("/").unwrap()));
}

/// Medium (docs/SECURITY.md, "Browsing without restoring"). A compromised
/// backup host stores a file and a directory carrying `security.capability`
/// (`cap_setuid=ep`), `security.selinux` and an ordinary `user.*`
/// attribute, hoping that whoever browses the snapshot with `vault mount`
/// and copies the file out (`cp -a`) grants it the capability.
///
/// Expected: the mount neither lists nor returns any `security.*`
/// attribute (getxattr answers "no such attribute", as for one never
/// stored), while `user.*` is shown with its value; a `cp -a` out of the
/// mount carries `user.*` only.
#[test]
fn vector_security_xattrs_are_withheld_by_mount() {
    if let Some(why) = crate::mount::fuse_unusable() {
        println!("SKIPPED vector_security_xattrs_are_withheld_by_mount: {why}");
        return;
    }
    use vault::format::tree::Xattr;
    let env = Env::new();
    let w = WriterAttacker::new(&env.repo, &env.writer_key);
    // struct vfs_cap_data, revision 2, effective, permitted CAP_SETUID.
    let mut cap = vec![0u8; 20];
    cap[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 7).to_le_bytes());
    let xattrs = vec![
        Xattr {
            name: Bytes(b"security.capability".to_vec()),
            value: cap,
        },
        Xattr {
            name: Bytes(b"security.selinux".to_vec()),
            value: b"system_u:object_r:shadow_t:s0\0".to_vec(),
        },
        Xattr {
            name: Bytes(b"user.note".to_vec()),
            value: b"shown".to_vec(),
        },
    ];
    let totals = Totals {
        files: 1,
        dirs: 1,
        ..Default::default()
    };
    forge(&w, totals, true, |_, add| {
        let mut tool = node(b"tool", NodeKind::File);
        tool.mode = 0o755;
        tool.hash = Some(Id::of_bytes(b""));
        tool.xattrs = xattrs.clone();
        let mut srv = node(b"srv", NodeKind::Dir);
        srv.mode = 0o755;
        srv.xattrs = xattrs.clone();
        srv.subtree = Some(vault::TreeId(add(&Tree { nodes: vec![tool] })));
        add(&Tree { nodes: vec![srv] })
    });
    let mp = env.path("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let child = crate::mount::mount(&env, &mp);
    let dir = mp.join("latest/srv");
    let tool = dir.join("tool");
    for path in [&dir, &tool] {
        let names: Vec<String> = xattr::list(path)
            .unwrap()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["user.note"], "{}", path.display());
        assert_eq!(
            xattr::get(path, "user.note").unwrap().as_deref(),
            Some(&b"shown"[..])
        );
        for name in ["security.capability", "security.selinux"] {
            assert_eq!(xattr::get(path, name).unwrap(), None, "{name}");
        }
    }
    assert_eq!(std::fs::read(&tool).unwrap(), b"");
    // A copy out of the mount with every attribute preserved.
    let out = env.path("copied");
    std::fs::create_dir_all(&out).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&tool)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
    let copied = out.join("tool");
    assert_eq!(xattr::get(&copied, "security.capability").unwrap(), None);
    let unmount = std::process::Command::new(crate::mount::fusermount())
        .arg("-u")
        .arg(&mp)
        .output()
        .unwrap();
    assert!(unmount.status.success());
    let (code, err) = crate::mount::finish(child);
    assert_eq!(code, 0, "{err}");
}
