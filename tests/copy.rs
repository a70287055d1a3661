//! `vault init --like` and `vault copy --to`: copy targets share the source's
//! keys; only missing packs are transferred; the copy restores.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::s3::Moto;
use crate::util::*;

/// Every pack in a local repository: id → size.
fn packs(repo: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for kind in ["data", "tree"] {
        let Ok(fans) = fs::read_dir(repo.join(kind)) else {
            continue;
        };
        for fan in fans {
            for f in fs::read_dir(fan.unwrap().path()).unwrap() {
                let f = f.unwrap();
                let name = f.file_name().into_string().unwrap();
                if name.len() == 64 {
                    out.insert(name, f.metadata().unwrap().len());
                }
            }
        }
    }
    out
}

/// Snapshot ids `vault snapshots --json` lists.
fn snapshot_ids(env: &Env, repo: &str) -> Vec<String> {
    snapshot_ids_in(repo, &env.writer_key)
}

/// `vault copy -r SOURCE -i KEY --to TARGET --json ARGS`: the output and its report.
fn copy(
    env: &Env,
    key: &Path,
    to: &str,
    args: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let mut all = vec!["--to", to, "--json"];
    all.extend(args);
    let out = env.vault(&["copy"], key, &all);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, v)
}

fn init_like(env: &Env, target: &str, key: &Path) -> std::process::Output {
    run(&[
        "init",
        "-r",
        target,
        "--like",
        env.repo.to_str().unwrap(),
        "-i",
        key.to_str().unwrap(),
    ])
}

fn n(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

#[test]
fn copies_only_missing_packs_and_the_copy_restores() {
    let env = Env::new();
    let target = env.path("offsite");
    let to = target.to_str().unwrap();
    assert_success(&init_like(&env, to, &env.owner_key));
    assert_eq!(
        fs::read(env.repo.join("config")).unwrap(),
        fs::read(target.join("config")).unwrap(),
        "a copy target has the source's config"
    );
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("var/big.bin"), &noise(3 << 20, 5));
    let first = env.backup(&[&src]);
    write(&src.join("etc/app/app.conf"), b"listen = 0.0.0.0:9443\n");
    let second = env.backup(&[&src]);

    // One snapshot by prefix, then all: the first is skipped.
    let (out, v) = copy(&env, &env.owner_key, to, &[&first[..10]]);
    assert_success(&out);
    assert_eq!(v["snapshots_copied"], serde_json::json!([first]));
    assert_eq!(snapshot_ids(&env, to), vec![first.clone()]);
    let (out, v) = copy(&env, &env.owner_key, to, &[]);
    assert_success(&out);
    assert_eq!(v["snapshots_copied"], serde_json::json!([second]));
    assert_eq!(v["snapshots_skipped"], serde_json::json!([first]));
    assert!(n(&v, "packs_already_present") > 0, "{v}");
    assert_eq!(
        snapshot_ids(&env, to),
        snapshot_ids(&env, env.repo.to_str().unwrap())
    );
    assert_eq!(packs(&env.repo), packs(&target));

    // The copy restores, with the same owner key, byte for byte.
    let restored = env.path("restored");
    assert_success(&run(&[
        "restore",
        "-r",
        to,
        "-i",
        env.owner_key.to_str().unwrap(),
        &second,
        "--target",
        restored.to_str().unwrap(),
    ]));
    assert_same_tree(&src, &restored.join(src.strip_prefix("/").unwrap()));
    let check = run(&[
        "check",
        "-r",
        to,
        "-i",
        env.owner_key.to_str().unwrap(),
        "--read-data",
        "--storage",
    ]);
    assert_success(&check);
    assert_contains(&stdout(&check), "no errors");

    // Nothing new: nothing is transferred.
    let (out, v) = copy(&env, &env.owner_key, to, &[]);
    assert_success(&out);
    assert_eq!(n(&v, "packs_copied"), 0, "{v}");
    assert_eq!(n(&v, "bytes_transferred"), 0, "{v}");
    assert_eq!(v["snapshots_skipped"].as_array().unwrap().len(), 2);

    // A third backup: exactly its new packs are copied (and verified).
    let before = packs(&target);
    write(&src.join("var/new.bin"), &noise(200_000, 9));
    let third = env.backup(&[&src]);
    let new: BTreeMap<_, _> = packs(&env.repo)
        .into_iter()
        .filter(|(id, _)| !before.contains_key(id))
        .collect();
    assert!(!new.is_empty());
    let (out, v) = copy(&env, &env.owner_key, to, &["--verify-data"]);
    assert_success(&out);
    assert_eq!(v["snapshots_copied"], serde_json::json!([third]));
    assert_eq!(n(&v, "packs_copied"), new.len() as u64, "{v}");
    assert_eq!(n(&v, "pack_bytes"), new.values().sum::<u64>(), "{v}");
    assert_eq!(n(&v, "packs_verified"), new.len() as u64, "{v}");
    assert!(n(&v, "bytes_transferred") < 300_000, "{v}");
    assert_eq!(packs(&env.repo), packs(&target));
    let check = run(&[
        "check",
        "-r",
        to,
        "-i",
        env.owner_key.to_str().unwrap(),
        "--read-data",
    ]);
    assert_success(&check);
}

#[test]
fn an_interrupted_copy_resumes_without_transferring_packs_again() {
    let env = Env::new();
    let target = env.path("offsite");
    let to = target.to_str().unwrap();
    assert_success(&init_like(&env, to, &env.owner_key));
    let src = env.path("src");
    sample_tree(&src);
    let id = env.backup(&[&src]);
    let (out, _) = copy(&env, &env.owner_key, to, &[]);
    assert_success(&out);
    // As if killed after the packs: no index file, no snapshot header.
    for dir in ["index", "snapshots"] {
        fs::remove_dir_all(target.join(dir)).unwrap();
        fs::create_dir(target.join(dir)).unwrap();
    }
    let (out, v) = copy(&env, &env.owner_key, to, &[]);
    assert_success(&out);
    assert_eq!(v["snapshots_copied"], serde_json::json!([id]));
    assert_eq!(n(&v, "packs_copied"), 0, "{v}");
    assert_eq!(n(&v, "packs_resumed"), packs(&env.repo).len() as u64, "{v}");
    let restored = env.path("restored");
    assert_success(&run(&[
        "restore",
        "-r",
        to,
        "-i",
        env.owner_key.to_str().unwrap(),
        "latest",
        "--target",
        restored.to_str().unwrap(),
    ]));
    assert_same_tree(&src, &restored.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn copy_refuses_a_foreign_target_and_the_writer_key() {
    let env = Env::new();
    let src = env.path("src");
    sample_tree(&src);
    env.backup(&[&src]);

    // A repository made with plain `vault init`, even by the same owner.
    let plain = env.path("plain");
    assert_success(&run(&[
        "init",
        "-r",
        plain.to_str().unwrap(),
        "--owner",
        &env.owner_recipient,
        "--writer-key-out",
        env.path("w2.key").to_str().unwrap(),
    ]));
    let (out, _) = copy(&env, &env.owner_key, plain.to_str().unwrap(), &[]);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "not a copy target");
    assert_contains(&stderr(&out), "vault init -r TARGET --like SOURCE");
    assert!(packs(&plain).is_empty(), "nothing was written");

    // Another owner's repository does not even open with this key.
    let other = env.path("other");
    let other_recipient = generate_key(&env.path("other.key"));
    assert_success(&run(&[
        "init",
        "-r",
        other.to_str().unwrap(),
        "--owner",
        &other_recipient,
        "--writer-key-out",
        env.path("w3.key").to_str().unwrap(),
    ]));
    let (out, _) = copy(&env, &env.owner_key, other.to_str().unwrap(), &[]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "--like");

    // The writer key can neither make a copy target nor copy.
    let target = env.path("offsite");
    let to = target.to_str().unwrap();
    let out = init_like(&env, to, &env.writer_key);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "needs an owner key");
    assert!(!target.join("config").exists());
    assert_success(&init_like(&env, to, &env.owner_key));
    let (out, _) = copy(&env, &env.writer_key, to, &[]);
    assert_code(&out, 1);
    assert_contains(&stderr(&out), "copy needs an owner key");
    assert!(packs(&target).is_empty());

    // `--like` onto an existing repository is refused.
    let out = init_like(&env, to, &env.owner_key);
    assert_code(&out, 2);
    assert_contains(&stderr(&out), "already exists");
}

#[test]
fn copy_from_a_local_directory_to_s3_and_restore_from_s3() {
    let moto = Moto::start();
    moto.create_bucket("region2");
    let env = Env::new();
    let to = "s3://region2/hosts/web1";
    let owner = env.owner_key.to_str().unwrap();
    let repo = env.repo.to_str().unwrap();
    assert_success(&moto.vault(&["init", "-r", to, "--like", repo, "-i", owner]));
    let src = env.path("src");
    sample_tree(&src);
    write(&src.join("var/big.bin"), &noise(2 << 20, 11));
    env.backup(&[&src]);
    write(&src.join("etc/extra.conf"), b"x = 1\n");
    env.backup(&[&src]);

    let copy_json = |extra: &[&str]| {
        let mut args = vec!["copy", "-r", repo, "-i", owner, "--to", to, "--json"];
        args.extend(extra);
        let out = moto.vault(&args);
        assert_success(&out);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = copy_json(&["--verify-data"]);
    assert_eq!(v["snapshots_copied"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(n(&v, "packs_copied"), packs(&env.repo).len() as u64, "{v}");
    assert_eq!(n(&v, "packs_verified"), n(&v, "packs_copied"), "{v}");
    let v = copy_json(&[]);
    assert_eq!(n(&v, "packs_copied"), 0, "{v}");
    assert_eq!(n(&v, "bytes_transferred"), 0, "{v}");

    let restored = env.path("restored");
    assert_success(&moto.vault(&[
        "restore",
        "-r",
        to,
        "-i",
        owner,
        "latest",
        "--target",
        restored.to_str().unwrap(),
    ]));
    assert_same_tree(&src, &restored.join(src.strip_prefix("/").unwrap()));
    let check = moto.vault(&["check", "-r", to, "-i", owner, "--read-data", "--storage"]);
    assert_success(&check);
    assert_contains(&stdout(&check), "no errors");
}
